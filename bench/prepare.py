"""Benchmark datasets under bench/out/ (ignored by git), generated once and reused.

- ``bench/out/full``: the full-size registry (1110 rows, real class counts and mask ids) with 512x512 volumes
  (33-53 slices of 8 mm) written only for the studies the benchmark opens (``WARM_IDS`` + ``COLD_IDS``); the
  other 1085 rows are registry rows whose study file is missing (status "error").
- ``bench/out/rows1110``: the same 1110-row registry with EVERY volume written at 32x32 in-plane (same slice
  counts), and its cache (``bench/out/cache-rows1110``) built: a complete summary row, lung histogram and
  thumbnail for all 1110 studies. The registry and distributions pages are measured on it, because a page
  that lists 1110 studies renders the same table and charts whatever each study's in-plane size was, and
  writing 1110 full-size volumes would take tens of minutes here and a 44 GB cache.
- To keep a first run short, only a few seed studies per (class, mask) group are generated; the other rows are
  byte copies of a seed of their group, each its own file (see ``_seeds``).
- ``bench/out/rows100k`` (made by :func:`prepare_rows100k`, which only the pages section calls): a registry of
  100 000 rows (``dataset_registry.csv``) for the big-registry pages, summary only, no arrays. Row ``i`` repeats
  row ``(i - 1) % 1110 + 1`` of ``rows1110`` (class, mask or not): its study (and mask) file is a HARD LINK to that
  row's small NIfTI file, so 100 000 registry files cost 100 000 directory entries, not 100 000 volumes, yet
  every row has its own path and so its own cache key (size and mtime are shared). Its cache
  (``bench/out/cache-rows100k``) is fabricated, not built: each row's stats document is the measured document
  of its template row with the row's own study id and key, and its volumes and involvement scaled by a seeded
  per-row factor (lung volume x0.85-1.15, estimates +-2 points) so the charts show spread; its thumbnail is a
  hard link to the template's. Then the summary is assembled once, as the app would on first open. Generating
  it takes about a minute here (``generate_rows100k_s``, ``summary_rows100k_s``); the registry validation,
  keys, summary and pages then do the per-row work of a real 100 000-row dataset.
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
ROWS100K = OUT / "rows100k"
ROWS100K_CACHE = OUT / "cache-rows100k"
N_100K = 100_000

# Warm: opened from a built cache (CT-0, CT-1 with expert masks, CT-2, CT-3). Cold: opened from the .nii.gz
# only; they come last in id order so the viewer's "next study" button reaches them after the warm ones.
WARM_IDS: tuple[int, ...] = (*range(250, 255), *range(255, 265), 940, 941, 942, 1064, 1065)
COLD_IDS: tuple[int, ...] = (1106, 1107, 1108, 1109, 1110)
# The cache-build sample (issue 11: at least 40 full-size studies): CT-0, CT-1 with expert masks, CT-2, CT-3.
BUILD_IDS: tuple[int, ...] = (*range(240, 250), *range(265, 285), *range(943, 949), *range(1066, 1070))
ALL_IDS = WARM_IDS + COLD_IDS + BUILD_IDS


# First-run cost: writing 25 full-size + 1110 unique 32x32 studies took ~8.5 min here (the phantom generator
# costs ~0.6 s per study even at 32x32, and seconds per full-size one). Only a few "seed" studies per
# (class, mask) group are generated; every other row gets a byte copy of a seed of its group (its own file, so
# its own cache key, cache entry and memory map: the server does the same work for it). The full set keeps
# FULL_SEEDS_PER_GROUP distinct volumes per group, the 1110-row set ROWS_SEEDS_PER_GROUP (so the charts still
# show spread, with 1110 points each).
FULL_SEEDS_PER_GROUP = 2
ROWS_SEEDS_PER_GROUP = 24


def _say(msg: str) -> None:
    print(msg, flush=True)


def _seeds(ids, per_group: int) -> tuple[list[int], dict[int, int]]:
    """``(seed ids to generate, {other id: the seed it copies})``, grouped by (class, has mask)."""
    from mosmed.synthetic import plan_registry

    spec = {s.study_id: s for s in plan_registry(full_size=True)}
    groups: dict[tuple, list[int]] = {}
    for i in sorted(ids):
        groups.setdefault((spec[i].category, spec[i].with_mask), []).append(i)
    seeds, copy_of = [], {}
    for members in groups.values():
        head = members[:per_group]
        seeds += head
        for j, i in enumerate(members[per_group:]):
            copy_of[i] = head[j % len(head)]
    return sorted(seeds), copy_of


def _replicate(root: Path, copy_of: dict[int, int]) -> None:
    import shutil

    from mosmed.atomic import atomic_write
    from mosmed.paths import mask_rel_path, study_rel_path
    from mosmed.synthetic import plan_registry

    spec = {s.study_id: s for s in plan_registry(full_size=True)}
    for dst, src in copy_of.items():
        for rel in (study_rel_path, mask_rel_path) if spec[dst].with_mask else (study_rel_path,):
            a = root / (rel(src, spec[src].category) if rel is study_rel_path else rel(src)).lstrip("/")
            b = root / (rel(dst, spec[dst].category) if rel is study_rel_path else rel(dst)).lstrip("/")
            atomic_write(b, lambda tmp, a=a: shutil.copyfile(a, tmp), fsync=False)


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
        _say(
            f"generating {len(ALL_IDS)} full-size studies (1110-row registry; {FULL_SEEDS_PER_GROUP} seeds per group)"
            f" into {FULL} ..."
        )
        t = time.perf_counter()
        seeds, copy_of = _seeds(ALL_IDS, FULL_SEEDS_PER_GROUP)
        generate_demo(FULL, full_size=True, only_ids=seeds, workers=2, overwrite=True)
        _replicate(FULL, copy_of)
        spent["generate_full_s"] = time.perf_counter() - t
        _say(f"  {spent['generate_full_s']:.0f} s")
    n_rows = len(list((ROWS / "studies").glob("*/*.nii.gz"))) if ROWS.exists() else 0
    if n_rows < 1110:
        _say(f"generating 1110 studies at {ROWS_SIZE}x{ROWS_SIZE} in-plane into {ROWS} ...")
        t = time.perf_counter()
        seeds, copy_of = _seeds(range(1, 1111), ROWS_SEEDS_PER_GROUP)
        generate_demo(ROWS, full_size=True, size=ROWS_SIZE, only_ids=seeds, workers=2, overwrite=True)
        _replicate(ROWS, copy_of)
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


def fabricate_registry(
    template_root: Path, template_cache: Path, root: Path, cache_root: Path, n_rows: int, seed: int = 20201110
) -> dict:
    """A registry of ``n_rows`` rows at ``root`` with a complete cache at ``cache_root``, from a built template.

    Row ``i`` repeats template row ``(i - 1) % len(template) + 1`` (its class, its mask or not): its study and mask
    files are hard links to the template's, its stats document the template's measured one with its own study
    id and key and its volumes / involvement scaled by a seeded per-row factor, its thumbnail a hard link. Then
    the summary is assembled once, as the app does on first open. The registry is ``dataset_registry.csv``.
    Returns the seconds spent (``generate_s``, ``summary_s``).
    """
    import json
    import os
    import shutil

    import numpy as np

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from mosmed.cache.keys import entry_stem
    from mosmed.dataset import Dataset
    from mosmed.paths import mask_rel_path, study_rel_path

    t = time.perf_counter()
    tpl = Dataset(template_root, template_cache)
    templates = []
    for src in tpl.registry.sources:
        key = tpl.cache.key(src)
        doc = tpl.cache.read_stats(src.study_id, key) if key else None
        if doc is None or doc.get("status") != "ok":
            continue  # a template row in error or not built is not repeated
        templates.append((src, doc, tpl.cache.thumbs_dir / f"{entry_stem(src.study_id, key)}.png"))
    if not templates:
        raise RuntimeError(f"{template_root} has no built study to repeat (build its cache first)")
    tmp = root.with_name(root.name + ".tmp")
    for d in (tmp, root, cache_root):
        shutil.rmtree(d, ignore_errors=True)
    lines = ["study_id,category,study_file,mask_file"]
    made: set[Path] = set()

    def link(src_path: Path, rel: str) -> None:
        dst = tmp / rel.lstrip("/")
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        os.link(src_path, dst)

    for i in range(1, n_rows + 1):
        src, _, _ = templates[(i - 1) % len(templates)]
        rel = study_rel_path(i, src.category)
        link(src.study_path, rel)
        mask = ""
        if src.mask_path is not None:
            mask = mask_rel_path(i)
            link(src.mask_path, mask)
        lines.append(f"{i},{src.category},{rel},{mask}")
    (tmp / "dataset_registry.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.rename(root)

    # The cache: every row's stats document and thumbnail, fabricated from its template's measured ones.
    ds = Dataset(root, cache_root)
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.85, 1.15, size=n_rows)
    shift = rng.uniform(-2.0, 2.0, size=n_rows)
    for k, src in enumerate(ds.registry.sources):
        _, doc, thumb = templates[k % len(templates)]
        key = ds.cache.key(src)
        stem = entry_stem(src.study_id, key)
        out = json.loads(json.dumps(doc))
        out.update(study_id=src.study_id, key=key)
        summ, stats = out["summary"], out["stats"]
        f, d = float(scale[k]), float(shift[k])
        for part in (summ, stats):
            for name in ("lung_ml", "lesion_ml"):
                if part.get(name) is not None:
                    part[name] = float(part[name]) * f
            for name in ("estimated_involvement_pct", "involvement_pct"):
                if part.get(name) is not None and float(part[name]) > 0:
                    part[name] = min(100.0, max(0.0, float(part[name]) + d))
        summ.update(study_id=src.study_id, study_file=src.study_file, mask_file=src.mask_file)
        (ds.cache.stats_dir / f"{stem}.json").write_text(json.dumps(out), encoding="utf-8")
        if thumb.is_file():
            os.link(thumb, ds.cache.thumbs_dir / f"{stem}.png")
    spent = {"generate_s": round(time.perf_counter() - t, 1)}
    t = time.perf_counter()
    Dataset(root, cache_root).summary()
    spent["summary_s"] = round(time.perf_counter() - t, 1)
    return spent


def prepare_rows100k(n_rows: int = N_100K, root: Path = ROWS100K, cache_root: Path = ROWS100K_CACHE) -> dict:
    """The 100 000-row registry and its fabricated cache (see the module docstring); reused when complete.

    Needs ``rows1110`` and its cache (:func:`prepare`). The registry is written into ``<root>.tmp`` and renamed
    into place, with a ``.complete`` marker last, so an interrupted run starts over instead of leaving half a
    registry.
    """
    spent = {"generate_rows100k_s": 0.0, "summary_rows100k_s": 0.0}
    marker = root / ".complete"
    if marker.is_file() and marker.read_text().strip() == str(n_rows):
        return spent
    prepare()
    _say(f"writing the {n_rows}-row registry (hard links to the {ROWS.name} studies) into {root} ...")
    got = fabricate_registry(ROWS, ROWS_CACHE, root, cache_root, n_rows)
    spent = {"generate_rows100k_s": got["generate_s"], "summary_rows100k_s": got["summary_s"]}
    _say(f"  {got['generate_s']:.0f} s, then its summary {got['summary_s']:.0f} s")
    marker.write_text(str(n_rows))
    return spent


if __name__ == "__main__":
    print(prepare())
    if "--rows100k" in sys.argv:
        print(prepare_rows100k())
