"""Assemble and build the Jupyter Book: generated pages (dashboard, status, run times), then ``jupyter-book build``.

The book reads executed chapters and results from ``book/generated/`` (written by
:mod:`flatminima.runner`). The dashboard, the execution-status page and the run-time table of
the teaching page are generated here from the results JSON, so every number on them comes
from a run.

Everything taken from a record (labels, reasons, the paper's numbers, criteria, versions) is
*untrusted text*: :func:`escape_md` turns it into Markdown that renders as exactly that text.
The one exception is inline TeX between dollar signs (``$\\lambda_R$``), which is rendered as
maths when it uses only ordinary TeX (no ``\\href``, ``\\class``, macro definitions, ...).

This module is also a small Sphinx extension (``sphinx.extra_extensions: [flatminima.book]``):
it drops the repository and launch buttons when ``repository.url`` is empty (the one setting
that turns them on), and registers the author-year bibliography style ``authoryear``.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat

from .presets import CLAIMS
from .results import atomic_write_text, read_results

CLAIM_TITLES: dict[str, str] = {
    "sharp-minima": "Large-batch SGD finds sharper minima",
    "variance-flatness": "Inverse variance-flatness relation of SGD",
    "wide-minima": "Bayes-optimal classifiers sit in wide flat minima",
    "gradient-mismatch": "Precision beats surrogates against gradient mismatch",
}
PRESET_NAMES: tuple[str, ...] = ("smoke", "cpu", "paper")
DATA_NAMES: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
OUTCOME_BADGE: dict[str, str] = {"reproduced": "success", "not reproduced": "danger",
                                 "inconclusive": "warning"}
PROVENANCE_KEY = "provenance"  # cell.metadata.flatminima.role of the provenance cell

# ----------------------------------------------------------------------------- escaping
# The ASCII punctuation that can start Markdown/MyST markup (emphasis, code, roles, links, HTML,
# entities, headings, lists, tables, maths, comments, fences); each is CommonMark-escapable.
_PUNCT = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~^&:%])")
_MATH = re.compile(r"\$([^$\n]{1,200}?)\$")
_MATH_OK = re.compile(r"[A-Za-z0-9\\_^{}()\[\]+\-*/=,.;:|'!<>~ ]+")
_MATH_BANNED = re.compile(r"\\(href|url|class|cssId|style|data|html|require|unicode|def|gdef|edef|let|"
                          r"newcommand|renewcommand|newenvironment|renewenvironment|DeclareMathOperator|"
                          r"mmlToken|toggle|texttip|tooltip|mathtip|action|input|include)(?![A-Za-z])")


def _escape_text(text: str) -> str:
    return _PUNCT.sub(r"\\\1", text)


def safe_math(tex: str) -> bool:
    """Whether ``tex`` (the inside of ``$...$``) may be rendered as maths: ordinary TeX only."""
    return bool(_MATH_OK.fullmatch(tex)) and not _MATH_BANNED.search(tex) and tex.strip() == tex != ""


def escape_md(text: Any, *, math: bool = True) -> str:
    r"""Untrusted text as one line of MyST Markdown that renders as exactly that text.

    Every punctuation character that can start markup is backslash-escaped (CommonMark renders ``\<`` as ``<``,
    and Sphinx then HTML-escapes it), so no HTML, role, directive, link, emphasis or list can be
    formed; newlines become spaces. With ``math=True``, a ``$...$`` span that passes
    :func:`safe_math` becomes a ``{math}`` role, so record labels can carry real maths.
    """
    s = " ".join(("" if text is None else str(text)).split())
    if not math:
        return _escape_text(s)
    out, pos = [], 0
    for m in _MATH.finditer(s):
        if not safe_math(m.group(1)):
            continue
        out.append(_escape_text(s[pos:m.start()]))
        out.append("{math}`" + m.group(1) + "`")
        pos = m.end()
    out.append(_escape_text(s[pos:]))
    return "".join(out)


def _fmt(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, float)):
        return f"{x:.3g}"
    return "n/a" if x is None else str(x)


def badge(outcome: Any) -> str:
    """A coloured sphinx-design badge for a verdict or part outcome (green, red, amber; grey otherwise)."""
    text = str(outcome) if outcome is not None else "missing"
    kind = OUTCOME_BADGE.get(text, "secondary")
    text = re.sub(r"[^A-Za-z0-9 ]", "", text)[:40] or "unknown"
    return f"{{bdg-{kind}}}`{text}`"


def statistic_text(st: Mapping[str, Any] | None) -> str:
    """``label value [low, high]`` (plain text, unescaped) for a statistic in the records' form."""
    if not isinstance(st, Mapping) or "value" not in st:
        return ""
    out = f"{st.get('label', '')}: {_fmt(st.get('value'))}".lstrip(": ")
    if st.get("ci_low") is not None and st.get("ci_high") is not None:
        out += f" [{_fmt(st['ci_low'])}, {_fmt(st['ci_high'])}]"
    return out


def statistic_md(st: Mapping[str, Any] | None) -> str:
    """A statistic as escaped Markdown: the label, the value in bold, the 95% interval."""
    if not isinstance(st, Mapping) or "value" not in st:
        return "n/a"
    out = (escape_md(st.get("label", "")) + ": ") if st.get("label") else ""
    out += f"**{escape_md(_fmt(st.get('value')))}**"
    if st.get("ci_low") is not None and st.get("ci_high") is not None:
        out += " " + escape_md(f"[{_fmt(st['ci_low'])}, {_fmt(st['ci_high'])}]")
    return out


def _parts(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in (record.get("parts") or []) if isinstance(p, Mapping)]


def verdict_reason(record: Mapping[str, Any]) -> str:
    """Why the verdict is what it is, in one plain-text sentence built from the record's parts.

    The verdict combines the parts (:func:`flatminima.stats.combine`): it is *not reproduced* because
    of the parts that are not reproduced, *inconclusive* because of the inconclusive ones, and
    *reproduced* when every part is; the sentence names the deciding parts and their reasons.
    First-edition records (no parts) fall back to the criterion.
    """
    verdict = record.get("verdict")
    parts = _parts(record)
    if not parts:
        return str(record.get("criterion") or "")

    def says(p: Mapping[str, Any]) -> str:
        return f"{p.get('name', 'part')} is {p.get('outcome', 'missing')}: {p.get('reason', '')}".rstrip(": ")

    if verdict == "reproduced":
        return ("Every part is reproduced. " if len(parts) > 1 else "") + "; ".join(says(p) for p in parts) + "."
    deciding = [p for p in parts if p.get("outcome") == verdict] or parts
    return "; ".join(says(p) for p in deciding) + "."


def compact_seeds(seeds: Iterable[Any]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``0-2, 5, 7-8``."""
    try:
        vals = sorted({int(s) for s in seeds})
    except (TypeError, ValueError):
        return ", ".join(str(s) for s in seeds)
    out: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(out)


def _minutes(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "n/a"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _when(iso: Any) -> str:
    """An ISO timestamp as ``2026-12-01 09:08 UTC`` (other text unchanged; None: "not recorded")."""
    if not iso:
        return "not recorded"
    try:
        t = datetime.datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo is not None else "")


# ----------------------------------------------------------------------------- provenance
VERSION_ORDER = ("flatminima", "python", "torch", "numpy", "scipy", "pandas", "scikit-learn", "sklearn",
                 "statsmodels", "mnist1d", "papermill", "myst-nb", "torchvision")


def provenance_lines(record: Mapping[str, Any]) -> list[str]:
    """The provenance of a record as escaped Markdown list items (commit, date, preset, seeds, machine, versions)."""
    prov = record.get("provenance") if isinstance(record.get("provenance"), Mapping) else {}
    seeds = record.get("seeds") or []
    lines = []
    when = prov.get("executed_at")
    run = (f"{record.get('preset')} preset, {len(seeds)} seeds ({compact_seeds(seeds)}), "
           f"{_minutes(record.get('runtime_s'))} on {record.get('device', '?')}")
    lines.append(f"- **Run**: {escape_md(run, math=False)}")
    lines.append(f"- **Executed**: {escape_md(_when(when), math=False)}")
    try:
        from .presets import deviations
        changed = deviations(str(record.get("claim")), str(record.get("preset")), dict(record.get("parameters") or {}))
    except Exception:  # noqa: BLE001 - an unknown claim or preset, or parameters that no longer validate
        changed = {}
    if changed:
        lines.append(f"- **Changed from the {escape_md(record.get('preset'), math=False)} preset**: "
                     f"{escape_md(reduced_text(changed), math=False)}")
    commit = prov.get("git_commit")
    if commit:
        state = {True: " (with uncommitted changes)", False: " (clean)"}.get(prov.get("git_dirty"), "")
        lines.append(f"- **Commit**: `{re.sub(r'[^0-9a-fA-F]', '', str(commit))[:12]}`{escape_md(state)}")
    else:
        lines.append("- **Commit**: not recorded")
    if prov:
        machine = f"{prov.get('machine', '?')}, {prov.get('cpu_count', '?')} CPUs"
        if prov.get("cpu_capability"):
            machine += f", {prov['cpu_capability']} kernels"
        if prov.get("torch_threads") is not None:
            machine += f", {prov['torch_threads']} torch threads"
        if prov.get("gpu"):
            machine += f", GPU {prov['gpu']}"
        lines.append(f"- **Machine**: {escape_md(machine, math=False)}")
    else:
        lines.append("- **Machine**: not recorded (a record from before provenance was kept)")
    vers = record.get("versions") if isinstance(record.get("versions"), Mapping) else {}
    if vers:
        keys = [k for k in VERSION_ORDER if k in vers] + sorted(k for k in vers if k not in VERSION_ORDER
                                                                and k != "platform")
        lines.append("- **Versions**: " + escape_md(", ".join(f"{k} {vers[k]}" for k in keys), math=False))
    return lines


def provenance_markdown(record: Mapping[str, Any], *, title: str = "Provenance of this page") -> str:
    """A collapsed admonition with the record's provenance: commit, date, preset, seeds, machine, versions.

    Every value is escaped (:func:`escape_md`); missing fields read "not recorded".
    """
    return "\n".join([f":::{{admonition}} {escape_md(title, math=False)}", ":class: dropdown provenance", "",
                      *provenance_lines(record), ":::", ""])


def add_provenance_cell(nb: nbformat.NotebookNode, record: Mapping[str, Any]) -> nbformat.NotebookNode:
    """Append (or replace) the final Markdown cell of an executed notebook with :func:`provenance_markdown`.

    The cell is marked ``metadata.flatminima.role = "provenance"``; earlier provenance cells are
    removed, so calling this twice leaves one cell, at the end. Returns ``nb`` (changed in place).
    """
    nb.cells = [c for c in nb.cells
                if not (isinstance(c.get("metadata", {}).get("flatminima"), Mapping)
                        and c.metadata["flatminima"].get("role") == PROVENANCE_KEY)]
    cell = nbformat.v4.new_markdown_cell(provenance_markdown(record),
                                         metadata={"flatminima": {"role": PROVENANCE_KEY}})
    cell.pop("id", None)
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        import uuid
        cell["id"] = uuid.uuid4().hex[:8]
    nb.cells.append(cell)
    return nb


def colab_install_cell(repo_url: str) -> nbformat.NotebookNode:
    """A code cell that installs the library when the notebook runs in Google Colab (a no-op elsewhere).

    Tagged ``remove-cell`` so the book does not show it. ``repo_url`` is the book's ``repository.url``.
    """
    if not re.fullmatch(r"https://[A-Za-z0-9._~/-]+", repo_url or ""):
        raise ValueError(f"repo_url must be an https URL of the repository, got {repo_url!r}")
    src = ("import sys\n"
           "if 'google.colab' in sys.modules:  # Colab: install the library this notebook imports\n"
           f"    %pip install --quiet 'flatminima @ git+{repo_url}'")
    return nbformat.v4.new_code_cell(src, metadata={"tags": ["remove-cell"], "flatminima": {"role": "install"}})


# ----------------------------------------------------------------------------- result box and dashboard
def result_box_markdown(record: Mapping[str, Any], *, title: str = "Result") -> str:
    """The "Result" admonition of a chapter from its record: badge, primary number, paper's number, why."""
    h = record.get("headline") if isinstance(record.get("headline"), Mapping) else {}
    lines = [f":::{{admonition}} {escape_md(title, math=False)}", ":class: result", "",
             f"**Verdict**: {badge(record.get('verdict'))}", ""]
    if "value" in h:
        n = f", {h['n']} seeds" if isinstance(h.get("n"), int) else ""
        lines += [f"**Ours** (95% interval{escape_md(n, math=False)}): {statistic_md(h)}", ""]
    if h.get("paper"):
        lines += [f"**Paper**: {escape_md(h['paper'])}", ""]
    why = verdict_reason(record)
    if why:
        lines += [f"**Why**: {escape_md(why)}", ""]
    lines += [":::", ""]
    return "\n".join(lines)


def _claim_link(claim: str, title: str) -> str:
    slug = re.sub(r"[^a-z0-9-]", "", claim)
    return f"[{escape_md(title)}]({slug}.ipynb)"


def dashboard_markdown(results: dict[str, dict[str, Any] | None],
                       titles: dict[str, str | None] | None = None, *,
                       built_at: str | None = None,
                       paper: Mapping[str, PaperRun] | None = None) -> str:
    """The dashboard page (MyST Markdown) for ``{claim: record or None}``.

    A summary table (claim, verdict badge, our number with its 95% interval, the paper's number for
    the same measure and, with ``paper``, the paper-preset run's verdict and number), then one
    section per claim with every part's outcome, its one-line reason and statistic, the
    pre-registration and the provenance, then the paper-preset runs (:func:`paper_markdown`).
    Every string from a record is escaped.
    """
    titles = titles or {}
    if built_at is None:  # the newest run, not the build time: the page changes only when a result does
        stamps = [str((r.get("provenance") or {}).get("executed_at") or "") for r in results.values() if r]
        built_at = _when(max(stamps)) if any(stamps) else "at an unrecorded date"
    lines = [
        "# Claims dashboard",
        "",
        "Each verdict below was computed in this build from the run's own data, by the decision rule of",
        "{doc}`../methods` applied to each part of a claim and combined over the parts. *inconclusive* means",
        "the run could not decide either way at this scale; it is not a soft *reproduced*.",
        f"Results of runs executed up to {escape_md(built_at, math=False)}; each claim's provenance is below.",
        "",
        ":::{list-table}",
        ":header-rows: 1",
        ":widths: 24 14 24 20 18" if paper is not None else ":widths: 30 18 30 22",
        ":class: dashboard",
        "",
        "* - Claim",
        "  - Verdict",
        "  - Ours (95% interval)",
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
            lines += [f"* - {link}", f"  - {badge(rec.get('verdict'))}", f"  - {statistic_md(h)}",
                      f"  - {escape_md(h.get('paper')) or 'n/a'}"]
            sections += _claim_section(claim, title, rec)
        if paper is not None:
            lines.append(f"  - {paper_cell(paper.get(claim) or PaperRun(claim))}")
    lines += [":::", "", "## Why each verdict is what it is", "", *sections]
    if paper is not None:
        lines += ["", *paper_markdown(paper, titles)]
    return "\n".join(lines)


def _claim_section(claim: str, title: str, rec: Mapping[str, Any]) -> list[str]:
    parts = _parts(rec)
    why = escape_md(verdict_reason(rec)) + " " if parts else ""
    out = [f"### {escape_md(title)}", "",
           f"{badge(rec.get('verdict'))} {why}(chapter: {_claim_link(claim, title)})", ""]
    if parts:
        for p in parts:
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
                f"{_fmt(pre.get('smallest_effect'))}; {pre.get('test', '?')}; alpha {_fmt(pre.get('alpha'))}, "
                f"power {_fmt(pre.get('power'))}: {pre.get('seeds_needed', '?')} seeds needed, {n} used.")
        out += [escape_md(text), ""]
    out += [provenance_markdown(rec, title="Provenance"), ""]
    return out


# ----------------------------------------------------------------------------- the paper-preset runs
@dataclass(frozen=True)
class PaperRun:
    """What the book knows of one claim's run at a preset published beside the chapters (``paper``).

    ``record`` is the published record (None: not run); ``current`` whether today's notebook and
    library would reuse it (:func:`flatminima.runner.published_state`); ``reduced`` the parameters
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


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    return _fmt(v) if isinstance(v, float) else str(v)


def reduced_text(reduced: Mapping[str, tuple[Any, Any]]) -> str:
    """``num_seeds 10 → 3; control_steps 12000 → 4000`` (plain text, unescaped); seeds are counted."""
    out = []
    for name, (was, used) in reduced.items():
        if name == "seeds":
            out.append(f"seeds: {compact_seeds(used)} ({len(used)} seeds)")
        else:
            out.append(f"{name} {_value_text(was)} → {_value_text(used)}")
    return "; ".join(out)


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
        items = [f"- **Ours** (95% interval): {statistic_md(h)}"]
        if h.get("paper"):
            items.append(f"- **Paper**: {escape_md(h['paper'])}")
        for p in _parts(rec):
            st = statistic_md(p.get("statistic")) if isinstance(p.get("statistic"), Mapping) else ""
            items.append(f"- **{escape_md(p.get('name', 'part'))}** {badge(p.get('outcome'))}"
                         + (f" {st}" if st and st != "n/a" else ""))
        prov = rec.get("provenance") if isinstance(rec.get("provenance"), Mapping) else {}
        seeds = rec.get("seeds") or []
        machine = f"{prov.get('machine', '?')}, {prov.get('cpu_count', '?')} CPUs" if prov else "not recorded"
        if prov.get("gpu"):
            machine += f", GPU {prov['gpu']}"
        items.append("- **Run**: " + escape_md(f"{len(seeds)} seeds, {_minutes(rec.get('runtime_s'))} on "
                                                 f"{rec.get('device', '?')} ({machine}), executed "
                                                 f"{_when(prov.get('executed_at'))}", math=False))
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
    from .presets import deviations, resolve
    from .runner import missing_data, published_dir, published_state

    root = Path(root)
    out_dir = published_dir(root, preset)
    runs: dict[str, PaperRun] = {}
    for claim in CLAIMS:
        rec = _read_record(out_dir / "results" / f"{claim}.json")
        if rec is None:
            missing = [DATA_NAMES.get(d, d) for _, d in missing_data(resolve(claim, preset))]
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
def _read_record(path: Path) -> dict[str, Any] | None:
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
    from .runner import PUBLISHED_BESIDE

    entries = [(generated, claim, "") for claim in CLAIMS]
    for preset in PUBLISHED_BESIDE:  # runs published beside the chapters: listed when there are any
        entries += [(generated / preset, claim, f"{preset}/") for claim in CLAIMS
                    if (generated / preset / f"{claim}.ipynb").is_file()
                    or (generated / preset / "failed" / f"{claim}.ipynb").is_file()]
    for folder, claim, prefix in entries:
        rec = _read_record(folder / "results" / f"{claim}.json")
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
                 f"  - {escape_md(_minutes((rec or {}).get('runtime_s')), math=False) if rec else ''}",
                 f"  - {escape_md(_when(prov.get('executed_at')) if rec else '', math=False)}",
                 f"  - {escape_md(machine if rec else '', math=False)}"]
    rows += [":::", ""]
    head = ["# Execution status", "",
            "Every chapter is a notebook executed by `flatminima run` before the book is built; this page is",
            "generated from the executed notebooks and their results. *pass* means the notebook ran to the end",
            "and wrote its results; the verdict itself is on the {doc}`dashboard`. Run times are wall-clock",
            "seconds of the whole notebook on the machine named.", ""]
    return "\n".join(head + rows)


def runtime_table(generated: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{claim: {preset: record}}`` for every record under ``generated`` (book preset and ``<preset>/``)."""
    generated = Path(generated)
    out: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLAIMS}
    folders = [generated / "results", *(generated / p / "results" for p in PRESET_NAMES)]
    for folder in folders:
        for claim in CLAIMS:
            rec = _read_record(folder / f"{claim}.json")
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
                from .presets import deviations
                reduced = bool(deviations(claim, preset, rec.get("parameters") or {}))
            except Exception:  # noqa: BLE001 - parameters that no longer validate: say nothing
                reduced = False
            seeds = f", reduced, {len(rec.get('seeds') or [])} seeds" if reduced else ""
            rows.append(f"  - {escape_md(_minutes(rec.get('runtime_s')) + cpus + seeds, math=False)}")
    rows += [":::", ""]
    return "\n".join(rows)


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
        results[claim] = _read_record(generated / "results" / f"{claim}.json")
        titles[claim] = chapter_title(generated / f"{claim}.ipynb")
    paper = paper_runs(Path(generated).resolve().parent.parent)
    return atomic_write_text(generated / "dashboard.md", dashboard_markdown(results, titles, paper=paper))


def write_pages(generated: Path) -> list[Path]:
    """Write every generated page: dashboard, execution status and the run-time table of the teaching page."""
    generated = Path(generated)
    return [write_dashboard(generated),
            atomic_write_text(generated / "status.md", status_markdown(generated)),
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


def paper_toc_part(root: Path, preset: str = "paper") -> dict | None:
    """A ``_toc.yml`` part listing the chapters executed at ``preset`` under ``book/generated/<preset>/``, or None."""
    from .runner import published_dir

    root = Path(root)
    folder = published_dir(root, preset)
    chapters = []
    for claim in CLAIMS:
        nb = folder / f"{claim}.ipynb"
        if nb.is_file() and _read_record(folder / "results" / f"{claim}.json") is not None:
            title = chapter_title(nb) or CLAIM_TITLES.get(claim, claim)
            chapters.append({"file": nb.relative_to(root).with_suffix("").as_posix(),
                             "title": f"{title} ({preset} preset)"})
    return {"caption": f"At the {preset} preset", "chapters": chapters} if chapters else None


def toc_with_sweeps(root: Path) -> Path:
    """``_toc.yml``, or, when paper-preset chapters or sweeps are published under ``book/generated/``,
    a generated copy (``_build/_toc.generated.yml``) with a part for the chapters at the paper preset
    (:func:`paper_toc_part`) and a "Sweeps" part (:func:`flatminima.sweep.toc_part`), before the back matter.

    The static ``_toc.yml`` names neither, so a book without them builds under ``-W``.
    """
    import yaml

    from .sweep import toc_part

    root = Path(root)
    extra = [p for p in (paper_toc_part(root), toc_part(root)) if p is not None]
    if not extra:
        return root / "_toc.yml"
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    parts = toc.setdefault("parts", [])
    back = next((i for i, p in enumerate(parts) if p.get("caption") == "Back matter"), len(parts))
    parts[back:back] = extra
    out = root / "_build" / "_toc.generated.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, yaml.safe_dump(toc, sort_keys=False))
    return out


def build_book(root: Path, *, strict: bool = True) -> Path:
    """Write the generated pages, check the chapters, run ``jupyter-book build``; return index.html."""
    root = Path(root).resolve()
    generated = root / "book" / "generated"
    check_executed(generated)
    write_pages(generated)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root), "--toc",
           str(toc_with_sweeps(root)), "--config", str(root / "_config.yml")]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book reported success but {index} is missing")
    return index


# ----------------------------------------------------------------------------- Sphinx extension
def _buttons_follow_repository_url(app: Any, config: Any) -> None:
    """``repository.url`` is the one setting: set, it turns on the repository and launch buttons; empty, neither."""
    opts = dict(config.html_theme_options or {})
    if str(opts.get("repository_url") or "").strip():
        opts["use_repository_button"] = True
    else:
        opts.pop("launch_buttons", None)
        opts.pop("repository_url", None)
        for key in ("use_repository_button", "use_edit_page_button", "use_issues_button"):
            opts[key] = False
    config.html_theme_options = opts


def _register_bibliography_style() -> None:
    """Register the pybtex style ``authoryear``: unsrt entries labelled "Keskar et al. 2017", sorted by author."""
    from pybtex.plugin import register_plugin
    from pybtex.richtext import Text
    from pybtex.style.formatting.unsrt import Style as Unsrt
    from pybtex.style.labels import BaseLabelStyle

    def last(person: Any) -> str:
        return Text(*person.rich_last_names).render_as("text") or "Anon"

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):  # noqa: ANN001 - pybtex API
            labels = []
            for e in sorted_entries:
                people = e.persons.get("author") or e.persons.get("editor") or []
                if not people:
                    who = "Anon"
                elif len(people) == 1:
                    who = last(people[0])
                elif len(people) == 2:
                    who = f"{last(people[0])} and {last(people[1])}"
                else:
                    who = f"{last(people[0])} et al."
                labels.append(f"{who} {e.fields.get('year', 'n.d.')}")
            seen: dict[str, int] = {}
            for lab in labels:
                seen[lab] = seen.get(lab, 0) + 1
            count: dict[str, int] = {}
            for lab in labels:
                if seen[lab] > 1:
                    count[lab] = count.get(lab, 0) + 1
                    yield lab + "abcdefghijklmnopqrstuvwxyz"[count[lab] - 1]
                else:
                    yield lab

    class AuthorYearStyle(Unsrt):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    for group, obj in (("pybtex.style.labels", AuthorYearLabels), ("pybtex.style.formatting", AuthorYearStyle)):
        try:
            register_plugin(group, "authoryear", obj)
        except Exception:  # already registered by an earlier build in this process
            pass


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point (``sphinx.extra_extensions: [flatminima.book]``)."""
    _register_bibliography_style()
    app.connect("config-inited", _buttons_follow_repository_url)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["add_provenance_cell", "badge", "build_book", "check_executed", "colab_install_cell",
           "dashboard_markdown", "escape_md", "provenance_markdown", "result_box_markdown",
           "runtimes_markdown", "status_markdown", "verdict_reason", "write_dashboard", "write_pages"]
