"""The classroom's database as the app sees it: the store of this process, and who is asking (for limits).

The classroom lives in the review database (one engine per process, opened by :mod:`components.review_db`,
migrated with both branches), so ``get_store()`` returns ``(store, None)`` or ``(None, reason)`` exactly like
the review panel: a failed open is remembered a few seconds, pages show the reason and keep working.

:func:`requester` names the client for :mod:`mosmed.classroom.limits`: the browser session (Streamlit's session
id) and the client address. ``st.context.ip_address`` is ``None`` when the connection comes from this machine,
which is what a reverse proxy on the same host looks like; then the proxy's ``X-Real-IP`` (our nginx
configuration sets it, overwriting whatever the client sent) is the address. Both are hashed before they
reach the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from components import review_db

if TYPE_CHECKING:
    from mosmed.classroom.store import ClassroomStore

__all__ = ["get_store", "requester", "session_id"]


def get_store() -> tuple[ClassroomStore | None, str | None]:
    """The process's classroom store, or ``None`` and why (database unreachable, newer schema ...)."""
    from mosmed.classroom.store import ClassroomStore

    store, problem = review_db.get_store()
    if store is None:
        return None, problem
    return ClassroomStore(store.db), None


def session_id() -> str:
    """This browser session's id (a new tab or a reconnect to another replica is a new session)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is not None and ctx.session_id:
            return str(ctx.session_id)
    except Exception:  # noqa: BLE001 - a bare script: one anonymous session
        pass
    return "no-session"


def _client_address() -> str:
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001
        ip = None
    if ip:
        return str(ip)
    try:
        headers = st.context.headers
        real = headers.get("X-Real-Ip") or headers.get("X-Real-IP")
        if real:
            return str(real).strip()[:64]
        fwd = headers.get("X-Forwarded-For")
        if fwd:
            return str(fwd).split(",")[-1].strip()[:64]  # the address our proxy appended, not the client's claim
    except Exception:  # noqa: BLE001
        pass
    return "local"


def requester() -> tuple[str, str]:
    """``(client key, browser key)``: hashed client address and browser session, for the attempt limits."""
    from mosmed.classroom.store import client_key

    return client_key("addr|" + _client_address()), client_key("session|" + session_id())
