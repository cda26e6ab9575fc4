"""Shared fixtures: the project root, and one smoke-preset run of every notebook.

The smoke run goes through the real command line (``flatminima run``) into a copy of the
book's sources in a temporary folder, so tests never touch the working tree's
``book/generated``. Notebook, book and browser tests all reuse that one run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


def copy_book_sources(dest: Path) -> Path:
    """Copy what the book build needs (config, toc, book/, notebooks/) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "book", dest / "book", ignore=shutil.ignore_patterns("generated"))
    shutil.copytree(ROOT / "notebooks", dest / "notebooks",
                    ignore=shutil.ignore_patterns("results", ".ipynb_checkpoints"))
    return dest


def flatminima(*args: str, cwd: Path | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run the ``flatminima`` console script of this environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / "flatminima"), *args], cwd=cwd or ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> Path:
    """A copy of the book sources with every claim executed at the smoke preset."""
    root = copy_book_sources(tmp_path_factory.mktemp("smoke") / "project")
    proc = flatminima("run", "--preset", "smoke", "--jobs", "2", "--root", str(root), cwd=root)
    if proc.returncode != 0:
        pytest.fail(f"flatminima run --preset smoke failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
    root.joinpath("run.log").write_text(proc.stdout)
    return root


TOY_RUN_CONTROLS = (
    'device: str = "auto"\n'
    "show_progress: bool = False\n"
    'results_dir: str = "results"\n'
    "cache_dir: str = None\n"
    "workers: int = None\n")
"""The run controls every toy notebook's parameters cell ends with (as the claim notebooks' cells do)."""


def write_toy_project(root: Path, monkeypatch, *, claim: str, module: str, source: str, parameters: str,
                      body: str) -> Path:
    """A minimal project under ``root`` with one toy claim registered for the test only.

    ``source`` is the claim module (importable as ``module``), ``parameters`` the notebook's
    papermill parameters cell and ``body`` the cell after it. The library's source hash is
    pinned, so edits elsewhere in the package do not change the toy's inputs hash.
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from flatminima.claims import registry as presets
    from flatminima.run import publish

    (root / "_toc.yml").write_text("root: intro\n")
    (root / "notebooks").mkdir()
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / f"{module}.py").write_text(source)
    nb = new_notebook(cells=[new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                             new_code_cell(f"import sys; sys.path.insert(0, {str(pkg)!r})\n" + body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / f"{claim}.ipynb")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setitem(presets.CLAIMS, claim, module)
    monkeypatch.setattr(publish, "claim_source_hash", lambda claim: "pinned")
    sys.modules.pop(module, None)
    return root

