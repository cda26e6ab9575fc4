r"""Flatness of a minimiser: local energy and a local-entropy proxy, batched over perturbations.

Both measures look at the *training error* around a reference configuration :math:`w`
(any parameter dict: a linear classifier ``{"w", "b"}`` or a network's ``named_parameters``)
and are computed for many random perturbations in one vectorised call
(:func:`torch.func.vmap` over a stacked batch of perturbed parameter dicts).

* **Local energy** (Pittorino et al., ICLR 2021, section 3; the multiplicative perturbation is
  the one of the authors' code):

  .. math::

      \delta E(w, \sigma) = \mathbb E_{z \sim \mathcal N(0, I)}\big[E_{\rm train}(w + \sigma\, z \odot w)\big]
      - E_{\rm train}(w).

* **Local-entropy proxy**: the fraction of random perturbations of relative size :math:`d`
  that do not raise the training error,

  .. math::

      \Phi(w, d) = \Pr_{\xi}\big[E_{\rm train}(w + d\,\lVert w_k\rVert\, \xi_k/\lVert \xi_k\rVert)
      \le E_{\rm train}(w) + \text{tol}\big],

  with one random direction :math:`\xi_k` per parameter tensor :math:`w_k` (for a linear
  classifier, a random rotation of the weight vector by the angle :math:`\arctan d`). It is a
  Monte-Carlo stand-in for the log-volume :math:`S(w, d)` of low-error configurations at
  distance :math:`d` (Baldassi et al., PNAS 2016; Baldassi, Malatesta, Negri & Zecchina 2020).

Noise comes from an explicit ``seed``; the same seed gives the same draws for every
reference, so differences between minimisers are paired.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vmap

Params = dict[str, torch.Tensor]
ErrorFn = Callable[[Params], torch.Tensor]


@dataclass(frozen=True)
class FlatnessCurve:
    """A flatness measure at several perturbation sizes: ``values[i, j]`` is size ``i``, draw ``j``."""

    sizes: np.ndarray
    values: np.ndarray
    reference: float

    @property
    def mean(self) -> np.ndarray:
        """Average over draws, one number per perturbation size."""
        return self.values.mean(axis=1)


def _noise(params: Params, num_draws: int, generator: torch.Generator) -> Params:
    """Standard normal draws shaped ``(num_draws, *p.shape)`` for every tensor, on the CPU generator."""
    return {k: torch.randn((num_draws, *p.shape), generator=generator, dtype=p.dtype).to(p.device)
            for k, p in params.items()}


def _batched_errors(error_fn: ErrorFn, stacked: Params, chunk_size: int | None) -> torch.Tensor:
    return vmap(error_fn, chunk_size=chunk_size)(stacked)


@torch.no_grad()
def local_energy(error_fn: ErrorFn, params: Params, sigmas: Sequence[float], *, num_draws: int = 200,
                 seed: int = 0, chunk_size: int | None = None) -> FlatnessCurve:
    r"""Local energy :math:`\delta E(w,\sigma)` under multiplicative Gaussian noise, all draws in one batch.

    ``error_fn(params) -> scalar`` must be written with tensor ops so that :func:`torch.func.vmap`
    can batch it (no ``.item()``); ``chunk_size`` bounds the memory of one vectorised call.
    Returns a :class:`FlatnessCurve` whose ``values[i, j]`` is
    :math:`E(w + \sigma_i z_j \odot w) - E(w)`; the same :math:`z_j` are used for every :math:`\sigma_i`.

    Parameters
    ----------
    error_fn : callable
        ``params -> scalar tensor``, vmappable (e.g. :func:`classification_error_fn`).
    params : dict of str to torch.Tensor
        The point :math:`w`, by parameter name.
    sigmas : sequence of float
        The relative noise sizes :math:`\sigma_i`.
    num_draws : int
        Noise draws :math:`z_j` per :math:`\sigma`.
    seed : int
        Seed of the draws.
    chunk_size : int or None
        Draws per vectorised call (``None``: all at once).

    Returns
    -------
    FlatnessCurve
        ``values`` of shape ``(len(sigmas), num_draws)`` and their mean per :math:`\sigma`.
    """
    params = {k: p.detach() for k, p in params.items()}
    ref = float(error_fn(params))
    z = _noise(params, num_draws, torch.Generator().manual_seed(seed))
    rows = []
    for sigma in sigmas:
        stacked = {k: p.unsqueeze(0) * (1 + sigma * z[k]) for k, p in params.items()}
        rows.append((_batched_errors(error_fn, stacked, chunk_size) - ref).cpu().numpy())
    return FlatnessCurve(np.asarray(list(sigmas), dtype=float), np.stack(rows).astype(float), ref)


@torch.no_grad()
def local_energy_loop(error_fn: ErrorFn, params: Params, sigmas: Sequence[float], *, num_draws: int = 200,
                      seed: int = 0) -> FlatnessCurve:
    """Reference implementation of :func:`local_energy` with a Python loop over draws (same noise).

    Parameters
    ----------
    error_fn : callable
        ``params -> scalar tensor``, vmappable (e.g. :func:`classification_error_fn`).
    params : dict of str to torch.Tensor
        The point :math:`w`, by parameter name.
    sigmas : sequence of float
        The relative noise sizes.
    num_draws : int
        Noise draws per :math:`\\sigma`.
    seed : int
        Seed of the draws.

    Returns
    -------
    FlatnessCurve
        Equal to :func:`local_energy`'s up to rounding.
    """
    params = {k: p.detach() for k, p in params.items()}
    ref = float(error_fn(params))
    z = _noise(params, num_draws, torch.Generator().manual_seed(seed))
    values = np.empty((len(sigmas), num_draws))
    for i, sigma in enumerate(sigmas):
        for j in range(num_draws):
            values[i, j] = float(error_fn({k: p * (1 + sigma * z[k][j]) for k, p in params.items()})) - ref
    return FlatnessCurve(np.asarray(list(sigmas), dtype=float), values, ref)


@torch.no_grad()
def local_entropy_proxy(error_fn: ErrorFn, params: Params, distances: Sequence[float], *,
                        num_draws: int = 200, tol: float = 0.0, seed: int = 0,
                        chunk_size: int | None = None) -> FlatnessCurve:
    r"""Fraction of random perturbations at relative distance :math:`d` keeping :math:`E \le E(w) + \text{tol}`.

    Each parameter tensor :math:`w_k` moves by :math:`d \lVert w_k \rVert` along a uniformly random
    direction. ``values[i, j]`` is 1.0 when draw ``j`` at distance ``i`` keeps the error, else 0.0;
    ``mean`` is the proxy :math:`\Phi(w, d)`.

    Parameters
    ----------
    error_fn : callable
        ``params -> scalar tensor``, vmappable (e.g. :func:`classification_error_fn`).
    params : dict of str to torch.Tensor
        The point :math:`w`, by parameter name.
    distances : sequence of float
        The relative distances :math:`d`.
    num_draws : int
        Random directions per distance.
    tol : float
        Allowed increase of the error.
    seed : int
        Seed of the directions.
    chunk_size : int or None
        Draws per vectorised call.

    Returns
    -------
    FlatnessCurve
        0/1 ``values`` of shape ``(len(distances), num_draws)``; ``mean`` is :math:`\Phi(w, d)`.
    """
    params = {k: p.detach() for k, p in params.items()}
    ref = float(error_fn(params))
    xi = _noise(params, num_draws, torch.Generator().manual_seed(seed))
    unit = {k: v / v.reshape(num_draws, -1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (v.ndim - 1)))
            for k, v in xi.items()}
    rows = []
    for d in distances:
        stacked = {k: p.unsqueeze(0) + d * p.norm() * unit[k] for k, p in params.items()}
        errs = _batched_errors(error_fn, stacked, chunk_size)
        rows.append((errs <= ref + tol + 1e-12).to(torch.float64).cpu().numpy())
    return FlatnessCurve(np.asarray(list(distances), dtype=float), np.stack(rows), ref)


def classification_error_fn(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> ErrorFn:
    """``params -> training error`` of ``net`` (logits, class-index labels) through ``functional_call``.

    The returned function does not touch ``net``'s own parameters, so it can be vmapped.

    Parameters
    ----------
    net : torch.nn.Module
        A classifier returning logits.
    X, y : torch.Tensor
        Training inputs and class-index labels.

    Returns
    -------
    callable
        ``params -> scalar tensor``, the fraction of misclassified examples.
    """
    from torch.func import functional_call

    def error(params: Params) -> torch.Tensor:
        logits = functional_call(net, params, (X,))
        return (logits.argmax(-1) != y).to(X.dtype).mean()

    return error


# --------------------------------------------------------------------------- linear classifiers
def augmented(params: Params, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A threshold-linear classifier ``{"w", "b"}`` as one bias-free vector in :math:`N+1` dimensions.

    With :math:`a = (w/\sqrt N, b)` and :math:`\tilde x = (x, 1)`, the pre-activation is
    :math:`h = a\cdot\tilde x = w\cdot x/\sqrt N + b`. Returns ``(a, X_tilde)``.

    Parameters
    ----------
    params : dict of str to torch.Tensor
        ``{"w": (N,), "b": ()}``.
    X : torch.Tensor
        Inputs, shape ``(P, N)``.

    Returns
    -------
    a : torch.Tensor
        The augmented weights, shape ``(N+1,)``.
    X_tilde : torch.Tensor
        The inputs with a column of ones, shape ``(P, N+1)``.
    """
    N = X.shape[1]
    a = torch.cat([params["w"].reshape(-1) / N ** 0.5, params["b"].reshape(1).to(X.dtype)])
    return a, torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)


@dataclass(frozen=True)
class LocalEntropy:
    r"""Monte-Carlo Franz–Parisi volume at angles ``thetas``: ``counts[i]`` of ``num_draws`` kept the error.

    ``fraction`` is :math:`\hat\Phi = k/n`; ``log_volume`` is :math:`\ln\frac{k+1/2}{n+1}`, finite
    when no draw survives (the Krichevsky–Trofimov estimate of a log-probability).
    """

    thetas: np.ndarray
    counts: np.ndarray
    num_draws: int
    reference: float

    @property
    def fraction(self) -> np.ndarray:
        return self.counts / self.num_draws

    @property
    def log_volume(self) -> np.ndarray:
        return np.log((self.counts + 0.5) / (self.num_draws + 1.0))


@torch.no_grad()
def cone_local_entropy(a: torch.Tensor, X: torch.Tensor, y: torch.Tensor, thetas: Sequence[float], *,
                       num_draws: int = 500, seed: int = 0, tol: float = 0.0) -> LocalEntropy:
    r"""Franz–Parisi local entropy of a linear classifier by uniform sampling of the cone around it.

    For the reference direction :math:`\hat a = a/\lVert a\rVert` (an :math:`N`-vector: use
    :func:`augmented` for a bias) and the angle :math:`\theta`, the configurations at overlap
    :math:`\cos\theta` with :math:`\hat a` are :math:`a' = \cos\theta\,\hat a + \sin\theta\, u`, with
    :math:`u` uniform on the unit sphere orthogonal to :math:`\hat a`. The estimator is the fraction
    of ``num_draws`` such :math:`a'` whose error-counting training loss does not exceed the
    reference's own, :math:`E(a') \le E(a) + \text{tol}`: a Monte-Carlo version of the constrained
    volume of the Franz–Parisi potential, :math:`S(a,\theta) = \ln \Pr_u[E(a') \le E(a)]`
    (Baldassi, Malatesta, Negri & Zecchina 2020, section III and appendix C; Baldassi et al., PNAS 2016).
    Only the direction matters (the error is scale invariant), so the comparison is at the matched
    training error of each reference. The same ``u`` are used at every angle and, for a given
    ``seed``, for every reference of the same dimension (paired differences).

    Parameters
    ----------
    a : torch.Tensor
        The reference classifier, an :math:`N`-vector.
    X, y : torch.Tensor
        Training inputs and :math:`\pm 1` labels.
    thetas : sequence of float
        The angles :math:`\theta` (radians).
    num_draws : int
        Directions :math:`u` per angle.
    seed : int
        Seed of the directions.
    tol : float
        Allowed increase of the training error.

    Returns
    -------
    LocalEntropy
        Per angle, the number of draws that kept the error (``counts``), with ``fraction`` and ``log_volume``.
    """
    a = a.detach().reshape(-1)
    n = a.numel()
    a_hat = a / a.norm().clamp_min(1e-30)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(num_draws, n, generator=g, dtype=a.dtype).to(a.device)
    u = u - (u @ a_hat)[:, None] * a_hat[None, :]
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-30)
    ref = float(((y * (X @ a_hat)) <= 0).to(X.dtype).mean())
    counts = []
    for th in thetas:
        A = np.cos(th) * a_hat[None, :] + np.sin(th) * u  # (K, n)
        errs = ((y[None, :] * (A @ X.T)) <= 0).to(X.dtype).mean(1)
        counts.append(int((errs <= ref + tol + 1e-12).sum()))
    return LocalEntropy(np.asarray(list(thetas), dtype=float), np.asarray(counts), num_draws, ref)


def single_constraint_volume(cos_phi: float, theta: float, n: int) -> float:
    r"""Exact :math:`\Pr_u[\,x\cdot a' > 0\,]` for one constraint at angle :math:`\varphi` from :math:`\hat a` in :math:`n` dimensions.

    With :math:`a' = \cos\theta\,\hat a + \sin\theta\,u` and :math:`x = \cos\varphi\,\hat a + \sin\varphi\,e`,
    :math:`x\cdot a' > 0 \iff t = u\cdot e > -\cot\theta\cot\varphi`, and for :math:`u` uniform on the
    unit sphere of the :math:`(n-1)`-dimensional complement, :math:`(1+t)/2 \sim \mathrm{Beta}(\frac{n-2}2, \frac{n-2}2)`.
    The closed form :func:`cone_local_entropy` is tested against.

    Parameters
    ----------
    cos_phi : float
        :math:`\cos\varphi`, overlap of the constraint with :math:`\hat a`.
    theta : float
        The cone's angle :math:`\theta`.
    n : int
        The dimension.

    Returns
    -------
    float
        The probability.
    """
    from scipy import stats as sps

    if n < 3:
        raise ValueError(f"n must be >= 3 for the Beta law of u.e, got {n}")
    sin_phi = float(np.sqrt(max(1.0 - cos_phi ** 2, 0.0)))
    if sin_phi == 0.0 or np.sin(theta) == 0.0:
        return float(cos_phi * np.cos(theta) > 0)
    t0 = -np.cos(theta) * cos_phi / (np.sin(theta) * sin_phi)
    if t0 <= -1:
        return 1.0
    if t0 >= 1:
        return 0.0
    k = (n - 2) / 2
    return float(sps.beta.sf((1 + t0) / 2, k, k))


def stabilities(params: Params, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    r"""Normalised stabilities :math:`\kappa_\mu = y^\mu h^\mu / s_\mu` of a linear classifier under multiplicative noise.

    Under :math:`w \to w(1+\sigma z)`, :math:`b \to b(1+\sigma z_b)` the pre-activation is
    :math:`h^\mu + \sigma\,\xi`, :math:`\xi\sim\mathcal N(0, s_\mu^2)`,
    :math:`s_\mu^2 = \sum_i (x^\mu_i w_i)^2/N + b^2`, so every quantity of :func:`local_energy`
    for a linear classifier is a function of the :math:`\kappa_\mu` alone (:func:`perturbed_error`).

    Parameters
    ----------
    params : dict of str to torch.Tensor
        A linear classifier ``{"w", "b"}``.
    X, y : torch.Tensor
        Inputs and :math:`\pm 1` labels.

    Returns
    -------
    numpy.ndarray
        :math:`\kappa_\mu`, one per example.
    """
    N = X.shape[1]
    w, b = params["w"].detach(), params["b"].detach()
    h = X @ w / N ** 0.5 + b
    s = ((X * w[None, :]) ** 2).sum(1) / N + b ** 2
    return (y * h / s.sqrt().clamp_min(1e-30)).cpu().double().numpy()


def perturbed_error(kappa: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    r"""Exact :math:`\mathbb E_z[E(w+\sigma z\odot w)] = \frac1P\sum_\mu H(\kappa_\mu/\sigma)` from the stabilities.

    :math:`H(x) = \tfrac12\operatorname{erfc}(x/\sqrt2)`; at :math:`\sigma = 0` it is the training error
    (:math:`\kappa \le 0` counts as an error). ``sigma`` may be an array; returns one value per sigma.

    Parameters
    ----------
    kappa : numpy.ndarray
        Stabilities from :func:`stabilities`.
    sigma : float or numpy.ndarray
        Noise sizes :math:`\sigma \ge 0`.

    Returns
    -------
    numpy.ndarray
        The expected perturbed error, one value per ``sigma``.
    """
    from scipy import special

    kappa = np.asarray(kappa, dtype=float)
    sig = np.atleast_1d(np.asarray(sigma, dtype=float))
    out = np.empty(sig.shape)
    for i, s in enumerate(sig):
        out[i] = float((kappa <= 0).mean()) if s == 0 else float(
            (0.5 * special.erfc(kappa / (s * np.sqrt(2.0)))).mean())
    return out


def crossover_sigma(kappa_a: np.ndarray, kappa_b: np.ndarray, *, convention: str = "relative",
                    grid: Sequence[float] | None = None) -> float:
    r"""Smallest :math:`\sigma` where solution ``b`` becomes flatter than ``a`` (NaN if it never does on ``grid``).

    The gap :math:`G(\sigma) = F_a(\sigma) - F_b(\sigma)` uses the exact perturbed error of
    :func:`perturbed_error`: ``convention="relative"`` is the local energy of Pittorino et al.
    (ICLR 2021), :math:`F = \delta E(\sigma) = E(\sigma) - E(0)`; ``"absolute"`` is the perturbed error
    :math:`F = E(\sigma)` itself. Returns the first root of :math:`G` where it turns from :math:`\le 0`
    (``a`` flatter) to :math:`> 0`, located by bisection (Brent) between grid points of a log grid.

    Parameters
    ----------
    kappa_a, kappa_b : numpy.ndarray
        Stabilities of the two solutions.
    convention : {'relative', 'absolute'}
        :math:`F = \delta E(\sigma)` or :math:`F = E(\sigma)`.
    grid : sequence of float or None
        The :math:`\sigma` grid searched (default: a log grid).

    Returns
    -------
    float
        The crossover :math:`\sigma`, or NaN.
    """
    from scipy.optimize import brentq

    if convention not in ("relative", "absolute"):
        raise ValueError(f"convention must be 'relative' or 'absolute', got {convention!r}")
    grid = np.geomspace(1e-3, 10.0, 200) if grid is None else np.asarray(grid, dtype=float)
    off_a = perturbed_error(kappa_a, 0.0)[0] if convention == "relative" else 0.0
    off_b = perturbed_error(kappa_b, 0.0)[0] if convention == "relative" else 0.0

    def gap(s: float) -> float:
        return float(perturbed_error(kappa_a, s)[0] - off_a - perturbed_error(kappa_b, s)[0] + off_b)

    vals = np.array([gap(s) for s in grid])
    for i in range(len(grid) - 1):
        if vals[i] <= 0 < vals[i + 1]:
            if vals[i] == 0:
                return float(grid[i])
            return float(brentq(gap, grid[i], grid[i + 1], xtol=1e-10))
    return float("nan")
