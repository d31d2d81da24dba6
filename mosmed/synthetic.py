"""Seeded synthetic datasets in the exact MosMedData COVID19_1110 layout: the demo set and the replica.

* :func:`generate_demo` writes ``dataset_registry.xlsx`` (sheet "MosMedData COVID19_1110"), ``studies/CT-k/``
  and ``masks/`` with synthetic chest CTs (see :mod:`mosmed.phantom`) whose lesions are sized to each class's
  involvement band. The default set is small (256 x 256 in-plane, field of view kept ~350 mm) and covers all
  five classes with masks on studies of several classes; ``full_size=True`` writes the 1110 studies of the real
  dataset at 512 x 512 with the published class counts and masks on CT-1 ids 255-304 (``only_ids`` limits which
  studies get files, so a benchmark can keep every registry row and write a few volumes).
* :func:`generate_replica` takes the real registry and the 50 real masks and builds a synthetic study on each
  mask's exact grid with lesion HU painted where the mask is.

Files are like the real ones: int16 NIfTI-1, LAS affine ``diag(-dx, dy, 8)`` with offsets, 8 mm slices, masks
{0,1} int16 on the study grid. Arrays are built in display orientation and turned into the file's voxel order
with :func:`mosmed.orientation.from_display`, so reading them back gives the same arrays. Gzip streams carry
no time stamp, so a seed gives byte-identical NIfTI files. Every dataset is built in a temporary folder beside
``out`` and renamed into place: a half-written dataset never sits at ``out``.
"""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from mosmed.atomic import atomic_write_bytes, publish_dir, temp_dir_beside
from mosmed.orientation import affine_from_axcodes, display_spacing, from_display, to_display
from mosmed.paths import mask_rel_path, study_rel_path
from mosmed.phantom import Phantom, build_phantom
from mosmed.registry_write import write_registry_xlsx

__all__ = [
    "DEMO_SEED",
    "DEMO_SIZE",
    "FULL_SIZE",
    "REAL_COUNTS",
    "REAL_MASK_IDS",
    "make_phantom",
    "study_phantom",
    "study_grid",
    "plan_registry",
    "generate_demo",
    "generate_replica",
    "write_nifti",
    "StudySpec",
]

DEMO_SEED = 20200428
DEMO_SIZE = 256  # in-plane size of the default demo (fits the 30 s budget on 2 cores)
FULL_SIZE = 512
REAL_COUNTS = (("CT-0", 254), ("CT-1", 684), ("CT-2", 125), ("CT-3", 45), ("CT-4", 2))
REAL_MASK_IDS = tuple(range(255, 305))
_CLASSES = tuple(c for c, _ in REAL_COUNTS)
# Class mix of a small demo: every class present, the rare severe ones over-represented so there is something
# to look at (the real set has 2 CT-4 out of 1110).
_DEMO_WEIGHTS = (0.25, 0.35, 0.2, 0.12, 0.08)
_SHEET = "MosMedData COVID19_1110"

Progress = Callable[[int, int, str], None]


def make_phantom(
    shape_zyx: Sequence[int],
    spacing: Sequence[float],
    category: str,
    rng: np.random.Generator,
    target_involvement: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One synthetic chest CT in display orientation.

    Parameters
    ----------
    shape_zyx : (Z, H, W) display shape.
    spacing : (dz, dy, dx) mm.
    category : "CT-0" .. "CT-4".
    rng : numpy Generator (all randomness comes from it).
    target_involvement : per cent of lung with lesions; drawn in the class band when None.

    Returns
    -------
    hu : (Z, H, W) int16, lesion : (Z, H, W) uint8 {0,1}, involvement_pct : float
        ``involvement_pct`` is lesion voxels inside the drawn lungs / lung voxels * 100 (ground truth).
    """
    ph = build_phantom(shape_zyx, spacing, category, rng, target_involvement)
    return ph.hu, ph.lesion, ph.involvement_pct


# ------------------------------------------------------------------------------------------------ files


def las_affine(spacing_zyx: Sequence[float], shape_zyx: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A MosMedData-like LAS affine ``diag(-dx, dy, dz)`` with offsets like the real files'.

    The in-plane origin puts the image centre near the scanner axis (x0 ~ +FOV/2, y0 ~ -FOV/2, a few mm off);
    z0 is a table position in the range seen in the real headers.
    """
    dz, dy, dx = (float(s) for s in spacing_zyx)
    _, h, w = (int(s) for s in shape_zyx)
    x0 = w * dx / 2.0 + float(rng.uniform(-15.0, 15.0))
    y0 = -h * dy / 2.0 + float(rng.uniform(-20.0, 10.0))
    z0 = float(np.round(rng.uniform(-1250.0, -900.0), 1))
    return affine_from_axcodes(("L", "A", "S"), (dx, dy, dz), (x0, y0, z0))


def write_nifti(path: Path, display_arr: np.ndarray, affine: np.ndarray, dtype=np.int16) -> None:
    """Write a display-orientation array as a NIfTI-1 file in the voxel order ``affine`` describes.

    The gzip stream has mtime 0 and no file name, so equal arrays give equal bytes. Written to a temporary
    name, then renamed.
    """
    path = Path(path)
    data = from_display(np.asarray(display_arr), affine).astype(dtype, copy=False)
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    raw = img.to_bytes()
    blob = gzip.compress(raw, compresslevel=1, mtime=0) if path.name.endswith(".gz") else raw
    # No fsync: generated data is rebuilt from its seed; the rename alone keeps a half file from being read.
    atomic_write_bytes(path, blob, fsync=False)


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class StudySpec:
    """What to generate for one registry row."""

    study_id: int
    category: str
    with_mask: bool


def _demo_counts(n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"n_studies must be at least 1, got {n}")
    if n < len(_CLASSES):
        return [1 if i < n else 0 for i in range(len(_CLASSES))]
    counts = [max(1, int(round(n * wgt))) for wgt in _DEMO_WEIGHTS]
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    while sum(counts) < n:
        counts[1] += 1
    return counts


def plan_registry(n_studies: int = 20, full_size: bool = False) -> list[StudySpec]:
    """The registry rows of a demo (ids grouped by class, CT-0 first, as in the real registry).

    Full size: the published counts (254/684/125/45/2, 1110 rows) and masks on CT-1 ids 255-304. Small demo: every
    class present and masks on about half of the CT-1..CT-4 studies (never on CT-0, as in the real data).
    """
    specs: list[StudySpec] = []
    sid = 1
    if full_size:
        for cat, count in REAL_COUNTS:
            for _ in range(count):
                specs.append(StudySpec(sid, cat, sid in REAL_MASK_IDS))
                sid += 1
        return specs
    for cat, count in zip(_CLASSES, _demo_counts(int(n_studies))):
        n_mask = 0 if cat == "CT-0" else (count + 1) // 2
        for i in range(count):
            specs.append(StudySpec(sid, cat, i < n_mask))
            sid += 1
    return specs


def registry_frame(specs: Iterable[StudySpec]) -> pd.DataFrame:
    """The registry table for ``specs``: study_id, category, study_file, mask_file (NaN where no mask)."""
    rows = [
        (
            s.study_id,
            s.category,
            study_rel_path(s.study_id, s.category),
            mask_rel_path(s.study_id) if s.with_mask else np.nan,
        )
        for s in specs
    ]
    df = pd.DataFrame(rows, columns=["study_id", "category", "study_file", "mask_file"])
    df["study_id"] = df["study_id"].astype(int)
    return df


def study_rng(seed: int, study_id: int) -> np.random.Generator:
    """The generator of one study: depends on (seed, id) only, not on worker or order."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(study_id)]))


def study_grid(
    rng: np.random.Generator, full_size: bool, size: int | None = None
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Display shape and spacing of a study: Z 33-53 slices of 8 mm, pixels 0.66-0.875 mm at 512.

    The field of view, 338-448 mm, is the paper's display FOV (350-500 mm, at least 1 cm beyond the ribs) as far
    as the 0.58-1.15 mm pixels of the real files allow. Smaller in-plane sizes scale the pixel so the field of
    view stays that of a 512 image.
    """
    n = int(size or (FULL_SIZE if full_size else DEMO_SIZE))
    z = int(rng.integers(33, 54))
    dx = float(np.round(rng.uniform(0.66, 0.875), 3)) * FULL_SIZE / n
    return (z, n, n), (8.0, dx, dx)


def study_phantom(
    seed: int, study_id: int, category: str, full_size: bool = False, size: int | None = None
) -> tuple[Phantom, np.ndarray, tuple[float, float, float]]:
    """Rebuild exactly the phantom the generator writes for a study: (phantom, affine, spacing).

    Tests and benchmarks use it for the ground truth (lung mask, involvement) of a generated file.
    """
    rng = study_rng(seed, study_id)
    shape, spacing = study_grid(rng, full_size, size)
    affine = las_affine(spacing, shape, rng)
    return build_phantom(shape, spacing, category, rng), affine, spacing


def _make_study(args: tuple) -> tuple[int, float, float]:
    root, spec, seed, full_size, size = args
    t0 = time.perf_counter()
    ph, affine, _ = study_phantom(seed, spec.study_id, spec.category, full_size, size)
    root = Path(root)
    write_nifti(root / study_rel_path(spec.study_id, spec.category).lstrip("/"), ph.hu, affine)
    if spec.with_mask:
        write_nifti(root / mask_rel_path(spec.study_id).lstrip("/"), ph.lesion, affine, dtype=np.int16)
    return spec.study_id, ph.involvement_pct, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ atomic output


def _publish(tmp: Path, out: Path, overwrite: bool) -> Path:
    """Rename the finished ``tmp`` to ``out`` (an existing full ``out`` only with ``overwrite``)."""
    if not publish_dir(tmp, out, replace=overwrite):
        raise FileExistsError(f"{out} already exists and is not empty")
    return out


def _run(tasks: list[tuple], workers: int, progress: Progress | None, label: str) -> list[tuple[int, float, float]]:
    total = len(tasks)
    results = []
    if progress:
        progress(0, total, label)
    if workers > 1 and total > 1:
        # spawn: safe from threaded parents (Streamlit); the workers only import numpy/scipy/nibabel.
        with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=get_context("spawn")) as ex:
            for i, res in enumerate(ex.map(_make_study, tasks), 1):
                results.append(res)
                if progress:
                    progress(i, total, f"study {res[0]}")
    else:
        for i, t in enumerate(tasks, 1):
            res = _make_study(t)
            results.append(res)
            if progress:
                progress(i, total, f"study {res[0]}")
    return results


def _layout(tmp: Path) -> None:
    for cat in _CLASSES:
        (tmp / "studies" / cat).mkdir(parents=True, exist_ok=True)
    (tmp / "masks").mkdir(exist_ok=True)


# ------------------------------------------------------------------------------------------------ public


def generate_demo(
    out: Path,
    n_studies: int = 20,
    seed: int = DEMO_SEED,
    full_size: bool = False,
    progress: Progress | None = None,
    *,
    only_ids: Collection[int] | None = None,
    workers: int = 2,
    size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset in the published MosMedData layout.

    Parameters
    ----------
    out : dataset root to create (must not exist, or be an empty folder, unless ``overwrite``).
    n_studies : number of studies of the small demo (ignored with ``full_size``: always the 1110 real rows).
    seed : same seed, same arrays (and same NIfTI bytes).
    full_size : 512 x 512 studies, the real registry's 1110 rows, class counts and mask ids.
    progress : ``progress(done, total, label)`` after each study.
    only_ids : write volumes (and masks) only for these study ids; the registry keeps every row, the others
        are missing files. For benchmarks: e.g. ``only_ids=range(255, 265)`` at full size.
    workers : processes used (studies are independent; 2 on this machine).
    size : in-plane size override (default 256 for the demo, 512 at full size).
    overwrite : replace an existing non-empty ``out`` (atomically).

    Returns
    -------
    Path : ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty")
    specs = plan_registry(n_studies, full_size)
    wanted = None if only_ids is None else {int(i) for i in only_ids}
    tmp = temp_dir_beside(out)
    try:
        _layout(tmp)
        write_registry_xlsx(registry_frame(specs), tmp / "dataset_registry.xlsx", sheet_name=_SHEET)
        tasks = [
            (str(tmp), s, int(seed), bool(full_size), size) for s in specs if wanted is None or s.study_id in wanted
        ]
        _run(tasks, workers, progress, "generating studies")
        return _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_replica_study(args: tuple) -> tuple[int, float, float]:
    root, source, spec, seed = args
    t0 = time.perf_counter()
    root = Path(root)
    rng = study_rng(seed, spec.study_id)
    if spec.with_mask:
        src = Path(source) / mask_rel_path(spec.study_id).lstrip("/")
        img = nib.load(str(src))
        affine = img.affine.copy()
        mask = to_display(np.asarray(img.dataobj), affine) > 0
        spacing = display_spacing(img.header.get_zooms()[:3], affine)
        ph = build_phantom(mask.shape, spacing, spec.category, rng, lesion_mask=mask)
        shutil.copyfile(src, root / mask_rel_path(spec.study_id).lstrip("/"))
    else:
        shape, spacing = study_grid(rng, True)
        affine = las_affine(spacing, shape, rng)
        ph = build_phantom(shape, spacing, spec.category, rng)
    write_nifti(root / study_rel_path(spec.study_id, spec.category).lstrip("/"), ph.hu, affine)
    return spec.study_id, ph.involvement_pct, time.perf_counter() - t0


def generate_replica(
    source: Path,
    out: Path,
    per_class: int = 2,
    seed: int = DEMO_SEED,
    progress: Progress | None = None,
    *,
    mask_ids: Collection[int] | None = None,
    workers: int = 2,
    overwrite: bool = False,
) -> Path:
    """A dataset root with the real registry and masks and synthetic studies on the masks' exact grids.

    Parameters
    ----------
    source : folder holding the real ``dataset_registry.xlsx`` and ``masks/`` (read only).
    out : dataset root to create.
    per_class : besides every masked study, this many unmasked studies of each class get a synthetic volume
        (the first ones of the class in registry order).
    mask_ids : restrict the masked studies (tests); default all masked rows of the registry (50 for MosMedData).
    workers, overwrite, progress, seed : as in :func:`generate_demo`.

    Notes
    -----
    The registry is copied byte for byte and keeps all rows, so studies without a volume are missing files.
    The masks used are copied byte for byte; each masked study is drawn on its mask's shape and affine, with
    lung drawn wherever the mask is and lesion HU painted on it.
    """
    from mosmed.registry import read_registry_file

    source, out = Path(source), Path(out)
    reg_src = source / "dataset_registry.xlsx"
    if not reg_src.is_file():
        raise FileNotFoundError(f"no dataset_registry.xlsx in {source}")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty")
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    df = read_registry_file(reg_src)
    specs: list[StudySpec] = []
    taken: dict[str, int] = {c: 0 for c in _CLASSES}
    wanted = None if mask_ids is None else {int(i) for i in mask_ids}
    for row in df.itertuples(index=False):
        sid, cat = int(row.study_id), str(row.category)
        mf = row.mask_file
        has_mask = isinstance(mf, str) and mf.strip() != ""
        if has_mask:
            if wanted is None or sid in wanted:
                if not (source / mask_rel_path(sid).lstrip("/")).is_file():
                    raise FileNotFoundError(f"study {sid}: mask file {mask_rel_path(sid)} missing in {source}")
                specs.append(StudySpec(sid, cat, True))
        elif cat in taken and taken[cat] < per_class:
            taken[cat] += 1
            specs.append(StudySpec(sid, cat, False))
    tmp = temp_dir_beside(out)
    try:
        _layout(tmp)
        shutil.copyfile(reg_src, tmp / "dataset_registry.xlsx")
        for extra in ("LICENSE", "README_EN.md"):
            if (source / extra).is_file():
                shutil.copyfile(source / extra, tmp / extra)
        tasks = [(str(tmp), str(source), s, int(seed)) for s in specs]
        total = len(tasks)
        if progress:
            progress(0, total, "building replica")
        if workers > 1 and total > 1:
            with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=get_context("spawn")) as ex:
                for i, res in enumerate(ex.map(_make_replica_study, tasks), 1):
                    if progress:
                        progress(i, total, f"study {res[0]}")
        else:
            for i, t in enumerate(tasks, 1):
                res = _make_replica_study(t)
                if progress:
                    progress(i, total, f"study {res[0]}")
        return _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
