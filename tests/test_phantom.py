"""The phantom's anatomy and ground truth (mosmed.phantom): what issue 9 asks the generator to draw.

Demo-size studies of the real demo seed; each test checks one thing a reader of the image (or a lung
segmentation measured on it) relies on.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mosmed import phantom as P
from mosmed.synthetic import DEMO_SEED, plan_registry, study_phantom


def _study(cat: str):
    spec = next(s for s in plan_registry(20) if s.category == cat)
    ph, _, sp = study_phantom(DEMO_SEED, spec.study_id, cat)
    return ph, sp


@pytest.fixture(scope="module")
def normal():
    return _study("CT-0")


@pytest.fixture(scope="module")
def critical():
    return _study("CT-4")


def _bodies(sl: np.ndarray, px: float) -> list[tuple[slice, slice]]:
    """Bounding boxes of the tissue components of a slice taller than 50 mm (the table is a thin band)."""
    lab, _ = ndimage.label(ndimage.binary_fill_holes(sl > -400))
    boxes = ndimage.find_objects(lab)
    return [b for b in boxes if b is not None and (b[0].stop - b[0].start) * px > 50]


def test_truth_masks_are_consistent(critical):
    ph, _ = critical
    lung, les = ph.lung > 0, ph.lesion > 0
    assert (les <= lung).all()
    assert ph.involvement_pct == pytest.approx(100.0 * les.sum() / lung.sum())
    assert 75.0 < ph.involvement_pct <= 100.0  # CT-4 band


def test_effusion_in_ct4_only_outside_lung_and_lesion(critical, normal):
    ph, sp = critical
    assert normal[0].effusion is None
    eff = ph.effusion > 0
    assert eff.sum() * np.prod(sp) / 1000.0 > 20.0  # tens of mL at least
    assert not (eff & (ph.lung > 0)).any() and not (eff & (ph.lesion > 0)).any()
    core = np.stack([ndimage.binary_erosion(e) for e in eff])  # away from its partial-volume rim
    assert 0.0 <= np.median(ph.hu[core]) <= 30.0  # fluid
    # Dependent (posterior half of the image rows) and bilateral, more on the left (display columns > W/2).
    rows, cols = np.nonzero(eff)[1:]
    assert np.mean(rows) > ph.hu.shape[1] / 2
    w = ph.hu.shape[2]
    left, right = (cols >= w // 2).sum(), (cols < w // 2).sum()
    assert right > 0 and left > right


def test_gas_below_the_diaphragm_is_not_lung(normal):
    ph, sp = normal
    lung = ph.lung > 0
    per = lung.sum(axis=(1, 2))
    first = int(np.argmax(per > 0))
    assert first >= 2, "the scan starts below the lungs"
    gas = 0
    for k in range(first):
        inside = ndimage.binary_fill_holes(ph.hu[k] > -400)
        gas += int((inside & (ph.hu[k] < -850)).sum())
        assert not lung[k].any()
    assert gas * np.prod(sp) / 1000.0 > 5.0  # stomach and colon gas, mL


def test_table_under_the_patient_outside_the_body(normal):
    ph, _ = normal
    k = ph.hu.shape[0] // 2
    sl = ph.hu[k]
    body = ndimage.binary_fill_holes(sl > -400)
    lab, _ = ndimage.label(body)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    patient = lab == np.argmax(sizes)
    back = np.nonzero(patient.any(axis=1))[0].max()
    below = sl[back + 1 :]
    # Carbon shells (bright lines) under the back, across the middle of the image, none of it lung.
    assert (below[:, sl.shape[1] // 2 - 5 : sl.shape[1] // 2 + 5] > 120).any()
    assert not (ph.lung[k][back + 1 :] > 0).any()


def test_arms_above_the_head_not_beside_the_chest(normal):
    ph, sp = normal
    px = sp[1]
    lung_slices = np.nonzero(ph.lung.any(axis=(1, 2)))[0]
    mid = int(lung_slices[len(lung_slices) // 2])
    assert len(_bodies(ph.hu[mid], px)) == 1  # the chest alone
    top = ph.hu.shape[0] - 1
    assert len(_bodies(ph.hu[top], px)) == 3  # neck and two raised arms


def test_bone_cortex_and_marrow(normal):
    ph, _ = normal
    hu = ph.hu
    assert hu.max() > 900  # cortical bone
    mid = hu.shape[0] // 2
    w = hu.shape[2]
    spine = hu[mid, :, w // 2 - 6 : w // 2 + 6]
    # Cancellous bone (150-450 HU) inside the cortex, in the vertebra at the midline.
    assert ((spine > 150) & (spine < 450)).sum() > 10 and (spine > 600).sum() > 3


def test_lung_denser_toward_the_back(normal):
    ph, _ = normal
    lung = (ph.lung > 0) & (ph.hu < -500)
    rows = np.nonzero(lung)[1]
    lo, hi = np.percentile(rows, [25, 75])
    r = np.arange(ph.hu.shape[1])[None, :, None]
    front = np.median(ph.hu[lung & (r < lo)])
    back = np.median(ph.hu[lung & (r > hi)])
    assert back - front > 30.0, (front, back)


def test_vessels_reach_the_periphery(normal):
    ph, sp = normal
    lung = ph.lung > 0
    # Lung 4-15 mm inside its border (no partial volume of the wall): vessel voxels (> -600 HU) are there.
    dist = np.stack([ndimage.distance_transform_edt(s, sampling=sp[1:]) for s in lung])
    shell = lung & (dist > 4.0) & (dist < 15.0)
    assert shell.sum() > 1000
    assert (ph.hu[shell] > -600).mean() > 0.01


def test_lesions_peripheral_posterior_and_in_the_papers_density(normal):
    ph, sp = _study("CT-2")
    lung, les = ph.lung > 0, ph.lesion > 0
    assert -700.0 <= ph.hu[les].mean() <= -130.0
    dist = np.stack([ndimage.distance_transform_edt(s, sampling=sp[1:]) for s in lung])
    assert np.median(dist[les]) < np.median(dist[lung & ~les])  # peripheral
    assert np.nonzero(les)[1].mean() > np.nonzero(lung)[1].mean()  # posterior


def test_crazy_paving_changes_density_not_truth(monkeypatch):
    assert P.CRAZY_PAVING_SHARE["CT-1"] == 0.0 and min(P.CRAZY_PAVING_SHARE[c] for c in ("CT-2", "CT-3", "CT-4")) > 0
    args = ((24, 128, 128), (8.0, 2.8, 2.8), "CT-3")
    with_cp = P.build_phantom(*args, np.random.default_rng(9))
    monkeypatch.setattr(P, "CRAZY_PAVING_SHARE", {k: 0.0 for k in P.CRAZY_PAVING_SHARE})
    without = P.build_phantom(*args, np.random.default_rng(9))
    assert np.array_equal(with_cp.lesion, without.lesion) and np.array_equal(with_cp.lung, without.lung)
    les = with_cp.lesion > 0
    # Thickened septa: brighter lines over the ground glass.
    assert with_cp.hu[les].astype(float).mean() > without.hu[les].astype(float).mean() + 3.0


@pytest.mark.parametrize(
    "shape, spacing",
    [((1, 16, 16), (8.0, 20.0, 20.0)), ((3, 32, 40), (8.0, 9.0, 9.0)), ((8, 96, 96), (40.0, 3.5, 3.5))],
)
def test_small_and_odd_grids(shape, spacing):
    ph = P.build_phantom(shape, spacing, "CT-2", np.random.default_rng(1))
    assert ph.hu.shape == shape and ph.hu.dtype == np.int16
    assert (ph.lesion <= ph.lung).all()


def test_same_seed_same_arrays():
    a = P.build_phantom((12, 64, 64), (8.0, 5.5, 5.5), "CT-4", np.random.default_rng(4))
    b = P.build_phantom((12, 64, 64), (8.0, 5.5, 5.5), "CT-4", np.random.default_rng(4))
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.lesion, b.lesion)
    assert (a.effusion is None) == (b.effusion is None)


def test_a_given_lesion_mask_is_painted_and_the_rest_of_the_lung_stays_normal():
    """The replica path (real masks on synthetic anatomy): only the mask and a thin rim are lesion-dense."""
    from mosmed.phantom import build_phantom

    shape, spacing = (12, 96, 96), (8.0, 3.5, 3.5)
    plain = build_phantom(shape, spacing, "CT-0", np.random.default_rng(5))
    lung = plain.lung > 0
    z, y, x = (int(v) for v in np.argwhere(lung)[lung.sum() // 2])
    mask = np.zeros(shape, bool)
    mask[max(z - 1, 0) : z + 2, y - 3 : y + 4, x - 3 : x + 4] = True
    mask &= lung
    ph = build_phantom(shape, spacing, "CT-1", np.random.default_rng(5), lesion_mask=mask)
    assert np.array_equal(ph.lesion > 0, mask & (ph.lung > 0))
    rest = (ph.lung > 0) & ~ndimage.binary_dilation(mask, iterations=3)
    assert -900 < float(np.median(ph.hu[rest])) < -700  # normal lung, not ground glass
    assert -700 <= float(ph.hu[mask].mean()) <= -130  # the lesion range of the paper
