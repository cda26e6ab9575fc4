"""Replicas of one seed set trained together (``stack_module_state`` + ``vmap``) vs one after another.

16 replicas of the cpu-preset MLP (40-128-128-128-10), plain SGD at batch 32 on MNIST-1D, the same
number of steps each; reports the measured ratio ``sequential time / stacked time`` in this run,
on CPU (1 thread, the project's policy) and on CUDA when present, and checks that both paths
give the same weights.

    python benchmarks/bench_replicas.py [--replicas 16] [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import torch

from flatminima.data import load_dataset
from flatminima.device import configure_threads
from flatminima.models import make_model
from flatminima.stacked import sgd_loop, train_stacked


def run(device: str, replicas: int, steps: int) -> tuple[float, float, float]:
    data = load_dataset("mnist1d", seed=0).flat().to(device)
    nets = [make_model("mlp", data.input_shape, 10, widths=(128, 128, 128), seed=s).to(device) for s in range(replicas)]
    seeds = list(range(replicas))
    kw = {"lr": 0.05, "batch_size": 32, "num_steps": steps}
    train_stacked(nets[:2], data.X_train, data.y_train, seeds=seeds[:2], **{**kw, "num_steps": 5})  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    loop = [sgd_loop(n, data.X_train, data.y_train, seed=s, **kw) for n, s in zip(nets, seeds)]
    sync()
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacked = train_stacked(nets, data.X_train, data.y_train, seeds=seeds, **kw)
    sync()
    t_stacked = time.perf_counter() - t0
    err = max(float((a[k] - b[k]).abs().max()) for a, b in zip(loop, stacked) for k in a)
    return t_loop, t_stacked, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    configure_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{args.replicas} replicas of MLP 40-128-128-128-10, SGD, batch 32, {args.steps} steps each")
    print("device | sequential s | stacked s | sequential/stacked | max weight difference")
    for dev in devices:
        t_loop, t_stacked, err = run(dev, args.replicas, args.steps)
        print(f"{dev} | {t_loop:.2f} | {t_stacked:.2f} | {t_loop / t_stacked:.2f}x | {err:.1e}")


if __name__ == "__main__":
    main()
