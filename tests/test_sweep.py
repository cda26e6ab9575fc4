"""`flatminima sweep`: grid x seeds through submitit's local executor, resume, retries, tables, page.

The sweeps run a toy claim (tests/sweep_toy.py) registered for the test, whose per-seed record
has a closed-form field, so the per-cell statistics are checked against an independent
Student-t computation.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from flatminima import cli
from flatminima.claims import registry as presets
from flatminima.core.errors import ParameterError
from flatminima.protocol import cache, replicates
from flatminima.run import sweep as sw
from flatminima.run.sweep import execute as sw_execute

from . import sweep_toy as toy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_claim(monkeypatch):
    """Register the toy claim and let submitit's worker processes import it."""
    monkeypatch.setitem(presets.CLAIMS, "toy", "tests.sweep_toy")
    path = os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    return "toy"


def _records(cache: Path) -> list[Path]:
    return sorted((cache / "toy").glob("seed-*.json"))


# ----------------------------------------------------------------------------- the grid
def test_parse_grid_reads_yaml_values_and_lists():
    grid = sw.parse_grid(["lr=0.1, 0.05", "batch_size=8,16", "widths=[[64, 64], [128]]", "dataset=mnist1d"])
    assert grid == {"lr": [0.1, 0.05], "batch_size": [8, 16], "widths": [[64, 64], [128]], "dataset": ["mnist1d"]}


@pytest.mark.parametrize("spec, message", [("lr", "NAME=V1,V2"), ("lr=", "NAME=V1,V2"),
                                           ("lr=0.1,0.1", "repeats a value"), ("lr=[0.1", "not a valid YAML value"), ("lr=0.1,[", "not a valid YAML value")])
def test_parse_grid_rejects_malformed_specs(spec, message):
    with pytest.raises(ParameterError, match=message):
        sw.parse_grid([spec])


def test_parse_grid_rejects_a_name_given_twice():
    with pytest.raises(ParameterError, match="twice"):
        sw.parse_grid(["lr=0.1", "lr=0.2"])


def test_plan_is_the_cartesian_product_times_seeds_with_replicates_keys(toy_claim):
    plan = sw.plan(toy_claim, {"lr": [0.1, 0.2], "batch_size": [8, 16, 32]}, seeds="5-6")
    assert len(plan.cells) == 6 and len(plan.points) == 12 and plan.seeds == (5, 6)
    assert [(p.values["lr"], p.values["batch_size"], p.seed) for p in plan.points[:3]] == [(0.1, 8, 5), (0.1, 8, 6), (0.1, 16, 5)]
    for p in plan.points:
        assert p.params.lr == p.values["lr"] and p.params.seeds == (5, 6) and p.params.preset == "smoke"
        assert p.key == cache.seed_key(toy.run_seed, p.params, p.seed, "cpu")
    assert len({p.key for p in plan.points}) == 12
    assert sw.plan(toy_claim, {"lr": [0.1]}).seeds == (0, 1, 2)  # the preset's seeds by default


def test_plan_validates_every_cell_before_anything_runs(toy_claim):
    with pytest.raises(ParameterError, match=r"grid cell lr=2.0 batch_size=8: parameter 'lr' must be"):
        sw.plan(toy_claim, {"lr": [0.1, 2.0], "batch_size": [8]})
    with pytest.raises(ParameterError, match="unknown parameter 'lrr'.*Did you mean 'lr'"):
        sw.plan(toy_claim, {"lrr": [0.1]})
    with pytest.raises(ParameterError, match="cannot be swept"):
        sw.plan(toy_claim, {"seeds": [1, 2]})
    with pytest.raises(ParameterError, match="both in the grid and fixed"):
        sw.plan(toy_claim, {"lr": [0.1]}, fixed={"lr": 0.2})
    with pytest.raises(ParameterError, match="unknown claim"):
        sw.plan("no-such-claim", {"lr": [0.1]})


def test_plan_refuses_a_claim_without_a_per_seed_function(monkeypatch):
    monkeypatch.setitem(presets.CLAIMS, "no-run-seed", "json")
    with pytest.raises(ParameterError, match="no per-seed function run_seed"):
        sw.plan("no-run-seed", {"lr": [0.1]})


# ----------------------------------------------------------------------------- end to end
def test_cli_sweep_2x2x3_tables_statistics_page_and_resume(toy_claim, tmp_path, capsys):
    out = tmp_path / "project" / sw.SWEEPS_DIR / "toy-lr-batch-size"
    argv = ["sweep", "toy", "--grid", "lr=0.1,0.2", "--grid", "batch_size=8,16", "--seeds", "0-2",
            "--max-parallel", "2", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    assert "12 run, 0 already done, 0 failed" in capsys.readouterr().out
    cache = out / "seeds"
    assert len(_records(cache)) == 12

    # the tidy table: one row per point, parquet and CSV agree
    points = pd.read_parquet(out / "points.parquet")
    assert len(points) == 12 and set(points["status"]) == {"done"}
    assert {"cell", "lr", "batch_size", "seed", "offset", "loss", "converged", "wall_s", "key"} <= set(points.columns)
    assert "w" not in points.columns and "record.seed" not in points.columns  # lists stay in the JSON records
    np.testing.assert_allclose(points["offset"], 10 * points["lr"] + points["batch_size"] + points["seed"])
    csv = pd.read_csv(out / "points.csv")
    np.testing.assert_allclose(csv["loss"], points["loss"])

    # per cell: the claim's headline (mean offset) against an independent t interval
    cells = pd.read_parquet(out / "cells.parquet")
    prim = cells[cells["primary"]]
    assert len(prim) == 4 and set(prim["statistic"]) == {"mean offset"} and set(prim["method"]) == {"claim aggregate"}
    half = sps.t.ppf(0.95, 2) * 1.0 / math.sqrt(3)  # seeds 0, 1, 2: sd 1; the claim's 90% interval
    for _, r in prim.iterrows():
        centre = 10 * r["lr"] + r["batch_size"] + 1.0
        assert r["value"] == pytest.approx(centre) and r["n"] == 3
        assert (r["ci_low"], r["ci_high"]) == (pytest.approx(centre - half), pytest.approx(centre + half))
        assert r["verdict"] == ("reproduced" if centre > 20 else "inconclusive")
    generic = cells[(cells["method"] != "claim aggregate") & (cells["statistic"] == "loss")]
    assert len(generic) == 4
    for _, r in generic.iterrows():
        x = points[(points["lr"] == r["lr"]) & (points["batch_size"] == r["batch_size"])]["loss"]
        lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert (r["value"], r["ci_low"], r["ci_high"]) == (pytest.approx(x.mean()), pytest.approx(lo), pytest.approx(hi))
    assert "Part A: loss" in set(cells["statistic"])

    # the page and its figure
    page = (out / "index.md").read_text()
    assert page.startswith("# Sweep: toy over lr, batch_size")
    assert "```{figure} figure.svg" in page and ":name: fig-sweep-toy-lr-batch-size" in page
    assert "| 0.1 | 8 | 10 |" in page and "12 of 12 points finished" in page
    assert "flatminima sweep toy --grid=lr=0.1,0.2 --grid=batch_size=8,16 --preset=smoke --seeds=0-2" in page
    svg = ET.parse(out / "figure.svg").getroot()
    assert svg.tag.endswith("svg")
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["grid"] == {"lr": [0.1, 0.2], "batch_size": [8, 16]} and len(manifest["points"]) == 12
    root = tmp_path / "project"
    assert sw.sweep_pages(root) == [out / "index.md"]
    assert sw.toc_part(root) == {"caption": "Sweeps", "chapters": [{"file": "book/generated/sweeps/toy-lr-batch-size/index"}]}

    # half-done: remove three records; the re-run computes exactly those and the same numbers
    for path in _records(cache)[:3]:
        path.unlink()
    assert cli.main(argv) == 0
    assert "3 run, 9 already done, 0 failed" in capsys.readouterr().out
    again = pd.read_parquet(out / "points.parquet")
    pd.testing.assert_series_equal(again["loss"], points["loss"])
    assert (again["status"] == "cached").sum() == 9

    # the sweep's records are the notebook's per-seed cache: run_seeds reads them, computes nothing
    def recompute(*_a):
        raise AssertionError("run_seeds recomputed a seed the sweep had stored")

    recompute.__module__, recompute.__qualname__ = toy.run_seed.__module__, toy.run_seed.__qualname__
    cell = sw.plan(toy_claim, {"lr": [0.2], "batch_size": [16]}, seeds="0-2").cells[0][1]
    recs = replicates.run_seeds(recompute, cell, cache_dir=cache, workers=1)
    assert [r["seed"] for r in recs] == [0, 1, 2] and recs[0]["offset"] == pytest.approx(18.0)


def test_interrupted_sweep_cancels_jobs_and_resumes_only_missing_points(toy_claim, tmp_path, monkeypatch):
    plan = sw.plan(toy_claim, {"lr": [0.1, 0.2]}, seeds="0-1", fixed={"num_steps": 20000})
    cache, folder = tmp_path / "seeds", tmp_path / "jobs"
    real_sleep = sw_execute.time.sleep

    class Clock:  # the driver's time module, whose sleep is "Ctrl-C" once a first point is stored
        def __getattr__(self, name):
            return getattr(__import__("time"), name)

        @staticmethod
        def sleep(s):
            real_sleep(s)
            if _records(cache):
                raise KeyboardInterrupt

    monkeypatch.setattr(sw_execute, "time", Clock())
    with pytest.raises(KeyboardInterrupt):
        sw.run(plan, cache_dir=cache, folder=folder, max_parallel=1, show_progress=False, poll_s=0.05)
    monkeypatch.setattr(sw_execute, "time", __import__("time"))
    first = len(_records(cache))
    assert 1 <= first < 4
    outcomes = sw.run(plan, cache_dir=cache, folder=folder, max_parallel=2, show_progress=False)
    assert [o.status for o in outcomes].count("cached") == first
    assert [o.status for o in outcomes].count("done") == 4 - first and len(_records(cache)) == 4


def test_failing_point_is_reported_with_its_error_and_the_others_finish(toy_claim, tmp_path):
    plan = sw.plan(toy_claim, {"lr": [0.1, 0.2]}, seeds="0-1", fixed={"fail_seed": 1})
    messages = []
    outcomes = sw.run(plan, cache_dir=tmp_path / "seeds", folder=tmp_path / "jobs", retries=1,
                      show_progress=False, log=messages.append)
    failed = [o for o in outcomes if o.status == "failed"]
    assert [o.point.seed for o in failed] == [1, 1] and [o.status for o in outcomes].count("done") == 2
    assert all(o.error == "ValueError: toy failure for seed 1" and o.attempts == 2 for o in failed)
    assert "Traceback" in failed[0].meta["traceback"]
    assert sum("retry 1 of 1" in m for m in messages) == 2 and sum("FAILED after 2" in m for m in messages) == 2
    assert len(_records(tmp_path / "seeds")) == 2  # failures are not stored: the next run tries again
    paths = sw.write_outputs(plan, outcomes, tmp_path / "out", name="toy-fail", command="flatminima sweep toy")
    page = paths["page"].read_text()
    assert "**2 failed**" in page and "lr=0.1 seed=1: `ValueError: toy failure for seed 1`" in page
    cells = pd.read_csv(paths["cells_csv"])
    assert set(cells[cells["primary"]]["n"]) == {1}
    points = pd.read_csv(paths["points_csv"])
    assert list(points["status"]) == ["done", "failed", "done", "failed"]


def test_a_point_that_fails_once_succeeds_on_its_retry(toy_claim, tmp_path):
    plan = sw.plan(toy_claim, {"lr": [0.1, 0.2]}, seeds=[0], fixed={"flaky_dir": str(tmp_path / "flaky")})
    outcomes = sw.run(plan, cache_dir=tmp_path / "seeds", folder=tmp_path / "jobs", retries=1,
                      show_progress=False, log=lambda m: None)
    assert [(o.status, o.attempts) for o in outcomes] == [("done", 2), ("done", 2)]


# ----------------------------------------------------------------------------- aggregation alone
def _outcomes(plan: sw.Sweep) -> list[sw.Outcome]:
    return [sw.Outcome(p, "done", toy.run_seed(p.params, p.seed, "cpu"), {"cpu_s": 0.5}) for p in plan.points]


def test_without_a_claim_aggregate_every_numeric_field_gets_a_t_interval(toy_claim, monkeypatch):
    plan = sw.plan(toy_claim, {"batch_size": [4, 8]}, seeds="0-3")
    outcomes = _outcomes(plan)
    monkeypatch.delattr(toy, "aggregate")
    cells = sw.cells_table(plan, outcomes)
    assert set(cells["statistic"]) == {"offset", "loss"}  # seeds, bools and lists are not statistics
    prim = cells[cells["primary"]]
    assert list(prim["statistic"]) == ["offset", "offset"]  # the first numeric field
    r = cells[(cells["statistic"] == "offset") & (cells["batch_size"] == 8)].iloc[0]
    x = np.array([10 * 0.1 + 8 + s for s in range(4)])
    lo, hi = sps.t.interval(0.95, 3, loc=x.mean(), scale=sps.sem(x))
    assert (r["value"], r["ci_low"], r["ci_high"]) == (pytest.approx(x.mean()), pytest.approx(lo), pytest.approx(hi))


def test_primary_field_overrides_the_headline_and_must_be_numeric(toy_claim):
    plan = sw.plan(toy_claim, {"batch_size": [4, 8]}, seeds="0-1")
    cells = sw.cells_table(plan, _outcomes(plan), primary="loss")
    assert list(cells[cells["primary"]]["statistic"]) == ["loss", "loss"]
    assert "claim aggregate" not in set(cells["method"])
    with pytest.raises(ParameterError, match="not a numeric field.*offset"):
        sw.cells_table(plan, _outcomes(plan), primary="converged")


def test_a_cell_the_claim_cannot_aggregate_still_gets_its_means(toy_claim, monkeypatch):
    plan = sw.plan(toy_claim, {"batch_size": [4]}, seeds="0-1")

    def broken(params, records):
        raise RuntimeError("needs 10 seeds")

    monkeypatch.setattr(toy, "aggregate", broken)
    cells = sw.cells_table(plan, _outcomes(plan))
    assert set(cells["note"]) == {"aggregate failed: RuntimeError: needs 10 seeds"}
    assert list(cells[cells["primary"]]["statistic"]) == ["offset"]


def test_sweep_pages_is_empty_without_sweeps(tmp_path):
    assert sw.sweep_pages(tmp_path) == [] and sw.toc_part(tmp_path) is None
