"""The gradient-mismatch claim: parameters, verdict rules and the notebook contract."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from flatminima.claims import gradient_mismatch as gm
from flatminima.params import ParameterError
from flatminima.presets import resolve

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "gradient-mismatch.ipynb"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_preset_validates(preset):
    p = resolve("gradient-mismatch", preset)
    assert p.preset == preset


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
])
def test_bad_parameters_fail_before_any_work(name, value, match):
    with pytest.raises(ParameterError, match=match):
        gm.Params.from_preset("smoke", **{name: value})


def _table(diff_per_seed, reliability=0.95, full=0.99):
    """A synthetic Part A table: binary surrogates at 0.6..0.7, ternary at best binary + diff."""
    rows = []
    for seed, d in enumerate(diff_per_seed):
        base = {"ste": 0.6, "steep": 0.65, "approxsign": 0.7, "swishsign": 0.68}
        configs = [("binary", s, c) for s, c in base.items()] + [("ternary", "ste", 0.7 + d), ("full", "ste", full)]
        for precision, s, c in configs:
            for layer, kind in ((1, "hidden"), (2, "hidden"), (3, "output")):
                rows.append({"seed": seed, "precision": precision, "surrogate": s, "config": f"{precision}/{s}",
                             "layer": layer, "kind": kind, "cosine": c if kind == "hidden" else 1.0,
                             "reliability": reliability, "reliable": reliability >= 0.8})
    return pd.DataFrame(rows)


def test_part_a_verdict_follows_the_stated_criterion():
    p = gm.Params.from_preset("smoke")
    rng = np.random.default_rng(0)
    assert gm.mismatch_verdict(_table(0.1 + 0.01 * rng.standard_normal(10)), p)[0] == "reproduced"
    assert gm.mismatch_verdict(_table(-0.1 + 0.01 * rng.standard_normal(10)), p)[0] == "not reproduced"
    assert gm.mismatch_verdict(_table(0.05 * rng.standard_normal(10)), p)[0] == "inconclusive"
    # an unreliable reference or a failed sanity row makes any difference inconclusive
    assert gm.mismatch_verdict(_table(0.1 + 0.01 * rng.standard_normal(10), reliability=0.3), p)[0] == "inconclusive"
    assert gm.mismatch_verdict(_table(0.1 + 0.01 * rng.standard_normal(10), full=0.7), p)[0] == "inconclusive"


def test_gains_decompose_the_difference():
    g = gm.mismatch_gains(_table([0.1, -0.05]), ("ste", "steep", "approxsign", "swishsign"))
    assert np.allclose(g.precision_gain - g.surrogate_gain, g.difference)
    assert np.allclose(g.surrogate_gain, 0.1) and list(g.best_surrogate) == ["approxsign"] * 2


def _duo(gains, diff=1e-7):
    n = len(gains)
    return pd.DataFrame({"seed": range(n), "acc_baseline": [0.5] * n, "acc_coupled_ternary": [0.6] * n,
                         "acc_right_after_decoupling": [0.6] * n, "acc_binaryduo": [0.5 + g for g in gains],
                         "gain": gains, "decoupling_max_abs_diff": [diff] * n, "weights_baseline": [100] * n,
                         "weights_binaryduo": [99] * n})


def test_part_b_verdict_and_decoupling_guard():
    assert gm.duo_verdict(_duo([0.02, 0.03, 0.025, 0.02, 0.03]))[0] == "reproduced"
    assert gm.duo_verdict(_duo([-0.02, -0.03, -0.025, -0.02, -0.03]))[0] == "not reproduced"
    assert gm.duo_verdict(_duo([0.02, -0.03, 0.01, -0.01, 0.0]))[0] == "inconclusive"
    with pytest.raises(RuntimeError, match="decoupling"):
        gm.duo_verdict(_duo([0.02, 0.03, 0.02], diff=0.1))


def test_overall_verdict_needs_both_parts():
    assert gm.combine_verdicts("reproduced", "reproduced") == "reproduced"
    assert gm.combine_verdicts("reproduced", "inconclusive") == "inconclusive"
    assert gm.combine_verdicts("inconclusive", "not reproduced") == "not reproduced"


def test_a_tiny_run_produces_a_valid_record(tmp_path):
    import torch

    from flatminima.results import read_results, write_results

    p = gm.Params.from_preset("smoke", num_seeds=2, input_dim=4, widths=[4], train_samples=200, student_steps=5,
                              eval_samples=2000, full_eval_samples=500, coords_per_layer=4, es_directions=4,
                              duo_seeds=2, duo_widths=[8], num_epochs=1, finetune_epochs=1)
    dev = torch.device("cpu")
    mm, es = gm.run_mismatch(p, device=dev)
    assert set(mm.config) == {"full/ste", "binary/ste", "binary/steep", "binary/approxsign", "binary/swishsign",
                              "ternary/ste", "2bit/ste"}
    assert mm.cosine.between(-1, 1).all() and len(es) == 4
    duo = gm.run_duo(p, device=dev)
    assert (duo.decoupling_max_abs_diff < 1e-6).all()
    assert ((duo.acc_coupled_ternary - duo.acc_right_after_decoupling).abs() < 0.003).all()
    record = gm.summarize(p, mm, es, duo, runtime_s=1.0, device=dev)
    path = write_results(record, tmp_path)
    assert read_results(path)["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    json.dumps(record)


def test_notebook_parameters_cell_declares_every_field():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    names = [ln.split(":")[0].strip() for ln in lines]
    fields = [f for f in gm.Params.field_names() if f != "preset"]
    assert names == ["preset", *fields, "device", "show_progress", "results_dir"]
    assert all("= None" in ln and "#" in ln for ln in lines[1:-3])
    nxt = code[code.index(tagged[0]) + 1].source
    assert "Params.from_namespace(globals())" in nxt and "setup_device(device)" in nxt
    assert any("write_results(record, results_dir)" in c.source for c in code)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") for c in code)


def test_paper_path_trains_and_decouples_a_tiny_vgg7(monkeypatch):
    import torch

    from flatminima.data import Dataset

    def fake_cifar(name, seed=0, **kw):
        g = torch.Generator().manual_seed(seed)
        return Dataset(name, torch.rand(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g),
                       torch.rand(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g), 10)

    monkeypatch.setattr(gm, "load_dataset", fake_cifar)
    p = gm.Params.from_preset("paper", duo_widths=[4, 4, 8, 8, 8], coupled_widths=[3, 3, 6, 6, 6], num_epochs=1,
                              finetune_epochs=1, batch_size=32, duo_seeds=1)
    row = gm.run_duo_seed(p, 0, torch.device("cpu"))
    assert row["decoupling_max_abs_diff"] < 1e-6
    assert 0.0 <= row["acc_binaryduo"] <= 1.0
