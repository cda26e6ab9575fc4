"""Power of the one-sided t-test, the seeds it needs, and the pre-registration block built from them."""
from __future__ import annotations

import numpy as np
from scipy import stats as sps

# ----------------------------------------------------------------------------- pre-registration
ALTERNATIVES = ("larger", "two-sided")


def power_t(effect: float, sd: float, n: int, *, alpha: float = 0.05, alternative: str = "larger") -> float:
    r"""Power of the one-sample (or paired) Student t-test to detect a mean ``effect`` with spread ``sd``.

    With :math:`d = \text{effect}/\text{sd}`, noncentrality :math:`\delta = d\sqrt n` and
    :math:`\nu = n - 1` degrees of freedom, the one-sided power is
    :math:`1 - F_{\nu,\delta}(t_{1-\alpha,\nu})`, :math:`F_{\nu,\delta}` the noncentral t CDF
    (Cohen 1988, ch. 2); two-sided adds the lower tail at :math:`-t_{1-\alpha/2,\nu}`. This is what
    ``statsmodels.stats.power.TTestPower`` computes (a test checks that).

    Parameters
    ----------
    effect : float
        The true mean.
    sd : float
        The per-seed standard deviation.
    n : int
        Number of seeds.
    alpha : float
        Level of the test.
    alternative : {'larger', 'two-sided'}
        One-sided (effect above 0) or two-sided test.

    Returns
    -------
    float
        The power, in [0, 1].
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

    Parameters
    ----------
    smallest_effect : float
        The smallest effect of interest.
    sd : float
        Per-seed standard deviation of the primary statistic (from a pilot).
    alpha : float
        Level of the test.
    power : float
        Required power.
    alternative : {'larger', 'two-sided'}
        As in :func:`power_t`.
    max_n : int
        Largest number of seeds searched.

    Returns
    -------
    int
        The number of seeds.

    Raises
    ------
    ValueError
        When ``max_n`` seeds do not reach ``power``.
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

    Parameters
    ----------
    primary : str
        The primary statistic, in words.
    smallest_effect : float
        The smallest effect of interest.
    test : str
        The test, in words.
    pilot : dict
        ``sd``, ``n`` and ``source`` of the pilot.
    alpha : float
        Level of the test.
    power : float
        Required power.
    alternative : {'larger', 'two-sided'}
        As in :func:`power_t`.

    Returns
    -------
    dict
        The inputs plus ``seeds_needed`` (:func:`seeds_for_power`), JSON-ready.
    """
    for key in ("sd", "n", "source"):
        if key not in pilot:
            raise ValueError(f"pilot must give {key!r} (per-seed sd, pilot seeds, and where it came from)")
    needed = seeds_for_power(smallest_effect, float(pilot["sd"]), alpha=alpha, power=power,
                             alternative=alternative)
    return {"primary": primary, "smallest_effect": float(smallest_effect), "test": test, "alpha": alpha,
            "alternative": alternative, "power": power, "seeds_needed": needed, "pilot": dict(pilot)}


def check_seeds(prereg: dict, num_seeds: int) -> str:
    """An empty string if ``num_seeds`` meets the pre-registered ``seeds_needed``, else a warning sentence.

    Parameters
    ----------
    prereg : dict
        A block from :func:`preregister`.
    num_seeds : int
        The seeds the run used.

    Returns
    -------
    str
        ``""`` or the warning.
    """
    need = int(prereg["seeds_needed"])
    if num_seeds >= need:
        return ""
    return (f"this run used {num_seeds} seeds, fewer than the {need} its pre-registration needs for "
            f"{prereg['power']:.0%} power: its verdict is underpowered")
