r"""Weight trajectories of training: cheap recording, PCA, loss profiles, widths, power laws.

The variance-flatness analysis of Feng & Tu (PNAS 2021, "The inverse variance-flatness
relation in stochastic gradient descent is critical for finding flat minima") in four steps:

1. record chosen weights :math:`w(t)\in\mathbb R^d` over a window of training steps into a
   preallocated buffer (:class:`WeightRecorder`);
2. PCA of the window, :math:`w(t) = \langle w\rangle_T + \sum_i \theta_i(t)\,p_i`, with the
   variance :math:`\sigma_i^2 = T^{-1}\sum_t \theta_i(t)^2` along each principal direction
   :math:`p_i` (:func:`trajectory_pca`);
3. the flatness :math:`F_i = \theta_i^r - \theta_i^l`, the width of the loss profile
   :math:`L_i(\theta) = L(w_0 + \theta p_i)` at the level :math:`L_i(\theta^{l,r}) = e\,L_0`,
   found by doubling and bisection on a batched loss (:func:`batched_param_loss`,
   :func:`profile_widths`);
4. the power law :math:`\sigma_i^2 \propto F_i^{-\psi}` fitted in log-log over a stated
   range of components, with a bootstrap CI and Spearman's :math:`\rho`
   (:func:`fit_power_law`).

Loss evaluations are vectorised over many weight vectors at once with
``torch.func.vmap`` over ``torch.func.functional_call``; the model passed in is never changed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from flatminima.nn.flat import FlatSpec, flatten, unflatten
from flatminima.nn.models import MLP
from flatminima.stats.intervals import Interval

BatchedLoss = Callable[[torch.Tensor], torch.Tensor]
"""Maps weight vectors ``W`` of shape ``(K, d)`` to the ``K`` losses ``L(W_k)``."""


# ----------------------------------------------------------------------------- parameters
def select_parameters(net: nn.Module, which: str = "hidden") -> list[str]:
    """Names of the parameters analysed: ``hidden`` (the first hidden-to-hidden weight matrix,
    ``layers.1.weight`` of an :class:`~flatminima.nn.models.MLP`, Feng & Tu's 50x50 layer) or
    ``all`` (every parameter)."""
    names = [n for n, _ in net.named_parameters()]
    if which == "all":
        return names
    if which == "hidden":
        if "layers.1.weight" not in names or "layers.2.weight" not in names:
            raise ValueError("weights='hidden' needs an MLP with at least two hidden layers "
                             "(a hidden-to-hidden matrix layers.1.weight); use weights='all' otherwise")
        return ["layers.1.weight"]
    raise ValueError(f"weights must be 'hidden' or 'all', got {which!r}")


# ----------------------------------------------------------------------------- recording
class WeightRecorder:
    """A ``train`` step hook that copies the chosen weights into a preallocated buffer.

    ``buffer[r]`` holds the flattened weights after step ``(r + 1) * record_every`` of the
    window; recording is one device-side copy per recorded step (no host transfer).
    """

    def __init__(self, net: nn.Module, names: Sequence[str], num_steps: int, record_every: int = 1,
                 dtype: torch.dtype = torch.float32) -> None:
        if record_every < 1:
            raise ValueError(f"record_every must be >= 1, got {record_every}")
        params = dict(net.named_parameters())
        self.names = list(names)
        self._tensors = [params[n] for n in self.names]
        self.record_every = record_every
        d = sum(t.numel() for t in self._tensors)
        device = self._tensors[0].device
        self.buffer = torch.empty(num_steps // record_every, d, dtype=dtype, device=device)
        self.count = 0

    def __call__(self, step: int, net: nn.Module, loss: float) -> bool:
        if step % self.record_every == 0 and self.count < len(self.buffer):
            row, i = self.buffer[self.count], 0
            with torch.no_grad():
                for t in self._tensors:
                    k = t.numel()
                    row[i:i + k].copy_(t.reshape(-1))
                    i += k
            self.count += 1
        return False

    @property
    def trajectory(self) -> torch.Tensor:
        """The recorded rows, shape ``(count, d)``."""
        return self.buffer[:self.count]


# ----------------------------------------------------------------------------- PCA
@dataclass(frozen=True)
class PCAResult:
    """Principal directions ``components`` (rows, unit norm), variances and the window mean."""

    mean: torch.Tensor  # (d,)
    components: torch.Tensor  # (k, d)
    variances: torch.Tensor  # (k,) sigma_i^2, descending
    total_variance: float  # trace of the window covariance
    method: str


def trajectory_pca(traj: torch.Tensor, num_components: int | None = None, *, method: str = "auto",
                   seed: int = 0) -> PCAResult:
    r"""PCA of a trajectory ``traj`` of shape ``(n, d)`` (rows = time), in float64.

    With :math:`\Delta w(t) = w(t) - \langle w\rangle_T = U S V^\top`, the directions are the
    rows of :math:`V^\top` and :math:`\sigma_i^2 = s_i^2 / n` (Feng & Tu 2021,
    :math:`\sigma_i^2 \equiv T^{-1}\int \theta_i(t)^2 dt`). ``method``: ``svd`` (exact,
    ``torch.linalg.svd``), ``lowrank`` (randomised, ``torch.svd_lowrank`` with ``seed``) or
    ``auto`` (exact unless the matrix has more than 5e7 entries and few components are asked).
    """
    n, d = traj.shape
    if n < 2:
        raise ValueError(f"a trajectory needs at least 2 recorded steps, got {n}")
    k_max = min(n - 1, d)
    k = k_max if num_components is None else int(num_components)
    if not 1 <= k <= k_max:
        raise ValueError(f"num_components must be between 1 and {k_max} (recorded steps - 1 or the "
                         f"dimension) for a {n}x{d} trajectory, got {k}; record a longer window")
    X = traj.to(torch.float64)
    mean = X.mean(0)
    X = X - mean
    total = float((X * X).sum() / n)
    if method == "auto":
        method = "lowrank" if n * d > 5e7 and k < min(n, d) // 4 else "svd"
    if method == "svd":
        _, S, Vh = torch.linalg.svd(X, full_matrices=False)
        S, Vh = S[:k], Vh[:k]
    elif method == "lowrank":
        devices = [X.device] if X.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            _, S, V = torch.svd_lowrank(X, q=min(k + 10, min(n, d)), niter=6)
        S, Vh = S[:k], V[:, :k].T
    else:
        raise ValueError(f"method must be 'auto', 'svd' or 'lowrank', got {method!r}")
    return PCAResult(mean=mean, components=Vh.contiguous(), variances=S**2 / n,
                     total_variance=total, method=method)


# ----------------------------------------------------------------------------- batched loss
def batched_param_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                       loss_fn: Callable = F.cross_entropy, chunk_size: int = 64,
                       data_chunk: int | None = None) -> BatchedLoss:
    r"""A function ``W -> L(W)`` over weight vectors ``W`` of shape ``(K, d)``.

    ``W[k]`` replaces the parameters ``names`` (flattened, in order) of ``net``; the others stay
    at their current values. :math:`L` is the mean of ``loss_fn`` over ``(X, y)``. The ``K``
    networks run as one vectorised forward pass (``torch.func.vmap`` over
    ``functional_call``), ``chunk_size`` weight vectors and ``data_chunk`` samples at a time.
    Works for any network; ``net`` is not modified.
    """
    base = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    names = list(names)
    n = len(X)
    step = n if data_chunk is None else int(data_chunk)

    def one(w: torch.Tensor, Xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
        params = dict(base)
        params.update(unflatten(w, FlatSpec.of(base, names)))
        out = functional_call(net, (params, buffers), (Xc,))
        return loss_fn(out, yc, reduction="sum")

    many = vmap(one, in_dims=(0, None, None))

    @torch.no_grad()
    def loss_of(W: torch.Tensor) -> torch.Tensor:
        W = W.to(device=X.device, dtype=base[names[0]].dtype)
        out = []
        for i in range(0, len(W), chunk_size):
            Wc = W[i:i + chunk_size]
            total = torch.zeros(len(Wc), dtype=Wc.dtype, device=Wc.device)
            for j in range(0, n, step):
                total += many(Wc, X[j:j + step], y[j:j + step])
            out.append(total / n)
        return torch.cat(out) if out else torch.zeros(0, device=X.device)

    return loss_of


def single_mlp_layer(net: nn.Module, names: Sequence[str]) -> int | None:
    """``k`` if ``net`` is an :class:`~flatminima.nn.models.MLP` and every name is ``layers.k.weight``
    or ``layers.k.bias`` of one layer ``k``; else ``None``."""
    if not isinstance(net, MLP) or not names:
        return None
    parts = [n.split(".") for n in names]
    if any(len(q) != 3 or q[0] != "layers" or q[2] not in ("weight", "bias") for q in parts):
        return None
    layers = {q[1] for q in parts}
    return int(layers.pop()) if len(layers) == 1 else None


# ----------------------------------------------------------------------------- losses along lines
LineLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
r"""Maps ``(idx, theta)``, both of shape ``(K,)``, to :math:`L(w_0 + \theta_k p_{\mathrm{idx}_k})`."""


def line_loss(loss_of: BatchedLoss, w0: torch.Tensor, directions: torch.Tensor) -> LineLoss:
    r"""The loss along the lines :math:`w_0 + \theta p_i` through any :data:`BatchedLoss`."""
    dirs = directions.to(w0)

    def along(idx: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return loss_of(w0 + theta.to(w0)[:, None] * dirs[idx.to(w0.device)])

    return along


def mlp_line_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], directions: torch.Tensor,
                  *, loss_fn: Callable = F.cross_entropy, chunk_size: int = 64) -> LineLoss:
    r"""The loss along :math:`w_0 + \theta p_i` for directions in one layer :math:`k` of an MLP, fast.

    The pre-activation of layer :math:`k` is affine in that layer's parameters, so along a line

    .. math:: z(w_0 + \theta p) = z_0 + \theta A_p, \qquad z_0 = h W_0^\top + b_0,\quad
              A_p = h P_W^\top + p_b ,

    with :math:`h` the (unperturbed) input of layer :math:`k`. :math:`z_0` and every :math:`A_{p_i}`
    (``len(directions) * len(X) * out_features`` numbers) are computed once; each point then costs
    one addition plus the layers after :math:`k`, instead of a full forward pass.
    ``w_0`` is the current value of ``names`` in ``net``, which is not modified. ``loss_fn`` must
    accept logits of shape ``(K, C, n)`` with targets ``(K, n)`` (as ``F.cross_entropy`` does).
    """
    k = single_mlp_layer(net, names)
    if k is None:
        raise ValueError(f"mlp_line_loss needs an MLP and parameters of one layer, got {list(names)}; "
                         "use line_loss(batched_param_loss(...), w0, directions)")
    layers = list(net.layers)
    lin = layers[k]
    o, i_dim = lin.weight.shape
    n = len(X)
    with torch.no_grad():
        h = X.reshape(n, -1)
        for j in range(k):
            h = net.act(layers[j](h))
        z0 = lin(h)  # (n, o)
        dirs = directions.to(device=h.device, dtype=h.dtype)
        A = torch.zeros(len(dirs), n, o, dtype=h.dtype, device=h.device)
        i0 = 0
        for name in names:
            if name.endswith("weight"):
                Pw = dirs[:, i0:i0 + o * i_dim].reshape(len(dirs), o, i_dim)
                A += torch.einsum("ni,koi->kno", h, Pw)
                i0 += o * i_dim
            else:
                A += dirs[:, None, i0:i0 + o]
                i0 += o
        if i0 != dirs.shape[1]:
            raise ValueError(f"directions have {dirs.shape[1]} entries, parameters {list(names)} need {i0}")
    last = len(layers) - 1

    @torch.no_grad()
    def along(idx: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        idx = idx.to(h.device)
        theta = theta.to(device=h.device, dtype=h.dtype)
        out = []
        for c in range(0, len(idx), chunk_size):
            ic, tc = idx[c:c + chunk_size], theta[c:c + chunk_size]
            z = torch.addcmul(z0, tc[:, None, None], A[ic])  # (K, n, o)
            for j in range(k + 1, last):
                z = layers[j](net.act(z))
            if k < last:  # the output layer writes logits as (K, C, n): a much faster cross-entropy layout
                z = torch.matmul(layers[last].weight, net.act(z).transpose(1, 2))
                if layers[last].bias is not None:
                    z = z + layers[last].bias[:, None]
            else:
                z = z.transpose(1, 2)
            losses = loss_fn(z, y.expand(len(ic), n), reduction="none")  # (K, n)
            out.append(losses.mean(1))
        return torch.cat(out) if out else torch.zeros(0, device=h.device)

    return along


def make_line_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], directions: torch.Tensor,
                   *, loss_fn: Callable = F.cross_entropy, chunk_size: int = 64, method: str = "auto") -> LineLoss:
    """:func:`mlp_line_loss` when it applies (``method="auto"`` or ``"mlp"``), else (``"vmap"``)
    :func:`line_loss` over :func:`batched_param_loss`, both around the current weights of ``net``."""
    if method == "auto":
        method = "mlp" if single_mlp_layer(net, names) is not None else "vmap"
    if method == "mlp":
        return mlp_line_loss(net, X, y, names, directions, loss_fn=loss_fn, chunk_size=chunk_size)
    if method == "vmap":
        w0 = flatten(dict(net.named_parameters()), names)[0]
        return line_loss(batched_param_loss(net, X, y, names, loss_fn=loss_fn, chunk_size=chunk_size), w0,
                         directions)
    raise ValueError(f"method must be 'auto', 'mlp' or 'vmap', got {method!r}")


def naive_param_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                     loss_fn: Callable = F.cross_entropy) -> BatchedLoss:
    """The reference for :func:`batched_param_loss`: one model copy and forward per weight vector."""
    import copy

    @torch.no_grad()
    def loss_of(W: torch.Tensor) -> torch.Tensor:
        out = []
        for w in W:
            m = copy.deepcopy(net)
            params = dict(m.named_parameters())
            for n, t in unflatten(w, FlatSpec.of(params, names)).items():
                params[n].copy_(t)
            out.append(loss_fn(m(X), y))
        return torch.stack(out)

    return loss_of


# ----------------------------------------------------------------------------- profiles
def loss_profiles(along: LineLoss, idx: Sequence[int] | torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    r"""The profiles :math:`L_i(\theta_j) = L(w_0 + \theta_j p_i)` for directions ``idx``, shape ``(k, m)``.

    All ``k*m`` points are evaluated in one batched call of the :data:`LineLoss` ``along``.
    """
    idx = torch.as_tensor(idx, dtype=torch.long)
    m = len(thetas)
    L = along(idx.repeat_interleave(m), thetas.repeat(len(idx)))
    return L.reshape(len(idx), m)


@dataclass(frozen=True)
class ProfileWidths:
    r"""Crossings :math:`\theta^l < 0 < \theta^r` of the level and the widths :math:`F = \theta^r - \theta^l`.

    Directions whose profile stays below the level up to ``theta_max`` get ``nan``.
    """

    theta_left: torch.Tensor
    theta_right: torch.Tensor
    widths: torch.Tensor
    level: float
    evaluations: int


def profile_widths(along: LineLoss, num_directions: int, level: float, *, theta_init: float = 1e-2,
                   max_doublings: int = 40, num_bisect: int = 14) -> ProfileWidths:
    r"""Width :math:`F_i = \theta_i^r - \theta_i^l` of each profile at ``level`` (Feng & Tu 2021).

    For each direction :math:`p_i` (``i < num_directions``) and each side :math:`s = \pm 1`,
    :math:`t` doubles from ``theta_init`` until :math:`L(w_0 + s\,t\,p_i) \ge` ``level`` (the first
    doubling crossing), then ``num_bisect`` bisection steps on :math:`[t/2, t]` locate the crossing
    to a relative precision :math:`2^{-\text{num\_bisect}}`. All unresolved directions and sides are
    evaluated together in one batched call of ``along`` per step. Requires :math:`L(w_0) <` ``level``.
    """
    k = int(num_directions)
    probe = along(torch.zeros(1, dtype=torch.long), torch.zeros(1))
    device, dtype = probe.device, torch.float64
    which = torch.arange(k, device=device).repeat(2)  # right sides, then left sides
    sign = torch.cat([torch.ones(k, dtype=dtype, device=device), -torch.ones(k, dtype=dtype, device=device)])
    lo = torch.zeros(2 * k, dtype=dtype, device=device)
    hi = torch.full_like(lo, float("nan"))
    t = torch.full_like(lo, theta_init)
    evaluations = 0
    todo = torch.ones(2 * k, dtype=torch.bool, device=device)
    for _ in range(max_doublings + 1):
        idx = todo.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        L = along(which[idx], sign[idx] * t[idx]).to(device)
        evaluations += len(idx)
        above = L >= level
        hi[idx[above]] = t[idx[above]]
        lo[idx[~above]] = t[idx[~above]]
        todo[idx[above]] = False
        t[idx[~above]] *= 2
    idx = (~torch.isnan(hi)).nonzero().squeeze(1)
    a, b = lo[idx].clone(), hi[idx].clone()
    for _ in range(num_bisect):
        if len(idx) == 0:
            break
        mid = (a + b) / 2
        above = along(which[idx], sign[idx] * mid).to(device) >= level
        evaluations += len(idx)
        b = torch.where(above, mid, b)
        a = torch.where(above, a, mid)
    cross = torch.full_like(lo, float("nan"))
    cross[idx] = (a + b) / 2
    right, left = cross[:k], -cross[k:]
    return ProfileWidths(theta_left=left, theta_right=right, widths=right - left, level=float(level),
                         evaluations=evaluations)


# ----------------------------------------------------------------------------- power law
@dataclass(frozen=True)
class PowerLawFit:
    r"""OLS fit :math:`\log\sigma_i^2 = c - \psi \log F_i` over components ``first..last`` (1-based)."""

    psi: float
    intercept: float
    psi_ci: Interval  # pairs bootstrap over components
    spearman_rho: float
    spearman_p: float
    n: int  # components used (finite widths)
    n_dropped: int  # components in range without a finite width
    first: int
    last: int

    @property
    def slope(self) -> float:
        """The log-log slope :math:`-\\psi` (positive: variance grows with flatness, Einstein-like)."""
        return -self.psi

    def to_dict(self) -> dict:
        return {"psi": self.psi, "slope": self.slope, "intercept": self.intercept,
                "psi_ci": self.psi_ci.to_dict(), "spearman_rho": self.spearman_rho,
                "spearman_p": self.spearman_p, "n": self.n, "n_dropped": self.n_dropped,
                "components": [self.first, self.last]}


def _slope(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xm = x - x.mean(axis=axis, keepdims=True)
    ym = y - y.mean(axis=axis, keepdims=True)
    return (xm * ym).sum(axis=axis) / (xm * xm).sum(axis=axis)


def fit_power_law(widths, variances, *, components: Sequence[int] = (2, 100), confidence: float = 0.95,
                  n_resamples: int = 2000, seed: int = 0) -> PowerLawFit:
    r"""Fit :math:`\sigma_i^2 \propto F_i^{-\psi}` over components ``components[0]..components[1]``.

    Feng & Tu (2021) report :math:`\psi \approx 4` for SGD on MNIST; isotropic (Langevin) noise
    at equilibrium gives :math:`\sigma_i^2 = T/h_i \propto F_i^{2}`, i.e. :math:`\psi = -2`.
    ``psi`` is minus the OLS slope of :math:`\log\sigma^2` on :math:`\log F`; its CI is a
    percentile bootstrap over (component) pairs (``scipy.stats.bootstrap``, ``paired=True``),
    which treats components as exchangeable; ``spearman_rho`` is the rank correlation of
    :math:`F` and :math:`\sigma^2`. Components with a non-finite width are dropped and counted.
    """
    Fw = np.asarray(torch.as_tensor(widths).detach().cpu(), dtype=float).ravel()
    S = np.asarray(torch.as_tensor(variances).detach().cpu(), dtype=float).ravel()
    first, last = int(components[0]), int(components[1])
    if not 1 <= first < last <= len(S):
        raise ValueError(f"components must satisfy 1 <= first < last <= {len(S)}, got {components}")
    Fw, S = Fw[first - 1:last], S[first - 1:last]
    keep = np.isfinite(Fw) & (Fw > 0) & np.isfinite(S) & (S > 0)
    x, y = np.log(Fw[keep]), np.log(S[keep])
    if len(x) < 3:
        raise ValueError(f"only {len(x)} components with a finite width in {first}..{last}; "
                         "a power law needs at least 3")
    slope = float(_slope(x, y))
    intercept = float(y.mean() - slope * x.mean())
    if np.ptp(x) == 0:
        ci = Interval(-slope, -slope, -slope, confidence, "degenerate", len(x))
    else:
        res = sps.bootstrap((x, y), lambda a, b, axis=-1: -_slope(a, b, axis), paired=True, vectorized=True,
                            confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                            rng=np.random.default_rng(seed))
        ci = Interval(-slope, float(res.confidence_interval.low), float(res.confidence_interval.high),
                      confidence, "bootstrap-percentile (pairs over components)", len(x))
    rho, p = sps.spearmanr(x, y)
    return PowerLawFit(psi=-slope, intercept=intercept, psi_ci=ci, spearman_rho=float(rho),
                       spearman_p=float(p), n=int(len(x)), n_dropped=int((~keep).sum()),
                       first=first, last=last)
