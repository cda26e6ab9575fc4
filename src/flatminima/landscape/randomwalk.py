r"""The random-walk null of a trajectory PCA (Antognini & Sohl-Dickstein 2018).

A high-dimensional random walk has a structured PCA spectrum of its own, whatever the
landscape. With :math:`n` snapshots :math:`w_t = \sum_{s\le t}\xi_s` of i.i.d. increments of
covariance :math:`\Sigma` (so :math:`W = L\Xi` with :math:`L` the lower-triangular matrix of
ones), the centred Gram matrix is :math:`C L \Xi\Xi^\top L^\top C` with :math:`C = I - \tfrac1n
\mathbf 1\mathbf 1^\top`; its expectation is :math:`\operatorname{tr}\Sigma\; C M C` with
:math:`M_{ij} = \min(i, j)`. The eigenvalues of :math:`CMC` are exactly

.. math:: \mu_k = \frac{1}{4\sin^2\!\big(\tfrac{\pi k}{2n}\big)}, \quad k = 1,\dots,n-1,
          \qquad \sum_k \mu_k = \frac{n^2-1}{6},

(eigenvectors :math:`\propto\cos(\pi k(t-\tfrac12)/n)`, the cosines of Antognini &
Sohl-Dickstein 2018, "PCA of high dimensional random walks with comparison to neural network
training", NeurIPS), so when the dimension is large compared with :math:`n` (the Gram matrix
concentrates) the PCA variances are :math:`\sigma_k^2 \approx \operatorname{tr}\Sigma\,\mu_k/n`
and the explained-variance ratio tends to :math:`6/(\pi^2k^2)` for :math:`k \ll n`.

:func:`noise_random_walk` draws the null of the variance-flatness chapter: a walk whose
increments have the *measured* minibatch-noise covariance, with no landscape (no gradient drift).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def walk_gram_eigenvalues(n: int) -> np.ndarray:
    r"""The eigenvalues :math:`\mu_k = 1/(4\sin^2(\pi k/2n))`, :math:`k=1..n-1`, of :math:`CMC` (descending).

    Parameters
    ----------
    n : int
        Number of snapshots of the walk.

    Returns
    -------
    numpy.ndarray
        :math:`\mu_1 \ge \dots \ge \mu_{n-1}`.
    """
    if n < 2:
        raise ValueError(f"a walk needs at least 2 snapshots, got n={n}")
    k = np.arange(1, n)
    return 1.0 / (4.0 * np.sin(np.pi * k / (2 * n)) ** 2)


def expected_walk_variances(n: int, total_step_variance: float) -> np.ndarray:
    r"""Large-dimension PCA variances :math:`\sigma_k^2 = \operatorname{tr}\Sigma\,\mu_k / n` of an
    ``n``-snapshot walk whose increments have :math:`\operatorname{tr}\Sigma` = ``total_step_variance``.

    Parameters
    ----------
    n : int
        Number of snapshots.
    total_step_variance : float
        :math:`\operatorname{tr}\Sigma` of one increment.

    Returns
    -------
    numpy.ndarray
        :math:`\sigma_k^2`, :math:`k = 1..n-1`.
    """
    return total_step_variance * walk_gram_eigenvalues(n) / n


def explained_variance_limit(k) -> np.ndarray:
    r"""The limit :math:`6/(\pi^2 k^2)` of the explained-variance ratio of component ``k`` (1-based).

    Parameters
    ----------
    k : int or array_like
        Component index, 1-based.

    Returns
    -------
    numpy.ndarray
        :math:`6/(\pi^2 k^2)`.
    """
    k = np.asarray(k, dtype=float)
    return 6.0 / (math.pi**2 * k**2)


def noise_random_walk(gradients: torch.Tensor, num_snapshots: int, *, lr: float, stride: int = 1,
                      seed: int = 0) -> torch.Tensor:
    r"""A walk :math:`w_{t+1} = w_t + \alpha\,\xi_t`, :math:`\xi_t\sim\mathcal N(0,\hat\Sigma)`, with no landscape.

    :math:`\hat\Sigma` is the empirical covariance (``ddof=1``) of the rows of ``gradients``
    (minibatch gradients, shape ``(m, d)``), i.e. the covariance of the SGD noise
    :math:`-\alpha(g^\mu - \bar g)`. ``num_snapshots`` snapshots are returned, one every ``stride``
    steps (the sum of ``stride`` increments, drawn in one go as :math:`\sqrt{\text{stride}}\,\xi`),
    shape ``(num_snapshots, d)``, float64, from a ``numpy`` generator seeded with ``seed``.

    Parameters
    ----------
    gradients : torch.Tensor
        Minibatch gradients, shape ``(m, d)``.
    num_snapshots : int
        Snapshots returned.
    lr : float
        Step size :math:`\alpha`.
    stride : int
        Steps between snapshots.
    seed : int
        Seed of the generator.

    Returns
    -------
    torch.Tensor
        Shape ``(num_snapshots, d)``, float64.
    """
    G = torch.as_tensor(gradients, dtype=torch.float64)
    m = G.shape[0]
    if m < 2:
        raise ValueError(f"the noise covariance needs at least 2 minibatch gradients, got {m}")
    if stride < 1 or num_snapshots < 2:
        raise ValueError(f"need stride >= 1 and num_snapshots >= 2, got {stride} and {num_snapshots}")
    Gc = G - G.mean(0)
    rng = np.random.default_rng(seed)
    Z = torch.from_numpy(rng.standard_normal((num_snapshots, m))).to(Gc.device)
    steps = (lr * math.sqrt(stride) / math.sqrt(m - 1)) * (Z @ Gc)
    return torch.cumsum(steps, dim=0)
