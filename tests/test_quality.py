"""Quality flags: each one raised by the case it describes, with a reason, and none on a clean chest CT."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_chest import chest

from mosmed.measurements import study_stats
from mosmed.quality import CODES, QualityFlag, assess, parse_qc, qc_codes, qc_text
from mosmed.segmentation import segment
from mosmed.volume import Volume

# A MosMedData-like grid: 40 slices of 8 mm, 128 px of 3 mm (384 mm field of view).
GRID, SP = (40, 128, 128), (8.0, 3.0, 3.0)


def _volume(hu: np.ndarray, spacing=SP, slice_z=None) -> Volume:
    z = hu.shape[0]
    zpos = np.arange(z, dtype=float) * spacing[0] if slice_z is None else np.asarray(slice_z, float)
    aff = np.diag([-spacing[2], spacing[1], spacing[0], 1.0])
    return Volume(
        data=hu,
        spacing=tuple(spacing),
        affine=aff,
        source_shape=hu.shape[::-1],
        source_axcodes=("L", "A", "S"),
        slice_z_mm=zpos,
        warnings=[],
    )


def _flags(hu: np.ndarray, spacing=SP, slice_z=None) -> list[QualityFlag]:
    vol = _volume(hu, spacing, slice_z)
    seg = segment(hu, spacing)
    return assess(vol, seg, study_stats(hu, spacing, seg.lung))


def _codes(flags) -> list[str]:
    return [f.code for f in flags]


@pytest.fixture(scope="module")
def clean():
    return chest(GRID, SP, seed=3, table=True)["hu"]


def test_a_clean_chest_ct_has_no_flag(clean):
    assert _flags(clean) == []


def test_no_lungs():
    hu = np.full(GRID, 40, np.int16)
    hu[:, :8] = -1000
    assert "no_lungs" in _codes(_flags(hu))


def test_lungs_on_the_image_edge(clean):
    flags = _flags(clean[:, 45:95, 20:108])
    f = next(f for f in flags if f.code == "border")
    assert "cropped" in f.reason and "slices" in f.reason


def test_implausible_lung_volume(clean):
    # The same chest with 1 mm pixels: a child's (or a wrongly scaled) 0.8 L of lung.
    flags = _flags(clean, (8.0, 1.0, 1.0))
    assert "lung_volume" in _codes(flags)
    assert any("mL" in f.reason for f in flags if f.code == "lung_volume")


def test_lungs_only_in_the_top_slices_are_not_a_chest(clean):
    from scipy import ndimage

    body = np.full((30,) + GRID[1:], -1000, np.int16)
    body[:, ndimage.binary_fill_holes(clean[GRID[0] // 2] > -200)] = 40  # abdomen: the body's outline, solid
    hu = np.concatenate([body, clean[-8:]])  # the lung apices on top
    flags = _flags(hu)
    f = next(f for f in flags if f.code == "not_chest")
    assert "top" in f.reason


def test_air_not_near_minus_1000(clean):
    shifted = (clean.astype(np.int32) + 300).astype(np.int16)  # a wrong intercept: air reads -700
    f = next(f for f in _flags(shifted) if f.code == "air_hu")
    assert "-700" in f.reason or "-69" in f.reason or "-70" in f.reason


def test_padding_values(clean):
    hu = chest(GRID, SP, seed=3, padding=-3024)["hu"]
    flags = _flags(hu)
    f = next(f for f in flags if f.code == "padding")
    assert "-3024" in f.reason
    assert "air_hu" not in _codes(flags)  # padding is not what air reads


def test_irregular_and_unordered_slices(clean):
    z = np.arange(GRID[0], dtype=float) * 8.0
    z[20:] += 4.0
    assert "spacing" in _codes(_flags(clean, slice_z=z))
    z = np.arange(GRID[0], dtype=float) * 8.0
    z[[3, 4]] = z[[4, 3]]
    assert any(f.code == "spacing" and "ordered" in f.reason for f in _flags(clean, slice_z=z))


def test_grid_unlike_mosmeddata(clean):
    flags = _flags(clean[:16])
    f = next(f for f in flags if f.code == "grid")
    assert "16 slices" in f.reason
    flags = _flags(clean, (3.0, 3.0, 3.0))
    assert any(f.code == "grid" and "3 mm between slices" in f.reason for f in flags)


def test_qc_text_round_trip():
    flags = [QualityFlag("border", "lungs touch: the edge | of the image"), QualityFlag("grid", "16 slices")]
    text = qc_text(flags)
    assert text.startswith("border: ") and parse_qc(text) == ["border", "grid"]
    assert qc_codes(flags) == "border; grid"
    assert qc_text([]) == "" and parse_qc("") == [] and parse_qc(None) == []
    assert set(CODES) == {"no_lungs", "border", "lung_volume", "not_chest", "air_hu", "padding", "spacing", "grid"}
    assert flags[0].as_dict() == {"code": "border", "reason": "lungs touch: the edge | of the image"}
