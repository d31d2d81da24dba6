"""A synthetic chest CT, drawn in display orientation from a handful of random anatomical parameters.

The phantom is built in millimetres on the display grid ``(Z, H, W)`` (axis 0 toward the head, row 0 anterior,
column increasing toward the patient's left; see docs/ARCHITECTURE.md). It is meant to look like an
unenhanced 8 mm chest CT of MosMedData in every window the app offers, and to know its own ground truth: the
lung mask it drew, the lesions it painted, hence the exact lung involvement.

Anatomy, outside in: air with slight noise, the CT table, skin, subcutaneous fat, chest-wall muscle, the rib
cage (ribs descending anteriorly, costal cartilage, sternum, scapulae), the spine (vertebral bodies with
cortex, discs, canal, posterior elements, paraspinal muscles), the mediastinum (fat, heart in its pericardial
fat, aorta, pulmonary trunk and arteries, superior vena cava, arch branches, oesophagus, trachea and main
bronchi), the lungs (parenchyma with a gravity gradient, branching vessels that taper, bronchi) and, below the
diaphragm domes, liver, spleen and stomach. Lesions are ground glass with consolidation cores, blob shaped,
mostly peripheral, posterior and basal, thresholded at the quantile that gives the wanted involvement.

Everything random comes from the ``numpy.random.Generator`` passed in, so a seed gives identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["Phantom", "build_phantom", "TARGET_RANGES", "CONSOLIDATION_SHARE", "draw_target"]

# Where each class's involvement is drawn from: the middle of its band with some spread (per cent of lung).
TARGET_RANGES = MappingProxyType({
    "CT-0": (0.0, 0.0),
    "CT-1": (5.0, 20.0),
    "CT-2": (30.0, 45.0),
    "CT-3": (55.0, 70.0),
    "CT-4": (80.0, 92.0),
})
# Share of the lesion volume that is consolidation rather than ground glass: more in the severe classes.
CONSOLIDATION_SHARE = MappingProxyType({"CT-0": 0.0, "CT-1": 0.08, "CT-2": 0.15, "CT-3": 0.3, "CT-4": 0.4})

_SLAB_HALF_FRACTION = 0.5  # a slice integrates +-half its spacing (partial volume of thin vessels)


@dataclass
class Phantom:
    """One synthetic study in display orientation, with its ground truth.

    Attributes
    ----------
    hu : (Z, H, W) int16 Hounsfield units.
    lesion : (Z, H, W) uint8 {0, 1}, lesion voxels (all inside ``lung``).
    lung : (Z, H, W) uint8 {0, 1}, the lungs as drawn (parenchyma, vessels, small bronchi, lesions).
    involvement_pct : float, ``lesion & lung`` voxels / ``lung`` voxels * 100.
    target_pct : float, the involvement that was asked for.
    """

    hu: np.ndarray
    lesion: np.ndarray
    lung: np.ndarray
    involvement_pct: float
    target_pct: float


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


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], spacing: Sequence[float],
                  scale_mm: float, coarse: int = 8) -> np.ndarray:
    """Band-limited noise of unit spread with features of about ``scale_mm``, on the full grid (float32).

    Drawn on a coarse in-plane grid, smoothed there, and brought up by two small matrix products (a separable
    smooth interpolation), which costs far less than a spline zoom of the whole volume at 512 x 512.
    """
    z, h, w = shape
    ch, cw = max(2, -(-h // coarse)), max(2, -(-w // coarse))
    g = rng.standard_normal((z, ch, cw), dtype=np.float32)
    sig = (scale_mm / spacing[0] / 2.0, scale_mm / (spacing[1] * h / ch) / 2.0, scale_mm / (spacing[2] * w / cw) / 2.0)
    g = ndimage.gaussian_filter(g, sig, mode="reflect")
    g /= max(float(g.std()), 1e-6)
    ry, rx = _upsampler(h, ch), _upsampler(w, cw)
    a = np.matmul(g, rx.T)                                  # (z, ch, w)
    out = np.empty((z, h, w), np.float32)
    for k in range(z):                                      # 2D products: much faster than a batched matmul
        np.matmul(ry, a[k], out=out[k])
    out /= max(float(out.std()), 1e-6)
    return out


class _Grid:
    """Millimetre coordinates of the display grid (y, x centred on the image, z from the bottom edge)."""

    def __init__(self, shape: tuple[int, int, int], spacing: Sequence[float]):
        self.shape = shape
        self.dz, self.dy, self.dx = (float(s) for s in spacing)
        z, h, w = shape
        self.z = (np.arange(z) + 0.5) * self.dz
        self.y = ((np.arange(h) + 0.5) - h / 2.0) * self.dy
        self.x = ((np.arange(w) + 0.5) - w / 2.0) * self.dx
        self.Y, self.X = np.meshgrid(self.y.astype(np.float32), self.x.astype(np.float32), indexing="ij")
        self.length = z * self.dz

    def row(self, y: float) -> float:
        return y / self.dy + self.shape[1] / 2.0 - 0.5

    def col(self, x: float) -> float:
        return x / self.dx + self.shape[2] / 2.0 - 0.5


def _raster_segments(grid: _Grid, segs: np.ndarray, out: np.ndarray, partial: bool) -> None:
    """Draw tapered tubes into ``out`` (Z, H, W float32) by maximum.

    ``segs`` rows are ``z0, y0, x0, z1, y1, x1, r0, r1`` in mm. A slice stands for a slab of its thickness: a
    tube is drawn where the part of it inside the slab, projected on the slice, is within its radius. With
    ``partial`` the value is the tube's share of the slab thickness (thin horizontal vessels look faint, as
    with 8 mm slices), else 1.
    """
    if len(segs) == 0:
        return
    zc = grid.z
    half = grid.dz * _SLAB_HALF_FRACTION
    nz, h, w = grid.shape
    for z0, y0, x0, z1, y1, x1, r0, r1 in segs:
        rmax = max(r0, r1)
        zlo, zhi = min(z0, z1) - rmax, max(z0, z1) + rmax
        k0 = max(0, int(np.floor((zlo - half) / grid.dz - 0.5)))
        k1 = min(nz - 1, int(np.ceil((zhi + half) / grid.dz - 0.5)))
        dzs = z1 - z0
        for k in range(k0, k1 + 1):
            a, b = zc[k] - half, zc[k] + half
            # Parameter range of the segment inside the slab (grown by the radius for the tube's round ends).
            if abs(dzs) < 1e-6:
                if not (a - rmax <= z0 <= b + rmax):
                    continue
                t0, t1 = 0.0, 1.0
            else:
                ta, tb = (a - z0) / dzs, (b - z0) / dzs
                t0, t1 = max(0.0, min(ta, tb)), min(1.0, max(ta, tb))
                if t0 > t1:
                    # Outside the slab but within a radius of it: the end cap reaches in.
                    tt = 0.0 if min(abs(z0 - a), abs(z0 - b)) < min(abs(z1 - a), abs(z1 - b)) else 1.0
                    zend = z0 + tt * dzs
                    gap = max(a - zend, zend - b, 0.0)
                    if gap > (r0 if tt == 0.0 else r1):
                        continue
                    t0 = t1 = tt
            py0, px0 = y0 + t0 * (y1 - y0), x0 + t0 * (x1 - x0)
            py1, px1 = y0 + t1 * (y1 - y0), x0 + t1 * (x1 - x0)
            ra, rb = r0 + t0 * (r1 - r0), r0 + t1 * (r1 - r0)
            rr = max(ra, rb)
            i0 = max(0, int(np.floor(grid.row(min(py0, py1) - rr))))
            i1 = min(h, int(np.ceil(grid.row(max(py0, py1) + rr))) + 1)
            j0 = max(0, int(np.floor(grid.col(min(px0, px1) - rr))))
            j1 = min(w, int(np.ceil(grid.col(max(px0, px1) + rr))) + 1)
            if i0 >= i1 or j0 >= j1:
                continue
            yy = grid.y[i0:i1, None] - py0
            xx = grid.x[None, j0:j1] - px0
            vy, vx = py1 - py0, px1 - px0
            ll = vy * vy + vx * vx
            if ll > 1e-9:
                s = np.clip((yy * vy + xx * vx) / ll, 0.0, 1.0)
            else:
                s = np.zeros_like(yy * xx)
            d2 = (yy - s * vy) ** 2 + (xx - s * vx) ** 2
            rad = ra + s * (rb - ra)
            inside = d2 <= rad * rad
            if not inside.any():
                continue
            if partial:
                zlen = abs(t1 - t0) * abs(dzs)
                val = float(np.clip((2.0 * rr + zlen) / (2.0 * half), 0.3, 1.0))
            else:
                val = 1.0
            sub = out[k, i0:i1, j0:j1]
            np.maximum(sub, np.where(inside, np.float32(val), np.float32(0.0)), out=sub)


def _tree(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray, pts: np.ndarray, r_root: float,
          r_min: float, max_depth: int, first_len: float) -> list[tuple]:
    """A branching tree that fills a point cloud: each node splits its points in two along their main axis.

    Space-filling by recursive partition gives vessels that reach every part of the lung and taper with the
    share of lung they feed (radius ~ points^(1/2.7), Murray-like).
    """
    segs: list[tuple] = []
    n_root = len(pts)
    end = root + direction * first_len
    segs.append((*root, *end, r_root, r_root * 0.92))
    stack = [(end, pts, r_root * 0.92, 0)]
    while stack:
        p, s, r_par, depth = stack.pop()
        if len(s) < 2 or depth >= max_depth:
            continue
        c = s - s.mean(axis=0)
        cov = c.T @ c
        _, vecs = np.linalg.eigh(cov)
        axis = vecs[:, -1]
        proj = c @ axis
        med = np.median(proj)
        for part in (s[proj <= med], s[proj > med]):
            if len(part) == 0:
                continue
            target = part.mean(axis=0)
            frac = 1.0 if len(part) <= 2 else float(rng.uniform(0.4, 0.6))
            q = p + (target - p) * frac
            r = max(r_min, r_root * (len(part) / n_root) ** (1 / 2.7))
            r = min(r, r_par)
            segs.append((*p, *q, r_par * 0.9 if depth else r, r))
            stack.append((q, part, r, depth + 1))
    return segs


# ------------------------------------------------------------------------------------------------ anatomy


@dataclass
class _Params:
    A: float; B: float; cy: float; cx: float           # body half width/depth (mm) and centre
    fat: float; muscle: float
    cyc: float; ryc: float; rxc: float                  # thoracic cavity (inside the ribs)
    apex: float; dome_r: float; dome_l: float; dome_drop: float
    carina: float; zh: float; yh: float; xh: float; hz: float; ha: float; hb: float; hang: float
    yv: float; rib_phase: float; rib_period: float; rib_drop: float; lung_base_hu: float


def _draw_params(rng: np.random.Generator, grid: _Grid, fit: dict | None) -> _Params:
    fov_x = grid.shape[2] * grid.dx
    fov_y = grid.shape[1] * grid.dy
    A = float(rng.uniform(140.0, 168.0))
    A = min(A, 0.46 * fov_x)
    B = A * float(rng.uniform(0.70, 0.80))
    B = min(B, 0.40 * fov_y)
    cy = float(rng.uniform(-12.0, 2.0))
    cx = float(rng.uniform(-5.0, 5.0))
    fat = float(rng.uniform(6.0, 20.0))
    muscle = float(rng.uniform(8.0, 13.0))
    ant_wall = 2 + fat + muscle + 9
    post_wall = 40 + fat * 0.5
    lat_wall = 2 + fat * 1.2 + muscle + 9
    if fit is not None:
        # Make the cavity hold the real mask's lesions: widen/deepen the body as far as the field of view allows.
        need_x = fit["xmax"] + 6 + lat_wall - cx
        A = float(np.clip(max(A, need_x), A, 0.48 * fov_x))
        lat_wall = min(lat_wall, A - fit["xmax"] - 4 + cx) if A - lat_wall < fit["xmax"] + 4 else lat_wall
        y_ant_need = fit["ymin"] - 6
        y_post_need = fit["ymax"] + 6
        B = float(max(B, (y_post_need + post_wall - (y_ant_need - ant_wall)) / 2))
        B = min(B, 0.46 * fov_y)
        cy = float(np.clip((y_ant_need - ant_wall + y_post_need + post_wall) / 2, -0.5 * fov_y + B + 2, 0.5 * fov_y - B - 2))
    y_front = cy - B + ant_wall
    y_back = cy + B - post_wall
    cyc, ryc = (y_front + y_back) / 2, (y_back - y_front) / 2
    rxc = A - lat_wall
    L = grid.length
    apex = L - float(rng.uniform(10.0, 32.0))
    height = float(rng.uniform(185.0, 235.0))
    dome_drop = float(rng.uniform(60.0, 80.0))
    dome_r = apex - height
    dome_r = max(dome_r, dome_drop + 14.0)
    if fit is not None:
        apex = max(apex, min(L - 2.0, fit["zmax"] + 10.0))
        dome_r = min(dome_r, max(fit["zmin"] + dome_drop * 0.5, 12.0))
    height = apex - dome_r
    dome_l = dome_r - float(rng.uniform(8.0, 18.0))
    carina = dome_r + 0.58 * height
    hz = 0.24 * height
    zh = dome_l + hz * 0.8
    yh = cyc - 0.35 * ryc
    xh = 0.18 * rxc
    return _Params(A=A, B=B, cy=cy, cx=cx, fat=fat, muscle=muscle, cyc=cyc, ryc=ryc, rxc=rxc, apex=apex,
                   dome_r=dome_r, dome_l=dome_l, dome_drop=dome_drop, carina=carina, zh=zh, yh=yh, xh=xh, hz=hz,
                   ha=float(rng.uniform(0.44, 0.50)) * rxc, hb=float(rng.uniform(0.52, 0.60)) * ryc,
                   hang=float(np.deg2rad(rng.uniform(25.0, 40.0))), yv=cyc + ryc - 16.0,
                   rib_phase=float(rng.uniform(0.0, 26.0)), rib_period=float(rng.uniform(24.0, 28.0)),
                   rib_drop=float(rng.uniform(150.0, 190.0)), lung_base_hu=float(rng.uniform(-875.0, -845.0)))


def _great_vessels(p: _Params, L: float) -> dict[str, list[tuple]]:
    """Tubes of the mediastinum (mm, z from the bottom): aorta, pulmonary arteries, SVC, arch branches, airways."""
    z_arch = min(p.carina + 22.0, p.apex - 25.0)
    ya, xa = p.yh - 0.1 * p.ryc, p.cx - 0.10 * p.rxc                 # ascending aorta
    yd, xd = p.yv - 22.0, p.cx + 24.0                                # descending aorta, left of the spine
    heart_top = p.zh + 0.6 * p.hz
    yt = p.yv - 34.0                                                 # trachea, in front of the oesophagus
    aorta = [
        (heart_top, ya, xa, z_arch, ya, xa, 14.0, 15.0),
        (z_arch, ya, xa, z_arch + 12.0, (ya + yd) / 2 - 6.0, (xa + xd) / 2, 14.0, 13.0),
        (z_arch + 12.0, (ya + yd) / 2 - 6.0, (xa + xd) / 2, z_arch, yd, xd, 13.0, 12.5),
        (z_arch, yd, xd, p.dome_l - 10.0, yd + 2.0, xd - 6.0, 12.5, 12.0),
        (p.dome_l - 10.0, yd + 2.0, xd - 6.0, -20.0, p.yv - 26.0, p.cx + 12.0, 12.0, 11.0),
    ]
    top = L + 20.0
    branches = [
        (z_arch + 8.0, ya + 4.0, xa + 2.0, top, ya + 2.0, xa - 14.0, 6.5, 6.0),     # brachiocephalic
        (z_arch + 10.0, (ya + yd) / 2 - 4, p.cx + 4.0, top, (ya + yd) / 2 - 6, p.cx + 12.0, 5.0, 4.5),
        (z_arch + 8.0, yd - 6.0, xd - 4.0, top, yd - 10.0, xd + 8.0, 5.5, 5.0),      # left subclavian
    ]
    svc = [(min(top, z_arch + 45.0), ya + 6.0, xa - 26.0, heart_top - 6.0, ya + 8.0, xa - 24.0, 10.0, 11.0)]
    pa_split = (p.carina - 14.0, ya + 16.0, p.cx + 16.0)
    pulm = [
        (heart_top - 4.0, p.yh - 0.45 * p.hb, p.xh + 8.0, *pa_split, 13.0, 13.0),
        (*pa_split, p.carina - 12.0, ya + 34.0, p.cx + 0.42 * p.rxc * 0.55, 10.0, 9.0),
        (*pa_split, p.carina - 20.0, ya + 30.0, p.cx - 0.42 * p.rxc * 0.55, 10.0, 9.0),
    ]
    trachea = [(top, yt - 4.0, p.cx, p.carina, yt, p.cx, 9.5, 9.0)]
    bronchi = [
        (p.carina, yt, p.cx, p.carina - 22.0, yt + 6.0, p.cx - 30.0, 7.0, 6.0),
        (p.carina, yt, p.cx, p.carina - 32.0, yt + 10.0, p.cx + 42.0, 6.5, 5.5),
    ]
    esoph = [(top, p.yv - 20.0, p.cx + 4.0, -20.0, p.yv - 22.0, p.cx + 14.0, 7.5, 7.5)]
    return {"aorta": aorta, "branches": branches, "svc": svc, "pulm": pulm, "trachea": trachea,
            "bronchi": bronchi, "esoph": esoph}


def build_phantom(shape_zyx: Sequence[int], spacing: Sequence[float], category: str, rng: np.random.Generator,
                  target_involvement: float | None = None, lesion_mask: np.ndarray | None = None) -> Phantom:
    """Draw one synthetic chest CT in display orientation.

    Parameters
    ----------
    shape_zyx : (Z, H, W)
    spacing : (dz, dy, dx) in mm.
    category : "CT-0" .. "CT-4"; sets the involvement band and the share of consolidation.
    rng : numpy Generator; the only source of randomness.
    target_involvement : per cent of lung to involve; drawn inside the class band when None.
    lesion_mask : optional (Z, H, W) {0,1} lesions to paint instead of drawn ones (the replica's real masks):
        the lungs are sized to hold them, and lung is drawn wherever the mask is.

    Returns
    -------
    Phantom
    """
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (Z, H, W) with positive sizes, got {tuple(shape_zyx)}")
    if category not in TARGET_RANGES:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(TARGET_RANGES)}")
    grid = _Grid(shape, spacing)
    nz, h, w = shape
    fit = None
    if lesion_mask is not None:
        lesion_mask = np.asarray(lesion_mask) > 0
        if lesion_mask.shape != shape:
            raise ValueError(f"lesion mask shape {lesion_mask.shape} differs from the grid {shape}")
        if lesion_mask.any():
            zi, yi, xi = np.nonzero(lesion_mask)
            fit = {"zmin": float(grid.z[zi.min()]), "zmax": float(grid.z[zi.max()]),
                   "ymin": float(grid.y[yi.min()]), "ymax": float(grid.y[yi.max()]),
                   "xmax": float(np.abs(grid.x[[xi.min(), xi.max()]]).max())}
    p = _draw_params(rng, grid, fit)
    tubes = _great_vessels(p, grid.length)

    # Mediastinal tubes: solid structures, and (grown by a fat margin) where the lungs cannot be.
    solid = np.zeros(shape, np.float32)
    _raster_segments(grid, np.array(tubes["aorta"] + tubes["branches"] + tubes["svc"] + tubes["pulm"]
                                    + tubes["esoph"]), solid, partial=False)
    airway_wall = np.zeros(shape, np.float32)
    airway_lumen = np.zeros(shape, np.float32)
    big_air = tubes["trachea"] + tubes["bronchi"]
    _raster_segments(grid, np.array([(*s[:6], s[6] + 2.2, s[7] + 2.0) for s in big_air]), airway_wall, False)
    _raster_segments(grid, np.array(big_air), airway_lumen, partial=False)
    keepout = np.zeros(shape, np.float32)
    _raster_segments(grid, np.array([(*s[:6], s[6] + 5.0, s[7] + 5.0) for s in
                                     tubes["aorta"] + tubes["branches"] + tubes["svc"] + tubes["pulm"][:1]
                                     + tubes["esoph"] + tubes["trachea"]]), keepout, partial=False)

    hu = np.empty(shape, np.float32)
    lung = np.zeros(shape, bool)
    Y, X = grid.Y, grid.X
    Xc = X - p.cx
    # Angle around the cavity: 0 anterior, pi posterior (both sides), for ribs and cartilage.
    phi = np.abs(np.arctan2(Xc, -(Y - p.cyc)))
    body_e = ((Y - p.cy) / np.where(Y > p.cy, p.B * 1.04, p.B)) ** 2 + (Xc / p.A) ** 2
    body = (body_e < 1.0) & (Y < p.cy + p.B * 0.97)
    back = p.cy + p.B * 0.97 - 2.0     # flat back on the table: skin there too
    bpost = np.where(Y > p.cy, 1.04, 1.0)
    fat_e = ((Y - p.cy) / (bpost * p.B - 2.0)) ** 2 + (Xc / (p.A - 2.0)) ** 2
    mus_e = ((Y - p.cy) / (bpost * p.B - 2.0 - p.fat)) ** 2 + (Xc / (p.A - 2.0 - p.fat * 1.2)) ** 2
    # Table: a curved carbon shell under the patient, foam on it.
    y_tab = p.cy + p.B * 0.97 + 4.0 + 0.0009 * X ** 2
    table = (Y > y_tab) & (Y < y_tab + 4.0) & (np.abs(X) < 0.46 * w * grid.dx)
    foam = (Y >= p.cy + p.B * 0.97) & (Y <= y_tab) & (np.abs(X) < 0.40 * w * grid.dx) & ~body
    canal_y = p.yv + 23.0
    para_e = np.minimum(((Y - (canal_y + 10)) / 24.0) ** 2 + ((Xc - 27) / 22.0) ** 2,
                        ((Y - (canal_y + 10)) / 24.0) ** 2 + ((Xc + 27) / 22.0) ** 2)
    vb_e = ((Y - p.yv) / 15.0) ** 2 + (Xc / 19.0) ** 2
    canal_d = np.hypot(Y - canal_y, Xc)
    post_el = (((canal_d >= 8.5) & (canal_d < 12.5) & (Y > canal_y - 3))
               | ((np.abs(Xc) < 2.5 + 1.5 * np.clip((canal_y + 30 - Y) / 20, 0, 1)) & (Y > canal_y + 8) & (Y < canal_y + 30))
               | ((np.abs(Y - canal_y + 1) < 3.5) & (np.abs(Xc) > 9) & (np.abs(Xc) < 30)))
    ht = np.cos(p.hang), np.sin(p.hang)
    hu_u = (Y - p.yh) * ht[0] + (X - p.xh) * ht[1]
    hu_v = -(Y - p.yh) * ht[1] + (X - p.xh) * ht[0]
    for k in range(nz):
        z = grid.z[k]
        sl = np.full((h, w), -1000.0, np.float32)
        sl[table] = 150.0
        sl[body] = 30.0                                   # skin
        sl[body & (fat_e < 1.0) & (Y < back)] = -100.0     # subcutaneous fat
        sl[body & (mus_e < 1.0) & (Y < back - p.fat * 0.6)] = 45.0   # chest-wall muscle
        # Cavity shrinks toward the apex (the upper thoracic aperture is narrow).
        s = 0.55 + 0.45 * float(_smoothstep(p.apex + 12.0, p.apex - 80.0, z))
        rxc, ryc = p.rxc * s, p.ryc * (0.75 + 0.25 * s)
        cav_e = ((Y - p.cyc) / ryc) ** 2 + (Xc / rxc) ** 2
        cav = cav_e < 1.0
        ring = (((Y - p.cyc) / (ryc + 9.0)) ** 2 + (Xc / (rxc + 9.0)) ** 2 < 1.0) & ~cav
        in_ribs = p.dome_r - 70.0 < z < p.apex + 6.0
        sl[(para_e < 1.0) & body & (Y < back - p.fat * 0.6)] = 48.0                   # paraspinal muscles
        if in_ribs:
            u = (z + p.rib_drop * (1.0 - phi / np.pi) + p.rib_phase) / p.rib_period
            rib_on = np.cos(2 * np.pi * u) > np.cos(np.pi * 10.0 / p.rib_period)
            radial = np.clip((np.sqrt(cav_e) - 1.0) * (0.5 * (rxc + ryc)) / 9.0, 0, 1)
            rib_hu = 250.0 + 550.0 * np.abs(2 * radial - 1) ** 3
            bone = ring & rib_on & (phi > 0.32 * np.pi)
            cart = ring & rib_on & (phi > 0.14 * np.pi) & (phi <= 0.32 * np.pi) & (z < p.carina + 20)
            sl[bone] = rib_hu[bone]
            sl[cart] = 140.0
            # Scapulae: thin bone plates behind the upper ribs.
            if z > p.carina - 30:
                sc_e = ((Y - p.cyc) / (ryc + 22.0)) ** 2 + (Xc / (rxc + 22.0)) ** 2
                scap = (sc_e < 1.0) & (sc_e > 0.93) & (phi > 0.62 * np.pi) & (phi < 0.86 * np.pi) & body
                sl[scap] = 550.0
            # Sternum (manubrium wider at the top).
            if p.dome_r - 5.0 < z < p.apex - 15.0:
                ws = 15.0 if z < p.carina + 20 else 24.0
                st = (np.abs(Xc) < ws) & (Y > p.cyc - ryc - 13.0) & (Y < p.cyc - ryc - 1.0)
                st_rim = st & ((np.abs(Xc) > ws - 2.0) | (Y < p.cyc - ryc - 11.0) | (Y > p.cyc - ryc - 3.0))
                sl[st] = 330.0
                sl[st_rim] = 750.0
        sl[cav] = -95.0                                    # mediastinal / extrapleural fat by default
        # Spine: vertebral body with cortex (discs every ~27 mm), canal, posterior elements.
        disc = ((z + 3.0) % 27.0) < 6.0
        vb = vb_e < 1.0
        sl[vb] = 90.0 if disc else 320.0
        if not disc:
            sl[vb & (vb_e > 0.78)] = 900.0
        sl[post_el] = 600.0
        sl[canal_d < 8.5] = 30.0
        # Heart in its pericardial fat.
        dzh = (z - p.zh) / p.hz
        if abs(dzh) < 1.15:
            q = (hu_u / p.hb) ** 2 + (hu_v / p.ha) ** 2 + dzh ** 2
            pericard = q < 1.22
            heart = q < 1.0
            sl[pericard & cav] = -90.0
            sl[heart & cav] = 42.0
            sl[heart & cav & (q > 0.8)] = 48.0             # myocardium a touch denser than blood
        else:
            pericard = np.zeros((h, w), bool)
        # Below the domes: liver (right and across the midline in front), spleen, stomach.
        dome_rr = p.dome_r - p.dome_drop * (((Xc + 0.42 * rxc) / (0.55 * rxc)) ** 2 + ((Y - p.cyc + 0.1 * ryc) / (1.3 * ryc)) ** 2)
        dome_ll = p.dome_l - p.dome_drop * (((Xc - 0.42 * rxc) / (0.55 * rxc)) ** 2 + ((Y - p.cyc + 0.1 * ryc) / (1.3 * ryc)) ** 2)
        dome = np.where(Xc < 0, dome_rr, dome_ll)
        below = cav & (z < dome)
        diaph = cav & (z >= dome) & (z < dome + 4.0)
        if below.any():
            liver = below & ((((Xc + 0.3 * rxc) / (0.85 * rxc)) ** 2 + ((Y - p.cyc + 0.05 * ryc) / (0.95 * ryc)) ** 2) < 1.0)
            spleen = below & ~liver & ((((Xc - 0.62 * rxc) / (0.3 * rxc)) ** 2 + ((Y - p.cyc - 0.4 * ryc) / (0.4 * ryc)) ** 2) < 1.0)
            stomach = below & ~liver & ~spleen & ((((Xc - 0.38 * rxc) / (0.32 * rxc)) ** 2 + ((Y - p.cyc + 0.3 * ryc) / (0.4 * ryc)) ** 2) < 1.0)
            sl[below] = -60.0
            sl[liver] = 60.0
            sl[spleen] = 50.0
            sl[stomach] = 25.0
            sl[stomach & (z > dome - 14.0) & (Y < p.cyc - 0.1 * ryc)] = -1000.0   # fundal gas
            sl[below & vb] = 90.0 if disc else 320.0
        # Lungs: the cavity less the mediastinum, spine, heart and abdomen; domed at the apex.
        y_front = p.cyc - ryc
        band_w = 7.0 + 17.0 * np.clip((Y - y_front) / max(p.yv - 20.0 - y_front, 1.0), 0, 1)
        if z > p.carina - 10:
            band_w = band_w + 8.0
        medi = np.abs(Xc - 3.0) < band_w
        apex_z = p.apex - 55.0 * (((np.abs(Xc) - 0.45 * rxc) / (0.55 * rxc)) ** 2 + ((Y - p.cyc - 0.1 * ryc) / ryc) ** 2)
        lz = (cav & ~medi & ~pericard & (vb_e > 1.5) & (keepout[k] < 0.5) & (z > dome + 4.0) & (z < apex_z))
        lung[k] = lz
        sl[diaph & ~lz & ~vb & ~pericard] = np.where(sl[diaph & ~lz & ~vb & ~pericard] < -50, 40.0,
                                                     sl[diaph & ~lz & ~vb & ~pericard])
        # Mediastinal tubes over fat, then airways.
        ts = solid[k] > 0.5
        sl[ts & cav & ~vb] = 40.0
        aw = airway_wall[k] > 0.5
        sl[aw & ~lz] = 35.0
        sl[(airway_lumen[k] > 0.5) & ~lz] = -1000.0
        hu[k] = sl

    if lesion_mask is not None:
        # The replica: lungs must hold the real lesions, so lung is drawn wherever the mask is (a little beyond).
        grown = ndimage.binary_dilation(lesion_mask, iterations=2) & (hu > -1000.5)
        lung |= grown & ~(np.abs(hu - 320.0) < 1) & ~(hu >= 599.0)
        lung |= lesion_mask

    # Lung parenchyma: gravity-dependent density, soft texture.
    yrel = np.clip((grid.y - (p.cyc - p.ryc)) / (2 * p.ryc), 0, 1).astype(np.float32)
    tex = _smooth_noise(rng, shape, spacing, 12.0)
    paren = p.lung_base_hu + 45.0 * yrel[None, :, None] ** 2 + 12.0 * tex
    hu = np.where(lung, paren, hu)

    # Vessels and small bronchi: space-filling trees from each hilum.
    vessels = np.zeros(shape, np.float32)
    bronch_wall = np.zeros(shape, np.float32)
    bronch_lumen = np.zeros(shape, np.float32)
    ya = p.yh - 0.1 * p.ryc
    yt = p.yv - 34.0
    for side in (-1.0, 1.0):
        side_lung = lung & ((grid.X - p.cx)[None] * side > 0)
        idx = np.flatnonzero(side_lung.ravel())
        if idx.size < 50:
            continue
        pick = rng.choice(idx, size=min(idx.size, 520), replace=False)
        kz, ky, kx = np.unravel_index(np.sort(pick), shape)
        pts = np.stack([grid.z[kz] + rng.uniform(-0.5, 0.5, kz.size) * grid.dz,
                        grid.y[ky], grid.x[kx]], axis=1)
        art_root = np.array([p.carina - 16.0, ya + 30.0, p.cx + side * 0.25 * p.rxc])
        vein_root = np.array([p.zh + 0.1 * p.hz, p.yh + 0.45 * p.hb, p.cx + side * 0.22 * p.rxc])
        half = len(pts) // 2
        segs = []
        for root, sub, rr in ((art_root, pts[:half], 5.5), (vein_root, pts[half:], 5.0)):
            d = sub.mean(axis=0) - root
            d = d / max(np.linalg.norm(d), 1e-6)
            segs += _tree(rng, root, d, sub, rr, 0.6, 9, 14.0)
        _raster_segments(grid, np.array(segs), vessels, partial=True)
        b_root = np.array([p.carina - (22.0 if side < 0 else 32.0), yt + (6.0 if side < 0 else 10.0),
                           p.cx + side * (30.0 if side < 0 else 42.0)])
        sub = pts[rng.choice(len(pts), size=24, replace=False)]
        d = sub.mean(axis=0) - b_root
        d /= max(np.linalg.norm(d), 1e-6)
        bsegs = np.array(_tree(rng, b_root, d, sub, 4.5, 1.2, 4, 10.0))
        wall = bsegs.copy()
        wall[:, 6:8] = wall[:, 6:8] * 1.25 + 1.0
        _raster_segments(grid, wall, bronch_wall, partial=True)
        _raster_segments(grid, bsegs, bronch_lumen, partial=True)
    bw = lung & (bronch_wall > 0)
    hu[bw] = np.maximum(hu[bw], hu[bw] + (20.0 - hu[bw]) * 0.6 * bronch_wall[bw])
    vess = (vessels > 0) & (lung | ((hu < -50) & (hu > -200)))
    hu[vess] = np.maximum(hu[vess], hu[vess] + (40.0 - hu[vess]) * vessels[vess])
    bl = lung & (bronch_lumen > 0)
    hu[bl] = np.minimum(hu[bl], -1000.0 * bronch_lumen[bl] + hu[bl] * (1 - bronch_lumen[bl]))

    # Lesions.
    n_lung = int(lung.sum())
    if lesion_mask is not None:
        lesion = lesion_mask & lung
        target = 100.0 * lesion.sum() / max(n_lung, 1)
    else:
        target = draw_target(category, rng) if target_involvement is None else float(target_involvement)
        target = float(np.clip(target, 0.0, 100.0))
        lesion = np.zeros(shape, bool)
    cons_share = CONSOLIDATION_SHARE[category] if lesion_mask is None else 0.1
    if n_lung and (target > 0 or lesion.any()):
        blob = _smooth_noise(rng, shape, spacing, 22.0) + 0.5 * _smooth_noise(rng, shape, spacing, 9.0)
        if lesion_mask is None:
            # Peripheral, posterior and basal preference, then the quantile that gives the target exactly.
            rho = np.hypot((grid.X - p.cx) / p.rxc, (grid.Y - (p.cyc - 0.2 * p.ryc)) / (1.2 * p.ryc))
            post = np.clip((grid.Y - (p.cyc - p.ryc)) / (2 * p.ryc), 0, 1)
            zrel = np.clip((grid.z - p.dome_l) / max(p.apex - p.dome_l, 1.0), 0, 1).astype(np.float32)
            pref = (1.6 * rho + 1.2 * post)[None] + (0.8 * (1 - zrel))[:, None, None]
            field = blob + pref.astype(np.float32)
            vals = field[lung]
            n_target = int(round(target / 100.0 * n_lung))
            if n_target > 0:
                thr = np.partition(vals, vals.size - n_target)[vals.size - n_target]
                lesion = lung & (field >= thr)
        else:
            field = blob + ndimage.distance_transform_edt(lesion, sampling=spacing).astype(np.float32) / 6.0
        if lesion.any():
            lv = field[lesion]
            lo = float(lv.min())
            hi_q = float(np.quantile(lv, 1.0 - cons_share)) if cons_share > 0 else np.inf
            span = max(hi_q - lo, 1e-3)
            g = np.clip((field - lo) / span, 0, 1)
            ggo = -690.0 + 250.0 * g + 25.0 * tex
            cons = -150.0 + 110.0 * np.clip((field - hi_q) / span, 0, 1) + 20.0 * tex
            les_hu = np.where(field >= hi_q, cons, ggo)
            les_hu = np.clip(les_hu, -700.0, -5.0)
            # Vessels stay visible through ground glass (max), disappear in consolidation.
            hu = np.where(lesion, np.maximum(hu, les_hu) if cons_share < 1 else les_hu, hu)
    # Acquisition noise, then int16.
    noise = rng.standard_normal(shape, dtype=np.float32)
    hu += np.where(hu < -990.0, 4.0, 9.0) * noise
    out = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    lesion_u8 = lesion.astype(np.uint8)
    inv = 100.0 * float((lesion & lung).sum()) / max(n_lung, 1)
    return Phantom(hu=out, lesion=lesion_u8, lung=lung.astype(np.uint8), involvement_pct=inv, target_pct=float(target))
