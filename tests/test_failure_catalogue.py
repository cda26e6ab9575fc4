"""The failure catalogue of issue 15: each way a user can break a run, and what must happen.

One test per case (plus cases that already worked, so they keep working). Every test asserts
the exit code, the message, and that nothing published changed (or that what is published is
exactly what its inputs produced). They run the real command line (``flatminima.cli.main``,
in-process or as a subprocess) on the tiny toy claim of ``tests/test_runner.py``; only case 8's
empty-tuple checks use real claims, and those fail before any kernel starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch

from flatminima import cli
from flatminima.claims import registry as presets
from flatminima.run.publish import check_published

from .test_runner import toy_root  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("toy_root")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``flatminima ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = cli.main(list(args))
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def toy_run(capsys, root: Path, *extra: str, out: Path | None = None, claims=("toy",)) -> tuple[int, str, str]:
    return run_cli(capsys, "run", *claims, "--preset", "smoke", "--device", "cpu", "--root", str(root),
                   "--out", str(out or root / "out"), *extra)


def snapshot(folder: Path) -> dict[str, str]:
    """Hash of every published file under ``folder`` (seeds, the lock and failed runs aside)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not {"seeds", "failed"} & set(p.relative_to(folder).parts) and p.name != ".flatminima.lock"}


def consistent(out: Path, claim: str = "toy") -> bool:
    return check_published(out / f"{claim}.ipynb", out / "results" / f"{claim}.json", claim=claim).ok


def add_claim(root: Path, monkeypatch, name: str, body_edit=lambda s: s) -> None:
    """A second toy claim ``name`` (same parameters), its notebook body edited by ``body_edit``."""
    nb = nbformat.read(root / "notebooks" / "toy.ipynb", as_version=4)
    nb.cells[1].source = body_edit(nb.cells[1].source.replace('claim="toy"', f'claim="{name}"')
                                   .replace('"toy.json"', f'"{name}.json"').replace('cache_dir, "toy"', f'cache_dir, "{name}"'))
    nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")
    monkeypatch.setitem(presets.CLAIMS, name, "toyclaim")


# ----------------------------------------------------------------------------- case 1: reuse integrity
@pytest.mark.kernel
def test_case1_hand_edited_verdict_is_rerun_not_reused(toy_root, capsys):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    res = out / "results" / "toy.json"
    rec = json.loads(res.read_text())
    rec["verdict"] = "reproduced"
    res.write_text(json.dumps(rec))
    rc, stdout, _ = toy_run(capsys, toy_root)
    assert rc == 0
    assert "toy: inconclusive (ran" in stdout and "not reused: the results JSON is not the one published" in stdout
    assert json.loads(res.read_text())["verdict"] == "inconclusive" and consistent(out)


@pytest.mark.kernel
def test_case1_json_copied_in_from_another_run_is_rerun(toy_root, capsys):
    out, other = toy_root / "out", toy_root / "other"
    assert toy_run(capsys, toy_root)[0] == 0
    assert toy_run(capsys, toy_root, "-p", "value", "5", out=other)[0] == 0
    (out / "results" / "toy.json").write_bytes((other / "results" / "toy.json").read_bytes())
    rc, stdout, _ = toy_run(capsys, toy_root)
    assert rc == 0 and "(ran" in stdout and "not reused" in stdout
    assert json.loads((out / "results" / "toy.json").read_text())["parameters"]["value"] == 1.0
    assert consistent(out)


@pytest.mark.kernel
def test_case1_failure_between_the_two_renames_restores_the_previous_pair(toy_root, capsys, monkeypatch):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    before = snapshot(out)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("toy.ipynb") and "failed" not in str(dst):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    rc, stdout, _ = toy_run(capsys, toy_root, "-p", "value", "3")
    monkeypatch.setattr(os, "replace", real_replace)
    assert rc == 1 and "could not publish" in stdout and "the previous result is unchanged" in stdout
    assert snapshot(out) == before and consistent(out)
    # and the next run with the old inputs reuses the intact previous pair
    rc, stdout, _ = toy_run(capsys, toy_root)
    assert rc == 0 and "(reused" in stdout


@pytest.mark.kernel
def test_case1_record_carries_the_inputs_hash_named_by_the_notebook(toy_root, capsys):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    meta = nbformat.read(out / "toy.ipynb", as_version=4).metadata["flatminima"]
    data = (out / "results" / "toy.json").read_bytes()
    assert json.loads(data)["inputs_hash"] == meta["inputs_hash"]
    assert hashlib.sha256(data).hexdigest() == meta["results_sha256"]


# ----------------------------------------------------------------------------- case 2: Ctrl-C / SIGTERM
LAUNCHER = textwrap.dedent("""\
    import sys
    sys.path.insert(0, {pkg!r})
    from flatminima.claims import registry as presets
    from flatminima.run import publish
    presets.CLAIMS["toy"] = presets.CLAIMS["toy2"] = "toyclaim"
    publish.claim_source_hash = lambda claim: "pinned"
    from flatminima.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped by its parent) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.kernel
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_case2_signal_stops_all_kernels_keeps_finished_work_and_exits(toy_root, monkeypatch, signum, code):
    add_claim(toy_root, monkeypatch, "toy2", lambda s: s.replace("if params.child:", "if True:")
              .replace("time.sleep(params.sleep)", "time.sleep(120)"))
    out, runtime, children = toy_root / "out", toy_root / "runtime", toy_root / "children"
    runtime.mkdir()
    children.mkdir()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "TOY_CHILD_DIR": str(children),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(cli.__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER.format(pkg=str(toy_root / "pkg")), "run", "toy", "toy2",
                             "--preset", "smoke", "--device", "cpu", "--jobs", "2", "--root", str(toy_root),
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (list(children.iterdir()) and (out / "toy.ipynb").exists()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        assert list(children.iterdir()), "toy2's kernel never started its child"
        kernel_pid = int(next(children.iterdir()).name)
        child_pid = int(next(children.iterdir()).read_text())
        t0 = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, (stdout, stderr)
    print(f"stopped by {signal.Signals(signum).name} in {took:.1f} s")
    assert took < 20, f"stopping took {took:.1f} s"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    name = signal.Signals(signum).name
    assert f"stopped by {name}: finished toy (ran)" in lines[0] and "stopped toy2" in lines[0]
    assert "run the same command again to resume" in lines[0]
    time.sleep(1)
    assert not _alive(kernel_pid) and not _alive(child_pid), "a kernel or its worker survived the stop"
    assert consistent(out, "toy")  # the finished claim is kept
    assert not (out / "toy2.ipynb").exists() and not (out / "results" / "toy2.json").exists()
    assert (out / "seeds" / "toy2" / "seed-0-done.json").is_file()  # finished seeds are kept
    assert not (out / ".staging").exists() and not (out / "failed").exists()
    assert not list(runtime.glob("kernel-*.json")), "kernel connection files left behind"


# ----------------------------------------------------------------------------- case 3: escaping
def test_case3_stored_html_in_a_record_is_escaped_on_the_dashboard():
    """Fails until book.py escapes record fields (issue 14's helper owns book.py)."""
    from flatminima.book.pages import dashboard_markdown

    evil = "<script>alert(1)</script>"
    rec = {"claim": "sharp-minima", "preset": "cpu", "verdict": "inconclusive", "seeds": [0, 1],
           "runtime_s": 1.0, "device": "cpu", "criterion": f"criterion {evil}",
           "headline": {"label": f"label {evil}", "value": 1.0, "ci_low": 0.5, "ci_high": 1.5,
                        "paper": f"paper {evil}"}}
    page = dashboard_markdown({"sharp-minima": rec})
    assert "<script>" not in page and "alert" in page


# ----------------------------------------------------------------------------- case 4: wrong shapes
@pytest.mark.kernel
def test_case4_published_json_of_the_wrong_shape_is_rerun_without_a_traceback(toy_root, capsys):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    for text in ("null", "42", "{}", '"a string"'):
        (out / "results" / "toy.json").write_text(text)
        rc, stdout, stderr = toy_run(capsys, toy_root)
        assert rc == 0 and "Traceback" not in stderr, (text, stderr)
        assert "(ran" in stdout and "not reused: the results JSON is not a valid record" in stdout, text
        assert consistent(out)


@pytest.mark.kernel
def test_case4_a_notebook_writing_a_record_of_the_wrong_types_is_never_published(toy_root, capsys):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    before = snapshot(out)
    rec = json.loads((out / "results" / "toy.json").read_text())
    rec["runtime_s"] = "slow"
    rc, stdout, _ = toy_run(capsys, toy_root, "-p", "bad_record", json.dumps(json.dumps(rec)))
    assert rc == 1 and "not published" in stdout and "runtime_s: 'slow' is not of type 'number'" in stdout
    assert snapshot(out) == before


def test_case4_reading_a_record_with_a_string_runtime_says_which_field(tmp_path):
    from flatminima.protocol.record import read_results

    path = tmp_path / "x.json"
    path.write_text(json.dumps({"claim": "toy", "preset": "cpu", "parameters": {}, "verdict": "inconclusive",
                                "statistics": {}, "criterion": "", "seeds": [0], "runtime_s": "12",
                                "versions": {}, "device": "cpu"}))
    with pytest.raises(ValueError, match=r"x.json: .*at runtime_s: '12' is not of type 'number'"):
        read_results(path)


# ----------------------------------------------------------------------------- case 5: lock
def test_case5_second_run_into_a_busy_folder_exits_at_once_naming_the_holder(toy_root, capsys):
    out = toy_root / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from flatminima.core.lock import out_lock\n"
         f"with out_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        rc, stdout, stderr = toy_run(capsys, toy_root)
        assert time.monotonic() - t0 < 10
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and f"another flatminima run is writing to {out.resolve()} (pid {holder.pid}" in stderr
    assert not (out / "toy.ipynb").exists() and not (out / ".staging").exists()


# ----------------------------------------------------------------------------- case 6: sharp-minima KeyError
@pytest.mark.kernel
@pytest.mark.notebooks
def test_case6_sharp_minima_with_no_threshold_reached_is_inconclusive(capsys, tmp_path, project_root):
    rc, stdout, stderr = run_cli(capsys, "run", "sharp-minima", "--preset", "smoke", "-p", "lr", "9",
                                 "--device", "cpu", "--root", str(project_root), "--out", str(tmp_path / "o"))
    assert rc == 0 and "sharp-minima: inconclusive" in stdout, stdout + stderr


# ----------------------------------------------------------------------------- case 7: OS errors
def test_case7_out_is_a_file(toy_root, capsys):
    target = toy_root / "a-file"
    target.write_text("keep me")
    rc, _, stderr = toy_run(capsys, toy_root, out=target)
    assert rc == 2 and "exists but is not a folder" in stderr and "Traceback" not in stderr
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("where, message", [("/sys/flatminima-out", "cannot create the output folder"),
                                            ("/sys/kernel", "cannot write to /sys/kernel")])
def test_case7_read_only_out_is_refused_before_any_work(toy_root, capsys, where, message):
    if os.access("/sys", os.W_OK) and Path("/sys/flatminima-out").exists():
        pytest.skip("/sys is writable here")
    rc, _, stderr = toy_run(capsys, toy_root, out=Path(where))
    assert rc == 2 and message in stderr and "Traceback" not in stderr


def test_case7_unwritable_results_folder_is_found_before_the_run(toy_root, capsys):
    out = toy_root / "out"
    out.mkdir()
    (out / "results").write_text("not a folder")
    t0 = time.monotonic()
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "sleep", "60")
    assert rc == 2 and f"{out / 'results'} exists but is not a folder" in stderr
    assert time.monotonic() - t0 < 10 and not (out / "failed").exists() and not (out / ".staging").exists()


# ----------------------------------------------------------------------------- case 8: validated before any work
def _no_kernel(out: Path) -> bool:
    return not (out / ".staging").exists() and not (out / "failed").exists() and not (out / "toy.ipynb").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_case8_cuda_without_a_gpu(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "--device", "cuda")
    assert rc == 2 and "torch sees no CUDA GPU" in stderr and _no_kernel(toy_root / "out")


def test_case8_unknown_device(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "--device", "tpu")
    assert rc == 2 and "device must be one of auto, cpu, cuda, cuda:N; got 'tpu'" in stderr
    assert not (toy_root / "out").exists()


def test_case8_empty_tuple(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "widths", "[]")
    assert rc == 2 and "parameter 'widths' needs at least one value, got []" in stderr
    assert not (toy_root / "out").exists()


@pytest.mark.parametrize("name", ["widths", "keskar_eps"])
def test_case8_empty_tuple_in_a_real_claim(capsys, tmp_path, project_root, name):
    rc, _, stderr = run_cli(capsys, "run", "sharp-minima", "--preset", "smoke", "-p", name, "[]",
                            "--root", str(project_root), "--out", str(tmp_path / "o"))
    assert rc == 2 and f"parameter '{name}' needs at least one value" in stderr
    assert not (tmp_path / "o").exists()


def test_case8_dataset_dependent_bound_through_validate_data(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "batch_size", "1000")
    assert rc == 2 and "parameter 'batch_size' (1000) exceeds the training set (100 samples)" in stderr
    assert not (toy_root / "out").exists()


@pytest.mark.parametrize("flag", ["--jobs", "--timeout"])
def test_case8_zero_jobs_or_timeout(toy_root, capsys, flag):
    rc, _, stderr = toy_run(capsys, toy_root, flag, "0")
    assert rc == 2 and "must be a positive int (1 or more), got 0" in stderr
    assert not (toy_root / "out").exists()


# ----------------------------------------------------------------------------- case 9: messages
@pytest.mark.kernel
def test_case9_cell_timeout_is_reported_in_words(toy_root, capsys):
    rc, stdout, _ = toy_run(capsys, toy_root, "-p", "sleep", "60", "--timeout", "2")
    assert rc == 1 and "a cell ran longer than the per-cell timeout of 2 s" in stdout
    assert "-----" not in stdout and not (toy_root / "out" / "results" / "toy.json").exists()


def test_case9_malformed_yaml_is_an_error_not_a_string(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "widths", "[32, 32")
    assert rc == 2 and "-p widths '[32, 32' is not a valid YAML value" in stderr
    assert not (toy_root / "out").exists()


def test_case9_exclusive_bound_is_printed_as_exclusive(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "rate", "0")
    assert rc == 2 and "parameter 'rate' must be > 0.0 and <= 1.0, got 0.0" in stderr


def test_case9_allowed_parameters_lists_only_what_p_accepts(toy_root, capsys):
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "valeu", "1")
    assert rc == 2 and "Did you mean 'value'?" in stderr
    allowed = stderr.split("Allowed parameters: ")[1].strip().split(", ")
    assert "value" in allowed and "device" in allowed
    assert not {"preset", "results_dir", "cache_dir", "workers", "show_progress"} & set(allowed)


def test_case9_list_says_a_scalar_becomes_a_one_tuple(capsys):
    rc, stdout, _ = run_cli(capsys, "list", "toy")
    assert rc == 0 and "a single value, -p NAME 32, becomes the 1-tuple (32,)" in stdout


# ----------------------------------------------------------------------------- case 10: leftovers
@pytest.mark.kernel
def test_case10_failed_notebook_is_removed_by_a_later_good_run_and_no_empty_staging(toy_root, capsys):
    out = toy_root / "out"
    assert toy_run(capsys, toy_root)[0] == 0
    rc, stdout, _ = toy_run(capsys, toy_root, "-p", "explode", "true")
    assert rc == 1 and "exploded on purpose" in stdout and (out / "failed" / "toy.ipynb").is_file()
    rc, stdout, _ = toy_run(capsys, toy_root)  # the good inputs again: reused, and the failure is cleared
    assert rc == 0 and "(reused" in stdout
    assert not (out / "failed").exists() and not (out / ".staging").exists()


# ----------------------------------------------------------------------------- what already worked
def test_works_bad_names_and_values_exit_2_before_any_work(toy_root, capsys):
    for args, message in ((("-p", "value", "-1"), "parameter 'value' must be >= 0.0"),
                          (("-p", "explode", "maybe"), "must be a bool")):
        rc, _, stderr = toy_run(capsys, toy_root, *args)
        assert rc == 2 and message in stderr
    rc, _, stderr = run_cli(capsys, "run", "no-such-claim", "--root", str(toy_root))
    assert rc == 2 and "unknown claim 'no-such-claim'" in stderr
    assert not (toy_root / "out").exists()


def test_works_parameter_values_are_data_not_code(toy_root, capsys):
    marker = toy_root / "pwned"
    rc, _, stderr = toy_run(capsys, toy_root, "-p", "value", f"__import__('os').system('touch {marker}')")
    assert rc == 2 and "must be a float" in stderr and not marker.exists()
