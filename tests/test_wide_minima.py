"""Tests of the wide-minima claim: parameters, statistics, verdict logic, notebook contract, a tiny run."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatminima.claims import wide_minima as wm
from flatminima.params import ParameterError
from flatminima.presets import resolve
from flatminima.results import validate_results

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "wide-minima.ipynb"


def test_cpu_preset_is_the_dataclass_default_and_every_preset_validates():
    assert wm.Params.PRESETS["cpu"] == {}
    defaults = {f.name: f.default for f in dataclasses.fields(wm.Params)}
    assert wm.Params.from_preset("cpu").to_dict() == {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in defaults.items()}
    for preset in ("smoke", "cpu", "paper"):
        assert wm.Params.from_preset(preset).preset == preset


@pytest.mark.parametrize("name,value,fragment", [
    ("real_dataset", "imagenet", "real_dataset"),
    ("verdict_alpha", 3.0, "verdict_alpha"),
    ("sigma_star", 0.7, "sigma_star"),
    ("gamma_max", 0.001, "gamma_max"),
    ("Delta", -1.0, "Delta"),
    ("num_seeds", 1, "num_seeds"),
])
def test_bad_parameters_fail_before_any_work_naming_the_parameter(name, value, fragment):
    with pytest.raises(ParameterError, match=fragment):
        resolve("wide-minima", "smoke", {name: value})


def _family(bo_de: float, ref_de: float, n: int = 12, noise: float = 0.001) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n):
        for kind, de, err in [("Bayes-optimal", bo_de, 0.10), ("max-margin", ref_de, 0.15),
                              ("perceptron", ref_de + 0.01, 0.16), ("ridge-MSE", (bo_de + ref_de) / 2, 0.12)]:
            row = {"alpha": 2.0, "seed": seed, "solution": kind, "kind": kind, "train_error": 0.0,
                   "test_error": err + rng.normal(0, 0.001)}
            row.update({f"dE_{s:g}": de * s + rng.normal(0, noise) for s in (0.05, 0.1, 0.2, 0.3, 0.6, 1.0)})
            rows.append(row)
    return pd.DataFrame(rows)


def test_flatness_gaps_are_paired_differences_with_one_sided_tests():
    params = wm.Params()
    gaps = wm.flatness_gaps(_family(0.05, 0.10), params)
    row = gaps[(gaps.reference == "max-margin") & (gaps.sigma == 1.0)].iloc[0]
    assert row["gap"] == pytest.approx(0.05, abs=0.002)
    assert row["ci_low"] < row["gap"] < row["ci_high"]
    assert row["p_value"] < 0.001 and row["n"] == 12
    reversed_gaps = wm.flatness_gaps(_family(0.10, 0.05), params)
    assert (reversed_gaps["p_value"] > 0.5).all()


def test_family_spearman_is_high_when_flatness_ranks_test_error():
    spear = wm.family_spearman(_family(0.05, 0.10, noise=0.0), wm.Params())
    assert spear["mean"]["estimate"] == pytest.approx(0.8, abs=0.21)
    assert spear["seed_averaged"] > 0.7


def _algos(improvements: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = [{"algorithm": "SGD", "test_error": 0.12}]
    for algo, (low, high) in improvements.items():
        rows.append({"algorithm": algo, "test_error": 0.11, "improvement": (low + high) / 2, "imp_low": low,
                     "imp_high": high, "wins": 5, "n": 5})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gap_p,spearman,imp,expected", [
    (0.001, 0.9, (0.001, 0.01), "reproduced"),
    (0.001, 0.9, (-0.01, 0.01), "inconclusive"),
    (0.001, 0.9, (-0.02, -0.01), "not reproduced"),
    (0.2, 0.9, (0.001, 0.01), "not reproduced"),
    (0.001, 0.5, (0.001, 0.01), "not reproduced"),
])
def test_verdict_follows_the_stated_criterion(gap_p, spearman, imp, expected):
    params = wm.Params()
    gaps = pd.DataFrame([{"reference": r, "sigma": s, "p_value": gap_p, "in_verdict": True}
                         for r in wm.ZERO_ERROR for s in params.verdict_sigmas])
    dec = wm.verdict(params, gaps, {"mean": {"estimate": spearman}},
                     _algos({"Entropy-SGD": imp, "replicated SGD": imp}))
    assert dec["verdict"] == expected
    assert "Wilcoxon" in dec["criterion"] and "Spearman" in dec["criterion"]


def test_too_few_seeds_give_an_inconclusive_verdict():
    params = wm.Params.from_preset("smoke")  # 3 seeds: the smallest one-sided Wilcoxon p is 1/8
    gaps = pd.DataFrame([{"reference": "max-margin", "sigma": 0.6, "p_value": 0.125, "in_verdict": True}])
    dec = wm.verdict(params, gaps, {"mean": {"estimate": 0.9}}, _algos({"Entropy-SGD": (0.01, 0.02)}))
    assert dec["verdict"] == "inconclusive" and dec["underpowered"]


def test_notebook_follows_the_parameters_contract():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code)
    first = code[0]
    assert first["metadata"].get("tags") == ["parameters"]
    names = [line.split(":")[0] for line in "".join(first["source"]).splitlines() if line.strip()]
    fields = [f.name for f in dataclasses.fields(wm.Params) if f.name != "preset"]
    assert names == ["preset", *fields, "device", "show_progress", "results_dir"]
    assert all("= None" in line for line in "".join(first["source"]).splitlines()[1:len(fields) + 1])
    second = "".join(code[1]["source"])
    assert "wide_minima.Params.from_namespace(globals())" in second and "setup_device(device)" in second
    assert any("write_results(rec, results_dir)" in "".join(c["source"]) for c in code)


def test_a_tiny_run_produces_a_valid_record(tmp_path):
    params = wm.Params(preset="smoke", N=40, alphas=(2.0,), num_seeds=2, n_test=500, sigmas=(0.3, 0.6, 1.0),
                       verdict_sigmas=(0.6,), num_draws=20, ridge_lambdas=(1.0,), smooth_sigmas=(1.0,),
                       smooth_steps=20, net_seeds=2, grad_budget=30, hidden=8, real_dataset="digits",
                       net_sigmas=(0.5,))
    rec = wm.run(params, device="cpu")
    validate_results(rec)
    assert rec["verdict"] == "inconclusive"  # 2 seeds cannot reach p < 0.01
    stats = rec["statistics"]
    assert {r["algorithm"] for r in stats["mixture_networks"]} == set(wm.ALGORITHMS)
    assert all(r["grad_evals"] <= 30 for r in stats["per_seed"]["mixture_networks"])
    assert np.isfinite(rec["headline"]["value"])
    text = wm.summary_text(rec)
    assert "Part A" in text and "Part C" in text
