"""The block-means trend test: right size on stationary AR(1) processes, power against drifts and random walks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from flatminima.stats.stationarity import ar1, trend_test


def test_ar1_has_its_stationary_variance_and_lag_one_correlation():
    x = ar1(200_000, phi=0.8, sd=1.0, seed=3)
    assert x.var() == pytest.approx(1 / (1 - 0.64), rel=0.03)
    assert np.corrcoef(x[1:], x[:-1])[0, 1] == pytest.approx(0.8, abs=0.01)


def test_slope_and_interval_match_an_independent_ols_on_block_means():
    x = np.arange(100.0) * 0.01 + ar1(100, phi=0.5, seed=1)
    t = trend_test(x, num_blocks=5)
    means = x.reshape(5, 20).mean(1)
    X = np.c_[np.ones(5), np.arange(5.0)]
    beta, res, *_ = np.linalg.lstsq(X, means, rcond=None)
    s2 = res[0] / 3
    se = np.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])
    assert t.slope == pytest.approx(beta[1])
    assert t.ci_high - t.slope == pytest.approx(sps.t.ppf(0.975, 3) * se)


def test_stationary_ar1_passes_about_95_percent_of_the_time():
    passes = [trend_test(ar1(2000, phi=0.9, seed=s)).stationary for s in range(300)]
    assert 0.90 <= np.mean(passes) <= 0.99


@pytest.mark.parametrize("kind", ["drift", "random walk"])
def test_drifting_and_random_walk_series_are_rejected(kind):
    out = []
    for s in range(200):
        rng = np.random.default_rng(1000 + s)
        if kind == "drift":  # the loss of a run still relaxing: a trend of 1 sd over the window
            x = ar1(2000, phi=0.9, seed=s) + np.linspace(0, 2.3 * 4, 2000)
        else:
            x = np.cumsum(rng.standard_normal(2000))
        out.append(not trend_test(x).stationary)
    assert np.mean(out) >= (0.95 if kind == "drift" else 0.5)


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match="longer window"):
        trend_test(np.ones(5), num_blocks=10)
    with pytest.raises(ValueError, match="divergence"):
        trend_test(np.r_[np.ones(30), np.nan])
    with pytest.raises(ValueError, match="stationary only"):
        ar1(10, phi=1.0)
