"""The severity table, bands and dataset text."""

from __future__ import annotations

import math

import pytest

from mosmed import severity as S


def test_table_covers_the_five_classes_in_order():
    assert S.CLASSES == ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
    assert tuple(r.category for r in S.SEVERITY_TABLE) == S.CLASSES
    assert [r.name for r in S.SEVERITY_TABLE] == ["Normal", "Mild", "Moderate", "Severe", "Critical"]
    for r in S.SEVERITY_TABLE:
        assert r.ct_findings and r.clinical and r.routing and r.involvement
    assert "consolidation" in S.severity_row("CT-3").ct_findings
    assert "reticular" in S.severity_row("CT-4").ct_findings
    assert "telemedicine" in S.severity_row("CT-1").routing
    with pytest.raises(KeyError, match="unknown class 'CT-9'"):
        S.severity_row("CT-9")


def test_published_counts():
    assert dict(S.PUBLISHED_COUNTS) == {"CT-0": 254, "CT-1": 684, "CT-2": 125, "CT-3": 45, "CT-4": 2}
    assert sum(S.PUBLISHED_COUNTS.values()) == S.PUBLISHED_TOTAL == 1110
    with pytest.raises(TypeError):
        S.PUBLISHED_COUNTS["CT-0"] = 1  # type: ignore[index]


def test_bands_and_edges():
    assert S.BAND_EDGES == (25.0, 50.0, 75.0)
    assert [S.band(c) for c in S.CLASSES] == [(0, 0), (0, 25), (25, 50), (50, 75), (75, 100)]


@pytest.mark.parametrize("pct, cat", [(0, "CT-0"), (0.01, "CT-1"), (25, "CT-1"), (25.01, "CT-2"), (50, "CT-2"),
                                      (50.5, "CT-3"), (75, "CT-3"), (75.1, "CT-4"), (100, "CT-4"), (-1, "CT-0")])
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
