"""The registry of claims and their presets.

Each claim lives in ``flatminima.claims.<module>`` and exposes a :class:`~flatminima.protocol.params.ClaimParams`
subclass named ``Params`` whose ``PRESETS`` map ``smoke``/``cpu``/``paper`` to parameter values.
This module is the one place that knows which claims exist.
"""
from __future__ import annotations

import importlib
from typing import Any

from flatminima.core.errors import ParameterError
from flatminima.protocol.params import PRESET_NAMES, RUN_CONTROLS, ClaimParams

CLAIMS: dict[str, str] = {
    "sharp-minima": "flatminima.claims.sharp_minima",
    "variance-flatness": "flatminima.claims.variance_flatness",
    "wide-minima": "flatminima.claims.wide_minima",
    "gradient-mismatch": "flatminima.claims.gradient_mismatch",
}
"""Claim slug -> module; the slug names the notebook (``notebooks/<slug>.ipynb``) and results JSON."""
CLAIM_TITLES: dict[str, str] = {
    "sharp-minima": "Large-batch SGD finds sharper minima",
    "variance-flatness": "Inverse variance-flatness relation of SGD",
    "wide-minima": "Bayes-optimal classifiers sit in wide flat minima",
    "gradient-mismatch": "Precision beats surrogates against gradient mismatch",
}
"""Claim slug -> the chapter's title on the dashboard."""

__all__ = ["CLAIMS", "PRESET_NAMES", "claim_module", "deviations", "params_class", "resolve"]


def _check_claim(claim: str) -> None:
    if claim not in CLAIMS:
        raise ParameterError(f"unknown claim {claim!r}; allowed claims: {', '.join(CLAIMS)}")


def claim_module(claim: str):
    """Import and return the module implementing ``claim``."""
    _check_claim(claim)
    return importlib.import_module(CLAIMS[claim])


def params_class(claim: str) -> type[ClaimParams]:
    """The validated parameter dataclass of ``claim``."""
    return claim_module(claim).Params


def resolve(claim: str, preset: str = "cpu", overrides: dict[str, Any] | None = None) -> ClaimParams:
    """Parameters of ``claim`` at ``preset`` with ``overrides`` applied (validated)."""
    return params_class(claim).from_preset(preset, **(overrides or {}))


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON would carry them: tuples and lists alike."""
    norm = (lambda v: list(v) if isinstance(v, (tuple, list)) else v)
    return norm(a) == norm(b)


def deviations(claim: str, preset: str, parameters: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (preset's value, value used)}`` for every parameter of a run that differs from ``preset``.

    ``parameters`` is a record's ``parameters`` (:meth:`~flatminima.protocol.params.ClaimParams.to_dict`).
    Run controls (preset, device, progress, folders, workers) are not protocol and are ignored; so is
    ``num_seeds`` when the seeds themselves are listed. An empty result means the run is the preset.
    """
    base = resolve(claim, preset).to_dict()
    out = {k: (base[k], v) for k, v in parameters.items()
           if k in base and k not in RUN_CONTROLS and k != "preset" and not _same(base[k], v)}
    if "seeds" in out:
        out.pop("num_seeds", None)
    return out
