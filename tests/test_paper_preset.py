"""The paper preset beside the book: where its runs are published, when they are reused or stale,
what the dashboard says of them, and that `make book` never runs one.

A toy claim (registered for the test only) with a ``paper`` preset keeps the runs fast.
"""
from __future__ import annotations

import argparse
import json
import textwrap

import nbformat
import pytest
import yaml

from flatminima import cli
from flatminima.book import pages as book
from flatminima.book.build import toc_with_sweeps
from flatminima.claims import registry as presets
from flatminima.core.errors import ParameterError
from flatminima.data.registry import DatasetNotAvailable
from flatminima.pages.markdown import provenance_lines, reduced_text
from flatminima.run import checks, execute, publish

from .conftest import TOY_RUN_CONTROLS, write_toy_project

TOY_MODULE = '''
from dataclasses import dataclass
from typing import ClassVar
from flatminima.protocol.params import ClaimParams, param

@dataclass(frozen=True)
class Params(ClaimParams):
    CLAIM: ClassVar[str] = "ptoy"
    PRESETS: ClassVar[dict] = {"smoke": {"value": 1.0}, "paper": {"value": 5.0, "num_seeds": 10}}
    value: float = param(2.0, "a number", low=0.0)
    num_seeds: int = param(3, "number of seeds", low=1)
    dataset: str = param("digits", "data set", choices=("digits", "mnist", "cifar10"))
'''

TOY_PARAMETERS = textwrap.dedent('''\
    preset: str = "cpu"
    value: float = None
    num_seeds: int = None
    seeds: list = None
    dataset: str = None
''') + TOY_RUN_CONTROLS

TOY_BODY = textwrap.dedent('''\
    import ptoyclaim
    from flatminima.protocol.contract import Aggregate, Part, Statistic
    from flatminima.protocol.record import make_record, write_results
    from flatminima.stats.intervals import statistic
    params = ptoyclaim.Params.from_namespace(globals())
    head = Statistic.from_dict({**statistic("$x$ <b>bold</b>", [params.value, params.value + 1.0, params.value + 2.0]),
                                "paper": "the paper's *number* 1.23"})
    agg = Aggregate(verdict="reproduced", parts=(Part("Part A", "reproduced", "r <script>", head),), headline=head,
                    statistics={"value": params.value}, criterion="none")
    write_results(make_record(params, agg, preregistration=None, deviations=(), runtime_s=61.0, device=device), results_dir)
    print("# A toy chapter")
''')


@pytest.fixture()
def ptoy_root(tmp_path, monkeypatch):
    root = write_toy_project(tmp_path, monkeypatch, claim="ptoy", module="ptoyclaim", source=TOY_MODULE,
                             parameters=TOY_PARAMETERS, body=TOY_BODY)
    nb = nbformat.read(root / "notebooks" / "ptoy.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A toy chapter"))
    nbformat.write(nb, root / "notebooks" / "ptoy.ipynb")
    monkeypatch.setenv("FLATMINIMA_DATA", str(tmp_path / "no-data"))  # no MNIST, no CIFAR-10 here
    return root


def test_published_dir_keeps_the_paper_preset_beside_the_chapters(tmp_path):
    assert publish.published_dir(tmp_path, "cpu") == tmp_path / "book" / "generated"
    assert publish.published_dir(tmp_path, "smoke") == tmp_path / "book" / "generated"
    assert publish.published_dir(tmp_path, "paper") == tmp_path / "book" / "generated" / "paper"


@pytest.mark.kernel
def test_a_paper_run_lands_in_paper_and_is_reused_then_stale_when_the_notebook_changes(ptoy_root):
    gen = ptoy_root / "book" / "generated"
    first = execute.run_claims(["ptoy"], root=ptoy_root, preset="paper", device="cpu")[0]
    assert first.status == "ran" and first.results == gen / "paper" / "results" / "ptoy.json"
    assert not (gen / "ptoy.ipynb").exists(), "a paper run must not replace the book's chapter"
    assert publish.published_state(ptoy_root, gen / "paper", "ptoy").ok
    assert execute.run_claims(["ptoy"], root=ptoy_root, preset="paper", device="cpu")[0].status == "reused"

    run = book.paper_runs(ptoy_root)["ptoy"]
    assert run.record["preset"] == "paper" and run.current and run.reduced == {}

    nb = nbformat.read(ptoy_root / "notebooks" / "ptoy.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A new paragraph."))
    nbformat.write(nb, ptoy_root / "notebooks" / "ptoy.ipynb")
    state = publish.published_state(ptoy_root, gen / "paper", "ptoy")
    assert not state.ok and state.reason == "inputs changed"
    stale = book.paper_runs(ptoy_root)["ptoy"]
    assert stale.record is not None and not stale.current, "a stale run is still shown, marked stale"
    page = "\n".join(book.paper_markdown({"ptoy": stale}))
    assert "{bdg-warning}`stale`" in page and "inputs changed since this run" in page


@pytest.mark.kernel
def test_a_reduced_paper_run_lists_every_change_from_the_preset_and_the_command_to_redo_it(ptoy_root):
    execute.run_claims(["ptoy"], root=ptoy_root, preset="paper", device="cpu",
                       overrides={"seeds": [0, 1, 2], "value": 7.5})
    run = book.paper_runs(ptoy_root)["ptoy"]
    assert run.reduced == {"seeds": ([*range(10)], [0, 1, 2]), "value": (5.0, 7.5)}
    assert reduced_text(run.reduced) == "seeds: 0-2 (3 seeds); value 5 → 7.5"
    assert book.rerun_command("ptoy", run) == "flatminima run ptoy --preset paper -p seeds 0-2 -p value 7.5"
    cell = book.paper_cell(run)
    assert cell.startswith("{bdg-success}`reproduced`") and "[reduced](paper/ptoy.ipynb)" in cell
    page = "\n".join(book.paper_markdown({"ptoy": run}))
    assert "**Reduced from the preset**: seeds\\: 0\\-2 \\(3 seeds\\); value 5 → 7\\.5" in page
    assert "3 seeds, 61 s on cpu" in page.replace("\\", "")
    assert "<b>" not in page and "<script>" not in page and "\\<script\\>" in page  # record text is escaped
    assert "{math}`x`" in page  # maths in a label stays maths
    assert "**Paper**: the paper's \\*number\\* 1\\.23" in page


def test_the_dashboard_has_a_paper_column_saying_why_a_claim_was_not_run(ptoy_root):
    runs = book.paper_runs(ptoy_root)
    assert runs["ptoy"].record is None and runs["ptoy"].not_run == "left to a GPU"
    assert runs["gradient-mismatch"].not_run == "needs CIFAR-10 and a GPU"
    assert runs["sharp-minima"].not_run == "needs MNIST and a GPU"  # no MNIST under this FLATMINIMA_DATA
    md = book.dashboard_markdown({"ptoy": None, "gradient-mismatch": None}, paper=runs)
    assert "  - Ours at the paper preset" in md and ":widths: 24 14 24 20 18" in md
    assert "not run here \\(needs CIFAR\\-10 and a GPU\\)" in md
    assert "## At the paper preset" in md
    assert "`flatminima run gradient-mismatch --preset paper`" in md
    plain = book.dashboard_markdown({"ptoy": None})
    assert "paper preset" not in plain and ":widths: 30 18 30 22" in plain


def test_missing_data_are_refused_before_any_work_with_what_where_and_how(ptoy_root, tmp_path):
    assert checks.missing_data(presets.resolve("gradient-mismatch", "paper")) == [("duo_dataset", "cifar10")]
    assert checks.missing_data(presets.resolve("sharp-minima", "paper")) == [("dataset", "mnist")]
    assert checks.missing_data(presets.resolve("sharp-minima", "cpu")) == []
    with pytest.raises(DatasetNotAvailable, match=r"'dataset' = 'mnist' needs the mnist files under .*no-data.*"
                                                  r"flatminima data fetch mnist"):
        checks.check_params("sharp-minima", "paper")
    with pytest.raises(DatasetNotAvailable, match="on a machine that is online"):
        checks.check_params("ptoy", "paper", {"dataset": "cifar10"})
    out = ptoy_root / "book" / "generated" / "paper"
    assert cli.main(["run", "ptoy", "--preset", "paper", "-p", "dataset", "mnist", "--root", str(ptoy_root)]) == 2
    assert not (out / "ptoy.ipynb").exists()


def test_make_book_never_runs_a_paper_preset_and_book_paper_runs_only_where_the_data_are(ptoy_root, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "_run_batch", lambda claims, **kw: calls.append((kw["preset"], list(claims))) or [])
    monkeypatch.setattr(cli, "build_book", lambda root: root / "_build" / "html" / "index.html")
    args = argparse.Namespace(root=str(ptoy_root), preset="cpu", device="cpu", jobs=1)
    assert cli.cmd_book(args) == 0
    assert [p for p, _ in calls] == ["cpu"]
    calls.clear()
    assert cli.cmd_book(argparse.Namespace(**{**vars(args), "preset": "paper"})) == 0
    assert [p for p, _ in calls] == ["cpu", "paper"]
    paper_claims = calls[1][1]
    assert "ptoy" in paper_claims and "wide-minima" in paper_claims
    assert not {"sharp-minima", "variance-flatness", "gradient-mismatch"} & set(paper_claims)  # no MNIST/CIFAR here


@pytest.mark.kernel
def test_the_toc_gains_a_part_for_the_paper_preset_chapters(ptoy_root):
    (ptoy_root / "_toc.yml").write_text(yaml.safe_dump({"root": "intro", "parts": [
        {"caption": "Claims", "chapters": [{"file": "x"}]}, {"caption": "Back matter", "chapters": [{"file": "y"}]}]}))
    assert toc_with_sweeps(ptoy_root) == ptoy_root / "_toc.yml"
    execute.run_claims(["ptoy"], root=ptoy_root, preset="paper", device="cpu")
    toc = yaml.safe_load(toc_with_sweeps(ptoy_root).read_text())
    assert [p["caption"] for p in toc["parts"]] == ["Claims", "At the paper preset", "Back matter"]
    assert toc["parts"][1]["chapters"] == [{"file": "book/generated/paper/ptoy",
                                            "title": "A toy chapter (paper preset)"}]


@pytest.mark.kernel
def test_status_and_runtime_pages_list_the_paper_runs(ptoy_root):
    execute.run_claims(["ptoy"], root=ptoy_root, preset="paper", device="cpu", overrides={"num_seeds": 2})
    gen = ptoy_root / "book" / "generated"
    status = book.status_markdown(gen)
    assert "[A toy chapter](paper/ptoy.ipynb)" in status and "  - paper" in status
    assert "reduced, 2 seeds" in book.runtimes_markdown(gen)


def test_an_empty_sweep_is_allowed_where_declared_and_refused_elsewhere():
    params = checks.check_params("variance-flatness", "cpu", {"sweep_lrs": [], "sweep_batch_sizes": []})
    from flatminima.claims.variance_flatness import sweep_points

    assert sweep_points(params) == []
    with pytest.raises(ParameterError, match="'window_sweep_epochs'"):
        checks.check_params("variance-flatness", "cpu", {"window_sweep_epochs": []})


def test_deviations_ignore_run_controls_and_compare_lists_with_tuples():
    base = presets.resolve("sharp-minima", "paper").to_dict()
    assert presets.deviations("sharp-minima", "paper", json.loads(json.dumps(base))) == {}
    changed = {**base, "device": "cuda", "workers": 3, "results_dir": "elsewhere", "keskar_eps": [1e-3]}
    assert presets.deviations("sharp-minima", "paper", changed) == {"keskar_eps": ([1e-3, 5e-4], [1e-3])}


def test_the_chapter_provenance_names_every_change_from_the_preset():
    rec = {"claim": "sharp-minima", "preset": "paper", "seeds": [0, 1],
           "parameters": {**presets.resolve("sharp-minima", "paper").to_dict(), "seeds": [0, 1], "max_epochs": 150}}
    text = "\n".join(provenance_lines(rec))
    line = next(x for x in text.splitlines() if x.startswith("- **Changed from the paper preset**: "))
    assert "max\\_epochs 500 → 150" in line and "seeds\\: 0\\-1 \\(2 seeds\\)" in line
    same = {**rec, "parameters": presets.resolve("sharp-minima", "paper").to_dict()}
    assert "Changed from" not in "\n".join(provenance_lines(same))


def test_relabel_prefixes_every_figure_label_and_its_references_only():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("1", metadata={"mystnb": {"figure": {"name": "fig-a", "caption": "A"}}}),
        nbformat.v4.new_code_cell("2", metadata={"mystnb": {"figure": {"name": "fig-ab"}}}),
        nbformat.v4.new_markdown_cell("See {numref}`fig-a` and {numref}`fig-ab`; fig-abc and xfig-a stay.")])
    publish.relabel(nb, "paper")
    assert [c.metadata["mystnb"]["figure"]["name"] for c in nb.cells[:2]] == ["paper-fig-a", "paper-fig-ab"]
    assert nb.cells[2].source == "See {numref}`paper-fig-a` and {numref}`paper-fig-ab`; fig-abc and xfig-a stay."
    publish.relabel(nb, "paper")  # idempotent
    assert nb.cells[0].metadata["mystnb"]["figure"]["name"] == "paper-fig-a"


def test_verify_re_creates_a_reduced_paper_run_with_its_reductions():
    from flatminima.run.verify import rerun_overrides

    params = presets.resolve("variance-flatness", "paper", {"seeds": "0-2", "control_steps": 4000,
                                                              "window_sweep_epochs": [10, 30], "sweep_lrs": []})
    pub = {"claim": "variance-flatness", "seeds": [0, 1, 2], "parameters": json.loads(json.dumps(params.to_dict()))}
    assert rerun_overrides(pub, "paper", None) == {"seeds": [0, 1, 2], "control_steps": 4000,
                                                   "window_sweep_epochs": [10, 30], "sweep_lrs": []}
    disjoint = rerun_overrides(pub, "paper", 1000)
    assert disjoint["seeds"] == [1000, 1001, 1002] and disjoint["control_steps"] == 4000
    again = presets.resolve("variance-flatness", "paper", rerun_overrides(pub, "paper", None))
    assert again.to_dict() == params.to_dict()
