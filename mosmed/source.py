"""One registry row as a typed value: what the registry produces and everything downstream takes.

A :class:`StudySource` is frozen: the study id and class, the registry's text for its files, the checked
absolute paths, whether the row is usable (``status``/``error``) and its spreadsheet row. When a study is
opened, :meth:`StudySource.opened` re-checks the paths (a file swapped for a link leading out is refused) and
takes the files' identity (size, modification time) once; the cache key and every read of that open use
this one value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from mosmed.paths import recheck

__all__ = ["FileIdentity", "StudySource"]


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """A file as it was when a study was opened: resolved path, size and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class StudySource:
    """A registry row, checked.

    Attributes
    ----------
    study_id : int
    category : str
        ``"CT-0"`` .. ``"CT-4"`` (normalised), or the text as written when it is not a known class.
    study_file, mask_file : str, str or None
        The registry's text (``"/studies/CT-0/study_0001.nii.gz"``); ``mask_file`` is None when the cell is empty.
    study_path, mask_path : Path or None
        Absolute, checked paths inside the dataset root; ``mask_path`` only when the mask file is present.
    status : {"ok", "error"}
    error : str
        ``""`` when ok, else every reason joined by ``"; "``.
    row : int
        1-based spreadsheet row (the header is row 1).
    study, mask : FileIdentity or None
        Set by :meth:`opened`: the files' identity at open time (the cache key is made from them).
    """

    study_id: int
    category: str
    study_file: str
    mask_file: str | None
    study_path: Path | None
    mask_path: Path | None
    status: str
    error: str
    row: int
    study: FileIdentity | None = None
    mask: FileIdentity | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def has_mask(self) -> bool:
        """A usable mask file exists (the registry names one and it is present and safe)."""
        return self.mask_path is not None

    @property
    def is_opened(self) -> bool:
        return self.study is not None

    def failed(self, reason: str) -> StudySource:
        """This source in error with ``reason`` (a file that vanished or cannot be examined at open time)."""
        return replace(self, status="error", error=reason, study=None, mask=None)

    def identified(self) -> StudySource:
        """This source with its files' identity taken (two ``stat`` calls), without re-checking the paths.

        For keys and digests over a whole registry, where nothing is opened.
        """
        return self.opened(None)

    def opened(self, root: Path | None) -> StudySource:
        """This source with its paths re-checked against ``root`` now and its files' identity taken.

        ``root=None`` takes the identity without the re-check (see :meth:`identified`). A row already in error
        is returned as it is; a file that cannot be examined any more gives a source in error naming it.

        Raises
        ------
        UnsafePathError
            Naming the study, when a path now leads outside the dataset root: a refusal, nothing is read.
        """
        if not self.ok:
            return self
        if self.study_path is None:
            return self.failed("study file is not available")
        found: list[Path | None] = []
        idents: list[FileIdentity | None] = []
        for what, path, shown in (
            ("study", self.study_path, self.study_file),
            ("mask", self.mask_path, self.mask_file or ""),
        ):
            if path is None:
                found.append(None)
                idents.append(None)
                continue
            if root is not None:
                path = recheck(root, path, shown, what, self.study_id)
            try:
                st = os.stat(path)
            except OSError as e:
                return self.failed(f"cannot read {path.name}: {e.strerror or e}")
            found.append(path)
            idents.append(FileIdentity(str(path), int(st.st_size), int(st.st_mtime_ns)))
        return replace(self, study_path=found[0], mask_path=found[1], study=idents[0], mask=idents[1])
