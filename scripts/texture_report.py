"""Print the texture statistics of the demo phantoms beside those of the real CT in ../shared/realct/.

One table: noise (MAD of the 3x3-median residual in soft tissue), its lag-1 correlation, the normal lung's
median and p10-p90 width, with the tolerances the generator is held to (tests/test_texture.py). Definitions in
mosmed/texture.py. Usage::

    .venv/bin/python scripts/texture_report.py            # the 20-study demo (256 px) and 3 full-size studies
    .venv/bin/python scripts/texture_report.py --full 0   # the demo only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mosmed.synthetic import DEMO_SEED, plan_registry, study_phantom  # noqa: E402
from mosmed.texture import TextureStats, texture_stats  # noqa: E402

REALCT = REPO.parent / "shared" / "realct"
# Tolerances of issue 9: noise within 30 % of the real chest crop, lung median and width within 15 %.
TOLERANCE = {"noise_mad_hu": 0.30, "lung_median_hu": 0.15, "lung_p10_p90_hu": 0.15}
ROWS = (("noise_mad_hu", "noise MAD (HU)"), ("noise_lag1_corr", "noise lag-1 corr"),
        ("lung_median_hu", "lung median (HU)"), ("lung_p10_hu", "lung p10 (HU)"), ("lung_p90_hu", "lung p90 (HU)"),
        ("lung_p10_p90_hu", "lung p10-p90 (HU)"), ("pixel_mm", "pixel (mm)"))


def _real(name: str) -> TextureStats | None:
    from mosmed.volume import read_volume

    path = REALCT / name
    if not path.is_file():
        return None
    vol = read_volume(path)
    return texture_stats(vol.data, vol.spacing)


def _summary(stats: list[TextureStats], key: str) -> str:
    vals = [getattr(s, key) for s in stats]
    return f"{statistics.median(vals):.2f} [{min(vals):.2f}, {max(vals):.2f}]" if len(vals) > 1 else f"{vals[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20, help="demo studies (256 px), default 20")
    ap.add_argument("--full", type=int, default=3, help="full-size (512 px) studies, default 3")
    args = ap.parse_args(argv)

    chest = _real("chest_crop_lps_1p5mm.nii.gz")
    abdomen = _real("abdomen_int32_3mm.nii.gz")
    specs = plan_registry(args.studies)
    demo, cpu = [], 0.0
    for s in specs:
        t0 = time.process_time()
        ph, _, sp = study_phantom(DEMO_SEED, s.study_id, s.category)
        cpu += time.process_time() - t0
        demo.append(texture_stats(ph.hu, sp, (ph.lung > 0) & (ph.lesion == 0)))
    cpu_demo = cpu / max(len(specs), 1)
    full = []
    for s in [s for s in plan_registry(20) if s.category in ("CT-0", "CT-2", "CT-4")][: args.full]:
        ph, _, sp = study_phantom(DEMO_SEED, s.study_id, s.category, full_size=True)
        full.append(texture_stats(ph.hu, sp, (ph.lung > 0) & (ph.lesion == 0)))

    cols = ["statistic", "real chest crop", "real abdomen", f"demo 256 px (n={len(demo)}) median [min, max]"]
    if full:
        cols.append(f"full 512 px (n={len(full)})")
    cols.append("demo within tolerance")
    rows = []
    for key, label in ROWS:
        row = [label,
               f"{getattr(chest, key):.2f}" if chest else "absent",
               # The abdomen's "lung" is a few lung bases mixed with bowel gas: only its noise is meaningful.
               f"{getattr(abdomen, key):.2f}" if abdomen and key in ("noise_mad_hu", "noise_lag1_corr", "pixel_mm")
               else ("-" if abdomen else "absent"),
               _summary(demo, key)]
        if full:
            row.append(_summary(full, key))
        if key in TOLERANCE and chest:
            ref, tol = getattr(chest, key), TOLERANCE[key]
            ok = all(abs(getattr(s, key) - ref) <= tol * abs(ref) for s in demo)
            row.append(f"{'yes' if ok else 'NO'} (+-{tol:.0%} of {ref:.1f})")
        else:
            row.append("")
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"\nlung = voxels below -500 HU in the phantoms' truth lung (no lesions) / in the real crop's threshold "
          f"mask; demo generation {cpu_demo:.2f} s CPU per study (texture statistics not included)")
    if chest is None:
        print(f"(real CT not found at {REALCT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
