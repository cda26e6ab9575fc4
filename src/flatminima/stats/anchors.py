"""Anchoring a smallest effect of interest on a published result: the "small telescopes" effect.

The book's rule (one rule for every claim): where the paper publishes the mean, spread and number of runs
of the sub-claim's primary statistic in the matching setting, the smallest effect of interest is the
effect the original study had 33% power to detect (Simonsohn 2015, "Small telescopes: detectability and
the evaluation of replication results", *Psychological Science* 26, 559-569). A replication whose interval
excludes that effect has found an effect too small for the original study to have seen. Where no such
numbers are published, the sub-claim says "none published" and why its value was chosen.
"""
from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as sps

DETECTABILITY = 1 / 3
"""The power that defines the small-telescopes effect (Simonsohn 2015: 33%)."""


def pooled_sd(sd_a: float, sd_b: float) -> float:
    """The common spread of two groups of equal size: :math:`\\sqrt{(s_a^2 + s_b^2)/2}`.

    Parameters
    ----------
    sd_a, sd_b : float
        The two groups' standard deviations.

    Returns
    -------
    float
        The pooled standard deviation.
    """
    return math.sqrt((sd_a ** 2 + sd_b ** 2) / 2)


def design_power(effect: float, sd: float, n: int, *, groups: int = 2, alpha: float = 0.05,
                 alternative: str = "two-sided") -> float:
    r"""Power of the original study's t-test to detect a mean difference ``effect``.

    ``groups=2``: two independent groups of ``n`` runs each with common spread ``sd`` (pooled t,
    :math:`\nu = 2n - 2`, :math:`\delta = \text{effect}/(sd\sqrt{2/n})`); ``groups=1``: one group of ``n``
    values (paired differences) with spread ``sd`` (:math:`\nu = n - 1`, :math:`\delta = \text{effect}\sqrt n/sd`).

    Parameters
    ----------
    effect, sd : float
    n : int
        Runs per group.
    groups : {1, 2}
    alpha : float
    alternative : {'two-sided', 'larger'}

    Returns
    -------
    float
    """
    if groups not in (1, 2):
        raise ValueError(f"groups must be 1 or 2, got {groups}")
    if n < 2 or not sd > 0:
        raise ValueError(f"need n >= 2 and sd > 0, got n={n}, sd={sd}")
    df = n - 1 if groups == 1 else 2 * n - 2
    se = sd / math.sqrt(n) if groups == 1 else sd * math.sqrt(2 / n)
    nc = effect / se
    if alternative == "larger":
        return float(sps.nct.sf(sps.t.ppf(1 - alpha, df), df, nc))
    if alternative != "two-sided":
        raise ValueError(f"alternative must be 'two-sided' or 'larger', got {alternative!r}")
    crit = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def small_telescope(sd: float, n: int, alpha: float = 0.05, *, groups: int = 2, power: float = DETECTABILITY,
                    alternative: str = "two-sided") -> float:
    """The effect the original study had ``power`` (33%) to detect: Simonsohn's (2015) :math:`d_{33}`, in units of ``sd``'s scale.

    Parameters
    ----------
    sd : float
        The published spread (per group for ``groups=2``; of the paired differences for ``groups=1``).
    n : int
        Published runs per group.
    alpha : float
        The original test's level (two-sided by default, the usual reading of a published comparison).
    groups, power, alternative
        As in :func:`design_power`.

    Returns
    -------
    float
        The effect, on the scale of ``sd``.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    hi = sd
    while design_power(hi, sd, n, groups=groups, alpha=alpha, alternative=alternative) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: design_power(e, sd, n, groups=groups, alpha=alpha,
                                                        alternative=alternative) - power, 0.0, hi, xtol=1e-14))
