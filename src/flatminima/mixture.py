"""High-dimensional two-cluster Gaussian mixtures.

Generative model of Mignacco et al. (ICML 2020) used by Baldassi, Malatesta, Negri &
Zecchina (J. Stat. Mech. 2020, arXiv 2010.14761), section II:

.. math::

    x^\mu = y^\mu \frac{v}{\sqrt N} + \sqrt{\Delta}\, z^\mu, \qquad
    v \sim \mathcal N(0, I_N),\; z^\mu \sim \mathcal N(0, I_N),\; P(y^\mu = +1) = \rho,

with :math:`P = \alpha N` training samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixtureSample:
    """Samples ``X`` (n, N), labels ``y`` in {-1, +1} (n,), and the cluster direction ``v`` (N,)."""

    X: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor


def sample_mixture(n: int, N: int, *, Delta: float, rho: float = 0.5,
                   v: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> MixtureSample:
    r"""Draw ``n`` points of the mixture :math:`x = y v/\sqrt N + \sqrt\Delta z`.

    ``v`` is drawn from N(0, I_N) when not given (pass the training set's ``v`` to draw a test
    set from the same mixture). ``rho`` is P(y = +1); ``Delta`` the noise variance.
    """
    if n < 1 or N < 1:
        raise ValueError(f"n and N must be positive, got n={n}, N={N}")
    if Delta <= 0:
        raise ValueError(f"Delta must be > 0, got {Delta}")
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    if v is None:
        v = torch.randn(N, generator=generator, dtype=dtype)
    y = torch.where(torch.rand(n, generator=generator) < rho, 1.0, -1.0).to(dtype)
    z = torch.randn(n, N, generator=generator, dtype=dtype)
    X = y[:, None] * v[None, :] / N ** 0.5 + Delta ** 0.5 * z
    return MixtureSample(X=X, y=y, v=v)
