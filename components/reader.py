"""Who is reviewing: the login identity (``st.login``, when ``[auth]`` is configured) or a display name typed
once per browser session, shown as "unverified".

The reader always comes from this session's server-side state: ``st.user`` (set by the login flow) or the
name this session's own callback stored under :data:`READER_KEY`. No query parameter or widget that another
user could set names the reader, and every save goes through :func:`current_reader`, so a reader can change
only their own reviews. With ``[auth]`` configured, typed names are off: only a login can review.
"""

from __future__ import annotations

import streamlit as st

from components.markup import md_escape

__all__ = ["READER_KEY", "auth_configured", "current_reader", "reader_box"]

#: Session key of the typed display name (set only by :func:`_use_name`, this session's own callback).
READER_KEY = "review.reader_name"
_ERROR_KEY = "review.reader_error"


def auth_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` (or the server's secrets) has an ``[auth]`` section."""
    try:
        auth = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets file at all: no login
        return False
    return bool(auth)


def current_reader():
    """The session's :class:`mosmed.reviews.model.Reader`, or ``None`` when nobody is identified yet."""
    from mosmed.reviews.errors import ReviewInputError
    from mosmed.reviews.model import Reader

    if auth_configured():
        try:
            user = st.user
            if not user.get("is_logged_in"):
                return None
            name = user.get("name") or user.get("email") or user.get("preferred_username") or user.get("sub")
            return Reader.oidc(user.get("iss", ""), user.get("sub") or user.get("email") or "", name)
        except (ReviewInputError, Exception):  # noqa: BLE001 - a login without usable claims cannot review
            return None
    name = st.session_state.get(READER_KEY)
    if not name:
        return None
    try:
        return Reader.named(name)
    except ReviewInputError:
        return None


def _use_name(input_key: str) -> None:
    from mosmed.reviews.errors import ReviewInputError
    from mosmed.reviews.model import Reader

    try:
        reader = Reader.named(st.session_state.get(input_key, ""))
    except ReviewInputError as e:
        st.session_state[_ERROR_KEY] = str(e)
        return
    st.session_state.pop(_ERROR_KEY, None)
    st.session_state[READER_KEY] = reader.display_name


def _forget_name() -> None:
    st.session_state.pop(READER_KEY, None)


def reader_box(key: str = "review.w.reader") -> object | None:
    """Show who is reviewing, with a way to log in / type a name; returns :func:`current_reader`."""
    from mosmed.reviews.model import MAX_NAME_CHARS

    reader = current_reader()
    if auth_configured():
        if reader is None:
            st.caption("Log in to review: reviews are saved under your login.")
            st.button("Log in", key=f"{key}.login", on_click=st.login, icon=":material/login:")
        else:
            st.markdown(f"**{md_escape(reader.display_name)}** · verified login")
            st.button("Log out", key=f"{key}.logout", on_click=st.logout, type="tertiary")
        return reader
    if reader is not None:
        st.markdown(
            f"**{md_escape(reader.display_name)}** · :orange[unverified]",
            help="A typed name: anyone can type the same one. Configure [auth] in .streamlit/secrets.toml for logins.",
        )
        st.button("Change name", key=f"{key}.change", on_click=_forget_name, type="tertiary")
        return reader
    with st.form(key=f"{key}.form", border=False, enter_to_submit=True):
        st.text_input(
            "Your name (for reviews)",
            key=f"{key}.name",
            max_chars=MAX_NAME_CHARS,
            placeholder="e.g. Dr A. Ivanova",
            help="Typed once per browser session and shown as "
            "unverified. Your grades, flags and notes are saved under it.",
        )
        st.form_submit_button("Start reviewing", on_click=_use_name, args=(f"{key}.name",))
    if st.session_state.get(_ERROR_KEY):
        st.error(md_escape(st.session_state[_ERROR_KEY]))
    return None
