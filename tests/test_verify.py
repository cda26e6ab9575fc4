"""`flatminima verify`: the two-sample check on constructed records, and end to end on a toy claim."""
from __future__ import annotations

import json
import math
import re
import textwrap

import numpy as np
import pytest

from flatminima import cli
from flatminima.claims import registry as presets
from flatminima.run.execute import run_claim
from flatminima.run.verify import (
    check_published_verifications,
    compare_records,
    compare_statistic,
    read_verifications,
    rerun_overrides,
    validate_verification,
)
from flatminima.stats.intervals import statistic

from .conftest import TOY_RUN_CONTROLS, write_toy_project


def record(verdict="reproduced", values=(1.0, 1.2, 0.9, 1.1, 1.0), scale="linear", parts=True):
    x = np.asarray(values, dtype=float)
    rec = {"claim": "toy", "verdict": verdict, "parameters": {}, "seeds": list(range(len(x))),
           "headline": statistic("effect", np.log(x) if scale == "log" else x, scale=scale)}
    if parts:
        rec["parts"] = [{"name": "Part A", "outcome": verdict, "reason": "", "statistic": statistic("a", x)}]
    return rec


def test_identical_records_match():
    checks = compare_records(record(), record())
    assert checks and all(c.match for c in checks)
    assert {c.what for c in checks} >= {"verdict", "Part A outcome", "effect", "Part A: a"}


def test_another_verdict_or_part_outcome_is_a_mismatch():
    a, b = record(), record(verdict="inconclusive")
    bad = {c.what for c in compare_records(a, b) if not c.match}
    assert {"verdict", "Part A outcome"} <= bad


def test_an_estimate_outcome_is_not_a_check_but_its_statistic_is():
    a, b = record(), record()
    for rec, outcome in ((a, "reproduced"), (b, "inconclusive")):
        rec["parts"].append({"name": "Part B", "outcome": outcome, "reason": "", "role": "estimate",
                             "statistic": statistic("b", np.array([1.0, 1.1, 0.9]))})
    checks = compare_records(a, b)
    assert "Part B outcome" not in {c.what for c in checks}
    assert "Part B: b" in {c.what for c in checks} and all(c.match for c in checks)
    b["parts"][1]["role"] = "decided"  # the same flip in a decided part is a mismatch
    a["parts"][1]["role"] = "decided"
    assert {c.what for c in compare_records(a, b) if not c.match} == {"Part B outcome"}


def test_an_independent_replication_within_noise_matches_and_a_shift_does_not():
    rng = np.random.default_rng(0)
    pub = record(values=rng.normal(1.0, 0.2, 10))
    same = record(values=rng.normal(1.0, 0.2, 10))
    shifted = record(values=rng.normal(2.0, 0.2, 10))
    assert all(c.match for c in compare_records(pub, same))
    assert not all(c.match for c in compare_records(pub, shifted) if c.what == "effect")


def test_the_interval_is_welch_at_99_percent():
    pub = {"value": 1.0, "se": 0.1, "n": 10, "scale": "linear"}
    new = {"value": 1.5, "se": 0.2, "n": 5, "scale": "linear"}
    d, half, ok = compare_statistic(pub, new)
    df = (0.01 + 0.04) ** 2 / (0.01 ** 2 / 9 + 0.04 ** 2 / 4)
    from scipy import stats as sps
    assert d == pytest.approx(0.5)
    assert half == pytest.approx(sps.t.ppf(0.995, df) * math.sqrt(0.05))
    assert ok  # 0.5 is inside the 99% interval: half is about 0.82


def test_welch_intervals_decide_the_match_as_scipy_does():
    from scipy import stats as sps
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.normal(1.0, 0.3, 8), rng.normal(1.0 + rng.uniform(-0.8, 0.8), 0.5, 6)
        pub = {"value": a.mean(), "se": sps.sem(a), "n": a.size, "scale": "linear"}
        new = {"value": b.mean(), "se": sps.sem(b), "n": b.size, "scale": "linear"}
        d, half, ok = compare_statistic(pub, new)
        ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.99)  # Welch's 99% interval of b - a
        assert d == pytest.approx(b.mean() - a.mean())
        assert half == pytest.approx((ci.high - ci.low) / 2)
        assert ok == (ci.low <= 0 <= ci.high)


def test_log_scale_statistics_are_compared_as_log_ratios():
    pub = record(values=(2.0, 2.2, 1.8, 2.1), scale="log")
    new = record(values=(4.0, 4.4, 3.6, 4.2), scale="log")  # twice as large: log 2 apart, tiny se
    head = [c for c in compare_records(pub, new) if c.what == "effect"][0]
    assert not head.match and "(log)" in head.difference


def test_deterministic_statistics_must_agree_exactly():
    pub = {"value": 0.5, "se": 0.0, "n": 3}
    assert compare_statistic(pub, {"value": 0.5, "se": 0.0, "n": 3})[2]
    assert not compare_statistic(pub, {"value": 0.5001, "se": 0.0, "n": 3})[2]


def test_a_statistic_missing_from_the_rerun_is_a_mismatch():
    checks = compare_records(record(), record(parts=False))
    assert not all(c.match for c in checks)


# ----------------------------------------------------------------------------- end to end
TOY_MODULE = '''
from dataclasses import dataclass
from typing import ClassVar
import numpy as np
from flatminima.protocol.contract import Aggregate, Part, Statistic
from flatminima.protocol.params import ClaimParams, param
from flatminima.stats.decision import decide
from flatminima.stats.intervals import statistic

@dataclass(frozen=True)
class Params(ClaimParams):
    CLAIM: ClassVar[str] = "vtoy"
    PRESETS: ClassVar[dict] = {"cpu": {"num_seeds": 8}}
    num_seeds: int = param(8, "seeds", low=2, high=100)
    effect: float = param(1.0, "true effect")

def run_seed(params, seed, device):
    return {"x": float(params.effect + np.random.default_rng(seed).normal(0, 0.3))}

def aggregate(params, records):
    x = [r["x"] for r in records]
    d = decide(x, smallest_effect=0.2)
    head = Statistic.from_dict(statistic("effect", x))
    return Aggregate(verdict=d.outcome, parts=(Part("Part A", d.outcome, "", head),), headline=head,
                     statistics={}, criterion="toy")
'''

TOY_PARAMETERS = textwrap.dedent('''\
    preset: str = "cpu"
    num_seeds: int = None
    seeds: str = None
    effect: float = None
''') + TOY_RUN_CONTROLS

TOY_BODY = textwrap.dedent('''\
    import vtoyclaim
    from flatminima.protocol.replicates import cache_dir_for, run_seeds
    from flatminima.protocol.record import make_record, write_results
    params = vtoyclaim.Params.from_namespace(globals())
    records = run_seeds(vtoyclaim.run_seed, params, cache_dir=cache_dir_for(results_dir, cache_dir), workers=1)
    agg = vtoyclaim.aggregate(params, records)
    write_results(make_record(params, agg, preregistration=None, deviations=(), runtime_s=0.1, device=device), results_dir)
''')


@pytest.fixture()
def vtoy_root(tmp_path, monkeypatch):
    write_toy_project(tmp_path, monkeypatch, claim="vtoy", module="vtoyclaim", source=TOY_MODULE,
                      parameters=TOY_PARAMETERS, body=TOY_BODY)
    outcome = run_claim("vtoy", root=tmp_path, preset="cpu", device="cpu")  # publish
    assert outcome.status == "ran", outcome.error
    return tmp_path


@pytest.mark.kernel
def test_verify_passes_on_a_faithful_record_and_fails_on_an_edited_one(vtoy_root, capsys):
    published = vtoy_root / "book" / "generated" / "results" / "vtoy.json"
    before = published.read_text()
    out = vtoy_root / "scratch"
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1"]) == 0
    assert "match" in capsys.readouterr().out
    assert published.read_text() == before  # verify never writes over the book

    rec = json.loads(before)
    rec["verdict"] = "not reproduced"
    published.write_text(json.dumps(rec))
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1"]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "MISMATCH" in captured.err


@pytest.mark.kernel
def test_verify_with_disjoint_seeds_reexecutes_them(vtoy_root, capsys):
    out = vtoy_root / "scratch"
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--seeds-from", "1000",
                     "--jobs", "1"]) == 0
    rerun = json.loads((out / "results" / "vtoy.json").read_text())
    assert rerun["seeds"] == list(range(1000, 1008))
    assert "disjoint seeds from 1000" in capsys.readouterr().out


@pytest.mark.kernel
def test_verify_refuses_to_write_into_the_book_and_needs_a_published_record(vtoy_root, capsys):
    book = vtoy_root / "book" / "generated"
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(book)]) == 2
    assert "scratch folder" in capsys.readouterr().err
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--preset", "smoke"]) == 2
    assert "no published smoke-preset record" in capsys.readouterr().err


def test_rerun_overrides_recreate_the_published_parameters():
    pub = {"claim": "sharp-minima", "seeds": [0, 1, 2],
           "parameters": {**presets.resolve("sharp-minima", "cpu").to_dict(), "lr": 0.002}}
    assert rerun_overrides(pub, "cpu", None) == {"lr": 0.002}
    shifted = rerun_overrides(pub, "cpu", 1000)
    assert shifted["seeds"] == [1000, 1001, 1002] and shifted["lr"] == 0.002 and "num_seeds" not in shifted


@pytest.mark.kernel
def test_verify_publish_writes_a_verification_record_shown_on_the_verification_page(vtoy_root, capsys):
    from flatminima.book.pages import verification_markdown

    generated = vtoy_root / "book" / "generated"
    published = json.loads((generated / "results" / "vtoy.json").read_text())
    out = vtoy_root / "scratch"
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1", "--publish"]) == 0
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1", "--publish",
                     "--seeds-from", "1000", "--check-published"]) == 0
    files = sorted(p.name for p in (generated / "verification").glob("*.json"))
    assert len(files) == 2 and "vtoy--seeds-from-1000.json" in files
    kernels = next(f for f in files if f.startswith("vtoy--kernels-"))
    rec = json.loads((generated / "verification" / kernels).read_text())
    validate_verification(rec)
    assert rec["claim"] == "vtoy" and rec["passed"] and rec["inputs_hash"] == published["inputs_hash"]
    assert rec["seeds"] == published["seeds"] and rec["cpu_capability"]
    assert rec["checks"][0] == {"name": "verdict", "published": published["verdict"], "rerun": published["verdict"],
                                "difference": "", "result": "match"}
    disjoint = read_verifications(generated / "verification")["vtoy"][1]
    assert disjoint["kind"] == "seeds-from-1000" and disjoint["seeds"] == list(range(1000, 1008))
    assert check_published_verifications(vtoy_root) == []
    page = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", verification_markdown(generated))  # escapes removed
    assert "Published" in page and "Disjoint seeds (from 1000)" in page and "Kernels " in page
    assert "{bdg-success}`pass`" in page and "{bdg-warning}`stale`" not in page
    assert "* - Part A: effect" in page  # the checks table of each verification


@pytest.mark.kernel
def test_a_stale_verification_record_fails_the_published_check(vtoy_root, capsys):
    from flatminima.book.pages import verification_markdown

    generated = vtoy_root / "book" / "generated"
    out = vtoy_root / "scratch"
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1", "--publish"]) == 0
    path = next((generated / "verification").glob("vtoy--kernels-*.json"))
    rec = json.loads(path.read_text())
    rec["inputs_hash"] = "f" * 64  # verified an earlier result than the one committed
    path.write_text(json.dumps(rec))
    problems = check_published_verifications(vtoy_root)
    assert len(problems) == 1 and "stale" in problems[0] and path.name in problems[0]
    assert "{bdg-warning}`stale`" in verification_markdown(generated)
    capsys.readouterr()
    assert cli.main(["verify", "vtoy", "--root", str(vtoy_root), "--out", str(out), "--jobs", "1",
                     "--check-published"]) == 1
    assert "stale" in capsys.readouterr().err
    path.write_text("{}")  # not a verification record at all
    assert "does not match the schema" in check_published_verifications(vtoy_root)[0]
