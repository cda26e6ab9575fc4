"""Device choice and CPU thread policy.

On this project's small CPU workloads (MLPs of a few hundred units) PyTorch's intra-op
threads buy little and cost a lot when processes share the cores. Measured on 2 cores with
``benchmarks/bench_threads.py`` (MLP 40-128-128-128-10, Adam, batch 32): one job alone ran
only 4% faster with 2 threads than with 1, while two jobs at once (what ``flatminima run
--jobs 2`` does) took 32x longer with 2 threads each than with 1 thread each. So each
process uses one thread, and parallelism comes from separate processes.
"""
from __future__ import annotations

import os

import torch

from flatminima.core.errors import ParameterError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
"""How a device is spelled: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda``, ``cuda:N``."""


def check_device(device: str) -> str:
    """Validate the spelling of ``device`` and that torch in this process can use it.

    Parameters
    ----------
    device : str
        One of :data:`DEVICE_CHOICES`.

    Returns
    -------
    str
        ``device`` unchanged.

    Raises
    ------
    ParameterError
        For any other spelling, for ``cuda``/``cuda:N`` when torch sees no GPU, and for ``cuda:N``
        beyond the GPUs torch sees; the message says what to pass instead.
    """
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                           or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ParameterError(f"device must be one of auto, cpu, cuda, cuda:N; got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParameterError(f"device {device} was asked for but torch sees no CUDA GPU here "
                                 "(torch.cuda.is_available() is False); use device cpu or auto")
        count = torch.cuda.device_count()
        if ":" in device and int(device[5:]) >= count:
            raise ParameterError(f"device {device}: torch sees {count} CUDA device(s), "
                                 f"cuda:0 to cuda:{count - 1}")
    return device


def resolve_device(device: str = "auto") -> torch.device:
    """The :class:`torch.device` for ``device`` after :func:`check_device`: ``auto`` becomes CUDA when available.

    Parameters
    ----------
    device : str
        One of :data:`DEVICE_CHOICES`.

    Returns
    -------
    torch.device
    """
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads and return the number in force.

    ``None`` reads ``FLATMINIMA_THREADS`` and otherwise uses 1, the fastest setting measured
    for this project's small models on 2 cores.

    Parameters
    ----------
    num_threads : int or None
        Threads to use; ``None`` reads ``FLATMINIMA_THREADS`` (default 1).

    Returns
    -------
    int
        ``torch.get_num_threads()`` after the call.
    """
    if num_threads is None:
        num_threads = int(os.environ.get("FLATMINIMA_THREADS", "1"))
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def setup(device: str = "auto", num_threads: int | None = None) -> torch.device:
    """Resolve the device and apply the CPU thread policy; the one call a notebook makes.

    Parameters
    ----------
    device : str
        One of :data:`DEVICE_CHOICES`, checked by :func:`check_device`.
    num_threads : int or None
        Passed to :func:`configure_threads`.

    Returns
    -------
    torch.device
        The device that :func:`resolve_device` chose.
    """
    dev = resolve_device(device)
    configure_threads(num_threads)
    return dev
