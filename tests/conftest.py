"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MOSMED = Path(os.environ.get("MOSMED_SHARED", REPO.parent / "shared" / "mosmeddata"))


@pytest.fixture(scope="session")
def real_mosmed() -> Path:
    """The real MosMedData registry and masks in ../shared (read only, never copied into the repo)."""
    if not (SHARED_MOSMED / "dataset_registry.xlsx").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real MosMedData files at {SHARED_MOSMED}")
        pytest.skip(f"real MosMedData files not found at {SHARED_MOSMED} (a fresh clone without ../shared)")
    return SHARED_MOSMED
