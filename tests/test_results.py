"""Results records: schema, JSON safety, and atomic writes that never leave partial files."""
from __future__ import annotations

import json
import math
import os
from importlib import metadata

import numpy as np
import pytest
import torch

from flatminima.core.io import atomic_write_text
from flatminima.protocol import record as results
from flatminima.protocol.contract import Aggregate, Statistic
from flatminima.protocol.record import make_record, read_results, write_results
from flatminima.stats.decision import Verdict

from .conftest import toy_aggregate, toy_params


def record(*, runtime_s=1.0, device="cpu", preregistration=None, **kw):
    """A record of the toy claim: ``kw`` are the :func:`toy_aggregate` arguments (verdict, statistics, ...)."""
    base = dict(verdict="inconclusive",
                statistics={"x": np.float32(1.5), "ci": (0.1, 0.2), "t": torch.tensor([1.0, 2.0]),
                            "nan": float("nan")})
    base.update(kw)
    params = toy_params("toy", preset="smoke", lr=0.1, seeds=[0, 1])
    return make_record(params, toy_aggregate(**base), preregistration=preregistration, deviations=(), runtime_s=runtime_s,
                       device=device)


def test_record_has_every_required_key_and_plain_json_types(tmp_path):
    rec = record()
    for key in results.REQUIRED_KEYS:
        assert key in rec
    assert rec["claim"] == "toy" and rec["seeds"] == [0, 1] and rec["parameters"]["lr"] == 0.1
    assert rec["preset"] == "smoke" and rec["statistics"]["t"] == [1.0, 2.0]
    assert rec["statistics"]["nan"] is None  # NaN is not valid JSON
    path = write_results(rec, tmp_path)
    assert path.name == "toy.json"
    assert path.stat().st_mode & 0o777 == 0o644
    back = read_results(path)
    assert back["statistics"]["x"] == 1.5 and back["versions"]["torch"] == metadata.version("torch")
    assert back["versions"]["mnist1d"] == metadata.version("mnist1d")  # recorded although it sets no __version__


def test_unknown_verdict_is_rejected():
    with pytest.raises(ValueError, match="not a valid Verdict"):
        record(verdict="kinda")
    rec = record()
    rec["verdict"] = "kinda"  # a hand-edited record
    with pytest.raises(ValueError, match="verdict must be one of"):
        results.validate_results(rec)


@pytest.mark.parametrize("word", ["reproduced", "not reproduced", "inconclusive"])
def test_each_verdict_word_is_written_and_read_back(tmp_path, word):
    back = read_results(write_results(record(verdict=word), tmp_path))
    assert back["verdict"] == word and Verdict(word).value == word


def test_a_verdict_the_parts_do_not_give_is_refused():
    part = {"name": "A", "outcome": "not reproduced", "reason": "r"}
    with pytest.raises(ValueError, match="is not what the parts give"):
        record(verdict="reproduced", parts=[part])
    rec = record(verdict="not reproduced", parts=[part, dict(part, name="B", outcome="reproduced")])
    assert [p["outcome"] for p in rec["parts"]] == ["not reproduced", "reproduced"]
    assert rec["notes"] == "A: not reproduced (r); B: reproduced (r)"


def test_record_carries_the_aggregate_headline_facts_and_preregistration():
    head = Statistic("ratio", 2.0, 1.5, 2.5, 0.1, 5, "log", "10-100x")
    agg = Aggregate(verdict="reproduced", parts=(), headline=head, statistics={"r": 2.0}, criterion="r > 1",
                    facts={"n_train": 1000}, tables={"frame": object()})
    rec = make_record(toy_params("toy"), agg, preregistration={"alpha": 0.05}, deviations=(), runtime_s=3, device="cpu")
    assert rec["headline"] == {"label": "ratio", "value": 2.0, "ci_low": 1.5, "ci_high": 2.5, "se": 0.1, "n": 5,
                               "scale": "log", "level": 0.90, "paper": "10-100x"}
    assert rec["facts"] == {"n_train": 1000} and "tables" not in rec and "frame" not in json.dumps(rec)
    assert rec["preregistration"] == {"alpha": 0.05} and rec["criterion"] == "r > 1" and rec["seeds"] == [0]


def test_interrupted_write_leaves_previous_file_and_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "toy.json"
    atomic_write_text(target, '{"old": true}')

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, '{"new": ' + "1" * 100_000)
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]


def test_interrupted_first_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_results(record(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_infinite_values_become_strings():
    rec = record(statistics={"big": math.inf})
    assert rec["statistics"]["big"] == "inf"


@pytest.mark.parametrize("value, message", [
    (None, "must be a JSON object, got NoneType"),
    (42, "must be a JSON object, got int"),
    ({}, "lacks keys: claim"),
])
def test_records_of_the_wrong_shape_are_rejected_with_a_message(value, message):
    with pytest.raises(ValueError, match=message):
        results.validate_results(value)


@pytest.mark.parametrize("field, value, where", [
    ("runtime_s", "12", "runtime_s: '12' is not of type 'number'"),
    ("seeds", [0, "1"], "seeds/1: '1' is not of type 'integer'"),
    ("headline", {"label": "x", "value": "big"}, "headline/value"),
    ("parts", [{"name": "A", "outcome": "kinda"}], "parts/0/outcome"),
    ("inputs_hash", "abc", "inputs_hash: 'abc' does not match"),
    ("versions", {"torch": 2}, "versions/torch"),
])
def test_field_types_are_checked_by_the_schema(field, value, where):
    rec = record()
    rec[field] = value
    with pytest.raises(ValueError, match=where.replace("/", "/").replace("(", r"\(")):
        results.validate_results(rec)


def test_schema_accepts_what_make_record_writes_and_older_records_without_new_fields(tmp_path):
    rec = record(verdict="reproduced", headline={"label": "x", "value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "se": 0.2, "n": 3,
                           "scale": "log", "paper": "p"},
                 parts=[{"name": "A", "outcome": "reproduced", "reason": "r", "statistic": {"value": math.inf}}])
    results.validate_results(rec)
    rec["inputs_hash"] = "0" * 64
    results.validate_results(rec)
    for key in ("provenance", "preregistration", "parts", "headline", "schema_version", "notes", "inputs_hash"):
        rec.pop(key)
    results.validate_results(rec)  # a record from before those fields existed


def test_make_record_requires_the_deviations():
    from .conftest import toy_aggregate, toy_params

    agg = toy_aggregate("reproduced", statistics={}, criterion="c")
    with pytest.raises(TypeError, match="deviations"):
        make_record(toy_params("toy"), agg, preregistration=None, runtime_s=1.0, device="cpu")
    rec = make_record(toy_params("toy"), agg, preregistration=None, deviations=(), runtime_s=1.0, device="cpu")
    assert rec["deviations"] == []
    rec["deviations"] = [{"date": "2026-12-01", "what": "w", "why": "y"}]
    with pytest.raises(ValueError, match="deviations/0"):
        results.validate_results(rec)
