"""Fixtures for browser tests: one served app per session, Debian Chromium, a page per test.

Writing a browser test
----------------------
Ask for the ``app`` fixture (a :class:`StreamlitApp`); it wraps a fresh Playwright
``page`` (own browser context, so own Streamlit session) and the served app::

    def test_viewer_scrolls(app):
        page = app.open("viewer", study=255)        # /viewer?study=255, waits for the run
        ...                                          # interact with page (Playwright sync API)
        app.wait()                                   # after anything that reruns the script
        app.assert_no_exception()
        app.screenshot("viewer-scrolled")            # test-artifacts/screenshots/viewer-scrolled.png

Page paths are the ``st.navigation`` url paths: see ``PAGE_PATHS`` in test_smoke.py.

The server runs ``streamlit run app.py`` on 127.0.0.1 and a free port, with
``MOSMED_CACHE`` in a temporary directory and ``MOSMED_DATA`` unset, so it opens on a
freshly generated demo set exactly as a fresh clone does. The ``app_server`` fixture
waits for that first run (demo on disk under ``app_server.cache_dir / "demo"``, cache
built) before anything uses it; later loads are fast. Its log is in
``test-artifacts/e2e-server.log`` and is quoted when start-up or an assertion fails.
A failing test leaves ``test-artifacts/screenshots/FAILED-<test>.png``.

Skipping: browser tests skip only outside CI when Chromium or Playwright is missing;
under CI (``CI=true``, as ``.ci/run`` sets) they fail instead, so CI never goes green
without having run them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import (
    ARTIFACTS,
    FIRST_RUN_TIMEOUT_S,
    RUN_TIMEOUT_MS,
    SCREENSHOTS,
    TRACEBACK,
    VIEWPORT,
    AppServer,
    browser_unavailable_reason,
    exception_texts,
    in_ci,
    launch_chromium,
    open_page,
    save_screenshot,
    wait_for_app_run,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with ``e2e`` (select with ``-m e2e`` / ``-m "not e2e"``)."""
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Keep each phase's report on the item so the ``page`` fixture can tell a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def _browser_available() -> None:
    reason = browser_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _started_server(_browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """``streamlit run app.py`` answering its health check (the demo not generated yet)."""
    server = AppServer(
        cache_dir=tmp_path_factory.mktemp("mosmed-cache"),
        log_path=ARTIFACTS / "e2e-server.log",
    )
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def playwright_instance(_browser_available: None) -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium (``/usr/bin/chromium``) with the project's launch flags."""
    browser = launch_chromium(playwright_instance)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def app_server(_started_server: AppServer, browser: Browser) -> AppServer:
    """The app served on the demo set, READY: its first run has finished.

    The first run generates the demo set under ``<cache_dir>/demo`` and builds its
    cache (with progress shown in the page); waiting for it here, once, means every
    fixture or test that depends on ``app_server`` (or ``app_url``, ``app``) finds
    the demo on disk and gets short page loads. Stopped at the end of the session.
    """
    server = _started_server
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        try:
            open_page(page, server.url, "", timeout_ms=FIRST_RUN_TIMEOUT_S * 1000)
        except Exception as exc:  # Playwright's TimeoutError and friends
            save_screenshot(page, "FAILED-first-run", full_page=False)
            pytest.fail(f"first run of the app did not finish: {exc}\n{server.log_tail()}", pytrace=False)
        errors = exception_texts(page)
        if errors:
            save_screenshot(page, "FAILED-first-run")
            pytest.fail(f"first run of the app raised:\n{errors[0]}\n{server.log_tail()}", pytrace=False)
        demo = server.cache_dir / "demo"
        if not any(demo.glob("dataset_registry.*")):
            save_screenshot(page, "FAILED-first-run")
            pytest.fail(f"the first run finished without a demo registry in {demo}\n{server.log_tail()}", pytrace=False)
    finally:
        context.close()
    return server


@pytest.fixture(scope="session")
def app_url(app_server: AppServer) -> str:
    """Base URL of the served, ready app, e.g. ``http://127.0.0.1:41234``."""
    return app_server.url


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context (cookies, storage: a new Streamlit session) per test."""
    ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    ctx.set_default_timeout(RUN_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A blank page in its own context; a screenshot is saved when the test fails."""
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and not page.is_closed():
        try:
            save_screenshot(page, f"FAILED-{_safe_name(request.node.name)}")
        except Exception:  # the browser may be the thing that failed
            pass


class StreamlitApp:
    """One user's view of the served app: a page plus helpers that know Streamlit.

    Attributes
    ----------
    page
        The Playwright page (sync API); use it for everything not wrapped here.
    url
        Base URL of the served app, e.g. ``http://127.0.0.1:41234``.
    server
        The :class:`~tests.e2e.AppServer`, for ``server.log_tail()``.
    page_errors
        Uncaught JavaScript errors seen on the page so far (``pageerror`` events).
    """

    def __init__(self, page: Page, url: str, server: AppServer) -> None:
        self.page = page
        self.url = url
        self.server = server
        self.page_errors: list[str] = []
        self.log_mark = server.log_size()
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))

    def open(self, path: str = "", *, timeout_ms: float = RUN_TIMEOUT_MS, **query: Any) -> Page:
        """Open ``/<path>?<query>`` and wait until the script has finished running.

        ``path`` is the page's url path ("" for the default page); keyword arguments
        become query parameters, e.g. ``app.open("viewer", study=255, slice=10)``.
        """
        return open_page(self.page, self.url, path, query or None, timeout_ms=timeout_ms)

    def wait(self, timeout_ms: float = RUN_TIMEOUT_MS) -> None:
        """Wait for the rerun an interaction has just triggered to finish."""
        wait_for_app_run(self.page, timeout_ms=timeout_ms)

    def exceptions(self) -> list[str]:
        """Texts of the exception boxes Streamlit shows (empty list when none)."""
        return exception_texts(self.page)

    def assert_no_exception(self, *, check_log: bool = True) -> None:
        """Fail if the page shows an exception, or (``check_log``) the server logged a
        traceback since this test's page was created; quotes both."""
        errors = self.exceptions()
        assert not errors, f"{len(errors)} exception(s) on {self.page.url}:\n{errors[0]}\n{self.server.log_tail(3000)}"
        if check_log:
            new_log = self.server.log_since(self.log_mark)
            assert TRACEBACK not in new_log, (
                f"the server logged a traceback during this test ({self.page.url}):\n{new_log[-4000:]}"
            )

    def assert_no_page_errors(self) -> None:
        """Fail if the page raised an uncaught JavaScript error (e.g. in a component)."""
        assert not self.page_errors, f"JavaScript errors on {self.page.url}: {self.page_errors}"

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save ``test-artifacts/screenshots/<name>.png`` and return its path."""
        return save_screenshot(self.page, _safe_name(name), SCREENSHOTS, full_page=full_page)


@pytest.fixture
def app(page: Page, app_url: str, app_server: AppServer) -> StreamlitApp:
    """The served app seen through a fresh page (see :class:`StreamlitApp`)."""
    return StreamlitApp(page, app_url, app_server)


#: Longest wait for one browser-side condition in the interaction tests (``step_timeout``).
STEP_TIMEOUT_MS = 20_000


@pytest.fixture
def step_timeout(page: Page) -> None:
    """Playwright's default wait shortened to :data:`STEP_TIMEOUT_MS` (``pytest.mark.usefixtures``)."""
    page.set_default_timeout(STEP_TIMEOUT_MS)


@pytest.fixture(scope="module")
def registry(app_server: AppServer):
    """The demo's registry as written on disk (independent of the app's own summary)."""
    from .helpers_interactions import demo_registry

    return demo_registry(app_server.cache_dir)


@pytest.fixture(scope="module")
def mask_study(registry) -> int:
    """A study with an expert lesion mask (the overlay and lesion navigation need one)."""
    ids = sorted(int(i) for i in registry.loc[registry["has_mask"], "study_id"])
    assert ids, "the demo set has no study with a lesion mask"
    return ids[0]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120] or "page"
