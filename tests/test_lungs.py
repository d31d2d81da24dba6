"""Lung segmentation, study statistics, the HU-based involvement estimate and its agreement with masks."""

from __future__ import annotations

import numpy as np
import pytest

from mosmed.lungs import HIST_EDGES, agreement, estimate_involvement, segment_lungs, study_stats

SPACING = (8.0, 2.5, 2.5)
SHAPE = (16, 128, 128)


def make_chest(shape=SHAPE, spacing=SPACING, seed=0, lesions=(), noise=20.0):
    """A seeded synthetic chest in display orientation (Z, H, W), built only from numpy.

    Body (fat rim, muscle), ribs, two lung ellipsoids (-860 HU) with the heart cut out of the left one, spine,
    a trachea in the upper slices, vessels (+40 HU) inside the lungs, and lesions: ``(kind, side, (fz, fy, fx),
    radius_mm)`` with kind "ggo" (about -480 HU) or "cons" (about +10 HU), side -1 = patient right (low columns),
    fractions of the lung's bounding box. Returns ``hu`` int16, true ``lung`` and ``lesion`` uint8.
    """
    rng = np.random.default_rng(seed)
    Z, H, W = shape
    dz, dy, dx = spacing
    z = (np.arange(Z) + 0.5)[:, None, None] * dz
    y = (np.arange(H) + 0.5)[None, :, None] * dy
    x = (np.arange(W) + 0.5)[None, None, :] * dx
    Hm, Wm, Zm = H * dy, W * dx, Z * dz
    cy, cx = Hm * 0.5, Wm * 0.5
    hu = np.full(shape, -1000, np.float32)
    body_r = ((y - cy) / (0.36 * Hm)) ** 2 + ((x - cx) / (0.45 * Wm)) ** 2
    hu[np.broadcast_to(body_r <= 1.0, shape)] = -90
    hu[np.broadcast_to(body_r <= 0.85, shape)] = 40
    rib_r = ((y - cy) / (0.31 * Hm)) ** 2 + ((x - cx) / (0.40 * Wm)) ** 2
    ang = np.arctan2((y - cy) / Hm, (x - cx) / Wm)
    hu[np.broadcast_to((np.abs(rib_r - 1.0) < 0.07) & (np.cos(ang * 14) > 0.3), shape)] = 500
    lung = np.zeros(shape, bool)
    zc, zr = Zm * 0.5, Zm * 0.62
    for side in (-1, 1):
        lx = cx + side * 0.19 * Wm
        lung |= ((z - zc) / zr) ** 2 + ((y - cy * 1.02) / (0.25 * Hm)) ** 2 + ((x - lx) / (0.15 * Wm)) ** 2 <= 1.0
    heart = (((z - Zm * 0.3) / (Zm * 0.35)) ** 2 + ((y - cy * 0.85) / (0.13 * Hm)) ** 2
             + ((x - (cx + 0.06 * Wm)) / (0.13 * Wm)) ** 2) <= 1.0
    lung &= ~heart
    hu[heart] = 40
    hu[lung] = -860
    hu[np.broadcast_to(((y - cy * 1.5) / 18.0) ** 2 + ((x - cx) / 18.0) ** 2 <= 1.0, shape)] = 450
    trachea = np.broadcast_to(((y - cy * 0.9) / 9.0) ** 2 + ((x - cx) / 9.0) ** 2 <= 1.0, shape) & (z > Zm * 0.62)
    hu[trachea] = -1000
    lz, ly, lx_ = np.nonzero(lung[:, ::6, ::6])
    vessel = np.zeros(shape, bool)
    for i in rng.choice(len(ly), size=min(30, len(ly)), replace=False):
        vy, vx, r = ly[i] * 6 * dy, lx_[i] * 6 * dx, rng.uniform(2.5, 4.0)
        vessel |= (((y - vy) / r) ** 2 + ((x - vx) / r) ** 2 <= 1.0) & (np.abs(z - lz[i] * dz) < 2 * dz)
    vessel &= lung
    hu[vessel] = 40
    lesion = np.zeros(shape, bool)
    for kind, side, (fz, fy, fx), rad in lesions:
        lx = cx + side * 0.19 * Wm
        pz, py, px = zc + (fz - 0.5) * 1.6 * zr, cy * 1.02 + (fy - 0.5) * 0.5 * Hm, lx + (fx - 0.5) * 0.3 * Wm
        blob = (((z - pz) / max(rad, dz)) ** 2 + ((y - py) / rad) ** 2 + ((x - px) / rad) ** 2 <= 1.0) & lung
        lesion |= blob
        hu[blob] = rng.normal(-480, 90, int(blob.sum())) if kind == "ggo" else rng.normal(10, 25, int(blob.sum()))
    hu += rng.normal(0, noise, size=shape).astype(np.float32)
    return (np.clip(np.rint(hu), -1024, 3071).astype(np.int16), lung.astype(np.uint8), lesion.astype(np.uint8),
            trachea.copy(), vessel)


def dice(a, b) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def healthy():
    return make_chest(seed=1)


def test_segments_two_healthy_lungs(healthy):
    hu, lung, _, trachea, vessel = healthy
    seg = segment_lungs(hu, SPACING)
    assert seg.dtype == np.uint8 and seg.shape == hu.shape and set(np.unique(seg)) <= {0, 1}
    assert dice(seg, lung) > 0.95
    assert np.count_nonzero(seg[trachea]) < 0.05 * np.count_nonzero(trachea)   # trachea is not lung
    assert np.count_nonzero(seg[vessel]) > 0.9 * np.count_nonzero(vessel)       # vessels inside the lung are
    assert seg[:, 0, :].max() == 0 and seg[:, :, :5].max() == 0                 # outside air is not
    k = SHAPE[0] // 2
    cols = np.flatnonzero(seg[k].any(axis=0))
    assert cols.min() < SHAPE[2] * 0.4 and cols.max() > SHAPE[2] * 0.6          # both lungs, side by side


@pytest.mark.parametrize(
    "lesions",
    [
        # interior consolidation and ground glass, and a dense wedge at the right lung's lateral wall
        [("cons", -1, (0.5, 0.5, 0.05), 28.0), ("cons", 1, (0.55, 0.5, 0.6), 18.0), ("ggo", 1, (0.3, 0.7, 0.4), 25.0)],
        # both lateral walls consolidated
        [("cons", -1, (0.5, 0.5, 0.0), 35.0), ("cons", 1, (0.5, 0.5, 1.0), 35.0)],
        # dependent (posterior) consolidation capping both lungs: outside the aerated lung's convex hull
        [("cons", -1, (0.5, 0.95, 0.5), 30.0), ("cons", 1, (0.5, 0.95, 0.5), 30.0)],
    ],
    ids=["wedge-and-interior", "lateral-walls", "posterior-caps"],
)
def test_consolidation_still_counts_as_lung(lesions):
    hu, lung, lesion, _, _ = make_chest(seed=2, lesions=lesions)
    # A plain threshold loses most of these lesions: the test is about the filling, not the threshold.
    assert np.count_nonzero((hu < -320) & (lesion > 0)) < 0.5 * np.count_nonzero(lesion)
    seg = segment_lungs(hu, SPACING)
    assert dice(seg, lung) > 0.97
    assert np.count_nonzero(seg[lesion > 0]) > 0.9 * np.count_nonzero(lesion)
    assert np.count_nonzero(seg[lung == 0]) < 0.05 * np.count_nonzero(lung)   # and the heart/wall stay out


def test_lung_slice_of_consolidation_is_bridged_from_neighbours(healthy):
    hu, lung, _, _, _ = healthy
    hu = hu.copy()
    k = SHAPE[0] // 2
    hu[k][lung[k] > 0] = 20          # one slice entirely consolidated, both lungs
    seg = segment_lungs(hu, SPACING)
    assert dice(seg[k], lung[k]) > 0.85


def test_no_lungs_gives_empty_mask_and_safe_stats():
    air = np.full((4, 64, 64), -1000, dtype=np.int16)
    tissue = np.full((4, 64, 64), 40, dtype=np.int16)
    for vol in (air, tissue):
        seg = segment_lungs(vol, SPACING)
        assert seg.shape == vol.shape and seg.max() == 0
        st = study_stats(vol, SPACING, seg, np.zeros_like(seg))
        assert st.lung_ml == 0 and st.involvement_pct is None and st.estimated_involvement_pct == 0.0
        assert st.lesion_ml == 0 and st.hist.sum() == 0 and st.lung_area_mm2.shape == (4,)


def test_one_slice_volume(healthy):
    hu, lung, _, _, _ = healthy
    k = SHAPE[0] // 2
    seg = segment_lungs(hu[k : k + 1], SPACING)
    assert seg.shape == (1,) + SHAPE[1:] and dice(seg[0], lung[k]) > 0.9


def test_full_size_grid_is_downsampled_and_upsampled():
    hu, lung, _, _, _ = make_chest(shape=(6, 512, 512), spacing=(8.0, 0.7, 0.7), seed=3, noise=10.0)
    seg = segment_lungs(hu, (8.0, 0.7, 0.7))
    assert seg.shape == hu.shape and dice(seg, lung) > 0.95


@pytest.mark.parametrize("hu, spacing, match", [(np.zeros((4, 4), np.int16), SPACING, r"\(Z, H, W\)"),
                                                (np.zeros((2, 4, 4), np.int16), (8.0, 0.0, 1.0), "spacing"),
                                                (np.zeros((2, 4, 4), np.int16), (8.0, float("nan"), 1.0), "spacing"),
                                                (np.zeros((0, 4, 4), np.int16), SPACING, "empty")])
def test_segment_rejects(hu, spacing, match):
    with pytest.raises(ValueError, match=match):
        segment_lungs(hu, spacing)


def test_study_stats_figures():
    hu = np.full((3, 10, 10), -850, dtype=np.int16)
    lung = np.zeros(hu.shape, np.uint8)
    lung[:, 2:8, 2:8] = 1                       # 3 x 36 voxels
    mask = np.zeros(hu.shape, np.uint8)
    mask[1, 2:5, 2:8] = 1                       # 18 voxels inside the lung
    mask[1, 0, 0] = 1                           # and one outside the segmentation
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
    no_mask = study_stats(hu, sp, lung)
    assert no_mask.lesion_ml is None and no_mask.involvement_pct is None and no_mask.lesion_area_mm2 is None
    assert no_mask.lung_ml == pytest.approx(108 * voxel_ml)


def test_histogram_clips_out_of_range_values():
    hu = np.array([[[-3000, 2000, -1024, 255]]], dtype=np.int16)
    st = study_stats(hu, (1, 1, 1), np.ones(hu.shape, np.uint8))
    assert st.hist.sum() == 4 and st.hist[0] == 2 and st.hist[-1] == 2


def test_study_stats_rejects_mismatched_shapes(healthy):
    hu, lung, _, _, _ = healthy
    with pytest.raises(ValueError, match="lung mask shape"):
        study_stats(hu, SPACING, lung[:2])
    with pytest.raises(ValueError, match="lesion mask shape"):
        study_stats(hu, SPACING, lung, lung[:, :3])


def test_estimate_tracks_truth():
    truths, ests = [], []
    for seed, lesions in enumerate([(), [("ggo", -1, (0.5, 0.7, 0.4), 25.0)],
                                    [("ggo", -1, (0.5, 0.7, 0.4), 40.0), ("cons", 1, (0.4, 0.6, 0.5), 30.0)],
                                    [("ggo", -1, (0.5, 0.6, 0.5), 60.0), ("ggo", 1, (0.5, 0.6, 0.5), 55.0)]]):
        hu, lung, lesion, _, _ = make_chest(seed=10 + seed, lesions=lesions)
        seg = segment_lungs(hu, SPACING)
        truths.append(100.0 * np.count_nonzero(lesion) / np.count_nonzero(lung))
        ests.append(estimate_involvement(hu, seg))
    assert ests[0] == 0.0                                  # healthy lungs: vessels are not lesions
    assert ests == sorted(ests) and truths == sorted(truths)
    assert np.mean(np.abs(np.array(ests) - np.array(truths))) < 6.0
    assert truths[-1] > 40                                 # the range covers more than CT-1


def test_estimate_without_lungs_and_shape_check():
    hu = np.full((2, 8, 8), -850, np.int16)
    assert estimate_involvement(hu, np.zeros(hu.shape, np.uint8)) == 0.0
    with pytest.raises(ValueError, match="equal"):
        estimate_involvement(hu, np.zeros((2, 8, 7), np.uint8))


def test_agreement():
    a = agreement([10.0, 30.0, 60.0, 0.0], [12.0, 20.0, 62.0, 0.0])
    assert a["n"] == 4
    assert a["mean_abs_diff"] == pytest.approx((2 + 10 + 2 + 0) / 4)
    assert a["pearson_r"] == pytest.approx(np.corrcoef([10, 30, 60, 0], [12, 20, 62, 0])[0, 1])
    assert a["class_agreement"] == pytest.approx(3 / 4)      # 30 (CT-2) vs 20 (CT-1) differ
    b = agreement([None, 5.0, float("nan"), 7.0], [1.0, None, 3.0, 9.0])
    assert b["n"] == 1 and b["pearson_r"] is None and b["mean_abs_diff"] == pytest.approx(2.0)
    assert agreement([], []) == {"n": 0, "mean_abs_diff": None, "pearson_r": None, "class_agreement": None}
    assert agreement([5.0, 5.0], [1.0, 2.0])["pearson_r"] is None                # no variance
    with pytest.raises(ValueError, match="differ in length"):
        agreement([1.0], [1.0, 2.0])


def test_on_generator_phantoms_across_classes():
    """The demo generator's phantoms (realistic anatomy: domes, heart, great vessels, gravity gradient)."""
    synthetic = pytest.importorskip("mosmed.synthetic")
    phantom = pytest.importorskip("mosmed.phantom")
    shape, sp = (20, 160, 160), (8.0, 1.9, 1.9)
    truths, measured, estimated = [], [], []
    for i, cat in enumerate(("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")):
        # build_phantom also hands out the lungs it drew; make_phantom (the contract) is the same drawing.
        drawn = phantom.build_phantom(shape, sp, cat, np.random.default_rng(40 + i))
        if cat == "CT-2":
            hu, lesion, truth = synthetic.make_phantom(shape, sp, cat, np.random.default_rng(40 + i))
            assert np.array_equal(hu, drawn.hu) and np.array_equal(lesion, drawn.lesion)
            assert truth == pytest.approx(drawn.involvement_pct)
        seg = segment_lungs(drawn.hu, sp)
        assert dice(seg, drawn.lung) > (0.94 if cat in ("CT-0", "CT-1", "CT-2") else 0.8), cat
        st = study_stats(drawn.hu, sp, seg, drawn.lesion)
        truths.append(drawn.involvement_pct)
        measured.append(st.involvement_pct)
        estimated.append(st.estimated_involvement_pct)
    assert estimated[0] < 3.0
    m = agreement(truths, measured)
    assert m["mean_abs_diff"] < 3.0 and m["class_agreement"] == 1.0
    e = agreement(truths, estimated)
    assert e["mean_abs_diff"] < 8.0 and e["pearson_r"] > 0.98 and e["class_agreement"] >= 0.6
