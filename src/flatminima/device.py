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

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises ValueError for anything else, and RuntimeError when CUDA is asked for but absent.
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be a string (auto, cpu, cuda, cuda:N), got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} was asked for but CUDA is not available; "
                               "use device='auto' or 'cpu'")
        return torch.device(device)
    raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N; got {device!r}")


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads and return the number in force.

    ``None`` reads ``FLATMINIMA_THREADS`` and otherwise uses 1, the fastest setting measured
    for this project's small models on 2 cores.
    """
    if num_threads is None:
        num_threads = int(os.environ.get("FLATMINIMA_THREADS", "1"))
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def setup(device: str = "auto", num_threads: int | None = None) -> torch.device:
    """Resolve the device and apply the CPU thread policy; the one call a notebook makes."""
    dev = resolve_device(device)
    configure_threads(num_threads)
    return dev
