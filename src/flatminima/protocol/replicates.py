"""Seeds as units of work: run a claim's per-seed function over seeds, in processes, with a cache.

Every claim module exposes a pure per-seed function ``run_seed(params, seed, device) -> dict``
(one replication: its initial point, data order, data subset and sampled directions all follow
from ``seed``) and an aggregation step over the per-seed records. :func:`run_seeds` runs the
per-seed function for many seeds:

* **cached**: each finished seed is written atomically to ``cache_dir/<claim>/seed-<seed>-<key>.json``,
  keyed by :func:`seed_key` (the claim, the function, every parameter except the seed list, the
  seed, the package source, the numeric libraries and the CPU kernels in force). Adding seeds, or
  re-running after an interruption, computes only the seeds that are missing;
* **parallel**: on CPU, ``workers`` spawned processes with one torch thread each (the thread
  policy of :mod:`flatminima.core.device`); a worker dies with its parent, so stopping the kernel
  leaves no orphans;
* **deterministic**: a seed's record depends on ``(params, seed)`` alone, not on the number of
  workers or the order seeds finish in.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from flatminima.core.device import configure_threads
from flatminima.core.io import atomic_write_text, jsonable
from flatminima.core.provenance import cpu_capability
from flatminima.core.sources import closure_hash
from flatminima.protocol.params import ClaimParams

SeedFn = Callable[[Any, int, torch.device], dict]
CACHE_FORMAT = 1
EXCLUDED_FROM_KEY = ("preset", "seeds", "num_seeds")
"""Parameters that name or count replications rather than shape one: not part of a seed's key."""


def seed_key(fn: SeedFn, params: ClaimParams, seed: int, device: torch.device | str = "cpu") -> str:
    """SHA-256 of everything that determines one seed's record (hex, 20 characters).

    Covers the claim, the function's qualified name, all parameters but the seed list, the seed,
    the package's source, the torch and numpy versions, the device type and the CPU kernels.
    """
    import numpy as np

    values = {k: v for k, v in params.to_dict().items() if k not in EXCLUDED_FROM_KEY}
    payload = {"format": CACHE_FORMAT, "claim": params.CLAIM, "fn": f"{fn.__module__}.{fn.__qualname__}",
               "params": values, "seed": int(seed), "source": closure_hash(fn.__module__), "torch": torch.__version__,
               "numpy": np.__version__, "device": torch.device(device).type, "cpu": cpu_capability()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _cache_path(cache_dir: Path, params: ClaimParams, seed: int, key: str) -> Path:
    return cache_dir / params.CLAIM / f"seed-{seed}-{key}.json"


def load_cached(path: Path, key: str) -> dict | None:
    """The cached record at ``path`` if it is well formed and carries ``key``; None otherwise."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("record"), dict)):
        return None
    return entry["record"]


def _store(path: Path, params: ClaimParams, seed: int, key: str, record: dict) -> None:
    entry = {"format": CACHE_FORMAT, "claim": params.CLAIM, "seed": int(seed), "key": key,
             "record": jsonable(record)}
    atomic_write_text(path, json.dumps(entry, allow_nan=False) + "\n")


def _worker_init(parent_pid: int) -> None:
    """Runs in each spawned worker: one torch thread, quiet warnings, die with the parent."""
    import warnings

    warnings.simplefilter("ignore")
    configure_threads(1)
    try:  # Linux: SIGTERM this worker when its parent (the notebook kernel) dies
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _call(fn: SeedFn, params: ClaimParams, seed: int) -> dict:
    return jsonable(fn(params, seed, torch.device("cpu")))


def default_workers() -> int:
    """``FLATMINIMA_WORKERS`` if set, else the number of cores."""
    return max(1, int(os.environ.get("FLATMINIMA_WORKERS", os.cpu_count() or 1)))


def run_seeds(fn: SeedFn, params: ClaimParams, seeds: Sequence[int] | None = None, *,
              cache_dir: str | os.PathLike | None = None, workers: int | None = None,
              device: torch.device | str = "cpu", show_progress: bool = False,
              desc: str = "seeds") -> list[dict]:
    """``fn(params, seed, device)`` for every seed (default ``params.seeds``), in seed order.

    ``fn`` must be a module-level function (it is pickled into worker processes) returning a
    JSON-able dict; records come back as plain JSON types. With ``cache_dir`` finished seeds are
    read back instead of recomputed, and each new seed is stored as soon as it finishes, so an
    interrupted call loses only the seeds in flight. Workers are used on CPU only; on a GPU the
    seeds run in this process.
    """
    seeds = [int(s) for s in (params.seeds if seeds is None else seeds)]
    device = torch.device(device)
    cache = Path(cache_dir) if cache_dir is not None else None
    records: dict[int, dict] = {}
    todo: list[tuple[int, str]] = []
    for s in seeds:
        key = seed_key(fn, params, s, device)
        if cache is not None and (hit := load_cached(_cache_path(cache, params, s, key), key)) is not None:
            records[s] = hit
        else:
            todo.append((s, key))

    def done(s: int, key: str, rec: dict) -> None:
        records[s] = rec
        if cache is not None:
            _store(_cache_path(cache, params, s, key), params, s, key, rec)

    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = None
    if show_progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=desc)
    try:
        if device.type != "cpu" or workers == 1 or len(todo) <= 1:
            for s, key in todo:
                done(s, key, jsonable(fn(params, s, device)))
                if bar is not None:
                    bar.update()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                       initializer=_worker_init, initargs=(os.getpid(),))
            try:
                futures = {pool.submit(_call, fn, params, s): (s, key) for s, key in todo}
                for fut in as_completed(futures):
                    s, key = futures[fut]
                    done(s, key, fut.result())
                    if bar is not None:
                        bar.update()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
                raise
            else:
                pool.shutdown(wait=True)
    finally:
        if bar is not None:
            bar.close()
    return [records[s] for s in seeds]


def cache_dir_for(results_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The per-seed cache folder: ``cache_dir`` if given, else ``<results_dir>/seeds``."""
    return Path(cache_dir) if cache_dir else Path(results_dir) / "seeds"
