"""The overview page's paper table and dataset card, and components/paper.py (AppTest).

The MosMedData-like dataset is the real registry with its LICENSE and README beside it, symlinked into
``tmp_path`` (never into the repo); its studies are absent, which the overview reports as errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apptest_data import AppData, app_data, app_env, new_app, page_failures, texts  # noqa: E402,F401

from mosmed import severity  # noqa: E402


def _plain(s: str) -> str:
    """Markdown-escaped text (components.markup.md_escape) back to what the reader sees."""
    return str(s).replace("\\", "")


def _table_text(at) -> str:
    return " ".join(_plain(v) for t in at.table for v in t.value.astype(str).to_numpy().ravel())


def _all_text(at) -> str:
    return " ".join(_plain(t) for t in texts(at.markdown) + texts(at.caption)) + " " + _table_text(at)


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not page_failures(at), page_failures(at)


@pytest.fixture
def mosmed_like(real_mosmed: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mosmeddata"
    root.mkdir()
    for name in ("dataset_registry.xlsx", "LICENSE", "README_EN.md"):
        if (real_mosmed / name).is_file():
            (root / name).symlink_to(real_mosmed / name)
    return root


def test_demo_overview_shows_the_papers_table_and_no_dataset_card(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.run()
    _ok(at)
    shown = _all_text(at)
    for r in severity.SEVERITY_TABLE:
        for cell in (r.ct_findings, r.clinical, r.routing):
            assert cell in shown, (r.category, cell)
    assert severity.SEVERITY_TABLE_TITLE in shown and "P2 reads" in shown and "arXiv:2005.06465" in shown
    assert "Toshiba Aquilion 64" not in shown and "radiological findings only" not in shown


def test_mosmed_overview_shows_the_dataset_card(app_data: AppData, mosmed_like: Path, tmp_path: Path) -> None:
    saved = {k: os.environ.get(k) for k in ("MOSMED_CACHE", "MOSMED_DATA")}
    os.environ["MOSMED_CACHE"] = str(tmp_path / "cache")
    os.environ["MOSMED_DATA"] = str(mosmed_like)
    try:
        at = new_app(timeout=120)
        at.run()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _ok(at)
    shown = _all_text(at)
    # Population, dates, sites, acquisition (P2 Table 2), preprocessing, annotation, the two class notes.
    for needle in (
        "56 % female",
        "median 47",
        "2020-03-01 to 2020-04-25",
        "42 sites",
        "Toshiba Aquilion 64",
        "120 kV",
        "FC07 or FC18",
        "BODY",
        "every 10th image",
        "-700 to -130 HU",
        "pleural effusion",
        "radiological findings only",
        "before only every 10th image was kept",
        "CC BY-NC-ND 3.0",
    ):
        assert needle in shown, needle
    assert "Hydrothorax (bilateral, more on the left)" in shown


def test_row_card_and_unknown_class() -> None:
    from streamlit.testing.v1 import AppTest

    def script():
        from components import paper

        paper.severity_row_card("CT-3")
        paper.severity_row_card("CT-9 <b>x</b>")

    at = AppTest.from_function(script, default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    md = [_plain(t) for t in texts(at.markdown)]
    row = severity.severity_row("CT-3")
    assert any(row.clinical in t for t in md) and any(row.routing in t for t in md)
    assert any("≤ 93 %" in _plain(t) for t in texts(at.caption))  # P2's reading, under the cell
    warn = texts(at.warning)
    assert len(warn) == 1 and "CT-9" in _plain(warn[0]) and "<b>" not in warn[0].replace("\\<b\\>", "")


def test_table_component_for_some_classes() -> None:
    from components import paper

    frame = paper.severity_frame(["CT-4", "CT-2"])
    assert list(frame["class"]) == ["CT-4", "CT-2"]
    assert list(frame.columns) == ["class", "severity", "CT findings", "clinical data", "decision (routing)"]
    assert frame.loc[1, "CT findings"].endswith("†1") and frame.loc[1, "clinical data"].endswith("†2")
    assert not any("†" in v for v in frame.loc[0].astype(str))  # CT-4 reads the same in P2
    full = paper.severity_frame()
    # One note for the three CT findings P2 extends the same way.
    assert [full.loc[i, "CT findings"][-2:] for i in (1, 2, 3)] == ["†2", "†2", "†2"]
    assert [n[:2] for n in paper.p2_notes(["CT-4", "CT-2"])] == [("CT-2", "ct_findings"), ("CT-2", "clinical")]
    with pytest.raises(KeyError):
        paper.severity_frame(["CT-7"])
