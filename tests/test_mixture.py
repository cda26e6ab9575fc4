"""Tests of flatminima.data.mixture: the closed-form Bayes-optimal error and the linear minimisers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from flatminima.data.mixture import (
    bayes_optimal_bias,
    bayes_optimal_error,
    bayes_optimal_estimator,
    logistic_classifier,
    max_margin_classifier,
    perceptron_classifiers,
    plugin_test_error,
    ridge_classifier,
    sample_mixture,
    zero_one_error,
)


def _projected_test_error(w: torch.Tensor, b: float, v: torch.Tensor, *, Delta: float, rho: float, n: int,
                          g: torch.Generator) -> float:
    """Monte-Carlo test error drawing only the 1-D projection h = x.w/sqrt(N) + b of fresh test points.

    For x = y v/sqrt(N) + sqrt(Delta) z, h = y (w.v)/N + sqrt(Delta) |w|/sqrt(N) xi + b with xi ~ N(0, 1):
    the same distribution as the full-dimensional draw, at a fraction of the cost.
    """
    N = len(w)
    y = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < rho, 1.0, -1.0)
    xi = torch.randn(n, generator=g, dtype=torch.float64)
    h = y * float(w @ v) / N + math.sqrt(Delta) * float(w.norm()) / math.sqrt(N) * xi + b
    return float((y * h <= 0).double().mean())


@pytest.mark.parametrize("alpha,Delta,rho", [(0.5, 0.5, 0.5), (2.0, 0.5, 0.2), (1.0, 1.0, 0.5), (2.0, 1.0, 0.3)])
def test_closed_form_bo_error_matches_monte_carlo_within_3_se(alpha, Delta, rho):
    N, num_sets, n_test = 1000, 12, 100_000
    g = torch.Generator().manual_seed(11)
    errors = []
    for _ in range(num_sets):
        tr = sample_mixture(int(alpha * N), N, Delta=Delta, rho=rho, generator=g, dtype=torch.float64)
        clf = bayes_optimal_estimator(tr.X, tr.y, Delta=Delta, rho=rho)
        errors.append(_projected_test_error(clf.w, float(clf.b), tr.v, Delta=Delta, rho=rho, n=n_test, g=g))
    errors = np.asarray(errors)
    se = errors.std(ddof=1) / math.sqrt(num_sets)
    theory = bayes_optimal_error(alpha, Delta, rho)
    assert abs(errors.mean() - theory) < 3 * se + 1e-3, (errors.mean(), theory, se)


def test_balanced_bo_error_reduces_to_the_one_argument_formula_and_its_oracle_limit():
    for alpha, Delta in [(0.3, 0.5), (2.0, 1.0), (7.0, 0.25)]:
        expected = stats.norm.sf(math.sqrt(alpha / (Delta * (alpha + Delta))))
        assert bayes_optimal_error(alpha, Delta) == pytest.approx(expected, rel=1e-12)
    assert bayes_optimal_error(1e9, 0.5) == pytest.approx(stats.norm.sf(1 / math.sqrt(0.5)), rel=1e-6)
    assert bayes_optimal_bias(0.5, 0.5) == 0.0


def test_bo_error_decreases_with_alpha_and_increases_with_noise():
    alphas = [0.25, 0.5, 1, 2, 4, 8]
    errs = [bayes_optimal_error(a, 0.5, 0.2) for a in alphas]
    assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:]))
    assert bayes_optimal_error(2.0, 1.0) > bayes_optimal_error(2.0, 0.5)


def test_full_dimensional_plugin_error_agrees_with_theory():
    g = torch.Generator().manual_seed(3)
    tr = sample_mixture(800, 400, Delta=0.5, generator=g)
    err, se = plugin_test_error(tr.X, tr.y, Delta=0.5, rho=0.5, n_test=20_000, v=tr.v, generator=g)
    # one data set: the spread over data sets at N=400 (~0.01) dominates the binomial SE
    assert abs(err - bayes_optimal_error(2.0, 0.5)) < 0.03
    assert 0 < se < 0.005


def test_sample_mixture_keeps_label_fraction_and_cluster_means():
    g = torch.Generator().manual_seed(0)
    s = sample_mixture(20_000, 50, Delta=0.5, rho=0.2, generator=g)
    assert s.X.shape == (20_000, 50) and set(s.y.unique().tolist()) == {-1.0, 1.0}
    assert float((s.y > 0).float().mean()) == pytest.approx(0.2, abs=0.01)
    mean_plus = s.X[s.y > 0].mean(0)
    assert torch.allclose(mean_plus, s.v / 50 ** 0.5, atol=0.03)


def test_ridge_tends_to_hebbian_direction_for_large_lambda_and_interpolates_for_small():
    g = torch.Generator().manual_seed(1)
    tr = sample_mixture(100, 200, Delta=0.5, generator=g, dtype=torch.float64)
    hebb = tr.y @ tr.X
    w = ridge_classifier(tr.X, tr.y, 1e8).w
    assert float(torch.nn.functional.cosine_similarity(w, hebb, dim=0)) > 0.9999
    small = ridge_classifier(tr.X, tr.y, 1e-8)
    assert float(zero_one_error(small.params(), tr.X, tr.y)) == 0.0  # P < N: interpolation


def test_zero_error_minimisers_separate_separable_data():
    g = torch.Generator().manual_seed(2)
    tr = sample_mixture(200, 200, Delta=0.5, generator=g)
    for clf in [max_margin_classifier(tr.X, tr.y), logistic_classifier(tr.X, tr.y),
                *perceptron_classifiers(tr.X, tr.y, num_inits=3, seed=99, init_scale=0.1)]:
        assert float(zero_one_error(clf.params(), tr.X, tr.y)) == 0.0


def test_perceptron_inits_differ_and_are_reproducible():
    g = torch.Generator().manual_seed(2)
    tr = sample_mixture(100, 100, Delta=0.5, generator=g)
    a = perceptron_classifiers(tr.X, tr.y, num_inits=2, seed=5)
    b = perceptron_classifiers(tr.X, tr.y, num_inits=2, seed=5)
    assert torch.equal(a[0].w, b[0].w) and not torch.equal(a[0].w, a[1].w)
