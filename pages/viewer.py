"""Viewer: one study at a time, scrolled in the browser, with windows, overlays, reformats and facts.

The axial stack goes to the browser once per (study, window) (components.viewer); scrolling never reruns this
script. The URL (``?study=&slice=&window=&plane=``) restores the view: every parameter is validated by
components.query and a bad one falls back with a notice.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from components import query, state
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)
from components.viewer import ct_viewer, reformat_index

st.title("Viewer")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed import severity  # noqa: E402
from mosmed.errors import MosmedError  # noqa: E402
from mosmed.render import OverlayStyle, render_png  # noqa: E402
from mosmed.windowing import PRESET_LABELS, PRESETS, Window, window_to_text  # noqa: E402

K = "viewer."  # session-state namespace of this page
STUDY, SLICE = state.VIEWER_STUDY_KEY, state.VIEWER_SLICE_KEY
PICK, PRESET, LEVEL, WIDTH = K + "pick", K + "preset", K + "level", K + "width"
SHOW_MASK, MODE, COLOR, OPACITY, SHOW_LUNG, PLANE = (K + s for s in ("show_mask", "mode", "color", "opacity",
                                                                       "show_lung", "plane"))
URL_SIG, PENDING_SLICE, PROBE = K + "_url_sig", K + "_pending_slice", K + "probe"
CUSTOM = "custom"


def _current_params() -> dict[str, str]:
    return {k: st.query_params.get(k) for k in st.query_params.keys()}


def _sig(params: dict[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


# ------------------------------------------------------------------------------------------- which studies

summary = state.summary_df(ds)
all_ids = [int(i) for i in summary["study_id"].tolist()]
# "pending" = readable but not cached yet (opening it computes and caches it); "error" = known broken.
ok_ids = [int(i) for i in summary.loc[summary["status"] != "error", "study_id"].tolist()]
filter_ids = state.current_filter_ids()
if filter_ids is not None:
    allowed = set(filter_ids)
    choices = [i for i in ok_ids if i in allowed]
    if not choices:
        st.info("The registry filter holds no readable study; showing all readable studies instead.")
        choices = ok_ids
else:
    choices = ok_ids
if not all_ids:
    st.warning("This dataset's registry has no studies.")
    st.stop()
by_id = summary.set_index("study_id")

# --------------------------------------------------------------------------------------- link -> session

notices: list[str] = []
params = _current_params()
if st.session_state.get(URL_SIG) != _sig(params):
    # The URL changed from outside (first load, a shared link, goto_viewer): it sets the view.
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
        name = win.name if win.name in PRESETS else CUSTOM
        st.session_state[PRESET] = name
        st.session_state[LEVEL], st.session_state[WIDTH] = float(win.level), float(win.width)
    plane, n = query.parse_plane(params.get("plane"))
    if n:
        notices.append(n)
    if plane is not None:
        st.session_state[PLANE] = plane
for n in notices:
    st.warning(n, icon=":material/link_off:")  # notices never contain raw URL text (components.query.describe)

# ------------------------------------------------------------------------------------------------ picker

current = st.session_state.get(STUDY)
if current not in all_ids:
    current = choices[0] if choices else all_ids[0]
    st.session_state[STUDY] = current
options = list(choices)
if current not in options:
    options = [current] + options  # a broken or filtered-out study opened by link stays selectable
if st.session_state.get(PICK) != current:
    st.session_state[PICK] = current


def _label(sid: int) -> str:
    row = by_id.loc[sid]
    mark = " (error)" if row["status"] == "error" else (" · mask" if bool(row["has_mask"]) else "")
    return f"study {sid:04d} · {row['category']}{mark}"


def _on_pick() -> None:
    st.session_state[STUDY] = int(st.session_state[PICK])
    st.session_state.pop(SLICE, None)
    st.session_state.pop(PROBE, None)


def _step(delta: int) -> None:
    cur = int(st.session_state.get(STUDY, options[0]))
    seq = options
    i = seq.index(cur) if cur in seq else 0
    new = seq[(i + delta) % len(seq)]
    st.session_state[STUDY] = st.session_state[PICK] = new
    st.session_state.pop(SLICE, None)
    st.session_state.pop(PROBE, None)


c_prev, c_pick, c_next, _ = st.columns([0.6, 3, 0.6, 6.6], vertical_alignment="bottom")
c_prev.button("", icon=":material/chevron_left:", key=K + "prev", help="Previous study in the list", on_click=_step, args=(-1,),
              disabled=len(options) < 2, use_container_width=True)
c_pick.selectbox(f"Study ({len(choices)} in {'the registry filter' if filter_ids is not None else 'the dataset'})",
                 options, key=PICK, format_func=_label, on_change=_on_pick)
c_next.button("", icon=":material/chevron_right:", key=K + "next", help="Next study in the list", on_click=_step, args=(1,),
              disabled=len(options) < 2, use_container_width=True)

# ------------------------------------------------------------------------------------------------ window

st.session_state.setdefault(PRESET, "lung")
st.session_state.setdefault(LEVEL, float(PRESETS["lung"].level))
st.session_state.setdefault(WIDTH, float(PRESETS["lung"].width))


def _on_preset() -> None:
    name = st.session_state[PRESET]
    if name in PRESETS:
        st.session_state[LEVEL] = float(PRESETS[name].level)
        st.session_state[WIDTH] = float(PRESETS[name].width)


def _on_level_width() -> None:
    lw = (st.session_state[LEVEL], st.session_state[WIDTH])
    st.session_state[PRESET] = next((n for n, p in PRESETS.items() if (p.level, p.width) == lw), CUSTOM)


st.session_state.setdefault(PLANE, "axial")


def view_controls() -> tuple[Window, OverlayStyle, str]:
    """Window, overlay and PNG-view widgets. They only change the view, so they live inside the viewer's
    fragment: a preset click reruns the fragment (viewer + probe + download), not the whole page."""
    c_win, c_lvl, c_wid = st.columns([4, 1.3, 1.3], vertical_alignment="bottom")
    c_win.segmented_control("Window", list(PRESETS) + [CUSTOM], key=PRESET, on_change=_on_preset,
                            format_func=lambda n: PRESET_LABELS.get(n, "Custom"), selection_mode="single")
    c_lvl.number_input("Level (HU)", min_value=-2000.0, max_value=5000.0, step=10.0, format="%.0f", key=LEVEL,
                       on_change=_on_level_width)
    c_wid.number_input("Width (HU)", min_value=1.0, max_value=10000.0, step=10.0, format="%.0f", key=WIDTH,
                       on_change=_on_level_width)
    if st.session_state.get(PRESET) is None:  # segmented control deselected: keep the level/width shown
        st.session_state[PRESET] = CUSTOM
    preset = st.session_state[PRESET]
    window = PRESETS[preset] if preset in PRESETS else Window(float(st.session_state[LEVEL]),
                                                              float(st.session_state[WIDTH]))

    # ----------------------------------------------------------------------------------------------- overlay

    o1, o2, o3, o4, o5, o6 = st.columns([1.1, 1.4, 0.7, 1.5, 1.1, 2.2], vertical_alignment="bottom")
    show_mask = o1.toggle("Lesions", value=True, key=SHOW_MASK, help="Expert lesion mask overlay")
    mode = o2.segmented_control("Draw", ["fill", "outline"], default="fill", key=MODE,
                                format_func=str.capitalize) or "fill"
    color = o3.color_picker("Colour", value="#ff3b30", key=COLOR)
    opacity = o4.slider("Opacity", 0.0, 1.0, 0.4, 0.05, key=OPACITY)
    show_lung = o5.toggle("Lungs", value=False, key=SHOW_LUNG, help="Outline of the segmented lungs")
    plane = o6.segmented_control("PNG view", list(query.PLANES), key=PLANE,
                                 format_func=str.capitalize) or "axial"
    style = OverlayStyle(show_mask=bool(show_mask), mode=mode, color=color, opacity=float(opacity),
                         show_lung=bool(show_lung))
    return window, style, plane


# --------------------------------------------------------------------------------------------- the study

# A full-size study opened for the first time: its cache entry (lung segmentation, statistics, arrays) takes
# seconds to build, most of it the segmentation, which the first image does not need. So the volume and mask
# are read straight from the .nii.gz and shown, while one background process builds the entry; when it is
# done the page reruns and continues from the cache (lung outline, statistics). Small studies build fast
# enough to take the ordinary path.
QUICK_MIN_VOXELS = 4 * 2**20


@st.cache_resource(show_spinner=False)
def _background_builder():
    # One worker process shared by every session (its own GIL: the server keeps serving while it builds).
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from mosmed import segmentation

    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    # Warm it now (process start and the scipy import take ~1.5 s), not on the first cold open.
    pool.submit(segmentation.segment_lungs, np.zeros((1, 1, 1), np.int16), (1.0, 1.0, 1.0))
    return pool


@st.cache_resource(max_entries=256, show_spinner=False)
def _build_future(root: str, cache_root: str, study_id: int, key: str, _row: dict, _budget: int):
    # Keyed by (dataset, cache, study, source key): one build per study however many sessions open it.
    from mosmed.cache import _worker_build

    return _background_builder().submit(_worker_build, root, cache_root, _budget, _row, True)


@st.cache_resource(max_entries=2, show_spinner=False)
def _quick_study(root: str, study_id: int, key: str, _row: dict):
    from types import SimpleNamespace
    from pathlib import Path

    from mosmed.dataset import Study
    from mosmed.volume import read_mask, read_volume

    vol = read_volume(Path(_row["study_path"]), study_id=study_id)
    warnings, mask = list(vol.warnings), None
    mask_path = _row.get("mask_path")
    if isinstance(mask_path, str) and mask_path:
        mask, more = read_mask(Path(mask_path), vol, study_id=study_id)
        warnings += more
    dz, dy, dx = (float(v) for v in vol.spacing)
    areas = None if mask is None else mask.reshape(mask.shape[0], -1).sum(axis=1, dtype=np.int64) * dy * dx
    return Study(study_id=study_id, category=str(_row.get("category", "")), volume=vol.data, mask=mask, lung=None,
                 spacing=(dz, dy, dx), slice_z_mm=np.asarray(vol.slice_z_mm, dtype=float),
                 stats=SimpleNamespace(lesion_area_mm2=areas), warnings=warnings,
                 source_axcodes=tuple(vol.source_axcodes), cache_key=f"{key}-quick", from_cache=False)


def _quick_open(ds, sid: int):
    """``(study, build future)`` for an uncached full-size study read from its .nii.gz, else ``None``."""
    from pathlib import Path

    from mosmed.volume import check_header

    cache = ds.cache
    if not getattr(cache, "writable", False):
        return None
    try:
        row = ds.registry.row(int(sid))
        if str(row.get("status", "ok")) != "ok" or cache.get_stats(row) is not None:
            return None  # built already, or a known error: the ordinary path opens or reports it
        key = cache.source_key(row)
        # Containment re-checked at open time (a file swapped for a link out after loading raises here, and
        # the ordinary path reports it); only the checked, resolved paths are opened below.
        study_path, mask_path = cache.source_paths(row)
        if int(np.prod(check_header(study_path, sid).shape[:3])) < QUICK_MIN_VOXELS:
            return None
        row = {**dict(row), "study_path": str(study_path), "mask_path": None if mask_path is None else str(mask_path)}
        fut = _build_future(str(ds.root), str(cache.cache_root), int(sid), key, _row=row, _budget=cache.budget)
        if fut.done():
            return None  # finished (or failed): the ordinary path opens it, or builds it and reports why not
        return _quick_study(str(ds.root), int(sid), key, _row=row), fut
    except Exception:  # noqa: BLE001 - anything odd: the ordinary path, which reports problems properly
        return None


sid = int(st.session_state[STUDY])
if getattr(ds.cache, "writable", False):
    _background_builder()  # started (and warmed) on the first visit of the viewer
quick = _quick_open(ds, sid)
build_future = quick[1] if quick is not None else None
try:
    study = quick[0] if quick is not None else state.load_study(ds, sid)
except MosmedError as e:
    st.error(md_escape(str(e)), icon=":material/broken_image:")
    reason = by_id.loc[sid, "error"] if sid in by_id.index else ""
    if reason and str(reason) not in str(e):
        st.caption(md_escape(f"Registry check: {reason}"))
    st.query_params.from_dict({"study": str(sid)})
    st.session_state[URL_SIG] = _sig(_current_params())
    st.stop()
except Exception as e:  # noqa: BLE001 - anything unexpected still names the study, never a traceback
    st.error(md_escape(f"study {sid}: cannot be opened ({type(e).__name__}: {e})"), icon=":material/broken_image:")
    st.stop()

n_slices = int(study.volume.shape[0])
if PENDING_SLICE in st.session_state:
    idx, n = query.parse_slice(st.session_state.pop(PENDING_SLICE), n_slices)
    if n:
        st.warning(n, icon=":material/link_off:")
    if idx is not None:
        st.session_state[SLICE] = idx
if st.session_state.get(SLICE) is None:
    # Default: the slice with the largest lesion area, else the middle.
    areas = getattr(study.stats, "lesion_area_mm2", None)
    if areas is not None and len(areas) == n_slices and float(np.nanmax(areas)) > 0:
        st.session_state[SLICE] = int(np.nanargmax(areas))
    else:
        st.session_state[SLICE] = n_slices // 2
st.session_state[SLICE] = int(min(max(int(st.session_state[SLICE]), 0), n_slices - 1))
for w in study.warnings or []:
    st.caption(md_escape(f"Note: {w}"))


def _sync_url(slice_index: int, window: Window, plane: str) -> None:
    want = {"study": str(sid), "slice": str(slice_index + 1), "window": window_to_text(window), "plane": plane}
    if _current_params() != want:
        st.query_params.from_dict(want)
    st.session_state[URL_SIG] = _sig(want)


@st.fragment
def viewer_fragment(study) -> None:
    """View controls, viewer, HU probe and download: the component's reports and the window / overlay widgets
    rerun only this fragment (the page above, the picker and the facts below do not depend on them)."""
    window, style, plane = view_controls()
    probe = st.session_state.get(PROBE)
    if probe is not None and probe[0] != study.study_id:
        probe = None
    rows_cols = (probe[2], probe[3]) if probe is not None else None
    # SLICE can be gone here: a slice report (fragment rerun) may land just after "next study" popped it,
    # before the full rerun that opens the new study; the middle slice is a harmless stand-in for that run.
    slice_now = st.session_state.get(SLICE)
    slice_now = int(study.volume.shape[0]) // 2 if slice_now is None else int(slice_now)
    event = ct_viewer(study, window=window, style=style, slice_index=slice_now, key=K + "ct",
                      height=620, dataset_root=str(ds.root), reformat_rows_cols=rows_cols,
                      url_params={"study": str(study.study_id), "window": window_to_text(window), "plane": plane})
    st.session_state[SLICE] = event.slice_index
    if event.probe is not None:
        st.session_state[PROBE] = (study.study_id, *event.probe)
        st.rerun(scope="fragment")  # re-centre the coronal / sagittal cuts on the clicked voxel
    _sync_url(event.slice_index, window, plane)
    k = event.slice_index
    p1, p2 = st.columns([3, 2], vertical_alignment="center")
    if probe is not None:
        z, r, c = probe[1:]
        hu = int(study.volume[z, r, c])  # one voxel from the memory map
        where = []
        if study.lung is not None and study.lung[z, r, c]:
            where.append("inside the lungs")
        if study.mask is not None and study.mask[z, r, c]:
            where.append("inside the lesion mask")
        p1.metric(f"HU at slice {z + 1}, row {r + 1}, column {c + 1}", f"{hu} HU",
                  help="Exact value from the volume (not the windowed image). Click the axial image to probe.")
        if where:
            p1.caption(", ".join(where))
    else:
        p1.caption("Click the axial image to read the exact HU value at that voxel; the coronal and sagittal "
                   "cuts then pass through it.")
    row = probe[2] if probe is not None else reformat_index(study, "coronal")
    col = probe[3] if probe is not None else reformat_index(study, "sagittal")
    index = {"axial": k, "coronal": row, "sagittal": col}[plane]

    def png() -> bytes:
        return render_png(study.volume, study.spacing, plane, index, window, mask=study.mask, lung=study.lung,
                          style=style, resample=True)

    p2.download_button(f"Download {plane} view (PNG)", data=png, mime="image/png", key=K + "download",
                       file_name=f"study_{study.study_id:04d}_{plane}_{index + 1}_{window_to_text(window)}.png",
                       on_click="ignore", icon=":material/download:")


viewer_fragment(study)


@st.fragment(run_every=0.5)
def _await_build(fut) -> None:
    """While the background build runs: say so; when it is done, rerun the page onto the cached study."""
    if fut.done():
        st.rerun()
    st.caption("Segmenting the lungs and measuring this study (first opening); the lung outline and the "
               "figures below appear when it is done.")


if build_future is not None:
    _await_build(build_future)

# ----------------------------------------------------------------------------------------------- facts


def _fmt(v: object, unit: str = "", digits: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(f) else f"{f:.{digits}f}{unit}"


stats = study.stats
z, h, w = (int(s) for s in study.volume.shape)
dz, dy, dx = (float(s) for s in study.spacing)
measured = getattr(stats, "involvement_pct", None)
estimate = getattr(stats, "estimated_involvement_pct", None)
category = str(study.category)
st.subheader(f"Study {sid:04d} · {category}")
f1, f2 = st.columns(2)
f1.metric("Grid (slices × rows × columns)", f"{z} × {h} × {w}")
f2.metric("Spacing (mm)", f"{dz:g} / {dy:.3g} / {dx:.3g}", help="slice / row / column")
f3, f4, f5 = st.columns(3)
f3.metric("Lung volume", _fmt(getattr(stats, "lung_ml", None), " mL", 0))
f4.metric("Lesion volume", _fmt(getattr(stats, "lesion_ml", None), " mL", 1) if study.mask is not None else "no mask")
f5.metric("Involvement", _fmt(measured, " %") if measured is not None else f"≈ {_fmt(estimate, ' %')}",
          help="Measured from the expert mask; '≈' marks the HU-based estimate when there is no mask.")
try:
    lo, hi = severity.band(category)
    band_text = "0 % (no pneumonia findings)" if category == "CT-0" else f"{lo:g}–{hi:g} %"
    value, kind = (measured, "measured") if measured is not None else (estimate, "estimated")
    fits = severity.in_band(category, value) if value is not None else None
    verdict = "–" if fits is None else ("falls in" if fits else "falls OUTSIDE")
    st.markdown(f"**{category} band:** {band_text}. The {kind} involvement ({_fmt(value, ' %')}) **{verdict}** "
                f"this band." + ("" if measured is None else f" HU-based estimate: {_fmt(estimate, ' %')}."))
    st.caption(severity.severity_row(category).ct_findings)
except KeyError:
    st.caption(md_escape(f"Class {category} has no severity band."))
