"""Tests of flatminima.flatness: local energy and the local-entropy proxy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from flatminima.flatness import classification_error_fn, local_energy, local_energy_loop, local_entropy_proxy
from flatminima.hessian import params_of
from flatminima.mixture import preactivation, sample_mixture, zero_one_error
from flatminima.models import make_model


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
