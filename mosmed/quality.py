"""Quality flags of one study: warnings with a reason, never errors (the study still opens and is measured).

:func:`assess` looks at the volume as read (:class:`mosmed.volume.Volume`), the lung segmentation
(:class:`mosmed.segmentation.LungSegmentation`) and the study's figures (:class:`mosmed.measurements.StudyStats`)
and returns a list of :class:`QualityFlag` (a short ``code`` for facets and filters, a readable ``reason``).
:func:`qc_text` makes the summary's ``qc`` column of them. Codes:

``no_lungs``      no lung found
``border``        lungs on the edge of the image: a cropped field of view, the figures cover only what is in view
``lung_volume``   a lung volume implausible for an adult chest CT at full inspiration
``not_chest``     the lungs fill only a small part of the scan's length (an abdomen with lung bases, a neck)
``air_hu``        air does not read near -1000 HU (a missing or wrong rescale)
``padding``       padding values (-2048, -3024, ...) outside the reconstruction circle
``spacing``       slices not evenly spaced along z, or not ordered
``grid``          slice count, slice spacing or field of view unlike MosMedData (8 mm, 33-53 slices)

The thresholds come from the dataset's protocol ([P2], ``../shared/reference/mosmeddata-paper-facts.md``:
whole lungs and about 5 cm beyond, 8 mm between kept slices, 350-500 mm display field of view) and from adult
physiology (total lung capacity about 4-7 L; CT at deep inspiration measures 2.5-8 L of lung).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CODES",
    "QualityFlag",
    "assess",
    "parse_qc",
    "qc_codes",
    "qc_text",
]

CODES: dict[str, str] = {
    "no_lungs": "no lungs found",
    "border": "lungs touch the edge of the image",
    "lung_volume": "implausible lung volume",
    "not_chest": "not a chest CT",
    "air_hu": "air not near -1000 HU",
    "padding": "padding values present",
    "spacing": "irregular slice spacing",
    "grid": "grid unlike MosMedData",
}
LUNG_ML_RANGE = (1500.0, 9000.0)  # both lungs of an adult at deep inspiration, with margin
CHEST_MIN_FRACTION = 0.4  # a chest CT's lungs span at least this share of its z extent
AIR_REF_HU = -1000.0  # air ...
AIR_TOLERANCE_HU = 100.0  # ... read within this (scanner calibration is within about +-10 HU)
PADDING_BELOW_HU = -1200  # nothing physical reads below air: lower values are padding
PADDING_MIN_FRACTION = 1e-4  # ignore a few noisy voxels
SPACING_TOLERANCE = 0.02  # relative spread of the slice steps that counts as irregular
MOSMED_SLICE_MM = (7.5, 8.5)  # every 10th image of 0.8 mm steps
MOSMED_SLICES = (30, 60)  # 33-53 in the dataset, with margin
MOSMED_FOV_MM = (250.0, 600.0)  # display field of view 350-500 mm, with margin


@dataclass(frozen=True)
class QualityFlag:
    """One warning about a study: ``code`` (one of ``CODES``) and a readable ``reason`` with the figures."""

    code: str
    reason: str

    def as_dict(self) -> dict:
        return {"code": self.code, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


def _air_reference(data: np.ndarray, outside_air_hu: float | None) -> float | None:
    """The HU of air: outside the body when there is some, else the darkest voxels that are not padding."""
    if outside_air_hu is not None:
        return float(outside_air_hu)
    sample = np.asarray(data)[:, ::4, ::4]
    vals = sample[sample > PADDING_BELOW_HU]
    if vals.size == 0:
        return None
    return float(np.percentile(vals, 0.5))


def assess(volume, seg, stats) -> list[QualityFlag]:
    """The quality flags of one study.

    Parameters
    ----------
    volume : mosmed.volume.Volume
        The study as read (display orientation, int16 HU, spacing, slice positions, source shape).
    seg : mosmed.segmentation.LungSegmentation
        Its lungs (``touches_border``, ``outside_air_hu``).
    stats : mosmed.measurements.StudyStats
        Its figures (``lung_ml``, ``lung_area_mm2``).

    Returns
    -------
    list of QualityFlag
        In the order of ``CODES``; empty for a clean MosMedData-like chest CT.
    """
    flags: list[QualityFlag] = []
    data = np.asarray(volume.data)
    z = int(data.shape[0])
    dz, dy, dx = (float(s) for s in volume.spacing)
    lung_ml = float(stats.lung_ml)
    area = np.asarray(stats.lung_area_mm2, dtype=float)
    lung_slices = np.flatnonzero(area > 0)

    if lung_ml <= 0 or lung_slices.size == 0:
        flags.append(QualityFlag("no_lungs", "no air-filled lung found inside the body"))
    else:
        if seg.touches_border:
            lung = np.asarray(seg.lung)
            edge = (
                lung[:, 0, :].any(axis=1)
                | lung[:, -1, :].any(axis=1)
                | lung[:, :, 0].any(axis=1)
                | lung[:, :, -1].any(axis=1)
            )
            flags.append(
                QualityFlag(
                    "border",
                    f"lungs touch the edge of the image on {int(edge.sum())} of {z} slices: the field of "
                    "view is cropped, so lung volume and involvement cover only what is in view",
                )
            )
        lo, hi = LUNG_ML_RANGE
        if not lo <= lung_ml <= hi:
            flags.append(
                QualityFlag(
                    "lung_volume",
                    f"lung volume {lung_ml:,.0f} mL is outside {lo:,.0f}-{hi:,.0f} mL, the range of an "
                    "adult chest CT at deep inspiration",
                )
            )
        span = (int(lung_slices[-1]) - int(lung_slices[0]) + 1) / z
        if z >= 3 and span < CHEST_MIN_FRACTION:
            where = "top" if lung_slices[0] >= z / 2 else "bottom" if lung_slices[-1] < z / 2 else "middle"
            flags.append(
                QualityFlag(
                    "not_chest",
                    f"lungs span only slices {int(lung_slices[0])}-{int(lung_slices[-1])} of {z} "
                    f"({100 * span:.0f} % of the scan, in its {where} part): probably not a chest CT",
                )
            )

    pad = int(np.count_nonzero(data < PADDING_BELOW_HU))
    if pad > PADDING_MIN_FRACTION * data.size:
        vals, counts = np.unique(data[data < PADDING_BELOW_HU], return_counts=True)
        top = vals[np.argsort(counts)[::-1][:3]]
        flags.append(
            QualityFlag(
                "padding",
                f"{pad:,} voxels ({100 * pad / data.size:.1f} %) read below {PADDING_BELOW_HU} HU "
                f"(most often {', '.join(str(int(v)) for v in top)}): scanner padding outside the "
                "reconstruction circle, taken as air",
            )
        )
    air = _air_reference(data, seg.outside_air_hu)
    if air is not None and abs(air - AIR_REF_HU) > AIR_TOLERANCE_HU:
        flags.append(
            QualityFlag(
                "air_hu",
                f"air reads {air:.0f} HU instead of about {AIR_REF_HU:.0f}: the rescale (slope and "
                "intercept) may be missing or wrong, so every HU figure is suspect",
            )
        )

    zpos = np.asarray(getattr(volume, "slice_z_mm", []), dtype=float)
    if zpos.size >= 3:
        steps = np.diff(zpos)
        med = float(np.median(np.abs(steps)))
        if not (np.all(steps > 0) or np.all(steps < 0)):
            flags.append(QualityFlag("spacing", "slice positions are not ordered along z"))
        elif med > 0 and float(np.max(np.abs(np.abs(steps) - med))) > SPACING_TOLERANCE * med:
            flags.append(
                QualityFlag(
                    "spacing",
                    f"slice steps range {float(np.min(np.abs(steps))):.2f}-"
                    f"{float(np.max(np.abs(steps))):.2f} mm around {med:.2f} mm",
                )
            )

    unlike = []
    if not MOSMED_SLICE_MM[0] <= dz <= MOSMED_SLICE_MM[1]:
        unlike.append(f"{dz:g} mm between slices (MosMedData: 8)")
    if not MOSMED_SLICES[0] <= z <= MOSMED_SLICES[1]:
        unlike.append(f"{z} slices (MosMedData: 33-53)")
    fov = max(data.shape[1] * dy, data.shape[2] * dx)
    if not MOSMED_FOV_MM[0] <= fov <= MOSMED_FOV_MM[1]:
        unlike.append(f"{fov:.0f} mm field of view (MosMedData: 350-500)")
    if unlike:
        flags.append(QualityFlag("grid", "unlike MosMedData: " + ", ".join(unlike)))
    return flags


def qc_codes(flags: Iterable[QualityFlag]) -> str:
    """The codes alone, ``"; "``-separated (``""`` for none): what a facet filters on."""
    return "; ".join(f.code for f in flags)


def qc_text(flags: Sequence[QualityFlag]) -> str:
    """The summary's ``qc`` column: ``"code: reason | code: reason"`` (``""`` when the study is clean).

    Codes come first in each part, so ``parse_qc`` (and a facet) can split them back out.
    """
    return " | ".join(str(f) for f in flags)


def parse_qc(text: str | None) -> list[str]:
    """The codes of a ``qc`` text (for a facet): ``"border: ... | grid: ..."`` -> ``["border", "grid"]``."""
    if not text or not isinstance(text, str):
        return []
    out = []
    for part in text.split(" | "):
        code = part.split(":", 1)[0].strip()
        if code in CODES:
            out.append(code)
    return out
