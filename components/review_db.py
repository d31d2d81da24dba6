"""The review database as the app sees it: one store per process, the open dataset's identity, and what
the session typed while the database was away.

``get_store()`` returns ``(store, None)`` or ``(None, reason)``; pages show the reason and keep browsing. A
failed open is remembered for a few seconds per process (an unreachable server must not stall every run).
Saves that fail are kept in this session (:data:`PENDING_KEY`) and written by :func:`flush_pending` once the
database answers again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from components import state

if TYPE_CHECKING:
    from mosmed.reviews.identity import DatasetIdentity
    from mosmed.reviews.store import ReviewStore

__all__ = ["PENDING_KEY", "get_store", "identity", "valid_ids", "pending", "queue", "flush_pending", "clear_caches"]

_LOG = logging.getLogger("mosmed.app")
#: Session key: saves not yet written, oldest first (dicts: digest, label, n, study_id, reader, review).
PENDING_KEY = "review.pending"
#: Seconds a failed open is remembered before the next try.
RETRY_AFTER_S = 5


def _url_text() -> str:
    return os.environ.get("MOSMED_DB", "").strip()


@st.cache_resource(show_spinner=False, max_entries=4)
def _store(url_text: str, cache_root: str) -> ReviewStore:
    # One engine per process (thread-safe, never mutated); migrated at open. A failure is not cached.
    from mosmed.reviews.db import open_database
    from mosmed.reviews.store import ReviewStore

    return ReviewStore(open_database(url_text or None, cache_root=Path(cache_root) if cache_root else None))


@st.cache_data(ttl=RETRY_AFTER_S, show_spinner=False, max_entries=4)
def _open_problem(url_text: str, cache_root: str) -> str | None:
    try:
        _store(url_text, cache_root)
    except Exception as e:  # noqa: BLE001 - every failure becomes a sentence on the page
        _LOG.warning("review database unavailable: %s", e)
        from mosmed.errors import MosmedError

        return (
            str(e) if isinstance(e, MosmedError) else f"the review database cannot be opened ({type(e).__name__}: {e})"
        )
    return None


def get_store(ds: Any = None) -> tuple[ReviewStore | None, str | None]:
    """The process's review store, or ``None`` and why (unreachable, newer schema, bad ``MOSMED_DB`` ...)."""
    url, croot = _url_text(), str(state.cache_root())
    problem = _open_problem(url, croot)
    if problem:
        return None, problem
    try:
        store = _store(url, croot)
    except Exception as e:  # noqa: BLE001
        return None, str(e)
    if ds is not None:
        from mosmed.reviews.db import check_location
        from mosmed.reviews.errors import ReviewConfigError

        try:
            check_location(store.db.url, dataset_root=ds.root)
        except ReviewConfigError as e:
            return None, str(e)
    return store, None


@st.cache_data(max_entries=8, show_spinner=False)
def _identity(_ds: Any, key: tuple[str, str], token: tuple) -> DatasetIdentity:
    from mosmed.reviews.identity import dataset_identity

    return dataset_identity(_ds.registry)


def identity(ds: Any) -> DatasetIdentity:
    """The open dataset's review identity (cached per dataset and source state)."""
    return _identity(ds, state.ds_key(ds), state.freshness(ds))


@st.cache_data(max_entries=8, show_spinner=False)
def _valid_ids(_ds: Any, key: tuple[str, str], token: tuple) -> frozenset[int]:
    return frozenset(int(i) for i in _ds.registry.ids)


def valid_ids(ds: Any) -> frozenset[int]:
    """Study ids of the open dataset's registry (a review of any other id is refused)."""
    return _valid_ids(ds, state.ds_key(ds), state.freshness(ds))


def clear_caches() -> None:
    """Forget the store and the remembered failure (tests; after MOSMED_DB changes)."""
    _open_problem.clear()
    _store.clear()


# ----------------------------------------------------------------------------------------- pending saves


def pending() -> list[dict]:
    """This session's saves waiting for the database."""
    return list(st.session_state.get(PENDING_KEY) or [])


def queue(ident: DatasetIdentity, study_id: int, reader, review) -> None:
    """Keep a save for later; a newer save of the same study by the same reader replaces an older one."""
    items = [
        p
        for p in pending()
        if not (
            p["digest"] == ident.digest
            and p["study_id"] == int(study_id)
            and p["reader"] == (reader.kind, reader.subject, reader.display_name)
        )
    ]
    items.append(
        {
            "digest": ident.digest,
            "label": ident.label,
            "n": ident.n_studies,
            "study_id": int(study_id),
            "reader": (reader.kind, reader.subject, reader.display_name),
            "review": {"grade": review.grade, "flags": list(review.flags), "note": review.note},
        }
    )
    st.session_state[PENDING_KEY] = items


def flush_pending(store: ReviewStore) -> tuple[int, str | None]:
    """Write the waiting saves in order; returns (how many were written, the problem that stopped it)."""
    from mosmed.reviews.errors import ReviewDatabaseError, ReviewError
    from mosmed.reviews.identity import DatasetIdentity
    from mosmed.reviews.model import Reader, Review

    items = pending()
    done = 0
    problem = None
    while items:
        p = items[0]
        try:
            store.save(
                DatasetIdentity(p["digest"], p["label"], p["n"]),
                p["study_id"],
                Reader(*p["reader"]),
                Review(p["review"]["grade"], tuple(p["review"]["flags"]), p["review"]["note"]),
            )
        except ReviewDatabaseError as e:
            problem = str(e)
            break
        except ReviewError as e:  # can never be saved as it is: say so and drop it
            problem = f"a waiting review of study {p['study_id']} could not be saved and was dropped: {e}"
            items.pop(0)
            continue
        items.pop(0)
        done += 1
    st.session_state[PENDING_KEY] = items
    return done, problem
