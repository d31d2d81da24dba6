"""Validators for the viewer's untrusted URL query parameters.

Every parser takes the raw value exactly as ``st.query_params`` hands it over (a string, or ``None`` when
the key is absent) and returns ``(value, notice)``:

- ``value`` is a safe, validated value, or ``None`` when the parameter is absent or unusable (the caller
  then falls back to its default);
- ``notice`` is ``None`` when nothing needs saying, else one plain sentence for the user.

A notice never contains the raw input verbatim: hostile text (HTML, script, markdown links, control
characters, very long strings) is reduced by :func:`describe` to a short run of harmless characters, so a
notice is safe to show with ``st.warning`` (which renders markdown) or ``st.text``. Nothing here touches the
file system: a study is chosen by integer id among the ids the caller already knows, so a parameter can never
name a path.

URL conventions (the ones a user sees and shares):
``?study=255`` (a registry id; ``study_0255`` is accepted too), ``?slice=12`` (1-based, as shown in the
viewer's "12 / 40"), ``?window=lung`` or ``?window=-600,1500`` (LEVEL,WIDTH in HU), ``?plane=axial``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from mosmed.windowing import Window
from mosmed.windowing import parse_window as _parse_window_text

__all__ = [
    "KNOWN_KEYS",
    "MAX_RAW_LENGTH",
    "PLANES",
    "describe",
    "parse_plane",
    "parse_slice",
    "parse_study",
    "parse_window",
    "unknown_keys_notice",
]

#: Query keys the viewer understands; anything else is ignored (with a notice).
KNOWN_KEYS: tuple[str, ...] = ("study", "slice", "window", "plane")
#: Longest raw value we even look at; anything longer is rejected unread.
MAX_RAW_LENGTH = 64
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9 ,.+\-]")
_INT = re.compile(r"^[+]?[0-9]{1,9}$")
_STUDY = re.compile(r"^(?:study[_-]?)?0*([0-9]{1,9})$", re.IGNORECASE)


def describe(raw: object, limit: int = 24) -> str:
    """A short, harmless rendering of an untrusted value for use inside a notice.

    Keeps only ASCII letters, digits, space, comma, dot, plus and minus (so no markup, no brackets, no
    backticks, no control or bidi characters survive), truncated to ``limit`` characters. Returns a
    neutral phrase when nothing readable is left.

    Parameters
    ----------
    raw : object
        The untrusted value (usually a ``str``).
    limit : int
        Maximum number of characters kept.

    Returns
    -------
    str
        Quoted cleaned text such as ``'"abc"'``, or ``"(unreadable value)"``.
    """
    text = raw if isinstance(raw, str) else str(raw)
    cleaned = _SAFE_CHARS.sub("", text[: limit * 4]).strip()
    if not cleaned:
        return "(unreadable value)"
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + "..."
    return f'"{cleaned}"'


def _first(raw: object) -> str | None:
    # st.query_params.get_all returns lists; st.query_params[key] returns the last value. Accept both.
    if raw is None:
        return None
    if isinstance(raw, (list, tuple)):
        return _first(raw[-1]) if raw else None
    return raw if isinstance(raw, str) else str(raw)


def parse_study(raw: object, valid_ids: Iterable[int]) -> tuple[int | None, str | None]:
    """Validate ``?study=`` against the ids the caller offers.

    Parameters
    ----------
    raw : str or None
        Raw query value; ``"255"``, ``"0255"`` and ``"study_0255"`` all mean id 255.
    valid_ids : iterable of int
        Ids that may be opened (the current filter, or all usable studies).

    Returns
    -------
    (int or None, str or None)
        The id, or ``None`` with a notice when it is not a number or not among ``valid_ids``.
    """
    text = _first(raw)
    if text is None or not text.strip():
        return None, None
    text = text.strip()
    if len(text) > MAX_RAW_LENGTH:
        return None, f"The study in the link is too long to be an id ({len(text)} characters); it was ignored."
    match = _STUDY.match(text)
    if match is None:
        return None, f"The study in the link, {describe(text)}, is not a study id; it was ignored."
    study_id = int(match.group(1))
    if study_id not in set(int(i) for i in valid_ids):
        return None, f"Study {study_id} from the link is not available in this dataset or filter; it was ignored."
    return study_id, None


def parse_slice(raw: object, n_slices: int) -> tuple[int | None, str | None]:
    """Validate ``?slice=`` (1-based in the URL) and return a 0-based index.

    Parameters
    ----------
    raw : str or None
        Raw query value, 1-based as the viewer shows it ("12" is slice 12 of Z).
    n_slices : int
        Number of axial slices of the open study (>= 1).

    Returns
    -------
    (int or None, str or None)
        0-based index; out-of-range numbers are clamped into ``0..n_slices-1`` with a notice; text that is
        not a whole number gives ``None`` with a notice.
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    text = _first(raw)
    if text is None or not text.strip():
        return None, None
    text = text.strip()
    if len(text) > MAX_RAW_LENGTH:
        return None, f"The slice in the link is too long to be a number ({len(text)} characters); it was ignored."
    negative = text.startswith("-") and _INT.match(text[1:]) is not None
    if negative or (re.fullmatch(r"[0-9]{10,}", text) is not None):
        clamped = 0 if negative else n_slices - 1
        return clamped, f"Slice {describe(text)} from the link is outside 1..{n_slices}; showing slice {clamped + 1}."
    if _INT.match(text) is None:
        return None, f"The slice in the link, {describe(text)}, is not a whole number; it was ignored."
    number = int(text)
    if not 1 <= number <= n_slices:
        clamped = min(max(number, 1), n_slices)
        return clamped - 1, f"Slice {number} from the link is outside 1..{n_slices}; showing slice {clamped}."
    return number - 1, None


def parse_window(raw: object) -> tuple[Window | None, str | None]:
    """Validate ``?window=`` (a preset name or ``LEVEL,WIDTH`` in HU).

    Returns
    -------
    (Window or None, str or None)
        The window, or ``None`` with a notice saying what is accepted.
    """
    text = _first(raw)
    if text is None or not text.strip():
        return None, None
    if len(text) > MAX_RAW_LENGTH:
        return None, f"The window in the link is too long ({len(text)} characters); the default window is used."
    try:
        window = _parse_window_text(text)
    except ValueError:
        # The core's message quotes the input with repr(); compose our own so raw text is never echoed.
        return None, (
            f"The window in the link, {describe(text)}, is not a preset (lung, mediastinum, soft, bone) "
            "or a LEVEL,WIDTH pair within range; the default window is used."
        )
    return window, None


def parse_plane(raw: object) -> tuple[str | None, str | None]:
    """Validate ``?plane=`` (``axial``, ``coronal`` or ``sagittal``, case-insensitive)."""
    text = _first(raw)
    if text is None or not text.strip():
        return None, None
    key = text.strip().lower()
    if key in PLANES:
        return key, None
    return None, f"The plane in the link, {describe(text)}, is not axial, coronal or sagittal; axial is used."


def unknown_keys_notice(params: Mapping[str, object] | Iterable[str]) -> str | None:
    """A notice listing query keys the viewer does not use, or ``None``."""
    keys = list(params.keys()) if isinstance(params, Mapping) else list(params)
    unknown = sorted({k for k in keys if k not in KNOWN_KEYS})
    if not unknown:
        return None
    shown = ", ".join(describe(k, limit=16) for k in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"Ignored unknown link parameter(s): {shown}{more}."
