"""Tests of flatminima.landscape.flatness: local energy and the local-entropy proxy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from flatminima.curvature.hessian import params_of
from flatminima.data.mixture import preactivation, sample_mixture, zero_one_error
from flatminima.landscape.flatness import classification_error_fn, local_energy, local_energy_loop, local_entropy_proxy
from flatminima.nn.models import make_model


@pytest.fixture(scope="module")
def linear_case():
    g = torch.Generator().manual_seed(0)
    tr = sample_mixture(400, 50, Delta=0.5, generator=g, dtype=torch.float64)
    params = {"w": tr.v.clone(), "b": torch.zeros((), dtype=torch.float64)}
    return tr, params


def test_local_energy_is_zero_at_sigma_zero(linear_case):
    tr, params = linear_case
    curve = local_energy(lambda p: zero_one_error(p, tr.X, tr.y), params, [0.0], num_draws=50)
    assert np.all(curve.values == 0.0)


def test_local_energy_matches_closed_form_for_a_linear_classifier(linear_case):
    """Multiplicative noise on w: h' = h + sigma sum_i w_i z_i x_i / sqrt(N) is Gaussian given x, so
    E_z[E(w + sigma z*w)] = mean_mu Phi(-y h / (sigma s)), s^2 = sum_i w_i^2 x_i^2 / N (b = 0)."""
    tr, params = linear_case
    sigmas = [0.1, 0.3, 0.6, 1.0, 2.0]
    curve = local_energy(lambda p: zero_one_error(p, tr.X, tr.y), params, sigmas, num_draws=4000, seed=1)
    h = preactivation(params, tr.X)
    s = ((params["w"] ** 2 * tr.X ** 2).sum(1) / tr.X.shape[1]).sqrt()
    base = float(zero_one_error(params, tr.X, tr.y))
    for sigma, mc, draws in zip(sigmas, curve.mean, curve.values):
        exact = float(torch.tensor(stats.norm.cdf((-tr.y * h / (sigma * s)).numpy())).mean()) - base
        se = draws.std(ddof=1) / np.sqrt(len(draws))
        assert abs(mc - exact) < 4 * se + 1e-9, (sigma, mc, exact, se)


def test_local_energy_increases_with_sigma_on_a_good_classifier(linear_case):
    tr, params = linear_case
    curve = local_energy(lambda p: zero_one_error(p, tr.X, tr.y), params, [0.05, 0.2, 0.5, 1.0, 2.0],
                         num_draws=500)
    assert np.all(np.diff(curve.mean) > 0)
    assert curve.reference == float(zero_one_error(params, tr.X, tr.y))


def test_batched_local_energy_equals_the_plain_loop(linear_case):
    tr, params = linear_case
    fn = lambda p: zero_one_error(p, tr.X, tr.y)  # noqa: E731
    a = local_energy(fn, params, [0.2, 0.7], num_draws=40, seed=3)
    b = local_energy_loop(fn, params, [0.2, 0.7], num_draws=40, seed=3)
    np.testing.assert_allclose(a.values, b.values, atol=1e-12)


def test_local_energy_is_reproducible_under_a_seed_and_changes_with_it(linear_case):
    tr, params = linear_case
    fn = lambda p: zero_one_error(p, tr.X, tr.y)  # noqa: E731
    a = local_energy(fn, params, [0.5], num_draws=30, seed=4).values
    assert np.array_equal(a, local_energy(fn, params, [0.5], num_draws=30, seed=4).values)
    assert not np.array_equal(a, local_energy(fn, params, [0.5], num_draws=30, seed=5).values)


def test_local_entropy_proxy_is_one_at_tiny_distance_and_falls_with_distance(linear_case):
    tr, params = linear_case
    fn = lambda p: zero_one_error(p, tr.X, tr.y)  # noqa: E731
    curve = local_entropy_proxy(fn, params, [1e-6, 0.3, 1.0, 3.0], num_draws=300, seed=0)
    assert curve.mean[0] == 1.0
    assert curve.mean[-1] < curve.mean[1] <= 1.0
    assert set(np.unique(curve.values)) <= {0.0, 1.0}


def test_local_entropy_perturbation_has_the_requested_relative_norm():
    # with error_fn returning the distance itself, the "kept" fraction is a step in d
    ref = {"w": torch.tensor([3.0, 4.0])}
    dist = lambda p: (p["w"] - ref["w"]).norm() / 5.0  # noqa: E731
    curve = local_entropy_proxy(dist, ref, [0.5], num_draws=20, tol=0.5 + 1e-6)
    assert curve.mean[0] == 1.0
    curve = local_entropy_proxy(dist, ref, [0.5], num_draws=20, tol=0.5 - 1e-4)
    assert curve.mean[0] == 0.0


def test_network_error_fn_is_vmappable_and_leaves_the_net_unchanged():
    torch.manual_seed(0)
    net = make_model("mlp", (5,), 3, widths=(8,), seed=0)
    X, y = torch.randn(64, 5), torch.randint(3, (64,))
    before = params_of(net)
    fn = classification_error_fn(net, X, y)
    curve = local_energy(fn, before, [0.0, 0.5, 5.0], num_draws=16, chunk_size=5)
    loop = local_energy_loop(fn, before, [0.0, 0.5, 5.0], num_draws=16)
    np.testing.assert_allclose(curve.values, loop.values, atol=1e-6)
    assert np.all(curve.values[0] == 0)
    for k, p in net.named_parameters():
        assert torch.equal(p, before[k])


# --------------------------------------------------------------------------- Franz-Parisi local entropy
from flatminima.landscape.flatness import (
    augmented,
    cone_local_entropy,
    crossover_sigma,
    perturbed_error,
    single_constraint_volume,
    stabilities,
)


@pytest.mark.parametrize("cos_phi, theta", [(0.05, 0.3), (0.3, 0.3), (0.3, 1.0), (-0.2, 0.5), (0.8, 1.2)])
def test_cone_local_entropy_matches_the_closed_form_volume_of_one_constraint(cos_phi, theta):
    """One training point at angle phi from the reference: the surviving fraction of the cone at angle
    theta is P[u.e > -cot(theta)cot(phi)] with (1+u.e)/2 ~ Beta((n-2)/2, (n-2)/2) (exact, any n)."""
    n = 40
    g = torch.Generator().manual_seed(3)
    a = torch.randn(n, generator=g, dtype=torch.float64)
    a_hat = a / a.norm()
    e = torch.randn(n, generator=g, dtype=torch.float64)
    e = e - (e @ a_hat) * a_hat
    e = e / e.norm()
    x = cos_phi * a_hat + (1 - cos_phi ** 2) ** 0.5 * e
    y = torch.ones(1, dtype=torch.float64)
    if cos_phi < 0:  # make the reference classify the point correctly, as the test of a solution cone requires
        x, cos_phi = -x, -cos_phi
    est = cone_local_entropy(a, x[None, :], y, [theta], num_draws=20_000, seed=5)
    exact = single_constraint_volume(cos_phi, theta, n)
    se = np.sqrt(max(exact * (1 - exact), 1e-4) / 20_000)
    assert est.reference == 0.0
    assert abs(est.fraction[0] - exact) < 4 * se, (est.fraction[0], exact)


def test_cone_local_entropy_equals_a_brute_force_arc_count_in_three_dimensions():
    """n = 3: the configurations at angle theta form a circle; count the fraction of a 200,000-point
    uniform grid on it that satisfies every constraint (no random numbers) and compare."""
    g = torch.Generator().manual_seed(11)
    a = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    X = torch.randn(6, 3, generator=g, dtype=torch.float64)
    X[:, 2] = X[:, 2].abs() + 0.3  # every point correct for the reference: a solution cone around a
    y = torch.ones(6, dtype=torch.float64)
    theta = 0.9
    phi = torch.linspace(0, 2 * np.pi, 200_001, dtype=torch.float64)[:-1]
    circle = torch.stack([np.sin(theta) * phi.cos(), np.sin(theta) * phi.sin(),
                          torch.full_like(phi, np.cos(theta))], 1)
    brute = float(((circle @ X.T) > 0).all(1).double().mean())
    est = cone_local_entropy(a, X, y, [theta], num_draws=40_000, seed=2)
    se = np.sqrt(brute * (1 - brute) / 40_000)
    assert 0.05 < brute < 0.95  # a non-trivial cone
    assert abs(est.fraction[0] - brute) < 4 * se


def test_cone_local_entropy_is_scale_invariant_paired_and_finite_when_nothing_survives():
    g = torch.Generator().manual_seed(0)
    tr = sample_mixture(200, 30, Delta=0.5, generator=g, dtype=torch.float64)
    a = tr.v.clone()
    one = cone_local_entropy(a, tr.X, tr.y, [0.2, 1.4], num_draws=300, seed=4)
    big = cone_local_entropy(7.0 * a, tr.X, tr.y, [0.2, 1.4], num_draws=300, seed=4)
    assert np.array_equal(one.counts, big.counts)
    far = cone_local_entropy(a, tr.X, tr.y, [np.pi], num_draws=50, seed=4)  # the antipode: every point wrong
    assert far.counts[0] == 0 and np.isfinite(far.log_volume[0])


def test_augmented_vector_reproduces_the_preactivation_with_bias():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20, 9, generator=g, dtype=torch.float64)
    p = {"w": torch.randn(9, generator=g, dtype=torch.float64), "b": torch.tensor(0.7, dtype=torch.float64)}
    a, Xt = augmented(p, X)
    assert torch.allclose(Xt @ a, preactivation(p, X))


def test_perturbed_error_from_stabilities_matches_monte_carlo_local_energy_with_bias():
    g = torch.Generator().manual_seed(2)
    tr = sample_mixture(300, 40, Delta=0.5, rho=0.3, generator=g, dtype=torch.float64)
    p = {"w": tr.v.clone(), "b": torch.tensor(-0.3, dtype=torch.float64)}
    kappa = stabilities(p, tr.X, tr.y)
    sigmas = [0.2, 0.6, 1.5]
    curve = local_energy(lambda q: zero_one_error(q, tr.X, tr.y), p, sigmas, num_draws=3000, seed=9)
    exact = perturbed_error(kappa, sigmas) - perturbed_error(kappa, 0.0)[0]
    se = curve.values.std(axis=1, ddof=1) / np.sqrt(3000)
    assert np.all(np.abs(curve.mean - exact) < 4 * se + 1e-9), (curve.mean, exact)


def test_crossover_sigma_of_constructed_margin_distributions():
    """Absolute convention: a has every stability at m (E_a = H(m/sigma)), b has a fraction e of
    hopeless errors and the rest infinitely stable (E_b = e): the crossover is sigma* = m / H^{-1}(e)."""
    m, e = 0.8, 0.1
    a = np.full(1000, m)
    b = np.concatenate([np.full(100, -1e9), np.full(900, 1e9)])
    exact = m / stats.norm.isf(e)
    assert crossover_sigma(a, b, convention="absolute") == pytest.approx(exact, rel=1e-6)
    # relative, a genuine swap: a (margin m = 1.5) vs b (20% at kappa = 0.5, rest at infinity):
    # dE_a = H(1.5/s) < 0.2 H(0.5/s) at small s, > at large s; the root solves that equation
    a2 = np.full(500, 1.5)
    b2 = np.concatenate([np.full(100, 0.5), np.full(400, 1e9)])
    s = crossover_sigma(a2, b2, convention="relative")
    assert stats.norm.sf(1.5 / s) == pytest.approx(0.2 * stats.norm.sf(0.5 / s), rel=1e-6)
    assert stats.norm.sf(1.5 / (0.9 * s)) < 0.2 * stats.norm.sf(0.5 / (0.9 * s))
    # never flatter: NaN
    assert np.isnan(crossover_sigma(b2 * 0 + 5.0, a2, convention="absolute"))
