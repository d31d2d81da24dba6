"""The cache build on other executors: a local process pool whose worker is killed, and a real Dask cluster
(``LocalCluster(n_workers=2, processes=True)``): the cache and the summary equal the one-process build, value for
value, and a killed worker loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cache_faults import valid_entry_files, write_small_dataset

from mosmed.cache import StudyCache
from mosmed.cache.build import build_all
from mosmed.cache.summary import summary_doc
from mosmed.registry import load_registry

REPO = Path(__file__).resolve().parents[1]
SHAPE = (64, 64, 8)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren ...), from /proc."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _build(data: Path, cache_root: Path, **kw):
    reg = load_registry(data)
    cache = StudyCache(data, cache_root)
    return build_all(cache, reg, **kw), summary_doc(cache, reg)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_small_dataset(tmp_path_factory.mktemp("par") / "data", n=10, shape=SHAPE, seed=8)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The one-process build everything is compared with."""
    root = tmp_path_factory.mktemp("ref") / "cache"
    rep, doc = _build(data, root, workers=1)
    assert rep.n_built == 10 and rep.n_errors == 0
    return root, doc["rows"], valid_entry_files(data, root)


def test_local_pool_with_a_killed_worker_loses_nothing(data, reference, tmp_path):
    ref_root, ref_rows, ref_files = reference
    killed: list[int] = []

    def kill_one(done: int, total: int, label: str) -> None:
        if killed or not label.startswith("study"):
            return
        me = os.getpid()
        workers = [p for p in _descendants(me) if p != me]
        # The pool's workers are the fork server's children; kill the newest one mid-build.
        for pid in sorted(workers, reverse=True):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            except ProcessLookupError:
                continue

    rep, doc = _build(data, tmp_path / "cache", workers=2, progress=kill_one)
    assert killed, "no worker process was found to kill"
    assert rep.retried >= 1, rep  # the kill broke the pool mid-build: its studies were submitted again
    assert rep.n_errors == 0 and rep.errors == [], rep
    assert rep.n_built + rep.n_cached == 10
    assert doc["rows"] == ref_rows
    assert valid_entry_files(data, tmp_path / "cache") == ref_files


def test_a_study_that_always_fails_is_reported_after_its_retries(data, tmp_path, monkeypatch):
    import concurrent.futures as cf

    class Failing(cf.ThreadPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            if args[3].study_id == 4:
                fut: cf.Future = cf.Future()
                fut.set_exception(RuntimeError("worker lost"))
                return fut
            return super().submit(fn, *args, **kwargs)

    with Failing(max_workers=2) as ex:
        rep, doc = _build(data, tmp_path / "cache", workers=2, executor=ex, retries=2)
    assert rep.retried == 2
    assert rep.errors == [(4, "build failed: RuntimeError: worker lost")]
    row = next(r for r in doc["rows"] if r["study_id"] == 4)
    assert row["status"] == "pending"  # not recorded: the next build tries it again
    again = build_all(StudyCache(data, tmp_path / "cache"), load_registry(data))
    assert again.n_built == 1 and again.n_errors == 0


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="Dask's distributed scheduler is not installed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        distributed.Client(lc) as client,
    ):
        yield lc, client


def test_dask_cluster_build_equals_the_local_build(data, reference, cluster, tmp_path):
    _, client = cluster
    ref_root, ref_rows, ref_files = reference
    seen: list[int] = []
    rep, doc = _build(
        data,
        tmp_path / "cache",
        workers=2,
        executor=client.get_executor(pure=False),
        progress=lambda d, t, label: seen.append(d),
    )
    assert rep.n_built == 10 and rep.n_errors == 0
    assert seen[-1] == 10  # progress as with the local pool
    assert doc["rows"] == ref_rows  # the summary, value for value
    assert valid_entry_files(data, tmp_path / "cache") == ref_files


def test_dask_worker_killed_mid_build_loses_nothing(data, reference, cluster, tmp_path):
    _, client = cluster
    ref_root, ref_rows, ref_files = reference
    pids = client.run(os.getpid)  # {worker address: pid}
    killed: list[int] = []

    def kill_one(done: int, total: int, label: str) -> None:
        if not killed and label.startswith("study"):
            pid = sorted(pids.values())[0]
            os.kill(pid, signal.SIGKILL)  # the nanny restarts it; its tasks are rescheduled
            killed.append(pid)

    rep, doc = _build(data, tmp_path / "cache", workers=2, executor=client.get_executor(pure=False), progress=kill_one)
    assert killed
    assert rep.n_errors == 0 and rep.errors == [], rep
    assert doc["rows"] == ref_rows
    assert valid_entry_files(data, tmp_path / "cache") == ref_files


def test_cli_builds_on_a_running_scheduler(data, reference, cluster, tmp_path):
    lc, _ = cluster
    ref_root, ref_rows, ref_files = reference
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mosmed",
            "build-cache",
            "--data",
            str(data),
            "--cache",
            str(tmp_path / "cache"),
            "--executor",
            "dask",
            "--scheduler",
            lc.scheduler_address,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "10 built" in res.stderr and "Dask scheduler" in res.stderr
    assert valid_entry_files(data, tmp_path / "cache") == ref_files


def test_cli_refuses_a_scheduler_without_the_dask_executor(data, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mosmed",
            "build-cache",
            "--data",
            str(data),
            "--cache",
            str(tmp_path / "c"),
            "--scheduler",
            "tcp://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert res.returncode == 2 and "--scheduler needs --executor dask" in res.stderr
