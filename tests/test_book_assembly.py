"""Book assembly without a build: the dashboard page, the execution gate, and the documented commands."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from flatminima.book.pages import check_executed, dashboard_markdown, write_dashboard, write_pages
from flatminima.claims.registry import CLAIMS
from flatminima.pages.markdown import add_provenance_cell, escape_md, provenance_markdown, result_box_markdown
from flatminima.protocol.record import make_record, write_results

from .conftest import ROOT, toy_aggregate, toy_params


def rec(claim, verdict="reproduced", value=2.5, parts=None):
    agg = toy_aggregate(verdict, statistics={"r": value}, criterion=f"criterion of {claim}", parts=parts,
                        headline={"label": "ratio", "value": value, "ci_low": 1.5, "ci_high": 3.5,
                                  "se": 0.2, "n": 3, "scale": "log", "paper": "10-100x"})
    return make_record(toy_params(claim, preset="cpu", seeds=[0, 1, 2]), agg, deviations=(), runtime_s=42.0, device="cpu",
                       preregistration={"primary": "log ratio", "smallest_effect": 0.1, "test": "one-sided t",
                                        "alpha": 0.05, "power": 0.8, "seeds_needed": 3,
                                        "pilot": {"sd": 0.1, "n": 5, "source": "seeds 500-504"}})


def first_edition(claim, verdict="reproduced", value=2.5):
    """A record as the first edition wrote them: no parts, provenance or pre-registration."""
    r = rec(claim, verdict, value)
    for key in ("parts", "provenance", "preregistration"):
        r.pop(key)
    r["headline"] = {"label": "ratio", "value": value, "ci_low": 1.5, "ci_high": 3.5, "paper": "10-100x"}
    return r


PARTS = [{"name": "Part A", "outcome": "reproduced", "reason": "the mismatch falls with precision",
          "statistic": {"label": "cosine gain", "value": 0.26, "ci_low": 0.18, "ci_high": 0.35, "se": 0.04,
                        "n": 10, "scale": "linear"}},
         {"name": "Part B", "outcome": "inconclusive", "reason": "the accuracy gain is within noise",
          "statistic": {"label": "accuracy gain", "value": 1.0, "ci_low": -1.9, "ci_high": 4.0, "se": 1.3,
                        "n": 10, "scale": "linear"}}]


def plain(md: str) -> str:
    """Markdown with its backslash escapes removed: the text a reader sees (markup left in place)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", md)


def render_html(md: str) -> str:
    """MyST Markdown rendered to HTML by MyST's own parser (raw HTML passes through unless escaped)."""
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    parser = create_md_parser(MdParserConfig(enable_extensions={"colon_fence", "dollarmath"}), RendererHTML)
    return parser.render(md)


def table_rows(md):
    body = md.split(":class: dashboard", 1)[1].split("\n:::", 1)[0]
    return body.split("\n* - ")[1:]


def test_dashboard_has_one_row_per_claim_with_numbers_from_the_records():
    md = dashboard_markdown({"sharp-minima": rec("sharp-minima"), "wide-minima": None,
                             "gradient-mismatch": rec("gradient-mismatch", "inconclusive", 0.8, PARTS)})
    rows = [plain(r) for r in table_rows(md)]
    assert len(rows) == 1 + 3  # header row + one per claim
    assert rows[0].startswith("Claim") and "Verdict" in rows[0]  # key column first, verdict next
    assert "ratio: **2.5** [1.5, 3.5]" in rows[1] and "{bdg-success}`reproduced`" in rows[1]
    assert "10-100x" in rows[1]
    assert "{bdg-secondary}`missing`" in rows[2]
    assert "{bdg-warning}`inconclusive`" in rows[3] and "ratio: **0.8**" in rows[3]


def test_dashboard_shows_every_part_with_its_outcome_reason_and_the_deciding_part():
    md = dashboard_markdown({"gradient-mismatch": rec("gradient-mismatch", "inconclusive", 0.8, PARTS)})
    section = plain(md.split("## Why each verdict is what it is", 1)[1])
    a = next(line for line in section.splitlines() if "Part A" in line and line.startswith("- "))
    b = next(line for line in section.splitlines() if "Part B" in line and line.startswith("- "))
    assert "{bdg-success}`reproduced`" in a and "the mismatch falls with precision" in a and "**0.26** [0.18, 0.35]" in a
    assert "{bdg-warning}`inconclusive`" in b and "within noise" in b
    # the verdict's sentence names the part that makes it inconclusive
    assert "Part B is inconclusive: the accuracy gain is within noise." in section
    assert "Part A is" not in section.split("- **Part A**")[0]  # only the deciding part is named
    assert "3 seeds needed, 3 used" in section and "cpu preset, 3 seeds (0-2)" in section


def test_first_edition_records_without_parts_or_provenance_still_render():
    md = plain(dashboard_markdown({"sharp-minima": first_edition("sharp-minima", "not reproduced")}))
    assert "{bdg-danger}`not reproduced`" in md and "Criterion: criterion of sharp-minima" in md
    assert "not recorded" in md  # provenance fields that the record lacks
    box = plain(result_box_markdown(first_edition("sharp-minima")))
    assert "{bdg-success}`reproduced`" in box and "10-100x" in box


INJECTION = '<script>alert(1)</script> **bold** [link](javascript:alert(1)) {raw}`html` `code` $\\href{x}{y}$ \n# h'


def test_everything_from_a_record_is_escaped():
    bad = rec("sharp-minima", "reproduced", parts=[dict(PARTS[0], name=INJECTION, reason=INJECTION,
                                                        statistic=dict(PARTS[0]["statistic"], label=INJECTION))])
    bad["headline"]["paper"] = INJECTION
    bad["headline"]["label"] = INJECTION
    bad["criterion"] = INJECTION
    bad["provenance"]["machine"] = INJECTION
    bad["versions"]["torch"] = INJECTION
    bad["preregistration"]["primary"] = INJECTION
    assert "<script" in render_html(INJECTION)  # the check below would catch unescaped text
    for md in (dashboard_markdown({"sharp-minima": bad}, {"sharp-minima": INJECTION}), provenance_markdown(bad),
               result_box_markdown(bad)):
        page = render_html(md)
        assert "<script" not in page and 'href="javascript' not in page and "<strong>bold" not in page
        assert 'myst role">{raw}' not in page and "<h1>h" not in page  # no role, no heading formed
        if md.startswith("# Claims"):  # (the admonitions' bodies are directive content, parsed by Sphinx)
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown as text, not dropped
        assert not re.search(r"\{math\}`[^`]*href", md)  # unsafe TeX is never handed to MathJax


def test_escaped_text_keeps_safe_inline_maths_and_rejects_unsafe_tex():
    assert escape_md("ratio of $\\lambda_R$ at 0.3") == "ratio of {math}`\\lambda_R` at 0\\.3"
    assert "{math}" not in escape_md("$\\href{javascript:x}{y}$") and "{math}" not in escape_md("$a`b$")
    assert escape_md("a\nb  c") == "a b c"
    assert escape_md("5 * 3 = 15 <b>") == "5 \\* 3 = 15 \\<b\\>"


def test_provenance_cell_is_appended_once_at_the_end_and_replaced_on_rerun():
    nb = new_notebook(cells=[new_markdown_cell("# Chapter"), new_code_cell("1 + 1")])
    first = rec("sharp-minima")
    add_provenance_cell(nb, first)
    second = rec("sharp-minima", value=3.0)
    second["provenance"]["git_commit"] = "abcdef1234567890"
    add_provenance_cell(nb, second)
    marked = [c for c in nb.cells if c.metadata.get("flatminima", {}).get("role") == "provenance"]
    assert len(marked) == 1 and nb.cells[-1] is marked[0] and len(nb.cells) == 3
    src = plain(nb.cells[-1].source)
    assert "`abcdef123456`" in src and "cpu preset, 3 seeds" in src and "torch" in src
    assert ":class: dropdown provenance" in src
    nbformat.validate(nb)


def test_status_page_and_runtime_table_come_from_the_records(tmp_path):
    write_results(rec("variance-flatness", "inconclusive"), tmp_path / "results")
    nb = new_notebook(cells=[new_markdown_cell("# The inverse relation")])
    nb.metadata["papermill"] = {"exception": None}
    nbformat.write(nb, tmp_path / "variance-flatness.ipynb")
    smoke = rec("sharp-minima")
    smoke["preset"], smoke["runtime_s"] = "smoke", 7.0
    write_results(smoke, tmp_path / "smoke" / "results")
    (tmp_path / "failed").mkdir()
    nbformat.write(new_notebook(), tmp_path / "failed" / "wide-minima.ipynb")
    paths = write_pages(tmp_path)
    status = plain((tmp_path / "status.md").read_text())
    rows = status.split("\n* - ")[1:]
    vf = next(r for r in rows if "variance-flatness" in r)
    assert "{bdg-success}`pass`" in vf and "42 s" in vf and "cpu" in vf
    assert "{bdg-danger}`fail`" in next(r for r in rows if "wide-minima" in r)
    assert "{bdg-secondary}`not run`" in next(r for r in rows if "gradient-mismatch" in r)
    runtimes = plain((tmp_path / "runtimes.md").read_text())
    sm = next(r for r in runtimes.split("\n* - ")[1:] if "sharp-minima" in r)
    assert "7 s on" in sm and "not measured" in sm
    assert "(generated/sharp-minima.ipynb)" in sm
    assert len(paths) == 4 and (tmp_path / "verification.md").is_file()


def test_write_dashboard_reads_the_results_folder_and_chapter_titles(tmp_path):
    write_results(rec("variance-flatness", "inconclusive"), tmp_path / "results")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# The inverse relation\n\ntext")]),
                   tmp_path / "variance-flatness.ipynb")
    text = write_dashboard(tmp_path).read_text()
    assert text.count("{bdg-secondary}`missing`") == len(CLAIMS) - 1 and "{bdg-warning}`inconclusive`" in text
    assert "[The inverse relation](variance-flatness.ipynb)" in text


def test_buttons_follow_the_one_repository_setting():
    from types import SimpleNamespace

    from flatminima.book.sphinx_ext import _buttons_follow_repository_url

    off = SimpleNamespace(html_theme_options={"repository_url": "", "use_repository_button": True,
                                              "launch_buttons": {"colab_url": "https://colab.research.google.com"}})
    _buttons_follow_repository_url(None, off)
    assert "launch_buttons" not in off.html_theme_options and not off.html_theme_options["use_repository_button"]
    on = SimpleNamespace(html_theme_options={"repository_url": "https://github.com/a/b",
                                             "launch_buttons": {"colab_url": "https://colab.research.google.com"}})
    _buttons_follow_repository_url(None, on)
    assert on.html_theme_options["use_repository_button"] and on.html_theme_options["launch_buttons"]


def test_config_names_the_repository_once_and_loads_the_teaching_extensions():
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert not cfg["html"]["use_repository_button"]  # turned on by flatminima.book.pages only when the URL is set
    assert "sphinx_exercise" in cfg["sphinx"]["extra_extensions"]
    assert "flatminima.book.sphinx_ext" in cfg["sphinx"]["extra_extensions"]
    assert cfg["sphinx"]["config"]["bibtex_default_style"] == "authoryear"
    bib = (ROOT / "book" / "bibliography.md").read_text()
    assert ":all:" not in bib  # only cited entries


def test_bibliography_style_labels_author_year_without_mangling():
    from pybtex.database import parse_string
    from pybtex.plugin import find_plugin

    from flatminima.book.sphinx_ext import _register_bibliography_style

    _register_bibliography_style()
    db = parse_string(r"""
@misc{a, author = {Bengio, Yoshua and L{\'e}onard, Nicholas and Courville, Aaron}, title = {T}, year = {2013}}
@misc{b, author = {Feng, Yu and Tu, Yuhai}, title = {U}, year = {2021}, eprint = {2001.01678}}
@misc{c, author = {Baldassi, Carlo and Pittorino, F. and Zecchina, R.}, title = {V}, year = {2020}}
@misc{d, author = {Baldassi, Carlo and Malatesta, E. and Negri, M.}, title = {W}, year = {2020}}
""", "bibtex")
    style = find_plugin("pybtex.style.formatting", "authoryear")()
    entries = {e.key: e for e in style.format_entries(db.entries.values())}
    assert entries["a"].label == "Bengio et al. 2013" and entries["b"].label == "Feng and Tu 2021"
    assert {entries["c"].label, entries["d"].label} == {"Baldassi et al. 2020a", "Baldassi et al. 2020b"}
    assert "https://arxiv.org/abs/2001.01678" in entries["b"].text.render_as("html")


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


def test_deviations_are_in_the_record_and_on_the_status_page_escaped(tmp_path):
    from flatminima.pages.markdown import deviations_markdown
    from flatminima.protocol.contract import Deviation

    devs = (Deviation("2026-12-01", "seeds 10 -> 16 <script>alert(1)</script>", "part B sat near its bound", True),
            Deviation("2026-12-02", "data set [x](javascript:y)", "no reason was stated at the time", False))
    agg = toy_aggregate("reproduced", statistics={"r": 1.0}, criterion="c")
    r = make_record(toy_params("sharp-minima", preset="cpu", seeds=[0, 1, 2]), agg, preregistration=None,
                    deviations=devs, runtime_s=1.0, device="cpu")
    assert r["deviations"] == [d.to_dict() for d in devs]
    write_results(r, tmp_path / "results")
    write_results(rec("wide-minima"), tmp_path / "results")
    md = deviations_markdown(r["deviations"])
    assert md.count("\n- ") == 1 and "after verdict seeds were seen" in plain(md)
    assert "before any verdict seed was seen" in plain(md) and deviations_markdown([]) == "none"
    status = (tmp_path / "status.md")
    write_pages(tmp_path)
    text = status.read_text()
    section = text.split("## Deviations from the pre-registrations")[1]
    assert "seeds 10 -> 16" in plain(section) and "part B sat near its bound" in plain(section)
    html = render_html(section)
    assert "<script>" not in html and "&lt;script&gt;" in html and 'href="javascript' not in html
    wm = section.split("wide")[1]
    assert "none" in wm.split("###")[0]  # a record with no deviations says so
