"""Reference gradients of the smoothed loss and per-layer cosines (flatminima.quant.mismatch)."""
import pytest
import torch

from flatminima.quant.mismatch import (
    coordinate_discrete_gradient,
    coordinate_discrete_gradient_loop,
    cosine,
    es_gradient,
    layer_cosines,
    sample_coordinates,
    surrogate_gradient,
)
from flatminima.quant.quantize import quant_mlp


def _net(levels, widths=(6, 5, 5, 2), n=2000, seed=0):
    torch.manual_seed(seed)
    net = quant_mlp(list(widths), levels=levels, bn_weight=0.25, bn_bias=0.5, seed=seed).double()
    X = torch.randn(n, widths[0], dtype=torch.float64)
    y = torch.randn(n, widths[-1], dtype=torch.float64)
    net.train()
    net(X)
    return net.eval(), X, y


@pytest.mark.parametrize("levels", [1, 2, 3, None])
def test_batched_cdg_equals_the_naive_coordinate_loop(levels):
    net, X, y = _net(levels)
    coords = sample_coordinates(net, 10, seed=1)
    fast = coordinate_discrete_gradient(net, X, y, coords, eps=0.1, max_rows=5000)  # several chunks
    slow = coordinate_discrete_gradient_loop(net, X, y, coords, eps=0.1)
    for a, b in zip(fast.grad, slow):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_cdg_with_cross_entropy_equals_the_naive_loop():
    net, X, _ = _net(1, widths=(6, 5, 4))
    y = torch.randint(0, 4, (len(X),))
    coords = sample_coordinates(net, 8, seed=2)
    fast = coordinate_discrete_gradient(net, X, y, coords, eps=0.2, loss="ce")
    slow = coordinate_discrete_gradient_loop(net, X, y, coords, eps=0.2, loss="ce")
    for a, b in zip(fast.grad, slow):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_cdg_agrees_with_autograd_on_a_smooth_net():
    net, X, y = _net(None)
    coords = sample_coordinates(net, 100, seed=1)
    ref = coordinate_discrete_gradient(net, X, y, coords, eps=1e-4)
    for c in layer_cosines(surrogate_gradient(net, X, y, "ste"), ref):
        assert c > 0.999


def test_gaussian_smoothing_agrees_with_autograd_on_a_smooth_net():
    net, X, y = _net(None, n=200)
    es = es_gradient(net, X, y, num_directions=3000, sigma=1e-3, seed=0)
    for c in layer_cosines(surrogate_gradient(net, X, y, "ste"), es):
        assert c > 0.99


def test_split_half_reliability_separates_signal_from_noise():
    net, X, y = _net(1, n=20000)
    coords = sample_coordinates(net, 30, seed=0)
    assert min(coordinate_discrete_gradient(net, X, y, coords, eps=0.1).reliability()) > 0.5
    # targets independent of everything and few samples: the reference is (nearly) noise
    net, X, y = _net(1, n=40)
    rel = coordinate_discrete_gradient(net, X, y * 0 + torch.randn_like(y), coords, eps=0.01).reliability()
    assert min(rel) < 0.9


def test_estimators_leave_the_net_unchanged():
    net, X, y = _net(1)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    coords = sample_coordinates(net, 5)
    coordinate_discrete_gradient(net, X, y, coords)
    es_gradient(net, X[:100], y[:100], num_directions=4)
    surrogate_gradient(net, X, y, "approxsign")
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_surrogate_choice_changes_only_the_hidden_layer_gradients():
    net, X, y = _net(1)
    g_ste = surrogate_gradient(net, X, y, "ste")
    g_sw = surrogate_gradient(net, X, y, "swishsign")
    assert torch.allclose(g_ste[-1], g_sw[-1])  # the output layer's gradient crosses no quantiser
    assert cosine(g_ste[0], g_sw[0]) < 0.9999


def test_cosine_of_parallel_and_orthogonal_vectors():
    a = torch.tensor([1.0, 2.0, 0.0])
    assert cosine(a, 3 * a) == pytest.approx(1.0)
    assert cosine(a, torch.tensor([0.0, 0.0, 5.0])) == pytest.approx(0.0)
    assert cosine(a, torch.zeros(3)) == 0.0


def test_cdg_refuses_bad_coordinates_naming_the_layer_and_index():
    net, X, y = _net(1, n=64)
    coords = sample_coordinates(net, 4, seed=0)
    n0 = net.ops[0].weight.numel()
    bad = [coords[0].clone(), *coords[1:]]
    bad[0][1] = n0  # one past the end of layer 1
    for fn in (coordinate_discrete_gradient, coordinate_discrete_gradient_loop):
        with pytest.raises(ValueError, match=rf"ops\.0\.weight.*index {n0}.*out of range"):
            fn(net, X, y, bad)
        with pytest.raises(ValueError, match="index -1"):
            fn(net, X, y, [torch.tensor([-1]), *coords[1:]])
        with pytest.raises(ValueError, match="one index tensor per weight matrix"):
            fn(net, X, y, coords[:-1])
        with pytest.raises(ValueError, match="integer flat indices"):
            fn(net, X, y, [coords[0].float(), *coords[1:]])
        with pytest.raises(ValueError, match="repeats"):
            fn(net, X, y, [torch.tensor([0, 0]), *coords[1:]])
    with pytest.raises(ValueError, match="num_coords"):
        sample_coordinates(net, 0)
