"""Tests of flatminima.landscape.trajectory against closed forms and independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatminima.landscape.trajectory import (
    WeightRecorder,
    batched_param_loss,
    fit_power_law,
    line_loss,
    loss_profiles,
    make_line_loss,
    mlp_line_loss,
    naive_param_loss,
    profile_widths,
    select_parameters,
    trajectory_pca,
)
from flatminima.nn.flat import flatten
from flatminima.nn.models import MLP
from flatminima.nn.train import train


def _orthonormal(k: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return Q[:, :k].T.contiguous()


def _quadratic(h: torch.Tensor, w_star: torch.Tensor, L_min: float):
    def loss_of(W: torch.Tensor) -> torch.Tensor:
        D = W - w_star
        return L_min + 0.5 * (D * D * h).sum(-1)
    return loss_of


def test_widths_at_a_minimum_match_closed_form_of_quadratic():
    d, k = 12, 8
    g = torch.Generator().manual_seed(0)
    h = torch.rand(d, generator=g, dtype=torch.float64) * 50 + 0.1
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    L0 = 0.01
    P = _orthonormal(k, d, 1)
    res = profile_widths(line_loss(_quadratic(h, w_star, L0), w_star, P), k, math.e * L0, num_bisect=30)
    curvature = (P * P * h).sum(1)  # p^T H p
    expected = 2 * torch.sqrt(2 * (math.e - 1) * L0 / curvature)
    torch.testing.assert_close(res.widths, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(res.theta_right, -res.theta_left, rtol=1e-6, atol=0)


def test_widths_away_from_the_minimum_match_roots_of_the_profile():
    d, k = 10, 6
    g = torch.Generator().manual_seed(2)
    h = torch.rand(d, generator=g, dtype=torch.float64) * 5 + 0.5
    w_star = torch.zeros(d, dtype=torch.float64)
    w0 = 0.05 * torch.randn(d, generator=g, dtype=torch.float64)
    loss_of = _quadratic(h, w_star, 0.02)
    P = _orthonormal(k, d, 3)
    Lw0 = float(loss_of(w0[None])[0])
    level = 3.0 * Lw0
    res = profile_widths(line_loss(loss_of, w0, P), k, level, num_bisect=30)
    a = (P * P * h).sum(1)  # L(w0 + t p) = Lw0 + b t + a t^2 / 2
    b = P @ (h * (w0 - w_star))
    c = level - Lw0
    disc = torch.sqrt(b * b + 2 * a * c)
    torch.testing.assert_close(res.theta_right, (-b + disc) / a, rtol=1e-6, atol=0)
    torch.testing.assert_close(res.theta_left, (-b - disc) / a, rtol=1e-6, atol=0)


def test_width_is_nan_when_the_level_is_never_reached():
    flat = lambda W: torch.zeros(len(W), dtype=W.dtype)  # noqa: E731
    along = line_loss(flat, torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    res = profile_widths(along, 3, 1.0, max_doublings=5)
    assert torch.isnan(res.widths).all()


def _tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(seed)
    return MLP([5, 7, 6, 3]), X, y


@pytest.mark.parametrize("which", ["hidden", "all"])
def test_batched_loss_equals_a_loop_over_model_copies(which):
    net, X, y = _tiny_problem()
    names = select_parameters(net, which)
    w0 = flatten(dict(net.named_parameters()), names)[0]
    W = w0 + 0.3 * torch.randn(9, w0.numel(), generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batched = batched_param_loss(net, X, y, names, chunk_size=4, data_chunk=20)(W)
    naive = naive_param_loss(net, X, y, names)(W)
    torch.testing.assert_close(batched, naive, rtol=1e-5, atol=1e-6)
    for k, v in net.state_dict().items():  # the model passed in is left unchanged
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("names", [
    ["layers.1.weight"],  # the hidden-to-hidden matrix
    ["layers.2.weight", "layers.2.bias"],  # the output layer
    ["layers.0.bias", "layers.0.weight"],  # the input layer, bias first
])
def test_fast_mlp_line_loss_equals_full_forward_passes(names):
    net, X, y = _tiny_problem(3)
    w0 = flatten(dict(net.named_parameters()), names)[0]
    P = _orthonormal(5, w0.numel(), 7).float()
    idx = torch.tensor([0, 4, 2, 2, 1, 3, 0])
    theta = torch.tensor([0.0, 0.5, -1.5, 3.0, -0.2, 1.0, -2.5])
    fast = mlp_line_loss(net, X, y, names, P, chunk_size=3)(idx, theta)
    naive = naive_param_loss(net, X, y, names)(w0 + theta[:, None] * P[idx])
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-6)
    assert make_line_loss(net, X, y, names, P).__qualname__.startswith("mlp_line_loss")


def test_line_loss_falls_back_to_vmap_for_parameters_of_several_layers():
    net, X, y = _tiny_problem()
    names = ["layers.0.weight", "layers.1.weight"]
    with pytest.raises(ValueError, match="one layer"):
        mlp_line_loss(net, X, y, names, torch.zeros(1, 65))
    w0 = flatten(dict(net.named_parameters()), names)[0]
    P = _orthonormal(2, w0.numel(), 8).float()
    along = make_line_loss(net, X, y, names, P)
    torch.testing.assert_close(along(torch.tensor([1]), torch.tensor([0.7])),
                               naive_param_loss(net, X, y, names)((w0 + 0.7 * P[1])[None]), rtol=1e-5, atol=1e-6)


def test_loss_profiles_evaluate_every_direction_and_step():
    net, X, y = _tiny_problem(1)
    names = select_parameters(net, "hidden")
    w0 = flatten(dict(net.named_parameters()), names)[0]
    P = _orthonormal(3, w0.numel(), 4).float()
    along = make_line_loss(net, X, y, names, P)
    prof = loss_profiles(along, [0, 2], torch.tensor([-0.5, 0.0, 1.0]))
    assert prof.shape == (2, 3)
    assert float(prof[1, 2]) == pytest.approx(float(naive_param_loss(net, X, y, names)((w0 + P[2])[None])[0]),
                                              rel=1e-5)
    assert float(prof[0, 1]) == pytest.approx(float(prof[1, 1]))


def test_pca_recovers_the_variances_and_axes_of_a_gaussian_cloud():
    d, n = 6, 40_000
    var = torch.tensor([9.0, 4.0, 1.0, 0.25, 0.06, 0.01], dtype=torch.float64)
    Q = _orthonormal(d, d, 5)  # rows: the generating axes
    g = torch.Generator().manual_seed(6)
    Z = torch.randn(n, d, generator=g, dtype=torch.float64) * var.sqrt()
    cloud = (Z @ Q + 3.0).float()
    pca = trajectory_pca(cloud, 4, method="svd")
    torch.testing.assert_close(pca.variances, var[:4], rtol=0.05, atol=0)
    cos = (pca.components * Q[:4]).sum(1).abs()
    assert (cos > 0.99).all()
    assert pca.total_variance == pytest.approx(float(var.sum()), rel=0.05)
    low = trajectory_pca(cloud, 4, method="lowrank", seed=0)
    torch.testing.assert_close(low.variances, pca.variances, rtol=1e-3, atol=0)


def test_pca_refuses_more_components_than_recorded_steps():
    with pytest.raises(ValueError, match="num_components"):
        trajectory_pca(torch.randn(10, 50), 20)


@pytest.mark.parametrize("psi", [4.0, -2.0])
def test_power_law_fit_recovers_a_known_exponent(psi):
    rng = np.random.default_rng(0)
    F = np.geomspace(0.5, 20, 120)
    sigma2 = 3.0 * F ** (-psi) * np.exp(0.1 * rng.standard_normal(F.size))
    F[5] = np.nan  # a direction without a crossing is dropped and counted
    fit = fit_power_law(F, sigma2, components=(2, 100), seed=0)
    assert fit.n == 98 and fit.n_dropped == 1
    assert fit.psi_ci.low <= psi <= fit.psi_ci.high
    assert abs(fit.psi - psi) < 0.1
    assert fit.psi_ci.high - fit.psi_ci.low < 0.2
    assert np.sign(fit.spearman_rho) == -np.sign(psi) and abs(fit.spearman_rho) > 0.95
    assert fit.slope == -fit.psi


def test_weight_recorder_stores_the_weights_after_every_recorded_step():
    net, X, y = _tiny_problem(2)
    names = select_parameters(net, "hidden")
    steps = 2 * (len(X) // 16)
    rec = WeightRecorder(net, names, steps, record_every=1)
    rec2 = WeightRecorder(net, names, steps, record_every=2)
    seen = []
    snap = lambda step, n, loss: seen.append(n.layers[1].weight.detach().reshape(-1).clone())  # noqa: E731
    train(net, X, y, lr=0.5, batch_size=16, num_epochs=2, on_step=[rec, rec2, snap], eval_every_epoch=False)
    assert rec.trajectory.shape == (steps, 7 * 6) and rec2.trajectory.shape == (steps // 2, 42)
    torch.testing.assert_close(rec.trajectory, torch.stack(seen), rtol=0, atol=0)
    torch.testing.assert_close(rec2.trajectory, torch.stack(seen)[1::2], rtol=0, atol=0)
    torch.testing.assert_close(rec.trajectory[-1], net.layers[1].weight.detach().reshape(-1), rtol=0, atol=0)
