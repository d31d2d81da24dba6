"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MOSMED = Path(os.environ.get("MOSMED_SHARED", REPO.parent / "shared" / "mosmeddata"))
SHARED_REALCT = Path(os.environ.get("MOSMED_REALCT", REPO.parent / "shared" / "realct"))
REALCT_FILES = ("chest_crop_lps_1p5mm.nii.gz", "abdomen_int32_3mm.nii.gz")


def pytest_configure(config: pytest.Config) -> None:
    """Issue 12: every test (and every app server the tests start) keeps reviews in a throwaway SQLite file,
    never in the user's ~/.local/share/mosmed-explorer/reviews.db or a MOSMED_DB set for real use. Tests that
    need another database pass its URL explicitly."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mosmed-test-reviews-"))
    config._mosmed_reviews_dir = base  # type: ignore[attr-defined]
    os.environ["MOSMED_DB"] = f"sqlite:///{base / 'reviews.db'}"


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    base = getattr(config, "_mosmed_reviews_dir", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def real_mosmed() -> Path:
    """The real MosMedData registry and masks in ../shared (read only, never copied into the repo)."""
    if not (SHARED_MOSMED / "dataset_registry.xlsx").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real MosMedData files at {SHARED_MOSMED}")
        pytest.skip(f"real MosMedData files not found at {SHARED_MOSMED} (a fresh clone without ../shared)")
    return SHARED_MOSMED


@pytest.fixture(scope="session")
def realct() -> Path:
    """The two real CT scans of ../shared/realct (read only, never copied into the repo)."""
    missing = [f for f in REALCT_FILES if not (SHARED_REALCT / f).is_file()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real CT files {', '.join(missing)} at {SHARED_REALCT}")
        pytest.skip(
            f"real CT files {', '.join(missing)} not found at {SHARED_REALCT} (a fresh clone without ../shared)"
        )
    return SHARED_REALCT


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Put the real ``__main__`` back after every test.

    AppTest (like ``streamlit run``) installs the script it ran as ``sys.modules["__main__"]`` and leaves it
    there. A later "spawn" process pool in the same pytest process (demo generation, parallel cache builds,
    the CLI run in-process) re-imports ``__main__`` in every worker, so each worker would re-run that page
    script in bare mode and the pool breaks or hangs.
    """
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
