r"""Sharpness measures of a minimum and the reparametrisations that fool them.

* :func:`epsilon_sharpness`: Keskar et al. (2017), Metric 2.1 / eq. (3), maximised by L-BFGS-B.
* :func:`invariant_sharpness`: Rangamani et al. (2019),
  :math:`\lambda_{\max}(D^{1/2}\nabla^2 L\, D^{1/2})`, :math:`D=\operatorname{blockdiag}(\|W_k\|_F^2 I)`.
* :func:`elementwise_sharpness`: :math:`\lambda_N = \lambda_{\max}(|\theta|\,\nabla^2 L\,|\theta|)`, Rangamani's
  construction with one block of :math:`D` per *parameter*, invariant to per-neuron rescalings too.
* :func:`rescale_layers`: Dinh et al. (2017)'s :math:`\alpha`-scale transformation of a ReLU net
  (layer-wise); :func:`rescale_neurons`: the per-neuron rescalings of a ReLU MLP.
* :func:`interpolate_1d`: Keskar's 1-D parametric plot :math:`f(\alpha x_\ell + (1-\alpha) x_s)`.
* :func:`filter_normalized_direction`: Li et al. (2018)'s filter-normalised random direction.

Which measure is invariant to which function-preserving group of a ReLU network:

=======================================================  ==============  ===================
measure                                                  layer-wise      per-neuron
=======================================================  ==============  ===================
:math:`\lambda_{\max}`, trace, Keskar :math:`\phi`       no              no
:math:`\lambda_R` (Rangamani)                            yes             no
:math:`\lambda_N` (element-wise)                         yes             yes
=======================================================  ==============  ===================

All functions take parameter dicts (``{name: tensor}``, see :func:`flatminima.curvature.hessian.params_of`)
and never modify the network or the dicts passed in.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn
from torch.func import functional_call

from flatminima.curvature.hessian import (
    EigResult,
    MatVec,
    Params,
    lanczos,
    loss_and_grad,
    loss_value,
    make_hvp,
    params_of,
)
from flatminima.nn.flat import FlatSpec, flatten


# ----------------------------------------------------------------------------- Keskar eq. (3)
def epsilon_sharpness(net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                      params: Mapping[str, torch.Tensor] | None = None, *, eps: float = 1e-3,
                      subspace_dim: int | None = None, max_iter: int = 10, seed: int = 0,
                      chunk_size: int = 8192) -> float:
    r"""Keskar et al. (2017) :math:`\epsilon`-sharpness, eq. (3), in percent:

    .. math:: \phi_{x,f}(\epsilon, A) = 100\,\frac{\max_{z\in C_\epsilon} f(x + Az) - f(x)}{1 + f(x)},\qquad
              C_\epsilon = \{z : |z_i| \le \epsilon(|(A^+x)_i| + 1)\}.

    ``subspace_dim=None`` uses the full space (:math:`A = I`); otherwise :math:`A\in\mathbb R^{P\times p}`
    has orthonormal random columns (QR of a seeded Gaussian), so :math:`A^+ = A^\top`. The inner max
    runs ``max_iter`` iterations of SciPy's L-BFGS-B (Byrd et al., 1995) from :math:`z = 0`, with the
    loss and gradient on ``(X, y)`` from :mod:`torch.func`. The result is a lower bound of the true max.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point, by parameter name (default: ``net``'s own parameters).
    eps : float
        The box size :math:`\epsilon`.
    subspace_dim : int or None
        Columns :math:`p` of :math:`A`; ``None`` for the full space.
    max_iter : int
        L-BFGS-B iterations of the inner max.
    seed : int
        Seed of :math:`A`.
    chunk_size : int
        Examples per chunk of the loss evaluations.

    Returns
    -------
    float
        :math:`\phi_{x,f}(\epsilon, A)` in percent.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    params = params_of(net) if params is None else dict(params)
    x, spec = flatten(params)
    f0 = loss_value(net, x, spec, X, y, chunk_size=chunk_size)
    if subspace_dim is None:
        A = None
        half = eps * (x.abs() + 1)
    else:
        if not 1 <= subspace_dim <= spec.dim:
            raise ValueError(f"subspace_dim must be between 1 and {spec.dim}, got {subspace_dim}")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        A = torch.linalg.qr(torch.randn(spec.dim, subspace_dim, generator=gen))[0].to(x.device, x.dtype)
        half = eps * ((A.T @ x).abs() + 1)
    h = half.double().cpu().numpy()

    def neg_loss(z: np.ndarray) -> tuple[float, np.ndarray]:
        zt = torch.as_tensor(z, dtype=x.dtype, device=x.device)
        step = zt if A is None else A @ zt
        loss, g = loss_and_grad(net, x + step, spec, X, y, chunk_size=chunk_size)
        if A is not None:
            g = A.T @ g
        return -float(loss), -g.double().cpu().numpy()

    res = minimize(neg_loss, np.zeros_like(h), jac=True, method="L-BFGS-B",
                   bounds=list(zip(-h, h)), options={"maxiter": max_iter})
    fmax = max(-float(res.fun), f0)
    return 100.0 * (fmax - f0) / (1.0 + f0)


# ----------------------------------------------------------------------------- Rangamani
def layer_scaling(params: Mapping[str, torch.Tensor]) -> dict[str, float]:
    r"""The diagonal of :math:`D`: :math:`\|W_k\|_F^2` for every parameter tensor :math:`W_k` (biases included).

    Under any per-tensor rescaling :math:`W_k \to c_k W_k` that leaves the loss unchanged, the Hessian
    block :math:`H_{kl}\to H_{kl}/(c_k c_l)` and :math:`D_k \to c_k^2 D_k`, so
    :math:`D^{1/2} H D^{1/2}` is unchanged exactly.

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        The point, by parameter name.

    Returns
    -------
    dict of str to float
        :math:`\|W_k\|_F^2` by parameter name.
    """
    return {k: float(v.detach().pow(2).sum()) for k, v in params.items()}


def invariant_operator(hvp: MatVec, params: Mapping[str, torch.Tensor], spec: FlatSpec) -> MatVec:
    r"""The matvec :math:`v \mapsto D^{1/2} H D^{1/2} v` from a Hessian-vector product ``hvp`` at ``params``.

    Parameters
    ----------
    hvp : callable
        A Hessian-vector product at ``params`` (:func:`flatminima.curvature.hessian.make_hvp`).
    params : mapping of str to torch.Tensor
        The point, by parameter name.
    spec : FlatSpec
        The layout of the flat vectors.

    Returns
    -------
    callable
        The matvec on flat vectors.
    """
    scale = layer_scaling(params)
    ref = next(iter(params.values()))
    d = torch.cat([torch.full((n,), scale[k] ** 0.5, device=ref.device, dtype=ref.dtype)
                   for k, n in zip(spec.names, spec.numels)])
    return lambda v: d * hvp(d * v)


def invariant_sharpness(net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                        params: Mapping[str, torch.Tensor] | None = None, *, tol: float = 1e-3,
                        max_iter: int = 100, seed: int = 0, chunk_size: int = 8192) -> EigResult:
    r"""Rangamani et al. (2019)'s rescaling-invariant flatness:

    .. math:: \lambda_R(W) = \lambda_{\max}\big(D^{1/2}\,\nabla^2 L(W)\, D^{1/2}\big),\qquad
              D = \operatorname{blockdiag}(\|W_k\|_F^2 I_{n_k}),

    the top eigenvalue of their Riemannian Hessian on the quotient manifold of rescalings, computed
    by :func:`flatminima.curvature.hessian.lanczos` on :func:`invariant_operator`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point, by parameter name (default: ``net``'s own parameters).
    tol, max_iter : float, int
        As in :func:`flatminima.curvature.hessian.lanczos`.
    seed : int
        Seed of Lanczos' starting vector.
    chunk_size : int
        Examples per chunk of the loss evaluations.

    Returns
    -------
    EigResult
        :math:`\lambda_R` as the top eigenvalue.
    """
    params = params_of(net) if params is None else dict(params)
    hvp, theta, spec = make_hvp(net, X, y, params, chunk_size=chunk_size)
    return lanczos(invariant_operator(hvp, params, spec), spec.dim, tol=tol, max_iter=max_iter, seed=seed,
                   device=theta.device, dtype=theta.dtype)


def elementwise_operator(hvp: MatVec, params: Mapping[str, torch.Tensor], spec: FlatSpec) -> MatVec:
    r"""The matvec :math:`v \mapsto |\theta|\odot H(|\theta|\odot v)`, i.e. :math:`D^{1/2} H D^{1/2}` with
    :math:`D = \operatorname{diag}(\theta_p^2)`: one block of Rangamani's :math:`D` per parameter.

    Parameters
    ----------
    hvp : callable
        A Hessian-vector product at ``params`` (:func:`flatminima.curvature.hessian.make_hvp`).
    params : mapping of str to torch.Tensor
        The point, by parameter name.
    spec : FlatSpec
        The layout of the flat vectors.

    Returns
    -------
    callable
        The matvec on flat vectors.
    """
    d = torch.cat([params[k].detach().reshape(-1).abs() for k in spec.names])
    return lambda v: d * hvp(d * v)


def elementwise_sharpness(net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                          params: Mapping[str, torch.Tensor] | None = None, *, tol: float = 1e-3,
                          max_iter: int = 100, seed: int = 0, chunk_size: int = 8192) -> EigResult:
    r"""Element-wise rescaling-invariant sharpness

    .. math:: \lambda_N(\theta) = \lambda_{\max}\big(\operatorname{diag}|\theta|\;\nabla^2 L(\theta)\;\operatorname{diag}|\theta|\big),

    Rangamani et al. (2019)'s construction with one block of :math:`D` per parameter instead of per
    tensor. Any rescaling :math:`\theta \to S\theta`, :math:`S` diagonal positive, that leaves the
    loss unchanged maps :math:`H \to S^{-1} H S^{-1}` and :math:`\operatorname{diag}|\theta| \to S\operatorname{diag}|\theta|`,
    so :math:`\lambda_N` is unchanged exactly. For a ReLU network both Dinh et al.'s layer-wise
    rescalings and the per-neuron rescalings (:func:`rescale_neurons`) are of this form; Rangamani's
    :math:`\lambda_R` is invariant only to the first.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point, by parameter name (default: ``net``'s own parameters).
    tol, max_iter : float, int
        As in :func:`flatminima.curvature.hessian.lanczos`.
    seed : int
        Seed of Lanczos' starting vector.
    chunk_size : int
        Examples per chunk of the loss evaluations.

    Returns
    -------
    EigResult
        :math:`\lambda_N` as the top eigenvalue.
    """
    params = params_of(net) if params is None else dict(params)
    hvp, theta, spec = make_hvp(net, X, y, params, chunk_size=chunk_size)
    return lanczos(elementwise_operator(hvp, params, spec), spec.dim, tol=tol, max_iter=max_iter, seed=seed,
                   device=theta.device, dtype=theta.dtype)


# ----------------------------------------------------------------------------- Dinh rescaling
NOT_HOMOGENEOUS = (nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Mish,
                   nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
                   nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
"""Modules that break positive homogeneity, so a rescaling would change the function."""


def homogeneous_layers(net: nn.Module) -> list[str]:
    r"""Names of the linear/convolutional modules of ``net``, input to output (the rescalable layers).

    Raises ValueError if ``net`` has an activation that is not positively homogeneous
    (:math:`\sigma(cz) = c\,\sigma(z)` for :math:`c > 0` holds for ReLU, leaky ReLU and the identity,
    not for tanh, sigmoid, GELU, ...) or a normalisation layer: rescaling would change its function.

    Parameters
    ----------
    net : torch.nn.Module
        The network.

    Returns
    -------
    list of str
        Module names in forward order.

    Raises
    ------
    ValueError
        For a non-homogeneous activation or a normalisation layer.
    """
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    bad = sorted({type(m).__name__ for m in net.modules() if isinstance(m, NOT_HOMOGENEOUS)})
    if bad:
        raise ValueError(f"rescaling leaves the function unchanged only for positively homogeneous nets "
                         f"(ReLU, leaky ReLU, identity, no normalisation); this net has {', '.join(bad)}: "
                         f"use activation='relu'")
    return [name for name, m in net.named_modules() if isinstance(m, kinds)]


def rescale_layers(params: Mapping[str, torch.Tensor], layers: Sequence[str] | nn.Module,
                   alphas: Sequence[float]) -> Params:
    r"""Dinh et al. (2017)'s :math:`T_\alpha`: :math:`W_k \to \alpha_k W_k`, :math:`b_k \to (\prod_{j\le k}\alpha_j) b_k`.

    With :math:`\prod_k \alpha_k = 1` and a positively homogeneous activation (ReLU:
    :math:`\mathrm{relu}(\alpha z) = \alpha\,\mathrm{relu}(z)`, :math:`\alpha>0`) the network computes
    the same function. ``layers`` is the network (checked by :func:`homogeneous_layers`, which
    refuses tanh, sigmoid, ... nets) or its module names in forward order; ``alphas`` one factor per
    layer (missing trailing factors are 1). Returns a new dict.

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        The point, by parameter name.
    layers : sequence of str or torch.nn.Module
        The network, or its rescalable module names in forward order.
    alphas : sequence of float
        The factors :math:`\alpha_k`, one per layer.

    Returns
    -------
    dict of str to torch.Tensor
        The rescaled parameters (a new dict).
    """
    if isinstance(layers, nn.Module):
        layers = homogeneous_layers(layers)
    if len(alphas) > len(layers):
        raise ValueError(f"got {len(alphas)} alphas for {len(layers)} layers")
    if any(a <= 0 for a in alphas):
        raise ValueError(f"alphas must be > 0 (positive homogeneity), got {list(alphas)}")
    if not np.isclose(np.prod(alphas), 1.0, rtol=1e-9):
        raise ValueError(f"the product of alphas must be 1 to leave the function unchanged, got {np.prod(alphas)}")
    out = {k: v.detach().clone() for k, v in params.items()}
    cum = 1.0
    for k, name in enumerate(layers):
        a = float(alphas[k]) if k < len(alphas) else 1.0
        cum *= a
        if f"{name}.weight" in out:
            out[f"{name}.weight"] = out[f"{name}.weight"] * a
        if f"{name}.bias" in out:
            out[f"{name}.bias"] = out[f"{name}.bias"] * cum
    return out


def random_neuron_factors(net: nn.Module, *, spread: float, seed: int) -> list[torch.Tensor]:
    r"""Random per-neuron factors :math:`c_j = \text{spread}^{u_j}`, :math:`u_j \sim U(-1, 1)` (log-uniform
    in :math:`[1/\text{spread}, \text{spread}]`), one tensor per hidden layer of ``net``, from ``seed``.

    Parameters
    ----------
    net : torch.nn.Module
        A ReLU MLP.
    spread : float
        The factors lie in :math:`[1/\text{spread}, \text{spread}]`.
    seed : int
        Seed of the :math:`u_j`.

    Returns
    -------
    list of torch.Tensor
        One tensor of factors per hidden layer.
    """
    if not spread >= 1:
        raise ValueError(f"spread must be >= 1, got {spread}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mods = dict(net.named_modules())
    layers = homogeneous_layers(net)
    return [torch.exp(math.log(spread) * (2 * torch.rand(mods[n].weight.shape[0], generator=gen,
                                                          dtype=torch.float64) - 1)) for n in layers[:-1]]


def rescale_neurons(net: nn.Module, params: Mapping[str, torch.Tensor], factors: Sequence[torch.Tensor]) -> Params:
    r"""Per-neuron rescaling of a ReLU MLP: hidden unit :math:`j` of layer :math:`k` gets incoming weights
    and bias times :math:`c_{kj}` and outgoing weights times :math:`1/c_{kj}`:

    .. math:: W_k \to \operatorname{diag}(c_k)\, W_k\, \operatorname{diag}(c_{k-1})^{-1},\qquad b_k \to c_k \odot b_k,

    with :math:`c_0 = c_L = 1`. Since :math:`\mathrm{relu}(cz) = c\,\mathrm{relu}(z)` for :math:`c > 0`, the
    function is unchanged; the group is larger than Dinh et al.'s layer-wise rescalings (a
    layer-wise rescaling is the case :math:`c_k = \alpha_k\mathbf 1`). ``factors`` holds one positive
    tensor per hidden layer (:func:`random_neuron_factors`). Linear layers only (for a CNN a
    "neuron" is a channel and flattening ties it to many columns): other layers raise ValueError.
    Returns a new dict.

    Parameters
    ----------
    net : torch.nn.Module
        A ReLU MLP (linear layers only).
    params : mapping of str to torch.Tensor
        The point, by parameter name.
    factors : sequence of torch.Tensor
        One positive tensor per hidden layer.

    Returns
    -------
    dict of str to torch.Tensor
        The rescaled parameters (a new dict).

    Raises
    ------
    ValueError
        For a network with non-linear layers.
    """
    layers = homogeneous_layers(net)
    mods = dict(net.named_modules())
    if not all(isinstance(mods[n], nn.Linear) for n in layers):
        raise ValueError("rescale_neurons handles MLPs (nn.Linear layers) only; use rescale_layers for a CNN")
    if len(factors) != len(layers) - 1:
        raise ValueError(f"need one factor tensor per hidden layer ({len(layers) - 1}), got {len(factors)}")
    out = {k: v.detach().clone() for k, v in params.items()}
    for k, name in enumerate(layers):
        W = out[f"{name}.weight"]
        if k < len(factors):
            c = factors[k].to(W.device, W.dtype)
            if c.shape != (W.shape[0],) or not bool((c > 0).all()):
                raise ValueError(f"factors[{k}] must be {W.shape[0]} positive numbers, got shape {tuple(c.shape)}")
            W = W * c[:, None]
            if f"{name}.bias" in out:
                out[f"{name}.bias"] = out[f"{name}.bias"] * c
        if k > 0:
            W = W / factors[k - 1].to(W.device, W.dtype)[None, :]
        out[f"{name}.weight"] = W
    return out


# ----------------------------------------------------------------------------- 1-D plots
@torch.no_grad()
def interpolate_1d(net: nn.Module, params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor],
                   alphas: Sequence[float], data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   *, chunk_size: int = 8192) -> dict[str, list[float]]:
    r"""Keskar et al. (2017), Fig. 3: loss and accuracy along :math:`\theta(\alpha) = \alpha\,\theta_b + (1-\alpha)\,\theta_a`.

    ``data`` maps a split name to ``(X, y)``; returns ``{"alpha", "<split>_loss", "<split>_acc"}``.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    params_a, params_b : mapping of str to torch.Tensor
        The end points :math:`\theta_a` (:math:`\alpha = 0`) and :math:`\theta_b` (:math:`\alpha = 1`).
    alphas : sequence of float
        The values of :math:`\alpha`.
    data : mapping of str to tuple of torch.Tensor
        Split name to ``(X, y)``.
    chunk_size : int
        Examples per chunk of the loss evaluations.

    Returns
    -------
    dict of str to list of float
        ``alpha`` and the loss and accuracy of each split, one value per :math:`\alpha`.
    """
    out: dict[str, list[float]] = {"alpha": [float(a) for a in alphas]}
    for split in data:
        out[f"{split}_loss"], out[f"{split}_acc"] = [], []
    for a in alphas:
        p = {k: a * params_b[k] + (1 - a) * params_a[k] for k in params_a}
        for split, (X, y) in data.items():
            loss, correct = 0.0, 0
            for i in range(0, len(X), chunk_size):
                logits = functional_call(net, p, (X[i:i + chunk_size],))
                loss += float(torch.nn.functional.cross_entropy(logits, y[i:i + chunk_size], reduction="sum"))
                correct += int((logits.argmax(-1) == y[i:i + chunk_size]).sum())
            out[f"{split}_loss"].append(loss / len(X))
            out[f"{split}_acc"].append(correct / len(X))
    return out


def filter_normalized_direction(params: Mapping[str, torch.Tensor], *, seed: int = 0,
                                ignore_1d: bool = True) -> Params:
    r"""Li et al. (2018)'s filter-normalised random direction: for each filter / neuron row
    :math:`d_{i} \leftarrow d_{i}\,\|\theta_{i}\|/\|d_{i}\|`; 1-D tensors (biases) are zeroed when
    ``ignore_1d`` (their ``ignore='biasbn'``). Gaussian entries from ``seed``.

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        The point, by parameter name.
    seed : int
        Seed of the Gaussian entries.
    ignore_1d : bool
        Zero the 1-D tensors (biases).

    Returns
    -------
    dict of str to torch.Tensor
        The direction, shaped like ``params``.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {}
    for k, p in params.items():
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.device, p.dtype)
        if p.dim() <= 1:
            out[k] = torch.zeros_like(p) if ignore_1d else d * p.norm() / d.norm()
            continue
        dn = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-12)
        pn = p.detach().reshape(len(p), -1).norm(dim=1)
        out[k] = d * (pn / dn).reshape(-1, *([1] * (p.dim() - 1)))
    return out
