"""The book's decision rule: one-sided tests, TOST equivalence, the outcome of a part and the verdict of a claim."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
from scipy import stats as sps


def sign_test_greater(x) -> float:
    """One-sided exact sign test p-value for H1: median(x) > 0 (zeros dropped).

    With ``n`` positive values out of ``n`` the p-value is :math:`2^{-n}`, the smallest
    attainable, so the number of seeds bounds the evidence.

    Parameters
    ----------
    x : array_like
        Per-seed values (paired differences).

    Returns
    -------
    float
        The p-value; 1.0 when no non-zero value is left.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[x != 0]
    if x.size == 0:
        return 1.0
    return float(sps.binomtest(int((x > 0).sum()), int(x.size), 0.5, alternative="greater").pvalue)


def wilcoxon_greater(x) -> float:
    """One-sided Wilcoxon signed-rank p-value for H1: x is shifted above 0 (paired differences).

    Parameters
    ----------
    x : array_like
        Per-seed paired differences.

    Returns
    -------
    float
        The p-value; 1.0 when the test is undefined (too few or all-zero values).
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0 or np.all(x == 0):
        return 1.0
    return float(sps.wilcoxon(x, alternative="greater").pvalue)


# ----------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class TostResult:
    """Two one-sided tests (Schuirmann 1987) of :math:`H_0: \\mu \\le low` or :math:`\\mu \\ge high`."""

    p: float
    p_lower: float
    p_upper: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)


def _mean_se(x: np.ndarray) -> tuple[float, float, int]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)), int(x.size - 1)


def _t_sf(t: float, df: int) -> float:
    """P(T >= t) that treats a zero standard error as an infinitely sharp t statistic."""
    return float(sps.t.sf(t, df))


def _tstat(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return math.copysign(math.inf, diff) if diff != 0 else 0.0


def tost(x, low: float, high: float) -> TostResult:
    r"""TOST equivalence test of the mean of ``x`` against the interval ``(low, high)``.

    :math:`p = \max(p_{low}, p_{high})` with :math:`p_{low} = P(T \ge (\bar x - low)/se)` and
    :math:`p_{high} = P(T \le (\bar x - high)/se)`, :math:`T \sim t_{n-1}`; equivalence at level
    :math:`\alpha` when :math:`p < \alpha` (the :math:`1-2\alpha` t-interval lies inside the bounds).
    Matches ``statsmodels.stats.weightstats.ttost_paired`` against zeros.

    Parameters
    ----------
    x : array_like
        Per-seed values.
    low, high : float
        The equivalence bounds, ``low < high``.

    Returns
    -------
    TostResult
        :math:`p`, :math:`p_{low}`, :math:`p_{high}` and the bounds.
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size < 2:
        raise ValueError("tost needs at least two values")
    if not low < high:
        raise ValueError(f"tost needs low < high, got {low}, {high}")
    m, se, df = _mean_se(x)
    p_lower = _t_sf(_tstat(m - low, se), df)
    p_upper = _t_sf(-_tstat(m - high, se), df)
    return TostResult(max(p_lower, p_upper), p_lower, p_upper, low, high)


class Verdict(str, Enum):
    """The outcome of a part and the verdict of a claim; a ``str`` so records and pages carry its value."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


OUTCOMES: tuple[str, ...] = tuple(v.value for v in Verdict)
"""The three words, in the order the pages list them."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one pre-registered test, with the numbers that decided it.

    ``x`` holds per-seed effects signed so that positive values are the claimed direction.
    """

    outcome: Verdict
    estimate: float
    se: float
    n: int
    ci_low: float
    ci_high: float
    p_effect: float
    p_reversed: float
    p_equivalence: float
    smallest_effect: float
    alpha: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def decide(x, *, smallest_effect: float, alpha: float = 0.05, label: str = "the effect",
           fmt: str = ".3g") -> Decision:
    r"""The book's decision rule for one claim part, from per-seed effects ``x`` (positive: as claimed).

    * **not reproduced** if the TOST equivalence test against :math:`\pm` ``smallest_effect``
      has :math:`p < \alpha` (an effect of that size is excluded) or the one-sided t-test of
      :math:`H_0: \mu \ge 0` has :math:`p < \alpha` (the effect is reversed);
    * **reproduced** otherwise, if the one-sided t-test of :math:`H_0: \mu \le 0` has :math:`p < \alpha`;
    * **inconclusive** when neither the effect nor its absence is established.

    The interval reported (in the reason and as ``ci_low``/``ci_high``) is the two-sided
    :math:`1-2\alpha` Student-t interval of the mean (90% at :math:`\alpha = 0.05`): its bounds are the
    one-sided :math:`1-\alpha` bounds that match the one-sided tests, and it is the interval TOST
    inverts, so a *reproduced* never sits beside an interval that covers 0. Stated once on the book's methods page; every chapter uses it.

    Parameters
    ----------
    x : array_like
        Per-seed effects, positive in the claimed direction.
    smallest_effect : float
        The smallest effect of interest, the TOST bound :math:`\pm` ``smallest_effect``.
    alpha : float
        Level of each test.
    label : str
        What the effect is, in words, for the decision's sentence.
    fmt : str
        Format spec of the numbers in that sentence.

    Returns
    -------
    Decision
        The outcome (:class:`Verdict`), mean, standard error, interval and the three p-values.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if not smallest_effect > 0:
        raise ValueError(f"smallest_effect must be > 0, got {smallest_effect}")
    if x.size < 2:
        est = float(x.mean()) if x.size else math.nan
        return Decision(Verdict.INCONCLUSIVE, est, math.nan, int(x.size), math.nan, math.nan, 1.0, 1.0, 1.0,
                        smallest_effect, alpha, f"{label}: fewer than 2 seeds with a value, nothing can be decided")
    m, se, df = _mean_se(x)
    t = _tstat(m, se)
    p_effect, p_rev = _t_sf(t, df), _t_sf(-t, df)
    p_eq = tost(x, -smallest_effect, smallest_effect).p
    half = float(sps.t.ppf(1 - alpha, df) * se)
    ci = f"{m:{fmt}} [{m - half:{fmt}}, {m + half:{fmt}}] ({1 - 2 * alpha:.0%} interval)"
    if p_eq < alpha:
        outcome = Verdict.NOT_REPRODUCED
        why = (f"{label} {ci} is smaller than the smallest effect of interest {smallest_effect:{fmt}} "
               f"(equivalence test p = {p_eq:.2g})")
    elif p_rev < alpha:
        outcome = Verdict.NOT_REPRODUCED
        why = f"{label} {ci} is reversed (one-sided t-test p = {p_rev:.2g})"
    elif p_effect < alpha:
        outcome = Verdict.REPRODUCED
        why = f"{label} {ci} is positive (one-sided t-test p = {p_effect:.2g}, n = {x.size})"
    else:
        outcome = Verdict.INCONCLUSIVE
        why = (f"{label} {ci}: neither an effect (p = {p_effect:.2g}) nor its absence below "
               f"{smallest_effect:{fmt}} (equivalence p = {p_eq:.2g}) is established with n = {x.size}")
    return Decision(outcome, m, se, int(x.size), m - half, m + half, p_effect, p_rev, p_eq,
                    float(smallest_effect), alpha, why)


def combine(outcomes) -> Verdict:
    """A claim's verdict from its parts: reproduced if all are, not reproduced if any is, else inconclusive.

    Parameters
    ----------
    outcomes : iterable of Verdict or str
        The parts' outcomes (at least one).

    Returns
    -------
    Verdict
    """
    outcomes = list(outcomes)
    bad = [o for o in outcomes if o not in OUTCOMES]
    if not outcomes or bad:
        raise ValueError(f"combine needs outcomes from {OUTCOMES}, got {outcomes!r}")
    if all(o == Verdict.REPRODUCED for o in outcomes):
        return Verdict.REPRODUCED
    if any(o == Verdict.NOT_REPRODUCED for o in outcomes):
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


def holm(p_values, alpha: float = 0.05) -> list[bool]:
    r"""Holm's step-down rejections: family-wise error at most ``alpha`` over the ``m`` hypotheses.

    Sort the p-values :math:`p_{(1)} \le \dots \le p_{(m)}`; reject :math:`H_{(i)}` while
    :math:`p_{(i)} \le \alpha / (m - i + 1)`, and stop at the first that is not (Holm 1979,
    *Scand. J. Statist.* 6, 65-70).

    Parameters
    ----------
    p_values : sequence of float
        One p-value per hypothesis (NaN counts as 1).
    alpha : float
        The family-wise error rate.

    Returns
    -------
    list of bool
        Whether each hypothesis is rejected, in the input order.
    """
    ps = [1.0 if not (p == p) else float(p) for p in p_values]
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out = [False] * len(ps)
    for rank, i in enumerate(order):
        if ps[i] <= alpha / (len(ps) - rank):
            out[i] = True
        else:
            break
    return out
