"""Every claim notebook: the papermill contract, a smoke run through the CLI, and bad input."""
from __future__ import annotations

import json

import nbformat
import papermill as pm
import pytest

from flatminima.claims.registry import CLAIMS, params_class
from flatminima.protocol.params import RUN_CONTROLS
from flatminima.protocol.record import read_results

from .conftest import ROOT
from .test_cli import bad_value_for


def source(claim: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{claim}.ipynb", as_version=4)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_parameters_cell_declares_exactly_the_params_fields_and_run_controls(claim):
    declared = set(pm.inspect_notebook(str(ROOT / "notebooks" / f"{claim}.ipynb")))
    expected = set(params_class(claim).field_names()) | set(RUN_CONTROLS)
    assert declared == expected, f"missing: {expected - declared}; extra: {declared - expected}"


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_validation_comes_right_after_the_parameters_cell_and_outputs_are_stripped(claim):
    nb = source(claim)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "Params.from_namespace(globals())" in code[1].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "write_results(" in "".join(c.source for c in code)


@pytest.mark.kernel
@pytest.mark.notebooks
@pytest.mark.parametrize("claim", list(CLAIMS))
def test_smoke_run_writes_a_valid_result_and_a_clean_notebook(claim, smoke_project):
    generated = smoke_project / "book" / "generated"
    record = read_results(generated / "results" / f"{claim}.json")
    assert record["claim"] == claim and record["preset"] == "smoke"
    assert record["parts"] and record["criterion"]
    roles = [p.get("role", "decided") for p in record["parts"]]
    decided = [p["outcome"] for p, r in zip(record["parts"], roles) if r == "decided"]
    controls = [p["outcome"] for p, r in zip(record["parts"], roles) if r == "control"]
    expected = ("inconclusive" if not decided or "not reproduced" in controls else
                "not reproduced" if "not reproduced" in decided else
                "reproduced" if all(o == "reproduced" for o in decided + controls) else "inconclusive")
    assert record["verdict"] == expected  # the decided parts decide it, a failed control withholds it
    assert len(record["seeds"]) >= 1 and record["runtime_s"] > 0
    json.dumps(record, allow_nan=False)
    nb = nbformat.read(generated / f"{claim}.ipynb", as_version=4)
    assert nb.metadata["papermill"]["exception"] is None
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert f"{claim}: {record['verdict']} (ran" in (smoke_project / "run.log").read_text()


@pytest.mark.kernel
@pytest.mark.notebooks
@pytest.mark.parametrize("claim", list(CLAIMS))
def test_papermill_with_a_bad_value_fails_in_the_validation_cell(claim, tmp_path):
    name, value, expected = bad_value_for(claim)
    with pytest.raises(pm.PapermillExecutionError, match=rf"'{name}'.*{expected}"):
        pm.execute_notebook(str(ROOT / "notebooks" / f"{claim}.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"preset": "smoke", name: value, "results_dir": str(tmp_path)},
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    ran = [c for c in executed.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) <= 3  # parameters, injected parameters, validation: nothing after
    assert not list(tmp_path.glob("*.json"))
