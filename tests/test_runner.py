"""The papermill runner: reuse of unchanged runs, and no partial results from failed or interrupted runs.

A tiny toy claim (registered for the test only) keeps these tests fast.
"""
from __future__ import annotations

import json
import textwrap

import nbformat
import pytest

from flatminima.claims import registry as presets
from flatminima.run import publish
from flatminima.run.execute import run_claim, run_claims
from flatminima.run.publish import find_root, inputs_hash

from .conftest import TOY_RUN_CONTROLS, write_toy_project

TOY_MODULE = '''
from dataclasses import dataclass
from typing import ClassVar
from flatminima.core.errors import ParameterError
from flatminima.protocol.params import ClaimParams, param

DATASET_SIZE = 100

@dataclass(frozen=True)
class Params(ClaimParams):
    CLAIM: ClassVar[str] = "toy"
    PRESETS: ClassVar[dict] = {"smoke": {"value": 1.0}}
    value: float = param(2.0, "a number", low=0.0)
    sleep: float = param(0.0, "seconds to sleep before writing results", low=0.0)
    explode: bool = param(False, "raise after validation")
    num_seeds: int = param(1, "number of seeds", low=1)
    widths: tuple[int, ...] = param((4, 4), "hidden widths", low=1)
    rate: float = param(0.1, "a rate", low=0.0, low_inclusive=False, high=1.0)
    batch_size: int = param(10, "minibatch size (at most the dataset size)", low=1)
    child: bool = param(False, "start a child process (a stand-in for a seed worker) before sleeping")
    bad_record: str = param("", "write this JSON text as the results file instead of a record")

    def validate_data(self) -> None:
        if self.batch_size > DATASET_SIZE:
            raise ParameterError(f"parameter 'batch_size' ({self.batch_size}) exceeds the training set "
                                 f"({DATASET_SIZE} samples)")
'''

TOY_PARAMETERS = textwrap.dedent('''\
    preset: str = "cpu"
    value: float = None
    sleep: float = None
    explode: bool = None
    num_seeds: int = None
    seeds: list = None
    widths: list = None
    rate: float = None
    batch_size: int = None
    child: bool = None
    bad_record: str = None
''') + TOY_RUN_CONTROLS

TOY_BODY = textwrap.dedent('''\
    import os, pathlib, subprocess, sys, time
    import toyclaim
    from flatminima.protocol.contract import Aggregate, Statistic
    from flatminima.protocol.record import make_record, write_results
    params = toyclaim.Params.from_namespace(globals())
    if params.explode:
        raise RuntimeError("the toy claim exploded on purpose")
    if cache_dir:  # a finished seed, as flatminima.protocol.replicates caches it
        pathlib.Path(cache_dir, "toy").mkdir(parents=True, exist_ok=True)
        pathlib.Path(cache_dir, "toy", "seed-0-done.json").write_text("{}")
    if params.child:  # a stand-in for a seed worker: it does not die with its parent by itself
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        pathlib.Path(os.environ["TOY_CHILD_DIR"], str(os.getpid())).write_text(str(proc.pid))
    time.sleep(params.sleep)
    if params.bad_record:
        pathlib.Path(results_dir).mkdir(exist_ok=True)
        pathlib.Path(results_dir, "toy.json").write_text(params.bad_record)
    else:
        agg = Aggregate(verdict="inconclusive", parts=(), headline=Statistic("value", params.value),
                        statistics={"value": params.value}, criterion="none")
        write_results(make_record(params, agg, preregistration=None, deviations=(), runtime_s=0.0, device=device), results_dir)
''')


@pytest.fixture()
def toy_root(tmp_path, monkeypatch):
    return write_toy_project(tmp_path, monkeypatch, claim="toy", module="toyclaim", source=TOY_MODULE,
                             parameters=TOY_PARAMETERS, body=TOY_BODY)


@pytest.mark.kernel
def test_unchanged_inputs_are_reused_and_changed_ones_rerun(toy_root):
    out = toy_root / "out"
    first = run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu")
    assert first.status == "ran" and first.verdict == "inconclusive"
    record = json.loads((out / "results" / "toy.json").read_text())
    assert record["parameters"]["value"] == 1.0 and record["preset"] == "smoke"
    again = run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu")
    assert again.status == "reused"
    changed = run_claim("toy", root=toy_root, preset="smoke", overrides={"value": 3.0}, out_dir=out, device="cpu")
    assert changed.status == "ran"
    assert json.loads((out / "results" / "toy.json").read_text())["parameters"]["value"] == 3.0
    meta = nbformat.read(out / "toy.ipynb", as_version=4).metadata["flatminima"]
    assert meta["parameters"]["value"] == 3.0 and meta["verdict"] == "inconclusive"


@pytest.mark.kernel
def test_failed_run_keeps_the_previous_result_and_the_failed_notebook(toy_root):
    out = toy_root / "out"
    assert run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu").status == "ran"
    before = (out / "results" / "toy.json").read_text()
    failed = run_claim("toy", root=toy_root, preset="smoke", overrides={"explode": True}, out_dir=out, device="cpu")
    assert failed.status == "failed" and "exploded on purpose" in failed.error
    assert (out / "results" / "toy.json").read_text() == before
    assert (out / "failed" / "toy.ipynb").is_file()
    assert not (out / ".staging" / "toy").exists()


@pytest.mark.kernel
def test_interrupted_run_leaves_no_results_json(toy_root):
    out = toy_root / "out"
    outcome = run_claim("toy", root=toy_root, preset="smoke", overrides={"sleep": 30.0}, out_dir=out,
                        device="cpu", timeout=3)
    assert outcome.status == "failed"
    assert "ran longer than the per-cell timeout of 3 s" in outcome.error
    assert not (out / "results" / "toy.json").exists()
    assert not [p for p in out.rglob("*.json") if "seeds" not in p.parts]  # finished seeds stay cached


def test_bad_parameter_fails_before_any_execution(toy_root):
    out = toy_root / "out"
    with pytest.raises(presets.ParameterError, match=r"unknown parameter 'valeu'.*Did you mean 'value'"):
        run_claim("toy", root=toy_root, preset="smoke", overrides={"valeu": 1.0}, out_dir=out)
    assert not out.exists()


def test_inputs_hash_depends_on_parameters_and_notebook(toy_root):
    nb = toy_root / "notebooks" / "toy.ipynb"
    h1 = inputs_hash(nb, {"value": 1.0})
    assert h1 == inputs_hash(nb, {"value": 1.0}) != inputs_hash(nb, {"value": 2.0})
    doc = nbformat.read(nb, as_version=4)
    doc.cells[1].source += "\n# an edit"
    nbformat.write(doc, nb)
    h2 = inputs_hash(nb, {"value": 1.0})
    assert h2 != h1


@pytest.mark.kernel
def test_a_change_to_the_library_source_invalidates_the_run(toy_root, monkeypatch):
    out = toy_root / "out"
    assert run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu").status == "ran"
    monkeypatch.setattr(publish, "claim_source_hash", lambda claim: "edited")
    assert run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu").status == "ran"


def test_find_root_walks_up_and_explains_when_missing(toy_root, tmp_path_factory):
    (toy_root / "notebooks" / "deep").mkdir()
    assert find_root(toy_root / "notebooks" / "deep") == toy_root
    with pytest.raises(FileNotFoundError, match="no flatminima project"):
        find_root(tmp_path_factory.mktemp("empty"))


@pytest.mark.kernel
def test_parallel_runs_each_write_in_their_own_folder(toy_root, monkeypatch):
    """Two claims at once (threads): each kernel must run in its own staging folder."""
    second = toy_root / "notebooks" / "toy2.ipynb"
    nb = nbformat.read(toy_root / "notebooks" / "toy.ipynb", as_version=4)
    params_line = "params = toyclaim.Params.from_namespace(globals())"
    assert params_line in nb.cells[1].source
    nb.cells[1].source = nb.cells[1].source.replace(  # the same toy under the name toy2 (make_record names the claim)
        params_line, 'params = type("Toy2", (toyclaim.Params,), {"CLAIM": "toy2"}).from_namespace(globals())')
    nbformat.write(nb, second)
    monkeypatch.setitem(presets.CLAIMS, "toy2", "toyclaim")
    out = toy_root / "out"
    outcomes = run_claims(["toy", "toy2"], root=toy_root, preset="smoke",
                          overrides={"sleep": 2.0}, out_dir=out, device="cpu", jobs=2)
    assert [o.status for o in outcomes] == ["ran", "ran"], [o.error for o in outcomes]
    for claim in ("toy", "toy2"):
        assert json.loads((out / "results" / f"{claim}.json").read_text())["claim"] == claim
    assert not (out / ".staging").exists() or not any((out / ".staging").iterdir())


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    from flatminima.core.lock import LOCK_NAME, out_lock

    with out_lock(tmp_path / "o"):
        with out_lock(tmp_path / "o"):  # run_claims takes it, then run_claim again
            pass
        info = json.loads((tmp_path / "o" / LOCK_NAME).read_text())
        assert info["pid"] == __import__("os").getpid()
    assert (tmp_path / "o" / LOCK_NAME).read_text() == ""  # released: nobody is named as holder
    with out_lock(tmp_path / "o"):
        pass


def test_empty_tuple_is_accepted_where_the_default_is_empty(toy_root, monkeypatch):
    from flatminima.run.checks import check_params

    params = check_params("toy", "smoke", {"seeds": [3, 4]})
    assert params.seeds == (3, 4)
    with pytest.raises(presets.ParameterError, match="'widths' needs at least one value"):
        check_params("toy", "smoke", {"widths": []})
    cls = presets.params_class("toy")
    monkeypatch.setitem(cls.PRESETS, "smoke", {**cls.PRESETS["smoke"], "widths": ()})
    assert check_params("toy", "smoke", {"widths": []}).widths == ()  # a preset uses (): meaningful


@pytest.mark.kernel
def test_published_chapter_ends_with_its_provenance_and_gets_an_install_cell_only_with_a_repository(toy_root):
    out = toy_root / "out"
    run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu")
    nb = nbformat.read(out / "toy.ipynb", as_version=4)
    assert nb.cells[-1].metadata["flatminima"]["role"] == "provenance"
    assert "cpu" in nb.cells[-1].source
    params_cells = [c for c in nb.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert params_cells and all("hide-input" in c.metadata["tags"] for c in params_cells)
    assert not any((c.metadata.get("flatminima") or {}).get("role") == "install" for c in nb.cells)
    (toy_root / "_config.yml").write_text("repository:\n  url: https://github.com/example/flatminima\n")
    run_claim("toy", root=toy_root, preset="smoke", out_dir=out, device="cpu", force=True)
    nb = nbformat.read(out / "toy.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.metadata["flatminima"]["role"] == "install" and "remove-cell" in first.metadata["tags"]
    assert "git+https://github.com/example/flatminima" in first.source
