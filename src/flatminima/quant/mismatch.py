r"""Gradient mismatch of quantised-activation nets: reference gradients of the smoothed loss and cosines.

Kim, Kim, Kim & Kim, ICLR 2020 (BinaryDuo, arXiv 2002.06517), Section 4 and appendix: the
backprop gradient :math:`g_s` of a net whose binary activations use the surrogate :math:`s` is
compared with the gradient of a *smoothed* loss of the real quantised forward pass.

* **Coordinate discrete gradient (CDG)**, a central difference along weight coordinate :math:`i`,

  .. math:: \mathrm{CDG}_i(w) = \frac{L(w + \varepsilon e_i) - L(w - \varepsilon e_i)}{2\varepsilon}
            = \partial_{w_i} \tilde L_i(w),\quad
            \tilde L_i(w) = \frac{1}{2\varepsilon}\int_{-\varepsilon}^{\varepsilon} L(w + t e_i)\,dt,

  on sampled coordinates of each layer (:func:`coordinate_discrete_gradient`). It is computed
  exactly and in batches: moving :math:`W^{(k)}_{ij}` changes only the pre-activation of unit
  :math:`i` of layer :math:`k`, and after a quantiser only the samples whose activation changes
  level carry the change further, so each perturbation is propagated for those samples only.
* **Gaussian smoothing / evolution strategies (ES)**, antithetic,

  .. math:: \nabla L_\sigma(w) \approx \frac{1}{2\sigma n}\sum_{k=1}^{n}
            [L(w + \sigma\delta_k) - L(w - \sigma\delta_k)]\,\delta_k,\quad \delta_k \sim N(0, I)

  (:func:`es_gradient`), all directions of a chunk in one batched forward pass.
* **Mismatch** per layer: the cosine :math:`\cos(g_s^{(k)}, \mathrm{CDG}^{(k)})` over the sampled
  coordinates; **reliability** of the reference: the cosine between the CDGs computed on the two
  halves of the evaluation samples (split-half), which is near 0 when the reference is noise.

The estimators work on :class:`~flatminima.quant.quantize.QuantNet` MLPs in eval mode (batch norm with
frozen statistics), so the loss is a fixed function of the weights. Nothing here changes the net.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from flatminima.quant.quantize import QuantNet, quantize

LOSSES = ("mse", "ce")


def per_sample_loss(out: torch.Tensor, y: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """Per-sample loss of outputs ``out`` (..., B, O): squared error averaged over outputs, or cross-entropy.

    Parameters
    ----------
    out : torch.Tensor
        Outputs, shape ``(..., B, O)``.
    y : torch.Tensor
        Targets.
    loss : {'mse', 'ce'}
        Per-sample loss (:func:`per_sample_loss`).

    Returns
    -------
    torch.Tensor
        Losses, shape ``(..., B)``.
    """
    if loss == "mse":
        return ((out - y) ** 2).mean(-1)
    if loss == "ce":
        if out.ndim == 2:
            return F.cross_entropy(out, y, reduction="none")
        return F.cross_entropy(out.movedim(-1, 1), y.expand(out.shape[:-1]), reduction="none")
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")


def _check_mlp(net: QuantNet) -> list[nn.Linear]:
    """The Linear layers of an MLP QuantNet (hidden ops then the output layer)."""
    if not isinstance(net, QuantNet):
        raise TypeError(f"expected a QuantNet, got {type(net).__name__}")
    head = [m for m in net.head]
    ok = (net.replicate == 1 and all(isinstance(op, nn.Linear) for op in net.ops)
          and all(isinstance(p, nn.Identity) for p in net.pools) and len(head) == 1 and isinstance(head[0], nn.Linear))
    if not ok:
        raise ValueError("the mismatch estimators need an MLP QuantNet (quant_mlp, replicate=1)")
    return [*net.ops, head[0]]


def layer_names(net: QuantNet) -> list[str]:
    """Parameter names of the weight matrices of an MLP QuantNet, input layer first.

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net.

    Returns
    -------
    list of str
        Parameter names, input layer first.
    """
    _check_mlp(net)
    return [f"ops.{k}.weight" for k in range(len(net.ops))] + ["head.0.weight"]


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as :math:`y = s z + t`."""
    s = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return s, norm.bias - norm.running_mean * s


def check_coordinates(net: QuantNet, coords: list[torch.Tensor]) -> list[torch.Tensor]:
    """Validate per-layer flat weight indices for ``net``; returns them as 1-D int64 tensors.

    One entry per weight matrix (:func:`layer_names`), integer indices in ``[0, numel)``, no
    repeats. A bad entry raises ValueError naming the layer and the offending index.

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net.
    coords : list of torch.Tensor
        One index tensor per weight matrix.

    Returns
    -------
    list of torch.Tensor
        The indices as 1-D int64 tensors.

    Raises
    ------
    ValueError
        For a wrong number of entries, an index out of range or a repeat.
    """
    layers = _check_mlp(net)
    names = layer_names(net)
    if len(coords) != len(layers):
        raise ValueError(f"coords needs one index tensor per weight matrix ({len(layers)}: {', '.join(names)}), "
                         f"got {len(coords)}; build them with sample_coordinates(net, ...)")
    out = []
    for k, (layer, name, idx) in enumerate(zip(layers, names, coords)):
        idx = torch.as_tensor(idx)
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.ndim != 1:
            raise ValueError(f"coords[{k}] (layer {name}) must be a 1-D tensor of integer flat indices, "
                             f"got dtype {idx.dtype}, shape {tuple(idx.shape)}")
        n = layer.weight.numel()
        bad = (idx < 0) | (idx >= n)
        if bool(bad.any()):
            i = int(idx[bad][0])
            raise ValueError(f"coords[{k}] (layer {name}, {tuple(layer.weight.shape)} = {n} weights) has index {i} "
                             f"out of range [0, {n}); flat indices are row * in_features + column")
        if len(torch.unique(idx)) != len(idx):
            raise ValueError(f"coords[{k}] (layer {name}) repeats an index; give distinct flat indices")
        out.append(idx.long().to(layer.weight.device))
    return out


def sample_coordinates(net: QuantNet, num_coords: int, *, seed: int = 0) -> list[torch.Tensor]:
    """Per layer, ``num_coords`` distinct flat weight indices drawn uniformly (all when the layer is smaller).

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net.
    num_coords : int
        Indices per layer.
    seed : int
        Seed of the draw.

    Returns
    -------
    list of torch.Tensor
        One 1-D int64 tensor per weight matrix.
    """
    if int(num_coords) < 1:
        raise ValueError(f"num_coords must be >= 1 (coordinates sampled per layer), got {num_coords}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for layer in _check_mlp(net):
        n = layer.weight.numel()
        idx = torch.randperm(n, generator=g)[:min(num_coords, n)].sort().values
        out.append(idx.to(layer.weight.device))
    return out


@dataclass
class ReferenceGradient:
    """A reference gradient per layer on sampled coordinates, with split-half estimates.

    ``grad[k]``, ``half_a[k]``, ``half_b[k]``: tensors over ``coords[k]`` (flat weight indices of layer k).
    """

    coords: list[torch.Tensor]
    grad: list[torch.Tensor]
    half_a: list[torch.Tensor]
    half_b: list[torch.Tensor]

    def reliability(self) -> list[float]:
        """Split-half reliability per layer: :math:`\\cos(\\hat g_A, \\hat g_B)`."""
        return [cosine(a, b) for a, b in zip(self.half_a, self.half_b)]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flattened tensors (0 when either is zero).

    Parameters
    ----------
    a, b : torch.Tensor
        Tensors of the same number of elements.

    Returns
    -------
    float
        :math:`a\\cdot b / (\\|a\\|\\|b\\|)`.
    """
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


@torch.no_grad()
def _forward_cache(net: QuantNet, X: torch.Tensor):
    """Pre-activations ``zs``, normalised ``ys`` and activations ``hs`` (``hs[0] = X``) of the eval-mode net."""
    layers = _check_mlp(net)
    hs, ys, zs = [X], [], []
    for k, layer in enumerate(layers):
        z = F.linear(hs[-1], layer.weight, layer.bias)
        zs.append(z)
        if k < len(layers) - 1:
            s, t = _affine(net.norms[k])
            y = z * s + t
            ys.append(y)
            hs.append(quantize(y, net.levels))
    return layers, hs, ys, zs


@torch.no_grad()
def coordinate_discrete_gradient(net: QuantNet, X: torch.Tensor, y: torch.Tensor, coords: list[torch.Tensor], *,
                                 eps: float = 0.1, loss: str = "mse", max_rows: int = 2_000_000) -> ReferenceGradient:
    r"""Exact CDG :math:`[L(w+\varepsilon e_i) - L(w-\varepsilon e_i)]/(2\varepsilon)` on ``coords`` of each layer.

    ``L`` is the mean per-sample loss over ``(X, y)`` of the eval-mode net (true quantised forward).
    Perturbations are processed in chunks of at most ``max_rows`` (perturbation, sample) rows; only
    samples whose quantised activation changes are propagated past the perturbed layer (full
    precision, where nearly every sample moves, propagates densely), so the result equals the naive
    loop (:func:`coordinate_discrete_gradient_loop`) up to rounding.
    Split halves: samples ``[0, B/2)`` and ``[B/2, B)``.

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net; it is not changed.
    X, y : torch.Tensor
        The batch of the mean loss.
    coords : list of torch.Tensor
        Per weight matrix, the flat indices to estimate (:func:`check_coordinates`).
    eps : float
        The step :math:`\varepsilon`.
    loss : {'mse', 'ce'}
        Per-sample loss (:func:`per_sample_loss`).
    max_rows : int
        Largest number of (perturbation, sample) rows per batched forward pass.

    Returns
    -------
    ReferenceGradient
        Per layer, the CDG on ``coords`` and its two split-half estimates.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    coords = check_coordinates(net, coords)
    was_training = net.training
    net.eval()
    try:
        layers, hs, ys, zs = _forward_cache(net, X)
    finally:
        net.train(was_training)
    B = X.shape[0]
    half = (torch.arange(B, device=X.device) >= B // 2).long()
    n_half = torch.tensor([B // 2, B - B // 2], dtype=torch.float64, device=X.device)
    base = per_sample_loss(zs[-1], y, loss)
    hsT = [h.T.contiguous() for h in hs]  # unit-major copies: a unit's column is one contiguous row
    ysT = [v.T.contiguous() for v in ys]
    affines = [_affine(n) for n in net.norms]
    L = len(layers)

    def propagate(m: int, z: torch.Tensor) -> torch.Tensor:
        """Output from the pre-activation ``z`` of layer ``m`` (rows: any samples)."""
        for k in range(m, L - 1):
            s, t = affines[k]
            a = quantize(z * s + t, net.levels)
            z = F.linear(a, layers[k + 1].weight, layers[k + 1].bias)
        return z

    grads, ga, gb = [], [], []
    for k, (layer, idx) in enumerate(zip(layers, coords)):
        n_out = layer.weight.shape[0]
        rows, cols = idx // layer.weight.shape[1], idx % layer.weight.shape[1]
        sums = torch.zeros(len(idx), 2, 2, dtype=torch.float64, device=X.device)  # coord, sign, half
        width = max(1, layers[k + 1].weight.shape[0]) if (net.levels is None and k < L - 1) else 1
        chunk = max(1, max_rows // (2 * B * width))
        for c0 in range(0, len(idx), chunk):
            r, c = rows[c0:c0 + chunk], cols[c0:c0 + chunk]
            P = len(r)
            sign = torch.tensor([1.0, -1.0], device=X.device, dtype=X.dtype)
            delta = (eps * sign)[None, :, None] * hsT[k][c][:, None, :]  # (P, 2, B): change of z_k[:, r]
            if k == L - 1:
                out = zs[k].unsqueeze(0).unsqueeze(0).repeat(P, 2, 1, 1)  # (P, 2, B, O)
                onehot = F.one_hot(r, n_out).to(X.dtype)  # (P, O)
                out = out + delta[..., None] * onehot[:, None, None, :]
                dl = (per_sample_loss(out, y, loss) - base).double()  # (P, 2, B)
                sums[c0:c0 + P].index_add_(2, half, dl)
                continue
            s, t = affines[k]
            y_new = ysT[k][r][:, None, :] + s[r][:, None, None] * delta  # (P, 2, B)
            d = quantize(y_new, net.levels) - hsT[k + 1][r][:, None, :]
            W_next = layers[k + 1].weight  # (O_next, n_out)
            if net.levels is None:  # full precision: (almost) every sample moves, propagate densely
                z_next = zs[k + 1] + d[..., None] * W_next[:, r].T[:, None, None, :]  # (P, 2, B, O_next)
                dl = (per_sample_loss(propagate(k + 1, z_next), y, loss) - base).double()
                sums[c0:c0 + P].index_add_(2, half, dl)
                continue
            p_idx, sgn_idx, b_idx = d.nonzero(as_tuple=True)
            if len(b_idx) == 0:
                continue
            z_next = zs[k + 1][b_idx] + d[p_idx, sgn_idx, b_idx, None] * W_next[:, r[p_idx]].T
            out = propagate(k + 1, z_next)
            dl = (per_sample_loss(out, y[b_idx], loss) - base[b_idx]).double()
            flat = (p_idx + c0) * 4 + sgn_idx * 2 + half[b_idx]
            sums.view(-1).index_add_(0, flat, dl)
        means = sums / n_half  # mean loss change per half
        full = sums.sum(-1) / B
        grads.append(((full[:, 0] - full[:, 1]) / (2 * eps)).float())
        ga.append(((means[:, 0, 0] - means[:, 1, 0]) / (2 * eps)).float())
        gb.append(((means[:, 0, 1] - means[:, 1, 1]) / (2 * eps)).float())
    return ReferenceGradient(list(coords), grads, ga, gb)


@torch.no_grad()
def coordinate_discrete_gradient_loop(net: QuantNet, X: torch.Tensor, y: torch.Tensor, coords: list[torch.Tensor], *,
                                      eps: float = 0.1, loss: str = "mse") -> list[torch.Tensor]:
    """The naive CDG: two full forward passes per coordinate (reference for tests and the benchmark).

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net; it is not changed.
    X, y : torch.Tensor
        The batch of the mean loss.
    coords : list of torch.Tensor
        Per weight matrix, the flat indices to estimate (:func:`check_coordinates`).
    eps : float
        The step :math:`\\varepsilon`.
    loss : {'mse', 'ce'}
        Per-sample loss (:func:`per_sample_loss`).

    Returns
    -------
    list of torch.Tensor
        Per layer, the CDG on ``coords``.
    """
    names = layer_names(net)
    coords = check_coordinates(net, coords)
    state = {k: v for k, v in net.state_dict().items()}
    was_training = net.training
    net.eval()
    out = []
    try:
        for name, idx in zip(names, coords):
            g = torch.empty(len(idx), dtype=torch.float64)
            for n, i in enumerate(idx.tolist()):
                vals = []
                for sgn in (1.0, -1.0):
                    W = state[name].clone().reshape(-1)
                    W[i] += sgn * eps
                    p = {**state, name: W.reshape(state[name].shape)}
                    vals.append(float(per_sample_loss(functional_call(net, p, (X,)), y, loss).double().mean()))
                g[n] = (vals[0] - vals[1]) / (2 * eps)
            out.append(g.float())
    finally:
        net.train(was_training)
    return out


@torch.no_grad()
def _batched_output(net: QuantNet, weights: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Outputs (P, B, O) of the eval-mode MLP with P weight sets ``weights[k]`` of shape (P, out, in)."""
    layers = _check_mlp(net)
    h = X
    for k, (layer, W) in enumerate(zip(layers, weights)):
        z = (torch.einsum("bi,poi->pbo", h, W) if h.ndim == 2 else torch.bmm(h, W.transpose(1, 2)))
        if layer.bias is not None:
            z = z + layer.bias
        if k < len(layers) - 1:
            s, t = _affine(net.norms[k])
            h = quantize(z * s + t, net.levels)
        else:
            return z
    raise AssertionError("unreachable")


@torch.no_grad()
def es_gradient(net: QuantNet, X: torch.Tensor, y: torch.Tensor, *, num_directions: int = 1000,
                sigma: float = 0.05, loss: str = "mse", seed: int = 0, max_rows: int = 2_000_000) -> ReferenceGradient:
    r"""Antithetic Gaussian-smoothing gradient of each weight matrix, :math:`\frac{1}{2\sigma n}\sum_k \Delta_k \delta_k`.

    Layer by layer: ``num_directions`` Gaussian directions :math:`\delta_k` in the weights of one layer
    (the others fixed), so a layer's estimate is not swamped by the other layers' variance;
    :math:`\Delta_k = L(w + \sigma\delta_k) - L(w - \sigma\delta_k)`. A chunk of directions is one
    batched forward pass. Returns estimates over all coordinates (``coords[k]`` = all flat indices)
    and split-half estimates from the first and the second half of the directions (the direction
    sampling, not the data, dominates the noise of this estimator).

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net; it is not changed.
    X, y : torch.Tensor
        The batch of the mean loss.
    num_directions : int
        Gaussian directions :math:`n` per layer.
    sigma : float
        Smoothing scale :math:`\sigma`.
    loss : {'mse', 'ce'}
        Per-sample loss (:func:`per_sample_loss`).
    seed : int
        Seed of the directions.
    max_rows : int
        Largest number of (perturbation, sample) rows per batched forward pass.

    Returns
    -------
    ReferenceGradient
        Per layer, the estimate over all weights and its two split-half estimates.
    """
    if sigma <= 0 or num_directions < 1:
        raise ValueError(f"need sigma > 0 and num_directions >= 1, got sigma={sigma}, num_directions={num_directions}")
    layers = _check_mlp(net)
    was_training = net.training
    net.eval()
    B = X.shape[0]
    g = torch.Generator(device="cpu").manual_seed(seed)
    chunk = max(1, max_rows // (2 * B))
    n_a = num_directions // 2
    scales = torch.tensor([1.0 / num_directions, 1.0 / max(n_a, 1), 1.0 / max(num_directions - n_a, 1)],
                          dtype=torch.float64, device=X.device)[:, None] / (2 * sigma)
    est: list[list[torch.Tensor]] = [[], [], []]
    try:
        for k, layer in enumerate(layers):
            acc = torch.zeros(3, layer.weight.numel(), dtype=torch.float64, device=X.device)
            done = 0
            while done < num_directions:
                P = min(chunk, num_directions - done)
                d = torch.randn(P, *layer.weight.shape, generator=g).to(X.device, X.dtype)
                ws = [l.weight.expand(2 * P, *l.weight.shape) for l in layers]
                ws[k] = torch.cat([layer.weight + sigma * d, layer.weight - sigma * d])
                ell = per_sample_loss(_batched_output(net, ws, X), y, loss).double()  # (2P, B)
                diff = (ell[:P] - ell[P:]).mean(1)  # (P,)
                first = (torch.arange(done, done + P, device=X.device) < n_a).double()
                parts = torch.stack([diff, diff * first, diff * (1 - first)])  # (3, P): all, first half, second half
                acc += parts @ d.reshape(P, -1).double()
                done += P
            acc *= scales
            for j in range(3):
                est[j].append(acc[j].float())
    finally:
        net.train(was_training)
    coords = [torch.arange(l.weight.numel(), device=X.device) for l in layers]
    return ReferenceGradient(coords, est[0], est[1], est[2])


def surrogate_gradient(net: QuantNet, X: torch.Tensor, y: torch.Tensor, surrogate: str, *,
                       loss: str = "mse") -> list[torch.Tensor]:
    """Backprop gradient of the mean loss w.r.t. each weight matrix, binary units using ``surrogate``.

    Eval mode (frozen BN statistics) through :func:`torch.func.functional_call`; the net is not changed.

    Parameters
    ----------
    net : QuantNet
        An MLP quantised net; it is not changed.
    X, y : torch.Tensor
        The batch of the mean loss.
    surrogate : str
        Surrogate name (:func:`flatminima.quant.quantize.get_surrogate`).
    loss : {'mse', 'ce'}
        Per-sample loss (:func:`per_sample_loss`).

    Returns
    -------
    list of torch.Tensor
        Per weight matrix (:func:`layer_names`), the gradient, shaped like the matrix.
    """
    names = layer_names(net)
    was_training = net.training
    net.eval()
    try:
        params = {k: v.detach().requires_grad_(k in names) for k, v in net.named_parameters()}
        buffers = dict(net.named_buffers())
        out = functional_call(net, {**params, **buffers}, (X,), {"surrogate": surrogate})
        value = per_sample_loss(out, y, loss).mean()
        grads = torch.autograd.grad(value, [params[n] for n in names])
    finally:
        net.train(was_training)
    return [g.detach() for g in grads]


def layer_cosines(grads: list[torch.Tensor], reference: ReferenceGradient) -> list[float]:
    """Per layer, cosine between a full gradient ``grads[k]`` restricted to ``reference.coords[k]`` and the reference.

    Parameters
    ----------
    grads : list of torch.Tensor
        Full gradients, one per weight matrix.
    reference : ReferenceGradient
        The reference estimate and its coordinates.

    Returns
    -------
    list of float
        One cosine per layer (:func:`cosine`).
    """
    return [cosine(g.reshape(-1)[idx], r) for g, idx, r in zip(grads, reference.coords, reference.grad)]
