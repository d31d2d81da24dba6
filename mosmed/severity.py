"""The CT-0 .. CT-4 severity scale of MosMedData: the paper's table, band edges, published counts, licence and
citation text.

Source
------
The severity table is the one of the dataset's paper, quoted as it stands there: **P1**, Morozov S.P. et al.,
*MosMedData: Chest CT Scans with COVID-19 Related Findings Dataset*, medRxiv 2020.05.20.20100362 /
arXiv:2005.06465, "Table. Classification of the severity of lung tissue abnormalities with COVID-19 and routing
rules" (transcribed in ``../shared/reference/mosmeddata-paper-facts.md``). Where the later journal version,
**P2** (Digital Diagnostics 2020;1(1):49-59, DOI 10.17816/DD46826, Table 1), reads otherwise, the row says so in
``p2_differs`` (column -> what P2 reads). The involvement bands used for computing (``band``) are the table's
percentages.

The class was assigned from radiological findings only, before the DICOM-to-NIfTI conversion and the
every-10th-image selection: an involvement measured on the published files can fall outside the class band
(:data:`MOSMED_CLASS_NOTES`, from :mod:`mosmed.paperfacts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mosmed.paperfacts import CLASS_NOTES, P1

__all__ = [
    "CLASSES",
    "PUBLISHED_COUNTS",
    "PUBLISHED_TOTAL",
    "PUBLISHED_MASKS",
    "BAND_EDGES",
    "SeverityRow",
    "SEVERITY_TABLE",
    "SEVERITY_TABLE_TITLE",
    "SEVERITY_COLUMNS",
    "SEVERITY_SOURCE_NOTE",
    "SEVERITY_P2_NOTE",
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
PUBLISHED_COUNTS: Mapping[str, int] = MappingProxyType({"CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45, "CT-4": 2})
PUBLISHED_TOTAL = 1110
PUBLISHED_MASKS = 50  # CT-1 studies 255..304
BAND_EDGES: tuple[float, float, float] = (25.0, 50.0, 75.0)


@dataclass(frozen=True)
class SeverityRow:
    """One row of the paper's severity table (P1), verbatim.

    Attributes
    ----------
    category : "CT-0" .. "CT-4".
    name : the table's "severity" (Zero, Mild, Moderate, Severe, Critical).
    ct_findings, clinical, routing : the table's "CT findings", "clinical data" and "decision (routing)" cells.
    band : involvement band in percent of lung parenchyma, ``(low, high]`` (CT-0 is ``(0, 0)``), for computing.
    involvement : the band as the table writes it (a short form of the percentage in ``ct_findings``).
    p2_differs : ``(column, what P2 reads)`` pairs where the Digital Diagnostics version differs; column is one
        of ``"ct_findings"``, ``"clinical"``, ``"routing"``.
    """

    category: str
    name: str
    ct_findings: str
    involvement: str
    band: tuple[float, float]
    clinical: str
    routing: str
    p2_differs: tuple[tuple[str, str], ...] = ()

    def p2_note(self, column: str) -> str | None:
        """What P2 reads instead for a column of this row, or None where both papers agree."""
        for col, note in self.p2_differs:
            if col == column:
                return note
        return None


_P2_FINDINGS = (
    "P2 adds \u201cwith or without consolidation, crazy paving\u201d and a qualitative amount of "
    "involvement (minimal / average / significant, over CT-1 to CT-3)."
)

SEVERITY_TABLE_TITLE = "Classification of the severity of lung tissue abnormalities with COVID-19 and routing rules"
# Column headers as in the paper, keyed by SeverityRow field.
SEVERITY_COLUMNS: Mapping[str, str] = MappingProxyType(
    {
        "category": "class",
        "name": "severity",
        "ct_findings": "CT findings",
        "clinical": "clinical data",
        "routing": "decision (routing)",
    }
)

SEVERITY_TABLE: tuple[SeverityRow, ...] = (
    SeverityRow(
        category="CT-0",
        name="Zero",
        ct_findings="Not consistent with pneumonia (including COVID-19).",
        involvement="0 %",
        band=(0.0, 0.0),
        clinical="\u2013",
        routing="Inform the attending physician. Refer to a specialist.",
        p2_differs=(("routing", "P2 reads \u201cinform the attending physician\u201d."),),
    ),
    SeverityRow(
        category="CT-1",
        name="Mild",
        ct_findings="Ground glass opacities. Pulmonary parenchymal involvement \u2264 25 %, OR absence of CT signs "
        "in typical clinical manifestations and relevant epidemiological history.",
        involvement="\u2264 25 %",
        band=(0.0, 25.0),
        clinical="A. t\u00b0 < 38.0 \u00b0C; B. RR < 20/min; C. SpO2 > 95 %",
        routing="Follow-up at home using telemedicine technologies (mandatory telemonitoring).",
        p2_differs=(("ct_findings", _P2_FINDINGS),),
    ),
    SeverityRow(
        category="CT-2",
        name="Moderate",
        ct_findings="Ground glass opacities. Pulmonary parenchymal involvement 25\u201350 %.",
        involvement="25\u201350 %",
        band=(25.0, 50.0),
        clinical="A. t\u00b0 > 38.5 \u00b0C; B. RR 20\u201330/min; C. SpO2 95 %",
        routing="Follow-up at home by a primary care physician.",
        p2_differs=(
            ("ct_findings", _P2_FINDINGS),
            ("clinical", "P2 reads t\u00b0 < 38.5 \u00b0C and SpO2 \u2265 95 %."),
        ),
    ),
    SeverityRow(
        category="CT-3",
        name="Severe",
        ct_findings="Ground glass opacities. Pulmonary consolidation. Pulmonary parenchymal involvement 50\u201375 %. "
        "Lung involvement increased in 24\u201348 hours by 50 % in respiratory impairment per "
        "follow-up studies.",
        involvement="50\u201375 %",
        band=(50.0, 75.0),
        clinical="One or more signs on the background of fever: A. t\u00b0 > 38.5 \u00b0C; B. RR \u2265 30/min; "
        "C. SpO2 \u2264 95 %; D. PaO2/FiO2 \u2264 300 mmHg (1 mmHg = 0.133 kPa)",
        routing="Immediate admission to a COVID-specialised hospital. In a hospital setting: immediate transfer "
        "to the intensive care and resuscitation unit. Emergency CT (if not done before).",
        p2_differs=(
            ("ct_findings", _P2_FINDINGS),
            ("clinical", "P2 reads \u201c\u2265 2 signs on the background of fever\u201d and SpO2 \u2264 93 %."),
        ),
    ),
    SeverityRow(
        category="CT-4",
        name="Critical",
        ct_findings="Diffuse ground glass opacities with consolidations and reticular changes. Hydrothorax "
        "(bilateral, more on the left). Pulmonary parenchymal involvement \u2265 75 %.",
        involvement="\u2265 75 %",
        band=(75.0, 100.0),
        clinical="Signs of shock, multiple organ failure, respiratory failure.",
        routing="Emergency medical care. Immediate admission to a specialised hospital for patients diagnosed "
        "with COVID-19. In a hospital setting: immediate transfer to the intensive care and "
        "resuscitation unit. Emergency CT (if not done before and when the patient's status allows it).",
    ),
)

SEVERITY_SOURCE_NOTE = (
    f"Source: P1 \u2014 {P1.citation} Table \u201c{SEVERITY_TABLE_TITLE}\u201d, quoted as it stands. "
    "Where P2 (Digital Diagnostics 2020;1(1):49-59, DOI 10.17816/DD46826, Table 1) reads otherwise, it is "
    "noted under the table."
)
SEVERITY_P2_NOTE = "P2's Table 1 (Digital Diagnostics) differs in these cells; everything else reads as in P1."

MOSMED_CLASS_NOTES: tuple[str, ...] = CLASS_NOTES

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
