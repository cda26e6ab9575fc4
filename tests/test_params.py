"""Parameter validation: bad input fails early with a message naming the parameter."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from flatminima.claims.registry import CLAIMS, params_class, resolve
from flatminima.core.errors import ParameterError
from flatminima.protocol.params import PRESET_NAMES, ClaimParams, param


@dataclasses.dataclass(frozen=True)
class ToyParams(ClaimParams):
    CLAIM: ClassVar[str] = "toy"
    PRESETS: ClassVar[dict] = {"smoke": {"num_seeds": 1}, "paper": {"num_seeds": 10, "lr": 0.01}}

    num_seeds: int = param(3, "seeds", low=1, high=20)
    lr: float = param(0.1, "learning rate", low=0.0, low_inclusive=False)
    dataset: str = param("digits", "data", choices=("digits", "mnist1d"))
    widths: tuple[int, ...] = param((8, 8), "widths", low=1)
    verbose: bool = param(False, "talk")


def test_preset_values_then_overrides_apply_in_order():
    p = ToyParams.from_preset("paper", lr=0.5)
    assert (p.num_seeds, p.lr, p.preset) == (10, 0.5, "paper")
    assert ToyParams.from_preset("cpu").num_seeds == 3  # cpu = dataclass defaults


def test_unknown_parameter_is_named_with_a_suggestion():
    with pytest.raises(ParameterError, match=r"unknown parameter 'num_seed'.*Did you mean 'num_seeds'"):
        ToyParams.from_preset("cpu", num_seed=2)


@pytest.mark.parametrize("name, value, pattern", [
    ("num_seeds", 0, r"'num_seeds' must be >= 1 and <= 20, got 0"),
    ("num_seeds", 2.5, r"'num_seeds' must be an int"),
    ("lr", -1.0, r"'lr' must be > 0.0"),
    ("lr", float("nan"), r"'lr' must be finite"),
    ("dataset", "mnst1d", r"'dataset' got 'mnst1d'; allowed values: 'digits', 'mnist1d' \(did you mean 'mnist1d'\?\)"),
    ("widths", [8, 0], r"'widths' must be >= 1"),
    ("verbose", "maybe", r"'verbose' must be a bool"),
])
def test_bad_values_fail_with_the_parameter_and_the_allowed_range(name, value, pattern):
    with pytest.raises(ParameterError, match=pattern):
        ToyParams.from_preset("cpu", **{name: value})


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ParameterError, match=r"'preset' got 'fast'; allowed values: 'smoke', 'cpu', 'paper'"):
        ToyParams.from_preset("fast")


def test_values_are_coerced_to_the_annotated_types():
    p = ToyParams.from_preset("cpu", lr=1, widths=[4, "5"], num_seeds="2", verbose="true")
    assert p.lr == 1.0 and isinstance(p.lr, float)
    assert p.widths == (4, 5) and p.num_seeds == 2 and p.verbose is True
    assert p.to_dict()["widths"] == [4, 5]


def test_from_namespace_takes_non_none_fields_and_ignores_run_controls():
    ns = {"preset": "smoke", "lr": None, "dataset": "mnist1d", "device": "cpu", "results_dir": "x",
          "show_progress": False, "some_import": object()}
    p = ToyParams.from_namespace(ns)
    assert (p.preset, p.num_seeds, p.lr, p.dataset) == ("smoke", 1, 0.1, "mnist1d")


def test_params_are_frozen():
    p = ToyParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 3.0  # type: ignore[misc]


def test_describe_lists_every_field_with_its_presets():
    rows = {r["name"]: r for r in ToyParams.describe()}
    assert set(rows) == {"preset", "seeds", "num_seeds", "lr", "dataset", "widths", "verbose"}
    assert rows["num_seeds"]["presets"] == {"smoke": 1, "cpu": 3, "paper": 10}
    assert rows["dataset"]["allowed"] == "digits | mnist1d"


@pytest.mark.parametrize("claim", list(CLAIMS))
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_of_every_claim_validates(claim, preset):
    p = resolve(claim, preset)
    assert p.preset == preset and p.CLAIM == claim
    assert set(params_class(claim).PRESETS) <= set(PRESET_NAMES)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_cpu_preset_equals_the_dataclass_defaults(claim):
    cls = params_class(claim)
    assert resolve(claim, "cpu") == cls()


def test_unknown_claim_is_named():
    with pytest.raises(ParameterError, match=r"unknown claim 'sharp'; allowed claims: sharp-minima"):
        resolve("sharp")
