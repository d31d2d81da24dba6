"""Browser-test harness: serve the app, drive Debian's Chromium with Playwright.

Used by the fixtures in ``tests/e2e/conftest.py`` and by ``scripts/screenshots.py``
(which imports it as ``tests.e2e``). Nothing here downloads a browser: Chromium is
Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it).

Waiting for Streamlit
---------------------
Streamlit publishes its state on the root element::

    <div data-testid="stApp" data-test-connection-state="CONNECTED"
         data-test-script-state="notRunning">

``data-test-script-state`` goes ``initial`` -> ``running`` -> ``notRunning`` on every
run of the script, so "finished" means: connected, ``notRunning``, and no loading
skeleton left. After an interaction that triggers a rerun, the state may still read
``notRunning`` for a moment before the rerun message arrives; :func:`wait_for_app_run`
therefore waits a short debounce first (Streamlit's own e2e suite does the same).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Playwright is imported lazily so a missing package can be skipped cleanly
    from playwright.sync_api import Browser, Page, Playwright

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"

CHROMIUM = Path(os.environ.get("MOSMED_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # nothing leaves the machine, in tests either
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1440, "height": 960}

#: Selector of Streamlit's root element; its data attributes tell the script state.
APP_ROOT = '[data-testid="stApp"]'
#: An uncaught exception rendered by Streamlit (``st.exception`` or a crash).
EXCEPTION = '[data-testid="stException"]'
#: app.py catches a page that raises and shows an error box instead of a traceback;
#: for tests that is an exception all the same. Matched in alert texts.
PAGE_FAILED = re.compile(r"\bpage failed: ")
ALERT = '[data-testid="stAlert"]'
TRACEBACK = "Traceback (most recent call last)"

#: First run on a fresh cache generates the demo set and builds its cache.
FIRST_RUN_TIMEOUT_S = 240.0
SERVER_START_TIMEOUT_S = 180.0
RUN_TIMEOUT_MS = 60_000
DEBOUNCE_MS = 250


def in_ci() -> bool:
    """True when the CI environment variable is set to something other than false/0."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def browser_unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when Chromium and Playwright are present."""
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        return f"Playwright is not installed ({exc}); run `make test`, which installs requirements-dev.txt"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class AppServer:
    """``streamlit run app.py`` in a subprocess, on 127.0.0.1 and a free port.

    Parameters
    ----------
    cache_dir
        Exported as ``MOSMED_CACHE``; an empty directory means a fresh demo set is
        generated and cached on first use, as on a fresh clone.
    log_path
        The server's stdout and stderr go here (shown when start-up fails).
    data_dir
        Exported as ``MOSMED_DATA`` when given; otherwise ``MOSMED_DATA`` is removed
        from the environment so the app opens on the demo set.
    extra_args
        More ``streamlit run`` options.
    script
        The Streamlit script (``app.py`` of this repo unless told otherwise).
    """

    cache_dir: Path
    log_path: Path
    data_dir: Path | None = None
    script: Path = REPO / "app.py"
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> AppServer:
        """Start the server and return once ``/_stcore/health`` answers ``ok``."""
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if k != "MOSMED_DATA"}
        env.update(self.env)
        env["MOSMED_CACHE"] = str(self.cache_dir)
        if self.data_dir is not None:
            env["MOSMED_DATA"] = str(self.data_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(self.script),
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
            # Full details in tests, so a failing assertion quotes the traceback.
            "--client.showErrorDetails",
            "full",
            *self.extra_args,
        ]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        self._wait_healthy(timeout_s)
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"streamlit exited with code {self.proc.returncode} before it was ready\n" + self.log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200 and resp.read().strip() == b"ok":
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(
            f"streamlit did not answer {self.url}/_stcore/health within {timeout_s:.0f} s "
            f"({last_error})\n" + self.log_tail()
        )

    def log_size(self) -> int:
        """Current length of the server log in bytes (a mark for :meth:`log_since`)."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, mark: int) -> str:
        """Server log text written after ``mark`` (from :meth:`log_size`)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(mark)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n_chars: int = 6000) -> str:
        """The end of the server log, framed for an assertion message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        return f"--- server log ({self.log_path}) ---\n{text[-n_chars:]}\n--- end of server log ---"

    def stop(self) -> None:
        """Terminate the server (its whole process group), then kill it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)


def launch_chromium(pw: Playwright) -> Browser:
    """Debian's Chromium, headless, with the project's launch flags. Never downloads a browser."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))


def page_url(base_url: str, path: str = "", query: dict[str, Any] | None = None) -> str:
    """``base_url`` + ``/path`` + an encoded query string (values are str()-ed)."""
    url = f"{base_url.rstrip('/')}/{path.lstrip('/')}"
    if query:
        url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()}, doseq=True)
    return url


def wait_for_app_run(page: Page, timeout_ms: float = RUN_TIMEOUT_MS, debounce_ms: float = DEBOUNCE_MS) -> None:
    """Block until Streamlit is connected and has finished running the script.

    Call it after ``page.goto`` and after every interaction that reruns the script
    (click, select, slider release ...), before asserting on the result.

    Parameters
    ----------
    page
        The Playwright page.
    timeout_ms
        Longest wait for the run to finish.
    debounce_ms
        Pause first, so a rerun that has just been requested has time to start.
    """
    from playwright.sync_api import expect

    if debounce_ms > 0:
        page.wait_for_timeout(debounce_ms)
    page.locator(f'{APP_ROOT}[data-test-connection-state="CONNECTED"]').wait_for(state="attached", timeout=timeout_ms)
    page.locator(f'{APP_ROOT}[data-test-script-state="notRunning"]').wait_for(state="attached", timeout=timeout_ms)
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0, timeout=timeout_ms)


def open_page(
    page: Page,
    base_url: str,
    path: str = "",
    query: dict[str, Any] | None = None,
    timeout_ms: float = RUN_TIMEOUT_MS,
) -> Page:
    """Go to a page of the app (``path`` = the st.navigation url path) and wait for its run."""
    response = page.goto(page_url(base_url, path, query), wait_until="domcontentloaded", timeout=timeout_ms)
    if response is None or response.status != 200:
        status = None if response is None else response.status
        raise AssertionError(f"GET {page_url(base_url, path, query)} answered {status}")
    page.locator(APP_ROOT).wait_for(state="attached", timeout=timeout_ms)
    wait_for_app_run(page, timeout_ms=timeout_ms)
    return page


def exception_texts(page: Page) -> list[str]:
    """The text of every exception the page shows (empty when none).

    Both Streamlit's own exception boxes and app.py's "The X page failed: ..." error,
    which replaces a traceback for users but is a crash all the same.
    """
    texts = [t.strip() for t in page.locator(EXCEPTION).all_inner_texts()]
    texts += [t.strip() for t in page.locator(ALERT).all_inner_texts() if PAGE_FAILED.search(t)]
    return texts


def save_screenshot(
    page: Page, name: str, directory: Path = SCREENSHOTS, full_page: bool = True, max_height: int = 8000
) -> Path:
    """Save a PNG of the page to ``directory/<name>.png`` and return its path.

    Streamlit scrolls its main area inside an element, not the document, so
    Playwright's own ``full_page`` only captures the viewport. For a full page the
    viewport is stretched to the content's height for the shot, then restored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    original = page.viewport_size
    if full_page and original is not None:
        height = page.evaluate(
            """() => {
                const els = [document.querySelector('[data-testid="stMain"]'),
                             document.querySelector('[data-testid="stAppViewContainer"]'),
                             document.querySelector('[data-testid="stSidebarContent"]'),
                             document.documentElement];
                return Math.max(...els.filter(Boolean).map(e => e.scrollHeight));
            }"""
        )
        height = int(min(max(height, original["height"]), max_height))
        if height > original["height"]:
            page.set_viewport_size({"width": original["width"], "height": height})
            page.wait_for_timeout(400)  # let charts re-lay out to the new size
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if original is not None and page.viewport_size != original:
            page.set_viewport_size(original)
    return path
