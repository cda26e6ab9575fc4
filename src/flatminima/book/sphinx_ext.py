"""A small Sphinx extension (``sphinx.extra_extensions: [flatminima.book.sphinx_ext]``).

It drops the repository and launch buttons when ``repository.url`` is empty (the one setting
that turns them on), and registers the author-year bibliography style ``authoryear``.
"""
from __future__ import annotations

from typing import Any

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as Unsrt
from pybtex.style.labels import BaseLabelStyle


# ----------------------------------------------------------------------------- Sphinx extension
def _buttons_follow_repository_url(app: Any, config: Any) -> None:
    """``repository.url`` is the one setting: set, it turns on the repository and launch buttons; empty, neither."""
    opts = dict(config.html_theme_options or {})
    if str(opts.get("repository_url") or "").strip():
        opts["use_repository_button"] = True
    else:
        opts.pop("launch_buttons", None)
        opts.pop("repository_url", None)
        for key in ("use_repository_button", "use_edit_page_button", "use_issues_button"):
            opts[key] = False
    config.html_theme_options = opts


def _register_bibliography_style() -> None:
    """Register the pybtex style ``authoryear``: unsrt entries labelled "Keskar et al. 2017", sorted by author."""
    def last(person: Any) -> str:
        return Text(*person.rich_last_names).render_as("text") or "Anon"

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):  # noqa: ANN001 - pybtex API
            labels = []
            for e in sorted_entries:
                people = e.persons.get("author") or e.persons.get("editor") or []
                if not people:
                    who = "Anon"
                elif len(people) == 1:
                    who = last(people[0])
                elif len(people) == 2:
                    who = f"{last(people[0])} and {last(people[1])}"
                else:
                    who = f"{last(people[0])} et al."
                labels.append(f"{who} {e.fields.get('year', 'n.d.')}")
            seen: dict[str, int] = {}
            for lab in labels:
                seen[lab] = seen.get(lab, 0) + 1
            count: dict[str, int] = {}
            for lab in labels:
                if seen[lab] > 1:
                    count[lab] = count.get(lab, 0) + 1
                    yield lab + "abcdefghijklmnopqrstuvwxyz"[count[lab] - 1]
                else:
                    yield lab

    class AuthorYearStyle(Unsrt):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    for group, obj in (("pybtex.style.labels", AuthorYearLabels), ("pybtex.style.formatting", AuthorYearStyle)):
        try:
            register_plugin(group, "authoryear", obj)
        except Exception:  # already registered by an earlier build in this process
            pass


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point (``sphinx.extra_extensions: [flatminima.book.sphinx_ext]``)."""
    _register_bibliography_style()
    app.connect("config-inited", _buttons_follow_repository_url)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
