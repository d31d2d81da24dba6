"""Every page loads in real headless Chromium with no exception; a screenshot of each.

Screenshots land in test-artifacts/screenshots/smoke-<page>.png (look at them).
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

#: page name -> st.navigation url path ("" = the default page, served at "/")
PAGE_PATHS = {
    "overview": "",
    "registry": "registry",
    "viewer": "viewer",
    "distributions": "distributions",
    "teaching": "teaching",
}

NAV_LINK = '[data-testid="stSidebarNavLink"]'


def _path_of(url: str) -> str:
    return urlparse(url).path.strip("/")


def test_navigation_lists_exactly_the_tested_pages(app) -> None:
    """A page added to app.py without a smoke test here fails this test."""
    page = app.open("")
    hrefs = [page.locator(NAV_LINK).nth(i).get_attribute("href") or "" for i in range(page.locator(NAV_LINK).count())]
    assert sorted(_path_of(h) for h in hrefs) == sorted(PAGE_PATHS.values())


@pytest.mark.parametrize("name", list(PAGE_PATHS))
def test_page_loads_without_exception(app, name: str) -> None:
    path = PAGE_PATHS[name]
    page = app.open(path)
    # An unknown url path falls back to the default page; make sure we are where we asked.
    assert _path_of(page.url) == path
    active = page.locator(f'{NAV_LINK}[aria-current="page"]')
    assert active.count() == 1
    assert _path_of(active.get_attribute("href") or "") == path

    app.assert_no_exception()
    app.assert_no_page_errors()
    main_text = page.locator('[data-testid="stMain"]').inner_text()
    assert len(main_text.strip()) > 40, f"{name} page is (nearly) empty: {main_text!r}"
    shot = app.screenshot(f"smoke-{name}")
    assert shot.stat().st_size > 10_000


def test_sidebar_names_the_open_demo_dataset(app) -> None:
    page = app.open("")
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text().lower()
    assert "demo" in sidebar, sidebar[:500]


def test_hostile_query_falls_back_without_exception(app) -> None:
    """Untrusted query parameters: a notice at most, never a traceback (issue 5, point 2)."""
    page = app.open(
        PAGE_PATHS["viewer"],
        study="../../../../etc/passwd",
        slice="-99999999999999999999",
        window="<script>alert(1)</script>",
        bogus="\u202e\u0000",
    )
    app.assert_no_exception()
    app.assert_no_page_errors()
    # Each rejected parameter is reported, and the viewer still shows a study.
    assert page.locator('[data-testid="stAlert"]').count() >= 1
    assert page.locator('[data-testid="stMain"]').get_by_text("Study", exact=False).count() >= 1
    # The script text is never rendered as markup.
    assert page.locator("script:has-text('alert(1)')").count() == 0
    app.screenshot("smoke-viewer-hostile-query")
