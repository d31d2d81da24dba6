"""Environment defaults: where the data, the cache and the demo live, and the cache's disk budget.

One place reads the environment, so a newcomer finds every knob here:

========================  ======================================================================
``MOSMED_DATA``           dataset root to open (default: the generated demo)
``MOSMED_CACHE``          cache root (default: ``<repo>/data_cache``)
``MOSMED_CACHE_BUDGET_GB`` disk budget of the evictable cached arrays (default 8)
``MOSMED_DATA_ROOTS``     folders a browser may open as a dataset when the app is served beyond this
                          machine (``os.pathsep``-separated; set, even empty, it also turns the
                          restriction on); see :func:`data_roots`
========================  ======================================================================

Which folders a browser may open
--------------------------------
Anyone who reaches the page can type a server path into the sidebar's dataset box. On a workstation
(``server.address`` on the loopback interface, no ``MOSMED_DATA_ROOTS``) any readable folder opens, as
before. Served beyond this machine (``server.address`` not loopback, or ``MOSMED_DATA_ROOTS`` set, as
``make serve-replicas`` and ``deploy/`` do) only the configured dataset (``MOSMED_DATA``), the demo, and
folders inside one of the ``MOSMED_DATA_ROOTS`` can be opened (:func:`root_allowed`): whoever runs the
server decides, not whoever types.
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
    "DATA_ROOTS_ENV",
    "data_roots",
    "data_roots_configured",
    "root_allowed",
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


#: Environment variable of the allow-list of dataset folders (see the module docstring).
DATA_ROOTS_ENV = "MOSMED_DATA_ROOTS"


def data_roots_configured() -> bool:
    """True when ``MOSMED_DATA_ROOTS`` is set at all (even empty): the allow-list applies."""
    return DATA_ROOTS_ENV in os.environ


def data_roots() -> tuple[Path, ...]:
    """The folders of ``MOSMED_DATA_ROOTS`` (``os.pathsep``-separated; blanks ignored), resolved."""
    out = []
    for part in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(Path(part).expanduser().resolve())
        except (OSError, RuntimeError):
            continue
    return tuple(out)


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def root_allowed(path: Path, roots: tuple[Path, ...] | None = None) -> bool:
    """May a browser open ``path`` as a dataset when the app is served beyond this machine?

    Yes for the configured dataset (``MOSMED_DATA``) and the demo (exactly those folders), and for any folder
    inside (or equal to) one of ``roots`` (default :func:`data_roots`). ``path`` is resolved first, so ``..``
    and symbolic links cannot leave an allowed root.
    """
    try:
        real = Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    fixed = [demo_root()]
    env = os.environ.get("MOSMED_DATA", "").strip()
    if env:
        fixed.append(Path(env).expanduser())
    for f in fixed:
        try:
            if real == f.resolve():
                return True
        except (OSError, RuntimeError):
            continue
    return any(_within(real, r) for r in (data_roots() if roots is None else roots))
