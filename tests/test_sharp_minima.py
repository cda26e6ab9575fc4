"""The sharp-minima protocol: parameters, matched-loss snapshots, statistics, verdict, notebook contract."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flatminima.claims import sharp_minima as sm
from flatminima.device import configure_threads
from flatminima.params import ParameterError
from flatminima.presets import resolve

ROOT = Path(__file__).resolve().parents[1]

configure_threads(1)  # the project's CPU policy: one torch thread per process


# ----------------------------------------------------------------------------- parameters
def test_every_preset_validates_and_dataclass_defaults_equal_the_cpu_preset():
    for preset in ("smoke", "cpu", "paper"):
        assert resolve("sharp-minima", preset).preset == preset
    cpu = resolve("sharp-minima", "cpu")
    assert cpu == sm.Params()
    paper = resolve("sharp-minima", "paper")
    assert paper.dataset == "mnist" and paper.widths == (512,) * 5 and paper.num_seeds == 5
    assert (paper.sb_batch_size, paper.lb_batch_size) == (256, 6000)


@pytest.mark.parametrize("overrides, message", [
    ({"sb_batch_size": 500}, "sb_batch_size"),
    ({"dataset": "mnist2d"}, "allowed values"),
    ({"loss_thresholds": [0.1, 0.1]}, "loss_thresholds"),
    ({"loss_thresholds": [-0.1]}, "loss_thresholds"),
    ({"arch": "cnn", "dataset": "digits"}, "arch"),
    ({"optimizer": "lbfgs"}, "optimizer"),
])
def test_bad_parameters_fail_before_training_naming_the_parameter(overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve("sharp-minima", "cpu", overrides)


# ----------------------------------------------------------------------------- protocol pieces
@pytest.fixture(scope="module")
def smoke_run():
    """One SB run of the smoke preset (digits, 32-32 MLP) and the initial net it started from."""
    params = sm.Params.from_preset("smoke", num_seeds=1, sweep_batch_sizes=())
    data = sm.load_data(params, torch.device("cpu"))
    net0 = sm.make_net(params, data, 0, torch.device("cpu"))
    before = {k: v.clone() for k, v in net0.state_dict().items()}
    run = sm.train_to_thresholds(net0, data, params.sb_batch_size, params, seed=0)
    return params, data, net0, before, run


def test_snapshots_are_taken_the_first_epoch_the_training_loss_is_below_each_threshold(smoke_run):
    params, data, net0, before, run = smoke_run
    assert all(torch.equal(before[k], v) for k, v in net0.state_dict().items())  # net0 untouched
    losses = np.array(run.train_loss)
    for t in params.thresholds:
        first = int(np.argmax(losses <= t))
        assert losses[first] <= t and (first == 0 or losses[:first].min() > t)
        assert run.snapshots[t].epoch == run.epochs[first]
        tl, _ = sm._eval(net0, run.snapshots[t].params, data.X_train, data.y_train)
        assert tl == pytest.approx(losses[first], rel=1e-4)
    assert run.epochs[-1] == run.snapshots[params.thresholds[-1]].epoch  # stops at the last threshold


def test_dinh_check_keeps_function_and_invariant_measure_and_moves_lambda_max(smoke_run):
    params, data, net0, _, run = smoke_run
    light = dataclasses.replace(params, num_probes=2, keskar_max_iter=2)
    dinh = sm.dinh_check(net0, run.snapshots[params.thresholds[0]].params, data, light)
    s = sm.dinh_summary(dinh)
    assert s["max_logit_change"] < 1e-4
    assert s["lambda_R_rel_change"] < sm.DINH_TOLERANCE
    assert s["lambda_max_factor"] > 2


# ----------------------------------------------------------------------------- statistics and verdict
def _table(ratio_R, gap, thresholds=(0.1, 0.03)):
    """A synthetic results table: LB/SB ratio of lambda_R and SB-LB accuracy gap per seed."""
    rows = []
    for seed, (r, g) in enumerate(zip(ratio_R, gap)):
        for t in thresholds:
            base = {"seed": seed, "threshold": t, "reached": True, "trace": 1.0, "lambda_max": 1.0, "grad_norm": 1.0,
                    "keskar_0.001": 1.0, "keskar_0.0005": 1.0, "keskar_0.001_sub": 1.0, "keskar_0.0005_sub": 1.0}
            rows.append({**base, "regime": "SB", "batch_size": 32, "lambda_R": 10.0, "test_acc": 0.7})
            rows.append({**base, "regime": "LB", "batch_size": 400, "lambda_R": 10.0 * r, "test_acc": 0.7 - g})
    return pd.DataFrame(rows)


DINH_OK = {"max_logit_change": 1e-6, "lambda_max_factor": 20.0, "trace_factor": 10.0, "lambda_R_rel_change": 1e-6}


def test_summary_ratios_are_geometric_means_with_t_intervals():
    params = sm.Params(num_seeds=3)
    summary = sm.summarize(_table([2.0, 3.0, 4.0], [0.05, 0.06, 0.04]), params)
    e = summary["0.03"]["lambda_R"]
    assert e["ratio_geomean"] == pytest.approx(math.exp(np.mean(np.log([2, 3, 4]))))
    assert e["ratio_ci_low"] < e["ratio_geomean"] < e["ratio_ci_high"]
    assert e["sign_test_p"] == pytest.approx(1 / 8)
    assert e["per_seed_ratio"] == pytest.approx([2.0, 3.0, 4.0])
    assert summary["0.03"]["test_acc_gap"]["estimate"] == pytest.approx(0.05)


@pytest.mark.parametrize("ratios, gaps, dinh, expected", [
    ([2.0, 3.0, 4.0], [0.05, 0.06, 0.04], DINH_OK, "reproduced"),
    ([2.0, 3.0, 0.9], [0.05, 0.06, 0.04], DINH_OK, "inconclusive"),          # one seed LB flatter
    ([2.0, 3.0, 4.0], [0.05, -0.06, 0.04], DINH_OK, "inconclusive"),         # gap interval covers 0
    ([0.5, 0.4, 0.45], [0.05, 0.06, 0.04], DINH_OK, "not reproduced"),       # LB clearly flatter
    ([2.0, 3.0, 4.0], [0.05, 0.06, 0.04], {**DINH_OK, "lambda_R_rel_change": 0.1}, "inconclusive"),
])
def test_verdict_follows_the_stated_criterion(ratios, gaps, dinh, expected):
    params = sm.Params(num_seeds=3)
    verdict, reasons = sm.verdict(sm.summarize(_table(ratios, gaps), params), dinh, params)
    assert verdict == expected
    assert any("Dinh control" in r for r in reasons)


def test_missing_threshold_makes_the_verdict_inconclusive():
    params = sm.Params(num_seeds=3)
    table = _table([2.0, 3.0, 4.0], [0.05, 0.06, 0.04])
    miss = (table.seed == 2) & (table.regime == "LB") & (table.threshold == 0.03)
    table.loc[miss, "reached"] = False
    table.loc[miss, ["lambda_R", "test_acc"]] = np.nan
    verdict, reasons = sm.verdict(sm.summarize(table, params), DINH_OK, params)
    assert verdict == "inconclusive" and any("reached the threshold" in r for r in reasons)


def test_results_record_carries_criterion_headline_and_is_json_serialisable(tmp_path):
    from flatminima.results import read_results, write_results

    params = sm.Params(num_seeds=3)
    summary = sm.summarize(_table([2.0, 3.0, 4.0], [0.05, 0.06, 0.04]), params)
    verdict, reasons = sm.verdict(summary, DINH_OK, params)
    record = sm.make_results(params, summary, DINH_OK, verdict, reasons, seeds=[0, 1, 2], runtime_s=1.0,
                             device=torch.device("cpu"))
    back = read_results(write_results(record, tmp_path))
    assert back["verdict"] == "reproduced" and back["criterion"] == sm.CRITERION
    assert back["headline"]["value"] == pytest.approx(24 ** (1 / 3))  # geomean of 2, 3, 4


# ----------------------------------------------------------------------------- notebook contract
def test_notebook_parameters_cell_declares_every_field_then_validates():
    nb = json.loads((ROOT / "notebooks" / "sharp-minima.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code)  # stripped
    i = next(k for k, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = [ln for ln in "".join(code[i]["source"]).splitlines() if ln.strip()]
    names = [ln.split(":")[0] for ln in lines]
    fields = [f.name for f in dataclasses.fields(sm.Params)]
    assert names == fields + ["device", "show_progress", "results_dir"]
    assert lines[0].startswith('preset: str = "cpu"')
    assert all("= None  #" in ln for ln in lines[1:len(fields)])
    nxt = "".join(code[i + 1]["source"])
    assert "sharp_minima.Params.from_namespace(globals())" in nxt and "setup_device(device)" in nxt
    assert any("write_results(record, results_dir)" in "".join(c["source"]) for c in code)
