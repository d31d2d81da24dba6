"""Teaching: a live class (follow the presenter, a class quiz), a severity quiz for one, two studies side by
side, the severity scale.

The quiz never shows anything that gives the class away before the answer: no study id (MosMedData numbers
its studies class by class), no file path (it contains ``/CT-k/``), no mask overlay (only CT-1 studies have
masks), no lesion statistics. Score and question live in this browser session only.

A class session (issue 13) takes the whole page for its teacher (components.classroom_teacher) and its students
(components.classroom_student); starting and joining one is the "Class session" tab (components.classroom_start).
Its state is in the database, so its teacher and students may be served by different app processes.
"""

from __future__ import annotations

import math
import random

import pandas as pd
import streamlit as st

from components import paper, state
from components.classroom_common import start_slice
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)

st.title("Teaching")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed import severity  # noqa: E402
from mosmed.errors import MosmedError  # noqa: E402
from mosmed.involvement import estimate_label  # noqa: E402
from mosmed.windowing import PRESET_LABELS, PRESETS  # noqa: E402

summary = state.summary_df(ds)
filter_ids = state.current_filter_ids()
usable = summary[summary["status"] != "error"]
if filter_ids is not None:
    usable = usable[usable["study_id"].astype(int).isin(filter_ids)]
scope = "the registry's current filter" if filter_ids is not None else "the whole dataset"

# Session keys of the quiz.
Q_STUDY, Q_NUMBER, Q_ANSWER, Q_SCORE, Q_SEEN, Q_SEED = (
    "teaching.quiz.study",
    "teaching.quiz.number",
    "teaching.quiz.answer",
    "teaching.quiz.score",
    "teaching.quiz.seen",
    "teaching.quiz.seed",
)
W_BALANCED, W_WINDOW = "teaching.w.balanced", "teaching.w.quiz_window"


def _score() -> dict:
    return st.session_state.setdefault(Q_SCORE, {"answered": 0, "correct": 0, "by_class": {}})


def _pick(pool: pd.DataFrame, balanced: bool) -> int | None:
    """A random study of the pool, not asked before in this session while unasked ones remain."""
    if pool.empty:
        return None
    seed = st.session_state.setdefault(Q_SEED, random.SystemRandom().randrange(2**32))
    number = int(st.session_state.get(Q_NUMBER, 0))
    rng = random.Random(seed * 1_000_003 + number)
    seen = set(st.session_state.get(Q_SEEN, []))
    fresh = pool[~pool["study_id"].astype(int).isin(seen)]
    if fresh.empty:  # every study asked once: start over
        st.session_state[Q_SEEN] = []
        fresh = pool
    if balanced:  # a class first, then a study of it: CT-1 must not be 60 % of questions
        cats = sorted(set(fresh["category"].astype(str)))
        fresh = fresh[fresh["category"].astype(str) == rng.choice(cats)]
    ids = sorted(int(i) for i in fresh["study_id"])
    return rng.choice(ids)


def _next_question() -> None:
    st.session_state[Q_NUMBER] = int(st.session_state.get(Q_NUMBER, 0)) + 1
    st.session_state.pop(Q_STUDY, None)
    st.session_state.pop(Q_ANSWER, None)


def _check(question: int, study_id: int, truth: str) -> None:
    """Record the learner's answer once per question (a callback, so a rerun never counts twice)."""
    if st.session_state.get(Q_ANSWER) is not None:
        return
    choice = st.session_state.get(f"teaching.w.answer.{question}")
    if choice is None:
        return
    st.session_state[Q_ANSWER] = str(choice)
    sc = _score()
    sc["answered"] += 1
    sc["correct"] += int(str(choice) == truth)
    per = sc["by_class"].setdefault(truth, [0, 0])
    per[0] += 1
    per[1] += int(str(choice) == truth)
    st.session_state[Q_SEEN] = list(st.session_state.get(Q_SEEN, [])) + [int(study_id)]


def _reset_score() -> None:
    for k in (Q_SCORE, Q_SEEN, Q_STUDY, Q_ANSWER):
        st.session_state.pop(k, None)
    st.session_state[Q_NUMBER] = int(st.session_state.get(Q_NUMBER, 0)) + 1


def _quiz_slice(study) -> int:
    """Where the quiz opens: the middle of the lungs (never the slice with most lesion: that would hint)."""
    return start_slice(study)


def _involvement_text(row: pd.Series) -> str:
    meas, est = row.get("involvement_pct"), row.get("estimated_involvement_pct")
    parts = []
    if meas is not None and not (isinstance(meas, float) and math.isnan(meas)):
        parts.append(f"measured {float(meas):.1f}% (expert mask)")
    if est is not None and not (isinstance(est, float) and math.isnan(est)):
        cal = row.get("estimate_calibrated")
        cal = None if cal is None or pd.isna(cal) else bool(cal)
        parts.append(f"estimated {float(est):.1f}% ({estimate_label(cal)} from HU)")
    return ", ".join(parts) or "not measured"


def _default_pair(frame: pd.DataFrame) -> tuple[int, int]:
    """A pair worth comparing, from the summary: a normal study beside the most involved one.

    Left: the CT-0 study with the least estimated involvement (else the least involved study of all).
    Right: the study with the most lesion measured on an expert mask (its outline shows); without any mask,
    the study with the highest estimated involvement among the most severe class present. Two different
    studies whenever the frame holds two.
    """
    ids = [int(i) for i in frame["study_id"]]
    if len(ids) < 2:
        return ids[0], ids[0]
    df = frame.assign(
        _id=frame["study_id"].astype(int),
        _meas=pd.to_numeric(frame["involvement_pct"], errors="coerce"),
        _est=pd.to_numeric(frame["estimated_involvement_pct"], errors="coerce"),
        _rank=frame["category"].astype(str).map({c: i for i, c in enumerate(severity.CLASSES)}),
    )
    df["_best"] = df["_meas"].fillna(df["_est"])
    masked = df[df["_meas"].notna() & (df["_meas"] > 0)]
    if not masked.empty:
        right = int(masked.sort_values(["_meas", "_id"], ascending=[False, True]).iloc[0]["_id"])
    else:
        ranked = df[df["_rank"].notna()]
        if ranked.empty:
            ranked = df
        else:
            ranked = ranked[ranked["_rank"] == ranked["_rank"].max()]
        right = int(ranked.sort_values(["_best", "_id"], ascending=[False, True], na_position="last").iloc[0]["_id"])
    rest = df[df["_id"] != right]
    normal = rest[rest["category"].astype(str) == severity.CLASSES[0]]
    pool = normal if not normal.empty else rest
    left = int(pool.sort_values(["_best", "_id"], ascending=[True, True], na_position="last").iloc[0]["_id"])
    return left, right


# ------------------------------------------------------------------------------------------- class session
from components import classroom_db, classroom_start, classroom_student, classroom_teacher  # noqa: E402
from components.classroom_common import url_code  # noqa: E402

if classroom_teacher.active() and not classroom_teacher.hidden():
    if classroom_teacher.console(ds, summary):
        st.stop()
_restore_problem = classroom_student.restore_from_url()  # a student's own link, e.g. after a reconnect
if classroom_student.has_seat() and not classroom_teacher.active():
    classroom_student.student_view(ds)
    st.stop()
if classroom_teacher.active():
    classroom_teacher.resume_banner(classroom_db.get_store()[0])
if _restore_problem:
    st.error(md_escape(_restore_problem), icon=":material/link_off:")

CLASS_TAB = "Class session"
quiz_tab, class_tab, compare_tab, table_tab = st.tabs(
    ["Quiz", CLASS_TAB, "Compare two studies", "Severity scale"],
    default=CLASS_TAB if url_code() is not None or _restore_problem else None,
)

with class_tab:
    classroom_start.start_panel(ds, usable, filter_ids, scope)

# ----------------------------------------------------------------------------------------------------- quiz
with quiz_tab:
    sc = _score()
    top = st.columns([2, 2, 2, 2], vertical_alignment="center")
    top[0].metric("Score", f"{sc['correct']} / {sc['answered']}")
    top[1].metric("Accuracy", f"{100.0 * sc['correct'] / sc['answered']:.0f}%" if sc["answered"] else "—")
    top[2].toggle(
        "Classes evenly",
        value=True,
        key=W_BALANCED,
        help="Pick a class at random first, then a study of it (otherwise CT-1 dominates)",
    )
    top[3].button("Reset score", key="teaching.w.reset", on_click=_reset_score, type="tertiary")
    st.caption(f"Questions come from {scope} ({len(usable)} studies that can be shown).")

    if usable.empty:
        st.info("No study to ask about: widen the registry filter or build the cache.", icon=":material/quiz:")
    else:
        if st.session_state.get(Q_STUDY) not in set(usable["study_id"].astype(int)):
            st.session_state[Q_STUDY] = _pick(usable, bool(st.session_state.get(W_BALANCED, True)))
            st.session_state.pop(Q_ANSWER, None)
        sid = int(st.session_state[Q_STUDY])
        qn = int(st.session_state.get(Q_NUMBER, 0))
        row = summary[summary["study_id"].astype(int) == sid].iloc[0]
        truth = str(row["category"])
        answered = st.session_state.get(Q_ANSWER)

        st.subheader(f"Question {sc['answered'] + (0 if answered else 1)}")
        window_name = st.segmented_control(
            "Window",
            ["lung", "mediastinum"],
            default="lung",
            key=W_WINDOW,
            format_func=lambda k: PRESET_LABELS.get(k, k),
            required=True,
        )
        shown = False
        try:
            study = state.load_study(ds, sid)
            # Before the answer the viewer is anonymous: no id, no class, no lesion mask or figures reach the
            # browser (MosMedData numbers its studies class by class, and only CT-1 studies have masks).
            # After it, the same viewer shows the study with its expert mask as an opaque outline.
            from components.viewer import ct_viewer
            from mosmed.render import OverlayStyle

            ct_viewer(
                study,
                window=PRESETS[window_name or "lung"],
                style=OverlayStyle(show_mask=True, mode="outline", opacity=0.95),
                slice_index=_quiz_slice(study),
                key=f"teaching.quiz.viewer.{qn}",
                height=520,
                dataset_root=str(ds.root),
                anonymous=not answered,
                with_mask=bool(answered),
                label=f"Question {sc['answered'] + (0 if answered else 1)}"
                if not answered
                else f"study {sid} · {truth}",
            )
            shown = True
            st.caption(
                "Scroll, window (keys 1-4, right-drag), zoom and measure as in the viewer; the patient's "
                "right is on the left (radiological convention)."
            )
        except MosmedError as e:
            st.error(
                md_escape(f"This question's study could not be opened ({e}). It does not count; go to the next one."),
                icon=":material/broken_image:",
            )

        options = list(severity.CLASSES)
        st.segmented_control(
            "Your answer",
            options,
            key=f"teaching.w.answer.{qn}",
            disabled=bool(answered),
            format_func=lambda c: f"{c} · {severity.severity_row(c).name}",
        )
        buttons = st.container(horizontal=True, gap="small")
        buttons.button(
            "Check answer",
            key="teaching.w.check",
            type="primary",
            disabled=bool(answered) or not shown,
            on_click=_check,
            args=(qn, sid, truth),
        )
        buttons.button(
            "Next question",
            key="teaching.w.next",
            on_click=_next_question,
            type="primary" if answered or not shown else "secondary",
        )

        if answered:
            if answered == truth:
                st.success(f"Correct: {truth} ({severity.severity_row(truth).name}).", icon=":material/check:")
            else:
                st.error(f"Not quite: you chose {answered}; this study is {truth}.", icon=":material/close:")
            st.markdown(
                f"**Study {sid}**, class **{truth}**. Lung involvement: {_involvement_text(row)}. "
                f"Band of {truth}: {severity.severity_row(truth).involvement}."
            )
            if row.get("has_mask"):
                st.caption("The viewer above now shows the expert lesion mask as an outline.")
            # The paper's row of this study's class, and of the answer chosen when it differs, to compare.
            paper.severity_row_card(truth, title=f"This study's class: {truth}")
            if answered != truth and answered in severity.CLASSES:
                paper.severity_row_card(answered, title=f"Your answer: {answered}")
            if st.button("Open this study in the viewer", key="teaching.w.open"):
                state.goto_viewer(sid)
        if sc["by_class"]:
            per = pd.DataFrame(
                [{"class": k, "asked": v[0], "correct": v[1]} for k, v in sorted(sc["by_class"].items())]
            )
            with st.expander("Score by class"):
                st.dataframe(per, hide_index=True)

# -------------------------------------------------------------------------------------------------- compare
with compare_tab:
    ok = usable[usable["status"] == "ok"] if (usable["status"] == "ok").any() else usable
    if len(ok) < 1:
        st.info("No study to compare: widen the registry filter or build the cache.")
    else:
        ids = [int(i) for i in ok["study_id"]]
        label = {int(r.study_id): f"study {int(r.study_id)} · {r.category}" for r in ok.itertuples()}
        left_id, right_id = _default_pair(ok)
        c1, c2, c3, c4, c5 = st.columns([2, 2, 1.6, 1.6, 1], vertical_alignment="bottom")
        a = c1.selectbox("Left study", ids, index=ids.index(left_id), key="teaching.w.cmp_a", format_func=label.get)
        b = c2.selectbox("Right study", ids, index=ids.index(right_id), key="teaching.w.cmp_b", format_func=label.get)
        wname = c3.selectbox(
            "Window", list(PRESETS), key="teaching.w.cmp_window", format_func=lambda k: PRESET_LABELS.get(k, k)
        )
        link_mode = c4.selectbox(
            "Link scrolling",
            ["mm", "relative"],
            key="teaching.w.cmp_link",
            format_func={"mm": "by position (mm)", "relative": "by relative height"}.get,
        )
        show_mask = c5.toggle("Lesions", value=True, key="teaching.w.cmp_mask")
        try:
            from components.compare import compare_view
        except Exception as e:  # noqa: BLE001
            compare_view = None
            st.error(md_escape(f"The side-by-side view is not available: {e}"))
        if compare_view is not None:
            studies = []
            for sid_ in (a, b):
                try:
                    studies.append(state.load_study(ds, int(sid_)))
                except MosmedError as e:
                    st.error(md_escape(e), icon=":material/broken_image:")
            if len(studies) == 2:
                from mosmed.render import OverlayStyle

                compare_view(
                    studies[0],
                    studies[1],
                    window=PRESETS[wname],
                    style=OverlayStyle(show_mask=bool(show_mask)),
                    key="teaching.compare",
                    link_mode=link_mode or "mm",
                    dataset_root=str(ds.root),
                )
                st.caption(
                    "Scrolling either side moves the other by the same distance in mm (or to the same "
                    "relative height); a window set in either (keys 1-4, right-drag) applies to both. "
                    "The first pair shown is a normal (CT-0) study beside the study with the most lesion "
                    "on an expert mask; pick any two above."
                )

# -------------------------------------------------------------------------------------------------- table
with table_tab:
    paper.severity_table()
