"""Measuring one study: read, reorient, segment the lungs, measure, flag, draw the thumbnail, make its summary row.

This is the per-study pipeline of the cache build (:mod:`mosmed.cache.build`) and of a first open. It writes
nothing: :func:`analyze` returns the stats document (what the cache stores as ``stats/<entry>.json``), the
display arrays and the thumbnail; ``on_array(name, array)`` hands each array over as soon as it exists, so the
cache can write the volume while the lungs are being segmented.

The stats document: ``shape``, ``spacing`` (dz, dy, dx), ``slice_z_mm``, ``source_axcodes``, ``source_shape``,
``warnings``, ``summary`` (one row of :data:`SUMMARY_COLUMNS`), ``stats`` (:class:`StudyStats` fields) and ``qc``
(the quality flags, :mod:`mosmed.quality`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mosmed import measurements, quality, render, segmentation, severity, volume
from mosmed.errors import MosmedError
from mosmed.source import StudySource

__all__ = ["SUMMARY_COLUMNS", "StudyAnalysis", "analyze", "stats_from_doc", "band_check"]

#: Columns of the summary table, one row per registry row (the Dataset facade adds ``has_thumb``).
SUMMARY_COLUMNS = (
    "study_id",
    "category",
    "has_mask",
    "status",
    "error",
    "warnings",
    "n_slices",
    "rows",
    "cols",
    "spacing_mm",
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "lung_ml",
    "lesion_ml",
    "involvement_pct",
    "estimated_involvement_pct",
    "in_band",
    "estimate_in_band",
    "study_file",
    "mask_file",
    # The raw density measures (mosmed.involvement.DENSITY_COLUMNS), the estimate's calibration label
    # (mosmed.involvement.ESTIMATE_COLUMNS, set per dataset by mosmed.cache.summary) and the quality flags.
    "density_pct",
    "density_pct_750",
    "density_pct_600",
    "estimate_calibrated",
    "estimate_basis",
    "qc",
)

ArrayFn = Callable[[str, "np.ndarray | None"], None]


@dataclass
class StudyAnalysis:
    """What :func:`analyze` measured: the stats document, the display arrays and the PNG thumbnail."""

    doc: dict
    volume: np.ndarray
    mask: np.ndarray | None
    lung: np.ndarray
    thumb: bytes


def band_check(category: str, pct: float | None) -> bool | None:
    """Whether ``pct`` falls in the band of ``category``; None when either is unknown."""
    if pct is None or not math.isfinite(pct):
        return None
    try:
        return bool(severity.in_band(category, float(pct)))
    except (KeyError, ValueError):
        return None


def analyze(source: StudySource, on_array: ArrayFn | None = None) -> StudyAnalysis:
    """Read, reorient, segment, measure and draw one opened study source.

    Raises
    ------
    MosmedError
        Naming the study, for unusable data (unreadable file, mask on another grid, ...).
    """
    emit = on_array or (lambda name, arr: None)
    study_id = source.study_id
    if source.study_path is None:
        raise MosmedError("study file is not available", study_id=study_id)
    vol = volume.read_volume(source.study_path, study_id=study_id)
    warnings = list(vol.warnings)
    mask = None
    if source.mask_path is not None:
        mask, mwarn = volume.read_mask(source.mask_path, vol, study_id=study_id)
        warnings.extend(mwarn)
    hu = vol.data
    emit("volume", hu)
    emit("mask", mask)
    seg = segmentation.segment(hu, vol.spacing)  # kept for the quality flags (border contact, air HU)
    lung = seg.lung
    emit("lung", lung)
    st = measurements.study_stats(hu, vol.spacing, lung, mask)
    flags = quality.assess(vol, seg, st)  # warnings with a reason, never errors
    thumb = render.thumbnail(hu, mask, vol.spacing)

    category = source.category
    dz, dy, dx = (float(s) for s in vol.spacing)
    inv = None if st.involvement_pct is None else float(st.involvement_pct)
    est = float(st.estimated_involvement_pct)
    summary = {
        "study_id": study_id,
        "category": category,
        "has_mask": mask is not None,
        "status": "ok",
        "error": "",
        "warnings": "; ".join(warnings),
        "n_slices": int(hu.shape[0]),
        "rows": int(hu.shape[1]),
        "cols": int(hu.shape[2]),
        "spacing_mm": f"{dx:.3g} × {dy:.3g} × {dz:.3g}",
        "spacing_x": dx,
        "spacing_y": dy,
        "spacing_z": dz,
        "lung_ml": float(st.lung_ml),
        "lesion_ml": None if st.lesion_ml is None else float(st.lesion_ml),
        "involvement_pct": inv,
        "estimated_involvement_pct": est,
        "in_band": band_check(category, inv),
        "estimate_in_band": band_check(category, est),
        "study_file": source.study_file,
        "mask_file": source.mask_file,
        **{k: st.density.get(k) for k in ("density_pct", "density_pct_750", "density_pct_600")},
        "qc": quality.qc_text(flags),
    }
    doc = {
        "shape": list(hu.shape),
        "spacing": [dz, dy, dx],
        "slice_z_mm": np.asarray(vol.slice_z_mm, dtype=float),
        "source_axcodes": list(vol.source_axcodes),
        "source_shape": list(vol.source_shape),
        "warnings": warnings,
        "summary": summary,
        "stats": {f.name: getattr(st, f.name) for f in dataclasses.fields(st)},
        "qc": [f.as_dict() for f in flags],
    }
    return StudyAnalysis(doc=doc, volume=hu, mask=mask, lung=lung, thumb=thumb)


def stats_from_doc(doc: dict) -> measurements.StudyStats:
    """Rebuild the ``StudyStats`` of a stats document (lists back to arrays)."""
    raw = doc.get("stats") or {}
    kwargs = {}
    for f in dataclasses.fields(measurements.StudyStats):
        v = raw.get(f.name)
        if isinstance(v, list):
            v = np.asarray([np.nan if x is None else x for x in v], dtype=float)
            if f.name == "hist":
                v = v.astype(np.int64)
        kwargs[f.name] = v
    if kwargs.get("density") is None:
        kwargs["density"] = {}  # a document written without density features
    return measurements.StudyStats(**kwargs)
