"""Small networks used across the study: MLPs and compact CNNs.

All models map a batch ``X`` to logits. Widths, depth, bias and activation are explicit so a
notebook parameter can change them; there is no global registry of architectures beyond
:func:`make_model`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected net ``widths[0] -> ... -> widths[-1]`` with an activation between layers.

    Linear layers are the attributes ``layers[k]``; inputs of any shape are flattened.
    """

    def __init__(self, widths: Sequence[int], activation: str = "relu", bias: bool = True) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs >= 2 positive sizes (input ... output), got {widths}")
        self.widths = widths
        self.activation = activation
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:]))
        self.act = _activation(activation)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        h = X.reshape(X.shape[0], -1)
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = self.act(h)
        return h


class SmallCNN(nn.Module):
    """Conv blocks ``(conv 3x3 -> [BN] -> act -> maxpool 2)`` then an MLP head.

    ``in_shape`` is ``(C, H, W)`` (or ``(L,)`` / ``(C, L)`` for 1-D signals, which use Conv1d).
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
                 hidden: int = 128, activation: str = "relu", batch_norm: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        in_shape = tuple(int(s) for s in in_shape)
        one_d = len(in_shape) <= 2
        if len(in_shape) == 1:
            in_shape = (1, in_shape[0])
        Conv, Pool, BN = ((nn.Conv1d, nn.MaxPool1d, nn.BatchNorm1d) if one_d
                          else (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))
        self.in_shape = in_shape
        blocks: list[nn.Module] = []
        c = in_shape[0]
        for out in channels:
            blocks += [Conv(c, out, 3, padding=1, bias=bias)]
            if batch_norm:
                blocks += [BN(out)]
            blocks += [_activation(activation), Pool(2)]
            c = out
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *in_shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, hidden, bias=bias),
                                  _activation(activation), nn.Linear(hidden, num_classes, bias=bias))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(X.reshape(X.shape[0], *self.in_shape)))


def seeded_init_(module: nn.Module, seed: int) -> nn.Module:
    """Re-draw the default PyTorch init of every Linear/Conv layer of ``module`` from a local generator.

    The draws are PyTorch's own defaults (``reset_parameters``: Kaiming-uniform weights with
    :math:`a = \\sqrt 5`, biases uniform in :math:`\\pm 1/\\sqrt{\\text{fan-in}}`), made in module
    order with ``torch.Generator().manual_seed(seed)``: the same numbers as ``torch.manual_seed(seed)``
    followed by building the model, without touching torch's global random state. Normalisation
    layers keep their constant init. Returns ``module`` (changed in place).

    Parameters
    ----------
    module : torch.nn.Module
        The model, changed in place.
    seed : int
        Seed of the local generator.

    Returns
    -------
    torch.nn.Module
        ``module``.
    """
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
    return module


def build_seeded(factory, seed: int | None):
    """``factory()``, its init drawn by :func:`seeded_init_` from ``seed`` (None: torch's global RNG).

    With a seed, the global random state is left exactly as it was (the construction's own
    draws happen inside :func:`torch.random.fork_rng` and are then replaced).

    Parameters
    ----------
    factory : callable
        Builds the model, no arguments.
    seed : int or None
        Seed of the init; ``None`` uses torch's global generator.

    Returns
    -------
    torch.nn.Module
        The model.
    """
    if seed is None:
        return factory()
    with torch.random.fork_rng(devices=[]):
        module = factory()
    return seeded_init_(module, seed)


def make_model(arch: str, in_shape: Sequence[int], num_classes: int, *, widths: Sequence[int] = (128, 128),
               activation: str = "relu", bias: bool = True, seed: int | None = None, **kwargs) -> nn.Module:
    """Build ``arch`` (``mlp`` or ``cnn``) for inputs of ``in_shape``; ``seed`` fixes the init.

    For ``mlp``, ``widths`` are the hidden sizes; for ``cnn`` they are the conv channels and
    ``hidden`` (kwarg) the head width. With ``seed`` the init comes from a local generator
    (:func:`seeded_init_`), so building a model leaves torch's global random state unchanged.

    Parameters
    ----------
    arch : {'mlp', 'cnn'}
        The architecture.
    in_shape : sequence of int
        Shape of one input.
    num_classes : int
        Outputs.
    widths : sequence of int
        Hidden sizes (``mlp``) or conv channels (``cnn``).
    activation : str
        Hidden activation.
    bias : bool
        Whether layers have biases.
    seed : int or None
        Seed of the init.
    **kwargs
        ``hidden`` for ``cnn``.

    Returns
    -------
    torch.nn.Module
        The model.
    """
    in_dim = 1
    for s in in_shape:
        in_dim *= int(s)
    if arch == "mlp":
        return build_seeded(lambda: MLP([in_dim, *widths, num_classes], activation=activation, bias=bias), seed)
    if arch == "cnn":
        return build_seeded(lambda: SmallCNN(in_shape, num_classes, channels=widths, activation=activation, bias=bias,
                                             **kwargs), seed)
    raise ValueError(f"unknown arch {arch!r}; allowed: mlp, cnn")


def describe_network(arch: str, widths: Sequence[int], activation: str | None = None) -> str:
    """How a chapter's prose names a network: "an MLP with hidden widths 512 x 5", "a CNN with conv channels 16, 32".

    Parameters
    ----------
    arch : {'mlp', 'cnn'}
        The architecture.
    widths : sequence of int
        Hidden sizes (``mlp``) or conv channels (``cnn``).
    activation : str or None
        Named after the architecture when given ("a ReLU MLP ...").

    Returns
    -------
    str
        The description; equal widths are written ``w x n``, others as a comma-separated list.
    """
    widths = [int(w) for w in widths]
    if len(widths) > 1 and len(set(widths)) == 1:
        shown = f"{widths[0]} x {len(widths)}"
    else:
        shown = ", ".join(map(str, widths))
    act = {"relu": "ReLU", "tanh": "tanh", "gelu": "GELU", "sigmoid": "sigmoid"}.get(activation or "", activation or "")
    kind = {"mlp": "MLP", "cnn": "CNN"}.get(arch, arch)
    what = "hidden width" if arch != "cnn" else "conv channel"
    name = f"{act} {kind}".strip()
    article = "an" if name.startswith(("MLP", "RNN")) else "a"  # by the first sound: an MLP, a CNN, a ReLU MLP
    return f"{article} {name} with {what}{'s' if len(widths) > 1 else ''} {shown}"
