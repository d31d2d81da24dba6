"""The facts panel under the viewer: grid, spacing, volumes, involvement against the class's band.

Everything it shows is read in ONE place, :func:`facts_of`, from the study's statistics and the dataset summary's
row (where the HU estimate is calibrated per dataset and the quality flags are); :func:`facts_panel` only lays
them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from components.markup import md_escape
from mosmed import severity
from mosmed.involvement import estimate_label

__all__ = ["Facts", "facts_of", "facts_panel"]


@dataclass(frozen=True)
class Facts:
    """What the panel shows about one study (``None`` = not known yet, e.g. before the cache entry is built)."""

    study_id: int
    category: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    has_mask: bool
    lung_ml: float | None
    lesion_ml: float | None
    involvement_pct: float | None
    estimated_involvement_pct: float | None
    estimate_calibrated: bool | None = None  # the dataset's calibration of the estimate (None: not known)
    estimate_basis: str = ""  # what the estimate is and how good (mosmed.involvement)
    quality: tuple[str, ...] = ()  # quality flags, "code: reason" each (warnings, not errors)
    extra: tuple[tuple[str, str], ...] = ()


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def facts_of(study: Any, row: Mapping[str, Any] | None = None) -> Facts:
    """The facts of an opened study: measured values from its statistics (else its stats document's summary),
    the HU estimate with its label and the quality flags from the dataset summary's ``row`` when given (the
    estimate is calibrated per dataset there)."""
    stats, summ = study.stats, dict(study.summary or {})
    row = dict(row) if row is not None else {}

    def pick(name: str) -> float | None:
        if stats is not None and _num(getattr(stats, name)) is not None:
            return _num(getattr(stats, name))
        return _num(summ.get(name))

    estimate = _num(row.get("estimated_involvement_pct")) if row else None
    calibrated = row.get("estimate_calibrated") if row else None
    if estimate is None:
        estimate = pick("estimated_involvement_pct")
        calibrated = False if estimate is not None else None  # the study's own, uncalibrated figure
    qc = str(row.get("qc") or summ.get("qc") or "")
    return Facts(
        study_id=int(study.study_id),
        category=str(study.category),
        shape=tuple(int(s) for s in study.volume.shape),
        spacing=tuple(float(s) for s in study.spacing),
        has_mask=study.mask is not None,
        lung_ml=pick("lung_ml"),
        lesion_ml=pick("lesion_ml"),
        involvement_pct=pick("involvement_pct"),
        estimated_involvement_pct=estimate,
        estimate_calibrated=None if calibrated is None or _isna(calibrated) else bool(calibrated),
        estimate_basis=str(row.get("estimate_basis") or ""),
        quality=tuple(part.strip() for part in qc.split("|") if part.strip()),
    )


def _isna(v: Any) -> bool:
    try:
        return bool(v != v) or v is None or str(v) == "<NA>"
    except (TypeError, ValueError):
        return True


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def facts_panel(facts: Facts) -> None:
    """Draw the facts of one study."""
    z, h, w = facts.shape
    dz, dy, dx = facts.spacing
    st.subheader(f"Study {facts.study_id:04d} · {facts.category}")
    f1, f2 = st.columns(2)
    f3, f4, f5 = st.columns(3)
    f1.metric("Grid (slices × rows × columns)", f"{z} × {h} × {w}")
    f2.metric("Spacing (mm)", f"{dz:g} / {dy:.3g} / {dx:.3g}", help="slice / row / column")
    f3.metric("Lung volume", _fmt(facts.lung_ml, " mL", 0))
    f4.metric("Lesion volume", _fmt(facts.lesion_ml, " mL", 1) if facts.has_mask else "no mask")
    measured, estimate = facts.involvement_pct, facts.estimated_involvement_pct
    label = estimate_label(facts.estimate_calibrated)
    f5.metric(
        "Involvement",
        _fmt(measured, " %") if measured is not None else f"≈ {_fmt(estimate, ' %')}",
        help="Measured from the expert mask; '≈' marks the HU-based estimate when there is no mask "
        f"({label}). " + facts.estimate_basis,
    )
    if measured is None and estimate is not None:
        f5.caption(label)
    if facts.quality:
        st.warning(
            md_escape("Quality flags (the study still opens; check before use): " + "; ".join(facts.quality)),
            icon=":material/report:",
        )
    for label, value in facts.extra:
        st.caption(md_escape(f"{label}: {value}"))
    try:
        lo, hi = severity.band(facts.category)
    except KeyError:
        st.caption(md_escape(f"Class {facts.category} has no severity band."))
        return
    band_text = "0 % (no pneumonia findings)" if facts.category == "CT-0" else f"{lo:g}–{hi:g} %"
    value, kind = (measured, "measured") if measured is not None else (estimate, f"estimated ({label})")
    fits = severity.in_band(facts.category, value) if value is not None else None
    verdict = "–" if fits is None else ("falls in" if fits else "falls OUTSIDE")
    st.markdown(
        f"**{facts.category} band:** {band_text}. The {kind} involvement ({_fmt(value, ' %')}) "
        f"**{verdict}** this band." + ("" if measured is None else f" HU-based {label}: {_fmt(estimate, ' %')}.")
    )
    st.caption(severity.severity_row(facts.category).ct_findings)
