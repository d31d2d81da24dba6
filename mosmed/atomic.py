"""The one way files and folders are written: to a temporary name beside the target, then renamed.

Readers therefore see the old content or the complete new one, never a part. Every temporary name has the
form ``.tmp-<pid>-<token>-<what>``: the pid lets :func:`sweep_debris` tell the leftovers of a killed writer
from a write in progress; nothing that starts with ``.tmp-`` is ever read as data.

- :func:`atomic_write_bytes` / :func:`atomic_write`: one file (fsynced, then ``os.replace``);
- :func:`temp_dir_beside` + :func:`publish_dir`: a folder built under a temporary name, then renamed into
  place (when the target already exists, another process won: ours is discarded, or the old one is moved
  aside first with ``replace=True``);
- :func:`remove_tree`: a folder renamed out of the way first, so readers see it gone at once;
- :func:`sweep_debris`: temporary names whose writer is gone (or that are old).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "TMP_PREFIX",
    "TMP_MAX_AGE_S",
    "tmp_name",
    "is_tmp_name",
    "fsync_dir",
    "atomic_write_bytes",
    "atomic_write",
    "temp_dir_beside",
    "publish_dir",
    "remove_tree",
    "pid_alive",
    "sweep_debris",
]

TMP_PREFIX = ".tmp-"
#: Debris older than this is swept even when its process id is alive (pid reuse, another host).
TMP_MAX_AGE_S = 3600.0
_TMP_RE = re.compile(r"^\.tmp-(\d+)-")


def tmp_name(what: str) -> str:
    """A temporary name for ``what`` (a file or folder name), unique to this process and call."""
    return f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{what}"


def is_tmp_name(name: str) -> bool:
    return name.startswith(TMP_PREFIX)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None], *, fsync: bool = True, mode: int | None = 0o644) -> Path:
    """Have ``write(tmp_path)`` write the content, then move it to ``path`` in one rename.

    Parameters
    ----------
    path : Path
        The target; its folder is created when missing.
    write : callable
        Writes the complete content to the temporary path it is given (e.g. ``workbook.save``).
    fsync : bool
        Flush the data before the rename (and the folder after it). Off only for big derived arrays whose
        readers check their sizes (see ``mosmed.cache.arrays``).
    mode : int or None
        Permission bits of the result (temporary files are created private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / tmp_name(path.name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write, fsync=fsync)


def temp_dir_beside(target: Path) -> Path:
    """A new empty folder beside ``target`` under a temporary name (build it there, then :func:`publish_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / tmp_name(target.name)
    tmp.mkdir()
    return tmp


def publish_dir(tmp: Path, target: Path, *, replace: bool = False) -> bool:
    """Rename the finished folder ``tmp`` to ``target``.

    Returns
    -------
    bool
        True when ``tmp`` became ``target``. False when ``target`` already exists and ``replace`` is False:
        another writer got there first, ``tmp`` is deleted and theirs is kept. An existing empty ``target``
        is always replaced; with ``replace=True`` a full one is moved aside first, so ``target`` is never a
        mixture of the two.
    """
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif replace:
            old = target.parent / tmp_name(f"old-{target.name}")
            os.rename(target, old)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process renamed its copy in between: it won
        return False
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    fsync_dir(target.parent)
    return True


def remove_tree(path: Path) -> bool:
    """Rename a folder out of the way (readers then see it gone at once) and delete it; False if absent."""
    path = Path(path)
    doomed = path.parent / tmp_name("del")
    try:
        os.rename(path, doomed)
    except OSError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def sweep_debris(folders: Iterable[Path], max_age_s: float = TMP_MAX_AGE_S) -> int:
    """Delete ``.tmp-<pid>-*`` entries whose writer is gone, or older than ``max_age_s``; returns how many."""
    n = 0
    now = time.time()
    for d in folders:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            m = _TMP_RE.match(e.name)
            if not m:
                continue
            try:
                age = now - e.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if pid_alive(int(m.group(1))) and age < max_age_s:
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                Path(e.path).unlink(missing_ok=True)
            n += 1
    return n
