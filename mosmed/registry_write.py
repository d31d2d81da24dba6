"""Writing registries in the published form (``.xlsx`` with one sheet, or UTF-8 ``.csv``), atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mosmed.atomic import atomic_write
from mosmed.registry import REGISTRY_COLUMNS, REGISTRY_SHEET, is_missing, parse_study_id

__all__ = ["write_registry_xlsx", "write_registry_csv"]


def _records_for_writing(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    if "study_id" not in df.columns:
        df = df.reset_index().rename(columns={"index": "study_id"})
    missing = [c for c in REGISTRY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write a registry without column(s) {', '.join(missing)}")
    out = []
    for sid, cat, sf, mf in df[list(REGISTRY_COLUMNS)].itertuples(index=False, name=None):
        sid_v = parse_study_id(sid)
        out.append(
            (
                sid_v if sid_v is not None else (None if is_missing(sid) else str(sid)),
                None if is_missing(cat) else str(cat),
                None if is_missing(sf) else str(sf),
                None if is_missing(mf) else str(mf),
            )
        )
    return out


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

    atomic_write(Path(path), write)
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

    atomic_write(Path(path), write)
    return Path(path)
