"""Study thumbnails as small URLs for ``st.column_config.ImageColumn``: the browser fetches only the rows it draws.

The registry table used to embed every thumbnail as a ``data:`` URI, so a 1110-row page carried ~1.6 MB of
images before the first row was drawn, most of them for rows nobody scrolled to. Here each shown row gets a URL
of Streamlit's media endpoint (``media/<content hash>.png``) instead: the grid (virtualised: it draws only the
rows in view) asks for the images of the rows it draws, and nothing else crosses the wire.

The files are registered with Streamlit's media file manager, the one ``st.image`` uses: it keeps a file while
some session's latest run still refers to it (per-session "coordinates", here one per study), serves it with
the app's own session checks, and drops it when no run refers to it any more. That manager is a Streamlit
internal (``runtime.get_instance().media_file_mgr``); if a later Streamlit changes it, :func:`thumbnail_urls`
falls back to data URIs for the rows shown, so the table keeps its thumbnails (the payload grows again).

URLs are relative (``media/…``, no leading slash) so they resolve under ``--server.baseUrlPath`` when a proxy
serves the app below a path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["thumbnail_urls", "new_full_run", "COORD_PREFIX"]

_LOG = logging.getLogger("mosmed.app")
#: The media manager's "coordinates" of a study's thumbnail: one slot per study and session.
COORD_PREFIX = "mosmed.thumb."


def _media_manager() -> Any | None:
    try:
        from streamlit import runtime

        if not runtime.exists():
            return None
        mgr = runtime.get_instance().media_file_mgr
        return mgr if hasattr(mgr, "add") else None
    except Exception:  # noqa: BLE001 - any change in Streamlit's internals: fall back to data URIs
        return None


def new_full_run(memo_key: str) -> None:
    """Call once per FULL run of the page, before its fragment: Streamlit forgets a session's media files at the
    start of every full run (not of a fragment run), so the URLs remembered under ``memo_key`` go too."""
    import streamlit as st

    st.session_state[memo_key] = {}


def thumbnail_urls(
    ds: Any, study_ids: Sequence[int], thumb_names: Sequence[Any], *, memo_key: str | None = None
) -> list[str | None]:
    """One URL per row (None where the study has no thumbnail), for the rows about to be shown.

    Parameters
    ----------
    ds : mosmed.dataset.Dataset
        The open dataset (its thumbnails are files of its cache, or in memory for a read-only cache).
    study_ids, thumb_names : sequences
        The shown rows' study ids and the summary's ``thumb_name`` column (the entry file name, or None).
    memo_key : str, optional
        A session key (see :func:`new_full_run`): within the fragment runs that follow one full run the files this
        session registered stay registered, so their URLs are reused instead of reading and hashing each
        thumbnail again on every filter change.
    """
    import streamlit as st

    mgr = _media_manager()
    memo = st.session_state.get(memo_key) if (memo_key and mgr is not None) else None
    if memo_key and mgr is not None and not isinstance(memo, dict):
        memo = st.session_state[memo_key] = {}
    out: list[str | None] = []
    for sid, name in zip(study_ids, thumb_names):
        sid = int(sid)
        if memo is not None and isinstance(name, str) and name in memo:
            out.append(memo[name])
            continue
        path = ds.thumbnail_file(name) if isinstance(name, str) else None
        try:
            if mgr is not None:
                if path is not None:
                    url = mgr.add(str(path), "image/png", f"{COORD_PREFIX}{sid}")
                else:
                    data = ds.thumbnail(sid) if not ds.cache.writable else None  # a read-only cache's memory
                    url = mgr.add(data, "image/png", f"{COORD_PREFIX}{sid}") if data else None
                out.append(url.lstrip("/") if url else None)
                if memo is not None and path is not None and url:
                    memo[name] = out[-1]
            else:
                from components.tables import thumb_data_uri

                data = path.read_bytes() if path is not None else ds.thumbnail(sid)
                out.append(thumb_data_uri(data))
        except Exception:  # noqa: BLE001 - a thumbnail gone since the summary: an empty cell, the row stays
            out.append(None)
    return out
