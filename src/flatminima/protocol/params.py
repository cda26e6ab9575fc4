"""Typed, validated parameters for the claim notebooks.

Every claim declares one frozen dataclass derived from :class:`ClaimParams`. Each field is
declared with :func:`param`, which records its help text and the allowed values or range.
Construction validates every field, so a notebook that builds its parameters in the cell
right after the papermill ``parameters`` cell fails *before any training* with a message
naming the parameter and what it accepts.

Presets (``smoke``, ``cpu``, ``paper``) are dictionaries of field values kept on the class
(``PRESETS``); :meth:`ClaimParams.from_preset` starts from a preset and applies overrides
parameter by parameter, rejecting names the claim does not know.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import yaml

from flatminima.core.errors import ParameterError

PRESET_NAMES: tuple[str, ...] = ("smoke", "cpu", "paper")
"""The three scales every claim supports: tests, the book's default, the original scale."""

RUN_CONTROLS: dict[str, str] = {
    "preset": "smoke | cpu | paper: the scale of the run (each parameter left at None takes the preset's value)",
    "device": "auto | cpu | cuda | cuda:N: where tensors live (auto: CUDA when present)",
    "show_progress": "draw tqdm progress bars (off in the book and in papermill logs)",
    "results_dir": "folder for the results JSON of this claim",
    "cache_dir": "folder of the per-seed cache (default: the seeds folder inside results_dir)",
    "workers": "processes that run seeds at once on CPU (default: one per core); changes the wall time, not the numbers",
}
"""Notebook parameters that steer the run but do not change what is computed."""




MAX_SEEDS = 10_000
SEEDS_HELP = ("seeds of the replications, a list [100, 101, 102] or an inclusive range 100-119 "
              "(default: 0 to num_seeds-1); each seed fixes its initial point, data order, data subset "
              "and sampled directions")


def parse_value(text: str, name: str = "VALUE", *, option: str = "-p") -> Any:
    """One parameter value written as YAML: ``64`` -> int, ``0.1`` -> float, ``[64, 64]`` -> list, ``mnist`` -> str.

    The one parser of values typed on the command line (``-p NAME VALUE``, ``--grid NAME=V1,V2``).
    Text that is not valid YAML (``[32, 32``) raises :class:`~flatminima.core.errors.ParameterError`
    naming ``option`` and ``name``; it is never silently kept as a string.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParameterError(f"{option} {name} {text!r} is not a valid YAML value ({problem}); write a list as "
                             f"[32, 64], and quote a string that YAML cannot read: '\"{text}\"'") from None


def parse_seeds(value: Any) -> tuple[int, ...]:
    """Seeds from a list of ints, a YAML list string, or inclusive ranges ``"100-119"`` / ``"0-4,10"``.

    ``None`` and empty give ``()`` (the claim's default ``0 .. num_seeds-1``). Seeds must be
    distinct non-negative ints; a bare int is refused because it is ambiguous (a seed or a count?).
    """
    def bad(why: str) -> ParameterError:
        return ParameterError(f"parameter 'seeds' {why}; give a list like [100, 101, 102] or an inclusive "
                              f"range like 100-119 (the first n seeds: set num_seeds instead)")

    if value is None:
        return ()
    if isinstance(value, bool):
        raise bad(f"got {value!r}")
    if isinstance(value, int):
        raise bad(f"got the bare int {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import yaml

            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise bad(f"got {value!r}, which is not a valid YAML list") from None
            if not isinstance(value, list):
                raise bad(f"got {value!r}")
        else:
            out: list[int] = []
            for token in filter(None, (t.strip() for t in text.split(","))):
                lo, sep, hi = token.partition("-")
                try:
                    a, b = int(lo), int(hi) if sep else int(lo)
                except ValueError:
                    raise bad(f"got {value!r}: {token!r} is neither an int nor a range a-b") from None
                if b < a:
                    raise bad(f"got the empty range {token!r} (the end is below the start)")
                if b - a >= MAX_SEEDS:
                    raise bad(f"got {token!r}, more than {MAX_SEEDS} seeds")
                out.extend(range(a, b + 1))
            value = out
    if not isinstance(value, Sequence):
        raise bad(f"got {value!r}")
    seeds = []
    for v in value:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise bad(f"has the non-integer entry {v!r}")
        if v < 0:
            raise bad(f"has the negative entry {v!r}")
        seeds.append(int(v))
    if len(set(seeds)) != len(seeds):
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        raise bad(f"repeats {dup}: each seed is one independent replication")
    if len(seeds) > MAX_SEEDS:
        raise bad(f"has {len(seeds)} entries, more than {MAX_SEEDS}")
    return tuple(seeds)


def param(default: Any, help: str, *, choices: Sequence[Any] | None = None,
          low: float | None = None, high: float | None = None,
          low_inclusive: bool = True, high_inclusive: bool = True, empty_ok: bool = False) -> Any:
    """Declare a validated parameter field.

    ``choices`` restricts the value (or, for a tuple-valued field, each element) to a set;
    ``low``/``high`` bound numbers (again element-wise for tuples). ``empty_ok`` says that an
    empty tuple is meaningful (e.g. "no sweep"); otherwise ``flatminima run`` refuses ``[]``.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None,
            "low": low, "high": high, "low_inclusive": low_inclusive,
            "high_inclusive": high_inclusive, "empty_ok": empty_ok}
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Coerce ``value`` to the annotated type ``tp`` or raise ParameterError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ParameterError as exc:
                errors.append(str(exc))
        raise ParameterError(errors[0] if errors else f"{name}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = (value,)
        elem = args[0] if args else Any
        return tuple(_coerce(name, v, elem) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ParameterError(f"parameter {name!r} must be a bool (True/False), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ParameterError(f"parameter {name!r} must be an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ParameterError(f"parameter {name!r} must be an int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ParameterError(f"parameter {name!r} must be a float, got {value!r}")
        if isinstance(value, (int, float)):
            value = float(value)
        elif isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ParameterError(f"parameter {name!r} must be a float, got {value!r}") from None
        else:
            raise ParameterError(f"parameter {name!r} must be a float, got {value!r}")
        if not math.isfinite(value):
            raise ParameterError(f"parameter {name!r} must be finite, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParameterError(f"parameter {name!r} must be a str, got {value!r}")
        return value
    return value


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    items = value if isinstance(value, tuple) else (value,)
    choices = meta.get("choices")
    low, high = meta.get("low"), meta.get("high")
    for v in items:
        if choices is not None and v not in choices:
            hint = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ParameterError(
                f"parameter {name!r} got {v!r}; allowed values: {', '.join(map(repr, choices))}{extra}")
        low_bad = low is not None and v is not None and (v < low if meta.get("low_inclusive", True) else v <= low)
        high_bad = high is not None and v is not None and (v > high if meta.get("high_inclusive", True) else v >= high)
        if low_bad or high_bad:
            raise ParameterError(f"parameter {name!r} must be {_range_text(meta)}, got {v!r}")


def _range_text(meta: Mapping[str, Any]) -> str:
    """The accepted range in words, each bound with its own inclusiveness: ``> 0.0 and <= 10.0``."""
    parts = []
    if meta.get("low") is not None:
        parts.append(f"{'>=' if meta.get('low_inclusive', True) else '>'} {meta['low']}")
    if meta.get("high") is not None:
        parts.append(f"{'<=' if meta.get('high_inclusive', True) else '<'} {meta['high']}")
    return " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class ClaimParams:
    """Base class of the per-claim parameter dataclasses.

    Subclasses set ``CLAIM`` (the claim's slug) and ``PRESETS`` (``{preset: {field: value}}``;
    fields a preset does not mention keep the dataclass default) and declare their fields
    with :func:`param`. Instances are frozen and validated on construction.
    """

    CLAIM: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    preset: str = param("cpu", RUN_CONTROLS["preset"], choices=PRESET_NAMES)
    seeds: tuple[int, ...] = param((), SEEDS_HELP)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        seeds = parse_seeds(self.seeds)
        if "num_seeds" in hints:
            if seeds:
                meta = self.__dataclass_fields__["num_seeds"].metadata
                try:
                    _check_bounds("num_seeds", len(seeds), meta)
                except ParameterError:
                    raise ParameterError(
                        f"parameter 'seeds' has {len(seeds)} seeds; claim {self.CLAIM!r} takes between "
                        f"{meta.get('low')} and {meta.get('high')} (the bounds of num_seeds)") from None
                object.__setattr__(self, "num_seeds", len(seeds))
            else:
                n = _coerce("num_seeds", self.num_seeds, int)
                _check_bounds("num_seeds", n, self.__dataclass_fields__["num_seeds"].metadata)
                seeds = tuple(range(n))
        elif not seeds:  # a claim without a seed count runs one replication, seed 0
            seeds = (0,)
        object.__setattr__(self, "seeds", seeds)
        for f in dataclasses.fields(self):
            if f.name == "seeds":
                continue
            value = _coerce(f.name, getattr(self, f.name), hints[f.name])
            _check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise :class:`ParameterError`."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def check_names(cls, names: typing.Iterable[str]) -> None:
        """Raise ParameterError for any name that is neither a field nor a run control."""
        known = set(cls.field_names()) | set(RUN_CONTROLS)
        for name in names:
            if name not in known:
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                extra = f" Did you mean {hint[0]!r}?" if hint else ""
                raise ParameterError(
                    f"unknown parameter {name!r} for claim {cls.CLAIM!r}.{extra} "
                    f"Allowed parameters: {', '.join(sorted(known))}")

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides: Any) -> "ClaimParams":
        """The preset's values with ``overrides`` applied; ``None`` overrides are ignored."""
        if preset not in PRESET_NAMES:
            raise ParameterError(
                f"parameter 'preset' got {preset!r}; allowed values: {', '.join(map(repr, PRESET_NAMES))}")
        overrides = {k: v for k, v in overrides.items() if v is not None and k not in RUN_CONTROLS}
        cls.check_names(overrides)
        values = dict(cls.PRESETS.get(preset, {}))
        cls.check_names(values)
        if "seeds" in overrides:  # explicit seeds replace the preset's count (and its seed list)
            seeds = parse_seeds(overrides["seeds"])
            if "num_seeds" in overrides and _coerce("num_seeds", overrides["num_seeds"], int) != len(seeds):
                raise ParameterError(f"parameters 'seeds' ({len(seeds)} seeds) and 'num_seeds' "
                                     f"({overrides['num_seeds']}) disagree; give only one of them")
            values.pop("num_seeds", None)
        elif "num_seeds" in overrides:  # a count replaces the preset's seed list
            values.pop("seeds", None)
        values.update(overrides)
        values["preset"] = preset
        return cls(**values)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "ClaimParams":
        """Build from a notebook's globals: the preset plus every field that is not None.

        Used in the cell after papermill's ``parameters`` cell: ``params = Params.from_namespace(globals())``.
        """
        preset = namespace.get("preset", "cpu")
        overrides = {name: namespace[name] for name in cls.field_names()
                     if name != "preset" and namespace.get(name) is not None}
        return cls.from_preset(preset, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """One record per parameter: name, type, help, allowed values, and each preset's value."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            m = f.metadata
            allowed = None
            if m.get("choices") is not None:
                allowed = " | ".join(map(str, m["choices"]))
            elif m.get("low") is not None or m.get("high") is not None:
                lo = "" if m.get("low") is None else ("[" if m["low_inclusive"] else "(") + str(m["low"])
                hi = "" if m.get("high") is None else str(m["high"]) + ("]" if m["high_inclusive"] else ")")
                allowed = f"{lo or '(-inf'}, {hi or 'inf)'}"
            presets = {p: cls.PRESETS.get(p, {}).get(f.name, f.default) for p in PRESET_NAMES}
            if f.name == "preset":
                presets = {p: p for p in PRESET_NAMES}
            rows.append({"name": f.name, "type": _type_name(hints[f.name]), "help": m.get("help", ""),
                         "allowed": allowed, "default": f.default, "presets": presets})
        return rows
