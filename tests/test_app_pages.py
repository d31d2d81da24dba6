"""AppTest of the whole app (app.py): every page's default load, sidebar, registry filters, quiz, bad data.

The datasets are tiny and generated once per session (tests/apptest_data.py). AppTest resets Streamlit's legacy
``pages/`` mode on every run, the same state a fresh server is in; ``components.state.require_frame`` reruns
such a run through ``app.py``, so every page, deep-linked or switched to, is drawn inside the frame (sidebar).
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apptest_data import AppData, app_data, app_env, new_app, page_failures, texts  # noqa: E402,F401

from components import tables  # noqa: E402

PAGES = ("pages/overview.py", "pages/registry.py", "pages/viewer.py", "pages/distributions.py", "pages/teaching.py")


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not page_failures(at), page_failures(at)


def _row_count(at) -> int:
    """The registry page's "**N** of M studies" line."""
    for t in texts(at.markdown):
        m = re.match(r"\*\*(\d+)\*\* of (\d+) studies", t)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no row count on the page: {texts(at.markdown)}")


def _metric(at, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return str(m.value)
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


# ----------------------------------------------------------------------------------------------- default load


def test_default_load_opens_overview_on_demo(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.run()
    _ok(at)
    assert [t.value for t in at.title] == ["MosMed Explorer"]
    assert _metric(at, "Studies") == str(len(pd.read_excel(app_data.demo_root / "dataset_registry.xlsx")))
    assert _metric(at, "With errors") == "0"
    assert _metric(at, "Not yet summarised") == "0"
    side = [t.replace("\\", "") for t in texts(at.sidebar.markdown)]
    assert any("Demo (generated)" in t for t in side), side
    n = len(pd.read_excel(app_data.demo_root / "dataset_registry.xlsx"))
    progress = [str(p.proto) for p in at.sidebar.get("progress")]
    assert any(f"{n}/{n} studies summarised" in t for t in progress), progress
    assert any(f"{n}/{n} studies' arrays cached" in t for t in texts(at.sidebar.caption)), texts(at.sidebar.caption)
    # The demo says it is synthetic; no MosMedData licence text for it.
    assert any("synthetic" in t for t in texts(at.info))
    assert not any("CC BY-NC-ND" in t for t in texts(at.markdown) + [str(e.value) for e in at.text])


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads(app_data: AppData, page: str) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page(page)
        at.run()
    _ok(at)
    # Deep link on a fresh server: the page runs inside the frame, so the shared sidebar is there too.
    side = [t.replace("\\", "") for t in texts(at.sidebar.markdown)]
    assert any("Demo (generated)" in t for t in side), (page, side)
    assert not at.error, texts(at.error)
    assert at.title, f"{page} drew no title"


# --------------------------------------------------------------------------------------------------- registry


def test_registry_filters_change_the_row_count(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/registry.py")
        at.run()
        _ok(at)
        total = _row_count(at)
        table = at.dataframe[0].value
        assert len(table) == total
        cls = str(table["category"].iloc[0])
        n_cls = int((table["category"] == cls).sum())
        at.multiselect(key="registry.w.class").set_value([cls]).run()
        _ok(at)
        assert _row_count(at) == n_cls < total
        assert set(at.dataframe[0].value["category"]) == {cls}
        # The filtered ids are what the viewer's picker and the quiz use.
        assert sorted(at.session_state["registry.filtered_ids"]) == sorted(
            int(i) for i in table.loc[table["category"] == cls, "study_id"]
        )
        at.button(key="registry.w.reset").click().run()
        assert _row_count(at) == total
        first = int(table["study_id"].iloc[0])
        at.text_input(key="registry.w.ids").set_value(f"study_{first:04d}").run()
        assert _row_count(at) == 1
        at.text_input(key="registry.w.ids").set_value("x=1; rm").run()
        assert any("not a study id" in t for t in texts(at.warning))


def test_registry_involvement_range_and_source(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/registry.py")
        at.run()
        table = at.dataframe[0].value
        at.slider(key="registry.w.range").set_value((50.0, 100.0)).run()
        _ok(at)
        shown = at.dataframe[0].value
        assert len(shown) == int((table["involvement"] > 50).sum()) < len(table)
        assert (shown["involvement"] > 50).all()
        at.selectbox(key="registry.w.source").set_value("measured").run()
        assert set(at.dataframe[0].value["involvement_source"].dropna()) <= {"measured"}


@pytest.mark.parametrize("name", ["demo", "bad"])
def test_registry_quality_facet_and_estimate_label(app_data: AppData, name: str) -> None:
    """Issue 9 in the registry: a "Quality" facet on the studies' flags, the estimate named calibrated or not.

    The demo's studies are clean; the bad corpus's tiny studies carry flags (no lungs, grid unlike MosMedData).
    """
    if name == "bad":
        from mosmed.dataset import Dataset

        Dataset(app_data.bad_root, app_data.cache_root).build_cache(workers=1)
    with app_env(app_data, name):
        at = new_app()
        at.switch_page("pages/registry.py")
        at.run()
        _ok(at)
        total = _row_count(at)
        table = at.dataframe[0].value
        # The label of every shown estimate, from the summary's own calibration flag.
        shown = table[table["estimated_involvement_pct"].notna()]
        assert (len(shown) or name == "bad") and set(shown["estimate_kind"]) <= {"calibrated", "uncalibrated"}, (
            table.columns
        )
        assert at.session_state["registry.filtered_ids"] is None  # an unrestricted filter is stored as None
        at.multiselect(key="registry.w.quality").set_value([tables.QC_NONE]).run()
        _ok(at)
        clean = _row_count(at)
        at.multiselect(key="registry.w.quality").set_value([tables.QC_ANY]).run()
        _ok(at)
        flagged = _row_count(at)
        n_ok = int(table.loc[table["status"] == "ok", "study_id"].nunique())
        assert clean + flagged == n_ok <= total
        assert (flagged > 0) == (name == "bad")
        if flagged:
            qc = at.dataframe[0].value["qc"]
            assert qc.str.len().gt(0).all()
            code = qc.iloc[0].split(":", 1)[0]
            at.multiselect(key="registry.w.quality").set_value([code]).run()
            _ok(at)
            assert 0 < _row_count(at) <= flagged
            assert at.dataframe[0].value["qc"].str.contains(f"{code}:").all()


# ----------------------------------------------------------------------------------------------- distributions


def test_distributions_opens_registry_filtered_to_a_class(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/distributions.py")
        at.run()
        _ok(at)
        counts = at.dataframe[0].value
        cls, n = "CT-2", int(counts.loc[counts["class"] == "CT-2", "studies"].iloc[0])
        assert n > 0
        at.selectbox(key="dist.w.class_pick").set_value(cls).run()
        _ok(at)
        assert [t.value for t in at.title] == ["Registry"]
        assert _row_count(at) == n
        assert at.multiselect(key="registry.w.class").value == [cls]


def test_distributions_name_the_estimate_calibrated_or_not(app_data: AppData) -> None:
    from mosmed.dataset import Dataset

    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/distributions.py")
        at.run()
        _ok(at)
    cal = Dataset(app_data.demo_root, app_data.cache_root).summary()["estimate_calibrated"].dropna()
    want = "calibrated estimate" if bool(cal.all()) else "uncalibrated estimate"
    caps = [t.replace("\\", "") for t in texts(at.caption)]
    assert any(t.startswith(f"The estimates are the {want}") for t in caps), caps


# ------------------------------------------------------------------------------------------------------ quiz


def test_quiz_accepts_an_answer_and_updates_the_score(app_data: AppData) -> None:
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/teaching.py")
        at.run()
        _ok(at)
        assert _metric(at, "Score") == "0 / 0"
        study = at.session_state["teaching.quiz.study"]
        # Nothing on the page names the study or its file before the answer (ids and paths give the class away).
        shown = " ".join(texts(at.markdown) + texts(at.caption) + texts(at.subheader))
        assert f"study {study}" not in shown.lower() and "/CT-" not in shown
        truth = str(
            pd.read_excel(app_data.demo_root / "dataset_registry.xlsx").set_index("study_id").loc[study, "category"]
        )
        at.segmented_control(key="teaching.w.answer.0").set_value(truth).run()
        at.button(key="teaching.w.check").click().run()
        _ok(at)
        assert _metric(at, "Score") == "1 / 1"
        assert any(t.startswith("Correct") for t in texts(at.success))
        assert any(truth in t for t in texts(at.markdown))
        assert at.button(key="teaching.w.check").disabled  # one answer per question
        at.run()
        assert _metric(at, "Score") == "1 / 1"  # a rerun does not count it again
        at.button(key="teaching.w.next").click().run()
        _ok(at)
        wrong = "CT-4" if at.session_state["teaching.quiz.study"] != study or truth != "CT-4" else "CT-0"
        at.segmented_control(key="teaching.w.answer.1").set_value(wrong).run()
        at.button(key="teaching.w.check").click().run()
        assert _metric(at, "Score").endswith("/ 2")


# --------------------------------------------------------------------------------------------------- bad data


def test_missing_dataset_root_gives_an_error_not_an_exception(app_data: AppData) -> None:
    with app_env(app_data, "missing"):
        for page in PAGES:
            at = new_app()
            at.switch_page(page)
            at.run()
            _ok(at)
            errors = texts(at.error)
            # Named as written: the markdown source carries the path escaped (components.markup.md_escape).
            from components.markup import md_escape

            assert any("does not exist" in t and md_escape(app_data.missing_root) in t for t in errors), (page, errors)


def test_typed_root_is_validated_and_named(app_data: AppData, tmp_path: Path) -> None:
    afile = tmp_path / "registry.txt"
    afile.write_text("not a folder")
    with app_env(app_data, "demo"):
        for typed, problem in ((tmp_path / "nope", "does not exist"), (afile, "not a folder")):
            at = new_app()
            at.run()
            # AppTest records the frame's sidebar only on a fresh run; both inputs go into one rerun.
            at.sidebar.text_input(key="app.w.root_input").set_value(str(typed))
            at.sidebar.button(key="app.w.open_root").click()
            at.run()
            _ok(at)
            msg = at.session_state["app.root_error"]
            assert str(typed) in msg and problem in msg, msg
            assert "app.dataset_root" not in at.session_state  # the demo stays open
            assert _metric(at, "With errors") == "0"
        # A valid folder opens for this session (and the sidebar says it was typed in).
        at = new_app()
        at.run()
        at.sidebar.text_input(key="app.w.root_input").set_value(str(app_data.bad_root))
        at.sidebar.button(key="app.w.open_root").click()
        at.run()
        _ok(at)
        assert at.session_state["app.dataset_root"] == str(app_data.bad_root.resolve())
        assert int(_metric(at, "With errors")) > 0
        fresh = new_app()
        fresh.session_state["app.dataset_root"] = str(app_data.bad_root.resolve())
        fresh.session_state["app.root_error"] = f"dataset folder {tmp_path / 'nope'} does not exist"
        fresh.run()
        assert any("typed in" in t.replace("\\", "") for t in texts(fresh.sidebar.markdown))
        assert any("does not exist" in t for t in texts(fresh.sidebar.error))


def test_broken_studies_are_listed_with_their_reason(app_data: AppData) -> None:
    expect = app_data.bad_expect
    errors = {e.study_id: e for e in expect.values() if e.outcome == "error" and e.study_id is not None}
    dropped = [e for e in expect.values() if e.outcome == "dropped"]
    assert errors and dropped
    with app_env(app_data, "bad"):
        at = new_app()
        at.run()
        _ok(at)
        bad = next(d.value for d in at.dataframe if "error" in d.value.columns)
        listed = dict(zip(bad["study_id"].astype(int), bad["error"].astype(str)))
        for sid, e in errors.items():
            assert sid in listed, f"{e.kind}: study {sid} not listed"
            assert e.expected.lower() in listed[sid].lower(), (e.kind, e.expected, listed[sid])

        at.switch_page("pages/registry.py")
        at.run()
        _ok(at)
        at.multiselect(key="registry.w.status").set_value(["error"]).run()
        shown = at.dataframe[0].value
        assert set(shown["study_id"].astype(int)) >= set(errors)
        assert (shown["error"].str.len() > 0).all()
        problems = at.dataframe[1].value  # the "rows that could not be kept" expander
        assert len(problems) == len(dropped)
        assert all(r for r in problems["reason"])

        # Opening a broken study in the viewer names it and the problem; the page keeps working.
        sid = next(iter(errors))
        at.switch_page("pages/viewer.py")
        at.session_state["viewer.study"] = sid
        at.query_params["study"] = str(sid)
        at.run()
        _ok(at)
        assert any(str(sid) in t for t in texts(at.error)), texts(at.error)


# ------------------------------------------------------------------------------------------ tables (no app)


def test_parse_id_query() -> None:
    assert tables.parse_id_query("") == (None, None)
    assert tables.parse_id_query("255, 260 - 262")[0] == frozenset({255, 260, 261, 262})
    assert tables.parse_id_query("study_0255.nii.gz")[0] == frozenset({255})
    ids, notice = tables.parse_id_query("12 <script>")
    assert ids == frozenset({12}) and "not a study id" in notice
    assert "longer than" in tables.parse_id_query("1," * 200)[1]


def test_filter_summary_bands_and_errors() -> None:
    df = pd.DataFrame(
        {
            "study_id": [1, 2, 3, 4],
            "category": ["CT-0", "CT-1", "CT-2", "CT-1"],
            "has_mask": [False, True, False, False],
            "status": ["ok", "ok", "ok", "error"],
            "involvement_pct": [None, 20.0, None, None],
            "estimated_involvement_pct": [0.0, 30.0, 40.0, None],
        }
    )
    f = tables.RegistryFilter
    assert tables.filter_summary(df, f())["study_id"].tolist() == [1, 2, 3, 4]
    best = tables.filter_summary(df, f(involvement=(0.0, 25.0)))
    assert best["study_id"].tolist() == [1, 2] and best["involvement_source"].tolist() == ["estimated", "measured"]
    assert tables.filter_summary(df, f(source="estimated", involvement=(25.0, 50.0)))["study_id"].tolist() == [2, 3]
    assert tables.filter_summary(df, f(source="measured", involvement=(0.0, 99.0)))["study_id"].tolist() == [2]
    assert tables.filter_summary(df, f(statuses=("error",)))["study_id"].tolist() == [4]
    assert tables.filter_summary(df, f(mask="with"))["study_id"].tolist() == [2]
    with pytest.raises(ValueError, match="unknown involvement source"):
        tables.filter_summary(df, f(source="guess"))
    with pytest.raises(ValueError, match="unknown mask facet"):
        tables.filter_summary(df, f(mask="maybe"))


def test_quality_facet_and_estimate_kind() -> None:
    df = pd.DataFrame(
        {
            "study_id": [1, 2, 3, 4],
            "category": ["CT-0", "CT-1", "CT-2", "CT-1"],
            "has_mask": [False] * 4,
            "status": ["ok", "ok", "ok", "pending"],
            "involvement_pct": [None] * 4,
            "estimated_involvement_pct": [1.0, 30.0, 40.0, None],
            "estimate_calibrated": pd.array([True, True, True, None], dtype="boolean"),
            "estimate_basis": ["CT-0 baseline 2.1%", "CT-0 baseline 2.1%", "CT-0 baseline 2.1%", ""],
            "qc": ["", "border: lungs touch the edge | grid: unlike MosMedData: 160 px", "grid: unlike", ""],
        }
    )
    f = tables.RegistryFilter
    ids = lambda q: tables.filter_summary(df, f(quality=q))["study_id"].tolist()  # noqa: E731
    assert ids((tables.QC_NONE,)) == [1] and ids((tables.QC_ANY,)) == [2, 3]  # 4 is pending: not checked
    assert ids(("grid",)) == [2, 3] and ids(("border",)) == [2] and ids(("border", tables.QC_NONE)) == [1, 2]
    assert ids(("spacing",)) == []
    with pytest.raises(ValueError, match="unknown quality facet"):
        ids(("unlike",))  # a word inside a reason is not a code
    assert tables.quality_counts(df)[tables.QC_NONE] == 1  # the pending study is not counted as clean
    built = df[df["status"] == "ok"]
    assert tables.quality_counts(df) == {
        o: len(tables.filter_summary(built, f(quality=(o,)))) for o in tables.quality_options()
    }
    assert tables.estimate_kind(df) == ("calibrated estimate", "CT-0 baseline 2.1%")
    assert tables.estimate_kind(df.assign(estimate_calibrated=False))[0] == "uncalibrated estimate"
    assert tables.estimate_kind(df.drop(columns=["estimate_calibrated"]))[0] == "HU estimate"
    exported = tables.export_frame(tables.filter_summary(df, f()))
    assert {"qc", "estimate_calibrated", "estimate_basis"} <= set(exported.columns)


def test_exports_keep_text_as_text() -> None:
    from openpyxl import load_workbook

    df = pd.DataFrame(
        {
            "study_id": [1, 2],
            "category": ["CT-1", '=HYPERLINK("http://x")'],
            "mask_file": [float("nan"), "/masks/study_0002_mask.nii.gz"],
            "lung_ml": [1.5, -2.0],
        }
    )
    csv = tables.to_csv_bytes(df).decode()
    assert "'=HYPERLINK" in csv and ",nan" not in csv.lower() and "-2.0" in csv
    ws = load_workbook(io.BytesIO(tables.to_xlsx_bytes(df, "a/b"))).active
    assert ws["B3"].value == '=HYPERLINK("http://x")' and ws["B3"].data_type == "s"
    assert ws["C2"].value is None and ws["D3"].value == -2.0 and ws.title == "a_b"
