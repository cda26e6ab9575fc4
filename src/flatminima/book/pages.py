"""The book's generated pages: the claims dashboard (with the paper-preset column), the execution-status page
and the run-time table of the teaching page, written from the published records so every number on them
comes from a run (see :mod:`flatminima.run.publish` for what is published where)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from flatminima.claims.registry import CLAIM_TITLES, CLAIMS, deviations, resolve
from flatminima.core.io import atomic_write_text
from flatminima.data.registry import dataset_title
from flatminima.pages.markdown import (
    badge,
    compact_seeds,
    deviations_markdown,
    duration_text,
    escape_md,
    fmt,
    level_text,
    parts_of,
    provenance_markdown,
    reduced_text,
    statistic_md,
    subclaim_line,
    subclaims_compact,
    utc_text,
    verdict_reason,
)
from flatminima.protocol.params import PRESET_NAMES
from flatminima.protocol.record import read_results
from flatminima.run.checks import missing_data
from flatminima.run.publish import PUBLISHED_BESIDE, published_dir, published_state
from flatminima.run.verify import read_verifications


def _claim_link(claim: str, title: str) -> str:
    slug = re.sub(r"[^a-z0-9-]", "", claim)
    return f"[{escape_md(title)}]({slug}.ipynb)"


def dashboard_markdown(results: dict[str, dict[str, Any] | None],
                       titles: dict[str, str | None] | None = None, *,
                       built_at: str | None = None,
                       paper: Mapping[str, PaperRun] | None = None) -> str:
    """The dashboard page (MyST Markdown) for ``{claim: record or None}``.

    A summary table (claim, verdict badge with each sub-claim's key and outcome, our number with its
    interval, the paper's number for the same measure and, with ``paper``, the paper-preset run's
    verdict and number), then one section per claim with every sub-claim's outcome beside the paper's
    words, its role, one-line reason and statistic, the pre-registration and the provenance, then the
    paper-preset runs (:func:`paper_markdown`).
    Every string from a record is escaped.
    """
    titles = titles or {}
    if built_at is None:  # the newest run, not the build time: the page changes only when a result does
        stamps = [str((r.get("provenance") or {}).get("executed_at") or "") for r in results.values() if r]
        built_at = utc_text(max(stamps)) if any(stamps) else "at an unrecorded date"
    lines = [
        "# Claims dashboard",
        "",
        "Each verdict below was computed in this build from the run's own data, by the rule of {doc}`../methods`:",
        "only the paper's decided sub-claims decide (Holm's correction over them), a control that does not pass",
        "makes the verdict inconclusive, and estimates are shown with their intervals but never decide.",
        "*inconclusive* means the run could not decide either way at this scale; it is not a soft *reproduced*.",
        f"Results of runs executed up to {escape_md(built_at, math=False)}; each claim's provenance is below.",
        "Each published result re-executed on other CPU kernels and on disjoint seeds: {doc}`verification`.",
        "",
        ":::{list-table}",
        ":header-rows: 1",
        ":widths: 24 14 24 20 18" if paper is not None else ":widths: 30 18 30 22",
        ":class: dashboard",
        "",
        "* - Claim",
        "  - Verdict",
        f"  - Ours ({_levels(results)} interval)",
        "  - Paper",
    ]
    if paper is not None:
        lines.append("  - Ours at the paper preset")
    sections: list[str] = []
    for claim, rec in results.items():
        title = titles.get(claim) or CLAIM_TITLES.get(claim, claim)
        link = _claim_link(claim, title)
        if rec is None:
            lines += [f"* - {link}", f"  - {badge('missing')}", "  - not run in this build", "  - "]
        else:
            h = rec.get("headline") if isinstance(rec.get("headline"), Mapping) else {}
            compact = subclaims_compact(rec)
            lines += [f"* - {link}", f"  - {badge(rec.get('verdict'))}" + (f" ({compact})" if compact else ""),
                      f"  - {statistic_md(h)}",
                      f"  - {escape_md(h.get('paper')) or 'n/a'}"]
            sections += _claim_section(claim, title, rec)
        if paper is not None:
            lines.append(f"  - {paper_cell(paper.get(claim) or PaperRun(claim))}")
    lines += [":::", "", "## Why each verdict is what it is", "", *sections]
    if paper is not None:
        lines += ["", *paper_markdown(paper, titles)]
    return "\n".join(lines)


def _levels(results: Mapping[str, Mapping[str, Any] | None]) -> str:
    """The headlines' interval level for the table's header ("90%"), or the levels found ("90% or 95%")."""
    found = sorted({level_text(r.get("headline") if isinstance(r.get("headline"), Mapping) else None)
                    for r in results.values() if r}) or ["90%"]
    return " or ".join(found)


def _claim_section(claim: str, title: str, rec: Mapping[str, Any]) -> list[str]:
    parts = parts_of(rec)
    why = escape_md(verdict_reason(rec)) + " " if parts else ""
    out = [f"### {escape_md(title)}", "",
           f"{badge(rec.get('verdict'))} {why}(chapter: {_claim_link(claim, title)})", ""]
    if parts:
        for p in parts:
            if isinstance(p.get("subclaim"), Mapping):  # the paper's words, role and outcome, then why
                out.append(f"{subclaim_line(p)}. {escape_md(p.get('reason', ''))}")
                continue
            st = statistic_md(p.get("statistic")) if isinstance(p.get("statistic"), Mapping) else ""
            out.append(f"- **{escape_md(p.get('name', 'part'))}** {badge(p.get('outcome'))} "
                       f"{escape_md(p.get('reason', ''))}" + (f" ({st})" if st and st != "n/a" else ""))
        out.append("")
    elif rec.get("criterion"):
        out += [f"Criterion: {escape_md(rec['criterion'])}", ""]
    pre = rec.get("preregistration") if isinstance(rec.get("preregistration"), Mapping) else None
    if pre:
        n = len(rec.get("seeds") or [])
        text = (f"Pre-registered: {pre.get('primary', '?')}; smallest effect of interest "
                f"{fmt(pre.get('smallest_effect'))}; {pre.get('test', '?')}; alpha {fmt(pre.get('alpha'))}, "
                f"power {fmt(pre.get('power'))}: {pre.get('seeds_needed', '?')} seeds needed, {n} used.")
        out += [escape_md(text), ""]
    out += [provenance_markdown(rec, title="Provenance"), ""]
    return out


# ----------------------------------------------------------------------------- the paper-preset runs
@dataclass(frozen=True)
class PaperRun:
    """What the book knows of one claim's run at a preset published beside the chapters (``paper``).

    ``record`` is the published record (None: not run); ``current`` whether today's notebook and
    library would reuse it (:func:`flatminima.run.publish.published_state`); ``reduced`` the parameters
    that differ from the preset, ``{name: (preset's value, value used)}``; ``not_run`` why there is
    no run (the data a run needs that are not here, or the scale).
    """

    claim: str
    record: Mapping[str, Any] | None = None
    current: bool = True
    stale_reason: str = ""
    reduced: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    not_run: str = ""
    preset: str = "paper"


def paper_cell(run: PaperRun) -> str:
    """The dashboard table's cell for a paper-preset run: badge and primary number, or why there is none."""
    if run.record is None:
        return escape_md(f"not run here ({run.not_run})" if run.not_run else "not run here", math=False)
    h = run.record.get("headline") if isinstance(run.record.get("headline"), Mapping) else {}
    notes = [w for w, on in (("reduced", bool(run.reduced)), ("stale", not run.current)) if on]
    link = f"[{escape_md(', '.join(notes) or 'chapter', math=False)}]({run.preset}/{_slug(run.claim)}.ipynb)"
    return f"{badge(run.record.get('verdict'))} {statistic_md(h)} ({link})"


def _slug(claim: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", claim)


def paper_markdown(paper: Mapping[str, PaperRun], titles: Mapping[str, str | None] | None = None) -> list[str]:
    """The dashboard's section on the paper-preset runs: per claim, the verdict and parts, the paper's
    number, the run (seeds, time, machine), every reduction from the preset, and whether it is stale."""
    titles = titles or {}
    out = ["## At the paper preset", "",
           "The `paper` preset is the original papers' scale (data set, network, seeds). It is run only when",
           "asked (`flatminima run CLAIM --preset paper`, or `flatminima book --preset paper`), never by",
           "`make book`, and published beside the chapters. A run that changed the preset (fewer seeds, a",
           "shorter control) to fit this machine says so below; a *stale* run was made by an older notebook",
           "or library and is shown as it was.", ""]
    for claim, run in paper.items():
        title = titles.get(claim) or CLAIM_TITLES.get(claim, claim)
        out += [f"### {escape_md(title)}", ""]
        if run.record is None:
            out += [escape_md(f"Not run here ({run.not_run or 'no run published'}). On a machine with "
                              f"the data and the time: ", math=False) + f"`{rerun_command(claim, run)}`"
                    + escape_md(" (on a GPU machine without network: scripts/gpu-paper.sh).", math=False), ""]
            continue
        rec = run.record
        h = rec.get("headline") if isinstance(rec.get("headline"), Mapping) else {}
        link = f"[the chapter at the paper preset]({run.preset}/{_slug(claim)}.ipynb)"
        out += [f"{badge(rec.get('verdict'))} {escape_md(verdict_reason(rec))} ({link})", ""]
        items = [f"- **Ours** ({level_text(h)} interval): {statistic_md(h)}"]
        if h.get("paper"):
            items.append(f"- **Paper**: {escape_md(h['paper'])}")
        for p in parts_of(rec):
            st = statistic_md(p.get("statistic")) if isinstance(p.get("statistic"), Mapping) else ""
            items.append(f"- **{escape_md(p.get('name', 'part'))}** {badge(p.get('outcome'))}"
                         + (f" {st}" if st and st != "n/a" else ""))
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
        seeds = rec.get("seeds") or []
        machine = f"{prov.get('machine', '?')}, {prov.get('cpu_count', '?')} CPUs" if prov else "not recorded"
        if prov.get("gpu"):
            machine += f", GPU {prov['gpu']}"
        items.append("- **Run**: " + escape_md(f"{len(seeds)} seeds, {duration_text(rec.get('runtime_s'))} on "
                                                 f"{rec.get('device', '?')} ({machine}), executed "
                                                 f"{utc_text(prov.get('executed_at'))}", math=False))
        if run.reduced:
            items.append("- **Reduced from the preset**: " + escape_md(reduced_text(run.reduced), math=False))
        else:
            items.append("- **Reduced from the preset**: nothing; this is the paper preset as declared")
        if not run.current:
            commit = re.sub(r"[^0-9a-fA-F]", "", str(prov.get("git_commit") or ""))[:12] or "an unrecorded commit"
            items.append("- {bdg-warning}`stale` " + escape_md(
                f"{run.stale_reason or 'inputs changed'} since this run (commit {commit}); re-run it with the "
                f"command below to refresh it", math=False))
        cmd = rerun_command(claim, run)
        items.append(f"- **Re-run**: `{cmd}`" if "`" not in cmd else "")
        out += [*[i for i in items if i], ""]
    return out


def rerun_command(claim: str, run: PaperRun) -> str:
    """The ``flatminima run`` command that re-creates a paper-preset run (its reductions as ``-p``)."""
    import json as _json

    parts = [f"flatminima run {claim} --preset {run.preset}"]
    for name, (_, used) in run.reduced.items():
        value = compact_seeds(used).replace(" ", "") if name == "seeds" else _json.dumps(used)
        parts.append(f"-p {name} {value if re.fullmatch(r'[A-Za-z0-9_.,-]+', value) else repr(value)}")
    return " ".join(parts)


def paper_runs(root: Path, preset: str = "paper") -> dict[str, PaperRun]:
    """``{claim: PaperRun}`` for the runs of ``preset`` published under ``book/generated/<preset>/``."""

    root = Path(root)
    out_dir = published_dir(root, preset)
    runs: dict[str, PaperRun] = {}
    for claim in CLAIMS:
        rec = read_record(out_dir / "results" / f"{claim}.json")
        if rec is None:
            missing = [dataset_title(d) for _, d in missing_data(resolve(claim, preset))]
            why = f"needs {' and '.join(missing)} and a GPU" if missing else "left to a GPU"
            runs[claim] = PaperRun(claim, None, not_run=why, preset=preset)
            continue
        state = published_state(root, out_dir, claim)
        try:
            reduced = deviations(claim, preset, rec.get("parameters") or {})
        except Exception:  # noqa: BLE001 - a record whose parameters no longer validate is still shown
            reduced = {}
        runs[claim] = PaperRun(claim, rec, current=state.ok, stale_reason="" if state.ok else state.reason,
                               reduced=reduced, preset=preset)
    return runs


# ----------------------------------------------------------------------------- status and run times
def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return read_results(path) if path.is_file() else None
    except (ValueError, OSError):
        return None


def _notebook_state(path: Path) -> str:
    if not path.is_file():
        return "missing"
    try:
        meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
    except Exception:  # an unreadable notebook is a failure to report, not to crash on
        return "unreadable"
    return "failed" if meta.get("exception") else "ok"


def status_markdown(generated: Path) -> str:
    """The execution-status page: each chapter's pass/fail, preset, run time, date and machine."""
    generated = Path(generated)
    rows = [":::{list-table}", ":header-rows: 1", ":class: status", "",
            "* - Chapter", "  - Status", "  - Preset", "  - Run time", "  - Executed", "  - Machine"]

    entries = [(generated, claim, "") for claim in CLAIMS]
    for preset in PUBLISHED_BESIDE:  # runs published beside the chapters: listed when there are any
        entries += [(generated / preset, claim, f"{preset}/") for claim in CLAIMS
                    if (generated / preset / f"{claim}.ipynb").is_file()
                    or (generated / preset / "failed" / f"{claim}.ipynb").is_file()]
    for folder, claim, prefix in entries:
        rec = read_record(folder / "results" / f"{claim}.json")
        state = _notebook_state(folder / f"{claim}.ipynb")
        failed_later = (folder / "failed" / f"{claim}.ipynb").is_file()
        title = chapter_title(folder / f"{claim}.ipynb") or CLAIM_TITLES.get(claim, claim)
        if state == "ok" and rec is not None:
            status = "{bdg-success}`pass`" + (" (a later run failed; see `failed/`)" if failed_later else "")
        elif state in ("failed", "unreadable") or failed_later:
            status = "{bdg-danger}`fail`"
        else:
            status = "{bdg-secondary}`not run`"
        prov = (rec or {}).get("provenance") or {}
        machine = f"{prov.get('machine', '')}, {prov.get('cpu_count', '?')} CPUs" if prov else "not recorded"
        link = _claim_link(claim, title).replace("](", f"]({prefix}") if rec is not None or not prefix else escape_md(title)
        rows += [f"* - {link}", f"  - {status}",
                 f"  - {escape_md((rec or {}).get('preset', ''), math=False)}",
                 f"  - {escape_md(duration_text((rec or {}).get('runtime_s')), math=False) if rec else ''}",
                 f"  - {escape_md(utc_text(prov.get('executed_at')) if rec else '', math=False)}",
                 f"  - {escape_md(machine if rec else '', math=False)}"]
    rows += [":::", ""]
    head = ["# Execution status", "",
            "Every chapter is a notebook executed by `flatminima run` before the book is built; this page is",
            "generated from the executed notebooks and their results. *pass* means the notebook ran to the end",
            "and wrote its results; the verdict itself is on the {doc}`dashboard`. Run times are wall-clock",
            "seconds of the whole notebook on the machine named.", ""]
    return "\n".join(head + rows + _deviations_section(generated))


def _deviations_section(generated: Path) -> list[str]:
    """The status page's list of each chapter's deviations from its pre-registration, from its record."""
    out = ["## Deviations from the pre-registrations", "",
           "Every change to a claim's pre-registration, preset, seeds, data set or protocol made after verdict",
           "seeds ran, as its published record lists them (the claim module's `DEVIATIONS`).", ""]
    for claim in CLAIMS:
        rec = read_record(Path(generated) / "results" / f"{claim}.json")
        title = chapter_title(Path(generated) / f"{claim}.ipynb") or CLAIM_TITLES.get(claim, claim)
        out += [f"### {escape_md(title)}", ""]
        if rec is None:
            out += ["No published record.", ""]
            continue
        out += [deviations_markdown(rec.get("deviations")), ""]
    return out


def runtime_table(generated: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{claim: {preset: record}}`` for every record under ``generated`` (book preset and ``<preset>/``)."""
    generated = Path(generated)
    out: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLAIMS}
    folders = [generated / "results", *(generated / p / "results" for p in PRESET_NAMES)]
    for folder in folders:
        for claim in CLAIMS:
            rec = read_record(folder / f"{claim}.json")
            if rec is not None and rec.get("preset"):
                out[claim].setdefault(str(rec["preset"]), rec)
    return out


def runtimes_markdown(generated: Path) -> str:
    """The teaching page's table of measured run times, one row per chapter, one column per preset."""
    table = runtime_table(generated)
    rows = [":::{list-table}", ":header-rows: 1", ":class: runtimes", "",
            "* - Chapter", *(f"  - `{p}` preset" for p in PRESET_NAMES)]
    for claim in CLAIMS:
        title = chapter_title(Path(generated) / f"{claim}.ipynb") or CLAIM_TITLES.get(claim, claim)
        rows.append(f"* - {_claim_link(claim, title).replace('](', '](generated/')}")
        for preset in PRESET_NAMES:
            rec = table[claim].get(preset)
            if rec is None:
                rows.append("  - not measured in this build")
                continue
            prov = rec.get("provenance") or {}
            cpus = f" on {prov['cpu_count']} CPUs" if prov.get("cpu_count") else ""
            if prov.get("gpu"):
                cpus += f" and a GPU ({prov['gpu']})"
            try:
                reduced = bool(deviations(claim, preset, rec.get("parameters") or {}))
            except Exception:  # noqa: BLE001 - parameters that no longer validate: say nothing
                reduced = False
            seeds = f", reduced, {len(rec.get('seeds') or [])} seeds" if reduced else ""
            rows.append(f"  - {escape_md(duration_text(rec.get('runtime_s')) + cpus + seeds, math=False)}")
    rows += [":::", ""]
    return "\n".join(rows)


# ----------------------------------------------------------------------------- verification
def _verification_status(v: Mapping[str, Any], rec: Mapping[str, Any] | None) -> str:
    if rec is None or v.get("inputs_hash") != rec.get("inputs_hash"):
        return "{bdg-warning}`stale`"
    return "{bdg-success}`pass`" if v.get("passed") else "{bdg-danger}`fail`"


def _verification_column(v: Mapping[str, Any]) -> str:
    kind = str(v.get("kind", ""))
    if kind.startswith("seeds-from-"):
        return f"Disjoint seeds (from {kind.removeprefix('seeds-from-')})"
    return f"Kernels {kind.removeprefix('kernels-').upper()}"


def verification_markdown(generated: Path) -> str:
    """The Verification page: per claim, the published result beside each published verification of it.

    Columns: the published record, then one per verification record under ``generated/verification/``
    (other CPU kernels, disjoint seeds), each with its verdict, result (*pass*, *fail*, or *stale* when
    its ``inputs_hash`` is not the committed result's) and, below, its checks table. Every string from
    a record is escaped.
    """
    generated = Path(generated)
    verifications = read_verifications(generated / "verification")
    out = ["# Verification", "",
           "`flatminima verify --publish` re-executes each chapter at its preset into a scratch folder, on another",
           "family of CPU kernels (`ATEN_CPU_CAPABILITY`) or on seeds disjoint from the verdict seeds, and compares",
           "the verdict, every part's outcome and every headline statistic with the published record (a statistic",
           "matches when the difference lies within its 99% Welch interval; see {doc}`../reproducing`). A",
           "verification made for an earlier result than the one published is shown as *stale*; CI",
           "(`flatminima verify --check-published`) fails while one is committed.", ""]
    for claim in CLAIMS:
        rec = read_record(generated / "results" / f"{claim}.json")
        title = chapter_title(generated / f"{claim}.ipynb") or CLAIM_TITLES.get(claim, claim)
        vs = verifications.get(claim, [])
        out += [f"## {escape_md(title)}", ""]
        if rec is None:
            out += ["No published record." + (" Its verification records are stale." if vs else ""), ""]
            continue
        if not vs:
            out += [f"{badge(rec.get('verdict'))} published; not verified in this build "
                    f"(`flatminima verify {_slug(claim)} --publish`).", ""]
            continue
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
        rows = [":::{list-table}", ":header-rows: 1", ":class: verification", "",
                "* - ", "  - Published", *(f"  - {escape_md(_verification_column(v), math=False)}" for v in vs)]
        rows += ["* - Verdict", f"  - {badge(rec.get('verdict'))}", *(f"  - {badge(v.get('rerun_verdict'))}" for v in vs)]
        rows += ["* - Result", "  - published", *(f"  - {_verification_status(v, rec)}" for v in vs)]
        rows += ["* - Seeds", f"  - {escape_md(compact_seeds(rec.get('seeds') or []), math=False)}",
                 *(f"  - {escape_md(compact_seeds(v.get('seeds') or []), math=False)}" for v in vs)]
        rows += ["* - CPU kernels", f"  - {escape_md(str(prov.get('cpu_capability') or 'not recorded'), math=False)}",
                 *(f"  - {escape_md(v.get('cpu_capability', '?'), math=False)}" for v in vs)]
        rows += ["* - Date", f"  - {escape_md(utc_text(prov.get('executed_at')), math=False)}",
                 *(f"  - {escape_md(utc_text(v.get('date')), math=False)}" for v in vs)]
        out += rows + [":::", ""]
        for v in vs:
            out += [f"### {escape_md(title)}: {escape_md(_verification_column(v), math=False)}", "",
                    f"{_verification_status(v, rec)} " + escape_md(
                        f"{len(v.get('checks') or [])} checks, re-run {utc_text(v.get('date'))} on "
                        f"{(v.get('provenance') or {}).get('machine', 'an unrecorded machine')}", math=False), "",
                    ":::{list-table}", ":header-rows: 1", ":class: verification-checks", "",
                    "* - Check", "  - Published", "  - Re-run", "  - Difference (99% interval)", "  - Result"]
            for c in v.get("checks") or []:
                out += [f"* - {escape_md(c.get('name', ''))}", f"  - {escape_md(c.get('published', ''), math=False)}",
                        f"  - {escape_md(c.get('rerun', ''), math=False)}",
                        f"  - {escape_md(c.get('difference', ''), math=False)}",
                        f"  - {escape_md(c.get('result', ''), math=False)}"]
            out += [":::", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- pages and build
def chapter_title(notebook: Path) -> str | None:
    """The first level-1 heading of a notebook, or None."""
    if not notebook.is_file():
        return None
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


def write_dashboard(generated: Path) -> Path:
    """Write ``generated/dashboard.md`` from ``generated/results/*.json``."""
    results, titles = {}, {}
    for claim in CLAIMS:
        results[claim] = read_record(generated / "results" / f"{claim}.json")
        titles[claim] = chapter_title(generated / f"{claim}.ipynb")
    paper = paper_runs(Path(generated).resolve().parent.parent)
    return atomic_write_text(generated / "dashboard.md", dashboard_markdown(results, titles, paper=paper))


def write_pages(generated: Path) -> list[Path]:
    """Write every generated page: dashboard, execution status, verification and the run-time table of the teaching page."""
    generated = Path(generated)
    return [write_dashboard(generated),
            atomic_write_text(generated / "status.md", status_markdown(generated)),
            atomic_write_text(generated / "verification.md", verification_markdown(generated)),
            atomic_write_text(generated / "runtimes.md", runtimes_markdown(generated))]


def check_executed(generated: Path) -> None:
    """Raise RuntimeError if a chapter is missing or its papermill run recorded an exception.

    The book build does not fail on error outputs stored in a notebook, so this is the gate.
    """
    for claim in CLAIMS:
        path = generated / f"{claim}.ipynb"
        if not path.is_file():
            raise RuntimeError(f"chapter {claim!r} has not been run: {path} is missing; "
                               f"run `flatminima run {claim}` first")
        meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
        if meta.get("exception"):
            raise RuntimeError(f"chapter {claim!r} recorded an exception during execution: {path}")


__all__ = ["PaperRun", "check_executed", "dashboard_markdown", "paper_markdown", "paper_runs", "runtimes_markdown",
           "status_markdown", "verification_markdown", "write_dashboard", "write_pages"]
