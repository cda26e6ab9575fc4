r"""Flatness-seeking training: Entropy-SGD, replicated SGD, smoothed-error descent, and plain SGD.

All trainers are pure functions over a network's parameter dict
(:func:`torch.func.functional_call`): they copy the parameters of the ``net`` they are given,
never change it, and return the trained parameters. Minibatches are drawn uniformly with
replacement from an explicit ``torch.Generator`` seeded by ``seed``, so the same seed gives
the same run, and the gradient budget of every trainer is counted in minibatch gradient
evaluations (``grad_evals``) so that algorithms can be compared at equal cost.

* :func:`sgd`: :math:`w \leftarrow w - \eta \nabla f_B(w)`.
* :func:`entropy_sgd`: Chaudhari et al. (ICLR 2017), Algorithm 1, as used by Pittorino et al.
  (ICLR 2021): an inner SGLD loop of ``L`` steps samples the local Gibbs measure
  :math:`\propto e^{-f(w') - \frac\gamma2\lVert w' - w\rVert^2}`, its running mean :math:`\mu`
  estimates :math:`\langle w'\rangle`, and the outer step follows the local-entropy gradient
  :math:`\nabla_w(-F_\gamma) \propto w - \mu`.
* :func:`replicated_sgd`: the robust-ensemble / replicated SGD of Baldassi et al. (PNAS 2016) and
  Pittorino et al. (2021): :math:`y` replicas, each on its own minibatches, coupled elastically to
  their centre :math:`w_c = \frac1y\sum_a w_a`; the loss is
  :math:`\sum_a f(w_a) + \frac\gamma2 \sum_a \lVert w_a - w_c\rVert^2`. Replicas run as one vectorised
  computation (:func:`torch.func.stack_module_state` + :func:`torch.func.vmap`).
* :func:`smoothed_error_descent`: projected gradient descent of the :math:`\sigma`-smoothed
  training error of a linear classifier (Baldassi, Malatesta, Negri & Zecchina 2020, section IV).

Coupling schedules are exponential, :math:`\gamma_t = \gamma_0 (\gamma_{\max}/\gamma_0)^{t/(T-1)}`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from flatminima.nn.train import check_finite

Params = dict[str, torch.Tensor]


@dataclass
class OptimResult:
    """Trained parameters, the gradient evaluations spent and the minibatch losses seen (one per step)."""

    params: Params
    grad_evals: int
    losses: list[float] = field(default_factory=list)
    replicas: Params | None = None


def coupling_schedule(gamma0: float, gamma_max: float, num_steps: int) -> np.ndarray:
    r"""Exponential schedule :math:`\gamma_t = \gamma_0 (\gamma_{\max}/\gamma_0)^{t/(T-1)}`, ``t = 0..T-1``.

    Parameters
    ----------
    gamma0 : float
        :math:`\gamma_0 > 0`.
    gamma_max : float
        :math:`\gamma_{\max}`.
    num_steps : int
        :math:`T`.

    Returns
    -------
    numpy.ndarray
        :math:`\gamma_t`, shape ``(T,)``.
    """
    if gamma0 < 0 or gamma_max < gamma0:
        raise ValueError(f"need 0 <= gamma0 <= gamma_max, got gamma0={gamma0}, gamma_max={gamma_max}")
    if num_steps <= 1 or gamma0 == 0:
        return np.full(max(num_steps, 1), float(gamma0))
    return gamma0 * (gamma_max / gamma0) ** (np.arange(num_steps) / (num_steps - 1))


def _loss(net: nn.Module):
    def f(params: Params, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(net, params, (X,)), y)
    return f


def _grad_and_value(f):
    """``(params, X, y) -> (grads, loss)`` by reverse-mode autograd on leaf copies.

    Same result as :func:`torch.func.grad_and_value` but several times faster per call for the
    small unbatched steps of :func:`sgd` and :func:`entropy_sgd` (about 5x, measured on CPU).
    """
    def gv(params: Params, X: torch.Tensor, y: torch.Tensor) -> tuple[Params, torch.Tensor]:
        leaves = {k: p.detach().requires_grad_(True) for k, p in params.items()}
        loss = f(leaves, X, y)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        return dict(zip(leaves, grads)), loss.detach()
    return gv


def _copy_params(net: nn.Module) -> Params:
    return {k: p.detach().clone() for k, p in net.named_parameters()}


def _batch(n: int, shape: tuple[int, ...], g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(n, shape, generator=g).to(device)


def _check(losses: list[float], step: int, lr: float) -> None:
    check_finite(losses[-1], step=step, lr=lr)


def sgd(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int, num_steps: int,
        seed: int = 0) -> OptimResult:
    r"""Plain minibatch SGD, :math:`w \leftarrow w - \eta \nabla f_B(w)`, on a copy of ``net``'s parameters.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are copied, not changed.
    X, y : torch.Tensor
        The training set.
    lr : float
        :math:`\eta`.
    batch_size : int
        Minibatch size.
    num_steps : int
        Number of (outer) steps.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    OptimResult
        Final parameters, gradient evaluations and minibatch losses.
    """
    _validate(lr=lr, batch_size=batch_size, num_steps=num_steps)
    f = _grad_and_value(_loss(net))
    params = _copy_params(net)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for t in range(num_steps):
        idx = _batch(len(X), (batch_size,), g, X.device)
        grads, loss = f(params, X[idx], y[idx])
        params = {k: p - lr * grads[k] for k, p in params.items()}
        losses.append(float(loss))
        _check(losses, t + 1, lr)
    return OptimResult(params, num_steps, losses)


def entropy_sgd(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, lr: float = 1.0, sgld_lr: float,
                L: int = 5, gamma0: float = 0.03, gamma_max: float = 3.0, noise: float = 1e-4,
                avg: float = 0.25, batch_size: int, num_steps: int, seed: int = 0) -> OptimResult:
    r"""Entropy-SGD (Chaudhari et al. 2017, Alg. 1) on a copy of ``net``'s parameters.

    For each of the ``num_steps`` outer steps :math:`t`, with :math:`w' = \mu = w`, repeat ``L`` times

    .. math::

        w' \leftarrow w' - \eta' \big(\nabla f_B(w') + \gamma_t (w' - w)\big) + \sqrt{\eta'}\,\varepsilon\,\xi,
        \qquad \mu \leftarrow (1 - a)\mu + a\, w',

    then :math:`w \leftarrow w - \eta\,(w - \mu)`. Here :math:`\eta'` = ``sgld_lr``, :math:`\varepsilon` =
    ``noise``, :math:`a` = ``avg`` (0.25 in the authors' code), :math:`\eta` = ``lr``. Cost:
    ``L * num_steps`` gradient evaluations. With :math:`\gamma = 0`, :math:`\varepsilon = 0`, :math:`a = 1`,
    :math:`\eta = 1` each outer step is exactly ``L`` SGD steps of size :math:`\eta'`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are copied, not changed.
    X, y : torch.Tensor
        The training set.
    lr : float
        Outer step :math:`\eta`.
    sgld_lr : float
        Inner step :math:`\eta'`.
    L : int
        Inner (SGLD) steps per outer step.
    gamma0, gamma_max : float
        The coupling schedule (:func:`coupling_schedule`).
    noise : float
        :math:`\varepsilon`.
    avg : float
        :math:`a`.
    batch_size : int
        Minibatch size.
    num_steps : int
        Number of (outer) steps.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    OptimResult
        Final :math:`w`, gradient evaluations and minibatch losses.
    """
    _validate(lr=sgld_lr, batch_size=batch_size, num_steps=num_steps)
    if L < 1 or not 0 < avg <= 1 or lr <= 0 or noise < 0:
        raise ValueError(f"need L >= 1, 0 < avg <= 1, lr > 0, noise >= 0; got L={L}, avg={avg}, lr={lr}, noise={noise}")
    f = _grad_and_value(_loss(net))
    w = _copy_params(net)
    g = torch.Generator().manual_seed(seed)
    gammas = coupling_schedule(gamma0, gamma_max, num_steps)
    losses: list[float] = []
    for t in range(num_steps):
        gamma = float(gammas[t])
        wp, mu = dict(w), dict(w)
        for _ in range(L):
            idx = _batch(len(X), (batch_size,), g, X.device)
            grads, loss = f(wp, X[idx], y[idx])
            wp = {k: p - sgld_lr * (grads[k] + gamma * (p - w[k])) for k, p in wp.items()}
            if noise > 0:
                wp = {k: p + math.sqrt(sgld_lr) * noise * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)
                      for k, p in wp.items()}
            mu = {k: (1 - avg) * m + avg * wp[k] for k, m in mu.items()}
        w = {k: p - lr * (p - mu[k]) for k, p in w.items()}
        losses.append(float(loss))
        _check(losses, (t + 1) * L, sgld_lr)
    return OptimResult(w, L * num_steps, losses)


def _stack(net: nn.Module, num_replicas: int) -> Params:
    """``num_replicas`` copies of ``net``'s parameters stacked on a leading axis (all start at ``net``)."""
    params, _ = stack_module_state([copy.deepcopy(net) for _ in range(num_replicas)])
    return {k: p.detach() for k, p in params.items()}


def _replica_grads(net: nn.Module):
    """``(stacked params, X (y, B, ...), y (y, B)) -> (per-replica grads, per-replica losses)``.

    The forward pass of all replicas is one :func:`torch.func.vmap` of ``functional_call`` over the
    stacked parameters; one reverse-mode pass on the sum of the replica losses then gives every
    replica's own gradient (the replicas do not interact inside the loss). This was about twice
    as fast on CPU as ``vmap(grad(...))`` (``benchmarks/bench_flatness.py``).
    """
    forward = vmap(lambda p, x: functional_call(net, p, (x,)))

    def gv(reps: Params, Xb: torch.Tensor, yb: torch.Tensor) -> tuple[Params, torch.Tensor]:
        leaves = {k: p.detach().requires_grad_(True) for k, p in reps.items()}
        logits = forward(leaves, Xb)
        R, B = yb.shape
        losses = F.cross_entropy(logits.reshape(R * B, -1), yb.reshape(-1), reduction="none").view(R, B).mean(1)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), losses.detach()
    return gv


def replicated_sgd(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, lr: float, num_replicas: int = 3,
                   gamma0: float = 0.03, gamma_max: float = 3.0, batch_size: int, num_steps: int,
                   seed: int = 0) -> OptimResult:
    r"""Replicated SGD with ``num_replicas`` vmapped replicas; returns the centre :math:`w_c`.

    Every replica starts at ``net``'s parameters and draws its own minibatches; each step is

    .. math::

        w_a \leftarrow w_a - \eta\big(\nabla f_{B_a}(w_a) + \gamma_t (w_a - w_c)\big), \qquad
        w_c = \tfrac1y \textstyle\sum_a w_a,

    i.e. SGD on :math:`\sum_a f(w_a) + \frac{\gamma_t}2\sum_a\lVert w_a - w_c\rVert^2` with the centre held fixed
    during the step (as in the authors' ``RobustNet``). Cost: ``num_replicas * num_steps`` gradient
    evaluations. With one replica :math:`w_c = w_1` and this is exactly :func:`sgd`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are copied, not changed.
    X, y : torch.Tensor
        The training set.
    lr : float
        :math:`\eta`.
    num_replicas : int
        Number :math:`y` of replicas.
    gamma0, gamma_max : float
        The coupling schedule (:func:`coupling_schedule`).
    batch_size : int
        Minibatch size.
    num_steps : int
        Number of (outer) steps.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    OptimResult
        The centre :math:`w_c` as ``params`` and the replicas.
    """
    _validate(lr=lr, batch_size=batch_size, num_steps=num_steps)
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
    f = _replica_grads(net)
    reps = _stack(net, num_replicas)
    g = torch.Generator().manual_seed(seed)
    gammas = coupling_schedule(gamma0, gamma_max, num_steps)
    losses: list[float] = []
    for t in range(num_steps):
        idx = _batch(len(X), (num_replicas, batch_size), g, X.device)
        grads, loss = f(reps, X[idx], y[idx])
        gamma = float(gammas[t])
        centre = {k: p.mean(0, keepdim=True) for k, p in reps.items()}
        reps = {k: p - lr * (grads[k] + gamma * (p - centre[k])) for k, p in reps.items()}
        losses.append(float(loss.mean()))
        _check(losses, t + 1, lr)
    centre = {k: p.mean(0) for k, p in reps.items()}
    return OptimResult(centre, num_replicas * num_steps, losses, replicas=reps)


def replicated_sgd_loop(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, lr: float, num_replicas: int = 3,
                        gamma0: float = 0.03, gamma_max: float = 3.0, batch_size: int, num_steps: int,
                        seed: int = 0) -> OptimResult:
    """Reference implementation of :func:`replicated_sgd` with a Python loop over replicas (same draws).

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are copied, not changed.
    X, y : torch.Tensor
        The training set.
    lr : float
        :math:`\\eta`.
    num_replicas : int
        Number of replicas.
    gamma0, gamma_max : float
        The coupling schedule (:func:`coupling_schedule`).
    batch_size : int
        Minibatch size.
    num_steps : int
        Number of (outer) steps.
    seed : int
        Seed of the minibatch draws.

    Returns
    -------
    OptimResult
        Equal to :func:`replicated_sgd`'s up to rounding.
    """
    f = _grad_and_value(_loss(net))
    reps = [_copy_params(net) for _ in range(num_replicas)]
    g = torch.Generator().manual_seed(seed)
    gammas = coupling_schedule(gamma0, gamma_max, num_steps)
    losses: list[float] = []
    for t in range(num_steps):
        idx = _batch(len(X), (num_replicas, batch_size), g, X.device)
        centre = {k: torch.stack([r[k] for r in reps]).mean(0) for k in reps[0]}
        step_losses = []
        new = []
        for a, r in enumerate(reps):
            grads, loss = f(r, X[idx[a]], y[idx[a]])
            new.append({k: p - lr * (grads[k] + float(gammas[t]) * (p - centre[k])) for k, p in r.items()})
            step_losses.append(float(loss))
        reps = new
        losses.append(float(np.mean(step_losses)))
    centre = {k: torch.stack([r[k] for r in reps]).mean(0) for k in reps[0]}
    return OptimResult(centre, num_replicas * num_steps, losses,
                       replicas={k: torch.stack([r[k] for r in reps]) for k in reps[0]})


def smoothed_error_descent(X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, *, sigma: float,
                           num_steps: int = 300, lr: float = 0.1) -> torch.Tensor:
    r"""Minimise the :math:`\sigma`-smoothed training error of a linear classifier on the unit sphere.

    .. math::

        L_\sigma(\hat w) = \frac1P \sum_\mu H\!\left(\frac{y^\mu\, \hat w\cdot x^\mu}{\sigma \lVert x^\mu\rVert}\right),
        \qquad H(t) = \tfrac12\operatorname{erfc}(t/\sqrt2),\quad \lVert\hat w\rVert = 1,

    the error averaged over Gaussian noise on the stabilities (Baldassi et al. 2020). Projected normalised gradient descent from ``w0`` with an angular step
    decaying linearly from ``lr`` to 0. No bias (balanced clusters). For :math:`\sigma \to \infty`,
    :math:`L_\sigma` is linear in the stabilities and its minimiser is the normalised Hebbian
    direction :math:`\propto \sum_\mu y^\mu x^\mu/\lVert x^\mu\rVert`: this limit is nearly guaranteed to
    land close to the Bayes-optimal direction, whatever the landscape. Returns the unit vector.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    w0 : torch.Tensor
        Start, shape ``(N,)``.
    sigma : float
        :math:`\sigma`.
    num_steps : int
        Steps.
    lr : float
        Initial angular step.

    Returns
    -------
    torch.Tensor
        :math:`\hat w`, unit norm.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    Xn = X / X.norm(dim=1, keepdim=True)
    w = (w0 / w0.norm()).detach().clone()
    yX = y[:, None] * Xn
    for t in range(num_steps):
        # dL/dw = -(1/P) sum_mu phi(t_mu) y^mu x^mu / (sigma |x^mu|), phi the standard normal density
        stab = (yX @ w) / sigma
        gw = -(torch.exp(-0.5 * stab ** 2) / math.sqrt(2 * math.pi)) @ yX / (sigma * len(X))
        gw = gw - (gw @ w) * w  # tangent to the sphere
        norm = gw.norm()
        if float(norm) < 1e-12:
            break
        w = w - lr * (1 - t / num_steps) * gw / norm
        w = w / w.norm()
    return w


def smoothed_error(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""The objective :math:`L_\sigma(\hat w)` of :func:`smoothed_error_descent` (for checks and plots).

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    w : torch.Tensor
        Direction (normalised inside).
    sigma : float
        :math:`\sigma`.

    Returns
    -------
    torch.Tensor
        :math:`L_\sigma(\hat w)`, a scalar.
    """
    Xn = X / X.norm(dim=1, keepdim=True)
    t = y * (Xn @ (w / w.norm())) / sigma
    return (0.5 * torch.special.erfc(t / math.sqrt(2.0))).mean()


def _validate(*, lr: float, batch_size: int, num_steps: int) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
