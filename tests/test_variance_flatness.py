"""Tests of the variance-flatness chapter: parameters, the decision from per-seed records, a tiny
end-to-end seed and sweep point, and the notebook contract."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from flatminima.claims import variance_flatness as vf
from flatminima.core.errors import ParameterError
from flatminima.protocol.params import RUN_CONTROLS
from flatminima.protocol.record import make_record, validate_results

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "variance-flatness.ipynb"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_preset_validates(preset):
    p = vf.Params.from_preset(preset)
    expected = {"smoke": ("digits", 3, (3, 6)), "cpu": ("digits", 6, (10, 30, 100)),
                "paper": ("mnist", 10, (10, 30, 100))}
    assert (p.dataset, p.num_seeds, p.window_sweep_epochs) == expected[preset]
    assert list(p.seeds) == list(range(p.num_seeds))


def test_dataclass_defaults_are_the_cpu_preset_with_enough_seeds_for_the_preregistration():
    defaults = vf.Params()
    assert vf.Params.from_preset("cpu").to_dict() == defaults.to_dict()
    assert defaults.dataset == "digits" and defaults.widths == (50, 50) and defaults.lr == 0.1
    pre = vf.PREREGISTRATION

    def power(n):  # one-sided one-sample t-test at alpha 0.05, effect 0.5, pilot sd 0.165 (noncentral t)
        return float(sps.nct.sf(sps.t.ppf(0.95, n - 1), n - 1, 0.5 / 0.165 * np.sqrt(n)))

    n = pre["seeds_needed"]
    assert power(n) >= 0.8 and (n == 2 or power(n - 1) < 0.8)
    assert defaults.num_seeds >= pre["seeds_needed"]
    assert not set(defaults.seeds) & set(range(500, 500 + pre["pilot"]["n"]))  # pilot seeds are disjoint


@pytest.mark.parametrize("overrides, name", [
    ({"fit_components": (2, 300)}, "fit_components"),
    ({"fit_components": (5, 3)}, "fit_components"),
    ({"weights": "middle"}, "weights"),
    ({"psi_band": (6.0, 2.0)}, "psi_band"),
    ({"widths": (50,)}, "weights"),
    ({"profile_components": (2, 500)}, "profile_components"),
    ({"loss_level": 1.0}, "loss_level"),
    ({"control_steps": 200}, "control_steps"),
    ({"window_sweep_epochs": (30, 100)}, "window_sweep_epochs"),
    ({"control_restraint": 0.0}, "control_restraint"),
])
def test_bad_parameters_fail_naming_the_parameter(overrides, name):
    with pytest.raises(ParameterError, match=name):
        vf.Params.from_preset("cpu", **overrides)


def _record(seed: int, psi: float, control_slope: float, *, rho: float = -0.98, stationary: bool = True) -> dict:
    window = {"psi": psi, "rho": rho, "gap": 80.0, "L0": 3e-3, "window_epochs": 10}
    return {"seed": seed, "primary": {**window, "sigma2": [1.0] * 5, "widths": [1.0] * 5},
            "windows": [window, {**window, "window_epochs": 30, "psi": psi - 0.6}],
            "null": {"psi": 5.0, "rho": -0.95, "sigma2": [1.0] * 5, "widths": [1.0] * 5},
            "noise": {"kappa": 2.5, "T_i": [1.0] * 5},
            "control": {"slope": control_slope, "predicted_slope": 1.8, "rho": 0.9, "equipartition_median": 0.6,
                        "stationary": stationary, "sigma2": [1.0] * 5, "widths": [1.0] * 5,
                        "U_series": [0.0, 1.0, 2.0]},
            "seconds": 1.0}


def _records(psis, slopes, **kw):
    rng = np.random.default_rng(0)
    return [_record(i, p + 0.05 * rng.standard_normal(), s + 0.1 * rng.standard_normal(), **kw)
            for i, (p, s) in enumerate(zip(psis, slopes))]


@pytest.mark.parametrize("psis, slopes, kw, expected, parts", [
    ([4.0, 4.3, 3.8, 4.1], [3.0, 3.5, 2.8, 3.2], {}, "reproduced", ("reproduced", "reproduced")),
    ([4.0, 4.3, 3.8, 4.1], [-2.0, -2.5, -1.8, -2.2], {}, "inconclusive", ("reproduced", "not reproduced")),  # failed control
    ([7.0, 7.3, 6.8, 7.1], [3.0, 3.5, 2.8, 3.2], {}, "not reproduced", ("not reproduced", "reproduced")),
    ([4.0, 4.3, 3.8, 4.1], [3.0, 3.5, 2.8, 3.2], {"rho": -0.5}, "not reproduced", ("not reproduced", "reproduced")),
    ([4.0, 4.3, 3.8, 4.1], [3.0, 3.5, 2.8, 3.2], {"stationary": False}, "inconclusive",
     ("reproduced", "inconclusive")),
    ([4.0, 4.3, 3.8, 4.1], [2.0, -1.0, 1.5, -0.4], {}, "inconclusive", ("reproduced", "inconclusive")),
])
def test_verdict_follows_the_stated_criterion(psis, slopes, kw, expected, parts):
    params = vf.Params.from_preset("cpu", num_seeds=len(psis))
    recs = _records(psis, slopes, **kw)
    agg = vf.aggregate(params, recs)
    assert agg.verdict == expected
    assert tuple(p.outcome for p in agg.parts) == parts
    assert all(p.statistic.se > 0 for p in agg.parts)
    record = make_record(params, agg, preregistration=vf.PREREGISTRATION, deviations=(), runtime_s=1.0, device="cpu")
    validate_results(record)
    assert record["verdict"] == expected and record["statistics"]["sweep"] == []
    stationary = 0 if kw.get("stationary") is False else len(psis)
    assert f"{stationary}/{len(psis)} controls stationary" in record["notes"]
    assert record["headline"]["value"] == pytest.approx(np.mean([r["primary"]["psi"] for r in recs]))
    json.dumps(record, allow_nan=False)


def test_part_a_effect_is_the_distance_inside_the_band():
    params = vf.Params.from_preset("cpu", num_seeds=3)
    agg = vf.aggregate(params, [_record(i, p, 3.0 + i) for i, p in enumerate([3.0, 5.5, 4.0])])
    assert agg.part("Part A").statistic.value == pytest.approx(np.mean([1.0, 0.5, 2.0]))
    assert agg.statistics["psi_by_window"][30]["estimate"] == pytest.approx(np.mean([3.0, 5.5, 4.0]) - 0.6)


def test_facts_hold_the_numbers_the_records_were_built_with():
    # _record: null psi 5.0 in every seed, kappa 2.5, control rho 0.9 and equipartition 0.6, 1 second per seed
    params = vf.Params.from_preset("cpu", num_seeds=3)
    recs = [_record(i, p, 3.0 + i) for i, p in enumerate([3.0, 5.5, 4.0])]
    sweep = pd.DataFrame([{"lr": 0.1, "batch_size": 50, "epochs": 7, "start_loss": 0.02, "psi": 4.2, "rho": -0.9}])
    f = vf.aggregate(params, recs, sweep).facts
    assert f["psi_null"] == pytest.approx(5.0) and f["kappa_ci"] == "2.50 [2.50, 2.50]"
    assert f["null_share"] == f"{5.0 / np.mean([3.0, 5.5, 4.0]):.0%}" and f["null_text"].startswith("So much")
    assert f["control_rho"] == pytest.approx(0.9) and "fall short of $T/h_i$" in f["equipartition_text"]
    assert f["n_stationary"] == 3 and f["compute_minutes"] == pytest.approx(3 / 60)
    assert f["window_trend"] == "Longer windows give smaller exponents."  # the 30-epoch window is 0.6 lower
    assert f["sweep_text"] == "4.20 ($\\alpha$ = 0.1, $B$ = 50)" and f["sweep_loss"] == "0.02 to 0.02"


TINY = dict(num_seeds=1, pretrain_epochs=4, window_epochs=2, window_sweep_epochs=(2, 4), num_components=12,
            fit_components=(2, 12), profile_components=(2, 5), control_steps=150, control_record_every=1,
            stationarity_blocks=5, num_bisect=8, noise_epochs=2, sweep_lrs=(0.2,), sweep_batch_sizes=(),
            matched_loss=0.5, matched_max_epochs=20)


def test_a_tiny_seed_gives_finite_fits_for_every_part_and_is_reproducible():
    params = vf.Params.from_preset("smoke", **TINY)
    rec = vf.run_seed(params, 7, torch.device("cpu"))
    json.dumps(rec, allow_nan=False)
    assert [w["window_epochs"] for w in rec["windows"]] == [2, 4]
    assert rec["windows"][1]["stride"] == 2 and rec["windows"][1]["num_records"] == rec["windows"][0]["num_records"]
    s2 = np.array(rec["primary"]["sigma2"])
    assert s2.shape == (12,) and np.all(np.diff(s2) <= 0)
    for value in (rec["primary"]["psi"], rec["null"]["psi"], rec["noise"]["kappa"], rec["control"]["slope"],
                  rec["control"]["predicted_slope"]):
        assert np.isfinite(value)
    assert len(rec["noise"]["T_i"]) == 12 and min(rec["noise"]["T_i"]) > 0
    c = rec["control"]
    assert c["temperature"] == rec["temperature"] and c["num_records"] + c["burn_in_records"] == 150
    assert isinstance(c["stationary"], bool) and len(c["curvature"]) == 12
    again = vf.run_seed(params, 7, torch.device("cpu"))
    assert again["primary"]["psi"] == rec["primary"]["psi"] and again["control"]["slope"] == c["slope"]


def test_a_matched_loss_sweep_point_starts_its_window_at_the_matched_loss():
    params = vf.Params.from_preset("smoke", **TINY)
    row = vf.run_sweep_point(params, 3, torch.device("cpu"), lr=0.2, batch_size=50)
    assert row["reached"] and row["start_loss"] <= 0.5 and row["epochs"] <= 20
    assert np.isfinite(row["psi"])


def test_notebook_declares_every_parameter_then_validates_first():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    src = "".join(code[0]["source"])
    declared = [line.split(":")[0] for line in src.splitlines() if line.strip()]
    fields = [f.name for f in dataclasses.fields(vf.Params) if f.name != "preset"]
    assert set(declared) == {"preset", *fields, *RUN_CONTROLS}
    nxt = "".join(code[1]["source"])
    assert "Params.from_namespace(globals())" in nxt
    assert all(not c.get("outputs") for c in code)
    joined = "".join("".join(c["source"]) for c in code)
    assert "write_results(" in joined and "run_seeds(" in joined and "workers=workers" in joined
    assert "print(" not in joined and "display(Markdown" not in joined  # prose lives in Markdown with glue


def test_parts_carry_their_subclaims_and_a_gated_part_carries_no_decision():
    from flatminima.protocol.contract import Role, verdict_of
    params = vf.Params.from_preset("cpu", num_seeds=4)
    agg = vf.aggregate(params, _records([4.0, 4.3, 3.8, 4.1], [3.0, 3.5, 2.8, 3.2]))
    assert [p.subclaim for p in agg.parts] == list(vf.SUBCLAIMS)
    assert all(p.name.startswith(f"Part {p.subclaim.key}") for p in agg.parts)
    assert [p.role for p in agg.parts] == [Role.DECIDED, Role.CONTROL]
    assert all(p.decision is not None for p in agg.parts) and agg.verdict == verdict_of(agg.parts)
    gated = vf.aggregate(params, _records([4.0, 4.3, 3.8, 4.1], [3.0, 3.5, 2.8, 3.2], rho=-0.5))
    assert gated.part("Part A").decision is None and gated.part("Part A").outcome == "not reproduced"
    assert gated.statistics["outcomes"]["A"] == "not reproduced"
