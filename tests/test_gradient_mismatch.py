"""The gradient-mismatch claim: parameters, verdict rules and the notebook contract."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from flatminima.claims import gradient_mismatch as gm
from flatminima.claims.registry import resolve
from flatminima.core.errors import ParameterError
from flatminima.core.io import jsonable
from flatminima.protocol.contract import Aggregate
from flatminima.protocol.record import make_record, read_results, write_results
from flatminima.stats.decision import Verdict

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "gradient-mismatch.ipynb"


@pytest.mark.parametrize("preset,num_seeds,part_a,part_b", [("smoke", 3, 2, 3), ("cpu", 23, 23, 6), ("paper", 20, 20, 5)])
def test_every_preset_validates_with_its_seed_counts(preset, num_seeds, part_a, part_b):
    p = resolve("gradient-mismatch", preset)
    assert (p.num_seeds, len(gm.part_a_seeds(p)), len(gm.part_b_seeds(p))) == (num_seeds, part_a, part_b)


def test_dataclass_defaults_are_the_cpu_preset():
    assert gm.Params.PRESETS["cpu"] == {}
    assert gm.Params.from_preset("cpu") == gm.Params()


@pytest.mark.parametrize("name,value,match", [
    ("surrogates", ["ste", "magic"], "allowed values"),
    ("precisions", ["binary", "ternary"], "must include 'full'"),
    ("surrogates", ["steep"], "must include 'ste'"),
    ("eps", -0.1, "must be >"),
    ("duo_arch", "vgg7", "cifar10"),
    ("coupled_widths", [10, 10, 10], "one width per"),
    ("part_a_seeds", 5, "cannot exceed"),
    ("part_b_seeds", 5, "cannot exceed"),
    ("eps_robustness", [0.1], "repeats the verdict eps"),
    ("duo_widths", [16], ">= 2 binary layers"),
])
def test_bad_parameters_fail_before_any_work(name, value, match):
    with pytest.raises(ParameterError, match=match):
        gm.Params.from_preset("smoke", **{name: value})


def _table(diff_per_seed, reliability=0.95, full=0.99, eps=(0.1, 0.03, 0.3)):
    """A synthetic Part A table: binary surrogates at 0.6..0.7, ternary at best binary + diff, at every eps."""
    rows = []
    for seed, d in enumerate(diff_per_seed):
        base = {"ste": 0.6, "steep": 0.65, "approxsign": 0.7, "swishsign": 0.68}
        configs = [("binary", s, c) for s, c in base.items()] + [("ternary", "ste", 0.7 + d), ("full", "ste", full)]
        for e in eps:
            for precision, s, c in configs:
                if precision == "full" and e != 0.1:
                    continue
                for layer, kind in ((1, "hidden"), (2, "hidden"), (3, "output")):
                    rows.append({"seed": seed, "precision": precision, "surrogate": s, "config": f"{precision}/{s}",
                                 "eps": e, "layer": layer, "kind": kind, "cosine": c if kind == "hidden" else 1.0,
                                 "reliability": reliability, "reliable": reliability >= 0.8})
    return pd.DataFrame(rows)


def _outcome_a(df, p):
    return gm.part_a_decision(df, p)[1]["outcome"]


def test_part_a_verdict_follows_the_stated_criterion():
    p = gm.Params.from_preset("cpu")
    rng = np.random.default_rng(0)
    assert _outcome_a(_table(0.2 + 0.02 * rng.standard_normal(10)), p) == "reproduced"
    assert _outcome_a(_table(-0.2 + 0.02 * rng.standard_normal(10)), p) == "not reproduced"
    # an effect within +-0.1 excluded by TOST: not reproduced (a null can be reported)
    assert _outcome_a(_table(0.01 * rng.standard_normal(10)), p) == "not reproduced"
    assert _outcome_a(_table([0.3, -0.2, 0.25, -0.1, 0.05, 0.1]), p) == "inconclusive"
    # an unreliable reference or a failed sanity row makes any difference inconclusive
    assert _outcome_a(_table(0.2 + 0.02 * rng.standard_normal(10), reliability=0.3), p) == "inconclusive"
    assert _outcome_a(_table(0.2 + 0.02 * rng.standard_normal(10), full=0.7), p) == "inconclusive"
    assert _outcome_a(_table([0.2, 0.21, 0.22]), p) == "inconclusive"  # fewer than 5 seeds


def test_gains_decompose_the_difference_and_d_is_reported_per_eps():
    p = gm.Params.from_preset("cpu")
    df = _table([0.1, -0.05, 0.2])
    g = gm.mismatch_gains(df, ("ste", "steep", "approxsign", "swishsign"), 0.1)
    assert np.allclose(g.precision_gain - g.surrogate_gain, g.difference)
    assert np.allclose(g.surrogate_gain, 0.1) and list(g.best_surrogate) == ["approxsign"] * 3
    by = gm.d_by_eps(df, p)
    assert list(by.eps) == [0.03, 0.1, 0.3] and by["verdict eps"].tolist() == [False, True, False]
    assert np.allclose(by.D, np.mean([0.1, -0.05, 0.2]))


def _duo(gains, diff=1e-7):
    n = len(gains)
    return pd.DataFrame({"seed": range(n), "acc_baseline": [0.5] * n, "acc_coupled_ternary": [0.6] * n,
                         "acc_right_after_decoupling": [0.6] * n, "acc_binaryduo": [0.5 + g / 100 for g in gains],
                         "gain": gains, "train_loss_baseline": [1.0] * n, "train_loss_binaryduo": [0.9] * n,
                         "train_acc_baseline": [0.5] * n, "train_acc_binaryduo": [0.55] * n,
                         "decoupling_max_abs_diff": [diff] * n, "weights_baseline": [100] * n,
                         "weights_binaryduo": [99] * n})


def test_part_b_verdict_and_decoupling_guard():
    out = lambda g: gm.part_b_decision(_duo(g))[1]["outcome"]  # noqa: E731
    assert out([2.0, 3.0, 2.5, 2.0, 3.0]) == "reproduced"
    assert out([-2.0, -3.0, -2.5, -2.0, -3.0]) == "not reproduced"
    assert out([0.1, -0.1, 0.05, -0.05, 0.0, 0.02]) == "not reproduced"  # TOST: below 1 point
    assert out([2.0, -3.0, 1.0, -1.0, 0.0]) == "inconclusive"
    assert out([2.0, 3.0]) == "inconclusive"  # fewer than 3 seeds
    with pytest.raises(RuntimeError, match="decoupling"):
        gm.part_b_decision(_duo([2.0, 3.0, 2.0], diff=0.1))


def test_aggregate_gives_parts_headline_facts_and_a_record(tmp_path):
    df = _table(0.2 + 0.01 * np.arange(10))
    duo = _duo([2.0 + 0.1 * i for i in range(12)])
    recs_a = [{"seed": s, "rows": g.drop(columns=["seed", "reliable"]).to_dict("records"), "eval_loss": {}}
              for s, g in df.groupby("seed")]
    records = [{"seed": s, "part_a": recs_a[s] if s < 10 else None, "part_b": duo.iloc[s].to_dict()} for s in range(12)]
    params = gm.Params.from_preset("cpu", num_seeds=12, part_a_seeds=10, part_b_seeds=12)
    agg = gm.aggregate(params, records)
    assert isinstance(agg, Aggregate) and agg.verdict is Verdict.REPRODUCED
    assert [q.name for q in agg.parts] == ["Part A", "Part B"]
    assert all(q.statistic.se > 0 for q in agg.parts)
    assert agg.headline.value == pytest.approx(np.mean(0.2 + 0.01 * np.arange(10))) and agg.headline.paper
    assert agg.statistics["es_diagnostic"] == []  # no record carried the diagnostic
    f = agg.facts
    assert (f["gm_n_a"], f["gm_n_b"], f["gm_best"], f["gm_eps"]) == (10, 12, "approxsign", "0.1")
    assert f["gm_gain"] == pytest.approx(2.55) and f["gm_M_ter"] == pytest.approx(0.945)
    assert f["gm_M_ste"] == pytest.approx(0.6) and f["gm_M_best"] == pytest.approx(0.7)
    assert f["gm_frac"] == 100 and f["gm_failing"] == 0 and f["gm_refs"] == 10 * 3 * 3  # seeds x precisions x layers
    assert f["gm_tl_diff"] == pytest.approx(-0.1) and f["gm_pos"] == 100
    assert list(agg.tables["per_layer"]["config"])[0] == "full/ste"
    record = make_record(params, agg, preregistration=gm.PREREGISTRATION, deviations=(), runtime_s=1.0, device="cpu")
    assert record["verdict"] == "reproduced" and record["facts"]["gm_best"] == "approxsign"
    assert record["parts"][1]["statistic"]["n"] == 12
    json.dumps(record)
    assert read_results(write_results(record, tmp_path))["verdict"] == "reproduced"


def test_cpu_preset_meets_both_preregistrations():
    from flatminima.stats.power import check_seeds, seeds_for_power

    p = gm.Params.from_preset("cpu")
    assert p.part_b_seeds >= gm.PREREGISTRATION_B["seeds_needed"]
    need_a = gm.PREREGISTRATION["seeds_needed"]
    assert need_a == seeds_for_power(gm.SMALLEST_EFFECT_A, gm.PREREGISTRATION["pilot"]["sd"])
    assert p.part_a_seeds >= need_a and check_seeds(gm.PREREGISTRATION, p.part_a_seeds) == ""
    assert f"{need_a} Part A seeds" in gm.PREREGISTRATION["budget_note"]
    assert f"uses {p.part_a_seeds}" in gm.PREREGISTRATION["budget_note"]


def test_seeds_shift_both_parts_and_stay_disjoint_from_the_pilots():
    p = gm.Params.from_preset("cpu")
    q = gm.Params.from_preset("cpu", seeds=list(range(1000, 1000 + p.num_seeds)))
    assert gm.part_a_seeds(q) == tuple(range(1000, 1000 + p.part_a_seeds)) and q.seeds[0] == 1000
    assert gm.part_b_seeds(q) == tuple(range(1000, 1000 + p.part_b_seeds))
    assert set(gm.TUNING_SEEDS).isdisjoint(p.seeds) and set(gm.TUNING_SEEDS).isdisjoint(q.seeds)
    for pre in (gm.PREREGISTRATION, gm.PREREGISTRATION_B):
        assert pre["pilot"]["source"] and pre["pilot"]["sd"] > 0


def test_surrogate_names_carry_the_tuned_shapes():
    p = gm.Params.from_preset("smoke", steep_slope=3.0, approxsign_width=0.5, swish_beta=2.0)
    assert gm.surrogate_names(p) == {"ste": "ste", "steep": "steep@3", "approxsign": "approxsign@0.5",
                                     "swishsign": "swishsign@2"}


def test_generated_tasks_are_seeded_locally():
    import torch

    p = gm.Params.from_preset("smoke")
    state = torch.get_rng_state()
    a = gm.teacher_classification(p, 3, torch.device("cpu"))
    b = gm.teacher_student(p, 3, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a, gm.teacher_classification(p, 3, torch.device("cpu"))))
    assert not torch.equal(a[1], gm.teacher_classification(p, 4, torch.device("cpu"))[1])
    assert len(a[2]) == p.duo_test_samples and len(b[2]) == p.eval_samples
    counts = torch.bincount(a[1], minlength=10)
    assert (counts > 0).sum() >= 5  # a teacher that uses several classes


def _tiny():
    return gm.Params.from_preset("smoke", num_seeds=2, part_a_seeds=2, part_b_seeds=2, input_dim=4, widths=[4], train_samples=200,
                                 student_steps=5, eval_samples=2000, full_eval_samples=500, coords_per_layer=4,
                                 es_directions=4, duo_widths=[8, 8], duo_train_samples=512, duo_test_samples=256,
                                 num_epochs=1, finetune_epochs=1)


def test_a_tiny_run_produces_a_valid_record_and_reuses_its_cache(tmp_path):
    import torch

    p = _tiny()
    records = gm.run_parts(p, cache_dir=tmp_path / "seeds", workers=1)
    df = gm.mismatch_table([r["part_a"] for r in records], p)
    assert set(df.config) == {"full/ste", "binary/ste", "binary/steep", "binary/approxsign", "binary/swishsign",
                              "ternary/ste", "2bit/ste"}
    assert set(df[df.precision.isin(["binary", "ternary"])].eps) == {p.eps, *p.eps_robustness}
    assert set(df[df.precision == "full"].eps) == {p.eps}
    assert df.cosine.between(-1, 1).all()
    duo = pd.DataFrame([r["part_b"] for r in records])
    assert (duo.decoupling_max_abs_diff < 1e-6).all()
    assert (duo.acc_coupled_ternary == duo.acc_right_after_decoupling).all()
    es = records[0]["es_diagnostic"]  # the first seed carries the Gaussian-smoothing diagnostic
    assert records[1]["es_diagnostic"] is None
    assert {r["precision"] for r in es} == {"full", "binary"} and len(es) == 2 * (len(p.widths) + 1)
    agg = gm.aggregate(p, records)
    assert agg.statistics["es_diagnostic"] == es and len(agg.tables["es_diagnostic"]) == len(es)
    record = make_record(p, agg, preregistration=gm.PREREGISTRATION, deviations=(), runtime_s=1.0, device="cpu")
    assert read_results(write_results(record, tmp_path))["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert len(list((tmp_path / "seeds" / "gradient-mismatch").glob("seed-*.json"))) == 5  # 2 seeds x 2 parts + ES
    assert gm.run_parts(p, cache_dir=tmp_path / "seeds", workers=1) == records  # read back, not recomputed
    # the contract's run_seed gives the same record for a seed as run_parts
    assert jsonable(gm.run_seed(p, p.seeds[0], torch.device("cpu"))) == records[0]
    tune = gm.tuning_table([gm.run_tuning_seed(p, 500, torch.device("cpu"))])
    assert set(tune.family) == {"ste", *gm.TUNING_GRID} and tune.M.between(-1, 1).all()


def test_notebook_parameters_cell_declares_every_field():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    names = [ln.split(":")[0].strip() for ln in lines]
    fields = [f for f in gm.Params.field_names() if f != "preset"]
    assert names[:len(fields) + 1] == ["preset", *fields]
    assert set(names[len(fields) + 1:]) == {"device", "show_progress", "results_dir", "cache_dir", "workers"}
    nxt = code[code.index(tagged[0]) + 1].source
    assert "Params.from_namespace(globals())" in nxt and "setup_device(device)" in nxt
    assert any("write_results(record, results_dir)" in c.source for c in code)
    assert any("glue_record(record)" in c.source for c in code)
    assert any("cache_dir_for(results_dir, cache_dir)" in c.source for c in code)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in code)


def test_paper_path_trains_and_decouples_a_tiny_vgg7(monkeypatch):
    import torch

    from flatminima.data.loaders import Dataset

    def fake_cifar(name, seed=0, **kw):
        g = torch.Generator().manual_seed(seed)
        return Dataset(name, torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g),
                       torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g), 10)

    monkeypatch.setattr(gm, "load_dataset", fake_cifar)
    p = gm.Params.from_preset("paper", duo_widths=[4, 4, 8, 8, 8], coupled_widths=[3, 3, 6, 6, 6], num_epochs=1,
                              finetune_epochs=1, batch_size=32)
    row = gm.run_seed_b(p, 0, torch.device("cpu"))
    assert row["decoupling_max_abs_diff"] < 1e-6
    assert 0.0 <= row["acc_binaryduo"] <= 1.0



def test_parts_carry_their_subclaims_and_both_are_decided_under_holm():
    from flatminima.protocol.contract import Role, verdict_of
    df = _table(0.2 + 0.01 * np.arange(10))
    duo = _duo([2.0 + 0.1 * i for i in range(12)])
    recs_a = [{"seed": s, "rows": g.drop(columns=["seed", "reliable"]).to_dict("records"), "eval_loss": {}}
              for s, g in df.groupby("seed")]
    records = [{"seed": s, "part_a": recs_a[s] if s < 10 else None, "part_b": duo.iloc[s].to_dict()} for s in range(12)]
    params = gm.Params.from_preset("cpu", num_seeds=12, part_a_seeds=10, part_b_seeds=12)
    agg = gm.aggregate(params, records)
    assert [q.subclaim for q in agg.parts] == list(gm.SUBCLAIMS)
    assert all(q.name.startswith(f"Part {q.subclaim.key}") for q in agg.parts)
    assert [q.role for q in agg.parts] == [Role.DECIDED, Role.DECIDED]
    assert all(q.decision is not None for q in agg.parts) and agg.verdict == verdict_of(agg.parts)
    assert agg.statistics["verdict_part_a"] == agg.parts[0].outcome
    # an unreliable reference gates Part A: inconclusive, no Decision for Holm, so the verdict is inconclusive
    bad = _table(0.2 + 0.01 * np.arange(10), reliability=0.5)
    recs_bad = [{"seed": s, "rows": g.drop(columns=["seed", "reliable"]).to_dict("records"), "eval_loss": {}}
                for s, g in bad.groupby("seed")]
    agg = gm.aggregate(params, [{**r, "part_a": recs_bad[s] if s < 10 else None} for s, r in enumerate(records)])
    assert agg.part("Part A").decision is None and agg.verdict == "inconclusive"
