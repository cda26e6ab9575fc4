"""How many torch threads for this project's small models? Measures one-thread vs all-core time.

Trains the cpu-preset-sized MLP (40-128-128-128-10, batch 32) on MNIST-1D for a fixed number
of steps with 1 and with ``os.cpu_count()`` intra-op threads, in one run, and prints the ratio.
``flatminima.device.configure_threads`` defaults to 1 based on this measurement.

    python benchmarks/bench_threads.py
"""
from __future__ import annotations

import os
import time

import torch

from flatminima.data import load_dataset
from flatminima.models import make_model
from flatminima.train import train


def time_training(num_threads: int, steps: int = 400, repeats: int = 3) -> float:
    torch.set_num_threads(num_threads)
    data = load_dataset("mnist1d", seed=0)
    best = float("inf")
    for _ in range(repeats):
        net = make_model("mlp", data.input_shape, 10, widths=(128, 128, 128), seed=0)
        t0 = time.perf_counter()
        train(net, data.X_train, data.y_train, optimizer="adam", lr=1e-3, batch_size=32, num_steps=steps,
              seed=0, eval_every_epoch=False)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    n = os.cpu_count() or 1
    t1 = time_training(1)
    tn = time_training(n)
    print(f"steps of Adam, MLP 40-128-128-128-10, batch 32: 1 thread {t1:.2f} s, {n} threads {tn:.2f} s, "
          f"ratio {n}-thread/1-thread = {tn / t1:.2f}")


if __name__ == "__main__":
    main()
