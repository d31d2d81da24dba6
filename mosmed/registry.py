"""The dataset registry: read it as published, or build it by scanning; check every row; keep paths safe.

MosMedData ships ``dataset_registry.xlsx`` with one sheet, ``"MosMedData COVID19_1110"``, and the columns
``study_id`` (int), ``category`` (``"CT-0"`` .. ``"CT-4"``), ``study_file`` and ``mask_file``. Paths look like
``"/studies/CT-0/study_0001.nii.gz"``: the leading slash means *the dataset root*, not the filesystem root.
``mask_file`` is empty where a study has no mask; it is read as NaN and never turned into the string ``"nan"``.

Every row is checked. Rows that cannot be identified (no whole-number id, a duplicate id) are reported as a
:class:`RowProblem` and dropped; rows with an identity but a problem (unknown class, unsafe path, missing
file) are kept with ``status == "error"`` and the reason, so the app can list them. The other rows load.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import RegistryError, UnsafePathError
from .severity import CLASSES

__all__ = [
    "REGISTRY_COLUMNS",
    "REGISTRY_SHEET",
    "REGISTRY_XLSX",
    "REGISTRY_CSV",
    "RowProblem",
    "Registry",
    "safe_join",
    "load_registry",
    "read_registry_file",
    "scan_registry",
    "write_registry_xlsx",
    "write_registry_csv",
    "normalize_category",
    "study_rel_path",
    "mask_rel_path",
]

REGISTRY_COLUMNS: tuple[str, ...] = ("study_id", "category", "study_file", "mask_file")
REGISTRY_SHEET = "MosMedData COVID19_1110"
REGISTRY_XLSX = "dataset_registry.xlsx"
REGISTRY_CSV = "dataset_registry.csv"

# Text a hand-edited sheet or a careless ``df.astype(str).to_csv`` leaves where a cell was empty.
_EMPTY_TEXT = frozenset({"", "nan", "none", "null", "na", "n/a", "nat", "-"})
_ZIP_MAGIC = b"PK\x03\x04"
_ID_IN_NAME = re.compile(r"(?<![0-9])([0-9]+)(?![0-9])")


# --------------------------------------------------------------------------------------------------- paths


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str) and value.strip().lower() in _EMPTY_TEXT:
        return True
    return False


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


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

    root_res = Path(root).resolve()
    if norm.startswith("/"):
        as_abs = Path(norm)
        if _is_within(as_abs, root_res) or _is_within(as_abs, Path(os.path.abspath(root))):
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
    if not _is_within(resolved, root_res):
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


def _shorten(text: str, limit: int = 120) -> str:
    """``text`` cut to about ``limit`` characters for a message (a hostile 5000-character name stays readable)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}…{text[-limit // 3:]} ({len(text)} characters)"


def _checked_path(root: Path, rel: str, what: str, errors: list[str]) -> str | None:
    """The absolute path of a registry row's ``what`` file ("study" or "mask"), or ``None`` with the reason
    appended to ``errors`` (unsafe path, missing, unreadable)."""
    try:
        p = safe_join(root, rel)
    except UnsafePathError as exc:
        errors.append(f"unsafe {what} path: {exc.reason}")
        return None
    found, why = _locate(p, what, rel)
    if why:
        errors.append(why)
    return found


def _locate(path: Path, what: str, shown: str) -> tuple[str | None, str | None]:
    """``(existing path, None)`` or ``(None, reason)`` for a row's checked ``path``; never raises OSError.

    ``what`` is ``"study"`` or ``"mask"``; ``shown`` the registry text, used in the reason.
    """
    try:
        found = _existing_variant(path)
    except OSError as exc:
        # One row naming an impossible file (too long, bad encoding for the file system...) is that row's
        # problem; it must not make the whole registry unopenable.
        why = exc.strerror or type(exc).__name__
        return None, f"{what} file cannot be examined ({why}): {_shorten(shown)}"
    if found is None:
        return None, f"{what} file missing: {_shorten(shown)}"
    return str(found), None


def study_rel_path(study_id: int, category: str) -> str:
    """The published form of a study path: ``/studies/CT-1/study_0255.nii.gz``."""
    return f"/studies/{category}/study_{int(study_id):04d}.nii.gz"


def mask_rel_path(study_id: int) -> str:
    """The published form of a mask path: ``/masks/study_0255_mask.nii.gz``."""
    return f"/masks/study_{int(study_id):04d}_mask.nii.gz"


# --------------------------------------------------------------------------------------------- structures


@dataclass
class RowProblem:
    """A registry row that could not be kept at all.

    ``row`` is the 1-based spreadsheet row (the header is row 1); for a scanned registry it counts scanned
    files the same way. ``study_id`` is the id when one could be read.
    """

    row: int
    study_id: int | None
    reason: str

    def __str__(self) -> str:
        who = f"study {self.study_id}" if self.study_id is not None else "registry"
        return f"{who} (row {self.row}): {self.reason}"


@dataclass
class Registry:
    """A checked registry.

    Attributes
    ----------
    root : Path
        The dataset root.
    source : str
        The registry file read, or ``"scanned"`` when built from ``studies/`` and ``masks/``.
    df : pandas.DataFrame
        One row per usable registry row, indexed by study id (int, index unnamed so ``"study_id"`` stays an
        unambiguous column). Columns: ``study_id`` (int), ``category`` (str), ``study_file`` (str),
        ``mask_file`` (str or NaN), ``study_path`` / ``mask_path`` (absolute checked path or None; ``mask_path``
        is set only when the mask file is present and safe), ``has_mask`` (bool, a usable mask file exists),
        ``status`` (``"ok"`` or ``"error"``), ``error`` (``""`` when ok, else every reason joined by ``"; "``),
        ``row`` (1-based spreadsheet row).
    problems : list of RowProblem
        Rows that were dropped (no usable id, duplicate id, orphan mask in a scan).
    """

    root: Path
    source: str
    df: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """Study ids of the kept rows, in registry order."""
        return [int(i) for i in self.df["study_id"].tolist()]

    @property
    def is_scanned(self) -> bool:
        return self.source == "scanned"

    def row(self, study_id: int) -> pd.Series:
        """The row of one study; ``KeyError`` naming the id when absent."""
        try:
            return self.df.loc[int(study_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"study {study_id} is not in the registry") from None

    def issues(self) -> list[tuple[int | None, str]]:
        """Every problem as ``(study_id, reason)``: dropped rows first, then kept rows with status error."""
        out: list[tuple[int | None, str]] = [
            (p.study_id, f"row {p.row}: {p.reason}") for p in self.problems
        ]
        bad = self.df[self.df["status"] != "ok"]
        out.extend((int(sid), str(err)) for sid, err in zip(bad["study_id"], bad["error"]))
        return out

    def counts(self) -> dict[str, int]:
        """Number of kept rows per class label (unknown labels included as they are)."""
        return {str(k): int(v) for k, v in self.df["category"].value_counts(sort=False).items()}


# ------------------------------------------------------------------------------------------------ reading


def _clean_header(value: Any) -> str:
    if value is None:
        return ""
    return unicodedata.normalize("NFC", str(value)).strip().lower().replace(" ", "_")


def _frame_from_rows(rows: list[tuple[int, list[Any]]], where: str) -> pd.DataFrame:
    """Build the raw frame from ``(spreadsheet_row, values)`` with the first non-empty row as header."""
    rows = [(n, vals) for n, vals in rows if any(not _is_missing(v) for v in vals)]
    if not rows:
        raise RegistryError(f"registry {where} is empty: it has no header and no rows")
    header_row, header = rows[0]
    names = [_clean_header(h) for h in header]
    missing = [c for c in REGISTRY_COLUMNS if c not in names]
    if missing:
        found = ", ".join(repr(n) for n in names if n) or "none"
        raise RegistryError(
            f"registry {where} has no column {', '.join(repr(m) for m in missing)} "
            f"(row {header_row} has {found}; expected {', '.join(REGISTRY_COLUMNS)})"
        )
    pos = {c: names.index(c) for c in REGISTRY_COLUMNS}
    data = []
    for n, vals in rows[1:]:
        rec = {c: (vals[pos[c]] if pos[c] < len(vals) else None) for c in REGISTRY_COLUMNS}
        rec["row"] = n
        data.append(rec)
    if not data:
        raise RegistryError(f"registry {where} is empty: it has a header but no study rows")
    df = pd.DataFrame(data, columns=[*REGISTRY_COLUMNS, "row"], dtype=object)
    df["row"] = df["row"].astype(int)
    return df


def _read_xlsx(path: Path) -> pd.DataFrame:
    import openpyxl  # local: only needed for spreadsheets
    from openpyxl.utils.exceptions import InvalidFileException

    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != _ZIP_MAGIC:
        raise RegistryError(f"registry {path.name} is not a spreadsheet (an .xlsx file is a zip archive; this one is not)",
                            path=path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError, TypeError, EOFError) as exc:
        raise RegistryError(f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})",
                            path=path) from None
    except Exception as exc:  # zipfile.BadZipFile and parser errors from a damaged workbook
        raise RegistryError(f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})",
                            path=path) from None
    try:
        sheets = wb.sheetnames
        if not sheets:
            raise RegistryError(f"registry {path.name} has no sheet", path=path)
        # The published sheet by name; otherwise the first sheet (hand-made registries name theirs freely).
        order = [REGISTRY_SHEET] if REGISTRY_SHEET in sheets else []
        order += [s for s in sheets if s not in order]
        first_error: RegistryError | None = None
        for name in order:
            ws = wb[name]
            rows = [(i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1)]
            try:
                return _frame_from_rows(rows, f"{path.name} (sheet {name!r})")
            except RegistryError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise RegistryError(first_error.reason, path=path)
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})",
                            path=path) from None
    finally:
        wb.close()


def _read_csv(path: Path) -> pd.DataFrame:
    import csv

    raw = path.read_bytes()
    if b"\x00" in raw[:4096] or raw[:4] == _ZIP_MAGIC:
        raise RegistryError(f"registry {path.name} is not a CSV text file (it holds binary data)", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"registry {path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV",
                            path=path) from None
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    # Spreadsheets in many locales export CSV with ';' (or tabs); pick the delimiter from the header line.
    delim = max((",", ";", "\t"), key=first.count) if first else ","
    try:
        rows = [(i, row) for i, row in enumerate(csv.reader(text.splitlines(), delimiter=delim), start=1)]
    except csv.Error as exc:
        raise RegistryError(f"registry {path.name} is not valid CSV ({exc})", path=path) from None
    return _frame_from_rows(rows, path.name)


def read_registry_file(path: Path) -> pd.DataFrame:
    """Read a registry file (``.xlsx`` as published, or ``.csv`` with the same columns), unvalidated rows.

    Returns
    -------
    pandas.DataFrame
        Columns ``study_id, category, study_file, mask_file`` (object dtype, cells as read; empty cells None)
        plus ``row``, the 1-based spreadsheet row of each record. Blank rows are skipped.

    Raises
    ------
    RegistryError
        Missing file, zero bytes, not a spreadsheet / not CSV text, no header, a missing column, no rows.
    """
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"registry file {path} does not exist", path=path)
    if not path.is_file():
        raise RegistryError(f"registry {path} is not a file", path=path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RegistryError(f"registry {path.name} cannot be read ({exc.strerror})", path=path) from None
    if size == 0:
        raise RegistryError(f"registry {path.name} is empty (0 bytes)", path=path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            return _read_xlsx(path)
        if suffix in (".csv", ".txt", ".tsv"):
            return _read_csv(path)
    except PermissionError as exc:
        raise RegistryError(f"registry {path.name} cannot be read ({exc.strerror})", path=path) from None
    raise RegistryError(f"registry {path.name} has an unsupported type {suffix!r} (use .xlsx or .csv)", path=path)


def normalize_category(value: Any) -> str | None:
    """``"CT-2"`` for ``"CT-2"``, ``"ct2"``, ``"CT–2"`` (en dash), ``"CT 2"``; None when not a known class."""
    if _is_missing(value):
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().upper()
    text = re.sub(r"[\u2010-\u2015\u2212_\s]+", "-", text)
    m = re.fullmatch(r"CT-?([0-4])", text)
    if m:
        return f"CT-{m.group(1)}"
    return None


def _parse_id(value: Any) -> int | None:
    if _is_missing(value) or isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        v = int(value)
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f) or not f.is_integer():
            return None
        v = int(f)
    else:
        text = unicodedata.normalize("NFKC", str(value)).strip()
        if not re.fullmatch(r"[0-9]+(\.0*)?", text):
            return None
        v = int(float(text)) if "." in text else int(text)
    return v if v >= 0 else None


def _text(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFC", str(value)).strip()


# ----------------------------------------------------------------------------------------------- scanning


def scan_registry(root: Path) -> pd.DataFrame:
    """Build raw registry rows from ``studies/*/*.nii[.gz]`` and ``masks/*_mask.nii[.gz]``.

    The class is the study's directory name (``CT-0`` .. ``CT-4``; another name is kept and later reported
    as an unknown class), the id is the number in the file name (none -> reported). A mask whose study is
    not found gets a row of its own with no study file, so it is reported rather than hidden.

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`read_registry_file`, paths in the published ``/studies/...`` form,
        sorted by study id; ``row`` numbers the scanned records from 2 like a spreadsheet.
    """
    root = Path(root)
    studies_dir = root / "studies"
    masks_dir = root / "masks"
    records: list[dict[str, Any]] = []

    def nifti(p: Path) -> bool:
        n = p.name.lower()
        return p.is_file() and (n.endswith(".nii.gz") or n.endswith(".nii"))

    def ident(name: str) -> int | None:
        stem = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
        m = re.search(r"study_([0-9]+)", stem) or _ID_IN_NAME.search(stem)
        return int(m.group(1)) if m else None

    masks: dict[int, str] = {}
    orphan_masks: list[tuple[str, str]] = []
    if masks_dir.is_dir():
        for p in sorted(masks_dir.iterdir()):
            if not nifti(p):
                continue
            sid = ident(p.name)
            rel = f"/masks/{p.name}"
            if sid is None or sid in masks:
                orphan_masks.append((p.name, rel))
            else:
                masks[sid] = rel

    used_masks: set[int] = set()
    if studies_dir.is_dir():
        for d in sorted(studies_dir.iterdir()):
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                if not nifti(p):
                    continue
                sid = ident(p.name)
                mask = masks.get(sid) if sid is not None else None
                if mask is not None:
                    used_masks.add(sid)  # type: ignore[arg-type]
                records.append({"study_id": sid if sid is not None else p.name, "category": d.name,
                                "study_file": f"/studies/{d.name}/{p.name}", "mask_file": mask})
    for sid, rel in masks.items():
        if sid not in used_masks:
            records.append({"study_id": sid, "category": None, "study_file": None, "mask_file": rel})
    for name, rel in orphan_masks:
        records.append({"study_id": name, "category": None, "study_file": None, "mask_file": rel})

    def order(rec: dict[str, Any]) -> tuple[int, int, str]:
        sid = rec["study_id"]
        return (0, sid, "") if isinstance(sid, int) else (1, 0, str(sid))

    records.sort(key=order)
    df = pd.DataFrame(records, columns=list(REGISTRY_COLUMNS), dtype=object)
    df["row"] = np.arange(2, len(df) + 2, dtype=int)
    return df


# -------------------------------------------------------------------------------------------- validation


def _validate(root: Path, raw: pd.DataFrame, scanned: bool) -> tuple[pd.DataFrame, list[RowProblem]]:
    root = Path(root)
    problems: list[RowProblem] = []
    seen: dict[int, int] = {}
    out: list[dict[str, Any]] = []
    for rec in raw.to_dict("records"):
        rown = int(rec.get("row", 0))
        sid = _parse_id(rec["study_id"])
        if sid is None:
            shown = _text(rec["study_id"])
            if scanned:
                reason = (f"file {shown!r} has no study number in its name"
                          if shown else "study id is empty")
            else:
                reason = (f"study id {shown!r} is not a whole number" if shown else "study id is empty")
            problems.append(RowProblem(rown, None, reason))
            continue
        if sid in seen:
            problems.append(RowProblem(rown, sid, f"duplicate study id {sid} (first at row {seen[sid]}); row ignored"))
            continue
        seen[sid] = rown

        errors: list[str] = []
        raw_cat = _text(rec["category"])
        cat = normalize_category(raw_cat)
        if cat is None:
            if raw_cat is None and scanned:
                errors.append("mask file has no study file in studies/")
            elif raw_cat is None:
                errors.append("class is empty (expected one of " + ", ".join(CLASSES) + ")")
            else:
                errors.append(f"unknown class {raw_cat!r} (expected one of {', '.join(CLASSES)})")
        category = cat if cat is not None else (raw_cat or "")

        study_file = _text(rec["study_file"])
        study_path: str | None = None
        if study_file is None:
            if not (scanned and raw_cat is None):
                errors.append("no study file given")
            study_file = ""
        else:
            study_path = _checked_path(root, study_file, "study", errors)

        mask_file = _text(rec["mask_file"])
        mask_path: str | None = None
        if mask_file is not None:
            mask_path = _checked_path(root, mask_file, "mask", errors)

        out.append({
            "study_id": sid,
            "category": category,
            "study_file": study_file,
            "mask_file": mask_file if mask_file is not None else np.nan,
            "study_path": study_path,
            "mask_path": mask_path,
            "has_mask": mask_path is not None,
            "status": "error" if errors else "ok",
            "error": "; ".join(errors),
            "row": rown,
        })

    cols = [*REGISTRY_COLUMNS, "study_path", "mask_path", "has_mask", "status", "error", "row"]
    df = pd.DataFrame(out, columns=cols)
    df["study_id"] = df["study_id"].astype("int64")
    df["has_mask"] = df["has_mask"].astype(bool)
    df["row"] = df["row"].astype("int64")
    for c in ("category", "study_file", "mask_file", "study_path", "mask_path", "status", "error"):
        df[c] = df[c].astype(object)
    df["mask_file"] = df["mask_file"].where(df["mask_file"].notna(), np.nan)
    df["study_path"] = df["study_path"].where(df["study_path"].notna(), None)
    df["mask_path"] = df["mask_path"].where(df["mask_path"].notna(), None)
    df.index = pd.Index(df["study_id"].to_numpy(), dtype="int64")
    return df, problems


def load_registry(root: Path) -> Registry:
    """Open the registry of a dataset root and check every row.

    Reads ``dataset_registry.xlsx``; else ``dataset_registry.csv``; else scans ``studies/`` and ``masks/``.

    Raises
    ------
    RegistryError
        When the root does not exist, the registry file is unusable, or there is no registry and no study.
    """
    root = Path(root)
    if not root.exists():
        raise RegistryError(f"dataset folder {root} does not exist", path=root)
    if not root.is_dir():
        raise RegistryError(f"dataset path {root} is not a folder", path=root)
    xlsx, csv_path = root / REGISTRY_XLSX, root / REGISTRY_CSV
    if xlsx.exists():
        raw, source, scanned = read_registry_file(xlsx), str(xlsx), False
    elif csv_path.exists():
        raw, source, scanned = read_registry_file(csv_path), str(csv_path), False
    else:
        raw, source, scanned = scan_registry(root), "scanned", True
        if raw.empty:
            raise RegistryError(
                f"dataset folder {root} has no {REGISTRY_XLSX}, no {REGISTRY_CSV} and no studies "
                f"(expected studies/CT-0..CT-4/study_NNNN.nii.gz)", path=root)
    df, problems = _validate(root, raw, scanned)
    return Registry(root=root, source=source, df=df, problems=problems)


# ------------------------------------------------------------------------------------------------ writing


def _records_for_writing(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    if "study_id" not in df.columns:
        df = df.reset_index().rename(columns={"index": "study_id"})
    missing = [c for c in REGISTRY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write a registry without column(s) {', '.join(missing)}")
    out = []
    for sid, cat, sf, mf in df[list(REGISTRY_COLUMNS)].itertuples(index=False, name=None):
        sid_v = _parse_id(sid)
        out.append((
            sid_v if sid_v is not None else (None if _is_missing(sid) else str(sid)),
            None if _is_missing(cat) else str(cat),
            None if _is_missing(sf) else str(sf),
            None if _is_missing(mf) else str(mf),
        ))
    return out


def _atomic_write(path: Path, write: "callable") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_registry_xlsx(df: pd.DataFrame, path: Path, sheet_name: str = REGISTRY_SHEET) -> Path:
    """Write a registry spreadsheet in the published form, atomically (temp file, fsync, rename).

    One sheet named ``sheet_name``, header ``study_id, category, study_file, mask_file``; ``study_id`` written
    as a number, the others as text, an empty ``mask_file`` as an empty cell (never ``"nan"``).
    ``df`` needs the four columns (or ``study_id`` as its index).
    """
    import openpyxl

    records = _records_for_writing(df)

    def write(tmp: Path) -> None:
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = sheet_name
        ws.append(list(REGISTRY_COLUMNS))
        for rec in records:
            ws.append(list(rec))
        # Column widths as in the published file, so it opens looking the same.
        for col, width in zip("ABCD", (8.0, 9.0, 27.8, 27.8)):
            ws.column_dimensions[col].width = width
        wb.save(tmp)

    _atomic_write(Path(path), write)
    return Path(path)


def write_registry_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a registry as UTF-8 CSV with the same columns, atomically; empty ``mask_file`` stays empty."""
    import csv

    records = _records_for_writing(df)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(REGISTRY_COLUMNS)
            for rec in records:
                w.writerow(["" if v is None else v for v in rec])

    _atomic_write(Path(path), write)
    return Path(path)


def iter_ok(reg: Registry) -> Iterable[pd.Series]:
    """Rows whose status is ok, in registry order."""
    for _, row in reg.df[reg.df["status"] == "ok"].iterrows():
        yield row
