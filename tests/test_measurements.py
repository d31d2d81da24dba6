"""Per-study figures: volumes, involvement, per-slice areas, the lung HU histogram, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_chest import SPACING, make_chest

from mosmed.measurements import HIST_EDGES, as_bool, per_slice_count, study_stats
from mosmed.segmentation import segment_lungs


def test_study_stats_figures():
    hu = np.full((3, 10, 10), -850, dtype=np.int16)
    lung = np.zeros(hu.shape, np.uint8)
    lung[:, 2:8, 2:8] = 1  # 3 x 36 voxels
    mask = np.zeros(hu.shape, np.uint8)
    mask[1, 2:5, 2:8] = 1  # 18 voxels inside the lung
    mask[1, 0, 0] = 1  # and one outside the segmentation
    hu[mask > 0] = -400
    sp = (8.0, 0.5, 0.5)
    st = study_stats(hu, sp, lung, mask)
    voxel_ml = 8.0 * 0.5 * 0.5 / 1000
    assert st.lesion_voxels == 19
    assert st.lesion_ml == pytest.approx(19 * voxel_ml)
    # The expert's lesion voxels count as lung: 108 + 1 lung voxels, 19 of them lesion.
    assert st.lung_ml == pytest.approx(109 * voxel_ml)
    assert st.involvement_pct == pytest.approx(100 * 19 / 109)
    assert st.lesion_area_mm2.tolist() == [0.0, 19 * 0.25, 0.0]
    assert st.lung_area_mm2.tolist() == [9.0, 37 * 0.25, 9.0]
    assert st.hist.shape == (len(HIST_EDGES) - 1,) and st.hist.sum() == 109
    assert st.hist[(-850 + 1024) // 16] == 90 and st.hist[(-400 + 1024) // 16] == 19
    assert set(st.density) >= {"density_pct", "density_pct_750", "density_pct_600", "core_pct", "median_hu"}
    no_mask = study_stats(hu, sp, lung)
    assert no_mask.lesion_ml is None and no_mask.involvement_pct is None and no_mask.lesion_area_mm2 is None
    assert no_mask.lung_ml == pytest.approx(108 * voxel_ml)


def test_masks_of_any_integer_type_give_the_same_figures():
    hu = np.full((2, 6, 6), -850, dtype=np.int16)
    lung = np.zeros(hu.shape, np.uint8)
    lung[:, 1:5, 1:5] = 1
    a = study_stats(hu, (8.0, 1.0, 1.0), lung)
    b = study_stats(hu, (8.0, 1.0, 1.0), lung.astype(np.int16) * 7)  # not 0/1: taken as > 0
    c = study_stats(hu, (8.0, 1.0, 1.0), lung.astype(bool))
    assert a.lung_ml == b.lung_ml == c.lung_ml and np.array_equal(a.hist, b.hist)


def test_histogram_clips_out_of_range_values():
    hu = np.array([[[-3000, 2000, -1024, 255]]], dtype=np.int16)
    st = study_stats(hu, (1, 1, 1), np.ones(hu.shape, np.uint8))
    assert st.hist.sum() == 4 and st.hist[0] == 2 and st.hist[-1] == 2


def test_no_lungs_gives_safe_stats():
    for vol in (np.full((4, 64, 64), -1000, dtype=np.int16), np.full((4, 64, 64), 40, dtype=np.int16)):
        seg = segment_lungs(vol, SPACING)
        st = study_stats(vol, SPACING, seg, np.zeros_like(seg))
        assert st.lung_ml == 0 and st.involvement_pct is None and st.estimated_involvement_pct == 0.0
        assert st.lesion_ml == 0 and st.hist.sum() == 0 and st.lung_area_mm2.shape == (4,)
        assert st.density["density_pct"] == 0.0 and st.density["median_hu"] is None


def test_study_stats_rejects_mismatched_shapes():
    hu, lung, _, _, _ = make_chest(seed=1)
    with pytest.raises(ValueError, match="lung mask shape"):
        study_stats(hu, SPACING, lung[:2])
    with pytest.raises(ValueError, match="lesion mask shape"):
        study_stats(hu, SPACING, lung, lung[:, :3])


def test_helpers():
    m = np.zeros((3, 4, 4), np.uint8)
    m[1, :2] = 1
    assert per_slice_count(m > 0).tolist() == [0, 8, 0]
    assert as_bool(m).base is m or as_bool(m).base is m.base  # a 0/1 uint8 mask is viewed, not copied
    assert as_bool(m * 3).dtype == bool and as_bool(m * 3).sum() == 8
