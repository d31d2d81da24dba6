"""One dataset's cache entries: reading them (validated) and writing them (atomically), study by study.

:class:`StudyCache` takes :class:`~mosmed.source.StudySource` values. :meth:`StudyCache.open` is the open path
of one study: the source is opened once (paths re-checked, files' identity taken), its key made once, and its
stats and arrays read from the cache, or measured (:func:`mosmed.analysis.analyze`) and written. A cache
directory that cannot be written makes ``writable`` False: entries are then kept in memory (stats and
thumbnails only; arrays go to the caller).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import mosmed.cache.entries as entries
import mosmed.cache.eviction as eviction
from mosmed.atomic import remove_tree, sweep_debris, tmp_name
from mosmed.cache.arrays import ArrayWriter, StudyArrays, load_arrays
from mosmed.cache.keys import CACHE_VERSION, dataset_key, entry_stem, parse_entry_name, source_key
from mosmed.config import budget_from_env, default_cache_root
from mosmed.errors import CacheError, MosmedError, UnsafePathError
from mosmed.jsonio import roundtrip
from mosmed.source import StudySource

__all__ = ["StudyArrays", "StudyEntry", "BuildResult", "StudyCache"]


@dataclass
class StudyEntry:
    """What building (or opening) one study produced. ``stats`` is the stats document (see
    :meth:`StudyCache.get_stats`)."""

    study_id: int
    key: str
    status: str  # "ok" | "error"
    error: str
    stats: dict
    arrays: StudyArrays | None = None
    thumb: bytes | None = None
    written: bool = False  # stats written to disk by this call
    arrays_written: bool = False


@dataclass(frozen=True)
class BuildResult:
    """The small, picklable outcome of building one study (what a worker process sends back)."""

    study_id: int
    status: str
    error: str
    arrays_written: bool = False
    arrays_name: str | None = None
    skipped: bool = False


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
    probe : bool
        Try a write now to learn whether the cache directory is writable (worker processes skip it).

    Notes
    -----
    Safe to share between threads (the only in-memory state, used when the cache cannot be written, sits behind
    a lock) and between processes (all coordination goes through atomic renames).
    """

    def __init__(
        self, dataset_root: Path, cache_root: Path | None = None, budget_bytes: int | None = None, *, probe: bool = True
    ) -> None:
        self.dataset_root = Path(dataset_root).expanduser().resolve()
        self.cache_root = Path(cache_root if cache_root is not None else default_cache_root()).expanduser()
        self.budget = int(budget_from_env() if budget_bytes is None else budget_bytes)
        self.dir = self.cache_root / dataset_key(self.dataset_root)
        self.stats_dir = self.dir / "stats"
        self.thumbs_dir = self.dir / "thumbs"
        self.arrays_dir = self.dir / "arrays"
        self.reason = ""
        self._lock = threading.Lock()
        self._mem: dict[str, StudyEntry] = {}  # only used when not writable
        self.writable = self._probe_writable() if probe else True

    def _probe_writable(self) -> bool:
        """Really try to write (os.access lies for root, who ignores mode bits)."""
        try:
            for d in (self.dir, self.stats_dir, self.thumbs_dir, self.arrays_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.dir / tmp_name("probe")
            with open(probe, "wb") as f:
                f.write(b"ok")
            probe.unlink()
            return True
        except OSError as e:
            self.reason = (
                f"cache directory {self.dir} cannot be written ({e.strerror or e}); "
                "studies are computed in memory on every open"
            )
            return False

    # -- keys ----------------------------------------------------------------------------------------

    def key(self, source: StudySource) -> str | None:
        """The cache key of a source (its files' identity is taken when not yet), or None when unusable."""
        if not source.is_opened:
            source = source.identified()
        return source_key(source) if source.ok else None

    def source_key(self, source: StudySource) -> str:
        """The cache key of a usable source; CacheError naming the study when its files cannot be examined."""
        if not source.is_opened:
            source = source.identified()
        if not source.ok:
            raise CacheError(source.error, study_id=source.study_id, path=source.study_path)
        return source_key(source)

    # -- readers -------------------------------------------------------------------------------------

    def read_stats(self, study_id: int, key: str) -> dict | None:
        """The stats document under ``(study_id, key)`` (memory first, then disk), or None."""
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None and mem.study_id == study_id:
            return mem.stats
        return entries.read_stats(self.stats_dir, entry_stem(study_id, key), study_id, key)

    def read_arrays(self, study_id: int, key: str, *, touch: bool = True) -> StudyArrays | None:
        """The arrays under ``(study_id, key)`` (memory first, then the memory-mapped files), or None."""
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None and mem.arrays is not None:
            return mem.arrays
        d = self.arrays_dir / entry_stem(study_id, key)
        arrays = load_arrays(d, key)
        if arrays is not None and touch:
            eviction.touch(d)
        return arrays

    def get_stats(self, source: StudySource) -> dict | None:
        """The stats document of a source, or None when missing, stale or unreadable.

        The document: ``cache_version, key, study_id, status ("ok"|"error"), error`` and, when ok, ``summary``
        (the summary row), ``stats`` (``StudyStats`` fields as lists), ``shape, spacing, slice_z_mm,
        source_axcodes, source_shape, warnings`` (see :mod:`mosmed.analysis`).
        """
        key = self.key(source)
        return None if key is None else self.read_stats(source.study_id, key)

    def get_thumb(self, source: StudySource) -> bytes | None:
        """The PNG thumbnail, or None (a file without the PNG end marker counts as missing)."""
        key = self.key(source)
        if key is None:
            return None
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None:
            return mem.thumb
        return entries.read_thumb(self.thumbs_dir, entry_stem(source.study_id, key))

    def get_arrays(self, source: StudySource, *, touch: bool = True) -> StudyArrays | None:
        """Memory-mapped (read-only) arrays of a source, or None when missing, evicted, stale or corrupt.
        ``touch`` records the use for eviction (a build checking presence passes False)."""
        key = self.key(source)
        return None if key is None else self.read_arrays(source.study_id, key, touch=touch)

    # -- the open path ---------------------------------------------------------------------------------

    def open(self, source: StudySource) -> StudyEntry:
        """Stats and arrays of one study for viewing: from the cache, else measured and written first.

        ``source`` is opened here once (paths re-checked now, files' identity taken) unless it already is, and
        its key made once. Never raises for a data problem: an entry with ``status == "error"`` names it.

        Raises
        ------
        UnsafePathError
            When a path now leads outside the dataset root (nothing is read).
        """
        if not source.is_opened:
            source = source.opened(self.dataset_root)
        if not source.ok:
            return StudyEntry(
                source.study_id,
                "",
                "error",
                source.error or "registry row is in error",
                {"status": "error", "error": source.error},
            )
        key = source_key(source)
        stem = entry_stem(source.study_id, key)
        with self._lock:
            mem = self._mem.get(key)
        if mem is not None:  # a read-only cache: what this process measured before
            if mem.status != "ok" or mem.arrays is not None:
                return mem
            doc = mem.stats
        else:
            doc = entries.read_stats(self.stats_dir, stem, source.study_id, key)
        if doc is not None and doc.get("status") != "ok":
            return StudyEntry(
                source.study_id, key, "error", str(doc.get("error", "")) or "study could not be read", doc
            )
        arrays = load_arrays(self.arrays_dir / stem, key) if doc is not None else None
        if doc is not None and arrays is not None:
            eviction.touch(self.arrays_dir / stem)
            return StudyEntry(source.study_id, key, "ok", "", doc, arrays=arrays)
        entry = self.build_study(source, need_arrays=True)
        if entry.status == "ok" and self.writable:
            # Serve from the memory map (lower resident memory than the arrays just computed).
            mapped = load_arrays(self.arrays_dir / stem, key)
            if mapped is not None:
                entry.arrays = mapped
                self.evict_to_budget(protect=[stem])
        return entry

    # -- writers -------------------------------------------------------------------------------------

    def build_study(self, source: StudySource, need_arrays: bool = True) -> StudyEntry:
        """Measure one study and, when the cache is writable, write its entries atomically.

        A data problem (VolumeError, MaskMismatchError, ...) does not raise: it returns (and records) an entry
        with ``status == "error"`` and the reason, keyed by the source identity so it is retried only when the
        file changes. Anything unexpected propagates.

        Raises
        ------
        UnsafePathError
            Naming the study, when its study or mask file now leads outside the dataset root. Nothing is read
            and nothing recorded: a refusal, not a property of the data.
        """
        from mosmed.analysis import analyze  # late: keeps `import mosmed.cache` light (no scipy)

        if not source.ok:
            return _error_entry(source, source.error or "registry row is in error")
        if not source.is_opened:
            source = source.opened(self.dataset_root)  # containment re-checked at open time
            if not source.ok:
                return _error_entry(source, source.error)
        study_id = source.study_id
        key = source_key(source)
        base = {"cache_version": CACHE_VERSION, "key": key, "study_id": study_id}
        writer = None
        if self.writable and need_arrays and load_arrays(self.arrays_dir / entry_stem(study_id, key), key) is None:
            writer = ArrayWriter(self.arrays_dir, study_id, key)
        try:
            result = analyze(source, writer.submit if writer is not None else None)
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
        # Round-trip through JSON so the returned document equals what a later reader gets.
        doc = roundtrip({**base, "status": "ok", "error": "", **result.doc})
        entry = StudyEntry(study_id, key, "ok", "", doc, thumb=result.thumb)
        mem_arrays = StudyArrays(result.volume, result.mask, result.lung, key, from_cache=False)
        if not self.writable:
            # Keep only the small parts in memory (a dataset's worth of volumes would not fit); the arrays go
            # to the caller, and the app's own bounded cache keeps the few studies in use.
            with self._lock:
                self._mem[key] = StudyEntry(study_id, key, "ok", "", doc, thumb=result.thumb)
            entry.arrays = mem_arrays
            return entry
        if writer is not None:
            entry.arrays_written = writer.finish()
        self._write_stats(study_id, key, doc, result.thumb)
        entry.written = True
        self._remove_other_versions(study_id, key)
        entry.arrays = mem_arrays if need_arrays else None
        return entry

    def build_result(self, source: StudySource, need_arrays: bool) -> BuildResult:
        """Build one study for a whole-dataset build; a refused (unsafe) path is that row's error."""
        try:
            entry = self.build_study(source, need_arrays=need_arrays)
        except UnsafePathError as e:
            return BuildResult(source.study_id, "error", e.reason)
        return BuildResult(
            entry.study_id,
            entry.status,
            entry.error,
            entry.arrays_written,
            entry_stem(entry.study_id, entry.key) if entry.arrays_written else None,
        )

    def _write_stats(self, study_id: int, key: str, doc: dict, thumb: bytes | None) -> None:
        entries.write_entries(self.stats_dir, self.thumbs_dir, entry_stem(study_id, key), doc, thumb)

    def _remove_other_versions(self, study_id: int, key: str) -> None:
        """Delete entries of the same study under other keys (its source changed: they are stale)."""
        prefix = f"study_{int(study_id):04d}-"
        keep = entry_stem(study_id, key)
        for d in (self.stats_dir, self.thumbs_dir, self.arrays_dir):
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if not name.startswith(prefix) or name.split(".")[0] == keep:
                    continue
                parsed = parse_entry_name(name)
                if parsed is None or parsed[0] != int(study_id):
                    continue
                if d is self.arrays_dir:
                    remove_tree(d / name)
                else:
                    (d / name).unlink(missing_ok=True)

    # -- maintenance ---------------------------------------------------------------------------------

    def sweep_tmp(self) -> int:
        """Remove ``.tmp-*`` debris whose writer is gone (or that is old)."""
        if not self.writable:
            return 0
        return sweep_debris((self.dir, self.stats_dir, self.thumbs_dir, self.arrays_dir))

    def bytes_used(self) -> int:
        """Array bytes on disk (this dataset)."""
        return eviction.bytes_used(self.arrays_dir)

    def evict_to_budget(self, protect=()) -> int:
        """Delete least recently used arrays until they fit the budget; returns how many were evicted."""
        if not self.writable:
            return 0
        return eviction.evict_to_budget(self.arrays_dir, self.budget, protect)

    def memory_keys(self) -> dict[str, bool]:
        """Keys of the in-memory entries (read-only cache), each with whether it holds arrays."""
        with self._lock:
            return {k: e.arrays is not None for k, e in self._mem.items()}


def _error_entry(source: StudySource, reason: str) -> StudyEntry:
    return StudyEntry(source.study_id, "", "error", reason, {"status": "error", "error": reason})
