"""Floors measured in the benchmark's own process: per-study cache build over bare nibabel decompress-and-read
(1 worker), and 2 workers over 1, on the same full-size studies."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from common import OUT, Context, dir_bytes, prepare, sub_registry

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "cache_build_vs_decompress_ratio": ("<=", 1.3, "x", "cache build / nibabel decompress, 1 worker"),
    "cache_build_speedup_2_workers": (">=", 1.7, "x", "studies/s, 2 workers over 1"),
}


def bench_cache_build(res: dict, quick: bool) -> None:
    """Per-study cache build vs bare decompress (1 worker), and 2 workers over 1, on the same studies."""
    import nibabel as nib

    from mosmed.dataset import Dataset

    # 12 studies (CT-1 with masks: the whole job, and CT-2/CT-3): enough that the 2-worker pool's start-up
    # (a spawned process imports numpy/scipy/nibabel, ~1.5 s) is paid once, as in a real build of many studies.
    ids = list(prepare.WARM_IDS[5:17] if not quick else prepare.WARM_IDS[5:9])
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=OUT))
    try:
        ds1 = Dataset(prepare.FULL, tmp / "w1")
        reg = sub_registry(ds1.registry, ids)
        rows = reg.df.to_dict("records")
        # Bare decompress-and-read of the same files (study + mask), page cache warm like the builds below.
        dec = []
        for r in rows:
            t = time.perf_counter()
            np.asarray(nib.load(r["study_path"]).dataobj)
            if r.get("mask_path"):
                np.asarray(nib.load(r["mask_path"]).dataobj)
            dec.append(time.perf_counter() - t)
        t = time.perf_counter()
        rep1 = ds1.cache.build_all(reg, workers=1)
        t1 = time.perf_counter() - t
        ds2 = Dataset(prepare.FULL, tmp / "w2")
        t = time.perf_counter()
        rep2 = ds2.cache.build_all(sub_registry(ds2.registry, ids), workers=2)
        t2 = time.perf_counter() - t
        assert rep1.n_built == len(ids) and rep2.n_built == len(ids), (rep1, rep2)
        per_study_bytes = dir_bytes(ds1.cache.dir) / len(ids)
        small = (dir_bytes(ds1.cache.stats_dir) + dir_bytes(ds1.cache.thumbs_dir)) / len(ids)
        res["cache_disk_kb_per_study_stats_thumb"] = round(small / 1024, 1)
        res["full_cache_disk_gb_1110_stats_thumbs_only_extrapolated"] = round(small * 1110 / 2**30, 3)
        res["cache_build_vs_decompress_ratio"] = round(t1 / sum(dec), 3)
        res["cache_build_speedup_2_workers"] = round(t1 / t2, 3)
        res["cache_build_s_per_study_1_worker"] = round(t1 / len(ids), 3)
        res["nibabel_decompress_s_per_study"] = round(sum(dec) / len(ids), 3)
        res["cache_build_studies_per_s_2_workers"] = round(len(ids) / t2, 3)
        res["cache_disk_mb_per_study"] = round(per_study_bytes / 2**20, 2)
        res["cache_build_sample_ids"] = ids
        # Extrapolated (stated as such): the whole 1110-study first build with 2 workers and its disk use.
        res["full_cache_build_1110_min_2_workers_extrapolated"] = round(1110 / (len(ids) / t2) / 60, 1)
        res["full_cache_disk_gb_1110_extrapolated"] = round(per_study_bytes * 1110 / 2**30, 2)
        res["cache_build_stages_s"] = build_stages(rows[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_stages(row: dict) -> dict:
    """Where one study's cache build goes (the same steps as mosmed.cache._compute, timed one by one)."""
    from pathlib import Path as P

    from mosmed import measurements, quality, render, segmentation, volume

    out = {}
    t = time.perf_counter()
    vol = volume.read_volume(P(row["study_path"]), study_id=int(row["study_id"]))
    out["read_volume"] = time.perf_counter() - t
    t = time.perf_counter()
    mask = volume.read_mask(P(row["mask_path"]), vol)[0] if row.get("mask_path") else None
    out["read_mask"] = time.perf_counter() - t
    t = time.perf_counter()
    seg = segmentation.segment(vol.data, vol.spacing)
    out["segment_lungs"] = time.perf_counter() - t
    t = time.perf_counter()
    st = measurements.study_stats(vol.data, vol.spacing, seg.lung, mask)   # includes the density features
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
