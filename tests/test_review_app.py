"""AppTest of the review features: the viewer's panel (keys from one table, saves, save-and-next, hostile
text, bad input, an absent database and its return, a newer schema, a login), the registry's review facets
and columns, and the agreement section of the distributions page."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apptest_data import AppData, app_data, app_env, new_app, page_failures, texts  # noqa: E402,F401

from components import review_db, review_panel  # noqa: E402
from components.reader import READER_KEY  # noqa: E402
from mosmed.reviews.db import open_database  # noqa: E402
from mosmed.reviews.identity import dataset_identity  # noqa: E402
from mosmed.reviews.model import Reader, Review  # noqa: E402
from mosmed.reviews.store import ReviewStore  # noqa: E402

HOSTILE_NAME = "<b>Dr</b> [x](javascript:alert(1)) :red[r] 'q\"; DROP TABLE t;--"
HOSTILE = "<img src=x onerror=alert(1)> **bold** [x](javascript:alert(1)) :red[red] 'q\"; DROP TABLE review_events;--"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh review database for one test (the app's store cache is cleared around it)."""
    path = tmp_path / "reviews.db"
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{path}")
    review_db.clear_caches()
    yield path
    review_db.clear_caches()


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not page_failures(at), page_failures(at)


def _store(path: Path) -> ReviewStore:
    return ReviewStore(open_database(f"sqlite:///{path}"))


def _registry(app_data: AppData):
    from mosmed.registry import load_registry

    return load_registry(app_data.demo_root)


def _viewer(reader: str | None = "Ana", study: int | None = None):
    at = new_app()
    at.switch_page("pages/viewer.py")
    if reader is not None:
        at.session_state[READER_KEY] = reader
    if study is not None:
        at.session_state["viewer.study"] = study
        at.query_params["study"] = str(study)
    return at


def test_panel_buttons_carry_the_documented_shortcuts(app_data: AppData, db: Path) -> None:
    with app_env(app_data, "demo"):
        at = _viewer()
        at.run()
        _ok(at)
        sid = int(at.session_state["viewer.study"])
        keys = review_panel.panel_keys(sid)
        for action, shortcut, _ in review_panel.SHORTCUTS:
            assert at.button(key=keys[action]).proto.shortcut.lower() == shortcut.lower(), action
        shown = " ".join(texts(at.caption))
        assert "all with Alt" in shown and "N save and next unreviewed" in shown and "X cannot grade" in shown
        # No review key is a bare key the viewer binds (arrows, PgUp/PgDn, Home/End, digits, c, +/-).
        assert all(k.startswith("Alt+") for _, k, _ in review_panel.SHORTCUTS)


def test_grade_flags_note_save_and_next_unreviewed(app_data: AppData, db: Path) -> None:
    ids = _registry(app_data).ids
    with app_env(app_data, "demo"):
        at = _viewer(study=ids[0])
        at.run()
        _ok(at)
        keys = review_panel.panel_keys(ids[0])
        at.button(key=keys["grade:CT-2"]).click().run()
        assert at.button(key=keys["grade:CT-2"]).proto.type == "primary"
        at.pills(key=keys["flags"]).set_value(["artefact", "mask_problem"]).run()
        at.text_area(key=keys["note"]).set_value(HOSTILE).run()
        at.button(key=keys["save"]).click().run()
        _ok(at)
        assert any("CT\\-2" in t and "saved" in t for t in texts(at.success)), texts(at.success)
        # The saved note is shown as plain text, exactly as typed (st.text, never Markdown or HTML).
        assert HOSTILE in [e.value for e in at.text]
        # Ana reviewed the second study elsewhere (another tab, the CLI): save-and-next skips it.
        store = _store(db)
        store.save(dataset_identity(_registry(app_data)), ids[1], Reader.named("Ana"), Review("CT-0"))
        at.button(key=keys["grade:CT-3"]).click().run()
        at.button(key=keys["save_next"]).click().run()
        _ok(at)
        assert int(at.session_state["viewer.study"]) == ids[2]  # ids[1] already has Ana's review
        assert f"study {ids[2]:04d}" in " ".join(texts(at.markdown))
    latest = store.latest(dataset_identity(_registry(app_data)))
    mine = latest.set_index("study_id")
    assert mine.loc[ids[0], "grade"] == "CT-3" and mine.loc[ids[0], "flags"] == ("mask_problem", "artefact")
    assert mine.loc[ids[0], "note"] == HOSTILE and mine.loc[ids[0], "reader"] == "Ana"
    assert len(store.history(dataset_identity(_registry(app_data)), ids[0])) == 2


def test_bad_input_and_the_reader_box(app_data: AppData, db: Path) -> None:
    ids = _registry(app_data).ids
    with app_env(app_data, "demo"):
        at = _viewer(reader=None, study=ids[0])
        at.run()
        _ok(at)
        keys = review_panel.panel_keys(ids[0])
        assert not [b for b in at.button if b.key == keys["save"]]  # no reader: nothing to save yet
        at.text_input(key="review.w.panel_reader.name").set_value(HOSTILE_NAME)
        at.button(key="FormSubmitter:review.w.panel_reader.form-Start reviewing").click().run()
        _ok(at)
        assert at.session_state[READER_KEY] == HOSTILE_NAME
        # Shown literally: the label goes through md_escape, so no link, no directive, no HTML.
        assert any("Reviewing as" in c and "\\[x\\]\\(javascript" in c for c in texts(at.caption))
        at.text_area(key=keys["note"]).set_value("x" * 2000)
        at.button(key=keys["save"]).click().run()
        assert any("saved" in t for t in texts(at.success))
        # A note over the bound never reaches the database: the box stops at the bound (the model and the
        # schema refuse longer ones too: test_review_core, test_review_store); a bad note is refused with why.
        at.text_area(key=keys["note"]).set_value("y" * 2001)
        at.button(key=keys["save"]).click().run()
        assert at.text_area(key=keys["note"]).value == "y" * 2000  # the server holds the widget's bound
        at.text_area(key=keys["note"]).set_value("bell\x07 and NUL\x00")
        at.button(key=keys["save"]).click().run()
        assert any("Not saved" in t and "control characters" in t for t in texts(at.error)), texts(at.error)
    hist = _store(db).history(dataset_identity(_registry(app_data)))
    assert hist.note.tolist() == ["x" * 2000, "y" * 2000]


def test_an_absent_database_keeps_the_review_and_saves_it_when_back(
    app_data: AppData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "gone"
    blocker.write_text("a file where the database folder should be")
    path = blocker / "reviews.db"
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{path}")
    review_db.clear_caches()
    ids = _registry(app_data).ids
    try:
        with app_env(app_data, "demo"):
            at = _viewer(study=ids[0])
            at.run()
            _ok(at)  # the viewer still views
            assert any("cannot be saved right now" in t for t in texts(at.warning)), texts(at.warning)
            keys = review_panel.panel_keys(ids[0])
            at.button(key=keys["grade:CT-4"]).click().run()
            at.text_area(key=keys["note"]).set_value("typed while the database was away").run()
            at.button(key=keys["save"]).click().run()
            _ok(at)
            assert any("kept in this browser session" in t for t in texts(at.warning))
            assert len(at.session_state[review_db.PENDING_KEY]) == 1
            # Other pages keep working without the database.
            at.switch_page("pages/registry.py")
            at.run()
            _ok(at)
            assert any("Review facets unavailable" in t for t in texts(at.caption))
            # The database comes back: the next run writes what was kept.
            blocker.unlink()
            review_db.clear_caches()
            at.switch_page("pages/viewer.py")
            at.run()
            _ok(at)
            assert at.session_state[review_db.PENDING_KEY] == []
    finally:
        review_db.clear_caches()
    got = _store(path).latest(dataset_identity(_registry(app_data)))
    assert got.grade.tolist() == ["CT-4"] and got.note.tolist() == ["typed while the database was away"]


def test_a_newer_database_is_refused_in_the_app(app_data: AppData, db: Path) -> None:
    from sqlalchemy import text

    store = _store(db)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999' WHERE version_num = '0002'"))
    store.db.dispose()
    with app_env(app_data, "demo"):
        at = _viewer()
        at.run()
        _ok(at)
        assert any("newer than this app knows" in t.replace("\\", "") for t in texts(at.warning)), texts(at.warning)


def test_login_identity_wins_over_a_typed_name(app_data: AppData, db: Path) -> None:
    ids = _registry(app_data).ids
    auth = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "https://idp.example/.well-known",
    }
    with app_env(app_data, "demo"):
        at = _viewer(reader="Mallory", study=ids[0])  # a typed name must not count once [auth] is on
        at.secrets["auth"] = auth
        at.user = {"is_logged_in": False}
        at.run()
        _ok(at)
        assert any(b.label == "Log in" for b in at.button)
        assert not [b for b in at.button if b.key == review_panel.panel_keys(ids[0])["save"]]
        at = _viewer(reader="Mallory", study=ids[0])
        at.secrets["auth"] = auth
        at.user = {
            "is_logged_in": True,
            "iss": "https://idp.example",
            "sub": "u-42",
            "name": "Dr Login",
            "email": "login@example.org",
        }
        at.run()
        _ok(at)
        assert any("Reviewing as Dr Login" in t for t in texts(at.caption))
        keys = review_panel.panel_keys(ids[0])
        at.button(key=keys["grade:CT-1"]).click().run()
        at.button(key=keys["save"]).click().run()
        _ok(at)
    latest = _store(db).latest(dataset_identity(_registry(app_data)))
    assert latest.reader_key.tolist() == ["oidc:https://idp.example|u-42"] and latest.verified.all()


def _seed(app_data: AppData, db: Path) -> tuple[list[int], pd.Series]:
    reg = _registry(app_data)
    ident = dataset_identity(reg)
    cats = reg.df.set_index("study_id")["category"].astype(str)
    ids = reg.ids
    store = _store(db)
    store.save(ident, ids[0], Reader.named("Ana"), Review(cats[ids[0]]))
    store.save(
        ident, ids[1], Reader.named("Ana"), Review("CT-4" if cats[ids[1]] != "CT-4" else "CT-0", ("label_doubtful",))
    )
    store.save(ident, ids[1], Reader.named("Bob"), Review(cats[ids[1]], ("duplicate",)))
    store.save(ident, ids[2], Reader.named("Bob"), Review(cats[ids[2]]))
    return ids, cats


def test_registry_review_facets_and_columns(app_data: AppData, db: Path) -> None:
    ids, cats = _seed(app_data, db)
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/registry.py")
        at.session_state[READER_KEY] = "ana"  # the same reader as "Ana"
        at.run()
        _ok(at)
        table = at.dataframe[0].value.set_index("study_id")
        assert table.loc[ids[0], "my_grade"] == cats[ids[0]] and table.loc[ids[1], "n_readers"] == 2
        assert table.loc[ids[1], "flag_text"] == "Label doubtful, Duplicate" and bool(table.loc[ids[1], "disagree"])
        assert table.loc[ids[3], "n_readers"] == 0

        def shown():
            return sorted(int(i) for i in at.dataframe[0].value["study_id"])

        at.selectbox(key="registry.w.review").set_value("mine").run()
        assert shown() == sorted(ids[:2])
        at.selectbox(key="registry.w.review").set_value("anyone").run()
        assert shown() == sorted(ids[:3])
        at.selectbox(key="registry.w.review").set_value("none").run()
        assert shown() == sorted(ids[3:])
        at.selectbox(key="registry.w.review").set_value("not_mine").run()
        assert shown() == sorted(ids[2:])
        at.selectbox(key="registry.w.review").set_value("any").run()
        at.multiselect(key="registry.w.flags").set_value(["duplicate"]).run()
        assert shown() == [ids[1]]
        at.multiselect(key="registry.w.flags").set_value(["__any__"]).run()
        assert shown() == [ids[1]]
        at.multiselect(key="registry.w.flags").set_value([]).run()
        at.toggle(key="registry.w.disagree").set_value(True).run()
        assert shown() == [ids[1]]
        assert any(b.label.startswith("Reviews CSV (2)") for b in at.get("download_button")), [
            b.label for b in at.get("download_button")
        ]


def test_agreement_section_and_a_cell_opening_its_studies(app_data: AppData, db: Path) -> None:
    ids, cats = _seed(app_data, db)
    with app_env(app_data, "demo"):
        at = new_app()
        at.switch_page("pages/distributions.py")
        at.run()
        _ok(at)
        kappa = next(d.value for d in at.dataframe if "kappa_linear" in d.value.columns)
        assert kappa[["rater_a", "rater_b"]].values.tolist() == [
            ["Registry class", "Ana (unverified)"],
            ["Registry class", "Bob (unverified)"],
            ["Ana (unverified)", "Bob (unverified)"],
        ]
        assert kappa["n"].tolist() == [2, 2, 1]
        cell = at.selectbox(key="dist.w.agreement_cell")
        classes = ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"]
        other = "CT-4" if cats[ids[1]] != "CT-4" else "CT-0"
        assert any(f"Registry class {cats[ids[1]]} × Ana (unverified) {other} (1 study)" == o for o in cell.options)
        cell.set_value(f"{classes.index(cats[ids[1]])}|{classes.index(other)}").run()
        _ok(at)
        assert [t.value for t in at.title] == ["Registry"]
        assert sorted(int(i) for i in at.dataframe[0].value["study_id"]) == [ids[1]]
        assert any("Showing the 1 study of Registry class" in t.replace("\\", "") for t in texts(at.info))
        at.switch_page("pages/registry.py")  # AppTest reruns the page it was told, not the one switched to
        at.button(key="registry.w.clear_id_set").click().run()
        assert len(at.dataframe[0].value) == len(ids)
