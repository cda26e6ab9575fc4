"""Hessian-vector products, Lanczos, power iteration and Hutchinson against independent answers."""
from __future__ import annotations

import math

import pytest
import torch

from flatminima.core.device import configure_threads
from flatminima.curvature.hessian import (
    batched,
    dense_hessian,
    hessian_trace,
    hutchinson_trace,
    lanczos,
    make_hvp,
    params_of,
    power_iteration,
    top_eigenvalue,
)
from flatminima.nn.flat import flatten, unflatten
from flatminima.nn.models import make_model

configure_threads(1)  # the project's CPU policy: one torch thread per process


@pytest.fixture()
def tiny():
    """A 5-4-3-3 ReLU MLP (51 parameters) on 60 random points, in float64."""
    torch.manual_seed(0)
    net = make_model("mlp", (5,), 3, widths=(4, 3), seed=0).double()
    X = torch.randn(60, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (60,))
    return net, X, y


def test_flatten_then_unflatten_returns_the_same_tensors(tiny):
    net, _, _ = tiny
    p = params_of(net)
    flat, spec = flatten(p)
    assert flat.shape == (spec.dim,) == (sum(v.numel() for v in p.values()),)
    for k, v in unflatten(flat, spec).items():
        assert torch.equal(v, p[k])


@pytest.mark.parametrize("method", ["jvp", "double_backward"])
def test_hvp_equals_dense_hessian_times_vector_for_any_chunking(tiny, method):
    net, X, y = tiny
    H = dense_hessian(net, X, y)
    assert torch.allclose(H, H.T, atol=1e-10)
    for chunk in (7, 60, 1000):
        hvp, _, spec = make_hvp(net, X, y, chunk_size=chunk, method=method)
        v = torch.randn(spec.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(chunk))
        assert torch.allclose(hvp(v), H @ v, rtol=1e-8, atol=1e-10)


def test_vmapped_hvp_equals_loop_over_vectors(tiny):
    net, X, y = tiny
    hvp, _, spec = make_hvp(net, X, y, chunk_size=25, method="jvp")
    V = torch.randn(4, spec.dim, dtype=torch.float64)
    assert torch.allclose(batched(hvp)(V), torch.stack([hvp(v) for v in V]), rtol=1e-10, atol=1e-12)


def test_make_hvp_leaves_the_net_unchanged(tiny):
    net, X, y = tiny
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hvp, _, spec = make_hvp(net, X, y)
    hvp(torch.ones(spec.dim, dtype=torch.float64))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_lanczos_top_eigenvalues_match_dense_eigendecomposition(tiny):
    net, X, y = tiny
    evals = torch.linalg.eigvalsh(dense_hessian(net, X, y)).flip(0)
    res = top_eigenvalue(net, X, y, k=3, tol=1e-6)
    assert res.converged
    for got, want in zip(res.eigenvalues, evals[:3].tolist()):
        assert got == pytest.approx(want, rel=1e-4)
    # the a-posteriori bound holds and the Ritz value is a lower bound
    assert abs(res.top - evals[0].item()) <= max(res.error_bound[0], 1e-12) + 1e-12
    assert res.top <= evals[0].item() + 1e-10


def test_lanczos_stopping_rule_gives_the_requested_relative_error(tiny):
    net, X, y = tiny
    top = torch.linalg.eigvalsh(dense_hessian(net, X, y))[-1].item()
    for tol in (1e-2, 1e-3):
        res = top_eigenvalue(net, X, y, tol=tol)
        assert abs(res.top - top) / top <= tol


def test_lanczos_on_a_diagonal_quadratic_is_exact():
    """L(x) = x^T A x / 2 with known spectrum: top eigenvalues in closed form."""
    diag = torch.linspace(0.1, 10.0, 200, dtype=torch.float64)
    res = lanczos(lambda v: diag * v, 200, k=2, tol=1e-8, max_iter=200, dtype=torch.float64)
    assert res.eigenvalues == pytest.approx([10.0, diag[-2].item()], rel=1e-8)
    v = res.eigenvectors[0]
    assert abs(v[-1].item()) == pytest.approx(1.0, rel=1e-6)


def test_power_iteration_finds_the_dominant_eigenvalue_of_a_quadratic():
    diag = torch.tensor([5.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    res = power_iteration(lambda v: diag * v, 4, tol=1e-10, max_iter=500, dtype=torch.float64)
    assert res.top == pytest.approx(5.0, rel=1e-8)


def test_hutchinson_is_exact_for_a_diagonal_and_unbiased_for_a_dense_hessian(tiny):
    diag = torch.arange(1.0, 11.0, dtype=torch.float64)
    est, se = hutchinson_trace(lambda v: diag * v, 10, num_probes=5, dtype=torch.float64)
    assert est == pytest.approx(55.0, rel=1e-12) and se == pytest.approx(0.0, abs=1e-12)
    net, X, y = tiny
    H = dense_hessian(net, X, y)
    tr = H.trace().item()
    # Var(z^T H z) = 2 sum_{i != j} H_ij^2 for Rademacher z
    sd = math.sqrt(2 * ((H ** 2).sum() - (H.diag() ** 2).sum()).item())
    n = 4000
    est, se = hutchinson_trace(lambda v: H @ v, H.shape[0], num_probes=n, block=500, seed=1, dtype=torch.float64)
    assert se == pytest.approx(sd / math.sqrt(n), rel=0.1)
    assert abs(est - tr) < 4 * sd / math.sqrt(n)
    # the network-level wrapper draws the same probes, so it gives the same estimate (both HVP methods)
    for method in ("jvp", "double_backward"):
        est_net, _ = hessian_trace(net, X, y, num_probes=16, seed=2, method=method)
        est_dense, _ = hutchinson_trace(lambda v: H @ v, H.shape[0], num_probes=16, seed=2, dtype=torch.float64)
        assert est_net == pytest.approx(est_dense, rel=1e-8)


def test_hessian_of_a_linear_softmax_model_matches_closed_form():
    """Logistic regression: H = (1/n) sum_i (diag(p_i) - p_i p_i^T) kron x_i x_i^T (no bias)."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False)).double()
    X = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    P = torch.softmax(net(X), -1).detach()
    H = sum(torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(x, x)) for p, x in zip(P, X)) / len(X)
    assert torch.allclose(dense_hessian(net, X, y), H, atol=1e-12)
    assert top_eigenvalue(net, X, y, tol=1e-8).top == pytest.approx(torch.linalg.eigvalsh(H)[-1].item(), rel=1e-6)


# ----------------------------------------------------------------------------- an honest stopping rule
def _spectra(seed: int, n: int = 400) -> dict[str, torch.Tensor]:
    """Spectra whose top is hard for a stopping rule: clusters, near- and exact degeneracy, a close tail."""
    g = torch.Generator().manual_seed(seed)
    bulk = torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    out = {}
    for d in (1e-4, 5e-4, 1e-3, 3e-3, 1e-2, 3e-2):  # five top eigenvalues spaced by d
        e = bulk.clone()
        e[:5] = 1 - d * torch.arange(5, dtype=torch.float64)
        out[f"cluster-{d:g}"] = e
    e = bulk.clone()
    e[:3] = 1.0
    out["degenerate"] = e
    e = bulk.clone()
    e[0], e[1] = 1.0, 1.0 - 1e-6
    out["near-degenerate"] = e
    out["close-tail"] = torch.cat([torch.tensor([1.0, 0.98, 0.97, 0.9], dtype=torch.float64),
                                   torch.rand(n - 4, generator=g, dtype=torch.float64) * 0.85])
    out["indefinite"] = torch.cat([torch.tensor([1.0, 0.995, -1.2], dtype=torch.float64), bulk[3:] - 0.25])
    return out


def _rotated(e: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10_000 + seed)
    Q = torch.linalg.qr(torch.randn(len(e), len(e), generator=g, dtype=torch.float64))[0]
    return (Q * e) @ Q.T


@pytest.mark.parametrize("seed", range(400, 408))
def test_lanczos_never_reports_convergence_beyond_tol_on_clustered_spectra(seed):
    """Against dense float64 eigendecompositions (the spectra are constructed, so the truth is known)."""
    for name, e in _spectra(seed).items():
        A = _rotated(e, seed)
        top = float(e.max())
        for tol in (1e-2, 1e-3):
            res = lanczos(lambda v: A @ v, len(e), tol=tol, seed=seed, max_iter=200, dtype=torch.float64)
            err = abs(res.top - top) / top
            assert res.converged, (name, tol)
            assert err <= tol, f"{name}, tol {tol}: converged with true relative error {err:.2g}"
            assert res.top <= top + 1e-12  # a Ritz value is a lower bound


@pytest.mark.parametrize("seed", range(6))
def test_lanczos_error_within_tol_on_ten_class_relu_mlp_hessians(seed):
    """Dense torch.func.hessian of a 8-12-12-10 ReLU MLP (382 parameters) on 200 random points."""
    g = torch.Generator().manual_seed(seed)
    net = make_model("mlp", (8,), 10, widths=(12, 12), seed=seed).double()
    X = torch.randn(200, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (200,), generator=g)
    H = dense_hessian(net, X, y)
    top = torch.linalg.eigvalsh(H)[-1].item()
    hvp, _, spec = make_hvp(net, X, y)
    for tol in (1e-2, 1e-3):
        res = lanczos(hvp, spec.dim, tol=tol, seed=seed, dtype=torch.float64)
        assert res.converged and abs(res.top - top) / top <= tol
        assert res.top == pytest.approx(float(res.eigenvectors[0] @ H @ res.eigenvectors[0]), rel=1e-6)


def test_ritz_bound_uses_the_gap_only_once_the_neighbour_has_converged():
    from flatminima.curvature.hessian import _ritz_error_bounds

    # neighbour converged (r2 = 1e-6 <= tol * 0.5): Kato-Temple r^2 / gap
    assert _ritz_error_bounds([1.0, 0.5], [1e-3, 1e-6], 1, 1e-3)[0] == pytest.approx(1e-6 / (0.5 - 1e-6))
    # neighbour not converged: the plain residual bound, whatever the Ritz gap looks like
    assert _ritz_error_bounds([1.0, 0.5], [1e-3, 1e-2], 1, 1e-3)[0] == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- spectral density
def test_slq_moments_equal_the_quadratic_forms_and_estimate_trace_of_powers():
    """Gauss quadrature is exact for v^T H^k v, k < 2m; averaged over probes it estimates tr(H^k)/n."""
    from flatminima.curvature.hessian import spectral_density

    n = 300
    g = torch.Generator().manual_seed(1)
    e = torch.cat([torch.tensor([5.0, 3.0, -1.0], dtype=torch.float64), torch.rand(n - 3, generator=g, dtype=torch.float64)])
    A = _rotated(e, 1)
    dens = spectral_density(lambda v: A @ v, n, num_probes=1, num_iter=12, seed=3, dtype=torch.float64)
    gen = torch.Generator(device="cpu").manual_seed(3)
    v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).double()
    v = v / v.norm()
    for k in range(0, 8):
        assert dens.moment(k) == pytest.approx(float(v @ torch.linalg.matrix_power(A, k) @ v), rel=1e-8, abs=1e-10)
    many = spectral_density(lambda v: A @ v, n, num_probes=200, num_iter=12, seed=4, dtype=torch.float64)
    for k in (1, 2, 3):
        assert many.moment(k) == pytest.approx(float((e ** k).mean()), rel=0.05)
    grid = torch.linspace(-3, 7, 2001)
    rho = many.on_grid(grid, 0.05)
    assert float(torch.trapezoid(rho, grid.double())) == pytest.approx(1.0, abs=1e-3)
