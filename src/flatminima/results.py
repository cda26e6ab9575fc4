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
import math
import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VERDICTS: tuple[str, ...] = ("reproduced", "not reproduced", "inconclusive")
REQUIRED_KEYS: tuple[str, ...] = ("claim", "preset", "parameters", "verdict", "statistics",
                                  "criterion", "seeds", "runtime_s", "versions", "device")
SCHEMA_VERSION = 1


def _jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and arrays, tuples and paths to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return str(obj)


PACKAGES: tuple[str, ...] = ("flatminima", "torch", "torchvision", "numpy", "scipy", "scikit-learn",
                             "statsmodels", "pandas", "mnist1d", "papermill", "myst-nb")
"""Distributions whose versions shape the numbers or the pages, recorded in every result."""


def versions() -> dict[str, str]:
    """Versions of Python, the platform and :data:`PACKAGES`, read with :mod:`importlib.metadata`.

    Reading the installed distributions' metadata (not ``module.__version__``, which some packages,
    mnist1d among them, do not set) records what actually ran; a distribution that is absent is
    left out rather than recorded under a made-up version.
    """
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git(*args: str) -> str | None:
    import subprocess

    try:
        proc = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, text=True,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str | None = None) -> dict[str, Any]:
    """Where and how a result was computed: commit, CPU and its kernels, threads, GPU, time.

    ``git_commit`` is the commit of the package's source tree (None outside a git checkout) and
    ``git_dirty`` whether its ``src/`` or ``notebooks/`` differ from that commit.
    """
    import datetime

    import torch

    from .replicates import cpu_capability

    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        top = _git("rev-parse", "--show-toplevel")
        status = _git("-C", top, "status", "--porcelain", "--untracked-files=no", "--", "src", "notebooks") if top else None
        dirty = bool(status) if status is not None else None
    out: dict[str, Any] = {
        "git_commit": commit, "git_dirty": dirty,
        "executed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_capability": cpu_capability(),
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY"), "torch_threads": torch.get_num_threads(),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


_NUMBER: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "null"}, {"enum": ["inf", "-inf"]}]}
"""A number as :func:`_jsonable` writes it: finite float, None for NaN, ``"inf"``/``"-inf"``."""
_STATISTIC: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "value": _NUMBER, "ci_low": _NUMBER, "ci_high": _NUMBER,
                   "se": _NUMBER, "n": {"type": ["integer", "null"], "minimum": 0},
                   "scale": {"enum": ["linear", "log"]}, "paper": {"type": "string"}},
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
        "verdict": {"enum": list(VERDICTS)},
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
            "properties": {"name": {"type": "string"}, "outcome": {"enum": list(VERDICTS)},
                           "reason": {"type": "string"}, "statistic": _STATISTIC}}},
        "notes": {"type": "string"},
        "inputs_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}
"""JSON Schema (draft 2020-12) of a results record: checked when a record is written and when it is read.

``inputs_hash`` is stamped by :mod:`flatminima.runner` when it publishes a run: the hash of the
notebook, parameters and library source that produced the record.
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
    if record["verdict"] not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {record['verdict']!r}")
    errors = sorted(_schema_validator().iter_errors(dict(record)), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        where = "/".join(map(str, e.absolute_path)) or "record"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ValueError(f"results record does not match the schema at {where}: {e.message}{more}")


def make_record(*, claim: str, params: Any, verdict: str, statistics: Mapping[str, Any],
                criterion: str, seeds: list[int], runtime_s: float, device: str,
                headline: Mapping[str, Any] | None = None,
                preregistration: Mapping[str, Any] | None = None,
                parts: list[Mapping[str, Any]] | None = None,
                notes: str = "") -> dict[str, Any]:
    """Assemble a results record; ``params`` is a ClaimParams (or a plain dict).

    ``headline`` is what the dashboard shows and ``flatminima verify`` compares:
    :func:`flatminima.stats.statistic`'s ``{label, value, ci_low, ci_high, se, n, scale}`` plus
    ``paper`` (the paper's number for the same measure, in words). ``preregistration`` is the
    claim's :func:`flatminima.stats.preregister` block. ``parts`` lists the parts of a verdict:
    ``{name, outcome, reason, statistic}``, each ``statistic`` in the headline's form.
    """
    parameters = params.to_dict() if hasattr(params, "to_dict") else dict(params)
    record = {
        "schema_version": SCHEMA_VERSION,
        "claim": claim,
        "preset": parameters.get("preset"),
        "parameters": parameters,
        "verdict": verdict,
        "criterion": criterion,
        "statistics": statistics,
        "headline": headline or {},
        "seeds": list(seeds),
        "runtime_s": float(runtime_s),
        "device": device,
        "versions": versions(),
        "provenance": provenance(device),
        "preregistration": dict(preregistration) if preregistration is not None else None,
        "parts": [dict(p) for p in parts] if parts is not None else [],
        "notes": notes,
    }
    record = _jsonable(record)
    validate_results(record)
    return record


def write_results(record: Mapping[str, Any], results_dir: str | os.PathLike) -> Path:
    """Validate ``record`` and write it atomically to ``results_dir/<claim>.json``."""
    validate_results(record)
    text = json.dumps(_jsonable(record), indent=2, sort_keys=False, allow_nan=False) + "\n"
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
