"""The shared sidebar (dataset chooser, cache state and build button) and the first-start preparation.

app.py calls :func:`first_start` before anything else reads the dataset, then :func:`render` inside
``st.sidebar``. Paths and errors are shown with ``st.text`` / plain text elements, never as HTML.
"""

from __future__ import annotations

import logging
import os
import time

import streamlit as st

from components import state
from components.markup import md_escape

__all__ = ["first_start", "render", "build_cache_with_progress", "format_bytes"]

_LOG = logging.getLogger("mosmed.app")

#: Widget keys of the sidebar (tests drive them by key).
ROOT_INPUT_KEY = "app.w.root_input"
OPEN_KEY = "app.w.open_root"
DEFAULT_KEY = "app.w.default_root"
BUILD_KEY = "app.w.build_cache"
#: Session key: last problem with a typed root (shown until the next attempt).
ROOT_ERROR_KEY = "app.root_error"
#: Session key: the report of the last cache build of this session (shown once under the button).
BUILD_REPORT_KEY = "app.build_report"


def format_bytes(n: float | int | None) -> str:
    """Human-readable size ("1.4 GB")."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _workers() -> int:
    # Two cores on the reference machine: one process per core, never more than two so a shared server
    # keeps a core for the users who are scrolling.
    return max(1, min(2, os.cpu_count() or 1))


class _Progress:
    """A ``progress(done, total, label)`` callback drawing into an ``st.progress`` bar, throttled."""

    def __init__(self, bar, prefix: str) -> None:
        self.bar, self.prefix, self.last = bar, prefix, 0.0

    def __call__(self, done: int, total: int, label: str) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:  # a websocket message per study is wasteful for 1110 rows
            return
        self.last = now
        frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
        self.bar.progress(frac, text=f"{self.prefix}: {done}/{total} · {label}"[:200])


def build_cache_with_progress(ds, where=None) -> object | None:
    """Build or refresh the cache of ``ds`` with a progress bar; returns the BuildReport (None on failure)."""
    where = where if where is not None else st
    bar = where.progress(0.0, text="Building the cache…")
    try:
        report = ds.build_cache(workers=_workers(), progress=_Progress(bar, "Building the cache"))
    except Exception as e:  # noqa: BLE001 - shown, never a traceback
        _LOG.exception("cache build failed")
        bar.empty()
        where.error(md_escape(f"Building the cache of {ds.root} failed: {e}"))
        return None
    bar.progress(
        1.0,
        text=f"Cache built: {report.n_built} computed, {report.n_cached} already cached, "
        f"{report.n_errors} with errors ({report.seconds:.1f} s)",
    )
    state.clear_data_caches()
    return report


def first_start() -> None:
    """On a fresh clone: generate the demo dataset and its cache with visible progress.

    Only the demo is prepared automatically; a dataset chosen by ``MOSMED_DATA`` or typed in is opened as it is
    and its cache is built from the sidebar button (a real dataset can take many minutes).
    """
    try:
        root, is_demo = state.dataset_choice()
    except Exception as e:  # noqa: BLE001
        st.error(md_escape(f"Cannot decide which dataset to open: {e}"))
        return
    if not is_demo:
        return
    from mosmed.registry import REGISTRY_CSV, REGISTRY_XLSX

    demo_exists = (root / REGISTRY_XLSX).is_file() or (root / REGISTRY_CSV).is_file()
    if demo_exists:
        ds = state.get_dataset(show_error=False)
        if ds is None:
            return  # the sidebar and the page show why
        try:
            if ds.status().complete or not ds.cache.writable:
                return
        except Exception:  # noqa: BLE001
            return
    with st.status("First start: preparing the demo dataset…", expanded=True) as box:
        if not demo_exists:
            st.write("Generating the synthetic demo studies (seeded, a few seconds each; only once).")
            bar = st.progress(0.0, text="Generating the demo…")
            try:
                from mosmed.demo import ensure_demo

                ensure_demo(progress=_Progress(bar, "Generating the demo"))
            except Exception as e:  # noqa: BLE001
                _LOG.exception("demo generation failed")
                box.update(label="The demo dataset could not be generated", state="error")
                st.error(md_escape(f"The demo dataset could not be generated in {root}: {e}"))
                return
            bar.progress(1.0, text="Demo generated")
        ds = state.get_dataset()
        if ds is None:
            box.update(label="The demo dataset could not be opened", state="error")
            return
        st.write("Summarising every study into the cache (lungs, lesions, histograms, thumbnails).")
        report = build_cache_with_progress(ds)
        if report is None:
            box.update(label="The demo cache could not be built", state="error")
            return
        box.update(label=f"Demo ready: {report.n_total} studies", state="complete", expanded=False)


def _open_typed_root() -> None:
    """Callback of the Open button: validate the typed path before it becomes the session's dataset."""
    text = str(st.session_state.get(ROOT_INPUT_KEY, "") or "")
    path, problem = state.check_root(text)
    if problem:
        st.session_state[ROOT_ERROR_KEY] = problem
        return
    st.session_state.pop(ROOT_ERROR_KEY, None)
    if st.session_state.get(state.ROOT_KEY) != str(path):
        st.session_state[state.ROOT_KEY] = str(path)
        _forget_dataset_views()


def _use_default_root() -> None:
    st.session_state.pop(ROOT_ERROR_KEY, None)
    if st.session_state.pop(state.ROOT_KEY, None) is not None:
        _forget_dataset_views()


def _forget_dataset_views() -> None:
    # Ids of one dataset mean nothing in another: drop the registry filter, the viewer's study and the quiz.
    for key in list(st.session_state.keys()):
        if str(key).startswith(("registry.", "viewer.", "teaching.")):
            del st.session_state[key]
    st.session_state.pop(BUILD_REPORT_KEY, None)


def render() -> None:
    """Draw the dataset chooser and the cache panel (call inside ``with st.sidebar``)."""
    st.subheader("Dataset")
    root, is_demo = state.dataset_choice()
    st.markdown(f"**{md_escape(state.dataset_label())}**")
    # Plain text, not st.code: st.code pulls the syntax highlighter (a 1.5 MB script) into every page, ~300 ms of
    # each first paint here; st.text shows the path as written, never as markup, just the same.
    st.text(str(root))
    if is_demo:
        st.caption("Synthetic studies generated on this machine: not patient data.")

    with st.expander("Open another dataset", expanded=bool(st.session_state.get(ROOT_ERROR_KEY))):
        st.text_input(
            "Dataset folder",
            key=ROOT_INPUT_KEY,
            placeholder="/data/MosMedData/COVID19_1110",
            help="The folder holding dataset_registry.xlsx, studies/CT-0..CT-4 and masks/. "
            "Applies to this browser session only.",
        )
        if state.served_beyond_localhost():
            # Issue 13: served beyond this machine, whoever runs the server decides which folders open.
            from mosmed.config import data_roots

            roots = data_roots()
            st.caption(
                "This server opens only its own dataset, the demo"
                + (" and folders inside: " + md_escape(", ".join(str(r) for r in roots)) if roots else "")
                + " ("
                + md_escape("MOSMED_DATA_ROOTS")
                + ")."
            )
        c1, c2 = st.columns(2)
        c1.button("Open", key=OPEN_KEY, on_click=_open_typed_root, width="stretch")
        c2.button(
            "Default",
            key=DEFAULT_KEY,
            on_click=_use_default_root,
            width="stretch",
            help="Back to MOSMED_DATA, or the demo when it is not set.",
        )
        if st.session_state.get(ROOT_ERROR_KEY):
            st.error(md_escape(st.session_state[ROOT_ERROR_KEY]), icon=":material/folder_off:")

    ds = state.get_dataset(show_error=False)
    if ds is None:
        st.error(md_escape(state.dataset_problem() or f"Cannot open dataset {root}"), icon=":material/folder_off:")
        return
    _cache_panel(ds)
    # --- issue 12: who is reviewing (components/reader.py) ---
    from components import reader

    st.subheader("Reader")
    reader.reader_box("app.w.reader")


def _cache_panel(ds) -> None:
    st.subheader("Cache")
    try:
        s = state.cache_status(ds)  # keyed by the freshness token: ~1 s at 100 000 rows, not on every run
    except Exception as e:  # noqa: BLE001
        st.error(md_escape(f"Cannot read the cache state of {ds.root}: {e}"))
        return
    n = max(1, int(s.n_rows))
    st.progress(min(1.0, s.n_stats / n), text=f"{s.n_stats}/{s.n_rows} studies summarised")
    st.caption(
        f"{s.n_arrays}/{s.n_rows} studies' arrays cached · {format_bytes(s.bytes_used)} of "
        f"{format_bytes(s.budget)} budget · {s.n_errors} rows with errors"
    )
    if s.writable:
        st.caption(":material/check_circle: cache writable")
    else:
        st.warning("Cache is read-only: computing in memory. " + md_escape(s.reason or ""), icon=":material/lock:")
    label = "Refresh cache" if s.complete else "Build cache"
    if st.button(
        label,
        key=BUILD_KEY,
        type="secondary" if s.complete else "primary",
        width="stretch",
        help="Summarise every study that is missing or changed since the last build.",
    ):
        report = build_cache_with_progress(ds)
        if report is not None:
            st.session_state[BUILD_REPORT_KEY] = (
                f"{report.n_built} computed, {report.n_cached} cached, {report.n_errors} with errors "
                f"in {report.seconds:.1f} s"
            )
            st.rerun()
    if st.session_state.get(BUILD_REPORT_KEY):
        st.caption(f"Last build: {st.session_state[BUILD_REPORT_KEY]}")
