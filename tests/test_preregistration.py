"""Power, equivalence and the decision rule, checked against statsmodels and constructed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from flatminima.stats.decision import combine, decide, tost
from flatminima.stats.intervals import statistic
from flatminima.stats.power import check_seeds, power_t, preregister, seeds_for_power


@pytest.mark.parametrize("alternative", ["larger", "two-sided"])
@pytest.mark.parametrize("d,n", [(0.2, 10), (0.5, 8), (1.0, 5), (2.0, 3), (0.8, 47)])
def test_power_matches_statsmodels(d, n, alternative):
    ours = power_t(d * 1.7, 1.7, n, alpha=0.05, alternative=alternative)
    ref = TTestPower().power(effect_size=d, nobs=n, alpha=0.05, alternative=alternative)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("d", [0.3, 0.5, 0.8, 1.2, 2.5])
def test_seeds_for_power_is_the_first_n_reaching_the_target(d):
    n = seeds_for_power(d, 1.0, power=0.8)
    ref = TTestPower().solve_power(effect_size=d, alpha=0.05, power=0.8, alternative="larger")
    assert n == max(2, math.ceil(ref - 1e-9))
    assert power_t(d, 1.0, n) >= 0.8
    if n > 2:
        assert power_t(d, 1.0, n - 1) < 0.8


def test_review_power_numbers_for_part_b_are_recovered():
    # review-2: sd 2.4 points, 1-point effect, two-sided 0.05 -> about 47 seeds; 2 points -> about 14
    assert seeds_for_power(1.0, 2.4, alternative="two-sided") == pytest.approx(47, abs=1)
    assert seeds_for_power(2.0, 2.4, alternative="two-sided") == pytest.approx(14, abs=1)


def first_n_with_power(d, power=0.8, alpha=0.05):
    """The smallest n (from 2) whose one-sided one-sample t power, by statsmodels, reaches ``power``."""
    n = 2
    while TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="larger") < power:
        n += 1
    return n


@pytest.mark.parametrize("effect, sd, n", [(0.5, 1.0, 27), (1.0, 2.0, 27), (0.5, 0.5, None), (0.3, 0.2, None)])
def test_preregister_states_the_seeds_that_statsmodels_says_reach_80_percent_power(effect, sd, n):
    block = preregister(primary="mean log ratio", smallest_effect=effect, test="one-sided t",
                        pilot={"sd": sd, "n": 5, "source": "pilot seeds 500-504"})
    assert block["seeds_needed"] == first_n_with_power(effect / sd)
    if n is not None:  # by hand from statsmodels: d = 0.5 needs 27 seeds one-sided at alpha 0.05
        assert block["seeds_needed"] == n


def test_preregister_computes_seeds_and_refuses_an_unstated_pilot():
    block = preregister(primary="mean log ratio", smallest_effect=0.5, test="one-sided t + TOST",
                        pilot={"sd": 1.0, "n": 5, "source": "pilot seeds 500-504"})
    assert block["seeds_needed"] == 27 and block["alpha"] == 0.05 and block["power"] == 0.8
    assert {"primary", "smallest_effect", "test", "power", "seeds_needed", "pilot"} <= set(block)
    assert check_seeds(block, block["seeds_needed"]) == ""
    assert "underpowered" in check_seeds(block, block["seeds_needed"] - 1)
    with pytest.raises(ValueError, match="source"):
        preregister(primary="x", smallest_effect=0.5, test="t", pilot={"sd": 1.0, "n": 5})
    with pytest.raises(ValueError, match="smallest_effect"):
        seeds_for_power(0.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_tost_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0.1, 1.0), size=rng.integers(4, 30))
    ours = tost(x, -0.4, 0.4)
    p, lower, upper = ttost_paired(x, np.zeros_like(x), -0.4, 0.4)
    assert ours.p == pytest.approx(p, rel=1e-9)
    assert ours.p_lower == pytest.approx(lower[1], rel=1e-9)
    assert ours.p_upper == pytest.approx(upper[1], rel=1e-9)


def test_decide_reproduced_when_the_effect_is_clearly_positive():
    d = decide([0.9, 1.1, 1.0, 1.2, 0.8], smallest_effect=0.2)
    assert d.outcome == "reproduced" and d.p_effect < 0.05 and d.ci_low > 0
    x = np.array([0.9, 1.1, 1.0, 1.2, 0.8])  # the interval is the 1 - 2 alpha = 90% t-interval, as in the reason
    lo, hi = sps.t.interval(0.90, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (d.ci_low, d.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert f"[{lo:.3g}, {hi:.3g}] (90% interval)" in d.reason
    d10 = decide(x, smallest_effect=0.2, alpha=0.10)  # alpha 0.10: the 80% interval
    lo, hi = sps.t.interval(0.80, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (d10.ci_low, d10.ci_high) == (pytest.approx(lo), pytest.approx(hi)) and "(80% interval)" in d10.reason


def test_decide_not_reproduced_when_equivalence_excludes_the_smallest_effect():
    x = np.array([0.01, -0.02, 0.0, 0.015, -0.01, 0.005, 0.0, -0.005])
    d = decide(x, smallest_effect=0.2)
    assert d.outcome == "not reproduced" and d.p_equivalence < 0.05 and "smallest effect" in d.reason


def test_decide_not_reproduced_when_the_effect_is_reversed():
    d = decide([-0.9, -1.1, -1.0, -1.2, -0.8], smallest_effect=0.2)
    assert d.outcome == "not reproduced" and d.p_reversed < 0.05 and "reversed" in d.reason


def test_decide_inconclusive_when_noise_allows_both():
    d = decide([1.0, -0.8, 0.5, -0.2], smallest_effect=0.2)
    assert d.outcome == "inconclusive"


def test_decide_on_the_threshold_of_equivalence_is_not_equivalent():
    # mean exactly on the bound: the TOST p-value is exactly 1/2, never below alpha
    x = np.array([0.1, 0.3, 0.2, 0.2])
    d = decide(x, smallest_effect=0.2)
    assert d.p_equivalence == pytest.approx(0.5)
    assert d.outcome != "not reproduced"


def test_decide_with_zero_spread_and_too_few_values():
    assert decide([0.5, 0.5, 0.5], smallest_effect=0.2).outcome == "reproduced"
    assert decide([0.0, 0.0, 0.0], smallest_effect=0.2).outcome == "not reproduced"
    one = decide([3.0], smallest_effect=0.2)
    assert one.outcome == "inconclusive" and "fewer than 2" in one.reason


def test_combine_follows_the_stated_rule():
    assert combine(["reproduced", "reproduced"]) == "reproduced"
    assert combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert combine(["inconclusive", "not reproduced"]) == "not reproduced"
    with pytest.raises(ValueError):
        combine(["maybe"])


def test_statistic_on_the_log_scale_is_a_geometric_mean_with_log_se():
    logs = np.log([2.0, 4.0, 8.0])
    st = statistic("ratio", logs, scale="log")
    assert st["value"] == pytest.approx(4.0)
    assert st["se"] == pytest.approx(np.std(logs, ddof=1) / math.sqrt(3))
    assert st["ci_low"] < 4.0 < st["ci_high"] and st["n"] == 3 and st["level"] == 0.90
    lo, hi = sps.t.interval(0.90, 2, loc=logs.mean(), scale=sps.sem(logs))
    assert (st["ci_low"], st["ci_high"]) == (pytest.approx(math.exp(lo)), pytest.approx(math.exp(hi)))


def test_statistic_without_any_finite_value_is_missing_not_an_error():
    st = statistic("ratio", [math.nan, math.inf], scale="log")
    assert st["n"] == 0 and math.isnan(st["value"]) and math.isnan(st["se"])
    ok = statistic("x", [1.0, math.nan, 3.0])  # non-finite seeds are left out of the mean and the se
    assert ok["n"] == 2 and ok["value"] == 2.0 and ok["se"] == pytest.approx(1.0)
