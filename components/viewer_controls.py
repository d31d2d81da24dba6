"""The viewer page's own widgets: window (preset, level, width), overlays, and which plane is the large view.

They only change the view, so the page calls them inside the viewer's fragment: a preset click reruns the
fragment (widgets and viewer), not the whole page. The same settings can be changed in the browser (keys,
right-drag, the viewer's toolbar); the browser's report is put into these widgets' state before they are
drawn (:func:`follow_browser`), so both stay in step.
"""

from __future__ import annotations

import streamlit as st

from components import query
from components.viewer_url import CUSTOM, LEVEL, PLANE, PRESET, WIDTH, K, set_window_state
from mosmed.render import OverlayStyle
from mosmed.windowing import PRESET_LABELS, PRESETS, Window, window_to_text

__all__ = [
    "SHOW_MASK",
    "MODE",
    "COLOR",
    "OPACITY",
    "SHOW_LUNG",
    "follow_browser",
    "overlay_controls",
    "window_controls",
    "init_state",
]

SHOW_MASK, MODE, COLOR, OPACITY, SHOW_LUNG = (K + s for s in ("show_mask", "mode", "color", "opacity", "show_lung"))
_APPLIED = K + "_browser_applied"


def init_state() -> None:
    st.session_state.setdefault(PRESET, "lung")
    st.session_state.setdefault(LEVEL, float(PRESETS["lung"].level))
    st.session_state.setdefault(WIDTH, float(PRESETS["lung"].width))
    st.session_state.setdefault(PLANE, "axial")


def follow_browser(window: Window | None, plane: str | None) -> None:
    """Take over a window / large view the user set in the browser (once per new report)."""
    rep = (None if window is None else window_to_text(window), plane)
    if rep == st.session_state.get(_APPLIED):
        return
    st.session_state[_APPLIED] = rep
    if window is not None:
        set_window_state(window)
    if plane is not None:
        st.session_state[PLANE] = plane


def _on_preset() -> None:
    name = st.session_state[PRESET]
    if name in PRESETS:
        st.session_state[LEVEL] = float(PRESETS[name].level)
        st.session_state[WIDTH] = float(PRESETS[name].width)


def _on_level_width() -> None:
    lw = (st.session_state[LEVEL], st.session_state[WIDTH])
    st.session_state[PRESET] = next((n for n, p in PRESETS.items() if (p.level, p.width) == lw), CUSTOM)


def window_controls(cols: list | None = None) -> tuple[Window, str]:
    """Window preset, level and width (in three given columns, else a row of their own).

    Returns ``(window, plane)``; the large view's plane is chosen in the viewer's toolbar (or the URL) and kept
    in session state.
    """
    c_win, c_lvl, c_wid = cols if cols is not None else st.columns([4, 1.1, 1.1], vertical_alignment="bottom")
    c_win.segmented_control(
        "Window",
        list(PRESETS) + [CUSTOM],
        key=PRESET,
        on_change=_on_preset,
        format_func=lambda n: _SHORT.get(n, "Custom"),
        selection_mode="single",
        help="Also keys 1-4 and right-drag on the image",
    )
    c_lvl.number_input(
        "Level (HU)",
        min_value=-2000.0,
        max_value=5000.0,
        step=10.0,
        format="%.0f",
        key=LEVEL,
        on_change=_on_level_width,
    )
    c_wid.number_input(
        "Width (HU)", min_value=1.0, max_value=10000.0, step=10.0, format="%.0f", key=WIDTH, on_change=_on_level_width
    )
    if st.session_state.get(PRESET) is None:  # segmented control deselected: keep the level/width shown
        st.session_state[PRESET] = CUSTOM
    preset = st.session_state[PRESET]
    window = (
        PRESETS[preset] if preset in PRESETS else Window(float(st.session_state[LEVEL]), float(st.session_state[WIDTH]))
    )
    plane = st.session_state.get(PLANE)
    return window, plane if plane in query.PLANES else "axial"


_SHORT = {**PRESET_LABELS, "mediastinum": "Mediast.", "soft": "Soft"}


def overlay_controls(has_mask: bool = True, has_lung: bool = True, where=None) -> OverlayStyle:
    """Lesion overlay (on/off, fill or outline, colour, opacity) and lung outline, in a popover."""
    box = (where or st).popover("Overlays", icon=":material/layers:", use_container_width=True)
    show_mask = box.toggle(
        "Lesions", value=True, key=SHOW_MASK, help="Expert lesion mask overlay", disabled=not has_mask
    )
    mode = (
        box.segmented_control("Draw", ["fill", "outline"], default="fill", key=MODE, format_func=str.capitalize)
        or "fill"
    )
    color = box.color_picker("Colour", value="#ff3b30", key=COLOR)
    opacity = box.slider("Opacity", 0.0, 1.0, 0.4, 0.05, key=OPACITY)
    show_lung = box.toggle(
        "Lungs",
        value=False,
        key=SHOW_LUNG,
        disabled=not has_lung,
        help="Outline of the segmented lungs" if has_lung else "The lung outline appears once the study is cached",
    )
    return OverlayStyle(
        show_mask=bool(show_mask), mode=mode, color=color, opacity=float(opacity), show_lung=bool(show_lung)
    )
