"""Helpers for the chapter notebooks: figure set-up, styled tables, result boxes and badges.

Call these from a notebook so every chapter looks the same in the book:

* :func:`figure_setup` in the (``remove-cell``) setup cell: SVG figures, a 6.5-inch column,
  readable fonts;
* :func:`table` for every table shown: no index, the key column first, fixed precision,
  padded cells (the book's CSS scrolls a wide one inside its own box);
* :func:`result_box` / :func:`show_markdown` for the "Result" admonition from a results
  record (verdict badge, our number with its interval (90%: the one-sided 95% bounds), the paper's number, why), or
  :func:`badge` with ``myst_nb.glue`` for a badge inside hand-written Markdown.

The Markdown they make is escaped (:func:`flatminima.pages.markdown.escape_md`): strings from a run can
never inject HTML into a page.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flatminima.pages.markdown import badge as _badge
from flatminima.pages.markdown import (
    deviations_markdown,
    escape_md,
    provenance_markdown,
    result_box_markdown,
    statistic_md,
    subclaims_markdown,
    verdict_reason,
)
from flatminima.stats.power import check_seeds

COLUMN_WIDTH_IN = 6.5
"""Width of the book's text column in inches: figures no wider than this are shown at full size."""


def figure_setup(*, formats: Sequence[str] = ("svg",), font_size: float = 10.0,
                 width: float = COLUMN_WIDTH_IN, aspect: float = 0.55) -> None:
    """Figures for the book: SVG output (sharp at any screen density), column width, readable fonts.

    Sets IPython's inline backend formats when running in a kernel (a no-op elsewhere) and
    matplotlib's rcParams: ``figure.figsize = (width, aspect * width)``, font sizes, a constrained
    layout (no overlapping labels) and 200 dpi for any bitmap fallback (2x a 100 dpi screen).
    """
    import matplotlib as mpl

    if width > COLUMN_WIDTH_IN:
        raise ValueError(f"width must be at most the column width {COLUMN_WIDTH_IN} in, got {width}")
    mpl.rcParams.update({
        "figure.figsize": (width, round(aspect * width, 2)),
        "figure.dpi": 100, "savefig.dpi": 200,
        "figure.constrained_layout.use": True,
        "font.size": font_size, "axes.titlesize": font_size + 1, "axes.labelsize": font_size,
        "xtick.labelsize": font_size - 1, "ytick.labelsize": font_size - 1,
        "legend.fontsize": font_size - 1, "svg.fonttype": "path",
    })
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats(*formats)


def table(df: Any, *, key: str | None = None, precision: int = 3, caption: str | None = None,
          formats: Mapping[str, str] | None = None, units: Mapping[str, str] | None = None) -> Any:
    """A pandas DataFrame as a book table (a ``Styler``): no index, key column first, fixed precision.

    ``key`` (a column name) is moved first; ``units`` appends ``" (unit)"`` to column names;
    ``formats`` maps columns to format strings (``{"p": "{:.2g}"}``); cell text is HTML-escaped.
    Keep tables narrow (about 6 columns at most; prefer long form to wide), so they fit the column.
    """
    df = df.copy()
    if key is not None:
        if key not in df.columns:
            raise ValueError(f"key column {key!r} not in the table's columns {list(df.columns)}")
        df = df[[key, *[c for c in df.columns if c != key]]]
    if units:
        df = df.rename(columns={c: f"{c} ({u})" for c, u in units.items() if c in df.columns})
        formats = {(f"{c} ({units[c]})" if c in units else c): f for c, f in (formats or {}).items()}
    styler = (df.style.hide(axis="index").format(precision=precision, escape="html", na_rep="n/a")
              .set_table_attributes('class="fm-table"'))
    if formats:
        styler = styler.format({c: f for c, f in formats.items() if c in df.columns}, escape="html",
                               na_rep="n/a")
    if caption:
        styler = styler.set_caption(caption)
    return styler


def badge(outcome: str) -> Any:
    """A coloured verdict badge as a Markdown display object, for ``myst_nb.glue(name, badge(v), display=False)``.

    Used in a Markdown cell as ``{glue:md}`name``` (MyST-NB renders the Markdown, badge included).
    """
    from IPython.display import Markdown

    return Markdown(_badge(outcome))


def show_markdown(text: str) -> Any:
    """Display MyST Markdown made by this module (book's ``nb_render_markdown_format: myst``); tag the cell ``remove-input``."""
    from IPython.display import Markdown

    return Markdown(text)


def result_box(record: Mapping[str, Any], *, title: str = "Result") -> Any:
    """The chapter's "Result" admonition from its results record, as a display object.

    Shows the verdict badge, the headline statistic with its interval (90% two-sided), the paper's number for
    the same measure and one sentence of why (:func:`flatminima.pages.markdown.verdict_reason`).
    """
    return show_markdown(result_box_markdown(record, title=title))


def provenance(record: Mapping[str, Any]) -> Any:
    """The provenance admonition (commit, date, preset, seeds, machine, versions) as a display object."""
    return show_markdown(provenance_markdown(record))


__all__ = ["COLUMN_WIDTH_IN", "Markdown", "badge", "escape_md", "figure_setup", "glue_record", "provenance", "record_glue", "result_box",
           "show_markdown", "statistic_md", "table", "verdict_reason"]


def record_glue(record: Mapping[str, Any]) -> dict[str, Any]:
    """The values a chapter's prose glues from its record, by name: what :func:`glue_record` glues.

    Names:

    * ``verdict`` (text) and ``verdict_badge`` (Markdown badge);
    * ``headline_value``, ``headline_low``, ``headline_high`` (numbers: ``{glue:text}`headline_value:.3g```),
      ``headline_label`` and ``headline_paper`` (text);
    * ``n_seeds`` and ``seeds_needed`` (text), ``underpowered`` (the power warning sentence or "");
    * ``part_<i>_outcome`` (text), ``part_<i>_reason`` (escaped Markdown, ``{glue:md}``) for each part
      in order, and ``result_why`` (one sentence per part, then the power warning);
    * ``subclaims_md`` (Markdown, ``{glue:md}``): each sub-claim's role, the paper's words and where, its
      smallest effect with its source and its outcome (:func:`flatminima.pages.markdown.subclaims_markdown`);
    * ``runtime_s`` (number) and ``criterion_md`` (the registered criterion, escaped Markdown);
    * ``deviations_md``: the record's deviations from the pre-registration as an escaped Markdown list
      (:func:`flatminima.pages.markdown.deviations_markdown`; "none" when there are none);
    * every entry of ``record["facts"]`` under its own name (numbers as numbers, other values as text);
      a fact named ``<x>_text`` (a sentence that may hold ``$...$`` maths) is also glued as escaped
      Markdown under ``<x>_md``, for ``{glue:md}``.

    Markdown values are :class:`Markdown` (plain text that :func:`glue_record` wraps in IPython's
    Markdown display, for ``{glue:md}``).

    Parameters
    ----------
    record : Mapping
        A record made by :func:`flatminima.protocol.record.make_record`.

    Returns
    -------
    dict
        Name -> value (number, text or :class:`Markdown`), in gluing order.
    """
    head = record.get("headline") or {}
    parts = list(record.get("parts") or [])
    pre = record.get("preregistration") or {}
    seeds = list(record.get("seeds") or [])
    need = pre.get("seeds_needed")
    under = check_seeds(pre, len(seeds)) if need is not None else ""
    out: dict[str, Any] = {
        "verdict": str(record["verdict"]),
        "verdict_badge": Markdown(_badge(record["verdict"])),
        "headline_value": float("nan") if head.get("value") is None else float(head["value"]),
        "headline_low": float("nan") if head.get("ci_low") is None else float(head["ci_low"]),
        "headline_high": float("nan") if head.get("ci_high") is None else float(head["ci_high"]),
        "headline_label": str(head.get("label", "")),
        "headline_paper": str(head.get("paper", "")),
        "n_seeds": str(len(seeds)),
        "seeds_needed": str(need) if need is not None else "n/a",
        "underpowered": under,
    }
    for i, p in enumerate(parts):
        out[f"part_{i}_outcome"] = str(p.get("outcome"))
        out[f"part_{i}_reason"] = Markdown(escape_md(p.get("reason", "")))
    out["result_why"] = " ".join(f"{p.get('name')}: {p.get('outcome')}." for p in parts) + (f" {under}" if under else "")
    out["subclaims_md"] = Markdown(subclaims_markdown(record))
    out["runtime_s"] = float(record.get("runtime_s", float("nan")))
    out["criterion_md"] = Markdown(escape_md(record.get("criterion", "")))
    out["deviations_md"] = Markdown(deviations_markdown(record.get("deviations", [])))
    for name, value in (record.get("facts") or {}).items():
        out[name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
        if name.endswith("_text"):
            out[name.removesuffix("_text") + "_md"] = Markdown(escape_md(value))
    return out


class Markdown(str):
    """Text that :func:`glue_record` glues as Markdown (parsed by MyST, for ``{glue:md}``), not as plain text."""


def glue_record(record: Mapping[str, Any]) -> None:
    """Glue :func:`record_glue` of a results record for the chapter's prose (``myst_nb.glue``, not displayed).

    The one call a chapter makes after writing its record, so every number in its prose comes from
    the record.

    Parameters
    ----------
    record : Mapping
        A record made by :func:`flatminima.protocol.record.make_record`.
    """
    from IPython.display import Markdown as MarkdownDisplay
    from myst_nb import glue

    for name, value in record_glue(record).items():
        glue(name, MarkdownDisplay(str(value)) if isinstance(value, Markdown) else value, display=False)
