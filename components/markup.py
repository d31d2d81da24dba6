"""Showing untrusted text (folder names, registry text, paths, error messages, URL input) in markdown elements.

``st.markdown``, ``st.caption``, ``st.info``/``warning``/``error``/``success`` and ``st.write`` of a string all
render Markdown. Streamlit never renders raw HTML there (no ``unsafe_allow_html`` in this app), but a folder named
``[x](javascript:…)`` or ``![](http://host/…)`` would still become a link or a remote image, and ``:red[…]`` /
``:material/…:`` directives would restyle it. Text that comes from files, the registry, paths or query
parameters is passed through :func:`md_escape` first (or shown with ``st.text``/``st.code``/``st.dataframe``).
"""

from __future__ import annotations

__all__ = ["md_escape"]

# Every character with a Markdown (CommonMark + GFM + Streamlit directive/LaTeX) meaning; a backslash before
# any ASCII punctuation is a valid escape that renders the character itself.
_MD_SPECIAL = frozenset("\\`*_{}[]()#+-.!|<>~$:=")


def md_escape(text: object) -> str:
    """``text`` with every Markdown special character backslash-escaped, so it is shown as written.

    Parameters
    ----------
    text : object
        Anything; ``str(text)`` is escaped.

    Returns
    -------
    str
        Safe to interpolate into ``st.markdown``/``st.caption``/``st.error`` text (outside code spans).
    """
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))
