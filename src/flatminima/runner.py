"""Execute claim notebooks with papermill, reusing runs whose inputs have not changed.

A run of claim ``c`` writes, under ``out_dir``:

* ``c.ipynb``: the executed notebook (the book's chapter), with ``metadata.flatminima``
  recording the inputs hash, the parameters and the verdict;
* ``results/c.json``: the results record written by the notebook.

Both are produced in a staging folder and moved into place only when the notebook finished
without error, so a failed or interrupted run never replaces a good result with a partial
one; the failed notebook is kept under ``out_dir/failed/`` for inspection.

The inputs hash covers the source notebook's cells, the resolved parameters, the package
version and the package's source files: change any of them and the run is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from . import __version__
from .presets import CLAIMS, resolve
from .results import read_results

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RunOutcome:
    """How one claim's run ended."""

    claim: str
    status: str  # "ran", "reused" or "failed"
    verdict: str | None
    notebook: Path | None
    results: Path | None
    seconds: float
    error: str = ""

    def line(self) -> str:
        if self.status == "failed":
            return f"{self.claim}: FAILED after {self.seconds:.0f} s: {self.error}"
        return f"{self.claim}: {self.verdict} ({self.status}, {self.seconds:.1f} s) -> {self.results}"


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: the nearest folder above ``start`` holding ``_toc.yml`` and ``notebooks/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(
        f"no flatminima project (a folder with _toc.yml and notebooks/) at or above {here}; "
        "run from a clone of the repository or pass --root")


def package_source_hash() -> str:
    """SHA-256 over the package's Python sources (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def notebook_source_hash(path: Path) -> str:
    """SHA-256 over the notebook's cell types and sources (outputs and metadata ignored)."""
    nb = nbformat.read(path, as_version=4)
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(cell.cell_type.encode())
        h.update(cell.source.encode())
        h.update(json.dumps(cell.get("metadata", {}).get("tags", [])).encode())
    return h.hexdigest()


def inputs_hash(notebook: Path, parameters: dict[str, Any]) -> str:
    """The hash that decides whether an earlier run can be reused."""
    h = hashlib.sha256()
    for part in (notebook_source_hash(notebook), json.dumps(parameters, sort_keys=True, default=str),
                 __version__, package_source_hash()):
        h.update(part.encode())
    return h.hexdigest()


def _reusable(nb_path: Path, res_path: Path, digest: str) -> str | None:
    """The stored verdict if the executed notebook and results match ``digest``, else None."""
    if not (nb_path.is_file() and res_path.is_file()):
        return None
    try:
        meta = nbformat.read(nb_path, as_version=4).metadata.get("flatminima", {})
        record = read_results(res_path)
    except (ValueError, OSError, json.JSONDecodeError):
        return None
    if meta.get("inputs_hash") != digest:
        return None
    return record["verdict"]


def run_claim(claim: str, *, root: Path, preset: str = "cpu", overrides: dict[str, Any] | None = None,
              out_dir: Path | None = None, device: str = "auto", force: bool = False,
              timeout: int | None = None, log_output: bool = False, workers: int | None = None) -> RunOutcome:
    """Execute ``notebooks/<claim>.ipynb`` at ``preset`` with ``overrides`` through papermill.

    Parameters are validated first (:class:`~flatminima.params.ParameterError` before any
    work). Returns a :class:`RunOutcome`; a failing notebook does not raise. Per-seed records
    are cached under ``out_dir/seeds`` (see :mod:`flatminima.replicates`), so a run that was
    interrupted, or re-run with more seeds, computes only the missing seeds; ``workers`` is the
    number of processes the notebook runs seeds in (default: one per core).
    """
    import papermill as pm

    overrides = dict(overrides or {})
    params = resolve(claim, preset, overrides)  # raises ParameterError on unknown names / bad values
    root = Path(root)
    out_dir = Path(out_dir) if out_dir else root / "book" / "generated"
    source = root / "notebooks" / f"{claim}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"notebook for claim {claim!r} not found at {source}")
    nb_path, res_path = out_dir / f"{claim}.ipynb", out_dir / "results" / f"{claim}.json"
    parameters = params.to_dict()
    digest = inputs_hash(source, {**parameters, "device": device})
    t0 = time.perf_counter()
    if not force and (verdict := _reusable(nb_path, res_path, digest)) is not None:
        return RunOutcome(claim, "reused", verdict, nb_path, res_path, time.perf_counter() - t0)

    stage = out_dir / ".staging" / claim
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "results").mkdir(parents=True)
    staged_nb = stage / f"{claim}.ipynb"
    # Inject only what differs from the notebook's defaults; the kernel runs in the staging folder,
    # so the notebook's default results_dir ("results") lands there without an absolute path.
    nb_params = {k: v for k, v in parameters.items() if k in overrides or k == "preset"}
    if device != "auto":
        nb_params["device"] = device
    # the per-seed cache outlives the staging folder; a relative path keeps the notebook portable
    nb_params["cache_dir"] = os.path.relpath(out_dir / "seeds", stage)
    if workers is not None:
        nb_params["workers"] = int(workers)
    try:
        pm.execute_notebook(str(source), str(staged_nb), parameters=nb_params, kernel_name="python3",
                            # the kernel's folder, set without papermill's process-wide chdir (cwd=),
                            # which would race between runs in parallel threads
                            resources={"metadata": {"path": str(stage)}},
                            progress_bar=False, log_output=log_output,
                            execution_timeout=timeout,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP-warning noise
        record = read_results(stage / "results" / f"{claim}.json")
    except Exception as exc:  # noqa: BLE001 - report every failure the same way, keep the evidence
        failed = out_dir / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        kept = failed / f"{claim}.ipynb"
        if staged_nb.exists():
            os.replace(staged_nb, kept)
        shutil.rmtree(stage, ignore_errors=True)
        msg = str(exc).strip().splitlines()
        detail = next((m for m in reversed(msg) if m.strip()), type(exc).__name__)
        return RunOutcome(claim, "failed", None, kept if kept.exists() else None, None,
                          time.perf_counter() - t0, f"{detail} (notebook kept at {kept})")

    nb = nbformat.read(staged_nb, as_version=4)
    nb.metadata["flatminima"] = {"inputs_hash": digest, "parameters": parameters, "device": device,
                                 "verdict": record["verdict"]}
    nbformat.write(nb, staged_nb)
    res_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage / "results" / f"{claim}.json", res_path)
    os.replace(staged_nb, nb_path)
    shutil.rmtree(stage, ignore_errors=True)
    (out_dir / "failed" / f"{claim}.ipynb").unlink(missing_ok=True)
    return RunOutcome(claim, "ran", record["verdict"], nb_path, res_path, time.perf_counter() - t0)


def run_claims(claims: list[str] | None = None, *, root: Path, preset: str = "cpu",
               overrides: dict[str, Any] | None = None, out_dir: Path | None = None,
               device: str = "auto", force: bool = False, jobs: int = 1,
               timeout: int | None = None, on_done=None) -> list[RunOutcome]:
    """Run several claims (all by default), ``jobs`` notebooks at a time (separate kernels).

    Overrides must be valid for every selected claim; all are checked before anything runs.
    """
    claims = list(claims or CLAIMS)
    for claim in claims:  # validate everything first: fail before any training
        resolve(claim, preset, overrides)
    # the cores are shared between the notebooks running at once
    workers = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(claims))))

    def one(claim: str) -> RunOutcome:
        outcome = run_claim(claim, root=root, preset=preset, overrides=overrides, out_dir=out_dir,
                            device=device, force=force, timeout=timeout, workers=workers)
        if on_done:
            on_done(outcome)
        return outcome

    if jobs <= 1:
        return [one(c) for c in claims]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, claims))
