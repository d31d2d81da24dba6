"""The review database on SQLite and on a real PostgreSQL: saves, history, constraints, migrations,
a newer schema refused, 20 writers at once, a locked SQLite, a writer killed mid-write, bad locations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pg import db_url, pg_cluster, pg_url  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from mosmed.reviews import migrations, schema
from mosmed.reviews.db import database_url, open_database
from mosmed.reviews.errors import ReviewConfigError, ReviewDatabaseError, ReviewInputError, SchemaTooNewError
from mosmed.reviews.identity import DatasetIdentity
from mosmed.reviews.model import Reader, Review
from mosmed.reviews.store import ReviewStore

REPO = Path(__file__).resolve().parents[1]
DS = DatasetIdentity(digest="a" * 64, label="test set", n_studies=50)
OTHER = DatasetIdentity(digest="b" * 64, label="replica", n_studies=50)
IDS = set(range(1, 51))
HOSTILE_NAME = "<img src=x onerror=alert(1)> **Dr** 'O\"Brien'; DROP TABLE review_events;--"
HOSTILE_NOTE = (
    "# Heading\n<script>alert('x')</script>\n[link](javascript:alert(1)) =HYPERLINK(\"http://x\") ' OR 1=1 --"
)


@pytest.fixture
def store(db_url: str):
    db = open_database(db_url)
    yield ReviewStore(db)
    db.dispose()


# ------------------------------------------------------------------------------------------ saves and reads


def test_history_is_kept_and_latest_per_reader_is_shown(store: ReviewStore) -> None:
    ana, bob = Reader.named("Ana"), Reader.oidc("https://idp", "b-1", "Bob")
    store.save(DS, 7, ana, Review("CT-1"), valid_ids=IDS)
    store.save(DS, 7, ana, Review("CT-2", ("artefact", "label_doubtful"), "second look"), valid_ids=IDS)
    store.save(DS, 7, bob, Review("CT-3"), valid_ids=IDS)
    store.save(DS, 8, bob, Review(flags=("duplicate",)), valid_ids=IDS)
    store.save(OTHER, 7, ana, Review("CT-4"))  # another dataset: never mixed in
    latest = store.latest(DS)
    assert len(latest) == 3
    a7 = latest[(latest.study_id == 7) & (latest.reader_key == ana.key)].iloc[0]
    assert (a7["grade"], a7["flags"], a7["note"]) == ("CT-2", ("label_doubtful", "artefact"), "second look")
    assert not a7.verified and latest[latest.reader_key == bob.key].verified.all()
    hist = store.history(DS, 7)
    assert hist.grade.tolist() == ["CT-1", "CT-2", "CT-3"] and hist.reader.tolist() == ["Ana", "Ana", "Bob"]
    assert hist.created_at.is_monotonic_increasing and str(hist.created_at.dt.tz) == "UTC"
    assert store.latest(OTHER).grade.tolist() == ["CT-4"]
    got, when = store.review_of(DS, 7, ana)
    assert got == Review("CT-2", ("artefact", "label_doubtful"), "second look") and when.tzinfo is not None
    # Clearing keeps the history and removes the review from what is shown.
    store.save(DS, 8, bob, Review(), valid_ids=IDS)
    assert 8 not in set(store.latest(DS).study_id)
    assert store.history(DS, 8).action.tolist() == ["save", "clear"]
    assert store.datasets().set_index("label").loc["test set", "n_saves"] == 5


def test_hostile_text_is_stored_literally(store: ReviewStore) -> None:
    r = Reader.named(HOSTILE_NAME)
    store.save(DS, 1, r, Review("CT-0", ("other",), HOSTILE_NOTE), valid_ids=IDS)
    row = store.latest(DS).iloc[0]
    assert row.reader == " ".join(HOSTILE_NAME.split()) and row.note == HOSTILE_NOTE.strip()
    assert set(inspect(store.engine).get_table_names()) >= {"review_events", "review_latest"}


def test_bad_input_gets_a_clear_error(store: ReviewStore) -> None:
    with pytest.raises(ReviewInputError, match="study 999 is not in the registry of dataset test set"):
        store.save(DS, 999, Reader.named("Ana"), Review("CT-1"), valid_ids=IDS)
    with pytest.raises(ReviewInputError, match="not a number"):
        store.save(DS, "12a", Reader.named("Ana"), Review("CT-1"))
    assert store.history(DS).empty


def test_constraints_live_in_the_schema(store: ReviewStore) -> None:
    """Even a writer that skips mosmed.reviews.model cannot store an unknown grade or flag, or an endless note."""
    store.save(DS, 1, Reader.named("Ana"), Review("CT-1"), valid_ids=IDS)
    with store.engine.connect() as conn:
        ds_id, rd_id, ev = conn.execute(text("SELECT dataset_id, reader_id, id FROM review_events")).one()
    bad = [
        (
            "INSERT INTO review_events (dataset_id, study_id, reader_id, grade, note, action, source, created_at) "
            "VALUES (:d, 1, :r, 'CT-9', '', 'save', 'app', CURRENT_TIMESTAMP)"
        ),
        (
            "INSERT INTO review_events (dataset_id, study_id, reader_id, grade, note, action, source, created_at) "
            "VALUES (:d, 1, :r, NULL, :long, 'save', 'app', CURRENT_TIMESTAMP)"
        ),
        "INSERT INTO review_event_flags (event_id, flag) VALUES (:e, 'bogus')",
        "INSERT INTO review_readers (kind, subject, display_name, created_at) "
        "VALUES ('name', 'ana', 'Ana', CURRENT_TIMESTAMP)",
        (
            "INSERT INTO review_events (dataset_id, study_id, reader_id, grade, note, action, source, created_at) "
            "VALUES (:d, 1, 9999, NULL, '', 'save', 'app', CURRENT_TIMESTAMP)"
        ),
    ]
    for sql in bad:
        with pytest.raises(IntegrityError):
            with store.engine.begin() as conn:
                conn.execute(text(sql), {"d": ds_id, "r": rd_id, "e": ev, "long": "x" * 2001})


# ---------------------------------------------------------------------------------------------- migrations


def test_migrations_from_empty_match_the_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = open_database(db_url)
    try:
        # Issue 13 added the classroom's own branch (c0001); the reviews' head is still 0002.
        assert db.revisions == migrations.heads() and "0002" in db.revisions
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)
        diffs = [d for d in diffs if not str(getattr(getattr(d[1], "table", d[1]), "name", "")).startswith("class_")]
        assert diffs == [], diffs
        again = open_database(db_url)  # a second open finds it current and changes nothing
        assert again.revisions == migrations.heads()
        again.dispose()
    finally:
        db.dispose()


def test_upgrade_from_the_first_schema_backfills_latest(db_url: str) -> None:
    engine = create_engine(database_url(db_url))
    with engine.begin() as conn:
        migrations.upgrade(conn, migrations.FIRST_REVISION)
    with engine.begin() as conn:
        assert migrations.current_revisions(conn) == ("0001",)
        conn.execute(
            text(
                "INSERT INTO review_datasets (identity, label, n_studies, created_at) "
                "VALUES (:i, 'old', 50, CURRENT_TIMESTAMP)"
            ),
            {"i": DS.digest},
        )
        conn.execute(
            text(
                "INSERT INTO review_readers (kind, subject, display_name, created_at) VALUES "
                "('name', 'ana', 'Ana', CURRENT_TIMESTAMP), ('name', 'bob', 'Bob', CURRENT_TIMESTAMP)"
            )
        )
        for i, (reader, study, grade) in enumerate([(1, 5, "CT-1"), (1, 5, "CT-3"), (2, 5, "CT-2"), (1, 6, None)]):
            conn.execute(
                text(
                    "INSERT INTO review_events (dataset_id, study_id, reader_id, grade, note, action, "
                    "source, created_at) VALUES (1, :s, :r, :g, :n, 'save', 'cli', CURRENT_TIMESTAMP)"
                ),
                {"s": study, "r": reader, "g": grade, "n": f"note {i}"},
            )
        conn.execute(text("INSERT INTO review_event_flags (event_id, flag) VALUES (4, 'artefact')"))
    engine.dispose()
    db = open_database(db_url)
    try:
        assert db.revisions == migrations.heads()
        store = ReviewStore(db)
        latest = store.latest(DS).set_index(["study_id", "reader"])
        assert latest.loc[(5, "Ana"), "grade"] == "CT-3" and latest.loc[(5, "Bob"), "grade"] == "CT-2"
        assert latest.loc[(6, "Ana"), "flags"] == ("artefact",) and len(latest) == 3
        assert len(store.history(DS)) == 4
        store.save(DS, 5, Reader.named("ana"), Review("CT-0"))  # the upgraded database takes new saves
        assert store.review_of(DS, 5, Reader.named("Ana"))[0].grade == "CT-0"
    finally:
        db.dispose()


def test_a_newer_database_is_refused_without_writes(db_url: str) -> None:
    db = open_database(db_url)
    ReviewStore(db).save(DS, 1, Reader.named("Ana"), Review("CT-1"))
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future' WHERE version_num = '0002'"))
    db.dispose()
    engine = create_engine(database_url(db_url))

    def snapshot():
        with engine.connect() as conn:
            return (
                sorted(inspect(conn).get_table_names()),
                [tuple(r) for r in conn.execute(text("SELECT * FROM review_events ORDER BY id"))],
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar(),
            )

    before = snapshot()
    with pytest.raises(
        SchemaTooNewError,
        match=r"revision 0099_future, newer than this app knows .*Nothing was "
        r"written",
    ):
        open_database(db_url)
    assert snapshot() == before
    engine.dispose()


# ------------------------------------------------------------------------------------------- concurrency

WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from mosmed.reviews.db import open_database
from mosmed.reviews.identity import DatasetIdentity
from mosmed.reviews.model import Reader, Review
from mosmed.reviews.store import ReviewStore
url, me, go = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < go:
    time.sleep(0.005)
store = ReviewStore(open_database(url))
ds = DatasetIdentity("a" * 64, "test set", 50)
for k in range(5):
    # every writer reviews study 1 (one row each in latest) and its own studies
    store.save(ds, 1 if k == 0 else 2 + me * 2 + k % 2, Reader.named(f"writer {me}"),
               Review(("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")[k], ("other",) if k % 2 else (), f"w{me} k{k}"))
print("ok", me)
"""


@pytest.mark.slow
def test_twenty_processes_writing_at_once_lose_nothing(db_url: str) -> None:
    # No open up front: the 20 processes also open (and migrate) the new database at once, as several app
    # processes starting together would; the migration runs once under the write lock / advisory lock.
    go = time.time() + 6.0  # every writer starts saving at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(REPO), db_url, str(i), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs if o[1]]
    db = open_database(db_url)
    try:
        store = ReviewStore(db)
        hist = store.history(DS)
        assert len(hist) == 100 and hist.event_id.is_unique
        assert sorted(hist.note) == sorted(f"w{i} k{k}" for i in range(20) for k in range(5))
        latest = store.latest(DS)
        assert len(latest[latest.study_id == 1]) == 20 and (latest[latest.study_id == 1].grade == "CT-0").all()
        # each writer's own two studies: the last save of each wins
        assert len(latest) == 20 + 40
    finally:
        db.dispose()


def test_a_locked_sqlite_is_waited_for_and_then_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    store = ReviewStore(open_database(url))
    locker = sqlite3.connect(tmp_path / "reviews.db", isolation_level=None, timeout=5, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 1.2 s
    threading.Timer(1.2, lambda: locker.execute("COMMIT")).start()
    t = time.perf_counter()
    store.save(DS, 1, Reader.named("Ana"), Review("CT-1"))
    assert time.perf_counter() - t >= 1.0 and len(store.history(DS)) == 1
    # A lock held longer than the busy timeout and the retries: a clear error, nothing half-written.
    short = ReviewStore(open_database(url, busy_timeout_s=0.1))
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(
            ReviewDatabaseError,
            match=r"saving the review of study 2: the review database .* is "
            r"not available \(database is locked\)",
        ):
            short.save(DS, 2, Reader.named("Ana"), Review("CT-2"))
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert store.history(DS).study_id.tolist() == [1]


KILLED = r"""
import sys
sys.path.insert(0, sys.argv[1])
from mosmed.reviews.db import open_database
from mosmed.reviews.identity import DatasetIdentity
from mosmed.reviews.model import Reader, Review
from mosmed.reviews.store import ReviewStore
store = ReviewStore(open_database(sys.argv[2]))
ds = DatasetIdentity("a" * 64, "test set", 50)
k = 0
while True:
    saved = store.save(ds, k % 40, Reader.named("killed"), Review("CT-1", note="n" * 1500))
    print(saved.event_id, flush=True)
    k += 1
"""


def test_a_writer_killed_mid_write_loses_at_most_that_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    open_database(url).dispose()
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(REPO), url], stdout=subprocess.PIPE, text=True)
    committed: list[int] = []
    assert p.stdout is not None
    while len(committed) < 40:
        line = p.stdout.readline()
        assert line, "the writer died on its own"
        committed.append(int(line))
    os.kill(p.pid, signal.SIGKILL)  # somewhere inside its next save
    p.wait()
    con = sqlite3.connect(tmp_path / "reviews.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    store = ReviewStore(open_database(url))
    ids = store.history(DS).event_id.tolist()
    assert ids[: len(committed)] == committed and len(ids) - len(committed) in (0, 1, 2)
    store.save(DS, 1, Reader.named("after"), Review("CT-2"))  # and it takes writes again


# ----------------------------------------------------------------------------------------------- locations


def test_database_url_and_location_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOSMED_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert database_url().database == str(tmp_path / "xdg" / "mosmed-explorer" / "reviews.db")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert database_url().database == str(Path.home() / ".local/share/mosmed-explorer/reviews.db")
    for bad, why in [
        ("mysql://u@h/db", "reviews are kept in SQLite or PostgreSQL"),
        ("sqlite://", "SQLite file"),
        ("sqlite:///relative.db", "relative"),
        ("not a url", "not a database URL"),
    ]:
        with pytest.raises(ReviewConfigError, match=why):
            database_url(bad)
    assert database_url("postgresql://u:secret@h/db").drivername == "postgresql+psycopg"
    cache, data = tmp_path / "cache", tmp_path / "data"
    cache.mkdir()
    data.mkdir()
    with pytest.raises(ReviewConfigError, match="inside the cache"):
        open_database(f"sqlite:///{cache / 'x' / 'reviews.db'}", cache_root=cache)
    with pytest.raises(ReviewConfigError, match="inside the dataset folder"):
        open_database(f"sqlite:///{data / 'reviews.db'}", dataset_root=data)
    assert not (cache / "x").exists() and not (data / "reviews.db").exists()


def test_an_unreachable_database_is_reported_quickly() -> None:
    t = time.perf_counter()
    with pytest.raises(
        ReviewDatabaseError,
        match=r"opening the reviews: the review database "
        r"postgresql\+psycopg://nobody:\*\*\*@127.0.0.1:1/x "
        r"is not available",
    ):
        open_database("postgresql+psycopg://nobody:pw@127.0.0.1:1/x")
    assert time.perf_counter() - t < 10
