"""A seeded synthetic chest for the segmentation, measurement, involvement and quality tests (numpy only).

Smaller and simpler than :mod:`mosmed.phantom` (which the tests also use): every structure is placed where a
test needs it, including the things real CT has and a segmentation must not take for lung.
"""

from __future__ import annotations

import numpy as np

SPACING = (8.0, 2.5, 2.5)
SHAPE = (16, 128, 128)


def make_chest(shape=SHAPE, spacing=SPACING, seed=0, lesions=(), noise=20.0):
    """``(hu, lung, lesion, trachea, vessel)`` of :func:`chest` (the original five-tuple)."""
    c = chest(shape, spacing, seed, lesions, noise)
    return c["hu"], c["lung"], c["lesion"], c["trachea"], c["vessel"]


def chest(
    shape=SHAPE,
    spacing=SPACING,
    seed=0,
    lesions=(),
    noise=20.0,
    stomach=False,
    table=False,
    air_hu=-1000.0,
    padding=None,
):
    """A seeded synthetic chest in display orientation (Z, H, W), built only from numpy.

    Body (fat rim, muscle), ribs, two lung ellipsoids (-860 HU) with the heart cut out of the left one, spine,
    a trachea in the upper slices, vessels (+40 HU) inside the lungs, and lesions: ``(kind, side, (fz, fy, fx),
    radius_mm)`` with kind "ggo" (about -480 HU) or "cons" (about +10 HU), side -1 = patient right (low columns),
    fractions of the lung's bounding box. Options: ``stomach`` puts a gas-and-fluid stomach under the left
    lung's base in the lowest slices (walled off from the lung by 6 mm of tissue), ``table`` a CT table under
    the back, ``air_hu`` is what outside air reads (a wrong rescale), ``padding`` a value written outside a
    reconstruction circle. Returns a dict: ``hu`` int16, true ``lung`` and ``lesion`` uint8, ``trachea``,
    ``vessel`` and ``stomach_gas`` bool.
    """
    rng = np.random.default_rng(seed)
    Z, H, W = shape
    dz, dy, dx = spacing
    z = (np.arange(Z) + 0.5)[:, None, None] * dz
    y = (np.arange(H) + 0.5)[None, :, None] * dy
    x = (np.arange(W) + 0.5)[None, None, :] * dx
    Hm, Wm, Zm = H * dy, W * dx, Z * dz
    cy, cx = Hm * 0.5, Wm * 0.5
    hu = np.full(shape, -1000, np.float32)
    body_r = ((y - cy) / (0.36 * Hm)) ** 2 + ((x - cx) / (0.45 * Wm)) ** 2
    hu[np.broadcast_to(body_r <= 1.0, shape)] = -90
    hu[np.broadcast_to(body_r <= 0.85, shape)] = 40
    rib_r = ((y - cy) / (0.31 * Hm)) ** 2 + ((x - cx) / (0.40 * Wm)) ** 2
    ang = np.arctan2((y - cy) / Hm, (x - cx) / Wm)
    hu[np.broadcast_to((np.abs(rib_r - 1.0) < 0.07) & (np.cos(ang * 14) > 0.3), shape)] = 500
    lung = np.zeros(shape, bool)
    zc, zr = Zm * 0.5, Zm * 0.62
    for side in (-1, 1):
        lx = cx + side * 0.19 * Wm
        lung |= ((z - zc) / zr) ** 2 + ((y - cy * 1.02) / (0.25 * Hm)) ** 2 + ((x - lx) / (0.15 * Wm)) ** 2 <= 1.0
    heart = (
        ((z - Zm * 0.3) / (Zm * 0.35)) ** 2
        + ((y - cy * 0.85) / (0.13 * Hm)) ** 2
        + ((x - (cx + 0.06 * Wm)) / (0.13 * Wm)) ** 2
    ) <= 1.0
    lung &= ~heart
    hu[heart] = 40
    hu[lung] = -860
    hu[np.broadcast_to(((y - cy * 1.5) / 18.0) ** 2 + ((x - cx) / 18.0) ** 2 <= 1.0, shape)] = 450
    trachea = np.broadcast_to(((y - cy * 0.9) / 9.0) ** 2 + ((x - cx) / 9.0) ** 2 <= 1.0, shape) & (z > Zm * 0.62)
    hu[trachea] = -1000
    gas = np.zeros(shape, bool)
    if stomach:
        # Under the left dome, in the lowest slices: gas on top (anterior), fluid below, a wall all round.
        sz, sy, sx = Zm * 0.08, cy * 0.95, cx + 0.2 * Wm
        e = ((z - sz) / max(14.0, dz)) ** 2 + ((y - sy) / 22.0) ** 2 + ((x - sx) / 26.0) ** 2
        wall = e <= (1.0 + 8.0 / 22.0) ** 2
        inner = e <= 1.0
        lung &= ~wall
        hu[wall] = 40
        gas = inner & (y < sy + 4.0)
        hu[inner] = 10
        hu[gas] = -1000
    lz, ly, lx_ = np.nonzero(lung[:, ::6, ::6])
    vessel = np.zeros(shape, bool)
    for i in rng.choice(len(ly), size=min(30, len(ly)), replace=False):
        vy, vx, r = ly[i] * 6 * dy, lx_[i] * 6 * dx, rng.uniform(2.5, 4.0)
        vessel |= (((y - vy) / r) ** 2 + ((x - vx) / r) ** 2 <= 1.0) & (np.abs(z - lz[i] * dz) < 2 * dz)
    vessel &= lung
    hu[vessel] = 40
    lesion = np.zeros(shape, bool)
    for kind, side, (fz, fy, fx), rad in lesions:
        lx = cx + side * 0.19 * Wm
        pz, py, px = zc + (fz - 0.5) * 1.6 * zr, cy * 1.02 + (fy - 0.5) * 0.5 * Hm, lx + (fx - 0.5) * 0.3 * Wm
        blob = (((z - pz) / max(rad, dz)) ** 2 + ((y - py) / rad) ** 2 + ((x - px) / rad) ** 2 <= 1.0) & lung
        lesion |= blob
        hu[blob] = rng.normal(-480, 90, int(blob.sum())) if kind == "ggo" else rng.normal(10, 25, int(blob.sum()))
    outside = np.broadcast_to(body_r > 1.0, shape)
    if table:
        # A curved table top 6 mm under the back, spanning most of the image, with air between.
        y_tab = cy + 0.36 * Hm + 6.0 + 0.002 * (x - cx) ** 2
        top = np.broadcast_to((y > y_tab) & (y < y_tab + 5.0) & (np.abs(x - cx) < 0.47 * Wm), shape)
        hu[top & outside] = 120
    hu[outside & (hu <= -999)] = air_hu
    hu += rng.normal(0, noise, size=shape).astype(np.float32)
    if padding is not None:
        circle = np.broadcast_to(((y - cy) / (0.5 * Hm)) ** 2 + ((x - cx) / (0.5 * Wm)) ** 2 > 1.0, shape)
        hu[circle] = padding
    return {
        "hu": np.clip(np.rint(hu), -32768, 32767).astype(np.int16),
        "lung": lung.astype(np.uint8),
        "lesion": lesion.astype(np.uint8),
        "trachea": trachea.copy(),
        "vessel": vessel,
        "stomach_gas": gas,
    }


def dice(a, b) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))
