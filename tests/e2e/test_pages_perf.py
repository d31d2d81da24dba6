"""What the fast pages do, seen in headless Chromium (issue 11): the registry fetches the thumbnails of the rows
it draws and no others, and scrolling fetches the next ones; a downloaded CSV holds the filtered rows, made on
the click; the distributions page draws its class chart first and every other chart after it, by itself; a
paged registry's row opens the viewer. Screenshots in test-artifacts/screenshots/pp-*.png.
"""

from __future__ import annotations

import csv
import io
import re

import pytest

from . import ARTIFACTS, AppServer
from .conftest import StreamlitApp
from .helpers_interactions import (
    info_text,
    multiselect_add,
    poll,
    query_of,
    viewer,
    wait_grid_rows,
    wait_viewer_ready,
    widget,
)

#: Each step waits at most conftest.STEP_TIMEOUT_MS: a broken feature fails in seconds, not minutes.
pytestmark = pytest.mark.usefixtures("step_timeout")

# The media endpoint's PNGs (thumbnails); Streamlit's own fonts live under /static/media/, not here.
MEDIA_PNGS_JS = """() => performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)
  .filter(p => /(^|\\/)media\\/[0-9a-f]+\\.png$/.test(p) && !p.includes('/static/'))"""


def _done(app) -> None:
    app.assert_no_exception()
    app.assert_no_page_errors()


def test_registry_fetches_thumbnails_of_the_drawn_rows_only(app, registry) -> None:
    page = app.open("registry")
    total = len(registry)
    wait_grid_rows(page, "registry.table", total)
    # Rows in view: the table is 560 px high, 64 px a row, under a header.
    in_view = 560 // 64
    assert total > in_view + 2, "the demo must have rows below the fold for this test to mean anything"
    fetched = poll(
        lambda: page.evaluate(MEDIA_PNGS_JS),
        lambda v: len(v) >= min(total, in_view - 1),
        what="the thumbnails of the rows in view",
    )
    page.wait_for_timeout(600)
    fetched = page.evaluate(MEDIA_PNGS_JS)
    assert len(set(fetched)) <= in_view + 2 < total, f"{len(set(fetched))} thumbnails fetched for {total} rows"
    # A fetched thumbnail is a real PNG, served by the app.
    resp = page.request.get(f"{app.url}/{fetched[0].lstrip('/')}")
    assert resp.ok and resp.headers.get("content-type", "").startswith("image/png")
    assert resp.body().startswith(b"\x89PNG")
    # Nothing in the web socket's table data is an image: the rows carry URLs.
    app.screenshot("pp-registry-thumbnails", full_page=False)
    # Scrolling the grid to the end fetches the thumbnails of the rows it then draws.
    grid = widget(page, "registry.table").locator("canvas").first
    box = grid.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 64 * total)
    poll(
        lambda: len(set(page.evaluate(MEDIA_PNGS_JS))),
        lambda n: n > len(set(fetched)),
        what="thumbnails of the rows scrolled into view",
    )
    _done(app)


def test_csv_download_holds_the_filtered_rows(app, registry) -> None:
    page = app.open("registry")
    multiselect_add(page, "registry.w.class", "CT-1")
    app.wait()
    n = int((registry["category"] == "CT-1").sum())
    wait_grid_rows(page, "registry.table", n)
    with page.expect_download() as dl:
        widget(page, "registry.w.csv").locator("button").click()
    rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
    assert len(rows) == n and {r["category"] for r in rows} == {"CT-1"}
    assert rows[0]["study_id"] and "study_file" in rows[0]
    _done(app)


def test_distributions_draws_the_class_chart_first_then_the_rest_by_itself(app) -> None:
    page = app.page
    # Record, in the page, when the first and when the sixth Plotly chart got its SVG.
    page.add_init_script("""
        window.__charts = {};
        const look = () => {
          const n = document.querySelectorAll('.js-plotly-plot .main-svg').length;
          if (n >= 1 && !window.__charts.first) window.__charts.first = performance.now();
          if (n >= 6 && !window.__charts.all) window.__charts.all = performance.now();
          if (!window.__charts.all) requestAnimationFrame(look);
        };
        requestAnimationFrame(look);""")
    app.open("distributions")  # waits until no skeleton is left: the rest has been drawn
    charts = page.locator('[data-testid="stPlotlyChart"]')
    poll(lambda: charts.count(), lambda c: c >= 6, what="six plotly charts")
    times = poll(
        lambda: page.evaluate("() => window.__charts"), lambda t: bool(t.get("all")), what="the page's chart timestamps"
    )
    assert times["first"] < times["all"], times
    assert page.locator('[data-testid="stSkeleton"]').count() == 0
    # The class chart still takes clicks (a fresh figure each run): CT-2 opens the registry filtered.
    bar = widget(page, "dist.classes").locator(".trace.bars").first.locator(".point path").nth(2)
    box = bar.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/registry$"), timeout=15_000)
    app.wait()
    assert "CT-2" in widget(page, "registry.w.class").inner_text()
    app.screenshot("pp-distributions-then-registry", full_page=False)
    _done(app)


# --------------------------------------------------------------------------------------- a paged registry


@pytest.fixture(scope="module")
def big_server(_browser_available, tmp_path_factory):
    """The app on a fabricated 2500-row registry (two pages of 2000), as the benchmark makes its 100 000 rows."""
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parents[1])
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from test_pages_perf import make_big

    big = make_big(tmp_path_factory.mktemp("pp-big"), 2500)
    server = AppServer(
        cache_dir=big.cache,
        log_path=ARTIFACTS / "e2e-server-big.log",
        data_dir=big.root,
        env={"MOSMED_DB": f"sqlite:///{big.db}"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_row_of_the_second_page_opens_its_study(page, big_server) -> None:
    app = StreamlitApp(page, big_server.url, big_server)
    page = app.open("registry")
    wait_grid_rows(page, "registry.table", 2000)
    assert page.get_by_text(re.compile(r"^Rows 1–2,000 of 2,500")).count() == 1
    widget(page, "registry.w.page").get_by_role("button", name="Page 2", exact=True).click()
    app.wait()
    wait_grid_rows(page, "registry.table", 500)
    app.screenshot("pp-big-registry-page-2", full_page=False)
    box = widget(page, "registry.table").bounding_box()
    page.mouse.click(box["x"] + 20, box["y"] + 36 + 32)  # the first row of page 2: study 2001
    page.wait_for_url(re.compile(r"/viewer\?"), timeout=30_000)
    app.wait()
    root = viewer(page)
    wait_viewer_ready(root, timeout_s=60)
    assert info_text(root, "tl").startswith("study 2001 ") and query_of(page).get("study") == "2001"
    _done(app)
