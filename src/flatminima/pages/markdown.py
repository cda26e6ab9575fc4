"""Record -> Markdown: escaping untrusted text, verdict badges, statistics, provenance, the result box.

Everything taken from a record (labels, reasons, the paper's numbers, criteria, versions) is
*untrusted text*: :func:`escape_md` turns it into Markdown that renders as exactly that text.
The one exception is inline TeX between dollar signs (``$\\lambda_R$``), which is rendered as
maths when it uses only ordinary TeX (no ``\\href``, ``\\class``, macro definitions, ...).
"""
from __future__ import annotations

import datetime
import math
import numbers
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import nbformat

from flatminima.claims.registry import deviations

OUTCOME_BADGE: dict[str, str] = {"reproduced": "success", "not reproduced": "danger",
                                 "inconclusive": "warning"}


PROVENANCE_KEY = "provenance"  # cell.metadata.flatminima.role of the provenance cell


# ----------------------------------------------------------------------------- escaping
# The ASCII punctuation that can start Markdown/MyST markup (emphasis, code, roles, links, HTML,
# entities, headings, lists, tables, maths, comments, fences); each is CommonMark-escapable.
_PUNCT = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~^&:%])")


_MATH = re.compile(r"\$([^$\n]{1,200}?)\$")


_MATH_OK = re.compile(r"[A-Za-z0-9\\_^{}()\[\]+\-*/=,.;:|'!<>~ ]+")


_MATH_BANNED = re.compile(r"\\(href|url|class|cssId|style|data|html|require|unicode|def|gdef|edef|let|"
                          r"newcommand|renewcommand|newenvironment|renewenvironment|DeclareMathOperator|"
                          r"mmlToken|toggle|texttip|tooltip|mathtip|action|input|include)(?![A-Za-z])")


def _escape_text(text: str) -> str:
    return _PUNCT.sub(r"\\\1", text)


def safe_math(tex: str) -> bool:
    """Whether ``tex`` (the inside of ``$...$``) may be rendered as maths: ordinary TeX only."""
    return bool(_MATH_OK.fullmatch(tex)) and not _MATH_BANNED.search(tex) and tex.strip() == tex != ""


def escape_md(text: Any, *, math: bool = True) -> str:
    r"""Untrusted text as one line of MyST Markdown that renders as exactly that text.

    Every punctuation character that can start markup is backslash-escaped (CommonMark renders ``\<`` as ``<``,
    and Sphinx then HTML-escapes it), so no HTML, role, directive, link, emphasis or list can be
    formed; newlines become spaces. With ``math=True``, a ``$...$`` span that passes
    :func:`safe_math` becomes a ``{math}`` role, so record labels can carry real maths.
    """
    s = " ".join(("" if text is None else str(text)).split())
    if not math:
        return _escape_text(s)
    out, pos = [], 0
    for m in _MATH.finditer(s):
        if not safe_math(m.group(1)):
            continue
        out.append(_escape_text(s[pos:m.start()]))
        out.append("{math}`" + m.group(1) + "`")
        pos = m.end()
    out.append(_escape_text(s[pos:]))
    return "".join(out)


def fmt(x: Any, digits: int = 3, missing: str = "n/a") -> str:
    """A number for a page or a table: ``digits`` significant digits, NaN as ``n/a``, None as ``missing``.

    The one number formatter of the pages, the sweep pages and ``flatminima verify``; booleans and
    text are written as they are.
    """
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, numbers.Real):
        return "n/a" if math.isnan(x) else f"{x:.{digits}g}"
    return missing if x is None else str(x)


def badge(outcome: Any) -> str:
    """A coloured sphinx-design badge for a verdict or part outcome (green, red, amber; grey otherwise)."""
    text = str(outcome) if outcome is not None else "missing"
    kind = OUTCOME_BADGE.get(text, "secondary")
    text = re.sub(r"[^A-Za-z0-9 ]", "", text)[:40] or "unknown"
    return f"{{bdg-{kind}}}`{text}`"


def statistic_text(st: Mapping[str, Any] | None) -> str:
    """``label value [low, high]`` (plain text, unescaped) for a statistic in the records' form."""
    if not isinstance(st, Mapping) or "value" not in st:
        return ""
    out = f"{st.get('label', '')}: {fmt(st.get('value'))}".lstrip(": ")
    if st.get("ci_low") is not None and st.get("ci_high") is not None:
        out += f" [{fmt(st['ci_low'])}, {fmt(st['ci_high'])}]"
    return out


def statistic_md(st: Mapping[str, Any] | None) -> str:
    """A statistic as escaped Markdown: the label, the value in bold, the interval (its level: :func:`level_text`)."""
    if not isinstance(st, Mapping) or "value" not in st:
        return "n/a"
    out = (escape_md(st.get("label", "")) + ": ") if st.get("label") else ""
    out += f"**{escape_md(fmt(st.get('value')))}**"
    if st.get("ci_low") is not None and st.get("ci_high") is not None:
        out += " " + escape_md(f"[{fmt(st['ci_low'])}, {fmt(st['ci_high'])}]")
    return out


def level_text(st: Mapping[str, Any] | None) -> str:
    """The two-sided coverage of a statistic's interval as ``"90%"``.

    Records written since intervals were matched to the one-sided tests carry ``level`` (0.90: the
    one-sided 95% bounds); records without it are from before, when every interval was 95%.
    """
    level = st.get("level") if isinstance(st, Mapping) else None
    try:
        level = float(level)
    except (TypeError, ValueError):
        return "95%"
    return f"{level:.0%}" if 0 < level < 1 else "95%"


def parts_of(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in (record.get("parts") or []) if isinstance(p, Mapping)]


ROLES: tuple[str, ...] = ("decided", "control", "estimate")
"""The roles of a sub-claim (:class:`flatminima.protocol.contract.Role`), in the order the pages list them."""


def role_of(part: Mapping[str, Any]) -> str:
    """A record part's role: its ``role``, else its sub-claim's, else ``decided`` (records from before roles)."""
    role = part.get("role")
    if role not in ROLES and isinstance(part.get("subclaim"), Mapping):
        role = part["subclaim"].get("role")
    return role if role in ROLES else "decided"


def verdict_reason(record: Mapping[str, Any]) -> str:
    """Why the verdict is what it is, in one plain-text sentence built from the record's parts.

    The rule of :func:`flatminima.protocol.contract.verdict_of`: only decided sub-claims decide (after Holm's
    correction over them), a control that did not pass makes the verdict *inconclusive*, and estimates never
    count. The sentence names what decided it: for *not reproduced* the decided parts that are not reproduced;
    for *inconclusive* the decided parts left undecided and the controls that did not pass; for *reproduced*
    every decided part and control. Estimates are never named. First-edition records (no parts) fall back to
    the criterion.
    """
    verdict = record.get("verdict")
    parts = parts_of(record)
    if not parts:
        return str(record.get("criterion") or "")

    def says(p: Mapping[str, Any]) -> str:
        name = str(p.get("name", "part")) + (" (control)" if role_of(p) == "control" else "")
        return f"{name} is {p.get('outcome', 'missing')}: {p.get('reason', '')}".rstrip(": ")

    decided = [p for p in parts if role_of(p) == "decided"]
    controls = [p for p in parts if role_of(p) == "control"]
    has_roles = any("role" in p or "subclaim" in p for p in parts)
    if not decided:
        return "No sub-claim is decided (only controls and estimates), so the verdict is inconclusive."
    if verdict == "reproduced":
        if has_roles:
            lead = ("Every decided sub-claim is reproduced" + (" and every control passed" if controls else "")
                    + ". ")
        else:
            lead = "Every part is reproduced. " if len(parts) > 1 else ""
        return lead + "; ".join(says(p) for p in decided + controls) + "."
    if verdict == "not reproduced":
        deciding = [p for p in decided if p.get("outcome") == "not reproduced"] or decided
        return "; ".join(says(p) for p in deciding) + "."
    undecided = [p for p in decided if p.get("outcome") != "reproduced"]
    failed = [p for p in controls if p.get("outcome") != "reproduced"]
    out = "; ".join(says(p) for p in undecided + failed or decided) + "."
    if failed:
        out += (" A control that does not pass makes the verdict inconclusive: the pipeline cannot be trusted"
                " to decide the paper's statements.")
    return out


def subclaim_outcome_md(part: Mapping[str, Any], *, with_statistic: bool = True) -> str:
    """A part's outcome as Markdown: its badge (decided, control) or an *estimate* badge, then its statistic.

    An estimate gets no verdict badge: it is reported with its interval and never decided.
    """
    st = part.get("statistic") if isinstance(part.get("statistic"), Mapping) else None
    if role_of(part) == "estimate":
        out = "{bdg-secondary}`estimate`"
    else:
        out = badge(part.get("outcome"))
    if with_statistic and st is not None and "value" in st:
        out += f" {statistic_md(st)} ({level_text(st)} interval)"
    return out


def _smallest_effect_text(se: Any) -> str:
    if not isinstance(se, Mapping):
        return "none"
    source = str(se.get("source") or "")
    if se.get("published") is False and "none published" not in source.lower():
        source = "none published: " + source if source else "none published"
    value = fmt(se.get("value"))
    return f"{value} ({source})" if source else value


def subclaims_markdown(record: Mapping[str, Any]) -> str:
    """The record's parts as a table: each sub-claim's outcome beside the paper's words.

    One row per part: its name (the sub-claim's key first), its role (*decided*, *control* or *estimate*,
    with the reason for the role), the paper's statement in quotes and where it is, the smallest effect
    of interest with its source ("none published" and the reasoning when the paper gives none), and the
    outcome: the verdict badge and the statistic with its interval, or for an estimate an *estimate*
    badge and the statistic with its interval (no verdict). Every string from the record is escaped
    (:func:`escape_md`). Returns "" for a record without parts.
    """
    parts = parts_of(record)
    if not parts:
        return ""
    lines = [":::{list-table}", ":header-rows: 1", ":widths: 14 16 34 16 20", ":class: subclaims", "",
             "* - Sub-claim", "  - Role", "  - The paper's words", "  - Smallest effect", "  - Outcome"]
    for p in parts:
        sc = p.get("subclaim") if isinstance(p.get("subclaim"), Mapping) else {}
        role = role_of(p)
        why = sc.get("why_role") or ""
        role_cell = f"*{role}*" + (f": {escape_md(why)}" if why else "")
        if sc.get("statement"):
            words = "\u201c" + escape_md(sc["statement"]) + "\u201d"
            if sc.get("where"):
                words += f" ({escape_md(sc['where'])})"
            if sc.get("primary"):
                words += f"; primary statistic: {escape_md(sc['primary'])}"
        else:
            words = "(no sub-claim recorded)"
        smallest = escape_md(_smallest_effect_text(sc.get("smallest_effect"))) if sc else "n/a"
        lines += [f"* - **{escape_md(p.get('name', 'part'))}**", f"  - {role_cell}", f"  - {words}",
                  f"  - {smallest}", f"  - {subclaim_outcome_md(p)}"]
    lines += [":::", ""]
    return "\n".join(lines)


def subclaims_compact(record: Mapping[str, Any]) -> str:
    """Each part's key and outcome on one line (``A`` badge, ``B`` badge, ``C`` *estimate*), for a table cell.

    The key is the sub-claim's ``key`` (else the part's name up to its colon); "" for a record whose parts
    carry no sub-claim (the claim's badge says it all).
    """
    parts = parts_of(record)
    if not any(isinstance(p.get("subclaim"), Mapping) for p in parts):
        return ""
    out = []
    for p in parts:
        sc = p.get("subclaim") if isinstance(p.get("subclaim"), Mapping) else {}
        key = sc.get("key") or str(p.get("name", "part")).split(":", 1)[0]
        out.append(f"{escape_md(key)} {subclaim_outcome_md(p, with_statistic=False)}")
    return " ".join(out)


def compact_seeds(seeds: Iterable[Any]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``0-2, 5, 7-8``."""
    try:
        vals = sorted({int(s) for s in seeds})
    except (TypeError, ValueError):
        return ", ".join(str(s) for s in seeds)
    out: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(out)


def duration_text(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "n/a"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def utc_text(iso: Any) -> str:
    """An ISO timestamp as ``2026-12-01 09:08 UTC`` (other text unchanged; None: "not recorded")."""
    if not iso:
        return "not recorded"
    try:
        t = datetime.datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo is not None else "")


# ----------------------------------------------------------------------------- provenance
VERSION_ORDER = ("flatminima", "python", "torch", "numpy", "scipy", "pandas", "scikit-learn", "sklearn",
                 "statsmodels", "mnist1d", "papermill", "myst-nb", "torchvision")


def provenance_lines(record: Mapping[str, Any]) -> list[str]:
    """The provenance of a record as escaped Markdown list items (commit, date, preset, seeds, machine, versions)."""
    prov = record.get("provenance") if isinstance(record.get("provenance"), Mapping) else {}
    seeds = record.get("seeds") or []
    lines = []
    when = prov.get("executed_at")
    run = (f"{record.get('preset')} preset, {len(seeds)} seeds ({compact_seeds(seeds)}), "
           f"{duration_text(record.get('runtime_s'))} on {record.get('device', '?')}")
    lines.append(f"- **Run**: {escape_md(run, math=False)}")
    lines.append(f"- **Executed**: {escape_md(utc_text(when), math=False)}")
    try:
        changed = deviations(str(record.get("claim")), str(record.get("preset")), dict(record.get("parameters") or {}))
    except Exception:  # noqa: BLE001 - an unknown claim or preset, or parameters that no longer validate
        changed = {}
    if changed:
        lines.append(f"- **Changed from the {escape_md(record.get('preset'), math=False)} preset**: "
                     f"{escape_md(reduced_text(changed), math=False)}")
    commit = prov.get("git_commit")
    if commit:
        state = {True: " (with uncommitted changes)", False: " (clean)"}.get(prov.get("git_dirty"), "")
        lines.append(f"- **Commit**: `{re.sub(r'[^0-9a-fA-F]', '', str(commit))[:12]}`{escape_md(state)}")
    else:
        lines.append("- **Commit**: not recorded")
    if prov:
        machine = f"{prov.get('machine', '?')}, {prov.get('cpu_count', '?')} CPUs"
        if prov.get("cpu_capability"):
            machine += f", {prov['cpu_capability']} kernels"
        if prov.get("torch_threads") is not None:
            machine += f", {prov['torch_threads']} torch threads"
        if prov.get("gpu"):
            machine += f", GPU {prov['gpu']}"
        lines.append(f"- **Machine**: {escape_md(machine, math=False)}")
    else:
        lines.append("- **Machine**: not recorded (a record from before provenance was kept)")
    vers = record.get("versions") if isinstance(record.get("versions"), Mapping) else {}
    if vers:
        keys = [k for k in VERSION_ORDER if k in vers] + sorted(k for k in vers if k not in VERSION_ORDER
                                                                and k != "platform")
        lines.append("- **Versions**: " + escape_md(", ".join(f"{k} {vers[k]}" for k in keys), math=False))
    return lines


def provenance_markdown(record: Mapping[str, Any], *, title: str = "Provenance of this page") -> str:
    """A collapsed admonition with the record's provenance: commit, date, preset, seeds, machine, versions.

    Every value is escaped (:func:`escape_md`); missing fields read "not recorded".
    """
    return "\n".join([f":::{{admonition}} {escape_md(title, math=False)}", ":class: dropdown provenance", "",
                      *provenance_lines(record), ":::", ""])


def add_provenance_cell(nb: nbformat.NotebookNode, record: Mapping[str, Any]) -> nbformat.NotebookNode:
    """Append (or replace) the final Markdown cell of an executed notebook with :func:`provenance_markdown`.

    The cell is marked ``metadata.flatminima.role = "provenance"``; earlier provenance cells are
    removed, so calling this twice leaves one cell, at the end. Returns ``nb`` (changed in place).
    """
    nb.cells = [c for c in nb.cells
                if not (isinstance(c.get("metadata", {}).get("flatminima"), Mapping)
                        and c.metadata["flatminima"].get("role") == PROVENANCE_KEY)]
    cell = nbformat.v4.new_markdown_cell(provenance_markdown(record),
                                         metadata={"flatminima": {"role": PROVENANCE_KEY}})
    cell.pop("id", None)
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = uuid.uuid4().hex[:8]
    nb.cells.append(cell)
    return nb


def colab_install_cell(repo_url: str) -> nbformat.NotebookNode:
    """A code cell that installs the library when the notebook runs in Google Colab (a no-op elsewhere).

    Tagged ``remove-cell`` so the book does not show it. ``repo_url`` is the book's ``repository.url``.
    """
    if not re.fullmatch(r"https://[A-Za-z0-9._~/-]+", repo_url or ""):
        raise ValueError(f"repo_url must be an https URL of the repository, got {repo_url!r}")
    src = ("import sys\n"
           "if 'google.colab' in sys.modules:  # Colab: install the library this notebook imports\n"
           f"    %pip install --quiet 'flatminima @ git+{repo_url}'")
    return nbformat.v4.new_code_cell(src, metadata={"tags": ["remove-cell"], "flatminima": {"role": "install"}})


# ----------------------------------------------------------------------------- result box and dashboard
def result_box_markdown(record: Mapping[str, Any], *, title: str = "Result") -> str:
    """The "Result" admonition of a chapter from its record: badge, primary number, paper's number, why.

    When the parts carry sub-claims, each sub-claim's outcome is listed beside the paper's words.
    """
    h = record.get("headline") if isinstance(record.get("headline"), Mapping) else {}
    lines = [f":::{{admonition}} {escape_md(title, math=False)}", ":class: result", "",
             f"**Verdict**: {badge(record.get('verdict'))}", ""]
    if "value" in h:
        n = f", {h['n']} seeds" if isinstance(h.get("n"), int) else ""
        lines += [f"**Ours** ({level_text(h)} interval{escape_md(n, math=False)}): {statistic_md(h)}", ""]
    if h.get("paper"):
        lines += [f"**Paper**: {escape_md(h['paper'])}", ""]
    parts = parts_of(record)
    if any(isinstance(p.get("subclaim"), Mapping) for p in parts):
        lines += ["**The paper's statements**:", ""]
        for p in parts:
            lines.append(subclaim_line(p))
        lines.append("")
    why = verdict_reason(record)
    if why:
        lines += [f"**Why**: {escape_md(why)}", ""]
    lines += [":::", ""]
    return "\n".join(lines)


def subclaim_line(part: Mapping[str, Any]) -> str:
    """One list item: the part's name, role, the paper's words in quotes (and where), its outcome (escaped)."""
    sc = part.get("subclaim") if isinstance(part.get("subclaim"), Mapping) else {}
    words = ""
    if sc.get("statement"):
        words = " \u201c" + escape_md(sc["statement"]) + "\u201d"
        if sc.get("where"):
            words += f" ({escape_md(sc['where'])})"
    return (f"- **{escape_md(part.get('name', 'part'))}** (*{role_of(part)}*){words}: "
            f"{subclaim_outcome_md(part)}")


def _value_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    return fmt(v) if isinstance(v, float) else str(v)


def reduced_text(reduced: Mapping[str, tuple[Any, Any]]) -> str:
    """``num_seeds 10 → 3; control_steps 12000 → 4000`` (plain text, unescaped); seeds are counted."""
    out = []
    for name, (was, used) in reduced.items():
        if name == "seeds":
            out.append(f"seeds: {compact_seeds(used)} ({len(used)} seeds)")
        else:
            out.append(f"{name} {_value_text(was)} → {_value_text(used)}")
    return "; ".join(out)


def deviations_markdown(deviations: Any) -> str:
    """A record's ``deviations`` as a Markdown list (date, what, why, whether verdict seeds had been seen).

    ``"none"`` when the list is empty; ``"not recorded"`` for a record from before deviations were
    recorded (``None``). Every string is escaped (:func:`escape_md`).
    """
    if deviations is None:
        return "not recorded"
    items = [d for d in deviations if isinstance(d, Mapping)]
    if not items:
        return "none"
    out = []
    for d in items:
        seen = "after verdict seeds were seen" if d.get("seeds_seen") else "before any verdict seed was seen"
        out.append(f"- **{escape_md(d.get('date', '?'), math=False)}**: {escape_md(d.get('what', ''))}. "
                   f"Why: {escape_md(d.get('why', ''))}. {escape_md(seen, math=False)}.")
    return "\n".join(out)
