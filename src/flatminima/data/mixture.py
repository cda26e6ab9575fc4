r"""High-dimensional two-cluster Gaussian mixtures.

Generative model of Mignacco et al. (ICML 2020) used by Baldassi, Malatesta, Negri &
Zecchina (J. Stat. Mech. 2020, arXiv 2010.14761), section II:

.. math::

    x^\mu = y^\mu \frac{v}{\sqrt N} + \sqrt{\Delta}\, z^\mu, \qquad
    v \sim \mathcal N(0, I_N),\; z^\mu \sim \mathcal N(0, I_N),\; P(y^\mu = +1) = \rho,

with :math:`P = \alpha N` training samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import special


@dataclass(frozen=True)
class MixtureSample:
    """Samples ``X`` (n, N), labels ``y`` in {-1, +1} (n,), and the cluster direction ``v`` (N,)."""

    X: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor


def sample_mixture(n: int, N: int, *, Delta: float, rho: float = 0.5,
                   v: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32) -> MixtureSample:
    r"""Draw ``n`` points of the mixture :math:`x = y v/\sqrt N + \sqrt\Delta z`.

    ``v`` is drawn from N(0, I_N) when not given (pass the training set's ``v`` to draw a test
    set from the same mixture). ``rho`` is P(y = +1); ``Delta`` the noise variance.

    Parameters
    ----------
    n : int
        Number of points.
    N : int
        Dimension.
    Delta : float
        Noise variance :math:`\Delta`.
    rho : float
        :math:`P(y = +1)`.
    v : torch.Tensor or None
        The cluster direction (drawn when ``None``).
    generator : torch.Generator or None
        Source of randomness.
    dtype : torch.dtype
        Dtype of the data.

    Returns
    -------
    MixtureSample
        ``X``, ``y`` and ``v``.
    """
    if n < 1 or N < 1:
        raise ValueError(f"n and N must be positive, got n={n}, N={N}")
    if Delta <= 0:
        raise ValueError(f"Delta must be > 0, got {Delta}")
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    if v is None:
        v = torch.randn(N, generator=generator, dtype=dtype)
    y = torch.where(torch.rand(n, generator=generator) < rho, 1.0, -1.0).to(dtype)
    z = torch.randn(n, N, generator=generator, dtype=dtype)
    X = y[:, None] * v[None, :] / N ** 0.5 + Delta ** 0.5 * z
    return MixtureSample(X=X, y=y, v=v)


# --------------------------------------------------------------------------- Bayes-optimal theory
def _H(x: np.ndarray | float) -> np.ndarray | float:
    r"""Gaussian tail :math:`H(x) = \tfrac12 \operatorname{erfc}(x/\sqrt2)`."""
    return 0.5 * special.erfc(np.asarray(x, dtype=float) / np.sqrt(2.0))


def bayes_optimal_overlap(alpha: float, Delta: float) -> float:
    r"""Posterior overlap :math:`q = \alpha/(\alpha + \Delta)` of the Bayes-optimal estimator.

    With labels observed, the posterior of the cluster direction is
    :math:`v \mid \mathcal D \sim \mathcal N(q u, \Delta/(\alpha+\Delta)\, I)` with
    :math:`u = (\sqrt N / P) \sum_\mu y^\mu x^\mu`.

    Parameters
    ----------
    alpha : float
        Points per dimension :math:`\alpha = P/N`.
    Delta : float
        Noise variance.

    Returns
    -------
    float
        :math:`q`.
    """
    if alpha <= 0 or Delta <= 0:
        raise ValueError(f"alpha and Delta must be > 0, got alpha={alpha}, Delta={Delta}")
    return alpha / (alpha + Delta)


def bayes_optimal_bias(Delta: float, rho: float) -> float:
    r"""Bayes-optimal threshold :math:`b^* = \tfrac{\Delta}{2} \ln\frac{\rho}{1-\rho}` (0 when balanced).

    Parameters
    ----------
    Delta : float
        Noise variance.
    rho : float
        :math:`P(y = +1)`.

    Returns
    -------
    float
        :math:`b^*`.
    """
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho}")
    return 0.5 * Delta * float(np.log(rho / (1 - rho)))


def bayes_optimal_error(alpha: float, Delta: float, rho: float = 0.5) -> float:
    r"""Closed-form Bayes-optimal test error of the two-cluster mixture for :math:`N \to \infty`.

    Baldassi, Malatesta, Negri & Zecchina (2020), section II; with :math:`q = \alpha/(\alpha+\Delta)`
    the pre-activation of the Bayes-optimal classifier obeys :math:`h \mid y \sim \mathcal N(yq, \Delta q)`, so

    .. math::

        \varepsilon_{BO} = \rho\, H\!\left(\frac{q + b^*}{\sqrt{\Delta q}}\right)
        + (1-\rho)\, H\!\left(\frac{q - b^*}{\sqrt{\Delta q}}\right),
        \qquad b^* = \frac{\Delta}{2}\ln\frac{\rho}{1-\rho},

    which for :math:`\rho = 1/2` is :math:`H\big(\sqrt{\alpha/(\Delta(\alpha+\Delta))}\big)`.

    Parameters
    ----------
    alpha : float
        Points per dimension.
    Delta : float
        Noise variance.
    rho : float
        :math:`P(y = +1)`.

    Returns
    -------
    float
        :math:`\varepsilon_{BO}`.
    """
    q = bayes_optimal_overlap(alpha, Delta)
    b = bayes_optimal_bias(Delta, rho)
    s = np.sqrt(Delta * q)
    return float(rho * _H((q + b) / s) + (1 - rho) * _H((q - b) / s))


@dataclass(frozen=True)
class LinearClassifier:
    r"""A threshold-linear classifier :math:`\hat y(x) = \operatorname{sign}(w \cdot x/\sqrt N + b)`."""

    w: torch.Tensor
    b: torch.Tensor

    def params(self) -> dict[str, torch.Tensor]:
        """The parameters as a dict (the form :mod:`flatminima.landscape.flatness` perturbs)."""
        return {"w": self.w, "b": self.b}


def preactivation(params: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    r""":math:`h = X w/\sqrt N + b` for a parameter dict ``{"w": (N,), "b": ()}``.

    Parameters
    ----------
    params : dict of str to torch.Tensor
        ``{"w": (N,), "b": ()}``.
    X : torch.Tensor
        Inputs, shape ``(P, N)``.

    Returns
    -------
    torch.Tensor
        :math:`h`, shape ``(P,)``.
    """
    return X @ params["w"] / X.shape[-1] ** 0.5 + params["b"]


def zero_one_error(params: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Error-counting loss :math:`E = \frac1P \sum_\mu \Theta(-y^\mu h^\mu)` (ties count as errors); labels in {-1, +1}.

    Parameters
    ----------
    params : dict of str to torch.Tensor
        ``{"w": (N,), "b": ()}``.
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.

    Returns
    -------
    torch.Tensor
        :math:`E`, a scalar.
    """
    return (y * preactivation(params, X) <= 0).to(X.dtype).mean()


def bayes_optimal_estimator(X: torch.Tensor, y: torch.Tensor, *, Delta: float, rho: float = 0.5) -> LinearClassifier:
    r"""Plug-in Bayes-optimal classifier: Hebbian direction and threshold :math:`b^*`.

    :math:`w = q\, u`, :math:`u = \frac{\sqrt N}{P}\sum_\mu y^\mu x^\mu`, :math:`q = \alpha/(\alpha+\Delta)`,
    :math:`b = b^*` (see :func:`bayes_optimal_error`). ``X`` is (P, N), ``y`` in {-1, +1}.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    Delta : float
        Noise variance.
    rho : float
        :math:`P(y = +1)`.

    Returns
    -------
    LinearClassifier
        :math:`w = q u`, :math:`b = b^*`.
    """
    P, N = X.shape
    q = bayes_optimal_overlap(P / N, Delta)
    u = (N ** 0.5 / P) * (y @ X)
    b = torch.tensor(bayes_optimal_bias(Delta, rho), dtype=X.dtype, device=X.device)
    return LinearClassifier(w=q * u, b=b)


def plugin_test_error(X: torch.Tensor, y: torch.Tensor, *, Delta: float, rho: float, n_test: int,
                      v: torch.Tensor, generator: torch.Generator | None = None,
                      chunk: int = 10_000) -> tuple[float, float]:
    """Monte-Carlo test error of the plug-in Bayes-optimal estimator trained on ``(X, y)``.

    Draws ``n_test`` fresh points from the same mixture (same ``v``) in chunks; returns the error
    and its binomial standard error :math:`\\sqrt{\\varepsilon(1-\\varepsilon)/n}`.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\\{-1, +1\\}`.
    Delta : float
        Noise variance.
    rho : float
        :math:`P(y = +1)`.
    n_test : int
        Fresh test points.
    v : torch.Tensor
        The mixture's direction.
    generator : torch.Generator or None
        Source of randomness.
    chunk : int
        Test points per chunk.

    Returns
    -------
    error : float
        The test error.
    se : float
        Its binomial standard error.
    """
    clf = bayes_optimal_estimator(X, y, Delta=Delta, rho=rho)
    errors = 0.0
    for start in range(0, n_test, chunk):
        n = min(chunk, n_test - start)
        test = sample_mixture(n, X.shape[1], Delta=Delta, rho=rho, v=v.cpu(), generator=generator,
                              dtype=X.dtype)
        errors += float(zero_one_error(clf.params(), test.X.to(X.device), test.y.to(X.device))) * n
    err = errors / n_test
    return err, float(np.sqrt(max(err * (1 - err), 1e-12) / n_test))


# --------------------------------------------------------------------------- other minimisers
def ridge_classifier(X: torch.Tensor, y: torch.Tensor, lam: float) -> LinearClassifier:
    r"""Ridge-regularised square loss (the MSE loss of Baldassi et al. 2020) without bias, in closed form.

    Minimises :math:`\tfrac12 \sum_\mu (y^\mu - w\cdot x^\mu/\sqrt N)^2 + \tfrac\lambda2 \lVert w\rVert^2`, i.e.
    :math:`w = \sqrt N\,(X^\top X + \lambda N I)^{-1} X^\top y`. For :math:`\lambda \to \infty` the
    direction tends to the Hebbian one :math:`\sum_\mu y^\mu x^\mu` (Bayes-optimal when balanced);
    for :math:`\lambda \to 0` it interpolates the labels when :math:`P < N`. No bias: a bias fitted
    without penalty would stay at the label mean while :math:`w \to 0`, a majority vote at large :math:`\lambda`.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    lam : float
        :math:`\lambda > 0`.

    Returns
    -------
    LinearClassifier
        With :math:`b = 0`.
    """
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    P, N = X.shape
    A = X / N ** 0.5
    eye = torch.eye(N, dtype=X.dtype, device=X.device)
    w = torch.linalg.solve(A.T @ A + lam * eye, A.T @ y)
    return LinearClassifier(w=w, b=torch.zeros((), dtype=X.dtype, device=X.device))


def _sklearn_linear(model, X: torch.Tensor, y: torch.Tensor) -> LinearClassifier:
    import warnings

    Xn = X.detach().cpu().double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on separable data; the fit is checked by its error
        model.fit(Xn, y.detach().cpu().numpy())
    N = X.shape[1]
    w = torch.as_tensor(np.ravel(model.coef_) * N ** 0.5, dtype=X.dtype, device=X.device)
    b = torch.as_tensor(float(np.ravel(model.intercept_)[0]), dtype=X.dtype, device=X.device)
    return LinearClassifier(w=w, b=b)


def logistic_classifier(X: torch.Tensor, y: torch.Tensor, lam: float = 1e-4) -> LinearClassifier:
    r"""L2-regularised logistic regression (scikit-learn, ``C = 1/\lambda``); tiny :math:`\lambda` approaches max-margin on separable data.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    lam : float
        :math:`\lambda > 0`.

    Returns
    -------
    LinearClassifier
        Weights and bias.
    """
    from sklearn.linear_model import LogisticRegression

    return _sklearn_linear(LogisticRegression(C=1.0 / lam, solver="newton-cg", max_iter=1000, tol=1e-4), X, y)


def max_margin_classifier(X: torch.Tensor, y: torch.Tensor, C: float = 1e4) -> LinearClassifier:
    """Hard-margin SVM approximated by scikit-learn's linear ``SVC`` with a large ``C`` (soft margin if not separable).

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\\{-1, +1\\}`.
    C : float
        The SVM's ``C``.

    Returns
    -------
    LinearClassifier
        Weights and bias.
    """
    from sklearn.svm import SVC

    return _sklearn_linear(SVC(kernel="linear", C=C, tol=1e-4), X, y)


def perceptron_classifiers(X: torch.Tensor, y: torch.Tensor, *, num_inits: int, seed: int,
                           init_scale: float = 1.0, lr: float = 1.0, max_epochs: int = 2000) -> list[LinearClassifier]:
    r"""Batch perceptron from ``num_inits`` random initialisations at once: "typical" zero-error solutions.

    Each of the :math:`K` weight vectors starts at :math:`w_0 \sim \mathcal N(0, s^2 I_N)` (``s = init_scale``), :math:`b_0 = 0`, and
    repeats :math:`w \leftarrow w + \frac{\eta}{P}\sum_{\mu:\,y^\mu h^\mu \le 0} y^\mu x^\mu/\sqrt N`
    (and the same for :math:`b`) until it has no training error or ``max_epochs`` full-batch steps
    have passed (then the last iterate is returned: check its training error). Use a ``seed`` unrelated
    to the one that drew the data: the same generator state would draw :math:`w_0 = v`.

    Parameters
    ----------
    X : torch.Tensor
        Inputs, shape ``(P, N)``.
    y : torch.Tensor
        Labels in :math:`\{-1, +1\}`.
    num_inits : int
        Number :math:`K` of initialisations.
    seed : int
        Seed of :math:`w_0`.
    init_scale : float
        :math:`s`.
    lr : float
        :math:`\eta`.
    max_epochs : int
        Largest number of full-batch steps.

    Returns
    -------
    list of LinearClassifier
        One per initialisation.
    """
    P, N = X.shape
    g = torch.Generator().manual_seed(seed)
    W = init_scale * torch.randn(num_inits, N, generator=g, dtype=X.dtype).to(X.device)
    b = torch.zeros(num_inits, dtype=X.dtype, device=X.device)
    Xs = X / N ** 0.5
    for _ in range(max_epochs):
        wrong = (y[None, :] * (W @ Xs.T + b[:, None]) <= 0).to(X.dtype)  # (K, P)
        if not bool(wrong.any()):
            break
        W += lr / P * (wrong * y[None, :]) @ Xs * N ** 0.5
        b += lr / P * (wrong * y[None, :]).sum(1)
    return [LinearClassifier(w=W[k].clone(), b=b[k].clone()) for k in range(num_inits)]
