"""The CT-0 .. CT-4 severity scale of MosMedData, band edges, published counts, licence and citation text.

Sources
-------
* CT findings and involvement bands: the dataset's own README ("Class C Annotation Principles"), which follows
  the Moscow guideline (Morozov S.P., Protsenko D.N., Smetanina S.V. et al., *Radiation diagnostics of
  coronavirus disease (COVID-19): organisation, methodology, interpretation of results*, preprint
  No. CDT-2020-II, version 2 of 17.04.2020) and is reproduced as Table 1 of Morozov et al. 2020,
  arXiv:2005.06465 ("assessment of severity of COVID-19 from CT").
* Clinical data and routing: the same guideline's table as summarised in that paper. The paper's exact table
  text could not be retrieved on this machine; the wording here is a faithful summary of the guideline, not a
  verbatim quote (see :data:`SEVERITY_SOURCE_NOTE`).

The class was assigned from radiological findings only, before the DICOM-to-NIfTI conversion and the
every-10th-slice selection: an involvement measured on the published files can fall outside the class band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "CLASSES",
    "PUBLISHED_COUNTS",
    "PUBLISHED_TOTAL",
    "PUBLISHED_MASKS",
    "BAND_EDGES",
    "SeverityRow",
    "SEVERITY_TABLE",
    "SEVERITY_SOURCE_NOTE",
    "severity_row",
    "band",
    "in_band",
    "class_for_involvement",
    "MOSMED_TITLE",
    "MOSMED_LICENCE",
    "MOSMED_LICENCE_NAME",
    "MOSMED_COPYRIGHT",
    "MOSMED_CITATION",
    "MOSMED_LINK",
    "MOSMED_CLASS_NOTES",
]

CLASSES: tuple[str, ...] = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
PUBLISHED_COUNTS: Mapping[str, int] = MappingProxyType(
    {"CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45, "CT-4": 2}
)
PUBLISHED_TOTAL = 1110
PUBLISHED_MASKS = 50  # CT-1 studies 255..304
BAND_EDGES: tuple[float, float, float] = (25.0, 50.0, 75.0)


@dataclass(frozen=True)
class SeverityRow:
    """One row of the severity table.

    ``band`` is the involvement band in percent of lung parenchyma, ``(low, high]`` (CT-0 is ``(0, 0)``).
    """

    category: str
    name: str
    ct_findings: str
    involvement: str
    band: tuple[float, float]
    clinical: str
    routing: str


SEVERITY_TABLE: tuple[SeverityRow, ...] = (
    SeverityRow(
        category="CT-0",
        name="Normal",
        ct_findings="Normal lung tissue; no CT signs of viral pneumonia.",
        involvement="0%",
        band=(0.0, 0.0),
        clinical="No CT findings of pneumonia; clinical signs, if any, are assessed without regard to CT.",
        routing="Referral to a specialist (e.g. an infectious disease doctor or general practitioner) as "
                "clinically indicated.",
    ),
    SeverityRow(
        category="CT-1",
        name="Mild",
        ct_findings="Several ground-glass opacifications.",
        involvement="less than 25%",
        band=(0.0, 25.0),
        clinical="Body temperature below 38 °C, respiratory rate below 20 per minute, SpO2 of 95% or more.",
        routing="Follow-up at home, monitored through telemedicine.",
    ),
    SeverityRow(
        category="CT-2",
        name="Moderate",
        ct_findings="Ground-glass opacifications.",
        involvement="25-50%",
        band=(25.0, 50.0),
        clinical="Body temperature above 38.5 °C, respiratory rate 20-30 per minute, SpO2 below 95% "
                 "(dyspnoea on exertion).",
        routing="Follow-up at home by a primary care physician.",
    ),
    SeverityRow(
        category="CT-3",
        name="Severe",
        ct_findings="Ground-glass opacifications and regions of consolidation.",
        involvement="50-75%",
        band=(50.0, 75.0),
        clinical="Body temperature above 38.5 °C, respiratory rate above 30 per minute, SpO2 of 93% or less; "
                 "unstable haemodynamics possible.",
        routing="Immediate admission to a hospital dedicated to COVID-19.",
    ),
    SeverityRow(
        category="CT-4",
        name="Critical",
        ct_findings="Diffuse ground-glass opacifications and consolidation with reticular changes in the lungs.",
        involvement="more than 75%",
        band=(75.0, 100.0),
        clinical="Respiratory failure (ARDS) needing ventilation, shock, or multiple organ dysfunction.",
        routing="Emergency medical care: immediate admission to intensive care.",
    ),
)

SEVERITY_SOURCE_NOTE = (
    "CT findings and involvement bands as in the MosMedData README (Class C annotation principles), after the "
    "Moscow guideline (preprint CDT-2020-II, v2, 17.04.2020) reproduced as Table 1 of Morozov et al. 2020 "
    "(arXiv:2005.06465). Clinical data and routing summarise that guideline; they are not a verbatim quote."
)

MOSMED_CLASS_NOTES: tuple[str, ...] = (
    "The class was assigned before the DICOM-to-NIfTI conversion and before only every 10th image was kept.",
    "The class is based on radiological findings only, not on PCR results or clinical verification.",
)

_BY_CATEGORY: Mapping[str, SeverityRow] = MappingProxyType({r.category: r for r in SEVERITY_TABLE})


def severity_row(category: str) -> SeverityRow:
    """The table row of a class label; ``KeyError`` naming the label when unknown."""
    try:
        return _BY_CATEGORY[category]
    except KeyError:
        raise KeyError(f"unknown class {category!r} (expected one of {', '.join(CLASSES)})") from None


def band(category: str) -> tuple[float, float]:
    """Involvement band ``(low, high]`` in percent: CT-0 (0, 0), CT-1 (0, 25], ..., CT-4 (75, 100]."""
    return severity_row(category).band


def in_band(category: str, pct: float, tolerance: float = 0.0) -> bool:
    """Whether an involvement percentage lies in the class's band, widened by ``tolerance`` points each side.

    CT-0 accepts ``pct <= tolerance``; the other classes ``low - tol < pct <= high + tol``. NaN is never in a
    band.
    """
    if pct is None or (isinstance(pct, float) and math.isnan(pct)):
        return False
    pct = float(pct)
    if math.isnan(pct):
        return False
    lo, hi = band(category)
    tol = max(0.0, float(tolerance))
    if category == "CT-0":
        return pct <= tol
    return (lo - tol) < pct <= (hi + tol)


def class_for_involvement(pct: float) -> str:
    """The class whose band holds ``pct``: 0 -> CT-0, (0,25] -> CT-1, (25,50] -> CT-2, (50,75] -> CT-3, > 75 -> CT-4.

    Raises ``ValueError`` for NaN.
    """
    pct = float(pct)
    if math.isnan(pct):
        raise ValueError("involvement is NaN: no class")
    if pct <= 0.0:
        return "CT-0"
    for edge, cat in zip(BAND_EDGES, ("CT-1", "CT-2", "CT-3")):
        if pct <= edge:
            return cat
    return "CT-4"


MOSMED_TITLE = "MosMedData: Chest CT Scans with COVID-19 Related Findings (COVID19_1110, version 1.0, 28.04.2020)"
MOSMED_LINK = "https://mosmed.ai/datasets/covid19_1110"
MOSMED_COPYRIGHT = (
    "Copyright © 2020 Research and Practical Clinical Center for Diagnostics and Telemedicine Technologies "
    "of the Moscow Health Care Department."
)
MOSMED_LICENCE_NAME = "Creative Commons Attribution-NonCommercial-NoDerivs 3.0 Unported (CC BY-NC-ND 3.0)"
MOSMED_LICENCE = (
    f"{MOSMED_COPYRIGHT} The dataset is licensed under the {MOSMED_LICENCE_NAME} licence. "
    "You may share it (copy and redistribute it in any medium or format) if you give appropriate credit "
    "(the authors, their affiliation, the copyright and the permanent link "
    f"{MOSMED_LINK}) and share the licence or a link to it. You must not use it for commercial purposes, "
    "must not distribute modified material if you remix, transform or build upon it, and must not apply legal "
    "terms or technological measures that restrict others from doing anything the licence permits."
)
MOSMED_CITATION = (
    "Morozov, S.P., Andreychenko, A.E., Pavlov, N.A., Vladzymyrskyy, A.V., Ledikhova, N.V., Gombolevskiy, V.A., "
    "Blokhin, I.A., Gelezhe, P.B., Gonchar, A.V. and Chernina, V.Y., 2020. MosMedData: Chest CT Scans With "
    "COVID-19 Related Findings Dataset. arXiv preprint arXiv:2005.06465."
)
