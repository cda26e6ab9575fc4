"""Executing claim notebooks with papermill: one claim, a batch in threads, and stopping on a signal.

A run of a claim checks its inputs first (:mod:`flatminima.run.checks`), reuses a published run
whose inputs hash still matches, and otherwise executes the notebook in a staging folder and
publishes it as one unit (:mod:`flatminima.run.publish`). A failed or interrupted run never replaces
a good result; a failed notebook is kept under ``out_dir/failed/`` for inspection until a later good run.

**One run per folder.** :func:`flatminima.core.lock.out_lock` keeps a second process out of a busy
``out_dir``. **Stopping.** SIGINT (Ctrl-C) and SIGTERM kill every running kernel's process group
(the kernel and the seed workers it spawned) within seconds; finished claims and cached seeds
stay, and :func:`run_claims` raises :class:`Interrupted` saying what finished and what was stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from flatminima.claims.registry import CLAIMS
from flatminima.core.device import check_device
from flatminima.core.errors import ParameterError
from flatminima.core.lock import out_lock
from flatminima.protocol.record import read_results, validate_results
from flatminima.run.checks import check_params, check_writable
from flatminima.run.publish import (
    check_published,
    cleanup_stage,
    clear_failed,
    finish_page,
    inputs_hash,
    publish_pair,
    published_dir,
)


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


def stop_requested() -> bool:
    """Whether a stop (SIGINT/SIGTERM during a batch) was requested."""
    return _stop.is_set()


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
        clear_failed(out_dir, claim)
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
        cleanup_stage(out_dir, stage)
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
            cleanup_stage(out_dir, stage)
            return RunOutcome(claim, "stopped", None, None, None, time.perf_counter() - t0, "kernel stopped")
        return failed(_error_detail(exc, timeout))
    if _stop.is_set():
        cleanup_stage(out_dir, stage)
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
        finish_page(nb, record, source.parent.parent)
        nb.metadata["flatminima"] = {"inputs_hash": digest, "parameters": parameters, "device": device,
                                     "verdict": record["verdict"],
                                     "results_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        nbformat.write(nb, staged_nb)
        publish_pair(staged_json, staged_nb, res_path, nb_path, stage)
    except OSError as exc:
        return failed(f"could not publish into {out_dir} ({exc.strerror or exc}); the previous result is unchanged")
    cleanup_stage(out_dir, stage)
    clear_failed(out_dir, claim)
    return RunOutcome(claim, "ran", record["verdict"], nb_path, res_path, time.perf_counter() - t0, "", note)


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
        _stop.clear()
        for name in ("papermill", "nbclient", "traitlets"):
            logging.getLogger(name).addFilter(self._quiet_after_stop)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
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
