"""The facade the app and the CLI use: a dataset root, its registry and its cache, and studies opened from them.

``Dataset(root)`` checks the registry (bad rows are kept with their reason), attaches the cache of that root and
hands out summary rows, histograms, thumbnails and ``Study`` objects whose arrays are read-only memory maps of the
cache (or arrays computed in memory when the cache cannot be written).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mosmed.cache import (
    SUMMARY_COLUMNS,
    BuildReport,
    CacheStatus,
    StudyArrays,
    StudyCache,
    _row_get,
    _stem,
    stats_from_doc,
)
from mosmed.errors import MosmedError, RegistryError

__all__ = [
    "SUMMARY_COLUMNS",
    "Dataset",
    "Study",
    "default_data_root",
    "default_cache_root",
    "demo_root",
    "ensure_demo",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIRNAME = "demo"
_MOSMED_PATH = re.compile(r"^/studies/CT-[0-4]/study_\d{4}\.nii\.gz$")

ProgressFn = Callable[[int, int, str], None]


def default_cache_root() -> Path:
    """``MOSMED_CACHE`` when set, else ``<repo>/data_cache``."""
    env = os.environ.get("MOSMED_CACHE", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "data_cache"


def demo_root(cache_root: Path | None = None) -> Path:
    """Where the embedded demo dataset lives: ``<cache root>/demo``."""
    return Path(cache_root if cache_root is not None else default_cache_root()) / DEMO_DIRNAME


def default_data_root() -> tuple[Path, bool]:
    """The dataset root to open: ``MOSMED_DATA`` when set, else the demo root. The flag is True for the demo."""
    env = os.environ.get("MOSMED_DATA", "").strip()
    if env:
        return Path(env).expanduser(), False
    return demo_root(), True


def _sweep_demo_debris(parent: Path) -> None:
    # Ours (.tmp-demo-<pid>-*) and the generator's own temp beside it (.tmp-.tmp-demo-<pid>-...).
    for p in parent.glob(".tmp-*demo-*"):
        m = re.match(r"^\.tmp-(?:\.tmp-)?demo-(\d+)-", p.name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue                        # its generator is still running
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (PermissionError, OverflowError):
            continue


def ensure_demo(progress: ProgressFn | None = None, root: Path | None = None, n_studies: int | None = None) -> Path:
    """Generate the embedded demo dataset when it is missing, and return its root.

    The set is generated into ``.tmp-demo-<pid>-*`` next to the target and renamed into place, under a lock file
    so a second process waits instead of generating it twice; if the lock cannot be taken (some network file
    systems) the rename still makes exactly one copy win and the loser discards its own.

    Raises
    ------
    CacheError
        When the demo cannot be written (read-only cache directory and no demo there yet).
    """
    from mosmed.errors import CacheError

    target = Path(root) if root is not None else demo_root()
    if (target / "dataset_registry.xlsx").is_file() or (target / "dataset_registry.csv").is_file():
        return target
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock_fh = open(parent / f".{target.name}.lock", "a+b")
    except OSError as e:
        raise CacheError(f"cannot create the demo dataset in {parent} ({e.strerror or e}); "
                         "set MOSMED_CACHE to a writable folder or MOSMED_DATA to a dataset") from None
    try:
        try:
            fcntl.flock(lock_fh.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass                            # no locking here: the rename below still keeps one copy
        if target.exists():
            return target                   # another process finished while we waited
        _sweep_demo_debris(parent)
        from mosmed import synthetic

        tmp = parent / f".tmp-demo-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            kwargs = {"progress": progress}
            if n_studies is not None:
                kwargs["n_studies"] = n_studies
            synthetic.generate_demo(tmp, **kwargs)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)   # another process won: keep theirs
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


@dataclass
class Study:
    """One opened study, in display orientation (see docs/ARCHITECTURE.md).

    ``volume``/``mask``/``lung`` are read-only memory maps when ``from_cache`` is True: never write into them.
    """

    study_id: int
    category: str
    volume: np.ndarray
    mask: np.ndarray | None
    lung: np.ndarray
    spacing: tuple[float, float, float]
    slice_z_mm: np.ndarray
    stats: object                       # mosmed.measurements.StudyStats
    warnings: list[str]
    source_axcodes: tuple[str, ...]
    cache_key: str
    from_cache: bool
    summary: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.volume.shape)

    @property
    def n_slices(self) -> int:
        return int(self.volume.shape[0])

    @property
    def has_mask(self) -> bool:
        return self.mask is not None


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
        from mosmed.registry import load_registry

        self.root = root.resolve()
        self.registry = load_registry(self.root)
        self.cache = StudyCache(self.root, cache_root if cache_root is not None else default_cache_root(),
                                budget_bytes)
        self.is_mosmed = self._looks_like_mosmed()

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, {len(self.registry.df)} rows, cache={str(self.cache.dir)!r})"

    def _looks_like_mosmed(self) -> bool:
        """MosMedData as published (or its replica, which holds the real registry and masks): the xlsx registry,
        MosMedData's path form for every study file, and the dataset's LICENSE or README_EN.md beside it. The
        synthetic demo has the layout but not those files: it is not MosMedData."""
        if not self.registry.source.endswith(".xlsx") or self.registry.df.empty:
            return False
        if not ((self.root / "LICENSE").is_file() or (self.root / "README_EN.md").is_file()):
            return False
        files = self.registry.df["study_file"].astype(str)
        return bool(files.map(lambda s: bool(_MOSMED_PATH.match(s))).all())

    # -- tables --------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.registry.df["study_id"].tolist()]

    def problems(self) -> list[tuple[int | None, str]]:
        """Registry problems as ``(study_id, reason)`` (dropped rows, rows in error)."""
        return self.registry.issues()

    def summary(self) -> pd.DataFrame:
        """One row per registry row (``SUMMARY_COLUMNS`` plus ``has_thumb``); unbuilt rows are ``"pending"``."""
        frame = self.cache.summary(self.registry)
        try:
            thumbs = set(os.listdir(self.cache.thumbs_dir))
        except OSError:
            thumbs = set()
        has = []
        for r in self.registry.df.to_dict("records"):
            sid = r["study_id"]
            key = self.cache._key_or_none(r)
            if not key:
                has.append(False)
            elif self.cache.writable:
                has.append(f"{_stem(int(sid), key)}.png" in thumbs)
            else:   # read-only cache: thumbnails may sit on disk or in memory
                has.append(self.cache.get_thumb(r) is not None)
        frame["has_thumb"] = has if len(frame) == len(has) else False
        return frame

    def histograms(self) -> tuple[np.ndarray, pd.DataFrame]:
        """Lung HU histograms: ``(edges, frame)`` with one row per built study (index study_id), one column per bin."""
        from mosmed.measurements import HIST_EDGES

        edges = np.asarray(HIST_EDGES)
        doc = self.cache.summary_doc(self.registry)
        hist = doc.get("hist") or {}
        ids = sorted(int(k) for k in hist)
        data = np.array([hist[str(i)] for i in ids], dtype=np.int64).reshape(len(ids), len(edges) - 1)
        cols = [f"{int(a)}..{int(b)}" for a, b in zip(edges[:-1], edges[1:])]
        return edges, pd.DataFrame(data, index=pd.Index(ids, name="study_id"), columns=cols)

    def thumbnail(self, study_id: int) -> bytes | None:
        row = self._row(study_id)
        return self.cache.get_thumb(row)

    # -- studies -------------------------------------------------------------------------------------

    def _row(self, study_id: int) -> pd.Series:
        try:
            return self.registry.row(int(study_id))
        except (KeyError, ValueError, TypeError):
            sid = _int_or_none(study_id)
            if sid is None:
                raise MosmedError(f"study {str(study_id)[:40]!r} is not in the registry") from None
            raise MosmedError("is not in the registry", study_id=sid) from None

    def open_study(self, study_id: int) -> Study:
        """Open a study from the cache (memory maps), building its entry first when missing or stale.

        Raises
        ------
        MosmedError
            Naming the study: not in the registry, registry row in error, or the study's data is unusable.
        """
        row = self._row(study_id)
        sid = int(study_id)
        if str(_row_get(row, "status", "ok")) != "ok":
            raise MosmedError(str(_row_get(row, "error", "")) or "registry row is in error", study_id=sid)
        doc = self.cache.get_stats(row)
        arrays = self.cache.get_arrays(row) if doc is not None and doc.get("status") == "ok" else None
        if doc is not None and doc.get("status") != "ok":
            raise MosmedError(str(doc.get("error", "")) or "study could not be read", study_id=sid)
        if doc is None or arrays is None:
            entry = self.cache.build_study(row, need_arrays=True)
            if entry.status != "ok":
                raise MosmedError(entry.error or "study could not be read", study_id=sid)
            doc = entry.stats
            arrays = None
            if entry.arrays_written or self.cache.writable:
                # Serve from the memory map (lower resident memory than the arrays just computed).
                arrays = self.cache.get_arrays(row)
                if arrays is not None:
                    self.cache.evict_to_budget(protect=[_stem(sid, entry.key)])
            if arrays is None:
                arrays = entry.arrays
            if arrays is None:
                raise MosmedError("study arrays could not be built", study_id=sid)
        return self._study(row, doc, arrays)

    def _study(self, row: pd.Series, doc: dict, arrays: StudyArrays) -> Study:
        summary = dict(doc.get("summary") or {})
        return Study(
            study_id=int(doc["study_id"]),
            category=str(_row_get(row, "category", "")),
            volume=arrays.volume,
            mask=arrays.mask,
            lung=arrays.lung,
            spacing=tuple(float(s) for s in doc["spacing"]),
            slice_z_mm=np.asarray(doc.get("slice_z_mm") or [], dtype=float),
            stats=stats_from_doc(doc),
            warnings=list(doc.get("warnings") or []),
            source_axcodes=tuple(doc.get("source_axcodes") or ()),
            cache_key=str(doc["key"]),
            from_cache=bool(arrays.from_cache),
            summary=summary,
        )

    # -- cache ---------------------------------------------------------------------------------------

    def build_cache(self, workers: int = 1, progress: ProgressFn | None = None, arrays: bool = True) -> BuildReport:
        """Build every missing or stale cache entry (see ``StudyCache.build_all``)."""
        return self.cache.build_all(self.registry, workers=workers, progress=progress, arrays=arrays)

    def status(self) -> CacheStatus:
        return self.cache.status(self.registry)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None
