"""The inputs hash by dependency: a claim's import closure, and which edits make its published run stale.

A published run is current while the source of its claim's static import closure is unchanged
(:mod:`flatminima.core.sources`), so editing the page generator or the command line leaves every run
current, and editing ``curvature/hessian.py`` makes only the claims that import it stale.
"""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from flatminima.claims.registry import CLAIMS
from flatminima.core import sources
from flatminima.core.sources import closure_hash, import_closure, source_hash
from flatminima.run import publish

SHARP = "flatminima.claims.sharp_minima"
MISMATCH = "flatminima.claims.gradient_mismatch"
HESSIAN = "flatminima.curvature.hessian"


def test_sharp_minima_imports_the_hessian_and_not_the_book_the_cli_or_the_sweep_runner():
    closure = set(import_closure(SHARP))
    assert {SHARP, HESSIAN, "flatminima", "flatminima.claims", "flatminima.curvature"} <= closure
    assert not closure & {"flatminima.book.pages", "flatminima.cli", "flatminima.run.sweep",
                          "flatminima.run.execute", "flatminima.claims.registry"}


def test_gradient_mismatch_does_not_import_the_hessian():
    closure = set(import_closure(MISMATCH))
    assert MISMATCH in closure and "flatminima.quant.quantize" in closure
    assert HESSIAN not in closure
    assert not closure & {"flatminima.book.pages", "flatminima.cli", "flatminima.run.sweep"}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_the_runner_hashes_the_closure_of_the_claim_module(claim):
    module = CLAIMS[claim]
    assert closure_hash(module) == source_hash(import_closure(module))
    assert publish.claim_source_hash(claim) == closure_hash(module)


@pytest.fixture()
def package_copy(tmp_path) -> Path:
    """A copy of this installation's ``flatminima`` source folder."""
    dest = tmp_path / "flatminima"
    shutil.copytree(sources.PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def hashes(package_dir: Path) -> dict[str, str]:
    return {claim: source_hash(import_closure(module, package_dir=package_dir), package_dir=package_dir)
            for claim, module in CLAIMS.items()}


def touch(path: Path) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n# an edit that changes the bytes of the file\n")


def test_editing_the_page_generator_or_the_cli_leaves_every_claim_current(package_copy):
    before = hashes(package_copy)
    assert len(set(before.values())) == len(CLAIMS)  # one hash per claim
    assert before == {c: closure_hash(m) for c, m in CLAIMS.items()}  # the copy hashes as the original
    touch(package_copy / "book" / "pages.py")
    touch(package_copy / "cli.py")
    touch(package_copy / "run" / "sweep.py")
    assert hashes(package_copy) == before


def test_editing_the_hessian_makes_exactly_the_claims_that_import_it_stale(package_copy):
    before = hashes(package_copy)
    touch(package_copy / "curvature" / "hessian.py")
    after = hashes(package_copy)
    assert after["sharp-minima"] != before["sharp-minima"]
    assert after["gradient-mismatch"] == before["gradient-mismatch"]
    for claim, module in CLAIMS.items():
        assert (after[claim] != before[claim]) == (HESSIAN in import_closure(module, package_dir=package_copy))


def test_editing_the_claim_module_itself_makes_only_that_claim_stale(package_copy):
    before = hashes(package_copy)
    touch(package_copy / "claims" / "gradient_mismatch.py")
    after = hashes(package_copy)
    assert [c for c in CLAIMS if after[c] != before[c]] == ["gradient-mismatch"]


SYNTHETIC = {
    "__init__.py": "",
    "a/__init__.py": "from flatminima.h import X  # a parent package's __init__ runs on import\n",
    "a/b.py": textwrap.dedent('''\
        import numpy as np
        from . import c
        from ..d import name_that_is_not_a_module

        def late():
            from flatminima.e.f import g  # an import inside a function is still a dependency
            return g

        TEXT = "import flatminima.unused"  # a string, not an import
    '''),
    "a/c.py": "from .. import k\n",
    "a/sibling.py": "",
    "d.py": "name_that_is_not_a_module = 1\n",
    "e/__init__.py": "from . import g\n",
    "e/f.py": "g = 1\n",
    "e/g.py": "",
    "h.py": "X = 1\n",
    "k.py": "import os\n",
    "unused.py": "import flatminima.d\n",
}


@pytest.fixture()
def synthetic(tmp_path) -> Path:
    pkg = tmp_path / "flatminima"
    for rel, text in SYNTHETIC.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_import_closure_follows_relative_late_and_parent_package_imports(synthetic):
    expected = {"flatminima", "flatminima.a", "flatminima.a.b",
                "flatminima.a.c",  # from . import c
                "flatminima.k",  # from .. import k, in a.c
                "flatminima.d",  # from ..d import <a name>
                "flatminima.e", "flatminima.e.f",  # inside a function, with its parent package
                "flatminima.e.g",  # from . import g, in the parent package e/__init__.py
                "flatminima.h"}  # from the parent package a/__init__.py
    assert set(import_closure("flatminima.a.b", package_dir=synthetic)) == expected
    assert set(import_closure("flatminima.e", package_dir=synthetic)) == {"flatminima", "flatminima.e",
                                                                           "flatminima.e.g"}
    assert set(import_closure("flatminima.unused", package_dir=synthetic)) == {"flatminima", "flatminima.unused",
                                                                                "flatminima.d"}


def test_the_synthetic_hash_follows_the_closure(synthetic):
    def h():
        return source_hash(import_closure("flatminima.a.b", package_dir=synthetic), package_dir=synthetic)

    before = h()
    touch(synthetic / "a" / "sibling.py")
    touch(synthetic / "unused.py")
    assert h() == before
    touch(synthetic / "e" / "g.py")
    assert h() != before


def test_a_module_that_is_not_there_is_an_error(synthetic):
    with pytest.raises(ValueError, match="neither a module"):
        import_closure("flatminima.nothing", package_dir=synthetic)
