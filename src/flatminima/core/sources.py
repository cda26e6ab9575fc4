"""Which source files a computation depends on: the static import closure of a module, and its hash.

A claim's published run is current while its notebook, its parameters and the source of the modules
its claim imports (directly or through other modules of this package) are unchanged. The closure is
read from the code (every ``import`` and ``from ... import`` of a ``flatminima`` module, at any depth
of the file), not from what happens to be loaded, so it is the same in every process. Editing the
page generator, the command line or the sweep runner therefore leaves every published run current,
while editing, say, ``curvature/hessian.py`` makes exactly the claims that import it stale.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

PACKAGE = "flatminima"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
"""The folder of the ``flatminima`` package."""


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of ``module`` (``flatminima.a.b``) inside ``package_dir``, or None if there is none.

    Parameters
    ----------
    module : str
        A dotted module name starting with ``flatminima``.
    package_dir : Path
        The package's folder (default: this installation's).

    Returns
    -------
    Path or None
        ``a/b.py`` or ``a/b/__init__.py`` under ``package_dir``.
    """
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _external_file(module: str) -> Path | None:
    """The source file of a module outside the package (a toy claim in the tests, a user's own claim)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _imported_modules(module: str, path: Path, package_dir: Path) -> set[str]:
    """The ``flatminima`` modules that ``path`` (the file of ``module``) names in any import statement."""
    is_pkg = path.name == "__init__.py"
    here = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] + ([node.module] if node.module else [])
                target = ".".join(base)
            else:
                target = node.module or ""
            cands = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for cand in cands:
            while cand and module_file(cand, package_dir) is None:
                cand = cand.rpartition(".")[0]
            if cand:
                found.add(cand)
    return found


def import_closure(module: str, package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """Every ``flatminima`` module that ``module`` imports, directly or indirectly, itself included.

    The parent packages of each module (their ``__init__.py``, which Python runs on import) are
    included too. Imports are read statically (:mod:`ast`); a module loaded by name at run time
    (:func:`importlib.import_module`) is not followed.

    Parameters
    ----------
    module : str
        Dotted name, e.g. ``flatminima.claims.sharp_minima``; a module outside the package is followed
        into the package but not into other libraries.
    package_dir : Path
        The package's folder (default: this installation's).

    Returns
    -------
    tuple of str
        The sorted module names of the closure.
    """
    root = module_file(module, package_dir) or _external_file(module)
    if root is None:
        raise ValueError(f"{module!r} is neither a module of the {PACKAGE} package at {package_dir} "
                         "nor an importable Python source file")
    seen: set[str] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run on import
        path = root if mod == module else module_file(mod, package_dir)
        if path is not None:
            todo.extend(_imported_modules(mod, path, package_dir) - seen)
    return tuple(sorted(m for m in seen if m == module or module_file(m, package_dir) is not None))


def source_hash(modules: tuple[str, ...] | list[str], package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 (hex) over the names and bytes of the source files of ``modules``.

    Parameters
    ----------
    modules : sequence of str
        Dotted module names of the package (or importable modules outside it).
    package_dir : Path
        The package's folder.

    Returns
    -------
    str
        64 hex digits; equal for equal file contents under equal module names.
    """
    h = hashlib.sha256()
    for mod in sorted(set(modules)):
        path = module_file(mod, package_dir) or _external_file(mod)
        if path is None:
            raise ValueError(f"{mod!r} has no source file under {package_dir}")
        h.update(mod.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _closure_hash_cached(module: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return source_hash(import_closure(module))


def closure_hash(module: str) -> str:
    """:func:`source_hash` of :func:`import_closure` of ``module``: what a computation in ``module`` depends on.

    Memoised on the size and modification time of every file of the package, so an edited file is
    seen at once while repeated calls (one per seed) cost a directory listing.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``flatminima.claims.wide_minima``.

    Returns
    -------
    str
        64 hex digits.
    """
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(PACKAGE_DIR.rglob("*.py")))
    return _closure_hash_cached(module, stamp)
