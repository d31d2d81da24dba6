"""The server's safe defaults in .streamlit/config.toml (issue 5, point 5).

Patients' images are viewed through this app, so the shipped configuration must keep
the server on the loopback interface, keep XSRF and same-origin protection, bound
uploads and never send usage statistics. Each default is checked twice: as written in
the file (tomllib), and as Streamlit itself resolves it when started from the repo, so
a misspelt option (which Streamlit would silently ignore) fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".streamlit" / "config.toml"

# option -> value the shipped file must set
SAFE_DEFAULTS = {
    "server.address": "localhost",
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "browser.gatherUsageStats": False,
    "server.runOnSave": False,
    "server.showEmailPrompt": False,
    "client.toolbarMode": "viewer",
}


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    """``{"server": {"port": 1}}`` -> ``{"server.port": 1}`` (theme sub-tables included)."""
    out: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@pytest.fixture(scope="module")
def written() -> dict[str, object]:
    """The options as written in the file."""
    with CONFIG.open("rb") as fh:
        return _flatten(tomllib.load(fh))


@pytest.fixture(scope="module")
def resolved() -> dict[str, dict[str, object]]:
    """Every option as Streamlit resolves it when started from the repo root.

    A subprocess, so that the test process's own Streamlit configuration (AppTest
    tests import Streamlit too) is neither read nor disturbed.
    """
    code = (
        "import json\n"
        "from streamlit import config\n"
        "opts = config.get_config_options(force_reparse=True)\n"
        "print(json.dumps({k: {'value': o.value, 'where': str(o.where_defined)}"
        " for k, o in opts.items()}, default=str))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("option", "expected"), sorted(SAFE_DEFAULTS.items()))
def test_file_sets_safe_default(written: dict[str, object], option: str, expected: object) -> None:
    assert option in written, f"{option} must be set explicitly in {CONFIG.name}"
    assert written[option] == expected


def test_uploads_are_bounded(written: dict[str, object]) -> None:
    # The app has no uploader: the endpoint is bounded to a few megabytes.
    size = written.get("server.maxUploadSize")
    assert isinstance(size, int) and 0 < size <= 10


def test_headless_is_left_to_streamlit(written: dict[str, object]) -> None:
    # `make run` opens a browser when a display exists; without one Streamlit turns
    # headless on by itself, and the e-mail prompt is off, so nothing waits on a tty.
    assert "server.headless" not in written
    assert written["server.showEmailPrompt"] is False


def test_nothing_opens_wider(written: dict[str, object]) -> None:
    assert written.get("server.enableStaticServing", False) is False
    assert written.get("server.enableAgentApi", False) is False
    assert written.get("server.corsAllowedOrigins", []) == []
    assert written.get("server.xsrfCookieSameSite", "lax") != "none"
    # Error details in the browser would show server paths to every user.
    assert written.get("client.showErrorDetails") in ("type", "none")


def test_every_option_is_known_to_streamlit(written: dict[str, object], resolved: dict[str, dict[str, object]]) -> None:
    unknown = sorted(set(written) - set(resolved))
    assert not unknown, f"options Streamlit does not know (typo? silently ignored): {unknown}"


@pytest.mark.parametrize("option", sorted(SAFE_DEFAULTS))
def test_streamlit_resolves_safe_default_from_repo_file(resolved: dict[str, dict[str, object]], option: str) -> None:
    entry = resolved[option]
    assert entry["value"] == SAFE_DEFAULTS[option]
    assert Path(str(entry["where"])).resolve() == CONFIG.resolve()


def test_theme_text_is_readable(written: dict[str, object]) -> None:
    """WCAG contrast of text on both theme backgrounds is at least 7:1 (AAA)."""

    def luminance(hex_colour: str) -> float:
        rgb = [int(hex_colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a: str, b: str) -> float:
        hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
        return (hi + 0.05) / (lo + 0.05)

    text = str(written["theme.textColor"])
    for background in ("theme.backgroundColor", "theme.secondaryBackgroundColor"):
        assert contrast(text, str(written[background])) >= 7.0, background
