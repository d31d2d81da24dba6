"""What a review is: grades, flags, bounds, and the validated values the store accepts.

Grades and flags are identifiers stored in the database (and checked there by constraints); the labels are
what people read. Everything a user types (names, notes) is data: stored and shown literally, never as markup.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mosmed.reviews.errors import ReviewInputError

__all__ = [
    "GRADES",
    "CLASS_GRADES",
    "UNGRADABLE",
    "GRADE_LABELS",
    "FLAGS",
    "FLAG_LABELS",
    "MAX_NOTE_CHARS",
    "MAX_NAME_CHARS",
    "READER_KINDS",
    "Reader",
    "Review",
    "parse_grade",
    "parse_flags",
    "clean_note",
    "clean_name",
]

#: The severity classes a reader can give, then "cannot grade".
CLASS_GRADES: tuple[str, ...] = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
UNGRADABLE = "ungradable"
GRADES: tuple[str, ...] = (*CLASS_GRADES, UNGRADABLE)
GRADE_LABELS: Mapping[str, str] = MappingProxyType({**{g: g for g in CLASS_GRADES}, UNGRADABLE: "Cannot grade"})

#: Flag identifiers (stored) and their labels (shown). A new flag needs an Alembic revision: the schema checks them.
FLAG_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "label_doubtful": "Label doubtful",
        "mask_problem": "Mask incomplete or wrong",
        "artefact": "Artefact",
        "wrong_series": "Not a chest CT / wrong series",
        "orientation": "Orientation",
        "duplicate": "Duplicate",
        "other": "Other",
    }
)
FLAGS: tuple[str, ...] = tuple(FLAG_LABELS)

#: Bounds, also enforced by CHECK constraints in the schema.
MAX_NOTE_CHARS = 2000
MAX_NAME_CHARS = 80

#: "name": a display name typed by the reader (unverified); "oidc": an identity from st.login (verified).
READER_KINDS: tuple[str, ...] = ("name", "oidc")

# Control characters other than newline and tab are refused: PostgreSQL cannot store NUL, and the others
# (bell, escape, bidi overrides are not control characters and stay) only hide what a note says.
_ALLOWED_CONTROLS = frozenset("\n\t")


def _bad_controls(text: str) -> list[str]:
    return [f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS]


def parse_grade(value: object) -> str | None:
    """A grade identifier from user text: ``"CT-2"``, ``"ct2"``, ``"ungradable"``, ``"cannot grade"``; ``None``/``""``.

    Raises
    ------
    ReviewInputError
        Naming the value and the accepted ones.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    key = text.upper().replace("_", "-").replace(" ", "")
    if key.startswith("CT") and not key.startswith("CT-"):
        key = "CT-" + key[2:]
    if key in CLASS_GRADES:
        return key
    if text.strip().lower().replace("-", " ").replace("_", " ") in ("ungradable", "cannot grade", "ungraded"):
        return UNGRADABLE
    shown = text if len(text) <= 20 else text[:20] + "…"
    raise ReviewInputError(f"grade {shown!r} is not one of {', '.join(CLASS_GRADES)} or {UNGRADABLE}")


def parse_flags(values: Iterable[object] | None) -> tuple[str, ...]:
    """Flag identifiers (or their labels, any case) -> the sorted, de-duplicated identifiers."""
    out: set[str] = set()
    by_label = {v.lower(): k for k, v in FLAG_LABELS.items()}
    for v in values or ():
        text = str(v).strip()
        if not text:
            continue
        key = text.lower().replace("-", "_").replace(" ", "_")
        if key in FLAG_LABELS:
            out.add(key)
        elif text.lower() in by_label:
            out.add(by_label[text.lower()])
        else:
            shown = text if len(text) <= 30 else text[:30] + "…"
            raise ReviewInputError(f"flag {shown!r} is unknown; the flags are {', '.join(FLAGS)}")
    return tuple(sorted(out, key=FLAGS.index))


def clean_note(text: object) -> str:
    """The note as stored: NFC, trailing whitespace trimmed; ``""`` for none.

    Raises
    ------
    ReviewInputError
        When longer than :data:`MAX_NOTE_CHARS` or holding control characters.
    """
    if text is None:
        return ""
    note = unicodedata.normalize("NFC", str(text)).replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ReviewInputError(f"the note has {len(note)} characters; at most {MAX_NOTE_CHARS} are kept")
    bad = _bad_controls(note)
    if bad:
        raise ReviewInputError(
            f"the note holds control characters ({', '.join(sorted(set(bad))[:5])}); remove them and save again"
        )
    return note


def clean_name(text: object) -> str:
    """A reader's display name as stored: NFC, inner whitespace collapsed.

    Raises
    ------
    ReviewInputError
        Empty, longer than :data:`MAX_NAME_CHARS`, or holding control characters.
    """
    name = " ".join(unicodedata.normalize("NFC", str(text or "")).split())
    if not name:
        raise ReviewInputError("the reader name is empty; type the name to review under")
    if len(name) > MAX_NAME_CHARS:
        raise ReviewInputError(f"the reader name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed")
    bad = _bad_controls(name)
    if bad:
        raise ReviewInputError(f"the reader name holds control characters ({', '.join(sorted(set(bad))[:5])})")
    return name


@dataclass(frozen=True)
class Reader:
    """Who reviews. Built by the app from the session (never from a widget another user could set) or by the CLI.

    Attributes
    ----------
    kind : str
        ``"name"`` (typed display name, unverified) or ``"oidc"`` (from ``st.login``, verified).
    subject : str
        The stable key: the case-folded name for ``"name"``, ``"<issuer>|<sub>"`` for ``"oidc"``.
    display_name : str
        What is shown (with "unverified" for typed names).
    """

    kind: str
    subject: str
    display_name: str

    @classmethod
    def named(cls, name: object) -> Reader:
        """An unverified reader from a typed display name (the same name is the same reader)."""
        display = clean_name(name)
        return cls("name", display.casefold(), display)

    @classmethod
    def oidc(cls, issuer: object, subject: object, display_name: object) -> Reader:
        """A verified reader from the identity provider's issuer and subject claims."""
        iss, sub = str(issuer or "").strip(), str(subject or "").strip()
        if not sub:
            raise ReviewInputError("the login identity has no subject claim; cannot tell who is reviewing")
        key = f"{iss}|{sub}"
        if len(key) > 400 or _bad_controls(key):
            raise ReviewInputError("the login identity's issuer/subject is not usable as a reader key")
        try:
            display = clean_name(display_name)
        except ReviewInputError:
            display = clean_name(sub[:MAX_NAME_CHARS])
        return cls("oidc", key, display)

    @property
    def verified(self) -> bool:
        return self.kind == "oidc"

    @property
    def key(self) -> str:
        """``"<kind>:<subject>"``: one string naming the reader in frames and exports."""
        return f"{self.kind}:{self.subject}"

    @property
    def label(self) -> str:
        """Display name, marked "(unverified)" for a typed name."""
        return self.display_name if self.verified else f"{self.display_name} (unverified)"


@dataclass(frozen=True)
class Review:
    """One reader's decision on one study: a grade (or none), flags and a note, validated at construction."""

    grade: str | None = None
    flags: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "grade", parse_grade(self.grade))
        object.__setattr__(self, "flags", parse_flags(self.flags))
        object.__setattr__(self, "note", clean_note(self.note))

    @property
    def is_empty(self) -> bool:
        """Nothing decided: saving it clears the reader's review of the study (kept in history as such)."""
        return self.grade is None and not self.flags and not self.note
