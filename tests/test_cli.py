"""The command line: listing, and bad input rejected before any work with a clear message."""
from __future__ import annotations

import pytest

from flatminima.claims.registry import CLAIMS, params_class

from .conftest import flatminima


def bad_value_for(claim: str) -> tuple[str, str, str]:
    """A (name, value, expected message part) that the claim's validation must reject."""
    for row in params_class(claim).describe():
        if row["name"] == "preset":
            continue
        if row["allowed"] and "|" in row["allowed"]:
            return row["name"], "no-such-value", "allowed values"
    for row in params_class(claim).describe():
        if row["type"] == "int" and row["allowed"]:
            return row["name"], "-7", "must be"
    pytest.skip(f"{claim} has no bounded parameter to test")


def test_list_shows_every_claim_its_parameters_and_presets():
    proc = flatminima("list")
    assert proc.returncode == 0, proc.stderr
    for claim in CLAIMS:
        assert f"{claim}  (notebooks/{claim}.ipynb)" in proc.stdout
        for row in params_class(claim).describe():
            assert f"  {row['name']}: " in proc.stdout
    assert "smoke=" in proc.stdout and "paper=" in proc.stdout


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_misspelled_parameter_exits_nonzero_naming_it(claim, tmp_path):
    proc = flatminima("run", claim, "--preset", "smoke", "-p", "numm_seeds", "3", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "unknown parameter 'numm_seeds'" in proc.stderr and "Allowed parameters:" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_out_of_range_value_exits_nonzero_naming_parameter_and_range(claim, tmp_path):
    name, value, expected = bad_value_for(claim)
    proc = flatminima("run", claim, "--preset", "smoke", "-p", name, value, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"'{name}'" in proc.stderr and expected in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_claim_and_preset_are_rejected(tmp_path):
    proc = flatminima("run", "sharp-minimum", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown claim 'sharp-minimum'; allowed claims:" in proc.stderr
    proc = flatminima("run", "--preset", "fast", "--out", str(tmp_path))
    assert proc.returncode == 2 and "invalid choice: 'fast'" in proc.stderr


def test_run_controls_cannot_be_smuggled_in_as_parameters(tmp_path):
    proc = flatminima("run", "sharp-minima", "-p", "results_dir", "/tmp/x", "--out", str(tmp_path))
    assert proc.returncode == 2 and "'results_dir' is set by the command itself" in proc.stderr
