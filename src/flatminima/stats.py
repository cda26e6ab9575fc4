"""Statistics shared by the verdicts: confidence intervals over seeds and one-sided tests.

Every verdict in the book is computed from a run's own data with one of these functions,
so the same test reads the same way in every chapter.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def mean_ci(x, confidence: float = 0.95) -> Interval:
    r"""Mean with a Student-t interval, :math:`\bar x \pm t_{n-1} s/\sqrt{n}`.

    With one value the interval is degenerate (low = high = the value), flagged by ``n = 1``.
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(x.mean())
    if x.size == 1:
        return Interval(m, m, m, confidence, "t", 1)
    half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(m, m - half, m + half, confidence, "t", int(x.size))


def bootstrap_ci(x, statistic=np.mean, confidence: float = 0.95, n_resamples: int = 9999,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap CI of ``statistic`` over the values ``x`` (``scipy.stats.bootstrap``).

    Falls back to a degenerate interval for fewer than 3 values or zero spread, where the
    bootstrap distribution is empty or a point.
    """
    x = np.asarray(x, dtype=float).ravel()
    est = float(statistic(x))
    if x.size < 3 or np.ptp(x) == 0:
        return Interval(est, est, est, confidence, "degenerate", int(x.size))
    res = sps.bootstrap((x,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                        method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return Interval(est, float(ci.low), float(ci.high), confidence, "bootstrap-percentile", int(x.size))


def sign_test_greater(x) -> float:
    """One-sided exact sign test p-value for H1: median(x) > 0 (zeros dropped).

    With ``n`` positive values out of ``n`` the p-value is :math:`2^{-n}`, the smallest
    attainable, so the number of seeds bounds the evidence.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[x != 0]
    if x.size == 0:
        return 1.0
    return float(sps.binomtest(int((x > 0).sum()), int(x.size), 0.5, alternative="greater").pvalue)


def wilcoxon_greater(x) -> float:
    """One-sided Wilcoxon signed-rank p-value for H1: x is shifted above 0 (paired differences)."""
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0 or np.all(x == 0):
        return 1.0
    return float(sps.wilcoxon(x, alternative="greater").pvalue)
