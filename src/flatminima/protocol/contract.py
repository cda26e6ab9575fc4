"""The one contract every claim implements, and the verdict it produces.

A claim is a module of :mod:`flatminima.claims` with

* ``Params``: its :class:`~flatminima.protocol.params.ClaimParams` subclass (parameters and presets);
* ``PREREGISTRATION``: the block of :func:`flatminima.stats.power.preregister`, fixed before the verdict
  seeds were run;
* ``run_seed(params, seed, device) -> dict``: one replication, a JSON-able record, pure in ``(params, seed)``;
* ``aggregate(params, records) -> Aggregate``: the verdict, its parts, the headline statistic, the
  record's statistics and the named facts the chapter's prose glues, computed from the per-seed records.

:func:`flatminima.protocol.record.make_record` turns an :class:`Aggregate` into the results record, the
same way for every claim; the chapter notebook only runs, aggregates, writes and glues.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from flatminima.protocol.params import ClaimParams
from flatminima.stats.decision import Verdict, combine


@dataclass(frozen=True)
class Statistic:
    """One number over seeds with its 95% interval, in the form records, pages and ``verify`` read.

    Attributes
    ----------
    label : str
        What it is, in words (may hold ``$...$`` maths).
    value, ci_low, ci_high : float
        The estimate and its 95% interval (for ``scale='log'``: the geometric mean and its interval).
    se : float
        Standard error of the mean (on the log scale when ``scale='log'``).
    n : int
        Seeds with a finite value.
    scale : {"linear", "log"}
        The scale of the per-seed values behind it.
    paper : str
        The paper's number for the same measure, in words ("" when none applies).
    """

    label: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    se: float = math.nan
    n: int = 0
    scale: str = "linear"
    paper: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Statistic:
        """Build from :func:`flatminima.stats.intervals.statistic`'s dict (or a record's)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        """The record's form: ``{label, value, ci_low, ci_high, se, n, scale}`` plus ``paper`` when set."""
        out = {"label": self.label, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
               "se": self.se, "n": self.n, "scale": self.scale}
        if self.paper:
            out["paper"] = self.paper
        return out


@dataclass(frozen=True)
class Part:
    """One pre-registered part of a claim's verdict.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"A: LB sharper"``.
    outcome : Verdict
        Decided by the book's rule (:func:`flatminima.stats.decision.decide`) or a stated contrast.
    reason : str
        Why, in one sentence with the numbers.
    statistic : Statistic or None
        The number that decided it.
    """

    name: str
    outcome: Verdict
    reason: str
    statistic: Statistic | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Verdict(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "outcome": self.outcome.value, "reason": self.reason}
        if self.statistic is not None:
            out["statistic"] = self.statistic.to_dict()
        return out


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class Aggregate:
    """What a claim's ``aggregate`` returns: everything the record and the chapter need from the seeds.

    Attributes
    ----------
    verdict : Verdict
        The claim's verdict; must equal :func:`~flatminima.stats.decision.combine` of the parts' outcomes.
    parts : tuple of Part
        The pre-registered parts, in the order the chapter lists them.
    headline : Statistic
        The primary statistic (what the dashboard shows and ``verify`` compares).
    statistics : Mapping
        The record's ``statistics`` block: JSON-able tables and numbers behind the verdict.
    criterion : str
        The decision rule in words, as registered.
    facts : Mapping
        Named values the chapter's prose glues (setup facts and secondary numbers), stored in the
        record under ``facts`` so the page can be checked against it.
    tables : Mapping
        Data frames for the chapter's figures and tables (not stored in the record).
    notes : str
        Free text stored with the record ("" by default: the parts' reasons).
    """

    verdict: Verdict
    parts: tuple[Part, ...]
    headline: Statistic
    statistics: Mapping[str, Any]
    criterion: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        object.__setattr__(self, "parts", tuple(self.parts))
        for name in ("statistics", "facts", "tables"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.parts and self.verdict != combine(p.outcome for p in self.parts):
            raise ValueError(f"verdict {self.verdict.value!r} is not what the parts give "
                             f"({[p.outcome.value for p in self.parts]})")

    def part(self, prefix: str) -> Part:
        """The part whose name starts with ``prefix`` (e.g. ``"A"``)."""
        for p in self.parts:
            if p.name.startswith(prefix):
                return p
        raise KeyError(f"no part named {prefix!r}...; parts: {[p.name for p in self.parts]}")


@runtime_checkable
class Claim(Protocol):
    """The contract of a claim module (see the module docstring); checked for every registered claim."""

    Params: type[ClaimParams]
    PREREGISTRATION: Mapping[str, Any]
    run_seed: Callable[..., dict]
    aggregate: Callable[..., Aggregate]
