"""Path safety: every path from a registry, a URL or a user is joined to the dataset root through here.

- :func:`safe_join` refuses traversal (``..``), absolute paths outside the root, Windows drives and links that
  lead out of the root; ``"/studies/..."`` means the dataset root, as MosMedData's registry writes it;
- :func:`check_file` joins and locates a registry row's file (Unicode NFC/NFD variants included) and says why
  not when it cannot; :class:`FileChecker` does the same for every row of one registry, resolving the root and
  each directory once (the registry of a 100 000-row dataset is checked in seconds, not minutes);
- :func:`recheck` runs the containment check again at open time (a file swapped for a link leading out after
  the registry was loaded is refused, not followed);
- :func:`study_rel_path` / :func:`mask_rel_path`: the published forms of a study's paths.
"""

from __future__ import annotations

import math
import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath

from mosmed.errors import UnsafePathError

__all__ = [
    "safe_join",
    "is_within",
    "check_file",
    "FileChecker",
    "recheck",
    "shorten",
    "study_rel_path",
    "mask_rel_path",
]


def is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _split(rel: str) -> tuple[str, str, list[str]]:
    """``(text, norm, parts)`` of an untrusted path, or UnsafePathError: the text checks of :func:`safe_join`."""
    if rel is None or (isinstance(rel, float) and math.isnan(rel)):
        raise UnsafePathError("empty path")
    if not isinstance(rel, (str, os.PathLike)):
        raise UnsafePathError(f"path {rel!r} is not text")
    text = os.fspath(rel)
    if isinstance(text, bytes):
        raise UnsafePathError("path is bytes, not text")
    text = text.strip()
    if not text:
        raise UnsafePathError("empty path")
    if "\x00" in text:
        raise UnsafePathError(f"path {text!r} contains a NUL byte")
    if re.match(r"^[A-Za-z]:[\\/]", text) or text.startswith("\\\\"):
        raise UnsafePathError(f"path {text!r} is a Windows absolute path outside the dataset root")
    # Registries edited on Windows may use backslashes; a backslash is never part of a MosMedData name.
    norm = text.replace("\\", "/")
    parts = [p for p in PurePosixPath(norm).parts if p not in ("/", "", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"path {text!r} contains '..' (leads outside the dataset root)")
    if not parts:
        raise UnsafePathError(f"path {text!r} names no file")
    return text, norm, parts


def safe_join(root: Path, rel: str) -> Path:
    """Join an untrusted path to the dataset root, refusing anything that leads outside it.

    Parameters
    ----------
    root : Path
        The dataset root.
    rel : str
        A path from a registry, a query parameter or a user. ``"/studies/CT-0/study_0001.nii.gz"`` and
        ``"studies/CT-0/study_0001.nii.gz"`` both mean a file under ``root``. An absolute filesystem path is
        accepted only when it already lies inside ``root``.

    Returns
    -------
    Path
        The resolved absolute path (symlinks followed), guaranteed to lie inside the resolved root. It may not
        exist: checking presence is the caller's job.

    Raises
    ------
    UnsafePathError
        For an empty path, a NUL byte, a ``..`` component, a Windows drive or UNC path, an absolute path
        outside the root, or a symbolic link that leads out of the root.
    """
    text, norm, parts = _split(rel)
    root_res = Path(root).resolve()
    if norm.startswith("/"):
        as_abs = Path(norm)
        if is_within(as_abs, root_res) or is_within(as_abs, Path(os.path.abspath(root))):
            candidate = as_abs
        else:
            candidate = root_res.joinpath(*parts)
            # "/studies/..." is dataset-root-relative (the published form). Only when the root-relative file
            # is absent while the same text names an existing file elsewhere is it an absolute path pointing
            # outside the root; refuse that rather than silently read the other file.
            if not os.path.lexists(candidate) and os.path.lexists(as_abs):
                raise UnsafePathError(f"absolute path {text!r} lies outside the dataset root")
    else:
        candidate = root_res.joinpath(*parts)

    resolved = candidate.resolve()
    if not is_within(resolved, root_res):
        raise UnsafePathError(f"path {text!r} is a link that leads outside the dataset root")
    return resolved


def _existing_variant(path: Path) -> Path | None:
    """``path`` if it exists, else its Unicode NFC/NFD spelling if that exists (names copied via macOS).

    Raises
    ------
    OSError
        When the file system refuses to examine the name at all (a name longer than ``NAME_MAX``/``PATH_MAX``:
        ``ENAMETOOLONG``, which ``Path.is_file`` does not swallow); :func:`_locate` turns it into a row error.
    """
    if path.is_file():
        return path
    s = str(path)
    for form in ("NFC", "NFD"):
        alt = Path(unicodedata.normalize(form, s))
        if alt != path and alt.is_file():
            return alt
    return None


def shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to about ``limit`` characters for a message (a hostile 5000-character name stays readable)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}…{text[-limit // 3 :]} ({len(text)} characters)"


def check_file(root: Path, rel: str, what: str) -> tuple[Path | None, str | None]:
    """``(absolute path, None)`` of a registry row's ``what`` file ("study" or "mask"), or ``(None, reason)``
    (unsafe path, missing, cannot be examined); never raises."""
    try:
        p = safe_join(root, rel)
    except UnsafePathError as exc:
        return None, f"unsafe {what} path: {exc.reason}"
    return _locate(p, what, rel)


def _locate(path: Path, what: str, shown: str) -> tuple[Path | None, str | None]:
    """``(existing path, None)`` or ``(None, reason)`` for a row's checked ``path``; never raises OSError.

    ``what`` is ``"study"`` or ``"mask"``; ``shown`` the registry text, used in the reason.
    """
    try:
        found = _existing_variant(path)
    except OSError as exc:
        # One row naming an impossible file (too long, bad encoding for the file system...) is that row's
        # problem; it must not make the whole registry unopenable.
        why = exc.strerror or type(exc).__name__
        return None, f"{what} file cannot be examined ({why}): {shorten(shown)}"
    if found is None:
        return None, f"{what} file missing: {shorten(shown)}"
    return found, None


#: A path of plain components (``/studies/CT-0/study_0001.nii.gz`` or ``studies/...``): no ``.``, ``..``, empty
#: component, trailing slash or backslash. :class:`FileChecker` takes its fast path only for these.
_PLAIN = re.compile(r"^/?[^/\\]+(?:/[^/\\]+)*$")
_DRIVE = re.compile(r"^[A-Za-z]:")


class FileChecker:
    """:func:`check_file` for the many rows of one registry, with the same answers.

    :func:`check_file` resolves the root and every directory of the path again for each row (``Path.resolve``:
    one ``lstat`` per component, ~16 system calls and a dozen ``Path`` objects a row). Here the root is resolved
    once and each directory once per checker; a row then costs one ``lstat`` of its file. A file that is a
    symbolic link is resolved in full, as before. Any path that is not plain (see ``_PLAIN``), or that fails a
    check, goes through :func:`check_file` itself, so refusals keep their exact wording.

    A checker remembers the directories it resolved: make one per registry load (the paths are checked again
    when a study is opened, :func:`recheck`).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root_s = os.path.realpath(self.root)
        self._abs_s = os.path.abspath(self.root)
        self._dirs: dict[str, str] = {}

    def _within(self, path: str, root: str) -> bool:
        return path == root or path.startswith(root if root.endswith("/") else root + "/")

    def check(self, rel: str, what: str) -> tuple[Path | None, str | None]:
        """``(absolute path, None)`` or ``(None, reason)``, exactly as ``check_file(root, rel, what)``."""
        if not isinstance(rel, str):
            return check_file(self.root, rel, what)
        text = rel.strip()
        if not text or "\x00" in text or _DRIVE.match(text) or not _PLAIN.match(text):
            return check_file(self.root, rel, what)
        parts = text.strip("/").split("/")
        if any(p in (".", "..") for p in parts):
            return check_file(self.root, rel, what)
        given_inside = text.startswith("/") and (self._within(text, self._root_s) or self._within(text, self._abs_s))
        candidate = text if given_inside else os.path.join(self._root_s, *parts)
        head, name = os.path.split(candidate)
        real_head = self._dirs.get(head)
        if real_head is None:
            real_head = self._dirs[head] = os.path.realpath(head)
        path = os.path.join(real_head, name)
        try:
            st = os.lstat(path)  # lstat(real head / name) is lexists(candidate): the head's links followed
        except OSError:
            st = None  # missing (or unexaminable): check_file says which
            if text.startswith("/") and not given_inside and os.path.lexists(text):
                return check_file(self.root, rel, what)  # an absolute path outside: refused there
        if st is not None and stat.S_ISLNK(st.st_mode):
            path, st = os.path.realpath(path), None
        if not self._within(path, self._root_s):
            return check_file(self.root, rel, what)  # a link leading out: refused there
        if st is not None and stat.S_ISREG(st.st_mode):
            return Path(path), None
        return _locate(Path(path), what, rel)


def recheck(root: Path, path: str | Path, shown: str, what: str, study_id: int | None) -> Path:
    """The resolved ``path`` of a row's ``what`` file ("study" or "mask"), checked *now* to lie inside ``root``.

    The registry checked its paths when it was loaded; a file replaced afterwards by a link leading out of the
    dataset (time of check, time of use) would otherwise be followed. Every read of a study or mask file opens
    the path this returns, right after the check.

    Raises
    ------
    UnsafePathError
        Naming the study, when the path now leads outside the dataset root.
    """
    try:
        return safe_join(root, str(path))
    except UnsafePathError:
        raise UnsafePathError(
            f"unsafe {what} path: {shown or Path(str(path)).name} now leads outside the dataset root (the file "
            f"was replaced after the registry was checked); not opened",
            study_id=study_id,
            path=str(path),
        ) from None


def study_rel_path(study_id: int, category: str) -> str:
    """The published form of a study path: ``/studies/CT-1/study_0255.nii.gz``."""
    return f"/studies/{category}/study_{int(study_id):04d}.nii.gz"


def mask_rel_path(study_id: int) -> str:
    """The published form of a mask path: ``/masks/study_0255_mask.nii.gz``."""
    return f"/masks/study_{int(study_id):04d}_mask.nii.gz"
