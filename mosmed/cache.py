"""The data cache: per-study statistics, thumbnails and memory-mapped arrays, written atomically.

Layout under the cache root (``MOSMED_CACHE``, default ``<repo>/data_cache``)::

    <dataset_key>/                       dataset_key = "<basename>-<sha1(resolved root)[:10]>"
      stats/study_0001-<srckey>.json     summary row, per-slice areas, lung HU histogram (never evicted)
      thumbs/study_0001-<srckey>.png     small preview (never evicted)
      arrays/study_0001-<srckey>/        volume.npy, mask.npy (if any), lung.npy, meta.json, last_used
                                         (evictable: least recently used first, under a disk budget)
      summary-<regkey>.json / .csv       every registry row, rebuilt whenever any entry changed
      .tmp-<pid>-<token>-...             in-progress writes, in the directory of their target; never read

Why it is safe
--------------
* ``srckey`` hashes the cache version and the identity (path, size, mtime_ns) of the study and mask files, so a
  replaced source gets a new name: a stale entry is never found, and is removed when its successor is written.
* Every file is written to a temporary name in its target directory, fsynced (except the big ``.npy`` arrays,
  whose byte sizes the readers check against the fsynced meta.json: see ``_ArrayWriter._write``), then
  ``os.replace``-d; a directory is built as ``.tmp-*`` and ``os.rename``-d (when the target already exists
  another process won the race: ours is discarded). A killed builder therefore leaves only ``.tmp-*`` debris, which is swept when its
  process is gone (or after an hour).
* Readers validate what they read (version, key, shapes, dtypes, byte sizes); anything else reads as missing
  and is rebuilt.
* A cache directory that cannot be written makes ``writable`` False: everything is then computed in memory.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mosmed.errors import CacheError, MosmedError, UnsafePathError
from mosmed.registry import safe_join

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_BUDGET_GB",
    "SUMMARY_COLUMNS",
    "StudyArrays",
    "StudyEntry",
    "BuildReport",
    "CacheStatus",
    "StudyCache",
    "dataset_key",
    "budget_from_env",
]

#: Bump whenever what is written (or how it is computed) changes: every entry then reads as stale.
CACHE_VERSION = 2  # realct: 2 = new segmentation, density features, quality flags

DEFAULT_BUDGET_GB = 8.0
#: Columns of the summary table, one row per registry row (the Dataset facade adds ``has_thumb``).
SUMMARY_COLUMNS = (
    "study_id", "category", "has_mask", "status", "error", "warnings", "n_slices", "rows", "cols",
    "spacing_mm", "spacing_x", "spacing_y", "spacing_z", "lung_ml", "lesion_ml", "involvement_pct",
    "estimated_involvement_pct", "in_band", "estimate_in_band", "study_file", "mask_file",
    # realct: the raw density measures (mosmed.involvement.DENSITY_COLUMNS), the estimate's calibration label
    # (mosmed.involvement.ESTIMATE_COLUMNS) and the quality flags (mosmed.quality.qc_text).
    "density_pct", "density_pct_750", "density_pct_600", "estimate_calibrated", "estimate_basis", "qc",
)
ARRAY_NAMES = ("volume", "mask", "lung")
ARRAY_DTYPES = {"volume": "int16", "mask": "uint8", "lung": "uint8"}
#: Debris older than this is swept even when its process id is alive (pid reuse, another host).
TMP_MAX_AGE_S = 3600.0
#: Last-use stamps are refreshed at most this often (one utime per study open, not per slice).
TOUCH_INTERVAL_S = 60.0
_NAME_RE = re.compile(r"^study_(\d+)-([0-9a-f]{12})(?:\.json|\.png)?$")
_TMP_RE = re.compile(r"^\.tmp-(\d+)-")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"

ProgressFn = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------------------------------------
# small helpers


def dataset_key(root: Path) -> str:
    """Directory name of one dataset's cache: readable basename plus a hash of the resolved root."""
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name or "root")[:40]
    return f"{base}-{digest}"


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


def _stem(study_id: int, key: str) -> str:
    return f"study_{int(study_id):04d}-{key}"


def _tmp_name(suffix: str) -> str:
    # The pid lets a sweeper tell debris of a dead process from a write in progress.
    return f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{suffix}"


def _fsync_dir(path: Path) -> None:
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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the complete new one, never a part."""
    tmp = path.parent / _tmp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _jsonable(value: Any) -> Any:
    """Plain JSON values; NaN/inf -> None so the file stays strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if pd.isna(value):
        return None
    return str(value)


def _dumps(obj: Any) -> bytes:
    # sort_keys + fixed separators: identical inputs give byte-identical files (the kill test relies on it).
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _remove_tree_atomically(path: Path) -> bool:
    """Rename a directory out of the way (readers then see it gone at once) and delete it."""
    doomed = path.parent / _tmp_name("del")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def _pid_alive(pid: int) -> bool:
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


def _row_get(row: Any, name: str, default: Any = None) -> Any:
    try:
        value = row[name]
    except (KeyError, IndexError, TypeError):
        return default
    if value is None:
        return default
    try:
        if pd.isna(value):
            return default
    except (TypeError, ValueError):
        pass
    return value


def _row_dict(row: Any) -> dict:
    """A registry row (Series or mapping) as a plain picklable dict."""
    if isinstance(row, pd.Series):
        d = row.to_dict()
        if "study_id" not in d and row.name is not None:
            d["study_id"] = row.name
    else:
        d = dict(row)
    return d


# ----------------------------------------------------------------------------------------------------------
# result types


@dataclass
class StudyArrays:
    """Display-orientation arrays of one study (memory-mapped read-only when they come from the cache)."""

    volume: np.ndarray
    mask: np.ndarray | None
    lung: np.ndarray
    key: str
    from_cache: bool = True

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.volume, self.mask, self.lung) if a is not None))


@dataclass
class StudyEntry:
    """What building one study produced. ``stats`` is the stats document (see ``StudyCache.get_stats``)."""

    study_id: int
    key: str
    status: str                      # "ok" | "error"
    error: str
    stats: dict
    arrays: StudyArrays | None = None
    thumb: bytes | None = None
    written: bool = False            # stats written to disk by this call
    arrays_written: bool = False


@dataclass
class BuildReport:
    """Outcome of ``StudyCache.build_all``."""

    n_total: int = 0                 # registry rows
    n_built: int = 0                 # studies computed in this run
    n_cached: int = 0                # already valid, skipped
    n_errors: int = 0                # rows in error (registry problems and failed builds)
    n_arrays_written: int = 0
    n_evicted: int = 0
    seconds: float = 0.0
    workers: int = 1
    writable: bool = True
    errors: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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


# ----------------------------------------------------------------------------------------------------------
# computing one study (no disk writes here)


def _compute(row: dict, on_array: Callable[[str, np.ndarray | None], None] | None = None
             ) -> tuple[dict, dict[str, np.ndarray | None], bytes]:
    """Read, reorient, segment, measure, render the thumbnail. Raises MosmedError on bad data.

    ``on_array(name, array)`` is called as soon as each display array exists (so it can be written meanwhile).
    """
    emit = on_array or (lambda name, arr: None)
    from mosmed import measurements, quality, render, segmentation, severity, volume  # late: keeps `import mosmed.cache` light

    study_id = int(_row_get(row, "study_id"))
    study_path = _row_get(row, "study_path")
    if not study_path:
        raise MosmedError("study file is not available", study_id=study_id)
    vol = volume.read_volume(Path(study_path), study_id=study_id)
    warnings = list(vol.warnings)
    mask = None
    mask_path = _row_get(row, "mask_path")
    if mask_path:
        mask, mwarn = volume.read_mask(Path(mask_path), vol, study_id=study_id)
        warnings.extend(mwarn)
    hu = vol.data
    emit("volume", hu)
    emit("mask", mask)
    seg = segmentation.segment(hu, vol.spacing)   # realct: the segmentation result is kept for the flags
    lung = seg.lung
    emit("lung", lung)
    st = measurements.study_stats(hu, vol.spacing, lung, mask)
    flags = quality.assess(vol, seg, st)          # realct: quality flags (warnings with a reason)
    thumb = render.thumbnail(hu, mask, vol.spacing)

    category = str(_row_get(row, "category", ""))
    dz, dy, dx = (float(s) for s in vol.spacing)

    def band_ok(pct: float | None) -> bool | None:
        if pct is None or not math.isfinite(pct):
            return None
        try:
            return bool(severity.in_band(category, float(pct)))
        except (KeyError, ValueError):
            return None

    inv = None if st.involvement_pct is None else float(st.involvement_pct)
    est = float(st.estimated_involvement_pct)
    summary = {
        "study_id": study_id,
        "category": category,
        "has_mask": mask is not None,
        "status": "ok",
        "error": "",
        "warnings": "; ".join(warnings),
        "n_slices": int(hu.shape[0]),
        "rows": int(hu.shape[1]),
        "cols": int(hu.shape[2]),
        "spacing_mm": f"{dx:.3g} × {dy:.3g} × {dz:.3g}",
        "spacing_x": dx,
        "spacing_y": dy,
        "spacing_z": dz,
        "lung_ml": float(st.lung_ml),
        "lesion_ml": None if st.lesion_ml is None else float(st.lesion_ml),
        "involvement_pct": inv,
        "estimated_involvement_pct": est,
        "in_band": band_ok(inv),
        "estimate_in_band": band_ok(est),
        "study_file": _row_get(row, "study_file", ""),
        "mask_file": _row_get(row, "mask_file"),
        **{k: st.density.get(k) for k in ("density_pct", "density_pct_750", "density_pct_600")},  # realct
        "qc": quality.qc_text(flags),             # realct
    }
    doc = {
        "shape": list(hu.shape),
        "spacing": [dz, dy, dx],
        "slice_z_mm": np.asarray(vol.slice_z_mm, dtype=float),
        "source_axcodes": list(vol.source_axcodes),
        "source_shape": list(vol.source_shape),
        "warnings": warnings,
        "summary": summary,
        "stats": {f.name: getattr(st, f.name) for f in dataclasses.fields(st)},
        "qc": [f.as_dict() for f in flags],       # realct
    }
    return doc, {"volume": hu, "mask": mask, "lung": lung}, thumb


def stats_from_doc(doc: dict):
    """Rebuild a ``measurements.StudyStats`` from a stats document (lists back to arrays)."""
    from mosmed import measurements

    raw = doc.get("stats") or {}
    kwargs = {}
    for f in dataclasses.fields(measurements.StudyStats):
        v = raw.get(f.name)
        if isinstance(v, list):
            v = np.asarray([np.nan if x is None else x for x in v], dtype=float)
            if f.name == "hist":
                v = v.astype(np.int64)
        kwargs[f.name] = v
    if kwargs.get("density") is None:
        kwargs["density"] = {}                    # realct: a document without density features
    return measurements.StudyStats(**kwargs)


class _ArrayWriter:
    """Writes one study's arrays into ``.tmp-*`` on a background thread, then renames the directory into place.

    Why a thread: the volume can go to disk while the lungs are being segmented (file writes and most numpy
    work release the GIL), so writing the cache costs little beyond reading the source.
    """

    def __init__(self, arrays_dir: Path, study_id: int, key: str) -> None:
        self.arrays_dir = arrays_dir
        self.final = arrays_dir / _stem(study_id, key)
        self.tmp = arrays_dir / _tmp_name(self.final.name)
        self.tmp.mkdir()
        self.meta: dict = {"cache_version": CACHE_VERSION, "key": key, "study_id": study_id, "arrays": {}}
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mosmed-npy")
        self._futures: list[cf.Future] = []

    def submit(self, name: str, arr: np.ndarray | None) -> None:
        if arr is None:
            return
        arr = np.ascontiguousarray(arr, dtype=ARRAY_DTYPES[name])   # no copy when already right
        self._futures.append(self._pool.submit(self._write, name, arr))

    def _write(self, name: str, arr: np.ndarray) -> None:
        path = self.tmp / f"{name}.npy"
        with open(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)      # header + one tofile: no extra copy
            # No fsync for the array files (it was ~0.2-0.3 s of a ~0.8 s build: 40 MB forced to the device).
            # Why it stays safe: the directory is only renamed into place after every write returned, so a
            # killed process leaves ``.tmp-*`` debris, never a valid-looking entry. For a power loss, readers
            # (_valid_arrays_dir) check every array's byte size against meta.json, and meta.json is written and
            # fsynced LAST (then the directory): a lost or truncated array reads as missing and is rebuilt. On
            # filesystems that order data before metadata (ext4 data=ordered, the default; xfs, btrfs) a right
            # size implies the data reached the disk; elsewhere a power loss at the wrong moment could leave
            # zeroed pixels of the right size, which `make clean-cache` clears (all of this is derived data).
        self.meta["arrays"][name] = {"shape": list(arr.shape), "dtype": str(arr.dtype),
                                     "file_bytes": os.stat(path).st_size}

    def finish(self) -> bool:
        """Complete the directory and rename it into place; False when another process's copy won."""
        try:
            for fut in self._futures:
                fut.result()
            self._pool.shutdown(wait=True)
            with open(self.tmp / "meta.json", "wb") as f:
                f.write(_dumps(self.meta))
                f.flush()
                os.fsync(f.fileno())
            (self.tmp / "last_used").touch()
            _fsync_dir(self.tmp)
            if self.final.exists():
                if _valid_arrays_dir(self.final, self.meta["key"]):
                    shutil.rmtree(self.tmp, ignore_errors=True)   # another process got there first
                    return False
                _remove_tree_atomically(self.final)              # a damaged leftover under the final name
            try:
                os.rename(self.tmp, self.final)
            except OSError:
                # Another process renamed its identical copy first: it won, ours is discarded.
                shutil.rmtree(self.tmp, ignore_errors=True)
                return False
            _fsync_dir(self.arrays_dir)
            return True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for fut in self._futures:
            fut.cancel()
        self._pool.shutdown(wait=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _valid_arrays_dir(d: Path, key: str) -> bool:
    return _load_arrays_dir(d, key) is not None


def _load_arrays_dir(d: Path, key: str) -> StudyArrays | None:
    """Open an arrays directory as read-only memory maps after checking its meta; None when anything is off."""
    try:
        meta = json.loads((d / "meta.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("cache_version") != CACHE_VERSION or meta.get("key") != key:
        return None
    arrays_meta = meta.get("arrays")
    if not isinstance(arrays_meta, dict) or "volume" not in arrays_meta or "lung" not in arrays_meta:
        return None
    out: dict[str, np.ndarray | None] = {"mask": None}
    shape0 = None
    for name, info in arrays_meta.items():
        if name not in ARRAY_NAMES or not isinstance(info, dict):
            return None
        path = d / f"{name}.npy"
        try:
            if os.stat(path).st_size != info.get("file_bytes"):
                return None
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if (list(arr.shape) != info.get("shape") or str(arr.dtype) != info.get("dtype")
                or str(arr.dtype) != ARRAY_DTYPES[name] or arr.ndim != 3 or not arr.flags.c_contiguous):
            return None
        if shape0 is None:
            shape0 = arr.shape
        elif arr.shape != shape0:
            return None
        out[name] = arr
    return StudyArrays(volume=out["volume"], mask=out["mask"], lung=out["lung"], key=key, from_cache=True)


# ----------------------------------------------------------------------------------------------------------
# the cache


class StudyCache:
    """The cache of one dataset.

    Parameters
    ----------
    dataset_root : Path
        Dataset root (the directory holding the registry).
    cache_root : Path, optional
        Cache root; default ``MOSMED_CACHE`` or ``<repo>/data_cache``.
    budget_bytes : int, optional
        Disk budget for the evictable arrays; default from ``MOSMED_CACHE_BUDGET_GB`` (8 GB).

    Notes
    -----
    Safe to share between threads (the only in-memory state, used when the cache cannot be written, sits behind
    a lock) and between processes (all coordination goes through atomic renames).
    """

    def __init__(self, dataset_root: Path, cache_root: Path | None = None, budget_bytes: int | None = None,
                 *, _probe: bool = True) -> None:
        self.dataset_root = Path(dataset_root).expanduser().resolve()
        if cache_root is None:
            from mosmed.dataset import default_cache_root

            cache_root = default_cache_root()
        self.cache_root = Path(cache_root).expanduser()
        self.budget = int(budget_from_env() if budget_bytes is None else budget_bytes)
        self.dir = self.cache_root / dataset_key(self.dataset_root)
        self.stats_dir = self.dir / "stats"
        self.thumbs_dir = self.dir / "thumbs"
        self.arrays_dir = self.dir / "arrays"
        self.reason = ""
        self._lock = threading.Lock()
        self._mem: dict[str, StudyEntry] = {}      # only used when not writable
        self.writable = self._probe_writable() if _probe else True

    # -- set-up --------------------------------------------------------------------------------------

    def _probe_writable(self) -> bool:
        """Really try to write (os.access lies for root, who ignores mode bits)."""
        try:
            for d in (self.dir, self.stats_dir, self.thumbs_dir, self.arrays_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.dir / _tmp_name("probe")
            with open(probe, "wb") as f:
                f.write(b"ok")
            probe.unlink()
            return True
        except OSError as e:
            self.reason = (f"cache directory {self.dir} cannot be written ({e.strerror or e}); "
                           "studies are computed in memory on every open")
            return False

    # -- keys ----------------------------------------------------------------------------------------

    def source_key(self, row: Any) -> str:
        """``sha1(CACHE_VERSION, study path, size, mtime_ns, mask path, size, mtime_ns)[:12]``.

        Raises
        ------
        CacheError
            When the study file cannot be examined (missing, unreadable).
        """
        study_id = _row_get(row, "study_id")
        parts = [f"v{CACHE_VERSION}"]
        for col in ("study_path", "mask_path"):
            p = _row_get(row, col)
            if not p:
                parts.append("-")
                continue
            try:
                st = os.stat(p)
            except OSError as e:
                raise CacheError(f"cannot read {Path(p).name}: {e.strerror or e}", study_id=study_id, path=p) from None
            parts.append(f"{p}\0{st.st_size}\0{st.st_mtime_ns}")
        return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:12]

    def source_paths(self, row: Any) -> tuple[Path | None, Path | None]:
        """The row's study and mask files, re-checked *now* to lie inside the dataset root.

        The registry checked its paths when it was loaded; a file replaced afterwards by a link leading out of
        the dataset (time of check, time of use) would otherwise be followed. Every read of a study or mask
        file goes through here, just before opening it, and opens the resolved path this returns (no link is
        followed after the check).

        Returns
        -------
        (Path or None, Path or None)
            Resolved study and mask paths (``None`` where the row has none).

        Raises
        ------
        UnsafePathError
            Naming the study, when a path now leads outside the dataset root.
        """
        study_id = _row_get(row, "study_id")
        sid = int(study_id) if study_id is not None else None
        out: list[Path | None] = []
        for col, rel_col, what in (("study_path", "study_file", "study"), ("mask_path", "mask_file", "mask")):
            p = _row_get(row, col)
            if not p:
                out.append(None)
                continue
            try:
                # The stored path is absolute and inside the (resolved) root; safe_join resolves it again and
                # refuses it when a link now leads out (one containment rule, kept in the registry module).
                out.append(safe_join(self.dataset_root, str(p)))
            except UnsafePathError:
                shown = str(_row_get(row, rel_col, "") or Path(str(p)).name)
                raise UnsafePathError(
                    f"unsafe {what} path: {shown} now leads outside the dataset root (the file was replaced "
                    f"after the registry was checked); not opened", study_id=sid, path=str(p)) from None
        return out[0], out[1]

    def _key_or_none(self, row: Any) -> str | None:
        if str(_row_get(row, "status", "ok")) != "ok":
            return None
        try:
            return self.source_key(row)
        except CacheError:
            return None

    # -- readers -------------------------------------------------------------------------------------

    def _read_stats_file(self, study_id: int, key: str) -> dict | None:
        path = self.stats_dir / f"{_stem(study_id, key)}.json"
        try:
            doc = json.loads(path.read_bytes())
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

    def get_stats(self, row: Any) -> dict | None:
        """The stats document of a registry row, or None when missing, stale or unreadable.

        The document: ``cache_version, key, study_id, status ("ok"|"error"), error`` and, when ok, ``summary``
        (the summary row), ``stats`` (``lungs.StudyStats`` fields as lists), ``shape, spacing, slice_z_mm,
        source_axcodes, source_shape, warnings``.
        """
        key = self._key_or_none(row)
        if key is None:
            return None
        study_id = int(_row_get(row, "study_id"))
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None and mem.study_id == study_id:
            return mem.stats
        return self._read_stats_file(study_id, key)

    def get_thumb(self, row: Any) -> bytes | None:
        """The PNG thumbnail, or None (a file without the PNG end marker counts as missing)."""
        key = self._key_or_none(row)
        if key is None:
            return None
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None:
            return mem.thumb
        try:
            data = (self.thumbs_dir / f"{_stem(int(_row_get(row, 'study_id')), key)}.png").read_bytes()
        except OSError:
            return None
        if not (data.startswith(_PNG_SIG) and data.endswith(_PNG_END)):
            return None
        return data

    def _load_arrays_dir(self, d: Path, key: str) -> StudyArrays | None:
        return _load_arrays_dir(d, key)

    def get_arrays(self, row: Any) -> StudyArrays | None:
        """Memory-mapped (read-only) arrays of a row, or None when missing, evicted, stale or corrupt."""
        key = self._key_or_none(row)
        if key is None:
            return None
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None and mem.arrays is not None:
            return mem.arrays
        d = self.arrays_dir / _stem(int(_row_get(row, "study_id")), key)
        arrays = self._load_arrays_dir(d, key)
        if arrays is not None:
            self._touch(d)
        return arrays

    def _touch(self, d: Path) -> None:
        """Record a use for LRU eviction: one utime, at most every TOUCH_INTERVAL_S."""
        stamp = d / "last_used"
        try:
            if time.time() - os.stat(stamp).st_mtime < TOUCH_INTERVAL_S:
                return
            os.utime(stamp)
        except OSError:
            pass   # read-only cache or evicted meanwhile: LRU order is advisory

    # -- writers -------------------------------------------------------------------------------------

    def _remove_other_versions(self, study_id: int, key: str) -> None:
        """Delete entries of the same study under other keys (its source changed: they are stale)."""
        prefix = f"study_{int(study_id):04d}-"
        keep = _stem(study_id, key)
        for d in (self.stats_dir, self.thumbs_dir, self.arrays_dir):
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if not name.startswith(prefix) or name.split(".")[0] == keep:
                    continue
                m = _NAME_RE.match(name)
                if not m or int(m.group(1)) != int(study_id):
                    continue
                p = d / name
                if d is self.arrays_dir:
                    _remove_tree_atomically(p)
                else:
                    p.unlink(missing_ok=True)

    def build_study(self, row: Any, need_arrays: bool = True) -> StudyEntry:
        """Compute one study and, when the cache is writable, write its entries atomically.

        A data problem (VolumeError, MaskMismatchError, ...) does not raise: it returns (and records) an entry
        with ``status == "error"`` and the reason, keyed by the source identity so it is retried only when the
        file changes. Anything unexpected propagates.

        Raises
        ------
        UnsafePathError
            Naming the study, when its study or mask file now leads outside the dataset root (see
            :meth:`source_paths`). Nothing is read and nothing recorded: a refusal, not a property of the data.
        """
        row = _row_dict(row)
        study_id = int(_row_get(row, "study_id"))
        if str(_row_get(row, "status", "ok")) != "ok":
            reason = str(_row_get(row, "error", "")) or "registry row is in error"
            return StudyEntry(study_id, "", "error", reason, {"status": "error", "error": reason})
        study_path, mask_path = self.source_paths(row)   # containment re-checked at open time
        row["study_path"] = str(study_path) if study_path is not None else None
        row["mask_path"] = str(mask_path) if mask_path is not None else None
        try:
            key = self.source_key(row)
        except CacheError as e:
            return StudyEntry(study_id, "", "error", e.reason, {"status": "error", "error": e.reason})
        base = {"cache_version": CACHE_VERSION, "key": key, "study_id": study_id}
        writer = None
        if self.writable and need_arrays and self._load_arrays_dir(self.arrays_dir / _stem(study_id, key), key) is None:
            writer = _ArrayWriter(self.arrays_dir, study_id, key)
        try:
            doc, arrays, thumb = _compute(row, writer.submit if writer is not None else None)
        except MosmedError as e:
            if writer is not None:
                writer.abort()
            doc = {**base, "status": "error", "error": e.reason}
            entry = StudyEntry(study_id, key, "error", e.reason, doc)
            if self.writable:
                self._write_stats(study_id, key, doc, None)
                entry.written = True
            else:
                with self._lock:
                    self._mem[key] = entry
            return entry
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        doc = {**base, "status": "ok", "error": "", **doc}
        # Round-trip through JSON so the returned document equals what a later reader gets.
        doc = json.loads(_dumps(doc))
        entry = StudyEntry(study_id, key, "ok", "", doc, thumb=thumb)
        mem_arrays = StudyArrays(arrays["volume"], arrays["mask"], arrays["lung"], key, from_cache=False)
        if not self.writable:
            # Keep only the small parts in memory (a dataset's worth of volumes would not fit); the arrays go
            # to the caller, and the app's own bounded cache keeps the few studies in use.
            with self._lock:
                self._mem[key] = StudyEntry(study_id, key, "ok", "", doc, thumb=thumb)
            entry.arrays = mem_arrays
            return entry
        if writer is not None:
            entry.arrays_written = writer.finish()
        self._write_stats(study_id, key, doc, thumb)
        entry.written = True
        self._remove_other_versions(study_id, key)
        entry.arrays = mem_arrays if need_arrays else None
        return entry

    def _write_stats(self, study_id: int, key: str, doc: dict, thumb: bytes | None) -> None:
        # Thumbnail first, stats last: a present stats file means the study's small entries are complete.
        if thumb is not None:
            _atomic_write_bytes(self.thumbs_dir / f"{_stem(study_id, key)}.png", thumb)
        _atomic_write_bytes(self.stats_dir / f"{_stem(study_id, key)}.json", _dumps(doc))

    # -- maintenance ---------------------------------------------------------------------------------

    def sweep_tmp(self, max_age_s: float = TMP_MAX_AGE_S) -> int:
        """Remove ``.tmp-*`` debris whose writer is gone (or that is older than ``max_age_s``)."""
        if not self.writable:
            return 0
        n = 0
        now = time.time()
        for d in (self.dir, self.stats_dir, self.thumbs_dir, self.arrays_dir):
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
                if _pid_alive(int(m.group(1))) and age < max_age_s:
                    continue
                p = Path(e.path)
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                n += 1
        return n

    def _array_dirs(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every arrays entry of this dataset."""
        out = []
        try:
            entries = list(os.scandir(self.arrays_dir))
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

    def bytes_used(self) -> int:
        return sum(size for _, size, _ in self._array_dirs())

    def evict_to_budget(self, protect: Iterable[str] = ()) -> int:
        """Delete least recently used arrays until their total fits the budget; returns how many were evicted.

        Stats and thumbnails are never evicted, so the summary keeps covering every study.
        """
        if not self.writable:
            return 0
        protect = set(protect)
        dirs = sorted(self._array_dirs())
        total = sum(size for _, size, _ in dirs)
        n = 0
        for _, size, path in dirs:
            if total <= self.budget:
                break
            if path.name in protect:
                continue
            if _remove_tree_atomically(path):
                n += 1
            total -= size
        return n

    # -- whole dataset -------------------------------------------------------------------------------

    def build_all(self, registry, workers: int = 1, progress: ProgressFn | None = None,
                  arrays: bool = True) -> BuildReport:
        """Build every missing or stale entry of the registry.

        Parameters
        ----------
        registry : Registry
            The dataset's registry (``registry.df``: one row per usable row).
        workers : int
            Processes; ``> 1`` uses a spawn-context ProcessPoolExecutor in which every worker builds whole studies
            and writes its own entries (the parent only aggregates).
        progress : callable, optional
            ``progress(done, total, label)`` after every row.
        arrays : bool
            Also write memory-mapped arrays while this run's arrays fit the budget (stats are always written);
            older arrays are then evicted least recently used first.
        """
        t0 = time.perf_counter()
        df = registry.df
        report = BuildReport(n_total=len(df), workers=max(1, int(workers)), writable=self.writable)
        self.sweep_tmp()
        todo: list[tuple[dict, int, bool]] = []      # (row, estimated array bytes, stats already valid)
        done = 0
        total = len(df)
        for row in _records(df):
            sid = int(_row_get(row, "study_id"))
            if str(_row_get(row, "status", "ok")) != "ok":
                report.n_errors += 1
                report.errors.append((sid, str(_row_get(row, "error", ""))))
                done += 1
                continue
            doc = self.get_stats(row)
            if doc is not None and doc.get("status") != "ok":
                report.n_cached += 1
                report.n_errors += 1
                report.errors.append((sid, str(doc.get("error", ""))))
                done += 1
                continue
            # Presence check without touching the last-use stamp (a build is not a use).
            if doc is not None and (not arrays or self._load_arrays_dir(
                    self.arrays_dir / _stem(int(_row_get(row, "study_id")), doc["key"]), doc["key"]) is not None):
                report.n_cached += 1
                done += 1
                continue
            todo.append((row, self._estimate_bytes(row) if arrays else 0, doc is not None))
        if progress is not None:
            progress(done, total, "checked cache")

        # Arrays already on disk count against the budget: once it is full, later runs write stats only and
        # arrays come and go with use (open_study writes them, eviction drops the least recently used).
        planned = self.bytes_used() if arrays else 0
        written_names: list[str] = []

        def plan(est: int) -> bool:
            nonlocal planned
            if not arrays or not self.writable or planned + est > self.budget:
                return False
            planned += est
            return True

        def account(row: dict, res: dict) -> None:
            nonlocal done
            done += 1
            if res.get("skipped"):
                report.n_cached += 1
            else:
                report.n_built += 1
            if res["status"] != "ok":
                report.n_errors += 1
                report.errors.append((res["study_id"], res["error"]))
            if res.get("arrays_written"):
                report.n_arrays_written += 1
            if res.get("arrays_name"):
                written_names.append(res["arrays_name"])
            if progress is not None:
                progress(done, total, f"study {res['study_id']} ({_row_get(row, 'category', '?')})")

        def jobs():
            """(row, need_arrays) to build; rows whose stats are valid and get no arrays are skipped here."""
            for row, est, stats_ok in todo:
                need = plan(est)
                if stats_ok and not need:
                    account(row, {"study_id": int(_row_get(row, "study_id")), "status": "ok", "error": "",
                                  "skipped": True})
                    continue
                yield row, need

        n_workers = max(1, int(workers))
        if n_workers == 1 or len(todo) <= 1 or not self.writable:
            for row, need in jobs():
                account(row, _build_result(self, row, need))
        else:
            ctx = multiprocessing.get_context("spawn")   # fork from a threaded server (Streamlit) can deadlock
            with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
                pending: dict[cf.Future, dict] = {}
                it = jobs()

                def submit() -> None:
                    nxt = next(it, None)
                    if nxt is not None:
                        pending[pool.submit(_worker_build, str(self.dataset_root), str(self.cache_root),
                                            self.budget, nxt[0], nxt[1])] = nxt[0]

                # Submit lazily (a small window per worker) so the array budget is decided as results arrive.
                for _ in range(2 * n_workers):
                    submit()
                while pending:
                    finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in finished:
                        row = pending.pop(fut)
                        try:
                            res = fut.result()
                        except Exception as e:  # a worker died or hit a bug: record it, keep building
                            res = {"study_id": int(_row_get(row, "study_id")), "status": "error",
                                   "error": f"build failed: {e}"}
                        account(row, res)
                        submit()
        if arrays:
            report.n_evicted = self.evict_to_budget(protect=written_names)
            if self.bytes_used() > self.budget:   # this run alone exceeded the budget (estimate was low)
                report.n_evicted += self.evict_to_budget()
        if self.writable:
            self.summary(registry)   # refresh the summary file
        report.seconds = time.perf_counter() - t0
        return report

    def _estimate_bytes(self, row: dict) -> int:
        """Array bytes of a study from its header (int16 volume + two uint8 masks)."""
        try:
            import nibabel as nib

            study_path, _ = self.source_paths(row)   # nib.load opens the file: same containment re-check
            shape = nib.load(str(study_path)).shape
            n = int(np.prod(shape[:3]))
        except Exception:
            return 0
        return n * (2 + 1 + (1 if _row_get(row, "mask_path") else 0)) + 4096

    def _regkey(self, df: pd.DataFrame, keys: Mapping[int, str | None]) -> str:
        h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
        for r in _records(df):
            sid = r["study_id"]
            h.update(repr((int(sid), str(_row_get(r, "category", "")), str(_row_get(r, "status", "")),
                           str(_row_get(r, "error", "")), str(_row_get(r, "study_file", "")),
                           str(_row_get(r, "mask_file", "")), keys.get(int(sid)) or "")).encode())
        return h.hexdigest()[:12]

    def summary(self, registry) -> pd.DataFrame:
        """One row per registry row (``SUMMARY_COLUMNS``); rows not built yet have status ``"pending"``.

        Uses the summary file when it matches the current registry and sources; otherwise assembles it from the
        per-study stats and, when complete and writable, writes it (atomically) for the next reader.
        """
        doc = self.summary_doc(registry)
        return _summary_frame(doc["rows"])

    def summary_doc(self, registry) -> dict:
        """The summary document: ``{"regkey", "rows": [...], "hist": {study_id: counts}}``."""
        df = registry.df
        records = _records(df)
        keys = {int(r["study_id"]): self._key_or_none(r) for r in records}
        regkey = self._regkey(df, keys)
        path = self.dir / f"summary-{regkey}.json"
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("cache_version") == CACHE_VERSION and doc.get("regkey") == regkey:
                return doc
        except (OSError, ValueError, AttributeError):
            pass
        rows, hist, complete = [], {}, True
        for r in records:
            sid = int(r["study_id"])
            base = {c: None for c in SUMMARY_COLUMNS}
            base.update(study_id=sid, category=_row_get(r, "category", ""),
                        has_mask=bool(_row_get(r, "has_mask", False)),
                        study_file=_row_get(r, "study_file", ""), mask_file=_row_get(r, "mask_file"),
                        status="error", error="", warnings="")
            if str(_row_get(r, "status", "ok")) != "ok":
                base["error"] = str(_row_get(r, "error", "")) or "registry row is in error"
            else:
                st = self.get_stats(r) if keys[sid] else None
                if st is None:
                    base["status"] = "pending"
                    complete = False
                elif st.get("status") != "ok":
                    base["error"] = str(st.get("error", ""))
                else:
                    base.update({k: v for k, v in st["summary"].items() if k in base})
                    h = (st.get("stats") or {}).get("hist")
                    if h is not None:
                        hist[str(sid)] = h
            rows.append(base)
        from mosmed import involvement  # realct: the dataset's calibration of the HU estimate
        rows, calibration = involvement.calibrate_rows(rows)
        doc = {"cache_version": CACHE_VERSION, "regkey": regkey, "rows": rows, "hist": hist,
               "calibration": calibration}
        if complete and self.writable:
            try:
                _atomic_write_bytes(path, _dumps(doc))
                frame = _summary_frame(rows)
                _atomic_write_bytes(path.with_suffix(".csv"), frame.to_csv(index=False).encode("utf-8"))
                for old in self.dir.glob("summary-*.*"):
                    if old.stem != path.stem:
                        old.unlink(missing_ok=True)
            except OSError:
                pass
            doc = json.loads(_dumps(doc))
        return doc

    def status(self, registry) -> CacheStatus:
        """Counts without reading any array: names carry the keys, so existence checks suffice."""
        df = registry.df
        n_stats = n_arrays = n_err = 0
        try:
            stats_names = set(os.listdir(self.stats_dir))
        except OSError:
            stats_names = set()
        try:
            array_names = set(os.listdir(self.arrays_dir))
        except OSError:
            array_names = set()
        with self._lock:
            mem = dict(self._mem)
        keys: dict[int, str | None] = {}
        for r in _records(df):
            sid = int(r["study_id"])
            if str(_row_get(r, "status", "ok")) != "ok":
                n_err += 1
                n_stats += 1
                keys[sid] = None
                continue
            key = keys[sid] = self._key_or_none(r)   # one stat per file, shared with the digest below
            if key is None:
                n_err += 1
                n_stats += 1
                continue
            stem = _stem(int(sid), key)
            if key in mem or f"{stem}.json" in stats_names:
                n_stats += 1
            if (key in mem and mem[key].arrays is not None) or stem in array_names:
                n_arrays += 1
        return CacheStatus(n_rows=len(df), n_stats=n_stats, n_arrays=n_arrays, n_errors=n_err,
                           bytes_used=self.bytes_used(), budget=self.budget, writable=self.writable,
                           cache_dir=str(self.dir), reason=self.reason, source_digest=self._regkey(df, keys))


def _records(df: pd.DataFrame) -> list[dict]:
    """Registry rows as plain dicts (much faster than iterrows for 1110 rows)."""
    return df.to_dict("records")


def _summary_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS))
    if frame.empty:
        return frame
    frame["study_id"] = frame["study_id"].astype(int)
    frame["has_mask"] = frame["has_mask"].astype(bool)
    for c in ("n_slices", "rows", "cols"):
        frame[c] = pd.array(frame[c], dtype="Int64")
    for c in ("spacing_x", "spacing_y", "spacing_z", "lung_ml", "lesion_ml", "involvement_pct",
              "estimated_involvement_pct", "density_pct", "density_pct_750", "density_pct_600"):  # realct: density
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    for c in ("in_band", "estimate_in_band", "estimate_calibrated"):  # realct: estimate_calibrated
        frame[c] = frame[c].astype("boolean")
    for c in ("error", "warnings", "spacing_mm", "study_file", "estimate_basis", "qc"):  # realct: basis, qc
        frame[c] = frame[c].fillna("").astype(str)
    # mask_file stays NaN where there is none (never the string "nan").
    frame["mask_file"] = frame["mask_file"].where(frame["mask_file"].notna(), np.nan)
    return frame


def _entry_result(entry: StudyEntry) -> dict:
    return {"study_id": entry.study_id, "status": entry.status, "error": entry.error,
            "arrays_written": entry.arrays_written,
            "arrays_name": _stem(entry.study_id, entry.key) if entry.arrays_written else None}


def _build_result(cache: StudyCache, row: dict, need_arrays: bool) -> dict:
    """Build one study; a refused (unsafe) path is that row's error, the rest of a build goes on."""
    try:
        return _entry_result(cache.build_study(row, need_arrays=need_arrays))
    except UnsafePathError as e:
        return {"study_id": int(_row_get(row, "study_id")), "status": "error", "error": e.reason,
                "arrays_written": False, "arrays_name": None}


def _worker_build(dataset_root: str, cache_root: str, budget: int, row: dict, need_arrays: bool) -> dict:
    """Process-pool task: build one whole study and write its entries; return only a small result."""
    cache = StudyCache(Path(dataset_root), Path(cache_root), budget, _probe=False)
    return _build_result(cache, row, need_arrays)
