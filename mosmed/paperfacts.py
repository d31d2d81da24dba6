"""What the two MosMedData papers say about the dataset: sources, population, collection, acquisition protocol,
preprocessing, annotation principles and the class notes, as data for the overview's dataset card.

Transcribed from ``../shared/reference/mosmeddata-paper-facts.md``. Each fact names its source: **P1** (the
medRxiv/arXiv preprint) or **P2** (Digital Diagnostics, with its Table 2 for the acquisition protocol), or the
dataset's README. The severity table itself lives in :mod:`mosmed.severity`. Pure data, no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Source",
    "Fact",
    "CardSection",
    "P1",
    "P2",
    "SOURCES",
    "POPULATION",
    "COLLECTION",
    "ACQUISITION",
    "PREPROCESSING",
    "ANNOTATION",
    "CLASS_NOTES",
    "DATASET_CARD",
    "source",
]


@dataclass(frozen=True)
class Source:
    """A paper the facts come from."""

    key: str
    citation: str
    link: str


@dataclass(frozen=True)
class Fact:
    """One line of the card: what, its value, and where it is from (keys of :data:`SOURCES`, or "README")."""

    label: str
    value: str
    source: str


@dataclass(frozen=True)
class CardSection:
    """A titled group of facts of the dataset card."""

    title: str
    facts: tuple[Fact, ...]


P1 = Source(
    key="P1",
    citation="Morozov S.P. et al. MosMedData: Chest CT Scans with COVID-19 Related Findings Dataset. "
    "medRxiv 2020.05.20.20100362 (posted 2020-05-22), also arXiv:2005.06465. Preprint licence: "
    "CC BY-NC-ND 4.0.",
    link="https://arxiv.org/abs/2005.06465",
)
P2 = Source(
    key="P2",
    citation="Morozov S.P. et al. MosMedData: data set of 1110 chest CT scans performed during the COVID-19 "
    "epidemic. Digital Diagnostics 2020;1(1):49-59, DOI 10.17816/DD46826 (published 2020-12-21).",
    link="https://doi.org/10.17816/DD46826",
)
SOURCES: tuple[Source, ...] = (P1, P2)

POPULATION: tuple[Fact, ...] = (
    Fact("Studies", "1110 studies of 1110 patients", "P1, P2"),
    Fact("Sex", "42 % male, 56 % female, 2 % other/unknown", "P1, P2"),
    Fact("Age", "18-97 years, median 47", "P1, P2"),
)
COLLECTION: tuple[Fact, ...] = (
    Fact("Dates", "2020-03-01 to 2020-04-25", "P1, P2"),
    Fact("Sites", "Municipal outpatient CT centres of Moscow (P2 Table 3 lists 42 sites)", "P2"),
    Fact(
        "Classes", "CT-0 254 (22.8 %), CT-1 684 (61.6 %), CT-2 125 (11.3 %), CT-3 45 (4.1 %), CT-4 2 (0.2 %)", "P1, P2"
    ),
)
ACQUISITION: tuple[Fact, ...] = (
    Fact("Scanner", "Toshiba Aquilion 64 (Canon Medical Systems), 64 detector rows", "P2 Table 2"),
    Fact(
        "Tube voltage",
        "120 kV; automatic current modulation (SureExposure 3D) aiming at 10 HU noise for 5.0 mm slices, 80-500 mA",
        "P2 Table 2",
    ),
    Fact("Rotation", "0.5 s; scan time ≤ 10 s (usually 6 s); no gantry tilt; no contrast (IV or oral)", "P2 Table 2"),
    Fact("Breath", "Deep inspiration breath-hold; arms above the head", "P2 Table 2"),
    Fact("Range", "Whole lungs, about 5 cm above and below", "P2 Table 2"),
    Fact("Display FOV", "350-500 mm, at least 1 cm beyond the ribs", "P2 Table 2"),
    Fact(
        "Reconstructions",
        "Two series: soft-tissue kernel FC07 or FC18, lung kernel FC51; the dataset keeps the "
        "soft-tissue (BODY) series",
        "P2 Table 2",
    ),
    Fact("Slice thickness / step", "1.0 mm / 0.8 mm; every 10th image kept, so 8 mm between kept slices", "P2 Table 2"),
    Fact("Iterative reconstruction", "AIDR 3D in 5 studies; the rest filtered back-projection", "P2 Table 2"),
    Fact("Reading", "AGFA Enterprise 8.0, Vitrea FX; MIP, MinIP and MPR used", "P2 Table 2"),
    Fact("Dose", "DLP × 0.017 mSv/(mGy·cm) for chest CT", "P2 Table 2"),
)
PREPROCESSING: tuple[Fact, ...] = (
    Fact("Series kept", "The soft-tissue (BODY) reconstruction", "P2 Table 2"),
    Fact(
        "Images kept",
        "Every 10th image (1.0 mm images at a 0.8 mm step, so 8 mm between kept slices); converted from DICOM to NIfTI",
        "P1, P2",
    ),
)
ANNOTATION: tuple[Fact, ...] = (
    Fact(
        "Masks",
        "50 studies with binary masks (ground-glass opacities and consolidation as positive pixels), made in MedSeg",
        "P1, P2",
    ),
    Fact("Lesion density", "Mean density of the marked regions -700 to -130 HU", "P2"),
    Fact(
        "Not marked",
        "Large vessels and bronchi, unchanged parenchyma, motion artefacts (cough, breathing), "
        "gravitational changes where reliably distinguished, calcifications, pleural effusion",
        "P2",
    ),
    Fact("Readers", "Studies with masks assessed by 3 experts; every study by at least 2", "P1, P2"),
)
CLASS_NOTES: tuple[str, ...] = (
    "The class is based on radiological findings only, not on PCR results or clinical verification.",
    "The class was assigned before the DICOM-to-NIfTI conversion and before only every 10th image was kept.",
)
DATASET_CARD: tuple[CardSection, ...] = (
    CardSection("Population", POPULATION),
    CardSection("Collection", COLLECTION),
    CardSection("Acquisition protocol (P2 Table 2)", ACQUISITION),
    CardSection("Preprocessing", PREPROCESSING),
    CardSection("Annotation principles", ANNOTATION),
)

_BY_KEY = {s.key: s for s in SOURCES}


def source(key: str) -> Source:
    """The :class:`Source` of a key ("P1", "P2"); ``KeyError`` naming it when unknown."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown source {key!r} (expected one of {', '.join(_BY_KEY)})") from None
