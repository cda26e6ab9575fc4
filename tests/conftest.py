"""Shared fixtures: the project root, and one smoke-preset run of every notebook.

The smoke run goes through the real command line (``flatminima run``) into a copy of the
book's sources in a temporary folder, so tests never touch the working tree's
``book/generated``. Notebook, book and browser tests all reuse that one run.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from flatminima.protocol.contract import Aggregate, Part, Statistic
from flatminima.protocol.params import ClaimParams, param

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


@dataclass(frozen=True)
class ToyParams(ClaimParams):
    """The parameters of a toy claim for records built in the tests (``toy_params`` sets its name)."""

    CLAIM: ClassVar[str] = "toy"
    lr: float = param(0.1, "a learning rate", low=0.0)


def toy_params(claim: str = "toy", **values: Any) -> ClaimParams:
    """``ToyParams`` of the claim named ``claim`` (a subclass per name, as each claim has its own class)."""
    cls = type(f"ToyParams_{claim.replace('-', '_')}", (ToyParams,), {"CLAIM": claim})
    return cls(**values)


def toy_statistic(d: Mapping[str, Any] | Statistic | None, label: str = "value") -> Statistic | None:
    """A :class:`Statistic` from a record-style dict (a missing label or value is filled in)."""
    if d is None or isinstance(d, Statistic):
        return d
    return Statistic.from_dict({"label": label, "value": math.nan, **d})


def toy_aggregate(verdict: str = "inconclusive", *, parts=(), headline=None, statistics=None,
                  criterion: str = "none", facts=None, notes: str = "") -> Aggregate:
    """An :class:`Aggregate` from record-style dicts: parts as ``{name, outcome, reason, statistic}``."""
    built = tuple(p if isinstance(p, Part) else
                  Part(p["name"], p["outcome"], p.get("reason", ""), toy_statistic(p.get("statistic")))
                  for p in parts or ())
    return Aggregate(verdict=verdict, parts=built, headline=toy_statistic(headline) or Statistic("value", math.nan),
                     statistics=dict(statistics or {}), criterion=criterion, facts=dict(facts or {}), notes=notes)


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

