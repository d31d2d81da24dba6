"""Benchmark datasets under bench/out/ (ignored by git), generated once and reused.

- ``bench/out/full``: the full-size registry (1110 rows, real class counts and mask ids) with 512x512 volumes
  (33-53 slices of 8 mm) written only for the studies the benchmark opens (``WARM_IDS`` + ``COLD_IDS``); the
  other 1085 rows are registry rows whose study file is missing (status "error").
- ``bench/out/rows1110``: the same 1110-row registry with EVERY volume written at 32x32 in-plane (same slice
  counts), and its cache (``bench/out/cache-rows1110``) built: a complete summary row, lung histogram and
  thumbnail for all 1110 studies. The registry and distributions pages are measured on it, because a page
  that lists 1110 studies renders the same table and charts whatever each study's in-plane size was, and
  writing 1110 full-size volumes would take about an hour here (the phantom generator needs ~17 s per
  full-size study on one core).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
FULL = OUT / "full"
ROWS = OUT / "rows1110"
ROWS_CACHE = OUT / "cache-rows1110"
ROWS_SIZE = 32

# Warm: opened from a built cache (CT-0, CT-1 with expert masks, CT-2, CT-3). Cold: opened from the .nii.gz
# only; they come last in id order so the viewer's "next study" button reaches them after the warm ones.
WARM_IDS: tuple[int, ...] = (*range(250, 255), *range(255, 265), 940, 941, 942, 1064, 1065)
COLD_IDS: tuple[int, ...] = (1106, 1107, 1108, 1109, 1110)
ALL_IDS = WARM_IDS + COLD_IDS


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare(progress: bool = True) -> dict:
    """Create whatever is missing; return the seconds spent on each part (0 when reused)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from mosmed.dataset import Dataset
    from mosmed.synthetic import generate_demo

    OUT.mkdir(parents=True, exist_ok=True)
    spent = {"generate_full_s": 0.0, "generate_rows1110_s": 0.0, "build_rows1110_cache_s": 0.0}
    want = {f"study_{i:04d}.nii.gz" for i in ALL_IDS}
    have = {p.name for p in (FULL / "studies").glob("*/*.nii.gz")} if FULL.exists() else set()
    if not want <= have:
        _say(f"generating {len(ALL_IDS)} full-size studies (1110-row registry) into {FULL} ...")
        t = time.perf_counter()
        generate_demo(FULL, full_size=True, only_ids=ALL_IDS, workers=2, overwrite=True)
        spent["generate_full_s"] = time.perf_counter() - t
        _say(f"  {spent['generate_full_s']:.0f} s")
    n_rows = len(list((ROWS / "studies").glob("*/*.nii.gz"))) if ROWS.exists() else 0
    if n_rows < 1110:
        _say(f"generating 1110 studies at {ROWS_SIZE}x{ROWS_SIZE} in-plane into {ROWS} ...")
        t = time.perf_counter()
        generate_demo(ROWS, full_size=True, size=ROWS_SIZE, workers=2, overwrite=True)
        spent["generate_rows1110_s"] = time.perf_counter() - t
        _say(f"  {spent['generate_rows1110_s']:.0f} s")
    ds = Dataset(ROWS, ROWS_CACHE)
    st = ds.status()
    if st.n_stats < st.n_rows:
        _say(f"building the cache of {ROWS} ({st.n_rows - st.n_stats} studies) ...")
        t = time.perf_counter()
        ds.build_cache(workers=2)
        spent["build_rows1110_cache_s"] = time.perf_counter() - t
        _say(f"  {spent['build_rows1110_cache_s']:.0f} s")
    return spent


if __name__ == "__main__":
    print(prepare())
