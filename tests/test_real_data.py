"""The real MosMedData registry and the 50 real masks from ../shared (read only, never copied)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import openpyxl
import pytest

from mosmed.registry import REGISTRY_COLUMNS, REGISTRY_SHEET, load_registry, read_registry_file
from mosmed.severity import CLASSES, PUBLISHED_COUNTS, PUBLISHED_MASKS, PUBLISHED_TOTAL
from mosmed.volume import display_affine, read_mask, volume_grid

MASK_IDS = list(range(255, 305))


@pytest.fixture(scope="module")
def real_registry(real_mosmed):
    return load_registry(real_mosmed)


def test_real_registry_file_is_read_as_published(real_mosmed):
    raw = read_registry_file(real_mosmed / "dataset_registry.xlsx")
    assert list(raw.columns[:4]) == list(REGISTRY_COLUMNS)
    assert len(raw) == PUBLISHED_TOTAL
    assert raw["row"].tolist() == list(range(2, PUBLISHED_TOTAL + 2))
    wb = openpyxl.load_workbook(real_mosmed / "dataset_registry.xlsx", read_only=True)
    assert wb.sheetnames == [REGISTRY_SHEET]
    wb.close()


def test_real_registry_counts_and_masks(real_registry):
    df = real_registry.df
    assert len(df) == 1110 and real_registry.problems == []
    assert df["study_id"].is_unique and df["study_id"].dtype.kind == "i"
    assert (
        real_registry.counts()
        == dict(PUBLISHED_COUNTS)
        == {"CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45, "CT-4": 2}
    )
    assert set(df["category"]) == set(CLASSES)
    with_mask = df[df["mask_file"].notna()]
    assert len(with_mask) == PUBLISHED_MASKS == 50
    assert sorted(with_mask["study_id"]) == MASK_IDS
    assert set(with_mask["category"]) == {"CT-1"}
    assert df["has_mask"].sum() == 50 and df.loc[MASK_IDS, "has_mask"].all()
    # empty mask_file means no mask: NaN, never the string "nan"
    no_mask = df[df["mask_file"].isna()]
    assert len(no_mask) == 1060
    assert all(isinstance(v, float) and math.isnan(v) for v in no_mask["mask_file"])
    assert all(type(v) is str for v in df["mask_file"].dropna())
    assert not (df["mask_file"] == "nan").any()
    assert df.loc[1, "study_file"] == "/studies/CT-0/study_0001.nii.gz"
    assert df.loc[255, "mask_file"] == "/masks/study_0255_mask.nii.gz"


def test_real_registry_reports_missing_studies_but_finds_masks(real_registry):
    df = real_registry.df
    # the CT studies are not distributed here: every row says so, and the masks are still found
    assert (df["status"] == "error").all()
    assert df.loc[1, "error"] == "study file missing: /studies/CT-0/study_0001.nii.gz"
    assert df["mask_path"].notna().sum() == 50
    assert "mask file missing" not in " ".join(df["error"])


@pytest.fixture(scope="module")
def real_masks(real_mosmed):
    """Every real mask read through read_mask against a grid-only Volume from its own header."""
    out = {}
    for sid in MASK_IDS:
        path = real_mosmed / "masks" / f"study_{sid:04d}_mask.nii.gz"
        ref = volume_grid(path, sid, what="mask")
        mask, warnings = read_mask(path, ref, sid)
        out[sid] = (path, ref, mask, warnings)
    return out


def test_real_masks_voxel_counts_equal_the_files_own_sum(real_masks):
    for sid, (path, ref, mask, warnings) in real_masks.items():
        img = nib.load(str(path))
        raw = np.asanyarray(img.dataobj)
        assert raw.min() == 0 and raw.max() == 1, sid
        assert int(mask.sum(dtype=np.int64)) == int(raw.sum(dtype=np.int64)), sid
        assert mask.dtype == np.uint8 and mask.shape == ref.shape
        assert warnings == []
        assert ref.source_axcodes == ("L", "A", "S")
        assert ref.spacing[0] == pytest.approx(8.0)
    assert int(real_masks[297][2].sum()) == 109454
    assert int(real_masks[287][2].sum()) == 98
    ref255 = real_masks[255][1]
    assert ref255.source_shape == (512, 512, 38)
    assert ref255.spacing == pytest.approx((8.0, 0.923, 0.923), abs=1e-4)


def test_real_masks_display_orientation_puts_the_lungs_side_by_side(real_masks):
    both_halves = 0
    col_mass = np.zeros(512)
    row_mass = np.zeros(512)
    for sid, (_path, ref, mask, _w) in real_masks.items():
        # column 0 is the patient's right: world x (RAS+, +x = right) falls as the column index grows
        d_aff = display_affine(ref.affine, ref.source_shape)
        assert d_aff[0, 2] < 0 and d_aff[1, 1] < 0 and d_aff[2, 0] > 0, sid
        cols = mask.sum(axis=(0, 1), dtype=np.int64)
        rows = mask.sum(axis=(0, 2), dtype=np.int64)
        w = mask.shape[2]
        both_halves += bool(cols[: w // 2].sum() and cols[w // 2 :].sum())
        col_mass += cols / cols.sum()
        row_mass += rows / rows.sum()
    # lesions in both lungs for most studies (46 of 50 measured)
    assert both_halves >= 40
    # the lungs lie left and right of the mediastinum: little lesion in the central tenth of the columns ...
    centre = col_mass[230:282].sum() / col_mass.sum()
    left, right = col_mass[:256].sum() / col_mass.sum(), col_mass[256:].sum() / col_mass.sum()
    assert centre < 0.08 and 0.35 < left < 0.65 and 0.35 < right < 0.65
    # ... and COVID-19 lesions are mostly posterior (dependent): in the lower half, since anterior is up
    assert row_mass[256:].sum() / row_mass.sum() > 0.6
