"""Environment defaults: where the data, the cache and the demo live, and the cache's disk budget.

One place reads the environment, so a newcomer finds every knob here:

========================  ======================================================================
``MOSMED_DATA``           dataset root to open (default: the generated demo)
``MOSMED_CACHE``          cache root (default: ``<repo>/data_cache``)
``MOSMED_CACHE_BUDGET_GB`` disk budget of the evictable cached arrays (default 8)
========================  ======================================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mosmed.errors import CacheError

__all__ = [
    "REPO_ROOT",
    "DEMO_DIRNAME",
    "DEFAULT_BUDGET_GB",
    "default_cache_root",
    "demo_root",
    "default_data_root",
    "budget_from_env",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIRNAME = "demo"
DEFAULT_BUDGET_GB = 8.0


def default_cache_root() -> Path:
    """``MOSMED_CACHE`` when set, else ``<repo>/data_cache``."""
    env = os.environ.get("MOSMED_CACHE", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "data_cache"


def demo_root(cache_root: Path | None = None) -> Path:
    """Where the embedded demo dataset lives: ``<cache root>/demo``."""
    return Path(cache_root if cache_root is not None else default_cache_root()) / DEMO_DIRNAME


def default_data_root() -> tuple[Path, bool]:
    """The dataset root to open: ``MOSMED_DATA`` when set, else the demo root. The flag is True for the demo."""
    env = os.environ.get("MOSMED_DATA", "").strip()
    if env:
        return Path(env).expanduser(), False
    return demo_root(), True


def budget_from_env() -> int:
    """Array disk budget in bytes from ``MOSMED_CACHE_BUDGET_GB`` (default 8 GB); a bad value -> CacheError."""
    raw = os.environ.get("MOSMED_CACHE_BUDGET_GB", "").strip()
    if not raw:
        return int(DEFAULT_BUDGET_GB * 1e9)
    try:
        gb = float(raw)
    except ValueError:
        raise CacheError(f"MOSMED_CACHE_BUDGET_GB={raw!r} is not a number of gigabytes") from None
    if not math.isfinite(gb) or gb < 0:
        raise CacheError(f"MOSMED_CACHE_BUDGET_GB={raw!r} must be a non-negative number of gigabytes")
    return int(gb * 1e9)
