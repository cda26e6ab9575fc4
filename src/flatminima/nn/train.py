"""A deterministic minibatch training loop with divergence detection and record hooks.

:func:`train` runs SGD or Adam over ``(X, y)`` tensors already on the device (the datasets of
this study fit in memory), shuffling with its own ``torch.Generator`` so a seed fixes the
data order independently of the initialisation. Callbacks see every step and every epoch;
training stops at ``num_epochs``/``num_steps``, when the full-batch training loss reaches
``target_loss``, or when a callback returns ``True``. A NaN or infinite loss raises
:class:`DivergenceError` naming the step and the learning rate.

GPU readiness: the loop never reads a loss back to the host inside an epoch. Each step's
minibatch loss is written into a small device buffer, and every ``check_every`` steps (and at
the end of each epoch, before a stop) one host sync checks the buffer for non-finite values;
the error still names the first non-finite step. Step hooks receive the loss as a detached
0-d tensor, so a hook that does not read it adds no sync either.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from flatminima.core.progress import progress

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


StepHook = Callable[[int, nn.Module, torch.Tensor], bool | None]
EpochHook = Callable[[int, nn.Module, float, float], bool | None]


@torch.no_grad()
def evaluate(net: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss_fn=F.cross_entropy,
             chunk: int = 8192) -> tuple[float, float]:
    """Mean loss and accuracy of ``net`` on ``(X, y)``, in chunks, in eval mode (restored after).

    Parameters
    ----------
    net : torch.nn.Module
        The network.
    X, y : torch.Tensor
        The data.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.
    chunk : int
        Examples per forward pass.

    Returns
    -------
    loss : float
        Mean loss.
    accuracy : float
        Fraction correct.
    """
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
    """Raise DivergenceError if ``loss`` is NaN or infinite.

    Parameters
    ----------
    loss : float
        The loss.
    step : int
        The step, for the message.
    lr : float
        The learning rate, for the message.

    Raises
    ------
    DivergenceError
        When ``loss`` is not finite.
    """
    if not math.isfinite(loss):
        raise DivergenceError(
            f"training diverged: loss is {loss} at step {step} (lr={lr}). Lower the learning "
            f"rate or the initial weight scale; no results were written for this run.")


class _LossBuffer:
    """Minibatch losses of the last few steps on the device, checked for finiteness in one sync."""

    def __init__(self, size: int, lr: float) -> None:
        self.size = size
        self.values: torch.Tensor | None = None
        self.first_step = 1
        self.count = 0
        self.lr = lr

    def add(self, loss: torch.Tensor, step: int) -> None:
        if self.values is None:  # the loss's own dtype and device: no cast can overflow to inf
            self.values = torch.empty(self.size, dtype=loss.dtype, device=loss.device)
        if self.count == 0:
            self.first_step = step
        self.values[self.count] = loss
        self.count += 1
        if self.count == self.size:
            self.check()

    def check(self) -> None:
        """One host sync: raise DivergenceError at the first non-finite buffered step."""
        if self.count == 0 or self.values is None:
            return
        vals = self.values[:self.count]
        if not bool(torch.isfinite(vals).all()):
            bad = int((~torch.isfinite(vals)).nonzero()[0, 0])
            check_finite(float(vals[bad]), step=self.first_step + bad, lr=self.lr)
        self.count = 0


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch optimizer ``name`` (:data:`OPTIMIZERS`) over ``params``.

    Parameters
    ----------
    name : {'sgd', 'adam'}
        The optimizer.
    params : iterable of torch.Tensor
        The parameters to optimise.
    lr : float
        Learning rate.
    momentum : float
        Momentum (SGD only).
    weight_decay : float
        L2 weight decay.

    Returns
    -------
    torch.optim.Optimizer
        The optimizer.

    Raises
    ------
    ValueError
        For an unknown ``name``.
    """
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
          eval_every_epoch: bool = True, show_progress: bool = False,
          check_every: int = 100) -> TrainHistory:
    """Train ``net`` in place on ``(X, y)`` and return its :class:`TrainHistory`.

    ``on_step`` hooks get ``(step, net, minibatch_loss)`` after each update, the loss as a
    detached 0-d tensor on the device (``float(loss)`` reads it, at the cost of a host sync);
    ``on_epoch`` hooks get ``(epoch, net, train_loss, train_acc)`` after each epoch (full-batch
    evaluation). A hook returning ``True`` stops training. Data order comes from ``seed`` alone.
    Minibatch losses are checked for NaN/inf every ``check_every`` steps and at the end of each
    epoch, so a divergence is raised at most ``check_every - 1`` steps after it happened, naming
    the step where it happened.

    Parameters
    ----------
    net : torch.nn.Module
        The network, trained in place.
    X, y : torch.Tensor
        The training set.
    optimizer : {'sgd', 'adam'}
        See :func:`make_optimizer`.
    lr, momentum, weight_decay : float
        The optimizer's settings.
    batch_size : int
        Minibatch size.
    num_epochs, num_steps : int or None
        Length of training (one of them).
    seed : int
        Seed of the data order.
    target_loss : float or None
        Stop once the full-batch training loss is below it.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a mean loss.
    on_step, on_epoch : sequence of callable
        Hooks, as above.
    eval_every_epoch : bool
        Evaluate the full training set after each epoch.
    show_progress : bool
        Draw a progress bar.
    check_every : int
        Steps between finiteness checks.

    Returns
    -------
    TrainHistory
        Losses, accuracies and steps.

    Raises
    ------
    DivergenceError
        When the loss becomes NaN or infinite.
    """
    if num_epochs is None and num_steps is None and target_loss is None:
        raise ValueError("give num_epochs, num_steps or target_loss so training can stop")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if check_every < 1:
        raise ValueError(f"check_every must be a positive int, got {check_every}")
    n = len(X)
    batch_size = min(batch_size, n)
    opt = make_optimizer(optimizer, net.parameters(), lr, momentum, weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hist = TrainHistory()
    max_epochs = num_epochs if num_epochs is not None else (
        math.ceil(num_steps / max(1, n // batch_size)) if num_steps is not None else 10**9)
    net.train()
    losses = _LossBuffer(check_every, lr)
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
            value = loss.detach()
            losses.add(value, step)
            stop = any(bool(h(step, net, value)) for h in on_step)
            if stop or (num_steps is not None and step >= num_steps):
                losses.check()
                hist.steps = step
                hist.stop_reason = "hook" if stop else "num_steps"
                return hist
        losses.check()
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
