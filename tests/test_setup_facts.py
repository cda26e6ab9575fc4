"""The setup a chapter's prose names (dataset, network, sample counts, seeds, preset) comes from its record.

A static check reads every source notebook's Markdown: in the paragraphs that describe the run, no dataset
is named outside a glue role. A kernel check runs the sharp-minima chapter at two datasets and reads the
prose as the book shows it (glue roles replaced by the glued values): it must name the record's dataset and
no other, and every number it types must be one the record holds.
"""
from __future__ import annotations

import ast
import json
import re

import nbformat
import papermill as pm
import pytest

from flatminima.claims.registry import CLAIMS
from flatminima.data.registry import DATASET_TITLES, DATASETS, DISPLAY_NAMES, dataset_title
from flatminima.nn.models import describe_network

from .conftest import ROOT

SETUP_SECTIONS = ("Why the numbers may differ from the paper",)
"""Headings whose whole section describes this run's setup (up to the next heading)."""
SETUP_PARAGRAPHS = ("Differences from the paper", "Some differences from", "- **Scale.**")
"""Openers of paragraphs (or list items) that describe this run's setup."""
RUN_WORDS = re.compile(r"\bthis (?:run|preset|chapter)\b", re.IGNORECASE)
"""A sentence with these words describes the run wherever it stands."""
PAPER_WORDS = re.compile(r"\bpaper\b|\{cite:|Keskar|Feng|Baldassi|Pittorino|Dinh|Rangamani", re.IGNORECASE)
"""A sentence inside a setup paragraph that names the paper (and not this run) describes the paper: not checked."""
GLUE = re.compile(r"\{glue:(?:text|md)\}`([^`:]+)(?::([^`]*))?`")


def _title_pattern(title: str) -> re.Pattern:
    core = title.removeprefix("a generated ")  # "Gaussian mixture"
    return re.compile(r"(?<![\w-])" + re.escape(core) + r"(?![\w-])", re.IGNORECASE)


TITLES = {title: _title_pattern(title) for title in DATASET_TITLES.values()}


def _blocks(markdown: str):
    """(in a setup section, paragraph) pairs: paragraphs split at blank lines and list items."""
    in_section = False
    for para in re.split(r"\n\s*\n|\n(?=[-*] |\d+\. )", markdown):
        para = para.strip()
        heading = re.match(r"#+\s+(.*)", para)
        if heading:
            in_section = heading.group(1).strip() in SETUP_SECTIONS
            para = para[heading.end():].strip()
        if para:
            yield in_section, para


def setup_sentences(markdown: str) -> list[str]:
    """The sentences of ``markdown`` that describe this run's setup (the scope of both checks)."""
    out = []
    for in_section, para in _blocks(markdown):
        setup_para = in_section or para.startswith(SETUP_PARAGRAPHS)
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z(*{])", para.replace("\n", " ")):
            if RUN_WORDS.search(sentence) or (setup_para and not PAPER_WORDS.search(sentence)):
                out.append(sentence)
    return out


def typed_titles(sentence: str) -> list[str]:
    """Dataset titles typed in ``sentence`` outside glue roles and code spans (``MNIST`` is not ``MNIST-1D``)."""
    text = re.sub(r"`[^`]*`", " ", GLUE.sub(" ", sentence))
    return [t for t, pat in TITLES.items() if pat.search(text)]


def notebook_markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


OLD_SHARP = """## Why the numbers may differ from the paper

This preset trains a small MLP on MNIST-1D {cite:p}`Greydanus2024` with a few thousand training samples,
not the paper's networks on MNIST or CIFAR-10, and measures curvature on a fixed subset of the training
set. Keskar's $\\phi$ is a lower bound from a few L-BFGS-B iterations."""


def test_the_check_flags_a_typed_dataset_that_describes_the_run_and_not_one_that_describes_the_paper():
    assert "MNIST-1D" in [t for s in setup_sentences(OLD_SHARP) for t in typed_titles(s)]
    paper = ("## Why the numbers may differ from the paper\n\nThis run trains {glue:text}`setup_network` on "
             "{glue:text}`setup_dataset`. The paper's networks were trained on MNIST and CIFAR-10.\n\n## Next\n\n"
             "A small MLP on MNIST-1D.")
    assert [t for s in setup_sentences(paper) for t in typed_titles(s)] == []


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_no_dataset_is_typed_in_the_prose_that_describes_the_run(claim):
    nb = nbformat.read(ROOT / "notebooks" / f"{claim}.ipynb", as_version=4)
    bad = [(t, s) for s in setup_sentences(notebook_markdown(nb)) for t in typed_titles(s)]
    assert not bad, f"{claim}: typed dataset names describe the run (glue setup_* facts instead): {bad}"


def test_dataset_title_names_every_dataset_once():
    assert set(DATASET_TITLES) == set(DATASETS)
    assert len(set(DATASET_TITLES.values())) == len(DATASETS)
    assert all(dataset_title(k) == v for k, v in DISPLAY_NAMES.items())
    assert describe_network("mlp", (512,) * 5) == "an MLP with hidden widths 512 x 5"


# ----------------------------------------------------------------------------- rendered prose (kernel)
def glued_values(nb) -> dict[str, object]:
    """The values ``myst_nb.glue`` stored in the executed notebook (outputs with ``scrapbook`` metadata)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            prefix = o["metadata"]["scrapbook"].get("mime_prefix", "")
            data = {k.removeprefix(prefix): v for k, v in o.get("data", {}).items()}
            if "text/markdown" in data:
                out[name] = data["text/markdown"]
                continue
            text = data.get("text/plain", "")
            try:
                out[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                out[name] = text
    return out


def render(markdown: str, values: dict[str, object]) -> str:
    def one(m: re.Match) -> str:
        value, fmt = values[m.group(1)], m.group(2)
        return format(value, fmt) if fmt and isinstance(value, (int, float)) else str(value)

    return GLUE.sub(one, markdown)


def _numbers(text: str) -> set[int]:
    return {int(n.replace(",", "")) for n in re.findall(r"(?<![\w.])\d[\d,]*(?![\w.])", text)}


@pytest.mark.kernel
@pytest.mark.parametrize("dataset", ["digits", "gaussian-mixture"])
def test_the_rendered_setup_prose_names_the_records_dataset_and_only_its_numbers(dataset, tmp_path):
    out = tmp_path / "sharp-minima.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "sharp-minima.ipynb"), str(out), kernel_name="python3",
                        parameters={"preset": "smoke", "dataset": dataset, "results_dir": str(tmp_path),
                                    "workers": 1}, progress_bar=False, cwd=str(tmp_path))
    record = json.loads(next(tmp_path.glob("sharp-minima*.json")).read_text())
    facts = record["facts"]
    assert facts["setup_dataset"] == dataset_title(dataset)
    assert facts["setup_network"] == describe_network("mlp", record["parameters"]["widths"])
    assert facts["setup_seeds"] == len(record["seeds"]) and facts["setup_preset"] == "smoke"
    nb = nbformat.read(out, as_version=4)
    values = glued_values(nb)
    for key, value in facts.items():
        if key.startswith("setup_"):
            assert values[key] == value, key
    sentences = setup_sentences(render(notebook_markdown(nb), values))
    prose = " ".join(sentences)
    assert facts["setup_dataset"] in prose and facts["setup_network"] in prose
    others = {t for s in sentences for t in typed_titles(s)} - {facts["setup_dataset"]}
    assert not others, f"the prose names datasets the run did not use: {others}"
    allowed = set()
    for key, value in facts.items():
        allowed |= _numbers(str(value)) if key.startswith("setup_") or key == "primary_point" else set()
    typed = set()
    for sentence in setup_sentences(notebook_markdown(nb)):  # the source prose: typed numbers only
        plain = re.sub(r"\$[^$]*\$|`[^`]*`|\d+(?:\.\d+)?%", " ", GLUE.sub(" ", sentence))
        for title in DATASET_TITLES.values():
            plain = plain.replace(title, " ")
        typed |= _numbers(plain)
    assert not typed - allowed, f"numbers typed in the setup prose that the record does not hold: {sorted(typed - allowed)}"
