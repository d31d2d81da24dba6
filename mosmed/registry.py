"""The dataset registry: read it as published, or build it by scanning; check every row into a typed source.

MosMedData ships ``dataset_registry.xlsx`` with one sheet, ``"MosMedData COVID19_1110"``, and the columns
``study_id`` (int), ``category`` (``"CT-0"`` .. ``"CT-4"``), ``study_file`` and ``mask_file``. Paths look like
``"/studies/CT-0/study_0001.nii.gz"``: the leading slash means *the dataset root*, not the filesystem root.
``mask_file`` is empty where a study has no mask; it is read as missing and never turned into ``"nan"``.

Every row is checked into a :class:`~mosmed.source.StudySource`. Rows that cannot be identified (no whole-number
id) are reported as a :class:`RowProblem` and dropped; a row repeating an earlier id is reported as a problem
too and kept apart (``Registry.duplicates``, in error) so the summary still has one row per registry row; rows
with an identity but a problem (unknown class, unsafe path, missing file) are kept with ``status == "error"``
and the reason, so the app can list them. The other rows load. Path safety lives in :mod:`mosmed.paths`,
writing registries in :mod:`mosmed.registry_write`.
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mosmed.errors import RegistryError
from mosmed.paths import FileChecker
from mosmed.severity import CLASSES
from mosmed.source import StudySource

__all__ = [
    "REGISTRY_COLUMNS",
    "REGISTRY_SHEET",
    "REGISTRY_XLSX",
    "REGISTRY_CSV",
    "RowProblem",
    "Registry",
    "load_registry",
    "read_registry_file",
    "scan_registry",
    "normalize_category",
    "parse_study_id",
    "is_missing",
]

REGISTRY_COLUMNS: tuple[str, ...] = ("study_id", "category", "study_file", "mask_file")
REGISTRY_SHEET = "MosMedData COVID19_1110"
REGISTRY_XLSX = "dataset_registry.xlsx"
REGISTRY_CSV = "dataset_registry.csv"
#: Columns of ``Registry.df``.
FRAME_COLUMNS = (*REGISTRY_COLUMNS, "study_path", "mask_path", "has_mask", "status", "error", "row")

# Text a hand-edited sheet or a careless ``df.astype(str).to_csv`` leaves where a cell was empty.
_EMPTY_TEXT = frozenset({"", "nan", "none", "null", "na", "n/a", "nat", "-"})
_ZIP_MAGIC = b"PK\x03\x04"
_ID_IN_NAME = re.compile(r"(?<![0-9])([0-9]+)(?![0-9])")


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str) and value.strip().lower() in _EMPTY_TEXT:
        return True
    return False


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
    sources : tuple of StudySource
        One per usable row (unique study ids), in registry order.
    duplicates : tuple of StudySource
        Rows repeating an earlier study id, in error (also listed in ``problems``); the summary keeps them.
    problems : list of RowProblem
        Rows that were dropped (no usable id, duplicate id, orphan mask in a scan).
    """

    root: Path
    source: str
    sources: tuple[StudySource, ...]
    duplicates: tuple[StudySource, ...] = ()
    problems: list[RowProblem] = field(default_factory=list)
    _by_id: dict[int, StudySource] = field(init=False, repr=False, compare=False)
    _df: pd.DataFrame | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self.sources = tuple(self.sources)
        self.duplicates = tuple(self.duplicates)
        self._by_id = {s.study_id: s for s in self.sources}

    # -- lookups -------------------------------------------------------------------------------------

    def get(self, study_id: int) -> StudySource:
        """The source of one study; ``KeyError`` naming the id when absent."""
        try:
            return self._by_id[int(study_id)]
        except (KeyError, ValueError, TypeError, OverflowError):
            raise KeyError(f"study {str(study_id)[:40]} is not in the registry") from None

    def __contains__(self, study_id: object) -> bool:
        try:
            return int(study_id) in self._by_id  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            return False

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def ids(self) -> list[int]:
        """Study ids of the kept rows, in registry order."""
        return [s.study_id for s in self.sources]

    def rows(self) -> tuple[StudySource, ...]:
        """Every row with a usable id, duplicates included, in spreadsheet order (one summary row each)."""
        if not self.duplicates:
            return self.sources
        return tuple(sorted((*self.sources, *self.duplicates), key=lambda s: s.row))

    def subset(self, ids) -> Registry:
        """The registry restricted to these study ids (in the order given; unknown ids are skipped)."""
        keep = [self._by_id[int(i)] for i in ids if int(i) in self._by_id]
        return Registry(root=self.root, source=self.source, sources=tuple(keep))

    @property
    def is_scanned(self) -> bool:
        return self.source == "scanned"

    # -- tables --------------------------------------------------------------------------------------

    @property
    def df(self) -> pd.DataFrame:
        """The kept rows as a table indexed by study id (index unnamed so ``"study_id"`` stays a column).

        Columns: ``study_id`` (int), ``category``, ``study_file``, ``mask_file`` (str or NaN, never "nan"),
        ``study_path`` / ``mask_path`` (str or None), ``has_mask``, ``status``, ``error``, ``row``.
        """
        if self._df is None:
            self._df = _frame(self.sources)
        return self._df

    def row(self, study_id: int) -> pd.Series:
        """The table row of one study; ``KeyError`` naming the id when absent."""
        try:
            return self.df.loc[int(study_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"study {study_id} is not in the registry") from None

    def issues(self) -> list[tuple[int | None, str]]:
        """Every problem as ``(study_id, reason)``: dropped rows first, then kept rows with status error."""
        out: list[tuple[int | None, str]] = [(p.study_id, f"row {p.row}: {p.reason}") for p in self.problems]
        out.extend((s.study_id, s.error) for s in self.sources if not s.ok)
        return out

    def counts(self) -> dict[str, int]:
        """Number of kept rows per class label (unknown labels included as they are)."""
        out: dict[str, int] = {}
        for s in self.sources:
            out[s.category] = out.get(s.category, 0) + 1
        return out


def _frame(sources: tuple[StudySource, ...]) -> pd.DataFrame:
    df = pd.DataFrame(
        [
            {
                "study_id": s.study_id,
                "category": s.category,
                "study_file": s.study_file,
                "mask_file": s.mask_file if s.mask_file is not None else np.nan,
                "study_path": str(s.study_path) if s.study_path is not None else None,
                "mask_path": str(s.mask_path) if s.mask_path is not None else None,
                "has_mask": s.has_mask,
                "status": s.status,
                "error": s.error,
                "row": s.row,
            }
            for s in sources
        ],
        columns=list(FRAME_COLUMNS),
    )
    df["study_id"] = df["study_id"].astype("int64")
    df["has_mask"] = df["has_mask"].astype(bool)
    df["row"] = df["row"].astype("int64")
    for c in ("category", "study_file", "mask_file", "study_path", "mask_path", "status", "error"):
        df[c] = df[c].astype(object)
    df["mask_file"] = df["mask_file"].where(df["mask_file"].notna(), np.nan)
    df["study_path"] = df["study_path"].where(df["study_path"].notna(), None)
    df["mask_path"] = df["mask_path"].where(df["mask_path"].notna(), None)
    df.index = pd.Index(df["study_id"].to_numpy(), dtype="int64")
    return df


# ------------------------------------------------------------------------------------------------ reading


def _clean_header(value: Any) -> str:
    if value is None:
        return ""
    return unicodedata.normalize("NFC", str(value)).strip().lower().replace(" ", "_")


def _frame_from_rows(rows: list[tuple[int, list[Any]]], where: str) -> pd.DataFrame:
    """Build the raw frame from ``(spreadsheet_row, values)`` with the first non-empty row as header."""
    rows = [(n, vals) for n, vals in rows if any(not is_missing(v) for v in vals)]
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
        raise RegistryError(
            f"registry {path.name} is not a spreadsheet (an .xlsx file is a zip archive; this one is not)", path=path
        )
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError, TypeError, EOFError) as exc:
        raise RegistryError(
            f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})", path=path
        ) from None
    except Exception as exc:  # zipfile.BadZipFile and parser errors from a damaged workbook
        raise RegistryError(
            f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})", path=path
        ) from None
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
        raise RegistryError(
            f"registry {path.name} could not be read as a spreadsheet ({type(exc).__name__}: {exc})", path=path
        ) from None
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
        raise RegistryError(
            f"registry {path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV", path=path
        ) from None
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
    if is_missing(value):
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().upper()
    text = re.sub(r"[\u2010-\u2015\u2212_\s]+", "-", text)
    m = re.fullmatch(r"CT-?([0-4])", text)
    if m:
        return f"CT-{m.group(1)}"
    return None


def parse_study_id(value: Any) -> int | None:
    if is_missing(value) or isinstance(value, bool):
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
    if is_missing(value):
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
                records.append(
                    {
                        "study_id": sid if sid is not None else p.name,
                        "category": d.name,
                        "study_file": f"/studies/{d.name}/{p.name}",
                        "mask_file": mask,
                    }
                )
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


def _validate(
    root: Path, raw: pd.DataFrame, scanned: bool
) -> tuple[list[StudySource], list[StudySource], list[RowProblem]]:
    root = Path(root)
    problems: list[RowProblem] = []
    seen: dict[int, int] = {}
    out: list[StudySource] = []
    dups: list[StudySource] = []
    checker = FileChecker(root)  # the root and each directory resolved once for the whole registry
    for rec in raw.to_dict("records"):
        rown = int(rec.get("row", 0))
        sid = parse_study_id(rec["study_id"])
        if sid is None:
            shown = _text(rec["study_id"])
            if scanned:
                reason = f"file {shown!r} has no study number in its name" if shown else "study id is empty"
            else:
                reason = f"study id {shown!r} is not a whole number" if shown else "study id is empty"
            problems.append(RowProblem(rown, None, reason))
            continue
        duplicate_of = seen.get(sid)
        if duplicate_of is None:
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
        study_path: Path | None = None
        if study_file is None:
            if not (scanned and raw_cat is None):
                errors.append("no study file given")
            study_file = ""
        elif duplicate_of is None:
            study_path, why = checker.check(study_file, "study")
            if why:
                errors.append(why)

        mask_file = _text(rec["mask_file"])
        mask_path: Path | None = None
        if mask_file is not None and duplicate_of is None:
            mask_path, why = checker.check(mask_file, "mask")
            if why:
                errors.append(why)

        if duplicate_of is not None:
            reason = f"duplicate study id {sid} (first at row {duplicate_of}); row ignored"
            problems.append(RowProblem(rown, sid, reason))
            dups.append(StudySource(sid, category, study_file, mask_file, None, None, "error", reason, rown))
            continue
        out.append(
            StudySource(
                study_id=sid,
                category=category,
                study_file=study_file,
                mask_file=mask_file,
                study_path=study_path,
                mask_path=mask_path,
                status="error" if errors else "ok",
                error="; ".join(errors),
                row=rown,
            )
        )
    return out, dups, problems


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
                f"(expected studies/CT-0..CT-4/study_NNNN.nii.gz)",
                path=root,
            )
    sources, dups, problems = _validate(root, raw, scanned)
    return Registry(root=root, source=source, sources=tuple(sources), duplicates=tuple(dups), problems=problems)
