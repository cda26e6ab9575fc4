"""Estimates over seeds with their intervals: Student-t and bootstrap intervals, the record's statistic form."""
from __future__ import annotations

import math
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

    Parameters
    ----------
    x : array_like
        Per-seed values.
    confidence : float
        Coverage of the interval.

    Returns
    -------
    Interval
        Estimate, bounds, confidence, method ``"t"`` and ``n``.
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
    """BCa bootstrap CI of ``statistic`` over the values ``x`` (``scipy.stats.bootstrap``).

    Bias-corrected and accelerated (Efron 1987): at the 5-20 seeds of this book the percentile
    bootstrap is too narrow (its coverage of a mean at n = 10 is well under the nominal level).

    Falls back to a degenerate interval for fewer than 3 values or zero spread, where the
    bootstrap distribution is empty or a point.

    Parameters
    ----------
    x : array_like
        Per-seed values.
    statistic : callable
        The statistic of a sample (default: the mean).
    confidence : float
        Coverage of the interval.
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    Interval
        With method ``"bootstrap-BCa"``, or ``"degenerate"`` in the fallback.
    """
    x = np.asarray(x, dtype=float).ravel()
    est = float(statistic(x))
    if x.size < 3 or np.ptp(x) == 0:
        return Interval(est, est, est, confidence, "degenerate", int(x.size))
    res = sps.bootstrap((x,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                        method="BCa", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return Interval(est, float(ci.low), float(ci.high), confidence, "bootstrap-BCa", int(x.size))


STATISTIC_LEVEL = 0.90
"""Coverage of the book's intervals: two-sided 90%, the one-sided 95% bounds that match the one-sided tests
at alpha = 0.05 (and the interval TOST inverts)."""


def statistic(label: str, x, *, scale: str = "linear", confidence: float = STATISTIC_LEVEL) -> dict:
    """A per-seed statistic in the form records, the dashboard and ``flatminima verify`` read.

    ``x`` are per-seed values (on the log scale when ``scale='log'``, e.g. log ratios). Returns
    ``{label, value, ci_low, ci_high, se, n, scale, level}``. The interval is the two-sided
    ``confidence`` Student-t interval, 90% by default: each bound is the one-sided 95% bound that
    matches a one-sided test at alpha = 0.05, so a *reproduced* never sits beside an interval that
    covers the null. For ``scale='log'`` the value and interval
    are exponentiated (a geometric mean) while ``se`` stays on the log scale, where the
    two-sample comparison of :mod:`flatminima.run.verify` is made.

    Parameters
    ----------
    label : str
        Name of the statistic.
    x : array_like
        Per-seed values, on the log scale when ``scale='log'``.
    scale : {'linear', 'log'}
        The scale of ``x``.
    confidence : float
        Two-sided coverage of the t-interval (:func:`mean_ci`), recorded as ``level``.

    Returns
    -------
    dict
        ``{label, value, ci_low, ci_high, se, n, scale, level}``, NaN-filled when ``x`` is empty.
    """
    if scale not in ("linear", "log"):
        raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:  # nothing measured (e.g. no run reached the comparison point): a missing value, not an error
        return {"label": label, "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan,
                "n": 0, "scale": scale, "level": float(confidence)}
    ci = mean_ci(x, confidence)
    se = float(np.std(x, ddof=1) / np.sqrt(ci.n)) if ci.n > 1 else math.nan
    f = math.exp if scale == "log" else float
    return {"label": label, "value": f(ci.estimate), "ci_low": f(ci.low), "ci_high": f(ci.high),
            "se": se, "n": ci.n, "scale": scale, "level": float(confidence)}
