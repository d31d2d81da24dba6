"""Typed errors of the review package; ``str(e)`` is a complete sentence for a user (no traceback)."""

from __future__ import annotations

from mosmed.errors import MosmedError

__all__ = ["ReviewError", "ReviewInputError", "ReviewConfigError", "ReviewDatabaseError", "SchemaTooNewError"]


class ReviewError(MosmedError):
    """Base of every review problem."""


class ReviewInputError(ReviewError):
    """A review, reader name or study id that cannot be saved as given (note too long, unknown flag ...)."""


class ReviewConfigError(ReviewError):
    """``MOSMED_DB`` names no usable database (unknown scheme, a path inside the cache or a dataset root)."""


class ReviewDatabaseError(ReviewError):
    """The database cannot be reached or written now (down, locked past the retries, disk full ...).

    What the user typed is not lost: the app keeps it in the session and saves it when the database is back.
    """


class SchemaTooNewError(ReviewDatabaseError):
    """The database was written by a newer version of the app; it is refused with no writes."""
