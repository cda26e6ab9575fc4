"""A deterministic minibatch training loop with divergence detection and record hooks.

:func:`train` runs SGD or Adam over ``(X, y)`` tensors already on the device (the datasets of
this study fit in memory), shuffling with its own ``torch.Generator`` so a seed fixes the
data order independently of the initialisation. Callbacks see every step and every epoch;
training stops at ``num_epochs``/``num_steps``, when the full-batch training loss reaches
``target_loss``, or when a callback returns ``True``. A NaN or infinite loss raises
:class:`DivergenceError` naming the step and the learning rate.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .progress import progress

OPTIMIZERS = ("sgd", "adam")


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrainHistory:
    """What happened: per-epoch full-batch train loss/accuracy, steps taken and why it stopped."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    steps: int = 0
    stop_reason: str = ""


StepHook = Callable[[int, nn.Module, float], bool | None]
EpochHook = Callable[[int, nn.Module, float, float], bool | None]


@torch.no_grad()
def evaluate(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss_fn=F.cross_entropy,
             chunk: int = 8192) -> tuple[float, float]:
    """Mean loss and accuracy of ``net`` on ``(X, y)``, in chunks, in eval mode (restored after)."""
    was_training = net.training
    net.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(X), chunk):
        out = net(X[i:i + chunk])
        total_loss += float(loss_fn(out, y[i:i + chunk], reduction="sum"))
        correct += int((out.argmax(-1) == y[i:i + chunk]).sum())
    net.train(was_training)
    return total_loss / len(X), correct / len(X)


def check_finite(loss: float, *, step: int, lr: float) -> None:
    """Raise DivergenceError if ``loss`` is NaN or infinite."""
    if not math.isfinite(loss):
        raise DivergenceError(
            f"training diverged: loss is {loss} at step {step} (lr={lr}). Lower the learning "
            f"rate or the initial weight scale; no results were written for this run.")


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def train(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, optimizer: str = "sgd", lr: float = 0.1,
          batch_size: int = 32, num_epochs: int | None = None, num_steps: int | None = None,
          seed: int = 0, momentum: float = 0.0, weight_decay: float = 0.0,
          target_loss: float | None = None, loss_fn=F.cross_entropy,
          on_step: Sequence[StepHook] = (), on_epoch: Sequence[EpochHook] = (),
          eval_every_epoch: bool = True, show_progress: bool = False) -> TrainHistory:
    """Train ``net`` in place on ``(X, y)`` and return its :class:`TrainHistory`.

    ``on_step`` hooks get ``(step, net, minibatch_loss)`` after each update; ``on_epoch`` hooks get
    ``(epoch, net, train_loss, train_acc)`` after each epoch (full-batch evaluation). A hook
    returning ``True`` stops training. Data order comes from ``seed`` alone.
    """
    if num_epochs is None and num_steps is None and target_loss is None:
        raise ValueError("give num_epochs, num_steps or target_loss so training can stop")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    n = len(X)
    batch_size = min(batch_size, n)
    opt = make_optimizer(optimizer, net.parameters(), lr, momentum, weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hist = TrainHistory()
    max_epochs = num_epochs if num_epochs is not None else (
        math.ceil(num_steps / max(1, n // batch_size)) if num_steps is not None else 10**9)
    net.train()
    step = 0
    for epoch in progress(range(1, max_epochs + 1), enabled=show_progress, desc="epochs", leave=False):
        perm = torch.randperm(n, generator=gen).to(X.device)
        for i in range(0, n - batch_size + 1, batch_size):  # drop the ragged last batch
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
            value = float(loss.detach())
            check_finite(value, step=step, lr=lr)
            stop = any(bool(h(step, net, value)) for h in on_step)
            if stop or (num_steps is not None and step >= num_steps):
                hist.steps = step
                hist.stop_reason = "hook" if stop else "num_steps"
                return hist
        hist.steps = step
        if eval_every_epoch or on_epoch or target_loss is not None:
            tl, ta = evaluate(net, X, y, loss_fn=loss_fn)
            check_finite(tl, step=step, lr=lr)
            hist.epochs.append(epoch)
            hist.train_loss.append(tl)
            hist.train_acc.append(ta)
            if any(bool(h(epoch, net, tl, ta)) for h in on_epoch):
                hist.stop_reason = "hook"
                return hist
            if target_loss is not None and tl <= target_loss:
                hist.stop_reason = "target_loss"
                return hist
    hist.stop_reason = "num_epochs"
    return hist
