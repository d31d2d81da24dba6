"""Floors measured in the benchmark's own process: per-study cache build over bare nibabel decompress-and-read
(1 worker), 2 workers over 1, and the same build on a Dask LocalCluster, on the same 40 full-size studies."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import OUT, Context, dir_bytes, prepare, sub_registry

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "cache_build_vs_decompress_ratio": ("<=", 1.5, "x", "cache build / nibabel decompress, 1 worker"),
    "cache_build_speedup_2_workers": (">=", 1.8, "x", "studies/s, 2 workers over 1 (>= 40 studies)"),
}


def _timed_build(ds, ids, **kw) -> tuple[float, object]:
    from mosmed.cache.build import build_all

    t = time.perf_counter()
    rep = build_all(ds.cache, sub_registry(ds.registry, ids), **kw)
    return time.perf_counter() - t, rep


def bench_cache_build(res: dict, quick: bool) -> None:
    """Per-study cache build vs bare decompress (1 worker), 2 workers over 1, and the same build on a Dask
    LocalCluster, on the same full-size studies, each into a fresh cache."""
    import nibabel as nib

    from mosmed.cache.summary import summary_doc
    from mosmed.dataset import Dataset
    from tests.cache_faults import valid_entry_files

    ids = list(prepare.BUILD_IDS if not quick else prepare.BUILD_IDS[::4])
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=OUT))
    try:
        ds1 = Dataset(prepare.FULL, tmp / "w1")
        rows = [ds1.registry.get(i).opened(ds1.root) for i in ids]
        # Bare decompress-and-read of the same files (study + mask), page cache warm like the builds below.
        dec = []
        for r in rows:
            t = time.perf_counter()
            np.asarray(nib.load(r.study_path).dataobj)
            if r.mask_path is not None:
                np.asarray(nib.load(r.mask_path).dataobj)
            dec.append(time.perf_counter() - t)
        t1, rep1 = _timed_build(ds1, ids, workers=1)
        ds2 = Dataset(prepare.FULL, tmp / "w2")
        t2, rep2 = _timed_build(ds2, ids, workers=2)  # pool start-up (fork server, imports) included
        assert rep1.n_built == len(ids) and rep2.n_built == len(ids), (rep1, rep2)
        per_study_bytes = dir_bytes(ds1.cache.dir) / len(ids)
        small = (dir_bytes(ds1.cache.stats_dir) + dir_bytes(ds1.cache.thumbs_dir)) / len(ids)
        res["cache_build_sample_size"] = len(ids)
        res["cache_build_sample_ids"] = ids
        res["cache_disk_kb_per_study_stats_thumb"] = round(small / 1024, 1)
        res["full_cache_disk_gb_1110_stats_thumbs_only_extrapolated"] = round(small * 1110 / 2**30, 3)
        res["cache_build_vs_decompress_ratio"] = round(t1 / sum(dec), 3)
        res["cache_build_speedup_2_workers"] = round(t1 / t2, 3)
        res["cache_build_s_per_study_1_worker"] = round(t1 / len(ids), 3)
        res["nibabel_decompress_s_per_study"] = round(sum(dec) / len(ids), 3)
        res["cache_build_studies_per_s_2_workers"] = round(len(ids) / t2, 3)
        res["cache_disk_mb_per_study"] = round(per_study_bytes / 2**20, 2)
        # Extrapolated (stated as such): the whole 1110-study first build with 2 workers and its disk use.
        res["full_cache_build_1110_min_2_workers_extrapolated"] = round(1110 / (len(ids) / t2) / 60, 1)
        res["full_cache_disk_gb_1110_extrapolated"] = round(per_study_bytes * 1110 / 2**30, 2)
        res["cache_build_stages_s"] = build_stages(rows[len(rows) // 2])
        bench_dask(
            res,
            ids,
            tmp,
            t2,
            valid_entry_files(prepare.FULL, tmp / "w2"),
            summary_doc(ds2.cache, sub_registry(ds2.registry, ids))["rows"],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_dask(res: dict, ids: list[int], tmp: Path, t_pool: float, pool_files: dict, pool_rows: list) -> None:
    """The same build on a Dask ``LocalCluster`` (2 single-threaded worker processes), cluster already up."""
    from mosmed.cache.summary import summary_doc
    from mosmed.dataset import Dataset
    from tests.cache_faults import valid_entry_files

    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        res.setdefault("errors", []).append(f"dask: {e}")
        return
    t = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        res["dask_localcluster_start_s"] = round(time.perf_counter() - t, 2)
        ds = Dataset(prepare.FULL, tmp / "dask")
        t_dask, rep = _timed_build(ds, ids, workers=2, executor=client.get_executor(pure=False))
    assert rep.n_built == len(ids), rep
    res["dask_build_s"] = round(t_dask, 2)
    res["dask_localcluster_vs_pool_ratio"] = round(t_dask / t_pool, 3)
    rows = summary_doc(ds.cache, sub_registry(ds.registry, ids))["rows"]
    res["dask_summary_identical"] = bool(
        rows == pool_rows and valid_entry_files(prepare.FULL, tmp / "dask") == pool_files
    )


def build_stages(src) -> dict:
    """Where one study's cache build goes (the same steps as mosmed.analysis.analyze, timed one by one)."""
    from mosmed import measurements, quality, render, segmentation, volume

    out = {}
    t = time.perf_counter()
    vol = volume.read_volume(src.study_path, study_id=src.study_id)
    out["read_volume"] = time.perf_counter() - t
    t = time.perf_counter()
    mask = volume.read_mask(src.mask_path, vol)[0] if src.mask_path is not None else None
    out["read_mask"] = time.perf_counter() - t
    t = time.perf_counter()
    seg = segmentation.segment(vol.data, vol.spacing)
    out["segment_lungs"] = time.perf_counter() - t
    t = time.perf_counter()
    st = measurements.study_stats(vol.data, vol.spacing, seg.lung, mask)  # includes the density features
    out["study_stats"] = time.perf_counter() - t
    t = time.perf_counter()
    quality.assess(vol, seg, st)
    out["quality"] = time.perf_counter() - t
    t = time.perf_counter()
    render.thumbnail(vol.data, mask, vol.spacing)
    out["thumbnail"] = time.perf_counter() - t
    return {k: round(v, 3) for k, v in out.items()}


def run(res: dict, ctx: Context) -> None:
    if ctx.skip_floors:
        return
    bench_cache_build(res, ctx.quick)
