"""Tests of flatminima.landscape.noise: Langevin equilibrium (Monte-Carlo) and the SGD temperature."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from flatminima.landscape.noise import langevin_trajectory, minibatch_gradient_variance, sgd_temperature
from flatminima.nn.models import MLP
from flatminima.nn.train import DivergenceError


def test_langevin_on_a_quadratic_reaches_the_equilibrium_variance():
    # L = sum_chains sum_j h_j w_j^2 / 2: independent chains, one per row
    h = torch.tensor([1.0, 4.0, 10.0], dtype=torch.float64)
    lr, T, chains = 0.05, 0.01, 4000
    params = {"w": torch.zeros(chains, 3, dtype=torch.float64)}
    final, rec = langevin_trajectory(lambda p: 0.5 * (p["w"] ** 2 * h).sum(), params, lr=lr, temperature=T,
                                     num_steps=600, record=lambda p: p["w"][:, 0], record_every=300, seed=0)
    var = final["w"].var(0)
    exact = T / (h * (1 - lr * h / 2))  # stationary variance of the discrete chain
    torch.testing.assert_close(var, exact, rtol=0.08, atol=0)
    # and the continuous-time Einstein relation T/h holds where lr*h is small
    assert float(var[0]) == pytest.approx(T / 1.0, rel=0.1)
    assert rec.shape == (2, chains)
    assert torch.equal(params["w"], torch.zeros(chains, 3, dtype=torch.float64))  # input not changed


def test_langevin_at_zero_temperature_is_gradient_descent():
    h = torch.tensor([0.5, 2.0])
    w = torch.tensor([1.0, -1.0])
    final, rec = langevin_trajectory(lambda p: 0.5 * (p["w"] ** 2 * h).sum(), {"w": w}, lr=0.1, temperature=0.0,
                                     num_steps=10, record=lambda p: p["w"], record_every=5)
    torch.testing.assert_close(final["w"], w * (1 - 0.1 * h) ** 10)
    torch.testing.assert_close(rec[0], w * (1 - 0.1 * h) ** 5)


def test_langevin_raises_when_the_loss_diverges():
    with pytest.raises(DivergenceError, match="lr"):
        langevin_trajectory(lambda p: -50.0 * (p["w"] ** 2).sum(), {"w": torch.ones(2)}, lr=1.0,
                            temperature=0.0, num_steps=100, record=lambda p: p["w"])


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 4, generator=g)
    y = torch.randint(0, 3, (120,), generator=g)
    torch.manual_seed(0)
    return MLP([4, 6, 5, 3]), X, y


def test_minibatch_gradient_variance_matches_a_loop_over_the_same_batches():
    net, X, y = _problem()
    names = ["layers.1.weight", "layers.2.bias"]
    var = minibatch_gradient_variance(net, X, y, names, batch_size=20, seed=3)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(3))
    grads = []
    for b in range(6):
        idx = perm[b * 20:(b + 1) * 20]
        net.zero_grad()
        F.cross_entropy(net(X[idx]), y[idx]).backward()
        grads.append(torch.cat([net.layers[1].weight.grad.reshape(-1), net.layers[2].bias.grad]))
    torch.testing.assert_close(var, torch.stack(grads).var(0), rtol=1e-4, atol=1e-8)


def test_sgd_temperature_is_proportional_to_lr_and_falls_with_batch_size():
    net, X, y = _problem()
    names = ["layers.1.weight"]
    T1 = sgd_temperature(net, X, y, names, lr=0.1, batch_size=10, num_epochs=5)
    T2 = sgd_temperature(net, X, y, names, lr=0.2, batch_size=10, num_epochs=5)
    T_big = sgd_temperature(net, X, y, names, lr=0.1, batch_size=40, num_epochs=20)
    assert T2 == pytest.approx(2 * T1, rel=1e-9)
    # Var of a mean over B samples without replacement: (1/B)(n-B)/(n-1) -> ratio 4 * 109/119 / (80/119)
    assert 2.0 < T1 / T_big < 10.0


def test_directional_temperatures_match_a_loop_over_minibatches_and_directions():
    from flatminima.landscape.noise import directional_temperatures, minibatch_gradients

    net, X, y = _problem()
    names = ["layers.1.weight"]
    G = minibatch_gradients(net, X, y, names, batch_size=20, num_epochs=2, seed=1)
    assert G.shape == (12, 30)
    P = torch.linalg.qr(torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))[0].T
    T = directional_temperatures(G, P, lr=0.3)
    for i in range(4):
        proj = torch.tensor([float(g.double() @ P[i]) for g in G])
        assert float(T[i]) == pytest.approx(0.15 * float(proj.var()), rel=1e-9)
    # the mean over a complete orthonormal basis is the mean coordinate temperature
    full = torch.eye(30, dtype=torch.float64)
    assert float(directional_temperatures(G, full, lr=0.3).mean()) == pytest.approx(
        0.15 * float(G.double().var(0).mean()), rel=1e-9)


def test_subspace_potential_is_the_loss_plus_the_restraint():
    from flatminima.landscape.noise import subspace_potential

    net, X, y = _problem()
    names = ["layers.1.weight"]
    B = torch.linalg.qr(torch.randn(30, 3, generator=torch.Generator().manual_seed(4)))[0].T
    U = subspace_potential(net, X, y, names, B, restraint=0.7)
    z = torch.tensor([0.3, -0.2, 0.1])
    import copy
    moved = copy.deepcopy(net)
    with torch.no_grad():
        moved.layers[1].weight += (z @ B).reshape(5, 6)
    with torch.no_grad():
        expected = F.cross_entropy(moved(X), y) + 0.35 * float((z * z).sum())
    assert float(U({"z": z})) == pytest.approx(float(expected), rel=1e-5)
    assert float(U({"z": torch.zeros(3)})) == pytest.approx(float(F.cross_entropy(net(X), y)), rel=1e-6)
    with pytest.raises(ValueError, match="restraint"):
        subspace_potential(net, X, y, names, B, restraint=0.0)
