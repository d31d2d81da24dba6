"""Two studies side by side: the same viewer twice, linked in the browser by position in mm and by window.

Both are :func:`components.viewer.ct_viewer` instances in one link group. Scrolling either moves the other at
once, in the browser (no rerun): by default by the same displacement in millimetres from where both started
(two patients' table positions differ by tens of centimetres, so equal absolute positions would compare
unrelated anatomy), or to the same relative height in the stack. A window set in either (keys 1-4, right
drag, toolbar) applies to both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from components.viewer import ViewerEvent, ct_viewer
from mosmed.render import OverlayStyle
from mosmed.windowing import Window

__all__ = ["LINK_MODES", "CompareEvent", "compare_view", "linked_index"]

LINK_MODES: tuple[str, ...] = ("mm", "relative")


@dataclass(frozen=True)
class CompareEvent:
    """What the two viewers last reported."""

    a: ViewerEvent
    b: ViewerEvent


def linked_index(
    k: int,
    n_from: int,
    n_to: int,
    mode: str = "relative",
    z_from=None,
    z_to=None,
    anchor: tuple[int, int] | None = None,
) -> int:
    """The slice of the other study that matches slice ``k`` (the rule the browser applies).

    Parameters
    ----------
    k : int
        0-based slice in the study being scrolled.
    n_from, n_to : int
        Slice counts of both studies (>= 1).
    mode : {"relative", "mm"}
        Same fraction of the stack, or nearest slice position in mm (needs ``z_from`` and ``z_to``).
    anchor : (int, int), optional
        With ``"mm"``: slices of both studies that correspond; the other study then moves by the same
        displacement in mm. Without it, equal absolute positions.
    """
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {mode!r} is not one of {', '.join(LINK_MODES)}")
    if n_from < 1 or n_to < 1:
        raise ValueError(f"slice counts must be >= 1, got {n_from} and {n_to}")
    k = min(max(int(k), 0), n_from - 1)
    if mode == "mm" and z_from is not None and z_to is not None:
        target = float(z_from[k])
        if anchor is not None:
            target = float(z_to[anchor[1]]) + (target - float(z_from[anchor[0]]))
        return int(min(range(n_to), key=lambda i: abs(float(z_to[i]) - target)))
    frac = k / (n_from - 1) if n_from > 1 else 0.0
    return int(round(frac * (n_to - 1)))


def compare_view(
    study_a: Any,
    study_b: Any,
    *,
    window: Window,
    style: OverlayStyle,
    key: str,
    link_mode: str = "mm",
    slice_a: int | None = None,
    labels: tuple[str, str] | None = None,
    dataset_root: str = "",
    height: int = 480,
) -> CompareEvent:
    """Show two studies side by side with linked slice position and one shared window.

    Parameters
    ----------
    study_a, study_b : mosmed.dataset.Study
        The studies (may be the same study twice).
    window : Window
        Shared starting window.
    style : OverlayStyle
        Shared overlay style.
    key : str
        Widget key prefix; also the browser-side link group.
    link_mode : {"mm", "relative"}
        How a slice of one study maps to the other (see the module docstring).
    slice_a : int, optional
        Starting slice of study A (default: the middle); study B starts at the same relative height, and
        that pair is the anchor of the link in mm.
    labels : (str, str), optional
        Captions on the images.
    """
    if link_mode not in LINK_MODES:
        raise ValueError(f"link mode {link_mode!r} is not one of {', '.join(LINK_MODES)}")
    na, nb = int(study_a.volume.shape[0]), int(study_b.volume.shape[0])
    ka = na // 2 if slice_a is None else min(max(int(slice_a), 0), na - 1)
    kb = linked_index(ka, na, nb, "relative")
    link = {"group": f"compare:{key}", "mode": link_mode}
    la, lb = labels if labels is not None else (None, None)
    col_a, col_b = st.columns(2)
    with col_a:
        ev_a = ct_viewer(
            study_a,
            window=window,
            style=style,
            slice_index=ka,
            key=f"{key}.a",
            height=height,
            dataset_root=dataset_root,
            link=link,
            label=la,
            layout="1",
        )
    with col_b:
        ev_b = ct_viewer(
            study_b,
            window=window,
            style=style,
            slice_index=kb,
            key=f"{key}.b",
            height=height,
            dataset_root=dataset_root,
            link=link,
            label=lb,
            layout="1",
        )
    return CompareEvent(ev_a, ev_b)
