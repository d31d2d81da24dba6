"""Full-page screenshots of every page of the app, for the README (docs/img/).

Serves the app itself (on 127.0.0.1 and a free port, with the dataset and cache the
app would use: MOSMED_DATA / MOSMED_CACHE, else the demo set and data_cache/) or
photographs one already running (``--url``). Chromium is Debian's /usr/bin/chromium.

Usage::

    make screenshots                                   # all pages -> docs/img/<page>.png
    .venv/bin/python scripts/screenshots.py --url http://localhost:8501 --pages viewer
    .venv/bin/python scripts/screenshots.py --viewer-query "study=3&slice=20&window=lung"
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import (  # noqa: E402  (the harness lives with the browser tests)
    FIRST_RUN_TIMEOUT_S,
    SCREENSHOTS,
    AppServer,
    browser_unavailable_reason,
    exception_texts,
    launch_chromium,
    open_page,
    save_screenshot,
)

FAILED_DIR = SCREENSHOTS  # test-artifacts/screenshots: pictures of pages that failed

#: page name (also the PNG's name) -> st.navigation url path ("" = default page)
PAGES = {
    "overview": "",
    "registry": "registry",
    "viewer": "viewer",
    "distributions": "distributions",
    "teaching": "teaching",
}


def pick_viewer_query() -> dict[str, str]:
    """A study worth showing in the viewer: a masked study with a middling lesion load, at its
    slice with the most lesion, in the lung window. Empty when the core cannot tell."""
    try:
        from mosmed.config import default_cache_root, default_data_root
        from mosmed.dataset import Dataset

        root, _is_demo = default_data_root()
        ds = Dataset(root, default_cache_root())
        summary = ds.summary()
        masked = summary[(summary["has_mask"]) & (summary["status"] == "ok")]
        if masked.empty:
            return {}
        # A study with a middling lesion load: the overlay then shows lesions among normal lung (the most
        # involved study is red from wall to wall).
        ranked = masked.sort_values("lesion_ml", ascending=False)
        best = ranked.iloc[len(ranked) // 3]
        study = ds.open_study(int(best["study_id"]))
        areas = study.stats.lesion_area_mm2
        query = {"study": str(int(best["study_id"])), "window": "lung"}
        if areas is not None and len(areas):
            query["slice"] = str(int(areas.argmax()) + 1)  # links are 1-based
        return query
    except Exception as exc:  # only a nicer default; the page itself still gets its shot
        print(f"screenshots: no viewer study picked ({exc}); using the viewer's default", file=sys.stderr)
        return {}


def stage_viewer(page, extra_dir: Path | None = None) -> None:
    """Put the viewer in a state worth showing: a line measured across the lesion, the pointer's HU read.

    With ``extra_dir``, also photograph more states there (MinIP slab, one large coronal view).
    """
    root = page.locator(".msv").first
    root.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("(e) => e.dataset.ready === '1'", arg=root.element_handle(), timeout=60_000)
    root.locator(".msv-stage").scroll_into_view_if_needed()
    st = root.evaluate("e => e.msv.state()")
    r, c = st["cursor"]["r"], st["cursor"]["c"]
    to = lambda x, y: root.evaluate("(e, a) => e.msv.voxelToClient('axial', a[0], a[1])", [x, y])  # noqa: E731
    root.focus()
    page.keyboard.press("l")
    a, b = to(c - 45, r - 30), to(c + 40, r + 25)
    page.mouse.move(a["x"], a["y"])
    page.mouse.down()
    page.mouse.move(b["x"], b["y"], steps=8)
    page.mouse.up()
    page.keyboard.press("x")
    h = to(c - 60, r + 10)
    page.mouse.move(h["x"], h["y"])
    page.wait_for_timeout(300)
    if extra_dir is None:
        return
    extra_dir.mkdir(parents=True, exist_ok=True)
    root.locator("select.msv-slab").select_option("minip")
    page.wait_for_timeout(400)
    root.screenshot(path=str(extra_dir / "viewer-minip.png"))
    root.locator("select.msv-slab").select_option("off")
    root.focus()
    page.keyboard.press("v")
    page.keyboard.press("g")
    page.wait_for_timeout(400)
    root.screenshot(path=str(extra_dir / "viewer-coronal.png"))
    page.keyboard.press("g")
    for _ in range(2):
        page.keyboard.press("v")
    page.wait_for_timeout(300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="photograph this running app instead of serving one")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="output folder")
    parser.add_argument("--pages", nargs="+", choices=sorted(PAGES), default=list(PAGES))
    parser.add_argument("--viewer-query", help='query string for the viewer, e.g. "study=3&slice=20"')
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--max-height", type=int, default=3200, help="cap for full-page shots")
    parser.add_argument(
        "--viewer-states",
        type=Path,
        default=None,
        help="also photograph more viewer states (MinIP, coronal) into this folder",
    )
    parser.add_argument(
        "--settle-ms", type=int, default=1500, help="extra wait after each run, for components and charts to paint"
    )
    args = parser.parse_args(argv)

    reason = browser_unavailable_reason()
    if reason:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    server: AppServer | None = None
    if args.url:
        base_url = args.url
    else:
        cache = Path(os.environ.get("MOSMED_CACHE", REPO / "data_cache"))
        data = os.environ.get("MOSMED_DATA")
        log = Path(tempfile.gettempdir()) / "mosmed-screenshots-server.log"
        server = AppServer(cache_dir=cache, log_path=log, data_dir=Path(data) if data else None)
        print(f"screenshots: serving app.py (cache {cache}, log {log})")
        try:
            server.start()
        except RuntimeError as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 1
        base_url = server.url

    viewer_query = dict(parse_qsl(args.viewer_query)) if args.viewer_query else None
    failures = 0
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            context = browser.new_context(viewport={"width": args.width, "height": args.height})
            page = context.new_page()
            # The first load may generate the demo set and build its cache.
            open_page(page, base_url, "", timeout_ms=FIRST_RUN_TIMEOUT_S * 1000)
            if viewer_query is None and "viewer" in args.pages:
                viewer_query = pick_viewer_query()
            for name in args.pages:
                query = viewer_query if name == "viewer" else None
                started = time.monotonic()
                open_page(page, base_url, PAGES[name], query or None)
                page.wait_for_timeout(args.settle_ms)
                if name == "viewer":
                    stage_viewer(page, args.viewer_states)
                errors = exception_texts(page)
                # A page showing an exception never replaces a good picture in docs/.
                out_dir = FAILED_DIR if errors else args.out
                path = save_screenshot(
                    page, f"{name}-FAILED" if errors else name, out_dir, full_page=True, max_height=args.max_height
                )
                took = time.monotonic() - started
                if errors:
                    failures += 1
                    print(f"screenshots: {name}: EXCEPTION on page: {errors[0][:300]}", file=sys.stderr)
                print(
                    f"screenshots: {name:<14} {path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
                    f"  ({took:.1f} s{', query ' + str(query) if query else ''})"
                )
            browser.close()
    finally:
        if server is not None:
            server.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
