"""Which dataset is open, cached views of it, and moving between pages.

Every page starts from :func:`get_dataset`. The open dataset is chosen per browser session (a path typed in
the sidebar), else by the ``MOSMED_DATA`` environment variable, else the generated demo. The ``Dataset`` object
is shared between sessions through ``st.cache_resource`` (it is only read after construction); everything
handed to a page that it might modify (DataFrames, arrays) comes from ``st.cache_data`` as a copy.

Session keys are namespaced by page: ``app.*`` (frame / sidebar), ``registry.*``, ``viewer.*``, ``teaching.*``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from components.markup import md_escape

if TYPE_CHECKING:  # the core is imported lazily so a broken core module shows an st.error, not a traceback
    from mosmed.dataset import Dataset, Study

__all__ = [
    "ROOT_KEY",
    "REGISTRY_CLASS_KEY",
    "REGISTRY_APPLY_KEY",
    "FILTERED_IDS_KEY",
    "VIEWER_STUDY_KEY",
    "VIEWER_SLICE_KEY",
    "PAGES_KEY",
    "cache_root",
    "check_root",
    "served_beyond_localhost",
    "dataset_choice",
    "dataset_label",
    "get_dataset",
    "dataset_problem",
    "ds_key",
    "freshness",
    "freshness_period",
    "cache_status",
    "summary_df",
    "registry_rows_df",
    "histograms",
    "thumbnail",
    "load_study",
    "goto_viewer",
    "goto_registry",
    "current_filter_ids",
    "set_filter_ids",
    "register_pages",
    "page",
    "clear_data_caches",
]

#: Session key of a dataset root typed in the sidebar (overrides ``MOSMED_DATA`` for this session only).
ROOT_KEY = "app.dataset_root"
#: Session key of the registry's class filter (other pages set it to open the registry filtered).
REGISTRY_CLASS_KEY = "registry.filter.class"
#: Session flag: the registry page replaces its class widget's value by REGISTRY_CLASS_KEY on its next run.
REGISTRY_APPLY_KEY = "registry.filter.apply"
#: Session key of the study ids the registry page currently shows (the viewer's picker uses them).
FILTERED_IDS_KEY = "registry.filtered_ids"
#: Session keys the viewer page reads on load.
VIEWER_STUDY_KEY = "viewer.study"
VIEWER_SLICE_KEY = "viewer.slice"
#: Session key holding the page objects app.py registered (name -> StreamlitPage).
PAGES_KEY = "app.pages"

#: Folder of the page scripts, relative to app.py (one place to change it; see app.py).
PAGES_DIR = "pages"
PAGE_NAMES = ("overview", "registry", "viewer", "distributions", "teaching")
_PAGE_FILES = {name: f"{PAGES_DIR}/{name}.py" for name in PAGE_NAMES}


# ------------------------------------------------------------------------------------------ dataset choice


def cache_root() -> Path:
    """The cache root (``MOSMED_CACHE`` or ``<repo>/data_cache``)."""
    from mosmed.config import default_cache_root

    return Path(default_cache_root())


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def served_beyond_localhost() -> bool:
    """True when users may come from other machines: ``server.address`` is not a loopback address (unset means
    every interface), ``MOSMED_DATA_ROOTS`` is set (``make serve-replicas``, ``deploy/``), or this request came
    through a reverse proxy (it carries ``X-Forwarded-For`` / ``X-Real-IP``)."""
    from mosmed.config import data_roots_configured

    if data_roots_configured():
        return True
    try:
        address = str(st.get_option("server.address") or "").strip().lower()
    except Exception:  # noqa: BLE001
        address = ""
    if address not in _LOOPBACK and not address.startswith("127."):
        return True
    try:
        headers = st.context.headers
        return bool(headers.get("X-Forwarded-For") or headers.get("X-Real-Ip"))
    except Exception:  # noqa: BLE001 - no request (a bare script, a test): this machine
        return False


def check_root(text: str) -> tuple[Path | None, str | None]:
    """Validate a dataset root typed by a user.

    Served beyond this machine (:func:`served_beyond_localhost`) only the configured dataset, the demo and
    folders inside ``MOSMED_DATA_ROOTS`` may be opened (:func:`mosmed.config.root_allowed`); the check is made
    on the resolved path before anything in it is read.

    Returns
    -------
    (path, problem)
        ``path`` when the text names an existing folder, else ``None`` and a sentence naming the path and
        what is wrong with it.
    """
    text = (text or "").strip()
    if not text:
        return None, "no dataset folder given"
    if len(text) > 4096 or "\x00" in text:
        return None, "the dataset path is not a usable path"
    path = Path(os.path.expanduser(text))
    if served_beyond_localhost():
        from mosmed.config import root_allowed

        if not root_allowed(path):
            return None, (
                f"dataset folder {path} is not one this server lets browsers open: ask whoever runs it "
                "to add it to MOSMED_DATA_ROOTS"
            )
    try:
        if not path.exists():
            return None, f"dataset folder {path} does not exist"
        if not path.is_dir():
            return None, f"dataset path {path} is not a folder"
    except OSError as e:  # permission denied on a parent, name too long ...
        return None, f"dataset folder {path} cannot be opened: {e.strerror or e}"
    return path.resolve(), None


def dataset_choice() -> tuple[Path, bool]:
    """The root to open in this session and whether it is the generated demo.

    A root typed in the sidebar (session state) wins, then ``MOSMED_DATA``, then the demo root. The typed root
    is validated by the sidebar before it is stored; ``MOSMED_DATA`` is validated by :func:`get_dataset`.
    """
    typed = st.session_state.get(ROOT_KEY)
    if typed:
        from mosmed.config import root_allowed

        # Defence in depth: a typed root was checked when it was stored; served beyond this machine it is
        # checked again here, so nothing but check_root's allow-list can ever put a folder in front of a page.
        if not served_beyond_localhost() or root_allowed(Path(typed)):
            return Path(typed), False
    from mosmed.config import default_data_root

    root, is_demo = default_data_root()
    return Path(root), bool(is_demo)


def dataset_label() -> str:
    """Short text saying which dataset is open ("Demo (generated)", or where the root came from)."""
    root, is_demo = dataset_choice()
    if is_demo:
        return "Demo (generated)"
    if st.session_state.get(ROOT_KEY):
        return f"{root.name or root} (typed in)"
    return f"{root.name or root} (MOSMED_DATA)"


def _registry_stamp(root: Path) -> tuple[str, int, int]:
    """Identity of the registry file, so an edited registry opens as a new Dataset."""
    from mosmed.registry import REGISTRY_CSV, REGISTRY_XLSX

    for name in (REGISTRY_XLSX, REGISTRY_CSV):
        p = root / name
        try:
            s = p.stat()
        except OSError:
            continue
        return name, int(s.st_size), int(s.st_mtime_ns)
    try:  # a scanned dataset: the studies folder's mtime changes when a class folder gains/loses files
        s = (root / "studies").stat()
        return "scanned", 0, int(s.st_mtime_ns)
    except OSError:
        return "none", 0, 0


@st.cache_resource(max_entries=4, show_spinner="Opening the dataset…")
def _open_dataset(root: str, cache: str, stamp: tuple[str, int, int]) -> Dataset:
    # Shared by every session; Dataset is only read after construction. `stamp` is part of the key only.
    import gc

    from mosmed.dataset import Dataset

    ds = Dataset(Path(root), Path(cache))
    # Streamlit runs a full garbage collection after every script run (runner.postScriptGC). It walks every
    # object the collector tracks: the imported modules (plotly alone holds tens of thousands) and this
    # dataset's registry, ~150 ms of each run here, during which the finished run's last messages wait for the
    # GIL. They live as long as the process: freezing them (gc.freeze) keeps them out of those passes (the
    # collection after a run then takes ~1 ms); they are still freed by reference counting when evicted.
    # Collect first, so that no garbage waiting for the collector is frozen with them (it would never be freed).
    gc.collect()
    gc.freeze()
    return ds


def get_dataset(*, show_error: bool = True) -> Dataset | None:
    """The open dataset, or ``None`` after showing an ``st.error`` that names the root and the problem."""
    try:
        root, _ = dataset_choice()
        croot = cache_root()
        return _open_dataset(str(root), str(croot), _registry_stamp(root))
    except Exception as e:  # noqa: BLE001 - any failure becomes a message, never a traceback on the page
        if show_error:
            # Paths and error text are untrusted: shown as written, never as markup.
            st.error(md_escape(_open_problem(e)), icon=":material/folder_off:")
        return None


def dataset_problem() -> str | None:
    """Why the chosen dataset cannot be opened, or ``None`` when it opens (no message is shown)."""
    try:
        root, _ = dataset_choice()
        _open_dataset(str(root), str(cache_root()), _registry_stamp(root))
    except Exception as e:  # noqa: BLE001
        return _open_problem(e)
    return None


def _open_problem(e: BaseException) -> str:
    from mosmed.errors import MosmedError

    try:
        root = dataset_choice()[0]
    except Exception:  # noqa: BLE001
        root = "?"
    if isinstance(e, MosmedError):
        text = str(e)
        return text if str(root) in text else f"Cannot open dataset {root}: {text}"
    if isinstance(e, OSError):
        return f"Cannot open dataset {root}: {e.strerror or e}"
    return f"Cannot open dataset {root}: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------- cached views


def ds_key(ds: Dataset) -> tuple[str, str]:
    """(dataset root, cache root) of an open dataset: the cache key of everything derived from it."""
    return str(ds.root), str(ds.cache.cache_root)


#: How long a freshness token is kept, in seconds: at least 2 s, and longer for big registries so that looking
#: for changes (one ``stat`` per file, ~0.2 s per 100 000 files) stays a small share of one core.
FRESHNESS_MIN_S = 2.0
FRESHNESS_FILES_PER_S = 25_000


def freshness_period(n_rows: int) -> float:
    """Seconds a freshness token is kept for a registry of ``n_rows`` rows (2 s up to 50 000 rows)."""
    return max(FRESHNESS_MIN_S, float(n_rows) / FRESHNESS_FILES_PER_S)


@st.cache_data(max_entries=16, show_spinner=False)
def _freshness_cached(_ds: Dataset, key: tuple[str, str], bucket: int) -> tuple[Any, ...]:
    try:
        # The digest of every source file's size and mtime (a file replaced on a partly built cache leaves the
        # entry counts as they were: this still changes) and the cache folders' modification times.
        return _ds.cache_token()
    except Exception:  # noqa: BLE001 - a token only; the summary call reports real problems
        return ()


def freshness(ds: Dataset) -> tuple[Any, ...]:
    """A cheap token that changes when the cached statistics or any source file change.

    ``Dataset.cache_token``: a digest of every registry file's identity (size, mtime_ns) and the modification
    times of the cache folders (another process may be building the cache). It stats every registry file, so one
    value is kept for :func:`freshness_period` seconds (a time bucket in the cache key): one page run asks for it
    many times and pays once, and a 100 000-row registry is looked at every 4 s, not every run.
    """
    period = freshness_period(len(ds.registry.rows()))
    return _freshness_cached(ds, ds_key(ds), int(time.time() // period))


@st.cache_data(max_entries=8, show_spinner=False)
def _status_cached(_ds: Dataset, key: tuple[str, str], token: tuple[Any, ...]):
    return _ds.status()


def cache_status(ds: Dataset):
    """``ds.status()`` (counts of summarised rows and cached arrays), recomputed only when :func:`freshness`
    changes: the sidebar shows it on every run, and at 100 000 rows it costs about a second."""
    return _status_cached(ds, ds_key(ds), freshness(ds))


# Few entries: at 100 000 rows one summary is ~20 MB pickled (histograms ~60 MB); a new freshness token (a cache
# being built) makes a new entry, and the old ones are only useful to sessions still on the previous token.
@st.cache_data(max_entries=3, show_spinner="Reading the study summary…")
def _summary(_ds: Dataset, key: tuple[str, str], token: tuple[Any, ...]) -> pd.DataFrame:
    return _ds.summary()


def registry_rows_df(ds: Dataset) -> pd.DataFrame:
    """A copy of ``ds.summary()``: one row per registry row, a row repeating a study id included (in error)."""
    return _summary(ds, ds_key(ds), freshness(ds))


def summary_df(ds: Dataset) -> pd.DataFrame:
    """One row per study (a repeated id's own row left out): what counts, charts and pickers use. A copy."""
    rows = registry_rows_df(ds)
    return rows.drop_duplicates("study_id").reset_index(drop=True)


@st.cache_data(max_entries=3, show_spinner="Reading lung histograms…")
def _histograms(_ds: Dataset, key: tuple[str, str], token: tuple[Any, ...]) -> tuple[np.ndarray, pd.DataFrame]:
    return _ds.histograms()


def histograms(ds: Dataset) -> tuple[np.ndarray, pd.DataFrame]:
    """Copy of ``ds.histograms()``: bin edges and one row of lung HU counts per study."""
    return _histograms(ds, ds_key(ds), freshness(ds))


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumbnail(_ds: Dataset, key: tuple[str, str], token: tuple[Any, ...], study_id: int) -> bytes | None:
    try:
        return _ds.thumbnail(int(study_id))
    except Exception:  # noqa: BLE001 - a missing thumbnail is shown as an empty cell, the row keeps its error
        return None


def thumbnail(ds: Dataset, study_id: int) -> bytes | None:
    """PNG thumbnail of a study from the cache, or ``None`` when there is none."""
    return _thumbnail(ds, ds_key(ds), freshness(ds), int(study_id))


@st.cache_resource(max_entries=8, show_spinner="Opening the study…")
def _study(_ds: Dataset, key: tuple[str, str], token: tuple[Any, ...], study_id: int) -> Study:
    # A shared resource: memory-mapped read-only arrays, never mutated by a page.
    return _ds.open_study(int(study_id))


def load_study(ds: Dataset, study_id: int) -> Study:
    """Open one study (read-only arrays shared between sessions).

    Raises
    ------
    MosmedError
        Naming the study and the problem; pages turn it into ``st.error``.
    """
    return _study(ds, ds_key(ds), _study_token(ds, study_id), int(study_id))


def _study_token(ds: Dataset, study_id: int) -> tuple[Any, ...]:
    """The study's own source identity (two stats, no time-to-live): a replaced file is seen on the next run,
    and other studies being built meanwhile do not evict the open one."""
    key = ds.source_key(int(study_id))
    # Not in the registry / file gone: open_study raises and names the problem.
    return ("key", key) if key is not None else ("none", freshness(ds))


def clear_data_caches() -> None:
    """Forget cached summaries, histograms, thumbnails and studies (after a cache build or a dataset switch)."""
    for fn in (_freshness_cached, _status_cached, _summary, _histograms, _thumbnail, _study):
        fn.clear()


# ------------------------------------------------------------------------------------------------- navigation


def register_pages(pages: dict[str, Any]) -> None:
    """Remember the page objects app.py built, so :func:`page` returns them (per session)."""
    st.session_state[PAGES_KEY] = dict(pages)


def page(name: str) -> Any:
    """The page registered under ``name`` ("overview", "registry", "viewer", "distributions", "teaching").

    Falls back to the page's file path, which ``st.switch_page`` and ``st.page_link`` accept as well.
    """
    pages = st.session_state.get(PAGES_KEY) or {}
    if name in pages:
        return pages[name]
    if name not in _PAGE_FILES:
        raise KeyError(f"no page named {name!r}")
    return _PAGE_FILES[name]


def goto_viewer(study_id: int, slice_index: int | None = None) -> None:
    """Open a study in the viewer page (sets ``viewer.study`` / ``viewer.slice`` and the URL, then switches).

    ``slice_index`` is 0-based like the arrays; the URL's ``slice`` is 1-based like the "12 / 40" users see.
    """
    st.session_state[VIEWER_STUDY_KEY] = int(study_id)
    if slice_index is None:
        st.session_state.pop(VIEWER_SLICE_KEY, None)
    else:
        st.session_state[VIEWER_SLICE_KEY] = int(slice_index)
    st.query_params.clear()
    st.query_params["study"] = str(int(study_id))
    if slice_index is not None:
        st.query_params["slice"] = str(int(slice_index) + 1)  # links are 1-based, as the viewer shows them
    st.switch_page(page("viewer"))


def goto_registry(categories: list[str] | None = None) -> None:
    """Open the registry page, filtered to the given classes when given."""
    if categories is not None:
        st.session_state[REGISTRY_CLASS_KEY] = [str(c) for c in categories]
        st.session_state[REGISTRY_APPLY_KEY] = True  # the registry page re-reads its class filter
    st.query_params.clear()
    st.switch_page(page("registry"))


def current_filter_ids() -> list[int] | None:
    """Study ids the registry page currently shows, or ``None`` when the registry has not been filtered."""
    ids = st.session_state.get(FILTERED_IDS_KEY)
    if ids is None:
        return None
    return [int(i) for i in ids]


def set_filter_ids(ids: list[int] | None) -> None:
    """Store the registry's current filter (plain ints, so session state stays serialisable)."""
    st.session_state[FILTERED_IDS_KEY] = None if ids is None else [int(i) for i in ids]


# ------------------------------------------------------------------------------------------ legacy page mode


def require_frame() -> None:
    """Make sure this run goes through ``app.py`` (the frame), not straight into a page file.

    Streamlit treats a ``pages/`` folder beside the entry script as a legacy (v1) multipage app until some
    session's run of ``app.py`` calls ``st.navigation``; in that state a first request for a deep link such as
    ``/viewer?study=12`` runs ``pages/viewer.py`` alone: no sidebar, no wide layout, the legacy page list. The
    flag is one class attribute of Streamlit's ``PagesManager``; when it says legacy mode we clear it and rerun,
    so the same page (same URL path, same page hash) runs again inside the frame. Every page and ``app.py`` call
    this first. If a later Streamlit drops the attribute, this does nothing.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - a Streamlit without the legacy mode
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()
