"""The pages that list every study (registry, distributions), served on the 1110-study set, first paint in
Debian's Chromium."""

from __future__ import annotations

import asyncio

from common import APP_DONE_JS, OUT, Context, median, prepare, say, summary

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "registry_first_paint_ms": ("<=", 1000, "ms", "registry page, 1110 rows, median first paint"),
    "distributions_first_paint_ms": ("<=", 1000, "ms", "distributions page, 1110 studies, median"),
}


async def bench_pages(res: dict, server, quick: bool) -> None:
    from playwright.async_api import async_playwright

    from tests.e2e import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    checks = {
        # the table (1110 rows) drawn / the charts drawn, and the run finished
        "registry": ('[data-testid="stDataFrame"]', 1),
        "distributions": (".js-plotly-plot .main-svg", 5),
    }
    reps = 3 if quick else 7
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        for name, (css, n) in checks.items():
            times = []
            for i in range(reps + 1):  # the first load warms the server's caches: reported apart
                ctx = await browser.new_context(viewport=VIEWPORT)
                page = await ctx.new_page()
                await page.goto(f"{server.url}/{name}", wait_until="commit")
                t = await page.wait_for_function(APP_DONE_JS, arg=[css, n], timeout=120_000, polling="raf")
                ms = float(await t.json_value())
                if i == 0:
                    res[f"{name}_first_paint_cold_server_ms"] = round(ms, 1)
                else:
                    times.append(ms)
                if name == "registry" and i == 1:
                    res["registry_rows_shown"] = await page.evaluate(
                        "() => document.body.innerText.match(/\\b1110\\b/) ? 1110 : null")
                await ctx.close()
            res[f"{name}_first_paint"] = summary(times)
            res[f"{name}_first_paint_ms"] = round(median(times), 1)
        await browser.close()


def run(res: dict, ctx: Context) -> None:
    if ctx.skip_browser:
        return
    from components.tables import thumb_data_uri
    from tests.e2e import AppServer

    say("browser: registry and distributions on 1110 studies ...")
    thumbs = [p for p in prepare.ROWS_CACHE.glob("*/thumbs/*.png")]
    # The registry table embeds every thumbnail as a data: URI (components.tables.thumb_data_uri).
    res["registry_thumbnails"] = len(thumbs)
    res["registry_thumbnail_payload_mb"] = round(
        sum(len(thumb_data_uri(p.read_bytes()) or "") for p in thumbs) / 2**20, 2)
    server = AppServer(cache_dir=prepare.ROWS_CACHE, log_path=OUT / "server-rows.log", data_dir=prepare.ROWS)
    server.start()
    try:
        asyncio.run(bench_pages(res, server, ctx.quick))
    except Exception as e:  # noqa: BLE001
        res.setdefault("errors", []).append(f"pages: {type(e).__name__}: {e}")
        say(f"pages benchmark failed: {e}")
    finally:
        server.stop()
