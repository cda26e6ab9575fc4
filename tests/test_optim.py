"""Tests of flatminima.nn.optim: reductions to SGD, vmapped replicas, determinism, smoothed-error descent."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from flatminima.data.mixture import sample_mixture
from flatminima.nn.models import make_model
from flatminima.nn.optim import (
    coupling_schedule,
    entropy_sgd,
    replicated_sgd,
    replicated_sgd_loop,
    sgd,
    smoothed_error,
    smoothed_error_descent,
)
from flatminima.nn.train import DivergenceError


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(128, 6, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    net = make_model("mlp", (6,), 2, widths=(16,), seed=1)
    return net, X, y


def _close(a, b, atol=1e-6):
    return all(torch.allclose(a[k], b[k], atol=atol) for k in a)


def test_sgd_matches_an_independent_torch_optim_loop(problem):
    net, X, y = problem
    res = sgd(net, X, y, lr=0.1, batch_size=16, num_steps=25, seed=3)
    ref = make_model("mlp", (6,), 2, widths=(16,), seed=1)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(3)
    for _ in range(25):
        idx = torch.randint(len(X), (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(ref(X[idx]), y[idx]).backward()
        opt.step()
    assert _close(res.params, dict(ref.named_parameters()))
    assert res.grad_evals == 25


def test_entropy_sgd_without_coupling_noise_or_averaging_is_sgd(problem):
    net, X, y = problem
    e = entropy_sgd(net, X, y, lr=1.0, sgld_lr=0.1, L=4, gamma0=0.0, gamma_max=0.0, noise=0.0, avg=1.0,
                    batch_size=16, num_steps=6, seed=2)
    s = sgd(net, X, y, lr=0.1, batch_size=16, num_steps=24, seed=2)
    assert e.grad_evals == s.grad_evals == 24
    assert _close(e.params, s.params)


def test_entropy_sgd_coupling_changes_the_trajectory(problem):
    net, X, y = problem
    kw = dict(lr=1.0, sgld_lr=0.1, L=4, noise=0.0, avg=1.0, batch_size=16, num_steps=6, seed=2)
    a = entropy_sgd(net, X, y, gamma0=0.0, gamma_max=0.0, **kw)
    b = entropy_sgd(net, X, y, gamma0=1.0, gamma_max=1.0, **kw)
    assert not _close(a.params, b.params)


def test_replicated_sgd_with_one_replica_is_sgd(problem):
    net, X, y = problem
    r = replicated_sgd(net, X, y, lr=0.1, num_replicas=1, gamma0=0.5, gamma_max=5.0, batch_size=16,
                       num_steps=20, seed=4)
    s = sgd(net, X, y, lr=0.1, batch_size=16, num_steps=20, seed=4)
    assert _close(r.params, s.params)


def test_vmapped_replicas_equal_the_python_loop(problem):
    net, X, y = problem
    kw = dict(lr=0.1, num_replicas=3, gamma0=0.1, gamma_max=2.0, batch_size=16, num_steps=15, seed=5)
    a, b = replicated_sgd(net, X, y, **kw), replicated_sgd_loop(net, X, y, **kw)
    assert _close(a.params, b.params, atol=1e-5) and _close(a.replicas, b.replicas, atol=1e-5)
    assert a.grad_evals == 45


def test_strong_coupling_pulls_replicas_together(problem):
    net, X, y = problem
    kw = dict(lr=0.1, num_replicas=4, batch_size=8, num_steps=60, seed=6)
    free = replicated_sgd(net, X, y, gamma0=0.0, gamma_max=0.0, **kw)
    tied = replicated_sgd(net, X, y, gamma0=5.0, gamma_max=5.0, **kw)
    spread = lambda r: sum(float((p - p.mean(0)).pow(2).sum()) for p in r.replicas.values())  # noqa: E731
    assert spread(tied) < 0.05 * spread(free)


@pytest.mark.parametrize("algo", ["sgd", "entropy", "replicated"])
def test_optimizers_are_deterministic_under_a_seed_and_leave_the_net_alone(problem, algo):
    net, X, y = problem
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    run = {
        "sgd": lambda s: sgd(net, X, y, lr=0.1, batch_size=8, num_steps=10, seed=s),
        "entropy": lambda s: entropy_sgd(net, X, y, sgld_lr=0.1, L=3, noise=1e-2, batch_size=8, num_steps=4, seed=s),
        "replicated": lambda s: replicated_sgd(net, X, y, lr=0.1, num_replicas=3, batch_size=8, num_steps=5, seed=s),
    }[algo]
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not _close(a.params, c.params, atol=0)
    assert all(torch.equal(p, before[k]) for k, p in net.named_parameters())


def test_divergence_raises(problem):
    net, X, y = problem
    with pytest.raises(DivergenceError):
        sgd(net, X * 1e3, y, lr=1e6, batch_size=16, num_steps=50, seed=0)


def test_coupling_schedule_is_exponential_from_gamma0_to_gamma_max():
    g = coupling_schedule(0.01, 10.0, 4)
    assert g[0] == pytest.approx(0.01) and g[-1] == pytest.approx(10.0)
    assert g[1] / g[0] == pytest.approx(g[2] / g[1])


def test_large_sigma_smoothing_recovers_the_normalised_hebbian_direction():
    g = torch.Generator().manual_seed(0)
    tr = sample_mixture(300, 100, Delta=0.5, generator=g, dtype=torch.float64)
    w0 = torch.randn(100, generator=g, dtype=torch.float64)
    w = smoothed_error_descent(tr.X, tr.y, w0, sigma=100.0, num_steps=400, lr=0.3)
    hebb = tr.y @ (tr.X / tr.X.norm(dim=1, keepdim=True))
    assert float(w @ hebb / hebb.norm()) > 0.999
    assert float(w.norm()) == pytest.approx(1.0)


def test_smoothed_error_descent_lowers_its_objective():
    g = torch.Generator().manual_seed(1)
    tr = sample_mixture(200, 100, Delta=0.5, generator=g, dtype=torch.float64)
    w0 = torch.randn(100, generator=g, dtype=torch.float64)
    w = smoothed_error_descent(tr.X, tr.y, w0, sigma=0.1, num_steps=200)
    assert float(smoothed_error(tr.X, tr.y, w, 0.1)) < float(smoothed_error(tr.X, tr.y, w0, 0.1)) - 0.05
