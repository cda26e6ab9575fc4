"""Build the book and check it as a reader would, in headless Chromium, at 1280 px and at 390 px.

The browser is Debian's ``chromium`` driven by Playwright (``executable_path``; no browser
download). Without a Chromium the test is skipped, unless ``FLATMINIMA_REQUIRE_BROWSER=1``
(set by CI), where a missing browser is a failure.

The book checked is the smoke build of the test suite (``smoke_project``), or, with
``FLATMINIMA_BOOK_ROOT=<project root>``, a project whose chapters are already executed there
(CI: the cpu book after ``flatminima book``); it is rebuilt, never re-executed.

Each page is opened once per width and measured by one script (:data:`MEASURE_JS`); the tests
then read those measurements:

* no literal ``$...$``, ``\\command`` or ASCII maths (``lambda_R``) outside rendered maths and code;
* at 1280 px no table, figure, equation or code block wider than the text column unless it
  scrolls inside its own box; at 390 px no page wider than the viewport;
* every image has alt text that says something (not a hash or a file name) and is SVG or at
  least 2x its displayed size;
* every exercise has a solution toggle; no citation of notes outside the book;
* no stray string outputs or ``Params(...)`` dumps; at most 40 lines of code shown open per page;
  output tables without the pandas index and without 6-decimal numbers;
* the dashboard shows each claim's verdict and each part's outcome, readable on a phone.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from flatminima.book.build import build_book
from flatminima.claims.registry import CLAIMS

pytestmark = [pytest.mark.browser, pytest.mark.kernel]  # its fixtures run every notebook

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# sphinx-thebe and sphinx-book-theme both declare THEBE_JS_URL on every JB1 page (a known, harmless clash)
KNOWN_PAGE_ERRORS = ("THEBE_JS_URL",)
WIDTHS = {"desktop": 1280, "phone": 390}


def chromium_path() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="module")
def book_project(request) -> Path:
    """The executed project to build: ``$FLATMINIMA_BOOK_ROOT`` if set, else the smoke run."""
    root = os.environ.get("FLATMINIMA_BOOK_ROOT")
    if root:
        return Path(root).resolve()
    return request.getfixturevalue("smoke_project")


@pytest.fixture(scope="module")
def built_book(book_project) -> Path:
    index = build_book(book_project)
    assert index.is_file()
    return index.parent


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server(built_book):
    handler = functools.partial(QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("FLATMINIMA_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (FLATMINIMA_REQUIRE_BROWSER=1) but not installed: apt-get install chromium")
        pytest.skip("no Chromium found; install Debian's chromium to run the browser test")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def pages(built_book: Path) -> list[str]:
    """Every content page (index.html only redirects to the intro, so it is not one)."""
    return sorted(str(p.relative_to(built_book)) for p in built_book.rglob("*.html")
                  if not p.name.startswith(("genindex", "search", "index")) and "_static" not in p.parts)


# One script per page load: waits for MathJax, then measures everything the tests check.
MEASURE_JS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; } catch (e) {}
  }
  await new Promise(r => setTimeout(r, 50));
  const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const cs = getComputedStyle(art);
  const colW = art.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const desc = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.') : '');
  const scrollBox = (el, limit) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll' || ox === 'hidden') && a.clientWidth <= limit + 1) return true;
      if (a === art) break;
    }
    return false;
  };
  // 1. literal TeX / ASCII maths outside rendered maths and code (outputs are checked too)
  const clone = art.cloneNode(true);
  clone.querySelectorAll('mjx-container, script, style, .cell_input, a.headerlink, .toggle-button, ' +
                         'code, .MathJax_Preview, dt.sig, dl.field-list strong').forEach(e => e.remove());  // API signatures and parameter names are code
  clone.querySelectorAll('pre, div.highlight').forEach(e => { if (!e.closest('.cell_output')) e.remove(); });
  const text = clone.textContent.replace(/\s+/g, ' ');
  const raw = [];
  const pats = [/\$[^$\s][^$]{0,200}?\$/g, /\\[A-Za-z]{2,}/g, /\\[()\[\]]/g,
                /\b(lambda|sigma|psi|rho|theta|epsilon|delta|Delta|alpha|beta|gamma|mu|nu)_[A-Za-z0-9{(]/g,
                /->\s*(infinity|inf)\b/g];
  for (const p of pats) for (const m of text.matchAll(p))
    raw.push(text.slice(Math.max(0, m.index - 30), m.index + m[0].length + 30));
  // 2. content wider than the column without its own scroll box
  const wide = [];
  art.querySelectorAll('table, img, svg, figure, pre, mjx-container[display="true"], .cell_output > .output')
     .forEach(el => {
       if (el.closest('mjx-container') && el.tagName.toLowerCase() !== 'mjx-container') return;
       const w = el.getBoundingClientRect().width;
       const sw = Math.max(w, el.scrollWidth || 0);
       if (w > colW + 1 && !scrollBox(el, colW)) wide.push(`${desc(el)} ${Math.round(w)} px > column ${Math.round(colW)} px`);
       else if (sw > el.clientWidth + 1 && el.clientWidth > 0) {
         const ox = getComputedStyle(el).overflowX;
         if (!(ox === 'auto' || ox === 'scroll') && !scrollBox(el, colW) && el.tagName.toLowerCase() !== 'table')
           wide.push(`${desc(el)} content ${Math.round(sw)} px clipped in ${el.clientWidth} px`);
       }
     });
  // 3. page wider than the viewport, and what sticks out
  const vw = document.documentElement.clientWidth;
  const pageW = document.documentElement.scrollWidth;
  const culprits = [];
  if (pageW > vw + 1) {
    document.querySelectorAll('body *').forEach(el => {
      const r = el.getBoundingClientRect();
      if (r.right > vw + 1 && r.width > 0 && !scrollBox(el, vw) && culprits.length < 5) culprits.push(desc(el) + ` right ${Math.round(r.right)}`);
    });
  }
  // 4. images: alt text and resolution
  const images = [...art.querySelectorAll('img')].map(i => ({
    src: i.getAttribute('src') || '', alt: i.getAttribute('alt'), natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width, loaded: i.complete && i.naturalWidth > 0}));
  // 5. exercises and their solution toggles
  const TOGGLE = 'details, .dropdown, .toggle-hidden, button.toggle-button, .solution';
  const exercises = [];
  art.querySelectorAll('.exercise').forEach(ex => {
    let sib = ex.nextElementSibling, ok = false;
    while (sib && !sib.matches('.exercise, section, h1, h2, h3')) { if (sib.matches(TOGGLE) || sib.querySelector(TOGGLE)) { ok = true; break; } sib = sib.nextElementSibling; }
    exercises.push({where: 'exercise ' + (ex.id || desc(ex)), ok: ok || !!ex.querySelector(TOGGLE)});
  });
  art.querySelectorAll('section').forEach(sec => {
    const h = sec.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4');
    if (!h || !/^\s*(try it yourself|exercises)\b/i.test(h.textContent)) return;
    if (sec.querySelector('.exercise')) return;
    const items = [...sec.querySelectorAll(':scope > ol > li, :scope > ul > li')];
    const toggles = sec.querySelectorAll(TOGGLE).length;
    if (!items.length) { exercises.push({where: h.textContent.trim(), ok: toggles > 0}); return; }
    const inItems = items.filter(li => li.querySelector(TOGGLE)).length;
    items.forEach((li, k) => exercises.push({where: `${h.textContent.trim()} item ${k + 1}`,
                                             ok: !!li.querySelector(TOGGLE) || (inItems === 0 && toggles >= items.length)}));
  });
  // 6. raw program output and code in the way
  const stray = [...art.querySelectorAll('.cell_output .output.text_plain')]
      .map(e => e.textContent.trim()).filter(t => /^(['"])[^\n]*\1$/.test(t) || /^\w*Params\(/.test(t) || t === 'None')
      .map(t => t.slice(0, 80));
  // code inside a closed <details> (hide-input) is not shown, although Chromium still lays it out
  const codeLines = [...art.querySelectorAll('.cell_input')].filter(e => e.offsetHeight > 0 && !e.closest('details:not([open])'))
      .reduce((n, e) => n + e.textContent.trim().split('\n').length, 0);
  const tables = [...art.querySelectorAll('.cell_output table')].map(t => ({
      index: !!t.querySelector('tbody tr > th:first-child'),
      decimals: (t.textContent.match(/\d\.\d{6,}/g) || []).length}));
  return {colW, vw, pageW, culprits, raw, wide, images, exercises, stray, codeLines, tables,
          notes: /research notes/i.test(art.textContent),
          buttons: [...document.querySelectorAll('a[href*="colab.research"], a[href*="mybinder"], a[href*="github.com"]')].map(a => a.href),
          text: art.innerText};
}
"""


@pytest.fixture(scope="module")
def measured(built_book, server, browser) -> dict[str, dict[str, dict]]:
    """``{width name: {page: measurements}}`` plus load problems under ``"_problems"``."""
    out: dict[str, dict] = {"_problems": {}}
    for name, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=2)
        out[name] = {}
        for rel in pages(built_book):
            page = context.new_page()
            failed: list[str] = []
            errors: list[str] = []
            page.on("requestfailed", lambda r, failed=failed: failed.append(r.url))
            page.on("response", lambda r, failed=failed: r.status >= 400 and failed.append(f"{r.url} ({r.status})"))
            page.on("pageerror", lambda e, errs=errors: errs.append(str(e)))
            response = page.goto(f"{server}/{rel}", wait_until="load")
            m = page.evaluate(MEASURE_JS)
            m["status"] = response.status if response else None
            m["failed"] = [u for u in failed if urlparse(u).hostname == "127.0.0.1"]
            m["errors"] = [e for e in errors if not any(k in e for k in KNOWN_PAGE_ERRORS)]
            m["error_outputs"] = page.locator(".output.error, .output.traceback, div.cell_output .ansi-red-fg").count()
            if rel.endswith("dashboard.html"):
                page.screenshot(path=str(built_book.parent / f"dashboard-{width}.png"), full_page=True)
            out[name][rel] = m
            page.close()
        context.close()
    return out


def report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{page}: {p}" for page, ps in sorted(problems.items()) for p in ps[:6])


def test_every_chapter_and_page_was_built(built_book):
    built = set(pages(built_book))
    assert (built_book / "index.html").is_file()
    expected = {"book/intro.html", "book/methods.html", "book/reproducing.html", "book/teaching.html",
                "book/glossary.html", "book/bibliography.html", "book/generated/dashboard.html",
                "book/generated/status.html", "book/generated/verification.html", "book/api.html",
                *(f"book/generated/{c}.html" for c in CLAIMS)}
    assert expected <= built, f"missing pages: {expected - built}"


def test_pages_load_without_errors_or_failed_local_requests(measured):
    problems = {}
    for rel, m in measured["desktop"].items():
        ps = []
        if m["status"] != 200:
            ps.append(f"HTTP {m['status']}")
        if m["failed"]:
            ps.append(f"failed local requests {m['failed']}")
        if broken := [i["src"] for i in m["images"] if not i["loaded"]]:
            ps.append(f"images that did not load {broken}")
        if m["error_outputs"]:
            ps.append(f"{m['error_outputs']} error outputs")
        if m["errors"]:
            ps.append(f"JavaScript errors {m['errors']}")
        if ps:
            problems[rel] = ps
    assert not problems, report(problems)


def test_no_literal_tex_or_ascii_maths_outside_rendered_maths(measured):
    problems = {rel: [f"literal maths: ...{s}..." for s in m["raw"]] for rel, m in measured["desktop"].items() if m["raw"]}
    assert not problems, report(problems)


def test_nothing_is_wider_than_the_column_at_1280px_without_its_own_scroll_box(measured):
    problems = {rel: m["wide"] for rel, m in measured["desktop"].items() if m["wide"]}
    assert not problems, report(problems)


def test_no_page_is_wider_than_a_390px_phone(measured):
    problems = {rel: [f"page {m['pageW']} px wide in a {m['vw']} px viewport; sticking out: {m['culprits']}"]
                for rel, m in measured["phone"].items() if m["pageW"] > m["vw"] + 1}
    assert not problems, report(problems)


HASHLIKE = re.compile(r"^[./\w-]*[0-9a-f]{16,}[\w.]*$|\.(png|svg|jpe?g|gif)$", re.I)


def test_every_image_has_alt_text_that_says_what_it_shows(measured):
    problems = {}
    for rel, m in measured["desktop"].items():
        bad = [f"{i['src']}: alt {i['alt']!r}" for i in m["images"]
               if not i["alt"] or len(i["alt"].strip()) < 8 or HASHLIKE.search(i["alt"].strip())]
        if bad:
            problems[rel] = bad
    assert not problems, report(problems)


def test_figures_are_svg_or_at_least_twice_their_displayed_size(measured):
    problems = {}
    for rel, m in measured["desktop"].items():
        bad = [f"{i['src']}: {i['natural']} px bitmap shown at {i['shown']:.0f} px" for i in m["images"]
               if i["loaded"] and not re.search(r"\.svg($|\?)|^data:image/svg", i["src"])
               and i["natural"] < 1.9 * i["shown"]]
        if bad:
            problems[rel] = bad
    assert not problems, report(problems)


def test_no_stray_string_outputs_or_parameter_dumps(measured):
    problems = {rel: [f"raw output {t!r}" for t in m["stray"]] for rel, m in measured["desktop"].items() if m["stray"]}
    assert not problems, report(problems)


MAX_VISIBLE_CODE_LINES = 40
"""Code shown open on a chapter at load; the rest is removed (bookkeeping) or collapsed (hide-input)."""


def test_code_is_out_of_the_way(measured):
    problems = {rel: [f"{m['codeLines']} lines of code shown open (at most {MAX_VISIBLE_CODE_LINES}: tag "
                      f"bookkeeping cells remove-cell and method cells hide-input)"]
                for rel, m in measured["desktop"].items() if m["codeLines"] > MAX_VISIBLE_CODE_LINES}
    assert not problems, report(problems)


def test_output_tables_hide_the_index_and_round_their_numbers(measured):
    problems = {}
    for rel, m in measured["desktop"].items():
        bad = [f"table {k + 1}: " + ", ".join(filter(None, ["index shown" if t["index"] else "",
                                                            f"{t['decimals']} numbers with 6+ decimals" if t["decimals"] else ""]))
               for k, t in enumerate(m["tables"]) if t["index"] or t["decimals"]]
        if bad:
            problems[rel] = bad
    assert not problems, report(problems)


def test_every_chapter_shows_at_least_one_figure(measured):
    for claim in CLAIMS:
        m = measured["desktop"][f"book/generated/{claim}.html"]
        assert any(i["loaded"] for i in m["images"]), f"{claim} shows no figure"


def test_every_exercise_has_a_solution_toggle(measured):
    problems = {rel: [f"{e['where']}: no solution toggle" for e in m["exercises"] if not e["ok"]]
                for rel, m in measured["desktop"].items()}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, report(problems)
    for claim in CLAIMS:
        assert measured["desktop"][f"book/generated/{claim}.html"]["exercises"], f"{claim} has no exercises"


def test_no_page_cites_notes_that_are_not_in_the_book(measured):
    bad = [rel for rel, m in measured["desktop"].items() if m["notes"]]
    assert not bad, f"pages citing 'the research notes', which readers cannot see: {bad}"


def test_no_repository_or_launch_buttons_without_a_repository_url(measured, book_project):
    import yaml

    url = ((yaml.safe_load((book_project / "_config.yml").read_text()) or {}).get("repository") or {}).get("url")
    if url:
        pytest.skip("repository.url is set: buttons are expected")
    bad = {rel: m["buttons"] for rel, m in measured["desktop"].items() if m["buttons"]}
    assert not bad, f"buttons pointing at a repository although repository.url is empty: {bad}"


def records(book_project: Path) -> dict[str, dict]:
    return {c: json.loads((book_project / "book" / "generated" / "results" / f"{c}.json").read_text()) for c in CLAIMS}


def test_dashboard_shows_each_claims_verdict_and_each_parts_outcome(built_book, server, browser, book_project):
    page = browser.new_page()
    page.goto(f"{server}/book/generated/dashboard.html")
    rows = page.locator("table.dashboard tbody tr")
    assert rows.count() == len(CLAIMS)
    for claim, record in records(book_project).items():
        row = rows.filter(has=page.locator(f"a[href^='{claim}']"))
        assert row.count() == 1
        assert record["verdict"] in row.inner_text()
        section = page.locator("section").filter(has=page.locator(f"h3 + p a[href^='{claim}']")).last
        text = " ".join(section.text_content().split())  # provenance is in a collapsed box
        for part in record.get("parts") or []:
            line = section.locator("li").filter(has_text=part["name"]).first
            shown = "estimate" if part.get("role") == "estimate" else part["outcome"]  # an estimate decides nothing
            assert shown in line.inner_text(), f"{claim} {part['name']}: {shown} not shown"
        assert f"{record['preset']} preset" in text, f"{claim}: provenance (preset) not shown"
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_each_chapter_shows_its_sub_claims_beside_the_papers_words_and_its_deviations(
        built_book, server, browser, book_project, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    for claim, record in records(book_project).items():
        page.goto(f"{server}/book/generated/{claim}.html")
        text = " ".join(page.locator("article").inner_text().split())
        text = text.translate(str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}))
        for part in record.get("parts") or []:
            sub = part.get("subclaim")
            if sub:  # the paper's words, the role and the outcome are on the page
                words = " ".join(sub["statement"].split("$")[0].split())[:40]  # the words before any maths
                assert words in text, f"{claim} {part['name']}: the paper's words are not shown"
                assert part["role"] in text
        assert "Deviations from the pre-registration" in text, f"{claim}: deviations not shown"
        for dev in record.get("deviations") or []:
            assert dev["date"] in text, f"{claim}: deviation of {dev['date']} not shown"
    context.close()


def test_verification_page_has_a_column_per_verification_of_each_claim(built_book, server, browser, book_project):
    page = browser.new_page()
    page.goto(f"{server}/book/generated/verification.html")
    folder = book_project / "book" / "generated" / "verification"
    kinds = {p.name.split("--")[1].removesuffix(".json") for p in folder.glob("*.json")} if folder.is_dir() else set()
    tables = page.locator("table.verification")
    if kinds:
        assert tables.count() == len(CLAIMS)
        for i in range(tables.count()):
            headers = " ".join(tables.nth(i).locator("thead th").all_inner_texts())
            assert "Published" in headers and len(tables.nth(i).locator("thead th").all_inner_texts()) == 2 + len(kinds)
    page.close()


def test_dashboard_keeps_claim_and_verdict_visible_on_a_phone(built_book, server, browser, book_project):
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/book/generated/dashboard.html")
    for claim, record in records(book_project).items():
        row = page.locator("table.dashboard tbody tr").filter(has=page.locator(f"a[href^='{claim}']"))
        for el in (row.locator(f"a[href^='{claim}']"), row.locator(".sd-badge").first):
            box = el.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 391, \
                f"{claim}: claim or verdict off-screen at 390 px ({box})"
    context.close()


def test_math_renders_offline_with_the_vendored_mathjax(built_book, server, browser):
    page = browser.new_page()
    page.goto(f"{server}/book/methods.html", wait_until="load")
    page.wait_for_selector("mjx-container", timeout=15_000)
    assert page.locator("mjx-container").count() > 5
    assert not page.locator("text=\\lambda_").count()  # no raw TeX left on the page
    page.close()


def test_every_chapter_and_the_dashboard_show_provenance(measured, book_project):
    for rel in ["book/generated/dashboard.html", *(f"book/generated/{c}.html" for c in CLAIMS)]:
        text = measured["desktop"][rel]["text"]
        assert "Provenance" in text, f"{rel}: no provenance box"


def paper_records(book_project: Path) -> dict[str, dict]:
    folder = book_project / "book" / "generated" / "paper" / "results"
    return {c: json.loads((folder / f"{c}.json").read_text()) for c in CLAIMS if (folder / f"{c}.json").is_file()}


def test_dashboard_has_a_paper_preset_column_with_each_run_or_why_not(built_book, server, browser, book_project):
    page = browser.new_page()
    page.goto(f"{server}/book/generated/dashboard.html")
    headers = [h.strip() for h in page.locator("table.dashboard thead th").all_inner_texts()]
    assert headers[-1] == "Ours at the paper preset", headers
    published = paper_records(book_project)
    for claim in CLAIMS:
        cell = page.locator("table.dashboard tbody tr").filter(has=page.locator(f"a[href^='{claim}']")).locator("td").last
        text = " ".join(cell.inner_text().split())
        if claim in published:
            assert published[claim]["verdict"] in text, f"{claim}: paper-preset verdict not in its cell ({text})"
            assert cell.locator(f"a[href='paper/{claim}.html']").count() == 1, f"{claim}: no link to the paper-preset chapter"
        else:
            assert text.startswith("not run here ("), f"{claim}: a claim without a paper run must say why ({text})"
    section = " ".join(page.locator("section#at-the-paper-preset").inner_text().split())
    from flatminima.claims.registry import deviations

    for claim, rec in published.items():
        assert f"{len(rec['seeds'])} seeds" in section, f"{claim}: the paper run's seeds are not stated"
        for name in deviations(claim, "paper", rec["parameters"]):  # every change from the preset is named
            assert f" {name} " in section or f" {name}: " in section, f"{claim}: the reduction of {name} is not stated"
    page.close()


def test_every_paper_preset_chapter_is_built_with_its_provenance(built_book, measured, book_project):
    for claim, rec in paper_records(book_project).items():
        rel = f"book/generated/paper/{claim}.html"
        assert rel in measured["desktop"], f"{claim}: the paper-preset chapter was not built"
        assert "Provenance" in measured["desktop"][rel]["text"], f"{rel}: no provenance box"
        html = " ".join((built_book / rel).read_text(encoding="utf-8").split())  # the box is collapsed
        assert f"paper preset, {len(rec['seeds'])} seeds" in html, f"{rel}: the provenance does not name the paper run"
