"""Texture statistics of a CT volume: noise amplitude in soft tissue and the HU distribution of normal lung.

These are the figures the synthetic generator (:mod:`mosmed.phantom`) is calibrated with against real CT
(``../shared/realct/``): a phantom "looks like CT" in these terms when its noise and lung histogram match.

Definitions (all on a display volume ``(Z, H, W)`` of int16 HU, see docs/ARCHITECTURE.md):

* **Noise** (``noise_mad_hu``): the residual ``r = HU - median3x3(HU)``, the median taken in-plane per axial
  slice (3 x 3, edges repeated). Soft tissue is where the *median* image lies in ``[0, 100]`` HU for the voxel
  and all 8 in-plane neighbours (a 3 x 3 binary erosion of that band), which keeps edges out. The figure is
  the scaled median absolute deviation of ``r`` over those voxels, ``1.4826 * median(|r - median(r)|)`` (the
  factor makes it a standard deviation for Gaussian data). On the real chest crop
  (``chest_crop_lps_1p5mm.nii.gz``) this gives 20.76 HU (reported 20.8); on the abdomen (3 mm) 10.4 HU.
  Residuals of integer HU are integers, so the figure moves in steps of 1.48 HU.
* **Normal lung** (``lung_median_hu``, ``lung_p10_p90_hu``): voxels below ``LUNG_CUT_HU`` (-500 HU) inside a
  lung region. With a lung mask given (a phantom's truth without its lesions), the region is that mask; without
  one, it is the 6-connected components of ``HU < -500`` that are lung-like (median above ``GAS_MEDIAN_HU``,
  so outside air, trachea and bowel gas are dropped) and at least ``MIN_COMPONENT_FRACTION`` of the largest
  such component. On the real chest crop this threshold mask holds 1739 mL; median -805 HU, p10-p90 width
  179 HU (issue 9 quotes -804 and 179).

Pure numpy/scipy: no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "MAD_TO_SD",
    "SOFT_BAND_HU",
    "LUNG_CUT_HU",
    "GAS_MEDIAN_HU",
    "MIN_COMPONENT_FRACTION",
    "TextureStats",
    "median_residual",
    "soft_tissue_mask",
    "threshold_lung_mask",
    "robust_sd",
    "texture_stats",
]

MAD_TO_SD = 1.4826  # MAD of a Gaussian times this is its standard deviation
SOFT_BAND_HU: tuple[float, float] = (0.0, 100.0)
LUNG_CUT_HU = -500.0
GAS_MEDIAN_HU = -950.0  # a component of pure gas (outside air, trachea, stomach) has its median below this
MIN_COMPONENT_FRACTION = 0.01  # of the largest lung-like component: smaller air pockets are not lung
_PLANE3 = np.ones((1, 3, 3), bool)


@dataclass(frozen=True)
class TextureStats:
    """Texture figures of one volume (see the module docstring for the definitions).

    Attributes
    ----------
    noise_mad_hu : float
        Scaled MAD of the 3x3-median residual in soft tissue (HU); NaN when no soft-tissue voxel.
    noise_voxels : int
        Soft-tissue voxels the noise figure is taken over.
    noise_lag1_corr : float
        Correlation of horizontally adjacent residuals ``HU - mean7x7(HU)`` in soft tissue at least 3 pixels from
        an edge: about 0 for white noise, higher for the correlated noise of a
        reconstruction kernel (pixel-size dependent). NaN when too few such voxels.
    lung_median_hu, lung_p10_hu, lung_p90_hu, lung_p10_p90_hu : float
        Median, 10th and 90th percentile of the lung voxels below -500 HU and the p10-p90 width; NaN without lung.
    lung_ml : float
        Volume of those voxels in mL.
    lung_source : str
        ``"mask"`` (given) or ``"threshold"`` (derived here), ``"none"`` when no lung was found.
    pixel_mm : float
        In-plane pixel size (mean of dy, dx), which the noise figures depend on.
    """

    noise_mad_hu: float
    noise_voxels: int
    noise_lag1_corr: float
    lung_median_hu: float
    lung_p10_hu: float
    lung_p90_hu: float
    lung_p10_p90_hu: float
    lung_ml: float
    lung_source: str
    pixel_mm: float


def _check(hu: np.ndarray, spacing: Sequence[float]) -> tuple[float, float, float]:
    if np.ndim(hu) != 3:
        raise ValueError(f"expected a 3D display volume (Z, H, W), got shape {np.shape(hu)}")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive numbers (dz, dy, dx), got {tuple(spacing)}")
    return sp  # type: ignore[return-value]


def median_residual(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(median, residual)``: the in-plane 3x3 median per axial slice and ``hu - median`` (float32)."""
    x = np.asarray(hu, dtype=np.float32)
    med = ndimage.median_filter(x, size=(1, 3, 3), mode="nearest")
    return med, x - med


def soft_tissue_mask(median: np.ndarray, band: tuple[float, float] = SOFT_BAND_HU) -> np.ndarray:
    """Voxels whose 3x3-median HU and all 8 in-plane neighbours' lie in ``band``: soft tissue away from edges."""
    inband = (median >= band[0]) & (median <= band[1])
    return ndimage.binary_erosion(inband, structure=_PLANE3)


def robust_sd(values: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)``; NaN for no values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float("nan")
    return float(MAD_TO_SD * np.median(np.abs(v - np.median(v))))


def threshold_lung_mask(hu: np.ndarray) -> np.ndarray:
    """Lung voxels by threshold and connectivity: lung-like 6-connected components of ``HU < -500`` (bool).

    A component is lung-like when its median HU is above ``GAS_MEDIAN_HU`` (outside air, the trachea and bowel
    gas are near -1000) and it holds at least ``MIN_COMPONENT_FRACTION`` of the largest lung-like component's
    voxels. Lungs that reach the border of a cropped field of view are kept (nothing is dropped for touching
    the border). A measuring tool for real CT without truth, not the app's segmentation.
    """
    hu = np.asarray(hu)
    lab, n = ndimage.label(hu < LUNG_CUT_HU)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    meds = np.asarray(ndimage.median(hu, lab, np.arange(1, n + 1)), dtype=np.float64)
    lungish = np.flatnonzero(meds > GAS_MEDIAN_HU) + 1
    if lungish.size == 0:
        return np.zeros(hu.shape, bool)
    biggest = sizes[lungish].max()
    keep = lungish[sizes[lungish] >= MIN_COMPONENT_FRACTION * biggest]
    return np.isin(lab, keep)


def _lag1_corr(hu: np.ndarray, median: np.ndarray) -> float:
    # The 7x7 mean must not reach an edge, or the edge's step, not the noise, dominates the correlation.
    inband = (median >= SOFT_BAND_HU[0]) & (median <= SOFT_BAND_HU[1])
    core = ndimage.binary_erosion(inband, structure=np.ones((1, 7, 7), bool))
    hp = np.asarray(hu, np.float32) - ndimage.uniform_filter(np.asarray(hu, np.float32), size=(1, 7, 7))
    both = core[:, :, :-1] & core[:, :, 1:]
    if both.sum() < 10:
        return float("nan")
    a, b = hp[:, :, :-1][both], hp[:, :, 1:][both]
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def texture_stats(hu: np.ndarray, spacing: Sequence[float], lung: np.ndarray | None = None) -> TextureStats:
    """Noise and normal-lung figures of a display volume.

    Parameters
    ----------
    hu : (Z, H, W) HU, display orientation (axial slices are ``hu[k]``).
    spacing : (dz, dy, dx) mm.
    lung : optional (Z, H, W) mask of *normal* lung (e.g. a phantom's lung truth minus its lesions); without it
        the lungs are found by :func:`threshold_lung_mask`. Either way only voxels below -500 HU are measured.

    Returns
    -------
    TextureStats
    """
    dz, dy, dx = _check(hu, spacing)
    med, res = median_residual(hu)
    soft = soft_tissue_mask(med)
    noise = robust_sd(res[soft])
    corr = _lag1_corr(hu, med)
    del med, res
    if lung is not None:
        lung = np.asarray(lung)
        if lung.shape != np.shape(hu):
            raise ValueError(f"lung mask shape {lung.shape} differs from the volume's {np.shape(hu)}")
        region, source = lung > 0, "mask"
    else:
        region, source = threshold_lung_mask(hu), "threshold"
    vals = np.asarray(hu)[region & (np.asarray(hu) < LUNG_CUT_HU)]
    if vals.size:
        p10, p50, p90 = (float(v) for v in np.percentile(vals, [10, 50, 90]))
    else:
        p10 = p50 = p90 = float("nan")
        source = "none"
    return TextureStats(
        noise_mad_hu=noise,
        noise_voxels=int(soft.sum()),
        noise_lag1_corr=corr,
        lung_median_hu=p50,
        lung_p10_hu=p10,
        lung_p90_hu=p90,
        lung_p10_p90_hu=p90 - p10,
        lung_ml=float(vals.size * dz * dy * dx / 1000.0),
        lung_source=source,
        pixel_mm=(dy + dx) / 2.0,
    )
