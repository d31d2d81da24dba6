"""Cache keys and entry names.

- ``dataset_key(root)``: the folder of one dataset's cache, a readable basename plus a hash of the resolved root;
- ``source_key(source)``: ``sha1(CACHE_VERSION, study path, size, mtime_ns, mask path, size, mtime_ns)[:12]``
  of an opened :class:`~mosmed.source.StudySource`: a replaced file gets a new key, so a stale entry is never
  found;
- ``entry_stem(study_id, key)``: ``study_0001-<key>``, the name of a study's stats, thumbnail and arrays.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mosmed.source import FileIdentity, StudySource

__all__ = ["CACHE_VERSION", "dataset_key", "source_key", "identity_key", "entry_stem", "parse_entry_name"]

#: Bump whenever what is written (or how it is computed) changes: every entry then reads as stale.
CACHE_VERSION = 2  # 2: the new segmentation, density features, quality flags
_NAME_RE = re.compile(r"^study_(\d+)-([0-9a-f]{12})(?:\.json|\.png)?$")


def dataset_key(root: Path) -> str:
    """Directory name of one dataset's cache: readable basename plus a hash of the resolved root."""
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name or "root")[:40]
    return f"{base}-{digest}"


def source_key(source: StudySource) -> str:
    """The cache key of an opened source (its files' identity); ``ValueError`` when it is not opened."""
    if source.study is None:
        raise ValueError(f"study {source.study_id}: its files' identity was not taken (open the source first)")
    return identity_key(source.study, source.mask)


def identity_key(study: FileIdentity, mask: FileIdentity | None) -> str:
    """The cache key of a study's files' identity (what :func:`source_key` hashes), for whole-registry passes
    that take the identities themselves (:func:`mosmed.cache.summary.registry_keys`)."""
    parts = [f"v{CACHE_VERSION}"]
    for ident in (study, mask):
        parts.append("-" if ident is None else f"{ident.path}\0{ident.size}\0{ident.mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def entry_stem(study_id: int, key: str) -> str:
    return f"study_{int(study_id):04d}-{key}"


def parse_entry_name(name: str) -> tuple[int, str] | None:
    """``(study_id, key)`` of an entry file or folder name, or None for anything else."""
    m = _NAME_RE.match(name)
    return (int(m.group(1)), m.group(2)) if m else None
