"""The teacher's console: show the class a study (everyone follows), ask a question, watch the answers come in,
reveal, leaderboard, results as CSV, end the class.

Only the class's teacher drives it: every action goes to the store with a
:class:`~mosmed.classroom.model.TeacherGrant` built from this session's server-side state (the teacher key
kept when the class was created or resumed) and, when ``[auth]`` is configured, the login of this session
(``st.user``, never a value from the session state or the URL); the store checks it against the database.

Layout: the presenter's viewer in a fragment (each move the browser reports reruns only it and is written to
the database as the presenter's new view, with a version the students poll), and beside it a fragment rerun
every :data:`~components.classroom_common.TEACHER_POLL_S` seconds with the live counts (students here,
following, answers per class). The class's answer is not shown on this screen until the teacher asks for it or
reveals: a teacher's screen is often on the projector.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components import classroom_db, state
from components.classroom_common import (
    PRESENTER_REPORT_MS,
    TEACHER_KEY,
    TEACHER_POLL_S,
    class_link,
    counts_frame,
    leaderboard_table,
    reveal_card,
    start_view,
    view_window,
)
from components.markup import md_escape

__all__ = ["VIEWER_KEY", "active", "hidden", "grant", "console", "resume_banner", "keys"]

VIEWER_KEY = "classroom.t.viewer"
_PRES = "classroom.t.presenter"  # the last presenter read (kept for an outage)
_PENDING = "classroom.t.pending_view"  # a move not written yet (database away): written on the next run
_SHOWN = "classroom.t.shown"  # studies the class has seen with their class label
_MSG = "classroom.t.message"
_HIDDEN = "classroom.t.hidden"  # the console is put aside (the class keeps running)
_DRAWN = "classroom.t.drawn_study"
_ASKED = "classroom.t.asked"  # studies asked about in this session
#: The console's fragments by key: an action of the live panel reruns these three, not the whole page. A
#: full-app rerun there (as before) drew everything again and, worse, a click landing during it on a button
#: of the live fragment (then every 0.4 s) was sometimes lost (the fragment's storage is cleared by a full run).
STAGE_FRAGMENT, LIVE_FRAGMENT, RESULTS_FRAGMENT = "classroom-t-stage", "classroom-t-live", "classroom-t-results"
_FULL = "classroom.t.full_run"  # an action of the results part changes the whole page (aside, end, names)


def keys() -> dict[str, str]:
    """Widget keys of the console (tests drive them)."""
    return {
        "pick": "classroom.t.pick",
        "prev": "classroom.t.prev",
        "next": "classroom.t.next",
        "ask_study": "classroom.t.ask_study",
        "ask": "classroom.t.ask",
        "stop": "classroom.t.stop",
        "reveal": "classroom.t.reveal",
        "clear": "classroom.t.clear",
        "names": "classroom.t.names",
        "end": "classroom.t.end",
        "end_confirm": "classroom.t.end_confirm",
        "aside": "classroom.t.aside",
        "back": "classroom.t.back",
        "peek": "classroom.t.peek",
        "csv": "classroom.t.csv",
        "scores_csv": "classroom.t.scores_csv",
        "show_key": "classroom.t.show_key",
    }


def active() -> bool:
    """This session drives a class (its console may be put aside)."""
    return bool(st.session_state.get(TEACHER_KEY))


def hidden() -> bool:
    return bool(st.session_state.get(_HIDDEN))


def _login_subject() -> str | None:
    """The verified login of this session (``st.user`` via components.reader), else ``None``."""
    from components import reader

    r = reader.current_reader()
    return r.subject if r is not None and r.verified else None


def grant():
    """This session's grant, or ``None``. The key comes from this session's server-side state; the login
    subject only from ``st.user``: a subject written into the session state by anyone else is ignored."""
    from mosmed.classroom.model import TeacherGrant

    g = st.session_state.get(TEACHER_KEY)
    if not isinstance(g, dict):
        return None
    try:
        cid = int(g.get("class_id"))
    except (TypeError, ValueError):
        return None
    key = g.get("key") if isinstance(g.get("key"), str) else None
    return TeacherGrant(class_id=cid, key=key, subject=_login_subject())


def keep_grant(info: Any, g: Any) -> None:
    """Start driving a class in this session (after creating or resuming it)."""
    st.session_state[TEACHER_KEY] = {"class_id": int(info.id), "key": g.key}
    for k in (_PRES, _PENDING, _SHOWN, _MSG, _HIDDEN, _DRAWN, _ASKED, _FULL):
        st.session_state.pop(k, None)
    st.query_params.clear()
    st.query_params["class"] = info.join_code  # the code only: a student with this link joins as a student


def stop_driving() -> None:
    for k in (TEACHER_KEY, _PRES, _PENDING, _SHOWN, _MSG, _HIDDEN, _DRAWN, _ASKED, _FULL):
        st.session_state.pop(k, None)
    st.query_params.pop("class", None)


def _aside(on: bool, full: bool = False) -> None:
    st.session_state[_HIDDEN] = bool(on)
    if full:
        st.session_state[_FULL] = True


def resume_banner(store: Any) -> None:
    """On the teaching page while the console is put aside: which class runs, and the way back."""
    g = grant()
    title = ""
    if store is not None and g is not None:
        try:
            title = store.check_teacher(g).title
        except Exception:  # noqa: BLE001
            title = ""
    with st.container(border=True, horizontal=True, vertical_alignment="center"):
        st.markdown(f":material/cast_for_education: You are running the class **{md_escape(title)}**.")
        st.button("Back to the class", key=keys()["back"], on_click=_aside, args=(False,), type="primary")


# --------------------------------------------------------------------------------------------------- console


def _labels(info: Any, summary: pd.DataFrame, hide: int | None = None) -> dict[int, str]:
    cats = dict(zip(summary["study_id"].astype(int), summary["category"].astype(str)))
    out = {}
    for k, sid in enumerate(info.study_ids, 1):
        cat = "class hidden during the question" if sid == hide else cats.get(sid, "?")
        out[sid] = f"{k}. study {sid:04d} · {cat}"
    return out


def _row(summary: pd.DataFrame, sid: int) -> dict:
    got = summary[summary["study_id"].astype(int) == int(sid)]
    return got.iloc[0].to_dict() if not got.empty else {}


def _say(kind: str, text: str) -> None:
    st.session_state[_MSG] = (kind, text)


def console(ds: Any, summary: pd.DataFrame) -> bool:
    """Draw the console. ``False`` when this session is not the class's teacher after all (the grant was
    dropped: the page shows its start panel instead)."""
    from mosmed.classroom.errors import NotAllowedError
    from mosmed.reviews.errors import ReviewDatabaseError

    g = grant()
    store, problem = classroom_db.get_store()
    if store is None:
        st.warning(
            md_escape(
                f"The class is paused: {problem}. Nothing is lost; this page resumes when the class database is back."
            ),
            icon=":material/cloud_off:",
        )
        return True
    try:
        info = store.check_teacher(g)
    except NotAllowedError as e:
        stop_driving()
        st.error(md_escape(f"You are not this class's teacher ({e})."), icon=":material/block:")
        return False
    except ReviewDatabaseError as e:
        st.warning(
            md_escape(f"The class is paused: {e}. Nothing is lost; this page resumes when the class database is back."),
            icon=":material/cloud_off:",
        )
        return True
    if info.ended:
        st.info(md_escape(f"The class {info.title!r} has ended."), icon=":material/school:")
        _results(store, g, info)
        st.button("Close", key=keys()["aside"], on_click=stop_driving)
        return True

    head, code_box, link_box = st.columns([3, 1.2, 2.4], vertical_alignment="center")
    with head:
        st.subheader(md_escape(info.title), anchor=False)
        st.caption(
            f"{len(info.study_ids)} studies · dataset {md_escape(info.dataset_label)} · you drive this "
            "class: the students follow your view"
        )
    with code_box:
        st.markdown("Class code")
        st.markdown(f"## `{info.join_code}`")
    with link_box:
        st.caption("Students open this link (or the teaching page and type the code):")
        st.code(class_link(info.join_code), language=None, wrap_lines=True)
    left, right = st.columns([3, 2], gap="medium")
    with left:
        _stage(ds, summary, info)
    with right:
        _live(ds, summary, info)
    st.divider()
    _results_part(g)
    return True


def _set_presenter(store: Any, g: Any, view: Any) -> str | None:
    """Write the presenter's view, or keep it for the next run when the database is away (returns why)."""
    from mosmed.reviews.errors import ReviewDatabaseError

    try:
        store.set_view(g, view)
    except ReviewDatabaseError as e:
        st.session_state[_PENDING] = view
        return str(e)
    st.session_state.pop(_PENDING, None)
    return None


def _go(ds: Any, info: Any, sid: int) -> None:
    """Show the class another of its studies (the picker, previous / next)."""
    from mosmed.errors import MosmedError

    store, problem = classroom_db.get_store()
    if store is None:
        _say("warning", f"Not moved: {problem}")
        return
    pres = st.session_state.get(_PRES)
    try:
        study = state.load_study(ds, int(sid))
    except MosmedError as e:
        _say("error", f"Study {sid} cannot be opened: {e}")
        return
    win = view_window(pres.view) if pres is not None else None
    why = _set_presenter(store, grant(), start_view(study, win))
    if why:
        _say("warning", f"The class will move when the database is back ({why}).")


def _pick_key(hide: int | None) -> str:
    """The picker's key changes with its labels (a study's class hidden during its question): Streamlit keeps a
    selectbox's choice by its label, so new labels under the same key would not map back to a study id."""
    return keys()["pick"] + ("" if hide is None else f".q{int(hide)}")


def _on_pick(ds: Any, info: Any, key: str) -> None:
    sid = st.session_state.get(key)
    if isinstance(sid, int) and sid in info.study_ids:
        _go(ds, info, sid)


def _on_step(ds: Any, info: Any, delta: int) -> None:
    pres = st.session_state.get(_PRES)
    ids = list(info.study_ids)
    cur = pres.view.study_id if pres is not None else ids[0]
    k = (ids.index(cur) + delta) % len(ids) if cur in ids else 0
    _go(ds, info, ids[k])


@st.fragment(key=STAGE_FRAGMENT)
def _stage(ds: Any, summary: pd.DataFrame, info: Any) -> None:
    """The presenter's viewer: what it shows is the presenter's view in the database; each move of the browser
    is written back as the new view (the students poll its version)."""
    from mosmed.classroom.model import View
    from mosmed.errors import MosmedError
    from mosmed.reviews.errors import ReviewDatabaseError

    store, problem = classroom_db.get_store()
    g = grant()
    pending = st.session_state.get(_PENDING)
    if store is not None and pending is not None:
        problem = _set_presenter(store, g, pending)
    pres = None
    if store is not None:
        try:
            pres = store.presenter(info.id, attempts=1)
            st.session_state[_PRES] = pres
        except ReviewDatabaseError as e:
            problem = str(e)
    if pres is None:
        pres = st.session_state.get(_PRES)
        if pres is None:
            st.warning(md_escape(f"The class is paused: {problem}."), icon=":material/cloud_off:")
            return
    if problem:
        st.warning(
            md_escape(f"The class is paused: {problem}. Your moves are kept and sent when the class database is back."),
            icon=":material/cloud_off:",
        )
    quiz_q = None
    if pres.question_id is not None and store is not None:
        try:
            q = store.teacher_question(g, pres.question_id, attempts=1)
            quiz_q = q if not q.revealed else None
        except Exception:  # noqa: BLE001 - shown by the live panel
            quiz_q = None
    view = pending if pending is not None else pres.view
    sid = view.study_id
    hide = quiz_q.study_id if quiz_q is not None else None
    labels = _labels(info, summary, hide=hide)
    k = keys()
    pick = _pick_key(hide)
    if st.session_state.get(_DRAWN) != (sid, pick) or st.session_state.get(pick) not in labels:
        st.session_state[pick] = sid  # the picker follows the presenter (buttons, other tabs)
    st.session_state[_DRAWN] = (sid, pick)
    row = st.container(horizontal=True, gap="small", vertical_alignment="bottom", key="classroom-stage-nav")
    row.button(
        "Previous",
        key=k["prev"],
        icon=":material/chevron_left:",
        on_click=_on_step,
        args=(ds, info, -1),
        help="The class's previous study",
    )
    row.selectbox(
        "Show the class",
        list(info.study_ids),
        key=pick,
        format_func=lambda s: labels.get(s, str(s)),
        on_change=_on_pick,
        args=(ds, info, pick),
        width="stretch",
    )
    row.button(
        "Next",
        key=k["next"],
        icon=":material/chevron_right:",
        on_click=_on_step,
        args=(ds, info, 1),
        help="The class's next study",
    )
    msg = st.session_state.pop(_MSG, None)
    if msg:
        getattr(st, msg[0])(md_escape(msg[1]))
    try:
        study = state.load_study(ds, sid)
    except MosmedError as e:
        st.error(md_escape(str(e)), icon=":material/broken_image:")
        return
    from components.viewer import ct_viewer
    from mosmed.render import OverlayStyle

    quiz_here = quiz_q is not None and quiz_q.study_id == sid
    ev = ct_viewer(
        study,
        window=view_window(view),
        style=OverlayStyle(show_mask=True, mode="outline", opacity=0.95),
        slice_index=view.slice,
        key=VIEWER_KEY,
        height=560,
        dataset_root=str(ds.root),
        plane=view.plane,
        cursor=(view.row, view.col),
        report_cursor=True,
        report_ms=PRESENTER_REPORT_MS,
        with_mask=not quiz_here,
        label=f"Question {quiz_q.number}" if quiz_here else None,
    )
    if not quiz_here:
        st.session_state.setdefault(_SHOWN, set()).add(int(sid))
    w = ev.window or view_window(view)
    row_, col_ = ev.cursor or (view.row, view.col)
    new = View(
        study_id=sid,
        slice=int(ev.slice_index),
        level=float(w.level),
        width=float(w.width),
        window_name=w.name,
        plane=ev.plane or view.plane,
        row=int(row_),
        col=int(col_),
    )
    if new != view and store is not None:
        _set_presenter(store, g, new)
    elif new != view:
        st.session_state[_PENDING] = new
    st.caption(
        "Scroll, window (keys 1-4, right-drag), change planes and click to move the crosshair: the class "
        "follows within a second. "
        + (
            "During the question the lesion mask is off here too, and the class "
            "is hidden on this screen (it may be on the projector)."
            if quiz_here
            else ""
        )
    )


def _ask(ds: Any, summary: pd.DataFrame, info: Any) -> None:
    from mosmed.classroom.errors import ClassroomError
    from mosmed.errors import MosmedError
    from mosmed.reviews.errors import ReviewDatabaseError

    store, problem = classroom_db.get_store()
    if store is None:
        _say("warning", f"Not asked: {problem}")
        return
    sid = int(st.session_state.get(keys()["ask_study"]) or info.study_ids[0])
    row = _row(summary, sid)
    try:
        study = state.load_study(ds, sid)
        pres = st.session_state.get(_PRES)
        store.open_question(
            grant(),
            study_id=sid,
            truth=str(row.get("category") or study.category),
            involvement_pct=row.get("involvement_pct"),
            estimated_pct=row.get("estimated_involvement_pct"),
            estimate_calibrated=_opt_bool(row.get("estimate_calibrated")),
            has_mask=bool(row.get("has_mask")) and study.mask is not None,
            view=start_view(study, view_window(pres.view) if pres else None),
        )
    except (ClassroomError, ReviewDatabaseError, MosmedError) as e:
        _say("error", f"Not asked: {e}")
    else:
        st.session_state.setdefault(_ASKED, set()).add(sid)
    _rerun_console()  # a question opened: the presenter's viewer changes too (mask off, class hidden)


def _opt_bool(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    try:
        return bool(v) if not pd.isna(v) else None
    except (TypeError, ValueError):
        return None


def _rerun_console() -> None:
    """From a callback of the console: rerun its viewer, live panel and results (not the whole page)."""
    st.rerun([STAGE_FRAGMENT, LIVE_FRAGMENT, RESULTS_FRAGMENT])


def _act(fn_name: str, question_id: int) -> None:
    from mosmed.classroom.errors import ClassroomError
    from mosmed.reviews.errors import ReviewDatabaseError

    store, problem = classroom_db.get_store()
    if store is None:
        _say("warning", f"Not done: {problem}")
        return
    try:
        if fn_name == "clear":
            store.clear_question(grant())
        else:
            getattr(store, fn_name)(grant(), int(question_id))
    except (ClassroomError, ReviewDatabaseError) as e:
        _say("error", f"Not done: {e}")
    _rerun_console()


@st.fragment(run_every=TEACHER_POLL_S, key=LIVE_FRAGMENT)
def _live(ds: Any, summary: pd.DataFrame, info: Any) -> None:
    """Who is here and following, the current question and its answers as they arrive."""
    from mosmed.reviews.errors import ReviewDatabaseError

    store, problem = classroom_db.get_store()
    g = grant()
    k = keys()
    try:
        if store is None:
            raise ReviewDatabaseError(str(problem))
        pres = store.presenter(info.id, attempts=1)
        fol = store.followers(info.id, attempts=1)
        q = store.teacher_question(g, pres.question_id, attempts=1) if pres.question_id is not None else None
    except ReviewDatabaseError as e:
        st.warning(md_escape(f"Live counts paused: {e}"), icon=":material/cloud_off:")
        return
    m = st.columns(3)
    m[0].metric("Students here", f"{fol.present}", help=f"{fol.joined} joined; here = seen in the last 20 seconds")
    m[1].metric("Following you", f"{fol.following} of {fol.present}")
    m[2].metric("Answers", "—" if q is None or q.revealed else f"{q.n_answers} of {fol.present}")
    msg = st.session_state.pop(_MSG, None)
    if msg:
        getattr(st, msg[0])(md_escape(msg[1]))
    if q is None or q.revealed:
        if q is not None:
            reveal_card(q, study_id=q.study_id, teacher=True)
            st.dataframe(
                counts_frame(q.counts, q.truth),
                hide_index=True,
                width="stretch",
                column_config=_bars(max(1, fol.present, q.n_answers)),
            )
            st.button(
                "Put the question away", key=k["clear"], icon=":material/done_all:", on_click=_act, args=("clear", q.id)
            )
        _ask_box(ds, summary, info, pres)
        return
    with st.container(border=True, key="classroom-t-question"):
        st.markdown(f"### Question {q.number} · {'answering' if q.state == 'open' else 'answers closed'}")
        st.caption(f"Study {q.study_id:04d}: the class sees it without id, class or mask.")
        st.dataframe(
            counts_frame(q.counts),
            hide_index=True,
            width="stretch",
            column_config=_bars(max(1, fol.present, q.n_answers)),
        )
        with st.expander("The answer (for you; hidden here in case this screen is projected)"):
            from mosmed import severity

            st.markdown(f"**{q.truth}** · {md_escape(severity.severity_row(q.truth).name)}")
        b = st.container(horizontal=True, gap="small")
        if q.state == "open":
            b.button(
                "Stop answers", key=k["stop"], icon=":material/pause:", on_click=_act, args=("close_question", q.id)
            )
        b.button(
            "Reveal",
            key=k["reveal"],
            type="primary",
            icon=":material/visibility:",
            on_click=_act,
            args=("reveal", q.id),
        )


def _bars(n: int) -> dict:
    return {"students": st.column_config.ProgressColumn("students", min_value=0, max_value=int(n), format="%d")}


def _ask_box(ds: Any, summary: pd.DataFrame, info: Any, pres: Any) -> None:
    k = keys()
    shown = st.session_state.get(_SHOWN, set())
    asked = {int(x) for x in st.session_state.get(_ASKED, set())}
    ids = list(info.study_ids)
    labels = _labels(info, summary)
    fresh = [s for s in ids if s not in shown and s not in asked]
    if st.session_state.get(k["ask_study"]) not in ids:
        st.session_state[k["ask_study"]] = fresh[0] if fresh else ids[0]
    with st.container(border=True, key="classroom-t-askbox"):
        st.markdown("**Ask the class**")
        st.selectbox("About the study", ids, key=k["ask_study"], format_func=lambda s: labels.get(s, str(s)))
        chosen = st.session_state.get(k["ask_study"])
        if chosen in shown:
            st.caption(":orange[The class has seen this study with its class label.]")
        elif chosen in asked:
            st.caption(":orange[Asked already in this class.]")
        st.button(
            "Ask: which class is it?",
            key=k["ask"],
            type="primary",
            icon=":material/quiz:",
            on_click=_ask,
            args=(ds, summary, info),
        )


@st.fragment(key=RESULTS_FRAGMENT)
def _results_part(g: Any) -> None:
    """The results as a fragment the console's actions rerun (the class read again: its settings may change)."""
    from mosmed.reviews.errors import ReviewDatabaseError

    if st.session_state.pop(_FULL, False):
        st.rerun()  # put aside, ended or the names setting changed: the whole page changes
    store, problem = classroom_db.get_store()
    try:
        if store is None:
            raise ReviewDatabaseError(str(problem))
        info = store.check_teacher(g)
    except ReviewDatabaseError as e:
        st.warning(md_escape(f"Results unavailable right now: {e}"), icon=":material/cloud_off:")
        return
    except Exception as e:  # noqa: BLE001 - e.g. no longer the teacher: the next full run says so
        st.warning(md_escape(f"Results unavailable: {e}"), icon=":material/block:")
        return
    _results(store, g, info)


def _results(store: Any, g: Any, info: Any) -> None:
    """Leaderboard (as the students see it), the names setting, per-student scores, CSV export, key, end."""
    from mosmed.reviews.errors import ReviewDatabaseError
    from mosmed.reviews.export import to_csv_bytes

    k = keys()
    try:
        board = store.leaderboard(info.id, names_public=info.names_public)
        scores = store.scores(info.id)
        results = store.results(g)
    except ReviewDatabaseError as e:
        st.warning(md_escape(f"Results unavailable right now: {e}"), icon=":material/cloud_off:")
        return
    c1, c2 = st.columns([3, 2], gap="medium")
    with c1:
        st.markdown("**Leaderboard** (as the students see it)")
        leaderboard_table(board, names_public=info.names_public)
    with c2:
        if not info.ended:
            st.toggle(
                "Show students' names on the leaderboard",
                value=info.names_public,
                key=k["names"],
                on_change=_names,
                help="Off: every student sees only their own row as \u201cYou\u201d.",
            )
        with st.expander(f"Per-student scores ({len(scores)} students; names visible to you only)"):
            if scores.empty:
                st.caption("No student yet.")
            else:
                st.dataframe(scores[["name", "correct", "answered", "revealed"]], hide_index=True, width="stretch")
        b = st.container(horizontal=True, gap="small")
        slug = f"class-{info.join_code}"
        b.download_button(
            "Answers CSV",
            to_csv_bytes(results),
            file_name=f"{slug}-answers.csv",
            mime="text/csv",
            key=k["csv"],
            icon=":material/download:",
        )
        b.download_button(
            "Scores CSV",
            to_csv_bytes(scores.drop(columns=["participant_id"])),
            file_name=f"{slug}-scores.csv",
            mime="text/csv",
            key=k["scores_csv"],
            icon=":material/download:",
        )
        if not info.ended:
            # Shown only on demand (never in the page otherwise): whoever has it drives the class.
            if st.toggle(
                "Show the teacher key",
                key=k["show_key"],
                help="To drive this class from another browser, or after this server went away "
                "(“Resume a class as its teacher”).",
            ):
                st.caption("Keep it to yourself and off the projector: whoever has it drives the class.")
                st.code(g.key or "(you drive this class with your login)", language=None)
            e = st.container(horizontal=True, gap="small", vertical_alignment="center")
            e.button(
                "Put the console aside",
                key=k["aside"],
                on_click=_aside,
                args=(True, True),
                type="tertiary",
                help="Use the rest of the teaching page; the class keeps running and you can come back.",
            )
            confirm = e.checkbox("I am done", key=k["end_confirm"])
            e.button("End the class", key=k["end"], disabled=not confirm, icon=":material/stop_circle:", on_click=_end)


def _end() -> None:
    store, problem = classroom_db.get_store()
    if store is None:
        _say("warning", f"Not ended: {problem}")
        return
    try:
        store.end_class(grant())
    except Exception as e:  # noqa: BLE001 - the message says why; the class runs on
        _say("error", f"Not ended: {e}")
    st.session_state[_FULL] = True


def _names() -> None:
    store, problem = classroom_db.get_store()
    if store is None:
        _say("warning", f"Not changed: {problem}")
        return
    try:
        store.set_names_public(grant(), bool(st.session_state.get(keys()["names"])))
    except Exception as e:  # noqa: BLE001
        _say("error", f"Not changed: {e}")
    st.session_state[_FULL] = True
