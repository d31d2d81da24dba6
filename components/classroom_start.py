"""Starting, joining and resuming a class: the "Class session" tab of the teaching page.

- **Start a class** (teacher): a title, the studies (the registry's current filter, or a balanced random pick of
  k studies per class), whether names show on the leaderboard. The class gets a join code and a link; the
  teacher key stays in this browser session (and, with ``[auth]`` configured, the class is tied to the login).
- **Join a class** (student): the code (filled in from a class link) and a name.
- **Resume as the teacher**: the code and the teacher key, from another browser (or after the server that held
  the teacher's session went away); a logged-in teacher just picks one of their running classes.

Wrong codes and keys are counted in the database (:mod:`mosmed.classroom.limits`).
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import streamlit as st

from components import classroom_db, classroom_student, classroom_teacher, state
from components.classroom_common import start_view, url_code
from components.markup import md_escape

__all__ = ["start_panel", "pick_balanced", "keys"]

_ERR = "classroom.start.error"


def keys() -> dict[str, str]:
    """Widget keys of the start panel (tests drive them)."""
    return {
        "title": "classroom.w.title",
        "source": "classroom.w.source",
        "per_class": "classroom.w.per_class",
        "names": "classroom.w.names_public",
        "create": "classroom.w.create",
        "code": "classroom.w.code",
        "name": "classroom.w.name",
        "join": "classroom.w.join",
        "r_code": "classroom.w.resume_code",
        "r_key": "classroom.w.resume_key",
        "resume": "classroom.w.resume",
    }


def pick_balanced(pool: pd.DataFrame, per_class: int, rng: random.Random) -> list[int]:
    """``per_class`` random studies of each class present in ``pool`` (fewer when a class has fewer), shuffled."""
    ids: list[int] = []
    for _, group in pool.groupby(pool["category"].astype(str), sort=True):
        members = sorted(int(i) for i in group["study_id"])
        ids += rng.sample(members, min(per_class, len(members)))
    rng.shuffle(ids)
    return ids


def _create(ds: Any, usable: pd.DataFrame, filter_ids: list[int] | None) -> None:
    from mosmed.classroom.errors import ClassroomError
    from mosmed.classroom.model import MAX_STUDIES
    from mosmed.errors import MosmedError
    from mosmed.reviews.errors import ReviewDatabaseError

    k = keys()
    st.session_state.pop(_ERR, None)
    store, problem = classroom_db.get_store()
    if store is None:
        st.session_state[_ERR] = f"The class cannot be started: {problem}"
        return
    ok_ids = [int(i) for i in usable["study_id"]]
    if st.session_state.get(k["source"]) == "filter" and filter_ids is not None:
        allowed = set(ok_ids)
        ids = [int(i) for i in filter_ids if int(i) in allowed][:MAX_STUDIES]
    else:
        per = int(st.session_state.get(k["per_class"]) or 2)
        ids = pick_balanced(usable, max(1, min(per, 40)), random.SystemRandom())[:MAX_STUDIES]
    if not ids:
        st.session_state[_ERR] = "No study to show: widen the registry filter or build the cache."
        return
    from components import reader, review_db

    try:
        first = state.load_study(ds, ids[0])
        ident = review_db.identity(ds)
        r = reader.current_reader()
        info, grant = store.create_class(
            title=st.session_state.get(k["title"]),
            dataset_digest=ident.digest,
            dataset_label=ident.label,
            dataset_root=str(ds.root),
            study_ids=ids,
            start=start_view(first),
            names_public=bool(st.session_state.get(k["names"])),
            teacher_subject=r.subject if r is not None and r.verified else None,
        )
    except (ClassroomError, ReviewDatabaseError, MosmedError) as e:
        st.session_state[_ERR] = f"The class was not started: {e}"
        return
    classroom_teacher.keep_grant(info, grant)


def _join() -> None:
    from mosmed.classroom.errors import ClassroomError
    from mosmed.reviews.errors import ReviewDatabaseError

    k = keys()
    st.session_state.pop(_ERR, None)
    store, problem = classroom_db.get_store()
    if store is None:
        st.session_state[_ERR] = f"You cannot join right now: {problem}"
        return
    client, browser = classroom_db.requester()
    try:
        info, seat = store.join(
            st.session_state.get(k["code"]) or "", st.session_state.get(k["name"]), client=client, browser=browser
        )
    except (ClassroomError, ReviewDatabaseError) as e:
        st.session_state[_ERR] = f"Not joined: {e}."
        return
    classroom_student.take_seat(info, seat)


def _resume(info_id: int | None = None) -> None:
    from mosmed.classroom.errors import ClassroomError
    from mosmed.classroom.model import TeacherGrant
    from mosmed.reviews.errors import ReviewDatabaseError

    k = keys()
    st.session_state.pop(_ERR, None)
    store, problem = classroom_db.get_store()
    if store is None:
        st.session_state[_ERR] = f"Not resumed: {problem}"
        return
    try:
        if info_id is not None:  # a logged-in teacher's own class: the login is the proof
            g = TeacherGrant(class_id=int(info_id), subject=classroom_teacher._login_subject())
            info = store.check_teacher(g)
        else:
            client, browser = classroom_db.requester()
            info, g = store.resume_teacher(
                st.session_state.get(k["r_code"]) or "",
                st.session_state.get(k["r_key"]) or "",
                client=client,
                browser=browser,
            )
    except (ClassroomError, ReviewDatabaseError) as e:
        st.session_state[_ERR] = f"Not resumed: {e}."
        return
    classroom_teacher.keep_grant(info, g)


def start_panel(ds: Any, usable: pd.DataFrame, filter_ids: list[int] | None, scope: str) -> None:
    """The class tab: start a class, join one, resume one."""
    k = keys()
    code = url_code()
    if code is not None and st.session_state.get("classroom.start.code_from") != code:
        st.session_state[k["code"]] = f"{code[:4]}-{code[4:]}"  # a class link: the code filled in once
        st.session_state["classroom.start.code_from"] = code
    err = st.session_state.get(_ERR)
    if err:
        st.error(md_escape(err), icon=":material/error:")
    st.caption(
        "A live class: students follow your view of each study (slice, window, plane, crosshair) and answer "
        "questions on them; several app processes can serve one class (README, \u201cTeaching a class\u201d)."
    )
    left, right = st.columns(2, gap="large")
    with left, st.container(border=True, key="classroom-start"):
        st.markdown("#### Start a class")
        with st.form("classroom.start.form", border=False, enter_to_submit=False):
            from mosmed.classroom.model import MAX_TITLE_CHARS

            st.text_input("Title", key=k["title"], max_chars=MAX_TITLE_CHARS, placeholder="e.g. COVID-19 CT, week 3")
            options = (["filter"] if filter_ids is not None else []) + ["balanced"]
            n_filter = 0 if filter_ids is None else len(filter_ids)
            st.radio(
                "Studies",
                options,
                key=k["source"],
                format_func={
                    "filter": f"The registry's current filter ({n_filter} studies, in its order)",
                    "balanced": f"A balanced random pick from {scope}: the same number of each class",
                }.get,
            )
            st.number_input(
                "Studies of each class (balanced pick)", min_value=1, max_value=40, value=2, step=1, key=k["per_class"]
            )
            st.toggle(
                "Show students' names on the leaderboard",
                value=False,
                key=k["names"],
                help="Off: each student sees only their own row, as \u201cYou\u201d. Can be changed later.",
            )
            st.form_submit_button(
                "Start the class",
                type="primary",
                on_click=_create,
                args=(ds, usable, filter_ids),
                icon=":material/cast_for_education:",
                key=k["create"],
            )
        _my_classes()
    with right, st.container(border=True, key="classroom-join"):
        st.markdown("#### Join a class")
        with st.form("classroom.join.form", border=False):
            from mosmed.classroom.model import MAX_NAME_CHARS

            st.text_input("Class code", key=k["code"], max_chars=16, placeholder="ABCD-EFGH")
            st.text_input("Your name (shown to your teacher)", key=k["name"], max_chars=MAX_NAME_CHARS)
            st.form_submit_button("Join", type="primary", on_click=_join, icon=":material/login:", key=k["join"])
        with st.expander("Resume a class as its teacher"):
            with st.form("classroom.resume.form", border=False):
                st.text_input("Class code", key=k["r_code"], max_chars=16)
                st.text_input("Teacher key", key=k["r_key"], type="password", max_chars=64)
                st.form_submit_button("Resume", on_click=_resume, key=k["resume"])


def _my_classes() -> None:
    """A logged-in teacher's running classes (found by their login, no key needed)."""
    subject = classroom_teacher._login_subject()
    if subject is None:
        return
    store, _ = classroom_db.get_store()
    if store is None:
        return
    try:
        mine = store.classes_of(subject)
    except Exception:  # noqa: BLE001
        return
    for info in mine[:5]:
        c = st.container(horizontal=True, vertical_alignment="center")
        c.markdown(f"Your class **{md_escape(info.title)}** · `{info.join_code}`")
        c.button("Drive it", key=f"classroom.w.mine.{info.id}", on_click=_resume, args=(info.id,))
