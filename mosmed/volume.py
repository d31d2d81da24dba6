"""NIfTI study and mask loading: cheap header checks first, then data, always in display orientation.

Every failure is a :class:`~mosmed.errors.VolumeError` whose text names the study and the exact problem
("study 12: study file is not gzip-compressed although its name ends in .nii.gz"). Header checks run before a
single voxel is read, so a file claiming absurd dimensions is rejected without allocating them.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from .errors import MaskMismatchError, VolumeError

try:  # realct: ISA-L's inflate reads a .nii.gz ~2.5x faster than zlib (same format, same CRC and length check)
    from isal import igzip as _gzip_read
    from isal.isal_zlib import error as _InflateError
except ImportError:  # pragma: no cover - the stdlib is the fallback
    _gzip_read, _InflateError = gzip, zlib.error
from .orientation import (
    display_ornt,
    display_shape,
    display_spacing,
    slice_positions_mm,
    source_axcodes,
    to_display,
)

__all__ = [
    "MAX_VOXELS",
    "AIR_HU",
    "Volume",
    "check_header",
    "read_volume",
    "read_mask",
    "volume_grid",
    "display_affine",
]

MAX_VOXELS = 2048 * 2048 * 2048 // 8  # header dims beyond this are rejected before allocation
AIR_HU = -1024  # what NaN voxels become (air, the value outside the scan circle in most CT files)
# Deflate cannot shrink data by more than about 1032:1; a header asking for more bytes than that from the file
# on disk is lying (or the file is cut), and reading it would allocate memory out of proportion to the file.
_MAX_GZIP_RATIO = 1100
_GZIP_MAGIC = b"\x1f\x8b"
_INT16 = np.iinfo(np.int16)


@dataclass
class Volume:
    """A study volume in display orientation.

    Attributes
    ----------
    data : numpy.ndarray
        ``(Z, H, W)`` int16 Hounsfield units, voxel axcodes ``('S', 'P', 'L')``, C-contiguous.
    spacing : tuple of float
        ``(dz, dy, dx)`` in mm.
    affine : numpy.ndarray
        The source (file) affine, 4x4.
    source_shape : tuple of int
        The stored 3D shape (a singleton 4th axis dropped).
    source_axcodes : tuple of str
        The stored voxel axis codes, e.g. ``('L', 'A', 'S')``.
    slice_z_mm : numpy.ndarray
        World z (mm) of each display slice, length ``Z``.
    warnings : list of str
        Things that were repaired or look odd (NaN replaced, values clipped, a single slice ...).
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_shape: tuple[int, ...]
    source_axcodes: tuple[str, str, str]
    slice_z_mm: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Display shape ``(Z, H, W)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        dz, dy, dx = self.spacing
        return dz * dy * dx / 1000.0


# ----------------------------------------------------------------------------------------- header checks


def _fail(what: str, reason: str, study_id: int | None, path: Path) -> VolumeError:
    return VolumeError(f"{what} file {reason}", study_id=study_id, path=path)


def _affine_text(affine: np.ndarray) -> str:
    a = np.asarray(affine, dtype=float)
    sp = tuple(round(float(v), 3) for v in np.linalg.norm(a[:3, :3], axis=0))
    origin = tuple(round(float(v), 2) for v in a[:3, 3])
    try:
        codes = "".join(source_axcodes(a))
    except ValueError:
        codes = "degenerate"
    return f"{codes} spacing {sp} origin {origin}"


def _shape3(shape: Sequence[int], what: str, study_id: int | None, path: Path) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise _fail(
            what,
            f"{path.name} holds a {len(shape)}D image (shape {shape}); a CT study needs a 3D volume",
            study_id,
            path,
        )
    if any(s <= 0 for s in shape):
        raise _fail(what, f"{path.name} has an empty dimension in its header (shape {shape})", study_id, path)
    extra = shape[3:]
    if any(s != 1 for s in extra):
        n = int(np.prod(extra))
        raise _fail(
            what,
            f"{path.name} holds a {len(shape)}D image with {n} volumes (shape {shape}); expected one 3D volume",
            study_id,
            path,
        )
    return shape[:3]  # type: ignore[return-value]


def check_header(path: Path, study_id: int | None = None, *, what: str = "study") -> nib.Nifti1Image:
    """Open a NIfTI file lazily and check everything that can be checked without reading the voxels.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz`` file.
    study_id : int, optional
        Named in the error text.
    what : str
        ``"study"`` or ``"mask"``: which file of the study this is, for the error text.

    Returns
    -------
    nibabel.Nifti1Image
        The lazily loaded image (data not read).

    Raises
    ------
    VolumeError
        Missing, not a file, empty, not gzip (for ``.nii.gz``), not NIfTI, 2D, true 4D, an empty or
        enormous dimension, more data than the file can hold, non-numeric voxel type, degenerate affine.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(what, f"not found: {path.name}", study_id, path)
    if not path.is_file():
        raise _fail(what, f"{path.name} is not a regular file", study_id, path)
    size = path.stat().st_size
    if size == 0:
        raise _fail(what, f"{path.name} is empty (0 bytes)", study_id, path)
    is_gz = path.name.lower().endswith(".gz")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise _fail(what, f"{path.name} cannot be opened ({exc.strerror})", study_id, path) from None
    if is_gz and head[:2] != _GZIP_MAGIC:
        hint = ""
        if head[:4] in ((348).to_bytes(4, "little"), (348).to_bytes(4, "big")):
            hint = " (it looks like an uncompressed NIfTI: name it .nii)"
        raise _fail(what, f"{path.name} is not gzip-compressed although its name ends in .gz{hint}", study_id, path)
    if is_gz:
        # Read the header bytes through gzip ourselves: a stream cut inside the header, or bytes that are not
        # NIfTI, get a precise message instead of nibabel's generic one.
        try:
            with gzip.open(path, "rb") as gz:
                hdr_bytes = gz.read(352)
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            raise _fail(what, f"{path.name} is a truncated or corrupt gzip stream ({exc})", study_id, path) from None
    else:
        with open(path, "rb") as fh:
            hdr_bytes = fh.read(352)
    if len(hdr_bytes) < 348:
        raise _fail(
            what, f"{path.name} is too short to be NIfTI ({len(hdr_bytes)} bytes of header, need 348)", study_id, path
        )
    sizeof = int.from_bytes(hdr_bytes[:4], "little")
    sizeof_be = int.from_bytes(hdr_bytes[:4], "big")
    if sizeof not in (348, 540) and sizeof_be not in (348, 540):
        raise _fail(
            what, f"{path.name} is not a NIfTI image (its header does not start with size 348 or 540)", study_id, path
        )

    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a damaged header
        raise _fail(
            what, f"{path.name} is not a readable NIfTI image ({type(exc).__name__}: {exc})", study_id, path
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _fail(what, f"{path.name} is a {type(img).__name__}, not a NIfTI image", study_id, path)

    hdr = img.header
    shape = _shape3(img.shape, what, study_id, path)
    n_vox = int(np.prod([int(s) for s in img.shape], dtype=object))
    if n_vox > MAX_VOXELS:
        raise _fail(
            what,
            f"{path.name} header claims dimensions {tuple(int(s) for s in img.shape)} "
            f"({n_vox:,} voxels), more than the {MAX_VOXELS:,} a real CT study can have",
            study_id,
            path,
        )

    try:
        dtype = hdr.get_data_dtype()
    except Exception as exc:
        raise _fail(what, f"{path.name} has an unknown voxel data type ({exc})", study_id, path) from None
    if dtype.fields is not None or dtype.kind not in "iuf":
        kind = {"c": "complex", "V": "RGB/structured", "b": "boolean", "O": "object", "S": "text", "U": "text"}.get(
            dtype.kind, dtype.kind
        )
        raise _fail(
            what,
            f"{path.name} has voxel data type {dtype} ({kind}), which is not a plain number; "
            "expected integer or float intensities",
            study_id,
            path,
        )

    need = int(float(hdr["vox_offset"]) or 352) + n_vox * dtype.itemsize
    if is_gz and need > size * _MAX_GZIP_RATIO:
        raise _fail(
            what,
            f"{path.name} header claims {tuple(int(s) for s in img.shape)} {dtype} voxels "
            f"({need / 1e6:,.1f} MB) but a {size:,}-byte gzip file cannot hold that much; "
            "the header is wrong or the file is cut",
            study_id,
            path,
        )
    if not is_gz and need > size:
        raise _fail(
            what, f"{path.name} is truncated: the header needs {need:,} bytes, the file has {size:,}", study_id, path
        )

    try:
        display_ornt(img.affine)
    except ValueError as exc:
        raise _fail(what, f"{path.name} has an unusable affine: {exc}", study_id, path) from None
    del shape
    return img


# ------------------------------------------------------------------------------------------------ reading


def _spacing(img: nib.Nifti1Image) -> tuple[tuple[float, float, float], list[str]]:
    """Display spacing from the affine (the geometry every position is computed from), plus a warning when
    the header's voxel sizes (pixdim) disagree with it."""
    aff_zooms = [float(v) for v in np.linalg.norm(np.asarray(img.affine, dtype=float)[:3, :3], axis=0)]
    warnings: list[str] = []
    try:
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
    except Exception:
        zooms = []
    if len(zooms) == 3 and not np.allclose(zooms, aff_zooms, rtol=0.01, atol=1e-3):
        warnings.append(
            f"header voxel size {tuple(round(z, 4) for z in zooms)} mm differs from the affine's "
            f"{tuple(round(z, 4) for z in aff_zooms)} mm; the affine is used"
        )
    return display_spacing(aff_zooms, img.affine), warnings


def _read_array(img: nib.Nifti1Image, what: str, study_id: int | None, path: Path) -> np.ndarray:
    """Voxel data with scaling applied; int data without scaling stay integers (no float copy).

    A ``.nii.gz`` is decompressed whole with :mod:`gzip`, which verifies the stream's CRC and length at the
    end: nibabel alone stops after the bytes it needs, so a damaged block could otherwise pass as garbage
    voxels.
    """
    if path.name.lower().endswith(".gz"):
        try:
            with _gzip_read.open(path, "rb") as gz:  # realct: the fast reader (see the import)
                raw = gz.read()
        except (EOFError, zlib.error, _InflateError, gzip.BadGzipFile) as exc:
            raise _fail(what, f"{path.name} is a truncated or corrupt gzip stream ({exc})", study_id, path) from None
        except OSError as exc:
            raise _fail(what, f"{path.name} cannot be read ({exc})", study_id, path) from None
        try:
            img = type(img).from_bytes(raw)
        except Exception as exc:
            raise _fail(
                what, f"{path.name} is not a readable NIfTI image ({type(exc).__name__}: {exc})", study_id, path
            ) from None
        del raw
    proxy = img.dataobj
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    try:
        if img.get_data_dtype().kind in "iu" and slope == 1.0 and inter == 0.0:
            arr = np.asarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
        else:
            arr = np.asarray(img.get_fdata(dtype=np.float32))
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _fail(what, f"{path.name} is a truncated or corrupt gzip stream ({exc})", study_id, path) from None
    except (ValueError, OSError) as exc:
        raise _fail(
            what, f"{path.name} is truncated or damaged: its data cannot be read ({exc})", study_id, path
        ) from None
    except MemoryError:
        raise _fail(what, f"{path.name} is too large to load into memory", study_id, path) from None
    shape3 = tuple(int(s) for s in img.shape[:3])
    if arr.shape != shape3:
        arr = arr.reshape(shape3)
    return arr


def _to_hu_int16(arr: np.ndarray, what: str, study_id: int | None, path: Path) -> tuple[np.ndarray, list[str]]:
    warnings: list[str] = []
    if arr.dtype == np.int16:
        return arr, warnings
    if arr.dtype.kind in "iu":
        lo, hi = arr.min(), arr.max()
        if lo < _INT16.min or hi > _INT16.max:
            n = int(np.count_nonzero((arr < _INT16.min) | (arr > _INT16.max)))
            warnings.append(f"{n:,} voxels outside the int16 range ({int(lo)}..{int(hi)}) were clipped")
        return np.clip(arr, _INT16.min, _INT16.max).astype(np.int16), warnings
    # float
    finite = np.isfinite(arr)
    n_bad = arr.size - int(np.count_nonzero(finite))
    if n_bad:
        nan = np.isnan(arr)
        n_nan = int(np.count_nonzero(nan))
        if n_nan == arr.size:
            raise _fail(what, f"{path.name} holds no image: every voxel is NaN", study_id, path)
        if n_bad == arr.size:
            raise _fail(what, f"{path.name} holds no image: every voxel is NaN or infinite", study_id, path)
        arr = np.where(nan, np.float32(AIR_HU), arr)
        n_inf = n_bad - n_nan
        if n_nan:
            warnings.append(f"{n_nan:,} NaN voxels were set to {AIR_HU} HU")
        if n_inf:
            warnings.append(f"{n_inf:,} infinite voxels were clipped to the int16 range")
    lo, hi = float(np.nanmin(np.where(np.isfinite(arr), arr, 0))), float(np.nanmax(np.where(np.isfinite(arr), arr, 0)))
    if lo < _INT16.min or hi > _INT16.max:
        n = int(np.count_nonzero(np.isfinite(arr) & ((arr < _INT16.min) | (arr > _INT16.max))))
        if n:
            warnings.append(f"{n:,} voxels outside the int16 range ({lo:.6g}..{hi:.6g}) were clipped")
    out = np.clip(np.rint(arr), _INT16.min, _INT16.max).astype(np.int16)
    return out, warnings


def _grid(img: nib.Nifti1Image) -> tuple[tuple[int, int, int], np.ndarray]:
    return tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, dtype=float)  # type: ignore[return-value]


def display_affine(affine: np.ndarray, source_shape: Sequence[int]) -> np.ndarray:
    """Affine of the display array: maps display voxel ``(z, row, col)`` to world mm."""
    t = display_ornt(affine)
    return np.asarray(affine, dtype=float) @ nio.inv_ornt_aff(t, tuple(int(s) for s in source_shape[:3]))


def read_volume(path: Path, study_id: int | None = None) -> Volume:
    """Read a study volume into display orientation as int16 HU.

    Float data: NaN becomes ``AIR_HU`` and infinities are clipped, each with a warning; values are rounded
    and clipped to int16. ``scl_slope``/``scl_inter`` are applied.

    Raises
    ------
    VolumeError
        See :func:`check_header`, plus truncated data and all-NaN data.
    """
    path = Path(path)
    img = check_header(path, study_id, what="study")
    shape3, affine = _grid(img)
    arr = _read_array(img, "study", study_id, path)
    spacing, warnings = _spacing(img)
    hu, value_warnings = _to_hu_int16(arr, "study", study_id, path)
    warnings += value_warnings
    del arr
    data = to_display(hu, affine)
    del hu
    if data.shape[0] == 1:
        warnings.append("the volume has a single slice")
    vmin, vmax = int(data.min()), int(data.max())
    if vmin == vmax:
        warnings.append(f"every voxel has the same value ({vmin} HU): the image is blank")
    elif vmin >= 0 and vmax > 1000:
        warnings.append(
            f"no voxel is below 0 (values {vmin}..{vmax}): the file may not be in Hounsfield "
            "units (missing rescale intercept?)"
        )
    return _volume(data, spacing, affine, shape3, warnings)


def _volume(
    data: np.ndarray,
    spacing: tuple[float, float, float],
    affine: np.ndarray,
    shape3: tuple[int, int, int],
    warnings: list[str],
) -> Volume:
    """A :class:`Volume` whose orientation fields are derived from the source affine and shape in one place."""
    return Volume(
        data=data,
        spacing=spacing,
        affine=affine,
        source_shape=shape3,
        source_axcodes=source_axcodes(affine),
        slice_z_mm=slice_positions_mm(affine, shape3),
        warnings=warnings,
    )


def volume_grid(path: Path, study_id: int | None = None, *, what: str = "study") -> Volume:
    """A :class:`Volume` carrying only a file's grid (header read, no voxel data).

    ``data`` is a read-only broadcast of zeros of the display shape (no memory allocated). Useful as the
    reference for :func:`read_mask` when the study itself is not available (masks-only datasets, replicas).
    """
    path = Path(path)
    img = check_header(path, study_id, what=what)
    shape3, affine = _grid(img)
    zyx = display_shape(shape3, affine)
    spacing, warnings = _spacing(img)
    return _volume(np.broadcast_to(np.int16(0), zyx), spacing, affine, shape3, warnings)


def read_mask(path: Path, ref: Volume, study_id: int | None = None, atol: float = 1e-3) -> tuple[np.ndarray, list[str]]:
    """Read a lesion mask on its study's grid, in display orientation.

    Parameters
    ----------
    path : Path
        The mask file.
    ref : Volume
        The study (or :func:`volume_grid` of it); the mask must describe the same voxels.
    study_id : int, optional
        Named in errors.
    atol : float
        Absolute tolerance (mm) on affine entries; a relative 1e-5 is added for large offsets.

    Returns
    -------
    mask : numpy.ndarray
        uint8 ``{0, 1}`` of the display shape.
    warnings : list of str
        E.g. values other than 0/1 (taken as ``> 0``), NaN voxels, an empty mask.

    Raises
    ------
    MaskMismatchError
        When the mask's grid (shape, or affine beyond tolerance) differs from the study's.
    VolumeError
        For an unreadable mask file (same checks as a study).
    """
    path = Path(path)
    img = check_header(path, study_id, what="mask")
    shape3, affine = _grid(img)
    ref_shape = tuple(int(s) for s in ref.source_shape[:3])
    ref_aff = np.asarray(ref.affine, dtype=float)
    # Compare the grids in display space: a mask stored in another axis order but covering exactly the same
    # voxels is the same grid; anything else is a mismatch.
    m_disp = display_shape(shape3, affine)
    r_disp = display_shape(ref_shape, ref_aff)
    if m_disp != r_disp:
        raise MaskMismatchError(f"mask grid {shape3} differs from study grid {ref_shape}", study_id=study_id, path=path)
    a_m = display_affine(affine, shape3)
    a_r = display_affine(ref_aff, ref_shape)
    if not np.allclose(a_m, a_r, rtol=1e-5, atol=atol):
        diff = float(np.max(np.abs(a_m - a_r)))
        raise MaskMismatchError(
            f"mask affine differs from the study affine by up to {diff:.4g} mm "
            f"(mask {shape3} {_affine_text(affine)}; study {ref_shape} {_affine_text(ref_aff)})",
            study_id=study_id,
            path=path,
        )

    arr = _read_array(img, "mask", study_id, path)
    warnings: list[str] = []
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            warnings.append(f"{int(nan.sum()):,} NaN mask voxels were taken as background")
            arr = np.where(nan, 0, arr)
    odd = arr[(arr != 0) & (arr != 1)]
    if odd.size:
        vals = np.unique(odd)
        shown = ", ".join(f"{v:g}" for v in vals[:5].tolist()) + (", ..." if vals.size > 5 else "")
        warnings.append(f"mask has values other than 0 and 1 ({shown}); voxels > 0 are taken as lesion")
    mask = (arr > 0).astype(np.uint8)
    del arr
    out = to_display(mask, affine)
    if not out.any():
        warnings.append("mask is empty (no lesion voxel)")
    return out, warnings
