"""Benchmark: batched loss-profile evaluation vs a naive per-point loop (variance-flatness chapter).

Evaluates L(w0 + theta p_i) for many (direction, theta) points of the digits MLP 64-50-50-10
(perturbing the 50x50 hidden-to-hidden matrix, full training loss) in three ways:

* ``fused``: :func:`flatminima.landscape.trajectory.mlp_line_loss` (what the chapter uses for one MLP layer:
  the layer's pre-activation is affine along a line, so it is precomputed once per direction),
* ``vmap``: :func:`flatminima.landscape.trajectory.line_loss` over :func:`batched_param_loss`
  (``torch.func.vmap`` over ``functional_call``, the general path, e.g. for ``weights="all"``),
* ``naive``: :func:`flatminima.landscape.trajectory.naive_param_loss` (one model copy + forward per point),

and prints the time per point and the ratios, measured in this one run. Also times one width
search (:func:`profile_widths`, 100 directions) with each batched path and a Langevin step by
reverse-mode autograd vs ``torch.func.grad``.
Run: ``.venv/bin/python benchmarks/bench_profiles.py [--device auto]``.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from torch.func import grad

from flatminima.core.device import setup
from flatminima.data.loaders import load_dataset
from flatminima.landscape.noise import full_batch_loss, langevin_trajectory
from flatminima.landscape.trajectory import (
    batched_param_loss,
    line_loss,
    mlp_line_loss,
    naive_param_loss,
    profile_widths,
    select_parameters,
)
from flatminima.nn.flat import flatten
from flatminima.nn.models import make_model
from flatminima.nn.train import train


def timed(fn, repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--points", type=int, default=400, help="profile points for the batched evaluation")
    ap.add_argument("--naive-points", type=int, default=100, help="profile points for the naive loop")
    args = ap.parse_args()
    dev = setup(args.device)
    data = load_dataset("digits", seed=0, standardize=True).flat().to(dev)
    net = make_model("mlp", data.input_shape, data.num_classes, widths=(50, 50), seed=0).to(dev)
    train(net, data.X_train, data.y_train, lr=0.1, batch_size=50, num_epochs=20, seed=0)
    names = select_parameters(net, "hidden")
    w0 = flatten(dict(net.named_parameters()), names)[0]
    g = torch.Generator(device="cpu").manual_seed(0)
    dirs = torch.linalg.qr(torch.randn(w0.numel(), 100, generator=g, dtype=torch.float64))[0].T.float().to(dev)
    per = args.points // 100
    idx = torch.arange(100).repeat_interleave(per)
    theta = torch.linspace(-2, 2, per).repeat(100)
    t0 = time.perf_counter()
    fused = mlp_line_loss(net, data.X_train, data.y_train, names, dirs)
    setup_s = time.perf_counter() - t0
    vmapped = line_loss(batched_param_loss(net, data.X_train, data.y_train, names), w0, dirs)
    naive = naive_param_loss(net, data.X_train, data.y_train, names)
    m = args.naive_points
    ref = naive(w0 + theta[:m, None].to(dev) * dirs[idx[:m]])
    err = max(float((fused(idx[:m], theta[:m]) - ref).abs().max()),
              float((vmapped(idx[:m], theta[:m]) - ref).abs().max()))
    tf = timed(lambda: fused(idx, theta)) / len(idx)
    tv = timed(lambda: vmapped(idx, theta)) / len(idx)
    tn = timed(lambda: naive(w0 + theta[:m, None].to(dev) * dirs[idx[:m]]), repeat=2) / m
    print(f"device {dev}, torch threads {torch.get_num_threads()}, {len(data.X_train)} training samples, "
          f"d={w0.numel()}")
    print(f"loss profile, fused MLP line loss ({len(idx)} points): {tf * 1e3:7.3f} ms/point "
          f"(+ {setup_s:.2f} s once for 100 directions)")
    print(f"loss profile, vmap over functional_call ({len(idx)} points): {tv * 1e3:7.3f} ms/point")
    print(f"loss profile, naive loop ({m} points): {tn * 1e3:7.3f} ms/point")
    print(f"speed-up fused / naive: {tn / tf:5.1f}x; vmap / naive: {tn / tv:5.1f}x; fused / vmap: {tv / tf:5.1f}x "
          f"(max |difference| {err:.2e})")
    L0 = float(fused(torch.zeros(1, dtype=torch.long), torch.zeros(1))[0])
    for name, along in (("fused", fused), ("vmap", vmapped)):
        res = {}
        tw = timed(lambda: res.update(r=profile_widths(along, 100, math.e * L0, num_bisect=14)), repeat=1)
        print(f"widths of 100 profiles at e*L0 ({name}): {tw:6.2f} s, {res['r'].evaluations} loss evaluations")
    p0 = {k: v.detach() for k, v in net.named_parameters()}
    loss = full_batch_loss(net, data.X_train, data.y_train)
    steps = 100
    ta = timed(lambda: langevin_trajectory(loss, p0, lr=0.1, temperature=1e-6, num_steps=steps,
                                           record=lambda p: flatten(p, names)[0]), repeat=2) / steps
    gfn = grad(loss)
    tg = timed(lambda: [gfn(p0) for _ in range(steps)], repeat=2) / steps
    print(f"Langevin step (autograd): {ta * 1e3:.2f} ms; torch.func.grad alone: {tg * 1e3:.2f} ms "
          f"-> autograd {tg / ta:.1f}x faster")


if __name__ == "__main__":
    main()
