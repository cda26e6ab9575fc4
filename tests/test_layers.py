"""The package's layers: each folder imports only from the folders below it, with no import inside a function.

The contract, bottom to top (``landscape`` and ``quant`` are siblings that do not import each other)::

    core < stats < data < nn < curvature < landscape | quant < protocol < claims < pages < run < book < cli < __main__

A module may import from its own folder and from any folder below. Every import statement counts,
wherever it stands, and an import of a package module inside a function is refused outright: a late
import is how a cycle hides. The checker is tested on a small synthetic package too, so it can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flatminima

LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(x.split("|")) for x in (
    "core", "stats", "data", "nn", "curvature", "landscape|quant", "protocol", "claims", "pages", "run", "book",
    "cli", "__main__"))
"""Bottom to top; the names in one entry are independent siblings."""


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package root: __version__ only
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def _imports(path: Path, module: str, package: str) -> list[tuple[str, int, bool]]:
    """``(imported package module, line, inside a function)`` for every import statement of ``path``."""
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else (node.module or ""))
            root = path.parents[len(module.split(".")) - (1 if path.name == "__init__.py" else 2)]
            targets = [base] + [f"{base}.{a.name}" for a in node.names
                                if root.joinpath(*base.split(".")[1:], a.name).is_dir()
                                or root.joinpath(*base.split(".")[1:], a.name + ".py").is_file()]
        else:
            continue
        for t in targets:
            if t == package or t.startswith(package + "."):
                out.append((t, node.lineno, id(node) in in_function))
    return out


def violations(package_dir: Path) -> list[str]:
    """Every import of ``package_dir`` that goes up a layer, crosses between siblings, or hides in a function."""
    package = package_dir.name
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        mine = _layer(module)
        late_lines: set[int] = set()
        for target, line, late in _imports(path, module, package):
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if late:
                if line not in late_lines:
                    problems.append(f"{where}: imports {target} inside a function")
                late_lines.add(line)
                continue
            theirs = _layer(target)
            if mine is None or theirs is None or target.split(".")[1:2] == module.split(".")[1:2]:
                continue
            if theirs > mine or (theirs == mine and target.split(".")[1] != module.split(".")[1]):
                problems.append(f"{where}: {module} (layer {sorted(LAYERS[mine])}) imports {target} "
                                f"(layer {sorted(LAYERS[theirs])})")
    return problems


def test_the_package_keeps_its_layers():
    assert violations(Path(flatminima.__file__).parent) == []


def test_every_folder_of_the_package_is_a_layer():
    pkg = Path(flatminima.__file__).parent
    folders = {p.name for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders <= set().union(*LAYERS), folders - set().union(*LAYERS)


@pytest.mark.parametrize("source, expected", [
    ("from flatminima.run.runner import x\n", "imports flatminima.run.runner"),          # up a layer
    ("from ..quant.quantize import x\n", "imports flatminima.quant.quantize"),          # across siblings
    ("def f():\n    from flatminima.core import io\n", "inside a function"),            # a late import
])
def test_the_checker_finds_an_upward_import_a_sibling_import_and_a_late_import(tmp_path, source, expected):
    pkg = tmp_path / "flatminima"
    for folder in ("core", "landscape", "quant", "run"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "io.py").write_text("x = 1\n")
    (pkg / "quant" / "quantize.py").write_text("x = 1\n")
    (pkg / "run" / "runner.py").write_text("from flatminima.core.io import x\n")  # downward: allowed
    (pkg / "landscape" / "flat.py").write_text(source)
    found = violations(pkg)
    assert len(found) == 1 and expected in found[0], found
