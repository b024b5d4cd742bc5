"""End to end in a real browser, offline: the course site that ``drdd-edu course`` writes.

Builds the site from a tiny notebook folder (equations, a figure, a graded cell: seconds, not
the minutes of the real notebooks), opens ``index.html`` in headless Chromium (Debian's
``chromium`` through Playwright, as in ``test_e2e_browser.py``) with every request that is not
``file://`` aborted, follows a link, and checks that the equations are typeset by the bundled
MathJax (no raw ``$…$`` left), that the figure loads, and that "next" leads to the next page.
Skipped where chromium or playwright is missing, except under ``DRDD_EDU_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os
import re

import pytest
from course_notebooks import write_tiny_course
from test_e2e_browser import ARTIFACTS, CHROMIUM, _missing

TYPESET = (
    "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
    " && MathJax.Hub.queue.running === 0"
    " && document.querySelectorAll('.MathJax, .MathJax_Display').length > 0"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("DRDD_EDU_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from drdd_edu.course import run_course

    root = tmp_path_factory.mktemp("site")
    notebooks = write_tiny_course(root / "notebooks")
    mp = pytest.MonkeyPatch()
    mp.setenv("DRDD_EDU_FIGURES", str(root / "figures"))
    try:
        run_course(root / "build", smoke=True, notebook_dir=notebooks, progress=False)
    finally:
        mp.undo()
    return root / "build"


def _visible_text(page) -> str:  # noqa: ANN001
    """The rendered text of the notebook's markdown cells (MathJax's own hidden source excluded)."""
    return page.eval_on_selector_all(
        ".jp-MarkdownOutput", "els => els.map(e => e.innerText).join('\\n')"
    )


def test_site_works_offline(site):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    blocked: list[str] = []

    def offline(route) -> None:  # noqa: ANN001
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        context = browser.new_context()
        context.route("**/*", offline)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto((site / "index.html").as_uri())
        titles = page.eval_on_selector_all("tbody tr", "rows => rows.map(r => r.innerText)")
        assert len(titles) == 2 and "Equations and a figure" in titles[0], titles
        page.click("a[href='01_equations.html']")
        page.wait_for_url(re.compile(r"01_equations\.html$"))
        page.wait_for_function(TYPESET)
        page.screenshot(path=str(ARTIFACTS / "e2e_site_01.png"), full_page=True)
        text = _visible_text(page)
        assert "Equations and a figure" in text
        assert "$" not in text and "\\bar" not in text, f"raw TeX left on the page: {text[:300]}"
        # MathJax drew real glyphs: the typeset equations have a size
        sizes = page.eval_on_selector_all(
            ".MathJax, .MathJax_Display",
            "els => els.map(e => e.getBoundingClientRect().width)",
        )
        assert len(sizes) >= 3 and min(sizes) > 0, sizes
        images = page.eval_on_selector_all(
            ".jp-OutputArea-output img", "els => els.map(e => [e.complete, e.naturalWidth])"
        )
        assert images and all(done and width > 0 for done, width in images), images
        page.click("nav.drdd-nav.top a[rel='next']")
        page.wait_for_url(re.compile(r"02_graded\.html$"))
        page.wait_for_function(TYPESET)
        assert "\\sqrt" not in _visible_text(page)
        page.click("nav.drdd-nav.top a[rel='index']")
        page.wait_for_url(re.compile(r"index\.html$"))
        browser.close()
    assert not blocked, f"the site asked the network for {blocked}"
