"""Seeds as a first-class parameter: parsing, validation and the per-seed cache."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

import pytest

from flatminima.claims.registry import CLAIMS, resolve
from flatminima.core.errors import ParameterError
from flatminima.protocol.cache import load_cached, seed_key
from flatminima.protocol.params import ClaimParams, param, parse_seeds
from flatminima.protocol.replicates import run_seeds

from . import seedfns


@dataclass(frozen=True)
class SeedParams(ClaimParams):
    CLAIM: ClassVar[str] = "seedtoy"
    PRESETS: ClassVar[dict] = {"smoke": {"num_seeds": 2}, "cpu": {"num_seeds": 4}}
    num_seeds: int = param(3, "seeds", low=1, high=50)
    value: float = param(1.0, "a number")


@pytest.mark.parametrize("text,expected", [
    ("100-104", (100, 101, 102, 103, 104)),
    ("[7, 3, 9]", (7, 3, 9)),
    ("0-2,10", (0, 1, 2, 10)),
    ("5-5", (5,)),
    ([1, 2, 3], (1, 2, 3)),
    ((4.0, 5.0), (4, 5)),
    (None, ()),
])
def test_seeds_parse_from_lists_and_inclusive_ranges(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("bad,message", [
    (5, "bare int"),
    ("9-3", "empty range"),
    ("1,1", "repeats"),
    ([0, -1], "negative"),
    ("a-b", "neither an int nor a range"),
    ("[1, 2", "not a valid YAML list"),
    ([0.5], "non-integer"),
])
def test_bad_seeds_fail_with_a_message_naming_the_parameter(bad, message):
    with pytest.raises(ParameterError, match=rf"'seeds'.*{message}"):
        parse_seeds(bad)


def test_default_seeds_are_zero_to_num_seeds_and_explicit_seeds_set_the_count():
    assert SeedParams.from_preset("cpu").seeds == (0, 1, 2, 3)
    p = SeedParams.from_preset("cpu", seeds="100-119")
    assert p.seeds == tuple(range(100, 120)) and p.num_seeds == 20
    assert SeedParams.from_preset("cpu", num_seeds=6).seeds == tuple(range(6))
    assert p.to_dict()["seeds"] == list(range(100, 120))
    with pytest.raises(ParameterError, match="disagree"):
        SeedParams.from_preset("cpu", seeds=[1, 2], num_seeds=3)
    with pytest.raises(ParameterError, match="'seeds' has 60 seeds.*between 1 and 50"):
        SeedParams.from_preset("cpu", seeds="0-59")


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_every_claim_takes_seeds_and_records_the_list(claim):
    p = resolve(claim, "smoke", {"seeds": "100-104"})
    assert p.seeds == (100, 101, 102, 103, 104) and p.to_dict()["seeds"] == [100, 101, 102, 103, 104]


def test_cached_seeds_are_reused_and_only_missing_seeds_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDFNS_MARKS", str(tmp_path / "marks"))
    p = SeedParams.from_preset("cpu", seeds=[0, 1])
    first = run_seeds(seedfns.counting, p, cache_dir=tmp_path / "cache", workers=1)
    assert len(list((tmp_path / "marks").iterdir())) == 2
    more = SeedParams.from_preset("cpu", seeds=[0, 1, 2])
    second = run_seeds(seedfns.counting, more, cache_dir=tmp_path / "cache", workers=1)
    assert second[:2] == first  # read back, not recomputed
    assert sorted(m.name.split("-")[0] for m in (tmp_path / "marks").iterdir()) == ["0", "1", "2"]
    changed = SeedParams.from_preset("cpu", seeds=[0], value=2.0)  # another parameter: another key
    assert run_seeds(seedfns.counting, changed, cache_dir=tmp_path / "cache", workers=1)[0]["value"] != first[0]["value"]


def test_an_interrupted_run_keeps_finished_seeds_and_resumes(tmp_path):
    p = SeedParams.from_preset("cpu", seeds=[0, 1, 2, 3, 4])
    with pytest.raises(KeyboardInterrupt):
        run_seeds(seedfns.fails_on_seed_3, p, cache_dir=tmp_path, workers=1)
    stored = sorted(f.name.split("-")[1] for f in (tmp_path / "seedtoy").iterdir())
    assert stored == ["0", "1", "2"]
    again = run_seeds(seedfns.noisy_value, p, cache_dir=tmp_path, workers=1)
    # the seeds cached before the interruption are what the second run returns for them
    assert again[0]["pid"] == again[1]["pid"] == again[2]["pid"]
    assert [r["seed"] for r in again] == [0, 1, 2, 3, 4]


def test_records_do_not_depend_on_the_number_of_workers(tmp_path):
    p = SeedParams.from_preset("cpu", seeds=[3, 1, 2])
    serial = run_seeds(seedfns.noisy_value, p, workers=1)
    parallel = run_seeds(seedfns.noisy_value, p, workers=2)
    assert [r["value"] for r in serial] == [r["value"] for r in parallel]
    assert [r["seed"] for r in parallel] == [3, 1, 2]
    assert all(r["pid"] != os.getpid() for r in parallel)  # computed in worker processes
    assert all(r["pid"] == os.getpid() for r in serial)


def test_a_corrupt_or_foreign_cache_entry_is_recomputed(tmp_path):
    p = SeedParams.from_preset("cpu", seeds=[0])
    run_seeds(seedfns.noisy_value, p, cache_dir=tmp_path, workers=1)
    path = next((tmp_path / "seedtoy").iterdir())
    key = seed_key(seedfns.noisy_value, p, 0)
    assert load_cached(path, key) is not None
    assert load_cached(path, "another-key") is None
    path.write_text("null")
    assert load_cached(path, key) is None
    entry = {"key": key, "record": {"seed": 0, "value": 123.0}}
    path.write_text(json.dumps(entry))  # a well-formed entry with the right key is trusted
    assert run_seeds(seedfns.noisy_value, p, cache_dir=tmp_path, workers=1)[0]["value"] == 123.0


def test_seed_key_ignores_the_seed_list_but_not_the_seed():
    a = SeedParams.from_preset("cpu", seeds=[0, 1])
    b = SeedParams.from_preset("cpu", seeds=[0, 5, 9])
    assert seed_key(seedfns.noisy_value, a, 0) == seed_key(seedfns.noisy_value, b, 0)
    assert seed_key(seedfns.noisy_value, a, 0) != seed_key(seedfns.noisy_value, a, 1)
    assert seed_key(seedfns.noisy_value, a, 0) != seed_key(seedfns.counting, a, 0)
