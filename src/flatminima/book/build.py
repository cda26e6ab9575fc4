"""The book's table of contents (chapters, paper-preset chapters, sweeps) and ``jupyter-book build``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from flatminima.book.pages import chapter_title, check_executed, read_record, write_pages
from flatminima.claims.registry import CLAIM_TITLES, CLAIMS
from flatminima.core.io import atomic_write_text
from flatminima.run.publish import published_dir
from flatminima.run.sweep.report import toc_part


def paper_toc_part(root: Path, preset: str = "paper") -> dict | None:
    """A ``_toc.yml`` part listing the chapters executed at ``preset`` under ``book/generated/<preset>/``, or None."""
    root = Path(root)
    folder = published_dir(root, preset)
    chapters = []
    for claim in CLAIMS:
        nb = folder / f"{claim}.ipynb"
        if nb.is_file() and read_record(folder / "results" / f"{claim}.json") is not None:
            title = chapter_title(nb) or CLAIM_TITLES.get(claim, claim)
            chapters.append({"file": nb.relative_to(root).with_suffix("").as_posix(),
                             "title": f"{title} ({preset} preset)"})
    return {"caption": f"At the {preset} preset", "chapters": chapters} if chapters else None


def toc_with_sweeps(root: Path) -> Path:
    """``_toc.yml``, or, when paper-preset chapters or sweeps are published under ``book/generated/``,
    a generated copy (``_build/_toc.generated.yml``) with a part for the chapters at the paper preset
    (:func:`paper_toc_part`) and a "Sweeps" part (:func:`flatminima.run.sweep.report.toc_part`), before the back matter.

    The static ``_toc.yml`` names neither, so a book without them builds under ``-W``.
    """
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
