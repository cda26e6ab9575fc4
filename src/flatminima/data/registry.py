"""The datasets of the study: their names, which need no download, torchvision's names, display names, the data root."""
from __future__ import annotations

import os
from pathlib import Path

DATASETS: tuple[str, ...] = ("gaussian-mixture", "mnist1d", "digits", "mnist", "fashion-mnist", "cifar10")


OFFLINE_DATASETS: tuple[str, ...] = ("gaussian-mixture", "mnist1d", "digits")


TORCHVISION_DATASETS: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
"""Datasets read from torchvision's files -> torchvision's class (and folder) name."""
DISPLAY_NAMES: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
"""Datasets that must be fetched -> their name in prose."""


class DatasetNotAvailable(FileNotFoundError):
    """A torchvision dataset is neither under the data root nor downloadable."""


def default_root() -> Path:
    """``$FLATMINIMA_DATA`` if set, else ``~/.cache/flatminima/data``."""
    return Path(os.environ.get("FLATMINIMA_DATA", Path.home() / ".cache" / "flatminima" / "data"))
