"""One results JSON per claim run, written atomically.

A results file is the machine-readable record of a run: what was run (claim, preset,
parameters, seeds, device, versions), what came out (``statistics``, with confidence
intervals over seeds), the criterion in words and the verdict computed from the data.
The dashboard page of the book is generated from these files.

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


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages that shape the numbers."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("flatminima", "torch", "numpy", "scipy", "sklearn", "mnist1d"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is recorded as such
            out[mod] = "not installed"
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


def validate_results(record: Mapping[str, Any]) -> None:
    """Raise ValueError if ``record`` lacks a required key or has an unknown verdict."""
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"results record lacks keys: {', '.join(missing)}")
    if record["verdict"] not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {record['verdict']!r}")
    if not isinstance(record["statistics"], Mapping):
        raise ValueError("statistics must be a mapping of named numbers")


def make_record(*, claim: str, params: Any, verdict: str, statistics: Mapping[str, Any],
                criterion: str, seeds: list[int], runtime_s: float, device: str,
                headline: Mapping[str, Any] | None = None,
                notes: str = "") -> dict[str, Any]:
    """Assemble a results record; ``params`` is a ClaimParams (or a plain dict).

    ``headline`` is what the dashboard shows: ``{"label", "value", "ci_low", "ci_high",
    "paper"}``: our headline number with its CI and the paper's reference number, in words.
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
    """Read and validate one results JSON."""
    with open(path, encoding="utf-8") as fh:
        record = json.load(fh)
    validate_results(record)
    return record
