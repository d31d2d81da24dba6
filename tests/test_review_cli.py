"""``python -m mosmed review ...``: add, export (CSV, JSON, XLSX), agreement, datasets; errors and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pg import pg_cluster, pg_url  # noqa: F401  (fixtures)

from mosmed.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mosmed.synthetic import generate_demo

    return generate_demo(tmp_path_factory.mktemp("rv-cli") / "demo", n_studies=5, size=24, workers=1)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "reviews.db"
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{path}")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _ids(demo: Path) -> list[int]:
    return [int(i) for i in pd.read_excel(demo / "dataset_registry.xlsx")["study_id"]]


def test_add_export_agreement_round_trip(demo: Path, db: Path, capsys, tmp_path: Path) -> None:
    ids = _ids(demo)
    cats = pd.read_excel(demo / "dataset_registry.xlsx").set_index("study_id")["category"]
    note = "<b>not bold</b> **nor this** =1+1 'q'; DROP TABLE review_events;--"
    code, out, err = run(
        capsys,
        "review",
        "add",
        "--data",
        str(demo),
        "--study",
        str(ids[0]),
        "--reader",
        "Ana <i>",
        "--grade",
        "ct-1",
        "--flag",
        "artefact",
        "--flag",
        "Label doubtful",
        "--note",
        note,
    )
    assert code == 0, err
    assert f"saved review of study {ids[0]} by Ana <i> (unverified): CT-1, flags label_doubtful;artefact" in out
    for sid in ids:
        assert (
            run(
                capsys,
                "review",
                "add",
                "--data",
                str(demo),
                "--study",
                str(sid),
                "--reader",
                "Bob",
                "--grade",
                str(cats[sid]),
            )[0]
            == 0
        )
    assert (
        run(
            capsys,
            "review",
            "add",
            "--data",
            str(demo),
            "--study",
            str(ids[1]),
            "--reader",
            "Ana <i>",
            "--grade",
            "ungradable",
            "--flag",
            "wrong_series",
        )[0]
        == 0
    )

    code, out, err = run(capsys, "review", "export", "--data", str(demo))
    assert code == 0 and f"{len(ids) + 2} review rows" in err
    df = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert list(df.columns[:6]) == ["study_id", "reader", "grade", "flags", "note", "updated_at"]
    ana = df[df.reader == "Ana <i>"].set_index("study_id")
    assert ana.loc[ids[0], "note"] == note
    assert ana.loc[ids[1], "grade"] == "ungradable" and ana.loc[ids[0], "flags"] == "label_doubtful;artefact"
    assert df.updated_at.str.endswith("Z").all()

    code, out, _ = run(
        capsys, "review", "export", "--data", str(demo), "--format", "json", "--study", f"{ids[0]}-{ids[1]}"
    )
    rows = json.loads(out)
    assert {r["study_id"] for r in rows} == {ids[0], ids[1]} and ["label_doubtful", "artefact"] in [
        r["flags"] for r in rows
    ]
    xlsx = tmp_path / "reviews.xlsx"
    assert run(capsys, "review", "export", "--data", str(demo), "--out", str(xlsx), "--history")[0] == 0
    hist = pd.read_excel(xlsx)
    assert len(hist) == len(ids) + 2 and (hist.action == "save").all()
    from openpyxl import load_workbook

    ws = load_workbook(xlsx).active
    notes = [c.value for c in ws["E"] if c.value and "DROP TABLE" in str(c.value)]
    assert notes == [note]  # literal text, stored as text (not a formula)

    code, out, _ = run(capsys, "review", "agreement", "--data", str(demo), "--format", "json")
    comps = json.loads(out)["comparisons"]
    bob = next(c for c in comps if c["label_a"] == "Registry class" and c["label_b"] == "Bob (unverified)")
    assert bob["n"] == len(ids) and sum(map(sum, bob["matrix"])) == len(ids)
    assert bob["kappa"]["kappa"] in (1.0, None)  # Bob copied the registry
    pair = next(c for c in comps if {c["label_a"], c["label_b"]} == {"Ana <i> (unverified)", "Bob (unverified)"})
    assert pair["n"] == 1  # ungradable left out
    code, out, _ = run(capsys, "review", "agreement", "--data", str(demo))
    assert code == 0 and "Registry class vs Bob (unverified): n=" in out and "CT-0" in out
    code, out, _ = run(capsys, "review", "datasets")
    assert code == 0 and "demo" in out and "1 dataset" in out


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--grade", "CT-7"], 2, "grade 'CT-7' is not one of CT-0"),
        (["--flag", "spooky"], 2, "flag 'spooky' is unknown"),
        (["--note", "x" * 2001], 2, "the note has 2001 characters; at most 2000"),
        (["--study", "99999"], 2, "study 99999 is not in the registry"),
        (["--study", "abc"], 2, "--study: invalid int value"),
        (["--reader", "   "], 2, "the reader name is empty"),
    ],
)
def test_add_mistakes_are_one_clear_line(demo: Path, db: Path, capsys, argv, code, message) -> None:
    base = {"--study": str(_ids(demo)[0]), "--reader": "Ana", "--grade": "CT-1"}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v
    args = ["review", "add", "--data", str(demo)] + [x for kv in base.items() for x in kv]
    got, out, err = run(capsys, *args)
    assert got == code and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_database_problems_exit_1(demo: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOSMED_DB", "postgresql+psycopg://x:pw@127.0.0.1:1/none")
    code, _, err = run(capsys, "review", "export", "--data", str(demo))
    assert code == 1 and "is not available" in err and "pw" not in err
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{demo / 'reviews.db'}")
    code, _, err = run(capsys, "review", "export", "--data", str(demo))
    assert code == 1 and "inside the dataset folder" in err
    monkeypatch.setenv("MOSMED_DB", "mysql://x@y/z")
    assert run(capsys, "review", "export", "--data", str(demo))[0] == 1
    monkeypatch.setenv("MOSMED_DB", f"sqlite:///{tmp_path / 'r.db'}")
    code, _, err = run(capsys, "review", "export", "--data", str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in err
    assert run(capsys, "review", "export", "--data", str(demo), "--format", "xlsx")[0] == 2


def test_cli_on_postgresql_as_a_subprocess(demo: Path, pg_url: str) -> None:
    """The same MOSMED_DB applies: a real ``python -m mosmed`` process writes to PostgreSQL."""
    import os

    env = {**os.environ, "MOSMED_DB": pg_url}
    sid = str(_ids(demo)[0])
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mosmed",
            "review",
            "add",
            "--data",
            str(demo),
            "--study",
            sid,
            "--reader",
            "Pg reader",
            "--grade",
            "CT-2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "mosmed", "review", "export", "--data", str(demo), "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and json.loads(p.stdout)[0]["grade"] == "CT-2" and "127.0.0.1" in p.stderr
