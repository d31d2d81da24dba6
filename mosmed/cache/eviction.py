"""The disk budget of the evictable arrays: least recently used first.

Stats and thumbnails are never evicted (the summary keeps covering every study); an arrays folder's
``last_used`` stamp records its last open, refreshed at most every ``TOUCH_INTERVAL_S``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from mosmed.atomic import remove_tree

__all__ = ["TOUCH_INTERVAL_S", "array_dirs", "bytes_used", "evict_to_budget", "touch"]

#: Last-use stamps are refreshed at most this often (one utime per study open, not per slice).
TOUCH_INTERVAL_S = 60.0


def array_dirs(arrays_dir: Path) -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every arrays entry under ``arrays_dir``."""
    out = []
    try:
        entries = list(os.scandir(arrays_dir))
    except OSError:
        return out
    for e in entries:
        if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
            continue
        size = 0
        last = 0.0
        try:
            for f in os.scandir(e.path):
                st = f.stat(follow_symlinks=False)
                size += st.st_size
                if f.name == "last_used":
                    last = st.st_mtime
        except OSError:
            continue
        out.append((last, size, Path(e.path)))
    return out


def bytes_used(arrays_dir: Path) -> int:
    return sum(size for _, size, _ in array_dirs(arrays_dir))


def evict_to_budget(arrays_dir: Path, budget: int, protect: Iterable[str] = ()) -> int:
    """Delete least recently used arrays until their total fits ``budget`` bytes; returns how many went."""
    protect = set(protect)
    dirs = sorted(array_dirs(arrays_dir))
    total = sum(size for _, size, _ in dirs)
    n = 0
    for _, size, path in dirs:
        if total <= budget:
            break
        if path.name in protect:
            continue
        if remove_tree(path):
            n += 1
        total -= size
    return n


def touch(d: Path) -> None:
    """Record a use for eviction: one utime, at most every TOUCH_INTERVAL_S."""
    stamp = d / "last_used"
    try:
        if time.time() - os.stat(stamp).st_mtime < TOUCH_INTERVAL_S:
            return
        os.utime(stamp)
    except OSError:
        pass  # read-only cache or evicted meanwhile: LRU order is advisory
