"""Seeds as units of work: run a claim's per-seed function over seeds, in processes, with a cache.

Every claim module exposes a pure per-seed function ``run_seed(params, seed, device) -> dict``
(one replication: its initial point, data order, data subset and sampled directions all follow
from ``seed``) and an aggregation step over the per-seed records. :func:`run_seeds` runs the
per-seed function for many seeds:

* **cached**: each finished seed is written atomically to ``cache_dir/<claim>/seed-<seed>-<key>.json``
  (:mod:`flatminima.protocol.cache`), keyed by :func:`~flatminima.protocol.cache.seed_key` (the claim, the function, every parameter except the seed list, the
  seed, the package source, the numeric libraries and the CPU kernels in force). Adding seeds, or
  re-running after an interruption, computes only the seeds that are missing;
* **parallel**: on CPU, ``workers`` spawned processes with one torch thread each (the thread
  policy of :mod:`flatminima.core.device`); a worker dies with its parent, so stopping the kernel
  leaves no orphans;
* **deterministic**: a seed's record depends on ``(params, seed)`` alone, not on the number of
  workers or the order seeds finish in.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

import torch

from flatminima.core.device import configure_threads
from flatminima.core.io import jsonable
from flatminima.protocol.cache import SeedFn, load_cached, seed_key, seed_path, store
from flatminima.protocol.params import ClaimParams

__all__ = ["cache_dir_for", "default_workers", "run_seeds"]

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
        if cache is not None and (hit := load_cached(seed_path(cache, params.CLAIM, s, key), key)) is not None:
            records[s] = hit
        else:
            todo.append((s, key))

    def done(s: int, key: str, rec: dict) -> None:
        records[s] = rec
        if cache is not None:
            store(seed_path(cache, params.CLAIM, s, key), params.CLAIM, s, key, rec)

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
