"""A synthetic chest CT, drawn in display orientation from a handful of random anatomical parameters.

The phantom is built in millimetres on the display grid ``(Z, H, W)`` (axis 0 toward the head, row 0 anterior,
column increasing toward the patient's left; see docs/ARCHITECTURE.md). It imitates an unenhanced MosMedData
study (Toshiba Aquilion 64, 120 kV, deep-inspiration breath-hold, arms above the head, soft-tissue kernel
FC07/FC18, 1 mm images kept every 8 mm) and knows its own ground truth: the lung mask it drew, the lesions it
painted, hence the exact lung involvement.

How it is drawn
---------------
Every structure is a signed distance field (mm, negative inside) evaluated on the pixel grid; its coverage
``clip(0.5 - sdf / pixel, 0, 1)`` blends it over what lies beneath, so edges have partial volume. Each kept image
is a 1 mm slab (``SLICE_MM``): tubes (vessels, airways) are cut where their axis passes through the slab, so a
vessel running across the slice is a line and one running through it a dot. Outside in: air, the CT table
(carbon shells around a foam core, a pad), skin, subcutaneous fat, breasts (women), chest-wall and shoulder
muscles, ribs and costal cartilage (cortex and cancellous bone), sternum, scapulae, clavicles, the arms beside
the head in the top slices, the spine (vertebral bodies with cortex, trabecular marrow and endplates, discs,
canal, cord, pedicles, laminae, spinous and transverse processes, paraspinal muscles), the mediastinum
(unenhanced heart in pericardial fat with the atrioventricular groove and coronary arteries, aorta, pulmonary
arteries, venae cavae, azygos vein, oesophagus, trachea and main bronchi, lymph nodes, thyroid), the diaphragm,
and below it liver (with hepatic veins), gallbladder, spleen, stomach (gas over fluid, an air-fluid level),
colon (gas and stool), kidneys, adrenals and crura.

The lungs: parenchyma whose density rises toward the dependent (posterior) side, lobular texture, the speckle
of sub-resolution vessels, pulmonary arteries and veins as space-filling trees per lobe that taper to the
periphery (arteries paired with bronchi whose walls are drawn), major fissures and the minor fissure. Lesions
(ground glass, consolidation with air bronchograms, crazy paving in CT-2..CT-4, a pleural effusion in CT-4)
are peripheral, posterior and basal, thresholded at the quantile that gives the wanted involvement exactly.
The image is then blurred by the kernel's point spread (``PSF_SIGMA_MM``) and given correlated noise: white
noise filtered to a soft-tissue kernel's noise power spectrum (``NOISE_NPS``), amplitude ``NOISE_SD_HU``.

Ground truth: ``lung`` is where the lung's signed distance is negative (pixel centre inside the pleura, outside
mediastinum, diaphragm and effusion); ``lesion`` is inside ``lung``; the effusion is neither (the paper's masks
exclude it). Everything random comes from the ``numpy.random.Generator`` passed in, so a seed gives identical
arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import fft as sfft
from scipy import ndimage
from threadpoolctl import threadpool_limits

__all__ = [
    "Phantom",
    "build_phantom",
    "draw_target",
    "TARGET_RANGES",
    "CONSOLIDATION_SHARE",
    "CRAZY_PAVING_SHARE",
    "EFFUSION_CLASSES",
    "HU",
    "SLICE_MM",
    "PSF_SIGMA_MM",
    "NOISE_SD_HU",
    "NOISE_NPS",
]

# Where each class's involvement is drawn from: the middle of its band with some spread (per cent of lung).
TARGET_RANGES = MappingProxyType(
    {
        "CT-0": (0.0, 0.0),
        "CT-1": (5.0, 20.0),
        "CT-2": (30.0, 45.0),
        "CT-3": (55.0, 70.0),
        "CT-4": (80.0, 92.0),
    }
)
# Share of the lesion volume that is consolidation rather than ground glass: more in the severe classes.
CONSOLIDATION_SHARE = MappingProxyType({"CT-0": 0.0, "CT-1": 0.08, "CT-2": 0.15, "CT-3": 0.3, "CT-4": 0.4})
# Share of the ground glass overlaid by thickened interlobular septa ("crazy paving"): CT-2 .. CT-4 (paper).
CRAZY_PAVING_SHARE = MappingProxyType({"CT-0": 0.0, "CT-1": 0.0, "CT-2": 0.3, "CT-3": 0.45, "CT-4": 0.6})
# Hydrothorax (bilateral, more on the left) is a CT-4 finding in the paper's table.
EFFUSION_CLASSES = frozenset({"CT-4"})

# Unenhanced tissue densities at 120 kV (HU).
HU = MappingProxyType(
    {
        "air": -1000.0,
        "fat": -102.0,
        "skin": 25.0,
        "muscle": 48.0,
        "blood": 40.0,
        "myocardium": 44.0,
        "liver": 58.0,
        "spleen": 47.0,
        "kidney": 31.0,
        "fluid": 9.0,
        "csf": 7.0,
        "cord": 33.0,
        "disc": 82.0,
        "cartilage": 115.0,
        "cancellous": 210.0,
        "cortical": 1250.0,
        "thyroid": 95.0,
        "node": 34.0,
        "stool": 25.0,
        "effusion": 12.0,
        "marrow_fat": -55.0,
    }
)
SLICE_MM = 1.0  # reconstructed thickness of each kept image (MosMedData: 1 mm, every 8th kept)
PSF_SIGMA_MM = 0.6  # in-plane point spread of a soft-tissue kernel (FWHM ~1.4 mm)
# Quantum noise: white noise shaped by NPS(f) ~ f^a exp(-(f/fc)^2) (cycles/mm), standard deviation NOISE_SD_HU.
# With a = 0.5 and fc = 0.22 the spectrum peaks near 0.11 cycles/mm, like a smooth FBP kernel. Calibrated so the
# texture statistic of mosmed.texture (MAD of the 3x3-median residual in soft tissue) of the 256-px demo is
# that of the real chest crop, 20.8 HU (see scripts/texture_report.py).
NOISE_SD_HU = 29.0
NOISE_NPS = MappingProxyType({"a": 0.5, "fc": 0.22})
_BIG = np.float32(1e4)  # "far outside" for signed distances


@dataclass
class Phantom:
    """One synthetic study in display orientation, with its ground truth.

    Attributes
    ----------
    hu : (Z, H, W) int16 Hounsfield units.
    lesion : (Z, H, W) uint8 {0, 1}, lesion voxels (all inside ``lung``).
    lung : (Z, H, W) uint8 {0, 1}, the lungs as drawn (parenchyma, vessels, bronchi inside the lung, fissures,
        lesions; not the trachea, main bronchi or a pleural effusion).
    involvement_pct : float, ``lesion & lung`` voxels / ``lung`` voxels * 100.
    target_pct : float, the involvement that was asked for.
    effusion : (Z, H, W) uint8 {0, 1} pleural fluid (CT-4), or None; never lung, never lesion.
    """

    hu: np.ndarray
    lesion: np.ndarray
    lung: np.ndarray
    involvement_pct: float
    target_pct: float
    effusion: np.ndarray | None = None


def draw_target(category: str, rng: np.random.Generator) -> float:
    """A target involvement (per cent) for a class, inside its band, near the middle."""
    lo, hi = TARGET_RANGES[category]
    return float(rng.uniform(lo, hi)) if hi > 0 else 0.0


# ------------------------------------------------------------------------------------------------ helpers


def _smoothstep(e0: float, e1: float, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _upsampler(n_fine: int, n_coarse: int) -> np.ndarray:
    """(n_fine, n_coarse) smooth interpolation weights: Gaussian kernel of one coarse cell, rows summing to 1."""
    pos = (np.arange(n_fine) + 0.5) * n_coarse / n_fine - 0.5
    d = pos[:, None] - np.arange(n_coarse)[None, :]
    wgt = np.exp(-0.5 * d * d)
    return (wgt / wgt.sum(axis=1, keepdims=True)).astype(np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    """Scale ``a`` to unit standard deviation (estimated on a subsample: a full pass costs more than it gains)."""
    sub = a[::2, ::5, ::3] if a.ndim == 3 else a
    a *= np.float32(1.0 / max(float(sub.std()), 1e-6))
    return a


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: Sequence[float], scale_mm: float
) -> np.ndarray:
    """Band-limited 3D noise of unit spread with features of about ``scale_mm``, on the full grid (float32).

    Drawn on a coarse in-plane grid (cells of about half the feature size), smoothed there, and brought up by
    two matrix products (a separable smooth interpolation): far cheaper than a spline zoom at 512. Fine
    features (cells under 2 pixels) are smoothed on the full grid directly.
    """
    z, h, w = shape
    coarse = int(np.clip(round(scale_mm / (2.2 * min(spacing[1], spacing[2]))), 1, 8))
    if coarse < 2:
        g = rng.standard_normal(shape, dtype=np.float32)
        sig = (scale_mm / spacing[0] / 2.0, scale_mm / spacing[1] / 2.0, scale_mm / spacing[2] / 2.0)
        return _unit(ndimage.gaussian_filter(g, sig, mode="reflect", truncate=3.0))
    ch, cw = max(2, -(-h // coarse)), max(2, -(-w // coarse))
    g = rng.standard_normal((z, ch, cw), dtype=np.float32)
    sig = (scale_mm / spacing[0] / 2.0, scale_mm / (spacing[1] * h / ch) / 2.0, scale_mm / (spacing[2] * w / cw) / 2.0)
    g = ndimage.gaussian_filter(g, sig, mode="reflect")
    ry, rx = _upsampler(h, ch), _upsampler(w, cw)
    # Rows first on the small coarse grid, then one plain 2D product (BLAS) for the columns, which leaves the
    # result contiguous: a batched matmul, ``out=`` or a transposed copy each cost more than the products.
    a = np.empty((z, h, cw), np.float32)
    for k in range(z):
        a[k] = ry @ g[k]
    out = (a.reshape(z * h, cw) @ rx.T).reshape(z, h, w)
    return _unit(out)


def _fine_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: Sequence[float], sigma_mm: float
) -> np.ndarray:
    """2D noise per slice, white noise blurred in-plane by ``sigma_mm`` (bone marrow, stool, lung speckle)."""
    g = rng.standard_normal(shape, dtype=np.float32)
    sig = (0.0, max(sigma_mm / spacing[1], 0.3), max(sigma_mm / spacing[2], 0.3))
    return _unit(ndimage.gaussian_filter(g, sig, mode="reflect", truncate=3.0))


def _spectral_noise(rng: np.random.Generator, shape: tuple[int, int, int], spacing: Sequence[float], nps) -> np.ndarray:
    """2D noise per slice with power spectrum ``nps(f)`` (f in cycles/mm), unit standard deviation (float32).

    Slices are independent: kept images are 8 mm apart, far beyond the noise correlation length. The filter is
    normalised from its own power (the variance of filtered unit white noise is the mean of |filter|^2).
    """
    _, h, w = shape
    fy = sfft.fftfreq(h, d=float(spacing[1])).astype(np.float32)
    fx = sfft.fftfreq(w, d=float(spacing[2])).astype(np.float32)
    full = np.sqrt(np.maximum(nps(np.hypot(fy[:, None], fx[None, :])), 0.0)).astype(np.float32)
    full[0, 0] = 0.0
    power = float(np.mean(full.astype(np.float64) ** 2))
    amp = full[:, : w // 2 + 1] * np.float32(1.0 / math.sqrt(max(power, 1e-20)))
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = sfft.rfft2(white, axes=(1, 2), workers=1)
    del white
    spec *= amp
    return sfft.irfft2(spec, s=(h, w), axes=(1, 2), workers=1).astype(np.float32, copy=False)


def _kernel_nps(f):
    a, fc = NOISE_NPS["a"], NOISE_NPS["fc"]
    return np.power(f, a) * np.exp(-((f / fc) ** 2))


class _Grid:
    """Millimetre coordinates of the display grid (y, x centred on the image, z from the bottom edge)."""

    def __init__(self, shape: tuple[int, int, int], spacing: Sequence[float]):
        self.shape = shape
        self.dz, self.dy, self.dx = (float(s) for s in spacing)
        z, h, w = shape
        self.z = (np.arange(z) + 0.5) * self.dz
        self.y = (((np.arange(h) + 0.5) - h / 2.0) * self.dy).astype(np.float32)
        self.x = (((np.arange(w) + 0.5) - w / 2.0) * self.dx).astype(np.float32)
        self.Y, self.X = np.meshgrid(self.y, self.x, indexing="ij")
        self.length = z * self.dz
        self.px = math.sqrt(self.dy * self.dx)

    def row(self, y):
        return y / self.dy + self.shape[1] / 2.0 - 0.5

    def col(self, x):
        return x / self.dx + self.shape[2] / 2.0 - 0.5

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Row and column slices covering the mm rectangle (None when it misses the image)."""
        h, w = self.shape[1], self.shape[2]
        i0 = max(0, int(math.floor(self.row(y0))))
        i1 = min(h, int(math.ceil(self.row(y1))) + 1)
        j0 = max(0, int(math.floor(self.col(x0))))
        j1 = min(w, int(math.ceil(self.col(x1))) + 1)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(i0, i1), slice(j0, j1)


def _cov(sdf, px: float):
    """Area coverage of a pixel by a shape from its signed distance (mm): partial volume at the edge."""
    return np.clip(0.5 - sdf * (1.0 / px), 0.0, 1.0)


def _paint(sl: np.ndarray, sdf, value, px: float) -> None:
    """Blend ``value`` (scalar or array) over ``sl`` with the coverage of ``sdf`` (in place)."""
    c = _cov(sdf, px)
    sl += c * (value - sl)


def _ell(X, Y, xc: float, yc: float, a: float, b: float, p: float = 2.0, ang: float = 0.0):
    """Approximate signed distance (mm) to a (super)ellipse: centre, semi-axes, exponent, rotation (rad)."""
    dx, dy = X - xc, Y - yc
    if ang:
        c, s = math.cos(ang), math.sin(ang)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    u, v = np.abs(dx) / a, np.abs(dy) / b
    if p == 2.0:
        g = np.sqrt(u * u + v * v)
        gr = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
        return (g - 1.0) * g / gr
    up, vp = u**p, v**p
    f = up + vp + 1e-12
    g = f ** (1.0 / p)
    # |grad g| = f^(1/p - 1) * |(u^(p-1)/a, v^(p-1)/b)|
    gr = f ** (1.0 / p - 1.0) * np.sqrt((up / (u + 1e-9) / a) ** 2 + (vp / (v + 1e-9) / b) ** 2) + 1e-6
    return (g - 1.0) / gr


def _seg_sdf(X, Y, y0: float, x0: float, y1: float, x1: float, r0: float, r1: float):
    """Signed distance to a 2D capsule with linearly varying radius."""
    vy, vx = y1 - y0, x1 - x0
    ll = vy * vy + vx * vx
    yy, xx = Y - y0, X - x0
    s = np.clip((yy * vy + xx * vx) / ll, 0.0, 1.0) if ll > 1e-9 else np.zeros_like(yy)
    d = np.sqrt((yy - s * vy) ** 2 + (xx - s * vx) ** 2)
    return d - (r0 + s * (r1 - r0))


# ------------------------------------------------------------------------------------------------ tubes


def _slab_caps(segs: np.ndarray, zc: float, half: float) -> np.ndarray:
    """The 2D capsules ``(y0, x0, y1, x1, r0, r1)`` where 3D tubes ``segs`` cross the slab ``zc +- half``.

    ``segs`` rows are ``z0, y0, x0, z1, y1, x1, r0, r1`` (mm). A tube is cut along the part of its axis within
    ``half + r * horizontal share`` of the slab centre, which approximates the ellipse a tilted cylinder leaves
    in a plane (a vertical tube gives a disc of its radius, a horizontal one a band). A tube lying along the
    slab at a height ``gap`` from it is cut narrower, ``sqrt(r^2 - gap^2)``.
    """
    if len(segs) == 0:
        return np.zeros((0, 6), np.float32)
    z0, y0, x0, z1, y1, x1, r0, r1 = segs.T
    dz = z1 - z0
    dl = np.sqrt(dz * dz + (y1 - y0) ** 2 + (x1 - x0) ** 2) + 1e-9
    kap = np.sqrt((y1 - y0) ** 2 + (x1 - x0) ** 2) / dl
    rmax = np.maximum(r0, r1)
    b = half + rmax * kap
    flat = np.abs(dz) < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        ta = np.where(flat, 0.0, (zc - b - z0) / np.where(flat, 1.0, dz))
        tb = np.where(flat, 1.0, (zc + b - z0) / np.where(flat, 1.0, dz))
    t0 = np.maximum(0.0, np.minimum(ta, tb))
    t1 = np.minimum(1.0, np.maximum(ta, tb))
    ok = np.where(flat, np.abs(z0 - zc) <= b, t0 <= t1)
    if not ok.any():
        return np.zeros((0, 6), np.float32)
    t0, t1 = t0[ok], t1[ok]
    z0, y0, x0, dz, r0, r1 = z0[ok], y0[ok], x0[ok], dz[ok], r0[ok], r1[ok]
    vy, vx, kap = (y1[ok] - y0), (x1[ok] - x0), kap[ok]
    ra, rb = r0 + t0 * (r1 - r0), r0 + t1 * (r1 - r0)
    # Nearly horizontal tubes: narrower where the slab only grazes them.
    zm = z0 + 0.5 * (t0 + t1) * dz
    gap = np.maximum(0.0, np.abs(zm - zc) - half)
    shrink = np.where(kap > 0.9, np.sqrt(np.clip(1.0 - (gap / np.maximum(np.maximum(ra, rb), 1e-6)) ** 2, 0, 1)), 1.0)
    out = np.stack([y0 + t0 * vy, x0 + t0 * vx, y0 + t1 * vy, x0 + t1 * vx, ra * shrink, rb * shrink], axis=1)
    return out.astype(np.float32)


def _caps_sdf(grid: _Grid, caps: np.ndarray, out: np.ndarray, grow: float = 0.0) -> None:
    """Minimum signed distance to the capsules (grown by ``grow`` mm) into ``out`` (H, W), in place."""
    for y0, x0, y1, x1, r0, r1 in caps:
        rr = max(r0, r1) + grow + 2.0 * grid.px
        bx = grid.box(min(x0, x1) - rr, max(x0, x1) + rr, min(y0, y1) - rr, max(y0, y1) + rr)
        if bx is None:
            continue
        d = _seg_sdf(grid.X[bx], grid.Y[bx], y0, x0, y1, x1, r0 + grow, r1 + grow)
        np.minimum(out[bx], d, out=out[bx])


_OFF = np.arange(-3, 4)
_OI, _OJ = (a.ravel() for a in np.meshgrid(_OFF, _OFF, indexing="ij"))


def _caps_cov(grid: _Grid, caps: np.ndarray, out: np.ndarray) -> None:
    """Coverage (0..1) of many thin capsules, max-combined into ``out`` (H, W), in place.

    Sub-pixel tubes keep their cross-section: drawn with a radius of half a pixel at reduced amplitude (area
    ratio for a dot, width ratio for a line), so a 0.4 mm vessel is a faint dot, not a missing or a full pixel.
    Small capsules are split in pieces of at most 1.5 pixels and drawn all at once on 7 x 7 patches; wide ones
    one by one.
    """
    if len(caps) == 0:
        return
    px = grid.px
    h, w = out.shape
    y0, x0, y1, x1, r0, r1 = (caps[:, i].astype(np.float64) for i in range(6))
    seg = np.hypot(y1 - y0, x1 - x0)
    rmax = np.maximum(r0, r1)
    big = rmax > 1.25 * px
    for i in np.flatnonzero(big):
        rr = rmax[i] + 2.0 * px
        bx = grid.box(min(x0[i], x1[i]) - rr, max(x0[i], x1[i]) + rr, min(y0[i], y1[i]) - rr, max(y0[i], y1[i]) + rr)
        if bx is None:
            continue
        d = _seg_sdf(grid.X[bx], grid.Y[bx], y0[i], x0[i], y1[i], x1[i], r0[i], r1[i])
        np.maximum(out[bx], _cov(d, px), out=out[bx])
    sm = np.flatnonzero(~big)
    if sm.size == 0:
        return
    y0, x0, y1, x1, r0, r1, seg = y0[sm], x0[sm], y1[sm], x1[sm], r0[sm], r1[sm], seg[sm]
    n = np.maximum(1, np.ceil(seg / (1.5 * px))).astype(np.int64)
    cid = np.repeat(np.arange(sm.size), n)
    first = np.repeat(np.cumsum(n) - n, n)
    j = np.arange(cid.size) - first
    ta, tb = j / n[cid], (j + 1) / n[cid]
    Y0, X0 = y0[cid] + ta * (y1 - y0)[cid], x0[cid] + ta * (x1 - x0)[cid]
    Y1, X1 = y0[cid] + tb * (y1 - y0)[cid], x0[cid] + tb * (x1 - x0)[cid]
    R0, R1 = r0[cid] + ta * (r1 - r0)[cid], r0[cid] + tb * (r1 - r0)[cid]
    # Dot-like (short in the plane) tubes lose area quadratically when thinner than a pixel, lines linearly.
    rd0, rd1 = np.maximum(R0, 0.5 * px), np.maximum(R1, 0.5 * px)
    expo = 2.0 - np.clip(seg[cid] / (2.0 * np.maximum(rd0, rd1)), 0.0, 1.0)
    amp = (np.maximum(0.5 * (R0 + R1), 1e-3) / (0.5 * (rd0 + rd1))) ** expo
    ic = np.rint(grid.row(0.5 * (Y0 + Y1))).astype(np.int64)
    jc = np.rint(grid.col(0.5 * (X0 + X1))).astype(np.int64)
    ii = ic[:, None] + _OI[None, :]
    jj = jc[:, None] + _OJ[None, :]
    yy = ((ii + 0.5) - h / 2.0) * grid.dy
    xx = ((jj + 0.5) - w / 2.0) * grid.dx
    vy, vx = (Y1 - Y0)[:, None], (X1 - X0)[:, None]
    ll = vy * vy + vx * vx
    s = np.clip(((yy - Y0[:, None]) * vy + (xx - X0[:, None]) * vx) / np.maximum(ll, 1e-12), 0.0, 1.0)
    d = np.sqrt((yy - Y0[:, None] - s * vy) ** 2 + (xx - X0[:, None] - s * vx) ** 2)
    rad = rd0[:, None] + s * (rd1 - rd0)[:, None]
    c = amp[:, None] * np.clip((rad - d) / px + 0.5, 0.0, 1.0)
    keep = (c > 0.01) & (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
    np.maximum.at(out, (ii[keep], jj[keep]), c[keep].astype(np.float32))


_TREE_AXIS_WEIGHT = np.array([0.5, 1.0, 1.0])


def _tree(
    rng: np.random.Generator,
    root: np.ndarray,
    pts: np.ndarray,
    r_root: float,
    r_min: float,
    max_depth: int,
    first_len: float,
) -> np.ndarray:
    """A branching tree that fills a point cloud: each node splits its points in two along their main axis.

    Space-filling by recursive partition gives vessels that reach every part of the lung and taper with the
    share of lung they feed (radius ~ points^(1/3), Murray's law). Built level by level with every node of a
    level split at once (grouped sums, one sort), not node by node. Rows: ``z0, y0, x0, z1, y1, x1, r0, r1,
    depth``.
    """
    pts = np.asarray(pts, np.float64)
    n_root = len(pts)
    if n_root == 0:
        return np.zeros((0, 9))
    d = pts.mean(axis=0) - root
    d = d / max(float(np.linalg.norm(d)), 1e-6)
    end = root + d * first_len
    out = [np.array([[*root, *end, r_root, r_root * 0.92, 0.0]])]
    # Live nodes: their points (label per point), end position and radius.
    lab = np.zeros(n_root, np.int64)
    node_p = end[None, :].copy()
    node_r = np.array([r_root * 0.92])
    live_pts = pts
    for depth in range(1, max_depth + 1):
        n_nodes = len(node_p)
        cnt = np.bincount(lab, minlength=n_nodes).astype(np.float64)
        cen = np.stack([np.bincount(lab, live_pts[:, i], n_nodes) for i in range(3)], axis=1) / cnt[:, None]
        c = (live_pts - cen[lab]) * _TREE_AXIS_WEIGHT
        cov = np.empty((n_nodes, 3, 3))
        for i in range(3):
            for j in range(i, 3):
                cov[:, i, j] = cov[:, j, i] = np.bincount(lab, c[:, i] * c[:, j], n_nodes)
        # Main axis by two power iterations from the axis of largest spread.
        v = np.zeros((n_nodes, 3))
        v[np.arange(n_nodes), np.argmax(cov[:, [0, 1, 2], [0, 1, 2]], axis=1)] = 1.0
        for _ in range(2):
            v = np.einsum("nij,nj->ni", cov, v)
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        proj = (c * v[lab]).sum(axis=1)
        order = np.lexsort((proj, lab))
        starts = np.concatenate([[0], np.cumsum(cnt.astype(np.int64))[:-1]])
        rank = np.empty(len(lab), np.int64)
        rank[order] = np.arange(len(lab)) - starts[lab[order]]
        side = (rank >= (cnt.astype(np.int64)[lab] + 1) // 2).astype(np.int64)
        child = lab * 2 + side
        ccnt = np.bincount(child, minlength=2 * n_nodes).astype(np.float64)
        exists = np.flatnonzero(ccnt > 0)
        ccen = np.stack([np.bincount(child, live_pts[:, i], 2 * n_nodes) for i in range(3)], axis=1)[exists]
        ccen /= ccnt[exists, None]
        par = exists // 2
        small = ccnt[exists] <= 2
        frac = np.where(small, rng.uniform(0.5, 0.7, exists.size), rng.uniform(0.45, 0.65, exists.size))
        p0 = node_p[par]
        q = p0 + (ccen - p0) * frac[:, None]
        r = np.maximum(r_min, r_root * (ccnt[exists] / n_root) ** (1 / 3.0))
        r = np.minimum(r, node_r[par])
        out.append(np.column_stack([p0, q, node_r[par] * 0.92, r, np.full(exists.size, float(depth))]))
        # Children with two or more points split again.
        keep = ccnt[exists] >= 2
        if not keep.any():
            break
        remap = np.full(2 * n_nodes, -1, np.int64)
        remap[exists[keep]] = np.arange(int(keep.sum()))
        sel = remap[child] >= 0
        lab = remap[child][sel]
        live_pts = live_pts[sel]
        node_p, node_r = q[keep], r[keep]
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------------ parameters


@dataclass
class _P:
    """The random anatomy of one study (mm; z from the bottom edge of the volume, x toward the patient's left,
    y toward posterior)."""

    female: bool
    age: float
    # body half-width, anterior/posterior half-depth
    A: float
    Ba: float
    Bp: float
    cy: float
    cx: float
    fat: float
    muscle: float
    # thoracic cavity (inside the ribs)
    cyc: float
    ryc: float
    rxc: float
    apex: float
    dome_r: float
    dome_l: float
    dome_drop: float
    carina: float
    zh: float
    yh: float
    xh: float
    hz: float
    ha: float
    hb: float
    hang: float
    yv: float
    rib_z1: float
    rib_gap: float
    rib_drop: float
    vert_period: float
    vert_phase: float
    lung_base: float
    lung_grad: float
    fis_slope_r: float
    fis_slope_l: float
    fis_z_r: float
    fis_z_l: float
    minor_z: float
    eff_r: float
    eff_l: float
    stomach_gas: float
    colon_gas: float
    kidney_top_r: float
    kidney_top_l: float
    y_table: float
    pad: float


def _draw_params(rng: np.random.Generator, grid: _Grid, category: str, fit: dict | None) -> _P:
    fov_x = grid.shape[2] * grid.dx
    fov_y = grid.shape[1] * grid.dy
    female = bool(rng.random() < 0.57)
    # Age: the dataset's 18-97, median 47.
    age = float(np.clip(rng.normal(48.0, 15.0), 18.0, 92.0))
    A = float(rng.uniform(150.0, 178.0)) * (0.93 if female else 1.0)
    A = min(A, 0.43 * fov_x)
    B = A * float(rng.uniform(0.64, 0.74))
    B = min(B, 0.36 * fov_y)
    Ba, Bp = B * 1.02, B * 0.98
    cy = float(rng.uniform(-18.0, -4.0))
    cx = float(rng.uniform(-4.0, 4.0))
    fat = float(rng.uniform(4.0, 20.0)) * (1.2 if female else 1.0)
    muscle = float(rng.uniform(5.0, 10.0))
    # Chest wall, skin to pleura (see _Anatomy._slice): skin, fat, muscle, the 12 mm rib ring.
    ant_wall = 15.6 + fat * 0.8 + muscle * 1.6
    post_wall = 31.6 + fat * 0.45 + muscle * 0.6
    lat_wall = 15.6 + fat * 1.21 + muscle * 0.6
    if fit is not None:
        # Make the cavity hold the real mask's lesions: widen/deepen the body as far as the field of view allows.
        need_x = fit["xmax"] + 6 + lat_wall - cx
        A = float(np.clip(max(A, need_x), A, 0.48 * fov_x))
        lat_wall = min(lat_wall, A - fit["xmax"] - 4 + cx) if A - lat_wall < fit["xmax"] + 4 else lat_wall
        y_ant_need = fit["ymin"] - 6
        y_post_need = fit["ymax"] + 6
        B = float(max(B, (y_post_need + post_wall - (y_ant_need - ant_wall)) / 2))
        B = min(B, 0.46 * fov_y)
        Ba, Bp = B, B
        cy = float(
            np.clip((y_ant_need - ant_wall + y_post_need + post_wall) / 2, -0.5 * fov_y + B + 2, 0.5 * fov_y - B - 2)
        )
    y_front = cy - Ba + ant_wall
    y_back = cy + Bp - post_wall
    cyc, ryc = (y_front + y_back) / 2, (y_back - y_front) / 2
    rxc = A - lat_wall
    L = grid.length
    scale = min(1.0, L / 300.0)
    apex = L - float(rng.uniform(28.0, 50.0)) * scale
    height = float(rng.uniform(190.0, 240.0))
    dome_drop = float(rng.uniform(55.0, 75.0))
    bottom = float(rng.uniform(35.0, 60.0)) * scale
    room = apex - bottom
    if height + dome_drop > room:
        f = room / (height + dome_drop)
        height, dome_drop = height * f, dome_drop * f
    dome_r = apex - height
    if fit is not None:
        apex = max(apex, min(L - 2.0, fit["zmax"] + 10.0))
        dome_r = min(dome_r, max(fit["zmin"] + dome_drop * 0.5, 12.0))
    height = apex - dome_r
    dome_l = dome_r - float(rng.uniform(8.0, 18.0)) * min(1.0, height / 200.0)
    carina = dome_r + 0.58 * height
    hz = 0.26 * height
    zh = dome_l + hz * 0.75
    yh = cyc - 0.32 * ryc
    xh = 0.16 * rxc
    yv = cyc + ryc - 28.0
    lung_base = float(rng.uniform(-855.0, -835.0))
    lung_grad = float(rng.uniform(80.0, 105.0))
    eff_l = eff_r = 0.0
    if category in EFFUSION_CLASSES and fit is None:
        eff_l = float(rng.uniform(20.0, 36.0))
        eff_r = eff_l * float(rng.uniform(0.45, 0.8))
    y_back_skin = cy + Bp * 0.96
    pad = float(rng.uniform(6.0, 16.0))
    return _P(
        female=female,
        age=age,
        A=A,
        Ba=Ba,
        Bp=Bp,
        cy=cy,
        cx=cx,
        fat=fat,
        muscle=muscle,
        cyc=cyc,
        ryc=ryc,
        rxc=rxc,
        apex=apex,
        dome_r=dome_r,
        dome_l=dome_l,
        dome_drop=dome_drop,
        carina=carina,
        zh=zh,
        yh=yh,
        xh=xh,
        hz=hz,
        ha=float(rng.uniform(0.44, 0.50)) * rxc,
        hb=float(rng.uniform(0.50, 0.58)) * ryc,
        hang=float(np.deg2rad(rng.uniform(28.0, 42.0))),
        yv=yv,
        rib_z1=apex + float(rng.uniform(4.0, 12.0)),
        rib_gap=float(rng.uniform(21.0, 25.0)) * min(1.0, height / 210.0),
        rib_drop=float(rng.uniform(85.0, 105.0)) * min(1.0, height / 210.0),
        vert_period=float(rng.uniform(24.0, 28.0)) * min(1.0, height / 210.0),
        vert_phase=float(rng.uniform(0, 30)),
        lung_base=lung_base,
        lung_grad=lung_grad,
        fis_slope_r=float(rng.uniform(0.9, 1.3)),
        fis_slope_l=float(rng.uniform(0.9, 1.3)),
        fis_z_r=dome_r + 0.55 * height,
        fis_z_l=dome_r + 0.58 * height,
        minor_z=dome_r + 0.42 * height,
        eff_r=eff_r,
        eff_l=eff_l,
        stomach_gas=float(rng.uniform(0.25, 0.6)),
        colon_gas=float(rng.uniform(0.3, 0.8)),
        kidney_top_r=dome_r - float(rng.uniform(95.0, 120.0)) * scale,
        kidney_top_l=dome_r - float(rng.uniform(80.0, 100.0)) * scale,
        y_table=y_back_skin + pad,
        pad=pad,
    )


def _tubes(p: _P, L: float, rng: np.random.Generator) -> dict[str, list[tuple]]:
    """3D tubes (mm, z from the bottom): great vessels, airways, oesophagus, liver veins, coronaries, nodes."""
    z_arch = min(p.carina + 22.0, p.apex - 25.0)
    ya, xa = p.yh - 0.12 * p.ryc, p.cx - 0.10 * p.rxc  # ascending aorta
    yd, xd = p.yv - 22.0, p.cx + 24.0  # descending aorta, left of the spine
    heart_top = p.zh + 0.6 * p.hz
    yt = p.yv - 36.0  # trachea, in front of the oesophagus
    ra = 13.0 + 0.05 * (p.age - 40.0)  # the aorta widens with age
    aorta = [
        (heart_top, ya, xa, z_arch, ya, xa, ra, ra + 1.0),
        (z_arch, ya, xa, z_arch + 12.0, (ya + yd) / 2 - 6.0, (xa + xd) / 2, ra + 1.0, ra),
        (z_arch + 12.0, (ya + yd) / 2 - 6.0, (xa + xd) / 2, z_arch, yd, xd, ra, ra - 0.5),
        (z_arch, yd, xd, p.dome_l - 10.0, yd + 2.0, xd - 6.0, ra - 0.5, ra - 1.5),
        (p.dome_l - 10.0, yd + 2.0, xd - 6.0, -20.0, p.yv - 24.0, p.cx + 10.0, ra - 1.5, ra - 2.5),
    ]
    top = L + 20.0
    branches = [
        (z_arch + 8.0, ya + 4.0, xa + 2.0, top, ya + 4.0, xa - 16.0, 6.5, 5.5),  # brachiocephalic -> R carotid
        (z_arch + 10.0, (ya + yd) / 2 - 4, p.cx + 6.0, top, (ya + yd) / 2 - 2, p.cx + 16.0, 4.5, 4.0),
        (z_arch + 8.0, yd - 6.0, xd - 4.0, top, yd - 10.0, xd + 14.0, 5.5, 5.0),  # left subclavian
        (z_arch + 40.0, ya + 6.0, xa - 30.0, top, ya + 10.0, xa - 34.0, 7.0, 6.0),  # right jugular
        (z_arch + 40.0, ya + 2.0, p.cx + 28.0, top, ya + 8.0, p.cx + 30.0, 6.5, 6.0),  # left jugular
        (z_arch + 40.0, ya + 2.0, p.cx + 28.0, z_arch + 16.0, ya - 2.0, xa - 10.0, 5.5, 5.5),  # brachiocephalic v.
    ]
    svc = [(z_arch + 40.0, ya + 6.0, xa - 30.0, heart_top - 6.0, ya + 8.0, xa - 24.0, 9.0, 11.0)]
    ivc = [
        (
            -20.0,
            p.yv - 22.0,
            p.cx - 0.22 * p.rxc,
            p.zh - 0.55 * p.hz,
            p.yh + 0.25 * p.hb,
            p.cx - 0.2 * p.rxc,
            12.0,
            13.0,
        )
    ]
    azygos = [
        (-20.0, p.yv - 6.0, p.cx - 12.0, p.carina - 4.0, p.yv - 8.0, p.cx - 13.0, 4.0, 4.5),
        (p.carina - 4.0, p.yv - 8.0, p.cx - 13.0, p.carina + 6.0, ya + 6.0, xa - 22.0, 4.5, 5.0),
    ]
    pa_split = (p.carina - 14.0, ya + 16.0, p.cx + 14.0)
    pulm = [
        (heart_top - 4.0, p.yh - 0.45 * p.hb, p.xh + 8.0, *pa_split, 13.0, 13.0),
        (*pa_split, p.carina - 12.0, ya + 34.0, p.cx + 0.42 * p.rxc * 0.6, 10.0, 8.5),
        (*pa_split, p.carina - 20.0, ya + 30.0, p.cx - 0.42 * p.rxc * 0.6, 10.0, 8.5),
    ]
    # Pulmonary veins into the left atrium (behind the heart's centre).
    la = (p.zh + 0.15 * p.hz, p.yh + 0.5 * p.hb, p.cx + 4.0)
    pveins = [
        (*la, la[0] + s * 6.0, la[1] + 4.0, p.cx + side * 0.36 * p.rxc, 7.0, 6.0)
        for side in (-1.0, 1.0)
        for s in (-1.0, 1.0)
    ]
    trachea = [(top, yt - 10.0, p.cx, p.carina, yt, p.cx, 9.0, 9.0)]
    bronchi = [
        (p.carina, yt, p.cx, p.carina - 22.0, yt + 6.0, p.cx - 30.0, 7.0, 6.0),
        (p.carina, yt, p.cx, p.carina - 34.0, yt + 10.0, p.cx + 42.0, 6.5, 5.5),
    ]
    esoph = [
        (top, p.yv - 20.0, p.cx + 4.0, p.dome_l - 8.0, p.yv - 24.0, p.cx + 14.0, 7.5, 7.5),
        (p.dome_l - 8.0, p.yv - 24.0, p.cx + 14.0, p.dome_l - 30.0, p.cyc - 0.1 * p.ryc, p.cx + 0.3 * p.rxc, 7.5, 8.0),
    ]
    # Hepatic veins converge on the IVC under the right dome (unenhanced: a little darker than liver).
    ivc_top = (p.dome_r - 12.0, p.yv - 22.0, p.cx - 0.22 * p.rxc)
    hepatic = [
        (*ivc_top, ivc_top[0] - 55.0, p.cyc + dy, p.cx + dx, 5.0, 2.0)
        for dy, dx in ((-0.6 * p.ryc, -0.1 * p.rxc), (-0.2 * p.ryc, -0.65 * p.rxc), (-0.55 * p.ryc, 0.2 * p.rxc))
    ]
    portal = [
        (
            p.dome_r - 90.0,
            p.cyc - 0.1 * p.ryc,
            p.cx - 0.05 * p.rxc,
            p.dome_r - 60.0,
            p.cyc,
            p.cx - 0.4 * p.rxc,
            6.0,
            4.0,
        )
    ]
    # Coronary arteries in the atrioventricular groove, lymph nodes in the mediastinal fat.
    cor = []
    for side in (-1.0, 1.0):
        cor.append(
            (
                heart_top - 8.0,
                ya + 10.0,
                xa + side * 10.0,
                p.zh - 0.4 * p.hz,
                p.yh + side * 0.2 * p.hb,
                p.xh + side * 0.8 * p.ha,
                2.0,
                1.5,
            )
        )
    nodes = []
    for _ in range(int(rng.integers(3, 7))):
        zc = float(rng.uniform(p.carina - 25.0, p.carina + 25.0))
        yc = float(rng.uniform(ya - 5.0, yt + 12.0))
        xc = p.cx + float(rng.uniform(-25.0, 25.0))
        r = float(rng.uniform(2.5, 4.5))
        nodes.append((zc - r, yc, xc, zc + r, yc, xc + 2.0, r, r * 0.9))
    return {
        "aorta": aorta,
        "branches": branches,
        "svc": svc,
        "ivc": ivc,
        "azygos": azygos,
        "pulm": pulm,
        "pveins": pveins,
        "trachea": trachea,
        "bronchi": bronchi,
        "esoph": esoph,
        "hepatic": hepatic,
        "portal": portal,
        "coronary": cor,
        "nodes": nodes,
    }


def _arr(rows: list[tuple]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64).reshape(-1, 8) if rows else np.zeros((0, 8))


# ------------------------------------------------------------------------------------------------ drawing


def build_phantom(
    shape_zyx: Sequence[int],
    spacing: Sequence[float],
    category: str,
    rng: np.random.Generator,
    target_involvement: float | None = None,
    lesion_mask: np.ndarray | None = None,
) -> Phantom:
    """Draw one synthetic chest CT in display orientation.

    Parameters
    ----------
    shape_zyx : (Z, H, W)
    spacing : (dz, dy, dx) in mm.
    category : "CT-0" .. "CT-4"; sets the involvement band, the share of consolidation and of crazy paving, and
        (CT-4) a pleural effusion.
    rng : numpy Generator; the only source of randomness.
    target_involvement : per cent of lung to involve; drawn inside the class band when None.
    lesion_mask : optional (Z, H, W) {0,1} lesions to paint instead of drawn ones (the replica's real masks):
        the lungs are sized to hold them, and lung is drawn wherever the mask is.

    Returns
    -------
    Phantom

    Notes
    -----
    BLAS runs on one thread here: the generator's many small matrix products are several times slower with a
    thread pool on a shared 2-core machine (workers already run in parallel), and one thread keeps the arrays
    bit-identical whatever the machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _build(shape_zyx, spacing, category, rng, target_involvement, lesion_mask)


def _build(
    shape_zyx: Sequence[int],
    spacing: Sequence[float],
    category: str,
    rng: np.random.Generator,
    target_involvement: float | None,
    lesion_mask: np.ndarray | None,
) -> Phantom:
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (Z, H, W) with positive sizes, got {tuple(shape_zyx)}")
    if category not in TARGET_RANGES:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(TARGET_RANGES)}")
    spacing = tuple(float(s) for s in spacing)
    grid = _Grid(shape, spacing)
    fit = None
    if lesion_mask is not None:
        lesion_mask = np.asarray(lesion_mask) > 0
        if lesion_mask.shape != shape:
            raise ValueError(f"lesion mask shape {lesion_mask.shape} differs from the grid {shape}")
        if lesion_mask.any():
            zi, yi, xi = np.nonzero(lesion_mask)
            fit = {
                "zmin": float(grid.z[zi.min()]),
                "zmax": float(grid.z[zi.max()]),
                "ymin": float(grid.y[yi.min()]),
                "ymax": float(grid.y[yi.max()]),
                "xmax": float(np.abs(grid.x[[xi.min(), xi.max()]]).max()),
            }
    p = _draw_params(rng, grid, category, fit)
    tubes = _tubes(p, grid.length, rng)
    anatomy = _Anatomy(grid, p, tubes, rng)
    hu, lung, lung_cov, wall_depth, effusion, extras = anatomy.draw()
    if lesion_mask is not None:
        # The replica: lungs must hold the real lesions, so lung is drawn wherever the mask is (a little beyond).
        grown = ndimage.binary_dilation(lesion_mask, iterations=2) & (lung_cov > 0.0) | lesion_mask
        add = grown & ~lung
        lung |= grown
        lung_cov[add] = 1.0
        effusion &= ~lung
    extras["tex"] = anatomy.tex
    extras["ves"], extras["bw"], extras["bl"] = _vessel_trees(grid, p, lung, rng)
    lungimg = _lung_image(grid, p, lung, lung_cov, extras, rng)
    lesion, target, lungimg = _lesions(
        grid, p, category, lung, lungimg, wall_depth, extras, rng, target_involvement, lesion_mask
    )
    _airways_in_lung(lungimg, extras)
    hu += lung_cov * (lungimg - hu)
    del lungimg
    # Kernel blur (partial volume of everything below the pixel size), then correlated quantum noise.
    sig = PSF_SIGMA_MM / grid.dy, PSF_SIGMA_MM / grid.dx
    if max(sig) > 0.15:
        hu = ndimage.gaussian_filter(hu, (0.0, sig[0], sig[1]), mode="nearest", truncate=3.0)
    _add_noise(hu, grid, p, extras["body"], rng)
    out = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    n_lung = int(lung.sum())
    inv = 100.0 * float((lesion & lung).sum()) / max(n_lung, 1)
    return Phantom(
        hu=out,
        lesion=lesion.astype(np.uint8),
        lung=lung.astype(np.uint8),
        involvement_pct=inv,
        target_pct=float(target),
        effusion=effusion.astype(np.uint8) if effusion.any() else None,
    )


class _Anatomy:
    """Draws the slices of one study: everything but the inside of the lungs, and the lungs' extent."""

    def __init__(self, grid: _Grid, p: _P, tubes: dict[str, list[tuple]], rng: np.random.Generator):
        self.g, self.p, self.rng = grid, p, rng
        self.tubes = tubes
        X, Y = grid.X, grid.Y
        self.Xc = X - np.float32(p.cx)
        self.Yv = Y - np.float32(p.cyc)
        # Angle around the cavity centre: 0 anterior, pi posterior (both sides); radius from it.
        self.phi = np.abs(np.arctan2(self.Xc, -self.Yv)).astype(np.float32)
        self.rho = np.hypot(self.Xc, self.Yv).astype(np.float32) + np.float32(1e-3)
        self.bsel = Y < p.cy
        hang = p.hang
        self.hu_u = ((Y - p.yh) * math.cos(hang) + (X - p.xh) * math.sin(hang)).astype(np.float32)
        self.hu_v = (-(Y - p.yh) * math.sin(hang) + (X - p.xh) * math.cos(hang)).astype(np.float32)
        self.table_img, self.table_cov = self._table()
        self._cav: np.ndarray | None = None
        self._msdf: np.ndarray | None = None
        self.solid = _arr(
            tubes["aorta"]
            + tubes["branches"]
            + tubes["svc"]
            + tubes["ivc"]
            + tubes["azygos"]
            + tubes["pulm"]
            + tubes["pveins"]
        )
        self.esoph = _arr(tubes["esoph"])
        self.airway = _arr(tubes["trachea"] + tubes["bronchi"])
        self.hepatic = _arr(tubes["hepatic"] + tubes["portal"])
        self.coronary = _arr(tubes["coronary"])
        self.nodes = _arr(tubes["nodes"])
        # Rib heights: 12 ribs, the posterior end of rib k at rib_z1 - k * gap, falling anteriorly.
        self.rib_post = np.array([p.rib_z1 - k * p.rib_gap for k in range(12)])
        self.rib_drop = np.array([p.rib_drop * (0.55 if k == 0 else 1.0 + 0.04 * k) for k in range(12)])
        # Anterior end of the bony rib (then cartilage to the sternum or the costal margin, or none: 11-12).
        self.rib_end = np.array([0.22, 0.26, 0.28, 0.3, 0.3, 0.32, 0.33, 0.36, 0.4, 0.45, 0.55, 0.62]) * np.pi
        self.cart_end = np.array([0.1, 0.11, 0.12, 0.12, 0.13, 0.14, 0.15, 0.2, 0.27, 0.34, 0.55, 0.62]) * np.pi
        self.calcified = p.age > 55 and rng.random() < (p.age - 45) / 50.0
        self.tex = _smooth_noise(rng, grid.shape, (grid.dz, grid.dy, grid.dx), 5.0)  # organ texture
        # Low-frequency warp of outlines (mm per unit): no body, lung or organ contour is a true ellipse.
        self.warp = _smooth_noise(rng, grid.shape, (grid.dz, grid.dy, grid.dx), 45.0)
        self.fine = _fine_noise(rng, grid.shape, (grid.dz, grid.dy, grid.dx), 0.8)  # bone marrow, stool

    # ----------------------------------------------------------------------------------- fixed parts

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """The CT table (curved carbon shells around a foam core) and a pad under the patient: fixed in z."""
        g, p = self.g, self.p
        X, Y = g.X, g.Y
        img = np.full(g.shape[1:], HU["air"], np.float32)
        # A cradle: the table top rises toward its edges; a foam pad between it and the patient's back. Both
        # foams (~50 kg/m3) are nearly air, about -950 HU.
        yt = p.y_table - 0.00055 * X**2
        side = np.abs(X) - 215.0
        pad = np.maximum(np.maximum((yt - p.pad) - Y, Y - yt), np.abs(X) - 190.0)
        _paint(img, pad, -935.0, g.px)
        top = np.maximum(np.abs(Y - (yt + 1.2)) - 1.2, side)
        core = np.maximum(np.abs(Y - (yt + 14.0)) - 11.6, side)
        bot = np.maximum(np.abs(Y - (yt + 26.6)) - 1.0, side)
        _paint(img, core, -965.0, g.px)
        _paint(img, top, 520.0, g.px)
        _paint(img, bot, 480.0, g.px)
        return img, (img > -999.0)

    # ----------------------------------------------------------------------------------- per slice

    def draw(self):
        g = self.g
        nz = g.shape[0]
        hu = np.empty(g.shape, np.float32)
        lung = np.zeros(g.shape, bool)
        lung_cov = np.zeros(g.shape, np.float32)
        wall_depth = np.zeros(g.shape, np.float32)
        effusion = np.zeros(g.shape, bool)
        body = np.zeros(g.shape, bool)
        fis = np.zeros(g.shape, np.float32)
        yfront = np.zeros(nz, np.float32)
        yback = np.zeros(nz, np.float32)
        for k in range(nz):
            sl, lsdf, cav, bsdf, eff, fk, yf, yb = self._slice(k)
            hu[k] = sl
            lung[k] = lsdf < 0
            lung_cov[k] = _cov(lsdf, g.px)
            wall_depth[k] = -cav
            effusion[k] = eff
            body[k] = bsdf < 0
            fis[k] = fk
            yfront[k], yback[k] = yf, yb
        extras = {"body": body, "fis": fis, "yfront": yfront, "yback": yback}
        return hu, lung, lung_cov, wall_depth, effusion, extras

    def _slice(self, k: int):
        g, p, px = self.g, self.p, self.g.px
        X, Y, Xc, Yv = g.X, g.Y, self.Xc, self.Yv
        z = float(g.z[k])
        tex = self.tex[k]
        sl = self.table_img.copy()

        # ---- body outline: chest, narrowing to the neck above the apex; breasts; arms beside the head.
        nt = float(_smoothstep(p.apex - 10.0, p.apex + 45.0, z))
        at = float(_smoothstep(p.dome_r - 60.0, p.dome_r - 160.0, z))  # upper abdomen: rounder
        A = p.A * (1.0 - 0.52 * nt) * (1.0 - 0.04 * at)
        Ba, Bp = p.Ba * (1.0 - 0.32 * nt), p.Bp * (1.0 - 0.22 * nt)
        y_back = p.cy + Bp * 0.96
        bsdf = _ell(X, Y, p.cx, p.cy, A, np.where(self.bsel, Ba, Bp), p=2.15 - 0.15 * nt - 0.1 * at)
        warp = self.warp[k]
        bsdf = np.maximum(bsdf + 3.0 * warp, Y - y_back)
        torso = bsdf
        breast = None
        if p.female and p.zh - 45.0 < z < p.zh + 75.0 and nt < 0.5:
            bz = 1.0 - ((z - (p.zh + 15.0)) / 60.0) ** 2
            if bz > 0:
                br = (34.0 + 16.0 * min(p.fat / 25.0, 1.0)) * math.sqrt(bz)
                for s in (-1.0, 1.0):
                    # Supine: flattened domes spreading out over the pectorals.
                    e = _ell(X, Y, p.cx + s * 0.36 * A, p.cy - Ba + 0.36 * br, br * 1.25, br * 0.55, ang=-s * 0.08)
                    breast = e if breast is None else np.minimum(breast, e)
                bsdf = np.minimum(bsdf, breast)
        _paint(sl, bsdf, HU["skin"], px)
        # Subcutaneous fat thicker laterally; the muscle layer under it (pectorals in front, latissimus and
        # serratus at the side, trapezius behind), with an intermuscular fat plane.
        lat = np.abs(np.sin(self.phi))
        fat_t = p.fat * (0.8 + 0.5 * lat - 0.35 * (self.phi / np.pi) ** 2) * (1.0 - 0.5 * nt) + 1.8
        _paint(sl, bsdf + 1.8, HU["fat"] + 6.0 * tex, px)
        if breast is not None:
            # Fibroglandular tissue behind the nipple in the breast fat.
            # Fibroglandular tissue in a cone behind the nipple (patchy), fat around it.
            gl = np.maximum(np.maximum(breast + 8.0, (0.1 - tex) * 6.0), np.abs(Xc) - 0.5 * A - 45.0)
            gl = np.maximum(gl, -(np.abs(Xc) - 0.5 * A + 45.0))
            _paint(sl, gl, 18.0 + 10.0 * tex, px)
        msdf = torso + fat_t
        _paint(sl, msdf, HU["muscle"] + 3.0 * tex, px)
        # Muscle thickness around the chest: pectorals in front (thicker up top), thin serratus at the side,
        # latissimus, rhomboids and trapezius behind; an intermuscular fat plane in it.
        ph = self.phi
        ant = np.clip(1.0 - ph / (0.45 * np.pi), 0.0, 1.0)
        post = np.clip((ph - 0.6 * np.pi) / (0.4 * np.pi), 0.0, 1.0)
        upper = float(_smoothstep(p.carina - 50.0, p.carina + 30.0, z))
        mus_t = p.muscle * (0.6 + (1.0 + 0.8 * upper - 0.6 * at) * ant) + (0.6 * p.muscle + 16.0) * post
        plane = np.abs(msdf + 0.5 * mus_t) - 0.7
        _paint(sl, np.maximum(plane, -msdf - 3.0), HU["fat"], px)

        # ---- thoracic cavity (inside the ribs): the body less the chest wall, narrowing at the apex.
        s = 0.55 + 0.45 * float(_smoothstep(p.apex + 12.0, p.apex - 80.0, z))
        rxc, ryc = p.rxc * s, p.ryc * (0.75 + 0.25 * s)
        cav = np.maximum(msdf + mus_t + 12.0, _ell(X, Y, p.cx, p.cyc, rxc * 1.1 + 6.0, ryc * 1.1 + 6.0, p=2.25))
        notch = _ell(X, Y, p.cx, p.yv + 18.0, 24.0, 30.0)
        cav = np.maximum(cav, -notch)
        if nt > 0.6:
            cav = cav + (nt - 0.6) * 60.0  # the neck has no pleural cavity
        self._ribs(sl, cav, z, k)
        self._cav, self._msdf = cav, msdf
        # Extrapleural and mediastinal fat; at the root of the neck, muscle (scalenes, longus colli, straps).
        _paint(sl, cav + 0.8, HU["fat"] + (HU["muscle"] - HU["fat"]) * min(1.0, 1.6 * nt) + 4.0 * tex, px)

        # ---- scapulae, clavicles, sternum, spine, arms
        self._shoulder_girdle(sl, z, k, y_back)
        self._sternum(sl, z, cav, ryc, k)
        spine_sdf = self._spine(sl, z, k, y_back)
        if z > p.apex + 8.0:
            self._arms(sl, z, k, A, nt)

        # ---- diaphragm and the abdomen below the domes.
        dome, gd = self._dome()
        # Abdominal cavity (< 0 inside), clear of the vertebra.
        below = np.maximum(np.maximum(cav, (z - dome) / gd), -(spine_sdf - 2.0))
        if (below < 2 * px).any():
            _paint(sl, np.maximum(cav, (z - dome - 4.0) / gd), HU["muscle"], px)  # diaphragm
            _paint(sl, below, HU["fat"] + 5.0 * tex, px)
            self._abdomen(sl, z, k, below, cav, rxc, ryc)

        # ---- mediastinum
        med = self._mediastinum(sl, z, k, cav, ryc, dome, gd)
        med = np.minimum(med, spine_sdf - 2.0)

        # ---- lungs: the cavity less mediastinum, diaphragm and apex dome; effusion (CT-4) at the back.
        apex_z = p.apex - 32.0 * (((np.abs(Xc) - 0.45 * rxc) / (0.55 * rxc)) ** 2 + ((Yv - 0.1 * ryc) / ryc) ** 2)
        sdf_apex = (z - apex_z) / 1.2
        sdf_dome = (dome + 4.0 - z) / gd
        lsdf = np.maximum(np.maximum(cav + 0.8, -med), np.maximum(sdf_dome, sdf_apex))
        eff = np.zeros(sl.shape, bool)
        if p.eff_l > 0 or p.eff_r > 0:
            zb = p.dome_l - p.dome_drop
            hgt = float(_smoothstep(zb + 110.0, zb + 5.0, z))
            if hgt > 0:
                t = np.where(Xc > 0, p.eff_l, p.eff_r) * hgt
                post = np.clip((Yv + 0.25 * ryc) / (0.9 * ryc), 0.0, 1.0) ** 1.2
                esdf = np.maximum(lsdf, -cav - 0.8 - t * post)
                _paint(sl, esdf, HU["effusion"] + 3.0 * tex, px)
                eff = esdf < 0
                lsdf = np.maximum(lsdf, -esdf)
        # Fissures (line coverage for the lung image) where the lung is.
        fk = self._fissures(z, lsdf, rxc)
        ys = np.where((lsdf < 0).any(axis=1))[0]
        yf = float(g.y[ys[0]]) if ys.size else p.cyc - ryc
        yb = float(g.y[ys[-1]]) if ys.size else p.cyc + ryc
        return sl, lsdf, cav, bsdf, eff, fk, yf, yb

    def _dome(self):
        p = self.p
        Xc, Yv = self.Xc, self.Yv
        r = p.rxc
        q_r = ((Xc + 0.42 * r) / (0.55 * r)) ** 2 + ((Yv + 0.1 * p.ryc) / (1.25 * p.ryc)) ** 2
        q_l = ((Xc - 0.42 * r) / (0.55 * r)) ** 2 + ((Yv + 0.1 * p.ryc) / (1.25 * p.ryc)) ** 2
        dome = np.where(Xc < 0, p.dome_r - p.dome_drop * q_r, p.dome_l - p.dome_drop * q_l)
        # |grad dome| in mm/mm: steep at the sides, flat at the top (clamped: the slab cuts the top tangentially).
        gr = np.where(
            Xc < 0, p.dome_drop * 2.0 * np.sqrt(q_r) / (0.8 * r), p.dome_drop * 2.0 * np.sqrt(q_l) / (0.8 * r)
        )
        return dome.astype(np.float32), np.maximum(gr, 0.25).astype(np.float32)

    def _ribs(self, sl: np.ndarray, cav: np.ndarray, z: float, k: int) -> None:
        """Ribs (cortex over cancellous bone) and costal cartilage in the ring outside the cavity; the ring is
        intercostal muscle."""
        px = self.g.px
        T = 11.0
        ring = (cav > -1.0) & (cav < T + 1.5)
        idx = np.flatnonzero(ring)
        if idx.size == 0:
            return
        d = cav.ravel()[idx]
        ph = self.phi.ravel()[idx]
        rh = self.rho.ravel()[idx]
        flat = sl.ravel()
        # Intercostal muscle.
        inner = np.maximum(-d, d - T)
        flat[idx] += _cov(inner, px) * (HU["muscle"] - flat[idx])
        best = np.full(idx.size, _BIG, np.float32)
        val = np.zeros(idx.size, np.float32)
        gpost = (np.pi - ph) / np.pi
        fine = self.fine[k].ravel()[idx]
        for r in range(12):
            zp, dr = self.rib_post[r], self.rib_drop[r]
            if not (zp - dr - 12.0 < z < zp + 12.0):
                continue
            zk = zp - dr * gpost**1.2
            # Near the spine the rib runs almost level; its cut is kept to a few cm (neck, then the angle).
            slope = np.maximum(dr * 1.2 * np.maximum(gpost, 1e-3) ** 0.2 / np.pi / rh, 0.16)
            hr = 9.5 if r > 0 else 12.0
            # Oval cross-section: half-length along the wall (the cut of a sloping rib), half-thickness across.
            la = 0.5 * hr / slope
            tr = 0.5 * (4.2 + 2.6 * (ph / np.pi) ** 2)
            ua = (z - zk) / slope / la
            vr = (d - (1.0 + tr)) / tr
            q = np.sqrt(ua * ua + vr * vr)
            base = (q - 1.0) * q / (np.sqrt((ua / la) ** 2 + (vr / tr) ** 2) + 1e-6)
            post_end = (ph - 0.92 * np.pi) * rh
            bone = np.maximum(np.maximum(base, (self.rib_end[r] - ph) * rh), post_end)
            cart = np.maximum(np.maximum(base + 0.5, (self.cart_end[r] - ph) * rh), (ph - self.rib_end[r]) * rh)
            vb = 150.0 + 30.0 * fine + (HU["cortical"] - 150.0) * np.clip(1.0 + bone / 1.0, 0, 1)
            vc = HU["cartilage"] + (250.0 if self.calcified else 0.0) * np.clip(1.0 + cart / 1.0, 0, 1)
            take = bone < best
            best = np.where(take, bone, best)
            val = np.where(take, vb, val)
            take = cart < best
            best = np.where(take, cart, best)
            val = np.where(take, vc, val)
        c = _cov(best, px)
        flat[idx] += c * (val - flat[idx])

    def _shoulder_girdle(self, sl: np.ndarray, z: float, k: int, y_back: float) -> None:
        g, p, px = self.g, self.p, self.g.px
        # Scapulae: thin bone plates on the back of the rib cage, in the muscles (subscapularis, infraspinatus);
        # with the arms raised they reach further out and up.
        zt, zb = p.apex + 25.0, p.carina - 75.0
        if zb < z < zt and self._cav is not None:
            u = (z - zb) / (zt - zb)  # 0 inferior angle .. 1 spine of scapula
            cav = self._cav
            ph0 = (0.93 - 0.05 * u) * np.pi  # medial border
            ph1 = (0.80 - 0.22 * min(1.0, 2.0 * u)) * np.pi  # lateral border
            off = 11.0 + 5.0 + 4.0 * u  # outside the ribs
            thick = 1.6 + 2.4 * u + 2.5 * np.clip((ph0 - self.phi) / max(ph0 - ph1, 1e-3), 0, 1) ** 4
            d = np.maximum(np.abs(cav - off) - thick, np.maximum((self.phi - ph0), (ph1 - self.phi)) * self.rho)
            d = np.maximum(d, self._msdf + 2.0)  # inside the muscle layer, never the skin
            _paint(
                sl,
                np.maximum(
                    np.maximum(
                        np.abs(cav - off) - thick - 9.0,
                        np.maximum((self.phi - ph0 - 0.03 * np.pi), (ph1 - 0.05 * np.pi - self.phi)) * self.rho,
                    ),
                    self._msdf + 0.5,
                ),
                HU["muscle"] + 3.0 * self.tex[k],
                px,
            )
            v = HU["cancellous"] + (HU["cortical"] * 0.9 - HU["cancellous"]) * np.clip(1.0 + d / 1.2, 0, 1)
            _paint(sl, d, v, px)
        # Clavicles at the top, from the manubrium laterally and back.
        if p.apex - 20.0 < z < p.apex + 22.0:
            u = (z - (p.apex - 20.0)) / 42.0
            y_front = p.cy - p.Ba * (1.0 - 0.32 * float(_smoothstep(p.apex - 10.0, p.apex + 45.0, z)))
            for s in (-1.0, 1.0):
                x0, y0 = p.cx + s * 18.0, y_front + 16.0
                x1, y1 = p.cx + s * (60.0 + 60.0 * u), y_front + 22.0 + 40.0 * u
                bx = g.box(min(x0, x1) - 15, max(x0, x1) + 15, y0 - 15, y1 + 15)
                if bx is None:
                    continue
                d = _seg_sdf(g.X[bx], g.Y[bx], y0, x0, y1, x1, 5.5, 4.5)
                v = HU["cancellous"] + (HU["cortical"] - HU["cancellous"]) * np.clip(1.0 + d / 1.5, 0, 1)
                _paint(sl[bx], d, v, px)

    def _sternum(self, sl: np.ndarray, z: float, cav: np.ndarray, ryc: float, k: int) -> None:
        g, p, px = self.g, self.p, self.g.px
        z_top, z_man = p.apex - 8.0, p.carina + 18.0
        z_bot = p.dome_r - 30.0
        if not (z_bot < z < z_top):
            return
        ws = 26.0 if z > z_man else (13.0 if z > p.dome_r + 10.0 else 9.0)
        y0 = p.cyc - ryc
        bx = g.box(p.cx - ws - 6, p.cx + ws + 6, y0 - 20.0, y0 + 4.0)
        if bx is None:
            return
        d = _ell(g.X[bx], g.Y[bx], p.cx, y0 - 6.5, ws, 6.0 if z > z_man else 5.5, p=3.0)
        v = (
            HU["cancellous"]
            + 30.0 * self.fine[k][bx]
            + (HU["cortical"] * 0.85 - HU["cancellous"]) * np.clip(1.0 + d / 1.0, 0, 1)
        )
        _paint(sl[bx], d, v, px)

    def _spine(self, sl: np.ndarray, z: float, k: int, y_back: float) -> np.ndarray:
        """Vertebra at this height (body or disc, canal, arch, processes) and paraspinal muscles; returns the
        signed distance of the vertebral body and arch (full slice) for the mediastinum."""
        g, p, px = self.g, self.p, self.g.px
        out = np.full(sl.shape, _BIG, np.float32)
        lumb = float(_smoothstep(p.dome_r, p.dome_r - 150.0, z))
        aw, ad = 17.0 + 5.0 * lumb, 14.0 + 3.0 * lumb
        yv = p.yv
        canal_y = yv + ad + 8.5
        bx = g.box(p.cx - 75.0, p.cx + 75.0, yv - ad - 6.0, y_back + 2.0)
        if bx is None:
            return out
        X, Y = g.X[bx], g.Y[bx]
        sub = sl[bx]
        tex, fine = self.tex[k][bx], self.fine[k][bx]
        # Paraspinal muscles (erector spinae) from the laminae back to the fascia, a fat stripe between them.
        for s in (-1.0, 1.0):
            e = _ell(X, Y, p.cx + s * 26.0, canal_y + 14.0, 24.0, 24.0 + 4.0 * lumb, p=2.2, ang=-s * 0.3)
            _paint(
                sub,
                np.maximum(e, Y - (y_back - 0.45 * p.fat - 3.5)),
                HU["muscle"] + 2.0 + 3.0 * tex - 60.0 * np.clip(tex - 1.3, 0, 1),
                px,
            )
        u = ((z - p.vert_phase) % p.vert_period) / p.vert_period
        disc = u < 0.2
        body = _ell(X, Y, p.cx, yv, aw, ad, p=2.3)
        body = np.maximum(body, -_ell(X, Y, p.cx, canal_y - 1.0, 9.0, 8.0))
        if disc:
            _paint(sub, body, HU["disc"] - 12.0 * np.clip(-body / 8.0, 0, 1), px)
        else:
            endplate = 1.0 - min(abs(u - 0.2), abs(1.0 - u)) / 0.06
            canc = HU["cancellous"] - 30.0 * lumb + 30.0 * fine + 180.0 * max(endplate, 0.0)
            v = canc + (HU["cortical"] - canc) * np.clip(1.0 + body / 1.3, 0, 1)
            _paint(sub, body, v, px)
        dc = np.hypot(X - p.cx, Y - canal_y)
        # Arch: pedicles and laminae around the canal; spinous and transverse processes (thoracic: long and
        # sloping, so a slice shows more or less of them with the vertebral level).
        arch = np.maximum(np.abs(dc - 10.5) - 2.6, (canal_y - 5.0) - Y)
        sp_len = max(4.0, min(18.0 + 16.0 * math.sin(math.pi * u) ** 2, y_back - 0.5 * p.fat - 6.0 - (canal_y + 11.0)))
        spin = _seg_sdf(X, Y, canal_y + 11.0, p.cx, canal_y + 11.0 + sp_len, p.cx, 3.2, 2.4)
        arch = np.minimum(arch, spin)
        if u > 0.35:
            for s in (-1.0, 1.0):
                arch = np.minimum(
                    arch,
                    _seg_sdf(
                        X, Y, canal_y - 1.0, p.cx + s * 9.0, canal_y + 5.0, p.cx + s * (27.0 + 3.0 * lumb), 4.2, 3.6
                    ),
                )
        v = HU["cancellous"] + 40.0 * fine + (HU["cortical"] - HU["cancellous"]) * np.clip(1.0 + arch / 1.2, 0, 1)
        _paint(sub, arch, v, px)
        # Canal: epidural fat, CSF, cord.
        _paint(sub, dc - 8.5, HU["fat"] * 0.6, px)
        _paint(sub, dc - 7.5, HU["csf"], px)
        _paint(sub, np.hypot((X - p.cx) / 1.2, Y - canal_y) - 4.5, HU["cord"], px)
        out[bx] = np.minimum(body, arch)
        return out

    def _arms(self, sl: np.ndarray, z: float, k: int, A: float, nt: float) -> None:
        """Upper arms raised beside the head: round sections lateral to the neck in the top slices."""
        g, p, px = self.g, self.p, self.g.px
        at = float(_smoothstep(p.apex - 15.0, p.apex + 35.0, z))
        fov = 0.5 * g.shape[2] * g.dx
        for s in (-1.0, 1.0):
            xa = p.cx + s * min(A + 54.0 + 20.0 * at, fov - 25.0)
            ya = p.cy + 0.05 * p.Bp
            ra, rb = 40.0 + 4.0 * (p.fat / 20.0), 45.0 + 4.0 * (p.fat / 20.0)
            bx = g.box(xa - ra - 4, xa + ra + 4, ya - rb - 4, ya + rb + 4)
            if bx is None:
                continue
            X, Y = g.X[bx], g.Y[bx]
            sub = sl[bx]
            e = _ell(X, Y, xa, ya, ra, rb, ang=s * 0.3)
            _paint(sub, e, HU["skin"], px)
            _paint(sub, e + 1.8, HU["fat"] + 5.0 * self.tex[k][bx], px)
            _paint(sub, e + 1.8 + 0.5 * p.fat + 3.0, HU["muscle"] + 3.0 * self.tex[k][bx], px)
            dh = np.hypot(X - (xa - s * 4.0), Y - (ya + 6.0))
            v = HU["marrow_fat"] + (HU["cortical"] + 150.0 - HU["marrow_fat"]) * np.clip((dh - 7.0) / 1.0, 0, 1)
            _paint(sub, dh - 11.0, v, px)

    def _abdomen(
        self, sl: np.ndarray, z: float, k: int, below: np.ndarray, cav: np.ndarray, rxc: float, ryc: float
    ) -> None:
        """Liver, gallbladder, spleen, stomach, colon, kidneys, adrenals, crura under the diaphragm."""
        g, p, px = self.g, self.p, self.g.px
        X, Y, Yv = g.X, g.Y, self.Yv
        tex, fine = self.tex[k], self.fine[k]
        dr = p.dome_r - z  # depth below the right dome's top
        # Kidneys (upper poles in the lowest slices) in perirenal fat, adrenals above them.
        for s, ztop in ((-1.0, p.kidney_top_r), (1.0, p.kidney_top_l)):
            xk, yk = p.cx + s * 0.48 * rxc, p.yv + 2.0
            if z < ztop:
                f = math.sqrt(min(1.0, (ztop - z) / 40.0))
                bx = g.box(xk - 45, xk + 45, yk - 40, yk + 40)
                if bx is not None:
                    e = _ell(g.X[bx], g.Y[bx], xk, yk, 30.0 * f + 2, 24.0 * f + 2, ang=s * 0.5)
                    _paint(sl[bx], np.maximum(e - 8.0, below[bx]), HU["fat"], px)
                    _paint(sl[bx], np.maximum(e, below[bx]), HU["kidney"] + 3.0 * tex[bx], px)
            elif z < ztop + 30.0:
                xa_, ya_ = xk - s * 12.0, yk - 18.0
                bx = g.box(xa_ - 25, xa_ + 25, ya_ - 25, ya_ + 25)
                if bx is not None:
                    d = np.minimum(
                        _seg_sdf(g.X[bx], g.Y[bx], ya_, xa_, ya_ + 16.0, xa_ + s * 8.0, 2.2, 1.5),
                        _seg_sdf(g.X[bx], g.Y[bx], ya_, xa_, ya_ + 14.0, xa_ - s * 6.0, 2.0, 1.4),
                    )
                    _paint(sl[bx], np.maximum(d, below[bx]), HU["muscle"] - 10.0, px)
        # Liver: under the right dome, its left lobe across the midline in front; narrower further down.
        lobe = float(np.clip(1.0 - dr / 130.0, 0.0, 1.0))
        x_div = p.cx + rxc * (-0.05 + (0.15 + 0.45 * lobe) * np.clip((-Yv) / ryc + 0.2, 0, 1.2))
        inf = float(np.clip((dr - 60.0) / 120.0, 0.0, 1.0))
        liv = np.maximum(
            np.maximum(below, X - x_div),
            _ell(X, Y, p.cx - 0.35 * rxc, p.cyc, rxc * (1.0 - 0.35 * inf), ryc * (1.1 - 0.3 * inf)),
        )
        liv = liv - 4.0 * self.warp[k] * (liv > -15.0)
        _paint(sl, liv, HU["liver"] + 3.0 * tex, px)
        hep = np.full(sl.shape, _BIG, np.float32)
        _caps_sdf(g, _slab_caps(self.hepatic, z, 0.5 * SLICE_MM), hep)
        _paint(sl, np.maximum(hep, liv), HU["liver"] - 20.0, px)
        if dr > 75.0:
            bx = g.box(p.cx - 0.5 * rxc, p.cx, p.cyc - ryc, p.cyc)
            if bx is not None:
                e = _ell(g.X[bx], g.Y[bx], p.cx - 0.25 * rxc, p.cyc - 0.5 * ryc, 15.0, 20.0)
                _paint(sl[bx], np.maximum(e, liv[bx]), HU["fluid"], px)
        # Spleen: posterolateral left.
        dl = p.dome_l - z
        if 3.0 < dl < 115.0:
            f = math.sqrt(max(0.0, 1.0 - ((dl - 55.0) / 60.0) ** 2))
            e = _ell(X, Y, p.cx + 0.66 * rxc, p.cyc + 0.42 * ryc, 0.25 * rxc * f + 2, 0.42 * ryc * f + 2, ang=-0.6)
            _paint(sl, np.maximum(e, below), HU["spleen"] + 3.0 * tex, px)
        # Stomach under the left dome: wall, fluid behind (dependent), gas in front, a level in between.
        if 2.0 < dl < 120.0:
            f = math.sqrt(max(0.0, 1.0 - ((dl - 45.0) / 75.0) ** 2))
            xs = p.cx + rxc * (0.36 - 0.2 * dl / 120.0)
            ys = p.cyc - ryc * (0.1 + 0.35 * dl / 120.0)
            a, b = 0.3 * rxc * f + 3, 0.36 * ryc * f + 3
            e = np.maximum(_ell(X, Y, xs, ys, a, b, ang=0.4), below)
            _paint(sl, e, HU["muscle"] - 5.0, px)
            inner = e + 4.0 + 1.5 * tex  # wall with folds
            level = ys + b * (1.0 - 2.0 * p.stomach_gas)
            _paint(sl, np.maximum(inner, level - Y), HU["fluid"] + 12.0 + 8.0 * tex, px)
            _paint(sl, np.maximum(inner, Y - level), HU["air"], px)
        # Colon: splenic flexure (left, below the spleen's tip), hepatic flexure, transverse colon lower down.
        segs = []
        if 40.0 < dl < 150.0:
            segs.append((p.cx + 0.7 * rxc, p.cyc - 0.15 * ryc, 19.0, 0.5))
        if dr > 110.0:
            segs.append((p.cx - 0.7 * rxc, p.cyc - 0.45 * ryc, 16.0, 0.8))
        if dr > 140.0:
            segs.append((p.cx - 0.05 * rxc, p.cyc - 0.78 * ryc, 15.0, 1.1))
        for xc, yc, r, ang in segs:
            bx = g.box(xc - 1.6 * r - 6, xc + 1.6 * r + 6, yc - r - 8, yc + r + 8)
            if bx is None:
                continue
            sub, Xs, Ys = sl[bx], g.X[bx], g.Y[bx]
            # Haustra: the outline bulges and folds (texture-modulated), collapsed parts hold stool.
            e = np.maximum(_ell(Xs, Ys, xc, yc, r * 1.5, r, ang=ang) + 3.0 * tex[bx], below[bx] + 1.0)
            _paint(sub, e, HU["muscle"] - 8.0, px)
            inner = e + 2.0
            level = yc + r * (1.0 - 2.0 * p.colon_gas) + 4.0 * tex[bx]
            f = fine[bx]
            stool = np.where(f > 0.7, -850.0 + 150.0 * f, HU["stool"] - 40.0 + 50.0 * f)  # gas mottling
            _paint(sub, np.maximum(inner, level - Ys), stool, px)
            _paint(sub, np.maximum(inner, Ys - level), HU["air"], px)
        # Crura of the diaphragm around the aorta in front of the spine.
        if dl > 0:
            for s in (-1.0, 1.0):
                bx = g.box(p.cx - 40, p.cx + 40, p.yv - 45, p.yv)
                if bx is None:
                    continue
                d = _seg_sdf(
                    g.X[bx], g.Y[bx], p.yv - 12.0, p.cx + s * 14.0, p.yv - 40.0, p.cx + s * 4.0 + 14.0, 4.0, 3.0
                )
                _paint(sl[bx], np.maximum(d, below[bx]), HU["muscle"], px)

    def _mediastinum(
        self, sl: np.ndarray, z: float, k: int, cav: np.ndarray, ryc: float, dome: np.ndarray, gd: np.ndarray
    ) -> np.ndarray:
        """Heart, great vessels, airways, oesophagus, nodes, thyroid; returns the signed distance of what the
        lungs cannot enter."""
        g, p, px = self.g, self.p, self.g.px
        Y, Xc = g.Y, self.Xc
        tex = self.tex[k]
        half = 0.5 * SLICE_MM
        inside = cav
        # A band along the midline: mediastinal fat between the lungs, wider behind and above the carina.
        y_front = p.cyc - ryc
        band_w = 7.0 + 16.0 * np.clip((Y - y_front) / max(p.yv - 20.0 - y_front, 1.0), 0, 1)
        if z > p.carina - 10.0:
            band_w = band_w + 8.0
        med = np.abs(Xc - 3.0 - 3.0 * self.warp[k]) - band_w
        # Heart in its pericardial fat, on the diaphragm.
        dzh = (z - p.zh) / p.hz
        above = (dome + 2.0 - z) / gd  # < 0 above the diaphragm
        if abs(dzh) < 1.2:
            f = math.sqrt(max(1e-3, 1.0 - min(dzh * dzh, 0.999)))
            a, b = p.ha * f, p.hb * f
            hu_u, hu_v = self.hu_u, self.hu_v
            heart = _ell(hu_v, hu_u, 0.0, 0.0, a, b) + 2.5 * self.warp[k]
            heart = np.maximum(heart, above)
            peri = heart - (3.0 + 5.0 * np.clip(hu_v / max(a, 1.0), 0, 1))
            _paint(sl, np.maximum(peri, inside), HU["fat"] + 4.0 * tex, px)
            _paint(
                sl,
                np.maximum(np.abs(heart - 1.8 + 0.5 * (peri - heart + 3.0)) - 0.6, np.maximum(peri, inside)),
                HU["skin"],
                px,
            )  # pericardium
            _paint(sl, np.maximum(heart, inside), HU["blood"] + 2.0 * tex, px)
            # Left ventricular wall a touch denser; the atrioventricular groove's fat with the coronaries.
            lv = np.maximum(heart, -(heart + 9.0))
            _paint(sl, np.maximum(np.maximum(lv, inside), -(hu_v - 0.1 * a)), HU["myocardium"], px)
            groove = np.maximum(np.abs(hu_u + 0.15 * b) - 2.5, -(heart + 9.0))
            _paint(sl, np.maximum(np.maximum(groove, heart), inside), HU["fat"] + 10.0, px)
            cor = np.full(sl.shape, _BIG, np.float32)
            _caps_sdf(g, _slab_caps(self.coronary, z, half), cor)
            _paint(sl, np.maximum(cor, inside), HU["blood"], px)
            if self.calcified:
                _paint(sl, np.maximum(cor + 1.0, inside), 700.0, px)
            med = np.minimum(med, peri)
        # Great vessels (lungs keep a fat margin from them), oesophagus, nodes.
        solid = np.full(sl.shape, _BIG, np.float32)
        _caps_sdf(g, _slab_caps(self.solid, z, half), solid)
        _paint(
            sl, np.maximum(solid, np.minimum(inside, 0.0) + (inside > 2.0) * 40.0 - 1.0), HU["blood"] + 2.0 * tex, px
        )
        if self.calcified:
            ring = np.maximum(np.abs(solid + 0.8) - 0.6, self.fine[k] * 3.0 - 4.5)
            _paint(sl, ring, 500.0, px)
        es = np.full(sl.shape, _BIG, np.float32)
        _caps_sdf(g, _slab_caps(self.esoph, z, half), es)
        _paint(sl, es, HU["muscle"] - 8.0, px)
        if z > p.dome_l:
            _paint(sl, es + 5.5, HU["air"], px)
        nd = np.full(sl.shape, _BIG, np.float32)
        _caps_sdf(g, _slab_caps(self.nodes, z, half), nd)
        _paint(sl, nd, HU["node"], px)
        aw = np.full(sl.shape, _BIG, np.float32)
        _caps_sdf(g, _slab_caps(self.airway, z, half), aw)
        _paint(sl, aw - 1.8, HU["skin"] + 5.0, px)  # tracheal and bronchial wall
        _paint(sl, aw, HU["air"], px)
        med = np.minimum(med, np.minimum(np.minimum(solid - 3.0, es - 3.0), np.minimum(aw - 2.5, nd - 1.0)))
        # Thyroid beside the trachea at the top (unenhanced, iodine makes it dense).
        if p.apex - 15.0 < z < p.apex + 50.0:
            tr = self.tubes["trachea"][0]
            yt = tr[4]
            for s in (-1.0, 1.0):
                bx = g.box(p.cx + s * 18 - 20, p.cx + s * 18 + 20, yt - 25, yt + 15)
                if bx is None:
                    continue
                e = _ell(g.X[bx], g.Y[bx], p.cx + s * 17.0, yt - 4.0, 9.0, 15.0, ang=s * 0.5)
                _paint(sl[bx], e, HU["thyroid"] + 4.0 * tex[bx], px)
                med[bx] = np.minimum(med[bx], e - 3.0)
        return med

    def _fissures(self, z: float, lsdf: np.ndarray, rxc: float) -> np.ndarray:
        """Line coverage of the major fissures and the right minor fissure in this slice (0 outside the lung)."""
        g, p = self.g, self.p
        out = np.zeros(lsdf.shape, np.float32)
        idx = np.flatnonzero(lsdf.ravel() < 1.0)
        if idx.size == 0:
            return out
        X, Y = g.X.ravel()[idx], g.Y.ravel()[idx]
        w = 0.5 * max(g.px, 0.8)
        amp = 0.3 * min(1.0, 0.9 / g.px)
        F = _fissure_fields(p, z, X, Y)
        c = np.zeros(idx.size, np.float32)
        for d in F["lines"]:
            c = np.maximum(c, amp * np.exp(-((d / w) ** 2)))
        out.ravel()[idx] = c
        return out


def _fissure_fields(p: _P, z, X, Y) -> dict:
    """Major fissures (each side) and the right minor fissure.

    ``F_r``/``F_l`` > 0 on the upper lobe's side of a major fissure (higher or more anterior: the fissure runs
    from high at the back down to the front of the diaphragm); ``G`` > 0 above the dome-shaped minor fissure.
    ``lines`` are in-plane distances (mm) to each fissure on its own side, for drawing.
    """
    xr, xl = p.cx - 0.5 * p.rxc, p.cx + 0.5 * p.rxc
    # In an axial slice a major fissure runs from the hilum out and forward to the chest wall, curving.
    F_r = (z - p.fis_z_r) - p.fis_slope_r * (Y - p.cyc + 0.45 * np.abs(X - p.cx) - 0.0015 * (X - xr) ** 2)
    F_l = (z - p.fis_z_l) - p.fis_slope_l * (Y - p.cyc + 0.45 * np.abs(X - p.cx) - 0.0015 * (X - xl) ** 2)
    rm = (X - (p.cx - 0.45 * p.rxc)) ** 2 + (Y - (p.cyc - 0.35 * p.ryc)) ** 2
    G = z - (p.minor_z + 0.0022 * rm)
    right = X < p.cx
    g_r = p.fis_slope_r * np.sqrt(1.0 + (0.45 - 0.003 * np.abs(X - xr)) ** 2)
    g_l = p.fis_slope_l * np.sqrt(1.0 + (0.45 - 0.003 * np.abs(X - xl)) ** 2)
    g_m = np.maximum(0.0044 * np.sqrt(rm), 0.35)
    far = np.float32(1e3)
    lines = [
        np.where(right, F_r / g_r, far),
        np.where(~right, F_l / g_l, far),
        np.where(right & (F_r > 0), G / g_m, far),
    ]
    return {"F_r": F_r, "F_l": F_l, "G": G, "right": right, "lines": lines}


def _vessel_trees(grid: _Grid, p: _P, lung: np.ndarray, rng: np.random.Generator):
    """Pulmonary arteries (with their bronchi) and veins: a tree per lobe from each hilum, drawn as coverage.

    Returns ``(vessels, bronchial wall, bronchial lumen)`` coverage volumes (float32, 0..1).
    """
    shape = grid.shape
    ves = np.zeros(shape, np.float32)
    bwall = np.zeros(shape, np.float32)
    blum = np.zeros(shape, np.float32)
    vox_ml = grid.dz * grid.dy * grid.dx / 1000.0
    ya = p.yh - 0.12 * p.ryc
    vsegs, bsegs = [], []
    for side in (-1.0, 1.0):
        idx = np.flatnonzero((lung & ((grid.X - p.cx)[None] * side > 0)).ravel())
        if idx.size < 50:
            continue
        # About 1400 branch ends per litre-and-a-half lung: ~5 vessel sections per 10 cm2 of a 1 mm slice.
        n = int(np.clip(idx.size * vox_ml / 1500.0 * 4000.0, 60, 6000))
        pick = rng.choice(idx, size=min(idx.size, n), replace=False)
        kz, ky, kx = np.unravel_index(np.sort(pick), shape)
        pts = np.stack([grid.z[kz] + rng.uniform(-0.5, 0.5, kz.size) * grid.dz, grid.y[ky], grid.x[kx]], axis=1)
        F = _fissure_fields(p, pts[:, 0], pts[:, 2], pts[:, 1])
        if side < 0:
            lobe = np.where(F["F_r"] > 0, np.where(F["G"] > 0, 0, 1), 2)
        else:
            lobe = np.where(F["F_l"] > 0, 0, 2)
        art_root = np.array([p.carina - 16.0, ya + 30.0, p.cx + side * 0.25 * p.rxc])
        vein_root = np.array([p.zh + 0.1 * p.hz, p.yh + 0.45 * p.hb, p.cx + side * 0.22 * p.rxc])
        for lb in np.unique(lobe):
            sub = pts[lobe == lb]
            half = rng.random(len(sub)) < 0.5
            share = len(sub) / len(pts)
            for root, part, r0, art in ((art_root, sub[half], 5.5, True), (vein_root, sub[~half], 5.0, False)):
                if len(part) < 2:
                    continue
                arr = _tree(rng, root, part, r0 * share ** (1 / 3.0), 0.8, 14, 12.0)
                vsegs.append(arr[:, :8])
                if art:
                    bsegs.append(arr[(arr[:, 8] >= 1) & (arr[:, 8] <= 6) & (arr[:, 7] >= 0.9)])
    V = np.concatenate(vsegs) if vsegs else np.zeros((0, 8))
    Bw = Bl = np.zeros((0, 8))
    if bsegs and sum(len(b) for b in bsegs):
        b = np.concatenate(bsegs)
        # Bronchi run beside their arteries, offset sideways by both radii.
        d = b[:, 3:6] - b[:, 0:3]
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        perp = np.cross(d, np.array([1.0, 0.0, 0.0]))
        bad = np.linalg.norm(perp, axis=1) < 0.2
        perp[bad] = np.cross(d[bad], np.array([0.0, 1.0, 0.0]))
        perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-9)
        rl0, rl1 = np.minimum(0.8 * b[:, 6], 3.0), np.minimum(0.8 * b[:, 7], 3.0)
        off = (b[:, 6:7] + rl0[:, None] + 1.2 * (0.3 + 0.18 * rl0[:, None])) * perp
        Bl = np.concatenate([b[:, 0:3] + off, b[:, 3:6] + off, rl0[:, None], rl1[:, None]], axis=1)
        Bw = Bl.copy()
        Bw[:, 6:8] = Bl[:, 6:8] * 1.18 + 0.35
    half = 0.5 * SLICE_MM
    for k in range(shape[0]):
        zc = float(grid.z[k])
        _caps_cov(grid, _slab_caps(V, zc, half), ves[k])
        if len(Bw):
            _caps_cov(grid, _slab_caps(Bw, zc, half), bwall[k])
            _caps_cov(grid, _slab_caps(Bl, zc, half), blum[k])
    return ves, bwall, blum


def _lung_image(
    grid: _Grid, p: _P, lung: np.ndarray, lung_cov: np.ndarray, extras: dict, rng: np.random.Generator
) -> np.ndarray:
    """The HU inside the lungs before lesions: gravity gradient, lobular texture, sub-resolution vessels'
    speckle, vessel trees, fissures."""
    shape = grid.shape
    sp = (grid.dz, grid.dy, grid.dx)
    yf, yb = extras["yfront"][:, None], extras["yback"][:, None]
    yrel = np.clip((grid.y[None, :] - yf) / np.maximum(yb - yf, 1.0), 0.0, 1.0)  # (Z, H)
    img = (p.lung_base + p.lung_grad * yrel**1.6).astype(np.float32)[:, :, None] + np.zeros(shape, np.float32)
    img += 9.0 * _smooth_noise(rng, shape, sp, 10.0)
    micro = _fine_noise(rng, shape, sp, 0.7)
    # Vessels below the resolution: a speckle skewed toward dense (exp of Gaussian noise, mean removed).
    img += 16.0 * (np.exp(0.9 * micro) - np.float32(math.exp(0.405)))
    del micro
    ves = extras["ves"]
    img += ves * (HU["blood"] - img)
    img += extras["fis"] * (HU["skin"] - img)
    return img


def _lesions(
    grid: _Grid,
    p: _P,
    category: str,
    lung: np.ndarray,
    img: np.ndarray,
    wall_depth: np.ndarray,
    extras: dict,
    rng: np.random.Generator,
    target_involvement: float | None,
    lesion_mask: np.ndarray | None,
):
    """Ground glass with consolidation cores, crazy paving (CT-2..CT-4), painted into the lung image.

    Returns ``(lesion mask, target per cent, image)``.
    """
    shape = grid.shape
    sp = (grid.dz, grid.dy, grid.dx)
    n_lung = int(lung.sum())
    if lesion_mask is not None:
        lesion = lesion_mask & lung
        target = 100.0 * lesion.sum() / max(n_lung, 1)
    else:
        target = draw_target(category, rng) if target_involvement is None else float(target_involvement)
        target = float(np.clip(target, 0.0, 100.0))
        lesion = np.zeros(shape, bool)
    cons_share = CONSOLIDATION_SHARE[category] if lesion_mask is None else 0.1
    if not n_lung or not (target > 0 or lesion.any()):
        return lesion, target, img
    blob = _smooth_noise(rng, shape, sp, 22.0) + 0.5 * _smooth_noise(rng, shape, sp, 9.0)
    if lesion_mask is None:
        # Peripheral (near the chest wall), posterior and basal preference, then the quantile that gives the
        # target exactly.
        periph = np.exp(-np.maximum(wall_depth, 0.0) / 28.0)
        post = np.clip((grid.y - (p.cyc - p.ryc)) / (2 * p.ryc), 0, 1).astype(np.float32)
        zrel = np.clip((grid.z - p.dome_l) / max(p.apex - p.dome_l, 1.0), 0, 1).astype(np.float32)
        field = blob + 1.6 * periph + (1.1 * post)[None, :, None] + (0.8 * (1 - zrel))[:, None, None]
        del periph
        vals = field[lung]
        n_target = int(round(target / 100.0 * n_lung))
        if n_target > 0:
            thr = np.partition(vals, vals.size - n_target)[vals.size - n_target]
            lesion = lung & (field >= thr)
        else:
            thr = float(vals.max()) + 1.0
    else:
        field = blob + ndimage.distance_transform_edt(lesion, sampling=sp).astype(np.float32) / 6.0
        thr = float(field[lesion].min()) if lesion.any() else 0.0
    if not lesion.any():
        return lesion, target, img
    lv = field[lesion]
    lo = float(thr)
    span = max(float(lv.max()) - lo, 1e-3)
    hi_q = float(np.quantile(lv, 1.0 - cons_share)) if cons_share > 0 else np.inf
    # Work on the lesions and a thin halo around them only.
    delta = 0.06 * span
    near = lung & (field >= lo - delta)
    if lesion_mask is not None:
        # A given mask is the truth: paint it and a partial-volume rim of a voxel or two, never the rest of the
        # lung (the smooth field alone exceeds the mask's lowest value almost everywhere).
        near &= ndimage.binary_dilation(lesion, iterations=2)
    idx = np.flatnonzero(near.ravel())
    f = field.ravel()[idx]
    tex = extras["tex"].ravel()[idx]
    g = np.clip((f - lo) / max(hi_q - lo if np.isfinite(hi_q) else span, 1e-3), 0, 1)
    ggo = -700.0 + 330.0 * g**0.8 + 18.0 * tex
    cons = -45.0 + 70.0 * np.clip((f - hi_q) / (0.3 * span), 0, 1) + 10.0 * tex if np.isfinite(hi_q) else ggo
    wc = _smoothstep(hi_q - 0.04 * span, hi_q + 0.04 * span, f) if np.isfinite(hi_q) else np.zeros_like(f)
    les = (1 - wc) * ggo + wc * cons
    share = CRAZY_PAVING_SHARE[category] if lesion_mask is None else 0.0
    if share > 0:
        # Drawn after the lesion mask, so crazy paving changes densities only, never the truth.
        cp = _smooth_noise(rng, shape, sp, 25.0).ravel()[idx]
        inl = lesion.ravel()[idx]
        cq = np.quantile(cp[inl], 1.0 - share) if inl.any() else np.inf
        # Septal lines: the zero crossings of band-pass noise (~6 mm cells) form a polygonal network.
        net = _spectral_noise(rng, shape, sp, lambda fr: np.exp(-(((fr - 0.085) / 0.03) ** 2))).ravel()[idx]
        lines = np.exp(-((net / 0.22) ** 2)) * _smoothstep(cq - 0.2, cq + 0.2, cp) * (1 - wc)
        les = les + 240.0 * lines
    w = _smoothstep(lo - delta, lo + delta, f)
    if lesion_mask is not None:
        w = np.where(lesion.ravel()[idx], 1.0, 0.35 * w)  # full density inside the mask, a faint rim outside
    cur = img.ravel()[idx]
    img.ravel()[idx] = np.maximum(cur, cur + w * (les - cur))
    return lesion, target, img


def _airways_in_lung(img: np.ndarray, extras: dict) -> None:
    """Bronchial walls and lumens over the lung image (lumens stay dark in consolidation: air bronchograms)."""
    bw, bl = extras["bw"], extras["bl"]
    img += bw * (HU["skin"] + 5.0 - img)
    img += bl * (HU["air"] - img)


def _add_noise(hu: np.ndarray, grid: _Grid, p: _P, body: np.ndarray, rng: np.random.Generator) -> None:
    """Correlated quantum noise (kernel-shaped spectrum), lower outside the body, higher at the shoulders."""
    sd = NOISE_SD_HU * float(rng.uniform(0.92, 1.08))
    nz = grid.shape[0]
    shoulder = 1.0 + 0.18 * _smoothstep(p.apex - 30.0, p.apex + 20.0, grid.z)
    step = 8
    for k0 in range(0, nz, step):
        k1 = min(nz, k0 + step)
        n = _spectral_noise(rng, (k1 - k0, grid.shape[1], grid.shape[2]), (grid.dz, grid.dy, grid.dx), _kernel_nps)
        amp = np.where(body[k0:k1], np.float32(sd), np.float32(0.55 * sd)) * shoulder[k0:k1, None, None].astype(
            np.float32
        )
        hu[k0:k1] += amp * n
