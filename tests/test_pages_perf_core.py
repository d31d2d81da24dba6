"""The per-row costs of a big registry, made cheaper without changing an answer (issue 11, item 6).

- ``mosmed.paths.FileChecker`` gives exactly what ``check_file`` gives, for every kind of path the path guard
  knows (links in and out, absolute paths inside and outside, traversal, NUL, drives, NFD names, names too long,
  directories, missing files);
- the summary's histograms live in one ``.npy`` array beside the summary JSON, written atomically; a damaged or
  missing array makes the summary be assembled again, never wrong;
- the cache token changes when a source file is replaced (same counts), when an entry is written, and stays put
  otherwise;
- the fast registry-wide keys equal ``StudyCache.key`` row for row.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mosmed.paths import FileChecker, check_file  # noqa: E402

# ------------------------------------------------------------------------------------------- FileChecker


def _corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "root"
    (root / "studies" / "CT-0").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "studies" / "CT-0" / "study_0001.nii.gz").write_bytes(b"x")
    (root / "masks" / "study_0001_mask.nii.gz").write_bytes(b"m")
    (root / "studies" / "CT-0" / "a-dir.nii.gz").mkdir()
    secret = tmp_path / "secret.nii.gz"
    secret.write_bytes(b"s")
    os.symlink(secret, root / "studies" / "CT-0" / "out.nii.gz")
    os.symlink(root / "studies" / "CT-0" / "study_0001.nii.gz", root / "studies" / "CT-0" / "alias.nii.gz")
    os.symlink("study_0001.nii.gz", root / "studies" / "CT-0" / "rel-alias.nii.gz")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "studies", root / "studies-link")
    os.symlink(root / "nowhere", root / "studies" / "CT-0" / "dangling.nii.gz")
    nfd = unicodedata.normalize("NFD", "étude_0002.nii.gz")
    (root / "studies" / "CT-0" / nfd).write_bytes(b"e")
    rels = [
        "/studies/CT-0/study_0001.nii.gz",
        "studies/CT-0/study_0001.nii.gz",
        " /studies/CT-0/study_0001.nii.gz ",
        "./studies//CT-0/study_0001.nii.gz",
        "\\studies\\CT-0\\study_0001.nii.gz",
        "//studies/CT-0/study_0001.nii.gz",
        "/studies/CT-0/study_0001.nii.gz/",
        str(root / "studies" / "CT-0" / "study_0001.nii.gz"),
        str((root / "studies" / "CT-0" / "study_0001.nii.gz").resolve()),
        "/masks/study_0001_mask.nii.gz",
        "/studies/CT-9/none.nii.gz",
        "/studies/CT-0/missing.nii.gz",
        "/studies/CT-0/a-dir.nii.gz",
        "/studies/CT-0/out.nii.gz",
        "/studies/CT-0/alias.nii.gz",
        "/studies/CT-0/rel-alias.nii.gz",
        "/up/secret.nii.gz",
        "/studies-link/CT-0/study_0001.nii.gz",
        "/studies/CT-0/dangling.nii.gz",
        str(secret),
        "/etc/passwd",
        "/proc/self/environ",
        "../secret.nii.gz",
        "/studies/../../secret.nii.gz",
        "C:\\data\\x.nii.gz",
        "C:/data/x.nii.gz",
        "\\\\server\\share\\x",
        "",
        "   ",
        "/",
        "a\x00b",
        "/studies/%2e%2e/%2e%2e/secret.nii.gz",
        "/studies/CT-0/" + "a" * 300 + ".nii.gz",
        "/" + "b" * 5000 + "/x.nii.gz",
        "/studies/CT-0/étude_0002.nii.gz",
        "/studies/CT-0/" + nfd,
        "/studies/CT-0/\x1b[31mred\x07.nii.gz",
        "file:///etc/passwd",
        "~/.ssh/id_rsa",
        "/studies/./CT-0/study_0001.nii.gz",
    ]
    return root, rels


def test_file_checker_answers_exactly_as_check_file(tmp_path):
    root, rels = _corpus(tmp_path)
    checker = FileChecker(root)
    for what in ("study", "mask"):
        for rel in rels + [float("nan"), None, 12]:
            assert checker.check(rel, what) == check_file(root, rel, what), (rel, what)
    # Asked twice (its directory memo warm), the answers stay the same.
    for rel in rels:
        assert checker.check(rel, "study") == check_file(root, rel, "study"), rel


def test_file_checker_through_a_linked_root(tmp_path):
    """A dataset root reached through a symbolic link: paths come back resolved, as check_file gives them."""
    root, rels = _corpus(tmp_path)
    link = tmp_path / "root-link"
    os.symlink(root, link)
    checker = FileChecker(link)
    for rel in rels + [str(link / "studies" / "CT-0" / "study_0001.nii.gz")]:
        assert checker.check(rel, "study") == check_file(link, rel, "study"), rel


def test_registry_load_uses_one_checker_and_keeps_its_rows(tmp_path):
    from mosmed.registry import load_registry

    root, rels = _corpus(tmp_path)
    rows = [
        {"study_id": i + 1, "category": "CT-0", "study_file": rel, "mask_file": None}
        for i, rel in enumerate(r for r in rels if r.strip() and "\x00" not in r)
    ]
    pd.DataFrame(rows).to_csv(root / "dataset_registry.csv", index=False)
    reg = load_registry(root)
    by_id = {s.study_id: s for s in reg.sources}
    for r in rows:
        src = by_id.get(r["study_id"])
        if src is None:
            continue
        path, why = check_file(root, r["study_file"], "study")
        assert src.study_path == path and (why is None) == src.ok and (why or "") in src.error, r


# ------------------------------------------------------------------------------------------ summary storage


@pytest.fixture()
def built(tmp_path):
    from cache_faults import write_small_dataset

    from mosmed.dataset import Dataset

    data = write_small_dataset(tmp_path / "data", n=4, shape=(48, 48, 6), seed=5)
    ds = Dataset(data, tmp_path / "cache")
    ds.build_cache(workers=1)
    return ds


def test_histograms_are_one_npy_beside_the_summary(built):
    from mosmed.cache.summary import summary_doc

    ds = built
    jsons = sorted(ds.cache.dir.glob("summary-*.json"))
    npys = sorted(ds.cache.dir.glob("summary-*.hist.npy"))
    assert len(jsons) == 1 and len(npys) == 1
    assert npys[0].name == jsons[0].name.replace(".json", ".hist.npy")
    doc = json.loads(jsons[0].read_bytes())
    assert "hist" not in doc, "the histograms are not in the JSON any more"
    assert doc["columns"][:2] == ["study_id", "category"] and len(doc["rows"]) == len(ds.registry.rows())
    arr = np.load(npys[0])
    edges, hist = ds.histograms()
    assert arr.shape == (len(hist), 1 + len(edges) - 1)
    assert arr[:, 0].tolist() == hist.index.tolist()
    assert (arr[:, 1:] == hist.to_numpy()).all()
    # summary_doc keeps its form (rows and a hist mapping) for the CLI and the build comparisons.
    d = summary_doc(ds.cache, ds.registry)
    assert set(d["hist"]) == {str(i) for i in hist.index}
    assert d["hist"][str(hist.index[0])] == hist.iloc[0].tolist()
    assert len(d["rows"]) == len(ds.summary())


@pytest.mark.parametrize("damage", ["missing", "truncated", "other-rows"])
def test_a_damaged_histogram_array_is_rebuilt_not_trusted(built, damage):
    from mosmed.dataset import Dataset

    ds = built
    edges, good = ds.histograms()
    npy = next(ds.cache.dir.glob("summary-*.hist.npy"))
    if damage == "missing":
        npy.unlink()
    elif damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:100])
    else:
        arr = np.load(npy)
        np.save(npy, arr[:1])
    again = Dataset(ds.root, ds.cache.cache_root)
    edges2, hist2 = again.histograms()
    assert hist2.equals(good)
    assert again.summary().equals(ds.summary())
    assert np.load(next(ds.cache.dir.glob("summary-*.hist.npy"))).shape[0] == len(good), "rewritten whole"


def test_fast_keys_equal_the_cache_keys(built):
    from mosmed.cache.summary import registry_keys

    ds = built
    keys = registry_keys(ds.cache, ds.registry.rows())
    assert keys == [ds.cache.key(s) if s.ok else None for s in ds.registry.rows()]


# ----------------------------------------------------------------------------------------------- cache token


def test_cache_token_follows_sources_and_entries(tmp_path):
    from cache_faults import las_affine, phantom_xyz, write_nifti, write_small_dataset

    from mosmed.dataset import Dataset

    data = write_small_dataset(tmp_path / "data", n=4, shape=(48, 48, 6), seed=3)
    ds = Dataset(data, tmp_path / "cache")
    fresh = ds.cache_token()
    assert fresh != ds.cache_token(), "a folder changed within the last file-time tick: unique, looked at again"
    time.sleep(0.15)
    t0 = ds.cache_token()
    assert ds.cache_token() == t0, "stable while nothing changes"
    assert ds.cache.build_study(ds.registry.get(1)).status == "ok"
    t1 = ds.cache_token()
    assert t1 != t0, "a new entry changes it"
    time.sleep(0.15)
    t1 = ds.cache_token()
    hu, _ = phantom_xyz((48, 48, 9), lesion_frac=0.0, seed=42)
    study = ds.registry.get(2).study_path
    write_nifti(study, hu, las_affine())
    later = time.time() + 5
    os.utime(study, (later, later))
    t2 = ds.cache_token()
    assert t2 != t1, "a replaced source changes it (no entry changed)"
    assert ds.cache_token() == t2
