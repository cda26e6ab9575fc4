"""``flatminima verify``: re-execute claims and check that their published verdicts reproduce.

A published record (``book/generated/results/<claim>.json`` for the cpu preset,
``book/generated/<preset>/results/<claim>.json`` for the others) is re-executed with the same
parameters into a scratch folder (never over the book), optionally with the disjoint seeds
``K, K+1, ...`` (``--seeds-from K``, as many as the record has), on whatever machine and CPU
kernels this process has (``ATEN_CPU_CAPABILITY=avx2`` selects another kernel family).

Two things must agree:

* the **verdict** (the gate), and every part's outcome;
* every **headline statistic** (the record's ``headline`` and each ``parts[i].statistic`` that
  carries a standard error): the difference between the re-run and the published value must lie
  within its 99% Welch interval, :math:`|d| \\le t_{0.995,\\nu}\\sqrt{se_1^2 + se_2^2}` (on the log
  scale for ratio statistics). This is a two-sample check: an independent replication falls
  outside the *published* 95% interval about one time in six even when nothing is wrong.

With ``--publish`` each claim's verification is also written into the book, as a **verification
record** (:data:`VERIFICATION_SCHEMA`) at ``<published folder>/verification/<claim>--<kind>.json``
(``book/generated/verification/`` for the cpu preset), where ``kind`` is ``kernels-<capability>``
(the ATen CPU kernel family the re-run used) or ``seeds-from-<K>`` (disjoint seeds). It names the
published record it verifies by its ``inputs_hash``; :func:`check_published_verifications`
(``--check-published``) fails when a committed verification record no longer matches the committed
result it verifies (stale), so a verification shown in the book is always of the result shown.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats as sps

from flatminima.claims.registry import CLAIMS, deviations, resolve
from flatminima.core.io import atomic_write_text, jsonable
from flatminima.core.lock import out_lock
from flatminima.core.provenance import cpu_capability
from flatminima.pages.markdown import fmt
from flatminima.protocol.record import read_results
from flatminima.run.execute import Interrupted, run_claim, stop_on_signals, stop_requested
from flatminima.run.publish import published_dir

LEVEL = 0.99


@dataclass(frozen=True)
class Check:
    """One comparison between a published record and its re-run."""

    claim: str
    what: str
    published: str
    rerun: str
    difference: str
    match: bool

    def row(self) -> str:
        return " | ".join((self.claim, self.what, self.published, self.rerun, self.difference,
                           "match" if self.match else "MISMATCH"))


def _statistics(record: dict) -> dict[str, dict]:
    out = {}
    h = record.get("headline") or {}
    if isinstance(h, dict) and "value" in h:
        out["headline"] = h
    for part in record.get("parts") or []:
        st = part.get("statistic") if isinstance(part, dict) else None
        if isinstance(st, dict) and "value" in st:
            out[f"{part.get('name', 'part')}"] = st
    return out


def compare_statistic(pub: dict, new: dict, *, level: float = LEVEL) -> tuple[float, float, bool]:
    """Difference (new - published, on the statistic's scale) and the half-width of its interval.

    Welch-Satterthwaite degrees of freedom from both standard errors and seed counts; when both
    standard errors are zero (a deterministic statistic) only an exact match within 1e-9 passes.
    """
    log = pub.get("scale") == "log"

    def on_scale(v: Any) -> float:
        v = float(v)
        return math.log(v) if log else v

    try:
        d = on_scale(new["value"]) - on_scale(pub["value"])
    except (TypeError, ValueError, KeyError):
        return math.nan, math.nan, False
    s1, s2 = float(pub.get("se") or 0.0), float(new.get("se") or 0.0)
    n1, n2 = int(pub.get("n") or 2), int(new.get("n") or 2)
    if not (math.isfinite(d) and math.isfinite(s1) and math.isfinite(s2)):
        return d, math.nan, False
    var = s1 ** 2 + s2 ** 2
    if var == 0:
        tol = 1e-9 * max(1.0, abs(on_scale(pub["value"])))
        return d, 0.0, abs(d) <= tol
    denom = (s1 ** 4 / max(n1 - 1, 1)) + (s2 ** 4 / max(n2 - 1, 1))
    df = var ** 2 / denom if denom > 0 else max(n1 + n2 - 2, 1)
    half = float(sps.t.ppf(0.5 + level / 2, df)) * math.sqrt(var)
    return d, half, abs(d) <= half


def compare_records(published: dict, rerun: dict, *, level: float = LEVEL) -> list[Check]:
    """Every check between two records of one claim: verdict, decided and control outcomes, statistics.

    An estimate's outcome is not a check (it decides nothing and is not powered, so it may flip between
    seed sets); its statistic still is, within the interval of the difference.
    """
    claim = published.get("claim", "?")
    checks = [Check(claim, "verdict", published["verdict"], rerun["verdict"], "",
                    published["verdict"] == rerun["verdict"])]
    pub_parts = {p.get("name"): p for p in published.get("parts") or [] if isinstance(p, dict)}
    new_parts = {p.get("name"): p for p in rerun.get("parts") or [] if isinstance(p, dict)}
    for name, p in pub_parts.items():
        q = new_parts.get(name, {})
        if p.get("role") == "estimate":
            continue
        checks.append(Check(claim, f"{name} outcome", str(p.get("outcome")), str(q.get("outcome", "missing")), "",
                            p.get("outcome") == q.get("outcome")))
    new_stats = _statistics(rerun)
    for name, st in _statistics(published).items():
        other = new_stats.get(name)
        label = st.get("label", name)
        what = label if name == "headline" else f"{name}: {label}"
        if other is None:
            checks.append(Check(claim, what, fmt(st["value"], 4), "missing", "", False))
            continue
        d, half, ok = compare_statistic(st, other, level=level)
        scale = " (log)" if st.get("scale") == "log" else ""
        checks.append(Check(claim, what, fmt(st["value"], 4), fmt(other["value"], 4),
                            f"{d:+.3g} +/- {half:.3g}{scale}", ok))
    return checks


def rerun_overrides(published: dict, preset: str, seeds_from: int | None) -> dict[str, Any]:
    """Overrides that re-create the published run at ``preset`` (with disjoint seeds if asked)."""
    overrides = {k: used for k, (_, used) in deviations(published["claim"], preset, published["parameters"]).items()}
    if seeds_from is not None:
        n = len(published["seeds"])
        overrides.pop("num_seeds", None)
        overrides["seeds"] = list(range(seeds_from, seeds_from + n))
    elif "seeds" in overrides:
        overrides.pop("num_seeds", None)
    return overrides


def verify(claims: list[str] | None, *, root: Path, preset: str = "cpu", seeds_from: int | None = None,
           out_dir: Path | None = None, jobs: int = 1, device: str = "auto", timeout: int | None = None,
           on_done=None, publish: bool = False) -> tuple[list[Check], bool]:
    """Re-execute ``claims`` (all by default) and compare each with its published record.

    With ``publish``, each claim that re-ran gets its verification record written into the book
    (:func:`write_verification`). Returns every :class:`Check` and whether all matched. Raises FileNotFoundError when a
    claim has no published record for ``preset`` and ValueError when ``out_dir`` is the book's
    own folder.
    """
    root = Path(root).resolve()
    claims = list(claims or CLAIMS)
    pub_dir = published_dir(root, preset)
    records = {}
    for claim in claims:
        path = pub_dir / "results" / f"{claim}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no published {preset}-preset record for {claim!r} at {path}; "
                                    f"publish one first with `flatminima run {claim} --preset {preset}`")
        records[claim] = read_results(path)
        if records[claim].get("preset") != preset:
            raise FileNotFoundError(f"no published {preset}-preset record for {claim!r}: {path} is a "
                                    f"{records[claim].get('preset')}-preset run; publish one first with "
                                    f"`flatminima run {claim} --preset {preset}`, or verify --preset "
                                    f"{records[claim].get('preset')}")
    out_dir = Path(out_dir).resolve() if out_dir else Path(tempfile.mkdtemp(prefix="flatminima-verify-"))
    if out_dir == pub_dir.resolve() or out_dir == (root / "book" / "generated").resolve():
        raise ValueError(f"--out {out_dir} is the book's published folder; verify writes only to a scratch folder")
    plan = {c: rerun_overrides(records[c], preset, seeds_from) for c in claims}
    for c in claims:  # every re-run validated before any work
        resolve(c, preset, plan[c])

    # every notebook may use every core for its seeds: notebooks that run at once then share the cores
    # by time-slicing single-threaded processes (cheap), and the last notebook left running still uses
    # them all (splitting the cores between notebooks left one core idle at the end of `make book`)
    workers = os.cpu_count() or 1

    def one(claim: str) -> list[Check]:
        if stop_requested():
            return [Check(claim, "re-run", records[claim]["verdict"], "stopped", "not started", False)]
        outcome = run_claim(claim, root=root, preset=preset, overrides=plan[claim], out_dir=out_dir,
                                   device=device, force=True, timeout=timeout, workers=workers)
        if outcome.status != "ran":
            checks = [Check(claim, "re-run", records[claim]["verdict"], outcome.status.upper(), outcome.error, False)]
        else:
            rerun = read_results(outcome.results)
            checks = compare_records(records[claim], rerun)
            if publish:
                write_verification(root, verification_record(records[claim], rerun, checks, seeds_from=seeds_from))
        if on_done and outcome.status != "stopped":
            on_done(claim, checks)
        return checks

    from concurrent.futures import ThreadPoolExecutor

    # claims run in threads even one at a time, so the main thread can take Ctrl-C / SIGTERM and
    # kill the kernels (flatminima.run.execute.stop_on_signals), as `flatminima run` does
    with out_lock(out_dir), stop_on_signals() as sig:
        pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(claims))))
        try:
            results = [f.result() for f in [pool.submit(one, c) for c in claims]]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if sig.signum is not None:
        raise Interrupted(sig.signum, [], out_dir)
    checks = [c for group in results for c in group]
    return checks, all(c.match for c in checks)


HEADER = "claim | check | published | re-run | difference (99% interval) | result"


# ----------------------------------------------------------------------------- verification records
VERIFICATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "flatminima verification record",
    "type": "object",
    "required": ["schema_version", "claim", "preset", "kind", "cpu_capability", "seeds", "published_seeds",
                 "inputs_hash", "published_verdict", "rerun_verdict", "checks", "passed", "date", "provenance"],
    "properties": {
        "schema_version": {"const": 1},
        "claim": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "preset": {"type": "string"},
        "kind": {"type": "string", "pattern": "^(kernels-[A-Za-z0-9_]+|seeds-from-[0-9]+)$"},
        "cpu_capability": {"type": "string"},
        "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "published_seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "inputs_hash": {"anyOf": [{"type": "string", "pattern": "^[0-9a-f]{64}$"}, {"type": "null"}]},
        "published_verdict": {"type": "string"},
        "rerun_verdict": {"type": "string"},
        "checks": {"type": "array", "items": {
            "type": "object", "required": ["name", "published", "rerun", "difference", "result"],
            "properties": {"name": {"type": "string"}, "published": {"type": "string"}, "rerun": {"type": "string"},
                           "difference": {"type": "string"}, "result": {"enum": ["match", "mismatch"]}},
            "additionalProperties": False}},
        "passed": {"type": "boolean"},
        "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}"},
        "provenance": {"type": ["object", "null"]},
    },
    "additionalProperties": False,
}
"""JSON Schema of a verification record (``book/generated/verification/<claim>--<kind>.json``).

``inputs_hash`` is the published record's: the record verifies that result and no other.
"""


def verification_kind(seeds_from: int | None, capability: str | None = None) -> str:
    """``seeds-from-<K>`` for a re-run on disjoint seeds, else ``kernels-<capability>`` (this process's)."""
    if seeds_from is not None:
        return f"seeds-from-{int(seeds_from)}"
    cap = "".join(ch for ch in str(capability or cpu_capability()) if ch.isalnum() or ch == "_") or "unknown"
    return f"kernels-{cap.lower()}"


def verification_record(published: Mapping[str, Any], rerun: Mapping[str, Any], checks: list[Check], *,
                        seeds_from: int | None = None, capability: str | None = None) -> dict[str, Any]:
    """The verification record of one claim: what was re-run, how, every check and whether all passed."""
    cap = str(capability or cpu_capability())
    prov = rerun.get("provenance") if isinstance(rerun.get("provenance"), Mapping) else None
    record = {
        "schema_version": 1,
        "claim": str(published["claim"]),
        "preset": str(published.get("preset")),
        "kind": verification_kind(seeds_from, cap),
        "cpu_capability": cap,
        "seeds": [int(s) for s in rerun.get("seeds") or []],
        "published_seeds": [int(s) for s in published.get("seeds") or []],
        "inputs_hash": published.get("inputs_hash"),
        "published_verdict": str(published.get("verdict")),
        "rerun_verdict": str(rerun.get("verdict")),
        "checks": [{"name": c.what, "published": c.published, "rerun": c.rerun, "difference": c.difference,
                    "result": "match" if c.match else "mismatch"} for c in checks],
        "passed": all(c.match for c in checks),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provenance": dict(prov) if prov is not None else None,
    }
    record = jsonable(record)
    validate_verification(record)
    return record


_vvalidator = None


def validate_verification(record: Any) -> None:
    """Raise ValueError unless ``record`` matches :data:`VERIFICATION_SCHEMA` (naming the first bad field)."""
    global _vvalidator
    if _vvalidator is None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(VERIFICATION_SCHEMA)
        _vvalidator = Draft202012Validator(VERIFICATION_SCHEMA)
    errors = sorted(_vvalidator.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        where = "/".join(map(str, e.absolute_path)) or "record"
        raise ValueError(f"verification record does not match the schema at {where}: {e.message}")


def verification_dir(root: str | os.PathLike, preset: str = "cpu") -> Path:
    """Where the verification records of ``preset`` are published (``book/generated/verification`` for cpu)."""
    return published_dir(Path(root), preset) / "verification"


def write_verification(root: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Validate ``record`` and write it atomically to ``<verification_dir>/<claim>--<kind>.json``."""
    validate_verification(record)
    path = verification_dir(root, record["preset"]) / f"{record['claim']}--{record['kind']}.json"
    return atomic_write_text(path, json.dumps(jsonable(dict(record)), indent=2, allow_nan=False) + "\n")


def read_verifications(folder: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """``{claim: [verification record, ...]}`` (kernels kinds first, then seeds) from ``folder/*.json``.

    A file that is not valid JSON or not a valid record is left out (``check_published_verifications`` reports it).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    folder = Path(folder)
    for path in sorted(folder.glob("*--*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            validate_verification(rec)
        except (ValueError, OSError):
            continue
        out.setdefault(rec["claim"], []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: (not r["kind"].startswith("kernels-"), r["kind"]))
    return out


def check_published_verifications(root: str | os.PathLike, preset: str = "cpu") -> list[str]:
    """Problems with the verification records committed under the book; an empty list when there are none.

    Each record must validate, be named ``<claim>--<kind>.json`` after its contents, and verify the
    committed result of its claim: a record whose ``inputs_hash`` differs from that result's is
    *stale* (the result was re-published after it was verified) and must be re-made with
    ``flatminima verify --publish`` or removed.
    """
    folder = verification_dir(root, preset)
    results = published_dir(Path(root), preset) / "results"
    problems: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            validate_verification(rec)
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if path.name != f"{rec['claim']}--{rec['kind']}.json":
            problems.append(f"{path}: named for another claim or kind than it holds ({rec['claim']}, {rec['kind']})")
        res = results / f"{rec['claim']}.json"
        try:
            published = read_results(res)
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: verifies {res}, which is not a readable result ({exc})")
            continue
        if published.get("inputs_hash") != rec.get("inputs_hash"):
            problems.append(f"{path}: stale: it verifies inputs_hash {str(rec.get('inputs_hash'))[:12]}, the committed "
                            f"result {res.name} has {str(published.get('inputs_hash'))[:12]}; re-run "
                            f"`flatminima verify {rec['claim']} --publish` (with the same kernels or seeds) or remove it")
    return problems
