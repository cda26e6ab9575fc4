"""`flatminima sweep --executor slurm` against a real Slurm: a single-node slurmctld + slurmd.

``scripts/slurm-test-cluster.sh`` installs Debian's slurm-wlm and munge if they are missing
(root only), starts munged, slurmctld and slurmd with a minimal config (node ``localhost``,
CPUs=2, proctrack/linuxproc, task/none) under a temporary folder, and the fixture stops
exactly those daemons afterwards. Without root the test is skipped, unless
``FLATMINIMA_REQUIRE_SLURM=1`` (set by CI), where it fails.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from flatminima import cli
from flatminima.claims import registry as presets
from flatminima.run import sweep as sw

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-test-cluster.sh"
pytestmark = pytest.mark.slurm


def _unavailable(reason: str):
    if os.environ.get("FLATMINIMA_REQUIRE_SLURM") == "1":
        pytest.fail(f"a Slurm test cluster is required (FLATMINIMA_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """Start the single-node cluster; yield its slurm.conf; stop its daemons."""
    if os.geteuid() != 0:
        _unavailable("the test Slurm cluster needs root (to install slurm-wlm/munge and run the daemons); "
                     "run `sudo scripts/slurm-test-cluster.sh install` and the tests as root, "
                     "or set FLATMINIMA_REQUIRE_SLURM=1 to make this a failure")
    state = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(state)], text=True, capture_output=True, timeout=900)
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=60)
        _unavailable(f"scripts/slurm-test-cluster.sh start failed (exit {proc.returncode}):\n"
                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    try:
        yield state / "slurm.conf"
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=60)


def test_slurm_executor_runs_a_4_point_sweep_as_a_job_array(slurm_conf, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    monkeypatch.setitem(presets.CLAIMS, "toy", "tests.sweep_toy")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "sweep"
    t0 = time.perf_counter()
    code = cli.main(["sweep", "toy", "--grid", "lr=0.1,0.2", "--grid", "batch_size=8,16", "--seeds", "[3]",
                     "--executor", "slurm", "--slurm-partition", "debug", "--max-parallel", "2",
                     "--time-min", "10", "--out", str(out), "--no-progress"])
    wall = time.perf_counter() - t0
    print(f"slurm sweep of 4 points: {wall:.1f} s wall")
    assert code == 0, capsys.readouterr()
    assert "4 run, 0 already done, 0 failed" in capsys.readouterr().out

    records = sorted((out / "seeds" / "toy").glob("seed-3-*.json"))
    assert len(records) == 4
    points = pd.read_parquet(out / "points.parquet")
    assert len(points) == 4 and set(points["status"]) == {"done"} and set(points["host"]) == {os.uname().nodename}
    metas = [sw.load_point(out / "seeds", p)[1] for p in
             sw.plan("toy", {"lr": [0.1, 0.2], "batch_size": [8, 16]}, seeds=[3]).points]
    assert all(m["slurm_job"] for m in metas), "every point ran inside a Slurm job"
    assert len({m["slurm_array_job"] for m in metas}) == 1 and metas[0]["slurm_array_job"], "one job array"
    cells = pd.read_csv(out / "cells.csv")
    prim = cells[cells["primary"]]
    assert sorted(prim["value"]) == pytest.approx(sorted(10 * lr + b + 3 for lr in (0.1, 0.2) for b in (8, 16)))
    assert (out / "index.md").is_file() and (out / "figure.svg").is_file()

    # the array ran through sbatch: its submission file is there
    assert list((out / ".submitit").rglob("*submission.sh"))
    # a second call finds every record and submits nothing
    assert cli.main(["sweep", "toy", "--grid", "lr=0.1,0.2", "--grid", "batch_size=8,16", "--seeds", "[3]",
                     "--executor", "slurm", "--out", str(out), "--no-progress"]) == 0
    assert "0 run, 4 already done" in capsys.readouterr().out
