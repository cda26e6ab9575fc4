r"""Hessian-vector products, top eigenvalues (Lanczos) and traces (Hutchinson) of a training loss.

Everything works on a network's parameters as **one flat vector** :math:`\theta\in\mathbb R^P`
through :func:`torch.func.functional_call`, so the model passed in is never modified. The loss
is the mean cross-entropy over ``(X, y)``, accumulated over data chunks so memory stays bounded:

.. math:: L(\theta) = \frac1n \sum_{c} \sum_{i\in c} \ell(f_\theta(x_i), y_i),
          \qquad H v = \sum_c \frac{n_c}{n}\, \nabla^2 L_c(\theta)\, v .

The Hessian-vector product is Pearlmutter's :math:`R\{\cdot\}` operator (Pearlmutter, 1994),
computed either by double backward through a gradient graph kept for the point (the default:
about 1.4-1.8 gradients per product on CPU) or forward-over-reverse (``jvp`` of ``grad``, about 3
gradients, nothing kept, batchable with :func:`torch.vmap`); see ``benchmarks/bench_hessian.py``.
The top eigenvalue comes from Lanczos with full re-orthogonalisation and an a-posteriori error
bound (:func:`lanczos`); a PyHessian-style power iteration is kept as the reference method
(:func:`power_iteration`). The trace is Hutchinson's estimator (Hutchinson, 1989) with
Rademacher probes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap
from torch.nn import functional as F

from flatminima.nn.flat import FlatSpec, flatten, unflatten

Params = dict[str, torch.Tensor]
MatVec = Callable[[torch.Tensor], torch.Tensor]

LANCZOS_WINDOW = 5
"""Iterations over which the top Ritz values must be stable before :func:`lanczos` stops."""
LANCZOS_STABLE = 0.1
"""Largest change over the window, in units of ``tol``, of each top Ritz value (relative)."""
HVP_METHODS = ("jvp", "double_backward")


# ----------------------------------------------------------------------------- parameters (flat: flatminima.nn.flat)
def params_of(net: nn.Module) -> Params:
    """Detached copies of ``net``'s parameters, by name (the model itself is not touched).

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.

    Returns
    -------
    dict of str to torch.Tensor
        The parameters, detached and cloned.
    """
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
    return [(i, min(n, i + chunk_size)) for i in range(0, n, chunk_size)]


def flat_loss_fn(net: nn.Module, spec: FlatSpec, loss_fn=F.cross_entropy) -> Callable:
    r"""``f(flat, X, y)``: mean loss of ``net`` with parameters ``unflatten(flat)`` on ``(X, y)``.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    spec : FlatSpec
        The layout of the flat vector (from :func:`flatten`).
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.

    Returns
    -------
    callable
        ``f(flat, X, y) -> torch.Tensor``, a scalar, differentiable in ``flat``.
    """
    def f(flat: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(net, unflatten(flat, spec), (X,)), y)
    return f


def loss_value(net: nn.Module, flat: torch.Tensor, spec: FlatSpec, X: torch.Tensor, y: torch.Tensor,
               *, chunk_size: int = 8192) -> float:
    """Mean loss :math:`L(\\theta)` over ``(X, y)``, chunked, without gradients.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    flat : torch.Tensor
        The flat parameter vector :math:`\\theta`.
    spec : FlatSpec
        Its layout.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    chunk_size : int
        Examples per chunk (bounds memory; the result does not depend on it beyond rounding).

    Returns
    -------
    float
        The mean loss.
    """
    f = flat_loss_fn(net, spec)
    n = len(X)
    with torch.no_grad():
        return float(sum(f(flat, X[a:b], y[a:b]) * (b - a) for a, b in _chunks(n, chunk_size)) / n)


def loss_and_grad(net: nn.Module, flat: torch.Tensor, spec: FlatSpec, X: torch.Tensor, y: torch.Tensor,
                  *, chunk_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(L(\theta), \nabla L(\theta))` over ``(X, y)`` with :func:`torch.func.grad`, chunked.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    flat : torch.Tensor
        The flat parameter vector :math:`\theta`.
    spec : FlatSpec
        Its layout.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    chunk_size : int
        Examples per chunk (bounds memory; the result does not depend on it beyond rounding).

    Returns
    -------
    loss : torch.Tensor
        The mean loss, a scalar.
    grad : torch.Tensor
        Its gradient, a flat vector like ``flat``.
    """
    from torch.func import grad_and_value

    gv = grad_and_value(flat_loss_fn(net, spec))
    n = len(X)
    total_g, total_l = torch.zeros_like(flat), torch.zeros((), device=flat.device, dtype=flat.dtype)
    for a, b in _chunks(n, chunk_size):
        g, l = gv(flat, X[a:b], y[a:b])
        total_g += g * ((b - a) / n)
        total_l += l * ((b - a) / n)
    return total_l, total_g


# ----------------------------------------------------------------------------- HVP
def make_hvp(net: nn.Module, X: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
             *, chunk_size: int = 8192, method: str = "double_backward") -> tuple[MatVec, torch.Tensor, FlatSpec]:
    r"""The Hessian-vector product :math:`v \mapsto \nabla^2 L(\theta) v` of the mean loss on ``(X, y)``.

    ``method="jvp"``: forward-over-reverse, ``jvp(grad(L), (θ,), (v,))`` per data chunk
    (:mod:`torch.func`). ``method="double_backward"``: PyHessian's double backprop, keeping the
    gradient graph of each chunk between calls (Pearlmutter, 1994), so each product costs one
    backward pass; it is the default because it measured about 2x faster per product on CPU
    (``benchmarks/bench_hessian.py``), at the price of keeping the graph in memory. ``jvp`` keeps
    nothing between calls and can be batched over vectors with :func:`batched`. ``params``
    defaults to the parameters of ``net``. Returns ``(hvp, theta, spec)``; ``hvp`` maps a flat vector to a flat vector.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point :math:`\theta`, by parameter name (default: ``net``'s own parameters).
    chunk_size : int
        Examples per chunk (bounds memory; the result does not depend on it beyond rounding).
    method : {'double_backward', 'jvp'}
        How the product is computed (:data:`HVP_METHODS`).

    Returns
    -------
    hvp : callable
        :math:`v \mapsto \nabla^2 L(\theta) v` on flat vectors.
    theta : torch.Tensor
        The flat point :math:`\theta`.
    spec : FlatSpec
        Its layout.

    Raises
    ------
    ValueError
        For a ``method`` not in :data:`HVP_METHODS`.
    """
    if method not in HVP_METHODS:
        raise ValueError(f"method must be one of {', '.join(HVP_METHODS)}, got {method!r}")
    params = params_of(net) if params is None else {k: v.detach() for k, v in params.items()}
    theta, spec = flatten(params)
    f = flat_loss_fn(net, spec)
    n = len(X)
    parts = _chunks(n, chunk_size)
    if method == "jvp":
        g = grad(f)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            out = None  # no in-place accumulation, so that torch.vmap can batch over v
            for a, b in parts:
                term = jvp(lambda t: g(t, X[a:b], y[a:b]), (theta,), (v,))[1] * ((b - a) / n)
                out = term if out is None else out + term
            return out
        return hvp, theta, spec

    leaf = theta.clone().requires_grad_(True)
    grads = []
    for a, b in parts:
        loss = f(leaf, X[a:b], y[a:b]) * ((b - a) / n)
        grads.append(torch.autograd.grad(loss, leaf, create_graph=True)[0])

    def hvp_db(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(theta)
        for gc in grads:
            out += torch.autograd.grad(gc, leaf, grad_outputs=v, retain_graph=True)[0]
        return out.detach()
    return hvp_db, theta, spec


def batched(matvec: MatVec) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply a ``method="jvp"`` HVP to the rows of a ``(k, P)`` block at once with :func:`torch.vmap`.

    Parameters
    ----------
    matvec : callable
        A ``method="jvp"`` HVP from :func:`make_hvp`.

    Returns
    -------
    callable
        ``(k, P)`` block to ``(k, P)`` block, row by row.
    """
    return vmap(matvec)


def dense_hessian(net: nn.Module, X: torch.Tensor, y: torch.Tensor,
                  params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The full ``(P, P)`` Hessian by :func:`torch.func.hessian` (tiny nets only: tests, checks).

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point :math:`\\theta`, by parameter name (default: ``net``'s own parameters).

    Returns
    -------
    torch.Tensor
        :math:`\\nabla^2 L(\\theta)`, shape ``(P, P)``.
    """
    params = params_of(net) if params is None else dict(params)
    theta, spec = flatten(params)
    return torch.func.hessian(flat_loss_fn(net, spec))(theta, X, y)


# ----------------------------------------------------------------------------- eigenvalues
@dataclass(frozen=True)
class EigResult:
    """Top eigenvalues (descending), their vectors ``(k, P)``, the matvecs spent and whether the bound met tol."""

    eigenvalues: list[float]
    eigenvectors: torch.Tensor
    num_matvecs: int
    converged: bool
    error_bound: list[float]

    @property
    def top(self) -> float:
        return self.eigenvalues[0]


def _start_vector(dim: int, seed: int, device, dtype) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / v.norm()


def _ritz_error_bounds(theta: list[float], resid: list[float], k: int, tol: float) -> list[float]:
    r"""Error bounds of the top ``k`` Ritz values that are honest on clustered spectra.

    ``theta`` are all Ritz values (descending) and ``resid`` their residual norms
    :math:`r_i = |\beta_m s_{i,m}|`. Every Ritz value has an eigenvalue within :math:`r_i`
    (Parlett 1998, Thm 4.5.1). The quadratic (Kato-Temple) bound :math:`r_i^2/\delta_i` needs the
    gap :math:`\delta_i` from :math:`\theta_i` to the *rest of the spectrum*; a neighbouring Ritz value
    stands for the neighbouring eigenvalue only once it has itself converged
    (:math:`r_j \le` ``tol`` :math:`|\theta_j|`), so only then is
    :math:`\delta_i = |\theta_i - \theta_j| - r_j` used; otherwise the bound is :math:`r_i`.
    """
    m = len(theta)
    out = []
    for i in range(min(k, m)):
        r = resid[i]
        gaps = []
        for j in (i - 1, i + 1):
            if 0 <= j < m:
                if resid[j] > tol * abs(theta[j]):
                    gaps = None  # an unconverged neighbour: its Ritz value says nothing about the true gap
                    break
                gaps.append(abs(theta[i] - theta[j]) - resid[j])
        gap = min(gaps) if gaps else 0.0
        out.append(min(r, r * r / gap) if gap > 0 else r)
    return out


def lanczos(matvec: MatVec, dim: int, *, k: int = 1, max_iter: int = 100, tol: float = 1e-3, min_iter: int = 20,
            seed: int = 0, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EigResult:
    r"""The ``k`` largest (algebraic) eigenvalues of a symmetric operator by Lanczos.

    Builds the Krylov basis :math:`Q_m` with full re-orthogonalisation (two Gram-Schmidt passes)
    and the tridiagonal :math:`T_m = Q_m^\top H Q_m` (Golub & Van Loan, Alg. 10.1.1). It stops at the
    first :math:`m \ge` ``min_iter`` where, for each of the top ``k`` Ritz values :math:`\theta_i`,

    1. the error bound of :func:`_ritz_error_bounds` is at most ``tol`` :math:`\cdot|\theta_i|`: the
       residual :math:`r_i = |\beta_m s_{i,m}|` (Parlett 1998, Thm 4.5.1), refined to the Kato-Temple
       :math:`r_i^2/\delta_i` only when the neighbouring Ritz value has converged itself, and
    2. :math:`\theta_i` moved by at most ``LANCZOS_STABLE * tol`` :math:`\cdot|\theta_i|` over the last
       ``LANCZOS_WINDOW`` iterations.

    Why both: a residual bound says *some* eigenvalue lies within :math:`r_i`, not that it is
    :math:`\lambda_1`. On a cluster :math:`\lambda_1 \approx \lambda_2` the Ritz vector mixes the two and its
    residual can be many times smaller than its error while the Ritz value still creeps up (2);
    and when the start vector barely overlaps the top eigenvectors no rule can see them for the
    first few iterations (``min_iter``). Checked against dense float64 eigendecompositions on
    clustered, near-degenerate and exactly degenerate spectra of dimension 400 and on 10-class ReLU
    MLP Hessians (``tests/test_hessian.py``): with ``k = 1`` no run reports ``converged`` with a true
    relative error above ``tol``. For ``k > 1`` a single-vector Krylov method cannot resolve the
    multiplicity of a degenerate eigenvalue; ``converged`` is then no guarantee. The Ritz values
    are lower bounds of the true top eigenvalues (Cauchy interlacing).

    Parameters
    ----------
    matvec : callable
        The symmetric operator, a flat ``(dim,)`` vector to a flat vector (e.g. from :func:`make_hvp`).
    dim : int
        Its dimension :math:`P`.
    k : int
        Number of eigenvalues.
    max_iter : int
        Largest Krylov dimension.
    tol : float
        Relative residual bound at which a Ritz value counts as converged.
    min_iter : int
        Iterations before convergence is tested.
    seed : int
        Seed of the random start or probes.
    device, dtype : optional
        Device and dtype of the vectors (default: ``"cpu"``, ``torch.float32``).

    Returns
    -------
    EigResult
        Eigenvalues (descending), Ritz vectors, iterations, convergence and residual bounds.
    """
    if k < 1 or max_iter < k:
        raise ValueError(f"need 1 <= k <= max_iter, got k={k}, max_iter={max_iter}")
    max_iter = min(max_iter, dim)
    Q = torch.zeros(max_iter + 1, dim, device=device, dtype=dtype)
    Q[0] = _start_vector(dim, seed, device, dtype)
    alphas, betas = [], []
    theta = torch.zeros(0, dtype=torch.float64)
    S = torch.zeros(0, 0, dtype=torch.float64)
    bounds: list[float] = [math.inf] * k
    converged = False
    m = 0
    history: list[list[float]] = []
    for j in range(max_iter):
        w = matvec(Q[j])
        a = float(w @ Q[j])
        w = w - a * Q[j] - (betas[-1] * Q[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # full re-orthogonalisation
            w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
        b = float(w.norm())
        alphas.append(a)
        m = j + 1
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        theta, S = evals.flip(0), evecs.flip(1)
        if m >= k:
            bounds = _ritz_error_bounds(theta.tolist(), (b * S[-1, :].abs()).tolist(), k, tol)
            top = theta.tolist()[:k]
            history.append(top)
            ok = m >= min_iter and all(bd <= tol * abs(t) for bd, t in zip(bounds, top))
            if ok:  # an unresolved cluster shows as a top Ritz value that still creeps up
                ok = len(history) > LANCZOS_WINDOW and all(
                    abs(new - old) <= LANCZOS_STABLE * tol * abs(new) for new, old in zip(top, history[-1 - LANCZOS_WINDOW]))
            if ok:
                converged = True
                break
        if b < 1e-10 * max(1.0, abs(a)):  # invariant subspace found: Ritz values are exact
            bounds = [0.0] * min(k, m)
            converged = m >= k
            break
        betas.append(b)
        Q[j + 1] = w / b
    kk = min(k, m)
    vecs = (S[:, :kk].T.to(dtype=dtype, device=device) @ Q[:m]) if m else Q[:0]
    return EigResult(theta[:kk].tolist(), vecs, m, converged, bounds[:kk])


def power_iteration(matvec: MatVec, dim: int, *, max_iter: int = 100, tol: float = 1e-3, seed: int = 0,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EigResult:
    r"""PyHessian's power iteration: :math:`v \leftarrow Hv/\|Hv\|`, stop when the Rayleigh quotient
    changes by less than ``tol`` relative (Yao et al., 2020). Finds the eigenvalue largest in
    modulus; its stopping rule is a heuristic, not an error bound.

    Parameters
    ----------
    matvec : callable
        The symmetric operator, a flat ``(dim,)`` vector to a flat vector (e.g. from :func:`make_hvp`).
    dim : int
        Its dimension :math:`P`.
    max_iter : int
        Largest number of products.
    tol : float
        Relative change of the Rayleigh quotient at which it stops.
    seed : int
        Seed of the random start or probes.
    device, dtype : optional
        Device and dtype of the vectors (default: ``"cpu"``, ``torch.float32``).

    Returns
    -------
    EigResult
        The dominant eigenvalue and vector (no residual bound: NaN).
    """
    v = _start_vector(dim, seed, device, dtype)
    eig, n = None, 0
    converged = False
    for n in range(1, max_iter + 1):
        Hv = matvec(v)
        new = float(Hv @ v)
        v = Hv / Hv.norm()
        if eig is not None and abs(new - eig) / (abs(eig) + 1e-6) < tol:
            eig, converged = new, True
            break
        eig = new
    return EigResult([eig], v[None], n, converged, [math.nan])


def hutchinson_trace(matvec: MatVec, dim: int, *, num_probes: int = 32, block: int = 8, seed: int = 0,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     batched_matvec: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
    r"""Hutchinson's estimator :math:`\operatorname{tr} H \approx \frac1m\sum_{j=1}^m z_j^\top H z_j`,
    :math:`z_j` Rademacher (Hutchinson, 1989). Returns ``(estimate, standard error)``.

    Probes go ``block`` at a time through ``batched_matvec`` (e.g. :func:`batched`) when given.
    The estimator is unbiased with variance :math:`2\sum_{i\ne j} H_{ij}^2` per probe.

    Parameters
    ----------
    matvec : callable
        The symmetric operator, a flat ``(dim,)`` vector to a flat vector (e.g. from :func:`make_hvp`).
    dim : int
        Its dimension :math:`P`.
    num_probes : int
        Number :math:`m` of Rademacher probes :math:`z_j`.
    block : int
        Probes per call of ``batched_matvec``.
    seed : int
        Seed of the random start or probes.
    device, dtype : optional
        Device and dtype of the vectors (default: ``"cpu"``, ``torch.float32``).
    batched_matvec : callable, optional
        A block version of ``matvec`` (:func:`batched`), used when given.

    Returns
    -------
    estimate : float
        The trace estimate.
    se : float
        Its standard error over the probes.
    """
    if num_probes < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    samples = []
    done = 0
    while done < num_probes:
        m = min(block, num_probes - done)
        Z = (torch.randint(0, 2, (m, dim), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        HZ = batched_matvec(Z) if batched_matvec is not None else torch.stack([matvec(z) for z in Z])
        samples.append((Z * HZ).sum(1).double().cpu())
        done += m
    s = torch.cat(samples)
    se = float(s.std(unbiased=True) / math.sqrt(len(s))) if len(s) > 1 else math.nan
    return float(s.mean()), se


# ----------------------------------------------------------------------------- convenience
def top_eigenvalue(net: nn.Module, X: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
                   *, k: int = 1, tol: float = 1e-3, max_iter: int = 100, seed: int = 0,
                   chunk_size: int = 8192, method: str = "double_backward") -> EigResult:
    r""":math:`\lambda_{\max}(\nabla^2 L)` (top ``k``) of the mean loss on ``(X, y)`` by :func:`lanczos`.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point :math:`\theta`, by parameter name (default: ``net``'s own parameters).
    k : int
        Number of top eigenvalues.
    tol, max_iter : float, int
        As in :func:`lanczos`.
    seed : int
        Seed of the random start or probes.
    chunk_size : int
        Examples per chunk (bounds memory; the result does not depend on it beyond rounding).
    method : {'double_backward', 'jvp'}
        How the product is computed (:data:`HVP_METHODS`, see :func:`make_hvp`).

    Returns
    -------
    EigResult
        From :func:`lanczos`.
    """
    hvp, theta, spec = make_hvp(net, X, y, params, chunk_size=chunk_size, method=method)
    return lanczos(hvp, spec.dim, k=k, tol=tol, max_iter=max_iter, seed=seed, device=theta.device, dtype=theta.dtype)


def hessian_trace(net: nn.Module, X: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
                  *, num_probes: int = 32, seed: int = 0, chunk_size: int = 8192,
                  method: str = "double_backward") -> tuple[float, float]:
    r""":math:`\operatorname{tr}\nabla^2 L` by :func:`hutchinson_trace`; ``(estimate, se)``.

    With ``method="jvp"`` the probes are vmapped (:func:`batched`), otherwise looped.

    Parameters
    ----------
    net : torch.nn.Module
        The network; its parameters are not modified.
    X, y : torch.Tensor
        Inputs and targets of the mean loss.
    params : mapping of str to torch.Tensor, optional
        The point :math:`\theta`, by parameter name (default: ``net``'s own parameters).
    num_probes : int
        As in :func:`hutchinson_trace`.
    seed : int
        Seed of the random start or probes.
    chunk_size : int
        Examples per chunk (bounds memory; the result does not depend on it beyond rounding).
    method : {'double_backward', 'jvp'}
        How the product is computed (:data:`HVP_METHODS`, see :func:`make_hvp`).

    Returns
    -------
    estimate : float
        The trace estimate.
    se : float
        Its standard error.
    """
    hvp, theta, spec = make_hvp(net, X, y, params, chunk_size=chunk_size, method=method)
    return hutchinson_trace(hvp, spec.dim, num_probes=num_probes, seed=seed, device=theta.device,
                            dtype=theta.dtype, batched_matvec=batched(hvp) if method == "jvp" else None)


# ----------------------------------------------------------------------------- spectral density
@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Gauss nodes ``(probes, m)`` and weights summing to 1."""

    nodes: torch.Tensor
    weights: torch.Tensor

    def moment(self, k: int) -> float:
        r""":math:`\frac1{n_v}\sum_v \sum_j \tau_{vj}^2 \theta_{vj}^k`, an estimate of :math:`\operatorname{tr}(H^k)/P`."""
        return float((self.weights * self.nodes ** k).sum(1).mean())

    def on_grid(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        r"""The density smoothed by a Gaussian of width ``sigma``: :math:`\frac1{n_v}\sum_{v,j}\tau_{vj}^2\,
        \mathcal N(t;\theta_{vj},\sigma^2)` on ``grid`` (it integrates to 1)."""
        g = grid.double()[:, None, None]
        k = torch.exp(-0.5 * ((g - self.nodes[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        return (k * self.weights[None]).sum(-1).mean(-1)


def spectral_density(matvec: MatVec, dim: int, *, num_probes: int = 4, num_iter: int = 40, seed: int = 0,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> SpectralDensity:
    r"""Hessian eigenvalue density by stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani,
    Krishnan & Xiao 2019, Sec. 2; PyHessian's ``density``).

    For each Rademacher probe :math:`v` (normalised), ``num_iter`` Lanczos steps with full
    re-orthogonalisation give :math:`T_m = S\Theta S^\top`; the Gauss quadrature nodes are
    :math:`\theta_j` and the weights :math:`\tau_j^2 = S_{1j}^2`, so that
    :math:`\sum_j \tau_j^2 \theta_j^k = v^\top H^k v` exactly for :math:`k < 2m` and, averaged over
    probes, estimates :math:`\operatorname{tr}(H^k)/P` without bias.

    Parameters
    ----------
    matvec : callable
        The symmetric operator, a flat ``(dim,)`` vector to a flat vector (e.g. from :func:`make_hvp`).
    dim : int
        Its dimension :math:`P`.
    num_probes : int
        Number of random starting vectors (the density is their average).
    num_iter : int
        Lanczos steps per probe (nodes of each quadrature).
    seed : int
        Seed of the random start or probes.
    device, dtype : optional
        Device and dtype of the vectors (default: ``"cpu"``, ``torch.float32``).

    Returns
    -------
    SpectralDensity
        Quadrature nodes and weights per probe.
    """
    if num_probes < 1 or num_iter < 1:
        raise ValueError(f"num_probes and num_iter must be >= 1, got {num_probes}, {num_iter}")
    m = min(num_iter, dim)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    nodes, weights = [], []
    for _ in range(num_probes):
        v = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)
        Q = torch.zeros(m, dim, device=device, dtype=dtype)
        Q[0] = v / v.norm()
        alphas, betas = [], []
        for j in range(m):
            w = matvec(Q[j])
            a = float(w @ Q[j])
            alphas.append(a)
            if j == m - 1:
                break
            for _ in range(2):
                w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
            b = float(w.norm())
            if b < 1e-10 * max(1.0, abs(a)):  # an invariant subspace: the quadrature is exact already
                break
            betas.append(b)
            Q[j + 1] = w / b
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        ev, S = torch.linalg.eigh(T)
        pad = m - len(ev)  # pad with zero-weight nodes so every probe has m nodes
        nodes.append(torch.cat([ev, ev.new_full((pad,), float(ev[-1]))]))
        weights.append(torch.cat([S[0] ** 2, S.new_zeros(pad)]))
    return SpectralDensity(torch.stack(nodes), torch.stack(weights))
