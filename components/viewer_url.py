"""The viewer page's link: the URL sets the view when it changes from outside, and follows the view after.

``?study=&slice=&window=&plane=`` (see components/query.py for the accepted forms). Every parameter is
validated there; a bad one falls back with a notice that never echoes the raw text. The browser keeps
``slice`` and ``window`` in the address bar itself while the user scrolls (components/viewer.py); this module
writes the canonical link after each run, so a copied link restores what is on screen.
"""

from __future__ import annotations

import streamlit as st

from components import query, state
from mosmed.windowing import PRESETS, Window, window_to_text

__all__ = [
    "CUSTOM",
    "K",
    "LEVEL",
    "PENDING_SLICE",
    "PLANE",
    "PRESET",
    "SLICE",
    "STUDY",
    "URL_SIG",
    "WIDTH",
    "apply_link",
    "current_params",
    "resolve_pending_slice",
    "sync_url",
    "mark_synced",
]

K = "viewer."  # session-state namespace of the viewer page
STUDY, SLICE = state.VIEWER_STUDY_KEY, state.VIEWER_SLICE_KEY
PRESET, LEVEL, WIDTH, PLANE = K + "preset", K + "level", K + "width", K + "plane"
URL_SIG, PENDING_SLICE = K + "_url_sig", K + "_pending_slice"
CUSTOM = "custom"


def current_params() -> dict[str, str]:
    return {k: st.query_params.get(k) for k in st.query_params.keys()}


def _sig(params: dict[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def set_window_state(win: Window) -> None:
    """Put a window into the page's window widgets' state (call before they are created)."""
    st.session_state[PRESET] = win.name if win.name in PRESETS else CUSTOM
    st.session_state[LEVEL], st.session_state[WIDTH] = float(win.level), float(win.width)


def apply_link(all_ids: list[int]) -> list[str]:
    """When the URL changed from outside (first load, a shared link, goto_viewer), let it set the view.

    Returns the notices to show (plain sentences, safe for ``st.warning``).
    """
    notices: list[str] = []
    params = current_params()
    if st.session_state.get(URL_SIG) == _sig(params):
        return notices
    if (n := query.unknown_keys_notice(params)) is not None:
        notices.append(n)
    sid, n = query.parse_study(params.get("study"), all_ids)  # a broken study may be opened to see why
    if n:
        notices.append(n)
    if sid is not None:
        came_from_goto = st.session_state.get(STUDY) == sid and st.session_state.get(SLICE) is not None
        st.session_state[STUDY] = sid
        if not came_from_goto:  # goto_viewer already put the 0-based slice in the session
            st.session_state.pop(SLICE, None)
            st.session_state[PENDING_SLICE] = params.get("slice")
    elif params.get("slice") is not None:
        notices.append("The slice in the link was ignored because the link names no usable study.")
    win, n = query.parse_window(params.get("window"))
    if n:
        notices.append(n)
    if win is not None:
        set_window_state(win)
    plane, n = query.parse_plane(params.get("plane"))
    if n:
        notices.append(n)
    if plane is not None:
        st.session_state[PLANE] = plane
    return notices


def resolve_pending_slice(n_slices: int) -> list[str]:
    """Turn a slice from the link into the 0-based session slice, once the study's slice count is known."""
    notices = []
    if PENDING_SLICE in st.session_state:
        idx, n = query.parse_slice(st.session_state.pop(PENDING_SLICE), n_slices)
        if n:
            notices.append(n)
        if idx is not None:
            st.session_state[SLICE] = idx
    return notices


def sync_url(study_id: int, slice_index: int, window: Window, plane: str) -> None:
    """Write the canonical link of what is shown."""
    want = {"study": str(study_id), "slice": str(slice_index + 1), "window": window_to_text(window), "plane": plane}
    if current_params() != want:
        st.query_params.from_dict(want)
    st.session_state[URL_SIG] = _sig(want)


def mark_synced(params: dict[str, str]) -> None:
    """Set the link to ``params`` and remember it as ours (a broken study keeps only ``study``)."""
    st.query_params.from_dict(params)
    st.session_state[URL_SIG] = _sig(current_params())
