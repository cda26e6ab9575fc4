"""Sweeps: a grid of parameters times seeds, each point one per-seed run, submitted through submitit.

A sweep of claim ``C`` over a grid ``{lr: [0.1, 0.05], batch_size: [64, 512]}`` and seeds
``0..2`` has 2 x 2 x 3 = 12 *points*; a point is one call of the claim's per-seed function
``run_seed(params, seed, device)`` (the unit of work of :mod:`flatminima.protocol.replicates`) with
``params`` = the preset, the fixed overrides and the point's grid values (validated for every
grid cell before anything is submitted).

The points run through `submitit <https://github.com/facebookincubator/submitit>`_, with the
same code on a laptop and on a cluster:

* ``executor="local"``: :class:`submitit.LocalExecutor`, processes with one torch thread each
  (the thread policy of :mod:`flatminima.core.device`), at most ``max_parallel`` at once; by default
  one job per worker, each running its share of the points in turn (a process start-up costs
  about 2 CPU s of imports, as much as a smoke point);
* ``executor="slurm"``: :class:`submitit.SlurmExecutor`, the points submitted as Slurm job
  arrays (``array_parallelism = max_parallel``, one point per array task unless
  ``points_per_job`` says otherwise) on a partition, with GPUs if asked for.

Each finished point is written atomically in the per-seed cache format of
:mod:`flatminima.protocol.replicates` (``<cache>/<claim>/seed-<seed>-<key>.json``, ``key`` =
:func:`flatminima.protocol.replicates.seed_key`, so a sweep and a notebook can share a cache), by the
worker itself: re-running an interrupted sweep computes only the missing points. A point that
raises is retried ``retries`` times, then reported with its error; the other points go on.

The outputs (:func:`write_outputs`) in the sweep's folder, by default
``book/generated/sweeps/<name>/``:

* ``points.parquet`` / ``points.csv``: the tidy table, one row per point (grid values, seed,
  status, error, cost, and every scalar top-level field of the per-seed record);
* ``cells.parquet`` / ``cells.csv``: per grid cell, long form: the claim's own statistics from
  its ``aggregate(params, records)`` where it gives a headline, and for every numeric
  top-level record field the mean over seeds with a Student-t 95% interval
  (:func:`flatminima.stats.intervals.mean_ci`);
* ``figure.svg`` and ``index.md``: the sweep page for the book (the primary statistic against
  each grid parameter, with intervals), generated from the table;
* ``sweep.json``: the manifest (claim, preset, grid, seeds, points and their status).
"""
from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
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

from flatminima.claims.registry import CLAIMS, claim_module
from flatminima.core.device import configure_threads, resolve_device
from flatminima.core.errors import ParameterError
from flatminima.core.io import atomic_write_text, jsonable
from flatminima.core.provenance import cpu_capability
from flatminima.protocol.params import RUN_CONTROLS, ClaimParams, parse_seeds
from flatminima.protocol.replicates import CACHE_FORMAT, load_cached, seed_key
from flatminima.stats.intervals import mean_ci

EXECUTORS = ("local", "slurm")
SWEEPS_DIR = Path("book") / "generated" / "sweeps"
"""Where the book looks for sweeps, relative to the project root: one folder per sweep."""
NOT_GRIDDABLE = ("preset", "seeds", "num_seeds")


# ----------------------------------------------------------------------------- the grid
def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["lr=0.1,0.05", "batch_size=64,512"]`` -> ``{"lr": [0.1, 0.05], "batch_size": [64, 512]}``.

    Values are YAML scalars split on commas; a value list that starts with ``[`` is read as one
    YAML list, for list-valued parameters: ``widths=[[64, 64], [128]]``.
    """
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = (s.strip() for s in str(spec).partition("="))
        if not sep or not name or not values:
            raise ParameterError(f"--grid {spec!r}: write NAME=V1,V2,... (e.g. --grid lr=0.1,0.05)")
        if name in grid:
            raise ParameterError(f"--grid names {name!r} twice; give all its values in one --grid")
        if values.startswith("["):
            parsed = _parse_value(values)
            if not isinstance(parsed, list):
                raise ParameterError(f"--grid {spec!r}: {values!r} is not a YAML list")
        else:
            parsed = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ParameterError(f"--grid {spec!r} has no values")
        if len({json.dumps(v, sort_keys=True, default=str) for v in parsed}) != len(parsed):
            raise ParameterError(f"--grid {spec!r} repeats a value")
        grid[name] = parsed
    return grid


@dataclasses.dataclass(frozen=True)
class Point:
    """One unit of work: a grid cell's parameters and one seed, with the key of its record."""

    cell: int
    values: dict[str, Any]
    params: ClaimParams
    seed: int
    key: str

    @property
    def label(self) -> str:
        return " ".join([*(f"{k}={v}" for k, v in self.values.items()), f"seed={self.seed}"])


@dataclasses.dataclass
class Sweep:
    """A validated sweep: the claim, its grid, seeds and every point (nothing submitted yet)."""

    claim: str
    module: str
    preset: str
    grid: dict[str, list]
    fixed: dict[str, Any]
    seeds: tuple[int, ...]
    device: str
    cells: list[tuple[dict[str, Any], ClaimParams]]
    points: list[Point]


def plan(claim: str, grid: Mapping[str, Sequence[Any]], *, preset: str = "smoke",
         seeds: Any = None, fixed: Mapping[str, Any] | None = None, device: str = "cpu") -> Sweep:
    """The Cartesian product of ``grid`` times ``seeds``, every cell validated first.

    ``claim`` must be registered in :data:`flatminima.claims.registry.CLAIMS` and its module must
    expose ``run_seed(params, seed, device)``. ``seeds`` defaults to the preset's seeds;
    ``fixed`` overrides apply to every cell. ``device`` (``cpu`` or ``cuda``) is where each
    point runs; it is part of the points' keys.
    """
    if claim not in CLAIMS:
        raise ParameterError(f"unknown claim {claim!r}; allowed claims: {', '.join(CLAIMS)}")
    mod = claim_module(claim)
    run_seed = getattr(mod, "run_seed", None)
    if not callable(run_seed):
        raise ParameterError(f"claim {claim!r} has no per-seed function run_seed(params, seed, device) "
                             f"in {mod.__name__}; it cannot be swept yet")
    if device not in ("cpu", "cuda"):
        raise ParameterError(f"device must be 'cpu' or 'cuda' for a sweep, got {device!r}")
    cls: type[ClaimParams] = mod.Params
    grid = {k: list(v) for k, v in grid.items()}
    fixed = dict(fixed or {})
    if not grid:
        raise ParameterError("a sweep needs at least one --grid NAME=V1,V2,...")
    for name in [*grid, *fixed]:
        if name in NOT_GRIDDABLE or name in RUN_CONTROLS:
            raise ParameterError(f"parameter {name!r} cannot be swept or fixed in a sweep; "
                                 "use --preset / --seeds for the preset and the seeds")
    cls.check_names([*grid, *fixed])
    both = set(grid) & set(fixed)
    if both:
        raise ParameterError(f"parameters {sorted(both)} are both in the grid and fixed; give them once")
    extra = {} if seeds is None else {"seeds": parse_seeds(seeds)}
    base = cls.from_preset(preset, **fixed, **extra)
    seeds = tuple(base.seeds)
    cells, points = [], []
    for i, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        try:
            params = cls.from_preset(preset, **fixed, **values, seeds=list(seeds))
        except ParameterError as exc:
            where = " ".join(f"{k}={v}" for k, v in values.items())
            raise ParameterError(f"grid cell {where}: {exc}") from None
        cells.append((values, params))
        points += [Point(i, values, params, s, seed_key(run_seed, params, s, device)) for s in seeds]
    return Sweep(claim, mod.__name__, preset, grid, fixed, seeds, device, cells, points)


def record_path(cache_dir: Path, point: Point) -> Path:
    """Where a point's record lives: the per-seed cache layout of :mod:`flatminima.protocol.replicates`."""
    return Path(cache_dir) / point.params.CLAIM / f"seed-{point.seed}-{point.key}.json"


def load_point(cache_dir: Path, point: Point) -> tuple[dict, dict] | None:
    """``(record, meta)`` of a finished point, or None if it has not finished (or is stale)."""
    path = record_path(cache_dir, point)
    record = load_cached(path, point.key)
    if record is None:
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("meta") or {}
    except (OSError, ValueError):
        meta = {}
    return record, meta


# ----------------------------------------------------------------------------- the unit of work
def run_point(module: str, params: ClaimParams, seed: int, device: str, threads: int,
              path: str, key: str) -> dict:
    """Run one point in a worker process and store its record atomically at ``path``.

    Returns ``{"ok": True, "record": ..., "meta": ...}``, or ``{"ok": False, "error": "Type:
    message", "traceback": ...}`` when ``run_seed`` raises (the driver decides whether to retry).
    """
    import torch

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
    entry = {"format": CACHE_FORMAT, "claim": params.CLAIM, "seed": int(seed), "key": key,
             "record": record, "meta": meta}
    atomic_write_text(path, json.dumps(entry, allow_nan=False) + "\n")
    return {"ok": True, "record": record, "meta": meta}


# ----------------------------------------------------------------------------- running
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


# ----------------------------------------------------------------------------- tables
def _cell_text(v: Any) -> Any:
    """Grid values as table cells: scalars as they are, lists as compact JSON."""
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)


def _scalars(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _numeric_fields(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Top-level fields that are a number or null (not bool, not the seed) in every record, in record order."""
    if not records:
        return []
    names = [k for k, v in records[0].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed", "seeds")]
    return [k for k in names
            if all(k in r and (r[k] is None or (isinstance(r[k], (int, float)) and not isinstance(r[k], bool)))
                   for r in records)]


def points_table(sweep: Sweep, outcomes: Sequence[Outcome]):
    """The tidy table: one row per point (grid values, seed, status, error, cost, scalar record fields)."""
    import pandas as pd

    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"cell": o.point.cell, **{k: _cell_text(v) for k, v in o.point.values.items()},
                               "seed": o.point.seed, "status": o.status, "error": o.error,
                               "attempts": o.attempts, "key": o.point.key}
        meta = o.meta or {}
        for k in ("wall_s", "cpu_s", "host", "cpu"):
            row[k] = meta.get(k)
        for k, v in _scalars(o.record or {}).items():
            if k in row and row[k] == v:  # e.g. the record's own "seed"
                continue
            row[k if k not in row else f"record.{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _is_statistic(x: Any) -> bool:
    return isinstance(x, Mapping) and all(k in x for k in ("value", "ci_low", "ci_high"))


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def claim_statistics(module: Any, params: ClaimParams, records: Sequence[dict]) -> tuple[list[dict], str | None]:
    """The claim's own statistics for one cell: its ``aggregate(params, records)`` read generously.

    Recognised: a result with a ``headline`` statistic (``{label, value, ci_low, ci_high, ...}``
    as :func:`flatminima.stats.intervals.statistic` makes), optional ``parts`` each with a ``statistic``,
    and a ``verdict``; or a bare statistic. Returns ``(rows, verdict)``; ``rows`` is empty when
    the claim has no ``aggregate`` or it gives none of these.
    """
    agg = getattr(module, "aggregate", None)
    if agg is None or not records:
        return [], None
    out = agg(params, list(records))
    head = _get(out, "headline")
    if head is None and _is_statistic(out):
        head = out
    rows = []
    if _is_statistic(head):
        rows.append({**head, "statistic": head.get("label", "headline"), "primary": True})
    for part in _get(out, "parts") or []:
        st = _get(part, "statistic")
        if _is_statistic(st):
            name = _get(part, "name") or "part"
            rows.append({**st, "statistic": f"{name}: {st.get('label', '')}".rstrip(": "), "primary": False})
    verdict = _get(out, "verdict")
    return rows, (str(verdict) if verdict is not None else None)


def cells_table(sweep: Sweep, outcomes: Sequence[Outcome], *, primary: str | None = None):
    """Per grid cell, long form: the claim's statistics and the mean-with-95%-CI of each numeric field.

    ``primary`` names a per-seed record field to plot instead of the claim's headline. Columns:
    ``cell``, the grid names, ``statistic``, ``value``, ``ci_low``, ``ci_high``, ``n``, ``method``,
    ``primary`` (the row the page plots), ``verdict``, ``note``.
    """
    import numpy as np
    import pandas as pd

    module = importlib.import_module(sweep.module)
    rows = []
    for c, (values, params) in enumerate(sweep.cells):
        done = [o for o in outcomes if o.point.cell == c and o.record is not None]
        records = [o.record for o in done]
        base = {"cell": c, **{k: _cell_text(v) for k, v in values.items()}}
        claim_rows, verdict, note = [], None, None
        if records and primary is None:
            try:
                cell_params = dataclasses.replace(params, seeds=tuple(o.point.seed for o in done))
                claim_rows, verdict = claim_statistics(module, cell_params, records)
            except Exception as exc:  # noqa: BLE001 - a cell the claim cannot aggregate still gets its means
                note = f"aggregate failed: {type(exc).__name__}: {exc}"
        for r in claim_rows:
            rows.append({**base, "statistic": r["statistic"], "value": r["value"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "n": r.get("n", len(records)), "method": "claim aggregate",
                         "primary": r["primary"], "verdict": verdict, "note": note})
        fields = _numeric_fields(records)
        want = primary or (None if claim_rows else (fields[0] if fields else None))
        if primary is not None and records and primary not in fields:
            raise ParameterError(f"--primary {primary!r} is not a numeric field of {sweep.claim}'s per-seed "
                                 f"records; numeric fields: {', '.join(fields) or 'none'}")
        for name in fields:
            x = np.array([np.nan if r[name] is None else float(r[name]) for r in records])
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            ci = mean_ci(x)
            rows.append({**base, "statistic": name, "value": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                         "n": ci.n, "method": "mean over seeds, Student t 95%", "primary": name == want,
                         "verdict": verdict, "note": note})
        if not records:
            rows.append({**base, "statistic": primary or "", "value": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan, "n": 0, "method": "no finished point", "primary": True,
                         "verdict": None, "note": note})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the page
def _numeric_axis(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot(sweep: Sweep, cells, path: Path) -> Path:
    """The primary statistic against each grid parameter (95% intervals), one panel per parameter, SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prim = cells[cells["primary"]]
    label = str(prim["statistic"].dropna().iloc[0]) if len(prim.dropna(subset=["statistic"])) else "primary"
    names = list(sweep.grid)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(6.5, 2.6 * ncols + 0.6), 2.6 * nrows + 0.4),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        values = sweep.grid[name]
        numeric = _numeric_axis(values)
        others = [n for n in names if n != name]
        pos = {json.dumps(v, default=str): (v if numeric else j) for j, v in enumerate(values)}
        groups = prim.groupby(others, sort=False) if others else [((), prim)]
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            xs = [pos[json.dumps(_raw(sweep, name, v), default=str)] for v in g[name]]
            order = sorted(range(len(xs)), key=lambda j: xs[j])
            x = [xs[j] for j in order]
            y = g["value"].to_numpy()[order]
            lo, hi = g["ci_low"].to_numpy()[order], g["ci_high"].to_numpy()[order]
            lab = ", ".join(f"{n}={v}" for n, v in zip(others, gkey)) or None
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=3, lw=1.2, label=lab)
        if numeric and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(values, [str(v) for v in values])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(name)
        if others:
            ax.legend(fontsize=7, frameon=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(label if len(label) <= 28 else label[:27] + "…", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)
    return path


def _raw(sweep: Sweep, name: str, cell_value: Any) -> Any:
    """The grid value behind a table cell (lists were written as JSON)."""
    for v in sweep.grid[name]:
        if _cell_text(v) == cell_value:
            return v
    return cell_value


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.4g}"
    return "" if x is None else str(x)


def _md(text: Any) -> str:
    return " ".join(str(text).replace("|", "\\|").split())


def page_markdown(sweep: Sweep, outcomes: Sequence[Outcome], cells, *, name: str, command: str) -> str:
    """The sweep page (MyST Markdown): what was run, the figure, the primary statistic per cell, failures."""
    prim = cells[cells["primary"]]
    label = str(prim["statistic"].iloc[0]) if len(prim) else "the primary statistic"
    method = str(prim["method"].iloc[0]) if len(prim) else ""
    n_fail = sum(o.status == "failed" for o in outcomes)
    cpu = sum((o.meta or {}).get("cpu_s") or 0.0 for o in outcomes)
    grid = "; ".join(f"`{k}` in {', '.join(map(str, v))}" for k, v in sweep.grid.items())
    fixed = ", ".join(f"`{k}={v}`" for k, v in sweep.fixed.items())
    seeds = f"{len(sweep.seeds)} seeds ({sweep.seeds[0]} to {sweep.seeds[-1]})" if sweep.seeds else "no seeds"
    lines = [f"# Sweep: {sweep.claim} over {', '.join(sweep.grid)}", "",
             f"A sweep of the claim [{sweep.claim}](../../{sweep.claim}.ipynb) at the `{sweep.preset}` preset"
             + (f" with {fixed}" if fixed else "") + f": {grid}; {seeds} per grid cell, "
             f"{len(sweep.points)} points in all, each one run of the claim's per-seed function.", "",
             ":::{note}",
             f"{len(sweep.points) - n_fail} of {len(sweep.points)} points finished"
             + (f", **{n_fail} failed** (listed below)" if n_fail else "") +
             f"; {cpu / 60:.1f} CPU minutes in the per-seed runs. Statistic: {_md(label)} ({method}).",
             "Regenerate with:", "", "```", command, "```", ":::", "",
             "```{figure} figure.svg", f":alt: {_md(label)} against " + " and ".join(sweep.grid) +
             ", one panel per grid parameter, points with 95% intervals over seeds",
             f":name: fig-sweep-{name}", ":width: 100%", "",
             f"{_md(label)} against each grid parameter; one line per value of the other grid parameters; "
             "bars are 95% intervals over the seeds of each cell.", "```", "",
             "**Figure.** Read each panel left to right: a trend larger than the bars is an effect of that "
             "parameter at this preset; overlapping bars are not evidence of no effect.", "",
             "## Per grid cell", "",
             "| " + " | ".join([*sweep.grid, _md(label), "95% interval", "seeds", "verdict"]) + " |",
             "|" + "---|" * (len(sweep.grid) + 4)]
    for _, r in prim.iterrows():
        verdict = r.get("verdict")
        lines.append("| " + " | ".join([*(_md(r[k]) for k in sweep.grid), _fmt(r["value"]),
                                          f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", str(int(r["n"])),
                                          _md(verdict) if isinstance(verdict, str) else ""]) + " |")
    lines += ["", "The full tables are beside this page: `points.csv` / `points.parquet` (one row per point) "
              "and `cells.csv` / `cells.parquet` (every statistic per cell).", ""]
    if n_fail:
        lines += ["## Failed points", ""]
        lines += [f"- {_md(o.point.label)}: `{_md(o.error)}`" for o in outcomes if o.status == "failed"]
        lines.append("")
    return "\n".join(lines)


def write_outputs(sweep: Sweep, outcomes: Sequence[Outcome], out: Path, *, name: str, command: str,
                  primary: str | None = None) -> dict[str, Path]:
    """Write the manifest, the tidy tables (parquet + CSV), the figure and the page into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points = points_table(sweep, outcomes)
    cells = cells_table(sweep, outcomes, primary=primary)
    paths = {"points": out / "points.parquet", "cells": out / "cells.parquet"}
    for key, df in (("points", points), ("cells", cells)):
        tmp = out / f".{key}.parquet.tmp"
        df.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, paths[key])
        paths[f"{key}_csv"] = atomic_write_text(out / f"{key}.csv", df.to_csv(index=False))
    paths["figure"] = plot(sweep, cells, out / "figure.svg")
    paths["page"] = atomic_write_text(out / "index.md", page_markdown(sweep, outcomes, cells, name=name,
                                                                       command=command))
    manifest = {"claim": sweep.claim, "preset": sweep.preset, "grid": sweep.grid, "fixed": sweep.fixed,
                "seeds": list(sweep.seeds), "device": sweep.device, "command": command,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "points": [{"cell": o.point.cell, "values": o.point.values, "seed": o.point.seed,
                            "key": o.point.key, "status": o.status, "attempts": o.attempts, "error": o.error}
                           for o in outcomes]}
    paths["manifest"] = atomic_write_text(out / "sweep.json", json.dumps(jsonable(manifest), indent=1) + "\n")
    return paths


def default_name(claim: str, grid: Mapping[str, Any]) -> str:
    """``<claim>-<param>-<param>``: the sweep's folder name under the book's sweeps folder."""
    return "-".join([claim, *(k.replace("_", "-") for k in grid)])


# ----------------------------------------------------------------------------- the book
def sweep_pages(root: str | os.PathLike) -> list[Path]:
    """The sweep pages under ``<root>/book/generated/sweeps/<name>/index.md``, sorted by name."""
    base = Path(root) / SWEEPS_DIR
    return sorted(p for p in base.glob("*/index.md") if p.is_file()) if base.is_dir() else []


def toc_part(root: str | os.PathLike) -> dict | None:
    """A ``_toc.yml`` part listing the sweep pages (``{"caption": "Sweeps", "chapters": [...]}``), or None."""
    root = Path(root)
    pages = sweep_pages(root)
    if not pages:
        return None
    return {"caption": "Sweeps",
            "chapters": [{"file": p.relative_to(root).with_suffix("").as_posix()} for p in pages]}
