"""Book assembly without a build: the dashboard page, the execution gate, and the documented commands."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from flatminima.book import check_executed, dashboard_markdown, write_dashboard
from flatminima.presets import CLAIMS
from flatminima.results import make_record, write_results

from .conftest import ROOT


def rec(claim, verdict="reproduced", value=2.5):
    return make_record(claim=claim, params={"preset": "cpu"}, verdict=verdict, statistics={"r": value},
                       criterion=f"criterion of {claim}", seeds=[0, 1, 2], runtime_s=42.0, device="cpu",
                       headline={"label": "ratio", "value": value, "ci_low": 1.5, "ci_high": 3.5,
                                 "paper": "10-100x"})


def test_dashboard_has_one_row_per_claim_with_numbers_from_the_records():
    md = dashboard_markdown({"sharp-minima": rec("sharp-minima"), "wide-minima": None,
                             "gradient-mismatch": rec("gradient-mismatch", "not reproduced", 0.8)})
    rows = md.split("\n* - ")[1:]
    assert len(rows) == 1 + 3  # header row + one per claim
    assert "ratio: **2.5** [1.5, 3.5]" in rows[1] and "**reproduced**" in rows[1] and "10-100x" in rows[1]
    assert "*missing*" in rows[2]
    assert "**not reproduced**" in rows[3] and "ratio: **0.8**" in rows[3] and "3 seeds, 42 s on cpu" in rows[3]
    assert "criterion of gradient-mismatch" in md


def test_write_dashboard_reads_the_results_folder_and_chapter_titles(tmp_path):
    write_results(rec("variance-flatness", "inconclusive"), tmp_path / "results")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# The inverse relation\n\ntext")]),
                   tmp_path / "variance-flatness.ipynb")
    text = write_dashboard(tmp_path).read_text()
    assert text.count("*missing*") == len(CLAIMS) - 1 and "**inconclusive**" in text
    assert "[The inverse relation](variance-flatness.ipynb)" in text


def test_execution_gate_rejects_missing_and_failed_chapters(tmp_path):
    with pytest.raises(RuntimeError, match="has not been run"):
        check_executed(tmp_path)
    for claim in CLAIMS:
        nb = new_notebook()
        nb.metadata["papermill"] = {"exception": claim == "wide-minima"}
        nbformat.write(nb, tmp_path / f"{claim}.ipynb")
    with pytest.raises(RuntimeError, match="'wide-minima' recorded an exception"):
        check_executed(tmp_path)


def test_readme_commands_exist_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("book", "test"):
        assert f"make {target}\n" in readme
        assert re.search(rf"^{target}:", makefile, re.M)
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_toc_lists_every_claim_chapter():
    toc = (ROOT / "_toc.yml").read_text()
    for claim in CLAIMS:
        assert f"book/generated/{claim}" in toc
