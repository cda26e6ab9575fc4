"""The training loop: determinism, stopping rules, hooks and divergence detection."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from flatminima.nn.models import make_model
from flatminima.nn.train import DivergenceError, evaluate, train


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


class _CountingLoss:
    """Cross-entropy that turns NaN from call ``bad_call`` on, counting its calls."""

    def __init__(self, bad_call: int) -> None:
        self.bad_call, self.calls = bad_call, 0

    def __call__(self, out, target, reduction="mean"):
        self.calls += 1
        loss = F.cross_entropy(out, target, reduction=reduction)
        return loss * float("nan") if self.calls >= self.bad_call else loss


@pytest.mark.parametrize("check_every", [1, 7, 100])
def test_divergence_is_detected_within_check_every_steps_and_names_the_step(blobs, check_every):
    X, y = blobs  # 256 samples, batch 32: 8 steps per epoch, so step 13 is inside epoch 2
    loss_fn = _CountingLoss(bad_call=13)
    with pytest.raises(DivergenceError, match=r"loss is nan at step 13 \(lr=0.1\)"):
        train(net(), X, y, lr=0.1, batch_size=32, num_steps=1000, seed=0, loss_fn=loss_fn,
              eval_every_epoch=False, check_every=check_every)
    # detected at the first check after step 13: a buffer flush (every check_every steps) or the
    # end of epoch 2 (step 16), whichever comes first
    assert 13 <= loss_fn.calls <= min(13 + check_every - 1, 16)


def test_step_hooks_get_the_loss_as_a_device_tensor_without_changing_the_result(blobs):
    X, y = blobs
    seen = []
    a, b = net(), net()
    train(a, X, y, lr=0.1, batch_size=32, num_epochs=2, seed=3, check_every=1)
    train(b, X, y, lr=0.1, batch_size=32, num_epochs=2, seed=3, check_every=100,
          on_step=[lambda step, n, loss: seen.append(loss)])
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for v in seen)
    assert len(seen) == 16 and all(float(v) > 0 for v in seen)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_float64_losses_beyond_float32_range_are_not_called_divergent(blobs):
    X, y = blobs
    huge = lambda out, target, reduction="mean": F.cross_entropy(out.double(), target) * 1e300  # noqa: E731
    hist = train(net().double(), X.double(), y, lr=1e-310, batch_size=32, num_steps=5, seed=0,
                 loss_fn=huge, eval_every_epoch=False)
    assert hist.steps == 5
