"""The registry of claims and their presets.

Each claim lives in ``flatminima.claims.<module>`` and exposes a :class:`~flatminima.params.ClaimParams`
subclass named ``Params`` whose ``PRESETS`` map ``smoke``/``cpu``/``paper`` to parameter values.
This module is the one place that knows which claims exist.
"""
from __future__ import annotations

import importlib
from typing import Any

from .params import PRESET_NAMES, ClaimParams, ParameterError

CLAIMS: dict[str, str] = {
    "sharp-minima": "flatminima.claims.sharp_minima",
    "variance-flatness": "flatminima.claims.variance_flatness",
    "wide-minima": "flatminima.claims.wide_minima",
    "gradient-mismatch": "flatminima.claims.gradient_mismatch",
}
"""Claim slug -> module; the slug names the notebook (``notebooks/<slug>.ipynb``) and results JSON."""

__all__ = ["CLAIMS", "PRESET_NAMES", "claim_module", "params_class", "resolve"]


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
