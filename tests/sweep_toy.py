"""A toy claim for the sweep tests and benchmark, following the per-seed contract of the claims.

``run_seed`` trains a linear model by full-batch gradient descent on data drawn from the seed
(real torch work whose cost is set by ``num_steps``) and also returns ``offset = 10 lr +
batch_size + seed``, a field with a closed form so tests can check the sweep's statistics
exactly. ``fail_seed`` makes one seed raise; ``flaky_dir`` makes every point raise once (the
first attempt leaves a marker file there), to test retries.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from flatminima.protocol.contract import Aggregate, Part, Statistic
from flatminima.protocol.params import ClaimParams, param
from flatminima.stats.decision import Verdict
from flatminima.stats.intervals import statistic


@dataclasses.dataclass(frozen=True)
class Params(ClaimParams):
    CLAIM = "toy"
    PRESETS = {"smoke": {"num_steps": 20}, "cpu": {"num_steps": 200}, "paper": {"num_steps": 2000}}

    lr: float = param(0.1, "gradient-descent step size", low=0.0, low_inclusive=False, high=1.0)
    batch_size: int = param(16, "samples drawn per seed", low=2)
    num_steps: int = param(20, "gradient-descent steps", low=1)
    dim: int = param(8, "input dimension", low=1)
    num_seeds: int = param(3, "default number of seeds", low=1)
    fail_seed: int = param(-1, "a seed whose run raises (-1: none)")
    flaky_dir: str = param("", "folder of markers: every point fails on its first attempt (empty: off)")


def run_seed(params: Params, seed: int, device: torch.device) -> dict:
    """One replication: GD on least squares with data from ``seed``; closed-form ``offset``."""
    if seed == params.fail_seed:
        raise ValueError(f"toy failure for seed {seed}")
    if params.flaky_dir:
        marker = Path(params.flaky_dir) / f"lr{params.lr}-b{params.batch_size}-s{seed}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("failed once\n")
            raise RuntimeError(f"toy flaky failure (first attempt) for seed {seed}")
    g = torch.Generator().manual_seed(int(seed))
    X = torch.randn(params.batch_size, params.dim, generator=g)
    y = X @ torch.randn(params.dim, generator=g) + 0.1 * torch.randn(params.batch_size, generator=g)
    X, y = X.to(device), y.to(device)
    w = torch.zeros(params.dim, device=device)
    for _ in range(params.num_steps):
        w = w - params.lr * 2 * X.T @ (X @ w - y) / params.batch_size
    loss = float(((X @ w - y) ** 2).mean())
    return {"seed": int(seed), "offset": 10 * params.lr + params.batch_size + seed, "loss": loss,
            "w": w.cpu().tolist(), "converged": loss < 0.1}


def aggregate(params: Params, records: list[dict]) -> Aggregate:
    """The headline: mean offset over seeds (Student t 90% interval), and a verdict."""
    head = Statistic.from_dict(statistic("mean offset", [r["offset"] for r in records]))
    outcome = Verdict.REPRODUCED if head.value > 20 else Verdict.INCONCLUSIVE
    part = Part("Part A", outcome, f"mean offset {head.value:.3g}",
                Statistic.from_dict(statistic("loss", [r["loss"] for r in records])))
    return Aggregate(verdict=outcome, parts=(part,), headline=head, statistics={}, criterion="mean offset > 20")
