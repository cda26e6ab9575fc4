r"""Claim gradient-mismatch: more activation precision cuts the gradient mismatch of binary-activation
nets more than a better surrogate does, and BinaryDuo exploits it (Kim et al., ICLR 2020).

Part A (:func:`run_mismatch`): teacher-student regression with Gaussian inputs; a student MLP with
quantised hidden activations (full, binary, ternary, 2-bit) is trained with the straight-through
estimator at its own precision; then, on ``eval_samples`` fresh samples, the per-layer cosine between
each surrogate's backprop gradient and the coordinate discrete gradient (CDG) of the true quantised
loss is measured (:mod:`flatminima.mismatch`).

Part B (:func:`run_duo`): a binary-activation baseline against a coupled ternary net of matched
decoupled cost, decoupled exactly as the authors' code does (:func:`flatminima.quantize.decouple`)
and fine-tuned as a binary net; the statistic is the test-accuracy gain.

:func:`summarize` turns both tables into the results record with the verdict.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ..data import DATASETS, load_dataset
from ..mismatch import (coordinate_discrete_gradient, cosine, es_gradient, layer_cosines, sample_coordinates,
                        surrogate_gradient)
from ..models import MLP
from ..params import ClaimParams, ParameterError, param
from ..progress import progress
from ..quantize import PRECISIONS, SURROGATES, coupled_width, decouple, quant_mlp, tiny_vgg7
from ..results import make_record
from ..stats import bootstrap_ci, mean_ci
from ..train import check_finite, evaluate, train

BN_INIT = (0.25, 0.5)
r"""Part A students start their BN at :math:`\gamma = 1/4, \beta = 1/2`: :math:`y = 1/2 + \mathrm{BN}(z)/4`,
so the binary threshold sits at the mean pre-activation (as in the pilot of the research notes)."""


@dataclass(frozen=True)
class Params(ClaimParams):
    """Parameters of the gradient-mismatch notebook (defaults = the cpu preset)."""

    CLAIM: ClassVar[str] = "gradient-mismatch"
    PRESETS: ClassVar[dict] = {
        "smoke": {"num_seeds": 2, "input_dim": 8, "widths": (8, 8), "train_samples": 1000, "student_steps": 30,
                  "eval_samples": 10_000, "full_eval_samples": 2000, "coords_per_layer": 8, "es_directions": 8,
                  "es_samples": 2000,
                  "duo_seeds": 2, "duo_dataset": "digits", "duo_widths": (32, 32), "num_epochs": 1,
                  "finetune_epochs": 1},
        "cpu": {},
        "paper": {"num_seeds": 20, "input_dim": 32, "widths": (32, 32, 32), "train_samples": 100_000,
                  "student_steps": 2000, "eval_samples": 1_000_000, "full_eval_samples": 100_000, "coords_per_layer": 200,
                  "es_directions": 1000, "es_samples": 100_000, "duo_dataset": "cifar10", "duo_arch": "vgg7",
                  "duo_widths": (64, 64, 128, 128, 512), "coupled_widths": (45, 45, 90, 90, 336),
                  "duo_seeds": 5, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                  "batch_size": 256, "num_epochs": 120, "finetune_epochs": 40},
    }

    # Part A: gradient mismatch in a teacher-student MLP
    num_seeds: int = param(10, "Part A: number of seeds (teacher, data, student, sampled coordinates)", low=1, high=200)
    input_dim: int = param(16, "Part A: input dimension D of the Gaussian teacher-student task", low=1)
    widths: tuple[int, ...] = param((16, 16, 16), "Part A: hidden widths of teacher and student", low=1)
    precisions: tuple[str, ...] = param(("full", "binary", "ternary", "2bit"), "Part A: activation precisions",
                                        choices=tuple(PRECISIONS))
    surrogates: tuple[str, ...] = param(("ste", "steep", "approxsign", "swishsign"),
                                        "Part A: surrogate backward functions compared for binary units",
                                        choices=tuple(SURROGATES))
    train_samples: int = param(10_000, "Part A: student training samples", low=16)
    student_steps: int = param(300, "Part A: Adam steps training each student with the STE", low=1)
    student_lr: float = param(0.01, "Part A: Adam learning rate of the students", low=0.0, low_inclusive=False)
    eval_samples: int = param(100_000, "Part A: samples B of the loss whose gradient is measured (1e5 or more avoids a pure-noise reference)", low=2)
    full_eval_samples: int = param(10_000, "Part A: samples for the full-precision sanity row (its reference is smooth, "
                                   "and dense to compute)", low=2)
    eps: float = param(0.1, "Part A: CDG step epsilon (box-smoothing half-width)", low=0.0, low_inclusive=False)
    coords_per_layer: int = param(60, "Part A: sampled weight coordinates per layer for the CDG", low=2)
    reliability_threshold: float = param(0.8, "Part A: split-half cosine a reference must reach to count as reliable",
                                         low=-1.0, high=1.0)
    es_directions: int = param(100, "Part A: Gaussian-smoothing directions per layer (first seed; 0: skip)", low=0)
    es_samples: int = param(10_000, "Part A: evaluation samples of the Gaussian-smoothing diagnostic", low=2)
    es_sigma: float = param(0.05, "Part A: Gaussian-smoothing sigma", low=0.0, low_inclusive=False)
    # Part B: BinaryDuo training
    duo_seeds: int = param(5, "Part B: number of seeds", low=1, high=100)
    duo_dataset: str = param("mnist1d", "Part B: dataset", choices=DATASETS)
    duo_arch: str = param("mlp", "Part B: architecture (vgg7: tiny VGG-7, 32x32 colour images)", choices=("mlp", "vgg7"))
    duo_widths: tuple[int, ...] = param((256, 256), "Part B: hidden widths (or VGG-7 channels) of the binary baseline", low=1)
    coupled_widths: tuple[int, ...] = param((), "Part B: widths of the coupled ternary net; empty: matched cost (MLP)", low=1)
    optimizer: str = param("adam", "Part B: optimizer", choices=("adam", "sgd"))
    lr: float = param(0.003, "Part B: learning rate", low=0.0, low_inclusive=False)
    momentum: float = param(0.0, "Part B: SGD momentum", low=0.0, high=1.0, high_inclusive=False)
    weight_decay: float = param(0.0, "Part B: weight decay", low=0.0)
    batch_size: int = param(128, "Part B: minibatch size", low=1)
    num_epochs: int = param(20, "Part B: epochs of the coupled ternary net before decoupling", low=1)
    finetune_epochs: int = param(10, "Part B: epochs of binary fine-tuning after decoupling", low=1)
    finetune_lr_factor: float = param(0.3, "Part B: fine-tuning learning rate as a fraction of lr", low=0.0,
                                      low_inclusive=False)

    def validate(self) -> None:
        for need in ("full", "binary", "ternary"):
            if need not in self.precisions:
                raise ParameterError(f"parameter 'precisions' must include {need!r} (the verdict compares full, "
                                     f"binary and ternary); got {self.precisions}")
        if "ste" not in self.surrogates:
            raise ParameterError(f"parameter 'surrogates' must include 'ste' (the baseline surrogate); got {self.surrogates}")
        if len(set(self.precisions)) != len(self.precisions) or len(set(self.surrogates)) != len(self.surrogates):
            raise ParameterError("parameters 'precisions' and 'surrogates' must not repeat a value")
        if self.duo_arch == "vgg7":
            if self.duo_dataset != "cifar10":
                raise ParameterError(f"duo_arch='vgg7' needs duo_dataset='cifar10' (32x32 colour), got {self.duo_dataset!r}")
            if len(self.duo_widths) != 5 or len(self.coupled_widths) != 5:
                raise ParameterError("duo_arch='vgg7' needs 5 duo_widths and 5 coupled_widths (conv channels)")
        if self.coupled_widths and len(self.coupled_widths) != len(self.duo_widths):
            raise ParameterError(f"coupled_widths needs one width per duo_widths entry ({len(self.duo_widths)}), "
                                 f"got {self.coupled_widths}")


# ----------------------------------------------------------------------------- Part A
def teacher_student(params: Params, seed: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Gaussian inputs and standardised outputs of a random full-precision tanh teacher MLP.

    Returns ``X_train, y_train, X_eval, y_eval`` (``train_samples`` and ``eval_samples`` rows).
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    torch.manual_seed(20_000 + seed)
    teacher = MLP([params.input_dim, *params.widths, 1], activation="tanh")
    with torch.no_grad():
        for layer in teacher.layers:  # unit-variance pre-activations: a non-trivial teacher
            layer.weight.normal_(0.0, 1.0 / np.sqrt(layer.in_features), generator=g)
            layer.bias.zero_()
        X = torch.randn(params.train_samples + params.eval_samples, params.input_dim, generator=g)
        y = teacher(X)
        y = (y - y[:params.train_samples].mean()) / y[:params.train_samples].std()
    X, y = X.to(device), y.to(device)
    n = params.train_samples
    return X[:n], y[:n], X[n:], y[n:]


def train_student(params: Params, precision: str, X: torch.Tensor, y: torch.Tensor, seed: int,
                  device: torch.device) -> torch.nn.Module:
    """A student QuantNet at ``precision`` trained with Adam and the STE (same init for every precision)."""
    net = quant_mlp([params.input_dim, *params.widths, 1], levels=PRECISIONS[precision], surrogate="ste",
                    bn_weight=BN_INIT[0], bn_bias=BN_INIT[1], seed=seed).to(device)
    train(net, X, y, optimizer="adam", lr=params.student_lr, batch_size=min(256, len(X)),
          num_steps=params.student_steps, seed=seed, loss_fn=F.mse_loss, eval_every_epoch=False)
    return net.eval()


def run_mismatch_seed(params: Params, seed: int, device: torch.device) -> tuple[list[dict], list[dict]]:
    """Part A for one seed: rows of per-layer cosines, and rows of the ES-vs-CDG diagnostic (first seed).

    A row: seed, precision, surrogate, config (``precision/surrogate``), layer (1-based), kind
    (``hidden``: weights feeding a quantised layer; ``output``: last layer, its gradient crosses no
    quantiser), cosine, reliability (split-half cosine of the CDG), reliable, train_loss.
    """
    X, y, Xe_all, ye_all = teacher_student(params, seed, device)
    rows, es_rows = [], []
    for precision in params.precisions:
        net = train_student(params, precision, X, y, seed, device)
        with torch.no_grad():
            loss = float(F.mse_loss(net(Xe_all), ye_all))
        check_finite(loss, step=params.student_steps, lr=params.student_lr)
        coords = sample_coordinates(net, params.coords_per_layer, seed=seed)
        if precision == "full":  # every sample moves: dense and expensive, and not noisy
            Xe, ye = Xe_all[:params.full_eval_samples], ye_all[:params.full_eval_samples]
        else:
            Xe, ye = Xe_all, ye_all
        ref = coordinate_discrete_gradient(net, Xe, ye, coords, eps=params.eps)
        rel = ref.reliability()
        n_layers = len(coords)
        surrogates = params.surrogates if precision == "binary" else ("ste",)
        for s in surrogates:
            cos = layer_cosines(surrogate_gradient(net, Xe, ye, s), ref)
            for k, c in enumerate(cos):
                rows.append({"seed": seed, "precision": precision, "surrogate": s, "config": f"{precision}/{s}",
                             "layer": k + 1, "kind": "output" if k == n_layers - 1 else "hidden", "cosine": c,
                             "reliability": rel[k], "reliable": rel[k] >= params.reliability_threshold,
                             "eval_loss": loss})
        if params.es_directions > 0 and seed == 0 and precision in ("full", "binary"):
            n_es = min(params.es_samples, len(Xe))
            es = es_gradient(net, Xe[:n_es], ye[:n_es], num_directions=params.es_directions, sigma=params.es_sigma,
                             seed=seed)
            ste = surrogate_gradient(net, Xe[:n_es], ye[:n_es], "ste")
            for k, idx in enumerate(coords):
                es_rows.append({"precision": precision, "layer": k + 1,
                                "cos(ES, CDG)": cosine(es.grad[k][idx], ref.grad[k]),
                                "cos(ES, STE backprop)": cosine(es.grad[k], ste[k]),
                                "ES split-half (directions)": cosine(es.half_a[k], es.half_b[k])})
    return rows, es_rows


def run_mismatch(params: Params, *, device: torch.device, show_progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Part A over ``num_seeds`` seeds: the per-layer cosine table and the ES diagnostic table."""
    rows, es_rows = [], []
    for seed in progress(range(params.num_seeds), enabled=show_progress, desc="Part A seeds"):
        r, e = run_mismatch_seed(params, seed, device)
        rows += r
        es_rows += e
    return pd.DataFrame(rows), pd.DataFrame(es_rows)


def mismatch_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    r"""Per seed and config, :math:`M` = mean cosine over the hidden layers (rows: seeds, columns: configs)."""
    return df[df.kind == "hidden"].pivot_table(index="seed", columns="config", values="cosine", aggfunc="mean")


def mismatch_gains(df: pd.DataFrame, surrogates: tuple[str, ...]) -> pd.DataFrame:
    r"""Per seed: precision gain :math:`M(\mathrm{ter}) - M(\mathrm{bin,STE})`, surrogate gain
    :math:`\max_s M(\mathrm{bin}, s) - M(\mathrm{bin,STE})` and their difference
    :math:`D = M(\mathrm{ter}) - \max_s M(\mathrm{bin}, s)`, with the best surrogate's name."""
    M = mismatch_per_seed(df)
    binary = M[[f"binary/{s}" for s in surrogates]]
    best = binary.max(axis=1)
    out = pd.DataFrame({
        "precision_gain": M["ternary/ste"] - M["binary/ste"],
        "surrogate_gain": best - M["binary/ste"],
        "difference": M["ternary/ste"] - best,
        "best_surrogate": binary.idxmax(axis=1).str.replace("binary/", "", regex=False),
    })
    return out


# ----------------------------------------------------------------------------- Part B
def _duo_nets(params: Params, in_shape: tuple[int, ...], num_classes: int, seed: int):
    """The binary baseline and the coupled ternary net (same seed-dependent init procedure)."""
    if params.duo_arch == "vgg7":
        base = tiny_vgg7(in_channels=in_shape[0], num_classes=num_classes, channels=params.duo_widths, levels=1, seed=seed)
        coupled = tiny_vgg7(in_channels=in_shape[0], num_classes=num_classes, channels=params.coupled_widths,
                            levels=2, seed=seed + 1000)
        return base, coupled
    d = int(np.prod(in_shape))
    widths = params.coupled_widths or (coupled_width(d, params.duo_widths[0], len(params.duo_widths), num_classes),) * len(params.duo_widths)
    base = quant_mlp([d, *params.duo_widths, num_classes], levels=1, seed=seed)
    coupled = quant_mlp([d, *widths, num_classes], levels=2, seed=seed + 1000)
    return base, coupled


def _num_weights(net: torch.nn.Module) -> int:
    """Weights of the linear/conv layers (what the cost comparison counts)."""
    return sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and p.ndim > 1)


def run_duo_seed(params: Params, seed: int, device: torch.device, show_progress: bool = False) -> dict[str, Any]:
    """Part B for one seed: baseline binary net vs coupled ternary -> decoupled binary (BinaryDuo).

    The baseline trains ``num_epochs + finetune_epochs`` epochs; the coupled net ``num_epochs``, then
    it is decoupled (outputs checked against the coupled net on test inputs, in float64) and fine-tuned
    ``finetune_epochs`` epochs as a binary net at ``lr * finetune_lr_factor``.
    """
    flat = params.duo_arch == "mlp"
    data = load_dataset(params.duo_dataset, seed=seed, standardize=flat)
    data = (data.flat() if flat else data).to(device)
    base, coupled = _duo_nets(params, data.input_shape, data.num_classes, seed)
    base, coupled = base.to(device), coupled.to(device)
    kw = dict(optimizer=params.optimizer, batch_size=params.batch_size, momentum=params.momentum,
              weight_decay=params.weight_decay, seed=seed, eval_every_epoch=False, show_progress=show_progress)
    train(base, data.X_train, data.y_train, lr=params.lr, num_epochs=params.num_epochs + params.finetune_epochs, **kw)
    train(coupled, data.X_train, data.y_train, lr=params.lr, num_epochs=params.num_epochs, **kw)
    coupled.eval()
    duo = decouple(coupled).to(device).eval()
    with torch.no_grad():  # exactness check in float64: in float32 the halved-and-summed weights round
        Xt = data.X_test[:1024]  # differently and flip units that sit within ~1e-6 of a threshold
        max_diff = float((copy.deepcopy(coupled).double()(Xt.double()) - copy.deepcopy(duo).double()(Xt.double()))
                         .abs().max())
        max_diff_32 = float((coupled(Xt) - duo(Xt)).abs().max())
    _, acc_coupled = evaluate(coupled, data.X_test, data.y_test)
    _, acc_decoupled = evaluate(duo, data.X_test, data.y_test)
    train(duo, data.X_train, data.y_train, lr=params.lr * params.finetune_lr_factor,
          num_epochs=params.finetune_epochs, **kw)
    tl_base, acc_base = evaluate(base, data.X_test, data.y_test)
    tl_duo, acc_duo = evaluate(duo, data.X_test, data.y_test)
    for v in (tl_base, tl_duo):
        check_finite(v, step=-1, lr=params.lr)
    return {"seed": seed, "acc_baseline": acc_base, "acc_coupled_ternary": acc_coupled,
            "acc_right_after_decoupling": acc_decoupled, "acc_binaryduo": acc_duo, "gain": acc_duo - acc_base,
            "decoupling_max_abs_diff": max_diff, "decoupling_max_abs_diff_float32": max_diff_32,
            "weights_baseline": _num_weights(base),
            "weights_binaryduo": _num_weights(duo)}


def run_duo(params: Params, *, device: torch.device, show_progress: bool = False) -> pd.DataFrame:
    """Part B over ``duo_seeds`` seeds (one row per seed)."""
    return pd.DataFrame([run_duo_seed(params, s, device) for s in
                         progress(range(params.duo_seeds), enabled=show_progress, desc="Part B seeds")])


# ----------------------------------------------------------------------------- verdict
MIN_SEEDS_A = 5
"""Fewer Part A seeds give no verdict (a bootstrap CI over 2-4 values is not an interval to trust)."""
MIN_SEEDS_B = 3
"""Fewer Part B seeds give no verdict."""

CRITERION = (
    "Part A: M(config) = mean per-layer cosine between the backprop gradient and the coordinate discrete "
    "gradient over the hidden layers; D = M(ternary, STE) - max over binary surrogates M(binary, s) per seed. "
    "Reproduced if the 95% bootstrap CI of mean D over seeds is above 0 and D > 0 (precision gain > surrogate "
    "gain) in >= 80% of seeds; not reproduced if the CI is below 0; otherwise inconclusive. Part A is "
    "inconclusive whatever D says if fewer than 80% of the binary and ternary hidden-layer references pass "
    "the split-half reliability gate, if the full-precision sanity M(full) < 0.95, or with fewer than 5 seeds. "
    "Part B: gain = test accuracy(BinaryDuo) - accuracy(binary baseline of equal weight count) per seed; "
    "reproduced if the 95% t-interval of the mean gain is above 0, not reproduced if below 0, else (or with "
    "fewer than 3 seeds) inconclusive. "
    "Overall: reproduced if both parts are, not reproduced if either is not, otherwise inconclusive.")


def mismatch_verdict(df: pd.DataFrame, params: Params) -> tuple[str, dict[str, Any]]:
    """Part A verdict and its statistics (see :data:`CRITERION`)."""
    gains = mismatch_gains(df, params.surrogates)
    M = mismatch_per_seed(df)
    D = gains["difference"].to_numpy()
    ci = bootstrap_ci(D)
    frac = float(np.mean(D > 0))
    gated = df[(df.kind == "hidden") & df.precision.isin(["binary", "ternary"])].drop_duplicates(
        ["seed", "precision", "layer"])
    pass_rate = float(gated.reliable.mean())
    full_M = float(M["full/ste"].mean())
    ok = pass_rate >= 0.8 and full_M >= 0.95 and len(D) >= MIN_SEEDS_A
    if not ok:
        verdict = "inconclusive"
    elif ci.low > 0 and frac >= 0.8:
        verdict = "reproduced"
    elif ci.high < 0:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    ref = df.drop_duplicates(["seed", "precision", "layer"])
    failing = ref[~ref.reliable][["seed", "precision", "layer", "reliability"]]
    stats = {
        "difference": ci.to_dict(), "fraction_seeds_precision_beats_surrogate": frac,
        "precision_gain": bootstrap_ci(gains["precision_gain"].to_numpy()).to_dict(),
        "surrogate_gain": bootstrap_ci(gains["surrogate_gain"].to_numpy()).to_dict(),
        "M": {c: bootstrap_ci(M[c].to_numpy()).to_dict() for c in M.columns},
        "per_layer_cosine": {f"{c}/layer{l}": bootstrap_ci(g.cosine.to_numpy()).to_dict()
                             for (c, l), g in df.groupby(["config", "layer"])},
        "reliability_pass_rate_binary_ternary": pass_rate, "full_precision_M": full_M,
        "failing_references": failing.to_dict("records"),
        "per_seed": {"difference": D.tolist(), "precision_gain": gains["precision_gain"].tolist(),
                     "surrogate_gain": gains["surrogate_gain"].tolist(),
                     "best_surrogate": gains["best_surrogate"].tolist()},
    }
    return verdict, stats


def duo_verdict(duo: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """Part B verdict and its statistics; raises if decoupling did not preserve the function."""
    worst = float(duo.decoupling_max_abs_diff.max())
    if worst > 1e-6:
        raise RuntimeError(f"decoupling changed the network's outputs (max |diff| = {worst:.3g} in float64); "
                           "this is a bug")
    same_acc = bool((duo.acc_coupled_ternary == duo.acc_right_after_decoupling).all())
    acc_diff = float((duo.acc_coupled_ternary - duo.acc_right_after_decoupling).abs().max())
    gain = mean_ci(duo.gain.to_numpy())
    if len(duo) < MIN_SEEDS_B:
        verdict = "inconclusive"
    else:
        verdict = "reproduced" if gain.low > 0 else "not reproduced" if gain.high < 0 else "inconclusive"
    stats = {"gain": gain.to_dict(), "acc_baseline": mean_ci(duo.acc_baseline.to_numpy()).to_dict(),
             "acc_binaryduo": mean_ci(duo.acc_binaryduo.to_numpy()).to_dict(),
             "acc_coupled_ternary": mean_ci(duo.acc_coupled_ternary.to_numpy()).to_dict(),
             "decoupling_max_abs_diff": worst, "decoupled_accuracy_equals_coupled": same_acc,
             "decoupling_max_accuracy_change_float32": acc_diff,
             "fraction_seeds_positive_gain": float(np.mean(duo.gain > 0)),
             "weights_baseline": int(duo.weights_baseline.iloc[0]),
             "weights_binaryduo": int(duo.weights_binaryduo.iloc[0]),
             "per_seed": duo.to_dict("list")}
    return verdict, stats


def combine_verdicts(a: str, b: str) -> str:
    """Both reproduced -> reproduced; either not reproduced -> not reproduced; else inconclusive."""
    if a == b == "reproduced":
        return "reproduced"
    if "not reproduced" in (a, b):
        return "not reproduced"
    return "inconclusive"


def summarize(params: Params, mismatch: pd.DataFrame, es: pd.DataFrame, duo: pd.DataFrame, *,
              runtime_s: float, device: torch.device) -> dict[str, Any]:
    """The results record: statistics of both parts, the verdicts and the headline."""
    va, sa = mismatch_verdict(mismatch, params)
    vb, sb = duo_verdict(duo)
    verdict = combine_verdicts(va, vb)
    d = sa["difference"]
    stats = {"verdict_part_a": va, "verdict_part_b": vb, "part_a": sa, "part_b": sb,
             "es_diagnostic": es.to_dict("records")}
    notes = (f"Part A {va}: D = {d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}], precision beats surrogate in "
             f"{sa['fraction_seeds_precision_beats_surrogate']:.0%} of {params.num_seeds} seeds. Part B {vb}: gain "
             f"{sb['gain']['estimate']:+.4f} [{sb['gain']['low']:+.4f}, {sb['gain']['high']:+.4f}] over "
             f"{params.duo_seeds} seeds on {params.duo_dataset}.")
    return make_record(
        claim=params.CLAIM, params=params, verdict=verdict, statistics=stats, criterion=CRITERION,
        seeds=list(range(max(params.num_seeds, params.duo_seeds))), runtime_s=runtime_s, device=str(device),
        headline={"label": "cosine gain M(ternary) - max_s M(binary, s)", "value": d["estimate"],
                  "ci_low": d["low"], "ci_high": d["high"],
                  "paper": "ternary above every binary surrogate in every layer (Kim et al. 2020, figure; values not retrieved)"},
        notes=notes)


def run(params: Params, *, device: torch.device, show_progress: bool = False) -> dict[str, Any]:
    """Both parts and the record (what ``flatminima`` calls when no notebook is involved)."""
    t0 = time.perf_counter()
    mm, es = run_mismatch(params, device=device, show_progress=show_progress)
    duo = run_duo(params, device=device, show_progress=show_progress)
    return summarize(params, mm, es, duo, runtime_s=time.perf_counter() - t0, device=device)
