"""Building the cache of a whole registry: every missing or stale entry, in parallel, on any executor.

:func:`build_all` decides what to build (stats always; arrays while they fit the disk budget), then runs one
task per study (:func:`build_task`): in this process for one worker, else on a ``concurrent.futures`` executor
(a local process pool by default, or e.g. a Dask cluster's, see :mod:`mosmed.cache.executors`) whose workers each
build whole studies and write their own entries; the parent only aggregates the small :class:`BuildResult`
values and reports progress. Tasks are submitted lazily, a small window per worker, so the array budget is
decided as results arrive; a task whose worker died is submitted again.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mosmed.cache.executors import local_pool
from mosmed.cache.store import BuildResult, StudyCache
from mosmed.cache.summary import summary_doc
from mosmed.errors import UnsafePathError
from mosmed.registry import Registry
from mosmed.source import StudySource

__all__ = ["BuildReport", "build_all", "build_task", "estimate_bytes"]

ProgressFn = Callable[[int, int, str], None]


@dataclass
class BuildReport:
    """Outcome of :func:`build_all`."""

    n_total: int = 0  # registry rows with a usable id (a repeated id's row included)
    n_built: int = 0  # studies computed in this run
    n_cached: int = 0  # already valid, skipped
    n_errors: int = 0  # rows in error (registry problems and failed builds)
    n_arrays_written: int = 0
    n_evicted: int = 0
    retried: int = 0  # tasks submitted again after their worker died
    seconds: float = 0.0
    workers: int = 1
    writable: bool = True
    errors: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_task(dataset_root: str, cache_root: str, budget: int, source: StudySource, need_arrays: bool) -> BuildResult:
    """One study, built and written by a worker process (picklable arguments, a small picklable result)."""
    cache = StudyCache(Path(dataset_root), Path(cache_root), budget, probe=False)
    return cache.build_result(source, need_arrays)


def estimate_bytes(source: StudySource) -> int:
    """Array bytes of an opened study from its header (int16 volume + two uint8 masks); 0 when unreadable."""
    try:
        import nibabel as nib

        shape = nib.load(str(source.study_path)).shape
        n = int(np.prod(shape[:3]))
    except Exception:  # noqa: BLE001 - an unreadable header is that study's build error, reported there
        return 0
    return n * (2 + 1 + (1 if source.mask_path is not None else 0)) + 4096


def build_all(
    cache: StudyCache,
    registry: Registry,
    workers: int = 1,
    progress: ProgressFn | None = None,
    arrays: bool = True,
    *,
    executor: cf.Executor | None = None,
    retries: int = 1,
) -> BuildReport:
    """Build every missing or stale entry of the registry.

    Parameters
    ----------
    cache : StudyCache
        The dataset's cache.
    registry : Registry
        Its registry (``registry.sources``: one per usable row).
    workers : int
        Without ``executor``: 1 builds in this process, more in a local process pool
        (:func:`mosmed.cache.executors.local_pool`). With one: how many tasks to keep in flight per worker pair.
    progress : callable, optional
        ``progress(done, total, label)`` after every row.
    arrays : bool
        Also write memory-mapped arrays while this run's arrays fit the budget (stats are always written);
        older arrays are then evicted least recently used first.
    executor : concurrent.futures.Executor, optional
        Run the studies there (e.g. a Dask cluster's ``client.get_executor()``); its workers must see the
        dataset and the cache at the same paths. The caller owns it (it is not shut down here).
    retries : int
        A study whose task failed (its worker killed, a broken pool) is submitted again this many times; after
        that it is reported as an error (and, not being recorded, built again by the next run).
    """
    t0 = time.perf_counter()
    sources = registry.sources
    # A row repeating an id is counted (the summary keeps a row for it) but never built: the registry reports
    # it as a dropped row, not as a study in error.
    report = BuildReport(
        n_total=len(sources) + len(registry.duplicates), workers=max(1, int(workers)), writable=cache.writable
    )
    cache.sweep_tmp()
    todo: list[tuple[StudySource, int, bool]] = []  # (source, estimated array bytes, stats valid)
    done = 0
    total = len(sources)
    for src in sources:
        if not src.ok:
            report.n_errors += 1
            report.errors.append((src.study_id, src.error))
            done += 1
            continue
        try:
            # Re-checked here (the header is read for the budget) and again by the task that reads the data.
            ident = src.opened(cache.dataset_root)
        except UnsafePathError as e:
            report.n_built += 1
            report.n_errors += 1
            report.errors.append((src.study_id, e.reason))
            done += 1
            continue
        doc = cache.get_stats(ident) if ident.ok else None
        if doc is not None and doc.get("status") != "ok":
            report.n_cached += 1
            report.n_errors += 1
            report.errors.append((src.study_id, str(doc.get("error", ""))))
            done += 1
            continue
        # Presence check without touching the last-use stamp (a build is not a use).
        if doc is not None and (not arrays or cache.get_arrays(ident, touch=False) is not None):
            report.n_cached += 1
            done += 1
            continue
        todo.append((src, estimate_bytes(ident) if arrays and ident.ok else 0, doc is not None))
    if progress is not None:
        progress(done, total, "checked cache")

    # Arrays already on disk count against the budget: once it is full, later runs write stats only and
    # arrays come and go with use (opening a study writes them, eviction drops the least recently used).
    planned = cache.bytes_used() if arrays else 0
    written_names: list[str] = []

    def plan(est: int) -> bool:
        nonlocal planned
        if not arrays or not cache.writable or planned + est > cache.budget:
            return False
        planned += est
        return True

    def account(src: StudySource, res: BuildResult) -> None:
        nonlocal done
        done += 1
        if res.skipped:
            report.n_cached += 1
        else:
            report.n_built += 1
        if res.status != "ok":
            report.n_errors += 1
            report.errors.append((res.study_id, res.error))
        if res.arrays_written:
            report.n_arrays_written += 1
        if res.arrays_name:
            written_names.append(res.arrays_name)
        if progress is not None:
            progress(done, total, f"study {res.study_id} ({src.category or '?'})")

    def jobs() -> Iterator[tuple[StudySource, bool]]:
        """(source, need_arrays) to build; sources whose stats are valid and get no arrays are skipped here."""
        for src, est, stats_ok in todo:
            need = plan(est)
            if stats_ok and not need:
                account(src, BuildResult(src.study_id, "ok", "", skipped=True))
                continue
            yield src, need

    n_workers = max(1, int(workers))
    if not cache.writable or (executor is None and (n_workers == 1 or len(todo) <= 1)):
        # A read-only cache keeps its entries in this process's memory: it is built here.
        for src, need in jobs():
            account(src, cache.build_result(src, need))
    else:
        report.retried = _run_tasks(cache, jobs(), account, executor, n_workers, retries)
    if arrays:
        report.n_evicted = cache.evict_to_budget(protect=written_names)
        if cache.bytes_used() > cache.budget:  # this run alone exceeded the budget (estimate was low)
            report.n_evicted += cache.evict_to_budget()
    if cache.writable:
        summary_doc(cache, registry)  # refresh the summary file for the next reader
    report.seconds = time.perf_counter() - t0
    return report


def _run_tasks(
    cache: StudyCache,
    jobs: Iterator[tuple[StudySource, bool]],
    account: Callable[[StudySource, BuildResult], None],
    executor: cf.Executor | None,
    n_workers: int,
    retries: int,
) -> int:
    """Run :func:`build_task` for every job on ``executor`` (or an own local pool); returns how many retries.

    Tasks are submitted lazily, two per worker in flight, so the array budget is decided as results arrive. A
    failed task (worker killed, pool broken) is submitted again up to ``retries`` times; an own pool that broke is
    replaced first. The parent only aggregates the small results.
    """
    own = executor is None
    pool = executor if executor is not None else local_pool(n_workers)
    args = (str(cache.dataset_root), str(cache.cache_root), cache.budget)
    pending: dict[cf.Future, tuple[StudySource, bool, int]] = {}
    again: deque[tuple[StudySource, bool, int]] = deque()
    n_retried = 0

    def submit() -> bool:
        if again:
            src, need, attempt = again.popleft()
        else:
            nxt = next(jobs, None)
            if nxt is None:
                return False
            (src, need), attempt = nxt, 0
        pending[pool.submit(build_task, *args, src, need)] = (src, need, attempt)
        return True

    try:
        for _ in range(2 * n_workers):
            if not submit():
                break
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                src, need, attempt = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died or hit a bug: retry, then record it
                    if attempt < retries:
                        if own and isinstance(e, BrokenProcessPool) and getattr(pool, "_broken", False):
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = local_pool(n_workers)  # the other tasks of the broken pool come back too
                        again.append((src, need, attempt + 1))
                        n_retried += 1
                        continue
                    res = BuildResult(src.study_id, "error", f"build failed: {type(e).__name__}: {e}")
                account(src, res)
            while len(pending) < 2 * n_workers and submit():
                pass
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    return n_retried


def warm_up() -> None:
    """Import what a build needs (numpy, scipy, nibabel, the pipeline), so a fresh worker's first task is fast."""
    import importlib

    importlib.import_module("mosmed.analysis")
