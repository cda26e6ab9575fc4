r"""Claim variance-flatness: the inverse variance-flatness relation of SGD (Feng & Tu, PNAS 2021).

Protocol (one seed, :func:`run_seed`): train an MLP with plain SGD into the exploration phase
(train error ~ 0), record the chosen weights at every step of a window, take the PCA of the
window, measure the width :math:`F_i` of the loss profile along each principal direction at
the level :math:`e L_0`, and fit :math:`\sigma_i^2 \propto F_i^{-\psi}`. Around that:

* **window lengths**: the same analysis over windows of ``window_sweep_epochs`` epochs from the
  same start (thinned to about the same number of snapshots);
* **random-walk null**: the same PCA on a walk with the measured minibatch-noise covariance and
  no landscape (:func:`flatminima.landscape.randomwalk.noise_random_walk`), its directions' widths measured
  in the real landscape;
* **mechanism**: the noise strength :math:`T_i = \tfrac\alpha2\operatorname{Var}_\mu[p_i^\top g^\mu]`
  along each principal direction against :math:`F_i` (:math:`T_i \propto F_i^{-\kappa}`);
* **equilibrium control**: isotropic-noise Langevin dynamics at the SGD's mean temperature in
  the subspace of the SGD window's principal directions, on the potential
  :math:`U = L + \tfrac\lambda2\lVert z\rVert^2` (a weight decay towards the window start gives it
  a stationary state), checked stationary by :func:`flatminima.stats.stationarity.trend_test`; at
  equilibrium :math:`\sigma_i^2 = T/h_i` (Einstein), a positive slope, predicted from the
  measured curvatures :math:`h_i` and compared with the measured one.

:func:`aggregate` turns the per-seed records into the verdict, the statistics and the chapter's facts and
tables (an :class:`~flatminima.protocol.contract.Aggregate`); :func:`run_sweep` compares learning rates and
batch sizes at a matched training loss (run once per chapter, passed to :func:`aggregate`).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from flatminima.core.errors import ParameterError
from flatminima.data.loaders import load_dataset
from flatminima.data.registry import DATASETS, dataset_title
from flatminima.landscape.noise import (
    directional_temperatures,
    langevin_trajectory,
    minibatch_gradients,
    sgd_temperature,
    subspace_potential,
)
from flatminima.landscape.randomwalk import noise_random_walk
from flatminima.landscape.trajectory import (
    WeightRecorder,
    fit_power_law,
    loss_profiles,
    make_line_loss,
    profile_widths,
    select_parameters,
    trajectory_pca,
)
from flatminima.nn.flat import FlatSpec, flatten, unflatten
from flatminima.nn.models import ACTIVATIONS, describe_network, make_model
from flatminima.nn.train import check_finite, evaluate, train
from flatminima.protocol.contract import (
    Aggregate,
    Deviation,
    Part,
    Role,
    SmallestEffect,
    Statistic,
    SubClaim,
    decide_family,
    verdict_of,
)
from flatminima.protocol.params import ClaimParams, param
from flatminima.stats.decision import Verdict, decide
from flatminima.stats.intervals import mean_ci, statistic
from flatminima.stats.power import check_seeds, power_t, preregister
from flatminima.stats.stationarity import trend_test


@dataclass(frozen=True)
class Params(ClaimParams):
    """Parameters of the variance-flatness notebook (defaults = the cpu preset)."""

    CLAIM: ClassVar[str] = "variance-flatness"
    PRESETS: ClassVar[dict] = {
        "smoke": {"num_seeds": 3, "pretrain_epochs": 20, "window_epochs": 3, "window_sweep_epochs": (3, 6),
                  "num_components": 30, "fit_components": (2, 30), "profile_components": (2, 10, 25),
                  "num_bisect": 10, "control_steps": 500, "control_record_every": 2, "sweep_lrs": (0.2,),
                  "sweep_batch_sizes": (), "matched_max_epochs": 60, "matched_loss": 0.02},
        "cpu": {},
        "paper": {"dataset": "mnist", "standardize": False, "num_seeds": 10, "pretrain_epochs": 50,
                  "window_epochs": 10, "window_sweep_epochs": (10, 30, 100), "num_components": 200,
                  "fit_components": (2, 200), "profile_components": (2, 5, 20, 80, 160),
                  "control_steps": 12000, "control_record_every": 10, "sweep_lrs": (0.05, 0.2),
                  "sweep_batch_sizes": (25, 100, 200), "chunk_size": 16, "matched_max_epochs": 200},
    }

    dataset: str = param("digits", "dataset to train on (flattened for the MLP)", choices=DATASETS)
    standardize: bool = param(True, "standardize input features with training statistics")
    widths: tuple[int, ...] = param((50, 50), "hidden layer widths of the MLP (at least 2 to analyse the hidden weights)",
                                    low=1)
    activation: str = param("relu", "activation of the MLP", choices=tuple(ACTIVATIONS))
    weights: str = param("hidden", "weights analysed: hidden (the hidden-to-hidden matrix) or all",
                         choices=("hidden", "all"))
    num_seeds: int = param(6, "number of seeds at the baseline lr and batch_size", low=1, high=100)
    lr: float = param(0.1, "SGD learning rate", low=0.0, low_inclusive=False)
    batch_size: int = param(50, "SGD minibatch size", low=1)
    pretrain_epochs: int = param(60, "SGD epochs before the window (reach train error ~ 0)", low=1)
    window_epochs: int = param(10, "SGD epochs in the primary window", low=1)
    window_sweep_epochs: tuple[int, ...] = param((10, 30, 100), "window lengths (epochs, same start) of the window sweep",
                                                 low=1)
    record_every: int = param(1, "record the weights every this many SGD steps in the primary window", low=1)
    num_components: int = param(100, "principal components analysed (also the control's subspace dimension)",
                                low=3)
    fit_components: tuple[int, ...] = param((2, 100), "first and last component (1-based) of the power-law fit",
                                            low=1)
    loss_level: float = param(math.e, "F_i is the profile width at loss_level * L0 (Feng & Tu: e)",
                              low=1.0, low_inclusive=False)
    loss_set: str = param("train", "data set of the loss L in the profiles", choices=("train", "test"))
    num_bisect: int = param(12, "bisection steps per crossing (relative precision 2^-num_bisect)", low=1, high=60)
    noise_epochs: int = param(4, "epochs of minibatch gradients for the noise covariance and T_i", low=1)
    control_steps: int = param(3000, "Langevin steps of the equilibrium control", low=2)
    control_record_every: int = param(2, "record the control every this many steps", low=1)
    control_burn_in: float = param(1 / 3, "fraction of the control's records dropped before its window",
                                   low=0.0, high=0.9)
    control_lr: float = param(5.0, "step size of the control's Langevin dynamics", low=0.0, low_inclusive=False)
    control_restraint: float = param(5e-3, "weight decay lambda of the control towards the window start",
                                     low=0.0, low_inclusive=False)
    control_temperature_scale: float = param(1.0, "control temperature / measured SGD temperature", low=0.0,
                                             low_inclusive=False)
    stationarity_blocks: int = param(10, "blocks of the control's stationarity (trend) test", low=3)
    stationary_fraction: float = param(0.75, "fraction of seeds whose control must pass the stationarity test",
                                       low=0.0, high=1.0)
    sweep_lrs: tuple[float, ...] = param((0.05, 0.2), "learning rates of the matched-loss sweep (baseline batch_size; [] for none)",
                                         low=0.0, low_inclusive=False, empty_ok=True)
    sweep_batch_sizes: tuple[int, ...] = param((25, 100), "batch sizes of the matched-loss sweep (baseline lr; [] for none)",
                                               low=1, empty_ok=True)
    matched_loss: float = param(3e-3, "training loss every sweep run is trained to before its window", low=0.0,
                                low_inclusive=False)
    matched_max_epochs: int = param(300, "most epochs a sweep run may take to reach matched_loss", low=1)
    profile_components: tuple[int, ...] = param((2, 5, 20, 80), "components whose loss profiles are drawn",
                                                low=1)
    psi_band: tuple[float, ...] = param((2.0, 6.0), "stated range of psi (criterion; paper: ~4)")
    rho_max: float = param(-0.8, "Spearman rho(F, sigma^2) must be below this in every seed (criterion)",
                           low=-1.0, high=1.0)
    chunk_size: int = param(64, "points (networks) per batched loss evaluation", low=1)

    def validate(self) -> None:
        if len(self.fit_components) != 2 or not self.fit_components[0] < self.fit_components[1]:
            raise ParameterError(f"parameter 'fit_components' must be two components (first, last) with "
                                 f"first < last, got {self.fit_components}")
        if self.fit_components[1] > self.num_components:
            raise ParameterError(f"parameter 'fit_components' ends at {self.fit_components[1]} but only "
                                 f"num_components={self.num_components} are analysed")
        if self.fit_components[1] - self.fit_components[0] < 2:
            raise ParameterError("parameter 'fit_components' must span at least 3 components")
        if max(self.profile_components, default=1) > self.num_components:
            raise ParameterError(f"parameter 'profile_components' must be <= num_components="
                                 f"{self.num_components}, got {self.profile_components}")
        if len(self.psi_band) != 2 or not self.psi_band[0] < self.psi_band[1]:
            raise ParameterError(f"parameter 'psi_band' must be (low, high) with low < high, got {self.psi_band}")
        if self.weights == "hidden" and len(self.widths) < 2:
            raise ParameterError("parameter 'weights'='hidden' needs >= 2 hidden layers in 'widths' "
                                 f"(got {self.widths}); use weights='all'")
        if self.window_epochs not in self.window_sweep_epochs:
            raise ParameterError(f"parameter 'window_sweep_epochs' must contain window_epochs={self.window_epochs} "
                                 f"(the primary window), got {self.window_sweep_epochs}")
        kept = int((self.control_steps // self.control_record_every) * (1 - self.control_burn_in))
        if kept <= max(self.num_components, 2 * self.stationarity_blocks):
            raise ParameterError(
                f"the control keeps {kept} snapshots after control_burn_in (control_steps // control_record_every "
                f"x (1 - control_burn_in)); it needs more than num_components={self.num_components} and "
                f"2 x stationarity_blocks: raise 'control_steps'")


# ----------------------------------------------------------------------------- pre-registration
SMALLEST_EFFECT_A = 0.5
"""Smallest effect of interest of part A: psi at least 0.5 inside the stated band."""
SMALLEST_EFFECT_B = 0.5
"""Smallest effect of interest of part B: a control slope of +0.5 in log sigma^2 vs log F (Einstein: +2)."""

PREREGISTRATION = preregister(
    primary="per-seed distance of psi inside the stated band, min(psi - 2, 6 - psi) (10-epoch window, PCs 2-100)",
    smallest_effect=SMALLEST_EFFECT_A,
    test="stats.decide: one-sided t-test of the mean > 0, TOST against +-0.5, alpha 0.05",
    pilot={"sd": 0.165, "n": 5,
           "source": "pilot seeds 500-504 of this protocol at the cpu preset (issue 11): psi 3.98-4.46, "
                     "effect sd 0.165; control slope 3.12-3.40 (sd 0.11), all 5 controls stationary"},
)

DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        date="2026-12-01",
        what="protocol and cpu preset replaced after the first edition's verdict (reproduced, seeds 0-4): a "
             "criterion on psi in every one of the SGD seeds -> pre-registered parts (psi inside the stated band, "
             "decided by stats.decide) with an equilibrium control and a stationarity test, a window sweep and a "
             "random-walk null; verdict seeds 5 -> 6 (commit 9f6fc53)",
        why="no reason was stated at the time",
        seeds_seen=True),
    Deviation(
        date="2026-12-06",
        what="Part B (the equilibrium run) became a control: if it fails the verdict is inconclusive, no longer "
             "not reproduced; the verdict rule became the decided sub-claims with Holm's correction "
             "(decide_family, verdict_of); intervals 95% -> 90%",
        why="a control checks the pipeline, it is not the paper's statement (issue 22)",
        seeds_seen=True),
)
"""Every change to this claim's pre-registration, preset, seeds, data set or protocol made after verdict seeds ran
(dates and commits from the repository's history); stored in the record and shown in the chapter and on the
status page."""


_NUM_SEEDS = Params().num_seeds  # the cpu preset's seeds
SUBCLAIMS: tuple[SubClaim, ...] = (
    SubClaim(
        "A", "an inverse variance-flatness relation: the variance of SGD's weight fluctuations along the i-th PCA "
             "direction falls with the flatness of the loss there, $\\sigma_i^2 \\propto F_i^{-\\psi}$, 'regardless of "
             "minibatch size and learning rate', with $\\psi$ about 4 for MNIST",
        "Feng & Tu 2021, PNAS (arXiv 2001.01678): abstract and main result, read through a detailed summary "
        "of the paper",
        "per-seed distance of psi inside the stated band, min(psi - 2, 6 - psi), with Spearman rho below the bound "
        "in every seed",
        Role.DECIDED,
        SmallestEffect(SMALLEST_EFFECT_A, "none published: Feng & Tu give psi about 4 on MNIST with no spread or "
                       "number of runs, so no small-telescopes effect can be computed; the band [2, 6] brackets "
                       "'about 4' by a factor 2 in either direction of psi - 2, fixed before the verdict runs, "
                       "and 0.5 asks psi to sit clearly inside it (2.5 to 5.5) rather than on its edge", False),
        f"pre-registered; power {power_t(SMALLEST_EFFECT_A, PREREGISTRATION['pilot']['sd'], _NUM_SEEDS):.2f} at 0.5 "
        f"with the cpu preset's {_NUM_SEEDS} seeds (pilot sd {PREREGISTRATION['pilot']['sd']:g}; "
        f"{PREREGISTRATION['seeds_needed']} needed for 80%)"),
    SubClaim(
        "B", "at equilibrium with isotropic noise the relation has the opposite sign: $P(\\theta) \\propto e^{-L/T}$ "
             "gives $\\sigma_i^2 \\propto T F_i^2$ (Einstein relation), so the inverse relation is a signature of "
             "SGD's anisotropic noise",
        "Feng & Tu 2021, the equilibrium contrast (read through a summary; whether the paper ran "
        "GD + isotropic noise is unverified)",
        "per-seed slope of log sigma^2 on log F of the stationary isotropic-noise (Langevin) control",
        Role.CONTROL,
        SmallestEffect(SMALLEST_EFFECT_B, "none published: the Einstein relation predicts a slope of +2; +0.5, a "
                       "quarter of it, is the smallest positive slope read as the equilibrium sign rather than noise "
                       "around 0", False),
        "checks the pipeline: the same PCA and widths on a process with isotropic noise must give the opposite sign; "
        "a control that fails or is not stationary makes the verdict inconclusive"),
)


# ----------------------------------------------------------------------------- one window
def _data(params: Params, seed: int, device: torch.device):
    return load_dataset(params.dataset, seed=seed, standardize=params.standardize).flat().to(device)


def _loss_data(params: Params, data):
    return (data.X_train, data.y_train) if params.loss_set == "train" else (data.X_test, data.y_test)


def analyze_window(net: torch.nn.Module, traj: torch.Tensor, names: list[str], data, params: Params, *,
                   seed: int, lr: float) -> tuple[dict[str, Any], Any]:
    """PCA of ``traj``, widths at ``loss_level * L0`` around the current weights of ``net``, power-law fit.

    Returns a JSON-able summary and the :class:`~flatminima.landscape.trajectory.PCAResult`.
    """
    X, y = _loss_data(params, data)
    pca = trajectory_pca(traj, params.num_components, seed=seed)
    along = make_line_loss(net, X, y, names, pca.components, chunk_size=params.chunk_size)
    L0 = float(along(torch.zeros(1, dtype=torch.long), torch.zeros(1))[0])
    check_finite(L0, step=0, lr=lr)
    pw = profile_widths(along, len(pca.components), params.loss_level * L0, num_bisect=params.num_bisect)
    sigma2 = pca.variances.cpu().numpy()
    fit = fit_power_law(pw.widths, sigma2, components=params.fit_components, seed=seed)
    return {"L0": L0, "num_records": int(len(traj)), "sigma2": sigma2.tolist(),
            "widths": pw.widths.cpu().numpy().tolist(), "psi": fit.psi, "slope": fit.slope,
            "rho": fit.spearman_rho, "psi_ci": [fit.psi_ci.low, fit.psi_ci.high], "n_fit": fit.n,
            "gap": float(sigma2[0] / sigma2[1]), "intercept": fit.intercept}, (pca, along, pw)


def _widths_along(net, names, data, params: Params, directions: torch.Tensor):
    X, y = _loss_data(params, data)
    along = make_line_loss(net, X, y, names, directions, chunk_size=params.chunk_size)
    L0 = float(along(torch.zeros(1, dtype=torch.long), torch.zeros(1))[0])
    return profile_widths(along, len(directions), params.loss_level * L0, num_bisect=params.num_bisect)


def pretrain(params: Params, seed: int, device: torch.device, *, lr: float, batch_size: int,
             target_loss: float | None = None, max_epochs: int | None = None):
    """A fresh MLP (init from ``seed``) trained with plain SGD (data order from ``seed``): for
    ``pretrain_epochs``, or until the training loss reaches ``target_loss`` (at most ``max_epochs``)."""
    data = _data(params, seed, device)
    net = make_model("mlp", data.input_shape, data.num_classes, widths=params.widths,
                     activation=params.activation, seed=seed).to(device)
    epochs = params.pretrain_epochs if target_loss is None else max_epochs
    hist = train(net, data.X_train, data.y_train, optimizer="sgd", lr=lr, batch_size=batch_size,
                 num_epochs=epochs, seed=seed, target_loss=target_loss, eval_every_epoch=target_loss is not None)
    return net, data, hist


class _Snapshots:
    """A step hook that keeps a copy of ``net``'s parameters after the given steps."""

    def __init__(self, steps: set[int]) -> None:
        self.steps, self.states = steps, {}

    def __call__(self, step: int, net: torch.nn.Module, loss: float) -> bool:
        if step in self.steps:
            self.states[step] = copy.deepcopy(net.state_dict())
        return False


# ----------------------------------------------------------------------------- the equilibrium control
def run_control(start: torch.nn.Module, names: list[str], data, basis: torch.Tensor, temperature: float,
                params: Params, *, seed: int) -> dict[str, Any]:
    r"""Isotropic-noise Langevin dynamics on :math:`U(z) = L(w_s + B^\top z) + \tfrac\lambda2\lVert z\rVert^2`.

    ``start`` holds :math:`w_s`, ``basis`` the SGD window's principal directions. After the burn-in,
    the window is tested for stationarity (trend of :math:`U` and of :math:`\lVert z\rVert`), its PCA is
    taken, :math:`F_i` measured in :math:`U` along each of its directions and the curvature
    :math:`h_i = \partial_\theta^2 U` by a central difference; the equilibrium (Einstein) prediction is
    :math:`\sigma_i^2 = T/h_i`, whose slope against :math:`F_i` is reported next to the measured slope.
    """
    lam = params.control_restraint
    B = basis.to(torch.float32)
    U = subspace_potential(start, data.X_train, data.y_train, names, B, restraint=lam)
    k = B.shape[0]
    final, traj = langevin_trajectory(U, {"z": torch.zeros(k, device=B.device)}, lr=params.control_lr,
                                      temperature=temperature, num_steps=params.control_steps,
                                      record=lambda p: p["z"].detach().clone(),
                                      record_every=params.control_record_every, seed=20_000 + seed)
    kept = traj[int(len(traj) * params.control_burn_in):]
    with torch.no_grad():
        u_series = np.array([float(U({"z": z})) for z in kept])
    norm_series = kept.double().norm(dim=1).cpu().numpy()
    st_u = trend_test(u_series, num_blocks=params.stationarity_blocks)
    st_n = trend_test(norm_series, num_blocks=params.stationarity_blocks)
    pca = trajectory_pca(kept, min(params.num_components, k), seed=seed)
    z_f = final["z"].detach().to(torch.float64)
    net = copy.deepcopy(start)
    P = pca.components.to(torch.float64)  # directions in z
    with torch.no_grad():
        base = dict(net.named_parameters())
        w_s = flatten({n: base[n] for n in names})[0].to(torch.float64)
        for n, t in unflatten((w_s + z_f @ B.double()).to(B.dtype), FlatSpec.of(base, names)).items():
            base[n].copy_(t)
    X, y = data.X_train, data.y_train
    ce = make_line_loss(net, X, y, names, (P @ B.double()).to(B.dtype), chunk_size=params.chunk_size)
    pz = P @ z_f

    def along(idx: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        th = theta.to(torch.float64)
        restr = 0.5 * lam * (float(z_f @ z_f) + 2 * th * pz[idx.to(pz.device)].cpu() + th * th)
        return ce(idx, theta).to(torch.float64).cpu() + restr

    U0 = float(along(torch.zeros(1, dtype=torch.long), torch.zeros(1))[0])
    pw = profile_widths(along, len(P), params.loss_level * U0, num_bisect=params.num_bisect)
    Fw = pw.widths.cpu().numpy()
    eps = torch.as_tensor(np.nan_to_num(0.005 * Fw, nan=1e-2))
    idx = torch.arange(len(P))
    h = ((along(idx, eps) + along(idx, -eps) - 2 * U0) / eps.to(torch.float64) ** 2).numpy()
    sigma2 = pca.variances.cpu().numpy()
    fit = fit_power_law(Fw, sigma2, components=params.fit_components, seed=seed)
    ok = h > 0
    pred = fit_power_law(np.where(ok, Fw, np.nan), np.where(ok, temperature / np.where(ok, h, 1.0), np.nan),
                         components=params.fit_components, seed=seed)
    lo, hi = params.fit_components[0] - 1, params.fit_components[1]
    ratio = (sigma2 * h / temperature)[lo:hi]
    thin = max(1, len(u_series) // 100)
    return {"temperature": temperature, "U0": U0, "slope": fit.slope, "rho": fit.spearman_rho,
            "predicted_slope": pred.slope, "equipartition_median": float(np.median(ratio[np.isfinite(ratio)])),
            "gap": float(sigma2[0] / sigma2[1]), "sigma2": sigma2.tolist(), "widths": Fw.tolist(),
            "curvature": h.tolist(), "stationarity_U": st_u.to_dict(), "stationarity_norm": st_n.to_dict(),
            "stationary": bool(st_u.stationary and st_n.stationary),
            "U_series": u_series[::thin].tolist(), "norm_series": norm_series[::thin].tolist(),
            "burn_in_records": int(len(traj) - len(kept)), "num_records": int(len(kept))}


# ----------------------------------------------------------------------------- one seed
def run_seed(params: Params, seed: int, device: torch.device) -> dict[str, Any]:
    """One replication: init, data split and order, minibatches, null walk and control noise all from ``seed``.

    Pre-trains, runs one SGD window of ``max(window_sweep_epochs)`` epochs, and analyses every window
    length (same start; thinned so each window has about as many snapshots as the primary one); then
    the per-direction noise strength, the random-walk null and the equilibrium control of the primary
    window. Returns a JSON-able record.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    lr, bs = params.lr, params.batch_size
    net, data, _ = pretrain(params, seed, device, lr=lr, batch_size=bs)
    names = select_parameters(net, params.weights)
    start = copy.deepcopy(net)
    _, acc_start = evaluate(net, data.X_train, data.y_train)
    T = sgd_temperature(net, data.X_train, data.y_train, names, lr=lr, batch_size=bs, seed=seed)
    spe = len(data.X_train) // min(bs, len(data.X_train))
    windows = sorted(set(params.window_sweep_epochs))
    total = spe * windows[-1]
    base_stride = params.record_every
    for w in windows:
        stride = base_stride * max(1, w // params.window_epochs)
        if (spe * w) // stride <= params.num_components:
            raise ParameterError(
                f"a window of {w} epochs records {(spe * w) // stride} snapshots ({spe} steps per epoch, every "
                f"{stride} steps); it needs more than num_components={params.num_components}: lengthen "
                f"'window_epochs' / 'window_sweep_epochs' or lower 'num_components'")
    rec = WeightRecorder(net, names, total, 1)
    snaps = _Snapshots({spe * w for w in windows})
    train(net, data.X_train, data.y_train, optimizer="sgd", lr=lr, batch_size=bs, num_epochs=windows[-1],
          seed=10_000 + seed, on_step=[rec, snaps], eval_every_epoch=False)
    traj = rec.trajectory
    out: dict[str, Any] = {"seed": int(seed), "temperature": T, "train_acc_start": acc_start, "windows": [],
                           "n_train": len(data.X_train), "n_test": len(data.X_test), "steps_per_epoch": spe,
                           "n_analysed": int(traj.shape[1])}
    primary = None
    for w in windows:
        stride = base_stride * max(1, w // params.window_epochs)
        at = copy.deepcopy(start)
        at.load_state_dict(snaps.states[spe * w])
        summary, extra = analyze_window(at, traj[:spe * w][stride - 1::stride], names, data, params, seed=seed, lr=lr)
        summary.update({"window_epochs": w, "stride": stride})
        if w == params.window_epochs:
            primary, p_net, p_extra = summary, at, extra
            _, summary["train_acc"] = evaluate(at, data.X_train, data.y_train)
            _, summary["test_acc"] = evaluate(at, data.X_test, data.y_test)
        out["windows"].append({k: v for k, v in summary.items() if k not in ("sigma2", "widths")})
    out["primary"] = primary
    pca, along, pw = p_extra
    # loss profiles along a few directions (figure)
    comps = [c for c in params.profile_components if c <= len(pca.components)]
    if comps:
        idx = torch.tensor([c - 1 for c in comps])
        reach = torch.nan_to_num(torch.maximum(-pw.theta_left[idx.to(pw.widths.device)],
                                               pw.theta_right[idx.to(pw.widths.device)]), nan=1.0)
        thetas = torch.linspace(-1.5 * float(reach.max()), 1.5 * float(reach.max()), 61, dtype=torch.float64)
        L = loss_profiles(along, idx, thetas).cpu().numpy()
        out["profiles"] = {"components": comps, "theta": thetas.tolist(), "loss": L.tolist()}
    # mechanism: noise strength along each principal direction
    G = minibatch_gradients(p_net, data.X_train, data.y_train, names, batch_size=bs, num_epochs=params.noise_epochs,
                            seed=30_000 + seed)
    Ti = directional_temperatures(G, pca.components, lr=lr).cpu().numpy()
    kfit = fit_power_law(primary["widths"], Ti, components=params.fit_components, seed=seed)
    out["noise"] = {"T_i": Ti.tolist(), "kappa": kfit.psi, "rho": kfit.spearman_rho}
    # random-walk null: measured noise covariance, no landscape
    walk = noise_random_walk(G, primary["num_records"], lr=lr, stride=base_stride, seed=40_000 + seed)
    npca = trajectory_pca(walk, params.num_components, seed=seed)
    npw = _widths_along(p_net, names, data, params, npca.components.to(torch.float32))
    ns2 = npca.variances.cpu().numpy()
    nfit = fit_power_law(npw.widths, ns2, components=params.fit_components, seed=seed)
    out["null"] = {"psi": nfit.psi, "rho": nfit.spearman_rho, "sigma2": ns2.tolist(),
                   "widths": npw.widths.cpu().numpy().tolist(), "gap": float(ns2[0] / ns2[1])}
    # the equilibrium control in the SGD window's principal subspace
    out["control"] = run_control(start, names, data, pca.components,
                                 params.control_temperature_scale * T, params, seed=seed)
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- matched-loss sweep
def run_sweep_point(params: Params, seed: int, device: torch.device, *, lr: float, batch_size: int) -> dict[str, Any]:
    """SGD at ``(lr, batch_size)`` trained to ``matched_loss`` (not a fixed epoch count), then the primary window."""
    net, data, hist = pretrain(params, seed, device, lr=lr, batch_size=batch_size, target_loss=params.matched_loss,
                               max_epochs=params.matched_max_epochs)
    names = select_parameters(net, params.weights)
    T = sgd_temperature(net, data.X_train, data.y_train, names, lr=lr, batch_size=batch_size, seed=seed)
    start_loss = hist.train_loss[-1] if hist.train_loss else float("nan")
    spe = len(data.X_train) // min(batch_size, len(data.X_train))
    num_steps = spe * params.window_epochs
    rec = WeightRecorder(net, names, num_steps, params.record_every)
    train(net, data.X_train, data.y_train, optimizer="sgd", lr=lr, batch_size=batch_size,
          num_epochs=params.window_epochs, seed=10_000 + seed, on_step=[rec], eval_every_epoch=False)
    summary, _ = analyze_window(net, rec.trajectory, names, data, params, seed=seed, lr=lr)
    return {"lr": lr, "batch_size": batch_size, "lr_over_B": lr / batch_size, "epochs": len(hist.epochs),
            "reached": bool(hist.stop_reason == "target_loss"), "start_loss": start_loss, "temperature": T,
            **{k: summary[k] for k in ("L0", "psi", "rho", "gap")},
            "median_sigma2": float(np.median(summary["sigma2"][params.fit_components[0] - 1:params.fit_components[1]]))}


def sweep_points(params: Params) -> list[tuple[float, int]]:
    """The baseline and the sweep's ``(lr, batch_size)`` points (empty without a sweep)."""
    pts = [(lr, params.batch_size) for lr in params.sweep_lrs] + [(params.lr, b) for b in params.sweep_batch_sizes]
    return [(params.lr, params.batch_size), *pts] if pts else []


def run_sweep(params: Params, device: torch.device) -> pd.DataFrame | None:
    """The matched-loss sweep at the first seed of ``params.seeds``: one row per point.

    Every point of :func:`sweep_points` trains to ``matched_loss`` and runs the primary window
    (:func:`run_sweep_point`). Run once per chapter; the table goes into :func:`aggregate` (``sweep=``).

    Parameters
    ----------
    params : Params
        The run's parameters.
    device : torch.device
        Where the tensors live.

    Returns
    -------
    pandas.DataFrame or None
        One row per ``(lr, batch_size)`` point; None when the run has no sweep points.
    """
    points = sweep_points(params)
    if not points:
        return None
    seed = params.seeds[0]
    return pd.DataFrame([run_sweep_point(params, seed, device, lr=a, batch_size=b) for a, b in points])


# ----------------------------------------------------------------------------- verdict
def criterion_text(params: Params) -> str:
    lo, hi = params.psi_band
    return (f"Part A (inverse relation): the per-seed effect min(psi - {lo:g}, {hi:g} - psi), psi minus the OLS slope "
            f"of $\\log \\sigma_i^2$ on $\\log F_i$ over components {params.fit_components[0]}-{params.fit_components[1]} of the "
            f"{params.window_epochs}-epoch window, is decided by stats.decide with smallest effect "
            f"{SMALLEST_EFFECT_A}; it can only be reproduced if Spearman rho < {params.rho_max:g} in every seed "
            f"(otherwise not reproduced). Part B (equilibrium control): the per-seed slope of the stationary "
            f"isotropic-noise control (Einstein sign: positive) is decided by stats.decide with smallest effect "
            f"{SMALLEST_EFFECT_B}; if fewer than {params.stationary_fraction:.0%} of the seeds' controls pass the "
            f"block-means trend test (loss and distance, 95% CI of the trend covering 0), B is inconclusive. "
            f"Verdict: A is decided, B is a control (SUBCLAIMS); protocol.verdict_of: A decides, a failed or "
            f"non-stationary control B makes the verdict inconclusive.")


def _arr(records, *keys) -> np.ndarray:
    out = []
    for r in records:
        v = r
        for k in keys:
            v = v[k]
        out.append(float(v))
    return np.array(out)


PAPER = "psi ~ 4 on MNIST; equilibrium (isotropic noise) gives the opposite sign (Feng & Tu 2021)"
"""The paper's number for the headline, in words (Feng & Tu, PNAS 2021)."""


def _ci_text(d: dict[str, Any]) -> str:
    return f"{d['estimate']:.2f} [{d['low']:.2f}, {d['high']:.2f}]"


def aggregate(params: Params, records: list[dict[str, Any]], sweep: pd.DataFrame | None = None) -> Aggregate:
    r"""The verdict, its two parts, the statistics and the chapter's facts from the per-seed records.

    Part A (inverse relation, Feng & Tu 2021): the per-seed effect :math:`\min(\psi - lo, hi - \psi)` with
    ``psi_band = (lo, hi)``, :math:`\psi` the OLS slope in :math:`\sigma_i^2 \propto F_i^{-\psi}`, decided by
    :func:`flatminima.stats.decision.decide` (smallest effect :data:`SMALLEST_EFFECT_A`); not reproduced
    unless Spearman :math:`\rho <` ``rho_max`` in every seed. Part B (equilibrium control): the per-seed
    log-log slope of the isotropic-noise control (Einstein: :math:`\sigma_i^2 = T/h_i`, a positive slope),
    decided with smallest effect :data:`SMALLEST_EFFECT_B`; inconclusive when fewer than
    ``stationary_fraction`` of the controls pass the stationarity test. See :func:`criterion_text`.

    Parameters
    ----------
    params : Params
        The run's parameters.
    records : list of dict
        The per-seed records of :func:`run_seed`, one per seed.
    sweep : pandas.DataFrame or None, optional
        The matched-loss sweep of :func:`run_sweep` (None: not run; the ``sweep`` statistic is then empty).

    Returns
    -------
    Aggregate
        Verdict, parts A and B, the headline (mean :math:`\psi` over seeds with the paper's value in words),
        the record's statistics (the summaries over seeds, ``per_seed`` and ``sweep``), the facts the
        chapter's prose glues and the tables of its figures (``seeds``, ``windows``, ``spectrum``,
        ``control_U``, ``sweep``).
    """
    lo, hi = params.psi_band
    psi = _arr(records, "primary", "psi")
    rho = _arr(records, "primary", "rho")
    effect_a = np.minimum(psi - lo, hi - psi)
    dec_a = decide(effect_a, smallest_effect=SMALLEST_EFFECT_A, label="psi inside the band")
    outcome_a, reason_a = dec_a.outcome, dec_a.reason
    if not np.all(rho < params.rho_max):
        outcome_a = Verdict.NOT_REPRODUCED
        reason_a = (f"Spearman rho is not below {params.rho_max:g} in every seed (max {rho.max():.2f}), "
                    f"so the relation is not a tight inverse law; {dec_a.reason}")
    slope_c = _arr(records, "control", "slope")
    stationary = np.array([bool(r["control"]["stationary"]) for r in records])
    dec_b = decide(slope_c, smallest_effect=SMALLEST_EFFECT_B, label="control slope")
    outcome_b, reason_b = dec_b.outcome, dec_b.reason
    if stationary.mean() < params.stationary_fraction:
        outcome_b = Verdict.INCONCLUSIVE
        reason_b = (f"only {int(stationary.sum())} of {len(records)} controls pass the stationarity test "
                    f"(needed: {params.stationary_fraction:.0%}), so the control is not shown at equilibrium; "
                    f"{dec_b.reason}")
    windows = pd.DataFrame([{"seed": r["seed"], **w} for r in records for w in r["windows"]])
    by_window = {int(w): mean_ci(g["psi"].to_numpy()).to_dict() for w, g in windows.groupby("window_epochs")}
    stats = {
        "psi": mean_ci(psi).to_dict(), "rho": mean_ci(rho).to_dict(), "rho_max_seen": float(rho.max()),
        "part_a": dec_a.to_dict(), "part_b": dec_b.to_dict(),
        "psi_by_window": by_window,
        "psi_null": mean_ci(_arr(records, "null", "psi")).to_dict(),
        "rho_null": mean_ci(_arr(records, "null", "rho")).to_dict(),
        "kappa": mean_ci(_arr(records, "noise", "kappa")).to_dict(),
        "control_slope": mean_ci(slope_c).to_dict(),
        "control_predicted_slope": mean_ci(_arr(records, "control", "predicted_slope")).to_dict(),
        "control_rho": mean_ci(_arr(records, "control", "rho")).to_dict(),
        "control_equipartition": mean_ci(_arr(records, "control", "equipartition_median")).to_dict(),
        "control_stationary": stationary.tolist(), "n_stationary": int(stationary.sum()),
        "outcomes": {"A": outcome_a, "B": outcome_b},
        "per_seed": [{"seed": r["seed"], "psi": r["primary"]["psi"], "rho": r["primary"]["rho"],
                      "L0": r["primary"]["L0"], "gap": r["primary"]["gap"], "psi_null": r["null"]["psi"],
                      "kappa": r["noise"]["kappa"], "control_slope": r["control"]["slope"],
                      "control_predicted_slope": r["control"]["predicted_slope"],
                      "control_stationary": r["control"]["stationary"], "seconds": r["seconds"]}
                     for r in records],
        "sweep": [] if sweep is None else sweep.to_dict(orient="records"),
    }
    # a gate that overrides the test's outcome decides the part: no Decision, so decide_family keeps the gate's word
    parts = decide_family((
        Part("Part A: inverse relation under SGD", outcome_a, reason_a,
             Statistic.from_dict(statistic(f"min($\\psi$ - {lo:g}, {hi:g} - $\\psi$)", effect_a)), SUBCLAIMS[0],
             dec_a if outcome_a == dec_a.outcome else None),
        Part("Part B: equilibrium control of the opposite sign", outcome_b, reason_b,
             Statistic.from_dict(statistic("control slope of $\\log \\sigma^2$ on $\\log F$", slope_c)), SUBCLAIMS[1],
             dec_b if outcome_b == dec_b.outcome else None),
    ))
    stats["outcomes"] = {"A": parts[0].outcome, "B": parts[1].outcome}
    headline = Statistic.from_dict({**statistic("$\\psi$ in $\\sigma_i^2 \\propto F_i^{-\\psi}$ (SGD)", psi),
                                    "paper": PAPER})
    warn = check_seeds(PREREGISTRATION, len(records))
    c = stats["control_slope"]
    notes = (f"control slope {c['estimate']:.3g} [{c['low']:.3g}, {c['high']:.3g}]; "
             f"{stats['n_stationary']}/{len(records)} controls stationary" + (f"; {warn}" if warn else ""))
    return Aggregate(verdict=verdict_of(parts), parts=parts, headline=headline, statistics=stats,
                     criterion=criterion_text(params),
                     facts={**chapter_facts(stats, headline, records, sweep), **setup_facts(params, records)},
                     tables=chapter_tables(params, records, sweep), notes=notes)


def setup_facts(params: Params, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The setup the chapter's prose names, from the parameters and what the seeds actually loaded.

    Parameters
    ----------
    params : Params
        The run's parameters.
    records : list of dict
        The per-seed records of :func:`run_seed` (``n_train``, ``n_test``, ``steps_per_epoch``; a record
        cached before they were stored falls back to loading the first seed's data once to count).

    Returns
    -------
    dict
        ``setup_dataset`` (its title), ``setup_network``, ``setup_n_train``, ``setup_n_test``,
        ``setup_seeds``, ``setup_preset``, ``setup_window_epochs`` and ``setup_window_steps`` (SGD steps
        in the primary window), ``setup_n_analysed`` (the number of analysed weights).
    """
    first = next((r for r in records if "n_train" in r), None)
    if first is not None:
        n_train, n_test, spe, dim = first["n_train"], first["n_test"], first["steps_per_epoch"], first["n_analysed"]
    else:
        data = _data(params, records[0]["seed"] if records else 0, torch.device("cpu"))
        n_train, n_test = len(data.X_train), len(data.X_test)
        spe = n_train // min(params.batch_size, n_train)
        net = make_model("mlp", data.input_shape, data.num_classes, widths=params.widths,
                         activation=params.activation, seed=0)
        shapes = dict(net.named_parameters())
        dim = sum(shapes[n].numel() for n in select_parameters(net, params.weights))
    return {"setup_dataset": dataset_title(params.dataset),
            "setup_network": describe_network("mlp", params.widths, params.activation),
            "setup_n_train": int(n_train), "setup_n_test": int(n_test), "setup_seeds": len(records),
            "setup_preset": params.preset, "setup_window_epochs": int(params.window_epochs),
            "setup_window_steps": int(spe * params.window_epochs), "setup_n_analysed": int(dim)}


def chapter_facts(stats: dict[str, Any], headline: Statistic, records: list[dict[str, Any]],
                  sweep: pd.DataFrame | None) -> dict[str, Any]:
    """The named values the chapter's prose glues, from :func:`aggregate`'s statistics.

    Parameters
    ----------
    stats : dict
        The statistics block of :func:`aggregate`.
    headline : Statistic
        The headline (mean psi over seeds).
    records : list of dict
        The per-seed records of :func:`run_seed` (their ``seconds``).
    sweep : pandas.DataFrame or None
        The matched-loss sweep of :func:`run_sweep`, if run.

    Returns
    -------
    dict
        Numbers (``psi_null``, ``rho_null``, ``rho_max_seen``, ``control_slope[_low|_high]``, ``control_rho``,
        ``equipartition``, ``n_stationary``, ``compute_minutes``) and sentences (``psi_null_ci``, ``kappa_ci``,
        ``control_predicted_ci``, ``psi_windows``, ``window_trend``, ``null_share``, ``null_text``,
        ``sweep_loss``; ``equipartition_text`` and ``sweep_text`` hold ``$...$`` maths, to be glued as Markdown).
    """
    share = stats["psi_null"]["estimate"] / headline.value
    w = list(stats["psi_by_window"].values())
    falls = all(b["estimate"] < a["estimate"] for a, b in zip(w, w[1:]))
    eq = stats["control_equipartition"]["estimate"]
    cs = stats["control_slope"]
    return {
        "rho_max_seen": stats["rho_max_seen"], "psi_null": stats["psi_null"]["estimate"],
        "psi_null_ci": _ci_text(stats["psi_null"]), "rho_null": stats["rho_null"]["estimate"],
        "kappa_ci": _ci_text(stats["kappa"]), "control_slope": cs["estimate"], "control_slope_low": cs["low"],
        "control_slope_high": cs["high"], "control_predicted_ci": _ci_text(stats["control_predicted_slope"]),
        "control_rho": stats["control_rho"]["estimate"], "equipartition": eq, "n_stationary": stats["n_stationary"],
        "psi_windows": "; ".join(f"{_ci_text(v)} at {k} epochs" for k, v in stats["psi_by_window"].items()),
        "compute_minutes": sum(r["seconds"] for r in records) / 60,
        "null_share": f"{share:.0%}",
        "null_text": ("So much of the inverse relation is already in the covariance of the minibatch noise: a walk "
                      "driven by it spreads most along the sharp directions, without any restoring force from the "
                      "landscape." if share >= 0.5 else
                      "So the noise covariance alone explains only a small part of the SGD exponent; the rest comes "
                      "from the dynamics in the landscape."),
        "window_trend": ("Only one window length was run here." if len(w) < 2 else
                         "Longer windows give smaller exponents." if falls else
                         "The exponent does not fall steadily with the window length here."),
        "equipartition_text": (
            "The control's variances are close to their equilibrium values." if 0.67 <= eq <= 1.5 else
            "The variances fall short of $T/h_i$: the control is not fully equilibrated along its flattest "
            "directions, which steepens its slope beyond the prediction." if eq < 0.67 else
            "The variances exceed $T/h_i$: the profiles are not quadratic on the scale of the fluctuations."),
        "sweep_text": ("not run here (no sweep points in this run)" if sweep is None else
                       ", ".join(f"{r.psi:.2f} ($\\alpha$ = {r.lr:g}, $B$ = {r.batch_size})" for r in sweep.itertuples())),
        "sweep_loss": "-" if sweep is None else f"{sweep['start_loss'].min():.2g} to {sweep['start_loss'].max():.2g}",
    }


# ----------------------------------------------------------------------------- tables for the chapter
def seed_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per seed: psi and rho (SGD), the null's psi, the noise exponent, the control's slopes."""
    return pd.DataFrame([{"seed": r["seed"], "psi": r["primary"]["psi"], "rho": r["primary"]["rho"],
                          "psi null": r["null"]["psi"], "kappa": r["noise"]["kappa"],
                          "control slope": r["control"]["slope"],
                          "predicted": r["control"]["predicted_slope"]} for r in records])


def window_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long form: one row per (seed, window length) with psi, rho and the drift ratio."""
    return pd.DataFrame([{"window (epochs)": w["window_epochs"], "seed": r["seed"], "psi": w["psi"],
                          "rho": w["rho"], "gap": w["gap"]} for r in records for w in r["windows"]])


def spectrum_frame(records: list[dict[str, Any]], params: Params) -> pd.DataFrame:
    """Long form: one row per (seed, dynamics, component) with sigma^2, F and T_i, fitted components only."""
    lo, hi = params.fit_components
    rows = []
    for r in records:
        for name, s2, Fw in (("SGD", r["primary"]["sigma2"], r["primary"]["widths"]),
                             ("random-walk null", r["null"]["sigma2"], r["null"]["widths"]),
                             ("equilibrium control", r["control"]["sigma2"], r["control"]["widths"])):
            for i in range(lo - 1, min(hi, len(s2))):
                rows.append({"dynamics": name, "seed": r["seed"], "component": i + 1, "sigma2": s2[i], "F": Fw[i],
                             "T_i": r["noise"]["T_i"][i] if name == "SGD" else float("nan")})
    return pd.DataFrame(rows)


def control_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The control's potential :math:`U(t)` after the burn-in, standardised per seed (Figure 5).

    Parameters
    ----------
    records : list of dict
        The per-seed records of :func:`run_seed`.

    Returns
    -------
    pandas.DataFrame
        Long form: ``seed``, ``fraction`` (of the control's window, 0 to 1) and ``U`` (zero mean, unit sd per seed).
    """
    frames = []
    for r in records:
        u = np.asarray(r["control"]["U_series"], dtype=float)
        frames.append(pd.DataFrame({"seed": r["seed"], "fraction": np.linspace(0, 1, len(u)),
                                    "U": (u - u.mean()) / u.std()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", "fraction", "U"])


def chapter_tables(params: Params, records: list[dict[str, Any]], sweep: pd.DataFrame | None) -> dict[str, Any]:
    """The data frames of the chapter's tables and figures.

    Parameters
    ----------
    params : Params
        The run's parameters.
    records : list of dict
        The per-seed records of :func:`run_seed`.
    sweep : pandas.DataFrame or None
        The matched-loss sweep of :func:`run_sweep`, if run.

    Returns
    -------
    dict
        ``seeds`` (:func:`seed_frame`), ``windows`` (:func:`window_frame`), ``spectrum``
        (:func:`spectrum_frame`), ``control_U`` (:func:`control_frame`) and ``sweep`` (the shown columns of
        the sweep, or None).
    """
    shown = None if sweep is None else sweep[["lr", "batch_size", "epochs", "start_loss", "psi", "rho"]]
    return {"seeds": seed_frame(records), "windows": window_frame(records),
            "spectrum": spectrum_frame(records, params), "control_U": control_frame(records), "sweep": shown}
