"""Reviews as rows for export (``study_id, reader, grade, flags, note, updated_at``, then ``verified`` and
``registry_class``), and the writers: CSV, XLSX, JSON.

The CSV and XLSX writers are generic (the registry page exports its study table with them too). Text is
data: a cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` ...) gets a leading apostrophe
in CSV, and every XLSX text cell is written as text, so a note like ``=HYPERLINK(...)`` stays a note.
"""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pandas as pd

__all__ = ["EXPORT_COLUMNS", "export_frame", "to_csv_bytes", "to_xlsx_bytes", "to_json_text"]

EXPORT_COLUMNS = ("study_id", "reader", "grade", "flags", "note", "updated_at", "verified", "registry_class")


def _iso(ts) -> str:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)) or ts is pd.NaT:
        return ""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def export_frame(latest: pd.DataFrame, categories: pd.Series | None = None) -> pd.DataFrame:
    """Rows of :meth:`ReviewStore.latest` (or ``history``) for export, in :data:`EXPORT_COLUMNS` order.

    ``flags`` become ``"artefact;mask_problem"``, ``updated_at`` an ISO 8601 UTC string, ``grade`` ``""`` when
    none; ``history`` frames keep their ``action`` column after these.
    """
    when = latest["updated_at"] if "updated_at" in latest.columns else latest.get("created_at")
    out = pd.DataFrame(
        {
            "study_id": latest["study_id"].astype(int) if len(latest) else pd.Series(dtype=int),
            "reader": latest["reader"].astype(str) if len(latest) else pd.Series(dtype=str),
            "grade": [g if isinstance(g, str) else "" for g in latest["grade"]],
            "flags": [";".join(f) for f in latest["flags"]],
            "note": latest["note"].astype(str) if len(latest) else pd.Series(dtype=str),
            "updated_at": [_iso(t) for t in (when if when is not None else [])],
            "verified": latest["verified"].astype(bool) if len(latest) else pd.Series(dtype=bool),
            "registry_class": (
                [str(categories.get(int(s), "")) for s in latest["study_id"]]
                if categories is not None
                else [""] * len(latest)
            ),
        }
    )
    if "action" in latest.columns:
        out["action"] = latest["action"].astype(str).to_numpy()
    return out.reset_index(drop=True)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _defuse(value):
    """Text that a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _is_number(value):
        return "'" + value
    return value


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV of ``df`` (text cells that look like formulas are defused)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(_defuse)
    return out.to_csv(index=False).encode("utf-8")


def to_xlsx_bytes(df: pd.DataFrame, sheet_name: str = "studies") -> bytes:
    """An XLSX workbook of ``df`` built in memory with openpyxl; every text cell is stored as text."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = re.sub(r"[\[\]:*?/\\]", "_", sheet_name)[:31] or "studies"
    ws.append([str(c) for c in df.columns])
    for row in df.itertuples(index=False, name=None):
        ws.append([_xlsx_value(v) for v in row])
    for r in ws.iter_rows(min_row=2):
        for cell in r:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # openpyxl would otherwise store "=..." as a formula
    for i, c in enumerate(df.columns, start=1):
        width = max([len(str(c))] + [len(str(v)) for v in df[c].head(200).tolist() if v is not None])
        ws.column_dimensions[get_column_letter(i)].width = min(60, max(8, width + 2))
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xlsx_value(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, str):
        return _ILLEGAL_XLSX.sub("\ufffd", v)  # openpyxl refuses control characters in cells
    if isinstance(v, (bool, int, float)):
        return v
    return str(v)


def to_json_text(df: pd.DataFrame) -> str:
    """One JSON array of row objects (``flags`` as a list), newline-terminated."""
    rows = []
    for rec in df.to_dict(orient="records"):
        if "flags" in rec:
            rec["flags"] = [f for f in str(rec["flags"]).split(";") if f]
        rows.append({k: (v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return json.dumps(rows, ensure_ascii=False) + "\n"
