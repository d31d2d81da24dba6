"""The dataset summary, the cache status and the cache token.

The summary has one row per registry row (:data:`mosmed.analysis.SUMMARY_COLUMNS`), a repeated study id
included (status ``"error"``, its reason); rows not built yet have status ``"pending"``. It is assembled from
the per-study stats documents and, once complete, written for the next reader as

- ``summary-<regkey>.hist.npy``: every built study's lung HU histogram, one int64 row ``[study_id, counts...]``
  per study (one array: 100 000 studies load in tens of milliseconds, where the same numbers as JSON lists
  took seconds to parse);
- ``summary-<regkey>.json``: the rows as value lists under one header (``{"columns": [...], "rows": [[...],
  ...]}``: no key repeated per row), written after the array, so a present JSON means a complete pair; plus
  ``summary-<regkey>.csv`` for people.

``regkey`` digests every row and its source identity: a replaced source file changes it. A pair that does not
read back whole (missing or damaged array, other ids) is assembled again. The registry-wide passes take each
row's files' identity with two ``stat`` calls and nothing else (:func:`registry_keys`), and
:func:`cache_token` is the cheap "did anything change" answer the app polls.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mosmed.analysis import SUMMARY_COLUMNS, band_check
from mosmed.atomic import atomic_write_bytes
from mosmed.cache.keys import CACHE_VERSION, entry_stem, identity_key
from mosmed.cache.store import StudyCache
from mosmed.involvement import calibrate_rows
from mosmed.jsonio import dumps, to_jsonable
from mosmed.measurements import HIST_EDGES
from mosmed.registry import Registry
from mosmed.source import FileIdentity, StudySource

__all__ = [
    "CacheStatus",
    "SummaryTables",
    "registry_keys",
    "summary_tables",
    "summary_doc",
    "summary_frame",
    "cache_status",
    "cache_token",
    "HIST_SUFFIX",
]

_FROM_REGISTRY = frozenset({"study_id", "category", "study_file", "mask_file", "has_mask"})
#: Suffix of the histogram array beside ``summary-<regkey>.json``.
HIST_SUFFIX = ".hist.npy"
_N_BINS = len(HIST_EDGES) - 1
#: Version of the summary file pair's layout (columns + .npy); older summary files are simply assembled again.
_FORMAT = 2
#: A cache folder modified this recently (ns) may still change within the same file-time tick.
_SETTLE_NS = 100_000_000


@dataclass
class CacheStatus:
    """How complete the cache of one dataset is."""

    n_rows: int
    n_stats: int  # usable rows with a valid stats entry (or a recorded build error)
    n_arrays: int
    n_errors: int
    bytes_used: int  # array bytes on disk (this dataset)
    budget: int
    writable: bool
    cache_dir: str
    reason: str = ""  # why not writable
    # The summary key: a digest of every registry row and its source identity (path, size, mtime_ns of the
    # study and mask files). Changes when any source file is replaced, even where the counts above do not.
    source_digest: str = ""

    @property
    def complete(self) -> bool:
        return self.n_stats >= self.n_rows


@dataclass(frozen=True)
class SummaryTables:
    """The summary as tables: what :meth:`mosmed.dataset.Dataset.summary` and ``histograms`` hand out.

    Attributes
    ----------
    regkey : str
        The summary key (see the module docstring).
    frame : pandas.DataFrame
        One row per registry row, :data:`SUMMARY_COLUMNS`, typed by :func:`summary_frame`.
    hist : numpy.ndarray
        ``(n_built, 1 + bins)`` int64: the study id, then its lung HU histogram counts (:data:`HIST_EDGES`).
    keys : tuple of str or None
        Each registry row's cache key (None for rows in error), in ``registry.rows()`` order.
    complete : bool
        No row is pending (the pair was, or could be, written).
    calibration : dict or None
        The dataset's calibration of the HU estimate (:meth:`mosmed.involvement.Calibration.as_dict`).
    """

    regkey: str
    frame: pd.DataFrame
    hist: np.ndarray
    keys: tuple[str | None, ...]
    complete: bool
    calibration: dict | None = None


def _identity(path) -> FileIdentity:
    st = os.stat(path)
    return FileIdentity(str(path), int(st.st_size), int(st.st_mtime_ns))


def registry_keys(cache: StudyCache, rows: tuple[StudySource, ...]) -> list[str | None]:
    """``cache.key(src)`` of every row (None for rows in error or whose files cannot be examined), fast.

    The same identities and the same key as :meth:`StudyCache.key` (``stat`` of the study and mask files), without
    making an opened copy of every source: at 100 000 rows a third of the time.
    """
    out: list[str | None] = []
    for src in rows:
        if not src.ok or src.study_path is None:
            out.append(None)
            continue
        if src.is_opened:
            out.append(cache.key(src))
            continue
        try:
            study = _identity(src.study_path)
            mask = _identity(src.mask_path) if src.mask_path is not None else None
        except OSError:
            out.append(None)
            continue
        out.append(identity_key(study, mask))
    return out


def _registry_key(rows: tuple[StudySource, ...], keys: list[str | None]) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for src, key in zip(rows, keys):
        h.update(
            repr(
                (src.study_id, src.category, src.status, src.error, src.study_file, src.mask_file or "", key or "")
            ).encode()
        )
    return h.hexdigest()[:12]


def _read_pair(cache: StudyCache, regkey: str) -> tuple[pd.DataFrame, np.ndarray, dict | None] | None:
    """The written summary pair of ``regkey`` when it reads back whole, else None (assembled again)."""
    path = cache.dir / f"summary-{regkey}.json"
    try:
        doc = json.loads(path.read_bytes())
        if not (
            isinstance(doc, dict)
            and doc.get("cache_version") == CACHE_VERSION
            and doc.get("regkey") == regkey
            and doc.get("format") == _FORMAT
            and doc.get("columns") == list(SUMMARY_COLUMNS)
        ):
            return None
        frame = _typed(pd.DataFrame(doc["rows"], columns=list(SUMMARY_COLUMNS)))
        hist = np.load(cache.dir / f"summary-{regkey}{HIST_SUFFIX}", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    if hist.dtype != np.int64 or hist.ndim != 2 or hist.shape[1] != 1 + _N_BINS:
        return None
    built = frame.loc[frame["status"] == "ok", "study_id"].drop_duplicates()
    if hist.shape[0] != int(doc.get("n_hist", -1)) or not set(hist[:, 0].tolist()) <= set(built.tolist()):
        return None
    return frame, hist, doc.get("calibration")


def summary_tables(cache: StudyCache, registry: Registry) -> SummaryTables:
    """The summary of ``registry`` in ``cache``: read when written for this registry state, else assembled."""
    rows = registry.rows()
    keys = registry_keys(cache, rows)
    regkey = _registry_key(rows, keys)
    pair = _read_pair(cache, regkey)
    if pair is not None:
        return SummaryTables(regkey, pair[0], pair[1], tuple(keys), True, pair[2])
    records, hist_rows, complete = [], [], True
    for src, key in zip(rows, keys):
        base = {c: None for c in SUMMARY_COLUMNS}
        base.update(
            study_id=src.study_id,
            category=src.category,
            has_mask=src.has_mask,
            study_file=src.study_file,
            mask_file=src.mask_file,
            status="error",
            error="",
            warnings="",
        )
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
                    hist_rows.append([src.study_id, *h])
        records.append(to_jsonable(base))
    # The dataset's calibration of the HU estimate (CT-0 baseline, masked studies' slope): set on every row.
    records, calibration = calibrate_rows(records)
    hist = np.array(hist_rows, dtype=np.int64).reshape(len(hist_rows), 1 + _N_BINS)
    if len(hist):  # in id order (a repeated id's own row is in error: one histogram per study)
        hist = hist[np.argsort(hist[:, 0], kind="stable")]
    values = [[r[c] for c in SUMMARY_COLUMNS] for r in records]
    frame = _typed(pd.DataFrame(values, columns=list(SUMMARY_COLUMNS)))
    if complete and cache.writable:
        _write_pair(cache, regkey, values, hist, frame, calibration)
    return SummaryTables(regkey, frame, hist, tuple(keys), complete, calibration)


def _write_pair(
    cache: StudyCache, regkey: str, values: list[list], hist: np.ndarray, frame: pd.DataFrame, calibration: dict
) -> None:
    path = cache.dir / f"summary-{regkey}.json"
    try:
        buf = io.BytesIO()
        np.save(buf, hist, allow_pickle=False)
        # The array first, the JSON last: a reader finding the JSON finds its array (checked again on read).
        atomic_write_bytes(cache.dir / f"summary-{regkey}{HIST_SUFFIX}", buf.getvalue())
        doc = {
            "cache_version": CACHE_VERSION,
            "regkey": regkey,
            "format": _FORMAT,
            "columns": list(SUMMARY_COLUMNS),
            "rows": values,
            "n_hist": int(len(hist)),
            "calibration": calibration,
        }
        atomic_write_bytes(path, dumps(doc))
        atomic_write_bytes(path.with_suffix(".csv"), frame.to_csv(index=False).encode("utf-8"))
        for old in cache.dir.glob("summary-*.*"):
            if not old.name.startswith(f"summary-{regkey}."):
                old.unlink(missing_ok=True)
    except OSError:
        pass


def summary_doc(cache: StudyCache, registry: Registry) -> dict:
    """The summary as one document: ``{"cache_version", "regkey", "rows": [...], "hist": {study_id: counts}}``.

    For the command line and the build comparisons; the app reads :func:`summary_tables`.
    """
    t = summary_tables(cache, registry)
    cols = [c for c in SUMMARY_COLUMNS]
    values = [to_jsonable(t.frame[c].astype(object).where(t.frame[c].notna(), None).tolist()) for c in cols]
    rows = [dict(zip(cols, vals)) for vals in zip(*values)] if len(t.frame) else []
    hist = {str(int(r[0])): [int(v) for v in r[1:]] for r in t.hist}
    return {
        "cache_version": CACHE_VERSION,
        "regkey": t.regkey,
        "rows": rows,
        "hist": hist,
        "calibration": t.calibration,
    }


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    frame["study_id"] = frame["study_id"].astype(int)
    frame["has_mask"] = frame["has_mask"].astype(bool)
    for c in ("n_slices", "rows", "cols"):
        frame[c] = pd.array(frame[c], dtype="Int64")
    for c in (
        "spacing_x",
        "spacing_y",
        "spacing_z",
        "lung_ml",
        "lesion_ml",
        "involvement_pct",
        "estimated_involvement_pct",
        "density_pct",
        "density_pct_750",
        "density_pct_600",
    ):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    for c in ("in_band", "estimate_in_band", "estimate_calibrated"):
        frame[c] = frame[c].astype("boolean")
    for c in ("error", "warnings", "spacing_mm", "study_file", "estimate_basis", "qc"):
        frame[c] = frame[c].fillna("").astype(str)
    # mask_file stays NaN where there is none (never the string "nan").
    frame["mask_file"] = frame["mask_file"].where(frame["mask_file"].notna(), np.nan)
    return frame


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """The summary rows as a typed table (``SUMMARY_COLUMNS``)."""
    return _typed(pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS)))


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
    rows = registry.rows()
    keys = registry_keys(cache, rows)  # one stat per file, shared with the digest below
    duplicate_rows = {s.row for s in registry.duplicates}
    n_stats = n_arrays = n_err = 0
    for src, key in zip(rows, keys):
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
    return CacheStatus(
        n_rows=len(registry.sources),
        n_stats=n_stats,
        n_arrays=n_arrays,
        n_errors=n_err,
        bytes_used=cache.bytes_used(),
        budget=cache.budget,
        writable=cache.writable,
        cache_dir=str(cache.dir),
        reason=cache.reason,
        source_digest=_registry_key(rows, keys),
    )


def cache_token(cache: StudyCache, registry: Registry) -> tuple:
    """A cheap value that changes when any source file or any cache entry of ``registry`` changes.

    - the sources: a digest of every registry file's size and mtime_ns (one ``stat`` each, into an array: no
      key, no object per row), so a study replaced in place with the same entry counts is seen;
    - the entries: the modification times of the stats, thumbnail and array folders (every entry is renamed
      into one of them, by this process or another) and the count of in-memory entries (read-only cache).

    At 100 000 rows this is ~0.2 s where :func:`cache_status` takes over a second; the app still asks for it only
    every few seconds (``components.state.freshness``).
    """
    paths = [str(p) for src in registry.rows() for p in (src.study_path, src.mask_path) if p is not None]
    ident = np.zeros((len(paths), 2), dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            ident[i] = -1
            continue
        ident[i, 0] = st.st_size
        ident[i, 1] = st.st_mtime_ns
    digest = hashlib.sha1(ident.tobytes()).hexdigest()[:12]
    dirs = []
    for d in (cache.stats_dir, cache.thumbs_dir, cache.arrays_dir):
        try:
            dirs.append(os.stat(d).st_mtime_ns)
        except OSError:
            dirs.append(0)
    # File times advance in clock ticks (a few ms): a folder changed within the last tick may change again with
    # the same time. Such a token is made unique, so the next look recomputes whatever it keys.
    unsettled = time.time_ns() - max(dirs) < _SETTLE_NS
    return (len(registry.rows()), digest, *dirs, len(cache.memory_keys()), time.time_ns() if unsettled else 0)
