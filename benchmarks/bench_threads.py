"""How many torch threads for this project's small models? One run, two scenarios.

Trains the cpu-preset-sized MLP (40-128-128-128-10, Adam, batch 32) on MNIST-1D for a fixed
number of steps and reports ratios measured in this run:

1. one job alone: ``os.cpu_count()`` threads vs 1 thread;
2. two jobs at once (what ``flatminima run --jobs 2`` does): each job with all cores' threads
   vs each job with 1 thread (wall time until both finish).

``flatminima.core.device.configure_threads`` defaults to 1 thread per process from these numbers.

    python benchmarks/bench_threads.py
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import torch

from flatminima.data.loaders import load_dataset
from flatminima.nn.models import make_model
from flatminima.nn.train import train


def job(num_threads: int, steps: int = 400) -> float:
    torch.set_num_threads(num_threads)
    data = load_dataset("mnist1d", seed=0)
    net = make_model("mlp", data.input_shape, 10, widths=(128, 128, 128), seed=0)
    t0 = time.perf_counter()
    train(net, data.X_train, data.y_train, optimizer="adam", lr=1e-3, batch_size=32, num_steps=steps,
          seed=0, eval_every_epoch=False)
    return time.perf_counter() - t0


def _synced_job(args: tuple[int, object]) -> float:
    num_threads, barrier = args
    job(num_threads, steps=20)  # warm-up, so both jobs train at the same time
    barrier.wait()
    return job(num_threads, steps=1200)


def concurrent(num_threads: int, jobs: int = 2) -> float:
    """Slowest training time of ``jobs`` processes that start training together."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(jobs)
        with ctx.Pool(jobs) as pool:
            return max(pool.map(_synced_job, [(num_threads, barrier)] * jobs))


def main() -> None:
    n = os.cpu_count() or 1
    job(1)  # warm-up: imports, allocator
    alone_1, alone_n = min(job(1) for _ in range(3)), min(job(n) for _ in range(3))
    both_1, both_n = concurrent(1), concurrent(n)
    print(f"one job alone:   1 thread {alone_1:.2f} s, {n} threads {alone_n:.2f} s "
          f"-> {n}-thread/1-thread = {alone_n / alone_1:.2f}")
    print(f"two jobs at once (3x the steps): 1 thread each {both_1:.2f} s, {n} threads each {both_n:.2f} s "
          f"-> {n}-thread/1-thread = {both_n / both_1:.2f}")


if __name__ == "__main__":
    main()
