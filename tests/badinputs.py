"""A generated corpus of bad (and oddly good) inputs, written into a directory the caller owns (``tmp_path``).

Reused by the registry/volume tests here and by the CLI, cache and app tests. Three levels:

* **files**: :data:`VOLUME_CASES` / :func:`write_volume_case` write one study file of a kind (zero bytes,
  truncated gzip, 2D, true 4D, NaN/inf, RGB ...); :data:`MASK_CASES` / :func:`write_mask_case` write a good
  study plus a bad mask (other shape, other affine, 0/255 ...).
* **a dataset**: :func:`make_bad_dataset` writes a dataset root in the published layout whose registry lists a
  few good tiny studies beside one study per file kind, per mask kind and per row kind (``..``, absolute path
  outside, symlink out, duplicate id, unknown class, non-ASCII names ...). It returns ``{kind: Expect}``.
* **whole registries**: :data:`REGISTRY_CASES` / :func:`make_bad_registry` write a root whose registry file as a
  whole is unusable (missing column, empty, not a spreadsheet ...); loading it raises ``RegistryError``.

Every case carries the substring its error or warning must contain (:attr:`Expect.expected`). Volumes are tiny
(32 x 32 x 4, int16, LAS affine like MosMedData) so the whole corpus is written in well under a second.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import nibabel as nib
import numpy as np
import pandas as pd

from mosmed.orientation import affine_from_axcodes, from_display
from mosmed.registry_write import write_registry_csv, write_registry_xlsx

__all__ = [
    "SHAPE_XYZ",
    "SPACING_XYZ",
    "Expect",
    "VolumeCase",
    "MaskCase",
    "RowCase",
    "RegistryCase",
    "VOLUME_CASES",
    "MASK_CASES",
    "ROW_CASES",
    "REGISTRY_CASES",
    "ALL_KINDS",
    "GOOD_IDS",
    "las_affine",
    "phantom_display",
    "write_nifti",
    "write_good_study",
    "write_good_mask",
    "write_volume_case",
    "write_mask_case",
    "make_bad_dataset",
    "make_bad_registry",
]

SHAPE_XYZ = (32, 32, 4)  # stored (x, y, z) shape of every tiny study
SPACING_XYZ = (0.8, 0.8, 8.0)  # mm, like MosMedData (sub-mm pixels, 8 mm slices)
ORIGIN = (12.4, -12.4, -100.0)


@dataclass(frozen=True)
class Expect:
    """What loading a case must give.

    Attributes
    ----------
    kind : str
        The case name.
    study_id : int or None
        The study it belongs to (None for a whole-registry case).
    stage : str
        Where it shows: ``"registry"`` (row status / dropped row / RegistryError), ``"volume"``
        (``read_volume``), ``"mask"`` (``read_mask`` against the study).
    outcome : str
        ``"error"`` (row status error, or VolumeError / MaskMismatchError at that stage), ``"dropped"``
        (a RowProblem; the row is not kept), ``"fatal"`` (RegistryError for the whole registry), ``"warning"``
        (loads; a warning contains ``expected``), ``"ok"`` (loads without an error).
    expected : str
        Substring of the error text, the problem reason or the warning ("" for ok).
    error_type : str
        Name of the exception class for stage errors (``"VolumeError"``, ``"MaskMismatchError"``,
        ``"RegistryError"``), "" otherwise.
    """

    kind: str
    study_id: int | None
    stage: str
    outcome: str
    expected: str
    error_type: str = ""


# ---------------------------------------------------------------------------------------------- basics


def las_affine(spacing_xyz=SPACING_XYZ, origin=ORIGIN) -> np.ndarray:
    """An LAS affine like MosMedData's: diag(-dx, dy, dz) with an offset."""
    return affine_from_axcodes(("L", "A", "S"), spacing_xyz, origin)


def phantom_display(shape_zyx=(SHAPE_XYZ[2], SHAPE_XYZ[1], SHAPE_XYZ[0]), seed: int = 0) -> np.ndarray:
    """A tiny chest in display orientation (Z, H, W): air, body, two lungs, a spine at the back; int16 HU."""
    z, h, w = shape_zyx
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    body = ((yy - cy) / (0.42 * h)) ** 2 + ((xx - cx) / (0.47 * w)) ** 2 <= 1
    lung_r = ((yy - cy) / (0.3 * h)) ** 2 + ((xx - 0.3 * w) / (0.15 * w)) ** 2 <= 1
    lung_l = ((yy - cy) / (0.3 * h)) ** 2 + ((xx - 0.7 * w) / (0.15 * w)) ** 2 <= 1
    spine = ((yy - 0.8 * h) / (0.07 * h)) ** 2 + ((xx - cx) / (0.07 * w)) ** 2 <= 1
    sl = np.full((h, w), -1000, np.int16)
    sl[body] = 40
    sl[lung_r | lung_l] = -850
    sl[spine] = 700
    vol = np.repeat(sl[None], z, axis=0)
    noise = rng.normal(0, 10, size=vol.shape).round().astype(np.int16)
    return (vol + noise).astype(np.int16)


def write_nifti(
    path: Path,
    arr: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    dtype=None,
    slope: float | None = None,
    inter: float | None = None,
) -> Path:
    """Save ``arr`` (stored order) as NIfTI-1 at ``path`` (gzip when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(arr, las_affine() if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter if inter is not None else 0.0)
    nib.save(img, str(path))
    return path


def _stored(display: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return from_display(display, affine)


def write_good_study(path: Path, seed: int = 0, affine: np.ndarray | None = None, shape_xyz=SHAPE_XYZ) -> Path:
    """A valid tiny int16 study (LAS by default)."""
    affine = las_affine() if affine is None else affine
    disp = phantom_display((shape_xyz[2], shape_xyz[1], shape_xyz[0]), seed)
    return write_nifti(path, _stored(disp, affine).astype(np.int16), affine)


def _lesion_display(shape_zyx=(SHAPE_XYZ[2], SHAPE_XYZ[1], SHAPE_XYZ[0]), value: int = 1) -> np.ndarray:
    z, h, w = shape_zyx
    m = np.zeros(shape_zyx, np.uint8)
    # one blob in each lung, posterior (lesions sit mostly posterior and peripheral)
    m[:, int(0.55 * h) : int(0.7 * h), int(0.2 * w) : int(0.3 * w)] = value
    m[1:, int(0.5 * h) : int(0.65 * h), int(0.7 * w) : int(0.8 * w)] = value
    return m


def write_good_mask(
    path: Path, affine: np.ndarray | None = None, value: int = 1, shape_xyz=SHAPE_XYZ, empty: bool = False
) -> Path:
    """A valid tiny uint8 mask on the default grid; ``value`` other than 1 makes a 0/value mask."""
    affine = las_affine() if affine is None else affine
    disp = _lesion_display((shape_xyz[2], shape_xyz[1], shape_xyz[0]), value)
    if empty:
        disp[:] = 0
    return write_nifti(path, _stored(disp, affine).astype(np.uint8), affine)


def _gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


# ------------------------------------------------------------------------------------------ file cases


@dataclass(frozen=True)
class VolumeCase:
    """A study-file kind: ``build(path)`` writes the file at ``path``."""

    outcome: str  # "error" | "warning" | "ok"
    expected: str
    build: Callable[[Path], Path]
    description: str


def _zero_byte(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _truncated_gzip(p: Path) -> Path:
    write_good_study(p, seed=1)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _gzip_cut_in_header(p: Path) -> Path:
    full = gzip.compress(nib.Nifti1Header().binaryblock, mtime=0)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(full[:40])
    return p


def _not_gzip(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    p.write_bytes(b"\x00\x01" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return p


def _uncompressed_named_gz(p: Path) -> Path:
    tmp = p.with_name(p.name.replace(".nii.gz", "") + "_raw.nii")
    write_good_study(tmp, seed=2)
    os.replace(tmp, p)
    return p


def _not_nifti(p: Path) -> Path:
    return _gz(p, ("This is a text file, not an image.\n" * 40).encode())


def _image_2d(p: Path) -> Path:
    return write_nifti(p, phantom_display((1, 32, 32))[0].T.copy())


def _image_4d(p: Path) -> Path:
    vol = _stored(phantom_display(), las_affine())
    return write_nifti(p, np.stack([vol] * 3, axis=-1))


def _singleton_4d(p: Path) -> Path:
    vol = _stored(phantom_display(), las_affine())
    return write_nifti(p, vol[..., None])


def _nan_inf_float(p: Path) -> Path:
    vol = _stored(phantom_display(), las_affine()).astype(np.float32)
    vol[0, 0, 0] = np.nan
    vol[1, 0, 0] = np.nan
    vol[2, 0, 0] = np.inf
    vol[3, 0, 0] = -np.inf
    return write_nifti(p, vol)


def _all_nan(p: Path) -> Path:
    return write_nifti(p, np.full(SHAPE_XYZ, np.nan, np.float32))


def _all_inf(p: Path) -> Path:
    vol = np.full(SHAPE_XYZ, np.inf, np.float32)
    vol[0] = -np.inf
    vol[1] = np.nan
    return write_nifti(p, vol)


def _rgb(p: Path) -> Path:
    rgb = np.zeros(SHAPE_XYZ, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return write_nifti(p, rgb)


def _complex(p: Path) -> Path:
    return write_nifti(p, np.zeros(SHAPE_XYZ, np.complex64))


def _header_with_shape(shape, dtype=np.int16) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    hdr.set_zooms(tuple([1.0] * len(shape)))
    hdr.set_sform(las_affine(), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00" * 4


def _enormous_dims(p: Path) -> Path:
    # 30000^3 voxels: rejected by the voxel limit before anything is allocated; the file itself is tiny.
    return _gz(p, _header_with_shape((30000, 30000, 30000)) + b"\x00" * 2048)


def _header_claims_more_than_file(p: Path) -> Path:
    # Under the voxel limit (800 M voxels) but 1.6 GB of int16 cannot come out of a few-hundred-byte gzip.
    return _gz(p, _header_with_shape((2000, 2000, 200)) + np.zeros(4096, np.int16).tobytes())


def _truncated_nii(p: Path) -> Path:
    raw = p.with_suffix("")  # study_x.nii
    write_good_study(raw, seed=3)
    data = raw.read_bytes()
    raw.write_bytes(data[: 352 + 100])
    return raw


def _degenerate_affine(p: Path) -> Path:
    img = nib.Nifti1Image(_stored(phantom_display(), las_affine()), None)
    bad = las_affine()
    bad[:, 2] = 0.0  # third voxel axis has no direction
    img.set_sform(bad, code=1)
    img.set_qform(None, code=0)
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(p))
    return p


def _one_slice(p: Path) -> Path:
    return write_good_study(p, seed=4, shape_xyz=(32, 32, 1))


def _constant(p: Path) -> Path:
    return write_nifti(p, np.full(SHAPE_XYZ, -1000, np.int16))


def _scaled_float(p: Path) -> Path:
    # uint16 storage with slope/intercept, the way many scanners export HU
    hu = _stored(phantom_display(seed=6), las_affine()).astype(np.int32)
    return write_nifti(p, np.clip(hu + 1024, 0, 4095).astype(np.uint16), dtype=np.uint16, slope=1.0, inter=-1024.0)


def _float32_good(p: Path) -> Path:
    return write_nifti(p, _stored(phantom_display(seed=7), las_affine()).astype(np.float32) + 0.25)


def _out_of_range(p: Path) -> Path:
    vol = _stored(phantom_display(seed=8), las_affine()).astype(np.int32)
    vol[0, 0, :] = 100000
    return write_nifti(p, vol)


VOLUME_CASES: Mapping[str, VolumeCase] = MappingProxyType(
    {
        "zero_byte": VolumeCase("error", "is empty (0 bytes)", _zero_byte, "a zero-byte study file"),
        "truncated_gzip": VolumeCase(
            "error", "truncated or corrupt gzip", _truncated_gzip, "a .nii.gz cut in half (failed download)"
        ),
        "gzip_cut_in_header": VolumeCase(
            "error", "truncated or corrupt gzip", _gzip_cut_in_header, "a gzip stream that ends inside the NIfTI header"
        ),
        "not_gzip": VolumeCase("error", "is not gzip-compressed", _not_gzip, "random bytes named .nii.gz"),
        "uncompressed_named_gz": VolumeCase(
            "error",
            "looks like an uncompressed NIfTI",
            _uncompressed_named_gz,
            "a plain .nii saved under a .nii.gz name",
        ),
        "not_nifti": VolumeCase("error", "is not a NIfTI image", _not_nifti, "gzip-compressed text"),
        "image_2d": VolumeCase("error", "2D image", _image_2d, "a single 2D image"),
        "true_4d": VolumeCase("error", "4D image with 3 volumes", _image_4d, "a 4D series of three volumes"),
        "singleton_4d": VolumeCase("ok", "", _singleton_4d, "4D with a singleton last axis (accepted)"),
        "nan_inf_float": VolumeCase(
            "warning", "NaN voxels were set to -1024 HU", _nan_inf_float, "float data with NaN and +/-inf"
        ),
        "all_nan": VolumeCase("error", "every voxel is NaN", _all_nan, "float data, all NaN"),
        "all_nonfinite": VolumeCase("error", "every voxel is NaN or infinite", _all_inf, "only NaN and inf"),
        "rgb_dtype": VolumeCase("error", "(RGB/structured), which is not a plain number", _rgb, "RGB24 voxels"),
        "complex_dtype": VolumeCase("error", "(complex), which is not a plain number", _complex, "complex64 voxels"),
        "enormous_dims": VolumeCase(
            "error", "more than the", _enormous_dims, "header claims 30000^3 voxels in a tiny file"
        ),
        "header_claims_too_much": VolumeCase(
            "error", "cannot hold that much", _header_claims_more_than_file, "header claims 1.6 GB in a tiny gzip"
        ),
        "truncated_nii": VolumeCase("error", "is truncated", _truncated_nii, "an uncompressed .nii cut short"),
        "degenerate_affine": VolumeCase("error", "unusable affine", _degenerate_affine, "an affine with a zero column"),
        "one_slice": VolumeCase("warning", "single slice", _one_slice, "a study of one slice"),
        "constant": VolumeCase("warning", "same value (-1000 HU)", _constant, "every voxel -1000"),
        "scaled_uint16": VolumeCase("ok", "", _scaled_float, "uint16 with scl_inter -1024 (accepted)"),
        "float32_data": VolumeCase("ok", "", _float32_good, "float32 HU (accepted, rounded)"),
        "out_of_int16_range": VolumeCase(
            "warning", "outside the int16 range", _out_of_range, "int32 values beyond int16"
        ),
    }
)


def write_volume_case(kind: str, directory: Path, name: str = "study_0001.nii.gz") -> Path:
    """Write one study file of ``kind`` into ``directory``; returns the path to read (may end in .nii)."""
    return VOLUME_CASES[kind].build(Path(directory) / name)


@dataclass(frozen=True)
class MaskCase:
    """A mask kind: ``build(study_path, mask_path)`` writes a good study and the mask."""

    outcome: str  # "error" | "warning" | "ok"
    expected: str
    build: Callable[[Path, Path], None]
    description: str
    error_type: str = "MaskMismatchError"


def _mask_other_shape(s: Path, m: Path) -> None:
    write_good_study(s, seed=10)
    write_good_mask(m, shape_xyz=(32, 32, 5))


def _mask_other_affine(s: Path, m: Path) -> None:
    write_good_study(s, seed=11)
    write_good_mask(m, affine=las_affine(origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + 8.0)))


def _mask_other_spacing(s: Path, m: Path) -> None:
    write_good_study(s, seed=12)
    write_good_mask(m, affine=las_affine(spacing_xyz=(0.7, 0.7, 8.0)))


def _mask_255(s: Path, m: Path) -> None:
    write_good_study(s, seed=13)
    write_good_mask(m, value=255)


def _mask_2(s: Path, m: Path) -> None:
    write_good_study(s, seed=14)
    write_good_mask(m, value=2)


def _mask_empty(s: Path, m: Path) -> None:
    write_good_study(s, seed=15)
    write_good_mask(m, empty=True)


def _mask_truncated(s: Path, m: Path) -> None:
    write_good_study(s, seed=16)
    write_good_mask(m)
    data = m.read_bytes()
    m.write_bytes(data[: len(data) // 2])


def _mask_other_orientation(s: Path, m: Path) -> None:
    # Same voxels stored RAS instead of LAS: the same grid, so it must be accepted.
    write_good_study(s, seed=17)
    las = las_affine()
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE_XYZ[0] - 1
    ras = las @ flip
    disp = _lesion_display()
    write_nifti(m, from_display(disp, ras).astype(np.uint8), ras)


MASK_CASES: Mapping[str, MaskCase] = MappingProxyType(
    {
        "mask_other_shape": MaskCase(
            "error",
            "mask grid (32, 32, 5) differs from study grid (32, 32, 4)",
            _mask_other_shape,
            "mask with one slice more than its study",
        ),
        "mask_other_affine": MaskCase(
            "error", "mask affine differs from the study affine", _mask_other_affine, "mask shifted by one slice (8 mm)"
        ),
        "mask_other_spacing": MaskCase(
            "error", "mask affine differs from the study affine", _mask_other_spacing, "mask with another pixel size"
        ),
        "mask_0_255": MaskCase("warning", "values other than 0 and 1 (255)", _mask_255, "mask stored as 0/255"),
        "mask_0_2": MaskCase("warning", "values other than 0 and 1 (2)", _mask_2, "mask stored as 0/2"),
        "mask_empty": MaskCase("warning", "mask is empty", _mask_empty, "a mask with no lesion voxel"),
        "mask_truncated": MaskCase(
            "error",
            "_mask.nii.gz is a truncated or corrupt gzip",
            _mask_truncated,
            "a mask .nii.gz cut in half",
            error_type="VolumeError",
        ),
        "mask_other_orientation": MaskCase(
            "ok", "", _mask_other_orientation, "mask stored RAS over the same voxels (accepted)"
        ),
    }
)


def write_mask_case(kind: str, directory: Path, study_id: int = 1) -> tuple[Path, Path]:
    """Write a good study and a mask of ``kind``; returns ``(study_path, mask_path)``."""
    d = Path(directory)
    s = d / "studies" / "CT-1" / f"study_{study_id:04d}.nii.gz"
    m = d / "masks" / f"study_{study_id:04d}_mask.nii.gz"
    MASK_CASES[kind].build(s, m)
    return s, m


# ------------------------------------------------------------------------------------------- row cases


@dataclass(frozen=True)
class RowCase:
    """A registry-row kind inside an otherwise good registry.

    ``build(root, sid)`` writes whatever files the row needs and returns the row dict (``study_id``,
    ``category``, ``study_file``, ``mask_file``).
    """

    outcome: str  # "error" (kept, status error) | "dropped" | "ok"
    expected: str
    build: Callable[[Path, int], dict]
    description: str


def _row(sid, cat, sf, mf=None) -> dict:
    return {"study_id": sid, "category": cat, "study_file": sf, "mask_file": mf}


def _good_row(root: Path, sid: int, cat: str = "CT-1", mask: bool = False) -> dict:
    sf = f"/studies/{cat}/study_{sid:04d}.nii.gz"
    write_good_study(root / sf.lstrip("/"), seed=sid)
    mf = None
    if mask:
        mf = f"/masks/study_{sid:04d}_mask.nii.gz"
        write_good_mask(root / mf.lstrip("/"))
    return _row(sid, cat, sf, mf)


def _missing_study(root: Path, sid: int) -> dict:
    return _row(sid, "CT-2", f"/studies/CT-2/study_{sid:04d}.nii.gz")


def _missing_mask(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["mask_file"] = f"/masks/study_{sid:04d}_mask.nii.gz"
    return r


def _unknown_class(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["category"] = "CT-5"
    return r


def _empty_class(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["category"] = None
    return r


def _dotdot(root: Path, sid: int) -> dict:
    outside = root.parent / f"{root.name}-outside"
    write_good_study(outside / f"study_{sid:04d}.nii.gz", seed=sid)
    return _row(sid, "CT-1", f"/studies/CT-1/../../../{outside.name}/study_{sid:04d}.nii.gz")


def _absolute_outside(root: Path, sid: int) -> dict:
    outside = root.parent / f"{root.name}-outside"
    p = write_good_study(outside / f"study_{sid:04d}.nii.gz", seed=sid)
    return _row(sid, "CT-1", str(p.resolve()))


def _absolute_inside(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["study_file"] = str((root / r["study_file"].lstrip("/")).resolve())
    return r


def _symlink_out(root: Path, sid: int) -> dict:
    outside = root.parent / f"{root.name}-outside"
    target = write_good_study(outside / f"linked_{sid:04d}.nii.gz", seed=sid)
    link = root / "studies" / "CT-1" / f"study_{sid:04d}.nii.gz"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.resolve(), link)
    return _row(sid, "CT-1", f"/studies/CT-1/study_{sid:04d}.nii.gz")


def _symlink_mask_out(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    outside = root.parent / f"{root.name}-outside"
    target = write_good_mask(outside / f"mask_{sid:04d}.nii.gz")
    link = root / "masks" / f"study_{sid:04d}_mask.nii.gz"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.resolve(), link)
    r["mask_file"] = f"/masks/study_{sid:04d}_mask.nii.gz"
    return r


def _non_ascii(root: Path, sid: int) -> dict:
    sf = f"/studies/CT-1/исследование_{sid:04d}_é.nii.gz"
    mf = f"/masks/маска_{sid:04d}_ü.nii.gz"
    write_good_study(root / sf.lstrip("/"), seed=sid)
    write_good_mask(root / mf.lstrip("/"))
    return _row(sid, "CT-1", sf, mf)


def _non_numeric_id(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["study_id"] = f"abc{sid}"
    return r


def _duplicate_id(root: Path, sid: int) -> dict:
    # The same id as the first good study (1); this second row must be dropped and reported.
    r = _good_row(root, sid)
    r["study_id"] = GOOD_IDS[0]
    return r


def _fractional_id(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["study_id"] = sid + 0.5
    return r


def _lowercase_class(root: Path, sid: int) -> dict:
    r = _good_row(root, sid)
    r["category"] = "ct–1"  # lower case with an en dash, as typed by hand: normalised to CT-1
    return r


ROW_CASES: Mapping[str, RowCase] = MappingProxyType(
    {
        "missing_study_file": RowCase("error", "study file missing", _missing_study, "registry row, no file"),
        "missing_mask_file": RowCase("error", "mask file missing", _missing_mask, "mask listed but absent"),
        "unknown_class": RowCase("error", "unknown class 'CT-5'", _unknown_class, "class CT-5"),
        "empty_class": RowCase("error", "class is empty", _empty_class, "no class given"),
        "dotdot_path": RowCase("error", "contains '..'", _dotdot, "study path with .. leading out"),
        "absolute_outside_root": RowCase(
            "error",
            "lies outside the dataset root",
            _absolute_outside,
            "absolute path to an existing file outside the root",
        ),
        "absolute_inside_root": RowCase("ok", "", _absolute_inside, "absolute path inside the root (accepted)"),
        "symlink_out": RowCase("error", "link that leads outside", _symlink_out, "study file is a link out"),
        "symlink_mask_out": RowCase("error", "unsafe mask path", _symlink_mask_out, "mask file is a link out"),
        "non_ascii_names": RowCase("ok", "", _non_ascii, "Cyrillic and accented file names (accepted)"),
        "non_numeric_id": RowCase("dropped", "study id 'abc", _non_numeric_id, "id 'abc…'"),
        "fractional_id": RowCase("dropped", ".5' is not a whole number", _fractional_id, "id 105.5"),
        "duplicate_id": RowCase("dropped", "duplicate study id 1", _duplicate_id, "a second row with id 1"),
        "hand_typed_class": RowCase("ok", "", _lowercase_class, "'ct–1' normalised to CT-1 (accepted)"),
    }
)


# ---------------------------------------------------------------------------------------- the dataset

GOOD_IDS: tuple[int, ...] = (1, 2, 3, 4)
_GOOD = ((1, "CT-0", False), (2, "CT-1", True), (3, "CT-2", True), (4, "CT-3", False))
_VOLUME_BASE, _MASK_BASE, _ROW_BASE = 100, 200, 300


def make_bad_dataset(root: Path, registry_format: str = "xlsx") -> dict[str, Expect]:
    """Write a dataset root with good tiny studies beside one study per bad kind.

    Parameters
    ----------
    root : Path
        Created if needed; files outside it are written to the sibling ``<root>-outside`` (the targets of the
        ``..``, absolute and symlink cases).
    registry_format : {"xlsx", "csv"}
        Registry file written.

    Returns
    -------
    dict
        ``{kind: Expect}`` for every file, mask and row kind plus ``"good_<id>"`` entries (outcome ok).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    expect: dict[str, Expect] = {}
    for sid, cat, has_mask in _GOOD:
        rows.append(_good_row(root, sid, cat, has_mask))
        expect[f"good_{sid}"] = Expect(f"good_{sid}", sid, "volume", "ok", "")

    for i, (kind, case) in enumerate(VOLUME_CASES.items()):
        sid = _VOLUME_BASE + i
        p = case.build(root / "studies" / "CT-1" / f"study_{sid:04d}.nii.gz")
        rows.append(_row(sid, "CT-1", "/" + p.relative_to(root).as_posix()))
        expect[kind] = Expect(
            kind, sid, "volume", case.outcome, case.expected, "VolumeError" if case.outcome == "error" else ""
        )

    for i, (kind, case) in enumerate(MASK_CASES.items()):
        sid = _MASK_BASE + i
        s, m = write_mask_case(kind, root, sid)
        rows.append(_row(sid, "CT-1", "/" + s.relative_to(root).as_posix(), "/" + m.relative_to(root).as_posix()))
        expect[kind] = Expect(
            kind, sid, "mask", case.outcome, case.expected, case.error_type if case.outcome == "error" else ""
        )

    for i, (kind, case) in enumerate(ROW_CASES.items()):
        sid = _ROW_BASE + i
        row = case.build(root, sid)
        rows.append(row)
        shown_id = GOOD_IDS[0] if kind == "duplicate_id" else (None if case.outcome == "dropped" else sid)
        expect[kind] = Expect(kind, shown_id, "registry", case.outcome, case.expected)

    df = pd.DataFrame(rows, columns=["study_id", "category", "study_file", "mask_file"])
    if registry_format == "xlsx":
        write_registry_xlsx(df, root / "dataset_registry.xlsx")
    elif registry_format == "csv":
        write_registry_csv(df, root / "dataset_registry.csv")
    else:
        raise ValueError(f"registry_format must be 'xlsx' or 'csv', not {registry_format!r}")
    return expect


# ------------------------------------------------------------------------------------ whole registries


@dataclass(frozen=True)
class RegistryCase:
    """A registry file that is unusable as a whole; ``build(root)`` writes it (and nothing else)."""

    expected: str
    build: Callable[[Path], Path]
    description: str


def _reg_df() -> pd.DataFrame:
    return pd.DataFrame([_row(1, "CT-0", "/studies/CT-0/study_0001.nii.gz")])


def _reg_missing_column(root: Path) -> Path:
    p = root / "dataset_registry.xlsx"
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "MosMedData COVID19_1110"
    ws.append(["study_id", "category", "study_file"])
    ws.append([1, "CT-0", "/studies/CT-0/study_0001.nii.gz"])
    wb.save(p)
    return p


def _reg_header_only(root: Path) -> Path:
    return write_registry_xlsx(_reg_df().iloc[0:0], root / "dataset_registry.xlsx")


def _reg_blank_sheet(root: Path) -> Path:
    import openpyxl

    p = root / "dataset_registry.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.save(p)
    return p


def _reg_zero_byte(root: Path) -> Path:
    p = root / "dataset_registry.xlsx"
    p.write_bytes(b"")
    return p


def _reg_text_as_xlsx(root: Path) -> Path:
    p = root / "dataset_registry.xlsx"
    p.write_text("study_id,category,study_file,mask_file\n1,CT-0,/studies/CT-0/study_0001.nii.gz,\n")
    return p


def _reg_corrupt_zip(root: Path) -> Path:
    p = write_registry_xlsx(_reg_df(), root / "dataset_registry.xlsx")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    return p


def _reg_binary_csv(root: Path) -> Path:
    p = root / "dataset_registry.csv"
    p.write_bytes(b"\x00\xff" * 300)
    return p


def _reg_csv_missing_column(root: Path) -> Path:
    p = root / "dataset_registry.csv"
    p.write_text("id;class;file\n1;CT-0;/studies/CT-0/study_0001.nii.gz\n", encoding="utf-8")
    return p


def _reg_nothing(root: Path) -> Path:
    (root / "studies").mkdir(parents=True, exist_ok=True)
    return root


REGISTRY_CASES: Mapping[str, RegistryCase] = MappingProxyType(
    {
        "registry_missing_column": RegistryCase(
            "has no column 'mask_file'", _reg_missing_column, "xlsx without the mask_file column"
        ),
        "registry_empty": RegistryCase("has a header but no study rows", _reg_header_only, "header only"),
        "registry_blank_sheet": RegistryCase("is empty", _reg_blank_sheet, "a workbook with an empty sheet"),
        "registry_zero_byte": RegistryCase("is empty (0 bytes)", _reg_zero_byte, "a zero-byte xlsx"),
        "registry_not_spreadsheet": RegistryCase("is not a spreadsheet", _reg_text_as_xlsx, "CSV text saved as .xlsx"),
        "registry_corrupt_xlsx": RegistryCase(
            "could not be read as a spreadsheet", _reg_corrupt_zip, "an xlsx cut to a third"
        ),
        "registry_binary_csv": RegistryCase("is not a CSV text file", _reg_binary_csv, "binary bytes as .csv"),
        "registry_csv_wrong_columns": RegistryCase(
            "has no column 'study_id'", _reg_csv_missing_column, "CSV with other column names"
        ),
        "registry_no_studies": RegistryCase("no studies", _reg_nothing, "no registry file and no study"),
    }
)


def make_bad_registry(kind: str, root: Path) -> Expect:
    """Write a dataset root whose registry is unusable as a whole; loading it must raise RegistryError."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    case = REGISTRY_CASES[kind]
    case.build(root)
    return Expect(kind, None, "registry", "fatal", case.expected, "RegistryError")


ALL_KINDS: tuple[str, ...] = (*VOLUME_CASES, *MASK_CASES, *ROW_CASES, *REGISTRY_CASES)
