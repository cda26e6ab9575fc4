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
from enum import Enum
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from flatminima.protocol.params import ClaimParams
from flatminima.stats.decision import Decision, Verdict, holm


@dataclass(frozen=True)
class Statistic:
    """One number over seeds with its interval (90% two-sided by default), as records, pages and ``verify`` read.

    Attributes
    ----------
    label : str
        What it is, in words (may hold ``$...$`` maths).
    value, ci_low, ci_high : float
        The estimate and its two-sided ``level`` interval (for ``scale='log'``: the geometric mean and its
        interval).
    se : float
        Standard error of the mean (on the log scale when ``scale='log'``).
    n : int
        Seeds with a finite value.
    scale : {"linear", "log"}
        The scale of the per-seed values behind it.
    paper : str
        The paper's number for the same measure, in words ("" when none applies).
    level : float
        Two-sided coverage of ``[ci_low, ci_high]``: 0.90 by default, whose bounds are the one-sided 95%
        bounds that match the book's one-sided tests at alpha = 0.05.
    """

    label: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    se: float = math.nan
    n: int = 0
    scale: str = "linear"
    paper: str = ""
    level: float = 0.90

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Statistic:
        """Build from :func:`flatminima.stats.intervals.statistic`'s dict (or a record's)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        """The record's form: ``{label, value, ci_low, ci_high, se, n, scale, level}`` plus ``paper`` when set."""
        out = {"label": self.label, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
               "se": self.se, "n": self.n, "scale": self.scale, "level": self.level}
        if self.paper:
            out["paper"] = self.paper
        return out


class Role(str, Enum):
    """What a sub-claim does in the verdict (stated once on the methods page).

    * ``decided``: pre-registered and powered at >= 80% for its smallest effect; enters the verdict,
      with Holm's correction over the claim's decided sub-claims;
    * ``control``: checks the pipeline against what a broken one would give, decided by an equivalence
      or contrast test (never by a failure to reject); a control that is not reproduced makes the
      verdict *inconclusive* (the pipeline cannot be trusted), never *not reproduced*;
    * ``estimate``: reported with its interval, not decided (underpowered, exploratory, or no published
      statement); never enters the verdict.
    """

    DECIDED = "decided"
    CONTROL = "control"
    ESTIMATE = "estimate"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SmallestEffect:
    """The smallest effect of interest of a sub-claim and where its value comes from.

    Attributes
    ----------
    value : float
        On the scale of the sub-claim's primary statistic.
    source : str
        The paper's reported effect for the matching setting (value, table or figure), or, when
        ``published`` is False, "none published" and the reasoning for the value used.
    published : bool
        Whether the value comes from a published effect.
    """

    value: float
    source: str
    published: bool

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "published": self.published}


@dataclass(frozen=True)
class SubClaim:
    """One statement of the paper that the chapter tests.

    Attributes
    ----------
    key : str
        Short key, the start of the matching :class:`Part`'s name (``"A"``).
    statement : str
        The paper's words: a short quote or a close paraphrase.
    where : str
        Where they are: paper, section, table or figure.
    primary : str
        The primary statistic, in words.
    role : Role
        ``decided``, ``control`` or ``estimate``.
    smallest_effect : SmallestEffect or None
        Required for decided sub-claims.
    why_role : str
        Why the role (e.g. "underpowered: 113 seeds needed for 80% power, 16 run").
    """

    key: str
    statement: str
    where: str
    primary: str
    role: Role
    smallest_effect: SmallestEffect | None = None
    why_role: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        if self.role is Role.DECIDED and self.smallest_effect is None:
            raise ValueError(f"decided sub-claim {self.key!r} needs a smallest effect with its source")

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "statement": self.statement, "where": self.where, "primary": self.primary,
                "role": self.role.value, "why_role": self.why_role,
                "smallest_effect": self.smallest_effect.to_dict() if self.smallest_effect else None}


@dataclass(frozen=True)
class Deviation:
    """A change to a claim's pre-registration, preset, seed count, dataset or protocol after verdict seeds ran.

    Attributes
    ----------
    date : str
        ISO date of the change (``YYYY-MM-DD``).
    what : str
        What changed, from what to what.
    why : str
        The reason given at the time.
    seeds_seen : bool
        Whether verdict seeds had been run (and their outcome seen) before the change.
    """

    date: str
    what: str
    why: str
    seeds_seen: bool

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date, "what": self.what, "why": self.why, "seeds_seen": self.seeds_seen}


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
    subclaim : SubClaim or None
        The paper's statement it tests (None: a part of a claim without sub-claims, treated as decided).
    decision : Decision or None
        The test behind the outcome; :func:`decide_family` re-decides decided parts from its p-values.
    """

    name: str
    outcome: Verdict
    reason: str
    statistic: Statistic | None = None
    subclaim: SubClaim | None = None
    decision: Decision | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Verdict(self.outcome))

    @property
    def role(self) -> Role:
        """The sub-claim's role (``decided`` for a part without a sub-claim)."""
        return self.subclaim.role if self.subclaim is not None else Role.DECIDED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "outcome": self.outcome.value, "reason": self.reason,
                               "role": self.role.value}
        if self.statistic is not None:
            out["statistic"] = self.statistic.to_dict()
        if self.subclaim is not None:
            out["subclaim"] = self.subclaim.to_dict()
        if self.decision is not None:
            out["p_effect"] = self.decision.p_effect
            out["p_against"] = min(self.decision.p_equivalence, self.decision.p_reversed)
        return out


def decide_family(parts: tuple[Part, ...] | list[Part], alpha: float = 0.05) -> tuple[Part, ...]:
    """The parts with the decided ones re-decided under Holm's correction (family-wise error ``alpha``).

    A decided part with a :class:`~flatminima.stats.decision.Decision` is *not reproduced* when its test
    against the effect (equivalence within the smallest effect, or a reversed effect: the smaller of the
    two p-values) is rejected by :func:`~flatminima.stats.decision.holm` over the decided parts,
    otherwise *reproduced* when its one-sided test of an effect in the claimed direction is rejected by
    Holm over the same family, and *inconclusive* otherwise: the order of
    :func:`~flatminima.stats.decision.decide`, so a real effect smaller than the smallest effect of
    interest is *not reproduced* in both. Controls and estimates keep their outcomes.

    Parameters
    ----------
    parts : sequence of Part
    alpha : float

    Returns
    -------
    tuple of Part
        Same order; the reason of a part whose outcome changed says so.
    """
    parts = tuple(parts)
    family = [i for i, p in enumerate(parts) if p.role is Role.DECIDED and p.decision is not None]
    if not family:
        return parts
    d = [parts[i].decision for i in family]
    for_ = holm([x.p_effect for x in d], alpha)
    against = holm([min(x.p_equivalence, x.p_reversed) for x in d], alpha)
    out = list(parts)
    for k, i in enumerate(family):
        outcome = (Verdict.NOT_REPRODUCED if against[k] else Verdict.REPRODUCED if for_[k]
                   else Verdict.INCONCLUSIVE)
        p = parts[i]
        if outcome != p.outcome:
            reason = (f"{p.reason}; {outcome.value} after Holm's correction over the {len(family)} decided "
                      f"sub-claims (family-wise alpha {alpha:g})")
            out[i] = Part(p.name, outcome, reason, p.statistic, p.subclaim, p.decision)
    return tuple(out)


def verdict_of(parts: tuple[Part, ...] | list[Part]) -> Verdict:
    """A claim's verdict from its parts: only decided sub-claims decide, controls can only withhold.

    *inconclusive* if a control is not reproduced (the pipeline cannot be trusted to decide the paper's
    statements, either way); otherwise *not reproduced* if a decided part is not reproduced;
    *reproduced* if every decided part is reproduced and every control passed; *inconclusive* otherwise
    (no decided part, an undecided one, or an undecided control). Estimates never count.

    Parameters
    ----------
    parts : sequence of Part
        Outcomes as :func:`decide_family` leaves them.

    Returns
    -------
    Verdict
    """
    decided = [p.outcome for p in parts if p.role is Role.DECIDED]
    controls = [p.outcome for p in parts if p.role is Role.CONTROL]
    if not decided or Verdict.NOT_REPRODUCED in controls:
        return Verdict.INCONCLUSIVE
    if Verdict.NOT_REPRODUCED in decided:
        return Verdict.NOT_REPRODUCED
    if all(o is Verdict.REPRODUCED for o in decided + controls):
        return Verdict.REPRODUCED
    return Verdict.INCONCLUSIVE


def _frozen(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class Aggregate:
    """What a claim's ``aggregate`` returns: everything the record and the chapter need from the seeds.

    Attributes
    ----------
    verdict : Verdict
        The claim's verdict; must equal :func:`verdict_of` of the parts.
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
        if self.parts and self.verdict != verdict_of(self.parts):
            raise ValueError(f"verdict {self.verdict.value!r} is not what the parts give "
                             f"({[(p.role.value, p.outcome.value) for p in self.parts]})")

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
    SUBCLAIMS: tuple[SubClaim, ...]
    DEVIATIONS: tuple[Deviation, ...]
    run_seed: Callable[..., dict]
    aggregate: Callable[..., Aggregate]
