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
from flatminima.claims.registry import resolve
from flatminima.core.device import configure_threads
from flatminima.core.errors import ParameterError
from flatminima.protocol.contract import Aggregate
from flatminima.protocol.record import make_record

ROOT = Path(__file__).resolve().parents[1]

configure_threads(1)  # the project's CPU policy: one torch thread per process


# ----------------------------------------------------------------------------- parameters
def test_every_preset_validates_and_dataclass_defaults_equal_the_cpu_preset():
    smoke = resolve("sharp-minima", "smoke")
    assert (smoke.dataset, smoke.widths, smoke.lb_batch_size, smoke.num_seeds) == ("digits", (32, 32), 256, 2)
    assert smoke.points == ("0.6", "0.3", "end")  # thresholds largest first, then the end of training
    cpu = resolve("sharp-minima", "cpu")
    assert cpu == sm.Params()
    paper = resolve("sharp-minima", "paper")
    assert paper.dataset == "mnist" and paper.lr == 1e-3 and paper.widths == (512,) * 5 and paper.num_seeds == 10
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
    params = sm.Params.from_preset("smoke", num_seeds=1)
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
        snap = run.snapshots[f"{t:g}"]
        assert snap["epoch"] == run.epochs[first]
        tl, _ = sm._eval(net0, snap["params"], data.X_train, data.y_train)
        assert tl == pytest.approx(losses[first], rel=1e-4)


def test_end_of_training_point_is_where_the_loss_stopped_improving_or_the_epoch_budget(smoke_run):
    params, _, _, _, run = smoke_run
    end = run.snapshots[sm.END]["epoch"]
    assert end == run.epochs[-1]
    losses = np.array(run.train_loss)
    if end < params.max_epochs:  # stopped by patience: no 1% improvement in the last end_patience epochs
        best_before = losses[: end - params.end_patience].min()
        assert losses[end - params.end_patience:].min() >= 0.99 * best_before


def test_rescaling_control_keeps_function_and_lambda_N_moves_lambda_max_and_per_neuron_moves_lambda_R(smoke_run):
    params, data, net0, _, run = smoke_run
    light = dataclasses.replace(params, num_probes=2)
    rows = sm.rescaling_control(net0, run.snapshots[f"{params.thresholds[-1]:g}"]["params"], data, light, seed=3)
    assert [r["rescaling"] for r in rows] == ["none", "layer-wise", "per-neuron"]
    s = sm.control_summary(rows)
    assert s["passes"] and s["logit_change"] < sm.FUNCTION_TOLERANCE
    assert s["lambda_N_rel_change"] < sm.DINH_TOLERANCE
    by = {r["rescaling"]: r for r in rows}
    assert abs(by["layer-wise"]["lambda_R"] / by["none"]["lambda_R"] - 1) < sm.DINH_TOLERANCE  # layer-wise only
    assert abs(by["per-neuron"]["lambda_R"] / by["none"]["lambda_R"] - 1) > 0.05


def test_run_seed_record_is_json_and_has_every_point_and_the_density(tmp_path):
    params = sm.Params.from_preset("smoke", num_seeds=1, max_epochs=40, loss_thresholds=(0.6,), end_patience=3,
                                   interp_points=3, slq_iter=5, slq_probes=1, num_probes=2, subspace_dim=0)
    rec = sm.run_seed(params, 7, "cpu")
    back = json.loads(json.dumps(rec))
    assert back["seed"] == 7 and {r["point"] for r in back["rows"]} == {"0.6", "end"}
    assert set(back["density"]) == {"SB", "LB"} and len(back["density"]["SB"]["nodes"][0]) == 5
    assert sum(back["density"]["LB"]["weights"][0]) == pytest.approx(1.0, rel=1e-5)
    assert rec == sm.run_seed(params, 7, "cpu")  # a seed fixes everything


# ----------------------------------------------------------------------------- statistics and verdict
def _records(ratio_N, gap, *, thresholds=(0.1, 0.03), control_ok=True):
    """Synthetic per-seed records: LB/SB ratio of lambda_N and SB-LB accuracy gap per seed."""
    out = []
    for seed, (r, g) in enumerate(zip(ratio_N, gap)):
        rows = []
        for key in [f"{t:g}" for t in thresholds] + ["end"]:
            base = {"seed": seed, "point": key, "reached": True, "trace": 1.0, "lambda_max": 1.0, "grad_norm": 1.0,
                    "lambda_R": 1.0, "keskar_0.001": 1.0, "keskar_0.001_sub": 1.0}
            rows.append({**base, "regime": "SB", "batch_size": 32, "lambda_N": 10.0, "test_acc": 0.7})
            rows.append({**base, "regime": "LB", "batch_size": 400, "lambda_N": 10.0 * r, "test_acc": 0.7 - g})
        ctrl = [{"rescaling": "none", "logit_change": 0.0, "lambda_max": 1.0, "lambda_R": 1.0, "lambda_N": 1.0},
                {"rescaling": "per-neuron", "logit_change": 1e-7, "lambda_max": 20.0, "lambda_R": 1.5,
                 "lambda_N": 1.0 if control_ok else 1.1}]
        out.append({"seed": seed, "rows": rows, "control": ctrl})
    return out


P = sm.Params(num_seeds=8, loss_thresholds=(0.1, 0.03))


@pytest.mark.parametrize("ratios, gaps, ok, expected", [
    ([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [0.05, 0.06, 0.04, 0.05, 0.03, 0.04, 0.05, 0.06], True, "reproduced"),
    ([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [0.05, 0.06, 0.04, 0.05, 0.03, 0.04, 0.05, 0.06], False, "inconclusive"),
    ([1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99], [0.05, 0.06, 0.04, 0.05, 0.03, 0.04, 0.05, 0.06], True,
     "not reproduced"),  # equivalence: no effect as large as log 1.25
    ([2.0, 0.5, 3.0, 0.4, 1.8, 0.6, 3.1, 0.5], [0.05, 0.06, 0.04, 0.05, 0.03, 0.04, 0.05, 0.06], True, "inconclusive"),
])
def test_verdict_combines_the_three_parts_with_the_decision_rule(ratios, gaps, ok, expected):
    agg = sm.aggregate(P, _records(ratios, gaps, control_ok=ok))
    assert isinstance(agg, Aggregate) and agg.verdict == expected
    assert [p.name[0] for p in agg.parts] == ["A", "B", "C"]
    assert all(p.statistic is not None and p.statistic.n == len(ratios) for p in agg.parts)
    assert agg.headline.value == pytest.approx(math.exp(np.mean(np.log(ratios))))
    assert agg.headline.scale == "log" and "205 vs 1.23" in agg.headline.paper


def test_a_seed_missing_the_smallest_threshold_is_dropped_and_said():
    recs = _records([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [0.05] * 8)
    for row in recs[2]["rows"]:
        if row["regime"] == "LB" and row["point"] == "0.03":
            row["reached"] = False
            row["lambda_N"] = row["test_acc"] = float("nan")
    agg = sm.aggregate(P, recs)
    a = agg.part("A")
    assert a.statistic.n == 7 and "missed loss 0.03" in a.reason


def test_results_record_carries_preregistration_parts_and_is_json_serialisable(tmp_path):
    from flatminima.protocol.record import read_results, write_results

    agg = sm.aggregate(P, _records([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [0.05] * 8))
    record = make_record(P, agg, preregistration=sm.PREREGISTRATION, deviations=(), runtime_s=1.0, device="cpu")
    back = read_results(write_results(record, tmp_path))
    assert back["criterion"] == sm.CRITERION and back["preregistration"]["seeds_needed"] >= 2
    assert len(back["parts"]) == 3 and back["verdict"] == "reproduced"
    assert "sweep" not in back["statistics"]  # no sweep run, none recorded


def test_facts_and_tables_hold_the_numbers_the_synthetic_records_were_built_with():
    # _records: every measure but lambda_N equal in SB and LB; the control moves lambda_max 20x, lambda_R 1.5x,
    # the logits by 1e-7
    sweep = pd.DataFrame([{"seed": 0, "regime": "B=64", "batch_size": 64, "point": "0.03", "reached": True}])
    agg = sm.aggregate(P, _records([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [0.05] * 8), sweep)
    f = agg.facts
    assert f["primary_point"] == "0.03" and f["keskar_ratio"] == pytest.approx(1.0)
    assert f["lambda_R_ratio"] == pytest.approx(1.0) and f["subspace_side"] == "below"
    assert f["logit_change"] == pytest.approx(1e-7) and f["lambda_R_move"] == pytest.approx(1.5)
    assert agg.statistics["sweep"] == [sweep.iloc[0].to_dict()]
    ctrl = agg.tables["control"].set_index("measure")["after / before"]
    assert ctrl["lambda_max"].tolist() == [20.0] * 8 and ctrl["lambda_N"].tolist() == [1.0] * 8
    assert agg.tables["parts"]["outcome"].tolist() == [p.outcome.value for p in agg.parts]
    assert set(agg.tables["summary_shown"]["measure"]) >= {"λ_N", "SB − LB test accuracy"}


def test_cpu_preset_has_the_seeds_its_preregistration_needs():
    cpu = resolve("sharp-minima", "cpu")
    assert cpu.num_seeds >= max(8, sm.PREREGISTRATION["seeds_needed"])
    assert list(cpu.seeds) == list(range(cpu.num_seeds))
    pilot = sm.PREREGISTRATION["pilot"]
    assert "500" in pilot["source"] and not set(range(500, 500 + pilot["n"])) & set(cpu.seeds)


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
    assert names == fields + ["device", "show_progress", "results_dir", "cache_dir", "workers"]
    assert lines[0].startswith('preset: str = "cpu"')
    assert all("= None  #" in ln for ln in lines[1:len(fields)])
    nxt = "".join(code[i + 1]["source"])
    assert "sharp_minima.Params.from_namespace(globals())" in nxt and "setup_device(device)" in nxt
    assert any("write_results(record, results_dir)" in "".join(c["source"]) for c in code)
    src = "".join("".join(c["source"]) for c in code)
    assert "replicates.run_seeds(sharp_minima.run_seed" in src and "workers=workers" in src
    assert "range(params.num_seeds)" not in src


def test_parts_carry_their_subclaims_and_decisions_and_part_b_is_an_estimate():
    from flatminima.protocol.contract import Role, verdict_of
    # A: clear effect; B: SB generalizes *worse* in every seed. B is an estimate: the verdict is A's (and C's)
    agg = sm.aggregate(P, _records([2.0, 3.0, 4.0, 2.5, 1.8, 2.2, 3.1, 2.7], [-0.05, -0.06, -0.04, -0.05] * 2))
    assert [p.subclaim for p in agg.parts] == list(sm.SUBCLAIMS)
    assert all(p.name.startswith(p.subclaim.key) for p in agg.parts)
    assert [p.role for p in agg.parts] == [Role.DECIDED, Role.ESTIMATE, Role.CONTROL]
    assert agg.part("A").decision is not None and agg.part("B").decision is not None and agg.part("C").decision is None
    assert agg.part("B").outcome == "not reproduced" and agg.verdict == "reproduced" == verdict_of(agg.parts)
    assert agg.part("B").decision.smallest_effect == pytest.approx(sm.GAP_SMALLEST_EFFECT)
    assert "verdict_of" in agg.criterion
