"""`python -m mosmed`: every command with good and bad input; exit codes; one-line messages naming the study."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cache_faults import REPO, write_small_dataset
from PIL import Image

from mosmed.cli import main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_small_dataset(tmp_path / "data", n=5, shape=(48, 40, 6), seed=4)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSMED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MOSMED_DATA", raising=False)
    monkeypatch.delenv("MOSMED_CACHE_BUDGET_GB", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------------ usage


def test_no_command_and_bad_options_exit_2(capsys, data):
    code, _, err = run(capsys)
    assert code == 2 and "a command is needed" in _one_line(err)
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in _one_line(err)
    code, _, err = run(capsys, "build-cache", "--data", str(data), "--workers", "zero")
    assert code == 2 and "'zero' is not a whole number" in _one_line(err)
    code, _, err = run(capsys, "summary", "--data", str(data), "--format", "xml")
    assert code == 2 and "invalid choice: 'xml'" in _one_line(err)


def test_no_dataset_anywhere_is_a_usage_error(capsys):
    code, _, err = run(capsys, "validate")
    assert code == 2 and "pass --data DIR or set MOSMED_DATA" in _one_line(err)


def test_missing_root_exit_1(capsys, tmp_path):
    code, _, err = run(capsys, "validate", "--data", str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in _one_line(err)


def test_mosmed_data_env_is_the_default(capsys, data, monkeypatch):
    monkeypatch.setenv("MOSMED_DATA", str(data))
    code, out, _ = run(capsys, "validate")
    assert code == 0 and "5 registry rows: 5 ok" in out


# ---------------------------------------------------------------------------------------------- commands


def test_build_cache_then_summary_csv_and_json(capsys, data):
    code, _, err = run(capsys, "build-cache", "--data", str(data))
    assert code == 0 and "5 built" in err and "building cache" in err and "5/5" in err  # the tqdm bar
    code, _, err = run(capsys, "build-cache", "--data", str(data))
    assert code == 0 and "0 built, 5 already cached" in err
    code, out, err = run(capsys, "summary", "--data", str(data))
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    for col in (
        "study_id",
        "category",
        "has_mask",
        "status",
        "error",
        "n_slices",
        "spacing_mm",
        "lung_ml",
        "lesion_ml",
        "involvement_pct",
        "estimated_involvement_pct",
    ):
        assert col in frame.columns
    assert list(frame["study_id"]) == [1, 2, 3, 4, 5] and (frame["n_slices"] == 6).all()
    assert "estimate vs mask-based involvement over 2 studies" in err
    code, out, _ = run(capsys, "summary", "--data", str(data), "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["study_id"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["mask_file"] is None and rows[1]["mask_file"] == "/masks/study_0002_mask.nii.gz"


def test_validate_lists_each_bad_study_and_exits_1(capsys, data):
    (data / "studies/CT-2/study_0003.nii.gz").write_bytes(b"")
    (data / "masks/study_0004_mask.nii.gz").unlink()
    with open(data / "dataset_registry.csv", "a") as fh:
        fh.write("abc,CT-1,/studies/CT-1/study_0009.nii.gz,\n")
        fh.write("2,CT-1,/studies/CT-1/study_0002.nii.gz,\n")
    code, out, err = run(capsys, "validate", "--data", str(data))
    assert code == 1
    assert "Traceback" not in err
    lines = out.splitlines()
    assert any(ln.startswith("study 3: ") and "empty" in ln for ln in lines), out
    assert any(ln.startswith("study 4: ") and "mask" in ln for ln in lines), out
    assert any("row 7" in ln for ln in lines), out  # the row with id "abc"
    assert any(ln.startswith("study 2 (row 8)") for ln in lines), out  # the duplicate id
    assert "5 registry rows: 3 ok, 2 in error, 2 registry rows dropped" in out


def test_build_cache_completes_with_bad_studies(capsys, data):
    (data / "studies/CT-0/study_0001.nii.gz").write_bytes(b"not gzip")
    code, _, err = run(capsys, "build-cache", "--data", str(data), "--workers", "2")
    assert code == 0 and "5 built" in err and "1 in error" in err
    assert "study 1: " in err


def test_render_axial_and_coronal_png_with_right_aspect(capsys, data, tmp_path):
    out = tmp_path / "ax.png"
    code, _, err = run(capsys, "render", "--data", str(data), "--study", "2", "--overlay", "--out", str(out))
    assert code == 0 and "axial slice 3/5" in err
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (48, 40)  # (width = x, height = y) at equal pixel spacing
    red = Image.open(out).convert("RGB")
    plain = tmp_path / "plain.png"
    assert main(["render", "--data", str(data), "--study", "2", "--out", str(plain)]) == 0
    assert red.tobytes() != Image.open(plain).convert("RGB").tobytes()  # overlay drawn
    # Fine pixels (0.8 mm) under 8 mm slices, as in MosMedData: the coronal view must be stretched, not squashed.
    fine = write_small_dataset(tmp_path / "fine", n=2, shape=(48, 40, 6), seed=4, fov_mm=48 * 0.8)
    cor = tmp_path / "cor.png"
    code, _, _ = run(
        capsys,
        "render",
        "--data",
        str(fine),
        "--study",
        "2",
        "--plane",
        "coronal",
        "--window",
        "-600,1500",
        "--out",
        str(cor),
    )
    w, h = Image.open(cor).size
    # 6 slices of 8 mm = 48 mm tall over 48 columns of 0.8 mm = 38.4 mm wide.
    assert code == 0 and (w, h) == (48, 60)
    sag = tmp_path / "sag.png"
    code, _, _ = run(
        capsys, "render", "--data", str(fine), "--study", "2", "--plane", "sagittal", "--slice", "0", "--out", str(sag)
    )
    assert code == 0 and Image.open(sag).size == (40, 60)


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["--study", "99"], 1, "study 99: is not in the registry"),
        (["--study", "abc"], 2, "--study 'abc' is not a study number"),
        (["--study", "2", "--slice", "6"], 2, "study 2: --slice 6 is out of range 0..5"),
        (["--study", "2", "--slice", "-1"], 2, "must not be negative"),
        (["--study", "2", "--window", "bright"], 2, "--window 'bright'"),
        (["--study", "2", "--plane", "oblique"], 2, "invalid choice: 'oblique'"),
    ],
)
def test_render_bad_input(capsys, data, tmp_path, argv, code, text):
    out = tmp_path / "x.png"
    got, _, err = run(capsys, "render", "--data", str(data), *argv, "--out", str(out))
    assert got == code and text in _one_line(err)
    assert not out.exists()


def test_render_bad_output_and_broken_study(capsys, data, tmp_path):
    code, _, err = run(capsys, "render", "--data", str(data), "--study", "2", "--out", str(tmp_path / "x.jpg"))
    assert code == 2 and "must end in .png" in _one_line(err)
    code, _, err = run(capsys, "render", "--data", str(data), "--study", "2", "--out", str(tmp_path / "no" / "x.png"))
    assert code == 2 and "does not exist" in _one_line(err)
    (data / "studies/CT-2/study_0003.nii.gz").write_bytes(b"garbage")
    code, _, err = run(capsys, "render", "--data", str(data), "--study", "3", "--out", str(tmp_path / "y.png"))
    assert code == 1 and _one_line(err).startswith("error: study 3: ")


def test_demo_and_replica_refuse_non_empty_out(capsys, tmp_path, data):
    code, _, err = run(capsys, "demo", "--out", str(data))
    assert code == 2 and "not empty" in _one_line(err)
    code, _, err = run(capsys, "replica", "--source", str(tmp_path / "none"), "--out", str(tmp_path / "r"))
    assert code == 1 and "does not exist" in _one_line(err)
    code, _, err = run(capsys, "demo", "--studies", "0", "--out", str(tmp_path / "d"))
    assert code == 2 and "must be at least 1" in _one_line(err)


def test_demo_generates_a_dataset_that_validates(capsys, tmp_path):
    pytest.importorskip("mosmed.synthetic")
    out = tmp_path / "demo"
    code, stdout, _ = run(capsys, "demo", "--out", str(out), "--studies", "5", "--seed", "3")
    assert code == 0 and Path(stdout.strip()) == out
    assert (out / "dataset_registry.xlsx").is_file()
    code, stdout, _ = run(capsys, "validate", "--data", str(out))
    assert code == 0, stdout


def test_subprocess_entry_point_no_traceback(data):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "mosmed", "render", "--data", str(data), "--study", "7", "--out", "/tmp/never.png"],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO),
        timeout=60,
    )
    assert res.returncode == 1 and res.stderr.strip() == "error: study 7: is not in the registry"


# ------------------------------------------------------------------------------- the bad-input corpus


@pytest.fixture
def bad_dataset(tmp_path):
    badinputs = pytest.importorskip("badinputs")
    root = tmp_path / "bad"
    return root, badinputs.make_bad_dataset(root)


def test_validate_names_every_bad_input(capsys, bad_dataset):
    root, expect = bad_dataset
    code, out, err = run(capsys, "validate", "--data", str(root))
    assert code == 1 and "Traceback" not in err
    lines = out.splitlines()
    for kind, e in expect.items():
        if e.outcome == "ok":
            assert not any(ln.startswith(f"study {e.study_id}: ") for ln in lines), (kind, out)
            continue
        if e.outcome == "dropped":
            hits = [ln for ln in lines if "(row " in ln and e.expected.lower() in ln.lower()]
        elif e.outcome == "warning":
            hits = [
                ln
                for ln in lines
                if ln.startswith(f"study {e.study_id}: warning: ") and e.expected.lower() in ln.lower()
            ]
        else:
            hits = [ln for ln in lines if ln.startswith(f"study {e.study_id}: ") and e.expected.lower() in ln.lower()]
        assert hits, f"{kind}: expected a line about study {e.study_id} containing {e.expected!r}\n{out}"


def test_build_cache_over_bad_corpus_builds_every_good_study(capsys, bad_dataset):
    root, expect = bad_dataset
    code, _, err = run(capsys, "build-cache", "--data", str(root))
    assert code == 0 and "Traceback" not in err
    code, out, _ = run(capsys, "summary", "--data", str(root), "--format", "json")
    status: dict = {}
    for r in json.loads(out):
        status.setdefault(r["study_id"], r)  # a repeated id's own row (in error) comes after the first
    for kind, e in expect.items():
        if e.outcome in ("ok", "warning") and e.stage != "registry":
            assert status[e.study_id]["status"] == "ok", (kind, status[e.study_id]["error"])
        elif e.outcome == "error":
            assert status[e.study_id]["status"] == "error", kind
            assert e.expected.lower() in status[e.study_id]["error"].lower(), kind


@pytest.mark.parametrize("kind", ["registry_missing_column", "registry_not_spreadsheet", "registry_no_studies"])
def test_unusable_registry_is_one_line_exit_1(capsys, tmp_path, kind):
    badinputs = pytest.importorskip("badinputs")
    e = badinputs.make_bad_registry(kind, tmp_path / kind)
    code, _, err = run(capsys, "validate", "--data", str(tmp_path / kind))
    assert code == 1 and e.expected in _one_line(err)
