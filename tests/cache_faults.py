"""Fault-injection helpers for the data cache: tiny datasets, builds killed with SIGKILL, racing builders.

Used by ``tests/test_cache.py`` (a few kills in ``make test``) and by the soak run (``kill_and_check(...,
n_kills=20)``). Everything here writes only below the folders it is given.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
FOV_MM = 340.0


# ------------------------------------------------------------------------------------------ tiny datasets


def las_affine(spacing_xyz=(0.8, 0.8, 8.0)) -> np.ndarray:
    """A MosMedData-like LAS affine: x toward the patient's left, y anterior, z superior."""
    sx, sy, sz = spacing_xyz
    return np.array([[-sx, 0, 0, 200.0], [0, sy, 0, -150.0], [0, 0, sz, -300.0], [0, 0, 0, 1]])


def phantom_xyz(shape=(64, 64, 6), lesion_frac: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small chest-like int16 volume (file axes x, y, z) with two dark lungs and a lesion in one of them.

    Returns ``(hu, lesion_mask)``; the lesion (ground glass, about -450 HU) fills ``lesion_frac`` of the left-hand
    lung's cross-section on every slice.
    """
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x = np.linspace(-1, 1, nx)[:, None, None]
    y = np.linspace(-1, 1, ny)[None, :, None]
    z = np.zeros((1, 1, nz))
    hu = np.full(shape, -1000.0)
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 <= 1.0
    hu[np.broadcast_to(body, shape)] = 40.0
    lung_a = ((x - 0.42) / 0.3) ** 2 + (y / 0.45) ** 2 <= 1.0
    lung_b = ((x + 0.42) / 0.3) ** 2 + (y / 0.45) ** 2 <= 1.0
    lungs = np.broadcast_to(lung_a | lung_b, shape)
    hu[lungs] = -850.0
    # Lesion: the posterior part of one lung (posterior = low y in LAS files).
    cut = np.quantile(np.linspace(-0.45, 0.45, 101), lesion_frac)
    lesion = np.broadcast_to(lung_a & (y <= cut) & (z == 0), shape) if lesion_frac > 0 else np.zeros(shape, bool)
    hu[lesion] = -450.0
    hu += rng.normal(0, 15, size=shape)
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16), lesion.astype(np.uint8)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    nib.save(img, str(path))
    return path


def small_spacing(shape, fov_mm: float = FOV_MM) -> tuple[float, float, float]:
    """(dx, dy, dz) of the tiny studies: a chest-sized field of view whatever the grid, 8 mm slices."""
    px = fov_mm / max(shape[0], shape[1])
    return (px, px, 8.0)


def write_small_dataset(
    root: Path, n: int = 6, shape=(64, 64, 6), seed: int = 0, mask_every: int = 2, fov_mm: float = FOV_MM
) -> Path:
    """Write ``n`` tiny studies in the MosMedData layout with a CSV registry; every ``mask_every``-th has a mask.

    Study ids start at 1; classes cycle CT-0..CT-4 (CT-0 studies get no lesion). The pixel size makes the field
    of view chest-sized (``fov_mm``), so a segmentation tuned in millimetres sees lungs of a real size.
    """
    affine = las_affine(small_spacing(shape, fov_mm))
    root = Path(root)
    rows = []
    for i in range(n):
        sid = i + 1
        cat = CATEGORIES[i % len(CATEGORIES)]
        frac = 0.0 if cat == "CT-0" else 0.15 + 0.15 * CATEGORIES.index(cat)
        hu, lesion = phantom_xyz(shape, lesion_frac=frac, seed=seed + sid)
        rel = f"/studies/{cat}/study_{sid:04d}.nii.gz"
        write_nifti(root / rel.lstrip("/"), hu, affine)
        mask_rel = ""
        if mask_every and i % mask_every == 1:
            mask_rel = f"/masks/study_{sid:04d}_mask.nii.gz"
            write_nifti(root / mask_rel.lstrip("/"), lesion, affine)
        rows.append((sid, cat, rel, mask_rel))
    with open(root / "dataset_registry.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(("study_id", "category", "study_file", "mask_file"))
        w.writerows(rows)
    return root


# ------------------------------------------------------------------------------------ cache comparisons


def cache_dir(data: Path, cache_root: Path) -> Path:
    from mosmed.cache import dataset_key

    return Path(cache_root) / dataset_key(Path(data))


def valid_entry_files(data: Path, cache_root: Path) -> dict[str, bytes]:
    """Every cache file that a reader accepts as valid, as ``relative path -> bytes``.

    Stats and thumbnails count when ``get_stats``/``get_thumb`` accept them; arrays when ``get_arrays`` does.
    """
    from mosmed.cache import StudyCache
    from mosmed.cache.keys import entry_stem
    from mosmed.registry import load_registry

    reg = load_registry(Path(data))
    cache = StudyCache(Path(data), Path(cache_root), budget_bytes=10**12, probe=False)
    out: dict[str, bytes] = {}
    for row in reg.sources:
        key = cache.key(row)
        if key is None:
            continue
        stem = entry_stem(row.study_id, key)
        if cache.get_stats(row) is not None:
            p = cache.stats_dir / f"{stem}.json"
            out[f"stats/{p.name}"] = p.read_bytes()
        if cache.get_thumb(row) is not None:
            p = cache.thumbs_dir / f"{stem}.png"
            out[f"thumbs/{p.name}"] = p.read_bytes()
        if cache.get_arrays(row) is not None:
            d = cache.arrays_dir / stem
            for f in sorted(d.iterdir()):
                if f.name != "last_used":
                    out[f"arrays/{stem}/{f.name}"] = f.read_bytes()
    return out


def compare_with_clean(data: Path, cache_root: Path, clean_root: Path) -> tuple[int, list[str]]:
    """``(n valid files checked, [files that read as valid but differ from the clean build])``."""
    got = valid_entry_files(data, cache_root)
    clean = valid_entry_files(data, clean_root)
    bad = [name for name, blob in got.items() if clean.get(name) != blob]
    return len(got), bad


def leftover_tmp(data: Path, cache_root: Path) -> list[Path]:
    d = cache_dir(data, cache_root)
    return [p for p in d.rglob(".tmp-*")] if d.exists() else []


# --------------------------------------------------------------------------------------- subprocess runs


def build_cmd(data: Path, cache_root: Path, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mosmed",
        "build-cache",
        "--data",
        str(data),
        "--cache",
        str(cache_root),
        "--workers",
        str(workers),
    ]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MOSMED_CACHE_BUDGET_GB", None)
    return env


def start_build(data: Path, cache_root: Path, workers: int = 1) -> subprocess.Popen:
    # A new session so a kill reaches the pool's workers too (the group id is the child's own pid).
    return subprocess.Popen(
        build_cmd(data, cache_root, workers),
        cwd=str(REPO),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def run_build(data: Path, cache_root: Path, workers: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        build_cmd(data, cache_root, workers), cwd=str(REPO), env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _wait_started(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the builder's first progress line (imports done, cache checked, building begins)."""
    import select

    if proc.stderr is None:
        return False
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    if ready:
        proc.stderr.readline()
        return True
    return False


def time_clean_build(data: Path, cache_root: Path, workers: int = 1) -> tuple[float, float]:
    """``(seconds to the first progress line, seconds for the whole build)`` of an uninterrupted build."""
    t0 = time.perf_counter()
    proc = start_build(data, cache_root, workers)
    _wait_started(proc, 120)
    started = time.perf_counter() - t0
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    code = proc.wait(timeout=300)
    if proc.stderr is not None:
        proc.stderr.close()
    if code != 0:
        raise RuntimeError(f"clean build failed ({code}): {err[-2000:]}")
    return started, time.perf_counter() - t0


@dataclass
class KillReport:
    n_kills: int = 0
    kills_mid_build: int = 0  # kills that found the process still running
    valid_files_checked: int = 0
    valid_files_after_kills: int = 0  # valid files found right after kills (partial caches were really checked)
    tmp_debris_after_kills: int = 0  # .tmp-* left by kills (writes really were interrupted)
    mismatches: list[str] = field(default_factory=list)
    rebuild_ok: bool = False
    leftover_tmp_after_rebuild: list[str] = field(default_factory=list)
    kill_times_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(self.__dict__, default=str))


def kill_and_check(
    data: Path,
    cache_root: Path,
    clean_root: Path,
    n_kills: int = 3,
    seed: int = 0,
    workers: int = 1,
    clean_seconds: float | None = None,
) -> KillReport:
    """SIGKILL a cache build ``n_kills`` times at random moments, checking after each kill.

    After every kill, every cache file that reads as valid must be byte-equal to the clean build in
    ``clean_root`` (built first; ``clean_seconds`` is then its build phase without start-up). Most kills wait for
    the builder's first progress line and then strike at a random moment of the build phase; every fourth
    strikes during start-up. Runs usually resume the previous run's partial cache (as a user restarting would),
    sometimes from scratch. Finally an uninterrupted rebuild must succeed, leave no ``.tmp-*`` debris and equal
    the clean build.
    """
    rng = random.Random(seed)
    if clean_seconds is None:
        shutil.rmtree(clean_root, ignore_errors=True)  # time a full build, not a cached one
        startup, total = time_clean_build(data, clean_root, workers=1)
        clean_seconds = max(0.2, total - startup)
    rep = KillReport()
    for i in range(n_kills):
        proc = start_build(data, cache_root, workers)
        # Most kills land while studies are being written (after start-up); every fourth during start-up.
        early = i % 4 == 3
        if not early:
            _wait_started(proc, 120)
        delay = rng.uniform(0.0, 0.5 if early else clean_seconds)
        rep.kill_times_s.append(round(delay, 3))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            rep.kills_mid_build += 1
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        rep.n_kills += 1
        n, bad = compare_with_clean(data, cache_root, clean_root)
        rep.valid_files_checked += n
        rep.valid_files_after_kills += n
        rep.tmp_debris_after_kills += len(leftover_tmp(data, cache_root))
        rep.mismatches.extend(bad)
        # Start the next run from a partly built cache, as a user restarting would; but when a run got far,
        # wipe so later kills still land mid-build.
        if n and rng.random() < 0.75:
            shutil.rmtree(cache_root, ignore_errors=True)
    res = run_build(data, cache_root, workers)
    rep.rebuild_ok = res.returncode == 0
    n, bad = compare_with_clean(data, cache_root, clean_root)
    rep.valid_files_checked += n
    rep.mismatches.extend(bad)
    rep.leftover_tmp_after_rebuild = [str(p) for p in leftover_tmp(data, cache_root)]
    return rep


def race_builders(data: Path, cache_root: Path, n: int = 2, workers: int = 1, timeout: float = 120) -> list[int]:
    """Start ``n`` builders on the same cache at once; return their exit codes."""
    procs = [start_build(data, cache_root, workers) for _ in range(n)]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        finally:
            if p.stderr is not None:
                p.stderr.close()
    return codes


if __name__ == "__main__":  # soak entry point: python tests/cache_faults.py N_KILLS [WORKDIR]
    import tempfile

    n_kills = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="mosmed-kill-"))
    sys.path.insert(0, str(REPO))
    data = write_small_dataset(work / "data", n=12, shape=(128, 128, 12))
    report = kill_and_check(data, work / "cache", work / "clean", n_kills=n_kills, seed=n_kills)
    print(json.dumps(report.as_dict(), indent=1))
    ok = report.rebuild_ok and not report.mismatches and not report.leftover_tmp_after_rebuild
    sys.exit(0 if ok else 1)
