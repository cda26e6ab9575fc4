"""Assemble and build the Jupyter Book: the claims dashboard, then ``jupyter-book build``.

The book reads executed chapters and results from ``book/generated/`` (written by
:mod:`flatminima.runner`). The dashboard page is generated here from the results JSON, so
every number on it comes from a run.
"""
from __future__ import annotations

import subprocess
import sys
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


def _fmt(x: Any) -> str:
    if isinstance(x, (int, float)):
        return f"{x:.3g}"
    return "n/a" if x is None else str(x)


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


def _cell(text: str) -> str:
    """One list-table cell: a single line of markdown (pipes and newlines are harmless here)."""
    return " ".join(str(text).split()) or " "


def dashboard_markdown(results: dict[str, dict[str, Any] | None],
                       titles: dict[str, str] | None = None) -> str:
    """The dashboard page (MyST markdown) for ``{claim: record or None}``."""
    titles = titles or {}
    lines = [
        "# Claims dashboard",
        "",
        "Each row is computed from the results JSON that the chapter's notebook wrote in this build:",
        "the verdict comes from the statistical test stated in the chapter (criterion below), over the",
        "seeds listed. *inconclusive* means the run could not decide; it is not a soft *reproduced*.",
        "",
        ":::{list-table}",
        ":header-rows: 1",
        ":widths: 22 26 26 12 14",
        ":class: dashboard",
        "",
        "* - Claim",
        "  - Paper's figure",
        "  - Our figure (95% CI)",
        "  - Verdict",
        "  - Run",
    ]
    criteria = []
    for claim, rec in results.items():
        title = titles.get(claim) or CLAIM_TITLES.get(claim, claim)
        link = f"[{title}]({claim}.ipynb)"
        if rec is None:
            lines += [f"* - {link}", "  - ", "  - not run", "  - *missing*", "  - "]
            continue
        h = rec.get("headline") or {}
        ours = h.get("label", "")
        if "value" in h:
            ours += f": **{_fmt(h['value'])}**"
            if h.get("ci_low") is not None and h.get("ci_high") is not None:
                ours += f" [{_fmt(h['ci_low'])}, {_fmt(h['ci_high'])}]"
        run = f"{rec['preset']} preset, {len(rec['seeds'])} seeds, {rec['runtime_s']:.0f} s on {rec['device']}"
        lines += [f"* - {link}", f"  - {_cell(h.get('paper', ''))}", f"  - {_cell(ours)}",
                  f"  - **{rec['verdict']}**", f"  - {_cell(run)}"]
        criteria.append(f"- **{title}**: {_cell(rec['criterion'])}")
    lines += [":::", "", "## Criteria", "", *criteria, ""]
    return "\n".join(lines)


def write_dashboard(generated: Path) -> Path:
    """Write ``generated/dashboard.md`` from ``generated/results/*.json``."""
    results, titles = {}, {}
    for claim in CLAIMS:
        path = generated / "results" / f"{claim}.json"
        results[claim] = read_results(path) if path.is_file() else None
        titles[claim] = chapter_title(generated / f"{claim}.ipynb")
    return atomic_write_text(generated / "dashboard.md", dashboard_markdown(results, titles))


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


def build_book(root: Path, *, strict: bool = True) -> Path:
    """Write the dashboard, check the chapters, run ``jupyter-book build``; return index.html."""
    root = Path(root).resolve()
    generated = root / "book" / "generated"
    check_executed(generated)
    write_dashboard(generated)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root), "--toc", str(root / "_toc.yml"),
           "--config", str(root / "_config.yml")]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book reported success but {index} is missing")
    return index
