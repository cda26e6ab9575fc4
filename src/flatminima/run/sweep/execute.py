"""Running a sweep's points: in worker processes through submitit (local or Slurm), each stored as it finishes."""
from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from flatminima.core.device import configure_threads, resolve_device
from flatminima.core.errors import ParameterError
from flatminima.core.io import jsonable
from flatminima.core.provenance import cpu_capability
from flatminima.protocol.cache import store
from flatminima.protocol.params import ClaimParams
from flatminima.run.sweep.grid import Point, Sweep, load_point, record_path

EXECUTORS = ("local", "slurm")


def run_point(module: str, params: ClaimParams, seed: int, device: str, threads: int,
              path: str, key: str) -> dict:
    """Run one point in a worker process and store its record atomically at ``path``.

    Returns ``{"ok": True, "record": ..., "meta": ...}``, or ``{"ok": False, "error": "Type:
    message", "traceback": ...}`` when ``run_seed`` raises (the driver decides whether to retry).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        configure_threads(threads)
        dev = resolve_device(device)
        record = jsonable(importlib.import_module(module).run_seed(params, int(seed), dev))
        if not isinstance(record, dict):
            raise TypeError(f"{module}.run_seed returned {type(record).__name__}, not a dict")
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which retries or reports it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-6000:]}
    meta = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "host": socket.gethostname(), "cpu": cpu_capability(), "device": dev.type,
            "threads": torch.get_num_threads(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_array_job": os.environ.get("SLURM_ARRAY_JOB_ID"),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    store(Path(path), params.CLAIM, seed, key, record, meta)
    return {"ok": True, "record": record, "meta": meta}


@dataclasses.dataclass
class Outcome:
    """What became of one point: ``cached`` (done before), ``done`` (run now) or ``failed``."""

    point: Point
    status: str
    record: dict | None = None
    meta: dict | None = None
    error: str | None = None
    attempts: int = 0


def make_executor(kind: str, folder: Path, *, max_parallel: int, threads: int = 1,
                  partition: str | None = None, gpus: int = 0, time_min: int = 60,
                  job_name: str = "flatminima-sweep", slurm_extra: Mapping[str, Any] | None = None):
    """A submitit executor: local processes, or Slurm job arrays on ``partition`` with ``gpus`` per job."""
    import submitit

    _quiet_repeated_sacct_warnings()
    folder = Path(folder) / "%j"
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=time_min, gpus_per_node=gpus)
        return ex
    if kind == "slurm":
        import shutil

        for tool in ("sbatch", "srun"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"--executor slurm needs Slurm's {tool!r} on PATH; run on a cluster's "
                                   "login node, or use --executor local")
        ex = submitit.SlurmExecutor(folder=folder)
        params: dict[str, Any] = {"time": time_min, "cpus_per_task": threads, "job_name": job_name,
                                  "array_parallelism": max_parallel,
                                  "setup": [f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"]}
        if partition:
            params["partition"] = partition
        if gpus:
            params["gpus_per_node"] = gpus
        params.update(slurm_extra or {})
        ex.update_parameters(**params)
        return ex
    raise ParameterError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


class _OnceFilter(logging.Filter):
    """Let submitit's "Bypassing sacct error" warning through once, not at every status poll."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if _OnceFilter.seen:
            return False
        _OnceFilter.seen = True
        return True


def _quiet_repeated_sacct_warnings() -> None:
    """A cluster without Slurm accounting (sacct) still works: jobs are followed by their result files."""
    log = logging.getLogger("submitit")
    if not any(isinstance(f, _OnceFilter) for f in log.filters):
        log.addFilter(_OnceFilter())


def _job_error(exc: BaseException) -> str:
    """One line from a submitit failure (the job died: killed, timed out, out of memory)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    return f"{type(exc).__name__}: " + (lines[0] if lines else "the job ended without a result")


def run_points(module: str, items: Sequence[tuple[ClaimParams, int, str, str]], device: str,
               threads: int) -> list[dict]:
    """One job: :func:`run_point` for each ``(params, seed, path, key)`` in turn (one process start-up)."""
    return [run_point(module, params, seed, device, threads, path, key) for params, seed, path, key in items]


def run(sweep: Sweep, *, cache_dir: Path, folder: Path, executor: str = "local",
        max_parallel: int | None = None, retries: int = 1, threads: int = 1,
        points_per_job: int | None = None, partition: str | None = None, gpus: int = 0,
        time_min: int = 60, slurm_extra: Mapping[str, Any] | None = None, show_progress: bool = True,
        poll_s: float = 0.5, log=None) -> list[Outcome]:
    """Run every point of ``sweep`` that has no record yet; return one :class:`Outcome` per point.

    ``folder`` holds submitit's job files and logs (on a cluster: a shared filesystem).
    ``max_parallel`` jobs run at once (default: the cores here for ``local``, 256 array tasks
    for ``slurm``). A job runs ``points_per_job`` points one after the other, so the start-up
    of a process (importing torch: about 2 CPU s) is paid once per job, not once per point;
    the default is one job per worker for ``local`` (points dealt round-robin, so every job
    gets a share of each grid cell) and one point per array task for ``slurm``. Each point's
    record is stored as soon as it finishes, whatever the job size. A point whose
    ``run_seed`` raises, or whose job dies, is resubmitted up to ``retries`` times, then
    reported as ``failed`` with its error. Interrupting (Ctrl-C) cancels the jobs in flight;
    finished points stay stored and the next call skips them.
    """
    if retries < 0:
        raise ParameterError(f"retries must be >= 0, got {retries}")
    if max_parallel is None:
        max_parallel = (os.cpu_count() or 1) if executor == "local" else 256
    if max_parallel < 1:
        raise ParameterError(f"max_parallel must be >= 1, got {max_parallel}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cache_dir, folder = Path(cache_dir), Path(folder)
    outcomes: dict[int, Outcome] = {}
    todo: list[int] = []
    for i, p in enumerate(sweep.points):
        hit = load_point(cache_dir, p)
        if hit is not None:
            outcomes[i] = Outcome(p, "cached", hit[0], hit[1])
        else:
            todo.append(i)
    if not todo:
        return [outcomes[i] for i in range(len(sweep.points))]
    if points_per_job is None:
        points_per_job = math.ceil(len(todo) / max_parallel) if executor == "local" else 1
    if points_per_job < 1:
        raise ParameterError(f"points_per_job must be >= 1, got {points_per_job}")
    n_jobs = math.ceil(len(todo) / points_per_job)
    pending: deque[int] = deque(i for j in range(n_jobs) for i in todo[j::n_jobs])  # round-robin chunks
    ex = make_executor(executor, folder, max_parallel=max_parallel, threads=threads, partition=partition,
                       gpus=gpus, time_min=time_min, job_name=f"flatminima-{sweep.claim}",
                       slurm_extra=slurm_extra)
    capacity = max_parallel if executor == "local" else n_jobs  # Slurm throttles its arrays itself
    attempts = {i: 0 for i in todo}
    in_flight: list[tuple[Any, list[int]]] = []
    counted: set[int] = set()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(sweep.points), initial=len(outcomes), desc=f"sweep {sweep.claim}", unit="point",
               disable=not show_progress, file=sys.stderr)

    def tick(i: int) -> None:
        if i not in counted:
            counted.add(i)
            bar.update()

    def settle(i: int, res: dict) -> None:
        p = sweep.points[i]
        if res.get("ok"):
            outcomes[i] = Outcome(p, "done", res["record"], res["meta"], attempts=attempts[i])
            tick(i)
        elif attempts[i] <= retries:
            log(f"sweep: {p.label} failed ({res['error']}); retry {attempts[i]} of {retries}")
            pending.append(i)
        else:
            outcomes[i] = Outcome(p, "failed", error=res["error"], attempts=attempts[i],
                                  meta={"traceback": res.get("traceback")})
            log(f"sweep: {p.label} FAILED after {attempts[i]} attempt(s): {res['error']}")
            tick(i)

    try:
        while pending or in_flight:
            chunks = []
            while pending and len(in_flight) + len(chunks) < capacity:
                chunks.append([pending.popleft() for _ in range(min(points_per_job, len(pending)))])
            if chunks:
                with ex.batch():
                    jobs = [ex.submit(run_points, sweep.module,
                                      [(sweep.points[i].params, sweep.points[i].seed,
                                        str(record_path(cache_dir, sweep.points[i])), sweep.points[i].key)
                                       for i in chunk], sweep.device, threads) for chunk in chunks]
                for job, chunk in zip(jobs, chunks):
                    for i in chunk:
                        attempts[i] += 1
                    in_flight.append((job, chunk))
            time.sleep(poll_s)
            still = []
            for job, chunk in in_flight:
                if not job.done():
                    still.append((job, chunk))
                    for i in chunk:  # progress per point, also inside a multi-point job
                        if i not in counted and record_path(cache_dir, sweep.points[i]).is_file():
                            tick(i)
                    continue
                try:
                    results = job.result()
                except Exception as exc:  # noqa: BLE001 - the job died: keep the points it stored
                    died = {"ok": False, "error": _job_error(exc), "traceback": str(exc)[-6000:]}
                    results = []
                    for i in chunk:
                        hit = load_point(cache_dir, sweep.points[i])
                        results.append({"ok": True, "record": hit[0], "meta": hit[1]} if hit else died)
                for i, res in zip(chunk, results):
                    settle(i, res)
            in_flight = still
    except BaseException:
        for job, _ in in_flight:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass
        raise
    finally:
        bar.close()
    return [outcomes[i] for i in range(len(sweep.points))]
