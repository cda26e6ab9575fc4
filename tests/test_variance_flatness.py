"""Tests of the variance-flatness chapter: parameters, verdict logic, a tiny end-to-end run, notebook contract."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flatminima.claims import variance_flatness as vf
from flatminima.params import ParameterError
from flatminima.results import validate_results
from flatminima.trajectory import fit_power_law

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "variance-flatness.ipynb"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_preset_validates(preset):
    p = vf.Params.from_preset(preset)
    assert p.preset == preset


def test_dataclass_defaults_are_the_cpu_preset():
    defaults = vf.Params()
    assert vf.Params.from_preset("cpu").to_dict() == defaults.to_dict()
    assert defaults.dataset == "digits" and defaults.widths == (50, 50) and defaults.lr == 0.1


@pytest.mark.parametrize("overrides, name", [
    ({"fit_components": (2, 300)}, "fit_components"),
    ({"fit_components": (5, 3)}, "fit_components"),
    ({"weights": "middle"}, "weights"),
    ({"psi_band": (6.0, 2.0)}, "psi_band"),
    ({"widths": (50,)}, "weights"),
    ({"profile_components": (2, 500)}, "profile_components"),
    ({"loss_level": 1.0}, "loss_level"),
    ({"control_steps": 500}, "control_steps"),
])
def test_bad_parameters_fail_naming_the_parameter(overrides, name):
    with pytest.raises(ParameterError, match=name):
        vf.Params.from_preset("cpu", **overrides)


def _fake_run(mode: str, seed: int, psi: float, noise: float = 0.05) -> vf.SpectrumRun:
    rng = np.random.default_rng(seed)
    F = np.geomspace(0.5, 10, 30)
    s2 = F ** (-psi) * np.exp(noise * rng.standard_normal(30))
    fit = fit_power_law(F, s2, components=(2, 30), seed=seed)
    return vf.SpectrumRun(mode=mode, seed=seed, lr=0.1, batch_size=50, temperature=1e-6, L0=1e-3, train_acc=1.0,
                          test_acc=0.97, train_acc_start=1.0, num_records=100, sigma2=s2, widths=F,
                          theta_left=-F / 2, theta_right=F / 2, fit=fit, gap=10.0)


def _study(sgd_psi, control_psi, sweep_psi=()):
    return vf.Study(sgd=[_fake_run("sgd", i, p) for i, p in enumerate(sgd_psi)],
                    control=[_fake_run("langevin", i, p) for i, p in enumerate(control_psi)],
                    sweep=[_fake_run("sgd-sweep", 0, p) for p in sweep_psi], seconds=1.0)


@pytest.mark.parametrize("sgd_psi, control_psi, sweep_psi, expected", [
    ([4.0, 4.3, 3.8], [-2.0, -2.5, -1.8], [4.1], "reproduced"),
    ([4.0, 4.3, 3.8], [2.0, 2.5, 1.8], [4.1], "not reproduced"),  # control also inverse: not SGD-specific
    ([0.5, 0.3, 4.0], [-2.0, -2.5, -1.8], [], "not reproduced"),  # most seeds outside the band
    ([4.0, 4.3, 3.8], [-2.0, 1.5, -0.5], [], "inconclusive"),  # control CI straddles 0
    ([4.0, 4.3, 3.8], [-2.0, -2.5, -1.8], [7.5], "not reproduced"),  # psi moves with lr/B
])
def test_verdict_follows_the_stated_criterion(sgd_psi, control_psi, sweep_psi, expected):
    params = vf.Params.from_preset("cpu", num_seeds=3)
    study = _study(sgd_psi, control_psi, sweep_psi)
    out = vf.verdict(study, params)
    assert out["verdict"] == expected
    record = vf.make_results(study, params, "cpu")
    validate_results(record)
    assert record["verdict"] == expected
    json.dumps(record)


def test_a_tiny_run_produces_finite_spectra_fits_and_a_valid_record():
    params = vf.Params.from_preset("smoke", num_seeds=1, pretrain_epochs=3, window_epochs=1, num_components=12,
                                   fit_components=(2, 12), profile_components=(2, 5), control_steps=130,
                                   control_record_every=10, sweep_lrs=(0.2,), sweep_batch_sizes=(),
                                   num_bisect=8)
    study = vf.run_study(params, device=torch.device("cpu"))
    assert [r.mode for r in study.runs] == ["sgd", "langevin", "sgd-sweep"]
    for r in study.runs:
        assert r.sigma2.shape == (12,) and np.all(np.diff(r.sigma2) <= 0)
        assert np.isfinite(r.fit.psi) and r.fit.n + r.fit.n_dropped == 11
        assert np.all(r.theta_left[np.isfinite(r.widths)] < 0) and np.all(r.theta_right[np.isfinite(r.widths)] > 0)
        assert r.temperature > 0 and r.L0 > 0
    assert study.control[0].temperature == study.sgd[0].temperature  # matched (scale 1)
    assert set(study.sgd[0].profiles["component"]) == {2, 5}
    temps = vf.temperature_frame(study).set_index("lr")
    assert len(temps) == 2  # baseline and the sweep point, both measured at seed 0's weights
    assert temps.loc[0.2, "temperature_fixed"] == pytest.approx(2 * temps.loc[0.1, "temperature_fixed"], rel=1e-6)
    assert temps.loc[0.1, "temperature_own"] == study.sgd[0].temperature
    frame = vf.spectrum_frame(study)
    assert len(frame) == 3 * 12 and frame["fitted"].sum() == 3 * 11
    validate_results(vf.make_results(study, params, "cpu"))


def test_notebook_declares_every_parameter_then_validates_first():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    src = "".join(code[0]["source"])
    declared = [line.split(":")[0] for line in src.splitlines() if line.strip()]
    fields = [f.name for f in dataclasses.fields(vf.Params) if f.name != "preset"]
    assert declared == ["preset", *fields, "device", "show_progress", "results_dir"]
    nxt = "".join(code[1]["source"])
    assert "Params.from_namespace(globals())" in nxt and "setup_device(device)" in nxt
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in code)
    assert any("write_results(" in "".join(c["source"]) for c in code)
