"""NIfTI volume and mask loading."""

from __future__ import annotations

import gzip
import pickle

import badinputs as B
import nibabel as nib
import numpy as np
import pytest

from mosmed.errors import MaskMismatchError, MosmedError, VolumeError
from mosmed.orientation import from_display
from mosmed.volume import MAX_VOXELS, check_header, read_mask, read_volume, volume_grid


def test_good_study_is_int16_hu_in_display_orientation(tmp_path):
    path = B.write_good_study(tmp_path / "s.nii.gz", seed=3)
    vol = read_volume(path, 3)
    expected = B.phantom_display(seed=3)
    assert vol.data.dtype == np.int16 and vol.data.flags["C_CONTIGUOUS"]
    assert np.array_equal(vol.data, expected)
    assert vol.shape == (4, 32, 32) and vol.source_shape == B.SHAPE_XYZ
    assert vol.spacing == pytest.approx((8.0, 0.8, 0.8))
    assert vol.source_axcodes == ("L", "A", "S")
    assert vol.slice_z_mm.tolist() == pytest.approx([-100.0, -92.0, -84.0, -76.0])
    assert vol.voxel_ml == pytest.approx(8 * 0.64 / 1000)
    assert vol.warnings == []


def test_header_check_does_not_read_data(tmp_path):
    path = B.write_good_study(tmp_path / "s.nii.gz")
    img = check_header(path, 1)
    assert img.shape == B.SHAPE_XYZ
    assert not img.in_memory  # still a lazy proxy


def test_scaling_is_applied(tmp_path):
    path = B.write_volume_case("scaled_uint16", tmp_path)
    vol = read_volume(path)
    assert vol.data.min() < -900 and vol.data.dtype == np.int16
    raw = np.asanyarray(nib.load(str(path)).dataobj.get_unscaled())
    assert raw.min() >= 0  # stored unsigned: only the intercept makes it HU


def test_float_is_rounded_and_nan_inf_repaired(tmp_path):
    disp = B.phantom_display(seed=1).astype(np.float32) + 0.4
    disp[0, 0, 0] = np.nan
    disp[0, 0, 1] = np.inf
    disp[0, 0, 2] = -np.inf
    disp[0, 0, 3] = 1e9
    B.write_nifti(tmp_path / "f.nii.gz", from_display(disp, B.las_affine()))
    vol = read_volume(tmp_path / "f.nii.gz", 5)
    assert vol.data[0, 0, 0] == -1024
    assert vol.data[0, 0, 1] == 32767 and vol.data[0, 0, 2] == -32768 and vol.data[0, 0, 3] == 32767
    assert np.array_equal(vol.data[1:], np.rint(disp[1:]).astype(np.int16))
    assert "1 NaN voxels were set to -1024 HU" in vol.warnings
    assert "2 infinite voxels were clipped to the int16 range" in vol.warnings
    assert any("outside the int16 range" in w for w in vol.warnings)


def test_uncompressed_nii_and_singleton_4d(tmp_path):
    path = B.write_good_study(tmp_path / "s.nii", seed=2)
    assert np.array_equal(read_volume(path).data, B.phantom_display(seed=2))
    p4 = B.write_volume_case("singleton_4d", tmp_path, "four.nii.gz")
    assert read_volume(p4).shape == (4, 32, 32)


def test_missing_and_directory(tmp_path):
    with pytest.raises(VolumeError, match=r"^study 9: study file not found: x.nii.gz$"):
        read_volume(tmp_path / "x.nii.gz", 9)
    (tmp_path / "d.nii.gz").mkdir()
    with pytest.raises(VolumeError, match="is not a regular file"):
        read_volume(tmp_path / "d.nii.gz", 9)


def test_error_without_study_id_is_just_the_reason(tmp_path):
    p = B.write_volume_case("zero_byte", tmp_path)
    with pytest.raises(VolumeError, match=r"^study file study_0001.nii.gz is empty \(0 bytes\)$") as info:
        read_volume(p)
    assert info.value.study_id is None and info.value.path == str(p)


def test_errors_survive_pickling_for_worker_processes():
    err = MaskMismatchError("mask grid (1, 2, 3) differs", study_id=4, path="/x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is MaskMismatchError and str(back) == str(err) == "study 4: mask grid (1, 2, 3) differs"
    assert back.path == "/x" and isinstance(back, VolumeError) and isinstance(back, MosmedError)


def test_voxel_limit_is_checked_on_the_header(tmp_path):
    assert MAX_VOXELS == 2048**3 // 8
    p = B.write_volume_case("enormous_dims", tmp_path)
    with pytest.raises(VolumeError, match="30000, 30000, 30000"):
        check_header(p, 2)


def test_damaged_deflate_stream_is_a_clear_error(tmp_path):
    p = B.write_good_study(tmp_path / "s.nii.gz")
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = b"\xff" * 64  # a damaged block in the middle of the compressed data
    p.write_bytes(bytes(data))
    with pytest.raises(VolumeError, match="truncated or corrupt gzip"):
        read_volume(p, 1)


def test_zero_pixdim_falls_back_to_affine_spacing(tmp_path):
    p = B.write_good_study(tmp_path / "s.nii.gz")
    raw = bytearray(gzip.decompress(p.read_bytes()))
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])))
    hdr["pixdim"][1:4] = 0
    raw[:348] = hdr.binaryblock
    p.write_bytes(gzip.compress(bytes(raw)))
    vol = read_volume(p)
    assert vol.spacing == pytest.approx((8.0, 0.8, 0.8))
    assert any("differs from the affine's" in w for w in vol.warnings)


# ---------------------------------------------------------------------------------------------- masks


def test_mask_in_display_orientation(tmp_path):
    s, m = B.write_mask_case("mask_0_255", tmp_path, 12)
    vol = read_volume(s, 12)
    mask, warnings = read_mask(m, vol, 12)
    good = B._lesion_display()
    assert mask.dtype == np.uint8 and np.array_equal(mask, good)
    assert warnings == ["mask has values other than 0 and 1 (255); voxels > 0 are taken as lesion"]


def test_mask_mismatch_names_both_grids(tmp_path):
    s, m = B.write_mask_case("mask_other_shape", tmp_path, 255)
    with pytest.raises(
        MaskMismatchError, match=r"^study 255: mask grid \(32, 32, 5\) differs from study grid \(32, 32, 4\)$"
    ):
        read_mask(m, read_volume(s), 255)
    s, m = B.write_mask_case("mask_other_affine", tmp_path / "b", 256)
    with pytest.raises(
        MaskMismatchError,
        match=r"by up to 8 mm \(mask .*origin \(12.4, -12.4, -92.0\); study .*"
        r"origin \(12.4, -12.4, -100.0\)\)",
    ):
        read_mask(m, read_volume(s), 256)


def test_mask_affine_tolerance(tmp_path):
    s = B.write_good_study(tmp_path / "s.nii.gz")
    m = B.write_good_mask(tmp_path / "m.nii.gz", affine=B.las_affine(origin=(12.4 + 5e-4, -12.4, -100.0)))
    mask, _ = read_mask(m, read_volume(s))
    assert mask.sum() > 0
    with pytest.raises(MaskMismatchError):
        read_mask(m, read_volume(s), atol=1e-5)


def test_float_mask_with_nan_and_negative(tmp_path):
    s = B.write_good_study(tmp_path / "s.nii.gz")
    disp = B._lesion_display().astype(np.float32) * 0.7
    disp[0, 0, 0] = np.nan
    disp[0, 0, 1] = -1
    B.write_nifti(tmp_path / "m.nii.gz", from_display(disp, B.las_affine()))
    mask, warnings = read_mask(tmp_path / "m.nii.gz", read_volume(s))
    assert np.array_equal(mask, (B._lesion_display() > 0).astype(np.uint8))
    assert "1 NaN mask voxels were taken as background" in warnings
    assert any("(-1, 0.7)" in w for w in warnings)


def test_grid_only_volume_allocates_nothing(tmp_path):
    s = B.write_good_study(tmp_path / "s.nii.gz")
    ref = volume_grid(s, 1)
    assert ref.shape == (4, 32, 32) and ref.data.strides == (0, 0, 0)
    assert not ref.data.flags["WRITEABLE"]
    m = B.write_good_mask(tmp_path / "m.nii.gz")
    mask, _ = read_mask(m, ref, 1)
    assert mask.sum() == B._lesion_display().sum()


def test_mask_errors_say_mask(tmp_path):
    s = B.write_good_study(tmp_path / "s.nii.gz")
    (tmp_path / "m.nii.gz").write_bytes(b"")
    with pytest.raises(VolumeError, match=r"^study 3: mask file m.nii.gz is empty"):
        read_mask(tmp_path / "m.nii.gz", read_volume(s), 3)
