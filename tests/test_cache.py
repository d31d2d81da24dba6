"""data_cache: round trip, stale and corrupt entries, debris, budget, read-only cache, kills and racing builders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from cache_faults import (
    compare_with_clean,
    kill_and_check,
    las_affine,
    leftover_tmp,
    phantom_xyz,
    race_builders,
    small_spacing,
    valid_entry_files,
    write_nifti,
    write_small_dataset,
)

from mosmed.cache import CACHE_VERSION, StudyCache, dataset_key
from mosmed.cache import keys as cache_keys
from mosmed.cache.build import build_all, estimate_bytes
from mosmed.cache.summary import cache_status, summary_doc, summary_frame
from mosmed.config import budget_from_env
from mosmed.errors import CacheError
from mosmed.registry import load_registry


def _summary(c, reg):
    return summary_frame(summary_doc(c, reg)["rows"])


SHAPE = (48, 48, 5)
AFFINE = las_affine(small_spacing(SHAPE))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_small_dataset(tmp_path / "data", n=5, shape=SHAPE, seed=1)


def _built(data: Path, cache_root: Path, **kw) -> tuple[StudyCache, object]:
    reg = load_registry(data)
    c = StudyCache(data, cache_root, **kw)
    build_all(c, reg)
    return c, reg


def _bump(path: Path, data_new: np.ndarray | None = None) -> None:
    """Replace a source file: new content when given, and a later mtime in any case."""
    st = os.stat(path)
    if data_new is not None:
        write_nifti(path, data_new, AFFINE)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


# ------------------------------------------------------------------------------------------------ basics


def test_round_trip_memmaps_match_source(data, tmp_path):
    from mosmed.volume import read_mask, read_volume

    reg = load_registry(data)
    c = StudyCache(data, tmp_path / "cache")
    seen = []
    rep = build_all(c, reg, progress=lambda d, t, label: seen.append((d, t, label)))
    assert (rep.n_built, rep.n_cached, rep.n_errors, rep.n_arrays_written) == (5, 0, 0, 5)
    assert seen[-1][:2] == (5, 5) and "study 5" in seen[-1][2]
    for row in reg.sources:
        sid = row.study_id
        arrays = c.get_arrays(row)
        assert isinstance(arrays.volume, np.memmap) and not arrays.volume.flags.writeable
        vol = read_volume(row.study_path, study_id=sid)
        np.testing.assert_array_equal(arrays.volume, vol.data)
        assert arrays.volume.dtype == np.int16 and arrays.lung.dtype == np.uint8
        if row.has_mask:
            mask, _ = read_mask(row.mask_path, vol, study_id=sid)
            np.testing.assert_array_equal(arrays.mask, mask)
        else:
            assert arrays.mask is None
        doc = c.get_stats(row)
        assert doc["status"] == "ok" and doc["shape"] == list(vol.data.shape)
        assert c.get_thumb(row).startswith(b"\x89PNG")
    again = build_all(c, reg)
    assert (again.n_built, again.n_cached) == (0, 5)


def test_summary_has_every_row_and_measures(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    s = _summary(c, reg)
    assert list(s["study_id"]) == [1, 2, 3, 4, 5]
    assert set(s["status"]) == {"ok"}
    masked = s[s["has_mask"]]
    assert (masked["lesion_ml"] > 0).all() and masked["involvement_pct"].notna().all()
    assert s[~s["has_mask"]]["lesion_ml"].isna().all()
    assert s["mask_file"].isna().sum() == 3  # NaN, never the string "nan"
    assert (s["lung_ml"] > 0).all() and (s["n_slices"] == 5).all()
    files = list(c.dir.glob("summary-*.json"))
    assert len(files) == 1 and len(json.loads(files[0].read_text())["rows"]) == 5


def test_source_key_tracks_identity_and_version(data, tmp_path, monkeypatch):
    reg = load_registry(data)
    c = StudyCache(data, tmp_path / "cache")
    row = reg.get(2)
    k1 = c.source_key(row)
    assert k1 == c.source_key(row) and len(k1) == 12
    _bump(row.mask_path)
    k2 = c.source_key(row)
    assert k2 != k1  # the mask file counts too
    monkeypatch.setattr(cache_keys, "CACHE_VERSION", CACHE_VERSION + 1)
    assert c.source_key(row) != k2
    with pytest.raises(CacheError, match="study 2: cannot read"):
        row.study_path.unlink()
        c.source_key(row)


def test_dataset_key_and_budget_env(tmp_path, monkeypatch):
    k = dataset_key(tmp_path / "My Data")
    assert k.startswith("My_Data-") and len(k.split("-")[-1]) == 10
    monkeypatch.setenv("MOSMED_CACHE_BUDGET_GB", "0.5")
    assert budget_from_env() == 500_000_000
    monkeypatch.setenv("MOSMED_CACHE_BUDGET_GB", "lots")
    with pytest.raises(CacheError, match="not a number"):
        budget_from_env()
    monkeypatch.delenv("MOSMED_CACHE_BUDGET_GB")
    assert budget_from_env() == 8_000_000_000


# ------------------------------------------------------------------------------------- stale and corrupt


def test_replaced_source_is_rebuilt_and_old_entries_removed(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    row = reg.get(2)
    old_key = c.source_key(row)
    old_summary = sorted(p.name for p in c.dir.glob("summary-*.json"))
    hu, _ = phantom_xyz(SHAPE, lesion_frac=0.0, seed=99)
    _bump(row.study_path, hu + 7)
    assert c.get_stats(row) is None and c.get_arrays(row) is None  # stale reads as missing
    rep = build_all(c, reg)
    assert (rep.n_built, rep.n_cached) == (1, 4)
    new_key = c.source_key(row)
    assert new_key != old_key
    assert [p.name for p in c.stats_dir.glob("study_0002-*")] == [f"study_0002-{new_key}.json"]
    assert [p.name for p in c.arrays_dir.glob("study_0002-*")] == [f"study_0002-{new_key}"]
    assert [p.name for p in c.thumbs_dir.glob("study_0002-*")] == [f"study_0002-{new_key}.png"]
    np.testing.assert_array_equal(c.get_arrays(row).volume.max(), (hu + 7).max())
    new_summary = sorted(p.name for p in c.dir.glob("summary-*.json"))
    assert len(new_summary) == 1 and new_summary != old_summary


@pytest.mark.parametrize("damage", ["truncate_volume", "garbage_header", "bad_meta", "no_meta", "shape_meta"])
def test_damaged_arrays_read_as_missing_and_are_rebuilt(data, tmp_path, damage):
    c, reg = _built(data, tmp_path / "cache")
    row = reg.get(4)
    d = c.arrays_dir / f"study_0004-{c.source_key(row)}"
    if damage == "truncate_volume":
        with open(d / "volume.npy", "r+b") as f:
            f.truncate(os.path.getsize(d / "volume.npy") - 100)
    elif damage == "garbage_header":
        with open(d / "lung.npy", "r+b") as f:
            f.write(b"garbage!")
    elif damage == "bad_meta":
        (d / "meta.json").write_text("{not json")
    elif damage == "no_meta":
        (d / "meta.json").unlink()
    elif damage == "shape_meta":
        meta = json.loads((d / "meta.json").read_text())
        meta["arrays"]["mask"]["shape"] = [1, 2, 3]
        (d / "meta.json").write_text(json.dumps(meta))
    assert c.get_arrays(row) is None
    assert c.get_stats(row) is not None  # stats are independent of the arrays
    rep = build_all(c, reg)
    assert rep.n_built == 1
    assert c.get_arrays(row) is not None


@pytest.mark.parametrize("damage", ["truncate", "other_version", "other_key", "empty"])
def test_damaged_stats_read_as_missing(data, tmp_path, damage):
    c, reg = _built(data, tmp_path / "cache")
    row = reg.get(1)
    p = c.stats_dir / f"study_0001-{c.source_key(row)}.json"
    text = p.read_text()
    doc = json.loads(text)
    if damage == "truncate":
        p.write_text(text[: len(text) // 2])
    elif damage == "other_version":
        p.write_text(json.dumps({**doc, "cache_version": CACHE_VERSION + 1}))
    elif damage == "other_key":
        p.write_text(json.dumps({**doc, "key": "0" * 12}))
    else:
        p.write_bytes(b"")
    assert c.get_stats(row) is None
    assert build_all(c, reg).n_built == 1 and c.get_stats(row)["status"] == "ok"


def test_truncated_thumbnail_reads_as_missing(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    row = reg.get(3)
    p = c.thumbs_dir / f"study_0003-{c.source_key(row)}.png"
    p.write_bytes(p.read_bytes()[:-20])
    assert c.get_thumb(row) is None


def test_failing_study_is_recorded_and_build_continues(data, tmp_path):
    (data / "studies/CT-2/study_0003.nii.gz").write_bytes(b"this is not gzip at all")
    reg = load_registry(data)
    c = StudyCache(data, tmp_path / "cache")
    rep = build_all(c, reg)
    assert rep.n_errors == 1 and rep.n_built == 5
    assert rep.errors[0][0] == 3 and "gzip" in rep.errors[0][1]
    s = _summary(c, reg).set_index("study_id")
    assert s.loc[3, "status"] == "error" and "gzip" in s.loc[3, "error"]
    assert (s.drop(index=3)["status"] == "ok").all()
    # The recorded error is itself cached (no re-reading of a broken file on every run) ...
    assert build_all(c, reg).n_built == 0
    # ... until the file is fixed.
    hu, _ = phantom_xyz(SHAPE, seed=3)
    write_nifti(data / "studies/CT-2/study_0003.nii.gz", hu, AFFINE)
    rep = build_all(c, reg)
    assert rep.n_built == 1 and rep.n_errors == 0
    assert _summary(c, reg).set_index("study_id").loc[3, "status"] == "ok"


def test_registry_error_rows_are_in_summary(data, tmp_path):
    (data / "studies/CT-4/study_0005.nii.gz").unlink()
    reg = load_registry(data)
    c = StudyCache(data, tmp_path / "cache")
    rep = build_all(c, reg)
    assert (5, reg.df.loc[5, "error"]) in rep.errors
    row = _summary(c, reg).set_index("study_id").loc[5]
    assert row["status"] == "error" and "missing" in row["error"]


def test_old_debris_is_swept_live_debris_kept(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    dead = 2**22 + 12345  # above any pid this machine hands out (pid_max 4194304)
    (c.stats_dir / f".tmp-{dead}-abcd-study_0001.json").write_text("{")
    (c.arrays_dir / f".tmp-{dead}-abcd-study_0001-x").mkdir()
    live = c.stats_dir / f".tmp-{os.getpid()}-beef-study_0002.json"
    live.write_text("{")
    old_live = c.arrays_dir / f".tmp-{os.getpid()}-cafe-x"
    old_live.mkdir()
    os.utime(old_live, (time.time() - 7200, time.time() - 7200))
    assert c.sweep_tmp() == 3
    assert live.exists() and not old_live.exists()
    assert [p.name for p in leftover_tmp(data, tmp_path / "cache")] == [live.name]
    assert c.get_stats(reg.get(1)) is not None  # debris never read


# --------------------------------------------------------------------------------------------- budget


def test_budget_eviction_is_lru_and_never_touches_stats(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    sizes = {d.name: sum(f.stat().st_size for f in d.iterdir()) for d in c.arrays_dir.iterdir()}
    names = sorted(sizes)
    now = time.time()
    # Last use: study 3 oldest, then 1, 5, 2, 4 (most recent).
    for age, name in zip((500, 400, 300, 200, 100), [names[i] for i in (2, 0, 4, 1, 3)]):
        os.utime(c.arrays_dir / name / "last_used", (now - age, now - age))
    c.budget = sizes[names[1]] + sizes[names[3]] + 10
    assert c.evict_to_budget() == 3
    assert sorted(p.name for p in c.arrays_dir.iterdir()) == [names[1], names[3]]
    assert c.bytes_used() <= c.budget
    assert len(list(c.stats_dir.glob("*.json"))) == 5 and len(list(c.thumbs_dir.glob("*.png"))) == 5
    assert cache_status(c, reg).n_arrays == 2 and cache_status(c, reg).n_stats == 5


def test_tiny_budget_builds_stats_only_without_failing(data, tmp_path):
    reg = load_registry(data)
    c = StudyCache(data, tmp_path / "cache", budget_bytes=1)
    rep = build_all(c, reg, arrays=True)
    assert rep.n_built == 5 and rep.n_errors == 0 and rep.n_arrays_written == 0
    assert cache_status(c, reg).n_stats == 5 and c.bytes_used() == 0
    # A later run does not recompute studies whose stats are valid just because arrays are missing.
    assert build_all(c, reg).n_built == 0


def test_budget_limits_arrays_written_by_a_build(data, tmp_path):
    reg = load_registry(data)
    one = estimate_bytes(reg.get(1).opened(data))
    c = StudyCache(data, tmp_path / "cache", budget_bytes=int(2.5 * one))
    rep = build_all(c, reg)
    assert rep.n_arrays_written == 2 and rep.n_built == 5
    assert c.bytes_used() <= c.budget


# ------------------------------------------------------------------------------------------ read-only


def test_unwritable_cache_path_computes_in_memory(data, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    reg = load_registry(data)
    c = StudyCache(data, blocker / "cache")
    assert not c.writable and "cannot be written" in c.reason
    rep = build_all(c, reg)
    assert rep.n_built == 5 and not rep.writable
    assert c.get_stats(reg.get(2))["status"] == "ok"
    assert c.get_arrays(reg.get(2)) is None  # volumes are not hoarded in memory
    entry = c.build_study(reg.get(2))
    assert entry.arrays is not None and not entry.arrays.from_cache and not entry.written
    assert _summary(c, reg)["status"].eq("ok").all()
    assert cache_status(c, reg).n_stats == 5 and not cache_status(c, reg).writable
    assert blocker.read_text().startswith("a file")


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: chmod 0555 does not stop root's writes (covered by the file-in-place-of-directory test)",
)
def test_chmod_readonly_cache_serves_existing_entries(data, tmp_path):
    c, reg = _built(data, tmp_path / "cache")
    for d in [c.dir, c.stats_dir, c.thumbs_dir, c.arrays_dir]:
        d.chmod(0o555)
    try:
        ro = StudyCache(data, tmp_path / "cache")
        assert not ro.writable
        assert ro.get_arrays(reg.get(2)) is not None  # reading still works
        hu, _ = phantom_xyz(SHAPE, seed=77)
        _bump(Path(reg.get(1).study_path), hu)
        assert build_all(ro, reg).n_built == 1  # computed in memory
        assert ro.get_stats(reg.get(1))["status"] == "ok"
    finally:
        for d in [c.dir, c.stats_dir, c.thumbs_dir, c.arrays_dir]:
            d.chmod(0o755)


# ---------------------------------------------------------------------------------- processes and faults


def test_two_workers_equal_one_worker(data, tmp_path):
    reg = load_registry(data)
    c1 = StudyCache(data, tmp_path / "one")
    build_all(c1, reg, workers=1)
    c2 = StudyCache(data, tmp_path / "two")
    calls = []
    rep = build_all(c2, reg, workers=2, progress=lambda d, t, label: calls.append(d))
    assert rep.n_built == 5 and rep.workers == 2 and calls[-1] == 5
    one = valid_entry_files(data, tmp_path / "one")
    two = valid_entry_files(data, tmp_path / "two")
    # stats + thumbs for 5 studies; arrays: 3 files without a mask (studies 1, 3, 5), 4 with one (2, 4).
    assert len(one) == 5 * 2 + 3 * 3 + 2 * 4
    assert one == two


def test_killed_builds_leave_nothing_invalid(tmp_path):
    # Enough work that a build lasts well over half a second after its first progress line (the segmentation
    # got ~6x faster this round: the former 8 studies of 96x96x10 were often done before the kill).
    data = write_small_dataset(tmp_path / "data", n=12, shape=(160, 160, 16), seed=5)
    rep = kill_and_check(data, tmp_path / "cache", tmp_path / "clean", n_kills=4, seed=11)
    assert rep.kills_mid_build >= 2 and rep.valid_files_after_kills > 0, rep  # the kills did hit builds
    assert rep.mismatches == [], rep
    assert rep.rebuild_ok, rep
    assert rep.leftover_tmp_after_rebuild == [], rep
    # After the rebuild, the cache holds everything the clean build holds.
    assert valid_entry_files(data, tmp_path / "cache") == valid_entry_files(data, tmp_path / "clean")


def test_two_builders_at_once_make_one_valid_cache(tmp_path):
    data = write_small_dataset(tmp_path / "data", n=6, shape=(64, 64, 8), seed=6)
    codes = race_builders(data, tmp_path / "cache", n=2)
    assert codes == [0, 0]
    clean = tmp_path / "clean"
    from cache_faults import run_build

    assert run_build(data, clean).returncode == 0
    n, bad = compare_with_clean(data, tmp_path / "cache", clean)
    assert bad == [] and n == len(valid_entry_files(data, clean))
    assert leftover_tmp(data, tmp_path / "cache") == []
    c = StudyCache(data, tmp_path / "cache")
    assert len(list(c.dir.glob("summary-*.json"))) == 1


@pytest.mark.soak
@pytest.mark.parametrize("workers", [1, 2])
def test_soak_twenty_kills(tmp_path, workers):
    """`make soak`: 20 SIGKILLs per builder configuration (single process, and a 2-worker pool)."""
    data = write_small_dataset(tmp_path / "data", n=12, shape=(128, 128, 12), seed=7)
    rep = kill_and_check(data, tmp_path / "cache", tmp_path / "clean", n_kills=20, seed=20 + workers, workers=workers)
    print(f"kills survived ({workers} worker(s)): {rep.as_dict()}")
    assert rep.kills_mid_build >= 10 and rep.valid_files_after_kills > 0
    assert rep.mismatches == [] and rep.rebuild_ok and rep.leftover_tmp_after_rebuild == []
