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
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats as sps

from flatminima.claims.registry import CLAIMS, deviations, resolve
from flatminima.core.lock import out_lock
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
    """Every check between two records of one claim: verdict, part outcomes, headline statistics."""
    claim = published.get("claim", "?")
    checks = [Check(claim, "verdict", published["verdict"], rerun["verdict"], "",
                    published["verdict"] == rerun["verdict"])]
    pub_parts = {p.get("name"): p for p in published.get("parts") or [] if isinstance(p, dict)}
    new_parts = {p.get("name"): p for p in rerun.get("parts") or [] if isinstance(p, dict)}
    for name, p in pub_parts.items():
        q = new_parts.get(name, {})
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
           on_done=None) -> tuple[list[Check], bool]:
    """Re-execute ``claims`` (all by default) and compare each with its published record.

    Returns every :class:`Check` and whether all matched. Raises FileNotFoundError when a
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
            checks = compare_records(records[claim], read_results(outcome.results))
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
