"""Opening a study for the viewer: from the cache, or at once from its files while the cache entry is built.

A full-size study opened for the first time needs its cache entry (lung segmentation, statistics, arrays),
which takes seconds, most of it the segmentation that the first image does not need. So the volume and mask
are read straight from the ``.nii.gz`` (a typed :class:`mosmed.dataset.Study` with ``lung=None`` and
``stats=None``) and shown, while ONE background process shared by every session builds the entry; when it
is done the page moves onto the cached study (lung outline, statistics; the viewer reruns the page's fragment
now and then while it waits: ``ct_viewer(poll_ms=...)``). Small studies build fast enough to take the
ordinary path.

The core gives it all: ``Dataset.read_study`` (volume and mask from the files; ``lung``/``stats`` None),
``Dataset.is_measured``, ``Dataset.source`` (a typed source, re-checked by ``StudySource.opened``) and
``mosmed.cache.build.build_task`` (one study, built and written by a worker process).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from mosmed.source import StudySource

if TYPE_CHECKING:
    from mosmed.dataset import Dataset, Study

__all__ = ["QUICK_MIN_VOXELS", "OpenedStudy", "cached_neighbours", "open_for_viewer", "start_builder"]

#: Studies with fewer voxels than this take the ordinary path (their cache entry builds in well under a second).
QUICK_MIN_VOXELS = 4 * 2**20


def _needs_build(ds: Dataset, study_id: int) -> tuple[StudySource, str] | None:
    """``(source, source key)`` when the study is readable, not measured yet and large."""
    from mosmed.volume import check_header

    if not ds.cache.writable or ds.is_measured(study_id):
        return None  # built already (or a read-only cache): the ordinary path opens it or reports why not
    source = ds.source(int(study_id))
    # Containment re-checked at open time (a file swapped for a link out raises here, and the ordinary path
    # reports it); only the checked, resolved path is opened.
    opened = source.opened(ds.root)
    if not opened.ok or int(np.prod(check_header(opened.study_path, int(study_id)).shape[:3])) < QUICK_MIN_VOXELS:
        return None
    return source, ds.cache.source_key(opened)


def _submit_build(pool, ds: Dataset, source: StudySource) -> Future:
    from mosmed.cache.build import build_task

    return pool.submit(build_task, str(ds.root), str(ds.cache.cache_root), ds.cache.budget, source, True)


def _is_cached(ds: Dataset, study_id: int) -> bool:
    return ds.is_measured(int(study_id))


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

    study: Study
    building: Future | None = None

    @property
    def quick(self) -> bool:
        return self.building is not None


@st.cache_resource(show_spinner=False)
def _background_builder():
    # One worker process shared by every session (its own GIL: the server keeps serving while it builds).
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mosmed.cache.build import warm_up

    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    # Warm it now (process start and the scipy import take ~1.5 s), not on the first cold open.
    pool.submit(warm_up)
    return pool


def start_builder(ds: Dataset) -> None:
    """Start (and warm) the background builder on the first visit of the viewer, when the cache is writable."""
    if ds.cache.writable:
        _background_builder()


@st.cache_resource(max_entries=256, show_spinner=False)
def _build_future(root: str, cache_root: str, study_id: int, key: str, _ds: Dataset, _source: StudySource) -> Future:
    # Keyed by (dataset, cache, study, source key): one build per study however many sessions open it.
    return _submit_build(_background_builder(), _ds, _source)


@st.cache_resource(max_entries=2, show_spinner=False)
def _quick_study(root: str, study_id: int, key: str, _ds: Dataset) -> Study:
    return _ds.read_study(int(study_id))


def open_for_viewer(ds: Dataset, study_id: int) -> OpenedStudy:
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
            source, key = plan
            fut = _build_future(str(ds.root), str(ds.cache.cache_root), sid, key, _ds=ds, _source=source)
            if not fut.done():
                return OpenedStudy(_quick_study(str(ds.root), sid, key, _ds=ds), fut)
    except Exception:  # noqa: BLE001 - anything odd: the ordinary path below, which names the problem
        pass
    return OpenedStudy(state.load_study(ds, sid))


def cached_neighbours(ds: Dataset, ids: list[int], current: int, n: int = 2) -> list[int]:
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
