"""Print the texture statistics of the demo phantoms beside those of the real CT in ../shared/realct/.

One table: noise (MAD of the 3x3-median residual in soft tissue), its lag-1 correlation, the normal lung's
median and p10-p90 width, with the tolerances the generator is held to (tests/test_texture.py). Definitions in
mosmed/texture.py. Usage::

    .venv/bin/python scripts/texture_report.py            # the 20-study demo (256 px) and 3 full-size studies
    .venv/bin/python scripts/texture_report.py --full 0   # the demo only
    .venv/bin/python scripts/texture_report.py --png docs/img   # also the comparison images (below)

``--png DIR`` writes ``texture_demo_vs_real.png`` (the real chest crop beside demo crops of the same size in mm,
resampled to its 1.5 mm pixels, lung window W1500/L-600 above, soft tissue W400/L40 below) and
``texture_demo_full.png`` (whole slices of a normal and a CT-3 demo study at three levels, same windows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mosmed.synthetic import DEMO_SEED, plan_registry, study_phantom  # noqa: E402
from mosmed.texture import TextureStats, texture_stats  # noqa: E402

REALCT = REPO.parent / "shared" / "realct"
# Tolerances of issue 9: noise within 30 % of the real chest crop, lung median and width within 15 %.
TOLERANCE = {"noise_mad_hu": 0.30, "lung_median_hu": 0.15, "lung_p10_p90_hu": 0.15}
ROWS = (
    ("noise_mad_hu", "noise MAD (HU)"),
    ("noise_lag1_corr", "noise lag-1 corr"),
    ("lung_median_hu", "lung median (HU)"),
    ("lung_p10_hu", "lung p10 (HU)"),
    ("lung_p90_hu", "lung p90 (HU)"),
    ("lung_p10_p90_hu", "lung p10-p90 (HU)"),
    ("pixel_mm", "pixel (mm)"),
)


def _real(name: str) -> TextureStats | None:
    from mosmed.volume import read_volume

    path = REALCT / name
    if not path.is_file():
        return None
    vol = read_volume(path)
    return texture_stats(vol.data, vol.spacing)


def _gray(vol, spacing, k: int, window, box=None, px_mm: float | None = None):
    """An axial slice windowed to a grey PIL image (optionally cropped to ``box`` rows/cols and resampled to
    ``px_mm`` pixels)."""
    from PIL import Image

    from mosmed.render import render_pil

    im = render_pil(vol, spacing, "axial", k, window)
    if box is not None:
        (r0, r1), (c0, c1) = box
        im = im.crop((c0, r0, c1, r1))
    if px_mm:
        f = spacing[1] / px_mm
        im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BILINEAR)
    return im


def _montage(rows, labels, out: Path, scale: float = 1.0) -> None:
    from PIL import Image, ImageDraw

    pad, head = 4, 16
    ims = [
        [im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR) for im in r]
        for r in rows
    ]
    widths = [max(r[i].width for r in ims) for i in range(len(ims[0]))]
    heights = [max(im.height for im in r) for r in ims]
    m = Image.new("L", (sum(widths) + pad * (len(widths) + 1), head + sum(heights) + pad * (len(heights) + 1)), 0)
    d = ImageDraw.Draw(m)
    x = pad
    for i, w in enumerate(widths):
        d.text((x + 2, 2), labels[i], fill=255)
        x += w + pad
    y = head + pad
    for r, h in zip(ims, heights):
        x = pad
        for im, w in zip(r, widths):
            m.paste(im, (x, y))
            x += w + pad
        y += h + pad
    m.save(out, optimize=True)


def write_pngs(out_dir: Path) -> list[Path]:
    """The comparison images (see the module docstring); returns their paths."""
    from mosmed.volume import read_volume
    from mosmed.windowing import Window

    out_dir.mkdir(parents=True, exist_ok=True)
    wins = (Window(-600.0, 1500.0), Window(40.0, 400.0))
    real = read_volume(REALCT / "chest_crop_lps_1p5mm.nii.gz")
    ph, _, sp = study_phantom(DEMO_SEED, 1, "CT-0")
    lung_k = np.nonzero(ph.lung.any(axis=(1, 2)))[0]
    ks = [int(lung_k[int(len(lung_k) * 0.3)]), int(lung_k[int(len(lung_k) * 0.45)])]  # heart level, like the crop
    # A crop of the real crop's size in mm (102 x 122 px of 1.5 mm) around the heart: same scale, same windows.
    hh, ww = round(102 * 1.5 / sp[1]), round(122 * 1.5 / sp[2])
    h, w = ph.hu.shape[1:]
    r0, c0 = h // 2 - hh // 2 - round(12 / sp[1]), w // 2 - ww // 2
    box = ((r0, r0 + hh), (c0, c0 + ww))
    rows = [
        [_gray(real.data, real.spacing, 35, win), _gray(real.data, real.spacing, 80, win)]
        + [_gray(ph.hu, sp, k, win, box, 1.5) for k in ks]
        for win in wins
    ]
    a = out_dir / "texture_demo_vs_real.png"
    _montage(rows, ["real chest crop", "real chest crop", "demo study 1 (CT-0)", "demo study 1 (CT-0)"], a, 1.5)
    ph3, _, sp3 = study_phantom(DEMO_SEED, 17, "CT-3")
    rows = []
    for win in wins:
        row = []
        for phx, spx in ((ph, sp), (ph3, sp3)):
            lk = np.nonzero(phx.lung.any(axis=(1, 2)))[0]
            for f in (0.2, 0.5, 0.8):
                row.append(_gray(phx.hu, spx, int(lk[int(len(lk) * f)]), win, px_mm=1.5))
        rows.append(row)
    b = out_dir / "texture_demo_full.png"
    _montage(rows, ["study 1 CT-0 base", "mid", "upper", "study 17 CT-3 base", "mid", "upper"], b, 0.75)
    return [a, b]


def _summary(stats: list[TextureStats], key: str) -> str:
    vals = [getattr(s, key) for s in stats]
    return f"{statistics.median(vals):.2f} [{min(vals):.2f}, {max(vals):.2f}]" if len(vals) > 1 else f"{vals[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20, help="demo studies (256 px), default 20")
    ap.add_argument("--full", type=int, default=3, help="full-size (512 px) studies, default 3")
    ap.add_argument("--png", type=Path, default=None, help="also write the comparison PNGs into this folder")
    args = ap.parse_args(argv)
    if args.png is not None:
        if not (REALCT / "chest_crop_lps_1p5mm.nii.gz").is_file():
            print(f"real CT not found at {REALCT}: no comparison images", file=sys.stderr)
            return 2
        for path in write_pngs(args.png):
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")

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
        row = [
            label,
            f"{getattr(chest, key):.2f}" if chest else "absent",
            # The abdomen's "lung" is a few lung bases mixed with bowel gas: only its noise is meaningful.
            f"{getattr(abdomen, key):.2f}"
            if abdomen and key in ("noise_mad_hu", "noise_lag1_corr", "pixel_mm")
            else ("-" if abdomen else "absent"),
            _summary(demo, key),
        ]
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
    print(
        f"\nlung = voxels below -500 HU in the phantoms' truth lung (no lesions) / in the real crop's threshold "
        f"mask; demo generation {cpu_demo:.2f} s CPU per study (texture statistics not included)"
    )
    if chest is None:
        print(f"(real CT not found at {REALCT})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
