"""The two real CT scans of ../shared/realct: other orientations (LPS, RAS), int32 data, 1.5 and 3 mm isotropic
voxels, a cropped field of view, an abdomen with lung bases. They must open and measure right, alone and laid
out as a dataset (copies in tmp_path, never in the repo)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from mosmed import render
from mosmed.measurements import study_stats
from mosmed.quality import assess, parse_qc
from mosmed.segmentation import segment
from mosmed.volume import read_volume

CHEST, ABDOMEN = "chest_crop_lps_1p5mm.nii.gz", "abdomen_int32_3mm.nii.gz"


@pytest.fixture(scope="module")
def measured(realct):
    out = {}
    for name in (CHEST, ABDOMEN):
        vol = read_volume(realct / name, study_id=1)
        seg = segment(vol.data, vol.spacing)
        st = study_stats(vol.data, vol.spacing, seg.lung)
        out[name] = (vol, seg, st, assess(vol, seg, st))
    return out


@pytest.mark.parametrize("name, codes, spacing", [(CHEST, ("L", "P", "S"), 1.5), (ABDOMEN, ("R", "A", "S"), 3.0)])
def test_orientation_spacing_and_slice_positions(realct, measured, name, codes, spacing):
    vol = measured[name][0]
    img = nib.load(str(realct / name))
    assert tuple(vol.source_axcodes) == codes == tuple(nib.aff2axcodes(img.affine))
    assert vol.spacing == pytest.approx((spacing,) * 3)
    assert vol.data.dtype == np.int16 and vol.shape[0] == 112
    assert sorted(vol.shape) == sorted(img.shape)
    # Slice positions in mm: from the affine, one voxel apart, increasing toward the head.
    z = np.asarray(vol.slice_z_mm)
    assert np.allclose(np.diff(z), spacing, atol=1e-3)
    assert z[0] == pytest.approx(float((img.affine @ [0, 0, 0, 1])[2]), abs=1e-3)
    # Isotropic voxels: coronal and sagittal views keep their aspect (no stretch).
    assert render.plane_aspect(vol.spacing, "coronal") == pytest.approx(1.0)
    assert render.plane_aspect(vol.spacing, "sagittal") == pytest.approx(1.0)
    assert not any("clipped" in w for w in vol.warnings)  # int32 values fit: nothing lost
    raw = np.asarray(img.dataobj)
    assert int(vol.data.min()) == int(raw.min()) and int(vol.data.max()) == int(raw.max())


def test_display_orientation_is_radiological(measured):
    # Anterior up: the spine (bone behind the heart) lies in the lower half of the chest crop's mid slice.
    vol = measured[CHEST][0]
    k = vol.shape[0] // 2
    rows = np.nonzero(vol.data[k] > 300)[0]
    assert rows.mean() > vol.shape[1] / 2
    # Patient's left on the viewer's right: the stomach's gas under the left dome, in the abdomen's top slices.
    vol, seg = measured[ABDOMEN][:2]
    top = vol.data[-12:]
    gas = (top < -950) & (seg.lung[-12:] == 0)
    cols = np.nonzero(gas[:, 20:-20, 20:-20])[2] + 20  # inside the body, away from the image edge
    assert cols.mean() > vol.shape[2] / 2


def test_chest_crop_lungs_touching_the_border_are_found(measured):
    vol, seg, st, flags = measured[CHEST]
    assert st.lung_ml > 1500  # well over 1 L (was 9.7 mL)
    assert seg.touches_border and "border" in [f.code for f in flags]
    lung = seg.lung > 0
    w = vol.shape[2]
    left_half, right_half = lung[:, :, : w // 2].sum(), lung[:, :, w // 2 :].sum()
    assert min(left_half, right_half) > 0.3 * max(left_half, right_half)  # both lungs
    # The trachea and main bronchi are not lung: pure gas inside the lung mask is rare.
    assert np.count_nonzero(vol.data[lung] < -950) < 0.02 * lung.sum()
    assert st.estimated_involvement_pct < 10.0  # normal lung (no lesion on review)


def test_abdomen_lungs_only_in_the_top_slices(measured):
    vol, seg, st, flags = measured[ABDOMEN]
    assert 20 < st.lung_ml < 400  # the lung bases (was 800 mL of bowel gas)
    slices = np.flatnonzero(st.lung_area_mm2 > 0)
    assert slices.min() >= 0.8 * vol.shape[0]  # only near the top (toward the head)
    assert seg.excluded_gas_ml > 100  # stomach and bowel gas seen and left out
    codes = [f.code for f in flags]
    assert "not_chest" in codes and "lung_volume" in codes
    assert st.estimated_involvement_pct <= 25.0  # CT-1 range at most


def test_both_as_a_dataset(realct, tmp_path):
    from mosmed.dataset import Dataset

    root = tmp_path / "realct-dataset"
    (root / "studies" / "CT-0").mkdir(parents=True)
    rows = ["study_id,category,study_file,mask_file"]
    for sid, name in ((1, CHEST), (2, ABDOMEN)):
        rel = f"studies/CT-0/study_{sid:04d}.nii.gz"
        shutil.copyfile(realct / name, root / rel)
        rows.append(f"{sid},CT-0,/{rel},")
    (root / "dataset_registry.csv").write_text("\n".join(rows) + "\n")
    ds = Dataset(root, tmp_path / "cache")
    rep = ds.build_cache(workers=1)
    assert rep.n_errors == 0
    s = ds.summary().set_index("study_id")
    assert (s["status"] == "ok").all()
    chest, abdomen = s.loc[1], s.loc[2]
    assert chest["lung_ml"] > 1500 and "border" in parse_qc(chest["qc"])
    assert abdomen["lung_ml"] < 400 and {"not_chest", "lung_volume"} <= set(parse_qc(abdomen["qc"]))
    assert chest["n_slices"] == abdomen["n_slices"] == 112
    assert chest["spacing_z"] == pytest.approx(1.5) and abdomen["spacing_z"] == pytest.approx(3.0)
    # Two CT-0 studies and no mask: too few to calibrate; the estimate says so.
    assert not chest["estimate_calibrated"] and "uncalibrated" in chest["estimate_basis"]
    assert chest["estimated_involvement_pct"] < 10.0 and abdomen["estimated_involvement_pct"] <= 25.0
    study = ds.open_study(1)
    assert study.volume.shape == (112, 102, 122) and study.spacing == pytest.approx((1.5, 1.5, 1.5))
    assert np.allclose(np.diff(study.slice_z_mm), 1.5, atol=1e-3)
    assert study.lung.shape == study.volume.shape and study.lung.any()
    png = render.render_png(study.volume, study.spacing, "coronal", 60, render.PRESETS["lung"])
    assert png.startswith(b"\x89PNG")
