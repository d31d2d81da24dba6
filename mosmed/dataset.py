"""The facade the app and the CLI use: a dataset root, its registry and its cache, and studies opened from them.

``Dataset(root)`` checks the registry (bad rows are kept with their reason), attaches the cache of that root and
hands out summary rows, histograms, thumbnails and :class:`~mosmed.study.Study` objects whose arrays are
read-only memory maps of the cache (or arrays computed in memory when the cache cannot be written).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mosmed import volume
from mosmed.analysis import SUMMARY_COLUMNS
from mosmed.cache.build import BuildReport, build_all
from mosmed.cache.keys import entry_stem, parse_entry_name, source_key
from mosmed.cache.store import StudyCache
from mosmed.cache.summary import CacheStatus, cache_status, cache_token, summary_tables
from mosmed.config import default_cache_root
from mosmed.errors import MosmedError, RegistryError
from mosmed.measurements import HIST_EDGES
from mosmed.registry import Registry, load_registry
from mosmed.source import StudySource
from mosmed.study import Study

__all__ = ["SUMMARY_COLUMNS", "Dataset", "Study"]

_MOSMED_PATH = re.compile(r"^/studies/CT-[0-4]/study_\d{4}\.nii\.gz$")

ProgressFn = Callable[[int, int, str], None]


class Dataset:
    """A dataset root with its checked registry and its cache.

    Parameters
    ----------
    root : Path
        Dataset root (registry xlsx/csv, or ``studies/`` and ``masks/`` to scan).
    cache_root : Path, optional
        Cache root (default ``MOSMED_CACHE`` or ``<repo>/data_cache``).
    budget_bytes : int, optional
        Disk budget for cached arrays (default ``MOSMED_CACHE_BUDGET_GB``, 8 GB).

    Raises
    ------
    RegistryError
        When the root does not exist, is not a folder, or its registry is unusable.
    """

    def __init__(self, root: Path, cache_root: Path | None = None, budget_bytes: int | None = None) -> None:
        root = Path(root).expanduser()
        if not root.exists():
            raise RegistryError(f"dataset folder {root} does not exist", path=root)
        if not root.is_dir():
            raise RegistryError(f"dataset path {root} is not a folder", path=root)
        self.root = root.resolve()
        self.registry: Registry = load_registry(self.root)
        self.cache = StudyCache(self.root, cache_root if cache_root is not None else default_cache_root(), budget_bytes)
        self.is_mosmed = self._looks_like_mosmed()

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, {len(self.registry)} rows, cache={str(self.cache.dir)!r})"

    def _looks_like_mosmed(self) -> bool:
        """MosMedData as published (or its replica, which holds the real registry and masks): the xlsx registry,
        MosMedData's path form for every study file, and the dataset's LICENSE or README_EN.md beside it. The
        synthetic demo has the layout but not those files: it is not MosMedData."""
        if not self.registry.source.endswith(".xlsx") or not self.registry.sources:
            return False
        if not ((self.root / "LICENSE").is_file() or (self.root / "README_EN.md").is_file()):
            return False
        return all(_MOSMED_PATH.match(s.study_file) for s in self.registry.sources)

    # -- tables --------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return self.registry.ids

    def problems(self) -> list[tuple[int | None, str]]:
        """Registry problems as ``(study_id, reason)`` (dropped rows, rows in error)."""
        return self.registry.issues()

    def summary(self) -> pd.DataFrame:
        """One row per registry row (``SUMMARY_COLUMNS`` plus ``has_thumb`` and ``thumb_name``, the thumbnail's
        file name in the cache or None); unbuilt rows are ``"pending"``."""
        tables = summary_tables(self.cache, self.registry)
        frame = tables.frame
        try:
            thumbs = set(os.listdir(self.cache.thumbs_dir))
        except OSError:
            thumbs = set()
        has, names = [], []
        for src, key in zip(self.registry.rows(), tables.keys):  # the keys the summary was made with
            name = f"{entry_stem(src.study_id, key)}.png" if key else None
            if not key:
                has.append(False)
            elif self.cache.writable:
                has.append(name in thumbs)
            else:  # read-only cache: thumbnails may sit on disk or in memory
                has.append(self.cache.get_thumb(src) is not None)
            names.append(name if name in thumbs else None)
        ok = len(frame) == len(has)
        frame["has_thumb"] = has if ok else False
        frame["thumb_name"] = names if ok else None
        return frame

    def histograms(self) -> tuple[np.ndarray, pd.DataFrame]:
        """Lung HU histograms: ``(edges, frame)`` with one row per built study (index study_id), one column per bin."""
        edges = np.asarray(HIST_EDGES)
        hist = summary_tables(self.cache, self.registry).hist
        cols = [f"{int(a)}..{int(b)}" for a, b in zip(edges[:-1], edges[1:])]
        return edges, pd.DataFrame(hist[:, 1:], index=pd.Index(hist[:, 0], name="study_id"), columns=cols)

    def thumbnail(self, study_id: int) -> bytes | None:
        return self.cache.get_thumb(self.source(study_id))

    def thumbnail_file(self, thumb_name: str) -> Path | None:
        """The cached thumbnail file named in the summary's ``thumb_name`` (None for anything else).

        For serving thumbnails as files (the registry's image column) instead of reading each one into a page.
        The name must be an entry name (``study_0001-<key>.png``); nothing else is joined to the cache folder.
        """
        if not isinstance(thumb_name, str) or parse_entry_name(thumb_name) is None or not thumb_name.endswith(".png"):
            return None
        return self.cache.thumbs_dir / thumb_name

    # -- studies -------------------------------------------------------------------------------------

    def source(self, study_id: int) -> StudySource:
        """The registry source of a study; MosmedError naming it when it is not in the registry."""
        try:
            return self.registry.get(study_id)
        except KeyError:
            sid = _int_or_none(study_id)
            if sid is None:
                raise MosmedError(f"study {str(study_id)[:40]!r} is not in the registry") from None
            raise MosmedError("is not in the registry", study_id=sid) from None

    def source_key(self, study_id: int) -> str | None:
        """The cache key of a study's current source files (None when not in the registry or unusable)."""
        try:
            return self.cache.key(self.registry.get(study_id))
        except KeyError:
            return None

    def open_study(self, study_id: int) -> Study:
        """Open a study from the cache (memory maps), measuring and writing its entry first when missing or stale.

        Raises
        ------
        MosmedError
            Naming the study: not in the registry, registry row in error, or the study's data is unusable.
        """
        src = self.source(study_id)
        entry = self.cache.open(src)
        if entry.status != "ok" or entry.arrays is None:
            raise MosmedError(entry.error or "study could not be read", study_id=src.study_id)
        return Study.from_entry(entry, src.category)

    def read_study(self, study_id: int) -> Study:
        """A study read straight from its files, not measured (``lung`` and ``stats`` None): what the viewer
        shows of a large study while its cache entry is being built.

        Raises
        ------
        MosmedError
            Naming the study, as :meth:`open_study`.
        """
        src = self.source(study_id)
        if not src.ok:
            raise MosmedError(src.error or "registry row is in error", study_id=src.study_id)
        src = src.opened(self.root)  # containment re-checked now; only the checked paths are opened
        if not src.ok or src.study_path is None:
            raise MosmedError(src.error or "study file is not available", study_id=src.study_id)
        vol = volume.read_volume(src.study_path, study_id=src.study_id)
        warnings, mask = list(vol.warnings), None
        if src.mask_path is not None:
            mask, more = volume.read_mask(src.mask_path, vol, study_id=src.study_id)
            warnings += more
        return Study(
            study_id=src.study_id,
            category=src.category,
            volume=vol.data,
            mask=mask,
            lung=None,
            spacing=tuple(float(v) for v in vol.spacing),  # type: ignore[arg-type]
            slice_z_mm=np.asarray(vol.slice_z_mm, dtype=float),
            stats=None,
            warnings=warnings,
            source_axcodes=tuple(vol.source_axcodes),
            cache_key=f"{source_key(src)}-quick",
            from_cache=False,
        )

    def is_measured(self, study_id: int) -> bool:
        """Whether the study's stats are cached (opening it then needs no measuring)."""
        try:
            return self.cache.get_stats(self.registry.get(study_id)) is not None
        except KeyError:
            return False

    # -- cache ---------------------------------------------------------------------------------------

    def build_cache(self, workers: int = 1, progress: ProgressFn | None = None, arrays: bool = True) -> BuildReport:
        """Build every missing or stale cache entry (see :func:`mosmed.cache.build.build_all`)."""
        return build_all(self.cache, self.registry, workers=workers, progress=progress, arrays=arrays)

    def status(self) -> CacheStatus:
        return cache_status(self.cache, self.registry)

    def cache_token(self) -> tuple:
        """A cheap value that changes when a source file or a cache entry changes (see
        :func:`mosmed.cache.summary.cache_token`): what the app keys its cached views by."""
        return cache_token(self.cache, self.registry)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None
