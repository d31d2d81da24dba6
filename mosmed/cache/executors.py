"""Where a cache build runs: this process, a local process pool, or a Dask cluster.

:func:`mosmed.cache.build.build_all` takes any :class:`concurrent.futures.Executor`; this module makes the two
it offers by name:

- :func:`local_pool`: worker processes forked from this process (single-threaded callers: the command line) or
  from a fork server that has already imported the pipeline (numpy, scipy, nibabel: ~1 s; threaded callers such
  as the Streamlit server), so worker start-up is paid once, not per worker or per study;
- :func:`dask_executor`: ``distributed.Client(address).get_executor()`` on a running Dask scheduler, or on a
  ``LocalCluster`` started here when no address is given. Every worker must see the dataset root and the cache
  root at the same paths (a shared file system): each task reads its study from the dataset and writes its own
  entries into the cache, and only a small result travels back.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import threading
from collections.abc import Iterator

__all__ = ["PRELOAD", "local_pool", "dask_executor"]

#: Imported once by the fork server, inherited by every worker it forks.
PRELOAD = ("mosmed.analysis", "mosmed.cache.build")


def local_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A process pool of ``workers`` processes for cache builds (the caller shuts it down).

    A single-threaded caller (the command line, a script) forks its workers directly: they start in milliseconds
    with everything already imported. A threaded one (the Streamlit server) must not fork (a lock held by another
    thread would stay locked in the child), so its workers come from the fork server instead.
    """
    method = "fork" if threading.active_count() == 1 else "forkserver"
    try:
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(list(PRELOAD))
    except ValueError:  # neither on this platform
        ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=max(1, int(workers)), mp_context=ctx)


@contextlib.contextmanager
def dask_executor(scheduler: str | None = None, workers: int = 2) -> Iterator[tuple[cf.Executor, str]]:
    """``(executor, description)`` of a Dask cluster, closed on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``). Without one, a ``LocalCluster`` of ``workers``
        single-threaded worker processes is started on this machine (and stopped on exit).
    workers : int
        Workers of the local cluster (ignored with ``scheduler``).

    Raises
    ------
    RuntimeError
        When Dask's distributed scheduler is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError(
            "the Dask executor needs the 'distributed' package (pip install 'dask[distributed]')"
        ) from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="20s")
            where = f"Dask scheduler {scheduler}"
        else:
            cluster = LocalCluster(
                n_workers=max(1, int(workers)), threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
            where = f"Dask LocalCluster, {max(1, int(workers))} worker processes"
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise RuntimeError(f"cannot reach the Dask scheduler {scheduler}: {e}") from None
    try:
        n = len(client.scheduler_info().get("workers", {}))
        # pure=False: every task runs (two studies with equal arguments do not exist, but a rebuild must run).
        yield client.get_executor(pure=False), f"{where} ({n} workers)"
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
