"""Statistics shared by the verdicts: confidence intervals over seeds and one-sided tests.

Every verdict in the book is computed from a run's own data with one of these functions,
so the same test reads the same way in every chapter.
"""
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
    """
    x = np.asarray(x, dtype=float).ravel()
    est = float(statistic(x))
    if x.size < 3 or np.ptp(x) == 0:
        return Interval(est, est, est, confidence, "degenerate", int(x.size))
    res = sps.bootstrap((x,), statistic, confidence_level=confidence, n_resamples=n_resamples,
                        method="BCa", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return Interval(est, float(ci.low), float(ci.high), confidence, "bootstrap-BCa", int(x.size))


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


# ----------------------------------------------------------------------------- pre-registration
ALTERNATIVES = ("larger", "two-sided")


def power_t(effect: float, sd: float, n: int, *, alpha: float = 0.05, alternative: str = "larger") -> float:
    r"""Power of the one-sample (or paired) Student t-test to detect a mean ``effect`` with spread ``sd``.

    With :math:`d = \text{effect}/\text{sd}`, noncentrality :math:`\delta = d\sqrt n` and
    :math:`\nu = n - 1` degrees of freedom, the one-sided power is
    :math:`1 - F_{\nu,\delta}(t_{1-\alpha,\nu})`, :math:`F_{\nu,\delta}` the noncentral t CDF
    (Cohen 1988, ch. 2); two-sided adds the lower tail at :math:`-t_{1-\alpha/2,\nu}`. This is what
    ``statsmodels.stats.power.TTestPower`` computes (a test checks that).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if n < 2:
        raise ValueError(f"power needs n >= 2 seeds, got {n}")
    if not sd > 0:
        raise ValueError(f"sd must be > 0, got {sd}")
    df, nc = n - 1, effect / sd * np.sqrt(n)
    if alternative == "larger":
        return float(sps.nct.sf(sps.t.ppf(1 - alpha, df), df, nc))
    crit = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def seeds_for_power(smallest_effect: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                    alternative: str = "larger", max_n: int = 10_000) -> int:
    """The smallest number of seeds ``n >= 2`` whose t-test has at least ``power`` at ``smallest_effect``.

    ``sd`` is the per-seed standard deviation of the primary statistic from a pilot. Raises
    ValueError when even ``max_n`` seeds are not enough.
    """
    if not smallest_effect > 0:
        raise ValueError(f"smallest_effect must be > 0, got {smallest_effect}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    lo, hi = 2, 2
    while power_t(smallest_effect, sd, hi, alpha=alpha, alternative=alternative) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            raise ValueError(f"more than {max_n} seeds needed for power {power} at effect {smallest_effect} "
                             f"with sd {sd}")
    while lo < hi:  # power is increasing in n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        if power_t(smallest_effect, sd, mid, alpha=alpha, alternative=alternative) >= power:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


def preregister(*, primary: str, smallest_effect: float, test: str, pilot: dict, alpha: float = 0.05,
                power: float = 0.8, alternative: str = "larger") -> dict:
    """The pre-registration block of a claim: what is tested, against what effect, with how many seeds.

    ``pilot`` must give ``sd`` (per-seed standard deviation of the primary statistic), ``n`` (pilot
    seeds) and ``source`` (where the pilot spread comes from, in words). ``seeds_needed`` is computed
    here with :func:`seeds_for_power`, so the number in the record follows from the stated inputs.
    Declared as a module constant next to the claim's criterion, before any data are seen.
    """
    for key in ("sd", "n", "source"):
        if key not in pilot:
            raise ValueError(f"pilot must give {key!r} (per-seed sd, pilot seeds, and where it came from)")
    needed = seeds_for_power(smallest_effect, float(pilot["sd"]), alpha=alpha, power=power,
                             alternative=alternative)
    return {"primary": primary, "smallest_effect": float(smallest_effect), "test": test, "alpha": alpha,
            "alternative": alternative, "power": power, "seeds_needed": needed, "pilot": dict(pilot)}


def check_seeds(prereg: dict, num_seeds: int) -> str:
    """An empty string if ``num_seeds`` meets the pre-registered ``seeds_needed``, else a warning sentence."""
    need = int(prereg["seeds_needed"])
    if num_seeds >= need:
        return ""
    return (f"this run used {num_seeds} seeds, fewer than the {need} its pre-registration needs for "
            f"{prereg['power']:.0%} power: its verdict is underpowered")


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


OUTCOMES: tuple[str, ...] = ("reproduced", "not reproduced", "inconclusive")


@dataclass(frozen=True)
class Decision:
    """The outcome of one pre-registered test, with the numbers that decided it.

    ``x`` holds per-seed effects signed so that positive values are the claimed direction.
    """

    outcome: str
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

    The interval reported is the 95% Student-t interval of the mean (a :math:`1-2\alpha` interval
    is what TOST inverts). Stated once on the book's methods page; every chapter uses it.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if not smallest_effect > 0:
        raise ValueError(f"smallest_effect must be > 0, got {smallest_effect}")
    if x.size < 2:
        est = float(x.mean()) if x.size else math.nan
        return Decision("inconclusive", est, math.nan, int(x.size), math.nan, math.nan, 1.0, 1.0, 1.0,
                        smallest_effect, alpha, f"{label}: fewer than 2 seeds with a value, nothing can be decided")
    m, se, df = _mean_se(x)
    t = _tstat(m, se)
    p_effect, p_rev = _t_sf(t, df), _t_sf(-t, df)
    p_eq = tost(x, -smallest_effect, smallest_effect).p
    half = float(sps.t.ppf(0.975, df) * se)
    ci = f"{m:{fmt}} [{m - half:{fmt}}, {m + half:{fmt}}]"
    if p_eq < alpha:
        outcome = "not reproduced"
        why = (f"{label} {ci} is smaller than the smallest effect of interest {smallest_effect:{fmt}} "
               f"(equivalence test p = {p_eq:.2g})")
    elif p_rev < alpha:
        outcome = "not reproduced"
        why = f"{label} {ci} is reversed (one-sided t-test p = {p_rev:.2g})"
    elif p_effect < alpha:
        outcome = "reproduced"
        why = f"{label} {ci} is positive (one-sided t-test p = {p_effect:.2g}, n = {x.size})"
    else:
        outcome = "inconclusive"
        why = (f"{label} {ci}: neither an effect (p = {p_effect:.2g}) nor its absence below "
               f"{smallest_effect:{fmt}} (equivalence p = {p_eq:.2g}) is established with n = {x.size}")
    return Decision(outcome, m, se, int(x.size), m - half, m + half, p_effect, p_rev, p_eq,
                    float(smallest_effect), alpha, why)


def combine(outcomes) -> str:
    """A claim's verdict from its parts: reproduced if all are, not reproduced if any is, else inconclusive."""
    outcomes = list(outcomes)
    bad = [o for o in outcomes if o not in OUTCOMES]
    if not outcomes or bad:
        raise ValueError(f"combine needs outcomes from {OUTCOMES}, got {outcomes!r}")
    if all(o == "reproduced" for o in outcomes):
        return "reproduced"
    if any(o == "not reproduced" for o in outcomes):
        return "not reproduced"
    return "inconclusive"


def statistic(label: str, x, *, scale: str = "linear", confidence: float = 0.95) -> dict:
    """A per-seed statistic in the form records, the dashboard and ``flatminima verify`` read.

    ``x`` are per-seed values (on the log scale when ``scale='log'``, e.g. log ratios). Returns
    ``{label, value, ci_low, ci_high, se, n, scale}``; for ``scale='log'`` the value and interval
    are exponentiated (a geometric mean) while ``se`` stays on the log scale, where the
    two-sample comparison of :mod:`flatminima.verify` is made.
    """
    if scale not in ("linear", "log"):
        raise ValueError(f"scale must be 'linear' or 'log', got {scale!r}")
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:  # nothing measured (e.g. no run reached the comparison point): a missing value, not an error
        return {"label": label, "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "se": math.nan,
                "n": 0, "scale": scale}
    ci = mean_ci(x, confidence)
    se = float(np.std(x, ddof=1) / np.sqrt(ci.n)) if ci.n > 1 else math.nan
    f = math.exp if scale == "log" else float
    return {"label": label, "value": f(ci.estimate), "ci_low": f(ci.low), "ci_high": f(ci.high),
            "se": se, "n": ci.n, "scale": scale}
