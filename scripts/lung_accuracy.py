"""Lung segmentation and HU estimate accuracy: the full-size phantom table and the two real CT scans.

    .venv/bin/python scripts/lung_accuracy.py                 # 15 full-size phantoms (3 per class) + real CTs
    .venv/bin/python scripts/lung_accuracy.py --per-class 1   # quicker
    .venv/bin/python scripts/lung_accuracy.py --compare OLD.py  # also a segment_lungs(hu, spacing) from a file
    .venv/bin/python scripts/lung_accuracy.py --mild 8        # + calibration on mild masks only (real MosMedData)

Ground truth: ``mosmed.synthetic.study_phantom(DEMO_SEED, study_id, category, full_size=True)`` (the lungs and
lesions the generator drew). Prints per study: Dice with the drawn lungs, segmented / drawn volume, the
segmentation's CPU time, the true involvement, the density measure and the estimate (uncalibrated, and
calibrated on these phantoms with the leave-one-out error of the masked ones); then the real CTs of
../shared/realct (lung volume, estimate, quality flags). Not part of ``make test``: it takes about a minute.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The repository root must be on sys.path before the package can be imported.
from mosmed import involvement, measurements, quality, segmentation, synthetic, volume  # noqa: E402

# Study ids of the full-size registry per class (CT-4 has only two real ids: the third is a seed like any other).
IDS = {
    "CT-0": (1, 2, 3),
    "CT-1": (255, 256, 257),
    "CT-2": (939, 940, 941),
    "CT-3": (1064, 1065, 1066),
    "CT-4": (1109, 1110, 1111),
}
REALCT = REPO.parent / "shared" / "realct"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def _load_compare(path: str | None):
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("compare_segmentation", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compare_segmentation"] = mod
    spec.loader.exec_module(mod)
    return mod.segment_lungs


def phantom_table(per_class: int, compare) -> pd.DataFrame:
    rows = []
    for cat, ids in IDS.items():
        for sid in ids[:per_class]:
            ph, _, sp = synthetic.study_phantom(synthetic.DEMO_SEED, sid, cat, full_size=True)
            t = time.process_time()
            seg = segmentation.segment_lungs(ph.hu, sp)
            t_seg = time.process_time() - t
            st = measurements.study_stats(ph.hu, sp, seg, ph.lesion if ph.lesion.any() else None)
            row = {
                "study_id": sid,
                "category": cat,
                "status": "ok",
                "shape": "x".join(map(str, ph.hu.shape)),
                "dice": dice(seg, ph.lung),
                "vol_ratio": seg.sum() / max(1, ph.lung.sum()),
                "seg_cpu_s": t_seg,
                "truth_pct": ph.involvement_pct,
                "involvement_pct": st.involvement_pct if cat != "CT-0" else np.nan,
                "uncalibrated": st.estimated_involvement_pct,
                **st.density,
            }
            if compare is not None:
                t = time.process_time()
                old = compare(ph.hu, sp)
                row["compare_cpu_s"] = time.process_time() - t
                row["compare_dice"] = dice(old, ph.lung)
            rows.append(row)
            print(
                f"  {cat} {sid}: Dice {row['dice']:.4f}"
                + (f" (compare {row['compare_dice']:.4f})" if compare is not None else ""),
                flush=True,
            )
    return pd.DataFrame(rows)


def mild_extrapolation(df: pd.DataFrame, n: int) -> None:
    """Calibrate on CT-0 and mild CT-1 masks only, then estimate the table's CT-1..CT-4 phantoms."""
    from mosmed.phantom import build_phantom

    rows = [r for r in df.to_dict("records") if r["category"] == "CT-0"]
    for i in range(n):
        rng = synthetic.study_rng(synthetic.DEMO_SEED, 5000 + i)
        shape, sp = synthetic.study_grid(rng, True)
        ph = build_phantom(shape, sp, "CT-1", rng, target_involvement=float(1.0 + 4.0 * i / max(1, n - 1)))
        seg = segmentation.segment_lungs(ph.hu, sp)
        st = measurements.study_stats(ph.hu, sp, seg, ph.lesion)
        rows.append({"status": "ok", "category": "CT-1", "involvement_pct": st.involvement_pct, **st.density})
    cal = involvement.fit_calibration(pd.DataFrame(rows))
    test = df[df["category"] != "CT-0"]
    err = (cal.apply(test) - test["truth_pct"]).abs()
    print(f"\ncalibration on {len(rows) - n} CT-0 + {n} mild masks (1-5 %): {cal.describe()}")
    print(
        f"  applied to the CT-1..CT-4 phantoms: |error| mean {err.mean():.2f}, max {err.max():.2f} points; "
        + ", ".join(f"{c} {e:.1f}" for c, e in zip(test["category"], cal.apply(test) - test["truth_pct"]))
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=3, choices=(1, 2, 3))
    ap.add_argument("--compare", metavar="FILE.py", help="a module file with segment_lungs(hu, spacing)")
    ap.add_argument(
        "--mild",
        type=int,
        default=0,
        metavar="N",
        help="also fit the calibration on CT-0 and N CT-1 phantoms of 1-5 %% involvement only (as the "
        "50 real masks are) and report its error on the CT-1..CT-4 phantoms (extrapolation)",
    )
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} on {os.cpu_count()} CPUs")
    compare = _load_compare(args.compare)
    df = phantom_table(args.per_class, compare)
    cal = involvement.fit_calibration(df)
    df["calibrated"] = cal.apply(df)
    df["err_cal"] = (df["calibrated"] - df["truth_pct"]).abs()
    df["err_uncal"] = (df["uncalibrated"] - df["truth_pct"]).abs()
    cols = [
        "category",
        "study_id",
        "shape",
        "dice",
        "vol_ratio",
        "seg_cpu_s",
        "truth_pct",
        "density_pct",
        "uncalibrated",
        "calibrated",
    ] + (["compare_dice", "compare_cpu_s"] if compare is not None else [])
    pd.set_option("display.width", 200)
    print(df[cols].round(4).to_string(index=False))
    print("\nDice per class (min-max):")
    for cat, g in df.groupby("category"):
        extra = f"   compare {g['compare_dice'].min():.4f}-{g['compare_dice'].max():.4f}" if compare is not None else ""
        print(f"  {cat}: {g['dice'].min():.4f}-{g['dice'].max():.4f}{extra}")
    print(
        f"segmentation CPU per study: median {df['seg_cpu_s'].median() * 1000:.0f} ms"
        + (f" (compare {df['compare_cpu_s'].median() * 1000:.0f} ms)" if compare is not None else "")
    )
    print(
        f"estimate |error| vs truth, points: calibrated mean {df['err_cal'].mean():.2f}"
        f" max {df['err_cal'].max():.2f};"
        f" uncalibrated mean {df['err_uncal'].mean():.2f} max {df['err_uncal'].max():.2f}"
    )
    print(f"calibration on these phantoms: {cal.describe()}")
    if args.mild:
        mild_extrapolation(df, args.mild)

    print("\nreal CT (../shared/realct):")
    for name in ("chest_crop_lps_1p5mm.nii.gz", "abdomen_int32_3mm.nii.gz"):
        path = REALCT / name
        if not path.is_file():
            print(f"  {name}: not found")
            continue
        vol = volume.read_volume(path)
        t = time.process_time()
        seg = segmentation.segment(vol.data, vol.spacing)
        t_seg = time.process_time() - t
        st = measurements.study_stats(vol.data, vol.spacing, seg.lung)
        slices = np.flatnonzero(st.lung_area_mm2 > 0)
        flags = quality.assess(vol, seg, st)
        span = f"slices {slices.min()}-{slices.max()} of {vol.shape[0]}" if slices.size else "no lung"
        print(
            f"  {name}: lung {st.lung_ml:.1f} mL ({span}), density {st.density['density_pct']:.1f} %, "
            f"estimate {st.estimated_involvement_pct:.1f} % (uncalibrated), with the phantom calibration "
            f"{cal.estimate(st.density):.1f} %; excluded gas {seg.excluded_gas_ml:.0f} mL; "
            f"{t_seg * 1000:.0f} ms; flags: {quality.qc_codes(flags) or 'none'}"
        )
        if compare is not None:
            old = compare(vol.data, vol.spacing)
            print(f"    compare: lung {old.sum() * vol.voxel_ml:.1f} mL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
