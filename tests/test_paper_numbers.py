"""The papers' own numbers pushed through the book's rule, and the sub-claims' contract.

Each claim's sub-claims state a role and a smallest effect with its source (:data:`SUBCLAIMS`). A rule
that would call the paper's own published result "not reproduced" is miscalibrated, so: per-run values
with exactly the published mean, spread and number of runs go through :func:`flatminima.stats.decision.decide`
with the sub-claim's smallest effect and must come out *reproduced*.

Construction: ``z1`` and ``z2`` are standardized contrasts over the 5 runs (sample mean exactly 0, sample sd
exactly 1) that are orthogonal, so ``a = m_SB + s_SB z1`` and ``b = m_LB + s_LB z2`` have exactly the
published means and sds, and ``x = a - b`` has mean ``m_SB - m_LB`` and sample sd exactly
``sqrt(s_SB^2 + s_LB^2)``: the spread of the difference of two independent runs. ``decide`` is a one-sample
t-test on ``x``; its standard error equals Welch's ``sqrt(s_SB^2/5 + s_LB^2/5)``, with 4 degrees of freedom
instead of Welch's ~8 (a conservative paired approximation: Keskar et al. report the two regimes as independent
groups of 5 runs, not as pairs).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from flatminima.claims import registry
from flatminima.claims import sharp_minima as sm
from flatminima.protocol.contract import Role
from flatminima.stats.anchors import design_power, pooled_sd, small_telescope
from flatminima.stats.decision import Verdict, decide
from flatminima.stats.power import power_t

N = 5  # Keskar et al. sec. 2.2: every experiment run 5 times


def _standardize(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    v = v - v.mean()
    return v / v.std(ddof=1)


Z1 = _standardize([-2, -1, 0, 1, 2])
Z2 = _standardize([2, -1, -2, -1, 2])


def _groups(sb: tuple[float, float], lb: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    return sb[0] + sb[1] * Z1, lb[0] + lb[1] * Z2


# Keskar et al. 2017, Table 2: test accuracy (%) mean +- sd over 5 runs, SB / LB
TABLE_2 = {"F1": ((98.03, 0.07), (97.81, 0.07)), "F2": ((64.02, 0.2), (59.45, 1.05)),
           "C1": ((80.04, 0.12), (77.26, 0.42)), "C2": ((89.24, 0.12), (87.26, 0.07)),
           "C3": ((49.58, 0.39), (46.45, 0.43)), "C4": ((63.08, 0.5), (57.81, 0.17))}
# Keskar et al. 2017, Table 3: eps-sharpness in the full space, mean +- sd over 5 runs, (SB, LB) at eps 1e-3 and 5e-4
TABLE_3 = {"F1": (((1.23, 0.83), (205.14, 69.52)), ((0.61, 0.27), (42.90, 17.14))),
           "F2": (((1.39, 0.02), (310.64, 38.46)), ((0.90, 0.05), (93.15, 6.81))),
           "C1": (((28.58, 3.13), (707.23, 43.04)), ((7.08, 0.88), (227.31, 23.23))),
           "C2": (((8.68, 1.32), (925.32, 38.29)), ((2.07, 0.86), (175.31, 18.28))),
           "C3": (((29.85, 5.98), (258.75, 8.96)), ((8.56, 0.99), (105.11, 13.22))),
           "C4": (((12.83, 3.84), (421.84, 36.97)), ((4.07, 0.87), (109.35, 16.57)))}


def _subclaim(module, key: str):
    return next(s for s in module.SUBCLAIMS if s.key == key)


def test_construction_has_exactly_the_published_moments():
    a, b = _groups(*TABLE_2["F1"])
    assert a.mean() == pytest.approx(98.03) and a.std(ddof=1) == pytest.approx(0.07)
    assert b.mean() == pytest.approx(97.81) and b.std(ddof=1) == pytest.approx(0.07)
    x = a - b
    assert x.mean() == pytest.approx(0.22) and x.std(ddof=1) == pytest.approx(math.hypot(0.07, 0.07))
    welch = sps.ttest_ind(a, b, equal_var=False)
    assert x.std(ddof=1) / math.sqrt(N) == pytest.approx(math.sqrt(0.07 ** 2 / N + 0.07 ** 2 / N))
    assert welch.pvalue / 2 < 0.05  # the unpaired test agrees with the paired approximation's direction


@pytest.mark.parametrize("net", list(TABLE_2))
def test_keskar_table_2_test_accuracy_gap_is_reproduced_by_the_rule_at_part_b_smallest_effect(net):
    a, b = _groups(*TABLE_2[net])
    x = (a - b) / 100  # the chapter's scale: accuracy, not points
    d = decide(x, smallest_effect=_subclaim(sm, "B").smallest_effect.value)
    assert d.outcome is Verdict.REPRODUCED, d.reason


def test_the_old_one_point_rule_calls_keskar_f1_not_reproduced():
    a, b = _groups(*TABLE_2["F1"])
    d = decide((a - b) / 100, smallest_effect=0.01)
    assert d.outcome is Verdict.NOT_REPRODUCED and d.p_equivalence < 1e-3, d.reason  # 3e-5 with 4 df (Welch, 8 df: smaller)


def test_part_b_smallest_effect_is_keskar_f1_small_telescope_and_below_f1_own_gap():
    se = _subclaim(sm, "B").smallest_effect
    assert se.published and "Table 2" in se.source and "F1" in se.source
    assert se.value == pytest.approx(small_telescope(0.0007, 5))
    assert se.value < (98.03 - 97.81) / 100


@pytest.mark.parametrize("net", list(TABLE_3))
@pytest.mark.parametrize("eps", [0, 1], ids=["eps1e-3", "eps5e-4"])
def test_keskar_table_3_sharpness_ratio_is_reproduced_by_the_rule_at_part_a_smallest_effect(net, eps):
    sb, lb = TABLE_3[net][eps]
    a, b = _groups(sb, lb)
    assert (a > 0).all() and (b > 0).all()
    d = decide(np.log(b / a), smallest_effect=_subclaim(sm, "A").smallest_effect.value)
    assert d.outcome is Verdict.REPRODUCED, d.reason


# ----------------------------------------------------------------------------- the anchor
def test_small_telescope_is_the_effect_the_original_had_a_third_power_to_detect():
    e = small_telescope(0.07, 5)
    assert design_power(e, 0.07, 5) == pytest.approx(1 / 3, abs=1e-9)
    assert design_power(2 * e, 0.07, 5) > 1 / 3 > design_power(e / 2, 0.07, 5)
    assert small_telescope(1.0, 5) == pytest.approx(e / 0.07)  # scales with sd


def test_design_power_matches_statsmodels():
    smp = pytest.importorskip("statsmodels.stats.power")
    assert design_power(1.2, 1.0, 5) == pytest.approx(smp.TTestIndPower().power(1.2, 5, 0.05), rel=1e-6)
    assert design_power(0.8, 1.0, 7, groups=1) == pytest.approx(smp.TTestPower().power(0.8, 7, 0.05), rel=1e-6)
    assert design_power(0.8, 1.0, 7, groups=1, alternative="larger") == pytest.approx(
        power_t(0.8, 1.0, 7), rel=1e-9)


def test_pooled_sd_and_bad_inputs():
    assert pooled_sd(3.0, 4.0) == pytest.approx(math.sqrt(12.5))
    with pytest.raises(ValueError):
        design_power(1.0, 1.0, 5, groups=3)
    with pytest.raises(ValueError):
        small_telescope(1.0, 5, power=1.5)


# ----------------------------------------------------------------------------- the sub-claims' contract
def _prereg_for(module, key: str) -> dict:
    pre = module.PREREGISTRATION
    return pre["parts"][f"Part {key}"] if "parts" in pre else pre


def _cpu_seeds(claim: str, key: str) -> int:
    p = registry.resolve(claim, "cpu")
    return int(getattr(p, f"part_{key.lower()}_seeds", p.num_seeds))


@pytest.mark.parametrize("claim", list(registry.CLAIMS))
def test_every_decided_subclaim_is_preregistered_and_powered_at_the_cpu_preset(claim):
    module = registry.claim_module(claim)
    keys = [s.key for s in module.SUBCLAIMS]
    assert keys == [chr(ord("A") + i) for i in range(len(keys))]
    decided = [s for s in module.SUBCLAIMS if s.role is Role.DECIDED]
    assert decided, f"{claim}: no decided sub-claim, so its verdict is always inconclusive"
    for s in decided:
        pre = _prereg_for(module, s.key)
        assert s.smallest_effect.value == pytest.approx(pre["smallest_effect"]), (claim, s.key)
        power = power_t(s.smallest_effect.value, float(pre["pilot"]["sd"]), _cpu_seeds(claim, s.key))
        assert power >= 0.8, f"{claim} {s.key}: power {power:.2f} < 0.8 with the cpu preset's seeds"
    for s in module.SUBCLAIMS:
        assert s.statement and s.where and s.primary and s.why_role, (claim, s.key)


@pytest.mark.parametrize("claim", list(registry.CLAIMS))
def test_every_smallest_effect_names_its_source(claim):
    for s in registry.claim_module(claim).SUBCLAIMS:
        se = s.smallest_effect
        if se is None:
            assert s.role is Role.CONTROL, (claim, s.key)
            continue
        assert se.value > 0 and se.source.strip(), (claim, s.key)
        if se.published:
            assert re.search(r"\b(Table|Fig\.?|Figure|sec\.|Section)\s*\d", se.source), (claim, s.key, se.source)
        else:
            assert se.source.startswith("none published: ") and len(se.source) > 40, (claim, s.key, se.source)


def test_an_underpowered_subclaim_is_an_estimate_and_says_how_many_seeds_it_needs():
    from flatminima.claims import wide_minima as wm
    b = _subclaim(wm, "B")
    assert b.role is Role.ESTIMATE and "113 seeds needed" in b.why_role and "16 run" in b.why_role
    assert _subclaim(sm, "B").role is Role.ESTIMATE and "seeds needed" in _subclaim(sm, "B").why_role
