"""From a NIfTI affine to the one display orientation of the app.

A display volume has shape ``(Z, H, W)`` with voxel axcodes ``('S', 'P', 'L')``: axis 0 runs toward the head,
axis 1 (rows) toward posterior (anterior at the top), axis 2 (columns) toward the patient's left, so the
patient's right is on the viewer's left (radiological convention). The mapping is always derived from the
affine with nibabel's orientation tools, never a fixed rotation, so LAS (MosMedData), RAS, LPS or permuted
files all end up the same way on screen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nibabel import orientations as nio

__all__ = [
    "DISPLAY_AXCODES",
    "display_ornt",
    "to_display",
    "from_display",
    "display_spacing",
    "slice_positions_mm",
    "source_axcodes",
    "source_ornt",
    "display_shape",
    "affine_from_axcodes",
]

DISPLAY_AXCODES: tuple[str, str, str] = ("S", "P", "L")
_DISPLAY_ORNT = nio.axcodes2ornt(DISPLAY_AXCODES)


def _affine3(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("affine holds NaN or infinite values")
    return a


def source_ornt(affine: np.ndarray) -> np.ndarray:
    """Orientation (nibabel ``ornt``) of the stored voxel axes; ``ValueError`` when the affine is degenerate."""
    ornt = nio.io_orientation(_affine3(affine))
    if ornt.shape != (3, 2) or np.isnan(ornt).any():
        # A zero column (or rank-deficient matrix) leaves an axis without a direction: we cannot tell left from
        # right, and guessing would show a mirror image without saying so.
        raise ValueError("affine is degenerate: the voxel axes do not span 3D space, so the orientation is unknown")
    return ornt


def source_axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """Axis codes of the stored voxel axes, e.g. ``('L', 'A', 'S')`` for MosMedData."""
    return tuple(nio.ornt2axcodes(source_ornt(affine)))  # type: ignore[return-value]


def display_ornt(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform from the stored voxel axes to the display axes ``('S', 'P', 'L')``.

    Row ``i`` of the result says where source axis ``i`` goes (column 0: display axis, column 1: 1 kept,
    -1 flipped), as used by ``nibabel.orientations.apply_orientation``.
    """
    return nio.ornt_transform(source_ornt(affine), _DISPLAY_ORNT)


def to_display(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorient a 3D array stored as described by ``affine`` to display orientation (C-contiguous copy/view)."""
    arr = np.asanyarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3D array, got {arr.ndim}D with shape {arr.shape}")
    out = nio.apply_orientation(arr, display_ornt(affine))
    return np.ascontiguousarray(out)


def from_display(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_display`: the array in the stored voxel order that ``affine`` describes.

    Used to write files (e.g. synthetic studies in LAS like MosMedData) from arrays built in display orientation.
    """
    arr = np.asanyarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"expected a 3D array, got {arr.ndim}D with shape {arr.shape}")
    back = nio.ornt_transform(_DISPLAY_ORNT, source_ornt(affine))
    return np.ascontiguousarray(nio.apply_orientation(arr, back))


def display_shape(shape: Sequence[int], affine: np.ndarray) -> tuple[int, int, int]:
    """The display shape ``(Z, H, W)`` of a stored 3D shape."""
    t = display_ornt(affine)
    out = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(t):
        out[int(dst_axis)] = int(shape[src_axis])
    return tuple(out)  # type: ignore[return-value]


def display_spacing(zooms: Sequence[float], affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing ``(dz, dy, dx)`` in mm, permuted like the display axes.

    ``zooms`` are the stored axes' voxel sizes (``header.get_zooms()[:3]``).
    """
    if len(zooms) < 3:
        raise ValueError(f"need three voxel sizes, got {tuple(zooms)}")
    t = display_ornt(affine)
    out = [0.0, 0.0, 0.0]
    for src_axis, (dst_axis, _flip) in enumerate(t):
        out[int(dst_axis)] = abs(float(zooms[src_axis]))
    return tuple(out)  # type: ignore[return-value]


def slice_positions_mm(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World z (mm, RAS+ "superior") of the centre of each display axial slice, length ``Z``.

    Parameters
    ----------
    affine : array (4, 4)
        The source (file) affine.
    shape : sequence of int
        The stored (file) 3D shape, i.e. the array shape *before* :func:`to_display`.

    Returns
    -------
    numpy.ndarray of float
        ``z[k]`` for display slice ``k``; increasing with ``k`` for any non-oblique file.
    """
    a = _affine3(affine)
    shape = tuple(int(s) for s in shape[:3])
    t = display_ornt(a)
    src_axis = int(np.flatnonzero(t[:, 0] == 0)[0])
    flip = t[src_axis, 1] < 0
    n = shape[src_axis]
    # Slice centre: the other two axes at their middle voxel, so an oblique gantry tilt gives the centre's z.
    centre = np.array([(s - 1) / 2.0 for s in shape] + [1.0])
    idx = np.arange(n, dtype=float)
    if flip:
        idx = (n - 1) - idx
    vox = np.repeat(centre[None, :], n, axis=0)
    vox[:, src_axis] = idx
    world = vox @ a.T
    return world[:, 2].copy()


def affine_from_axcodes(
    axcodes: Sequence[str], spacing_xyz: Sequence[float] = (1.0, 1.0, 1.0), origin: Sequence[float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """A simple axis-aligned affine whose voxel axes have the given codes (e.g. ``('L','A','S')``).

    ``spacing_xyz[i]`` is the voxel size of stored axis ``i``. Handy for tests and the synthetic generator.
    """
    ornt = nio.axcodes2ornt(tuple(axcodes))
    a = np.zeros((4, 4))
    for vox_axis, (world_axis, sign) in enumerate(ornt):
        a[int(world_axis), vox_axis] = float(sign) * abs(float(spacing_xyz[vox_axis]))
    a[:3, 3] = np.asarray(origin, dtype=float)
    a[3, 3] = 1.0
    return a
