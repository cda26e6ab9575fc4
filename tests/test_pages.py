"""Notebook page helpers: styled tables, figure set-up, result boxes, and the Colab install cell."""
from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from flatminima.pages import notebook as pages
from flatminima.pages.markdown import colab_install_cell


def test_table_hides_the_index_puts_the_key_first_and_rounds():
    df = pd.DataFrame({"value": [4.354321, 4.171], "claim": ["a", "<b>"], "n": [3, 10]})
    html = pages.table(df, key="claim", precision=2, units={"value": "s"}).to_html()
    header = html[html.index("<thead"):html.index("</thead>")]
    assert header.index("claim") < header.index("value (s)") < header.index(">n<")
    assert "4.35" in html and "4.354321" not in html and "4.17" in html
    assert "&lt;b&gt;" in html and "<b>" not in html  # cell text is escaped
    assert 'class="fm-table"' in html
    assert "row_heading" not in html  # no index column


def test_table_refuses_an_unknown_key_column_with_the_columns_it_has():
    with pytest.raises(ValueError, match=r"key column 'x' not in the table's columns \['a'\]"):
        pages.table(pd.DataFrame({"a": [1]}), key="x")


def test_figure_setup_sizes_figures_for_the_column_and_refuses_wider_ones():
    old = dict(matplotlib.rcParams)
    try:
        pages.figure_setup()
        w, h = matplotlib.rcParams["figure.figsize"]
        assert w == pages.COLUMN_WIDTH_IN and 0 < h < w
        assert matplotlib.rcParams["savefig.dpi"] >= 2 * matplotlib.rcParams["figure.dpi"]
        with pytest.raises(ValueError, match="at most the column width"):
            pages.figure_setup(width=9)
    finally:
        matplotlib.rcParams.update(old)


def test_result_box_shows_verdict_number_paper_and_why():
    record = {"verdict": "inconclusive",
              "headline": {"label": "ratio", "value": 2.43, "ci_low": 1.04, "ci_high": 5.68, "n": 10,
                           "paper": "sharper"},
              "parts": [{"name": "Part A", "outcome": "reproduced", "reason": "fine"},
                        {"name": "Part B", "outcome": "inconclusive", "reason": "within noise"}]}
    md = pages.result_box(record).data
    assert md.startswith(":::{admonition} Result") and "{bdg-warning}`inconclusive`" in md
    assert "**2\\.43** \\[1\\.04, 5\\.68\\]" in md and "10 seeds" in md and "sharper" in md
    assert "Part B is inconclusive\\: within noise" in md and "Part A is" not in md
    assert pages.badge("reproduced").data == "{bdg-success}`reproduced`"


def test_colab_install_cell_is_hidden_in_the_book_and_only_installs_in_colab():
    cell = colab_install_cell("https://github.com/someone/flatminima")
    assert cell.cell_type == "code" and "remove-cell" in cell.metadata["tags"]
    assert "google.colab" in cell.source and "git+https://github.com/someone/flatminima" in cell.source
    with pytest.raises(ValueError, match="https URL"):
        colab_install_cell("")


@pytest.mark.parametrize("claim", ["sharp-minima", "variance-flatness", "wide-minima", "gradient-mismatch"])
def test_every_name_a_chapter_glues_is_in_its_committed_record(claim):
    """Each ``{glue:...}`` name in a chapter's Markdown is something ``record_glue`` makes from the published record.

    The committed record is the independent side: a name the prose uses but the record cannot supply
    would render as an error on the page (or, worse, be glued by hand in a code cell).
    """
    import json
    import re
    from pathlib import Path

    from flatminima.pages.notebook import record_glue

    root = Path(__file__).resolve().parents[1]
    nb = json.loads((root / "notebooks" / f"{claim}.ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    names = set(re.findall(r"\{glue:(?:text|md)\}`(\w+)", prose)) | set(re.findall(r"```\{glue:md\}\s+(\w+)", prose))
    record = json.loads((root / "book" / "generated" / "results" / f"{claim}.json").read_text())
    assert names, "the chapter glues nothing"
    assert names <= set(record_glue(record)), names - set(record_glue(record))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "glue_record(record)" in code and "glue(" not in code.replace("glue_record(", "")
