"""A student in a class: join with the code and a name, follow the teacher's view, answer the class quiz.

The page calls :func:`student_view` when this session holds a seat (or its URL holds a student's own link);
everything else about a class (creating one, joining one) is in :mod:`components.classroom_start`.

Follow
------
:func:`_live` is a fragment rerun every :data:`~components.classroom_common.FOLLOW_POLL_S` seconds (Streamlit's
``run_every``; the browser asks for each rerun). Each run is one small read of the database
(:meth:`~mosmed.classroom.store.ClassroomStore.poll`: the presenter's study, slice, window, plane and crosshair,
and the current question) and a viewer whose navigation follows it: only what changed reaches the browser (the
study's data once per study, then a few hundred bytes). While following, a move the student makes in the viewer
(scroll, window, plane: the browser reports only what the user did) detaches them: they explore on their own
until they re-attach.

Quiz
----
While a question is open the viewer shows its study with ``anonymous=True, with_mask=False``: no id, no class,
no mask, no lesion figure reaches the browser, and the student cannot open other studies. What the store hands
a student has no class before the reveal (:class:`mosmed.classroom.model.StudentQuestion`), and nothing on this
page names the study. An answer is stored at once, or kept in this session while the database is away and
sent when it is back (:class:`mosmed.classroom.seat.StudentSeat`).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from components import classroom_db, review_db, state
from components.classroom_common import (
    CODE_PARAM,
    FOLLOW_POLL_S,
    SEAT_KEY,
    SEAT_PARAM,
    leaderboard_table,
    reveal_card,
    start_view,
    url_code,
    url_seat,
    view_window,
)
from components.markup import md_escape

__all__ = ["VIEWER_KEY", "has_seat", "restore_from_url", "student_view", "answer_keys", "leave"]

VIEWER_KEY = "classroom.s.viewer"
_LAST = "classroom.s.last"  # the last poll that answered (shown while the database is away)
_OWN = "classroom.s.own"  # the student's own view while detached: plain dict of a View
_SEEN = "classroom.s.seen_report"  # the browser's last view report already taken into account
_MSG = "classroom.s.message"
_INFO = "classroom.s.info"  # title, code, dataset digest / root / label of the class
_DETACHED_NOTE = "classroom.s.detached_note"
_BOARD = "classroom.s.board"  # (what it was read for, the leaderboard frame)


def answer_keys(question_id: int) -> dict[str, str]:
    """Widget keys of the answer buttons of one question (tests click them)."""
    from mosmed.severity import CLASSES

    return {c: f"classroom.s.answer.{int(question_id)}.{c}" for c in CLASSES}


def has_seat() -> bool:
    return bool(st.session_state.get(SEAT_KEY))


def _seat():
    from mosmed.classroom.seat import StudentSeat

    return StudentSeat(st.session_state[SEAT_KEY])


def take_seat(info: Any, seat: Any) -> None:
    """Keep a seat in this session and put the student's own link in the address bar."""
    from mosmed.classroom.seat import StudentSeat

    box: dict = {}
    StudentSeat.start(box, seat)
    st.session_state[SEAT_KEY] = box
    st.session_state[_INFO] = {
        "title": info.title,
        "code": info.join_code,
        "digest": info.dataset_digest,
        "root": info.dataset_root,
        "label": info.dataset_label,
        "class_id": info.id,
    }
    for k in (_LAST, _OWN, _SEEN, _MSG, _DETACHED_NOTE, _BOARD):
        st.session_state.pop(k, None)
    st.query_params[CODE_PARAM] = info.join_code
    st.query_params[SEAT_PARAM] = str(seat.token)


def restore_from_url() -> str | None:
    """A student's own link (``?class=CODE&seat=TOKEN``) in a session without a seat: take the seat again
    (after a reconnect to another replica, a reload, another tab). Returns a problem to show, or ``None``."""
    code, token = url_code(), url_seat()
    if code is None or token is None or has_seat():
        return None
    store, problem = classroom_db.get_store()
    if store is None:
        return f"Your class cannot be reached right now: {problem}. This page tries again when you reload it."
    from mosmed.classroom.errors import ClassroomError
    from mosmed.reviews.errors import ReviewDatabaseError

    client, browser = classroom_db.requester()
    try:
        info, seat = store.rejoin(code, token, client=client, browser=browser)
    except ClassroomError as e:
        st.query_params.pop(SEAT_PARAM, None)
        return f"{e}."
    except ReviewDatabaseError as e:
        return f"Your class cannot be reached right now: {e}. Reload the page to try again."
    take_seat(info, seat)
    return None


def leave() -> None:
    """Leave the class in this browser session (the seat stays in the class: the link takes it again)."""
    for k in (SEAT_KEY, _LAST, _OWN, _SEEN, _MSG, _INFO, _DETACHED_NOTE, _BOARD):
        st.session_state.pop(k, None)
    st.query_params.pop(SEAT_PARAM, None)


def _set_following(on: bool) -> None:
    seat = _seat()
    seat.set_following(on)
    raw = st.session_state.get(VIEWER_KEY) or {}
    st.session_state[_SEEN] = _report(raw)
    st.session_state.pop(_DETACHED_NOTE, None)
    if on:
        st.session_state.pop(_OWN, None)


def _report(raw: Any) -> Any:
    try:
        return raw.get("view")
    except AttributeError:
        return None


def _give(question_id: int, choice: str) -> None:
    """Answer-button callback: the seat and the question come from this session and the store, not the page."""
    store, problem = classroom_db.get_store()
    seat = _seat()
    if store is None:
        # No store this run: keep the answer as the seat would for an outage.
        from mosmed.reviews.db import utcnow

        items = seat.pending()
        items.setdefault(int(question_id), (str(choice), utcnow().isoformat()))
        seat._set_pending(items)
        st.session_state[_MSG] = (
            "warning",
            f"Your answer {choice} is kept in this browser session and sent when "
            f"the class database is back ({problem}).",
        )
        return
    out = seat.answer(store, int(question_id), str(choice))
    kind = {"stored": "success", "already": "info", "kept": "warning"}.get(out.status, "error")
    text = {
        "stored": f"Answer {out.answer} received.",
        "already": f"Your first answer ({out.answer}) is the one that counts.",
        "kept": f"Your answer {out.answer} is {out.message}.",
    }.get(out.status, f"Your answer was not counted: {out.message}.")
    st.session_state[_MSG] = (kind, text)


def _class_dataset(ds: Any, info: dict) -> Any:
    """The dataset of the class (this session switches to it when it is another one the server may open)."""
    if ds is not None:
        try:
            if review_db.identity(ds).digest == info["digest"]:
                return ds
        except Exception:  # noqa: BLE001 - identity unavailable: treated as another dataset
            pass
    from pathlib import Path

    from mosmed.config import default_data_root

    root = Path(info.get("root") or "")
    default, _ = default_data_root()
    switched = st.session_state.get("classroom.s.switched")
    if switched != str(root):
        st.session_state["classroom.s.switched"] = str(root)
        try:
            same_default = root.resolve() == Path(default).resolve()
        except OSError:
            same_default = False
        if same_default:
            st.session_state.pop(state.ROOT_KEY, None)
            st.rerun()
        path, problem = state.check_root(str(root))
        if problem is None:
            st.session_state[state.ROOT_KEY] = str(path)
            state.clear_data_caches()
            st.rerun()
        st.error(
            md_escape(
                f"This class uses the dataset {info.get('label') or root}, which this server cannot "
                f"open for you: {problem}."
            ),
            icon=":material/folder_off:",
        )
        return None
    st.error(
        md_escape(
            f"This class uses the dataset {info.get('label') or root}; the dataset open here is "
            "another one (or it changed since the class began). Ask your teacher."
        ),
        icon=":material/folder_off:",
    )
    return None


def student_view(ds: Any) -> None:
    """The student's class: who they are, the live view and quiz (a polling fragment)."""
    info = st.session_state.get(_INFO) or {}
    seat = _seat()
    if st.query_params.get(SEAT_PARAM) != seat.seat.token or st.query_params.get(CODE_PARAM) != info.get("code"):
        st.query_params[CODE_PARAM] = str(info.get("code", ""))  # the student's own link, to come back with
        st.query_params[SEAT_PARAM] = str(seat.seat.token)
    head, side = st.columns([4, 1], vertical_alignment="center")
    with head:
        st.subheader(md_escape(info.get("title", "Class")), anchor=False)
        st.caption(
            f"You are **{md_escape(seat.seat.name)}** · class {md_escape(info.get('code', ''))} · "
            f"dataset {md_escape(info.get('label', ''))}"
        )
    side.button(
        "Leave the class",
        key="classroom.s.leave",
        on_click=leave,
        type="tertiary",
        icon=":material/logout:",
        help="Your answers stay; your link brings you back.",
    )
    cds = _class_dataset(ds, info)
    if cds is None:
        return
    _live(cds)


@st.fragment(run_every=FOLLOW_POLL_S)
def _live(ds: Any) -> None:
    from mosmed.errors import MosmedError

    if not has_seat():
        st.rerun()
    seat = _seat()
    store, problem = classroom_db.get_store()
    poll = None
    if store is not None:
        step = seat.step(store)
        poll, problem = step.poll, step.problem
        for d in step.dropped:
            st.warning(md_escape(d), icon=":material/error:")
        if step.sent:
            st.toast(f"{step.sent} answer(s) kept during the outage are now counted.", icon=":material/cloud_done:")
    if poll is not None:
        st.session_state[_LAST] = poll
    else:
        poll = st.session_state.get(_LAST)
        st.warning(
            md_escape(
                f"The class is paused: {problem}. Your view stays as it is; everything resumes by "
                "itself when the class database is back, and answers you give meanwhile are kept."
            ),
            icon=":material/cloud_off:",
        )
        if poll is None:
            return
    if poll.ended:
        st.info("The teacher has ended this class. Thank you for taking part.", icon=":material/school:")
        _board(store, poll, seat)
        return

    question = poll.question
    quiz = question is not None and not question.revealed
    following = seat.following
    pres = poll.presenter.view
    # Which study: a question's while one is open (nothing else may be opened then), else the teacher's, else
    # (detached) the one the student explores.
    own = st.session_state.get(_OWN)
    if quiz:
        sid = question.study_id
    elif following or own is None:
        sid = pres.study_id
    else:
        sid = int(own["study_id"])
    try:
        study = state.load_study(ds, sid)
    except MosmedError:
        # Never echo the error here: it names the study (and its file path, which names its class).
        st.error("This study cannot be opened on this server; ask your teacher.", icon=":material/broken_image:")
        return
    from mosmed.classroom.model import View

    # A move the student made while following (the browser reports user actions only) detaches them.
    raw = _report(st.session_state.get(VIEWER_KEY) or {})
    if following and raw is not None and raw != st.session_state.get(_SEEN):
        seat.set_following(False)
        following = False
        st.session_state[_DETACHED_NOTE] = True
        st.session_state[_OWN] = {**pres.__dict__} if pres.study_id == sid else None
    st.session_state[_SEEN] = raw
    own = st.session_state.get(_OWN)
    if following and pres.study_id == sid:
        view = pres
    elif own is not None and int(own["study_id"]) == sid:
        view = View(**own)
    else:
        view = start_view(study, view_window(pres))
        st.session_state[_OWN] = {**view.__dict__}

    bar = st.container(horizontal=True, gap="small", vertical_alignment="center", key="classroom-follow")
    if following:
        bar.markdown(":material/visibility: **Following the teacher**")
        bar.button(
            "Detach to explore",
            key="classroom.s.detach",
            on_click=_set_following,
            args=(False,),
            type="tertiary",
            help="Scroll, window and measure on your own; re-attach to follow again.",
        )
    else:
        bar.markdown(":material/explore: **Exploring on your own**")
        bar.button(
            "Follow the teacher again",
            key="classroom.s.attach",
            on_click=_set_following,
            args=(True,),
            type="primary",
            icon=":material/visibility:",
        )
        if st.session_state.get(_DETACHED_NOTE):
            bar.caption("You moved the view yourself, so it stopped following.")
    if quiz:
        bar.caption("During a question only its study can be viewed.")

    left, right = st.columns([3, 2], gap="medium")
    with left:
        from components.viewer import ct_viewer
        from mosmed.render import OverlayStyle

        revealed = question is not None and question.revealed and question.study_id == sid
        style = OverlayStyle(show_mask=True, mode="outline", opacity=0.95)
        ev = ct_viewer(
            study,
            window=view_window(view),
            style=style,
            slice_index=view.slice,
            key=VIEWER_KEY,
            height=520,
            dataset_root=str(ds.root),
            plane=view.plane,
            cursor=(view.row, view.col),
            anonymous=quiz,
            with_mask=not quiz,
            label=f"Question {question.number}" if quiz else None,
            layout="1+2",
        )
        if not following:
            w = ev.window or view_window(view)
            st.session_state[_OWN] = {
                **view.__dict__,
                "slice": int(ev.slice_index),
                "level": float(w.level),
                "width": float(w.width),
                "window_name": w.name,
                "plane": ev.plane or view.plane,
            }
        if revealed:
            st.caption("The class is revealed: the viewer now names the study and outlines its expert mask.")
    with right:
        _question_panel(question, poll.my_answer, seat, sid)
        _board(store, poll, seat)


def _question_panel(question: Any, mine: str | None, seat: Any, sid: int) -> None:
    from mosmed import severity

    msg = st.session_state.pop(_MSG, None)
    if question is None:
        st.caption("No question yet. When your teacher asks one, it appears here.")
        if msg:
            getattr(st, msg[0])(md_escape(msg[1]))
        return
    waiting = seat.pending_answer(question.id)
    given = mine or waiting
    if question.revealed:
        reveal_card(question, study_id=question.study_id, answer=given)
        return
    with st.container(border=True, key="classroom-question"):
        st.markdown(f"### Question {int(question.number)}")
        st.markdown("Which class is this study? Look through it in the viewer (scroll, window, planes).")
        keys = answer_keys(question.id)
        row = st.container(horizontal=True, gap="small", key="classroom-answers")
        for c in severity.CLASSES:
            row.button(
                f"{c} · {severity.severity_row(c).name}",
                key=keys[c],
                on_click=_give,
                args=(question.id, c),
                disabled=given is not None or not question.open,
                type="primary" if given == c else "secondary",
            )
        if msg:
            getattr(st, msg[0])(md_escape(msg[1]))
        if given is not None and mine is None:
            st.warning(
                f"Your answer {given} is kept in this browser session and counted when the class database is back.",
                icon=":material/cloud_upload:",
            )
        elif given is not None:
            st.caption(f"Your answer: **{given}**. Waiting for the teacher to reveal the class.")
        elif not question.open:
            st.caption("Answers are closed; waiting for the reveal.")


def _board(store: Any, poll: Any, seat: Any) -> None:
    """The leaderboard, once a question has been revealed. Scores move only at a reveal (or when the class
    changes its names setting), so it is read again only then, or every half minute for newcomers.

    Not during a question: it cannot change before the reveal, and reading and drawing it on every poll of
    every student, all at the moment a question opens, took CPU from the answers being counted (a profile of
    a replica under the 30-student load: ~20 % of its time in the leaderboard)."""
    import time

    if store is None:
        return
    q = poll.question
    if q is not None and not q.revealed:
        prev = st.session_state.get(_BOARD)
        if prev is not None and not prev[1].empty and int(prev[1]["answered"].max() or 0) > 0:
            st.caption("The leaderboard is back after the reveal.")
        return
    # Newcomers appear within half a minute; the students of one process do not all read it at once.
    tick = int((time.monotonic() + int(seat.seat.participant_id) % 30) // 30)
    ident = (None if q is None else q.id, poll.names_public, tick)
    got = st.session_state.get(_BOARD)
    if got is None or got[0] != ident:
        try:
            board = store.leaderboard(seat.seat.class_id, names_public=poll.names_public, me=seat.seat.participant_id)
        except Exception:  # noqa: BLE001 - the outage warning above says why
            return
        got = (ident, board)
        st.session_state[_BOARD] = got
    board = got[1]
    if board.empty or (int(board["answered"].max() or 0) == 0 and not (q is not None and q.revealed)):
        return
    with st.expander("Leaderboard", expanded=True):
        leaderboard_table(board, names_public=poll.names_public)
