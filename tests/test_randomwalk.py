"""The random-walk null against its closed form (Antognini & Sohl-Dickstein 2018) and Monte-Carlo."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from flatminima.landscape.randomwalk import (
    expected_walk_variances,
    explained_variance_limit,
    noise_random_walk,
    walk_gram_eigenvalues,
)
from flatminima.landscape.trajectory import trajectory_pca


@pytest.mark.parametrize("n", [2, 7, 60])
def test_gram_eigenvalues_match_a_dense_eigendecomposition(n):
    M = np.minimum.outer(np.arange(1, n + 1), np.arange(1, n + 1)).astype(float)
    C = np.eye(n) - 1.0 / n
    dense = np.sort(np.linalg.eigvalsh(C @ M @ C))[::-1][:n - 1]
    np.testing.assert_allclose(walk_gram_eigenvalues(n), dense, rtol=1e-10)
    assert walk_gram_eigenvalues(n).sum() == pytest.approx((n * n - 1) / 6)


def test_explained_variance_tends_to_six_over_pi_squared_k_squared():
    mu = walk_gram_eigenvalues(4000)
    ratio = mu / mu.sum()
    np.testing.assert_allclose(ratio[:5], explained_variance_limit(np.arange(1, 6)), rtol=1e-3)


def test_pca_of_an_isotropic_high_dimensional_walk_matches_the_expected_spectrum():
    n, d = 60, 20_000
    gen = torch.Generator().manual_seed(0)
    walk = torch.cumsum(0.1 * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=0)
    pca = trajectory_pca(walk, 10)
    expected = expected_walk_variances(n, 0.01 * d)[:10]
    np.testing.assert_allclose(pca.variances.numpy(), expected, rtol=0.08)
    # the leading directions are the cosines of the closed form
    theta = (walk - walk.mean(0)) @ pca.components[0]
    t = np.arange(1, n + 1)
    cos = np.cos(np.pi * (t - 0.5) / n)
    assert abs(np.corrcoef(theta.numpy(), cos)[0, 1]) > 0.95


def test_noise_walk_increments_have_the_measured_covariance():
    rng = np.random.default_rng(1)
    G = torch.from_numpy(rng.standard_normal((8, 3)) @ np.array([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.1]]))
    walk = noise_random_walk(G, 200_000, lr=0.5, stride=3, seed=2)
    steps = torch.diff(walk, dim=0).numpy()
    expected = 0.25 * 3 * np.cov(G.numpy().T, ddof=1)
    np.testing.assert_allclose(np.cov(steps.T), expected, atol=0.02 * np.abs(expected).max())


def test_noise_walk_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="2 minibatch"):
        noise_random_walk(torch.ones(1, 3), 10, lr=0.1)
    with pytest.raises(ValueError, match="snapshots"):
        walk_gram_eigenvalues(1)
