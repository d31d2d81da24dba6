"""The dataset summary and the cache status.

The summary has one row per registry row (:data:`mosmed.analysis.SUMMARY_COLUMNS`), a repeated study id
included (status ``"error"``, its reason); rows not built yet have status ``"pending"``. It is assembled from
the per-study stats documents and, once complete, written as ``summary-<regkey>.json`` (plus ``.csv``) for the
next reader, where ``regkey`` digests every row and its source identity: a replaced source file changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mosmed.analysis import SUMMARY_COLUMNS, band_check
from mosmed.atomic import atomic_write_bytes
from mosmed.cache.keys import CACHE_VERSION, entry_stem
from mosmed.cache.store import StudyCache
from mosmed.involvement import calibrate_rows
from mosmed.jsonio import dumps
from mosmed.registry import Registry
from mosmed.source import StudySource

__all__ = ["CacheStatus", "summary_doc", "summary_frame", "cache_status"]

_FROM_REGISTRY = frozenset({"study_id", "category", "study_file", "mask_file", "has_mask"})


@dataclass
class CacheStatus:
    """How complete the cache of one dataset is."""

    n_rows: int
    n_stats: int                     # usable rows with a valid stats entry (or a recorded build error)
    n_arrays: int
    n_errors: int
    bytes_used: int                  # array bytes on disk (this dataset)
    budget: int
    writable: bool
    cache_dir: str
    reason: str = ""                 # why not writable
    # The summary key: a digest of every registry row and its source identity (path, size, mtime_ns of the
    # study and mask files). Changes when any source file is replaced, even where the counts above do not.
    source_digest: str = ""

    @property
    def complete(self) -> bool:
        return self.n_stats >= self.n_rows


def _keyed(cache: StudyCache, rows: tuple[StudySource, ...]) -> list[tuple[StudySource, str | None]]:
    """Every row with its cache key (None for rows in error or whose files cannot be examined)."""
    return [(src, cache.key(src) if src.ok else None) for src in rows]


def _registry_key(keyed: list[tuple[StudySource, str | None]]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for src, key in keyed:
        h.update(repr((src.study_id, src.category, src.status, src.error, src.study_file,
                       src.mask_file or "", key or "")).encode())
    return h.hexdigest()[:12]


def summary_doc(cache: StudyCache, registry: Registry) -> dict:
    """The summary document: ``{"cache_version", "regkey", "rows": [...], "hist": {study_id: counts}}``."""
    keyed = _keyed(cache, registry.rows())
    regkey = _registry_key(keyed)
    path = cache.dir / f"summary-{regkey}.json"
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("cache_version") == CACHE_VERSION and doc.get("regkey") == regkey:
            return doc
    except (OSError, ValueError, AttributeError):
        pass
    rows, hist, complete = [], {}, True
    for src, key in keyed:
        base = {c: None for c in SUMMARY_COLUMNS}
        base.update(study_id=src.study_id, category=src.category, has_mask=src.has_mask,
                    study_file=src.study_file, mask_file=src.mask_file, status="error", error="", warnings="")
        if not src.ok:
            base["error"] = src.error or "registry row is in error"
        else:
            st = cache.read_stats(src.study_id, key) if key else None
            if st is None:
                base["status"] = "pending"
                complete = False
            elif st.get("status") != "ok":
                base["error"] = str(st.get("error", ""))
            else:
                # Measured values from the stats; the row's identity and class from the registry as it is now
                # (a relabelled row keeps its files, so its key and stats, but not its old class).
                base.update({k: v for k, v in st["summary"].items() if k in base and k not in _FROM_REGISTRY})
                base["in_band"] = band_check(src.category, base.get("involvement_pct"))
                base["estimate_in_band"] = band_check(src.category, base.get("estimated_involvement_pct"))
                h = (st.get("stats") or {}).get("hist")
                if h is not None:
                    hist[str(src.study_id)] = h
        rows.append(base)
    # The dataset's calibration of the HU estimate (CT-0 baseline, masked studies' slope): set on every row.
    rows, calibration = calibrate_rows(rows)
    doc = {"cache_version": CACHE_VERSION, "regkey": regkey, "rows": rows, "hist": hist,
           "calibration": calibration}
    if complete and cache.writable:
        try:
            atomic_write_bytes(path, dumps(doc))
            atomic_write_bytes(path.with_suffix(".csv"), summary_frame(rows).to_csv(index=False).encode("utf-8"))
            for old in cache.dir.glob("summary-*.*"):
                if old.stem != path.stem:
                    old.unlink(missing_ok=True)
        except OSError:
            pass
        doc = json.loads(dumps(doc))
    return doc


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """The summary rows as a typed table (``SUMMARY_COLUMNS``)."""
    frame = pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS))
    if frame.empty:
        return frame
    frame["study_id"] = frame["study_id"].astype(int)
    frame["has_mask"] = frame["has_mask"].astype(bool)
    for c in ("n_slices", "rows", "cols"):
        frame[c] = pd.array(frame[c], dtype="Int64")
    for c in ("spacing_x", "spacing_y", "spacing_z", "lung_ml", "lesion_ml", "involvement_pct",
              "estimated_involvement_pct", "density_pct", "density_pct_750", "density_pct_600"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    for c in ("in_band", "estimate_in_band", "estimate_calibrated"):
        frame[c] = frame[c].astype("boolean")
    for c in ("error", "warnings", "spacing_mm", "study_file", "estimate_basis", "qc"):
        frame[c] = frame[c].fillna("").astype(str)
    # mask_file stays NaN where there is none (never the string "nan").
    frame["mask_file"] = frame["mask_file"].where(frame["mask_file"].notna(), np.nan)
    return frame


def cache_status(cache: StudyCache, registry: Registry) -> CacheStatus:
    """Counts without reading any array: entry names carry the keys, so existence checks suffice."""
    try:
        stats_names = set(os.listdir(cache.stats_dir))
    except OSError:
        stats_names = set()
    try:
        array_names = set(os.listdir(cache.arrays_dir))
    except OSError:
        array_names = set()
    mem = cache.memory_keys()
    keyed = _keyed(cache, registry.rows())   # one stat per file, shared with the digest below
    duplicate_rows = {s.row for s in registry.duplicates}
    n_stats = n_arrays = n_err = 0
    for src, key in keyed:
        if src.row in duplicate_rows and not src.ok:
            continue
        if key is None:
            n_err += 1
            n_stats += 1
            continue
        stem = entry_stem(src.study_id, key)
        if key in mem or f"{stem}.json" in stats_names:
            n_stats += 1
        if mem.get(key) or stem in array_names:
            n_arrays += 1
    return CacheStatus(n_rows=len(registry.sources), n_stats=n_stats, n_arrays=n_arrays, n_errors=n_err,
                       bytes_used=cache.bytes_used(), budget=cache.budget, writable=cache.writable,
                       cache_dir=str(cache.dir), reason=cache.reason, source_digest=_registry_key(keyed))
