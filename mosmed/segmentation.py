"""Lung segmentation from Hounsfield units: classical, no model, no download, 30-45 ms a full-size study.

The lungs are the large air-like regions inside the body that are not pure gas. Everything below runs on a
copy subsampled in-plane to about ``COARSE_PX_MM`` (3 mm) pixels and vectorised over all slices at once (no
per-slice Python loop), inside the box around the air in the body; only the lung border is refined on the
full grid. The steps:

1. air-like voxels (``HU < AIR_HU``). **Outside air** is a 3D air component that touches the in-plane image
   border *and* lies mostly outside the body: a voxel is "bounded" when its row or its column has tissue on
   both sides of it (the body is convex-ish), and outside air is mostly unbounded (decided on a grid twice as
   coarse). A lung cut by a cropped field of view touches the border too but is bounded (chest wall in front
   and behind): it is kept.
2. per axial slice, air components that are **pure gas** (most voxels below ``GAS_HU``; lung parenchyma with
   its vessels sits near -850) are the stomach, the bowel, the trachea and main bronchi, or air trapped in
   the table: they are dropped, and so are small components near the body's midline (trachea, oesophagus);
3. in 3D, only lung-like components count (at most ``LUNG_GAS_MAX`` pure gas, unless larger than
   ``EMPHYSEMA_ML``): the largest is kept, and the largest on the other side of the midline unless the first
   already spans both lungs; large islands (lung split off by consolidation) too;
4. per slice and per side, at once for every slice: a closing bridges vessels and lesions near the surface,
   holes are filled (not the large organ-dense ones: a diaphragm dome ringed by lung), then dense lesions are
   added where they lie inside the aerated lung's convex hull (a polygon of ``HULL_DIRECTIONS`` supporting
   lines) or inside an ellipse fitted to the convex part of its outline (consolidation capping the lung
   against the chest wall, posterior and basal). Additions take only soft tissue below ``ORGAN_HU``
   (consolidation, not heart, liver or muscle), within ``HULL_REACH_MM`` of aerated lung, never in the
   mediastinum (between the two lungs, or within a band around the midline), never for a thin crescent of
   lung (``THIN_MM``: a base around its dome), and only where they meet the lung as a lesion does (ground
   glass along the edge, solid, or along the lung: ``_lesion_contact``), not as the fat under a dome does;
5. a closing along z bridges up to ``Z_GAP`` consecutive slices that are almost all consolidation;
6. back to the full grid: blocks inside the lung are lung, blocks on its border are decided voxel by voxel
   from the full-resolution HU (air-like is lung), so the border is as sharp as the image.

Accuracy and speed: see ``scripts/lung_accuracy.py`` (Dice with the phantoms' drawn lungs, per class, and the
real CTs of ``../shared/realct``) and ``docs/real-ct.md``. Known limits (a classical method): dense
consolidation deeper than ``HULL_REACH_MM`` from aerated lung, or without ground glass along a short edge, is
cut, and so is consolidation denser than ``ORGAN_HU`` unless enclosed by lung (CT-4 reads low); a lung with no
aerated voxel left in a slice is recovered only from its neighbours along z; an emphysematous bulla larger
than ``GAS_MAX_MM2`` in a slice is taken for lung, a smaller isolated one (not enclosed by lung) for gas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "AIR_HU",
    "COARSE_PX_MM",
    "GAS_HU",
    "N4",
    "SQ3",
    "LungSegmentation",
    "bounding_box",
    "check_volume",
    "coarse_factor",
    "dilate",
    "erode",
    "segment",
    "segment_lungs",
    "subsample",
    "subsample_mean",
    "upsample",
]

AIR_HU = -320  # lung parenchyma is about -850, soft tissue above -150; -320 is the classic cut
GAS_HU = -950  # pure gas (outside air, stomach, bowel, trachea) reads below this; lung rarely
PADDING_HU = -1200  # below air: scanner padding (-2048, -3024), not counted as air for its HU
COARSE_PX_MM = 3.0  # in-plane pixel of the working grid: lungs are 10 cm objects
BONE_HU = 200  # additions never take bone (ribs, spine)
TRACHEA_MAX_MM2 = 900.0  # trachea ~ 2.5 cm2, main bronchi smaller ...
TRACHEA_OFF_MID_MM = 20.0  # ... and centred within this of the midline; a small apex lung lies further out
GAS_MAX_MM2 = 10000.0  # a pure-gas slice component larger than this is a whole emphysematous lung
OUTSIDE_BOUNDED_MAX = 0.5  # border air with fewer bounded voxels than this is outside the body
LUNG_GAS_MAX = 0.15  # a 3D component with more pure-gas voxels than this is bowel or stomach ...
EMPHYSEMA_ML = 300.0  # ... unless this large (a whole emphysematous lung)
MIN_LUNG_ML = 5.0  # 3D air pockets smaller than this are not a lung
ISLAND_FRACTION = 0.05  # other 3D components this large (vs the largest) are lung split off by consolidation
MIDLINE_BAND = 0.12  # fraction of the body width either side of the midline treated as mediastinum
CLOSING_MM = 8.0  # per-slice closing radius: vessels and small lesions at the lung surface
THIN_MM = 8.0  # a lung no thicker than twice this in a slice gets no hull or ellipse additions
HULL_REACH_MM = 30.0  # hull and ellipse additions stay this close to aerated lung
HULL_DIRECTIONS = 16  # supporting lines of the convex polygon standing in for the convex hull
ELLIPSE_MAX_GROWTH = 1.6  # an ellipse much larger than the aerated lung is a bad fit, not a lesion
ELLIPSE_MIN_POINTS = 12  # fewer outline points on the hull than this: no ellipse for that slice
CONTACT_HU = -750  # lung this dense along an addition's edge is ground glass around a lesion ...
CONTACT_GGO_MIN = 0.6  # ... over this share of the contact ...
CONTACT_MIN_RATIO = 0.25  # ... which is at least this long against the addition's area (pixels),
CONTACT_LONG_RATIO = 0.5  # ... or, for a sharp-edged consolidation, this long (a cap along the lung),
CONSOLIDATION_HU = -30  # ... or this dense on average (solid consolidation, not fat)
ORGAN_HU = 30.0  # additions denser than this are organ (heart, liver, muscle), not lesion ...
ORGAN_MIN_MM2 = 600.0  # ... and so is a hole this large and mostly that dense (a dome ringed by lung)
Z_GAP = 2  # up to this many consecutive near-solid slices are bridged from their neighbours

_S2D = np.zeros((3, 3, 3), bool)
_S2D[1] = ndimage.generate_binary_structure(2, 1)  # 4-connectivity inside each slice, every slice at once
_S2D.setflags(write=False)
_CONTACT_OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy * dy + dx * dx <= 5]


@dataclass(frozen=True)
class LungSegmentation:
    """The lungs of one study and what the segmentation saw on the way (for quality flags and reports).

    Attributes
    ----------
    lung : numpy.ndarray
        ``uint8`` ``(Z, H, W)``, 1 inside the lungs (vessels and consolidation included).
    factor : int
        In-plane subsampling of the working grid (1 = full grid).
    touches_border : bool
        Lung voxels lie on the in-plane edge of the image (a cropped field of view).
    outside_air_hu : float or None
        Median HU of the air outside the body (about -1000 when the rescale is right); ``None`` when there
        is none (the field of view lies inside the body).
    excluded_gas_ml : float
        Pure gas inside the body that was not taken for lung (stomach, bowel, trachea, main bronchi).
    """

    lung: np.ndarray
    factor: int
    touches_border: bool
    outside_air_hu: float | None
    excluded_gas_ml: float


def check_volume(hu: np.ndarray, spacing: Sequence[float]) -> tuple[float, float, float]:
    """Validate a ``(Z, H, W)`` volume and its ``(dz, dy, dx)`` spacing; returns the spacing as floats."""
    if hu.ndim != 3:
        raise ValueError(f"expected a (Z, H, W) volume, got shape {tuple(hu.shape)}")
    if 0 in hu.shape:
        raise ValueError(f"volume shape {tuple(hu.shape)} is empty")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing {tuple(spacing)} must be three positive finite numbers (dz, dy, dx)")
    return sp  # type: ignore[return-value]


def coarse_factor(spacing: Sequence[float]) -> int:
    """In-plane subsampling factor that brings the pixel to about ``COARSE_PX_MM``."""
    px = math.sqrt(float(spacing[1]) * float(spacing[2]))
    return max(1, round(COARSE_PX_MM / px))


def subsample(arr: np.ndarray, f: int) -> np.ndarray:
    """Block-centre samples of ``arr`` on the ``f``-coarse in-plane grid, ``(Z, ceil(H/f), ceil(W/f))``."""
    if f == 1:
        return np.ascontiguousarray(arr)
    _z, h, w = arr.shape
    if h % f == 0 and w % f == 0:
        return np.ascontiguousarray(arr[:, f // 2 :: f, f // 2 :: f])
    rows = np.minimum(np.arange(0, h, f) + f // 2, h - 1)
    cols = np.minimum(np.arange(0, w, f) + f // 2, w - 1)
    return np.ascontiguousarray(arr[:, rows][:, :, cols])


def subsample_mean(arr: np.ndarray, f: int) -> np.ndarray:
    """Like :func:`subsample`, but each coarse pixel is the mean of four samples spread over its block (the
    exact block mean for ``f == 2``; a 3x3 mean on the full grid for ``f == 1``): noise halves or better, so
    single noisy voxels do not decide a density test."""
    if f == 1:
        return np.rint(ndimage.uniform_filter(np.asarray(arr, np.float32), size=(1, 3, 3))).astype(np.int16)
    z, h, w = arr.shape
    a, b = f // 4, (3 * f) // 4
    nh, nw = -(-h // f), -(-w // f)
    acc = np.zeros((z, nh, nw), np.int32)
    for oy in (a, b):
        rows = np.minimum(np.arange(nh) * f + oy, h - 1)
        for ox in (a, b):
            cols = np.minimum(np.arange(nw) * f + ox, w - 1)
            if h % f == 0 and w % f == 0:
                acc += arr[:, oy::f, ox::f]
            else:
                acc += arr[:, rows][:, :, cols]
    return (acc >> 2).astype(np.int16)


def upsample(arr: np.ndarray, f: int, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour inverse of :func:`subsample` onto ``shape`` (one small repeat and one broadcast
    write: about 1 ms for a full-size study)."""
    if f == 1:
        return arr
    z, hc, _wc = arr.shape
    rep = np.repeat(arr, f, axis=2)[:, :, : shape[2]]
    out = np.empty((z, hc, f, rep.shape[2]), arr.dtype)
    out[...] = rep[:, :, None, :]
    return out.reshape(z, hc * f, rep.shape[2])[:, : shape[1]]


# ------------------------------------------------------------------------------------------ morphology


def _disk_offsets(radius_px: float) -> list[tuple[int, int]]:
    r = max(1, math.floor(radius_px))
    return [
        (dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if dy * dy + dx * dx <= radius_px * radius_px + 1e-9
    ]


def _shifted(m: np.ndarray, offsets: list[tuple[int, int]], op, pad_value) -> np.ndarray:
    """OR (dilation) or AND (erosion) of in-plane shifts of ``m``, all slices at once; bitwise on uint8, so
    each bit plane (one per lung) is processed in the same pass."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    _z, h, w = m.shape
    p = np.pad(m, ((0, 0), (r, r), (r, r)), constant_values=pad_value)
    out = p[:, r : r + h, r : r + w].copy()
    for dy, dx in offsets:
        if dy or dx:
            op(out, p[:, r + dy : r + dy + h, r + dx : r + dx + w], out=out)
    return out


def dilate(m: np.ndarray, offsets) -> np.ndarray:
    """In-plane dilation of every slice of ``m`` by the structuring element ``offsets`` ((dy, dx) pairs)."""
    return _shifted(m, offsets, np.bitwise_or, 0)


def erode(m: np.ndarray, offsets, border_value=0) -> np.ndarray:
    """In-plane erosion of every slice of ``m``; ``border_value`` is what lies beyond the image edge."""
    return _shifted(m, offsets, np.bitwise_and, border_value)


_dilate, _erode = dilate, erode


def _box_dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a (2r+1)-square in-plane, separable and by doubling shifts (a few passes whatever ``r``)."""
    out = m.copy()
    for axis in (1, 2):
        done = 0
        while done < r:
            s = min(done + 1, r - done)  # reach grows 1, 2, 4 ... then the remainder
            a = out
            b = np.zeros_like(a)
            if axis == 1:
                b[:, s:] |= a[:, :-s]
                b[:, :-s] |= a[:, s:]
            else:
                b[:, :, s:] |= a[:, :, :-s]
                b[:, :, :-s] |= a[:, :, s:]
            out = a | b
            done += s
    return out


N4 = [(-1, 0), (1, 0), (0, -1), (0, 1)]  # 4-neighbourhood offsets
SQ3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # 3x3 square offsets
_N4, _SQ3 = N4, SQ3
_CROSS = N4 + [(0, 0)]


# ----------------------------------------------------------------------------------------- steps 1-3


def bounded_air(air: np.ndarray) -> np.ndarray:
    """Air voxels with tissue on both sides along their row, or along their column: inside the body's
    orthogonal hull. A convex-ish body leaves almost no outside air bounded (the gap under the back is)."""
    tissue = ~air
    _z, h, w = air.shape

    def between(axis: int, n: int) -> np.ndarray:
        # First and last tissue voxel of every line (argmax finds the first True): inside lies between them.
        has = tissue.any(axis=axis)
        first = np.argmax(tissue, axis=axis)
        last = n - 1 - np.argmax(np.flip(tissue, axis=axis), axis=axis)
        idx = np.arange(n).reshape((1, n, 1) if axis == 1 else (1, 1, n))
        lo = np.expand_dims(np.where(has, first, n), axis)
        hi = np.expand_dims(np.where(has, last, -1), axis)
        return (idx > lo) & (idx < hi)

    return air & (between(2, w) | between(1, h))


def outside_air(air: np.ndarray) -> np.ndarray:
    """Air outside the body: 3D air components that touch the in-plane border and are mostly not bounded
    (:func:`bounded_air`). A lung cut by a cropped field of view touches the border too, but the chest wall in
    front of and behind it bounds it: it stays.

    Decided on a grid twice as coarse (outside air is large and smooth: a quarter of the voxels to label),
    then taken back to ``air``'s grid with a margin of one coarse pixel, which the chest wall always exceeds.
    """
    a2 = air[:, ::2, ::2]
    lab, n = ndimage.label(a2)
    if n == 0:
        return np.zeros_like(air)
    border = np.unique(
        np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
    )
    border = border[border > 0]
    if border.size == 0:
        return np.zeros_like(air)
    size, inside = _voxel_stats(lab, a2, n, bounded_air(a2))
    out = np.zeros(n + 1, bool)
    out[border] = inside[border] < OUTSIDE_BOUNDED_MAX * size[border]
    o2 = _dilate(out[lab], _SQ3)
    return air & upsample(o2, 2, air.shape)


def _voxel_stats(lab: np.ndarray, mask: np.ndarray, n: int, *weights: np.ndarray) -> list[np.ndarray]:
    """Per-label voxel count and weighted sums, over the voxels of ``mask`` only (not the whole grid)."""
    ids = lab[mask]
    out = [np.bincount(ids, minlength=n + 1).astype(np.float64)]
    for wgt in weights:
        out.append(np.bincount(ids, weights=wgt[mask], minlength=n + 1))
    return out


def _drop_gas(
    cand: np.ndarray, gas: np.ndarray, midline: np.ndarray, px_mm2: float, px_x_mm: float
) -> tuple[np.ndarray, int]:
    """Drop per-slice air components that are pure gas or a small midline tube; returns (kept, dropped voxels)."""
    _z, _h, w = cand.shape
    lab, n = ndimage.label(cand, structure=_S2D)
    if n == 0:
        return cand, 0
    cols = np.broadcast_to(np.arange(w, dtype=np.float64), cand.shape)
    mids = np.broadcast_to(midline[:, None, None], cand.shape)
    area, gas_n, col_sum, mid_sum = _voxel_stats(lab, cand, n, gas, cols, mids)
    safe = np.maximum(area, 1)
    area_mm2 = area * px_mm2
    drop = (gas_n > 0.5 * area) & (area_mm2 < GAS_MAX_MM2)
    drop |= (area_mm2 < TRACHEA_MAX_MM2) & (np.abs(col_sum - mid_sum) / safe * px_x_mm < TRACHEA_OFF_MID_MM)
    drop[0] = False
    if not drop.any():
        return cand, 0
    dropped = drop[lab]
    return cand & ~dropped, int(area[drop].sum())


def _keep_lungs(cand: np.ndarray, gas: np.ndarray, midline: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Keep the largest lung-like 3D air component and, unless it already spans both sides, the largest on the
    other side; then large islands.

    Lung-like: at most ``LUNG_GAS_MAX`` of its voxels are pure gas (normal lung has about 1 %, bowel and stomach
    gas cut by partial volume a fifth to a half), or larger than ``EMPHYSEMA_ML`` (a whole emphysematous lung).
    """
    lab, n = ndimage.label(cand)
    if n == 0:
        return cand
    _z, _h, w = cand.shape
    right_side = np.broadcast_to(np.arange(w)[None, None, :] < midline[:, None, None], cand.shape)
    size, gas_n, right = _voxel_stats(lab, cand, n, gas, right_side)
    size[0] = 0
    lunglike = (gas_n <= LUNG_GAS_MAX * size) | (size * voxel_ml >= EMPHYSEMA_ML)
    size = np.where(lunglike, size, 0)
    frac_right = right / np.maximum(size, 1)
    keep = np.zeros(n + 1, bool)
    big = size * voxel_ml >= MIN_LUNG_ML
    if not big.any():
        return np.zeros_like(cand)
    first = int(np.argmax(size))
    keep[first] = True
    if not 0.15 < frac_right[first] < 0.85:  # else one component holds both lungs (anterior junction, bronchi)
        other = (frac_right < 0.5) if frac_right[first] >= 0.5 else (frac_right >= 0.5)
        other &= big
        other[first] = other[0] = False
        if other.any():
            keep[int(np.argmax(np.where(other, size, 0)))] = True
    # Islands of aerated lung split off by consolidation: large pieces that are not the first two are kept too.
    keep |= big & (size >= ISLAND_FRACTION * size[first])
    keep[0] = False
    return keep[lab]


# ------------------------------------------------------------------------------------------- step 4


def _fill_holes_sides(closed: np.ndarray, dense: np.ndarray, px_mm2: float) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and per side (bit 1 right lung, bit 2 left), fill holes, except holes bounded by both lungs
    (the mediastinum between them) and large holes that are mostly organ-dense (a dome ringed by lung).

    Returns the filled bit mask and the organ holes (bool), which the additions must not take either.
    """
    bg = closed == 0
    lab, n = ndimage.label(bg, structure=_S2D)
    if n == 0:
        return closed, np.zeros(closed.shape, bool)
    edge = np.zeros(n + 1, bool)
    edge[
        np.unique(
            np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
        )
    ] = True
    edge[0] = True
    holes = ~edge[lab]  # background not reaching the box's edge: few voxels
    if not holes.any():
        return closed, np.zeros(closed.shape, bool)
    # Which lungs border each hole: the bits of its voxels' 4-neighbours.
    nb = _dilate(closed, _N4)
    area, dense_n, has_r, has_l = _voxel_stats(lab, holes, n, dense, (nb & 1) > 0, (nb & 2) > 0)
    bits = (has_r > 0).astype(np.uint8) | ((has_l > 0).astype(np.uint8) << 1)
    organ = (area * px_mm2 >= ORGAN_MIN_MM2) & (dense_n > 0.5 * area) & ~edge
    hole = ~edge & ((bits == 1) | (bits == 2)) & ~organ
    filled = closed | np.where(hole, bits, 0).astype(np.uint8)[lab]
    organ_hole = organ[lab]
    return filled, organ_hole


def _ellipses(ky: np.ndarray, kx: np.ndarray, g: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Direct least-squares ellipse fit (Fitzgibbon, Pilu and Fisher 1999) for every group of points at once.

    Returns ``(coef, ok)``: ``coef`` ``(G, 8)`` conic coefficients ``a..f`` in coordinates centred on the
    group's mean, then that mean ``(mx, my)``; ``ok`` marks groups with a proper ellipse.
    """
    cnt = np.bincount(g, minlength=n_groups).astype(np.float64)
    safe = np.maximum(cnt, 1)
    my = np.bincount(g, weights=ky, minlength=n_groups) / safe
    mx = np.bincount(g, weights=kx, minlength=n_groups) / safe
    y = ky - my[g]
    x = kx - mx[g]

    def s(a: int, b: int) -> np.ndarray:  # sum of x^a y^b per group
        return np.bincount(g, weights=(x**a) * (y**b), minlength=n_groups)

    m = {(a, b): s(a, b) for a in range(5) for b in range(5 - a) if a + b >= 1}
    m[(0, 0)] = cnt
    # D1 = [x^2, xy, y^2], D2 = [x, y, 1]
    d1 = [(2, 0), (1, 1), (0, 2)]
    d2 = [(1, 0), (0, 1), (0, 0)]
    S1 = np.stack([np.stack([m[(p[0] + q[0], p[1] + q[1])] for q in d1], -1) for p in d1], -2)
    S2 = np.stack([np.stack([m[(p[0] + q[0], p[1] + q[1])] for q in d2], -1) for p in d1], -2)
    S3 = np.stack([np.stack([m[(p[0] + q[0], p[1] + q[1])] for q in d2], -1) for p in d2], -2)
    ok = cnt >= ELLIPSE_MIN_POINTS
    S3 = np.where(ok[:, None, None], S3, np.eye(3))
    det = np.linalg.det(S3)
    ok &= np.abs(det) > 1e-9
    S3 = np.where(ok[:, None, None], S3, np.eye(3))
    T = -np.linalg.solve(S3, np.swapaxes(S2, 1, 2))
    M = S1 + S2 @ T
    M = np.stack([M[:, 2] / 2, -M[:, 1], M[:, 0] / 2], axis=1)
    M = np.where(ok[:, None, None] & np.isfinite(M), M, np.eye(3))
    _, v = np.linalg.eig(M)
    v = np.real(v)
    cond = 4 * v[:, 0] * v[:, 2] - v[:, 1] ** 2  # (G, 3): one per eigenvector
    pick = np.argmax(cond > 0, axis=1)
    ok &= (cond > 0).any(axis=1)
    a1 = v[np.arange(n_groups), :, pick]  # (G, 3)
    rest = np.einsum("gij,gj->gi", T, a1)
    coef = np.concatenate([a1, rest, mx[:, None], my[:, None]], axis=1)
    return coef, ok


def _ellipse_rows(coef: np.ndarray, ok: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and row, the column interval ``[lo, hi]`` inside the slice's ellipse (empty: lo > hi)."""
    a, b, c, d, e, f, mx, my = (coef[:, i][:, None] for i in range(8))
    y = np.arange(h, dtype=np.float64)[None, :] - my  # (Z, H)
    bb = b * y + d
    cc = c * y * y + e * y + f
    disc = bb * bb - 4 * a * cc
    # Inside is where the conic has the sign opposite to a (between the roots); the fitted points' centre
    # must be inside (f of the opposite sign), else the fit is degenerate.
    good = ok[:, None] & (disc > 0) & (a * f < 0) & (a != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(np.where(good, disc, 0.0))
        x1 = (-bb - r) / (2 * np.where(a != 0, a, 1.0))
        x2 = (-bb + r) / (2 * np.where(a != 0, a, 1.0))
    lo = np.where(good, np.minimum(x1, x2) + mx, np.inf)
    hi = np.where(good, np.maximum(x1, x2) + mx, -np.inf)
    return lo[..., None], hi[..., None]


def _hull_rows(sup: np.ndarray, cs: np.ndarray, sn: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slice and row, the column interval inside the polygon ``y cos + x sin <= sup`` (+ half a pixel)."""
    y = np.arange(h, dtype=np.float64)[None, :, None]  # (1, H, 1)
    rhs = sup[:, None, :] + 0.5 - y * cs  # (Z, H, K)
    pos, neg, flat = sn > 1e-9, sn < -1e-9, np.abs(sn) <= 1e-9
    with np.errstate(invalid="ignore"):
        hi = np.min(rhs[..., pos] / sn[pos], axis=-1)
        lo = np.max(rhs[..., neg] / sn[neg], axis=-1)
    row_ok = (rhs[..., flat] >= 0).all(axis=-1)
    hi = np.where(row_ok & np.isfinite(hi), hi, -np.inf)
    lo = np.where(row_ok & np.isfinite(lo), lo, np.inf)
    return lo[..., None], hi[..., None]


def _ellipse_area(coef: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = (coef[:, i] for i in range(6))
    m0 = np.stack(
        [np.stack([a, b / 2, d / 2], -1), np.stack([b / 2, c, e / 2], -1), np.stack([d / 2, e / 2, f], -1)], -2
    )
    dm = a * c - b * b / 4
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.pi * np.abs(np.linalg.det(m0)) / np.abs(dm) ** 1.5
    return np.where(dm > 0, area, np.inf)


def _additions(filled: np.ndarray, ok_px: np.ndarray) -> np.ndarray:
    """Soft tissue inside each lung's convex polygon or fitted ellipse, per slice and side (bit mask).

    Every slice at once, as one column interval per row: the polygon is the intersection of the
    ``HULL_DIRECTIONS`` supporting half-planes of the outline (within half a pixel of the convex hull for
    lung-sized shapes); the ellipse is fitted to the outline points within 1.5 px of a supporting line, i.e.
    the convex part of the outline, and used only where it holds most of the lung without being much larger.
    """
    z, h, w = filled.shape
    add = np.zeros(filled.shape, np.uint8)
    ang = np.arange(HULL_DIRECTIONS) * (2 * np.pi / HULL_DIRECTIONS)
    cs, sn = np.cos(ang), np.sin(ang)
    cols = np.arange(w, dtype=np.float64)[None, None, :]
    for bit in (1, 2):
        f = (filled & bit) > 0
        edge = f & ~_erode(f, _N4, border_value=True)
        kz, ky, kx = np.nonzero(edge)
        if kz.size == 0:
            continue
        proj = ky[:, None] * cs + kx[:, None] * sn  # (P, K)
        # Support of each slice's outline in each direction (np.nonzero sorts the points by slice).
        starts = np.flatnonzero(np.r_[True, kz[1:] != kz[:-1]])
        sup = np.full((z, HULL_DIRECTIONS), -np.inf)
        sup[kz[starts]] = np.maximum.reduceat(proj, starts, axis=0)
        lo, hi = _hull_rows(sup, cs, sn, h)
        region = (cols >= lo) & (cols <= hi)
        on_hull = (proj >= sup[kz] - 1.5).any(axis=1)
        coef, ok = _ellipses(ky[on_hull].astype(np.float64), kx[on_hull].astype(np.float64), kz[on_hull], z)
        if ok.any():
            elo, ehi = _ellipse_rows(coef, ok, h)
            ell = (cols >= elo) & (cols <= ehi)
            n_f = np.count_nonzero(f.reshape(z, -1), axis=1)
            n_in = np.count_nonzero((f & ell).reshape(z, -1), axis=1)
            use = (n_in > 0.8 * n_f) & (_ellipse_area(coef) < ELLIPSE_MAX_GROWTH * np.maximum(n_f, 1))
            region |= ell & use[:, None, None]
        add |= (region & ok_px & ~f).view(np.uint8) * np.uint8(bit)
    return add


def _lesion_contact(add: np.ndarray, lung: np.ndarray, dm: np.ndarray, edge_hu: np.ndarray) -> np.ndarray:
    """Keep the additions (per-slice components) that meet the aerated lung as a lesion does.

    A consolidation grows out of ground glass: the lung along its edge reads ``CONTACT_HU`` to ``AIR_HU``
    over a good part of its outline; or it is solid (``CONSOLIDATION_HU`` and denser on average), or it runs
    along the lung (a long contact). What the convex hull or the ellipse also sweeps in at a normal lung base
    or beside the heart (fat under the dome and around the pericardium, stomach content) touches the lung
    over a short, sharp edge and reads as fat: it is left out.
    """
    lab, n = ndimage.label(add > 0, structure=_S2D)
    if n == 0:
        return add
    # The lung within 2 px of an addition, each pixel given to the (largest label of the) additions near it.
    rz, ry, rx = np.nonzero(lung & _dilate(add > 0, _CONTACT_OFFSETS))
    _z, _h, _w = lab.shape
    p = np.pad(lab, ((0, 0), (2, 2), (2, 2)))
    ids = np.zeros(rz.size, lab.dtype)
    for dy, dx in _CONTACT_OFFSETS:
        np.maximum(ids, p[rz, ry + 2 + dy, rx + 2 + dx], out=ids)
    v = edge_hu[rz, ry, rx]  # not smoothed across the lung's edge: its partial volume is not ground glass
    contact = np.bincount(ids, minlength=n + 1)
    ggo_n = np.bincount(ids, weights=(v >= CONTACT_HU) & (v < AIR_HU), minlength=n + 1)
    inside = lab > 0
    area = np.bincount(lab[inside], minlength=n + 1)
    core = inside & erode(inside, N4, border_value=True)  # the density of the core, not of the rim
    core_n = np.bincount(lab[core], minlength=n + 1)
    mean_hu = np.bincount(lab[core], weights=dm[core], minlength=n + 1) / np.maximum(core_n, 1)
    mean_hu[core_n == 0] = -1000.0
    ggo = (ggo_n >= CONTACT_GGO_MIN * contact) & (contact >= CONTACT_MIN_RATIO * area)
    # A sharp-edged consolidation: a long contact, or the density of consolidation (fat pads and the fatty
    # tissue around a dome read -50 to -120 HU).
    sharp = (contact >= CONTACT_LONG_RATIO * area) | (mean_hu >= CONSOLIDATION_HU)
    keep = (contact >= 4) & (ggo | sharp)
    keep[0] = False
    return np.where(keep[lab], add, np.uint8(0))


def _sides(kept: np.ndarray, midline: np.ndarray) -> np.ndarray:
    cols = np.arange(kept.shape[2])
    right = kept & (cols[None, None, :] < midline[:, None, None])
    return right.view(np.uint8) | ((kept & ~right).view(np.uint8) << 1)


def _mediastinum(sides: np.ndarray, band: np.ndarray) -> np.ndarray:
    """The midline band, and in rows holding both lungs everything between their medial edges."""
    _z, _h, w = sides.shape
    cols = np.arange(w)
    right = (sides & 1) > 0
    left = (sides & 2) > 0
    r_edge = np.where(right.any(axis=2), w - 1 - np.argmax(right[:, :, ::-1], axis=2), -1)  # (Z, H)
    l_edge = np.where(left.any(axis=2), np.argmax(left, axis=2), w)
    both = (r_edge >= 0) & (l_edge < w)
    between = (cols > r_edge[..., None]) & (cols < l_edge[..., None]) & both[..., None]
    return band[:, None, :] | between


def _z_bridge(lung: np.ndarray, allowed: np.ndarray, dense: np.ndarray, px_mm2: float) -> np.ndarray:
    """Closing along z over up to ``Z_GAP`` slices (a slice that is almost all consolidation takes the lung its
    neighbours agree on), limited to allowed tissue and never a large organ-dense region (heart, dome)."""
    if lung.shape[0] < 3:
        return lung
    r = max(1, Z_GAP // 2)
    z = lung.shape[0]
    p = np.pad(lung, ((r, r), (0, 0), (0, 0)))
    dil = p[r : r + z].copy()
    for s in range(1, r + 1):
        dil |= p[r - s : r - s + z]
        dil |= p[r + s : r + s + z]
    q = np.pad(dil, ((r, r), (0, 0), (0, 0)), constant_values=True)
    ero = q[r : r + z].copy()
    for s in range(1, r + 1):
        ero &= q[r - s : r - s + z]
        ero &= q[r + s : r + s + z]
    added = ero & ~lung & allowed
    if not added.any():
        return lung
    solid = added & dense
    if solid.any():
        added &= ~_solid(solid, px_mm2)
    return lung | added


def _solid(mask: np.ndarray, px_mm2: float) -> np.ndarray:
    """Per-slice components of ``mask`` at least ``ORGAN_MIN_MM2`` large."""
    lab, n = ndimage.label(mask, structure=_S2D)
    if n == 0:
        return mask
    area = np.bincount(lab[mask], minlength=n + 1) * px_mm2
    big = area >= ORGAN_MIN_MM2
    big[0] = False
    return big[lab]


def bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` (slices with any voxel; rows and columns padded by ``pad``)."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    xs = np.flatnonzero(mask.any(axis=(0, 1)))
    h, w = mask.shape[1:]
    return (
        slice(int(zs[0]), int(zs[-1]) + 1),
        slice(max(0, int(ys[0]) - pad), min(h, int(ys[-1]) + 1 + pad)),
        slice(max(0, int(xs[0]) - pad), min(w, int(xs[-1]) + 1 + pad)),
    )


# ------------------------------------------------------------------------------------------ the entry


def segment(hu: np.ndarray, spacing: Sequence[float]) -> LungSegmentation:
    """Segment both lungs from HU (vessels and consolidation count as lung), with what was seen on the way.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(Z, H, W)`` display volume in HU (``int16``; memmaps are read once).
    spacing : sequence of float
        ``(dz, dy, dx)`` in mm.

    Returns
    -------
    LungSegmentation
        ``lung`` is all zeros when there are no lungs (an all-air or all-tissue volume, an abdomen).
    """
    dz, dy, dx = check_volume(hu, spacing)
    hu = np.asarray(hu)
    _z, h, w = hu.shape
    f = coarse_factor((dz, dy, dx))
    py, px = dy * f, dx * f
    px_mm = math.sqrt(py * px)
    px_mm2 = py * px
    voxel_ml = dz * px_mm2 / 1000.0

    ds = subsample(hu, f)
    air = ds < AIR_HU
    outside = outside_air(air)
    inside = air & ~outside
    # What air reads (a rescale check), without scanner padding outside the reconstruction circle.
    out_vals = ds[outside]
    out_vals = out_vals[out_vals > PADDING_HU]
    outside_hu = float(np.median(out_vals)) if out_vals.size else None
    if not inside.any():
        return LungSegmentation(np.zeros(hu.shape, np.uint8), f, False, outside_hu, 0.0)
    # The body's midline and width per slice, from everything that is not outside air.
    body_cols = np.count_nonzero(~outside, axis=1)  # (Z, W)
    body_n = body_cols.sum(axis=1)
    ww_full = ds.shape[2]
    midline_full = np.where(body_n > 0, body_cols @ np.arange(ww_full) / np.maximum(body_n, 1), ww_full / 2.0)
    width_full = np.maximum(np.count_nonzero(body_cols, axis=1), 1)

    # From here on, only the box around the air inside the body (padded by what the filling can reach).
    reach_px = round(HULL_REACH_MM / px_mm)
    bz, by, bx = bounding_box(inside, reach_px + math.ceil(CLOSING_MM / px_mm) + 2)
    ds = ds[bz, by, bx]
    cand = inside[bz, by, bx]
    body = ~outside[bz, by, bx]
    air = air[bz, by, bx]
    midline = midline_full[bz] - bx.start
    width = width_full[bz]
    dm = subsample_mean(hu[bz, by.start * f : by.stop * f, bx.start * f : bx.stop * f], f)
    gas = (dm if f > 1 else ds) < GAS_HU  # the 3x3 mean of f == 1 would blur small gas pockets into lung
    zz, _hh, ww = ds.shape

    cand, n_gas = _drop_gas(cand, gas, midline, px_mm2, px)
    kept = _keep_lungs(cand, gas, midline, voxel_ml)
    if not kept.any():
        return LungSegmentation(np.zeros(hu.shape, np.uint8), f, False, outside_hu, n_gas * voxel_ml)

    sides = _sides(kept, midline)
    allowed = body & (dm < BONE_HU)
    dense = dm >= ORGAN_HU
    band = np.abs(np.arange(ww)[None, :] - midline[:, None]) < MIDLINE_BAND * width[:, None]  # (Z, W)
    mediast = _mediastinum(sides, band)
    disk = _disk_offsets(CLOSING_MM / px_mm)
    closed = _erode(_dilate(sides, disk), disk, border_value=3)
    filled, organ = _fill_holes_sides(closed, dense, px_mm2)
    add = _additions(filled, allowed & ~mediast & ~organ & ~dense & _box_dilate(filled > 0, reach_px))
    # A thin crescent of lung (a base around its dome, an apex) has the dome or the neck in its hull: no
    # additions for a slice and side whose lung is nowhere thicker than 2 * THIN_MM.
    thick = erode(filled, _disk_offsets(THIN_MM / px_mm), border_value=3).reshape(zz, -1)
    bits = np.bitwise_or.reduce(thick, axis=1) if thick.size else np.zeros(zz, np.uint8)
    add &= bits[:, None, None]
    if add.any():
        # Opening: slivers along the hull's chords (chest-wall partial volume) and isolated noisy pixels are
        # not lesions; a consolidation is a few pixels thick. Then only what meets the lung as a lesion does.
        add = _dilate(_erode(add, _CROSS), _CROSS) & add
        add = _lesion_contact(add, filled > 0, dm, dm if f > 1 else ds)
    ks = np.flatnonzero(add.reshape(zz, -1).any(axis=1))
    if ks.size:
        # The additions can close a ring around a new hole: fill again, only the slices that changed.
        k0, k1 = int(ks[0]), int(ks[-1]) + 1
        refilled, _ = _fill_holes_sides(filled[k0:k1] | add[k0:k1], dense[k0:k1], px_mm2)
        filled[k0:k1] = refilled & np.where(organ[k0:k1], np.uint8(0), np.uint8(3))
    lung = _z_bridge(filled > 0, allowed & ~band[:, None, :], dense, px_mm2)

    full = np.zeros(hu.shape, np.uint8)
    if lung.any():
        # Only the lung's own box (one block of margin for the outer border) goes back to the full grid.
        lz, ly, lx = bounding_box(lung, 1)
        gz = slice(bz.start + lz.start, bz.start + lz.stop)
        ry = slice((by.start + ly.start) * f, min(h, (by.start + ly.stop) * f))
        rx = slice((bx.start + lx.start) * f, min(w, (bx.start + lx.stop) * f))
        _refine(lung[lz, ly, lx], air[lz, ly, lx], hu[gz, ry, rx], f, full[gz, ry, rx])
    touches = bool(full[:, 0, :].any() or full[:, -1, :].any() or full[:, :, 0].any() or full[:, :, -1].any())
    return LungSegmentation(full, f, touches, outside_hu, n_gas * voxel_ml)


def _refine(lung: np.ndarray, air: np.ndarray, hu: np.ndarray, f: int, out: np.ndarray) -> None:
    """Write the full-grid lung into ``out`` (a zeroed uint8 view): coarse blocks inside the lung are lung;
    blocks on its border (aerated blocks on the inner side, tissue blocks on the outer side) take the
    full-resolution voxels that are air-like. In place, one temporary: these are the only full-grid passes."""
    if f == 1:
        out[...] = lung
        return
    inner = lung & ~_erode(lung, _N4, border_value=True)
    outer = _dilate(lung, _N4) & ~lung
    refine = (inner & air) | (outer & ~air)
    # 2: lung; 1: lung where air-like; 0: not lung. code + air >= 2 decides every voxel in one comparison.
    code = (lung & ~refine).view(np.uint8) * np.uint8(2) | refine.view(np.uint8)
    up = upsample(code, f, hu.shape)
    ob = out.view(bool)
    np.less(hu, AIR_HU, out=ob)
    np.add(up, ob, out=up, casting="unsafe")
    np.greater_equal(up, 2, out=ob)


def segment_lungs(hu: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Both lungs as a ``uint8`` ``(Z, H, W)`` mask, 1 inside (see :func:`segment`; all zeros without lungs)."""
    return segment(hu, spacing).lung
