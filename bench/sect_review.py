"""Case review (issue 12): one save into the review database, and "save and next unreviewed" in Chromium.

- ``review_save_p95_ms``: ``ReviewStore.save`` (one write transaction: dataset and reader rows, the event,
  its flags, the latest pointer) into the default backend, SQLite in WAL mode with ``synchronous=FULL``, on
  the 1110-row registry's identity, over random studies and three readers; timed in this process. The same
  on a throwaway PostgreSQL cluster (tests/pg.py) is reported beside it when the binaries are there.
- ``review_next_unreviewed_p95_ms``: in the viewer on the full-size set (cache warm), Alt+2 grades, then
  Alt+N saves and opens the next unreviewed study; from the Alt+N keydown's own timestamp to the canvas draw
  of the next study's first slice (``window.__msvStats``, the viewer's clock, as in sect_viewer).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time

from common import OUT, Context, p95, prepare, say, summary

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "review_save_p95_ms": ("<=", 100, "ms", "one review save (SQLite, WAL, synchronous=FULL)"),
    "review_next_unreviewed_p95_ms": ("<=", 600, "ms", "Alt+N keydown -> next study's first slice painted"),
}

READER = "Bench reader"


def _saves(url: str, n: int) -> list[float]:
    from mosmed.registry import load_registry
    from mosmed.reviews.db import open_database
    from mosmed.reviews.identity import dataset_identity
    from mosmed.reviews.model import FLAGS, GRADES, Reader, Review
    from mosmed.reviews.store import ReviewStore

    reg = load_registry(prepare.ROWS)
    ident = dataset_identity(reg)
    ids = reg.ids
    store = ReviewStore(open_database(url))
    rng = random.Random(12)
    readers = [Reader.named(f"bench {i}") for i in range(3)]
    out = []
    try:
        for k in range(n + 10):
            review = Review(
                rng.choice(GRADES),
                tuple(rng.sample(FLAGS, rng.choice((0, 0, 1, 2)))),
                "a note of a few words" if rng.random() < 0.3 else "",
            )
            t = time.perf_counter()
            store.save(ident, rng.choice(ids), rng.choice(readers), review, valid_ids=set(ids))
            if k >= 10:  # the first saves create the dataset and reader rows and warm the pool
                out.append((time.perf_counter() - t) * 1000)
    finally:
        store.db.dispose()
    return out


def bench_save(res: dict, quick: bool) -> None:
    n = 100 if quick else 400
    base = OUT / "review-bench"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    lat = _saves(f"sqlite:///{base / 'reviews.db'}", n)
    res["review_save_sqlite"] = summary(lat)
    res["review_save_p95_ms"] = round(p95(lat), 2)
    try:
        from tests import pg
    except ImportError:
        return
    if pg.find_pg_bin() is None:
        res["review_save_postgresql"] = "PostgreSQL binaries not found"
        return
    cluster = pg.start_cluster()
    try:
        lat = _saves(cluster.create_database("bench"), n)
        res["review_save_postgresql"] = summary(lat)
        res["review_save_postgresql_p95_ms"] = round(p95(lat), 2)
    finally:
        cluster.stop()


KEY_TIMER = """() => {
  if (window.__reviewKeyInstalled) return;
  window.__reviewKeyInstalled = true;
  window.addEventListener('keydown', (e) => { if (e.altKey && e.code === 'KeyN') window.__reviewKeyT = e.timeStamp; },
                          true);
}"""


async def bench_next(res: dict, server, quick: bool) -> None:
    from common import wait_app
    from playwright.async_api import async_playwright
    from sect_viewer import INSTALL_CLICK_TIMER, open_viewer, wait_study

    from tests.e2e import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    warm = list(prepare.WARM_IDS)
    steps = 6 if quick else 15
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        ctx = await browser.new_context(viewport=VIEWPORT)
        page = await ctx.new_page()
        await open_viewer(page, server.url, warm[0])
        box = page.locator(".st-key-app-w-reader-name input").first
        await box.fill(READER)
        await box.press("Enter")
        await wait_app(page)
        await page.evaluate(KEY_TIMER)
        await page.evaluate(INSTALL_CLICK_TIMER)
        lat, server_ms = [], []
        for _ in range(steps):
            await page.keyboard.press("Alt+2")
            await wait_app(page)
            before = await page.evaluate("() => performance.now()")
            await page.keyboard.press("Alt+N")
            rec = await wait_study(page, after=before, ready=False, timeout_s=60)
            t0 = await page.evaluate("() => window.__reviewKeyT")
            lat.append(rec["firstPaintT"] - t0)
            server_ms.append(rec["renderT"] - t0)
            await wait_app(page)
        res["review_next_unreviewed"] = summary(lat)
        res["review_next_unreviewed_p95_ms"] = round(p95(lat), 1)
        res["review_next_key_to_payload"] = summary(server_ms)
        # The same page's plain "next study" button on the following studies, in the same conditions: what
        # opening a study costs without the review (the floor of the figure above).
        from sect_viewer import click_open

        base = []
        nxt = page.locator(".st-key-viewer-next button").first
        for _ in range(steps):
            r = await click_open(page, nxt)
            base.append(r["first_paint_ms"])
        res["review_next_baseline_plain_next_click"] = summary(base)
        await ctx.close()
        await browser.close()


def run(res: dict, ctx: Context) -> None:
    say("review: saves into SQLite (and PostgreSQL) ...")
    bench_save(res, ctx.quick)
    if ctx.skip_browser:
        return
    from tests.e2e import AppServer

    say("browser: save and next unreviewed in the viewer ...")
    db_dir = OUT / "review-bench-app"
    shutil.rmtree(db_dir, ignore_errors=True)
    db_dir.mkdir(parents=True)
    server = AppServer(
        cache_dir=ctx.run_cache,
        log_path=OUT / "server-review.log",
        data_dir=prepare.FULL,
        env={"MOSMED_DB": f"sqlite:///{db_dir / 'reviews.db'}"},
    )
    server.start()
    try:
        asyncio.run(bench_next(res, server, ctx.quick))
    except Exception as e:  # noqa: BLE001 - keep the figures measured so far, say what failed
        res.setdefault("errors", []).append(f"review: {type(e).__name__}: {e}")
        say(f"review benchmark failed: {e}")
    finally:
        server.stop()
