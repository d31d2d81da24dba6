"""What users do, in real headless Chromium against the app served on the demo set (issue 3, point 8).

Viewer: wheel and keys change the slice in the browser; the overlay toggle and a window preset change the
pixels; the lesion strip and the next-lesion button land on a slice with lesion; a click reads the HU value;
the URL restores the view and a hostile one falls back with a notice. Registry: a filter changes the row
count; selecting a row opens that study in the viewer. Distributions: the charts are drawn. Teaching: the
quiz takes an answer and the score moves; compare shows two linked viewers.

Every step leaves a screenshot in test-artifacts/screenshots/ix-*.png (look at them). Page loads, smoke
checks and the per-page exception check live in test_smoke.py; here each test still asserts that its own
interactions raised nothing (page, JavaScript console and server log).
"""

from __future__ import annotations

import re

import pytest

from . import SCREENSHOTS
from .helpers_interactions import (
    AXIAL,
    VIEWER,
    button,
    canvas_stats,
    expect_slice,
    info_text,
    lesion_area,
    metric_value,
    multiselect_add,
    open_overlays,
    pick_segment,
    poll,
    query_of,
    readout,
    slice_of,
    snap,
    strip_peak,
    viewer,
    voxel_point,
    wait_for_query,
    wait_grid_rows,
    wait_viewer_ready,
    wheel_over,
    widget,
)

#: Each step waits at most conftest.STEP_TIMEOUT_MS: a broken feature fails in seconds, not minutes.
pytestmark = pytest.mark.usefixtures("step_timeout")

ALERT = '[data-testid="stAlert"]'


def _open_viewer(app, **query):
    page = app.open("viewer", **query)
    app.assert_no_exception()
    root = viewer(page)
    wait_viewer_ready(root)
    return page, root


def _done(app) -> None:
    app.assert_no_exception()
    app.assert_no_page_errors()


# ---------------------------------------------------------------------------------------------- viewer


def test_wheel_and_keys_change_the_slice_in_the_browser(app, mask_study: int) -> None:
    sent: list[object] = []  # messages the page sends to the server (a rerun request is one)
    app.page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    page, root = _open_viewer(app, study=mask_study, slice=10)
    assert slice_of(root) == 9, "slice=10 in the URL is 1-based: the viewer must open on index 9"
    n = int(root.get_attribute("data-n"))
    axial = root.locator(AXIAL)
    before = canvas_stats(root)["hash"]
    paints = page.evaluate("() => window.__msvStats.paints")

    wheel_over(page, axial, 100)  # one notch down = one slice down the body
    expect_slice(root, 8)
    wheel_over(page, axial, -100)
    wheel_over(page, axial, -100)
    expect_slice(root, 10)
    poll(lambda: canvas_stats(root)["hash"], lambda h: h != before, what="the pixels of the new slice")
    poll(lambda: info_text(root, "bl"), lambda t: t.startswith(f"Slice 11 / {n}"), what="the slice label")

    root.focus()
    page.keyboard.press("ArrowDown")
    expect_slice(root, 9)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect_slice(root, 11)
    page.keyboard.press("End")
    expect_slice(root, n - 1)
    page.keyboard.press("Home")
    expect_slice(root, 0)
    page.keyboard.press("PageUp")
    expect_slice(root, max(1, int(n / 10 + 0.5)))  # PageUp = a tenth of the stack (JS Math.round)
    assert page.evaluate("() => window.__msvStats.paints") > paints
    # Scrolling runs in the browser: a burst of 12 slices costs at most a couple of messages to the server
    # (the settled position, for the URL), never one rerun per slice.
    app.wait()
    page.keyboard.press("Home")
    wait_for_query(page, "slice", "1")
    app.wait()
    burst_start = len(sent)
    for _ in range(12):
        page.keyboard.press("ArrowUp")
    expect_slice(root, 12)
    wait_for_query(page, "slice", "13")  # once scrolling settles, the URL follows the view
    app.wait()
    assert len(sent) - burst_start <= 3, f"{len(sent) - burst_start} messages to the server for 12 slices"
    assert slice_of(root) == 12, (
        f"the rerun that synced the URL (slice=13) moved the view to index {slice_of(root)}: a report of the "
        "browser's own position was taken for a jump asked by Python"
    )
    snap(root, SCREENSHOTS / "ix-viewer-scrolled.png")
    _done(app)


def test_overlay_toggle_changes_the_pixels(app, mask_study: int) -> None:
    page, root = _open_viewer(app, study=mask_study)  # opens on the slice with the largest lesion
    assert (lesion_area(root) or 0) > 0, f"study {mask_study} should open on a slice with lesion"
    with_overlay = poll(
        lambda: canvas_stats(root), lambda s: s["red"] > 100, what="the red lesion overlay on the default slice"
    )
    snap(root, SCREENSHOTS / "ix-viewer-overlay-on.png")

    open_overlays(page)  # the overlay widgets live in a popover
    widget(page, "viewer.show_mask").get_by_text("Lesions").click()
    app.wait()
    without = poll(
        lambda: canvas_stats(root), lambda s: s["red"] < with_overlay["red"] / 20, what="the overlay to disappear"
    )
    assert without["hash"] != with_overlay["hash"]
    snap(root, SCREENSHOTS / "ix-viewer-overlay-off.png")

    open_overlays(page)
    pick_segment(page, "viewer.mode", "Outline")  # outline: fewer red pixels than the fill
    app.wait()
    open_overlays(page)
    widget(page, "viewer.show_mask").get_by_text("Lesions").click()
    app.wait()
    outline = poll(
        lambda: canvas_stats(root),
        lambda s: 0 < s["red"] < with_overlay["red"],
        what="an outline overlay (some red, less than the fill)",
    )
    assert outline["red"] > without["red"]
    snap(root, SCREENSHOTS / "ix-viewer-overlay-outline.png")
    _done(app)


def test_window_preset_changes_the_pixels(app, mask_study: int) -> None:
    page, root = _open_viewer(app, study=mask_study, window="lung")
    lung = canvas_stats(root)
    assert "Lung" in info_text(root, "tr")
    snap(root, SCREENSHOTS / "ix-viewer-window-lung.png")

    pick_segment(page, "viewer.preset", "Bone")
    app.wait()
    wait_viewer_ready(root, stack_suffix=":bone")
    bone = poll(lambda: canvas_stats(root), lambda s: s["hash"] != lung["hash"], what="the bone-window pixels")
    # Lung window (L -600 / W 1500) shows lung grey; bone window (L 480 / W 2500) maps lung and soft tissue
    # much darker: the mean brightness must drop clearly.
    assert bone["mean"] < lung["mean"] - 10, (lung["mean"], bone["mean"])
    assert "Bone" in info_text(root, "tr")
    assert query_of(page).get("window") == "bone"
    assert float(widget(page, "viewer.level").locator("input").input_value()) == 480
    snap(root, SCREENSHOTS / "ix-viewer-window-bone.png")
    _done(app)


def test_lesion_navigation_lands_on_lesion_slices(app, mask_study: int) -> None:
    page, root = _open_viewer(app, study=mask_study, slice=1)
    expect_slice(root, 0)
    n = int(root.get_attribute("data-n"))

    button(root, "lesion ▶").click()
    k = slice_of(root)
    assert k > 0
    poll(lambda: lesion_area(root), lambda a: a is not None and a > 0, what="a lesion area on the slice")

    root.focus()
    page.keyboard.press("End")
    button(root, "◀ lesion").click()
    assert slice_of(root) < n - 1
    poll(lambda: lesion_area(root), lambda a: a is not None and a > 0, what="a lesion area (previous lesion)")

    # The strip: clicking its tallest bar jumps to the slice with the largest lesion.
    page.keyboard.press("Home")
    peak = strip_peak(root)
    assert peak is not None, "the lesion strip draws no bar for a study with a mask"
    root.locator("canvas.msv-strip").click(position={"x": peak["x"], "y": 40})
    k = slice_of(root)
    assert k > 0
    area = poll(lambda: lesion_area(root), lambda a: a is not None and a > 0, what="the lesion area at the peak")
    # The peak slice has the largest area: stepping off it never shows more.
    for key in ("ArrowUp", "ArrowDown", "ArrowDown"):
        page.keyboard.press(key)
        other = lesion_area(root)
        assert other is not None and other <= area + 1, f"slice {slice_of(root)} has more lesion than the peak"
    snap(root, SCREENSHOTS / "ix-viewer-lesion-strip.png")
    _done(app)


def test_pointer_reads_the_hu_value(app, mask_study: int) -> None:
    """The HU under the pointer is read in the browser from the int16 data (was: a click and a rerun)."""
    page, root = _open_viewer(app, study=mask_study)
    assert "Point at the image" in readout(root)["text"]
    x, y = voxel_point(root, "axial", 2, 2)  # the image corner: air outside the body
    page.mouse.move(x, y)
    got = poll(lambda: readout(root), lambda r: bool(r.get("hu")), what="the HU readout")
    assert int(got["hu"]) < -900, f"air in the image corner reads {got['hu']} HU"
    assert (got["row"], got["col"], got["plane"]) == ("2", "2", "axial")
    assert re.match(r"^-?\d+ HU · voxel z \d+, row 3, col 3 · x [\d.]+ mm, y [\d.]+ mm, z -?[\d.]+ mm", got["text"])
    app.screenshot("ix-viewer-hu-readout")
    _done(app)


def test_url_restores_the_view(app, registry) -> None:
    sid = int(registry["study_id"].iloc[len(registry) // 2])
    page, root = _open_viewer(app, study=sid, slice=5, window="bone")
    d = wait_viewer_ready(root, stack_suffix=":bone")
    assert int(d["slice"]) == 4
    assert info_text(root, "tl").startswith(f"study {sid} ")
    assert "Bone" in info_text(root, "tr")
    assert page.locator(f"{AXIAL}").count() == 1
    assert widget(page, "viewer.pick").locator("input").input_value().startswith(f"study {sid:04d}")
    q = query_of(page)
    assert (q.get("study"), q.get("slice"), q.get("window")) == (str(sid), "5", "bone")
    assert page.locator(ALERT).count() == 0, page.locator(ALERT).all_inner_texts()
    _done(app)


@pytest.mark.parametrize(
    ("query", "rejected"),
    [
        ({"study": "99999", "slice": "7"}, ("study", "slice")),
        ({"study": "1", "slice": "1e9", "window": "lung;drop table", "plane": "../etc"}, ("slice", "window", "plane")),
    ],
    ids=["unknown-study", "bad-slice-window-plane"],
)
def test_hostile_url_shows_a_notice(app, query: dict[str, str], rejected: tuple[str, ...]) -> None:
    page, root = _open_viewer(app, **query)
    notices = page.locator(ALERT).all_inner_texts()
    # One notice per rejected parameter, each naming it.
    assert len(notices) == len(rejected), notices
    for name in rejected:
        assert any(re.search(rf"\b{name}\b", t, re.I) for t in notices), (name, notices)
    assert root.get_attribute("data-n"), "the viewer still shows a study"
    assert page.locator("script:has-text('drop table')").count() == 0
    app.screenshot(f"ix-viewer-hostile-{query['study']}")
    _done(app)


# ---------------------------------------------------------------------------------------------- registry


def _shown_count(page) -> tuple[int, int]:
    text = page.locator('[data-testid="stMain"]').get_by_text(re.compile(r"^\d+ of \d+ studies")).first.inner_text()
    m = re.match(r"(\d+) of (\d+) studies", text)
    return int(m.group(1)), int(m.group(2))


def test_registry_filters_change_the_row_count(app, registry) -> None:
    page = app.open("registry")
    total = len(registry)
    assert _shown_count(page) == (total, total)
    wait_grid_rows(page, "registry.table", total)

    multiselect_add(page, "registry.w.class", "CT-1")
    app.wait()
    ct1 = registry[registry["category"] == "CT-1"]
    assert 0 < len(ct1) < total
    assert _shown_count(page) == (len(ct1), total)
    wait_grid_rows(page, "registry.table", len(ct1))
    app.screenshot("ix-registry-ct1")

    pick_segment(page, "registry.w.mask", "With mask")
    app.wait()
    with_mask = int(ct1["has_mask"].sum())
    assert 0 < with_mask < len(ct1)
    assert _shown_count(page) == (with_mask, total)
    wait_grid_rows(page, "registry.table", with_mask)
    app.screenshot("ix-registry-ct1-mask")
    _done(app)


def test_selecting_a_registry_row_opens_the_study(app, registry) -> None:
    sid = int(registry["study_id"].iloc[-2])
    page = app.open("registry")
    widget(page, "registry.w.ids").locator("input").fill(str(sid))
    widget(page, "registry.w.ids").locator("input").press("Enter")
    app.wait()
    wait_grid_rows(page, "registry.table", 1)
    # Glide data grid is a canvas: click the first data row (header ~36 px, rows 64 px) in the Study column.
    box = widget(page, "registry.table").bounding_box()
    page.mouse.click(box["x"] + 20, box["y"] + 36 + 32)
    app.wait()
    page.wait_for_url(re.compile(r"/viewer\?"), timeout=15_000)
    app.wait()
    root = viewer(page)
    wait_viewer_ready(root)
    assert info_text(root, "tl").startswith(f"study {sid} ")
    assert query_of(page).get("study") == str(sid)
    assert page.get_by_role("heading", name=re.compile(rf"Study {sid:04d}")).count() == 1
    app.screenshot("ix-registry-opened-in-viewer")
    _done(app)


# ---------------------------------------------------------------------------------------------- distributions


def test_distributions_draws_its_charts(app) -> None:
    page = app.open("distributions")
    charts = page.locator('[data-testid="stPlotlyChart"]')
    poll(lambda: charts.count(), lambda c: c >= 5, what="five plotly charts")
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        chart.locator(".main-svg").first.wait_for(state="attached")
        marks = chart.locator(".trace, .bars path, .point, .scatterlayer path").count()
        assert marks > 0, f"plotly chart {i} has no marks"
        box = chart.bounding_box()
        assert box and box["height"] > 150 and box["width"] > 250, f"chart {i} is squashed: {box}"
    bars = charts.first.locator(".bars path")
    assert bars.count() >= 5, "class chart: one bar per class here and per published count"
    app.screenshot("ix-distributions")
    _done(app)


def test_clicking_a_class_bar_filters_the_registry(app, registry) -> None:
    page = app.open("distributions")
    # First trace = this dataset's bars, one per class in CT-0..CT-4 order. Plotly's drag layer sits on top
    # of the bars, so click the bar's position with the mouse, as a user does.
    bar = widget(page, "dist.classes").locator(".trace.bars").first.locator(".point path").nth(2)
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    assert box is not None and box["height"] > 0
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/registry$"), timeout=15_000)
    app.wait()
    n_ct2 = int((registry["category"] == "CT-2").sum())
    assert _shown_count(page) == (n_ct2, len(registry))
    assert "CT-2" in widget(page, "registry.w.class").inner_text()
    wait_grid_rows(page, "registry.table", n_ct2)
    app.screenshot("ix-distributions-bar-to-registry")
    _done(app)


# ---------------------------------------------------------------------------------------------- teaching


def test_quiz_accepts_an_answer_and_the_score_updates(app) -> None:
    page = app.open("teaching")
    assert metric_value(page, "Score") == "0 / 0"
    pick_segment(page, "teaching.w.answer.0", "CT-1")
    app.wait()
    page.locator(".st-key-teaching-w-check button").click()
    app.wait()
    score = metric_value(page, "Score")
    alert = page.locator(ALERT).filter(has_text=re.compile(r"(Correct|Not quite):")).first
    verdict = alert.inner_text()
    assert score == ("1 / 1" if "Correct:" in verdict else "0 / 1"), (score, verdict)
    assert page.get_by_text(re.compile(r"Study \d+, class CT-\d")).count() == 1
    app.screenshot("ix-teaching-quiz-answered")

    page.locator(".st-key-teaching-w-next button").click()
    app.wait()
    assert page.get_by_role("heading", name="Question 2").count() == 1
    assert metric_value(page, "Score") == score
    _done(app)


def test_compare_shows_two_linked_viewers(app) -> None:
    page = app.open("teaching")
    page.get_by_role("tab", name="Compare two studies").click()
    app.wait()
    # The quiz tab holds a viewer too: the compare viewers are the ones keyed teaching.compare.a / .b.
    left = widget(page, "teaching.compare.a").locator(VIEWER)
    right = widget(page, "teaching.compare.b").locator(VIEWER)
    wait_viewer_ready(left)
    wait_viewer_ready(right)
    assert left.count() == 1 and right.count() == 1
    assert info_text(left, "tl") != info_text(right, "tl"), "compare shows the same study twice by default"
    r0 = slice_of(right)
    wheel_over(page, left.locator(AXIAL), 100)
    wheel_over(page, left.locator(AXIAL), 100)
    poll(lambda: slice_of(right), lambda k: k != r0, what="the right viewer to follow the left one")
    # One window for both: a preset key in the left viewer sets the right one's window too.
    left.focus()
    page.keyboard.press("4")  # bone
    poll(
        lambda: (right.get_attribute("data-level"), right.get_attribute("data-width")),
        lambda lw: lw == ("480", "2500"),
        what="the right viewer to take the left one's window",
    )
    app.screenshot("ix-teaching-compare")
    _done(app)
