"""Claim gradient-mismatch: placeholder protocol (Kim et al. (2020)); the chapter issue replaces it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..data import DATASETS
from ..params import ClaimParams, param
from ._baseline import run_baseline


@dataclass(frozen=True)
class Params(ClaimParams):
    """Parameters of the gradient-mismatch notebook."""

    CLAIM: ClassVar[str] = "gradient-mismatch"
    PRESETS: ClassVar[dict] = {
        "smoke": {"num_seeds": 2, "num_epochs": 1, "widths": (32,)},
        "cpu": {},
        "paper": {"num_seeds": 5, "num_epochs": 50, "widths": (512, 512)},
    }

    dataset: str = param("mnist1d", "dataset to train on", choices=DATASETS)
    num_seeds: int = param(3, "number of seeds (independent runs)", low=1, high=100)
    widths: tuple[int, ...] = param((128, 128), "hidden layer widths of the MLP", low=1)
    lr: float = param(0.05, "SGD learning rate", low=0.0, low_inclusive=False)
    batch_size: int = param(64, "minibatch size", low=1)
    num_epochs: int = param(10, "training epochs", low=1)


run = run_baseline
