"""The Dataset facade: opening roots and studies, defaults, the embedded demo."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cache_faults import write_small_dataset

from mosmed import config as config_mod
from mosmed.config import default_cache_root, default_data_root
from mosmed.dataset import Dataset
from mosmed.demo import ensure_demo
from mosmed.errors import MosmedError, RegistryError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_small_dataset(tmp_path / "data", n=5, shape=(48, 40, 5), seed=2)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(RegistryError, match=r"dataset folder .*nowhere does not exist"):
        Dataset(tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="is not a folder"):
        Dataset(tmp_path / "file", tmp_path / "cache")


def test_open_study_from_cache_is_memmapped_display_orientation(data, tmp_path):
    ds = Dataset(data, tmp_path / "cache")
    st = ds.open_study(2)  # not built yet: built on demand, then served from the cache
    assert st.from_cache and isinstance(st.volume, np.memmap) and not st.volume.flags.writeable
    # Files are (x=48, y=40, z=5) LAS: display is (Z, H=y, W=x).
    assert st.shape == (5, 40, 48) and st.volume.dtype == np.int16
    assert st.mask is not None and st.mask.shape == st.shape and st.lung.dtype == np.uint8
    assert st.spacing == pytest.approx((8.0, 340 / 48, 340 / 48), rel=1e-6)
    assert st.source_axcodes == ("L", "A", "S")
    assert len(st.slice_z_mm) == 5 and np.all(np.diff(st.slice_z_mm) > 0)  # increasing toward the head
    assert st.stats.lesion_ml > 0 and st.stats.lung_ml > 0
    assert st.category == "CT-1" and st.summary["study_id"] == 2
    again = ds.open_study(2)
    assert again.cache_key == st.cache_key
    assert ds.open_study(1).mask is None


def test_open_study_errors_name_the_study(data, tmp_path):
    (data / "studies/CT-2/study_0003.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    (data / "studies/CT-3/study_0004.nii.gz").unlink()
    ds = Dataset(data, tmp_path / "cache")
    with pytest.raises(MosmedError, match=r"^study 999: is not in the registry"):
        ds.open_study(999)
    with pytest.raises(MosmedError, match=r"^study 'abc' is not in the registry"):
        ds.open_study("abc")
    with pytest.raises(MosmedError, match=r"^study 3: "):
        ds.open_study(3)
    with pytest.raises(MosmedError, match=r"^study 4: .*missing"):
        ds.open_study(4)
    assert ds.open_study(5).study_id == 5  # the others keep working


def test_summary_histograms_thumbnails_status(data, tmp_path):
    ds = Dataset(data, tmp_path / "cache")
    pending = ds.summary()
    assert set(pending["status"]) == {"pending"} and not pending["has_thumb"].any()
    rep = ds.build_cache()
    assert rep.n_built == 5
    s = ds.summary()
    assert list(s.columns[:4]) == ["study_id", "category", "has_mask", "status"]
    assert s["has_thumb"].all() and s["status"].eq("ok").all()
    edges, hist = ds.histograms()
    assert hist.shape == (5, len(edges) - 1) and (hist.sum(axis=1) > 0).all()
    assert ds.thumbnail(3).startswith(b"\x89PNG")
    st = ds.status()
    assert st.complete and st.n_arrays == 5 and st.writable
    assert not ds.is_mosmed  # CSV registry: not the published spreadsheet


def test_read_only_cache_opens_studies_in_memory(data, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    ds = Dataset(data, blocker / "cache")
    assert not ds.status().writable and "computed in memory" in ds.status().reason
    st = ds.open_study(4)
    assert not st.from_cache and st.mask is not None
    assert ds.summary().set_index("study_id").loc[4, "status"] == "ok"


def test_tiny_budget_still_opens_studies(data, tmp_path):
    ds = Dataset(data, tmp_path / "cache", budget_bytes=1)
    for sid in (1, 2, 3):
        assert ds.open_study(sid).from_cache
    # Only the study opened last is kept (protected while in use), the rest evicted.
    assert ds.status().n_arrays == 1


def test_defaults_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("MOSMED_DATA", raising=False)
    assert default_cache_root() == tmp_path / "c"
    assert default_data_root() == (tmp_path / "c" / "demo", True)
    monkeypatch.setenv("MOSMED_DATA", str(tmp_path / "d"))
    assert default_data_root() == (tmp_path / "d", False)
    monkeypatch.delenv("MOSMED_CACHE")
    assert default_cache_root() == Path(config_mod.__file__).resolve().parents[1] / "data_cache"


def _fake_generator(calls: list, delay: float = 0.3, fail: bool = False):
    def generate_demo(out, n_studies=20, seed=0, full_size=False, progress=None):
        calls.append(out)
        time.sleep(delay)
        write_small_dataset(Path(out), n=2, shape=(16, 16, 2))
        if fail:
            raise RuntimeError("generator crashed")
        return Path(out)

    return generate_demo


def test_ensure_demo_two_processes_generate_once(tmp_path, monkeypatch):
    from mosmed import synthetic

    calls: list = []
    monkeypatch.setattr(synthetic, "generate_demo", _fake_generator(calls))
    target = tmp_path / "cache" / "demo"
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_demo(root=target))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target, target] and len(calls) == 1
    assert (target / "dataset_registry.csv").is_file()
    assert not list(target.parent.glob(".tmp-*"))
    assert ensure_demo(root=target) == target and len(calls) == 1


def test_ensure_demo_failure_leaves_nothing(tmp_path, monkeypatch):
    from mosmed import synthetic

    calls: list = []
    monkeypatch.setattr(synthetic, "generate_demo", _fake_generator(calls, delay=0, fail=True))
    target = tmp_path / "cache" / "demo"
    with pytest.raises(RuntimeError, match="generator crashed"):
        ensure_demo(root=target)
    assert not target.exists() and not list(target.parent.glob(".tmp-*"))


def test_ensure_demo_unwritable_says_so(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(MosmedError, match="cannot create the demo dataset"):
        ensure_demo(root=tmp_path / "f" / "demo")


def test_stale_debris_of_dead_demo_generator_is_swept(tmp_path, monkeypatch):
    from mosmed import synthetic

    monkeypatch.setattr(synthetic, "generate_demo", _fake_generator([], delay=0))
    debris = tmp_path / f".tmp-demo-{2**22 + 7}-dead"
    debris.mkdir()
    ensure_demo(root=tmp_path / "demo")
    assert not debris.exists()
    assert os.path.isdir(tmp_path / "demo" / "studies")


def test_is_mosmed_needs_the_published_layout_and_licence(tmp_path):
    pytest.importorskip("mosmed.synthetic")
    from mosmed import synthetic

    root = synthetic.generate_demo(tmp_path / "demo", n_studies=2, size=32, workers=1)
    assert not Dataset(root, tmp_path / "cache").is_mosmed  # synthetic: layout only
    (root / "LICENSE").write_text("CC BY-NC-ND 3.0")
    assert Dataset(root, tmp_path / "cache").is_mosmed


def test_real_registry_replica_layout_opens(real_mosmed, tmp_path):
    """The real registry (1110 rows, most studies absent here) opens; absent studies are rows in error."""
    import shutil

    root = tmp_path / "real"
    root.mkdir()
    shutil.copyfile(real_mosmed / "dataset_registry.xlsx", root / "dataset_registry.xlsx")
    shutil.copyfile(real_mosmed / "LICENSE", root / "LICENSE")
    ds = Dataset(root, tmp_path / "cache")
    assert ds.is_mosmed and len(ds.registry.df) == 1110
    s = ds.summary()
    assert len(s) == 1110 and (s["status"] == "error").all()
    assert s["error"].str.contains("study file missing").all()
    assert ds.build_cache().n_errors == 1110
    with pytest.raises(MosmedError, match=r"^study 255: study file missing"):
        ds.open_study(255)


def test_source_replaced_while_open_is_rebuilt(data, tmp_path):
    from cache_faults import las_affine, phantom_xyz, small_spacing, write_nifti

    ds = Dataset(data, tmp_path / "cache")
    first = ds.open_study(3)
    path = data / "studies/CT-2/study_0003.nii.gz"
    hu, _ = phantom_xyz((48, 40, 5), lesion_frac=0.0, seed=42)
    write_nifti(path, hu + 100, las_affine(small_spacing((48, 40, 5))))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    second = ds.open_study(3)
    assert second.cache_key != first.cache_key and second.from_cache
    assert int(second.volume.max()) == int(hu.max()) + 100
    assert len(list(ds.cache.arrays_dir.glob("study_0003-*"))) == 1  # the stale entry is gone
    assert int(first.volume.max()) != int(second.volume.max())  # an open memmap stays readable
