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
                       built_at: str | None = None) -> str:
    """The dashboard page (MyST Markdown) for ``{claim: record or None}``.

    A summary table (claim, verdict badge, our number with its 95% interval, the paper's number for
    the same measure), then one section per claim with every part's outcome, its one-line reason and
    statistic, the pre-registration and the provenance. Every string from a record is escaped.
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
        ":widths: 30 18 30 22",
        ":class: dashboard",
        "",
        "* - Claim",
        "  - Verdict",
        "  - Ours (95% interval)",
        "  - Paper",
    ]
    sections: list[str] = []
    for claim, rec in results.items():
        title = titles.get(claim) or CLAIM_TITLES.get(claim, claim)
        link = _claim_link(claim, title)
        if rec is None:
            lines += [f"* - {link}", f"  - {badge('missing')}", "  - not run in this build", "  - "]
            continue
        h = rec.get("headline") if isinstance(rec.get("headline"), Mapping) else {}
        lines += [f"* - {link}", f"  - {badge(rec.get('verdict'))}", f"  - {statistic_md(h)}",
                  f"  - {escape_md(h.get('paper')) or 'n/a'}"]
        sections += _claim_section(claim, title, rec)
    lines += [":::", "", "## Why each verdict is what it is", "", *sections]
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
    for claim in CLAIMS:
        rec = _read_record(generated / "results" / f"{claim}.json")
        state = _notebook_state(generated / f"{claim}.ipynb")
        failed_later = (generated / "failed" / f"{claim}.ipynb").is_file()
        title = chapter_title(generated / f"{claim}.ipynb") or CLAIM_TITLES.get(claim, claim)
        if state == "ok" and rec is not None:
            status = "{bdg-success}`pass`" + (" (a later run failed; see `failed/`)" if failed_later else "")
        elif state in ("failed", "unreadable") or failed_later:
            status = "{bdg-danger}`fail`"
        else:
            status = "{bdg-secondary}`not run`"
        prov = (rec or {}).get("provenance") or {}
        machine = f"{prov.get('machine', '')}, {prov.get('cpu_count', '?')} CPUs" if prov else "not recorded"
        rows += [f"* - {_claim_link(claim, title)}", f"  - {status}",
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
            rows.append(f"  - {escape_md(_minutes(rec.get('runtime_s')) + cpus, math=False)}")
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
    return atomic_write_text(generated / "dashboard.md", dashboard_markdown(results, titles))


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


def toc_with_sweeps(root: Path) -> Path:
    """``_toc.yml``, or, when sweeps are published under ``book/generated/sweeps/``, a generated copy
    (``_build/_toc.sweeps.yml``) with a "Sweeps" part listing their pages (:func:`flatminima.sweep.toc_part`).

    The static ``_toc.yml`` never names sweep pages, so a book without sweeps builds under ``-W``.
    """
    import yaml

    from .sweep import toc_part

    root = Path(root)
    part = toc_part(root)
    if part is None:
        return root / "_toc.yml"
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    parts = toc.setdefault("parts", [])
    back = next((i for i, p in enumerate(parts) if p.get("caption") == "Back matter"), len(parts))
    parts.insert(back, part)
    out = root / "_build" / "_toc.sweeps.yml"
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
