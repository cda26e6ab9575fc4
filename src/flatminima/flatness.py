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
    """Reference implementation of :func:`local_energy` with a Python loop over draws (same noise)."""
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
    """
    from torch.func import functional_call

    def error(params: Params) -> torch.Tensor:
        logits = functional_call(net, params, (X,))
        return (logits.argmax(-1) != y).to(X.dtype).mean()

    return error
