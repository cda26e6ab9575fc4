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
