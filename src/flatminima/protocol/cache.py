"""The per-seed cache: one record per (claim, seed, key), the one layout and entry format.

A finished seed of claim ``c`` is stored atomically at ``<cache_dir>/<c>/seed-<seed>-<key>.json``
as ``{"format", "claim", "seed", "key", "record"[, "meta"]}``, where ``key`` is :func:`seed_key`:
the hash of everything that determines the record. The notebook's :func:`flatminima.protocol.replicates.run_seeds`
and the sweep's workers (:mod:`flatminima.run.sweep`) both read and write it here, so a sweep and a
notebook share a cache.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    values = {k: v for k, v in params.to_dict().items() if k not in EXCLUDED_FROM_KEY}
    payload = {"format": CACHE_FORMAT, "claim": params.CLAIM, "fn": f"{fn.__module__}.{fn.__qualname__}",
               "params": values, "seed": int(seed), "source": closure_hash(fn.__module__), "torch": torch.__version__,
               "numpy": np.__version__, "device": torch.device(device).type, "cpu": cpu_capability()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def seed_path(cache_dir: str | Path, claim: str, seed: int, key: str) -> Path:
    """Where the record of ``claim``'s ``seed`` with ``key`` lives under ``cache_dir``."""
    return Path(cache_dir) / claim / f"seed-{int(seed)}-{key}.json"


def load_entry(path: Path, key: str) -> dict | None:
    """The whole cache entry at ``path`` if it is well formed and carries ``key``; None otherwise."""
    try:
        entry = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("record"), dict)):
        return None
    return entry


def load_cached(path: Path, key: str) -> dict | None:
    """The cached record at ``path`` if it is well formed and carries ``key``; None otherwise."""
    entry = load_entry(path, key)
    return None if entry is None else entry["record"]


def store(path: Path, claim: str, seed: int, key: str, record: Mapping[str, Any],
          meta: Mapping[str, Any] | None = None) -> Path:
    """Write one entry atomically at ``path`` (``meta``: how the record was made, when given)."""
    entry: dict[str, Any] = {"format": CACHE_FORMAT, "claim": claim, "seed": int(seed), "key": key,
                             "record": jsonable(record)}
    if meta is not None:
        entry["meta"] = jsonable(meta)
    return atomic_write_text(path, json.dumps(entry, allow_nan=False) + "\n")
