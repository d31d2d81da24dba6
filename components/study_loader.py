"""Opening a study for the viewer: from the cache, or at once from its files while the cache entry is built.

A full-size study opened for the first time needs its cache entry (lung segmentation, statistics, arrays),
which takes seconds, most of it the segmentation that the first image does not need. So the volume and mask
are read straight from the ``.nii.gz`` (a typed :class:`mosmed.dataset.Study` with ``lung=None`` and
``stats=None``) and shown, while ONE background process shared by every session builds the entry; when it
is done the page moves onto the cached study (lung outline, statistics; the viewer reruns the page's fragment
now and then while it waits: ``ct_viewer(poll_ms=...)``). Small studies build fast enough to take the
ordinary path.

Written against the core API the lead is adding (issue 8/10)::

    Dataset.read_study(study_id) -> Study      # volume and mask from the files; lung=None, stats=None
    Study.lesion_area_mm2 -> np.ndarray | None # from the stats, else from the mask, else None
    Study.lung: np.ndarray | None; Study.stats: StudyStats | None

Until then the two are provided by the SHIM block below (:func:`read_study`, :func:`lesion_area_mm2`); every
other call into the core is in the "core calls" block, so re-pointing them is a change in two places.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

if TYPE_CHECKING:
    from mosmed.dataset import Dataset, Study

__all__ = ["QUICK_MIN_VOXELS", "OpenedStudy", "cached_neighbours", "lesion_area_mm2", "open_for_viewer",
           "read_study", "start_builder"]

#: Studies with fewer voxels than this take the ordinary path (their cache entry builds in well under a second).
QUICK_MIN_VOXELS = 4 * 2**20


# ============================================================================ SHIM for today's core (remove)
# When mosmed.dataset has Dataset.read_study and Study.lesion_area_mm2, replace the bodies by
# ``return ds.read_study(study_id)`` and ``return study.lesion_area_mm2`` (or inline them at the callers).


def read_study(ds: "Dataset", study_id: int) -> "Study":
    """SHIM for ``Dataset.read_study``: the study's volume and mask straight from its files.

    ``lung`` and ``stats`` are ``None``; the paths are re-checked to lie inside the dataset root now.
    """
    from mosmed.dataset import Study
    from mosmed.volume import read_mask, read_volume

    sid = int(study_id)
    row = ds.registry.row(sid)
    study_path, mask_path = ds.cache.source_paths(row)
    if study_path is None:
        from mosmed.errors import MosmedError

        raise MosmedError("has no study file", study_id=sid)
    vol = read_volume(Path(study_path), study_id=sid)
    warnings, mask = list(vol.warnings), None
    if mask_path is not None:
        mask, more = read_mask(Path(mask_path), vol, study_id=sid)
        warnings += more
    return Study(study_id=sid, category=str(row.get("category", "")), volume=vol.data, mask=mask, lung=None,
                 spacing=tuple(float(v) for v in vol.spacing), slice_z_mm=np.asarray(vol.slice_z_mm, dtype=float),
                 stats=None, warnings=warnings, source_axcodes=tuple(vol.source_axcodes),
                 cache_key=f"{ds.cache.source_key(row)}-files", from_cache=False)


def lesion_area_mm2(study: "Study") -> np.ndarray | None:
    """SHIM for ``Study.lesion_area_mm2``: per-slice lesion area in mm^2 (stats, else the mask, else None)."""
    if study.stats is not None and study.stats.lesion_area_mm2 is not None:
        return np.asarray(study.stats.lesion_area_mm2, dtype=float)
    if study.mask is None:
        return None
    _, dy, dx = (float(s) for s in study.spacing)
    return np.asarray(study.mask).reshape(study.mask.shape[0], -1).sum(axis=1, dtype=np.int64) * dy * dx
# ======================================================================================== end of the SHIM


# ----------------------------------------------------------------------------------------------- core calls
# Every other use of the core's cache API by the viewer (the lead re-points these after the cache split).


def _needs_build(ds: "Dataset", study_id: int) -> tuple[dict, str] | None:
    """``(row with checked paths, source key)`` when the study is readable, not cached yet and large."""
    from mosmed.volume import check_header

    cache = ds.cache
    if not cache.writable:
        return None
    row = ds.registry.row(int(study_id))
    if str(row.get("status", "ok")) != "ok" or cache.get_stats(row) is not None:
        return None  # built already, or a known error: the ordinary path opens or reports it
    key = cache.source_key(row)
    # Containment re-checked at open time (a file swapped for a link out after loading raises here, and the
    # ordinary path reports it); only the checked, resolved paths are opened.
    study_path, mask_path = cache.source_paths(row)
    if study_path is None or int(np.prod(check_header(study_path, int(study_id)).shape[:3])) < QUICK_MIN_VOXELS:
        return None
    row = {**dict(row), "study_path": str(study_path), "mask_path": None if mask_path is None else str(mask_path)}
    return row, key


def _submit_build(pool, ds: "Dataset", row: dict) -> Future:
    from mosmed.cache import _worker_build

    return pool.submit(_worker_build, str(ds.root), str(ds.cache.cache_root), ds.cache.budget, row, True)


def _is_cached(ds: "Dataset", study_id: int) -> bool:
    try:
        row = ds.registry.row(int(study_id))
        return str(row.get("status", "ok")) == "ok" and ds.cache.get_stats(row) is not None
    except Exception:  # noqa: BLE001 - unknown id or unreadable row: not cached
        return False


# ----------------------------------------------------------------------------------------------- the loader


@dataclass(frozen=True)
class OpenedStudy:
    """A study ready for the viewer.

    Attributes
    ----------
    study : mosmed.dataset.Study
        From the cache (memory maps), or read from its files (``lung`` and ``stats`` are ``None``).
    building : Future or None
        The background build of its cache entry when the study was read from its files, else ``None``.
    """

    study: "Study"
    building: Future | None = None

    @property
    def quick(self) -> bool:
        return self.building is not None


@st.cache_resource(show_spinner=False)
def _background_builder():
    # One worker process shared by every session (its own GIL: the server keeps serving while it builds).
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mosmed import lungs

    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    # Warm it now (process start and the scipy import take ~1.5 s), not on the first cold open.
    pool.submit(lungs.estimate_involvement, np.zeros((1, 1, 1), np.int16), np.zeros((1, 1, 1), np.uint8))
    return pool


def start_builder(ds: "Dataset") -> None:
    """Start (and warm) the background builder on the first visit of the viewer, when the cache is writable."""
    if ds.cache.writable:
        _background_builder()


@st.cache_resource(max_entries=256, show_spinner=False)
def _build_future(root: str, cache_root: str, study_id: int, key: str, _ds: "Dataset", _row: dict) -> Future:
    # Keyed by (dataset, cache, study, source key): one build per study however many sessions open it.
    return _submit_build(_background_builder(), _ds, _row)


@st.cache_resource(max_entries=2, show_spinner=False)
def _quick_study(root: str, study_id: int, key: str, _ds: "Dataset") -> "Study":
    return read_study(_ds, study_id)


def open_for_viewer(ds: "Dataset", study_id: int) -> OpenedStudy:
    """Open a study for the viewer: from the cache, or from its files while its entry builds in the background.

    Raises
    ------
    MosmedError
        Naming the study and the problem (from the ordinary path, which reports problems properly).
    """
    from components import state

    sid = int(study_id)
    try:
        plan = _needs_build(ds, sid)
        if plan is not None:
            row, key = plan
            fut = _build_future(str(ds.root), str(ds.cache.cache_root), sid, key, _ds=ds, _row=row)
            if not fut.done():
                return OpenedStudy(_quick_study(str(ds.root), sid, key, _ds=ds), fut)
    except Exception:  # noqa: BLE001 - anything odd: the ordinary path below, which names the problem
        pass
    return OpenedStudy(state.load_study(ds, sid))


def cached_neighbours(ds: "Dataset", ids: list[int], current: int, n: int = 2) -> list[int]:
    """The next ``n`` studies after ``current`` in ``ids`` (then the previous one) that are cached already."""
    if current not in ids or len(ids) < 2:
        return []
    i = ids.index(current)
    order = [ids[(i + d) % len(ids)] for d in range(1, n + 1)] + [ids[(i - 1) % len(ids)]]
    seen, out = {current}, []
    for sid in order:
        if sid not in seen and _is_cached(ds, sid):
            out.append(sid)
        seen.add(sid)
    return out
