"""Tests of the wide-minima claim: parameters, the per-seed record, the pre-registered decision, notebook contract."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from flatminima.claims import wide_minima as wm
from flatminima.claims.registry import resolve
from flatminima.core.errors import ParameterError
from flatminima.protocol.contract import Aggregate
from flatminima.protocol.record import make_record, validate_results
from flatminima.stats.power import power_t

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "wide-minima.ipynb"


def test_cpu_preset_is_the_dataclass_default_and_every_preset_validates():
    assert wm.Params.PRESETS["cpu"] == {}
    assert wm.Params.from_preset("cpu") == wm.Params()
    for preset, (n_seeds, N) in {"smoke": (3, 60), "cpu": (16, 200), "paper": (30, 1000)}.items():
        p = wm.Params.from_preset(preset)
        assert (p.num_seeds, len(p.seeds), p.N) == (n_seeds, n_seeds, N)


def test_cpu_preset_has_the_preregistered_number_of_seeds_and_power():
    p = wm.Params.from_preset("cpu")
    pre = wm.PREREGISTRATION
    assert p.num_seeds >= pre["seeds_needed"]
    assert power_t(pre["smallest_effect"], pre["pilot"]["sd"], p.num_seeds) >= 0.8
    assert set(p.seeds).isdisjoint(range(500, 510))  # the pilot seeds


@pytest.mark.parametrize("name,value,fragment", [
    ("verdict_alpha", 3.0, "verdict_alpha"),
    ("theta_star", 0.7, "theta_star"),
    ("sigma_star", 0.7, "sigma_star"),
    ("gamma_max", 0.001, "gamma_max"),
    ("Delta", -1.0, "Delta"),
    ("num_seeds", 1, "num_seeds"),
    ("ridge_lambdas", [1.0], "ridge_lambdas"),
])
def test_bad_parameters_fail_before_any_work_naming_the_parameter(name, value, fragment):
    with pytest.raises(ParameterError, match=fragment):
        resolve("wide-minima", "smoke", {name: value})


TINY = dict(preset="smoke", N=30, alphas=(2.0,), verdict_alpha=2.0, num_seeds=2, n_test=300, num_draws=50,
            ridge_lambdas=(0.1, 10.0), path_points=3, net_N=10, net_alpha=5.0, grad_budget=30, hidden=4,
            net_seeds=1, net_draws=10)


@pytest.fixture(scope="module")
def tiny_records():
    p = wm.Params(**TINY)
    return p, [wm.run_seed(p, s, "cpu") for s in p.seeds]


def test_run_seed_is_deterministic_and_json_shaped(tiny_records):
    p, recs = tiny_records
    again = wm.run_seed(p, p.seeds[0], "cpu")
    assert json.dumps(again, sort_keys=True) == json.dumps(recs[0], sort_keys=True)
    assert recs[0]["nets"] and not recs[1]["nets"]  # net_seeds = 1: only the first seed trains networks
    arms = {n["algorithm"]: n for n in recs[0]["nets"]}
    assert set(arms) == set(wm.ALGORITHMS)
    assert arms["replicated SGD (full epochs)"]["grad_evals"] == p.num_replicas * p.grad_budget
    assert arms["replicated SGD (equal budget)"]["grad_evals"] <= p.grad_budget
    assert recs[0]["balanced"]["path"][0]["train_error"] == 0.0 or p.N * p.verdict_alpha > 2 * p.N


def test_a_tiny_run_produces_a_valid_record(tiny_records):
    p, recs = tiny_records
    agg = wm.aggregate(p, recs)
    assert isinstance(agg, Aggregate)
    rec = make_record(p, agg, preregistration=wm.PREREGISTRATION, deviations=(), runtime_s=1.0, device="cpu")
    validate_results(rec)
    assert [q["statistic"]["n"] for q in rec["parts"]] == [2, 2]
    assert np.isfinite(rec["headline"]["se"]) and rec["headline"]["paper"] == wm.PAPER
    assert rec["headline"]["value"] == pytest.approx(np.mean([r["balanced"]["ridge_slope"] for r in recs]))
    facts = rec["facts"]
    assert (facts["wm_N"], facts["wm_theta"], facts["wm_theta_small"]) == (30, 0.3, 0.1)
    assert facts["wm_b"] == pytest.approx(np.mean([r["unbalanced"]["bias_slope"] for r in recs]))
    assert facts["wm_cross_rel_n"].endswith(" of 2")
    assert list(agg.tables["networks"]["algorithm"]) == list(wm.ALGORITHMS)
    assert len(agg.tables["ridge_path"]) == len(p.ridge_lambdas) and len(agg.tables["bias_path"]) == p.path_points



def _fake(ridge: list[float], bias: list[float]) -> list[dict]:
    """Per-seed records with the fields aggregate reads, built by hand (no training)."""
    recs = []
    for i, (r, b) in enumerate(zip(ridge, bias)):
        path_row = {"train_error": 0.0, "test_error": 0.1, "S_0.3": -1.0}
        recs.append({"seed": i, "bo_curve": [{"rho": 0.5, "alpha": 2.0, "mc_error": 0.1 + 0.001 * i, "mc_se": 0.01,
                                              "theory": 0.1}],
                     "balanced": {"ridge": [{"lam": 1.0, **path_row}], "path": [{"t": 0.0, **path_row}],
                                  "ridge_slope": r, "path_slope": {"0.1": r, "0.2": r, "0.3": r},
                                  "ridge_energy_slope": {"relative": 0.0, "absolute": 0.0},
                                  "crossover": {"relative": 0.2 + 0.01 * i, "absolute": float("nan")}},
                     "unbalanced": {"bias_path": [{"t": 0.0, **path_row}], "max_margin": path_row, "bias_slope": b},
                     "nets": []})
    return recs


@pytest.mark.parametrize("ridge, bias, expected, part_b", [
    ([0.6, 0.5, 0.7, 0.55, 0.65, 0.6], [0.8, 0.7, 0.9, 0.6, 0.75, 0.85], "reproduced", "reproduced"),
    # Part B is an estimate: its outcome is reported, the verdict is Part A's
    ([0.6, 0.5, 0.7, 0.55, 0.65, 0.6], [0.01, -0.01, 0.0, 0.02, -0.02, 0.0], "reproduced", "not reproduced"),
    ([0.6, 0.5, 0.7, 0.55, 0.65, 0.6], [1.5, -1.2, 0.3, -0.8, 2.0, -1.0], "reproduced", "inconclusive"),
    ([-0.6, -0.5, -0.7, -0.55, -0.65, -0.6], [0.8, 0.7, 0.9, 0.6, 0.75, 0.85], "not reproduced", "reproduced"),
    ([0.01, -0.01, 0.0, 0.02, -0.02, 0.0], [0.8, 0.7, 0.9, 0.6, 0.75, 0.85], "not reproduced", "reproduced"),  # A TOST
    ([1.5, -1.2, 0.3, -0.8, 2.0, -1.0], [0.8, 0.7, 0.9, 0.6, 0.75, 0.85], "inconclusive", "reproduced"),
])
def test_verdict_follows_the_preregistered_rule(ridge, bias, expected, part_b):
    p = wm.Params.from_preset("smoke")
    agg = wm.aggregate(p, _fake(ridge, bias))
    assert agg.verdict.value == expected
    assert agg.part("Part B").outcome.value == part_b
    assert [pt.role.value for pt in agg.parts] == ["decided", "estimate"]
    assert [pt.subclaim for pt in agg.parts] == list(wm.SUBCLAIMS)
    assert agg.headline.value == pytest.approx(np.mean(ridge))
    assert agg.statistics["crossover"]["absolute"]["seeds_with_crossover"] == 0
    assert agg.statistics["crossover"]["relative"]["estimate"] == pytest.approx(0.225)
    assert agg.facts["wm_cross_abs_n"] == "0 of 6" and agg.facts["wm_cross_rel"] == pytest.approx(0.225)


def test_notebook_follows_the_parameters_contract():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code)
    first = code[0]
    assert first["metadata"].get("tags") == ["parameters"]
    names = [line.split(":")[0] for line in "".join(first["source"]).splitlines() if line.strip()]
    fields = [f.name for f in dataclasses.fields(wm.Params) if f.name != "preset"]
    assert names[0] == "preset" and names[-5:] == ["device", "show_progress", "results_dir", "cache_dir", "workers"]
    assert sorted(names[1:-5]) == sorted(fields)
    second = "".join(code[1]["source"])
    assert "wide_minima.Params.from_namespace(globals())" in second
    src = "".join("".join(c["source"]) for c in code)
    assert "run_seeds(wide_minima.run_seed" in src and "write_results(record, results_dir)" in src
    assert "glue_record(record)" in src and "glue(" not in src
