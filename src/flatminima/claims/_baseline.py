"""A measured placeholder protocol shared by the claim stubs.

Until a claim's real protocol lands, its notebook trains a small network on the claim's
dataset over several seeds and records the measured accuracies with verdict
``inconclusive``: the pipeline (papermill, results JSON, dashboard, book) runs end to end on
real numbers, and nothing pretends to test the claim.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..data import load_dataset
from ..models import make_model
from ..results import make_record
from ..stats import mean_ci
from ..train import evaluate, train


def run_baseline(params: Any, *, device: torch.device, show_progress: bool = False) -> dict[str, Any]:
    """Train ``params.num_seeds`` MLPs and return a results record (verdict ``inconclusive``)."""
    t0 = time.perf_counter()
    seeds = list(range(params.num_seeds))
    test_acc, train_loss = [], []
    for seed in seeds:
        data = load_dataset(params.dataset, seed=seed).flat().to(device)
        net = make_model("mlp", data.input_shape, data.num_classes, widths=params.widths, seed=seed).to(device)
        train(net, data.X_train, data.y_train, optimizer="sgd", lr=params.lr, batch_size=params.batch_size,
              num_epochs=params.num_epochs, seed=seed, show_progress=show_progress)
        tl, _ = evaluate(net, data.X_train, data.y_train)
        _, ta = evaluate(net, data.X_test, data.y_test)
        train_loss.append(tl)
        test_acc.append(ta)
    acc = mean_ci(test_acc)
    stats = {"test_acc": acc.to_dict(), "train_loss": mean_ci(train_loss).to_dict(),
             "per_seed": {"test_acc": test_acc, "train_loss": train_loss}}
    return make_record(
        claim=params.CLAIM, params=params, verdict="inconclusive", statistics=stats,
        criterion="placeholder protocol: the claim's test is not implemented yet, so no verdict is drawn",
        seeds=seeds, runtime_s=time.perf_counter() - t0, device=str(device),
        headline={"label": "baseline test accuracy (placeholder)", "value": acc.estimate,
                  "ci_low": acc.low, "ci_high": acc.high, "paper": "not yet compared"},
        notes=f"mean test accuracy {np.mean(test_acc):.3f}")
