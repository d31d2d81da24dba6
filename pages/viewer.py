"""Viewer: one study at a time, read in the browser (three linked planes, windows, overlays, measurements).

This page only arranges components: the link (components.viewer_url), the study picker (viewer_picker),
the study loader with its background build (study_loader), the window and overlay widgets
(viewer_controls), the viewer itself (viewer) and the facts panel (viewer_facts).
"""

from __future__ import annotations

import streamlit as st

from components import state
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)
from components import study_loader, viewer_controls, viewer_facts, viewer_picker, viewer_url  # noqa: E402
from components.review_panel import review_panel  # noqa: E402
from components.viewer import ct_viewer, prefetch, reported_view  # noqa: E402

st.title("Viewer")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed.errors import MosmedError  # noqa: E402

VIEWER_KEY = viewer_url.K + "ct"

summary = state.summary_df(ds)
if summary.empty:
    st.warning("This dataset's registry has no studies.")
    st.stop()
studies, notices = viewer_picker.choices(summary)
for n in notices:
    st.info(n)
for n in viewer_url.apply_link(studies.all_ids):
    st.warning(n, icon=":material/link_off:")  # notices never contain raw URL text (components.query.describe)
viewer_controls.init_state()
study_loader.start_builder(ds)


def _open_or_report(sid: int):
    """The opened study, or ``None`` after showing why it cannot be opened (the picker stays usable)."""
    try:
        return study_loader.open_for_viewer(ds, sid)
    except MosmedError as e:
        viewer_picker.picker(studies)
        st.error(md_escape(str(e)), icon=":material/broken_image:")
        reason = studies.by_id.loc[sid, "error"] if sid in studies.by_id.index else ""
        if reason and str(reason) not in str(e):
            st.caption(md_escape(f"Registry check: {reason}"))
        viewer_url.mark_synced({"study": str(sid)})
    except Exception as e:  # noqa: BLE001 - anything unexpected still names the study, never a traceback
        viewer_picker.picker(studies)
        st.error(md_escape(f"study {sid}: cannot be opened ({type(e).__name__}: {e})"), icon=":material/broken_image:")
    return None


@st.fragment
def study_view() -> None:
    """The study part of the page: picker, window and overlay widgets, the viewer and the facts.

    A fragment, so moving to another study (the picker, previous / next) or a report from the viewer reruns
    only this, not the app's frame.
    """
    sid, order = viewer_picker.current(studies)
    opened = _open_or_report(sid)
    if opened is None:
        return
    study = opened.study
    n_slices = int(study.volume.shape[0])
    for n in viewer_url.resolve_pending_slice(n_slices):
        st.warning(n, icon=":material/link_off:")
    if st.session_state.get(viewer_url.SLICE) is None:
        # Default: the slice with the largest lesion area, else the middle.
        areas = study.lesion_area_mm2
        best = int(areas.argmax()) if areas is not None and len(areas) == n_slices and float(areas.max()) > 0 else None
        st.session_state[viewer_url.SLICE] = best if best is not None else n_slices // 2
    st.session_state[viewer_url.SLICE] = int(min(max(int(st.session_state[viewer_url.SLICE]), 0), n_slices - 1))

    viewer_controls.follow_browser(*reported_view(VIEWER_KEY, study))
    row = st.columns([0.42, 2.1, 0.42, 3.9, 0.9, 0.9, 1.7], vertical_alignment="bottom")
    if viewer_picker.picker(studies, row[:3]) != sid:
        st.rerun(scope="fragment")  # the picker chose another study in this run: show it
    window, plane = viewer_controls.window_controls(row[3:6])
    style = viewer_controls.overlay_controls(
        has_mask=study.mask is not None, has_lung=study.lung is not None, where=row[6]
    )
    for w in study.warnings or []:
        st.caption(md_escape(f"Note: {w}"))
    if opened.quick:
        st.caption(
            "Segmenting the lungs and measuring this study (first opening); the lung outline and the "
            "figures below appear when it is done."
        )
    # While the study's cache entry builds, the viewer reruns this fragment now and then (poll_ms), which
    # then opens the cached study.
    event = ct_viewer(
        study,
        window=window,
        style=style,
        slice_index=int(st.session_state[viewer_url.SLICE]),
        key=VIEWER_KEY,
        height=540,
        dataset_root=str(ds.root),
        plane=plane,
        url_params={"study": str(study.study_id), "plane": plane},
        poll_ms=700 if opened.quick else None,
    )
    st.session_state[viewer_url.SLICE] = event.slice_index
    viewer_url.sync_url(int(study.study_id), event.slice_index, window, plane)
    if not opened.quick:
        # The studies "next" and "previous" lead to, encoded in the background while this one is read.
        prefetch(ds.open_study, study_loader.cached_neighbours(ds, order, sid), str(ds.root))
    # The case-review panel (grades, flags, notes; Alt-key shortcuts), inside this fragment so it follows the study
    # shown; the viewer's own keys act only while the viewer has focus, so typing in the panel never scrolls.
    review_panel(ds, study, candidates=order)
    row_of = studies.by_id.loc[sid] if sid in studies.by_id.index else None
    viewer_facts.facts_panel(viewer_facts.facts_of(study, row_of))


study_view()
