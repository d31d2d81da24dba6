"""Display orientation from the affine: files stored in LAS, RAS, LPS and with permuted axes all display alike."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from mosmed.orientation import (
    DISPLAY_AXCODES,
    affine_from_axcodes,
    display_ornt,
    display_shape,
    display_spacing,
    from_display,
    slice_positions_mm,
    source_axcodes,
    to_display,
)
from mosmed.volume import display_affine, read_volume

# World (RAS+ mm) voxel sizes along x (R-L), y (P-A), z (I-S): all different, so a wrong permutation shows.
WORLD_SPACING = {"x": 0.7, "y": 0.9, "z": 5.0}
WORLD_COUNT = {"x": 20, "y": 16, "z": 6}
AXIS_OF = {"L": "x", "R": "x", "A": "y", "P": "y", "S": "z", "I": "z"}

ORIENTATIONS = [("L", "A", "S"), ("R", "A", "S"), ("L", "P", "S"), ("S", "L", "A"), ("P", "S", "R"), ("A", "I", "L")]


def _write_marker_study(path, axcodes):
    """A study whose voxels are bright at patient left-anterior-superior and mid-grey at right-posterior-inferior."""
    axes = [AXIS_OF[c] for c in axcodes]
    shape = tuple(WORLD_COUNT[a] for a in axes)
    spacing = tuple(WORLD_SPACING[a] for a in axes)
    aff = affine_from_axcodes(axcodes, spacing)
    # centre the grid on the world origin so "left" means world x < 0 etc.
    centre = aff @ np.array([(s - 1) / 2 for s in shape] + [1.0])
    aff[:3, 3] -= centre[:3]
    ijk = np.indices(shape).reshape(3, -1)
    world = (aff @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3].reshape((3, *shape))
    x, y, z = world
    arr = np.full(shape, -1000, np.int16)
    # RAS+: left is -x, anterior +y, superior +z
    arr[(x < -2) & (y > 2) & (z > 2)] = 1000
    arr[(x > 2) & (y < -2) & (z < -2)] = 300
    nib.save(nib.Nifti1Image(arr, aff), str(path))
    return path


@pytest.mark.parametrize("axcodes", ORIENTATIONS, ids=["".join(c) for c in ORIENTATIONS])
def test_marker_lands_at_the_same_display_place(tmp_path, axcodes):
    path = _write_marker_study(tmp_path / "m.nii.gz", axcodes)
    vol = read_volume(path, 1)
    assert vol.source_axcodes == axcodes
    Z, H, W = vol.data.shape
    assert (Z, H, W) == (WORLD_COUNT["z"], WORLD_COUNT["y"], WORLD_COUNT["x"])
    assert vol.spacing == pytest.approx((WORLD_SPACING["z"], WORLD_SPACING["y"], WORLD_SPACING["x"]))
    bright = np.argwhere(vol.data == 1000)
    grey = np.argwhere(vol.data == 300)
    assert len(bright) and len(grey)
    # left-anterior-superior: high slice index (head), top rows (anterior), right columns (patient left)
    assert bright[:, 0].min() >= Z / 2 and bright[:, 1].max() < H / 2 and bright[:, 2].min() >= W / 2
    # right-posterior-inferior: low slice index, bottom rows, left columns (patient right, viewer's left)
    assert grey[:, 0].max() < Z / 2 and grey[:, 1].min() >= H / 2 and grey[:, 2].max() < W / 2
    # world z increases with the display slice index
    assert np.all(np.diff(vol.slice_z_mm) == pytest.approx(WORLD_SPACING["z"]))
    assert vol.data.flags["C_CONTIGUOUS"]


def test_every_one_of_the_48_orientations_reaches_display_axcodes():
    rng = np.random.default_rng(0)
    for perm in itertools.permutations("xyz"):
        for signs in itertools.product((1, -1), repeat=3):
            codes = tuple({"x": "RL", "y": "AP", "z": "SI"}[a][s < 0] for a, s in zip(perm, signs))
            aff = affine_from_axcodes(codes, (1.0, 2.0, 3.0))
            arr = rng.integers(0, 100, size=(3, 4, 5)).astype(np.int16)
            disp = to_display(arr, aff)
            d_aff = display_affine(aff, arr.shape)
            assert nib.aff2axcodes(d_aff) == DISPLAY_AXCODES
            assert np.array_equal(from_display(disp, aff), arr)
            assert disp.shape == display_shape(arr.shape, aff)


def test_mosmed_las_transform_flips_rows_only():
    aff = affine_from_axcodes("LAS", (0.782, 0.782, 8.0))
    t = display_ornt(aff)
    # x (L) -> columns kept; y (A) -> rows flipped; z (S) -> slices kept
    assert t.tolist() == [[2, 1], [1, -1], [0, 1]]
    assert source_axcodes(aff) == ("L", "A", "S")
    assert display_spacing((0.782, 0.782, 8.0), aff) == pytest.approx((8.0, 0.782, 0.782))


def test_slice_positions_follow_the_affine():
    aff = affine_from_axcodes("LAI", (0.8, 0.8, 8.0), origin=(0, 0, 100.0))
    z = slice_positions_mm(aff, (4, 4, 5))
    # stored inferior-going slices 100, 92, ... 68 -> displayed bottom-up
    assert z.tolist() == pytest.approx([68.0, 76.0, 84.0, 92.0, 100.0])


def test_degenerate_and_malformed_affines_raise():
    bad = np.eye(4)
    bad[:, 1] = 0
    with pytest.raises(ValueError, match="degenerate"):
        display_ornt(bad)
    with pytest.raises(ValueError, match="4x4"):
        display_ornt(np.eye(3))
    nan = np.eye(4)
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        source_axcodes(nan)
    with pytest.raises(ValueError, match="3D"):
        to_display(np.zeros((2, 2)), np.eye(4))
