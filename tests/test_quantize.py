"""Quantisers, surrogate backward passes and BinaryDuo decoupling (flatminima.quant.quantize)."""
import pytest
import torch

from flatminima.quant.quantize import (
    PRECISIONS,
    SURROGATES,
    coupled_width,
    decouple,
    quant_act,
    quant_mlp,
    quantize,
    register_surrogate,
    tiny_vgg7,
)


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
    # the registry also memoises shape variants other tests used (e.g. swishsign@1, whose tails reach
    # beyond a narrow window), so check the base surrogates on [-2, 3] and every entry on a wide window
    y = torch.linspace(-2, 3, 200001, dtype=torch.float64)
    for name in ("ste", "steep", "approxsign", "swishsign"):
        area = torch.trapezoid(SURROGATES[name].derivative(y), y)
        assert abs(float(area) - 1.0) < 1e-3, name
    wide = torch.linspace(-60, 60, 1200001, dtype=torch.float64)
    for s in list(SURROGATES.values()):
        area = torch.trapezoid(s.derivative(wide), wide)
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


# ----------------------------------------------------------------------------- exact thresholds
def _neighbours(t: torch.Tensor, k: int = 3) -> torch.Tensor:
    """``t`` and its ``k`` float neighbours on each side (same dtype)."""
    out, lo, hi = [t], t, t
    for _ in range(k):
        lo, hi = torch.nextafter(lo, torch.tensor(-1.0, dtype=t.dtype)), torch.nextafter(hi, torch.tensor(2.0, dtype=t.dtype))
        out += [lo, hi]
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_quantize_is_exact_on_and_around_its_thresholds(levels, dtype):
    taus = [torch.tensor((k - 0.5) / levels, dtype=dtype) for k in range(1, levels + 1)]
    for k, tau in enumerate(taus, start=1):
        y = _neighbours(tau)
        q = quantize(y, levels)
        # independent rule: count the thresholds at or below y, compared in the input's dtype
        count = sum((y >= t).to(dtype) for t in taus)
        assert torch.equal(q, count / levels)
        level = lambda j: torch.tensor(j, dtype=dtype) / levels  # noqa: E731 - the level value in this dtype
        assert torch.equal(quantize(tau, levels), level(k))  # on the threshold: fires
        below = torch.nextafter(tau, torch.tensor(-1.0, dtype=dtype))
        assert torch.equal(quantize(below, levels), level(k - 1))


def test_dyadic_thresholds_are_exact_against_rational_arithmetic():
    # binary and ternary thresholds (1/4, 1/2, 3/4) are floats: the rule is exact for every float32;
    # a float32 times 2n is exact in float64, so 2n*u >= 2k - 1 there is the exact comparison
    y = torch.cat([_neighbours(torch.tensor(t), 40) for t in (0.25, 0.5, 0.75)]
                  + [torch.rand(20000, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2])
    for n in (1, 2):
        u = y.double().clamp(0, 1)
        exact = sum((2 * n * u >= 2 * k - 1).double() for k in range(1, n + 1)) / n
        assert torch.equal(quantize(y, n).double(), exact)


def test_the_float_rounding_formula_fires_one_ulp_early_but_quantize_does_not():
    below = torch.nextafter(torch.tensor(0.25), torch.tensor(0.0))  # float32, just under the ternary threshold
    assert float(torch.floor(below * 2 + 0.5)) == 1.0  # the code's floor(u n + 1/2) already fires here
    assert float(quantize(below, 2)) == 0.0


def test_ternary_equals_the_mean_of_the_two_decoupled_binary_steps_for_every_float():
    y = torch.cat([_neighbours(torch.tensor(t), 40) for t in (0.25, 0.75)]
                  + [torch.linspace(-0.5, 1.5, 100001)])
    pair = ((y >= 0.75).float() + (y >= 0.25).float()) / 2
    assert torch.equal(quantize(y, 2), pair)


def test_quantize_refuses_levels_below_one():
    with pytest.raises(ValueError, match="levels"):
        quantize(torch.zeros(2), 0)


# ----------------------------------------------------------------------------- seeded builds
def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_building_seeded_models_leaves_the_global_rng_alone_and_is_deterministic():
    from flatminima.nn.models import make_model
    from flatminima.quant.quantize import _quant_mlp, _tiny_vgg7

    builders = {
        "quant_mlp": (lambda: quant_mlp([7, 5, 4, 3], levels=1, seed=11),
                      lambda: _quant_mlp([7, 5, 4, 3], levels=1, surrogate="ste", replicate=1, bn_weight=1.0, bn_bias=0.0)),
        "tiny_vgg7": (lambda: tiny_vgg7(channels=(2, 2, 3, 3, 4), hidden=5, seed=11),
                      lambda: _tiny_vgg7(3, 10, (2, 2, 3, 3, 4), 5, 1, "ste", 1)),
        "mlp": (lambda: make_model("mlp", (6,), 3, widths=(5, 4), seed=11), None),
        "cnn": (lambda: make_model("cnn", (1, 8, 8), 3, widths=(2,), hidden=4, seed=11), None),
    }
    for name, (build, raw) in builders.items():
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a = build()
        assert torch.equal(torch.get_rng_state(), state), f"{name} changed the global RNG"
        assert _same(a, build()), name
        if raw is not None:  # same numbers as the old global-seed build (PyTorch's default init)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(11)
                assert _same(a, raw()), name


# ----------------------------------------------------------------------------- surrogate families
@pytest.mark.parametrize("family,value", [("steep", 1.5), ("steep", 4.0), ("approxsign", 0.5), ("approxsign", 2.0),
                                          ("swishsign", 1.0), ("swishsign", 10.0)])
def test_surrogate_variants_are_derivatives_of_their_soft_functions_and_integrate_to_one(family, value):
    from flatminima.quant.quantize import surrogate_variant

    name = surrogate_variant(family, value)
    assert name == f"{family}@{value:g}" and name in SURROGATES
    s = SURROGATES[name]
    y = torch.linspace(-30, 30, 600001, dtype=torch.float64)  # wide: SwishSign's tails at small beta
    assert abs(float(torch.trapezoid(s.derivative(y), y)) - 1.0) < 1e-3
    h = 1e-6
    yy = torch.linspace(-0.6, 1.6, 97, dtype=torch.float64)
    fd = (s.soft(yy + h) - s.soft(yy - h)) / (2 * h)
    kink = torch.zeros_like(yy, dtype=torch.bool)
    for c in {"steep": [0.5 - 0.5 / value, 0.5 + 0.5 / value], "approxsign": [0.5 - value / 2, 0.5, 0.5 + value / 2],
              "swishsign": []}[family]:
        kink |= (yy - c).abs() < 1e-3
    assert torch.allclose(s.derivative(yy)[~kink], fd[~kink], atol=1e-5)
    # the name works wherever a surrogate name does
    yg = yy.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(quant_act(yg, 1, name).sum(), yg)
    assert torch.allclose(g, s.derivative(yy))


def test_default_family_members_equal_the_registered_defaults():
    from flatminima.quant.quantize import APPROXSIGN_WIDTH, STEEP_SLOPE, SWISH_BETA, surrogate_variant

    y = torch.linspace(-0.5, 1.5, 201, dtype=torch.float64)
    for fam, v in (("steep", STEEP_SLOPE), ("approxsign", APPROXSIGN_WIDTH), ("swishsign", SWISH_BETA)):
        assert torch.equal(SURROGATES[surrogate_variant(fam, v)].derivative(y), SURROGATES[fam].derivative(y))
    # ApproxSign at width 1 is Bi-Real Net's 2(1 - |2y - 1|)_+
    assert torch.allclose(SURROGATES["approxsign"].derivative(y), 2 * (1 - (2 * y - 1).abs()).clamp_min(0))


def test_bad_surrogate_variants_fail_with_a_message():
    from flatminima.quant.quantize import surrogate_variant

    with pytest.raises(ValueError, match="allowed"):
        surrogate_variant("nope", 1.0)
    with pytest.raises(ValueError, match="> 0"):
        surrogate_variant("swishsign", -1.0)
    with pytest.raises(ValueError, match="slope of steep"):
        surrogate_variant("steep", 0.5)
    with pytest.raises(ValueError, match="bad surrogate name"):
        quant_act(torch.zeros(2), 1, "swishsign@abc")
