"""The browser-side CT viewer (``st.components.v2``): one study's HU data in the browser, everything else there.

Why a custom component, and why our own rather than NiiVue: a viewer that reruns the script per slice is an
order of magnitude too slow, and the measured alternative, NiiVue 0.6 (WebGL2), runs on SwiftShader in the
GPU-less Chromium of these machines and CI: 46 ms per axial slice step, 176 ms per step in its multiplanar
layout and about 2 s per window change on a 512 x 512 x 40 study (docs/viewer.md has the figures and
the method). A canvas 2D renderer with a 65536-entry lookup table does the same steps in a few milliseconds
on the CPU, and needs nothing that ``pip install`` does not bring.

Data flow
---------
The study's int16 volume and its labels are encoded once per study by :mod:`mosmed.wire` (one stream per
slice, cropped losslessly) and kept in a small process-wide store (:class:`_EncodedStore`, bounded in bytes),
so a second session or a return to the study costs no encoding; the studies next to the one on screen are
encoded in the background (:func:`prefetch`). The component's ``data`` is ONE ``bytes`` payload,
``b"MSV2" | u32 header length | JSON header | blob``, and the blob normally stays empty: the study's data are
served as a file of the session (:func:`_publish`, Streamlit's media endpoint) that the browser fetches, the
slice on screen first by an HTTP range request, so Streamlit's message stays a few KB (measured: megabytes
inside the message cost the front end up to a second). Without a runtime the data go inline, the slices
around the one on screen first (``"partial": true``) and the rest when the browser asks. Every rerun
re-delivers ``data``, so the data are offered only when the browser does not hold this study yet (``light``
headers otherwise: navigation, window, style). A browser that lacks them anyway (remounted after a page
switch, a lost message, a fetch that failed) sets the ``need`` state value and the next run offers them again.

What goes back to Python
------------------------
``view`` (state value): ``{token, slice, level, width, name}``, reported only once the user has paused for
``REPORT_DEBOUNCE_MS`` (each report reruns the enclosing fragment), so the URL and the page's window widgets
follow the view without a rerun per slice. ``measures`` (state value): the study's measurements, kept per
study for the session and sent back when the study is shown again. Both are untrusted and validated here.

Navigation and window from Python (a URL, a widget) carry a sequence number that changes only for a real
jump asked by Python, never for an echo of what the browser reported, so a rerun never pulls the view back
while the user keeps scrolling or dragging.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import streamlit as st

from mosmed import wire
from mosmed.render import PLANES, OverlayStyle
from mosmed.windowing import LEVEL_RANGE, PRESETS, WIDTH_RANGE, Window, window_to_text

__all__ = [
    "BINDINGS",
    "COMPONENT_NAME",
    "LAYOUTS",
    "REPORT_DEBOUNCE_MS",
    "ViewerEvent",
    "binding_rows",
    "ct_viewer",
    "encoded_study",
    "prefetch",
    "reformat_index",
    "reported_view",
    "study_token",
    "viewer_payload",
]

COMPONENT_NAME = "mosmed_ct_viewer"
REPORT_DEBOUNCE_MS = 400
#: A new study's first message holds the slice on screen and this many on each side (inline fallback only).
PART_HALF = 2
#: Seconds a prefetch waits before encoding (the browser is fetching the study just shown meanwhile).
PREFETCH_DELAY_S = 0.6
LAYOUTS: tuple[str, ...] = ("1", "1+2")
MAX_MEASURES = 200
_ASSETS = Path(__file__).with_name("viewer_assets")
_PROFILE = bool(os.environ.get("MSV_PROFILE"))  # timing lines on stderr (profiling only)


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _load_bindings() -> Mapping[str, Any]:
    doc = json.loads(_asset("bindings.json"))
    return MappingProxyType({k: v for k, v in doc.items() if not k.startswith("_")})


#: The viewer's input bindings (components/viewer_assets/bindings.json): keys and mouse gestures -> actions.
BINDINGS: Mapping[str, Any] = _load_bindings()

# Registered once at import (names are app-unique); mounting reuses it. The JS is an ES module whose default
# export is called on every render with the new data.
_COMPONENT = st.components.v2.component(COMPONENT_NAME, html="", css=_asset("viewer.css"), js=_asset("viewer.js"))


def binding_rows() -> list[tuple[str, str]]:
    """``(input, what it does)`` rows of the bindings table, mouse first: the Keys panel and the README."""
    names = BINDINGS.get("key_names", {})
    rows = []
    for m in BINDINGS["mouse"]:
        head, _, rest = m["label"].partition(":")
        rows.append((head.strip(), rest.strip()))
    for k in BINDINGS["keys"]:
        rows.append((" / ".join(names.get(x, x) for x in k["keys"]), k["label"]))
    return rows


@dataclass(frozen=True)
class ViewerEvent:
    """What the browser last reported.

    Attributes
    ----------
    slice_index : int
        0-based axial slice the user is on (lags scrolling by the debounce delay).
    window : Window or None
        The window the user set in the browser (keys, drag, toolbar), or ``None`` before any report.
    plane : str or None
        The plane of the large view the user chose in the browser, or ``None`` before any report.
    measures : tuple of dict
        The study's measurements (``kind``, ``plane``, ``index``, ``p0``, ``p1``), validated.
    cursor : (int, int) or None
        The crosshair's (row, column) as last reported, only when the viewer was mounted with
        ``report_cursor=True`` (a class's presenter); ``None`` otherwise or before any report.
    """

    slice_index: int
    window: Window | None = None
    plane: str | None = None
    measures: tuple[dict, ...] = field(default_factory=tuple)
    cursor: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------- encoding


def study_token(study: Any, *, with_mask: bool = True, with_lung: bool = True) -> str:
    """A short opaque id of one study's data as sent (study id, cache key, shape, which labels).

    It never shows the id or the class (the quiz sends it to the browser before the answer).
    """
    has_mask = with_mask and study.mask is not None
    has_lung = with_lung and study.lung is not None
    raw = f"{study.study_id}|{study.cache_key}|{tuple(study.volume.shape)}|{has_mask}|{has_lung}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


class _EncodedStore:
    """Encoded studies shared by the server's sessions: bounded in bytes, least recently used out.

    One encode per study however many sessions ask at once (later askers wait for the first one's future).
    """

    MAX_BYTES = 64 * 2**20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, wire.EncodedStudy] = OrderedDict()
        self._busy: dict[tuple, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="msv-prefetch")

    def get(self, key: tuple, make: Callable[[], wire.EncodedStudy]) -> wire.EncodedStudy:
        with self._lock:
            got = self._items.get(key)
            if got is not None:
                self._items.move_to_end(key)
                return got
            fut = self._busy.get(key)
            mine = fut is None
            if mine:
                fut = self._busy[key] = Future()
        if not mine:
            return fut.result()
        try:
            enc = make()
        except BaseException as e:
            with self._lock:
                self._busy.pop(key, None)
            fut.set_exception(e)
            raise
        with self._lock:
            self._items[key] = enc
            self._busy.pop(key, None)
            total = sum(v.nbytes for v in self._items.values())
            while total > self.MAX_BYTES and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                total -= old.nbytes
        fut.set_result(enc)
        return enc

    def has(self, key: tuple) -> bool:
        with self._lock:
            return key in self._items or key in self._busy

    def submit(self, fn: Callable[[], None]) -> None:
        self._pool.submit(fn)


@st.cache_resource(show_spinner=False)
def _store() -> _EncodedStore:
    return _EncodedStore()


def _store_key(study: Any, dataset_root: str, with_mask: bool, with_lung: bool) -> tuple:
    return (
        str(dataset_root),
        int(study.study_id),
        str(study.cache_key),
        tuple(int(s) for s in study.volume.shape),
        bool(with_mask and study.mask is not None),
        bool(with_lung and study.lung is not None),
    )


def encoded_study(
    study: Any,
    dataset_root: str = "",
    *,
    with_mask: bool = True,
    with_lung: bool = True,
    compact: bool = False,
    threads: int = 2,
) -> wire.EncodedStudy:
    """The study's volume and labels encoded for the browser (from the shared store, else encoded now).

    ``compact`` (background prefetch) spends more time for fewer bytes; someone waiting gets the fast form.
    """
    key = _store_key(study, dataset_root, with_mask, with_lung)

    def make() -> wire.EncodedStudy:
        enc = wire.encode_study(
            study.volume,
            study.mask if with_mask else None,
            study.lung if with_lung else None,
            compact=compact,
            threads=threads,
        )
        # The crosshair's default cut, once per study (it reads the whole label volumes); never through the
        # lesions when the mask is withheld (the quiz): the cut would point at them.
        enc.geometry["cursor"] = [
            reformat_index(study, "coronal", use_mask=with_mask),
            reformat_index(study, "sagittal", use_mask=with_mask),
        ]
        _release_pages(study.volume, study.mask, study.lung)
        return enc

    return _store().get(key, make)


def prefetch(open_study: Callable[[int], Any], study_ids: list[int], dataset_root: str) -> None:
    """Encode these (cached) studies in the background, so opening one next costs only the transfer.

    ``open_study`` opens a study by id (a cheap memory map when its cache entry exists); it runs in the
    store's single worker thread, after any earlier prefetch.
    """
    store = _store()

    def job(sid: int) -> None:
        try:
            _background_priority()
            study = open_study(int(sid))
            if study is None or store.has(_store_key(study, dataset_root, True, True)):
                return
            # Give the browser a moment to fetch the study just shown before taking a core for the next one.
            time.sleep(PREFETCH_DELAY_S)
            encoded_study(study, dataset_root, threads=1)
        except Exception:  # noqa: BLE001 - a prefetch that fails is simply not there; the open reports it
            pass

    for sid in study_ids:
        store.submit(lambda s=sid: job(s))


def _background_priority() -> None:
    """Lower this (prefetch) thread's CPU priority, so serving the page and its files comes first (Linux
    threads have their own nice value; elsewhere this does nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError, ValueError):
        pass


def _release_pages(*arrays: Any) -> None:
    """Drop this process's mapping of memory-mapped cache pages once a study is encoded.

    The pages stay in the OS page cache (shared, reclaimable), so a later read re-maps them at page-cache
    speed; without this every study a session has opened stays in the server's resident set.
    """
    for arr in arrays:
        mm = getattr(arr, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise"):
            continue
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError, AttributeError):
            pass


def reformat_index(study: Any, plane: str, *, use_mask: bool = True) -> int:
    """Default row (coronal) or column (sagittal) of the crosshair: through the lesions when there are any
    (and ``use_mask``), else through the right lung's widest part (the mid column would cut the spine)."""
    axis = 1 if plane == "coronal" else 2
    size = study.volume.shape[axis]
    for labels in ((study.mask if use_mask else None), study.lung):
        if labels is None:
            continue
        other = (0, 2) if axis == 1 else (0, 1)
        profile = np.asarray(labels, dtype=np.uint8).sum(axis=other, dtype=np.int64)
        if plane == "sagittal" and labels is study.lung:
            profile = profile[: size // 2]  # patient right = viewer's left half
        if profile.size and profile.max() > 0:
            return int(np.argmax(profile))
    return size // 2


# --------------------------------------------------------------------------------------------- header


def _finite_list(values: Any, n: int) -> list[float] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size != n:
        return None
    return [round(float(v), 3) if np.isfinite(v) else 0.0 for v in arr]


def _style_dict(style: OverlayStyle) -> dict[str, Any]:
    return {
        "show_mask": bool(style.show_mask),
        "mode": "outline" if style.mode == "outline" else "fill",
        "color": str(style.color),
        "opacity": float(min(max(style.opacity, 0.0), 1.0)),
        "show_lung": bool(style.show_lung),
        "lung_color": str(style.lung_color),
    }


def _lesion_areas(study: Any) -> Any:
    """Per-slice lesion area (mm^2): from the statistics when built, else from the mask, else None."""
    return None if study.mask is None else study.lesion_area_mm2


def viewer_payload(
    study: Any,
    *,
    window: Window,
    style: OverlayStyle,
    dataset_root: str = "",
    nav_slice: int = 0,
    nav_seq: int = 1,
    window_seq: int = 1,
    light: bool = False,
    height: int = 600,
    link: dict[str, Any] | None = None,
    label: str | None = None,
    layout: str = "1+2",
    plane: str = "axial",
    url_params: dict[str, str] | None = None,
    anonymous: bool = False,
    with_mask: bool = True,
    with_lung: bool = True,
    measures: list[dict] | None = None,
    cursor: tuple[int, int] | None = None,
    export_name: str | None = None,
    plane_seq: int = 1,
    part: tuple[int, int] | None = None,
    data_url: str | None = None,
    data_seq: int = 0,
    poll_ms: int | None = None,
    cursor_seq: int = 0,
    report_cursor: bool = False,
    report_ms: int | None = None,
) -> bytes:
    """Everything the browser needs for one study, packed (see the module docstring).

    ``light=True`` leaves the data out (header only) for a rerun where the browser holds this study already;
    ``part=(lo, hi)`` sends only those slices (``"partial": true``): the browser paints them and asks for the rest.
    ``anonymous=True`` (the quiz) sends neither the id nor anything derived from the lesion mask.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if plane not in PLANES:
        raise ValueError(f"plane {plane!r} is not one of {', '.join(PLANES)}")
    with_mask = with_mask and not anonymous
    z, h, w = (int(s) for s in study.volume.shape)
    enc = encoded_study(study, dataset_root, with_mask=with_mask, with_lung=with_lung)
    geo = {k: v for k, v in enc.geometry.items() if k != "cursor"}
    blob = enc.blob
    if light:
        for k in ("slices", "labels", "crop", "fill"):
            geo.pop(k, None)
    elif data_url is not None:
        blob = None  # the browser fetches the whole study from data_url (see ct_viewer)
    elif part is not None:
        geo["slices"], geo["labels"], blob = wire.subset(enc.geometry, enc.blob, part[0], part[1])
    dz, dy, dx = (float(s) for s in study.spacing)
    token = study_token(study, with_mask=with_mask, with_lung=with_lung)
    if cursor is None:
        cursor = tuple(enc.geometry["cursor"])
    name = window.name if window.name in PRESETS else None
    header = {
        **geo,
        "version": 2,
        "token": token,
        "light": bool(light),
        "partial": part is not None and not light and data_url is None,
        "data_url": None if light else data_url,
        "data_bytes": enc.nbytes,
        "data_seq": int(data_seq),
        "poll_ms": None if poll_ms is None else int(max(200, poll_ms)),
        "anonymous": bool(anonymous),
        "study_id": None if anonymous else int(study.study_id),
        "study_label": label or (f"study {study.study_id} · {study.category}" if not anonymous else "study"),
        "spacing": [dz, dy, dx],
        "z_mm": _finite_list(study.slice_z_mm, z) or [k * dz for k in range(z)],
        "lesion_mm2": None if (anonymous or not with_mask) else _finite_list(_lesion_areas(study), z),
        "style": _style_dict(style),
        "window": {"level": float(window.level), "width": float(window.width), "name": name, "seq": int(window_seq)},
        "presets": {k: {"level": float(p.level), "width": float(p.width)} for k, p in PRESETS.items()},
        "nav": {"slice": int(min(max(nav_slice, 0), z - 1)), "seq": int(nav_seq)},
        "cursor": [int(min(max(cursor[0], 0), h - 1)), int(min(max(cursor[1], 0), w - 1))],
        "cursor_seq": int(cursor_seq),
        "report_cursor": bool(report_cursor),
        "layout": layout,
        "plane": plane,
        "plane_seq": int(plane_seq),
        "max_height": int(height),
        "debounce_ms": REPORT_DEBOUNCE_MS if report_ms is None else int(min(max(report_ms, 50), 2000)),
        "link": link,
        # When given, the browser writes these, ``slice`` (1-based) and ``window`` into the address bar itself:
        # a fragment rerun's st.query_params change reaches the address bar only with a later message.
        "url_params": None if url_params is None else {str(k): str(v) for k, v in url_params.items()},
        "bindings": dict(BINDINGS),
        "measures": list(measures or []),
        "report_measures": True,
        "export_name": export_name or ("view.png" if anonymous else f"study_{int(study.study_id):04d}.png"),
    }
    return wire.pack(header, None if light else blob)


def _publish(blob: bytes, key: str) -> str | None:
    """Serve the study's data as a file of this session (Streamlit's media endpoint, as ``st.image`` does),
    so the browser fetches it over HTTP instead of receiving megabytes inside a websocket message.

    Measured on the benchmark set (load average 6 on 2 CPUs): a 9-12 MB study inside the component's message
    costs 0.5-1.4 s from click to the browser holding it, most of it the front end handling one huge
    message; fetched, the bytes arrive in tens of milliseconds, the slice on screen first (an HTTP range
    request), while Streamlit's message stays a few KB. ``None`` when there is no runtime (bare scripts):
    then the data go inline.
    """
    try:
        from streamlit import runtime

        if not runtime.exists():
            return None
        # "Downloadable" files outlive one more script run after they are no longer used, so a rerun between
        # this header and the browser's fetch does not delete the file under it.
        return runtime.get_instance().media_file_mgr.add(
            blob, "application/octet-stream", f"msv.{key}", file_name="study.msv", is_for_static_download=True
        )
    except Exception:  # noqa: BLE001 - any trouble: the data go inline, as before
        return None


# --------------------------------------------------------------------------------------------- reports


def _state_value(key: str, name: str) -> Any:
    value = st.session_state.get(key)
    try:
        return value.get(name) if value is not None else None
    except AttributeError:
        return None


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _parse_view(raw: Any, token: str, n_slices: int) -> tuple[int | None, Window | None, str | None]:
    """The browser's ``view`` report for this token: ``(slice, window, large-view plane)``; anything malformed
    is ignored."""
    if not isinstance(raw, dict) or raw.get("token") != token:
        return None, None, None
    k = raw.get("slice")
    k = k if isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n_slices else None
    level, width = _finite(raw.get("level")), _finite(raw.get("width"))
    win = None
    if (
        level is not None
        and width is not None
        and LEVEL_RANGE[0] <= level <= LEVEL_RANGE[1]
        and WIDTH_RANGE[0] <= width <= WIDTH_RANGE[1]
    ):
        name = raw.get("name")
        p = PRESETS.get(name) if isinstance(name, str) else None
        if p is not None and (p.level, p.width) == (level, width):
            win = p
        else:
            win = Window(float(round(level)), float(round(width)))
    plane = raw.get("plane") if raw.get("plane") in PLANES else None
    return k, win, plane


def _parse_cursor(raw: Any, token: str, shape: tuple[int, int, int]) -> tuple[int, int] | None:
    """The crosshair ``(row, column)`` of the browser's ``view`` report for this token (``report_cursor``
    viewers only), or ``None`` when absent or malformed."""
    if not isinstance(raw, dict) or raw.get("token") != token:
        return None
    r, c = raw.get("row"), raw.get("col")
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (r, c))
    if not ok or not (0 <= r < shape[1] and 0 <= c < shape[2]):
        return None
    return int(r), int(c)


def _parse_measures(raw: Any, token: str, shape: tuple[int, int, int]) -> list[dict] | None:
    """Validated measurements from the browser (``None`` when the report is not for this token)."""
    if not isinstance(raw, dict) or raw.get("token") != token or not isinstance(raw.get("items"), list):
        return None
    z, h, w = shape
    counts = {"axial": z, "coronal": h, "sagittal": w}
    dims = {"axial": (w, h), "coronal": (w, z), "sagittal": (h, z)}
    out = []
    for it in raw["items"][:MAX_MEASURES]:
        if not isinstance(it, dict) or it.get("kind") not in ("line", "ellipse", "rect"):
            continue
        plane, idx = it.get("plane"), it.get("index")
        if plane not in counts or not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < counts[plane]:
            continue
        pts = []
        for p in (it.get("p0"), it.get("p1")):
            if not isinstance(p, (list, tuple)) or len(p) != 2:
                break
            x, y = _finite(p[0]), _finite(p[1])
            if x is None or y is None or not (-1 <= x <= dims[plane][0] + 1 and -1 <= y <= dims[plane][1] + 1):
                break
            pts.append([round(x, 3), round(y, 3)])
        if len(pts) == 2:
            out.append({"kind": it["kind"], "plane": plane, "index": idx, "p0": pts[0], "p1": pts[1]})
    return out


def _seq(state_key: str, ident: Any, value: Any, reported: Any) -> int:
    """A sequence number that changes only when Python asks for a new ``value`` (not an echo of ``reported``)."""
    last = st.session_state.get(state_key)
    if last is not None and last[0] == ident and (value == last[1] or value == reported):
        if reported is not None and reported != last[1]:
            # Remember where the browser is now: comparing later runs with a stale value would take an echo of
            # the user's own scrolling for a jump and pull the view back.
            st.session_state[state_key] = (ident, reported, last[2])
        return int(last[2])
    seq = (int(last[2]) + 1) if last is not None else 1
    st.session_state[state_key] = (ident, value, seq)
    return seq


def reported_view(key: str, study: Any, **flags: bool) -> tuple[Window | None, str | None]:
    """The window and large-view plane the browser last reported for this viewer and study (``None`` when
    none), for pages that show them in their own widgets: call it BEFORE creating them."""
    tok = study_token(study, **flags)
    _, win, plane = _parse_view(_state_value(key, "view"), tok, int(study.volume.shape[0]))
    return win, plane


# --------------------------------------------------------------------------------------------- mount


def ct_viewer(
    study: Any,
    *,
    window: Window,
    style: OverlayStyle,
    slice_index: int,
    key: str,
    height: int = 600,
    dataset_root: str | Path = "",
    link: dict[str, Any] | None = None,
    label: str | None = None,
    layout: str = "1+2",
    plane: str = "axial",
    url_params: dict[str, str] | None = None,
    anonymous: bool = False,
    with_mask: bool = True,
    with_lung: bool = True,
    cursor: tuple[int, int] | None = None,
    poll_ms: int | None = None,
    report_cursor: bool = False,
    report_ms: int | None = None,
) -> ViewerEvent:
    """Mount the viewer for one study.

    Parameters
    ----------
    study : mosmed.dataset.Study
        Opened study (display orientation; memory maps are only read). ``lung`` may be ``None`` (quick open
        before the study is cached): then there is no lung outline.
    window : Window
        CT window to show; applied in the browser (no data re-sent) when Python changes it.
    style : OverlayStyle
        Overlay options; applied in the browser without re-sending the data.
    slice_index : int
        0-based axial slice to show for a new study or a jump Python asks for.
    key : str
        Unique widget key (also namespaces the session entries this function keeps).
    height : int
        Height of the image area in CSS pixels.
    dataset_root : str or Path
        Part of the encoding store's key (two datasets may share study ids).
    link : dict, optional
        ``{"group": str, "mode": "mm" | "relative"}``: viewers in one group follow each other's slice (same
        displacement in mm, or same relative height) and window.
    label : str, optional
        Caption drawn on the image (default ``"study N · CT-k"``).
    layout : {"1", "1+2"}
        One large view, or one large plus two small ones (the user can switch).
    plane : {"axial", "coronal", "sagittal"}
        The plane of the large view.
    url_params : dict, optional
        Query parameters the browser keeps in the address bar along with ``slice`` and ``window``.
    anonymous : bool
        Quiz mode: no study id, no lesion mask or lesion figures reach the browser.
    with_mask, with_lung : bool
        Send the lesion / lung labels (both only when the study has them).
    cursor : (int, int), optional
        (row, column) of the crosshair (default: through the lesions, else the right lung): the initial one
        for a new study, and a jump when it changes from one run to the next (a class following its presenter).
    poll_ms : int, optional
        While set, the browser reruns the enclosing fragment every ``poll_ms`` (its ``poll`` state value):
        the page uses it while a study's cache entry builds in the background, to move onto it when done.
    report_cursor : bool
        The browser reports the crosshair's row and column too (``ViewerEvent.cursor``): a class's presenter.
    report_ms : int, optional
        Pause (ms) before the browser reports its view (default :data:`REPORT_DEBOUNCE_MS`); a presenter
        reports sooner so the class follows within a second.

    Returns
    -------
    ViewerEvent
    """
    _t0 = time.perf_counter()
    z = int(study.volume.shape[0])
    with_mask = with_mask and not anonymous
    token = study_token(study, with_mask=with_mask, with_lung=with_lung)
    slice_index = int(min(max(int(slice_index), 0), z - 1))
    rep_slice, rep_window, rep_plane = _parse_view(_state_value(key, "view"), token, z)
    nav_seq = _seq(f"{key}.__nav", token, slice_index, rep_slice)
    win_seq = _seq(
        f"{key}.__win", token, window_to_text(window), window_to_text(rep_window) if rep_window is not None else None
    )
    plane_seq = _seq(f"{key}.__plane", "plane", (layout, plane), None if rep_plane is None else (layout, rep_plane))
    shape = tuple(int(s) for s in study.volume.shape)
    cursor_seq = 0
    if cursor is not None:
        cursor = (int(min(max(cursor[0], 0), shape[1] - 1)), int(min(max(cursor[1], 0), shape[2] - 1)))
        cursor_seq = _seq(f"{key}.__cur", token, cursor, _parse_cursor(_state_value(key, "view"), token, shape))
    # Measurements: the browser's report for this study, kept per study for the session.
    store_key = f"{key}.__measures"
    kept = dict(st.session_state.get(store_key) or {})
    got = _parse_measures(_state_value(key, "measures"), token, tuple(int(s) for s in study.volume.shape))
    if got is not None:
        kept[token] = got
        st.session_state[store_key] = kept
    measures = kept.get(token, [])
    # What to send: a new study goes in two steps, the slices around the one on screen first (a small message
    # that paints at once), then, when the browser asks for the rest ("need"), the whole study; a rerun where
    # the browser holds it already sends the header alone.
    sent_state, need_state = f"{key}.__sent", f"{key}.__need"
    need = _state_value(key, "need")
    need_token = need.get("token") if isinstance(need, dict) and need.get("key") == token else None
    new_need = need_token is not None and need_token != st.session_state.get(need_state)
    if need_token is not None:
        st.session_state[need_state] = need_token
    if st.session_state.get(sent_state) != token:
        mode = "part" if z > 2 * PART_HALF + 1 else "full"
    else:
        mode = "full" if new_need else "light"
    part = (slice_index - PART_HALF, slice_index + PART_HALF) if mode == "part" else None
    data_url, data_seq = None, int(st.session_state.get(f"{key}.__dseq", 0))
    if mode != "light":
        data_url = _publish(encoded_study(study, str(dataset_root), with_mask=with_mask, with_lung=with_lung).blob, key)
        if data_url is not None:
            data_seq += 1
            st.session_state[f"{key}.__dseq"] = data_seq
    payload = viewer_payload(
        study,
        window=window,
        style=style,
        dataset_root=str(dataset_root),
        nav_slice=slice_index,
        nav_seq=nav_seq,
        window_seq=win_seq,
        light=mode == "light",
        part=part,
        data_url=data_url,
        data_seq=data_seq,
        poll_ms=poll_ms,
        height=height,
        link=link,
        label=label,
        layout=layout,
        plane=plane,
        url_params=url_params,
        anonymous=anonymous,
        with_mask=with_mask,
        with_lung=with_lung,
        measures=measures,
        cursor=cursor,
        plane_seq=plane_seq,
        cursor_seq=cursor_seq,
        report_cursor=report_cursor,
        report_ms=report_ms,
    )
    st.session_state[sent_state] = token
    if _PROFILE:
        print(
            f"msv: {mode} payload {len(payload)} B built in {1000 * (time.perf_counter() - _t0):.0f} ms",
            file=sys.stderr,
            flush=True,
        )
    _COMPONENT(
        key=key,
        data=payload,
        on_view_change=_noop,
        on_need_change=_noop,
        on_measures_change=_noop,
        on_poll_change=_noop,
    )
    rep_slice, rep_window, rep_plane = _parse_view(_state_value(key, "view"), token, z)
    rep_cursor = _parse_cursor(_state_value(key, "view"), token, shape) if report_cursor else None
    return ViewerEvent(
        slice_index=rep_slice if rep_slice is not None else slice_index,
        window=rep_window,
        plane=rep_plane,
        measures=tuple(measures),
        cursor=rep_cursor,
    )


def _noop() -> None:
    """Callbacks must exist for the state keys to be registered; the page reads the result."""
