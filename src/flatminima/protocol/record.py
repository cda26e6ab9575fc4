"""One results JSON per claim run, written atomically.

A results file is the machine-readable record of a run: what was run (claim, preset,
parameters, seeds, device, versions), what came out (``statistics``, with confidence
intervals over seeds), the criterion in words and the verdict computed from the data.
The dashboard page of the book is generated from these files. Every record is checked
against :data:`RESULTS_SCHEMA` (JSON Schema, types included) when it is written and when it
is read, so a record of the wrong shape is an error with the field's name, never a crash later.

Files are written to a temporary file in the same folder, flushed to disk and renamed
over the target (:func:`os.replace` is atomic on POSIX), so an interrupted run never leaves
a half-written result.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flatminima.core.io import atomic_write_text, jsonable
from flatminima.core.provenance import provenance, versions
from flatminima.protocol.contract import Aggregate, Deviation
from flatminima.protocol.params import ClaimParams
from flatminima.stats.decision import OUTCOMES

REQUIRED_KEYS: tuple[str, ...] = ("claim", "preset", "parameters", "verdict", "statistics",
                                  "criterion", "seeds", "runtime_s", "versions", "device")
SCHEMA_VERSION = 1


_NUMBER: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "null"}, {"enum": ["inf", "-inf"]}]}
"""A number as :func:`jsonable` writes it: finite float, None for NaN, ``"inf"``/``"-inf"``."""
_STATISTIC: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "value": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER,
                   "se": _NUMBER, "n": {"type": ["integer", "null"], "minimum": 0},
                   "scale": {"enum": ["linear", "log"]}, "paper": {"type": "string"},
                   "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
}
_SMALLEST_EFFECT: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {"value": _NUMBER, "source": {"type": "string"}, "published": {"type": "boolean"}},
}
_SUBCLAIM: dict[str, Any] = {
    "type": "object",
    "properties": {"key": {"type": "string"}, "statement": {"type": "string"}, "where": {"type": "string"},
                   "primary": {"type": "string"}, "role": {"enum": ["decided", "control", "estimate"]},
                   "why_role": {"type": "string"}, "smallest_effect": _SMALLEST_EFFECT},
}
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "flatminima results record",
    "type": "object",
    "required": list(REQUIRED_KEYS),
    "properties": {
        "schema_version": {"type": "integer", "minimum": 1},
        "claim": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "preset": {"type": ["string", "null"]},
        "parameters": {"type": "object"},
        "verdict": {"enum": list(OUTCOMES)},
        "criterion": {"type": "string"},
        "statistics": {"type": "object"},
        "headline": _STATISTIC,
        "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "runtime_s": {"type": "number", "minimum": 0},
        "device": {"type": "string"},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "provenance": {"type": ["object", "null"]},
        "preregistration": {"type": ["object", "null"]},
        "parts": {"type": "array", "items": {
            "type": "object", "required": ["name", "outcome"],
            "properties": {"name": {"type": "string"}, "outcome": {"enum": list(OUTCOMES)},
                           "reason": {"type": "string"}, "statistic": _STATISTIC,
                           "role": {"enum": ["decided", "control", "estimate"]}, "subclaim": _SUBCLAIM,
                           "p_effect": _NUMBER, "p_against": _NUMBER}}},
        "facts": {"type": "object"},
        "notes": {"type": "string"},
        "inputs_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "deviations": {"type": "array", "items": {
            "type": "object", "required": ["date", "what", "why", "seeds_seen"],
            "properties": {"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                           "what": {"type": "string"}, "why": {"type": "string"},
                           "seeds_seen": {"type": "boolean"}}}},
    },
}
"""JSON Schema (draft 2020-12) of a results record: checked when a record is written and when it is read.

``inputs_hash`` is stamped by :mod:`flatminima.run.publish` when it publishes a run: the hash of the
notebook, parameters and library source that produced the record. ``deviations`` are the claim's
``DEVIATIONS`` (:class:`~flatminima.protocol.contract.Deviation`): every change to its pre-registration,
preset, seeds, data set or protocol made after verdict seeds ran (records from before it existed lack it).
"""

_validator = None


def _schema_validator():
    global _validator
    if _validator is None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(RESULTS_SCHEMA)
        _validator = Draft202012Validator(RESULTS_SCHEMA)
    return _validator


def validate_results(record: Any) -> None:
    """Raise ValueError unless ``record`` matches :data:`RESULTS_SCHEMA` (keys, types, verdicts).

    The message names the first offending field, e.g. ``runtime_s: 'abc' is not of type 'number'``.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"a results record must be a JSON object, got {type(record).__name__} {record!r:.60}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"results record lacks keys: {', '.join(missing)}")
    if record["verdict"] not in OUTCOMES:
        raise ValueError(f"verdict must be one of {OUTCOMES}, got {record['verdict']!r}")
    errors = sorted(_schema_validator().iter_errors(dict(record)), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        where = "/".join(map(str, e.absolute_path)) or "record"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ValueError(f"results record does not match the schema at {where}: {e.message}{more}")


def make_record(params: ClaimParams, agg: Aggregate, *, preregistration: Mapping[str, Any] | None,
                deviations: Sequence[Deviation], runtime_s: float, device: Any) -> dict[str, Any]:
    """The results record of one run of a claim: the one way every claim writes its record.

    Parameters
    ----------
    params : ClaimParams
        The run's validated parameters (``params.CLAIM`` names the claim, ``params.seeds`` the seeds).
    agg : Aggregate
        What the claim's ``aggregate`` returned from the per-seed records.
    preregistration : Mapping or None
        The claim's ``PREREGISTRATION`` (:func:`flatminima.stats.power.preregister`).
    deviations : sequence of Deviation
        The claim's ``DEVIATIONS`` (required: ``()`` when there are none), stored as ``deviations``.
    runtime_s : float
        Wall time of the run, in seconds.
    device : str or torch.device
        Where the tensors lived.

    Returns
    -------
    dict
        Plain JSON types, checked against :data:`RESULTS_SCHEMA`. ``headline`` is what the dashboard
        shows and ``flatminima verify`` compares; ``parts`` are the parts of the verdict, each with the
        statistic that decided it; ``facts`` are the named values the chapter's prose glues.
    """
    parameters = params.to_dict()
    record = {
        "schema_version": SCHEMA_VERSION,
        "claim": params.CLAIM,
        "preset": parameters.get("preset"),
        "parameters": parameters,
        "verdict": agg.verdict.value,
        "criterion": agg.criterion,
        "statistics": dict(agg.statistics),
        "headline": agg.headline.to_dict(),
        "seeds": list(params.seeds),
        "runtime_s": float(runtime_s),
        "device": str(device),
        "versions": versions(),
        "provenance": provenance(str(device)),
        "preregistration": dict(preregistration) if preregistration is not None else None,
        "deviations": [d.to_dict() if isinstance(d, Deviation) else dict(d) for d in deviations],
        "parts": [p.to_dict() for p in agg.parts],
        "facts": dict(agg.facts),
        "notes": agg.notes or "; ".join(f"{p.name}: {p.outcome.value} ({p.reason})" for p in agg.parts),
    }
    record = jsonable(record)
    validate_results(record)
    return record


def write_results(record: Mapping[str, Any], results_dir: str | os.PathLike) -> Path:
    """Validate ``record`` and write it atomically to ``results_dir/<claim>.json``."""
    validate_results(record)
    text = json.dumps(jsonable(record), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write_text(Path(results_dir) / f"{record['claim']}.json", text)


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one results JSON (ValueError naming the file if it is not a valid record)."""
    with open(path, encoding="utf-8") as fh:
        try:
            record = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    try:
        validate_results(record)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return record
