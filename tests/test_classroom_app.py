"""AppTest of the teaching page's class session: a teacher starts one, students join from a link and follow,
the quiz shows nothing of the class before the reveal (every element, payload and the URL are searched), the
reveal, tampering with session state and the URL, hostile titles and names, an outage, the join limits."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apptest_data import (  # noqa: E402,F401  (served_media: the media stand-in, autouse here)
    SERVED_MEDIA,
    AppData,
    app_data,
    app_env,
    new_app,
    page_failures,
    served_media,
    texts,
)

from components import review_db  # noqa: E402
from components.classroom_common import SEAT_KEY, TEACHER_KEY  # noqa: E402
from components.classroom_student import VIEWER_KEY, answer_keys  # noqa: E402
from mosmed import wire  # noqa: E402
from mosmed.classroom.model import TeacherGrant, View  # noqa: E402
from mosmed.classroom.store import ClassroomStore  # noqa: E402
from mosmed.reviews.db import open_database  # noqa: E402

TITLE = "<b>Week 3</b> **bold** [x](javascript:alert(1)) :red[r] # h"
NAME = "<i>Ana</i> **O'Brien** [l](x)"
CLASSES = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "class.db"
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{path}")
    review_db.clear_caches()
    yield f"sqlite:///{path}"
    review_db.clear_caches()


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not page_failures(at), page_failures(at)


def _teaching(**params):
    at = new_app()
    at.switch_page("pages/teaching.py")
    for k, v in params.items():
        at.query_params[k] = v
    return at


def _summary(app_data: AppData) -> pd.DataFrame:
    from mosmed.dataset import Dataset

    return Dataset(app_data.demo_root, app_data.cache_root).summary()


def _class(db: str, app_data: AppData, ids: list[int] | None = None, **kw):
    """A class on the demo made through the store (what the start form does), and its store."""
    from mosmed.registry import load_registry
    from mosmed.reviews.identity import dataset_identity

    reg = load_registry(app_data.demo_root)
    ident = dataset_identity(reg)
    ids = ids or [int(i) for i in reg.ids]
    store = ClassroomStore(open_database(db))
    info, grant = store.create_class(
        title=kw.pop("title", TITLE),
        dataset_digest=ident.digest,
        dataset_label=ident.label,
        dataset_root=str(app_data.demo_root),
        study_ids=ids,
        start=View(ids[0], 1, -600.0, 1500.0, "lung", "axial", 10, 12),
        **kw,
    )
    return store, info, grant


def _payloads(at) -> list[tuple[dict, bytes]]:
    out = []
    for el in at.get("bidi_component"):
        if not el.proto.component_name.endswith("mosmed_ct_viewer"):
            continue
        header, blob = wire.unpack(bytes(el.proto.bytes))
        if header.get("data_url"):
            blob = SERVED_MEDIA[header["data_url"]]
        out.append((header, blob))
    return out


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _everything(at) -> str:
    """Every element of the page the browser would get (protos as text, viewer payload headers unpacked) and the
    URL. The sidebar is left out: it is the same for every page and question (its help text names the class
    folders CT-0..CT-4 of a dataset's layout)."""
    parts = []
    for node in _walk(at.main):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
    parts += [repr(h) for h, _ in _payloads(at)]
    parts.append(repr(dict(at.query_params)))
    return "\n".join(parts)


def _join(at, code: str, name: str):
    at.run()
    _ok(at)
    at.text_input(key="classroom.w.code").set_value(code)
    at.text_input(key="classroom.w.name").set_value(name)
    at.button(key="classroom.w.join").click().run()
    _ok(at)
    return at


# ------------------------------------------------------------------------------------------------- teacher


def test_a_teacher_starts_a_class_from_the_registry_filter(app_data: AppData, db: str) -> None:
    with app_env(app_data, "demo"):
        at = _teaching()
        ids = [int(i) for i in _summary(app_data)["study_id"]][:3][::-1]
        at.session_state["registry.filtered_ids"] = ids
        at.run()
        _ok(at)
        at.text_input(key="classroom.w.title").set_value(TITLE)
        at.radio(key="classroom.w.source").set_value("filter")
        at.button(key="classroom.w.create").click().run()
        _ok(at)
        grant = at.session_state[TEACHER_KEY]
        store = ClassroomStore(open_database(db))
        info = store.check_teacher(TeacherGrant(grant["class_id"], key=grant["key"]))
        assert info.study_ids == tuple(ids) and info.title == TITLE
        # The title is shown literally; the code and the link are on the page; the key is in no element.
        from components.markup import md_escape

        assert md_escape(TITLE) in [s.value for s in at.subheader]
        shown = _everything(at)
        assert info.join_code in shown and f"class={info.join_code}" in shown
        assert grant["key"] not in shown
        at.toggle(key="classroom.t.show_key").set_value(True).run()  # shown to the teacher on demand only
        assert grant["key"] in [c.value for c in at.code]
        at.toggle(key="classroom.t.show_key").set_value(False).run()
        qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
        assert qp == {"class": info.join_code}
        # The presenter's viewer is the class's first study, reporting the crosshair quickly.
        [(header, _)] = _payloads(at)
        assert header["report_cursor"] is True and header["debounce_ms"] < 400
        assert header["study_id"] == ids[0]
        # A browser report (scroll, window, crosshair) becomes the presenter's view, with a new version.
        v0 = store.presenter(info.id).version
        at.session_state["classroom.t.viewer"] = {
            "view": {
                "token": header["token"],
                "slice": 2,
                "level": 50,
                "width": 350,
                "name": "mediastinum",
                "plane": "coronal",
                "row": 7,
                "col": 9,
            }
        }
        at.run()
        _ok(at)
        p = store.presenter(info.id)
        assert p.version > v0 and (p.view.slice, p.view.window_name, p.view.plane, p.view.row, p.view.col) == (
            2,
            "mediastinum",
            "coronal",
            7,
            9,
        )
        at.button(key="classroom.t.next").click().run()
        _ok(at)
        assert store.presenter(info.id).view.study_id == ids[1]


def test_a_balanced_pick_takes_every_class_alike() -> None:
    import random

    from components.classroom_start import pick_balanced

    pool = pd.DataFrame({"study_id": range(1, 41), "category": ["CT-1"] * 30 + ["CT-0"] * 8 + ["CT-4"] * 2})
    ids = pick_balanced(pool, 3, random.Random(5))
    cats = Counter(pool.set_index("study_id").loc[ids, "category"])
    assert cats == {"CT-1": 3, "CT-0": 3, "CT-4": 2} and len(set(ids)) == len(ids)


# ------------------------------------------------------------------------------------------------- student


def test_a_student_joins_from_the_link_follows_and_comes_back_from_their_url(app_data: AppData, db: str) -> None:
    with app_env(app_data, "demo"):
        store, info, grant = _class(db, app_data)
        at = _teaching(**{"class": info.join_code})
        at.run()
        _ok(at)
        assert at.text_input(key="classroom.w.code").value == info.join_code  # filled in from the link
        at.text_input(key="classroom.w.name").set_value(NAME)
        at.button(key="classroom.w.join").click().run()
        _ok(at)
        qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
        assert set(qp) == {"class", "seat"} and qp["class"] == info.join_code
        seat_token = qp["seat"]
        from components.markup import md_escape

        assert any(md_escape(NAME) in c for c in texts(at.caption)), texts(at.caption)
        assert md_escape(TITLE) in [s.value for s in at.subheader]
        [(h, _)] = _payloads(at)
        sid0 = info.study_ids[0]
        assert h["study_id"] == sid0 and h["nav"]["slice"] == 1 and tuple(h["cursor"]) == (10, 12)
        # The teacher moves: the student's next poll (a fragment rerun) follows slice, window, plane, crosshair.
        store.set_view(grant, View(sid0, 3, 50.0, 350.0, "mediastinum", "sagittal", 20, 21))
        at.run()
        _ok(at)
        [(h2, _)] = _payloads(at)
        assert h2["nav"]["slice"] == 3 and h2["nav"]["seq"] > h["nav"]["seq"]
        assert (h2["window"]["level"], h2["window"]["width"]) == (50.0, 350.0) and h2["plane"] == "sagittal"
        assert tuple(h2["cursor"]) == (20, 21) and h2["cursor_seq"] > h["cursor_seq"]
        assert store.followers(info.id).following == 1
        # The student scrolls on their own: they are detached, and the teacher's next move does not pull them.
        at.session_state[VIEWER_KEY] = {
            "view": {
                "token": h2["token"],
                "slice": 0,
                "level": 50,
                "width": 350,
                "name": "mediastinum",
                "plane": "sagittal",
            }
        }
        at.run()
        _ok(at)
        assert any("Exploring on your own" in m for m in texts(at.markdown))
        store.set_view(grant, View(sid0, 4, 50.0, 350.0, "mediastinum", "axial", 20, 21))
        at.run()
        [(h3, _)] = _payloads(at)
        assert h3["nav"]["seq"] == h2["nav"]["seq"] and h3["plane"] == "sagittal"
        assert store.followers(info.id).following == 0
        at.button(key="classroom.s.attach").click().run()  # re-attach: back on the teacher's view
        [(h4, _)] = _payloads(at)
        assert h4["nav"]["slice"] == 4 and h4["nav"]["seq"] > h3["nav"]["seq"] and h4["plane"] == "axial"
        # Another replica after a reconnect: a new session with only the URL takes the same seat again.
        again = _teaching(**{"class": info.join_code, "seat": seat_token})
        again.run()
        _ok(again)
        assert again.session_state[SEAT_KEY]["seat"][0] == at.session_state[SEAT_KEY]["seat"][0]
        assert store.followers(info.id).joined == 1


def test_the_quiz_shows_nothing_of_the_class_before_the_reveal(app_data: AppData, db: str) -> None:
    summary = _summary(app_data).set_index("study_id")
    masked = [int(i) for i in summary.index if bool(summary.loc[i, "has_mask"])]
    with app_env(app_data, "demo"):
        store, info, grant = _class(db, app_data)
        at = _join(_teaching(**{"class": info.join_code}), info.join_code, "Bea")
        dumps = {}
        # Two questions on studies of different classes (the first with an expert mask when there is one).
        first = masked[0] if masked else info.study_ids[0]
        second = next(s for s in info.study_ids if summary.loc[s, "category"] != summary.loc[first, "category"])
        for n, sid in enumerate((first, second), 1):
            truth = str(summary.loc[sid, "category"])
            q = store.open_question(
                grant,
                study_id=sid,
                truth=truth,
                involvement_pct=summary.loc[sid, "involvement_pct"],
                estimated_pct=summary.loc[sid, "estimated_involvement_pct"],
                estimate_calibrated=True,
                has_mask=bool(summary.loc[sid, "has_mask"]),
                view=View(sid, 2, -600.0, 1500.0, "lung", "axial", 10, 12),
            )
            at.run()
            _ok(at)
            # No leaderboard while the class answers (it cannot change before the reveal); after question 1's
            # reveal the student is told it comes back.
            assert not [d for d in at.dataframe if "right" in d.value.columns]
            assert any("back after the reveal" in c for c in texts(at.caption)) == (n == 2)
            everything = _everything(at)
            counts = Counter(re.findall(r"CT-[0-4]", everything))
            # Every class appears equally often (the five answer buttons): nothing singles one out.
            ctx = [everything[max(0, m.start() - 80) : m.end() + 40] for m in re.finditer(r"CT-[04]", everything)]
            assert len(set(counts[c] for c in CLASSES)) == 1, (counts, ctx)
            for leak in (
                f"study {sid}",
                f"study {sid:04d}",
                f"study_{sid:04d}",
                f"/{truth}/",
                'lesion_mm2": [',
                "involvement",
                "estimated",
            ):
                assert leak not in everything, leak
            [(h, blob)] = _payloads(at)
            assert h["anonymous"] and h["study_id"] is None and h["lesion_mm2"] is None and not h["has_mask"]
            assert h["study_label"] == f"Question {n}" and h["url_params"] is None
            assert not (wire.decode_labels(h, blob) & wire.LESION_BIT).any()
            qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
            assert set(qp) == {"class", "seat"}
            dumps[n] = everything
            # The student answers; the teacher's counts have it; the reveal shows the class to everyone.
            chosen = truth if n == 1 else ("CT-0" if truth != "CT-0" else "CT-4")
            at.button(key=answer_keys(q.id)[chosen]).click().run()
            _ok(at)
            assert store.teacher_question(grant, q.id).n_answers == 1
            at.run()  # still nothing before the reveal: only the student's own answer stands out
            counts = Counter(re.findall(r"CT-[0-4]", _everything(at)))
            assert (
                len({counts[c] for c in CLASSES if c != chosen}) == 1
                and counts[chosen] > counts[truth]
                or chosen == truth
            ), counts
            store.reveal(grant, q.id)
            at.run()
            _ok(at)
            shown = " ".join(texts(at.markdown))
            assert f"Study {sid:04d}" in shown and f"class **{truth}**" in shown
            assert "calibrated estimate from HU" in shown.replace("\\", "") or "expert mask" in shown
            assert any("The paper's row for" in m.replace("\\", "") for m in texts(at.markdown))
            [(h, blob)] = _payloads(at)
            assert not h["anonymous"] and h["study_id"] == sid and truth in h["study_label"]
            if h.get("has_mask"):
                assert (wire.decode_labels(h, blob) & wire.LESION_BIT).any()
            verdict = texts(at.success) + texts(at.error)
            assert any(("correct" in v) if n == 1 else ("this study is" in v) for v in verdict), verdict
        # The leaderboard: names hidden (the class did not opt in), the student's own row is "You".
        board = [d.value for d in at.dataframe if "right" in d.value.columns]
        assert board and board[-1]["student"].tolist() == ["You"]


# ------------------------------------------------------------------------------------------------ tampering


def test_a_student_cannot_act_as_the_teacher_or_as_anyone_else(app_data: AppData, db: str) -> None:
    with app_env(app_data, "demo"):
        store, info, grant = _class(db, app_data)
        other, other_grant = store.create_class(
            title="other",
            dataset_digest="e" * 64,
            dataset_label="x",
            dataset_root="/x",
            study_ids=[1],
            start=View(1, 0, 0, 1, None, "axial", 0, 0),
        )
        sid = info.study_ids[0]
        q = store.open_question(
            grant,
            study_id=sid,
            truth="CT-3",
            involvement_pct=None,
            estimated_pct=None,
            estimate_calibrated=None,
            has_mask=False,
        )
        q_other = store.open_question(
            other_grant,
            study_id=1,
            truth="CT-1",
            involvement_pct=None,
            estimated_pct=None,
            estimate_calibrated=None,
            has_mask=False,
        )
        at = _join(_teaching(**{"class": info.join_code}), info.join_code, "Eve")
        # 1. The teacher's grant written into the session with a guessed key (or the student's own token).
        for key in ("x" * 32, at.session_state[SEAT_KEY]["seat"][3], None):
            at.session_state[TEACHER_KEY] = {"class_id": info.id, "key": key}
            at.run()
            _ok(at)
            assert TEACHER_KEY not in at.session_state
            assert any("not this class's teacher" in e for e in texts(at.error)), texts(at.error)
            assert "CT-3" not in " ".join(texts(at.markdown) + texts(at.caption))
        # 2. A login subject written into the session is ignored (only st.user counts).
        at.session_state[TEACHER_KEY] = {"class_id": info.id, "key": None, "subject": "https://idp|teacher"}
        at.run()
        assert TEACHER_KEY not in at.session_state
        # 3. The teacher's widget keys set by the student: nothing happens, the question stays open.
        for k in ("classroom.t.reveal", "classroom.t.end", "classroom.t.names"):
            try:
                at.session_state[k] = True
            except Exception:  # noqa: BLE001 - Streamlit refuses some outright: fine too
                pass
        at.run()
        assert store.student_question(q.id).state == "open" and not store.class_info(info.id).ended
        # 4. A forged question id (another class's question) queued as if typed during an outage.
        box = at.session_state[SEAT_KEY]
        box["pending"] = {str(q_other.id): ["CT-1", "2020-01-01T00:00:00"], "999999": ["CT-2", "2020-01-01T00:00:00"]}
        at.run()
        _ok(at)
        assert store.answer_count(other.id) == 0 and store.teacher_question(grant, q.id).n_answers == 0
        assert at.session_state[SEAT_KEY]["pending"] == {}
        # 5. Another student's seat id with one's own token: refused in the database.
        _, bob = store.join(info.code, "Bob", client="c", browser="b")
        box = at.session_state[SEAT_KEY]
        box["seat"] = [bob.participant_id, info.id, "Bob", box["seat"][3]]
        at.button(key=answer_keys(q.id)["CT-2"]).click().run()
        _ok(at)
        assert store.teacher_question(grant, q.id).n_answers == 0
        assert any("not counted" in e for e in texts(at.error)), texts(at.error)
        # 6. URLs: a forged seat token, a teacher flag, a question and an answer in the query: nothing.
        for params in (
            {"class": info.join_code, "seat": "A" * 22},
            {"class": info.join_code, "teacher": "1", "question": str(q.id), "answer": "CT-3"},
            {"class": "'; DROP TABLE x;--", "seat": "<script>"},
        ):
            t = _teaching(**params)
            t.run()
            _ok(t)
            assert SEAT_KEY not in t.session_state and TEACHER_KEY not in t.session_state
            assert not any("Which class is this study" in m for m in texts(t.markdown))  # no class view at all
            if params.get("seat") == "A" * 22:
                assert any("link is not valid" in e for e in texts(t.error)), texts(t.error)
        assert store.teacher_question(grant, q.id).n_answers == 0


def test_wrong_codes_are_limited_in_the_page(app_data: AppData, db: str) -> None:
    from mosmed.classroom.limits import limit

    with app_env(app_data, "demo"):
        _, info, _ = _class(db, app_data)
        at = _teaching()
        at.run()
        for k in range(limit("browser").max_failures):
            at.text_input(key="classroom.w.code").set_value(f"ZZZZ-ZZ{k:02d}")
            at.text_input(key="classroom.w.name").set_value("Mallory")
            at.button(key="classroom.w.join").click().run()
            _ok(at)
            assert any("no running class has this code" in e for e in texts(at.error)), texts(at.error)
        at.text_input(key="classroom.w.code").set_value(info.join_code)  # even the right code now
        at.button(key="classroom.w.join").click().run()
        assert any("too many wrong class codes" in e for e in texts(at.error)), texts(at.error)
        assert SEAT_KEY not in at.session_state


# --------------------------------------------------------------------------------------------------- faults


def test_an_outage_pauses_the_class_and_loses_no_answer(app_data: AppData, db: str, monkeypatch) -> None:
    from mosmed.reviews.errors import ReviewDatabaseError

    with app_env(app_data, "demo"):
        store, info, grant = _class(db, app_data)
        q = store.open_question(
            grant,
            study_id=info.study_ids[0],
            truth="CT-1",
            involvement_pct=None,
            estimated_pct=None,
            estimate_calibrated=None,
            has_mask=False,
        )
        at = _join(_teaching(**{"class": info.join_code}), info.join_code, "Otto")
        down = {"on": True}
        real_poll, real_answer, real_touch = ClassroomStore.poll, ClassroomStore.answer, ClassroomStore.touch

        def guard(real):
            def wrapped(self, *a, **k):
                if down["on"]:
                    raise ReviewDatabaseError(
                        f"reading the class: the review database {self.where} is not available (connection refused)"
                    )
                return real(self, *a, **k)

            return wrapped

        monkeypatch.setattr(ClassroomStore, "poll", guard(real_poll))
        monkeypatch.setattr(ClassroomStore, "answer", guard(real_answer))
        monkeypatch.setattr(ClassroomStore, "touch", guard(real_touch))
        at.run()
        _ok(at)
        assert any("The class is paused" in w for w in texts(at.warning)), texts(at.warning)
        assert _payloads(at), "the viewer stays on the last view while the class is paused"
        at.button(key=answer_keys(q.id)["CT-4"]).click().run()
        _ok(at)
        assert any("kept in this browser session" in w for w in texts(at.warning)), texts(at.warning)
        assert store.teacher_question(grant, q.id).n_answers == 0
        down["on"] = False
        at.run()
        _ok(at)
        assert store.teacher_question(grant, q.id).counts["CT-4"] == 1
        assert at.session_state[SEAT_KEY]["pending"] == {}
        assert not any("The class is paused" in w for w in texts(at.warning))


def test_the_teacher_console_counts_reveals_exports_and_ends(app_data: AppData, db: str) -> None:
    with app_env(app_data, "demo"):
        store, info, grant = _class(db, app_data, title="Console")
        at = _teaching()
        at.session_state[TEACHER_KEY] = {"class_id": info.id, "key": grant.key}
        at.run()
        _ok(at)
        _, s1 = store.join(info.code, "Ana", client="c", browser="b1")
        _, s2 = store.join(info.code, "<b>Bob</b>", client="c", browser="b2")
        sid = info.study_ids[1]
        at.selectbox(key="classroom.t.ask_study").set_value(sid)
        at.button(key="classroom.t.ask").click().run()
        _ok(at)
        qid = store.presenter(info.id).question_id
        assert qid is not None and store.presenter(info.id).view.study_id == sid
        [(h, _)] = _payloads(at)
        assert not h["has_mask"] and h["study_label"] == "Question 1"  # the mask is off on this screen too
        store.answer(s1, qid, "CT-1")
        store.answer(s2, qid, "CT-2")
        at.run()
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Students here"] == "2" and metrics["Answers"] == "2 of 2"
        counts = [d.value for d in at.dataframe if "students" in d.value.columns][0]
        assert dict(zip(counts["answer"], counts["students"])) == {
            "CT-0": 0,
            "CT-1": 1,
            "CT-2": 1,
            "CT-3": 0,
            "CT-4": 0,
        }
        at.button(key="classroom.t.reveal").click().run()
        _ok(at)
        assert store.student_question(qid).revealed
        at.toggle(key="classroom.t.names").set_value(True).run()
        assert store.class_info(info.id).names_public
        at.run()
        csv = [b for b in at.get("download_button") if "Answers CSV" in str(b.proto)]
        assert csv, "an Answers CSV download"
        res = store.results(grant)
        assert sorted(res["student"]) == ["<b>Bob</b>", "Ana"] and res["question"].tolist() == [1, 1]
        at.checkbox(key="classroom.t.end_confirm").check().run()
        at.button(key="classroom.t.end").click().run()
        _ok(at)
        assert store.class_info(info.id).ended
