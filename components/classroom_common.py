"""Pieces the teacher's and the students' class views share: session keys, links, the start of a study, the
reveal card and the leaderboard.

Session keys (``classroom.*``) hold only server-side state: the teacher's grant (``classroom.teacher``: class
id and teacher key, or the login's subject) and the student's seat (``classroom.seat``). Neither is ever put in
a widget, an element or a URL, except the student's own token in the student's own link (it restores them on
any replica after a reconnect; the teacher key never leaves the server).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from components.markup import md_escape

__all__ = [
    "TEACHER_KEY",
    "SEAT_KEY",
    "CODE_PARAM",
    "SEAT_PARAM",
    "FOLLOW_POLL_S",
    "TEACHER_POLL_S",
    "PRESENTER_REPORT_MS",
    "start_slice",
    "default_cursor",
    "view_window",
    "start_view",
    "involvement_text",
    "reveal_card",
    "leaderboard_table",
    "class_link",
    "url_code",
    "url_seat",
    "counts_frame",
]

#: Session key of the teacher's grant: {"class_id", "key", "subject"} (never shown, never in a URL).
TEACHER_KEY = "classroom.teacher"
#: Session key of the student's seat (a :class:`mosmed.classroom.seat.StudentSeat` box).
SEAT_KEY = "classroom.seat"
#: Query parameters: the class's join code, and (a student's own link only) their seat token.
CODE_PARAM, SEAT_PARAM = "class", "seat"
#: Seconds between two polls of a student's page (follow the teacher, see a question open or revealed). Each
#: poll reruns the student's whole live view (~6-7 ms of a replica's CPU, measured with 15 students on one
#: replica); at 0.25 s, 30 students kept 2 CPUs so busy that the teacher's count lagged by seconds (benchmark
#: p95 3.7 s from an answer to the teacher's count; at 0.5 s 0.8-1.5 s), for a follow p95 of 0.58-0.65 s
#: instead of 0.52 s.
FOLLOW_POLL_S = 0.5
#: Seconds between two refreshes of the teacher's live counts (the answers arrive there: at 0.4 s the wait for the
#: next refresh alone was up to 0.4 of the 1 s the quiz allows from an answer to the count).
TEACHER_POLL_S = 0.25
#: The presenter's viewer reports a move after this pause (ms; the viewer's own default is 400).
PRESENTER_REPORT_MS = 120


def start_slice(study: Any) -> int:
    """Where a study opens in class and in the quiz: the middle of the lungs (never the slice with the most
    lesion: that would hint at the class)."""
    z = int(study.volume.shape[0])
    la = study.stats.lung_area_mm2 if getattr(study, "stats", None) is not None else None
    area = np.asarray(la, dtype=float) if la is not None else np.ones(z)
    lungs = np.flatnonzero(np.nan_to_num(area) > 0) if area.shape == (z,) else np.arange(z)
    return int(lungs[lungs.size // 2]) if lungs.size else z // 2


def default_cursor(study: Any) -> tuple[int, int]:
    """The crosshair a study opens with in class: through the right lung's widest part, never through the
    lesions (a cut through them would point at them). Computed once per study and process: it sums the whole
    lung volume, and every student of a class needs it at the same moment (a question opening)."""
    ident = (int(study.study_id), str(getattr(study, "cache_key", "")), tuple(int(n) for n in study.volume.shape))
    return _default_cursor(ident, study)


@st.cache_data(max_entries=256, show_spinner=False)
def _default_cursor(ident: tuple, _study: Any) -> tuple[int, int]:
    from components.viewer import reformat_index

    return (reformat_index(_study, "coronal", use_mask=False), reformat_index(_study, "sagittal", use_mask=False))


def view_window(view: Any):
    """The :class:`mosmed.windowing.Window` of a stored view (its preset when the numbers are the preset's)."""
    from mosmed.windowing import PRESETS, Window

    p = PRESETS.get(view.window_name or "")
    if p is not None and (p.level, p.width) == (view.level, view.width):
        return p
    return Window(float(view.level), float(view.width))


def start_view(study: Any, window=None):
    """The view a class opens a study with: start slice, the given window (lung by default), axial, crosshair."""
    from mosmed.classroom.model import View
    from mosmed.windowing import PRESETS

    w = window or PRESETS["lung"]
    row, col = default_cursor(study)
    return View(
        study_id=int(study.study_id),
        slice=start_slice(study),
        level=float(w.level),
        width=float(w.width),
        window_name=w.name,
        plane="axial",
        row=int(row),
        col=int(col),
    )


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def involvement_text(measured: Any, estimated: Any, calibrated: bool | None) -> str:
    """ "measured 12.3% (expert mask)" and/or "estimated 30.1% (calibrated estimate from HU)"."""
    from mosmed.involvement import estimate_label

    parts = []
    m, e = _num(measured), _num(estimated)
    if m is not None:
        parts.append(f"measured {m:.1f}% (expert mask)")
    if e is not None:
        parts.append(f"estimated {e:.1f}% ({estimate_label(calibrated)} from HU)")
    return ", ".join(parts) or "not measured"


def reveal_card(question: Any, *, study_id: int, answer: str | None = None, teacher: bool = False) -> None:
    """The reveal: the class, the measured or estimated involvement (calibrated or not), the paper's row."""
    from components import paper
    from mosmed import severity

    truth = str(question.truth)
    row = severity.severity_row(truth)
    with st.container(border=True, key="classroom-reveal"):
        st.markdown(f"### Question {int(question.number)}: {md_escape(truth)} · {md_escape(row.name)}")
        if answer is not None and not teacher:
            if answer == truth:
                st.success(f"You answered {answer}: correct.", icon=":material/check:")
            else:
                st.error(f"You answered {answer}; this study is {truth}.", icon=":material/close:")
        elif not teacher:
            st.info("You did not answer this question.", icon=":material/help:")
        inv = involvement_text(question.involvement_pct, question.estimated_pct, question.estimate_calibrated)
        st.markdown(
            f"**Study {int(study_id):04d}**, class **{truth}**. Lung involvement: {md_escape(inv)}. "
            f"Band of {truth}: {md_escape(row.involvement)}."
        )
        if question.has_mask:
            st.caption("The viewer now shows the expert lesion mask as an outline.")
        paper.severity_row_card(truth, title=f"The paper's row for {truth}")


def counts_frame(counts: dict, truth: str | None = None) -> pd.DataFrame:
    """Answer counts per class as a small table (the right answer marked once revealed)."""
    from mosmed import severity

    rows = [
        {"answer": c, "students": int(counts.get(c, 0)), "": ("✓ right answer" if truth == c else "")}
        for c in severity.CLASSES
    ]
    return pd.DataFrame(rows)


def leaderboard_table(board: pd.DataFrame, *, names_public: bool) -> None:
    """The class's leaderboard as a table (names as typed, or "Student N" when the class keeps them hidden)."""
    if board.empty:
        st.caption("No student yet.")
        return
    shown = board[["rank", "student", "correct", "answered"]].rename(
        columns={"rank": "#", "student": "student", "correct": "right", "answered": "answered"}
    )
    st.dataframe(shown, hide_index=True, width="stretch", height=min(38 + 35 * len(shown), 400))
    st.caption(
        "Names as each student typed them."
        if names_public
        else "Names are hidden: each student sees only their own row as \u201cYou\u201d."
    )


def class_link(code: str) -> str:
    """The link students open: this server's teaching page with the class code (never a secret)."""
    try:
        base = str(st.context.url or "")
    except Exception:  # noqa: BLE001
        base = ""
    base = base.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if not base:
        return f"/teaching?{CODE_PARAM}={code}"
    # st.context.url is the page's URL (…/teaching); keep its origin and path prefix (a baseUrlPath behind a proxy).
    prefix = base.rsplit("/", 1)[0] if base.endswith("/teaching") else base
    return f"{prefix}/teaching?{CODE_PARAM}={code}"


def url_code() -> str | None:
    """The join code in this page's URL (canonical form), or ``None`` (absent or not a code)."""
    from mosmed.classroom.codes import parse_code

    raw = st.query_params.get(CODE_PARAM)
    return parse_code(raw) if isinstance(raw, str) else None


def url_seat() -> str | None:
    """The seat token in this page's URL when it looks like one of ours, else ``None``."""
    from mosmed.classroom.codes import looks_like_secret

    raw = st.query_params.get(SEAT_PARAM)
    return raw if looks_like_secret(raw) else None
