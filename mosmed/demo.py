"""The embedded demo dataset: generated once, on first use, into ``<cache root>/demo``.

It is derived data (seeded, rebuilt identically), so it lives in the cache. Generation runs under a lock file so a
second process waits instead of generating it twice; if the lock cannot be taken (some network file systems) the
atomic rename still makes exactly one copy win and the loser discards its own.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from mosmed.atomic import pid_alive, publish_dir, temp_dir_beside
from mosmed.config import demo_root
from mosmed.errors import CacheError

__all__ = ["ensure_demo"]

ProgressFn = Callable[[int, int, str], None]
# ".tmp-<pid>-<token>-demo" (mosmed.atomic), the generator's own ".tmp-<pid>-<token>-.tmp-...-demo" inside it,
# and the names earlier versions used (".tmp-demo-<pid>-...", ".tmp-.tmp-demo-<pid>-...").
_DEBRIS = re.compile(r"^\.tmp-(?:\.tmp-)?(?:demo-)?(\d+)-")


def _sweep_debris(parent: Path, name: str) -> None:
    """Half-generated demo folders of generators that are gone."""
    for p in parent.glob(".tmp-*"):
        m = _DEBRIS.match(p.name)
        if m and name in p.name and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


def ensure_demo(progress: ProgressFn | None = None, root: Path | None = None, n_studies: int | None = None) -> Path:
    """Generate the embedded demo dataset when it is missing, and return its root.

    Raises
    ------
    CacheError
        When the demo cannot be written (read-only cache directory and no demo there yet).
    """
    target = Path(root) if root is not None else demo_root()
    if (target / "dataset_registry.xlsx").is_file() or (target / "dataset_registry.csv").is_file():
        return target
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock_fh = open(parent / f".{target.name}.lock", "a+b")
    except OSError as e:
        raise CacheError(
            f"cannot create the demo dataset in {parent} ({e.strerror or e}); "
            "set MOSMED_CACHE to a writable folder or MOSMED_DATA to a dataset"
        ) from None
    try:
        try:
            fcntl.flock(lock_fh.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass  # no locking here: the rename below still keeps one copy
        if target.exists():
            return target  # another process finished while we waited
        _sweep_debris(parent, target.name)
        from mosmed import synthetic

        tmp = temp_dir_beside(target)
        try:
            kwargs = {"progress": progress}
            if n_studies is not None:
                kwargs["n_studies"] = n_studies
            synthetic.generate_demo(tmp, **kwargs)
            publish_dir(tmp, target)  # False: another process won, theirs is kept
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target
    finally:
        try:
            fcntl.flock(lock_fh.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        lock_fh.close()
