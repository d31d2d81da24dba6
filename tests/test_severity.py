"""The severity table, bands and dataset text."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from mosmed import severity as S


def test_table_covers_the_five_classes_in_order():
    assert S.CLASSES == ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
    assert tuple(r.category for r in S.SEVERITY_TABLE) == S.CLASSES
    # The paper's (P1) "severity" column.
    assert [r.name for r in S.SEVERITY_TABLE] == ["Zero", "Mild", "Moderate", "Severe", "Critical"]
    for r in S.SEVERITY_TABLE:
        assert r.ct_findings and r.clinical and r.routing and r.involvement
    with pytest.raises(KeyError, match="unknown class 'CT-9'"):
        S.severity_row("CT-9")


def _facts_table() -> dict[str, list[str]]:
    """The severity table of ../shared/reference/mosmeddata-paper-facts.md, row by row (cells as written)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "mosmeddata-paper-facts.md"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {path}")
        pytest.skip(f"{path} not found (a fresh clone without ../shared)")
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"CT-[0-4]", cells[0]):
            rows[cells[0]] = cells
    return rows


def test_table_is_the_papers_text_verbatim():
    rows = _facts_table()
    assert sorted(rows) == list(S.CLASSES)
    for r in S.SEVERITY_TABLE:
        _, name, findings, clinical, routing = rows[r.category]
        assert (r.name, r.ct_findings, r.clinical, r.routing) == (name, findings, clinical, routing), r.category


def test_what_the_old_paraphrase_missed():
    assert "Hydrothorax (bilateral, more on the left)" in S.severity_row("CT-4").ct_findings
    assert "PaO2/FiO2 ≤ 300 mmHg" in S.severity_row("CT-3").clinical
    assert "intensive care and resuscitation unit" in S.severity_row("CT-3").routing
    assert "mandatory telemonitoring" in S.severity_row("CT-1").routing
    assert "consolidation" in S.severity_row("CT-3").ct_findings and "reticular" in S.severity_row("CT-4").ct_findings


def test_p2_differences_are_named_per_cell():
    diffs = {(r.category, col) for r in S.SEVERITY_TABLE for col, _ in r.p2_differs}
    assert diffs == {
        ("CT-0", "routing"),
        ("CT-1", "ct_findings"),
        ("CT-2", "ct_findings"),
        ("CT-2", "clinical"),
        ("CT-3", "ct_findings"),
        ("CT-3", "clinical"),
    }
    assert "SpO2 ≤ 93 %" in S.severity_row("CT-3").p2_note("clinical")
    assert "38.5" in S.severity_row("CT-2").p2_note("clinical") and "≥ 95 %" in S.severity_row("CT-2").p2_note(
        "clinical"
    )
    assert "crazy paving" in S.severity_row("CT-1").p2_note("ct_findings")
    assert S.severity_row("CT-4").p2_note("routing") is None
    assert "P1" in S.SEVERITY_SOURCE_NOTE and "arXiv:2005.06465" in S.SEVERITY_SOURCE_NOTE
    assert "10.17816/DD46826" in S.SEVERITY_SOURCE_NOTE


def test_paper_facts_card():
    from mosmed import paperfacts as F

    facts = {f.label: f for sec in F.DATASET_CARD for f in sec.facts}
    assert "Toshiba Aquilion 64" in facts["Scanner"].value and facts["Scanner"].source == "P2 Table 2"
    assert "120 kV" in facts["Tube voltage"].value and "arms above the head" in facts["Breath"].value
    assert "FC07 or FC18" in facts["Reconstructions"].value and "BODY" in facts["Reconstructions"].value
    assert "every 10th image" in facts["Slice thickness / step"].value
    assert "-700 to -130 HU" in facts["Lesion density"].value
    assert "pleural effusion" in facts["Not marked"].value and "calcifications" in facts["Not marked"].value
    assert "median 47" in facts["Age"].value and "56 % female" in facts["Sex"].value
    assert "2020-03-01 to 2020-04-25" in facts["Dates"].value and "42 sites" in facts["Sites"].value
    assert len(F.CLASS_NOTES) == 2 and S.MOSMED_CLASS_NOTES == F.CLASS_NOTES
    assert any("radiological findings only" in n for n in F.CLASS_NOTES)
    assert any("every 10th image" in n and "NIfTI" in n for n in F.CLASS_NOTES)
    assert [s.key for s in F.SOURCES] == ["P1", "P2"] and F.source("P2").link.endswith("DD46826")
    with pytest.raises(KeyError, match="unknown source 'P3'"):
        F.source("P3")


def test_published_counts():
    assert dict(S.PUBLISHED_COUNTS) == {"CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45, "CT-4": 2}
    assert sum(S.PUBLISHED_COUNTS.values()) == S.PUBLISHED_TOTAL == 1110
    with pytest.raises(TypeError):
        S.PUBLISHED_COUNTS["CT-0"] = 1  # type: ignore[index]


def test_bands_and_edges():
    assert S.BAND_EDGES == (25.0, 50.0, 75.0)
    assert [S.band(c) for c in S.CLASSES] == [(0, 0), (0, 25), (25, 50), (50, 75), (75, 100)]


@pytest.mark.parametrize(
    "pct, cat",
    [
        (0, "CT-0"),
        (0.01, "CT-1"),
        (25, "CT-1"),
        (25.01, "CT-2"),
        (50, "CT-2"),
        (50.5, "CT-3"),
        (75, "CT-3"),
        (75.1, "CT-4"),
        (100, "CT-4"),
        (-1, "CT-0"),
    ],
)
def test_class_for_involvement(pct, cat):
    assert S.class_for_involvement(pct) == cat
    assert S.in_band(cat, max(pct, 0))


def test_class_for_nan_raises():
    with pytest.raises(ValueError, match="NaN"):
        S.class_for_involvement(math.nan)


def test_in_band_with_tolerance():
    assert not S.in_band("CT-1", 0.0)
    assert not S.in_band("CT-2", 24.0) and S.in_band("CT-2", 24.0, tolerance=2)
    assert S.in_band("CT-0", 0.5, tolerance=1) and not S.in_band("CT-0", 0.5)
    assert not S.in_band("CT-4", math.nan) and not S.in_band("CT-3", None)  # type: ignore[arg-type]


def test_licence_citation_and_link():
    assert S.MOSMED_LINK == "https://mosmed.ai/datasets/covid19_1110"
    assert "CC BY-NC-ND 3.0" in S.MOSMED_LICENCE and S.MOSMED_LINK in S.MOSMED_LICENCE
    assert "commercial" in S.MOSMED_LICENCE
    assert "arXiv:2005.06465" in S.MOSMED_CITATION and S.MOSMED_CITATION.startswith("Morozov, S.P.")
    assert "Research and Practical Clinical Center" in S.MOSMED_COPYRIGHT
