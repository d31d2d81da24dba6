"""The viewer's study picker: which studies may be opened, the select box, previous / next."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from components import state
from components.viewer_url import SLICE, STUDY, K

__all__ = ["PICK", "StudyChoices", "choices", "current", "picker"]

PICK = K + "pick"


@dataclass(frozen=True)
class StudyChoices:
    """Study ids of the open dataset for the viewer.

    Attributes
    ----------
    all_ids : list of int
        Every registry id (a broken study may still be opened by link, to see why).
    options : list of int
        What the picker offers: readable studies of the registry filter (or of the dataset).
    filtered : bool
        Whether ``options`` come from the registry page's filter.
    by_id : pandas.DataFrame
        The summary indexed by study id (labels, errors).
    """

    all_ids: list[int]
    options: list[int]
    filtered: bool
    by_id: pd.DataFrame


def choices(summary: pd.DataFrame) -> tuple[StudyChoices, list[str]]:
    """The studies the viewer offers, and notices to show."""
    notices = []
    all_ids = [int(i) for i in summary["study_id"].tolist()]
    # "pending" = readable but not cached yet (opening it computes and caches it); "error" = known broken.
    ok_ids = [int(i) for i in summary.loc[summary["status"] != "error", "study_id"].tolist()]
    filter_ids = state.current_filter_ids()
    options = ok_ids
    if filter_ids is not None:
        allowed = set(filter_ids)
        options = [i for i in ok_ids if i in allowed]
        if not options:
            notices.append("The registry filter holds no readable study; showing all readable studies instead.")
            options = ok_ids
    return StudyChoices(all_ids, options, filter_ids is not None, summary.set_index("study_id")), notices


def _label(by_id: pd.DataFrame, sid: int) -> str:
    row = by_id.loc[sid]
    mark = " (error)" if row["status"] == "error" else (" · mask" if bool(row["has_mask"]) else "")
    return f"study {sid:04d} · {row['category']}{mark}"


def _reset_view_of_study() -> None:
    st.session_state.pop(SLICE, None)


def current(ch: StudyChoices) -> tuple[int, list[int]]:
    """The study to open (session, else the first offered) and the ids in the picker's order; call before
    opening the study (the picker itself is drawn later, inside the viewer's fragment)."""
    cur = st.session_state.get(STUDY)
    if cur not in ch.all_ids:
        cur = ch.options[0] if ch.options else ch.all_ids[0]
        st.session_state[STUDY] = cur
    options = list(ch.options)
    if cur not in options:
        options = [cur] + options  # a broken or filtered-out study opened by link stays selectable
    return int(cur), options


def picker(ch: StudyChoices, cols: list | None = None) -> int:
    """Draw the picker (in three given columns, else a row of its own); returns the chosen study id.

    Inside a fragment, the caller reruns the whole page when the id differs from the study it shows.
    """
    cur, options = current(ch)
    if st.session_state.get(PICK) != cur:
        st.session_state[PICK] = cur

    def on_pick() -> None:
        st.session_state[STUDY] = int(st.session_state[PICK])
        _reset_view_of_study()

    def step(delta: int) -> None:
        now = int(st.session_state.get(STUDY, options[0]))
        i = options.index(now) if now in options else 0
        new = options[(i + delta) % len(options)]
        st.session_state[STUDY] = st.session_state[PICK] = new
        _reset_view_of_study()

    c_prev, c_pick, c_next = (
        cols if cols is not None else st.columns([0.6, 3, 0.6, 6.6], vertical_alignment="bottom")[:3]
    )
    c_prev.button(
        "",
        icon=":material/chevron_left:",
        key=K + "prev",
        help="Previous study in the list",
        on_click=step,
        args=(-1,),
        disabled=len(options) < 2,
        use_container_width=True,
    )
    where = "the registry filter" if ch.filtered else "the dataset"
    c_pick.selectbox(
        f"Study ({len(ch.options)} in {where})",
        options,
        key=PICK,
        format_func=lambda sid: _label(ch.by_id, sid),
        on_change=on_pick,
    )
    c_next.button(
        "",
        icon=":material/chevron_right:",
        key=K + "next",
        help="Next study in the list",
        on_click=step,
        args=(1,),
        disabled=len(options) < 2,
        use_container_width=True,
    )
    return int(st.session_state[STUDY])
