"""A study's small cache entries on disk: the stats document (``stats/<stem>.json``) and the thumbnail
(``thumbs/<stem>.png``), where ``stem`` is :func:`mosmed.cache.keys.entry_stem`. Read validated (anything
off reads as missing), written atomically, thumbnail first and stats last: a present stats file means the
study's small entries are complete."""

from __future__ import annotations

import json
from pathlib import Path

from mosmed.atomic import atomic_write_bytes
from mosmed.cache.keys import CACHE_VERSION
from mosmed.jsonio import dumps

__all__ = ["read_stats", "read_thumb", "write_entries"]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def read_stats(stats_dir: Path, stem: str, study_id: int, key: str) -> dict | None:
    """The stats document of ``stem`` when it is valid for ``(study_id, key)`` and this cache version."""
    try:
        doc = json.loads((stats_dir / f"{stem}.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("cache_version") != CACHE_VERSION or doc.get("key") != key or doc.get("study_id") != study_id:
        return None
    if doc.get("status") == "ok":
        if not isinstance(doc.get("summary"), dict) or not isinstance(doc.get("stats"), dict):
            return None
        shape = doc.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3):
            return None
    elif doc.get("status") != "error":
        return None
    return doc


def read_thumb(thumbs_dir: Path, stem: str) -> bytes | None:
    """The PNG thumbnail of ``stem``, or None (a file without the PNG end marker counts as missing)."""
    try:
        data = (thumbs_dir / f"{stem}.png").read_bytes()
    except OSError:
        return None
    if not (data.startswith(_PNG_SIG) and data.endswith(_PNG_END)):
        return None
    return data


def write_entries(stats_dir: Path, thumbs_dir: Path, stem: str, doc: dict, thumb: bytes | None) -> None:
    """Write the thumbnail (when given), then the stats document, each atomically."""
    if thumb is not None:
        atomic_write_bytes(thumbs_dir / f"{stem}.png", thumb)
    atomic_write_bytes(stats_dir / f"{stem}.json", dumps(doc))
