"""Train many replications of one architecture at once: ``stack_module_state`` + ``vmap``.

On a GPU, small networks leave most of the device idle; stacking R replicas along a leading
dimension and vectorising the step with :func:`torch.func.vmap` runs them in one kernel launch
per operation. On a CPU the gain is modest (see ``benchmarks/bench_replicas.py``), so the
chapters run seeds in separate processes there (:mod:`flatminima.replicates`) and this module is
the GPU path.

Each replica keeps its own data order (its own ``torch.Generator``), so replica ``r`` trained
here follows the same trajectory as the same network trained alone with plain minibatch SGD
(:func:`sgd_loop`), up to floating-point summation order.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F


def _orders(n: int, batch_size: int, num_steps: int, seeds: Sequence[int], device: torch.device) -> torch.Tensor:
    """Minibatch indices, shape ``(R, num_steps, batch_size)``: replica r reshuffles with seed r each epoch."""
    per_epoch = n // batch_size
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        idx = []
        while len(idx) < num_steps:
            perm = torch.randperm(n, generator=g)
            idx.extend(perm[i * batch_size:(i + 1) * batch_size] for i in range(per_epoch))
        out.append(torch.stack(idx[:num_steps]))
    return torch.stack(out).to(device)


def train_stacked(nets: Sequence[nn.Module], X: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int,
                  num_steps: int, seeds: Sequence[int]) -> list[dict[str, torch.Tensor]]:
    r"""Plain minibatch SGD, :math:`\theta_r \leftarrow \theta_r - \eta \nabla L_{B_{r,t}}(\theta_r)`, for R replicas at once.

    ``nets`` share one architecture (their parameters differ); ``seeds[r]`` fixes replica r's
    data order. Returns each replica's final parameters (the nets passed in are not modified).
    """
    if len(nets) != len(seeds):
        raise ValueError(f"one seed per net: got {len(nets)} nets and {len(seeds)} seeds")
    if not 1 <= batch_size <= len(X):
        raise ValueError(f"batch_size must be in [1, {len(X)}], got {batch_size}")
    params, buffers = stack_module_state([copy.deepcopy(n) for n in nets])
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")

    def loss(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    step_grad = vmap(grad(loss), in_dims=(0, 0, 0, 0))
    order = _orders(len(X), batch_size, num_steps, seeds, X.device)
    for t in range(num_steps):
        idx = order[:, t]
        g = step_grad(params, buffers, X[idx], y[idx])
        params = {k: params[k] - lr * g[k] for k in params}
    return [{k: v[r] for k, v in params.items()} for r in range(len(nets))]


def sgd_loop(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int, num_steps: int,
             seed: int) -> dict[str, torch.Tensor]:
    """The sequential reference: one replica of :func:`train_stacked`, trained alone with ``torch.optim.SGD``."""
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    order = _orders(len(X), batch_size, num_steps, [seed], X.device)[0]
    for t in range(num_steps):
        idx = order[t]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(X[idx]), y[idx]).backward()
        opt.step()
    return {k: v.detach() for k, v in net.named_parameters()}
