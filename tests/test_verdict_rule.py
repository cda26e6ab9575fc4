"""The verdict rule of issue 22: Holm over decided sub-claims, controls that withhold, estimates that never
count, intervals that match the one-sided tests, and sub-claim tables that escape the paper's words."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from flatminima.pages.markdown import result_box_markdown, subclaims_compact, subclaims_markdown, verdict_reason
from flatminima.protocol.contract import (
    Part,
    Role,
    SmallestEffect,
    Statistic,
    SubClaim,
    decide_family,
    verdict_of,
)
from flatminima.protocol.record import validate_results
from flatminima.stats.decision import Decision, Verdict, decide, holm
from flatminima.stats.intervals import statistic

R, N, I = Verdict.REPRODUCED, Verdict.NOT_REPRODUCED, Verdict.INCONCLUSIVE


# ----------------------------------------------------------------------------- Holm
def test_holm_matches_statsmodels_on_random_p_values_with_ties_and_nan():
    rng = np.random.default_rng(22)
    grid = np.array([0.0005, 0.005, 0.01, 0.0125, 0.0166, 0.025, 0.03, 0.05, 0.2, 0.7, math.nan])
    for trial in range(60):  # (multipletests takes ~0.1 s a call on a loaded machine)
        m = int(rng.integers(1, 9))
        p = rng.choice(grid, m) if trial % 2 else rng.uniform(0, 0.08, m)  # ties from the grid, else continuous
        alpha = (0.05, 0.1)[trial % 3 == 0]
        want = multipletests(np.where(np.isnan(p), 1.0, p), alpha=alpha, method="holm")[0]  # NaN counts as 1
        assert holm(list(p), alpha) == list(want), (p, alpha)


def test_holm_small_cases_by_hand():
    assert holm([], 0.05) == []
    assert holm([0.01, 0.04, 0.30]) == [True, False, False]  # 0.04 > 0.05 / 2 stops the step-down
    assert holm([0.025, 0.025]) == [True, True]  # ties: 0.025 <= 0.05/2, then 0.025 <= 0.05
    assert holm([math.nan, 0.01]) == [False, True]


# ----------------------------------------------------------------------------- decide_family and verdict_of
def _decision(p_effect: float, p_against: float = 0.5) -> Decision:
    outcome = N if p_against < 0.05 else R if p_effect < 0.05 else I
    return Decision(outcome, 1.0, 0.5, 10, 0.1, 1.9, p_effect, 0.9, p_against, 0.2, 0.05, f"p = {p_effect}")


def _sub(key: str, role: Role) -> SubClaim:
    se = SmallestEffect(0.2, "Table 1", True) if role is Role.DECIDED else None
    return SubClaim(key, f"statement {key}", "Sec. 1", "mean", role, se, "" if role is Role.DECIDED else "why")


def _part(key: str, role: Role, p_effect: float, p_against: float = 0.5) -> Part:
    d = _decision(p_effect, p_against)
    return Part(f"{key}: part", d.outcome, d.reason, Statistic("x", 1.0, 0.1, 1.9, 0.5, 10), _sub(key, role), d)


def test_decide_family_holm_keeps_one_of_two_unadjusted_passes():
    parts = [_part("A", Role.DECIDED, 0.01), _part("B", Role.DECIDED, 0.04), _part("C", Role.DECIDED, 0.30)]
    assert [p.outcome for p in parts] == [R, R, I]  # unadjusted: two pass
    fam = decide_family(parts)
    assert [p.outcome for p in fam] == [R, I, I]  # Holm over three: 0.01 <= 0.05/3, 0.04 > 0.05/2
    assert "Holm" in fam[1].reason and fam[0].reason == parts[0].reason
    assert verdict_of(fam) is I


def test_decide_family_not_reproduced_needs_holm_on_the_tests_against():
    parts = [_part("A", Role.DECIDED, 0.6, p_against=0.001), _part("B", Role.DECIDED, 0.6, p_against=0.04),
             _part("C", Role.DECIDED, 0.6, p_against=0.9)]
    assert [p.outcome for p in parts] == [N, N, I]  # unadjusted: two fail
    fam = decide_family(parts)
    assert [p.outcome for p in fam] == [N, I, I]  # Holm over three: 0.001 <= 0.05/3, 0.04 > 0.05/2
    assert verdict_of(fam) is N


def test_a_failed_control_gives_inconclusive_never_not_reproduced():
    good = [_part("A", Role.DECIDED, 0.001), _part("B", Role.DECIDED, 0.002)]
    failed = _part("C", Role.CONTROL, 0.6, p_against=0.001)
    assert failed.outcome is N
    assert verdict_of(decide_family(good)) is R
    assert verdict_of(decide_family([*good, failed])) is I
    bad = [_part("A", Role.DECIDED, 0.6, p_against=0.001), failed]  # a failed statement beside a failed control
    assert verdict_of(decide_family(bad)) is I
    undecided_control = _part("C", Role.CONTROL, 0.3)
    assert verdict_of(decide_family([*good, undecided_control])) is I
    assert verdict_of([failed]) is I  # no decided sub-claim


def test_estimates_never_change_the_verdict_or_the_family():
    decided = [_part("A", Role.DECIDED, 0.02), _part("B", Role.DECIDED, 0.045)]
    est_bad = _part("E", Role.ESTIMATE, 0.5, p_against=0.001)  # would make Holm's family 3 and fail
    est_good = _part("F", Role.ESTIMATE, 0.0001)
    for extra in ([], [est_bad], [est_good], [est_bad, est_good]):
        fam = decide_family([*decided, *extra])
        assert [p.outcome for p in fam[:2]] == [R, R]  # Holm over the two decided parts only
        assert fam[2:] == tuple(extra)  # estimates untouched
        assert verdict_of(fam) is R
    assert verdict_of([_part("A", Role.DECIDED, 0.3), est_bad]) is I


def test_parts_write_role_subclaim_p_values_and_the_statistic_level():
    p = _part("A", Role.DECIDED, 0.01, p_against=0.3)
    d = p.to_dict()
    assert d["role"] == "decided" and d["subclaim"]["statement"] == "statement A" and d["p_effect"] == 0.01
    assert d["p_against"] == 0.3 and d["statistic"]["level"] == 0.90
    assert d["subclaim"]["smallest_effect"] == {"value": 0.2, "source": "Table 1", "published": True}
    assert Statistic("x", 1.0).to_dict()["level"] == 0.90
    assert Statistic.from_dict(statistic("x", [1.0, 2.0, 4.0], confidence=0.8)).level == 0.8


# ----------------------------------------------------------------------------- intervals
@pytest.mark.parametrize("x", [[1.0, 2.0, 4.0, 7.0], [0.3, -0.1, 0.2, 0.25, 0.4, 0.1], [5.0, 5.5]])
def test_statistic_and_decide_give_scipys_90_percent_t_interval(x):
    x = np.array(x)
    lo, hi = sps.t.interval(0.90, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    st = statistic("x", x)
    assert (st["ci_low"], st["ci_high"], st["level"]) == (pytest.approx(lo), pytest.approx(hi), 0.90)
    d = decide(x, smallest_effect=0.1)
    assert (d.ci_low, d.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    # the bounds are the one-sided 95% bounds: the one-sided test rejects exactly when the lower bound is above 0
    assert (d.p_effect < 0.05) == (lo > 0)


# ----------------------------------------------------------------------------- pages
EVIL = '<script>alert(1)</script> [x](javascript:alert(1)) **bold** {raw}`html`'


def _record(parts, verdict=None):
    return {"claim": "toy", "verdict": (verdict or verdict_of(parts)).value, "parts": [p.to_dict() for p in parts],
            "headline": Statistic("x", 1.0, 0.5, 1.5, 0.2, 5).to_dict()}


def _render(md: str) -> str:
    """The Markdown inside the list-table / admonition fences, rendered by MyST's parser (as Sphinx parses it)."""
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    body = "\n".join(line for line in md.splitlines() if not re.match(r"^:::|^:(class|header-rows|widths):", line))
    parser = create_md_parser(MdParserConfig(enable_extensions={"colon_fence", "dollarmath"}), RendererHTML)
    return parser.render(body)


def test_subclaims_markdown_escapes_the_papers_words_and_shows_roles():
    evil = SubClaim("A", EVIL, EVIL, EVIL, Role.DECIDED, SmallestEffect(0.2, EVIL, False), EVIL)
    d = _decision(0.01)
    parts = [Part(f"A {EVIL}", d.outcome, EVIL, Statistic(EVIL, 1.0, 0.1, 1.9, 0.5, 10), evil, d),
             _part("B", Role.CONTROL, 0.01), _part("C", Role.ESTIMATE, 0.5, p_against=0.001)]
    rec = _record(parts)
    for md in (subclaims_markdown(rec), result_box_markdown(rec), subclaims_compact(rec)):
        html = _render(md)
        assert "<script" not in html and "<script" not in md.replace("\\<script", "")
        assert 'href="javascript' not in html and "<strong>bold" not in html and 'myst role">{raw}' not in html
    table = subclaims_markdown(rec)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _render(table)  # shown as text, not dropped
    assert "*decided*" in table and "*control*" in table and "*estimate*: why" in table
    assert "none published" in table  # a smallest effect that is not published says so
    rows = table.split("\n* - ")[1:]
    assert "{bdg-success}`reproduced`" in rows[1] and "(90% interval)" in rows[1]
    assert "{bdg-secondary}`estimate`" in rows[3] and "not reproduced" not in rows[3]  # no verdict badge
    assert "“statement B” (Sec\\. 1)" in rows[2]


def test_verdict_reason_states_the_rule_and_never_names_estimates():
    a, c = _part("A", Role.DECIDED, 0.001), _part("C", Role.CONTROL, 0.6, p_against=0.001)
    e = _part("E", Role.ESTIMATE, 0.6, p_against=0.001)
    why = verdict_reason(_record([a, c, e]))
    assert "C: part (control) is not reproduced" in why and "control that does not pass" in why
    assert "E: part" not in why
    why = verdict_reason(_record([a, _part("C", Role.CONTROL, 0.001), e]))
    assert why.startswith("Every decided sub-claim is reproduced and every control passed.") and "E: part" not in why
    assert "No sub-claim is decided" in verdict_reason(_record([e], I))


def test_records_with_roles_and_subclaims_validate_and_old_ones_still_do():
    parts = [_part("A", Role.DECIDED, 0.001), _part("E", Role.ESTIMATE, 0.5)]
    base = {"claim": "toy", "preset": "smoke", "parameters": {}, "statistics": {}, "criterion": "c", "seeds": [0],
            "runtime_s": 1.0, "versions": {}, "device": "cpu"}
    validate_results({**base, "verdict": "reproduced", "parts": [p.to_dict() for p in parts],
                      "headline": Statistic("x", 1.0).to_dict()})
    validate_results({**base, "verdict": "reproduced", "parts": [{"name": "A", "outcome": "reproduced"}],
                      "headline": {"label": "x", "value": 1.0, "ci_low": 0.5, "ci_high": 1.5}})
    with pytest.raises(Exception):
        validate_results({**base, "verdict": "reproduced", "parts": [{"name": "A", "outcome": "reproduced",
                                                                      "role": "side measurement"}]})
