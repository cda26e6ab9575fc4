"""Benchmark: batched local energy and vmapped replicas against plain Python loops.

Not a test. Prints wall times and speed-ups measured in this run (one torch thread, CPU unless
``--device cuda``). Goal of issue 4: >= 5x for 200 noise draws and for 16 replicas.

    .venv/bin/python benchmarks/bench_flatness.py [--device cpu] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import torch

from flatminima.core.device import setup
from flatminima.curvature.hessian import params_of
from flatminima.data.loaders import load_dataset
from flatminima.data.mixture import bayes_optimal_estimator, sample_mixture, zero_one_error
from flatminima.landscape.flatness import classification_error_fn, local_energy, local_energy_loop
from flatminima.nn.models import make_model
from flatminima.nn.optim import replicated_sgd, replicated_sgd_loop


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dev = setup(args.device)
    print(f"device={dev} torch_threads={torch.get_num_threads()} repeats={args.repeats} (best of)")

    # 1. local energy of a linear classifier: N=200, P=400, 200 draws x 3 sigmas
    g = torch.Generator().manual_seed(0)
    tr = sample_mixture(400, 200, Delta=0.5, generator=g)
    X, y = tr.X.to(dev), tr.y.to(dev)
    p = {k: v.to(dev) for k, v in bayes_optimal_estimator(tr.X, tr.y, Delta=0.5).params().items()}
    fn = lambda q: zero_one_error(q, X, y)  # noqa: E731
    sig = [0.3, 0.6, 1.0]
    tb = best_of(lambda: local_energy(fn, p, sig, num_draws=200), args.repeats)
    tl = best_of(lambda: local_energy_loop(fn, p, sig, num_draws=200), args.repeats)
    print(f"local energy, linear (N=200, P=400, 200 draws x 3 sigmas): batched {tb*1e3:.1f} ms, "
          f"loop {tl*1e3:.1f} ms, speed-up {tl/tb:.1f}x")

    # 2. local energy of a one-hidden-layer network on MNIST-1D (4000 x 40, 128 hidden)
    d = load_dataset("mnist1d", seed=0).flat().to(dev)
    net = make_model("mlp", d.input_shape, d.num_classes, widths=(128,), seed=0).to(dev)
    fn = classification_error_fn(net, d.X_train, d.y_train)
    p = params_of(net)
    for chunk in (4, 25):
        tb = best_of(lambda: local_energy(fn, p, [0.5], num_draws=200, chunk_size=chunk), args.repeats)
        tl = best_of(lambda: local_energy_loop(fn, p, [0.5], num_draws=200), args.repeats)
        print(f"local energy, MLP 40-128-10 on MNIST-1D (4000 samples, 200 draws, chunk {chunk}): batched "
              f"{tb*1e3:.1f} ms, loop {tl*1e3:.1f} ms, speed-up {tl/tb:.1f}x")

    # 3. replicated SGD, 16 replicas, MLP 200-128-2 on the mixture, batch 32, 50 steps
    dm = load_dataset("gaussian-mixture", seed=0, N=200, alpha=2.0, Delta=0.5, n_test=100).to(dev)
    net = make_model("mlp", dm.input_shape, 2, widths=(128,), seed=0).to(dev)
    fn = classification_error_fn(net, dm.X_train, dm.y_train)
    p = params_of(net)
    tb = best_of(lambda: local_energy(fn, p, [0.5], num_draws=200, chunk_size=25), args.repeats)
    tl = best_of(lambda: local_energy_loop(fn, p, [0.5], num_draws=200), args.repeats)
    print(f"local energy, MLP 200-128-2 on the mixture (400 samples, 200 draws, chunk 25): batched "
          f"{tb*1e3:.1f} ms, loop {tl*1e3:.1f} ms, speed-up {tl/tb:.1f}x")
    kw = dict(lr=0.1, num_replicas=16, gamma0=0.03, gamma_max=3.0, batch_size=32, num_steps=50, seed=0)
    tv = best_of(lambda: replicated_sgd(net, dm.X_train, dm.y_train, **kw), args.repeats)
    tl = best_of(lambda: replicated_sgd_loop(net, dm.X_train, dm.y_train, **kw), args.repeats)
    print(f"replicated SGD, 16 replicas x 50 steps (MLP 200-128-2, batch 32): vmapped {tv*1e3:.0f} ms, "
          f"loop {tl*1e3:.0f} ms, speed-up {tl/tv:.1f}x")


if __name__ == "__main__":
    main()
