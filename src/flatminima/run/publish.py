"""Publishing a run: where it goes, the hash that decides reuse, the checks of a published pair,
the two-step move into place, and what an executed chapter gains for the book.

A run of claim ``c`` publishes, under ``out_dir``:

* ``results/c.json``: the results record written by the notebook, stamped with the run's
  ``inputs_hash`` and checked against :data:`flatminima.protocol.record.RESULTS_SCHEMA`;
* ``c.ipynb``: the executed notebook (the book's chapter), with ``metadata.flatminima``
  recording the inputs hash, the parameters, the verdict and ``results_sha256``, the SHA-256
  of the results file published with it.

**One unit.** Both files are produced in a staging folder, and moved into place only when the
notebook finished without error: the JSON first, the notebook last (:func:`publish_pair`). The
notebook is the commit point: it names the hash of its JSON, so a pair that does not belong together
(a crash between the two renames, a JSON copied in from another run or edited by hand, a JSON of the
wrong shape) is detected by :func:`check_published` and re-run, never reused; an error between the two
renames puts the previous JSON back.

**Inputs.** The inputs hash (:func:`inputs_hash`) covers the source notebook's cells, the resolved
parameters, the device, the package version and the source of the claim's import closure: change any
of them and the run is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from flatminima import __version__
from flatminima.claims.registry import CLAIMS
from flatminima.core.sources import closure_hash
from flatminima.pages.markdown import add_provenance_cell, colab_install_cell
from flatminima.protocol.record import validate_results

PUBLISHED_BESIDE: tuple[str, ...] = ("paper",)
"""Presets published beside the book's chapters, in ``book/generated/<preset>/``, never in their place."""


def published_dir(root: str | os.PathLike, preset: str) -> Path:
    """Where a run of ``preset`` is published by default.

    The book's chapters live in ``book/generated/`` (the ``cpu`` preset; ``smoke`` in tests); a
    preset of :data:`PUBLISHED_BESIDE` (``paper``) lives in ``book/generated/<preset>/``, so a
    paper-scale run sits beside the chapters and never replaces them.
    """
    base = Path(root) / "book" / "generated"
    return base / preset if preset in PUBLISHED_BESIDE else base


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: the nearest folder above ``start`` holding ``_toc.yml`` and ``notebooks/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(
        f"no flatminima project (a folder with _toc.yml and notebooks/) at or above {here}; "
        "run from a clone of the repository or pass --root")


def notebook_source_hash(path: Path) -> str:
    """SHA-256 over the notebook's cell types and sources (outputs and metadata ignored)."""
    nb = nbformat.read(path, as_version=4)
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(cell.cell_type.encode())
        h.update(cell.source.encode())
        h.update(json.dumps(cell.get("metadata", {}).get("tags", [])).encode())
    return h.hexdigest()


def claim_source_hash(claim: str) -> str:
    """SHA-256 of the source of ``claim``'s module and every package module it imports (its import closure).

    Parameters
    ----------
    claim : str
        A claim slug of :data:`flatminima.claims.registry.CLAIMS`.

    Returns
    -------
    str
        :func:`flatminima.core.sources.closure_hash` of the claim's module.
    """
    return closure_hash(CLAIMS[claim])


def inputs_hash(notebook: Path, parameters: dict[str, Any]) -> str:
    """The hash that decides whether an earlier run can be reused.

    Parameters
    ----------
    notebook : Path
        The source notebook ``notebooks/<claim>.ipynb``; its file name names the claim.
    parameters : dict
        The resolved parameters of the run (and its device).

    Returns
    -------
    str
        SHA-256 (hex) over the notebook's cells, the parameters, the package version and the source of
        the claim module's import closure (:func:`flatminima.core.sources.closure_hash`): the page
        generator, the command line and the sweep runner are not in it.
    """
    h = hashlib.sha256()
    for part in (notebook_source_hash(notebook), json.dumps(parameters, sort_keys=True, default=str),
                 __version__, claim_source_hash(notebook.stem)):
        h.update(part.encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- published pairs
@dataclass(frozen=True)
class Published:
    """What :func:`check_published` found: a reusable pair (``ok``) or why not."""

    ok: bool
    verdict: str | None = None
    reason: str = ""
    suspicious: bool = False  # the pair is inconsistent (not merely missing or out of date)


def check_published(nb_path: Path, res_path: Path, digest: str | None = None, claim: str | None = None) -> Published:
    """Whether ``nb_path`` and ``res_path`` are one published run (with inputs ``digest`` if given).

    A pair is reusable when the notebook's ``metadata.flatminima`` names the SHA-256 of the
    results file next to it, the results file passes the schema, and both carry ``digest``.
    """
    nb_path, res_path = Path(nb_path), Path(res_path)
    if not nb_path.is_file() and not res_path.is_file():
        return Published(False, reason="no published run")
    if not nb_path.is_file():
        return Published(False, reason=f"the results {res_path.name} has no published notebook next to it", suspicious=True)
    if not res_path.is_file():
        return Published(False, reason=f"the notebook {nb_path.name} has no results JSON", suspicious=True)
    try:
        meta = nbformat.read(nb_path, as_version=4).metadata.get("flatminima", {})
    except Exception as exc:  # noqa: BLE001 - any unreadable notebook is simply not reusable
        return Published(False, reason=f"the published notebook cannot be read ({type(exc).__name__})", suspicious=True)
    if not isinstance(meta, dict) or "inputs_hash" not in meta:
        return Published(False, reason="the published notebook has no flatminima record", suspicious=True)
    if digest is not None and meta.get("inputs_hash") != digest:
        return Published(False, reason="inputs changed")
    try:
        data = res_path.read_bytes()
        record = json.loads(data)
        validate_results(record)
    except (OSError, ValueError) as exc:
        return Published(False, reason=f"the results JSON is not a valid record: {exc}", suspicious=True)
    if hashlib.sha256(data).hexdigest() != meta.get("results_sha256"):
        return Published(False, reason="the results JSON is not the one published with the notebook "
                                       "(edited, copied in, or a publication cut short)", suspicious=True)
    if record.get("inputs_hash") != meta.get("inputs_hash") or (claim and record["claim"] != claim):
        return Published(False, reason="the results JSON belongs to another run", suspicious=True)
    return Published(True, verdict=record["verdict"])


def published_state(root: Path, out_dir: Path, claim: str) -> Published:
    """Whether the run of ``claim`` published in ``out_dir`` is still the one its inputs give today.

    The inputs hash is recomputed from the parameters and device the published notebook records
    and today's notebook and package source: ``ok`` means reusable as is; otherwise ``reason``
    says why (``"inputs changed"``: the notebook or the library changed since the run, so it is
    kept and shown as it was, but a re-run could differ).
    """
    nb_path = Path(out_dir) / f"{claim}.ipynb"
    try:
        meta = nbformat.read(nb_path, as_version=4).metadata.get("flatminima", {}) if nb_path.is_file() else {}
    except Exception:  # noqa: BLE001 - check_published says what is wrong with it
        meta = {}
    digest = None
    source = Path(root) / "notebooks" / f"{claim}.ipynb"
    if isinstance(meta, dict) and isinstance(meta.get("parameters"), dict) and source.is_file():
        digest = inputs_hash(source, {**meta["parameters"], "device": meta.get("device", "auto")})
    return check_published(nb_path, Path(out_dir) / "results" / f"{claim}.json", digest, claim)


# ----------------------------------------------------------------------------- publishing
def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def clear_failed(out_dir: Path, claim: str) -> None:
    (out_dir / "failed" / f"{claim}.ipynb").unlink(missing_ok=True)
    _remove_if_empty(out_dir / "failed")


def cleanup_stage(out_dir: Path, stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    _remove_if_empty(out_dir / ".staging")


def publish_pair(staged_json: Path, staged_nb: Path, res_path: Path, nb_path: Path, stage: Path) -> None:
    """Move the JSON, then the notebook (the commit point) into place; undo the JSON on an error."""
    res_path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if res_path.is_file():
        backup = stage / "previous.json"
        shutil.copy2(res_path, backup)
    os.replace(staged_json, res_path)
    try:
        os.replace(staged_nb, nb_path)
    except BaseException:
        if backup is not None:
            os.replace(backup, res_path)
        else:
            res_path.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- the chapter for the book
def repository_url(root: Path) -> str:
    """The book's ``repository.url`` from ``_config.yml`` (empty when unset or unreadable)."""
    try:
        config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str((config.get("repository") or {}).get("url") or "").strip()


def relabel(nb: nbformat.NotebookNode, prefix: str) -> nbformat.NotebookNode:
    """Give every figure label of ``nb`` (``metadata.mystnb.figure.name``) the prefix ``<prefix>-``, and
    every reference to it in Markdown cells, so that the same chapter at two presets builds into one
    book without duplicate labels. Returns ``nb`` (changed in place)."""
    names = []
    for cell in nb.cells:
        fig = ((cell.get("metadata") or {}).get("mystnb") or {}).get("figure")
        if isinstance(fig, dict) and isinstance(fig.get("name"), str) and not fig["name"].startswith(prefix + "-"):
            names.append(fig["name"])
            fig["name"] = f"{prefix}-{fig['name']}"
    if names:
        pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = pattern.sub(lambda m: f"{prefix}-{m.group(1)}", cell.source)
    return nb


def finish_page(nb: nbformat.NotebookNode, record: dict[str, Any], root: Path) -> None:
    """What the executed chapter gains for the book: the provenance box, its parameter cells folded
    (``hide-input``), and (with a repository URL) a hidden first cell that installs the library when
    the notebook is opened in Colab."""
    add_provenance_cell(nb, record)
    if record.get("preset") in PUBLISHED_BESIDE:
        relabel(nb, str(record["preset"]))
    for cell in nb.cells:  # the parameter cells are there for papermill and re-runs; readers get them folded
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
            cell.metadata["tags"] = [*tags, "hide-input"]
    url = repository_url(root)
    if url and not any((c.get("metadata", {}).get("flatminima") or {}).get("role") == "install" for c in nb.cells):
        nb.cells.insert(0, colab_install_cell(url))
