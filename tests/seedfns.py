"""Module-level per-seed functions for the replicates tests (workers import them by name)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def noisy_value(params, seed, device):
    """A record that depends on the seed and one parameter only."""
    g = torch.Generator().manual_seed(seed)
    return {"seed": seed, "value": float(params.value + torch.randn((), generator=g)), "pid": os.getpid()}


def fails_on_seed_3(params, seed, device):
    """Like :func:`noisy_value` but raises on seed 3 (an interruption in the middle of a run)."""
    if seed == 3:
        raise KeyboardInterrupt("stopped on seed 3")
    return noisy_value(params, seed, device)


def counting(params, seed, device):
    """Leaves a marker file per computed seed so a test can see which seeds ran."""
    marks = Path(os.environ["SEEDFNS_MARKS"])
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"{seed}-{os.getpid()}").touch()
    return noisy_value(params, seed, device)
