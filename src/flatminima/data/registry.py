"""The datasets of the study: their names, which need no download, torchvision's names, display names, the data root."""
from __future__ import annotations

import os
from pathlib import Path

DATASETS: tuple[str, ...] = ("gaussian-mixture", "mnist1d", "digits", "mnist", "fashion-mnist", "cifar10")
"""Every dataset a claim can name (``load_dataset``'s ``name``)."""


OFFLINE_DATASETS: tuple[str, ...] = ("gaussian-mixture", "mnist1d", "digits")
"""Datasets generated or shipped with a package: they need no download."""


TORCHVISION_DATASETS: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
"""Datasets read from torchvision's files -> torchvision's class (and folder) name."""
DISPLAY_NAMES: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
"""Datasets that must be fetched -> their name in prose."""
DATASET_TITLES: dict[str, str] = {"gaussian-mixture": "a generated Gaussian mixture", "mnist1d": "MNIST-1D",
                                  "digits": "scikit-learn digits", **DISPLAY_NAMES}
"""Every dataset -> how a chapter's prose names it (the one home of these names: pages and claims use it)."""


def dataset_title(name: str) -> str:
    """How prose names the dataset ``name`` ("scikit-learn digits", "MNIST-1D", "CIFAR-10", ...).

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.

    Returns
    -------
    str
        The human-readable title; an unknown name is returned unchanged.
    """
    return DATASET_TITLES.get(name, name)


class DatasetNotAvailable(FileNotFoundError):
    """A torchvision dataset is neither under the data root nor downloadable."""


def default_root() -> Path:
    """``$FLATMINIMA_DATA`` if set, else ``~/.cache/flatminima/data``.

    Returns
    -------
    Path
        The folder that holds the downloaded datasets.
    """
    return Path(os.environ.get("FLATMINIMA_DATA", Path.home() / ".cache" / "flatminima" / "data"))
