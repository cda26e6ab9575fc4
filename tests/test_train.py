"""The training loop: determinism, stopping rules, hooks and divergence detection."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from flatminima.models import make_model
from flatminima.train import DivergenceError, evaluate, train


@pytest.fixture(scope="module")
def blobs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 5, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    return X, y


def net(seed=0):
    return make_model("mlp", (5,), 2, widths=(16,), seed=seed)


def test_same_seed_gives_bitwise_identical_weights(blobs):
    X, y = blobs
    a, b = net(), net()
    for m in (a, b):
        train(m, X, y, optimizer="sgd", lr=0.1, batch_size=32, num_epochs=3, seed=7)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_data_order_seed_changes_the_result(blobs):
    X, y = blobs
    a, b = net(), net()
    train(a, X, y, lr=0.1, batch_size=32, num_epochs=2, seed=1)
    train(b, X, y, lr=0.1, batch_size=32, num_epochs=2, seed=2)
    assert not torch.equal(a.layers[0].weight, b.layers[0].weight)


def test_stops_at_target_loss_and_reports_it(blobs):
    X, y = blobs
    m = net()
    hist = train(m, X, y, optimizer="adam", lr=1e-2, batch_size=32, num_epochs=500, target_loss=0.2, seed=0)
    assert hist.stop_reason == "target_loss"
    assert hist.train_loss[-1] <= 0.2 < hist.train_loss[0]
    assert evaluate(m, X, y)[0] == pytest.approx(hist.train_loss[-1])


def test_num_steps_and_hooks(blobs):
    X, y = blobs
    seen = []
    hist = train(net(), X, y, lr=0.1, batch_size=32, num_steps=11, seed=0,
                 on_step=[lambda step, n, loss: seen.append((step, loss))])
    assert hist.steps == 11 and hist.stop_reason == "num_steps"
    assert [s for s, _ in seen] == list(range(1, 12))


def test_a_hook_returning_true_stops_training(blobs):
    X, y = blobs
    hist = train(net(), X, y, lr=0.1, batch_size=32, num_epochs=50, seed=0,
                 on_epoch=[lambda epoch, n, tl, ta: epoch == 3])
    assert hist.epochs == [1, 2, 3] and hist.stop_reason == "hook"


def test_divergence_raises_a_clear_error(blobs):
    X, y = blobs
    mse = lambda out, target, reduction="mean": F.mse_loss(out[:, 0], target.float(), reduction=reduction)  # noqa: E731
    with pytest.raises(DivergenceError, match=r"training diverged: loss is (nan|inf) at step \d+ \(lr=50.0\)"):
        train(net(), X * 10, y, optimizer="sgd", lr=50.0, batch_size=32, num_epochs=50, seed=0, loss_fn=mse)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"batch_size": 0, "num_epochs": 1}, "batch_size must be a positive int"),
    ({"lr": -1.0, "num_epochs": 1}, "lr must be > 0"),
    ({}, "give num_epochs, num_steps or target_loss"),
    ({"optimizer": "rmsprop", "num_epochs": 1}, "unknown optimizer 'rmsprop'; allowed: sgd, adam"),
])
def test_bad_arguments_are_named(blobs, kwargs, pattern):
    X, y = blobs
    with pytest.raises(ValueError, match=pattern):
        train(net(), X, y, **kwargs)
