r"""A stated test of stationarity for a recorded time series (the equilibrium control's window).

A series :math:`x_1,\dots,x_n` is cut into :math:`m` consecutive blocks of equal length and
the block means :math:`\bar x_b` are regressed on the block index :math:`b` by OLS,

.. math:: \bar x_b = a + \beta\,b + \varepsilon_b, \qquad
          \hat\beta \pm t_{m-2,\,0.975}\,\widehat{\mathrm{se}}(\hat\beta).

Block means of an autocorrelated but stationary series (e.g. an AR(1) / Ornstein-Uhlenbeck
process whose correlation time is short against a block) are nearly independent with equal
means, so :math:`\beta = 0` and the 95% interval covers 0 in about 95% of windows (the batch-means
idea of Conway 1963 / Schmeiser 1982, used here for a trend instead of a mean). A drift
(:math:`x_t = c\,t + \text{noise}`) or a random walk gives block means with a trend and is
rejected. The series is *stationary by this test* when the interval covers zero. The drift
over the window is also reported in units of the series' spread,
:math:`\hat\beta\,(m-1)/\mathrm{sd}(x)`, so a reader sees how large a rejected trend is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class TrendTest:
    """OLS trend of the block means of a series: slope per block with its t-interval."""

    slope: float  # per block
    ci_low: float
    ci_high: float
    p: float  # two-sided p of H0: slope = 0
    relative_drift: float  # slope * (num_blocks - 1) / sd(series)
    num_blocks: int
    n: int
    stationary: bool  # the interval covers 0

    def to_dict(self) -> dict:
        return asdict(self)


def trend_test(x, *, num_blocks: int = 10, confidence: float = 0.95) -> TrendTest:
    r"""Block-means OLS trend test of ``x`` (see the module docstring); stationary if the CI covers 0.

    ``x`` is a 1-D series in time order with at least ``2 * num_blocks`` values; the last
    ``len(x) % num_blocks`` values are dropped so the blocks are equal.

    Parameters
    ----------
    x : array_like
        The series, in time order.
    num_blocks : int
        Number of equal blocks whose means are regressed on time.
    confidence : float
        Coverage of the slope's interval.

    Returns
    -------
    TrendTest
        Slope, its interval and p-value, and the drift relative to the series' spread.
    """
    x = np.asarray(x, dtype=float).ravel()
    if num_blocks < 3:
        raise ValueError(f"num_blocks must be >= 3 (a trend with a standard error), got {num_blocks}")
    if x.size < 2 * num_blocks:
        raise ValueError(f"a trend test with num_blocks={num_blocks} needs at least {2 * num_blocks} values, "
                         f"got {x.size}: record a longer window or lower num_blocks")
    if not np.all(np.isfinite(x)):
        raise ValueError("the series has non-finite values; check the run for divergence")
    k = x.size // num_blocks
    means = x[:k * num_blocks].reshape(num_blocks, k).mean(axis=1)
    b = np.arange(num_blocks, dtype=float)
    res = sps.linregress(b, means)
    half = float(sps.t.ppf(0.5 + confidence / 2, num_blocks - 2) * res.stderr)
    slope = float(res.slope)
    sd = float(x.std(ddof=1))
    rel = slope * (num_blocks - 1) / sd if sd > 0 else (0.0 if slope == 0 else float("inf"))
    low, high = slope - half, slope + half
    return TrendTest(slope=slope, ci_low=low, ci_high=high, p=float(res.pvalue), relative_drift=float(rel),
                     num_blocks=int(num_blocks), n=int(x.size), stationary=bool(low <= 0.0 <= high))


def ar1(n: int, *, phi: float, sd: float = 1.0, mean: float = 0.0, seed: int = 0) -> np.ndarray:
    r"""A stationary AR(1) series :math:`x_t = \mu + \phi(x_{t-1}-\mu) + \epsilon_t`, started in its
    stationary law :math:`\mathcal N(\mu, \mathrm{sd}^2/(1-\phi^2))` (the discretised OU process).

    Parameters
    ----------
    n : int
        Length of the series.
    phi : float
        Autoregression coefficient, :math:`|\phi| < 1`.
    sd : float
        Standard deviation of the innovations :math:`\epsilon_t`.
    mean : float
        The mean :math:`\mu`.
    seed : int
        Seed of the innovations.

    Returns
    -------
    numpy.ndarray
        The ``n`` values.
    """
    if not -1 < phi < 1:
        raise ValueError(f"an AR(1) is stationary only for |phi| < 1, got {phi}")
    rng = np.random.default_rng(seed)
    eps = rng.normal(0.0, sd, n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd / np.sqrt(1 - phi**2))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + eps[t]
    return x + mean
