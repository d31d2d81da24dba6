"""Typed errors of the core package.

Every error's ``str()`` is a complete sentence a user can read without a traceback: it names the study (when
there is one) and the problem, e.g. ``"study 255: mask grid (512, 512, 40) differs from study grid (512, 512,
38)"``. The app and the CLI show ``str(e)`` as it is, so the wording here is user-facing text.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "MosmedError",
    "RegistryError",
    "VolumeError",
    "MaskMismatchError",
    "UnsafePathError",
    "CacheError",
]


class MosmedError(Exception):
    """Base class of every error the core raises on purpose.

    Parameters
    ----------
    reason : str
        What is wrong, as a sentence fragment without the study prefix ("file is empty (0 bytes)").
    study_id : int, optional
        The study the problem belongs to; ``str(e)`` then starts with ``"study <id>: "``.
    path : Path or str, optional
        The file involved, kept for logs and tooltips (not repeated in ``str(e)`` unless the reason says it).
    """

    def __init__(self, reason: str, *, study_id: int | None = None, path: Path | str | None = None) -> None:
        self.reason = str(reason).strip() or "unknown problem"
        self.study_id = int(study_id) if study_id is not None else None
        self.path = str(path) if path is not None else None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The complete user-facing sentence."""
        if self.study_id is None:
            return self.reason
        return f"study {self.study_id}: {self.reason}"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        # Errors cross process boundaries (parallel cache build): keep the keyword arguments when pickled.
        return (_rebuild, (type(self), self.reason, self.study_id, self.path))


def _rebuild(cls, reason, study_id, path):
    return cls(reason, study_id=study_id, path=path)


class RegistryError(MosmedError):
    """The registry as a whole is unusable: missing, not a spreadsheet, empty, or without the needed columns."""


class VolumeError(MosmedError):
    """A NIfTI file is missing, unreadable or holds data that is not a usable 3D image."""


class MaskMismatchError(VolumeError):
    """A lesion mask does not share its study's grid (shape or affine)."""


class UnsafePathError(MosmedError):
    """A path points outside the dataset root (``..``, an absolute path elsewhere, a link leading out)."""


class CacheError(MosmedError):
    """The data cache cannot be used or written."""
