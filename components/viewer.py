"""The browser-side CT stack viewer (``st.components.v2``).

Why a custom component: a viewer that reruns the script per slice is an order of magnitude too slow. Here
the current study's windowed axial stack reaches the page once per (study, window) and the browser scrolls it
(wheel, keys, its own slider, cine) with no server round trip per slice.

Wire format
-----------
The component's ``data`` is ONE ``bytes`` payload (``st.components.v2`` forwards bytes untouched, the JS
receives a ``Uint8Array``): no base64 (+33 %) and no JSON parse of megabytes of image text. Layout::

    b"MSV1" | uint32 little-endian header length N | N bytes of UTF-8 JSON header | image blobs

The header lists every image as ``[offset, length]`` into the blob area:

- ``grey``: one JPEG per axial slice, windowed 8-bit grey (decoded in the browser with
  ``createImageBitmap``: the current slice first, the rest outward from it, so the first slice paints before
  the stack is decoded);
- ``lesion`` / ``lesion_outline`` / ``lung_outline``: small 2-colour PNGs (white on transparent), only for
  slices that have any; the browser tints them, so overlay colour, opacity, fill/outline and the lung outline
  change without a rerun and without re-encoding;
- ``coronal`` / ``sagittal``: server-rendered reformats (``mosmed.render.render_slice``, aspect-corrected for
  8 mm slices) on which the browser draws the current axial slice as a line, in step with scrolling;
- metadata: slice count, spacing, slice positions (mm), per-slice lesion area (mm^2), style, navigation.

Sent once, not per rerun
------------------------
Every rerun re-delivers the component's data, so the images go only when the browser does not hold this
``stack_key`` (study content + window) yet; otherwise the payload is the header alone (``"light": true``, a few
KB: navigation, style, metadata). Python remembers per session what it sent; a browser that lacks the stack
anyway (remounted after a page switch, a lost message) sets the ``need`` state value and the next run sends it
in full. After a study is shown, the other window presets are encoded in the background (``_Prefetch``), and
the study's memory-mapped pages are released from the server's resident set.

What goes back to Python
------------------------
``need`` (state value) asks for the full payload of a stack key (see above). ``slice`` (state value) is
reported only when scrolling has stopped for ``REPORT_DEBOUNCE_MS`` (every
``setStateValue`` reruns the script, or the enclosing ``st.fragment``), so the URL can follow the view without a
rerun per slice. ``probe`` (trigger value) is ``{"z", "row", "col"}`` of a clicked voxel, so Python can show
the exact HU from the memory map.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from mosmed.render import OverlayStyle, outline, render_slice
from mosmed.windowing import Window, apply_window, window_to_text

__all__ = [
    "COMPONENT_NAME",
    "JPEG_QUALITY",
    "REPORT_DEBOUNCE_MS",
    "ViewerEvent",
    "build_payload",
    "ct_viewer",
    "decode_payload",
    "encode_layers",
    "encode_stack",
    "reformat_index",
    "stack_key",
    "study_token",
]

COMPONENT_NAME = "mosmed_ct_viewer"
MAGIC = b"MSV1"
JPEG_QUALITY = 85
REPORT_DEBOUNCE_MS = 400
_ASSETS = Path(__file__).with_name("viewer_assets")
_ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


# Registered once at import (names are app-unique); mounting reuses it. The JS is an ES module whose default
# export is called on every render with the new data.
_COMPONENT = st.components.v2.component(
    COMPONENT_NAME,
    html="",
    css=_asset("viewer.css"),
    js=_asset("viewer.js"),
)


@dataclass(frozen=True)
class ViewerEvent:
    """What the browser reported back.

    Attributes
    ----------
    slice_index : int
        0-based axial slice the user is on (as last reported; lags scrolling by the debounce delay).
    probe : tuple of int or None
        ``(z, row, col)`` of a voxel the user clicked in this run, in display orientation; ``None`` otherwise.
    """

    slice_index: int
    probe: tuple[int, int, int] | None = None


# ------------------------------------------------------------------------------------------------ encoding


def study_token(study: Any) -> str:
    """A short id for one opened study's content (study id + cache key + shape)."""
    raw = f"{study.study_id}|{study.cache_key}|{tuple(study.volume.shape)}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


def _jpeg(gray: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # No subsampling question for greyscale; optimize=False keeps encoding fast (it only saves ~3 %).
    Image.fromarray(np.ascontiguousarray(gray), mode="L").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# 1-bit palette: index 0 transparent black, index 1 opaque white.
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_PLTE = _png_chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255]))
_PNG_TRNS = _png_chunk(b"tRNS", bytes([0]))
_PNG_IEND = _png_chunk(b"IEND", b"")


def _layer_png(mask2d: np.ndarray) -> bytes:
    """White where ``mask2d`` is set, transparent elsewhere: a 1-bit palette PNG (tiny, fast to encode).

    Written directly (bit-packed rows, filter 0, zlib level 1): ~10x faster than going through Pillow's PNG
    encoder, which matters because a study has up to three layers per slice (lesion, its outline, lungs).
    """
    m = np.asarray(mask2d) > 0
    if m.ndim != 2:
        raise ValueError(f"a layer must be 2D, got shape {m.shape}")
    h, w = m.shape
    rows = np.packbits(m, axis=1)  # MSB first, rows padded to whole bytes: PNG's 1-bit layout
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter type "None" on every row
    raw[:, 1:] = rows
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 3, 0, 0, 0))
    return b"".join((_PNG_SIG, ihdr, _PNG_PLTE, _PNG_TRNS,
                     _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)), _PNG_IEND))


def encode_stack(volume: np.ndarray, window: Window, quality: int = JPEG_QUALITY) -> list[bytes]:
    """Every axial slice windowed to 8-bit grey and JPEG-encoded (slice index order).

    Reads the volume slice by slice, so a memory map is never loaded whole.
    """
    if volume.ndim != 3 or volume.shape[0] < 1:
        raise ValueError(f"volume must be (Z, H, W) with Z >= 1, got shape {tuple(volume.shape)}")
    def one(k: int) -> bytes:
        return _jpeg(apply_window(np.asarray(volume[k]), window), quality)

    if volume.shape[0] < 8:
        return [one(k) for k in range(volume.shape[0])]
    # Pillow's JPEG encoder and numpy's take release the GIL: two threads halve a window change on 2 cores.
    with ThreadPoolExecutor(max_workers=_ENCODE_THREADS) as pool:
        return list(pool.map(one, range(volume.shape[0])))


def encode_layers(labels: np.ndarray | None, *, as_outline: bool) -> dict[int, bytes]:
    """PNG layer per slice that has any label (``{slice: png}``); outlines are 1-px inner borders."""
    if labels is None:
        return {}
    present = np.flatnonzero(np.asarray(labels).reshape(labels.shape[0], -1).any(axis=1))

    def one(k: int) -> tuple[int, bytes]:
        plane = np.asarray(labels[k]) > 0
        return k, _layer_png(outline(plane) if as_outline else plane)

    ks = [int(k) for k in present]
    if len(ks) < 8:
        return dict(one(k) for k in ks)
    # numpy's logical ops and zlib release the GIL: the threads overlap on 2 cores.
    with ThreadPoolExecutor(max_workers=_ENCODE_THREADS) as pool:
        return dict(pool.map(one, ks))


def reformat_index(study: Any, plane: str) -> int:
    """Default row (coronal) or column (sagittal) for the reformats: through the lesions when there are
    any, else through the right lung's widest part (the mid column would cut the spine, not the lungs)."""
    axis = 1 if plane == "coronal" else 2
    size = study.volume.shape[axis]
    for labels in (study.mask, study.lung):
        if labels is None:
            continue
        other = (0, 2) if axis == 1 else (0, 1)
        profile = np.asarray(labels, dtype=np.uint8).sum(axis=other, dtype=np.int64)
        if plane == "sagittal" and labels is study.lung:
            profile = profile[: size // 2]  # patient right = viewer's left half
        if profile.size and profile.max() > 0:
            return int(np.argmax(profile))
    return size // 2


@st.cache_data(max_entries=12, show_spinner=False)
def _cached_stack(_study: Any, dataset_root: str, study_id: int, cache_key: str, window_text: str,
                  quality: int) -> list[bytes]:
    # Keyed by (dataset root, study id, cache key, window, quality); _study itself is not hashed.
    got = _prefetched().get((dataset_root, study_id, cache_key, window_text, quality))
    if got is not None:
        return got
    return encode_stack(_study.volume, _window_from_text(window_text), quality)


class _Prefetch:
    """The other window presets of the study on screen, encoded in the background after it is shown.

    A preset click then costs a rerun and the transfer, not the encoding (like a desktop viewer's prefetch).
    Bounded LRU of encoded stacks (about 1 MB each), shared by the server's sessions, one worker thread (the
    JPEG encoder and numpy's take release the GIL, so serving continues meanwhile).
    """

    MAX_STACKS = 24

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stacks: OrderedDict[tuple, list[bytes]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="msv-prefetch")

    def get(self, key: tuple) -> list[bytes] | None:
        with self._lock:
            got = self._stacks.get(key)
            if got is not None:
                self._stacks.move_to_end(key)
            return got

    def _put(self, key: tuple, stack: list[bytes]) -> None:
        with self._lock:
            self._stacks[key] = stack
            while len(self._stacks) > self.MAX_STACKS:
                self._stacks.popitem(last=False)

    def schedule(self, study: Any, dataset_root: str, current: str, quality: int) -> None:
        from mosmed.windowing import PRESETS

        for name, win in PRESETS.items():
            text = window_to_text(win)
            key = (dataset_root, int(study.study_id), study.cache_key, text, quality)
            if text == current or self.get(key) is not None:
                continue
            self._pool.submit(self._encode, key, study, win, quality)
        # Then let go of the study's memory-mapped pages (one worker: this runs after the encodes above).
        self._pool.submit(_release_pages, study.volume, study.mask, study.lung)

    def _encode(self, key: tuple, study: Any, win: Window, quality: int) -> None:
        if self.get(key) is None:
            try:
                self._put(key, encode_stack(study.volume, win, quality))
            except Exception:  # noqa: BLE001 - a prefetch that fails is simply not there; the click encodes
                pass


@st.cache_resource(show_spinner=False)
def _prefetched() -> _Prefetch:
    return _Prefetch()


@st.cache_data(max_entries=12, show_spinner=False)
def _cached_layers(_study: Any, dataset_root: str, study_id: int,
                   cache_key: str) -> tuple[dict[int, bytes], dict[int, bytes], dict[int, bytes]]:
    # Independent of the window and of the overlay style (tinted in the browser): a window change skips it.
    return (
        encode_layers(_study.mask, as_outline=False),
        encode_layers(_study.mask, as_outline=True),
        encode_layers(_study.lung, as_outline=True),
    )


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_reformat(_study: Any, dataset_root: str, study_id: int, cache_key: str, window_text: str,
                     style: OverlayStyle, plane: str, index: int) -> tuple[bytes, int, int]:
    rgb = render_slice(_study.volume, _study.spacing, plane, index, _window_from_text(window_text),
                       mask=_study.mask, lung=_study.lung, style=style, resample=True)
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue(), int(rgb.shape[1]), int(rgb.shape[0])


def _window_from_text(text: str) -> Window:
    from mosmed.windowing import parse_window

    return parse_window(text)


def _window_label(window: Window) -> str:
    name = window.name
    if name:
        from mosmed.windowing import PRESET_LABELS

        name = PRESET_LABELS.get(name, name)
    return f"{name + ' ' if name else ''}W {window.width:g} / L {window.level:g}"


def build_payload(header: dict[str, Any], blobs: dict[str, Any]) -> bytes:
    """Pack a JSON header and named images into the component's wire format.

    ``blobs`` maps a header key to ``bytes`` (one image), ``list[bytes]`` or ``dict[int, bytes]``; the header
    gets ``[offset, length]`` (or a list / dict of them) under the same key.
    """
    parts: list[bytes] = []
    offset = 0

    def place(b: bytes) -> list[int]:
        nonlocal offset
        parts.append(b)
        ref = [offset, len(b)]
        offset += len(b)
        return ref

    header = dict(header)
    for name, value in blobs.items():
        if value is None:
            header[name] = None
        elif isinstance(value, (bytes, bytearray)):
            header[name] = place(bytes(value))
        elif isinstance(value, dict):
            header[name] = {str(int(k)): place(v) for k, v in value.items()}
        else:
            header[name] = [place(v) for v in value]
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(parts)


def decode_payload(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`build_payload` for tests and tools: ``(header, blob area)``."""
    if payload[:4] != MAGIC:
        raise ValueError("not a viewer payload (bad magic)")
    (n,) = struct.unpack("<I", payload[4:8])
    return json.loads(payload[8 : 8 + n].decode("utf-8")), payload[8 + n :]


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


def stack_key(study: Any, window: Window) -> str:
    """Identity of the decoded stack the browser holds: one study's content in one window."""
    return f"{study_token(study)}:{window_to_text(window)}"


def _reformat_cut(study: Any, reformat_rows_cols: tuple[int, int] | None) -> tuple[int, int]:
    _, h, w = (int(s) for s in study.volume.shape)
    if reformat_rows_cols is None:
        reformat_rows_cols = (reformat_index(study, "coronal"), reformat_index(study, "sagittal"))
    row, col = (int(min(max(v, 0), lim - 1)) for v, lim in zip(reformat_rows_cols, (h, w)))
    return row, col


def _reformat_key(window: Window, style: OverlayStyle, row: int, col: int) -> str:
    return f"{window_to_text(window)}|{row}|{col}|{hash(style)}"


def viewer_payload(study: Any, *, window: Window, style: OverlayStyle, dataset_root: str, nav_slice: int,
                   nav_seq: int, reformat_rows_cols: tuple[int, int] | None = None, height: int = 600,
                   link: dict[str, Any] | None = None, label: str | None = None,
                   reformats: bool = True, light: bool = False, reformat_held: str | None = None,
                   url_params: dict[str, str] | None = None) -> bytes:
    """Everything the browser needs for one study and window, packed (see module docstring).

    ``light=True`` leaves the images out (header only: style, navigation, metadata): for a rerun where the
    browser already holds this stack key. The reformats are left out too when ``reformat_held`` equals their key.
    """
    z, h, w = (int(s) for s in study.volume.shape)
    window_text = window_to_text(window)
    if light:
        grey: list[bytes] | None = None
        lesion = lesion_ol = lung_ol = None
    else:
        grey = _cached_stack(study, dataset_root, int(study.study_id), study.cache_key, window_text, JPEG_QUALITY)
        lesion, lesion_ol, lung_ol = _cached_layers(study, dataset_root, int(study.study_id), study.cache_key)
    row, col = _reformat_cut(study, reformat_rows_cols)
    rf_key = _reformat_key(window, style, row, col)
    cor = sag = None
    cor_w = cor_h = sag_w = sag_h = 0
    if reformats and not (light and reformat_held == rf_key):
        cor, cor_w, cor_h = _cached_reformat(study, dataset_root, int(study.study_id), study.cache_key,
                                             window_text, style, "coronal", row)
        sag, sag_w, sag_h = _cached_reformat(study, dataset_root, int(study.study_id), study.cache_key,
                                             window_text, style, "sagittal", col)
    dz, dy, dx = (float(s) for s in study.spacing)
    header = {
        "version": 1,
        "stack_key": stack_key(study, window),
        "light": bool(light),
        "study_id": int(study.study_id),
        "study_label": label or f"study {study.study_id} · {study.category}",
        "window_label": _window_label(window),
        "n": z, "width": w, "height": h,
        "spacing": [dz, dy, dx],
        "aspect": (dy / dx) if dx > 0 else 1.0,
        "z_mm": _finite_list(study.slice_z_mm, z) or [k * dz for k in range(z)],
        "lesion_mm2": _finite_list(study.lesion_area_mm2, z) if study.mask is not None else None,
        "has_mask": study.mask is not None,
        "img_type": "image/jpeg",
        "style": _style_dict(style),
        "nav": {"slice": int(min(max(nav_slice, 0), z - 1)), "seq": int(nav_seq)},
        "reformat": {"row": row, "col": col, "coronal_size": [cor_w, cor_h], "sagittal_size": [sag_w, sag_h],
                     "key": rf_key},
        "max_height": int(height),
        "debounce_ms": REPORT_DEBOUNCE_MS,
        "link": link,
        "side": bool(reformats),
        # When given, the browser writes these and ``slice`` (1-based) into the address bar itself: a fragment
        # rerun's st.query_params change reaches the address bar only with a later message.
        "url_params": None if url_params is None else {str(k): str(v) for k, v in url_params.items()},
    }
    return build_payload(header, {"grey": grey, "lesion": lesion, "lesion_outline": lesion_ol,
                                  "lung_outline": lung_ol, "coronal": cor, "sagittal": sag})


def _nav_seq(key: str, study_id: int, slice_index: int, reported: int | None) -> int:
    """Bump the navigation sequence only for a real jump asked by Python (not an echo of what the browser
    reported), so a rerun never pulls the view back while the user keeps scrolling."""
    state_key = f"{key}.__nav"
    last = st.session_state.get(state_key)
    if last is not None and last[0] == study_id and (slice_index == last[1] or slice_index == reported):
        if reported is not None and reported != last[1]:
            # Remember where the browser is now: comparing later runs with a stale position would take an
            # echo of the user's own scrolling for a jump and pull the view back.
            st.session_state[state_key] = (study_id, int(reported), int(last[2]))
        return int(last[2])
    seq = (int(last[2]) + 1) if last is not None else 1
    st.session_state[state_key] = (study_id, int(slice_index), seq)
    return seq


def _state_value(key: str, name: str) -> Any:
    value = st.session_state.get(key)
    try:
        return value.get(name) if value is not None else None
    except AttributeError:
        return None


def _reported_slice(key: str, study_id: int) -> int | None:
    got = _state_value(key, "slice")
    if isinstance(got, dict) and got.get("study") == study_id and isinstance(got.get("index"), int):
        return got["index"]
    return None


def ct_viewer(study: Any, *, window: Window, style: OverlayStyle, slice_index: int, key: str,
              height: int = 600, dataset_root: str | Path = "", reformat_rows_cols: tuple[int, int] | None = None,
              link: dict[str, Any] | None = None, label: str | None = None,
              reformats: bool = True, url_params: dict[str, str] | None = None) -> ViewerEvent:
    """Mount the browser-side stack viewer for one study.

    Parameters
    ----------
    study : mosmed.dataset.Study
        Opened study (display orientation; memmaps are only read).
    window : Window
        CT window; a change re-encodes the stack (cached per study and window).
    style : OverlayStyle
        Overlay options; applied in the browser without re-sending the stack.
    slice_index : int
        0-based slice to show when this is a new study or a jump Python asks for.
    key : str
        Unique widget key (also namespaces the session entries this function keeps).
    height : int
        Maximum height of the axial image in CSS pixels.
    dataset_root : str or Path
        Part of the encoding cache key (two datasets may share study ids).
    reformat_rows_cols : (int, int), optional
        Row for the coronal and column for the sagittal view (default: through the lesions / right lung).
    link : dict, optional
        ``{"group": str, "mode": "relative" | "mm"}``: viewers in one group follow each other's slice.
    label : str, optional
        Caption drawn on the image (default ``"study N · CT-k"``).
    reformats : bool
        Show the coronal and sagittal views beside the axial one (off for side-by-side comparison).

    Returns
    -------
    ViewerEvent
        The last reported slice (0-based) and, in the run a voxel was clicked, its ``(z, row, col)``.
    """
    z = int(study.volume.shape[0])
    sid = int(study.study_id)
    slice_index = int(min(max(int(slice_index), 0), z - 1))
    reported = _reported_slice(key, sid)
    seq = _nav_seq(key, sid, slice_index, reported)
    # Send the images only when the browser does not hold this stack yet: every rerun (a debounced slice
    # report, a probe click, an overlay toggle) would otherwise push the whole stack (MBs) again. What was
    # sent is remembered per session; a browser that lacks it (remounted component, dropped message) asks
    # for it through the "need" state value, and the next run sends it in full.
    skey = stack_key(study, window)
    rf_key = _reformat_key(window, style, *_reformat_cut(study, reformat_rows_cols)) if reformats else None
    sent_state, need_state = f"{key}.__sent", f"{key}.__need"
    sent = st.session_state.get(sent_state)
    need = _state_value(key, "need")
    need_token = need.get("token") if isinstance(need, dict) and need.get("key") == skey else None
    full = (not isinstance(sent, tuple) or sent[0] != skey
            or (need_token is not None and need_token != st.session_state.get(need_state)))
    if need_token is not None:
        st.session_state[need_state] = need_token
    held_rf = sent[1] if isinstance(sent, tuple) and not full else None
    payload = viewer_payload(study, window=window, style=style, dataset_root=str(dataset_root),
                             nav_slice=slice_index, nav_seq=seq, reformat_rows_cols=reformat_rows_cols,
                             height=height, link=link, label=label, reformats=reformats, light=not full,
                             reformat_held=held_rf, url_params=url_params)
    st.session_state[sent_state] = (skey, rf_key)
    if full:
        _prefetched().schedule(study, str(dataset_root), window_to_text(window), JPEG_QUALITY)
    result = _COMPONENT(key=key, data=payload, on_slice_change=_noop, on_probe_change=_noop,
                        on_need_change=_noop)
    reported = _reported_slice(key, sid)
    probe = _parse_probe(getattr(result, "probe", None), study.volume.shape)
    return ViewerEvent(slice_index=reported if reported is not None else slice_index, probe=probe)


def _release_pages(*arrays: Any) -> None:
    """Drop this process's mapping of memory-mapped cache pages once the stack is encoded.

    The pages stay in the OS page cache (shared, reclaimable), so a later read (a probe, a reformat, another
    window) re-maps them at page-cache speed; without this every study a session has opened stays in the
    server's resident set until the study leaves ``st.cache_resource``.
    """
    for arr in arrays:
        mm = getattr(arr, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise"):
            continue
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError, AttributeError):
            pass


def _noop() -> None:
    """Callbacks must exist for the state / trigger keys to be registered; the page reads the result."""


def _parse_probe(raw: Any, shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    # The browser is untrusted too: accept only three in-range integers.
    if not isinstance(raw, dict):
        return None
    try:
        vals = tuple(int(raw[k]) for k in ("z", "row", "col"))
    except (KeyError, TypeError, ValueError):
        return None
    if all(0 <= v < s for v, s in zip(vals, shape[:3])):
        return vals  # type: ignore[return-value]
    return None
