"""Tiny datasets for Streamlit ``AppTest`` runs, generated once per test session.

Use the ``app_data`` fixture (import it into a test module: ``from apptest_data import app_data, app_env``)
and open the app on one of its roots::

    def test_something(app_data):
        with app_env(app_data, "demo"):              # MOSMED_CACHE set, MOSMED_DATA unset: opens on the demo
            at = new_app()
            at.run()
            assert not at.exception and not page_failures(at)

Roots
-----
* ``demo``: the embedded demo, generated small (``DEMO_STUDIES`` studies) into ``<cache>/demo`` with its cache
  built, so the app's first start has nothing left to do;
* ``bad``: ``tests/badinputs.make_bad_dataset`` (good tiny studies beside one study per broken kind: missing,
  truncated, wrong-grid mask, unsafe path, duplicate id ...), cache built;
* ``missing``: a dataset root that does not exist.

AppTest runs the script in this process, so the environment variables set by :func:`app_env` are what
``mosmed.dataset.default_data_root`` / ``default_cache_root`` read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app.py"
#: Studies in the AppTest demo: every class at least once, small enough to generate in seconds.
DEMO_STUDIES = 6
#: In-plane size of the AppTest demo studies (the app's own demo is 256).
DEMO_SIZE = 64
#: AppTest waits this long for one script run (the machine is shared; the first run opens the dataset).
TIMEOUT_S = 30.0

__all__ = [
    "APP",
    "DEMO_STUDIES",
    "TIMEOUT_S",
    "AppData",
    "build_app_data",
    "app_data",
    "app_env",
    "new_app",
    "page_failures",
    "texts",
]


@dataclass(frozen=True)
class AppData:
    """Where the tiny datasets are."""

    cache_root: Path
    demo_root: Path
    bad_root: Path
    missing_root: Path
    bad_expect: dict = field(default_factory=dict)

    def root(self, name: str) -> Path | None:
        """The root of ``"demo"`` (None: opened as the default demo), ``"bad"`` or ``"missing"``."""
        return {"demo": None, "bad": self.bad_root, "missing": self.missing_root}[name]


def build_app_data(base: Path) -> AppData:
    """Generate the demo (small) and the bad-input dataset under ``base`` and build both caches."""
    from badinputs import make_bad_dataset

    from mosmed.config import demo_root
    from mosmed.dataset import Dataset
    from mosmed.synthetic import generate_demo

    cache_root = base / "cache"
    # Written where the app looks for its demo (so it opens as "Demo (generated)"), 64 px in-plane for speed;
    # ensure_demo() then finds it and generates nothing.
    demo = generate_demo(demo_root(cache_root), n_studies=DEMO_STUDIES, size=DEMO_SIZE, workers=1)
    Dataset(demo, cache_root).build_cache(workers=1)
    bad_root = base / "bad"
    expect = make_bad_dataset(bad_root)
    Dataset(bad_root, cache_root).build_cache(workers=1)
    return AppData(
        cache_root=cache_root,
        demo_root=demo,
        bad_root=bad_root,
        missing_root=base / "no-such-dataset",
        bad_expect=expect,
    )


@pytest.fixture(scope="session")
def app_data(tmp_path_factory: pytest.TempPathFactory) -> AppData:
    """The tiny datasets, generated once per test session."""
    return build_app_data(tmp_path_factory.mktemp("apptest"))


@contextlib.contextmanager
def app_env(data: AppData, name: str = "demo") -> Iterator[None]:
    """Point ``MOSMED_CACHE`` / ``MOSMED_DATA`` at a tiny dataset for the duration of the block."""
    root = data.root(name)
    saved = {k: os.environ.get(k) for k in ("MOSMED_CACHE", "MOSMED_DATA")}
    os.environ["MOSMED_CACHE"] = str(data.cache_root)
    if root is None:
        os.environ.pop("MOSMED_DATA", None)
    else:
        os.environ["MOSMED_DATA"] = str(root)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def new_app(timeout: float = TIMEOUT_S):
    """An ``AppTest`` of app.py (not run yet)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=timeout)


def texts(elements) -> list[str]:
    """The text of every element of an AppTest element list (errors, warnings, markdown ...)."""
    return [str(getattr(e, "value", "")) for e in elements]


def page_failures(at) -> list[str]:
    """Messages of pages that raised: app.py turns an exception into ``st.error("The <page> page failed ...")``."""
    return [t for t in texts(at.error) if " page failed: " in t]


#: What the stand-in media endpoint holds (``served_media``): URL -> bytes, as the browser would fetch them.
SERVED_MEDIA: dict[str, bytes] = {}


@pytest.fixture(autouse=True)
def served_media(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """Stand-in for Streamlit's media endpoint (AppTest has no server): the viewer's study files land in
    :data:`SERVED_MEDIA`. Autouse in the modules that import it."""
    import hashlib

    from components import viewer

    def publish(blob: bytes, key: str) -> str:
        url = f"/media/{hashlib.md5(blob).hexdigest()}.bin"
        SERVED_MEDIA[url] = bytes(blob)
        return url

    monkeypatch.setattr(viewer, "_publish", publish)
    yield SERVED_MEDIA
    SERVED_MEDIA.clear()
