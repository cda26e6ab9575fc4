"""Where and how a result was computed: package versions, commit, CPU and its kernels, threads, GPU."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES: tuple[str, ...] = ("flatminima", "torch", "torchvision", "numpy", "scipy", "scikit-learn",
                             "statsmodels", "pandas", "mnist1d", "papermill", "myst-nb")
"""Distributions whose versions shape the numbers or the pages, recorded in every result."""


def versions() -> dict[str, str]:
    """Versions of Python, the platform and :data:`PACKAGES`, read with :mod:`importlib.metadata`.

    Reading the installed distributions' metadata (not ``module.__version__``, which some packages,
    mnist1d among them, do not set) records what actually ran; a distribution that is absent is
    left out rather than recorded under a made-up version.

    Returns
    -------
    dict of str to str
        ``python``, ``platform`` and one entry per installed distribution of :data:`PACKAGES`.
    """
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, text=True,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str | None = None) -> dict[str, Any]:
    """Where and how a result was computed: commit, CPU and its kernels, threads, GPU, time.

    ``git_commit`` is the commit of the package's source tree (None outside a git checkout) and
    ``git_dirty`` whether its ``src/`` or ``notebooks/`` differ from that commit.

    Parameters
    ----------
    device : str or None
        The device the result was computed on, recorded as given.

    Returns
    -------
    dict
        JSON-ready fields: ``git_commit``, ``git_dirty``, CPU, kernels (:func:`cpu_capability`), threads,
        GPU, time and :func:`versions`.
    """
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        top = _git("rev-parse", "--show-toplevel")
        status = _git("-C", top, "status", "--porcelain", "--untracked-files=no", "--", "src", "notebooks") if top else None
        dirty = bool(status) if status is not None else None
    out: dict[str, Any] = {
        "git_commit": commit, "git_dirty": dirty,
        "executed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_capability": cpu_capability(),
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"), "torch_threads": torch.get_num_threads(),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def cpu_capability() -> str:
    """The ATen CPU kernel family in force (``AVX512``, ``AVX2``, ``DEFAULT``), as torch reports it.

    Returns
    -------
    str
        The kernel family, or ``ATEN_CPU_CAPABILITY`` (``unknown`` if unset) when torch cannot say.
    """
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch
        return os.environ.get("ATEN_CPU_CAPABILITY", "unknown")
