"""Typed errors of the classroom package; ``str(e)`` is a complete sentence for a user (no traceback)."""

from __future__ import annotations

from mosmed.errors import MosmedError

__all__ = [
    "ClassroomError",
    "ClassroomInputError",
    "NotAllowedError",
    "TooManyAttemptsError",
    "ClassNotFoundError",
    "QuestionClosedError",
]


class ClassroomError(MosmedError):
    """Base of every classroom problem (database outages are :class:`mosmed.reviews.errors.ReviewDatabaseError`)."""


class ClassroomInputError(ClassroomError):
    """A title, name, study list or answer that cannot be taken as given."""


class NotAllowedError(ClassroomError):
    """The caller may not do this: not the class's teacher, not a participant of the class, an ended class."""


class ClassNotFoundError(ClassroomError):
    """No joinable class has this code, or the student token does not belong to it."""


class TooManyAttemptsError(ClassroomError):
    """Too many failed join / rejoin / teacher attempts recently; nothing was checked."""


class QuestionClosedError(ClassroomError):
    """The question no longer takes answers (closed or revealed before this answer was given)."""
