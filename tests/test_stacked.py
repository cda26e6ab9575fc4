"""Stacked (vmapped) training of replicas equals training each replica alone."""
from __future__ import annotations

import pytest
import torch

from flatminima.models import MLP
from flatminima.stacked import sgd_loop, train_stacked


def test_each_stacked_replica_follows_its_own_sequential_trajectory():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    nets = []
    for s in range(4):
        torch.manual_seed(100 + s)  # test-local init; the library never touches the global RNG
        nets.append(MLP([6, 16, 16, 3]))
    before = [{k: v.clone() for k, v in n.named_parameters()} for n in nets]
    stacked = train_stacked(nets, X, y, lr=0.1, batch_size=16, num_steps=25, seeds=[7, 8, 9, 10])
    for net, seed, got in zip(nets, [7, 8, 9, 10], stacked):
        want = sgd_loop(net, X, y, lr=0.1, batch_size=16, num_steps=25, seed=seed)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    for net, b in zip(nets, before):  # the nets passed in are not modified
        for k, v in net.named_parameters():
            assert torch.equal(v, b[k])
    assert not torch.allclose(stacked[0]["layers.0.weight"], stacked[1]["layers.0.weight"])


def test_stacked_training_checks_its_arguments():
    net = MLP([2, 3, 2])
    X, y = torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="one seed per net"):
        train_stacked([net, net], X, y, lr=0.1, batch_size=4, num_steps=1, seeds=[0])
    with pytest.raises(ValueError, match="batch_size"):
        train_stacked([net], X, y, lr=0.1, batch_size=9, num_steps=1, seeds=[0])
