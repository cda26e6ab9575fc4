r"""Gradient noise: the SGD temperature and isotropic-noise (Langevin) dynamics.

Feng & Tu (PNAS 2021) write SGD as :math:`\dot w = -\alpha\,\partial L/\partial w + \eta(w)`
with the minibatch noise :math:`\eta = -\alpha\nabla_w \delta L^\mu` and a direction-dependent
temperature :math:`T_i = (\alpha/2)\langle(\partial_{\theta_i}\delta L^\mu)^2\rangle_\mu`.
The control of the chapter replaces that anisotropic noise by isotropic Gaussian noise at a
matched temperature, the Euler-Maruyama discretisation of overdamped Langevin dynamics

.. math:: w_{t+1} = w_t - \alpha\nabla L(w_t) + \sqrt{2\alpha T}\,\xi_t,\qquad \xi_t\sim\mathcal N(0, I),

whose stationary density is :math:`\propto e^{-L/T}` (to first order in :math:`\alpha`); on a
quadratic :math:`L = \tfrac12 h\theta^2` the exact stationary variance of the discrete chain is
:math:`T / (h(1 - \alpha h/2))`, i.e. :math:`T/h` for small :math:`\alpha h` (Einstein relation).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from flatminima.nn.flat import flatten, unflatten
from flatminima.nn.train import check_finite

ParamDict = dict[str, torch.Tensor]


def minibatch_gradients(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                        batch_size: int, num_epochs: int = 1, seed: int = 0,
                        loss_fn: Callable = F.cross_entropy) -> torch.Tensor:
    r"""The minibatch gradients :math:`g^\mu` w.r.t. the parameters ``names``, one row per minibatch.

    The minibatches are those SGD draws: ``num_epochs`` seeded permutations of the data cut into
    ``len(X) // batch_size`` batches; shape ``(num_epochs * (len(X) // batch_size), d)``, computed
    with ``vmap(grad(...))`` over the batches. ``net`` is not modified.

    Parameters
    ----------
    net : torch.nn.Module
        The network; it is not modified.
    X, y : torch.Tensor
        The training set.
    names : sequence of str
        The parameters (by name) whose gradient coordinates are used.
    batch_size : int
        SGD's minibatch size :math:`B`.
    num_epochs : int
        Epochs of minibatches drawn.
    seed : int
        Seed of the permutations.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    torch.Tensor
        Shape ``(num_epochs * (len(X) // batch_size), d)``.
    """
    n = len(X)
    nb = n // batch_size
    if nb < 2:
        raise ValueError(f"need at least 2 minibatches of batch_size={batch_size} in {n} samples")
    base = {k: v.detach() for k, v in net.named_parameters()}
    sub = {k: base[k] for k in names}

    def batch_loss(p: ParamDict, Xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(net, {**base, **p}, (Xb,)), yb)

    per_batch = vmap(grad(batch_loss), in_dims=(None, 0, 0))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    grads = []
    for _ in range(num_epochs):
        idx = torch.randperm(n, generator=gen)[:nb * batch_size].to(X.device).reshape(nb, batch_size)
        g = per_batch(sub, X[idx], y[idx])
        grads.append(torch.cat([g[k].reshape(nb, -1) for k in names], dim=1))
    return torch.cat(grads)


def minibatch_gradient_variance(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                                batch_size: int, num_epochs: int = 1, seed: int = 0,
                                loss_fn: Callable = F.cross_entropy) -> torch.Tensor:
    r"""Per-coordinate variance over minibatches of the gradient w.r.t. the parameters ``names``.

    :math:`\operatorname{Var}_\mu[g^\mu_j]` (``ddof=1``) for each flattened coordinate :math:`j`
    over the minibatches of :func:`minibatch_gradients`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; it is not modified.
    X, y : torch.Tensor
        The training set.
    names : sequence of str
        The parameters (by name) whose gradient coordinates are used.
    batch_size : int
        SGD's minibatch size :math:`B`.
    num_epochs : int
        Epochs of minibatches drawn.
    seed : int
        Seed of the permutations.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    torch.Tensor
        Shape ``(d,)``.
    """
    return minibatch_gradients(net, X, y, names, batch_size=batch_size, num_epochs=num_epochs, seed=seed,
                               loss_fn=loss_fn).var(dim=0, unbiased=True)


def directional_temperatures(gradients: torch.Tensor, directions: torch.Tensor, *, lr: float) -> torch.Tensor:
    r"""Feng & Tu's direction-dependent temperature :math:`T_i = \tfrac{\alpha}{2}\operatorname{Var}_\mu[p_i^\top g^\mu]`.

    ``gradients`` are minibatch gradients (rows, :func:`minibatch_gradients`), ``directions`` unit
    vectors :math:`p_i` (rows, e.g. the principal directions of the window); the variance is over
    minibatches (``ddof=1``). This is the noise strength along :math:`p_i` (PNAS 2021, the
    :math:`T_i` of their Langevin description, here at the window's end point).

    Parameters
    ----------
    gradients : torch.Tensor
        Minibatch gradients, shape ``(m, d)``.
    directions : torch.Tensor
        Unit vectors :math:`p_i`, shape ``(k, d)``.
    lr : float
        The learning rate :math:`\alpha`.

    Returns
    -------
    torch.Tensor
        :math:`T_i`, shape ``(k,)``.
    """
    G = torch.as_tensor(gradients, dtype=torch.float64)
    P = torch.as_tensor(directions, dtype=torch.float64).to(G.device)
    return lr / 2 * (G @ P.T).var(dim=0, unbiased=True)


def subspace_potential(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str],
                       basis: torch.Tensor, *, restraint: float,
                       loss_fn: Callable = F.cross_entropy) -> Callable[[ParamDict], torch.Tensor]:
    r"""The control's potential :math:`U(z) = L(w_s + B^\top z) + \tfrac{\lambda}{2}\lVert z\rVert^2` on ``{"z": z}``.

    :math:`w_s` is the current value of the parameters ``names`` of ``net`` (flattened), ``basis``
    :math:`B` has orthonormal rows spanning the explored subspace (e.g. the principal directions
    of the SGD window) and :math:`\lambda` = ``restraint`` > 0 is a weight decay towards
    :math:`w_s`. It gives the potential a minimum along every direction (cross-entropy alone
    keeps falling along the growth of the weights), so isotropic-noise Langevin dynamics on
    :math:`z` has the stationary density :math:`\propto e^{-U/T}` to reach.

    Parameters
    ----------
    net : torch.nn.Module
        The network; it is not modified.
    X, y : torch.Tensor
        The training set.
    names : sequence of str
        The parameters (by name) whose gradient coordinates are used.
    basis : torch.Tensor
        :math:`B`, orthonormal rows, shape ``(k, d)``.
    restraint : float
        :math:`\lambda > 0`.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    callable
        ``{"z": z} -> U(z)``, a scalar tensor.
    """

    if not restraint > 0:
        raise ValueError(f"restraint must be > 0 to give the potential a minimum, got {restraint}")
    base = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    w_s, spec = flatten(base, names)
    B = torch.as_tensor(basis).to(w_s)

    def U(p: ParamDict) -> torch.Tensor:
        z = p["z"]
        sub = unflatten(w_s + z @ B, spec)
        out = functional_call(net, ({**base, **sub}, buffers), (X,))
        return loss_fn(out, y) + 0.5 * restraint * (z * z).sum()

    return U


def sgd_temperature(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], *, lr: float,
                    batch_size: int, num_epochs: int = 1, seed: int = 0,
                    loss_fn: Callable = F.cross_entropy) -> float:
    r"""The mean SGD temperature of the coordinates ``names``,
    :math:`T = \frac{\alpha}{2}\,\frac1d\operatorname{tr}\Sigma_B`.

    :math:`\Sigma_B` is the minibatch-gradient covariance (:func:`minibatch_gradient_variance`);
    this is Feng & Tu's :math:`T_i = (\alpha/2)\langle(\partial_i\delta L^\mu)^2\rangle_\mu`
    averaged over the :math:`d` directions, and the isotropic noise
    :math:`\sqrt{2\alpha T}\,\xi` with this :math:`T` has the same total power per step,
    :math:`2\alpha T d = \alpha^2 \operatorname{tr}\Sigma_B`, as the SGD noise on those coordinates.
    It scales like :math:`\alpha/B`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; it is not modified.
    X, y : torch.Tensor
        The training set.
    names : sequence of str
        The parameters (by name) whose gradient coordinates are used.
    lr : float
        The learning rate :math:`\alpha`.
    batch_size : int
        SGD's minibatch size :math:`B`.
    num_epochs : int
        Epochs of minibatches drawn.
    seed : int
        Seed of the permutations.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    float
        :math:`T`.
    """
    var = minibatch_gradient_variance(net, X, y, names, batch_size=batch_size, num_epochs=num_epochs,
                                      seed=seed, loss_fn=loss_fn)
    return float(lr / 2 * var.mean())


def langevin_trajectory(loss_fn: Callable[[ParamDict], torch.Tensor], params: ParamDict, *, lr: float,
                        temperature: float, num_steps: int, record: Callable[[ParamDict], torch.Tensor],
                        record_every: int = 1, seed: int = 0) -> tuple[ParamDict, torch.Tensor]:
    r"""Run :math:`w_{t+1} = w_t - \alpha\nabla L(w_t) + \sqrt{2\alpha T}\,\xi_t` for ``num_steps`` steps.

    ``loss_fn`` maps a parameter dict to a scalar (e.g. the full-batch training loss through
    ``functional_call``); every parameter in ``params`` gets the same isotropic noise (a fresh
    ``torch.Generator`` on the parameters' device seeded with ``seed``). Every ``record_every``
    steps, ``record(params)`` (a 1-D tensor) is stored in a preallocated buffer and the loss is
    checked to be finite (:class:`~flatminima.nn.train.DivergenceError` otherwise). Returns the
    final parameters (new tensors; the input dict is not changed) and the records,
    shape ``(num_steps // record_every, d)``.

    Parameters
    ----------
    loss_fn : callable
        Parameter dict to scalar loss.
    params : dict of str to torch.Tensor
        The start :math:`w_0` (not changed).
    lr : float
        Step size :math:`\alpha`.
    temperature : float
        :math:`T`.
    num_steps : int
        Number of steps.
    record : callable
        Parameter dict to 1-D tensor, stored every ``record_every`` steps.
    record_every : int
        Steps between records.
    seed : int
        Seed of the noise.

    Returns
    -------
    params : dict of str to torch.Tensor
        The final parameters.
    records : torch.Tensor
        Shape ``(num_steps // record_every, r)``.

    Raises
    ------
    flatminima.nn.train.DivergenceError
        When the loss is not finite at a record.
    """
    if lr <= 0 or temperature < 0:
        raise ValueError(f"need lr > 0 and temperature >= 0, got lr={lr}, temperature={temperature}")
    if record_every < 1 or num_steps < record_every:
        raise ValueError(f"need 1 <= record_every <= num_steps, got {record_every} and {num_steps}")
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    leaves = list(p.values())
    device = leaves[0].device
    gen = torch.Generator(device=device).manual_seed(seed)
    scale = math.sqrt(2 * lr * temperature)
    with torch.no_grad():
        first = record(p)
    out = torch.empty(num_steps // record_every, first.numel(), dtype=first.dtype, device=first.device)
    r = 0
    for step in range(1, num_steps + 1):
        # reverse-mode autograd on leaf tensors: faster per step than torch.func.grad here (see
        # benchmarks/bench_profiles.py)
        loss = loss_fn(p)
        grads = torch.autograd.grad(loss, leaves)
        with torch.no_grad():
            for v, g in zip(leaves, grads):
                v.add_(g, alpha=-lr)
                v.add_(torch.randn(v.shape, generator=gen, device=device, dtype=v.dtype), alpha=scale)
            if step % record_every == 0:
                check_finite(float(loss), step=step, lr=lr)
                out[r] = record(p).reshape(-1)
                r += 1
    return {k: v.detach() for k, v in p.items()}, out


def full_batch_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                    loss_fn: Callable = F.cross_entropy) -> Callable[[ParamDict], torch.Tensor]:
    """``params -> mean loss of net(params) on (X, y)`` (for :func:`langevin_trajectory`).

    Parameters
    ----------
    net : torch.nn.Module
        The network; it is not modified.
    X, y : torch.Tensor
        The training set.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    callable
        Parameter dict to scalar tensor.
    """
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def loss(p: ParamDict) -> torch.Tensor:
        return loss_fn(functional_call(net, (p, buffers), (X,)), y)

    return loss
