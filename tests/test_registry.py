"""Registry reading, scanning, validation, safe paths and atomic writing."""

from __future__ import annotations

import math
import os
import unicodedata

import badinputs as B
import numpy as np
import openpyxl
import pandas as pd
import pytest

from mosmed.errors import RegistryError, UnsafePathError
from mosmed.paths import safe_join
from mosmed.registry import (
    REGISTRY_COLUMNS,
    REGISTRY_SHEET,
    load_registry,
    normalize_category,
    read_registry_file,
    scan_registry,
)
from mosmed.registry_write import write_registry_csv, write_registry_xlsx


def _tiny_dataset(root, with_registry=True):
    rows = []
    for sid, cat, mask in ((1, "CT-0", False), (2, "CT-1", True), (7, "CT-4", False)):
        B.write_good_study(root / "studies" / cat / f"study_{sid:04d}.nii.gz", seed=sid)
        mf = None
        if mask:
            B.write_good_mask(root / "masks" / f"study_{sid:04d}_mask.nii.gz")
            mf = f"/masks/study_{sid:04d}_mask.nii.gz"
        rows.append(
            {"study_id": sid, "category": cat, "study_file": f"/studies/{cat}/study_{sid:04d}.nii.gz", "mask_file": mf}
        )
    df = pd.DataFrame(rows)
    if with_registry:
        write_registry_xlsx(df, root / "dataset_registry.xlsx")
    return df


# ------------------------------------------------------------------------------------------ safe_join


def test_safe_join_accepts_published_and_relative_forms(tmp_path):
    (tmp_path / "studies" / "CT-0").mkdir(parents=True)
    f = tmp_path / "studies" / "CT-0" / "study_0001.nii.gz"
    f.write_bytes(b"x")
    for rel in (
        "/studies/CT-0/study_0001.nii.gz",
        "studies/CT-0/study_0001.nii.gz",
        "./studies//CT-0/study_0001.nii.gz",
        "\\studies\\CT-0\\study_0001.nii.gz",
        str(f),
    ):
        assert safe_join(tmp_path, rel) == f.resolve()
    # a missing file is not unsafe: presence is checked elsewhere
    assert safe_join(tmp_path, "/studies/CT-9/none.nii.gz") == (tmp_path / "studies/CT-9/none.nii.gz").resolve()


@pytest.mark.parametrize(
    "rel, match",
    [
        ("../x.nii.gz", r"contains '\.\.'"),
        ("/studies/../../etc/passwd", r"contains '\.\.'"),
        ("/etc/passwd", "lies outside the dataset root"),
        ("C:\\data\\x.nii.gz", "Windows absolute path"),
        ("\\\\server\\share\\x", "Windows absolute path"),
        ("", "empty path"),
        ("   ", "empty path"),
        ("a\x00b", "NUL byte"),
        ("/", "names no file"),
    ],
)
def test_safe_join_rejects(tmp_path, rel, match):
    with pytest.raises(UnsafePathError, match=match):
        safe_join(tmp_path, rel)


def test_safe_join_rejects_links_out_but_not_links_within(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "in.nii.gz").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"x")
    os.symlink(tmp_path / "secret", root / "a" / "out.nii.gz")
    os.symlink(root / "a" / "in.nii.gz", root / "a" / "alias.nii.gz")
    os.symlink(tmp_path, root / "dirlink")
    assert safe_join(root, "a/alias.nii.gz") == (root / "a" / "in.nii.gz").resolve()
    with pytest.raises(UnsafePathError, match="link that leads outside"):
        safe_join(root, "a/out.nii.gz")
    with pytest.raises(UnsafePathError, match="link that leads outside"):
        safe_join(root, "/dirlink/secret")


# -------------------------------------------------------------------------------------------- reading


def test_xlsx_round_trip_keeps_the_published_form(tmp_path):
    df = _tiny_dataset(tmp_path)
    wb = openpyxl.load_workbook(tmp_path / "dataset_registry.xlsx")
    ws = wb[REGISTRY_SHEET]
    assert wb.sheetnames == [REGISTRY_SHEET]
    assert [c.value for c in ws[1]] == list(REGISTRY_COLUMNS)
    assert ws["A2"].data_type == "n" and ws["A2"].value == 1
    assert ws["D2"].value is None and ws["D3"].value == "/masks/study_0002_mask.nii.gz"
    reg = load_registry(tmp_path)
    assert reg.source.endswith("dataset_registry.xlsx")
    assert reg.ids == [1, 2, 7]
    assert reg.df["status"].tolist() == ["ok"] * 3
    assert reg.df.index.tolist() == [1, 2, 7] and reg.df.index.name is None
    assert reg.df.loc[2, "has_mask"] and not reg.df.loc[1, "has_mask"]
    assert isinstance(reg.df.loc[1, "mask_file"], float) and math.isnan(reg.df.loc[1, "mask_file"])
    assert reg.df.loc[1, "mask_path"] is None
    assert reg.df.loc[2, "study_path"] == str((tmp_path / "studies/CT-1/study_0002.nii.gz").resolve())
    assert reg.df["study_id"].dtype == np.int64 and reg.df["has_mask"].dtype == bool
    assert reg.counts() == {"CT-0": 1, "CT-1": 1, "CT-4": 1}
    assert reg.issues() == []
    # sorting by the column is unambiguous (the index is unnamed)
    assert reg.df.sort_values("study_id")["study_id"].tolist() == [1, 2, 7]
    assert reg.row(7)["category"] == "CT-4"
    with pytest.raises(KeyError, match="study 8 is not in the registry"):
        reg.row(8)
    assert df.shape == (3, 4)


def test_csv_with_the_same_columns(tmp_path):
    df = _tiny_dataset(tmp_path, with_registry=False)
    write_registry_csv(df, tmp_path / "dataset_registry.csv")
    text = (tmp_path / "dataset_registry.csv").read_text()
    assert "nan" not in text and text.splitlines()[0] == ",".join(REGISTRY_COLUMNS)
    reg = load_registry(tmp_path)
    assert reg.source.endswith(".csv") and reg.ids == [1, 2, 7]
    assert reg.df["mask_file"].isna().tolist() == [True, False, True]
    assert reg.df["status"].eq("ok").all()


def test_csv_semicolons_bom_and_text_nan_are_understood(tmp_path):
    _tiny_dataset(tmp_path, with_registry=False)
    (tmp_path / "dataset_registry.csv").write_bytes(
        "\ufeffStudy_ID;Category;Study_File;Mask_File\n"
        "1;ct-0;/studies/CT-0/study_0001.nii.gz;nan\n\n"
        "2;CT–1;/studies/CT-1/study_0002.nii.gz;/masks/study_0002_mask.nii.gz\n".encode("utf-8")
    )
    reg = load_registry(tmp_path)
    assert reg.ids == [1, 2]
    assert reg.df["category"].tolist() == ["CT-0", "CT-1"]
    assert math.isnan(reg.df.loc[1, "mask_file"])
    assert reg.df.loc[2, "row"] == 4  # the blank line still counts as a spreadsheet row


def test_xlsx_takes_the_published_sheet_among_several(tmp_path):
    _tiny_dataset(tmp_path, with_registry=True)
    wb = openpyxl.load_workbook(tmp_path / "dataset_registry.xlsx")
    notes = wb.create_sheet("Notes", 0)
    notes.append(["anything"])
    wb.save(tmp_path / "dataset_registry.xlsx")
    assert load_registry(tmp_path).ids == [1, 2, 7]


def test_registry_file_errors(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        read_registry_file(tmp_path / "none.xlsx")
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(RegistryError, match="unsupported type '.json'"):
        read_registry_file(tmp_path / "r.json")
    (tmp_path / "latin.csv").write_bytes("study_id,category,study_file,mask_file\n1,CT-0,/é,\n".encode("latin-1"))
    with pytest.raises(RegistryError, match="not UTF-8"):
        read_registry_file(tmp_path / "latin.csv")
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "missing-root")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RegistryError, match="is not a folder"):
        load_registry(tmp_path / "file")


def test_row_numbers_and_problems(tmp_path):
    _tiny_dataset(tmp_path, with_registry=False)
    df = pd.DataFrame(
        [
            {"study_id": 1, "category": "CT-0", "study_file": "/studies/CT-0/study_0001.nii.gz", "mask_file": None},
            {"study_id": None, "category": "CT-1", "study_file": "/studies/CT-1/study_0002.nii.gz", "mask_file": None},
            {"study_id": "2", "category": "CT-1", "study_file": "/studies/CT-1/study_0002.nii.gz", "mask_file": None},
            {"study_id": 2.0, "category": "CT-1", "study_file": "/studies/CT-1/study_0002.nii.gz", "mask_file": None},
            {"study_id": -3, "category": "CT-1", "study_file": "/studies/CT-1/study_0002.nii.gz", "mask_file": None},
        ]
    )
    write_registry_xlsx(df, tmp_path / "dataset_registry.xlsx")
    reg = load_registry(tmp_path)
    assert reg.ids == [1, 2]
    assert [(p.row, p.study_id) for p in reg.problems] == [(3, None), (5, 2), (6, None)]
    assert reg.problems[0].reason == "study id is empty"
    assert "duplicate study id 2 (first at row 4)" in reg.problems[1].reason
    assert "'-3' is not a whole number" in reg.problems[2].reason
    assert str(reg.problems[1]).startswith("study 2 (row 5): duplicate")
    assert [i for i, _ in reg.issues()] == [None, 2, None]


def test_unicode_normalisation_of_names(tmp_path):
    # a name typed in NFC in the sheet, stored NFD on disk (copied from macOS)
    name = "исследование_й_0001.nii.gz"
    B.write_good_study(tmp_path / "studies" / "CT-0" / unicodedata.normalize("NFD", name), seed=1)
    write_registry_xlsx(
        pd.DataFrame(
            [
                {
                    "study_id": 1,
                    "category": "CT-0",
                    "study_file": "/studies/CT-0/" + unicodedata.normalize("NFC", name),
                    "mask_file": None,
                }
            ]
        ),
        tmp_path / "dataset_registry.xlsx",
    )
    reg = load_registry(tmp_path)
    assert reg.df.loc[1, "status"] == "ok", reg.df.loc[1, "error"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("CT-0", "CT-0"),
        ("ct-3", "CT-3"),
        ("CT–2", "CT-2"),
        ("CT 4", "CT-4"),
        ("CT1", "CT-1"),
        (" CT_1 ", "CT-1"),
        ("CT-5", None),
        ("", None),
        (None, None),
        (float("nan"), None),
        ("CT-10", None),
        ("XCT-1", None),
    ],
)
def test_normalize_category(text, expected):
    assert normalize_category(text) == expected


# ------------------------------------------------------------------------------------------- scanning


def test_scan_when_there_is_no_registry(tmp_path):
    _tiny_dataset(tmp_path, with_registry=False)
    B.write_good_mask(tmp_path / "masks" / "study_0099_mask.nii.gz")  # orphan mask
    B.write_good_study(tmp_path / "studies" / "CT-1" / "scan.nii.gz")  # no number in the name
    B.write_good_study(tmp_path / "studies" / "other" / "study_0050.nii.gz")  # not a class folder
    (tmp_path / "studies" / "CT-0" / "notes.txt").write_text("ignored")
    raw = scan_registry(tmp_path)
    assert list(raw.columns) == [*REGISTRY_COLUMNS, "row"]
    reg = load_registry(tmp_path)
    assert reg.source == "scanned" and reg.is_scanned
    assert reg.ids == [1, 2, 7, 50, 99]
    assert reg.df.loc[2, "mask_file"] == "/masks/study_0002_mask.nii.gz" and reg.df.loc[2, "has_mask"]
    assert reg.df.loc[1, "study_file"] == "/studies/CT-0/study_0001.nii.gz"
    assert math.isnan(reg.df.loc[1, "mask_file"])
    assert reg.df.loc[[1, 2, 7], "status"].eq("ok").all()
    assert "unknown class 'other'" in reg.df.loc[50, "error"]
    assert reg.df.loc[99, "error"] == "mask file has no study file in studies/"
    assert [p.reason for p in reg.problems] == ["file 'scan.nii.gz' has no study number in its name"]


def test_empty_folder_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError, match="no dataset_registry.xlsx, no dataset_registry.csv and no studies"):
        load_registry(tmp_path)


# -------------------------------------------------------------------------------------------- writing


def test_write_is_atomic_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    df = _tiny_dataset(tmp_path)
    target = tmp_path / "dataset_registry.xlsx"
    before = target.read_bytes()

    def boom(self, filename):
        with open(filename, "wb") as fh:
            fh.write(b"PK\x03\x04 half written")
        raise OSError("disk full")

    monkeypatch.setattr(openpyxl.Workbook, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_registry_xlsx(df, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    monkeypatch.undo()
    write_registry_xlsx(df.iloc[:1], target)
    assert load_registry(tmp_path).ids == [1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_write_needs_the_columns(tmp_path):
    with pytest.raises(ValueError, match="mask_file"):
        write_registry_xlsx(
            pd.DataFrame({"study_id": [1], "category": ["CT-0"], "study_file": ["/x"]}), tmp_path / "r.xlsx"
        )
    assert not (tmp_path / "r.xlsx").exists()
