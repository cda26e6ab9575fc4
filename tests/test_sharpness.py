"""Keskar eps-sharpness, the Rangamani invariant measure, Dinh rescaling and 1-D plots."""
from __future__ import annotations

import pytest
import torch

from flatminima.core.device import configure_threads
from flatminima.curvature.hessian import dense_hessian, params_of, top_eigenvalue
from flatminima.curvature.sharpness import (
    epsilon_sharpness,
    filter_normalized_direction,
    homogeneous_layers,
    interpolate_1d,
    invariant_sharpness,
    layer_scaling,
    rescale_layers,
)
from flatminima.nn.models import make_model

configure_threads(1)  # the project's CPU policy: one torch thread per process


@pytest.fixture()
def tiny():
    """A 5-6-4-3 ReLU MLP in float64 with a few Adam steps, on 80 random points."""
    torch.manual_seed(0)
    net = make_model("mlp", (5,), 3, widths=(6, 4), seed=0).double()
    X = torch.randn(80, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (80,))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net, X, y


def test_invariant_sharpness_equals_dense_top_eigenvalue_of_scaled_hessian(tiny):
    net, X, y = tiny
    p = params_of(net)
    H = dense_hessian(net, X, y, p)
    scale = layer_scaling(p)
    d = torch.cat([torch.full((v.numel(),), scale[k] ** 0.5, dtype=torch.float64) for k, v in p.items()])
    want = torch.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1].item()
    assert invariant_sharpness(net, X, y, p, tol=1e-8).top == pytest.approx(want, rel=1e-4)


def test_rescaling_leaves_function_and_invariant_measure_unchanged_but_moves_lambda_max(tiny):
    net, X, y = tiny
    p = params_of(net)
    layers = homogeneous_layers(net)
    assert layers == ["layers.0", "layers.1", "layers.2"]
    base_out = torch.func.functional_call(net, p, (X,))
    lam = top_eigenvalue(net, X, y, p, tol=1e-8).top
    lam_r = invariant_sharpness(net, X, y, p, tol=1e-10).top
    for alphas in ([5.0, 0.2], [0.1, 4.0, 2.5]):
        q = rescale_layers(p, layers, alphas)
        out = torch.func.functional_call(net, q, (X,))
        assert torch.allclose(out, base_out, rtol=1e-10, atol=1e-12)
        assert invariant_sharpness(net, X, y, q, tol=1e-10).top == pytest.approx(lam_r, rel=1e-6)
        assert top_eigenvalue(net, X, y, q, tol=1e-8).top / lam > 3 or lam / top_eigenvalue(net, X, y, q).top > 3
    assert all(torch.equal(p[k], v) for k, v in params_of(net).items())  # inputs untouched


def test_rescale_layers_rejects_non_unit_products_and_negative_factors(tiny):
    net, _, _ = tiny
    p, layers = params_of(net), homogeneous_layers(net)
    with pytest.raises(ValueError, match="product of alphas"):
        rescale_layers(p, layers, [2.0, 2.0])
    with pytest.raises(ValueError, match="> 0"):
        rescale_layers(p, layers, [-1.0, -1.0])


def test_epsilon_sharpness_of_a_convex_loss_matches_brute_force_over_box_corners():
    """A linear softmax model has a convex loss, so the max over Keskar's box sits at a corner:
    L-BFGS-B must match the best of 2000 random corners (a brute-force answer)."""
    torch.manual_seed(3)
    net = torch.nn.Linear(3, 2).double()
    X = torch.randn(30, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    p = params_of(net)
    eps = 1e-2
    phi = epsilon_sharpness(net, X, y, p, eps=eps, max_iter=50)
    x = torch.cat([v.reshape(-1) for v in p.values()])
    half = eps * (x.abs() + 1)
    f0 = torch.nn.functional.cross_entropy(net(X), y).item()

    def f(flat):
        W, b = flat[:6].view(2, 3), flat[6:]
        return torch.nn.functional.cross_entropy(X @ W.T + b, y).item()

    corners = torch.randint(0, 2, (2000, x.numel()), generator=torch.Generator().manual_seed(0)) * 2 - 1
    best = max(f(x + c * half) for c in corners.double())
    brute = 100 * (best - f0) / (1 + f0)
    assert phi >= brute - 1e-9
    assert phi == pytest.approx(brute, rel=1e-6)


def test_epsilon_sharpness_is_nonnegative_grows_with_eps_and_works_in_a_subspace(tiny):
    net, X, y = tiny
    small = epsilon_sharpness(net, X, y, eps=1e-3)
    large = epsilon_sharpness(net, X, y, eps=1e-2)
    assert 0 <= small < large
    sub = epsilon_sharpness(net, X, y, eps=1e-2, subspace_dim=5, seed=1)
    assert 0 <= sub <= large * 1.5
    with pytest.raises(ValueError, match="subspace_dim"):
        epsilon_sharpness(net, X, y, subspace_dim=10**6)


def test_interpolation_endpoints_equal_the_two_networks(tiny):
    net, X, y = tiny
    a = params_of(net)
    b = {k: v + 0.1 for k, v in a.items()}
    res = interpolate_1d(net, a, b, [0.0, 1.0], {"train": (X, y)})
    la = torch.nn.functional.cross_entropy(torch.func.functional_call(net, a, (X,)), y).item()
    lb = torch.nn.functional.cross_entropy(torch.func.functional_call(net, b, (X,)), y).item()
    assert res["train_loss"] == pytest.approx([la, lb], rel=1e-12)
    assert res["alpha"] == [0.0, 1.0] and len(res["train_acc"]) == 2


def test_filter_normalized_direction_matches_each_rows_norm(tiny):
    net, _, _ = tiny
    p = params_of(net)
    d = filter_normalized_direction(p, seed=0)
    for k, v in p.items():
        if v.dim() == 1:
            assert torch.count_nonzero(d[k]) == 0
        else:
            assert torch.allclose(d[k].norm(dim=1), v.norm(dim=1), rtol=1e-10)


# ----------------------------------------------------------------------------- per-neuron rescalings
@pytest.mark.parametrize("seed", range(3))
def test_per_neuron_rescaling_keeps_function_and_elementwise_measure_but_moves_lambda_max_and_lambda_R(tiny, seed):
    from flatminima.curvature.sharpness import elementwise_sharpness, random_neuron_factors, rescale_neurons

    net, X, y = tiny
    p = params_of(net)
    factors = random_neuron_factors(net, spread=5.0, seed=seed)
    assert [len(c) for c in factors] == [6, 4] and all(bool((c > 0).all()) for c in factors)
    q = rescale_neurons(net, p, factors)
    out0, out1 = (torch.func.functional_call(net, r, (X,)) for r in (p, q))
    assert torch.allclose(out0, out1, rtol=1e-10, atol=1e-12)
    # the element-wise measure, against a dense eigendecomposition, is unchanged
    H0, H1 = dense_hessian(net, X, y, p), dense_hessian(net, X, y, q)
    d0 = torch.cat([v.reshape(-1).abs() for v in p.values()])
    d1 = torch.cat([v.reshape(-1).abs() for v in q.values()])
    n0 = torch.linalg.eigvalsh(d0[:, None] * H0 * d0[None, :])[-1].item()
    n1 = torch.linalg.eigvalsh(d1[:, None] * H1 * d1[None, :])[-1].item()
    assert n1 == pytest.approx(n0, rel=1e-9)
    assert elementwise_sharpness(net, X, y, q, tol=1e-10).top == pytest.approx(n0, rel=1e-6)
    # lambda_max and Rangamani's (layer-wise) lambda_R move
    lam0, lam1 = (torch.linalg.eigvalsh(H)[-1].item() for H in (H0, H1))
    assert max(lam1 / lam0, lam0 / lam1) > 1.2
    r0, r1 = (invariant_sharpness(net, X, y, r, tol=1e-10).top for r in (p, q))
    assert abs(r1 / r0 - 1) > 1e-2


def test_elementwise_measure_is_also_invariant_to_layerwise_rescaling(tiny):
    from flatminima.curvature.sharpness import elementwise_sharpness

    net, X, y = tiny
    p = params_of(net)
    q = rescale_layers(p, net, [4.0, 0.5, 0.5])
    assert elementwise_sharpness(net, X, y, q, tol=1e-10).top == pytest.approx(
        elementwise_sharpness(net, X, y, p, tol=1e-10).top, rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
def test_rescaling_refuses_networks_that_are_not_positively_homogeneous(activation):
    from flatminima.curvature.sharpness import random_neuron_factors, rescale_neurons

    net = make_model("mlp", (5,), 3, widths=(6, 4), activation=activation, seed=0)
    p = params_of(net)
    with pytest.raises(ValueError, match="positively homogeneous"):
        rescale_layers(p, net, [2.0, 0.5])
    with pytest.raises(ValueError, match="positively homogeneous"):
        homogeneous_layers(net)
    with pytest.raises(ValueError, match="positively homogeneous"):
        rescale_neurons(net, p, random_neuron_factors(make_model("mlp", (5,), 3, widths=(6, 4)), spread=2.0, seed=0))
