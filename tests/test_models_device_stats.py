"""Models, device selection and the shared statistics, each against an independent answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from flatminima.core.device import configure_threads, resolve_device
from flatminima.core.errors import ParameterError
from flatminima.nn.models import MLP, SmallCNN, make_model
from flatminima.stats.decision import sign_test_greater, wilcoxon_greater
from flatminima.stats.intervals import bootstrap_ci, mean_ci


def test_mlp_matches_a_manual_forward_pass():
    net = MLP([3, 4, 2], activation="tanh")
    X = torch.randn(5, 3)
    W1, b1 = net.layers[0].weight, net.layers[0].bias
    W2, b2 = net.layers[1].weight, net.layers[1].bias
    expected = torch.tanh(X @ W1.T + b1) @ W2.T + b2
    assert torch.allclose(net(X), expected, atol=1e-6)


def test_make_model_seed_fixes_init_and_shapes():
    a = make_model("mlp", (40,), 10, widths=(32, 32), seed=3)
    b = make_model("mlp", (40,), 10, widths=(32, 32), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a(torch.zeros(7, 40)).shape == (7, 10)
    cnn = make_model("cnn", (3, 32, 32), 10, widths=(8, 16), hidden=32, seed=0)
    assert isinstance(cnn, SmallCNN) and cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    cnn1d = make_model("cnn", (40,), 10, widths=(4,), hidden=8)
    assert cnn1d(torch.zeros(2, 40)).shape == (2, 10)


@pytest.mark.parametrize("bad, pattern", [
    (dict(arch="rnn"), "unknown arch 'rnn'"),
    (dict(arch="mlp", activation="swishy"), "unknown activation 'swishy'"),
])
def test_model_errors_name_the_choice(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_model(bad.pop("arch"), (4,), 2, **bad)


def test_auto_device_is_cpu_without_cuda_and_bad_names_fail():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="torch sees no CUDA GPU here"):
            resolve_device("cuda")
        with pytest.raises(ParameterError, match="torch sees no CUDA GPU here"):
            resolve_device("cuda:1")


def test_configure_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
        with pytest.raises(ValueError):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_mean_ci_is_the_student_t_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    ci = mean_ci(x, confidence=0.9)
    lo, hi = sps.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert ci.estimate == pytest.approx(3.5) and ci.low == pytest.approx(lo) and ci.high == pytest.approx(hi)
    single = mean_ci([2.0])
    assert (single.low, single.high, single.n) == (2.0, 2.0, 1)


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(60):
        ci = bootstrap_ci(rng.normal(1.0, 1.0, 40), n_resamples=999, seed=i)
        covered += ci.low < 1.0 < ci.high
    assert 48 <= covered <= 60  # nominal 95% of 60 = 57


def test_sign_test_p_value_is_two_to_the_minus_n_when_all_positive():
    assert sign_test_greater([0.3, 1.2, 0.1, 5.0, 2.0]) == pytest.approx(2 ** -5)
    assert sign_test_greater([-1.0, -2.0]) == pytest.approx(1.0)
    assert wilcoxon_greater([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(1 / 64)
