"""The grid of a sweep: ``--grid`` specs, the validated cells and their points (nothing run here)."""
from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flatminima.claims.registry import CLAIMS, claim_module
from flatminima.core.errors import ParameterError
from flatminima.protocol.cache import load_entry, seed_key, seed_path
from flatminima.protocol.params import RUN_CONTROLS, ClaimParams, parse_seeds, parse_value

NOT_GRIDDABLE = ("preset", "seeds", "num_seeds")


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["lr=0.1,0.05", "batch_size=64,512"]`` -> ``{"lr": [0.1, 0.05], "batch_size": [64, 512]}``.

    Values are YAML scalars split on commas; a value list that starts with ``[`` is read as one
    YAML list, for list-valued parameters: ``widths=[[64, 64], [128]]``. Each value is read by
    :func:`flatminima.protocol.params.parse_value`: text that is not YAML is an error.
    """
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = (s.strip() for s in str(spec).partition("="))
        if not sep or not name or not values:
            raise ParameterError(f"--grid {spec!r}: write NAME=V1,V2,... (e.g. --grid lr=0.1,0.05)")
        if name in grid:
            raise ParameterError(f"--grid names {name!r} twice; give all its values in one --grid")
        if values.startswith("["):
            parsed = parse_value(values, name, option="--grid")
            if not isinstance(parsed, list):
                raise ParameterError(f"--grid {spec!r}: {values!r} is not a YAML list")
        else:
            parsed = [parse_value(v.strip(), name, option="--grid") for v in values.split(",") if v.strip()]
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
    """Where a point's record lives: the per-seed cache layout of :mod:`flatminima.protocol.cache`."""
    return seed_path(cache_dir, point.params.CLAIM, point.seed, point.key)


def load_point(cache_dir: Path, point: Point) -> tuple[dict, dict] | None:
    """``(record, meta)`` of a finished point, or None if it has not finished (or is stale)."""
    entry = load_entry(record_path(cache_dir, point), point.key)
    if entry is None:
        return None
    meta = entry.get("meta")
    return entry["record"], (meta if isinstance(meta, dict) else {})


def default_name(claim: str, grid: Mapping[str, Any]) -> str:
    """``<claim>-<param>-<param>``: the sweep's folder name under the book's sweeps folder."""
    return "-".join([claim, *(k.replace("_", "-") for k in grid)])
