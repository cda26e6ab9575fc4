"""Datasets: shapes, determinism under a seed, and clear errors for what is missing."""
from __future__ import annotations

import pytest
import torch

from flatminima.data.loaders import load_dataset
from flatminima.data.registry import (
    DATASETS,
    DISPLAY_NAMES,
    OFFLINE_DATASETS,
    TORCHVISION_DATASETS,
    DatasetNotAvailable,
)


@pytest.mark.parametrize("name, shape, n_train, n_test", [
    ("mnist1d", (40,), 4000, 1000),
    ("digits", (64,), 1438, 359),
])
def test_offline_datasets_have_the_documented_shapes(name, shape, n_train, n_test):
    d = load_dataset(name, seed=0)
    assert d.input_shape == shape and len(d.X_train) == n_train and len(d.X_test) == n_test
    assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and set(d.y_train.unique().tolist()) == set(range(10))


@pytest.mark.parametrize("name", ["mnist1d", "digits", "gaussian-mixture"])
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = (load_dataset(name, seed=s, n_train=100, n_test=50) for s in (3, 3, 4))
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, c.X_train)
    assert len(a.X_train) == 100 and len(a.X_test) == 50


def test_gaussian_mixture_matches_its_generative_model():
    N, alpha, Delta, rho = 400, 5.0, 0.5, 0.8
    d = load_dataset("gaussian-mixture", seed=1, N=N, alpha=alpha, Delta=Delta, rho=rho, n_test=20000)
    assert d.X_train.shape == (int(alpha * N), N)
    v = d.meta["v"]
    y = d.y_test.float() * 2 - 1
    # class balance: P(y=+1) = rho, within 4 standard errors
    assert abs((y > 0).float().mean().item() - rho) < 4 * (rho * (1 - rho) / len(y)) ** 0.5
    # projection on v/|v|: mean y |v|/sqrt(N), variance Delta
    proj = d.X_test @ (v / v.norm())
    resid = proj - y * v.norm() / N ** 0.5
    assert abs(resid.mean().item()) < 0.05 and abs(resid.var().item() - Delta) < 0.05
    # orthogonal directions carry pure noise of variance Delta
    assert abs(d.X_test[:, :50].var().item() - Delta - 1 / N) < 0.05


def test_standardize_uses_training_statistics():
    d = load_dataset("digits", seed=0, standardize=True)
    informative = d.X_train.std(0) > 0.5
    assert torch.allclose(d.X_train.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(d.X_train.std(0)[informative], torch.ones(int(informative.sum())), atol=1e-4)


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist-1d'; allowed: gaussian-mixture, mnist1d"):
        load_dataset("mnist-1d")


def test_subset_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match=r"n_train must be between 1 and 1438"):
        load_dataset("digits", n_train=10_000)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_torchvision_dataset_offline_names_dataset_root_and_alternatives(name, tmp_path):
    with pytest.raises(DatasetNotAvailable) as info:
        load_dataset(name, root=tmp_path / "nothing-here", download=False)
    msg = str(info.value)
    assert name in msg and str(tmp_path / "nothing-here") in msg
    assert "download=True" in msg and "mnist1d" in msg and "digits" in msg


@pytest.mark.parametrize("name", DATASETS)
def test_every_listed_dataset_loads_offline_or_is_a_named_torchvision_download(name, tmp_path):
    if name in OFFLINE_DATASETS:
        d = load_dataset(name, seed=0, n_train=20, n_test=10)
        assert len(d.X_train) == 20 and len(d.y_train) == 20 and d.num_classes >= 2
    else:  # known to the loader (not "unknown dataset"), missing here, with a name for the prose
        assert name in TORCHVISION_DATASETS and DISPLAY_NAMES[name]
        with pytest.raises(DatasetNotAvailable):
            load_dataset(name, root=tmp_path, download=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(name + "-x")
    assert (name in OFFLINE_DATASETS) != (name in TORCHVISION_DATASETS)
