"""What a sweep writes: the tidy tables, the figure, the book page and the manifest; the book's Sweeps part."""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flatminima.core.errors import ParameterError
from flatminima.core.io import atomic_write_text, jsonable
from flatminima.pages.markdown import fmt
from flatminima.protocol.contract import Aggregate, Statistic
from flatminima.protocol.params import ClaimParams
from flatminima.run.sweep.execute import Outcome
from flatminima.run.sweep.grid import Sweep
from flatminima.stats.intervals import mean_ci

SWEEPS_DIR = Path("book") / "generated" / "sweeps"
"""Where the book looks for sweeps, relative to the project root: one folder per sweep."""


def _cell_text(v: Any) -> Any:
    """Grid values as table cells: scalars as they are, lists as compact JSON."""
    return v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)


def _scalars(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _numeric_fields(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Top-level fields that are a number or null (not bool, not the seed) in every record, in record order."""
    if not records:
        return []
    names = [k for k, v in records[0].items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed", "seeds")]
    return [k for k in names
            if all(k in r and (r[k] is None or (isinstance(r[k], (int, float)) and not isinstance(r[k], bool)))
                   for r in records)]


def points_table(sweep: Sweep, outcomes: Sequence[Outcome]):
    """The tidy table: one row per point (grid values, seed, status, error, cost, scalar record fields)."""
    import pandas as pd

    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"cell": o.point.cell, **{k: _cell_text(v) for k, v in o.point.values.items()},
                               "seed": o.point.seed, "status": o.status, "error": o.error,
                               "attempts": o.attempts, "key": o.point.key}
        meta = o.meta or {}
        for k in ("wall_s", "cpu_s", "host", "cpu"):
            row[k] = meta.get(k)
        for k, v in _scalars(o.record or {}).items():
            if k in row and row[k] == v:  # e.g. the record's own "seed"
                continue
            row[k if k not in row else f"record.{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _statistic_row(st: Statistic, name: str, primary: bool) -> dict[str, Any]:
    return {**st.to_dict(), "statistic": name, "primary": primary}


def claim_statistics(module: Any, params: ClaimParams, records: Sequence[dict]) -> tuple[list[dict], str | None]:
    """The claim's own statistics for one cell, from its ``aggregate(params, records)`` (an
    :class:`~flatminima.protocol.contract.Aggregate`).

    Returns ``(rows, verdict)``: a row for the headline (``primary``), then one for each part
    with a statistic (named ``"<part>: <label>"``); ``rows`` is empty and the verdict None when
    the claim has no ``aggregate``.
    """
    aggregate = getattr(module, "aggregate", None)
    if aggregate is None or not records:
        return [], None
    agg = aggregate(params, list(records))
    if not isinstance(agg, Aggregate):
        raise TypeError(f"{module.__name__}.aggregate returned {type(agg).__name__}, not an Aggregate")
    rows = [_statistic_row(agg.headline, agg.headline.label or "headline", True)]
    rows += [_statistic_row(part.statistic, f"{part.name}: {part.statistic.label}".rstrip(": "), False)
             for part in agg.parts if part.statistic is not None]
    return rows, agg.verdict.value


def cells_table(sweep: Sweep, outcomes: Sequence[Outcome], *, primary: str | None = None):
    """Per grid cell, long form: the claim's statistics and the mean-with-95%-CI of each numeric field.

    ``primary`` names a per-seed record field to plot instead of the claim's headline. Columns:
    ``cell``, the grid names, ``statistic``, ``value``, ``ci_low``, ``ci_high``, ``n``, ``method``,
    ``primary`` (the row the page plots), ``verdict``, ``note``.
    """
    import numpy as np
    import pandas as pd

    module = importlib.import_module(sweep.module)
    rows = []
    for c, (values, params) in enumerate(sweep.cells):
        done = [o for o in outcomes if o.point.cell == c and o.record is not None]
        records = [o.record for o in done]
        base = {"cell": c, **{k: _cell_text(v) for k, v in values.items()}}
        claim_rows, verdict, note = [], None, None
        if records and primary is None:
            try:
                cell_params = dataclasses.replace(params, seeds=tuple(o.point.seed for o in done))
                claim_rows, verdict = claim_statistics(module, cell_params, records)
            except Exception as exc:  # noqa: BLE001 - a cell the claim cannot aggregate still gets its means
                note = f"aggregate failed: {type(exc).__name__}: {exc}"
        for r in claim_rows:
            rows.append({**base, "statistic": r["statistic"], "value": r["value"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "n": r.get("n", len(records)), "method": "claim aggregate",
                         "primary": r["primary"], "verdict": verdict, "note": note})
        fields = _numeric_fields(records)
        want = primary or (None if claim_rows else (fields[0] if fields else None))
        if primary is not None and records and primary not in fields:
            raise ParameterError(f"--primary {primary!r} is not a numeric field of {sweep.claim}'s per-seed "
                                 f"records; numeric fields: {', '.join(fields) or 'none'}")
        for name in fields:
            x = np.array([np.nan if r[name] is None else float(r[name]) for r in records])
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            ci = mean_ci(x)
            rows.append({**base, "statistic": name, "value": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                         "n": ci.n, "method": "mean over seeds, Student t 95%", "primary": name == want,
                         "verdict": verdict, "note": note})
        if not records:
            rows.append({**base, "statistic": primary or "", "value": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan, "n": 0, "method": "no finished point", "primary": True,
                         "verdict": None, "note": note})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the page
def _numeric_axis(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot(sweep: Sweep, cells, path: Path) -> Path:
    """The primary statistic against each grid parameter (95% intervals), one panel per parameter, SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prim = cells[cells["primary"]]
    label = str(prim["statistic"].dropna().iloc[0]) if len(prim.dropna(subset=["statistic"])) else "primary"
    names = list(sweep.grid)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(6.5, 2.6 * ncols + 0.6), 2.6 * nrows + 0.4),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        values = sweep.grid[name]
        numeric = _numeric_axis(values)
        others = [n for n in names if n != name]
        pos = {json.dumps(v, default=str): (v if numeric else j) for j, v in enumerate(values)}
        groups = prim.groupby(others, sort=False) if others else [((), prim)]
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            xs = [pos[json.dumps(_raw(sweep, name, v), default=str)] for v in g[name]]
            order = sorted(range(len(xs)), key=lambda j: xs[j])
            x = [xs[j] for j in order]
            y = g["value"].to_numpy()[order]
            lo, hi = g["ci_low"].to_numpy()[order], g["ci_high"].to_numpy()[order]
            lab = ", ".join(f"{n}={v}" for n, v in zip(others, gkey)) or None
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=3, lw=1.2, label=lab)
        if numeric and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(values, [str(v) for v in values])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(name)
        if others:
            ax.legend(fontsize=7, frameon=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(label if len(label) <= 28 else label[:27] + "…", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)
    return path


def _raw(sweep: Sweep, name: str, cell_value: Any) -> Any:
    """The grid value behind a table cell (lists were written as JSON)."""
    for v in sweep.grid[name]:
        if _cell_text(v) == cell_value:
            return v
    return cell_value


def _md(text: Any) -> str:
    return " ".join(str(text).replace("|", "\\|").split())


def page_markdown(sweep: Sweep, outcomes: Sequence[Outcome], cells, *, name: str, command: str) -> str:
    """The sweep page (MyST Markdown): what was run, the figure, the primary statistic per cell, failures."""
    prim = cells[cells["primary"]]
    label = str(prim["statistic"].iloc[0]) if len(prim) else "the primary statistic"
    method = str(prim["method"].iloc[0]) if len(prim) else ""
    n_fail = sum(o.status == "failed" for o in outcomes)
    cpu = sum((o.meta or {}).get("cpu_s") or 0.0 for o in outcomes)
    grid = "; ".join(f"`{k}` in {', '.join(map(str, v))}" for k, v in sweep.grid.items())
    fixed = ", ".join(f"`{k}={v}`" for k, v in sweep.fixed.items())
    seeds = f"{len(sweep.seeds)} seeds ({sweep.seeds[0]} to {sweep.seeds[-1]})" if sweep.seeds else "no seeds"
    lines = [f"# Sweep: {sweep.claim} over {', '.join(sweep.grid)}", "",
             f"A sweep of the claim [{sweep.claim}](../../{sweep.claim}.ipynb) at the `{sweep.preset}` preset"
             + (f" with {fixed}" if fixed else "") + f": {grid}; {seeds} per grid cell, "
             f"{len(sweep.points)} points in all, each one run of the claim's per-seed function.", "",
             ":::{note}",
             f"{len(sweep.points) - n_fail} of {len(sweep.points)} points finished"
             + (f", **{n_fail} failed** (listed below)" if n_fail else "") +
             f"; {cpu / 60:.1f} CPU minutes in the per-seed runs. Statistic: {_md(label)} ({method}).",
             "Regenerate with:", "", "```", command, "```", ":::", "",
             "```{figure} figure.svg", f":alt: {_md(label)} against " + " and ".join(sweep.grid) +
             ", one panel per grid parameter, points with 95% intervals over seeds",
             f":name: fig-sweep-{name}", ":width: 100%", "",
             f"{_md(label)} against each grid parameter; one line per value of the other grid parameters; "
             "bars are 95% intervals over the seeds of each cell.", "```", "",
             "**Figure.** Read each panel left to right: a trend larger than the bars is an effect of that "
             "parameter at this preset; overlapping bars are not evidence of no effect.", "",
             "## Per grid cell", "",
             "| " + " | ".join([*sweep.grid, _md(label), "95% interval", "seeds", "verdict"]) + " |",
             "|" + "---|" * (len(sweep.grid) + 4)]
    for _, r in prim.iterrows():
        verdict = r.get("verdict")
        lines.append("| " + " | ".join([*(_md(r[k]) for k in sweep.grid), fmt(r["value"], 4, ""),
                                          f"[{fmt(r['ci_low'], 4, '')}, {fmt(r['ci_high'], 4, '')}]", str(int(r["n"])),
                                          _md(verdict) if isinstance(verdict, str) else ""]) + " |")
    lines += ["", "The full tables are beside this page: `points.csv` / `points.parquet` (one row per point) "
              "and `cells.csv` / `cells.parquet` (every statistic per cell).", ""]
    if n_fail:
        lines += ["## Failed points", ""]
        lines += [f"- {_md(o.point.label)}: `{_md(o.error)}`" for o in outcomes if o.status == "failed"]
        lines.append("")
    return "\n".join(lines)


def write_outputs(sweep: Sweep, outcomes: Sequence[Outcome], out: Path, *, name: str, command: str,
                  primary: str | None = None) -> dict[str, Path]:
    """Write the manifest, the tidy tables (parquet + CSV), the figure and the page into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points = points_table(sweep, outcomes)
    cells = cells_table(sweep, outcomes, primary=primary)
    paths = {"points": out / "points.parquet", "cells": out / "cells.parquet"}
    for key, df in (("points", points), ("cells", cells)):
        tmp = out / f".{key}.parquet.tmp"
        df.to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, paths[key])
        paths[f"{key}_csv"] = atomic_write_text(out / f"{key}.csv", df.to_csv(index=False))
    paths["figure"] = plot(sweep, cells, out / "figure.svg")
    paths["page"] = atomic_write_text(out / "index.md", page_markdown(sweep, outcomes, cells, name=name,
                                                                       command=command))
    manifest = {"claim": sweep.claim, "preset": sweep.preset, "grid": sweep.grid, "fixed": sweep.fixed,
                "seeds": list(sweep.seeds), "device": sweep.device, "command": command,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "points": [{"cell": o.point.cell, "values": o.point.values, "seed": o.point.seed,
                            "key": o.point.key, "status": o.status, "attempts": o.attempts, "error": o.error}
                           for o in outcomes]}
    paths["manifest"] = atomic_write_text(out / "sweep.json", json.dumps(jsonable(manifest), indent=1) + "\n")
    return paths


# ----------------------------------------------------------------------------- the book
def sweep_pages(root: str | os.PathLike) -> list[Path]:
    """The sweep pages under ``<root>/book/generated/sweeps/<name>/index.md``, sorted by name."""
    base = Path(root) / SWEEPS_DIR
    return sorted(p for p in base.glob("*/index.md") if p.is_file()) if base.is_dir() else []


def toc_part(root: str | os.PathLike) -> dict | None:
    """A ``_toc.yml`` part listing the sweep pages (``{"caption": "Sweeps", "chapters": [...]}``), or None."""
    root = Path(root)
    pages = sweep_pages(root)
    if not pages:
        return None
    return {"caption": "Sweeps",
            "chapters": [{"file": p.relative_to(root).with_suffix("").as_posix()} for p in pages]}
