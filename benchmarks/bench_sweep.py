"""Benchmark: an 8-point smoke sweep, submitit's local executor with 2 workers vs sequential.

The sweep is 2 learning rates x 2 batch sizes x 2 seeds of the toy claim of the tests
(``tests/sweep_toy.py``: full-batch gradient descent on least squares, ~4 CPU s per point at
``--steps 80000``), so it measures the sweep machinery, not a chapter. Modes, in one run:

* ``sequential``: ``run_seed`` for each point in this process, one after the other (what one
  would do without a sweep; no process start-up);
* ``local-2``: ``flatminima.run.sweep.run`` with the local executor, ``max_parallel=2`` (one
  process per point, one torch thread each, records written to a fresh cache);
* ``local-1`` (with ``--serial-executor``): the same executor one point at a time, which
  separates the per-point process cost from the parallel speed-up.

Goal: sequential / local-2 >= 1.7 on 2 idle cores. On a shared machine the ratio is noisy
(other processes take the second core); CPU seconds (user + sys, this process and its children)
are printed beside the wall times so the overhead can be read regardless.

    PYTHONPATH=src python benchmarks/bench_sweep.py [--steps 80000] [--serial-executor]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])

import torch  # noqa: E402

from flatminima.claims import registry as presets
from flatminima.run import sweep as sw
from tests import sweep_toy  # noqa: E402


def cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=80000, help="gradient steps per point (~4 CPU s at 80000)")
    ap.add_argument("--serial-executor", action="store_true", help="also time the local executor one point at a time")
    args = ap.parse_args()
    presets.CLAIMS["toy"] = "tests.sweep_toy"
    plan = sw.plan("toy", {"lr": [0.005, 0.01], "batch_size": [256, 512]}, seeds="0-1",
                   fixed={"dim": 256, "num_steps": args.steps})
    assert len(plan.points) == 8
    torch.set_num_threads(1)
    rows = []

    t0, c0 = time.perf_counter(), cpu_s()
    seq = [sweep_toy.run_seed(p.params, p.seed, torch.device("cpu")) for p in plan.points]
    rows.append(("sequential", time.perf_counter() - t0, cpu_s() - c0))

    modes = [("local-2", 2)] + ([("local-1", 1)] if args.serial_executor else [])
    for name, workers in modes:
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), cpu_s()
            out = sw.run(plan, cache_dir=Path(tmp) / "seeds", folder=Path(tmp) / "jobs", max_parallel=workers,
                         show_progress=False, poll_s=0.1)
            rows.append((name, time.perf_counter() - t0, cpu_s() - c0))
            assert all(o.status == "done" for o in out), [o.error for o in out if o.error]
            assert [o.record["loss"] for o in out] == [r["loss"] for r in seq], "records depend on the executor"

    load = os.getloadavg()[0]
    print(f"8-point smoke sweep (toy claim, {args.steps} steps/point), {os.cpu_count()} cores, load {load:.1f}")
    print(f"{'mode':<12}{'wall s':>9}{'CPU s':>9}{'speed-up':>10}")
    for name, wall, cpu in rows:
        print(f"{name:<12}{wall:9.1f}{cpu:9.1f}{rows[0][1] / wall:9.2f}x")
    ratio = rows[0][1] / rows[1][1]
    verdict = "meets" if ratio >= 1.7 else "misses"
    print(f"sequential / local-2 = {ratio:.2f}x ({verdict} the 1.7x goal"
          + (f"; load {load:.1f} on {os.cpu_count()} cores: other processes share them)" if load > 1.5 else ")"))


if __name__ == "__main__":
    main()
