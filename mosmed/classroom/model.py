"""What a class session is made of: bounds, validated text, and the frozen values the store hands out.

Titles and names are data typed by people: stored and shown literally (never as Markdown or HTML), with only
control characters refused (PostgreSQL cannot store NUL; the others only hide text). A value meant for a
student (:class:`StudentQuestion`) has no field for the answer until the question is revealed: the store
builds it, so no page can hand a student what the store did not give it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from mosmed.classroom.codes import format_code
from mosmed.classroom.errors import ClassroomInputError
from mosmed.severity import CLASSES

__all__ = [
    "CLASSES",
    "MAX_TITLE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_STUDIES",
    "CLASS_TTL_HOURS",
    "PRESENT_WITHIN_S",
    "PLANES",
    "QUESTION_STATES",
    "clean_title",
    "clean_name",
    "name_key",
    "parse_answer",
    "View",
    "ClassInfo",
    "Presenter",
    "Seat",
    "TeacherGrant",
    "StudentQuestion",
    "TeacherQuestion",
    "AnswerResult",
    "Followers",
]

MAX_TITLE_CHARS = 120
MAX_NAME_CHARS = 40
#: Studies in one class session (a lesson, not a dataset).
MAX_STUDIES = 200
#: A class can be joined for this long after it was created (then it is over, whatever its state).
CLASS_TTL_HOURS = 24
#: A participant counts as present when seen this recently (students' pages say so every few seconds).
PRESENT_WITHIN_S = 20
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: open: answers taken; closed: no more answers, not revealed yet; revealed: everyone sees the class.
QUESTION_STATES: tuple[str, ...] = ("open", "closed", "revealed")


def _clean(text: object, what: str, max_chars: int) -> str:
    if text is None:
        raise ClassroomInputError(f"the {what} is empty")
    s = unicodedata.normalize("NFC", str(text)).strip()
    bad = [f"U+{ord(ch):04X}" for ch in s if unicodedata.category(ch) == "Cc"]
    if bad:
        raise ClassroomInputError(f"the {what} contains control characters ({', '.join(sorted(set(bad))[:3])})")
    if not s:
        raise ClassroomInputError(f"the {what} is empty")
    if len(s) > max_chars:
        raise ClassroomInputError(f"the {what} is {len(s)} characters long; at most {max_chars} are allowed")
    return s


def clean_title(text: object) -> str:
    """A class title as typed (trimmed, NFC), 1..:data:`MAX_TITLE_CHARS` characters, no control characters."""
    return _clean(text, "class title", MAX_TITLE_CHARS)


def clean_name(text: object) -> str:
    """A student's display name as typed, 1..:data:`MAX_NAME_CHARS` characters, no control characters."""
    return _clean(text, "name", MAX_NAME_CHARS)


def name_key(name: str) -> str:
    """Names are unique in a class whatever their case and spacing ("Ana" and " ana " are one student)."""
    return " ".join(name.casefold().split())


def parse_answer(value: object) -> str:
    """``"CT-0"`` .. ``"CT-4"``; anything else raises :class:`ClassroomInputError`."""
    if isinstance(value, str) and value in CLASSES:
        return value
    shown = str(value)[:20]
    raise ClassroomInputError(f"answer {shown!r} is not one of {', '.join(CLASSES)}")


@dataclass(frozen=True)
class ClassInfo:
    """A class session as everyone may see it (no secret, no answer)."""

    id: int
    code: str
    title: str
    dataset_digest: str
    dataset_label: str
    dataset_root: str
    names_public: bool
    created_at: datetime
    ended_at: datetime | None
    study_ids: tuple[int, ...]

    @property
    def join_code(self) -> str:
        return format_code(self.code)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass(frozen=True)
class View:
    """What a viewer shows: study, axial slice, window (level, width, preset name), large-view plane, crosshair
    (row, column). Validated at construction (:class:`ClassroomInputError`)."""

    study_id: int
    slice: int
    level: float
    width: float
    window_name: str | None
    plane: str
    row: int
    col: int

    def __post_init__(self) -> None:
        import math

        for name in ("study_id", "slice", "row", "col"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ClassroomInputError(f"view {name} {str(v)[:20]!r} is not a non-negative integer")
        for name in ("level", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ClassroomInputError(f"view {name} {str(v)[:20]!r} is not a number")
            object.__setattr__(self, name, float(v))
        if self.width <= 0:
            raise ClassroomInputError("the window width must be positive")
        if self.plane not in PLANES:
            raise ClassroomInputError(f"plane {str(self.plane)[:20]!r} is not one of {', '.join(PLANES)}")
        if self.window_name is not None and (not isinstance(self.window_name, str) or len(self.window_name) > 16):
            raise ClassroomInputError("the window preset name is not usable")


@dataclass(frozen=True)
class Presenter:
    """Where the teacher is (:class:`View`) and the class's current question; ``version`` moves on every change."""

    version: int
    view: View
    question_id: int | None
    updated_at: datetime


@dataclass(frozen=True)
class TeacherGrant:
    """Proof of being the class's teacher, checked against the database on every teacher action.

    ``key`` is the teacher key (kept in the teacher's server-side session), ``subject`` a login identity
    (``"<issuer>|<sub>"`` from ``st.login``); either one that matches the class is enough.
    """

    class_id: int
    key: str | None = None
    subject: str | None = None

    def __repr__(self) -> str:  # never print the key into a log
        return f"TeacherGrant(class_id={self.class_id}, key={'***' if self.key else None}, subject={self.subject!r})"


@dataclass(frozen=True)
class Seat:
    """A student in a class: who (id, name) and, right after joining, the token of their link."""

    participant_id: int
    class_id: int
    name: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Seat(participant_id={self.participant_id}, class_id={self.class_id}, name={self.name!r})"


@dataclass(frozen=True)
class StudentQuestion:
    """A question as a student may see it. Before reveal: no class and no figures (the fields are ``None``)."""

    id: int
    number: int
    study_id: int
    state: str
    truth: str | None
    involvement_pct: float | None
    estimated_pct: float | None
    estimate_calibrated: bool | None
    has_mask: bool | None

    @property
    def revealed(self) -> bool:
        return self.state == "revealed"

    @property
    def open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class TeacherQuestion:
    """A question as its teacher sees it (always with the class and the figures) and the live answer counts."""

    id: int
    number: int
    study_id: int
    state: str
    truth: str
    involvement_pct: float | None
    estimated_pct: float | None
    estimate_calibrated: bool | None
    has_mask: bool
    opened_at: datetime
    counts: dict
    n_answers: int

    @property
    def revealed(self) -> bool:
        return self.state == "revealed"


@dataclass(frozen=True)
class AnswerResult:
    """What an answer did: the answer on record (the first one given) and whether this call stored it."""

    question_id: int
    answer: str
    stored: bool


@dataclass(frozen=True)
class Followers:
    """Students present (seen within :data:`PRESENT_WITHIN_S`) and how many of them follow the teacher."""

    present: int
    following: int
    joined: int
