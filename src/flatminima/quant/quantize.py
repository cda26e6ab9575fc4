r"""Quantised activations with surrogate backward passes, and BinaryDuo decoupling.

Kim, Kim, Kim & Kim, "BinaryDuo: Reducing Gradient Mismatch in Binary Activation Network by
Coupling Binary Activations", ICLR 2020 (arXiv 2002.06517). The conventions follow the authors'
public Torch7 code (``newLayers/QuantizedNeurons.lua``, ``models/init.lua``):

* a hidden unit's pre-activation goes through batch normalisation, giving :math:`y`, and then the
  quantiser with :math:`n` steps (``levels``)

  .. math:: Q_n(y) = \frac1n \#\{k \in 1..n : \mathrm{clip}(y, 0, 1) \ge \tau_k\},\qquad
            \tau_k = \frac{k - 1/2}{n},

  which is the code's :math:`\lfloor n\,\mathrm{clip}(y, 0, 1) + \tfrac12 \rfloor / n` (ties up) in exact
  arithmetic. ``levels = 1`` binary :math:`\{0, 1\}` (fires at :math:`y \ge \frac12`), ``2`` ternary
  :math:`\{0, \frac12, 1\}`, ``3`` 2-bit :math:`\{0, \frac13, \frac23, 1\}`, ``None`` full precision
  :math:`\mathrm{clip}(y, 0, 1)` (the HardTanh(0, 1) of the code; its autograd gradient is exact).
  :func:`quantize` compares with the thresholds :math:`\tau_k` themselves (rounded once to the
  tensor's dtype), so a value exactly on a threshold fires and its predecessor does not; the
  ``floor(u n + 1/2)`` formula in float32 fires one ulp early at some thresholds.
* the backward pass of a quantised unit multiplies the incoming gradient by a *surrogate*
  derivative :math:`F'_s(y)`; :data:`SURROGATES` is the registry (add one with
  :func:`register_surrogate`).
* :func:`decouple` turns a trained ternary net into the binary net of equal cost that computes
  exactly the same function (``model_decouple`` of the code).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from flatminima.nn.models import build_seeded

PRECISIONS: dict[str, int | None] = {"full": None, "binary": 1, "ternary": 2, "2bit": 3}
"""Activation precision name -> number of quantisation steps ``levels`` (None: full precision)."""


def quantize(y: torch.Tensor, levels: int | None) -> torch.Tensor:
    r"""The forward quantiser :math:`Q_n(y) = \#\{k : \mathrm{clip}(y,0,1) \ge \tau_k\}/n`, :math:`\tau_k = (k - 1/2)/n`.

    Exact on the thresholds: ``floor(u n + 1/2)`` gives the step count up to one, and the count is
    then corrected by comparing ``u`` with :math:`\tau_q` and :math:`\tau_{q+1}` computed as
    ``(q - 1/2) / n`` in ``y``'s dtype (one correctly rounded division, so :math:`\tau_k` is the
    nearest float to the true threshold). ``levels=None`` returns :math:`\mathrm{clip}(y, 0, 1)`.

    Parameters
    ----------
    y : torch.Tensor
        Pre-activations.
    levels : int or None
        Number of steps :math:`n` (1: binary, 2: ternary); ``None`` for full precision.

    Returns
    -------
    torch.Tensor
        :math:`Q_n(y)`, same shape and dtype as ``y``.
    """
    u = torch.clamp(y, 0.0, 1.0)
    if levels is None:
        return u
    if levels < 1:
        raise ValueError(f"levels must be None (full precision) or an integer >= 1, got {levels}")
    q = torch.floor(u * levels + 0.5).clamp(0, levels)
    q = q - (u < (q - 0.5) / levels).to(u.dtype)  # the float formula fired early (one ulp below tau_q)
    q = q + ((q < levels) & (u >= (q + 0.5) / levels)).to(u.dtype)  # ... or late
    return q / levels


# ----------------------------------------------------------------------------- surrogates
@dataclass(frozen=True)
class Surrogate:
    """A differentiable stand-in :math:`F_s` for the binary step :math:`\\mathbb 1[y \\ge 1/2]`.

    ``soft(y)`` is :math:`F_s(y)` (for plots and tests), ``derivative(y)`` its analytic
    derivative :math:`F'_s(y)`, which is what the backward pass uses.
    """

    name: str
    soft: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    description: str


SURROGATES: dict[str, Surrogate] = {}
"""Registry of surrogate backward functions for binary activations (name -> :class:`Surrogate`)."""


def register_surrogate(name: str, soft: Callable[[torch.Tensor], torch.Tensor],
                       derivative: Callable[[torch.Tensor], torch.Tensor], description: str = "") -> Surrogate:
    """Add a surrogate to :data:`SURROGATES` (replacing one of the same name) and return it.

    Parameters
    ----------
    name : str
        Registry name.
    soft : callable
        The smooth function whose derivative the surrogate uses (for plots).
    derivative : callable
        The backward pass: pre-activation to gradient factor.
    description : str
        One line for tables.

    Returns
    -------
    Surrogate
        The registered surrogate.
    """
    s = Surrogate(name, soft, derivative, description)
    SURROGATES[name] = s
    return s


STEEP_SLOPE = 2.0
"""Default slope of the ``steep`` clipped identity (the paper's exact "steep" STE is not verified);
the claim tunes it (:data:`SURROGATE_FAMILIES`)."""
SWISH_BETA = 5.0
"""Default beta of SwishSign (BNN+, Darabi et al. 2018); the value BinaryDuo used is not verified."""
APPROXSIGN_WIDTH = 1.0
"""Default half-width (in :math:`t = 2y - 1`) of ApproxSign's triangular derivative (1: Bi-Real Net)."""


def _t(y: torch.Tensor) -> torch.Tensor:
    return 2.0 * y - 1.0  # the sign-convention variable: binary a = (sign(t) + 1) / 2


def _approx_sign(t: torch.Tensor, width: float = APPROXSIGN_WIDTH) -> torch.Tensor:
    tc = (t / width).clamp(-1.0, 1.0)
    return 2.0 * tc - tc * tc.abs()


def _swish_sign(t: torch.Tensor, beta: float = SWISH_BETA) -> torch.Tensor:
    s = torch.sigmoid(beta * t)
    return 2.0 * s * (1.0 + beta * t * (1.0 - s)) - 1.0


def _swish_sign_grad(t: torch.Tensor, beta: float = SWISH_BETA) -> torch.Tensor:
    bt = beta * t
    return beta * (2.0 - bt * torch.tanh(bt / 2.0)) / (1.0 + torch.cosh(bt))


def _steep(slope: float) -> tuple[Callable, Callable, str]:
    return (lambda y: (slope * (y - 0.5) + 0.5).clamp(0.0, 1.0),
            lambda y: slope * ((y - 0.5).abs() <= 0.5 / slope).to(y.dtype),
            rf"steeper clipped identity: $F'(y) = {slope:g}\,\mathbb 1[\lvert y - 1/2 \rvert \le {0.5 / slope:g}]$")


def _approxsign(width: float) -> tuple[Callable, Callable, str]:
    return (lambda y: (_approx_sign(_t(y), width) + 1.0) / 2.0,
            lambda y: (2.0 / width) * (1.0 - _t(y).abs() / width).clamp_min(0.0),
            rf"ApproxSign (Bi-Real Net), half-width $w = {width:g}$: $F'(y) = \tfrac{{2}}{{w}}(1 - \lvert 2y - 1 \rvert / w)_+$")


def _swishsign(beta: float) -> tuple[Callable, Callable, str]:
    return (lambda y: (_swish_sign(_t(y), beta) + 1.0) / 2.0, lambda y: _swish_sign_grad(_t(y), beta),
            rf"SwishSign (BNN+), $\beta = {beta:g}$: $F'(y) = \beta[2 - \beta t \tanh(\beta t/2)]/[1 + \cosh \beta t]$, $t = 2y - 1$")


SURROGATE_FAMILIES: dict[str, tuple[str, Callable[[float], tuple[Callable, Callable, str]]]] = {
    "steep": ("slope", _steep), "approxsign": ("width", _approxsign), "swishsign": ("beta", _swishsign)}
"""Surrogate families with one shape hyper-parameter: family -> (name of the parameter, maker)."""

register_surrogate(
    "ste", lambda y: y.clamp(0.0, 1.0), lambda y: ((y >= 0.0) & (y <= 1.0)).to(y.dtype),
    r"straight-through / clipped identity: $F'(y) = \mathbb 1[0 \le y \le 1]$ (BinaryDuo's code)")
register_surrogate("steep", *_steep(STEEP_SLOPE))
register_surrogate("approxsign", *_approxsign(APPROXSIGN_WIDTH))
register_surrogate("swishsign", *_swishsign(SWISH_BETA))


def surrogate_variant(family: str, value: float) -> str:
    """Register the member of ``family`` (``steep``, ``approxsign``, ``swishsign``) with shape ``value``.

    Returns its registry name, ``"<family>@<value>"`` (e.g. ``"swishsign@2"``), usable wherever a
    surrogate name is (:func:`quant_act`, ``QuantNet(..., surrogate=)``). Idempotent.

    Parameters
    ----------
    family : {'steep', 'approxsign', 'swishsign'}
        The surrogate family.
    value : float
        Its shape parameter.

    Returns
    -------
    str
        The registry name ``"<family>@<value>"``.
    """
    if family not in SURROGATE_FAMILIES:
        raise ValueError(f"unknown surrogate family {family!r}; allowed: {', '.join(SURROGATE_FAMILIES)}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"the {SURROGATE_FAMILIES[family][0]} of {family} must be a finite number > 0, got {value}")
    if family == "steep" and value < 1:
        raise ValueError(f"the slope of steep must be >= 1 (1 is plain STE), got {value}")
    name = f"{family}@{value:g}"
    if name not in SURROGATES:
        register_surrogate(name, *SURROGATE_FAMILIES[family][1](value))
    return name


def get_surrogate(name: str) -> Surrogate:
    """The registered surrogate ``name``; ``family@value`` names are registered on first use.

    Parameters
    ----------
    name : str
        A registered name or ``family@value``.

    Returns
    -------
    Surrogate
        The surrogate.
    """
    if name not in SURROGATES and "@" in name:
        family, _, value = name.partition("@")
        try:
            surrogate_variant(family, float(value))
        except ValueError as exc:
            raise ValueError(f"bad surrogate name {name!r}: {exc}") from None
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; allowed: {', '.join(SURROGATES)} "
                         "(add one with flatminima.quant.quantize.register_surrogate)")
    return SURROGATES[name]


class _QuantAct(torch.autograd.Function):
    """Forward: :func:`quantize`; backward: incoming gradient times the surrogate derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: torch.Tensor, levels: int, derivative: Callable) -> torch.Tensor:  # noqa: D102
        return quantize(y, levels)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: D102
        y, _, derivative = inputs
        ctx.save_for_backward(y)
        ctx.derivative = derivative

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (y,) = ctx.saved_tensors
        return grad * ctx.derivative(y), None, None


def quant_act(y: torch.Tensor, levels: int | None, surrogate: str = "ste") -> torch.Tensor:
    """Quantised activation with the surrogate backward ``surrogate``.

    Full precision (``levels=None``) is ``clip(y, 0, 1)`` with its exact gradient and accepts only
    ``ste`` (which is that gradient). Multi-level quantisers use ``ste`` in the code of the paper;
    the other surrogates are defined for the binary step and are rejected for ``levels > 1``.

    Parameters
    ----------
    y : torch.Tensor
        Pre-activations.
    levels : int or None
        Number of steps :math:`n` (1: binary, 2: ternary); ``None`` for full precision.
    surrogate : str
        Name of the backward surrogate (:data:`SURROGATES`, or ``family@value``).

    Returns
    -------
    torch.Tensor
        :func:`quantize` of ``y`` forward, the surrogate's gradient backward.

    Raises
    ------
    ValueError
        For a surrogate other than ``ste`` with ``levels=None`` or ``levels > 1``.
    """
    s = get_surrogate(surrogate)
    if levels is None:
        if surrogate != "ste":
            raise ValueError(f"full-precision activations have an exact gradient; surrogate must be 'ste', got {surrogate!r}")
        return y.clamp(0.0, 1.0)
    if levels > 1 and s.name != "ste":
        raise ValueError(f"surrogate {surrogate!r} is defined for binary activations only; use 'ste' for levels={levels}")
    return _QuantAct.apply(y, levels, s.derivative)


# ----------------------------------------------------------------------------- networks
class QuantNet(nn.Module):
    r"""Blocks ``op -> [pool] -> replicate r -> batch norm -> quantised activation``, then a head.

    ``ops[k]`` is a Linear or Conv2d layer, ``norms[k]`` the BatchNorm over its ``r`` replicated
    outputs (``r = replicate``: 1 for ordinary nets, 2 for a decoupled BinaryDuo net), ``head`` a
    Sequential whose first layer consumes the last block's activations. The forward pass never
    changes the net; ``surrogate`` may be overridden per call (``net(X, surrogate="approxsign")``),
    which keeps :func:`torch.func.functional_call` pure.
    """

    def __init__(self, ops: Sequence[nn.Module], norms: Sequence[nn.Module], pools: Sequence[nn.Module | None],
                 head: nn.Sequential, *, levels: int | None, surrogate: str = "ste", replicate: int = 1) -> None:
        super().__init__()
        if not (len(ops) == len(norms) == len(pools)):
            raise ValueError("ops, norms and pools need one entry per block")
        get_surrogate(surrogate)
        self.ops = nn.ModuleList(ops)
        self.norms = nn.ModuleList(norms)
        self.pools = nn.ModuleList(p if p is not None else nn.Identity() for p in pools)
        self.head = head
        self.levels = levels
        self.surrogate = surrogate
        self.replicate = replicate

    def forward(self, X: torch.Tensor, surrogate: str | None = None) -> torch.Tensor:
        s = surrogate or self.surrogate
        h = X
        for op, pool, norm in zip(self.ops, self.pools, self.norms):
            z = pool(op(h))
            if self.replicate > 1:
                z = torch.cat([z] * self.replicate, dim=1)
            h = quant_act(norm(z), self.levels, s)
        return self.head(h)


def quant_mlp(widths: Sequence[int], *, levels: int | None, surrogate: str = "ste", replicate: int = 1,
              bn_weight: float = 1.0, bn_bias: float = 0.0, seed: int | None = None) -> QuantNet:
    """MLP ``widths[0] -> hidden... -> widths[-1]`` with BN and quantised hidden activations.

    ``seed`` fixes the init through a local generator (:func:`flatminima.nn.models.build_seeded`;
    torch's global random state is not touched). ``bn_weight``/``bn_bias`` initialise every BN's :math:`\\gamma, \\beta` (the authors' code uses
    1 and 0, so a binary unit fires when the normalised pre-activation exceeds 1/2).

    Parameters
    ----------
    widths : sequence of int
        Input, hidden and output widths.
    levels : int or None
        Number of steps :math:`n` (1: binary, 2: ternary); ``None`` for full precision.
    surrogate : str
        Name of the backward surrogate (:data:`SURROGATES`, or ``family@value``).
    replicate : int
        Copies of each unit's pre-activation (2 for a decoupled BinaryDuo net).
    bn_weight, bn_bias : float
        Initial :math:`\\gamma` and :math:`\\beta` of every batch norm.
    seed : int or None
        Seed of the initialisation (``None``: torch's global generator).

    Returns
    -------
    QuantNet
        The network.
    """
    widths = [int(w) for w in widths]
    if len(widths) < 3 or min(widths) < 1:
        raise ValueError(f"widths needs input, >= 1 hidden and output sizes, all positive; got {widths}")
    return build_seeded(lambda: _quant_mlp(widths, levels=levels, surrogate=surrogate, replicate=replicate,
                                           bn_weight=bn_weight, bn_bias=bn_bias), seed)


def _quant_mlp(widths: list[int], *, levels: int | None, surrogate: str, replicate: int, bn_weight: float,
               bn_bias: float) -> QuantNet:
    ops, norms = [], []
    for a, b in zip(widths[:-2], widths[1:-1]):
        ops.append(nn.Linear(a if not ops else a * replicate, b))
        bn = nn.BatchNorm1d(b * replicate)
        nn.init.constant_(bn.weight, bn_weight)
        nn.init.constant_(bn.bias, bn_bias)
        norms.append(bn)
    head = nn.Sequential(nn.Linear(widths[-2] * replicate, widths[-1]))
    return QuantNet(ops, norms, [None] * len(ops), head, levels=levels, surrogate=surrogate, replicate=replicate)


def tiny_vgg7(*, in_channels: int = 3, num_classes: int = 10, channels: Sequence[int] = (64, 64, 128, 128, 512),
              hidden: int = 512, levels: int | None = 1, surrogate: str = "ste", replicate: int = 1,
              seed: int | None = None) -> QuantNet:
    """The tiny VGG-7 of BinaryDuo's CIFAR-10 code (``models/tinyVGG7*.lua``), for 32x32 inputs.

    conv3-c1, conv3-c2 + pool, conv3-c3 + pool, conv3-c4 + pool, conv4x4-c5 (to 1x1), each followed by
    BN and the quantised activation (full-precision weights, as in the code), then a full-precision
    head Linear(c5, hidden) -> ReLU -> Linear(hidden, classes). Baseline channels (64, 64, 128,
    128, 512); the coupled ternary net uses (45, 45, 90, 90, 336).

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Outputs of the head.
    channels : sequence of int
        The five convolution widths c1..c5.
    hidden : int
        Width of the head's hidden layer.
    levels : int or None
        Number of steps :math:`n` (1: binary, 2: ternary); ``None`` for full precision.
    surrogate : str
        Name of the backward surrogate (:data:`SURROGATES`, or ``family@value``).
    replicate : int
        Copies of each unit's pre-activation (2 for a decoupled BinaryDuo net).
    seed : int or None
        Seed of the initialisation (``None``: torch's global generator).

    Returns
    -------
    QuantNet
        The network.
    """
    if len(channels) != 5:
        raise ValueError(f"tiny VGG-7 has 5 quantised conv blocks; channels needs 5 sizes, got {tuple(channels)}")
    return build_seeded(lambda: _tiny_vgg7(in_channels, num_classes, channels, hidden, levels, surrogate, replicate),
                        seed)


def _tiny_vgg7(in_channels: int, num_classes: int, channels: Sequence[int], hidden: int, levels: int | None,
               surrogate: str, replicate: int) -> QuantNet:
    ops, norms, pools = [], [], []
    c_in = in_channels
    for k, c in enumerate(channels):
        kernel, pad = (4, 0) if k == 4 else (3, 1)
        ops.append(nn.Conv2d(c_in, c, kernel, padding=pad, bias=False))
        pools.append(nn.MaxPool2d(2) if k in (1, 2, 3) else None)
        norms.append(nn.BatchNorm2d(c * replicate))
        c_in = c * replicate
    head = nn.Sequential(nn.Flatten(), nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return QuantNet(ops, norms, pools, head, levels=levels, surrogate=surrogate, replicate=replicate)


def coupled_width(in_dim: int, hidden: int, num_hidden: int, out_dim: int) -> int:
    r"""Width :math:`h_c` of the coupled ternary MLP whose decoupled binary net costs what the baseline does.

    Baseline weights: :math:`d h + (L-1) h^2 + h o`; decoupled: :math:`d h_c + 2 (L-1) h_c^2 + 2 h_c o`
    (each ternary unit becomes two binary units feeding the next layer). Returns the largest
    :math:`h_c` not exceeding the baseline's cost.

    Parameters
    ----------
    in_dim : int
        Input dimension :math:`d`.
    hidden : int
        Baseline hidden width :math:`h`.
    num_hidden : int
        Number of hidden layers :math:`L`.
    out_dim : int
        Output dimension :math:`o`.

    Returns
    -------
    int
        :math:`h_c`.
    """
    base = in_dim * hidden + (num_hidden - 1) * hidden ** 2 + hidden * out_dim
    a, b = 2 * (num_hidden - 1), in_dim + 2 * out_dim
    h = int((-b + math.sqrt(b * b + 4 * a * base)) / (2 * a)) if a else base // b
    while a * (h + 1) ** 2 + b * (h + 1) <= base:
        h += 1
    while a * h ** 2 + b * h > base:
        h -= 1
    return h


def _duplicate_inputs(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` taking twice the input channels, weights copied to both halves and halved."""
    w = layer.weight.detach()
    w2 = torch.cat([w / 2, w / 2], dim=1)
    if isinstance(layer, nn.Linear):
        new = nn.Linear(w2.shape[1], w2.shape[0], bias=layer.bias is not None)
    elif isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(w2.shape[1], w2.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
                        dilation=layer.dilation, bias=layer.bias is not None)
    else:
        raise TypeError(f"cannot decouple into a {type(layer).__name__}; expected Linear or Conv2d")
    new = new.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w2)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _duplicate_norm(norm: nn.Module, shift: float) -> nn.Module:
    """BN over twice the channels: statistics and gamma copied, beta - shift then beta + shift."""
    new = copy.deepcopy(norm)
    new.num_features = 2 * norm.num_features
    with torch.no_grad():
        new.weight = nn.Parameter(torch.cat([norm.weight, norm.weight]).detach().clone())
        new.bias = nn.Parameter(torch.cat([norm.bias - shift, norm.bias + shift]).detach().clone())
        new.running_mean = torch.cat([norm.running_mean, norm.running_mean]).clone()
        new.running_var = torch.cat([norm.running_var, norm.running_var]).clone()
    return new


def decouple(net: QuantNet, shift: float = 0.25) -> QuantNet:
    r"""BinaryDuo decoupling (``model_decouple`` in the authors' ``models/init.lua``) on a copy of ``net``.

    Each ternary unit :math:`Q_2(y) = \lfloor 2\,\mathrm{clip}(y,0,1) + 1/2 \rfloor / 2` becomes two binary
    units: the BN is duplicated with :math:`\beta - 1/4` for the first half and :math:`\beta + 1/4` for the
    second, and the next layer's weights are copied to both input halves and divided by 2. Since
    :math:`\tfrac12(\mathbb 1[y \ge \tfrac34] + \mathbb 1[y \ge \tfrac14]) = Q_2(y)`, the returned binary net
    (``levels=1``, ``replicate=2``) computes the function of ``net``: exactly in exact arithmetic. In
    floating point the identity of the quantisers holds for every float :math:`y` (:func:`quantize` is
    exact on its thresholds), but the decoupled net computes :math:`y \pm 1/4` through shifted BN
    biases and halved weights, which round; a unit within a few ulps of a threshold can then flip
    (rare in float32, far rarer in float64: the claim checks the outputs in float64). ``net`` is not
    changed.

    Parameters
    ----------
    net : QuantNet
        A coupled ternary net (``levels=2``, ``replicate=1``).
    shift : float
        The BN shift of the two halves (:math:`1/4` above).

    Returns
    -------
    QuantNet
        The decoupled binary net (a copy).

    Raises
    ------
    ValueError
        When ``net`` is not a coupled ternary net.
    """
    if net.levels != 2 or net.replicate != 1:
        raise ValueError(f"decouple needs a coupled ternary net (levels=2, replicate=1); got levels={net.levels}, "
                         f"replicate={net.replicate}")
    new = copy.deepcopy(net)
    n = len(new.ops)
    for k in range(n):
        new.norms[k] = _duplicate_norm(net.norms[k], shift)
        if k + 1 < n:
            new.ops[k + 1] = _duplicate_inputs(net.ops[k + 1])
    first = next(i for i, m in enumerate(new.head) if isinstance(m, (nn.Linear, nn.Conv2d)))
    new.head[first] = _duplicate_inputs(net.head[first])
    new.levels, new.replicate, new.surrogate = 1, 2, "ste"
    return new
