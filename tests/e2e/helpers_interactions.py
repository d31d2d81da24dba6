"""Helpers for the browser interaction tests: the viewer, Streamlit widgets, waits.

The viewer (components/viewer_assets/viewer.js) renders into a shadow root; Playwright's CSS locators
pierce open shadow roots, so ``.msv`` finds the viewer's root element. It publishes::

    <div class="msv" data-slice="K" data-row="R" data-col="C" data-n="N" data-level=".." data-width=".."
         data-stack-key="<study token>:<window>" data-decoded="D" data-ready="1" data-zoom=".." ...>

``data-slice`` (the crosshair's axial index, as row and col are its coronal and sagittal ones) is set
synchronously on every change; the pixels follow in the next animation frame, so pixel checks poll
(:func:`poll`) instead of sleeping. The root element also carries a read-only ``msv`` object
(``voxelToClient(plane, x, y)``, ``state()``, ``pixel(plane, x, y)``) so a test can aim the real mouse at a
voxel it knows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

T = TypeVar("T")

VIEWER = ".msv"
AXIAL = 'canvas[data-testid="msv-axial"]'

# Per-canvas pixel statistics, computed in the page (a 512 x 512 canvas is 1 MB of RGBA: never ship it).
# "red" = the lesion overlay's hue: clearly more red than green and blue (grey CT pixels have r = g = b).
_CANVAS_STATS_JS = """(c) => {
    const g = c.getContext('2d');
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let red = 0, sum = 0, hash = 0;
    for (let i = 0; i < d.length; i += 4) {
        const r = d[i], gg = d[i + 1], b = d[i + 2];
        if (r - Math.max(gg, b) > 40) red++;
        sum += (r + gg + b) / 3;
        hash = (hash * 31 + r + 7 * gg + 13 * b) | 0;
    }
    const n = d.length / 4;
    return {red, mean: n ? sum / n : 0, hash, width: c.width, height: c.height};
}"""

# The strip canvas: the x (CSS px, relative to the strip) of the tallest lesion bar, or null when none.
_STRIP_PEAK_JS = """(c) => {
    const g = c.getContext('2d');
    const w = c.width, h = c.height;
    const d = g.getImageData(0, 0, w, h).data;
    const heights = [];
    for (let x = 0; x < w; x++) {
        let col = 0;
        for (let y = 0; y < h; y++) {
            const i = (y * w + x) * 4;
            if (d[i + 3] > 200 && d[i] - Math.max(d[i + 1], d[i + 2]) > 60) col++;
        }
        heights.push(col);
    }
    const bestH = Math.max(0, ...heights);
    if (bestH === 0) return null;
    // The middle of the first run of columns at the peak height: the bar's centre, never its anti-aliased edge.
    const first = heights.indexOf(bestH);
    let last = first;
    while (last + 1 < w && heights[last + 1] === bestH) last++;
    const r = c.getBoundingClientRect();
    return {x: ((first + last) / 2 + 0.5) * r.width / w, height: bestH};
}"""


def poll(
    fn: Callable[[], T],
    until: Callable[[T], bool],
    *,
    timeout_s: float = 15.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``fn`` until ``until(value)`` holds; return that value, or fail naming the last value seen.

    A condition wait, not a sleep: it returns as soon as the browser has caught up.
    """
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {value!r}")
        time.sleep(interval_s)
        value = fn()
    return value


# ------------------------------------------------------------------------------------------- the viewer


def viewer(page: Page, nth: int = 0, *, container: str = "") -> Locator:
    """The ``nth`` stack viewer's root element (inside its shadow root)."""
    return page.locator(f"{container} {VIEWER}".strip()).nth(nth)


def dataset(root: Locator) -> dict[str, str]:
    """The viewer root's ``data-*`` attributes."""
    return root.evaluate("e => ({...e.dataset})")


def slice_of(root: Locator) -> int:
    """The 0-based slice the viewer shows (``data-slice``)."""
    return int(root.get_attribute("data-slice") or "-1")


def expect_slice(root: Locator, k: int, timeout_s: float = 5.0) -> None:
    """Assert the viewer reaches 0-based slice ``k`` (set synchronously by the input handlers; a short poll
    only absorbs input-dispatch latency)."""
    poll(lambda: slice_of(root), lambda v: v == k, timeout_s=timeout_s, what=f"the viewer to show slice index {k}")


def wait_viewer_ready(root: Locator, *, stack_suffix: str | None = None, timeout_s: float = 30.0) -> dict[str, str]:
    """Wait until the viewer has a stack (optionally for a given window) and its current slice is painted.

    ``stack_suffix`` is the window part of ``data-stack-key`` (e.g. ``":bone"``) after a window change.
    The whole stack is decoded (``data-ready="1"``) so wheel/key steps never land on a not-yet-decoded slice.
    """
    root.wait_for(state="visible", timeout=timeout_s * 1000)

    def ok(d: dict[str, str]) -> bool:
        return (
            d.get("ready") == "1"
            and "slice" in d
            and (stack_suffix is None or d.get("stackKey", "").endswith(stack_suffix))
        )

    d = poll(lambda: dataset(root), ok, timeout_s=timeout_s, what="the viewer stack to be decoded")
    poll(
        lambda: canvas_stats(root)["mean"], lambda m: m > 0, timeout_s=timeout_s, what="the axial canvas to be painted"
    )
    return d


def canvas_stats(root: Locator, selector: str = AXIAL) -> dict[str, Any]:
    """``{red, mean, hash, width, height}`` of a canvas in the viewer (see ``_CANVAS_STATS_JS``)."""
    return root.locator(selector).evaluate(_CANVAS_STATS_JS)


def info_text(root: Locator, corner: str) -> str:
    """Text of an info label on the image: ``tl`` study, ``tr`` window, ``bl`` slice, ``br`` lesion area."""
    return root.locator(f".msv-info.{corner}").inner_text()


def painted_labels(root: Locator, timeout_s: float = 10.0) -> dict[str, str]:
    """The image's info labels once they describe the current ``data-slice`` (they follow on the next paint)."""
    js = """e => ({slice: e.dataset.slice,
                  tl: e.querySelector('.msv-info.tl').textContent, tr: e.querySelector('.msv-info.tr').textContent,
                  bl: e.querySelector('.msv-info.bl').textContent, br: e.querySelector('.msv-info.br').textContent})"""
    return poll(
        lambda: root.evaluate(js),
        lambda d: d["bl"].startswith(f"Slice {int(d['slice']) + 1} /"),
        timeout_s=timeout_s,
        what="the slice label to follow data-slice",
    )


def lesion_area(root: Locator) -> float | None:
    """Lesion area (mm^2) the viewer shows for the current slice; None when the study has no mask."""
    m = re.search(r"lesion\s+([\d.]+)", painted_labels(root)["br"])
    return float(m.group(1)) if m else None


def button(root: Locator, text: str) -> Locator:
    """A button of the viewer's own bar, by its exact text (e.g. ``"lesion ▶"``)."""
    return root.locator("button", has_text=re.compile(rf"^{re.escape(text)}$"))


def strip_peak(root: Locator) -> dict[str, float] | None:
    """Where the lesion strip's tallest bar is (``{x, height}``, CSS px), or None when it draws no bar."""
    return root.locator("canvas.msv-strip").evaluate(_STRIP_PEAK_JS)


def wheel_over(page: Page, target: Locator, delta_y: float) -> None:
    """One wheel event of ``delta_y`` pixels with the pointer over ``target``."""
    box = target.bounding_box()
    assert box is not None, "wheel target is not visible"
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, delta_y)


# ------------------------------------------------------------------------------------------- Streamlit


def api(root: Locator, method: str, *args: Any) -> Any:
    """Call one of the viewer root's read-only helpers (``voxelToClient``, ``state``, ``pixel``)."""
    return root.evaluate("(e, a) => e.msv[a[0]](...a[1])", [method, list(args)])


def voxel_point(root: Locator, plane: str, x: float, y: float) -> tuple[float, float]:
    """Viewport coordinates of the centre of image pixel (x, y) of a plane (axial: x = column, y = row)."""
    p = api(root, "voxelToClient", plane, x, y)
    return float(p["x"]), float(p["y"])


def readout(root: Locator) -> dict[str, str]:
    """The HU readout line: its text and data (``hu``, ``z``, ``row``, ``col``, ``plane``)."""
    return root.locator(".msv-readout").evaluate("e => ({text: e.textContent, ...e.dataset})")


def open_overlays(page: Page) -> None:
    """Open the viewer page's "Overlays" popover (lesion and lung overlay widgets)."""
    panel = widget(page, "viewer.show_mask")
    if not panel.count() or not panel.first.is_visible():
        page.get_by_role("button", name=re.compile("Overlays")).first.click()
        panel.first.wait_for(state="visible")


def widget(page: Page, key: str) -> Locator:
    """The element container Streamlit gives a widget with ``key`` (dots become dashes in the class)."""
    return page.locator(f".st-key-{re.sub(r'[^A-Za-z0-9_-]', '-', key)}")


def pick_segment(page: Page, key: str, label: str) -> None:
    """Click the option of a ``st.segmented_control`` whose text starts with ``label``."""
    widget(page, key).locator("button", has_text=re.compile(rf"^\s*{re.escape(label)}")).first.click()


def multiselect_add(page: Page, key: str, option_prefix: str) -> None:
    """Open a ``st.multiselect`` and choose the option whose text starts with ``option_prefix``."""
    widget(page, key).locator('input[role="combobox"]').click()
    page.get_by_role("option", name=re.compile(rf"^\s*{re.escape(option_prefix)}")).first.click()
    page.keyboard.press("Escape")


def metric_value(page: Page, label: str | re.Pattern[str]) -> str:
    """Value text of the ``st.metric`` whose label contains ``label``."""
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )
    return metric.first.locator('[data-testid="stMetricValue"]').inner_text().strip()


def grid_data_rows(page: Page, key: str) -> int:
    """Data rows of a ``st.dataframe`` (glide-data-grid): its ``aria-rowcount`` minus the header row."""
    grid = widget(page, key).locator('[role="grid"]').first
    count = grid.get_attribute("aria-rowcount")
    assert count is not None, "the data grid exposes no aria-rowcount"
    return int(count) - 1


def wait_grid_rows(page: Page, key: str, expected: int, timeout_s: float = 15.0) -> int:
    """Wait until the grid shows ``expected`` data rows (it re-renders just after the script run ends)."""
    return poll(
        lambda: grid_data_rows(page, key),
        lambda n: n == expected,
        timeout_s=timeout_s,
        what=f"the table {key!r} to show {expected} rows",
    )


def query_of(page: Page) -> dict[str, str]:
    """The page URL's query parameters (last value of each), read from the page itself.

    (``page.url`` is only refreshed while Playwright processes events, so a poll on it alone never sees a
    ``history.replaceState`` the app makes meanwhile.)
    """
    return page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")


def wait_for_query(page: Page, name: str, value: str, timeout_ms: float = 15_000) -> None:
    """Wait until the URL's query parameter ``name`` equals ``value``."""
    page.wait_for_function(
        "([n, v]) => new URLSearchParams(location.search).get(n) === v", arg=[name, value], timeout=timeout_ms
    )


def snap(root_or_page: Any, path: Path) -> Path:
    """Element (or page) screenshot to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root_or_page.screenshot(path=str(path))
    return path


# ------------------------------------------------------------------------------------------- ground truth


def demo_registry(cache_dir: Path) -> pd.DataFrame:
    """The served demo's registry, read straight from its spreadsheet: the tests' independent truth.

    The app generates the demo under ``<MOSMED_CACHE>/demo`` in the MosMedData layout; ``has_mask`` is a
    non-empty ``mask_file``.
    """
    xlsx = Path(cache_dir) / "demo" / "dataset_registry.xlsx"
    assert xlsx.is_file(), f"the served demo has no registry at {xlsx}"
    df = pd.read_excel(xlsx)
    df["has_mask"] = df["mask_file"].notna() & df["mask_file"].astype(str).str.strip().ne("")
    return df
