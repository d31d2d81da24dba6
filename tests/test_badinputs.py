"""Every kind of the bad-input corpus (tests/badinputs.py) against the registry and volume APIs."""

from __future__ import annotations

import re
import tracemalloc

import badinputs as B
import pytest

from mosmed.errors import MaskMismatchError, MosmedError, RegistryError, VolumeError
from mosmed.registry import load_registry
from mosmed.volume import read_mask, read_volume

ERROR_TYPES = {"VolumeError": VolumeError, "MaskMismatchError": MaskMismatchError, "RegistryError": RegistryError}


def test_corpus_has_at_least_25_kinds_and_names_are_unique():
    assert len(B.ALL_KINDS) >= 25
    assert len(set(B.ALL_KINDS)) == len(B.ALL_KINDS)
    required = {
        "zero_byte",
        "truncated_gzip",
        "not_gzip",
        "not_nifti",
        "image_2d",
        "true_4d",
        "nan_inf_float",
        "all_nan",
        "rgb_dtype",
        "enormous_dims",
        "mask_other_shape",
        "mask_other_affine",
        "mask_0_255",
        "mask_0_2",
        "mask_empty",
        "one_slice",
        "constant",
        "registry_missing_column",
        "duplicate_id",
        "unknown_class",
        "non_numeric_id",
        "dotdot_path",
        "absolute_outside_root",
        "symlink_out",
        "missing_study_file",
        "missing_mask_file",
        "non_ascii_names",
        "registry_empty",
        "registry_not_spreadsheet",
    }
    assert required <= set(B.ALL_KINDS)


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "dataset"
    expect = B.make_bad_dataset(root)
    return root, expect, load_registry(root)


def test_bad_dataset_loads_with_every_good_row(bad_dataset):
    root, expect, reg = bad_dataset
    n_dropped = sum(e.outcome == "dropped" for e in expect.values())
    assert len(reg.problems) == n_dropped
    assert len(reg.df) == len(expect) - n_dropped
    for sid in B.GOOD_IDS:
        assert reg.df.loc[sid, "status"] == "ok"
        read_volume(reg.df.loc[sid, "study_path"], sid)
    assert reg.df.loc[2, "has_mask"] and not reg.df.loc[1, "has_mask"]


def _kinds(stage):
    return [
        k
        for k in [*B.VOLUME_CASES, *B.MASK_CASES, *B.ROW_CASES]
        if (k in B.VOLUME_CASES and stage == "volume")
        or (k in B.MASK_CASES and stage == "mask")
        or (k in B.ROW_CASES and stage == "registry")
    ]


@pytest.mark.parametrize("kind", _kinds("registry"))
def test_row_kind(bad_dataset, kind):
    _root, expect, reg = bad_dataset
    e = expect[kind]
    if e.outcome == "dropped":
        hits = [p for p in reg.problems if e.expected in p.reason]
        assert len(hits) == 1, [str(p) for p in reg.problems]
        if e.study_id is not None:
            assert hits[0].study_id == e.study_id
            assert str(hits[0]).startswith(f"study {e.study_id} ")
        assert hits[0].row >= 2
        return
    row = reg.df.loc[e.study_id]
    if e.outcome == "ok":
        assert row["status"] == "ok", row["error"]
        read_volume(row["study_path"], e.study_id)
        if isinstance(row["mask_file"], str):
            assert row["has_mask"]
    else:
        assert row["status"] == "error"
        assert e.expected in row["error"]
        # the issue list (what `validate` prints) names the study id with the reason
        assert (e.study_id, row["error"]) in reg.issues()
        if "unsafe" in row["error"] or "outside" in row["error"]:
            # an unsafe path is never handed out, not even resolved
            assert row["study_path"] is None or "mask" in row["error"]
            assert row["mask_path"] is None


@pytest.mark.parametrize("kind", _kinds("volume"))
def test_volume_kind_in_dataset(bad_dataset, kind):
    _root, expect, reg = bad_dataset
    e = expect[kind]
    row = reg.df.loc[e.study_id]
    assert row["status"] == "ok", row["error"]  # the registry only checks presence; the volume says why
    if e.outcome == "error":
        with pytest.raises(VolumeError, match=re.escape(e.expected)) as info:
            read_volume(row["study_path"], e.study_id)
        assert str(info.value).startswith(f"study {e.study_id}: study file")
        assert info.value.study_id == e.study_id
    else:
        vol = read_volume(row["study_path"], e.study_id)
        assert vol.data.dtype.name == "int16" and vol.data.ndim == 3
        if e.outcome == "warning":
            assert any(e.expected in w for w in vol.warnings), vol.warnings
        else:
            assert vol.warnings == []


@pytest.mark.parametrize("kind", _kinds("mask"))
def test_mask_kind_in_dataset(bad_dataset, kind):
    _root, expect, reg = bad_dataset
    e = expect[kind]
    row = reg.df.loc[e.study_id]
    assert row["status"] == "ok" and row["has_mask"]
    vol = read_volume(row["study_path"], e.study_id)
    if e.outcome == "error":
        with pytest.raises(ERROR_TYPES[e.error_type], match=re.escape(e.expected)) as info:
            read_mask(row["mask_path"], vol, e.study_id)
        assert str(info.value).startswith(f"study {e.study_id}: mask ")
    else:
        mask, warnings = read_mask(row["mask_path"], vol, e.study_id)
        assert mask.dtype.name == "uint8" and mask.shape == vol.data.shape
        assert set(mask.ravel().tolist()) <= {0, 1}
        if e.outcome == "warning":
            assert any(e.expected in w for w in warnings), warnings
        else:
            assert warnings == [] and mask.sum() > 0


@pytest.mark.parametrize("kind", list(B.VOLUME_CASES))
def test_volume_case_as_single_file(tmp_path, kind):
    case = B.VOLUME_CASES[kind]
    path = B.write_volume_case(kind, tmp_path)
    if case.outcome == "error":
        with pytest.raises(VolumeError, match=re.escape(case.expected)):
            read_volume(path, 7)
    else:
        assert read_volume(path, 7).data.shape[1:] == (32, 32)


@pytest.mark.parametrize("kind", ["enormous_dims", "header_claims_too_much"])
def test_lying_header_is_rejected_without_allocating(tmp_path, kind):
    path = B.write_volume_case(kind, tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(VolumeError):
            read_volume(path, 3)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"peak {peak} bytes for a {path.stat().st_size}-byte file"


@pytest.mark.parametrize("kind", list(B.REGISTRY_CASES))
def test_whole_registry_kind(tmp_path, kind):
    e = B.make_bad_registry(kind, tmp_path / "root")
    with pytest.raises(RegistryError, match=re.escape(e.expected)) as info:
        load_registry(tmp_path / "root")
    assert isinstance(info.value, MosmedError) and info.value.study_id is None


def test_bad_dataset_with_csv_registry_gives_the_same_rows(tmp_path, bad_dataset):
    _root, expect, reg = bad_dataset
    B.make_bad_dataset(tmp_path / "dataset", registry_format="csv")
    reg_csv = load_registry(tmp_path / "dataset")
    assert reg_csv.source.endswith(".csv")
    assert reg_csv.ids == reg.ids
    assert reg_csv.df["status"].tolist() == reg.df["status"].tolist()
    assert [p.reason for p in reg_csv.problems] == [p.reason for p in reg.problems]
