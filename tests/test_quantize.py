"""Quantisers, surrogate backward passes and BinaryDuo decoupling (flatminima.quantize)."""
import pytest
import torch

from flatminima.quantize import (PRECISIONS, SURROGATES, coupled_width, decouple, quant_act, quant_mlp, quantize,
                                 register_surrogate, tiny_vgg7)


@pytest.mark.parametrize("precision,levels", [("binary", [0.0, 1.0]), ("ternary", [0.0, 0.5, 1.0]),
                                              ("2bit", [0.0, 1 / 3, 2 / 3, 1.0])])
def test_quantizers_hit_exactly_their_levels(precision, levels):
    y = torch.linspace(-1.0, 2.0, 3001, dtype=torch.float64)
    q = quantize(y, PRECISIONS[precision])
    assert torch.allclose(torch.unique(q), torch.tensor(levels, dtype=torch.float64))
    # nearest level of clip(y, 0, 1), ties rounding up
    u = y.clamp(0, 1)
    lv = torch.tensor(levels, dtype=torch.float64)
    nearest = lv[(u[:, None] - lv).abs().argmin(1)]
    away_from_ties = ((u[:, None] - lv).abs().sort(1).values[:, :2].diff(1).abs() > 1e-9).squeeze(1)
    assert torch.equal(q[away_from_ties], nearest[away_from_ties])


def test_binary_unit_fires_at_one_half_and_full_precision_is_hardtanh():
    y = torch.tensor([-0.3, 0.49, 0.5, 0.51, 1.7])
    assert quantize(y, 1).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert torch.equal(quantize(y, None), y.clamp(0, 1))


@pytest.mark.parametrize("name", ["ste", "steep", "approxsign", "swishsign"])
def test_surrogate_backward_equals_derivative_of_its_soft_function(name):
    # points away from the kinks of the piecewise surrogates
    y = torch.linspace(-0.6, 1.6, 221, dtype=torch.float64)
    kinks = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    y = y[(y[:, None] - kinks).abs().min(1).values > 1e-3].requires_grad_(True)
    (g_custom,) = torch.autograd.grad(quant_act(y, 1, name).sum(), y)
    (g_soft,) = torch.autograd.grad(SURROGATES[name].soft(y).sum(), y)
    assert torch.allclose(g_custom, g_soft, atol=1e-10)
    # and the soft function's slope, by central differences
    h = 1e-6
    fd = (SURROGATES[name].soft(y.detach() + h) - SURROGATES[name].soft(y.detach() - h)) / (2 * h)
    assert torch.allclose(g_custom, fd, atol=1e-5)


def test_surrogates_approximate_the_step_and_integrate_to_one():
    y = torch.linspace(-2, 3, 200001, dtype=torch.float64)
    for s in SURROGATES.values():
        area = torch.trapezoid(s.derivative(y), y)
        assert abs(float(area) - 1.0) < 1e-3, s.name


def test_registering_a_surrogate_makes_it_usable():
    register_surrogate("test_linear", lambda y: y, lambda y: torch.full_like(y, 3.0), "constant slope")
    try:
        y = torch.tensor([0.2, 0.8], requires_grad=True)
        (g,) = torch.autograd.grad(quant_act(y, 1, "test_linear").sum(), y)
        assert g.tolist() == [3.0, 3.0]
    finally:
        SURROGATES.pop("test_linear")


def test_unknown_or_misused_surrogate_fails_with_a_message():
    with pytest.raises(ValueError, match="allowed"):
        quant_act(torch.zeros(2), 1, "nope")
    with pytest.raises(ValueError, match="binary activations only"):
        quant_act(torch.zeros(2), 2, "approxsign")


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_decoupled_binary_mlp_computes_the_coupled_ternary_function(mode):
    torch.manual_seed(0)
    net = quant_mlp([12, 9, 7, 4], levels=2, seed=3)
    X = torch.randn(4096, 12)
    net.train()
    for _ in range(3):
        net(X)  # non-trivial running statistics
    with torch.no_grad():
        for norm in net.norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.8)
    net.train(mode == "train")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    duo = decouple(net).train(mode == "train")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # input untouched
    assert duo.levels == 1 and duo.replicate == 2
    with torch.no_grad():
        assert (net(X) - duo(X)).abs().max() < 1e-6


def test_decoupling_rule_matches_the_authors_code():
    net = quant_mlp([5, 3, 2], levels=2, seed=0)
    duo = decouple(net)
    b = net.norms[0].bias.detach()
    assert torch.allclose(duo.norms[0].bias, torch.cat([b - 0.25, b + 0.25]))
    W = net.head[0].weight.detach()
    assert torch.allclose(duo.head[0].weight, torch.cat([W / 2, W / 2], 1))
    assert torch.equal(duo.ops[0].weight, net.ops[0].weight)


def test_decoupled_tiny_vgg7_is_exact_and_keeps_the_weight_budget():
    torch.manual_seed(0)
    net = tiny_vgg7(channels=(6, 6, 8, 8, 12), hidden=16, levels=2, seed=0).eval()
    X = torch.randn(3, 3, 32, 32)
    duo = decouple(net).eval()
    with torch.no_grad():
        assert (net(X) - duo(X)).abs().max() < 1e-5
    base = tiny_vgg7(levels=1)
    coupled = tiny_vgg7(channels=(45, 45, 90, 90, 336), levels=2)
    count = lambda m: sum(p.numel() for n, p in m.named_parameters() if p.ndim > 1)  # noqa: E731
    assert abs(count(decouple(coupled)) - count(base)) / count(base) < 0.01


def test_decouple_refuses_a_binary_net():
    with pytest.raises(ValueError, match="coupled ternary"):
        decouple(quant_mlp([4, 3, 2], levels=1))


def test_coupled_width_matches_the_research_notes():
    h = coupled_width(40, 256, 2, 10)
    assert h == 183  # 40 h + 2 h^2 + 20 h <= 40*256 + 256^2 + 2560 < at h + 1
    assert 60 * h + 2 * h * h <= 78336 < 60 * (h + 1) + 2 * (h + 1) ** 2
