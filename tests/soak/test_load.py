"""Load (``make soak``): 10 concurrent headless Chromium sessions against one server on a full-size demo.

The dataset is the full-size demo (1110 registry rows, the published class counts, 512 x 512 studies) with the
volumes of ``N_STUDIES`` studies written (the others are listed but missing: real-world registries have those
too). Its cache is built before the server starts, as ``make run`` users would after the first start.

Each session, for ``DURATION_S`` seconds: opens the viewer on a study, scrolls it (mouse wheel and arrow keys
over the viewer), switches to the next study, changes the window preset, and now and then opens the registry.
Zero errors are allowed in any page (no ``stException``, no "page failed", no uncaught JavaScript error, no
console error) and the server's resident memory (sampled from /proc every second, the server and its children)
must stay bounded. The run prints the actions and websocket messages served and the memory peak.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time

import pytest

from tests.classroom_sim import process_rss_mb
from tests.e2e import (
    APP_ROOT,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXCEPTION,
    PAGE_FAILED,
    TRACEBACK,
    VIEWPORT,
    AppServer,
    browser_unavailable_reason,
    in_ci,
)

N_SESSIONS = int(os.environ.get("MOSMED_LOAD_SESSIONS", "10"))
DURATION_S = float(os.environ.get("MOSMED_LOAD_SECONDS", "60"))
N_STUDIES = 12
#: The server may grow with the studies it serves (memory maps count in RSS as pages are touched); beyond this
#: it is leaking or holding copies per session.
RSS_LIMIT_MB = 3000


def _study_ids() -> list[int]:
    from mosmed.synthetic import plan_registry

    specs = plan_registry(full_size=True)
    by_cat: dict[str, list[int]] = {}
    for s in specs:
        by_cat.setdefault(s.category, []).append(s.study_id)
    ids = [255, 256, 287, 297]  # masked CT-1 studies
    for cat in ("CT-0", "CT-2", "CT-3", "CT-4"):
        ids += by_cat[cat][:2]
    ids += by_cat["CT-1"][: N_STUDIES - len(ids)]
    return sorted(set(ids))[:N_STUDIES]


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self._halt = pid, [], threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(process_rss_mb(self.pid))
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory):
    reason = browser_unavailable_reason()
    if reason:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    from mosmed.dataset import Dataset
    from mosmed.synthetic import generate_demo

    base = tmp_path_factory.mktemp("load")
    ids = _study_ids()
    t0 = time.perf_counter()
    root = generate_demo(base / "full", full_size=True, only_ids=ids, workers=2)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Dataset(root, base / "cache").build_cache(workers=2)
    return root, base / "cache", ids, gen_s, time.perf_counter() - t0


async def _wait_run(page, timeout_ms: float = 60_000) -> None:
    await page.wait_for_timeout(250)
    await page.locator(f'{APP_ROOT}[data-test-connection-state="CONNECTED"]').wait_for(
        state="attached", timeout=timeout_ms
    )
    await page.locator(f'{APP_ROOT}[data-test-script-state="notRunning"]').wait_for(
        state="attached", timeout=timeout_ms
    )


async def _errors(page) -> list[str]:
    texts = [t.strip() for t in await page.locator(EXCEPTION).all_inner_texts()]
    texts += [
        t.strip() for t in await page.locator('[data-testid="stAlert"]').all_inner_texts() if PAGE_FAILED.search(t)
    ]
    return texts


async def _session(i: int, browser, url: str, ids: list[int], deadline: float, stats: dict) -> None:
    rng = random.Random(i)
    ctx = await browser.new_context(viewport=VIEWPORT)
    page = await ctx.new_page()
    s = stats[i] = {"actions": 0, "ws_received": 0, "ws_sent": 0, "errors": [], "console": [], "js": []}
    page.on("pageerror", lambda e: s["js"].append(str(e)[:300]))
    # "Failed to load resource" console lines are judged by the request listeners below, which see the URL.
    page.on(
        "console",
        lambda m: (
            s["console"].append(m.text[:300])
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    s["bad_requests"] = []
    s["external"] = []

    def on_request(r) -> None:
        if not r.url.startswith((url, "data:", "blob:", "about:")):
            s["external"].append(r.url[:200])  # nothing may leave the machine

    def on_failed(r) -> None:
        # Navigating away aborts the previous page's loads: not an error of the app.
        if r.url.startswith(url) and "ERR_ABORTED" not in str(r.failure):
            s["bad_requests"].append(f"FAILED {r.url[:200]} {r.failure}")

    def on_response(r) -> None:
        # The Streamlit client probes /<page>/_stcore/{health,host-config} before the root ones on a page URL.
        if r.status >= 400 and not re.search(r"/[^/]+/_stcore/(health|host-config)$", r.url):
            s["bad_requests"].append(f"{r.status} {r.url[:200]}")

    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)

    def on_ws(ws) -> None:
        ws.on("framereceived", lambda _: s.__setitem__("ws_received", s["ws_received"] + 1))
        ws.on("framesent", lambda _: s.__setitem__("ws_sent", s["ws_sent"] + 1))

    page.on("websocket", on_ws)
    k = rng.randrange(len(ids))
    try:
        await page.goto(f"{url}/viewer?study={ids[k]}", wait_until="domcontentloaded", timeout=120_000)
        await _wait_run(page, 120_000)
        s["actions"] += 1
        step = 0
        while time.monotonic() < deadline:
            step += 1
            action = rng.random()
            if action < 0.55:  # scroll the stack: wheel and arrow keys
                frame = page.locator("iframe, [data-testid='stBidiComponent'], canvas").first
                box = await frame.bounding_box() if await frame.count() else None
                if box:
                    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                for _ in range(rng.randint(3, 10)):
                    await page.mouse.wheel(0, rng.choice((-120, 120)))
                    await page.wait_for_timeout(30)
                await page.keyboard.press(rng.choice(("ArrowUp", "ArrowDown", "PageDown", "PageUp")))
                await page.wait_for_timeout(150)
            elif action < 0.75:  # next / previous study
                k = (k + rng.choice((-1, 1))) % len(ids)
                await page.goto(
                    f"{url}/viewer?study={ids[k]}&slice={rng.randint(1, 30)}",
                    wait_until="domcontentloaded",
                    timeout=120_000,
                )
                await _wait_run(page, 120_000)
            elif action < 0.93:  # another window
                w = rng.choice(("lung", "mediastinum", "bone", "soft", "-600,1500", "40,400"))
                await page.goto(
                    f"{url}/viewer?study={ids[k]}&window={w}", wait_until="domcontentloaded", timeout=120_000
                )
                await _wait_run(page, 120_000)
            else:  # the registry now and then
                await page.goto(f"{url}/registry", wait_until="domcontentloaded", timeout=120_000)
                await _wait_run(page, 120_000)
            s["actions"] += 1
            if step % 3 == 0:
                s["errors"] += await _errors(page)
        s["errors"] += await _errors(page)
    except Exception as e:  # noqa: BLE001 - a timeout or crash is an error of this session
        s["errors"].append(f"{type(e).__name__}: {str(e)[:300]}")
    finally:
        await ctx.close()


async def _drive(url: str, ids: list[int]) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
        try:
            stats: dict = {}
            deadline = time.monotonic() + DURATION_S
            await asyncio.gather(*(_session(i, browser, url, ids, deadline, stats) for i in range(N_SESSIONS)))
            return stats
        finally:
            await browser.close()


def test_ten_sessions_for_a_minute(full_demo, tmp_path, figures):
    root, cache, ids, gen_s, build_s = full_demo
    from tests.e2e import ARTIFACTS

    server = AppServer(cache_dir=cache, log_path=ARTIFACTS / "soak-load-server.log", data_dir=root)
    server.start()
    sampler = MemorySampler(server.proc.pid)
    sampler.start()
    t0 = time.perf_counter()
    try:
        stats = asyncio.run(_drive(server.url, ids))
    finally:
        sampler.stop()
        log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
        server.stop()
    wall = time.perf_counter() - t0
    samples = sampler.samples or [0.0]
    errors = {
        i: s["errors"] + s["js"] + s["console"] + s["bad_requests"]
        for i, s in stats.items()
        if s["errors"] or s["js"] or s["console"] or s["bad_requests"]
    }
    external = sorted({u for s in stats.values() for u in s["external"]})
    figures.update(
        sessions=len(stats),
        seconds=round(wall, 1),
        studies=len(ids),
        registry_rows=1110,
        actions=sum(s["actions"] for s in stats.values()),
        ws_messages_received=sum(s["ws_received"] for s in stats.values()),
        ws_messages_sent=sum(s["ws_sent"] for s in stats.values()),
        rss_start_mb=round(samples[0], 1),
        rss_peak_mb=round(max(samples), 1),
        rss_end_mb=round(samples[-1], 1),
        generate_s=round(gen_s, 1),
        build_cache_s=round(build_s, 1),
        sessions_with_errors=len(errors),
        bad_requests=sorted({u for s in stats.values() for u in s["bad_requests"]})[:20],
        external_requests=external[:20],
        first_errors={i: e[:3] for i, e in list(errors.items())[:3]},
        server_tracebacks=log.count(TRACEBACK),
    )
    assert len(stats) == N_SESSIONS
    assert not errors, errors
    assert TRACEBACK not in log, log[-4000:]
    assert all(s["actions"] >= 3 for s in stats.values()), {i: s["actions"] for i, s in stats.items()}
    assert max(samples) < RSS_LIMIT_MB, f"server RSS peaked at {max(samples):.0f} MB"
    # Last, so the load figures above are checked even while this is open: patients' data is viewed here and the
    # browser must not contact anyone else (app.py's page_icon=":material/pulmonology:" makes every page fetch
    # its favicon from fonts.gstatic.com).
    assert not external, f"the pages contacted other hosts: {external}"
