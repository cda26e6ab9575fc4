r"""Claim wide-minima: Bayes-optimal Gaussian-mixture classifiers sit in wide flat minima.

Baldassi, Malatesta, Negri & Zecchina (J. Stat. Mech. 2020, arXiv 2010.14761), with the
flatness-seeking algorithms of Baldassi, Pittorino & Zecchina (PNAS 2020) and Pittorino et al.
(ICLR 2021). The protocol has four parts, each a function the notebook calls:

1. :func:`bo_curve`: closed-form :math:`\varepsilon_{BO}(\alpha,\Delta,\rho)` against the Monte-Carlo
   test error of the plug-in Bayes-optimal estimator;
2. :func:`linear_family`: a family of linear minimisers on the same data (Bayes-optimal, ridge
   path, logistic, max-margin, perceptron, smoothed-error descent) with train/test error, local
   energy and the local-entropy proxy;
3. :func:`net_runs`: SGD, Entropy-SGD and replicated SGD at an equal gradient budget on a
   one-hidden-layer network (mixture, and a real dataset);
4. :func:`summarize` and :func:`verdict`: the statistics and the decision, from the run's data.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from ..data import load_dataset
from ..flatness import classification_error_fn, local_energy, local_energy_loop, local_entropy_proxy
from ..mixture import (LinearClassifier, bayes_optimal_error, bayes_optimal_estimator, logistic_classifier,
                       max_margin_classifier, perceptron_classifiers, plugin_test_error, ridge_classifier,
                       sample_mixture, zero_one_error)
from ..models import make_model
from ..optim import entropy_sgd, replicated_sgd, sgd, smoothed_error_descent
from ..params import ClaimParams, ParameterError, param
from ..progress import progress
from ..results import make_record
from ..stats import bootstrap_ci, mean_ci, wilcoxon_greater

REAL_DATASETS = ("mnist1d", "digits", "mnist", "fashion-mnist", "cifar10")
ZERO_ERROR = ("max-margin", "perceptron")
ALGORITHMS = ("SGD", "Entropy-SGD", "replicated SGD")


@dataclass(frozen=True)
class Params(ClaimParams):
    """Parameters of the wide-minima notebook (defaults = the cpu preset)."""

    CLAIM: ClassVar[str] = "wide-minima"
    PRESETS: ClassVar[dict] = {
        "smoke": {"N": 100, "alphas": (1.0, 2.0), "num_seeds": 3, "n_test": 4000, "num_draws": 50,
                  "sigmas": (0.1, 0.3, 0.6, 1.0), "verdict_sigmas": (0.3, 0.6, 1.0),
                  "ridge_lambdas": (1e-2, 1.0, 100.0), "smooth_sigmas": (0.03, 1.0),
                  "net_seeds": 2, "grad_budget": 150, "hidden": 32, "net_sigmas": (0.3, 0.6),
                  "real_dataset": "digits", "smooth_steps": 50},
        "cpu": {},
        "paper": {"N": 1000, "alphas": (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0), "num_seeds": 20,
                  "n_test": 100_000, "num_draws": 1000, "net_seeds": 10, "grad_budget": 60_000,
                  "hidden": 512, "real_dataset": "cifar10", "batch_size": 128},
    }

    N: int = param(200, "input dimension N of the mixture", low=10, high=100_000)
    alphas: tuple[float, ...] = param((0.5, 1.0, 2.0, 4.0), "sample ratios alpha (P over N)", low=0.05, high=100)
    Delta: float = param(0.5, "noise variance Delta of each cluster", low=0.0, low_inclusive=False, high=10)
    rho_unbalanced: float = param(0.2, "fraction of positive labels rho of the unbalanced Bayes-optimal curve", low=0.0, high=0.5,
                                  low_inclusive=False, high_inclusive=False)
    num_seeds: int = param(10, "independent data sets per alpha (linear part)", low=2, high=200)
    n_test: int = param(20_000, "fresh test points per data set", low=100)
    sigmas: tuple[float, ...] = param((0.05, 0.1, 0.2, 0.3, 0.6, 1.0),
                                      "relative weight-noise sizes sigma of the local energy", low=0.0, high=10)
    num_draws: int = param(200, "noise draws per sigma (local energy, local entropy)", low=10, high=100_000)
    entropy_distances: tuple[float, ...] = param((0.1, 0.3), "relative distances d of the local-entropy proxy",
                                                 low=0.0, high=5, low_inclusive=False)
    ridge_lambdas: tuple[float, ...] = param((1e-4, 1e-2, 1.0, 10.0, 100.0, 1e4), "ridge-MSE lambda path",
                                             low=0.0, low_inclusive=False)
    smooth_sigmas: tuple[float, ...] = param((0.01, 0.03, 0.1, 1.0),
                                             "sigmas of smoothed-error descent (flatness-seeking, linear)",
                                             low=0.0, low_inclusive=False)
    smooth_steps: int = param(300, "projected-gradient steps of smoothed-error descent", low=1)
    verdict_alpha: float = param(2.0, "alpha at which the verdict is taken (must be in alphas)", low=0.05)
    verdict_sigmas: tuple[float, ...] = param((0.3, 0.6, 1.0), "sigmas tested for the BO flatness gap (in sigmas)",
                                              low=0.0, low_inclusive=False)
    sigma_star: float = param(0.6, "sigma of the flatness-vs-test-error correlation (in sigmas)", low=0.0,
                              low_inclusive=False)
    p_threshold: float = param(0.01, "one-sided Wilcoxon level for the BO flatness gap", low=0.0, high=0.5,
                               low_inclusive=False)
    min_spearman: float = param(0.8, "Spearman(flatness, test error) needed across the family", low=-1.0, high=1.0)
    net_alpha: float = param(2.0, "alpha of the mixture the networks are trained on", low=0.05)
    real_dataset: str = param("mnist1d", "real dataset of the network comparison", choices=REAL_DATASETS)
    hidden: int = param(128, "hidden units of the one-hidden-layer network", low=1)
    lr: float = param(0.1, "SGD learning rate (also the SGLD and replica step)", low=0.0, low_inclusive=False)
    batch_size: int = param(32, "minibatch size", low=1)
    grad_budget: int = param(3000, "minibatch gradient evaluations per algorithm (equal budget)", low=10)
    net_seeds: int = param(5, "seeds of the network comparison", low=2, high=100)
    L: int = param(5, "Entropy-SGD inner SGLD steps", low=1, high=100)
    num_replicas: int = param(3, "replicated-SGD replicas", low=1, high=64)
    gamma0: float = param(0.03, "initial coupling gamma_0 (Entropy-SGD and replicated SGD)", low=0.0)
    gamma_max: float = param(3.0, "final coupling of the exponential schedule", low=0.0)
    sgld_noise: float = param(1e-4, "Entropy-SGD thermal noise epsilon", low=0.0)
    net_sigmas: tuple[float, ...] = param((0.1, 0.3, 0.6), "sigmas of the networks' local energy", low=0.0,
                                          high=10, low_inclusive=False)

    def validate(self) -> None:
        if self.verdict_alpha not in self.alphas:
            raise ParameterError(f"parameter 'verdict_alpha' must be one of alphas {self.alphas}, got {self.verdict_alpha}")
        missing = [s for s in (*self.verdict_sigmas, self.sigma_star) if s not in self.sigmas]
        if missing:
            raise ParameterError(f"parameters 'verdict_sigmas' and 'sigma_star' must be among sigmas {self.sigmas}; "
                                 f"not found: {missing}")
        if self.gamma_max < self.gamma0:
            raise ParameterError(f"parameter 'gamma_max' must be >= gamma0 ({self.gamma0}), got {self.gamma_max}")
        if self.grad_budget < max(self.L, self.num_replicas):
            raise ParameterError(f"parameter 'grad_budget' must be >= L and num_replicas, got {self.grad_budget}")
        if int(round(min(self.alphas) * self.N)) < 2:
            raise ParameterError(f"alpha * N must give at least 2 samples, got min(alphas)={min(self.alphas)}, N={self.N}")


def derive_seed(seed: int, *tags: int) -> int:
    """An independent seed for one component of one run (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0])


# --------------------------------------------------------------------------- 1. Bayes-optimal curve
def bo_curve(params: Params, *, device: torch.device | str = "cpu", show_progress: bool = False) -> pd.DataFrame:
    """Monte-Carlo test error of the plug-in BO estimator and the closed form, per (rho, alpha, seed)."""
    rows = []
    for rho in progress((0.5, params.rho_unbalanced), enabled=show_progress, desc="BO curve"):
        for i, alpha in enumerate(params.alphas):
            for seed in range(params.num_seeds):
                g = torch.Generator().manual_seed(derive_seed(seed, 1, i, int(rho * 1000)))
                tr = sample_mixture(int(round(alpha * params.N)), params.N, Delta=params.Delta, rho=rho, generator=g)
                err, se = plugin_test_error(tr.X.to(device), tr.y.to(device), Delta=params.Delta, rho=rho,
                                            n_test=params.n_test, v=tr.v, generator=g)
                rows.append({"rho": rho, "alpha": alpha, "seed": seed, "mc_error": err, "mc_se": se,
                             "theory": bayes_optimal_error(alpha, params.Delta, rho)})
    return pd.DataFrame(rows)


def bo_agreement(curve: pd.DataFrame) -> pd.DataFrame:
    """Per (rho, alpha): mean MC error over seeds, its standard error, theory, and |z| = |MC - theory|/SE."""
    out = []
    for (rho, alpha), grp in curve.groupby(["rho", "alpha"]):
        ci = mean_ci(grp["mc_error"])
        se = float(grp["mc_error"].std(ddof=1) / np.sqrt(len(grp)))
        theory = float(grp["theory"].iloc[0])
        out.append({"rho": rho, "alpha": alpha, "mc_error": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                    "se": se, "theory": theory, "z": abs(ci.estimate - theory) / max(se, 1e-12)})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- 2. family of minimisers
def _solutions(params: Params, X: torch.Tensor, y: torch.Tensor, seed: int) -> list[tuple[str, str, LinearClassifier]]:
    """(name, kind, classifier) for every member of the family on one training set (labels +-1)."""
    sols = [("Bayes-optimal", "Bayes-optimal", bayes_optimal_estimator(X, y, Delta=params.Delta, rho=0.5))]
    for lam in params.ridge_lambdas:
        sols.append((f"ridge-MSE lambda={lam:g}", "ridge-MSE", ridge_classifier(X, y, lam)))
    sols.append(("logistic lambda=1e-4", "logistic", logistic_classifier(X, y, 1e-4)))
    sols.append(("max-margin", "max-margin", max_margin_classifier(X, y)))
    perc = perceptron_classifiers(X, y, num_inits=1, seed=derive_seed(seed, 3), init_scale=0.1)[0]
    sols.append(("perceptron", "perceptron", perc))
    for s in params.smooth_sigmas:
        w = smoothed_error_descent(X, y, perc.w, sigma=s, num_steps=params.smooth_steps)
        sols.append((f"smoothed error sigma={s:g}", "smoothed-error descent",
                     LinearClassifier(w=w * X.shape[1] ** 0.5, b=torch.zeros((), dtype=X.dtype, device=X.device))))
    return sols


def linear_family(params: Params, *, device: torch.device | str = "cpu", show_progress: bool = False) -> pd.DataFrame:
    """Train/test error, local energy and local-entropy proxy of every minimiser, per (alpha, seed).

    Balanced clusters. Columns ``dE_<sigma>`` (local energy) and ``S_<d>`` (proxy); the same noise
    draws are used for every minimiser of a data set, so differences between them are paired.
    """
    rows = []
    jobs = [(i, a, s) for i, a in enumerate(params.alphas) for s in range(params.num_seeds)]
    for i, alpha, seed in progress(jobs, enabled=show_progress, desc="family"):
        g = torch.Generator().manual_seed(derive_seed(seed, 2, i))
        tr = sample_mixture(int(round(alpha * params.N)), params.N, Delta=params.Delta, generator=g)
        te = sample_mixture(params.n_test, params.N, Delta=params.Delta, v=tr.v, generator=g)
        X, y, Xt, yt = tr.X.to(device), tr.y.to(device), te.X.to(device), te.y.to(device)
        train_err = lambda p: zero_one_error(p, X, y)  # noqa: E731
        noise_seed = derive_seed(seed, 4, i)
        for name, kind, clf in _solutions(params, X, y, seed):
            p = clf.params()
            le = local_energy(train_err, p, params.sigmas, num_draws=params.num_draws, seed=noise_seed)
            ent = local_entropy_proxy(train_err, p, params.entropy_distances, num_draws=params.num_draws,
                                      seed=noise_seed)
            row = {"alpha": alpha, "seed": seed, "solution": name, "kind": kind,
                   "train_error": float(train_err(p)), "test_error": float(zero_one_error(p, Xt, yt)),
                   "eps_bo": bayes_optimal_error(alpha, params.Delta, 0.5)}
            row.update({f"dE_{s:g}": float(m) for s, m in zip(params.sigmas, le.mean)})
            row.update({f"S_{d:g}": float(m) for d, m in zip(params.entropy_distances, ent.mean)})
            rows.append(row)
    return pd.DataFrame(rows)


def energy_long(family: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The local-energy columns of :func:`linear_family` in long form (one row per sigma), for plots."""
    cols = [f"dE_{s:g}" for s in params.sigmas]
    long = family.melt(id_vars=["alpha", "seed", "solution", "kind"], value_vars=cols, var_name="sigma",
                       value_name="dE")
    long["sigma"] = long["sigma"].str[3:].astype(float)
    return long


# --------------------------------------------------------------------------- 3. networks
def net_runs(params: Params, dataset: str, *, device: torch.device | str = "cpu",
             show_progress: bool = False) -> pd.DataFrame:
    """SGD, Entropy-SGD and replicated SGD at an equal gradient budget, one row per (seed, algorithm).

    One hidden layer of ``hidden`` ReLU units; every algorithm starts from the same initialisation
    for a seed and spends ``grad_budget`` minibatch gradients (Entropy-SGD: ``grad_budget // L``
    outer steps of ``L`` SGLD steps; replicated SGD: ``grad_budget // num_replicas`` steps of all
    replicas). Columns: train/test error, local energy ``dE_<sigma>`` of the returned weights.
    """
    rows = []
    for seed in progress(range(params.net_seeds), enabled=show_progress, desc=f"nets on {dataset}"):
        if dataset == "gaussian-mixture":
            data = load_dataset(dataset, seed=derive_seed(seed, 5), N=params.N, alpha=params.net_alpha,
                                Delta=params.Delta, rho=0.5, n_test=params.n_test)
        else:
            data = load_dataset(dataset, seed=seed)
        data = data.flat().to(device)
        net = make_model("mlp", data.input_shape, data.num_classes, widths=(params.hidden,),
                         seed=derive_seed(seed, 6)).to(device)
        X, y = data.X_train, data.y_train
        common = {"batch_size": params.batch_size, "seed": derive_seed(seed, 7)}
        runs = {
            "SGD": lambda: sgd(net, X, y, lr=params.lr, num_steps=params.grad_budget, **common),
            "Entropy-SGD": lambda: entropy_sgd(net, X, y, sgld_lr=params.lr, L=params.L, gamma0=params.gamma0,
                                               gamma_max=params.gamma_max, noise=params.sgld_noise,
                                               num_steps=params.grad_budget // params.L, **common),
            "replicated SGD": lambda: replicated_sgd(net, X, y, lr=params.lr, num_replicas=params.num_replicas,
                                                     gamma0=params.gamma0, gamma_max=params.gamma_max,
                                                     num_steps=params.grad_budget // params.num_replicas, **common),
        }
        # On CPU one draw's forward pass over the whole training set already fills the core and the
        # vmapped version was 2x slower than the loop (benchmarks/bench_flatness.py); on GPU batch the draws.
        on_cpu = torch.device(device).type == "cpu"
        train_err = classification_error_fn(net, X, y)
        test_err = classification_error_fn(net, data.X_test, data.y_test)
        for algo, fn in runs.items():
            res = fn()
            seed_le = derive_seed(seed, 8)
            le = (local_energy_loop(train_err, res.params, params.net_sigmas, num_draws=params.num_draws, seed=seed_le)
                  if on_cpu else local_energy(train_err, res.params, params.net_sigmas, num_draws=params.num_draws,
                                              seed=seed_le, chunk_size=100))
            row = {"dataset": dataset, "seed": seed, "algorithm": algo, "grad_evals": res.grad_evals,
                   "train_error": float(train_err(res.params)), "test_error": float(test_err(res.params))}
            row.update({f"dE_{s:g}": float(m) for s, m in zip(params.net_sigmas, le.mean)})
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 4. statistics and verdict
def flatness_gaps(family: pd.DataFrame, params: Params, alpha: float | None = None) -> pd.DataFrame:
    r"""Paired gaps :math:`D(\sigma) = \delta E_{\rm ref}(\sigma) - \delta E_{BO}(\sigma)` over seeds, per zero-error reference.

    Mean with a Student-t 95% CI and the one-sided Wilcoxon signed-rank p-value for :math:`D > 0`
    (the Bayes-optimal solution is flatter), at ``alpha`` (default ``verdict_alpha``).
    """
    alpha = params.verdict_alpha if alpha is None else alpha
    fam = family[family["alpha"] == alpha]
    bo = fam[fam["kind"] == "Bayes-optimal"].set_index("seed")
    out = []
    for ref in ZERO_ERROR:
        other = fam[fam["kind"] == ref].set_index("seed")
        for s in params.sigmas:
            d = (other[f"dE_{s:g}"] - bo[f"dE_{s:g}"]).dropna().to_numpy()
            ci = mean_ci(d)
            out.append({"alpha": alpha, "reference": ref, "sigma": s, "gap": ci.estimate, "ci_low": ci.low,
                        "ci_high": ci.high, "p_value": wilcoxon_greater(d), "n": len(d),
                        "ref_train_error": float(other["train_error"].mean()), "in_verdict": s in params.verdict_sigmas})
    return pd.DataFrame(out)


def family_spearman(family: pd.DataFrame, params: Params, alpha: float | None = None) -> dict[str, Any]:
    """Spearman rank correlation of local energy at ``sigma_star`` with test error across the family, per seed."""
    alpha = params.verdict_alpha if alpha is None else alpha
    fam = family[family["alpha"] == alpha]
    col = f"dE_{params.sigma_star:g}"
    per_seed = [float(sps.spearmanr(g[col], g["test_error"]).statistic) for _, g in fam.groupby("seed")]
    per_seed = [r for r in per_seed if np.isfinite(r)]
    ci = bootstrap_ci(per_seed)
    means = fam.groupby("solution")[[col, "test_error"]].mean()
    pooled = float(sps.spearmanr(means[col], means["test_error"]).statistic)
    return {"alpha": alpha, "sigma": params.sigma_star, "per_seed": per_seed, "mean": ci.to_dict(),
            "seed_averaged": pooled}


def algorithm_gaps(runs: pd.DataFrame, eps_bo: float | None = None) -> pd.DataFrame:
    """Paired differences against SGD over seeds: test error (SGD minus algorithm), i.e. > 0 when the algorithm is better.

    Mean with a Student-t 95% CI over seeds (few seeds: the percentile bootstrap would be too narrow).

    On the mixture, the test-error difference equals the difference of the gaps to
    :math:`\\varepsilon_{BO}` (``eps_bo`` only adds the gaps themselves to the table).
    """
    piv = runs.pivot(index="seed", columns="algorithm", values="test_error")
    out = []
    for algo in ALGORITHMS:
        ci_err = mean_ci(piv[algo])
        row = {"algorithm": algo, "test_error": ci_err.estimate, "err_low": ci_err.low, "err_high": ci_err.high}
        if eps_bo is not None:
            row["gap_to_bo"] = ci_err.estimate - eps_bo
        if algo != "SGD":
            d = (piv["SGD"] - piv[algo]).to_numpy()
            ci = mean_ci(d)
            row.update({"improvement": ci.estimate, "imp_low": ci.low, "imp_high": ci.high,
                        "wins": int((d > 0).sum()), "n": len(d)})
        out.append(row)
    return pd.DataFrame(out)


def runs_spearman(runs: pd.DataFrame, sigma: float) -> dict[str, float]:
    """Spearman correlation between local energy at ``sigma`` and test error over all runs (seeds x algorithms)."""
    r = sps.spearmanr(runs[f"dE_{sigma:g}"], runs["test_error"])
    return {"sigma": sigma, "spearman": float(r.statistic), "p_value": float(r.pvalue), "n": len(runs)}


def verdict(params: Params, gaps: pd.DataFrame, spearman: dict[str, Any], algos: pd.DataFrame) -> dict[str, Any]:
    """The decision, computed from the statistics; returns ``verdict``, ``criterion`` and each part's outcome.

    * A (wide flat minimum): for every sigma in ``verdict_sigmas`` and both zero-error references,
      the one-sided Wilcoxon p-value of :math:`D(\\sigma) > 0` is below ``p_threshold``.
    * B (flatness tracks generalisation): mean per-seed Spearman >= ``min_spearman``.
    * C (flatness-seeking helps): for both Entropy-SGD and replicated SGD the bootstrap 95% CI of the
      paired test-error improvement over SGD (mixture network, Student-t over seeds) lies above 0; "contrary" if either
      lies below 0.

    ``reproduced`` if A, B and C hold; ``not reproduced`` if A or B fails or C is contrary;
    ``inconclusive`` if A and B hold but C is a null result, or if ``num_seeds`` is too small for
    the Wilcoxon test to reach ``p_threshold`` at all (:math:`2^{-n} > p`).
    """
    sel = gaps[gaps["in_verdict"]]
    a_pass = bool((sel["p_value"] < params.p_threshold).all())
    b_value = float(spearman["mean"]["estimate"])
    b_pass = b_value >= params.min_spearman
    others = algos[algos["algorithm"] != "SGD"]
    c_pass = bool((others["imp_low"] > 0).all())
    c_contrary = bool((others["imp_high"] < 0).any())
    underpowered = 2.0 ** (-params.num_seeds) > params.p_threshold
    if underpowered:
        v = "inconclusive"
    elif a_pass and b_pass and c_pass:
        v = "reproduced"
    elif not a_pass or not b_pass or c_contrary:
        v = "not reproduced"
    else:
        v = "inconclusive"
    criterion = (
        f"A: at alpha={params.verdict_alpha:g}, for every sigma in {list(params.verdict_sigmas)} the local energy of the "
        f"Bayes-optimal solution is below that of the max-margin and perceptron solutions (paired one-sided Wilcoxon "
        f"over {params.num_seeds} seeds, p < {params.p_threshold:g}); B: mean per-seed Spearman(dE(sigma={params.sigma_star:g}), "
        f"test error) across the family of minimisers >= {params.min_spearman:g}; C: Entropy-SGD and replicated SGD "
        f"both have lower test error than SGD at equal gradient budget on the mixture network (Student-t 95% CI of the "
        f"paired improvement over {params.net_seeds} seeds > 0). Reproduced if A, B and C hold; not reproduced if A or B fails or C is significantly "
        f"reversed; inconclusive if only C is a null result or the seeds are too few for p < {params.p_threshold:g}.")
    return {"verdict": v, "criterion": criterion, "A_flat_minimum": a_pass, "B_spearman": b_pass,
            "B_value": b_value, "C_algorithms": "pass" if c_pass else ("contrary" if c_contrary else "null"),
            "underpowered": underpowered}


def record(params: Params, *, curve: pd.DataFrame, family: pd.DataFrame, gmm_runs: pd.DataFrame,
           real_runs: pd.DataFrame, device: torch.device | str, runtime_s: float) -> dict[str, Any]:
    """Compute every statistic and the verdict and assemble the results record."""
    agreement = bo_agreement(curve)
    gaps = flatness_gaps(family, params)
    spear = family_spearman(family, params)
    eps_net = bayes_optimal_error(params.net_alpha, params.Delta, 0.5)
    algos = algorithm_gaps(gmm_runs, eps_net)
    real_algos = algorithm_gaps(real_runs)
    real_corr = runs_spearman(real_runs, max(params.net_sigmas))
    dec = verdict(params, gaps, spear, algos)
    head = gaps[(gaps["reference"] == "max-margin") & (gaps["sigma"] == params.sigma_star)].iloc[0]
    stats = {
        "bo_curve": agreement.to_dict(orient="records"),
        "bo_within_3se": bool((agreement["z"] < 3).all()),
        "flatness_gaps": gaps.to_dict(orient="records"),
        "family_spearman": spear,
        "family_means": family[family["alpha"] == params.verdict_alpha].groupby("solution")[
            ["train_error", "test_error", *[f"dE_{s:g}" for s in params.sigmas]]].mean().reset_index()
        .to_dict(orient="records"),
        "mixture_networks": algos.to_dict(orient="records"),
        "mixture_eps_bo": eps_net,
        "real_networks": real_algos.to_dict(orient="records"),
        "real_dataset": params.real_dataset,
        "real_flatness_spearman": real_corr,
        "per_seed": {"mixture_networks": gmm_runs.to_dict(orient="records"),
                     "real_networks": real_runs.to_dict(orient="records")},
        "decision": {k: v for k, v in dec.items() if k not in ("verdict", "criterion")},
    }
    return make_record(
        claim=params.CLAIM, params=params, verdict=dec["verdict"], statistics=stats, criterion=dec["criterion"],
        seeds=list(range(params.num_seeds)), runtime_s=runtime_s, device=str(device),
        headline={"label": f"local-energy gap dE(sigma={params.sigma_star:g}), max-margin minus Bayes-optimal, "
                           f"alpha={params.verdict_alpha:g}",
                  "value": float(head["gap"]), "ci_low": float(head["ci_low"]), "ci_high": float(head["ci_high"]),
                  "paper": "Bayes-optimal solution lies in a wider flat region than ERM minimisers (replica theory, "
                           "N -> infinity; qualitative)"},
        notes=f"A={dec['A_flat_minimum']}, B={dec['B_value']:.3f}, C={dec['C_algorithms']}")


def run(params: Params, *, device: torch.device | str = "cpu", show_progress: bool = False) -> dict[str, Any]:
    """The whole protocol in one call (the notebook calls the parts one by one to plot them)."""
    t0 = time.perf_counter()
    curve = bo_curve(params, device=device, show_progress=show_progress)
    family = linear_family(params, device=device, show_progress=show_progress)
    gmm = net_runs(params, "gaussian-mixture", device=device, show_progress=show_progress)
    real = net_runs(params, params.real_dataset, device=device, show_progress=show_progress)
    return record(params, curve=curve, family=family, gmm_runs=gmm, real_runs=real, device=device,
                  runtime_s=time.perf_counter() - t0)


def summary_text(rec: dict[str, Any]) -> str:
    """Data-dependent sentences for the chapter's discussion: each one is chosen by this run's statistics."""
    s = rec["statistics"]
    p = rec["parameters"]
    dec = s["decision"]
    lines = []
    bo_ok = s["bo_within_3se"]
    worst = max(r["z"] for r in s["bo_curve"])
    lines.append(
        f"The Monte-Carlo test error of the plug-in Bayes-optimal estimator at N = {p['N']} "
        + ("agrees with the N -> infinity formula within 3 standard errors at every (rho, alpha)"
           if bo_ok else "departs from the N -> infinity formula by more than 3 standard errors somewhere")
        + f" (largest |MC - theory|/SE = {worst:.1f}).")
    sel = [g for g in s["flatness_gaps"] if g["in_verdict"]]
    n_sig = sum(g["p_value"] < p["p_threshold"] for g in sel)
    n_pos = sum(g["gap"] > 0 for g in sel)
    lines.append(
        f"Part A: in {n_pos} of {len(sel)} (reference, sigma) pairs the zero-error solution's local energy exceeds the "
        f"Bayes-optimal one on average, and {n_sig} of {len(sel)} paired Wilcoxon tests reach p < {p['p_threshold']:g}"
        + (" (too few seeds for the test to reach that level at all)." if dec["underpowered"] else "."))
    flatter = sorted({(g["reference"], g["sigma"]) for g in s["flatness_gaps"] if g["ci_high"] < 0})
    if flatter:
        where = ", ".join(f"{r} at sigma = {sg:g}" for r, sg in flatter)
        lines.append(f"The Bayes-optimal solution is not flatter at every radius: the gap's 95% CI lies below 0 for "
                     f"{where}. A margin protects a zero-error solution against small perturbations, so flatness "
                     "must be measured at a finite radius, not infinitesimally.")
    else:
        lines.append("No zero-error solution is significantly flatter than the Bayes-optimal one at any sigma.")
    sp = s["family_spearman"]
    lines.append(
        f"Part B: across the family the mean per-seed Spearman correlation of dE(sigma={sp['sigma']:g}) with test "
        f"error is {sp['mean']['estimate']:.2f} (95% CI {sp['mean']['low']:.2f} to {sp['mean']['high']:.2f}); the "
        f"criterion asks for at least {p['min_spearman']:g}, so it is "
        + ("met." if dec["B_spearman"] else "not met."))
    eps = s["mixture_eps_bo"]
    sgd_gap = next(r["test_error"] for r in s["mixture_networks"] if r["algorithm"] == "SGD") - eps
    for row in s["mixture_networks"]:
        if row["algorithm"] == "SGD":
            lines.append(f"Part C: on the mixture network SGD reaches test error {row['test_error']:.3f} against "
                         f"eps_BO = {eps:.3f}.")
            continue
        verb = ("lower than SGD's (CI above 0)" if row["imp_low"] > 0 else
                "higher than SGD's (CI below 0)" if row["imp_high"] < 0 else
                "not distinguishable from SGD's (CI contains 0)")
        lines.append(f"{row['algorithm']} has test error {row['test_error']:.3f}, {verb}: improvement "
                     f"{row['improvement']:+.4f} [{row['imp_low']:+.4f}, {row['imp_high']:+.4f}], better in "
                     f"{int(row['wins'])} of {int(row['n'])} seeds; it closes {100 * row['improvement'] / sgd_gap:.0f}% of "
                     f"SGD's gap to eps_BO.")
    rc = s["real_flatness_spearman"]
    lines.append(f"On {s['real_dataset']}, over all {rc['n']} trained networks, Spearman(dE(sigma={rc['sigma']:g}), "
                 f"test error) = {rc['spearman']:.2f} (p = {rc['p_value']:.2g}); "
                 + ("flatter networks generalise better here." if rc["spearman"] > 0 and rc["p_value"] < 0.05 else
                    "flatter networks generalise *worse* here." if rc["spearman"] < 0 and rc["p_value"] < 0.05 else
                    "no significant association at this sample size."))
    return "\n\n".join(lines)
