"""The review database: which one (``MOSMED_DB`` or the default SQLite file), its engine, retries, opening.

Where reviews are kept
----------------------
``MOSMED_DB`` names any database by URL: ``sqlite:////abs/path/reviews.db`` or
``postgresql+psycopg://user:password@host:5432/dbname``. When it is unset, reviews go to the SQLite file
``$XDG_DATA_HOME/mosmed-explorer/reviews.db`` (``~/.local/share/mosmed-explorer/reviews.db`` when
``XDG_DATA_HOME`` is unset): user data, outside the cache (``make clean-cache`` never touches it) and never
inside a dataset root (both are refused for a SQLite file; see :func:`check_location`).

One engine per process (the app holds it in ``st.cache_resource``); each write is one transaction
(``with engine.begin()``). SQLite runs in WAL mode with ``synchronous=FULL`` and a busy timeout: readers never
wait for a writer, a writer waits for another (``BEGIN IMMEDIATE``), and a process killed during a write loses
only that write. A write still refused as locked or a dropped connection is retried a few times with backoff.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from mosmed.reviews.errors import ReviewConfigError, ReviewDatabaseError

__all__ = [
    "ENV_VAR",
    "default_sqlite_path",
    "database_url",
    "describe_url",
    "check_location",
    "make_engine",
    "Database",
    "open_database",
    "retrying",
    "WRITE",
    "Store",
    "utcnow",
]

_LOG = logging.getLogger("mosmed.reviews")

ENV_VAR = "MOSMED_DB"
#: Seconds a SQLite writer waits for another writer's lock before SQLite gives up (then we retry).
SQLITE_BUSY_TIMEOUT_S = 10.0
#: Seconds to wait for a PostgreSQL server to accept the connection (an unreachable one must not hang a page).
PG_CONNECT_TIMEOUT_S = 3
#: Attempts of one write when the database says "locked" / "busy" / the connection dropped.
RETRIES = 4
#: Execution option that makes the SQLite "begin" event take the write lock up front (BEGIN IMMEDIATE).
WRITE = {"mosmed_write": True}
_SUPPORTED = ("sqlite", "postgresql")

T = TypeVar("T")


def default_sqlite_path() -> Path:
    """``$XDG_DATA_HOME/mosmed-explorer/reviews.db`` (``~/.local/share/...`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".local" / "share"
    return root / "mosmed-explorer" / "reviews.db"


def database_url(text: str | None = None) -> URL:
    """The database URL: ``text``, else ``MOSMED_DB``, else the default SQLite file.

    Raises
    ------
    ReviewConfigError
        Not a URL, a backend other than SQLite / PostgreSQL, or a relative / in-memory SQLite path.
    """
    raw = (text if text is not None else os.environ.get(ENV_VAR, "")).strip()
    if not raw:
        return URL.create("sqlite", database=str(default_sqlite_path()))
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ReviewConfigError(
            f"{ENV_VAR} is not a database URL (expected sqlite:////path/reviews.db or "
            "postgresql+psycopg://user@host/dbname)"
        ) from None
    backend = url.get_backend_name()
    if backend not in _SUPPORTED:
        raise ReviewConfigError(
            f"{ENV_VAR} names a {backend} database; reviews are kept in SQLite or PostgreSQL (postgresql+psycopg://...)"
        )
    if backend == "postgresql" and url.drivername != "postgresql+psycopg":
        # the driver in requirements.txt (SQLAlchemy 2.0 defaults to psycopg2)
        url = url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        db = url.database or ""
        if not db or db == ":memory:" or db.startswith("file:"):
            raise ReviewConfigError(
                f"{ENV_VAR} must name a SQLite file (sqlite:////path/reviews.db); an in-memory "
                "database would lose every review when the process ends"
            )
        path = Path(db).expanduser()
        if not path.is_absolute():
            raise ReviewConfigError(
                f"{ENV_VAR}: the SQLite path {db} is relative; give an absolute path "
                "(sqlite:////abs/path/reviews.db has four slashes)"
            )
        url = url.set(database=str(path))
    return url


def describe_url(url: URL) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_location(url: URL, *, cache_root: Path | None = None, dataset_root: Path | None = None) -> None:
    """Refuse a SQLite file inside the cache (``make clean-cache`` would delete it) or inside a dataset root.

    Raises
    ------
    ReviewConfigError
        Naming the file and the folder it must not be in.
    """
    if url.get_backend_name() != "sqlite":
        return
    path = Path(url.database or "")
    if cache_root is not None and _is_within(path, Path(cache_root)):
        raise ReviewConfigError(
            f"the review database {path} is inside the cache {cache_root}, which holds only "
            f"derived data and may be emptied at any time; set {ENV_VAR} to a file elsewhere"
        )
    if dataset_root is not None and _is_within(path, Path(dataset_root)):
        raise ReviewConfigError(
            f"the review database {path} is inside the dataset folder {dataset_root}; "
            f"reviews never go into a dataset; set {ENV_VAR} to a file elsewhere"
        )


def _sqlite_events(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # pysqlite's own transaction handling defers BEGIN and commits around DDL; we emit BEGIN ourselves
        # (below) so each transaction, DDL included, is exactly what `with engine.begin()` says.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode and str(mode[0]).lower() != "wal":
                _LOG.warning("SQLite refused WAL mode (%s); concurrent readers will wait for writers", mode[0])
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A writer takes the lock at BEGIN: two writers then queue on the busy timeout instead of one failing
        # at its first write with SQLITE_BUSY (a deferred transaction cannot wait to upgrade its lock).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mosmed_write") else "BEGIN")


def make_engine(url: URL, *, busy_timeout_s: float | None = None) -> Engine:
    """A new engine for ``url`` (SQLite: pragmas and transaction events; PostgreSQL: connect timeout).

    The SQLite file's folder is created (mode 0700) when missing.
    """
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = Path(url.database or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise ReviewDatabaseError(
                f"the review database folder {path.parent} cannot be created: {e.strerror or e}"
            ) from None
        timeout = SQLITE_BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
        engine = create_engine(url, connect_args={"timeout": timeout})
        _sqlite_events(engine, int(timeout * 1000))
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "mosmed-explorer"},
    )


def _transient(e: BaseException) -> bool:
    """A failure worth another try: locked / busy SQLite, a dropped or refused connection, a serialization clash."""
    if isinstance(e, (OperationalError, sqlite3.OperationalError)):
        return True
    if isinstance(e, DBAPIError) and getattr(e, "connection_invalidated", False):
        return True
    orig = getattr(e, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in ("40001", "40P01")  # serialization failure, deadlock


def reason_of(e: BaseException) -> str:
    """A short, user-readable reason from a driver error (first line, no SQL, no parameters)."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return text[:300]


def retrying(fn: Callable[[], T], *, what: str, where: str, attempts: int = RETRIES) -> T:
    """Run ``fn`` (one whole transaction), again after a transient failure, with jittered backoff.

    Raises
    ------
    ReviewDatabaseError
        After the last attempt, naming the database and the reason ("database is locked", "connection refused").
    """
    delay = 0.05
    for i in range(attempts):
        try:
            return fn()
        except (OperationalError, DBAPIError, sqlite3.OperationalError) as e:
            if not _transient(e):
                raise ReviewDatabaseError(f"{what}: the review database {where} refused it ({reason_of(e)})") from None
            if i == attempts - 1:
                raise ReviewDatabaseError(
                    f"{what}: the review database {where} is not available ({reason_of(e)})"
                ) from None
            _LOG.info("%s: %s; retrying (%d/%d)", what, reason_of(e), i + 1, attempts)
            time.sleep(delay * (1 + random.random()))
            delay *= 3
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Database:
    """An opened, migrated review database: the engine (thread-safe, one per process) and its URL."""

    engine: Engine
    url: URL
    revisions: tuple[str, ...]

    @property
    def where(self) -> str:
        return describe_url(self.url) if self.url.get_backend_name() != "sqlite" else str(self.url.database)

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(
    url: URL | str | None = None,
    *,
    cache_root: Path | None = None,
    dataset_root: Path | None = None,
    busy_timeout_s: float | None = None,
) -> Database:
    """Open the review database: check where it is, refuse a newer schema, upgrade an older one.

    The check and the upgrade run in one write transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
    PostgreSQL), so processes opening a new database at once migrate it once; a refused database gets no write.

    Raises
    ------
    ReviewConfigError
        ``MOSMED_DB`` is unusable, or the SQLite file is inside the cache / the dataset.
    SchemaTooNewError
        The database has a revision this app does not know.
    ReviewDatabaseError
        The database cannot be reached or written.
    """
    from mosmed.reviews import migrations

    url = url if isinstance(url, URL) else database_url(url)
    check_location(url, cache_root=cache_root, dataset_root=dataset_root)
    where = str(url.database) if url.get_backend_name() == "sqlite" else describe_url(url)
    engine = make_engine(url, busy_timeout_s=busy_timeout_s)

    def migrate() -> tuple[str, ...]:
        with engine.execution_options(**WRITE).begin() as conn:
            if url.get_backend_name() == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7262012)")  # one migrator at a time
            before = migrations.check_known(conn, where)
            if set(before) != set(migrations.heads()):
                migrations.upgrade(conn)
                _LOG.info("review database %s upgraded from %s to %s", where, before or "empty", migrations.heads())
            return migrations.current_revisions(conn)

    try:
        revisions = retrying(migrate, what="opening the reviews", where=where, attempts=2)
    except Exception:
        engine.dispose()
        raise
    return Database(engine=engine, url=url, revisions=revisions)


def utcnow() -> datetime:
    """Now in UTC, naive (stored as such in both backends; frames make it tz-aware again)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """What the review and classroom stores share: the database, its upsert ``insert`` and one retried
    transaction per call. Thread-safe: it holds only the engine.

    ``fn(conn, now)`` runs in one transaction: :meth:`_write` takes the write lock up front (SQLite's
    ``BEGIN IMMEDIATE``, see :data:`WRITE`), :meth:`_read` does not. ``now`` is the transaction's time
    (:func:`utcnow`, taken again on a retry).
    """

    def __init__(self, db: Database) -> None:
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        self.db = db
        self.engine = db.engine
        self._insert = pg_insert if db.backend == "postgresql" else sqlite_insert

    @property
    def where(self) -> str:
        return self.db.where

    def _write(self, fn: Callable[[Any, datetime], T], what: str, attempts: int = RETRIES) -> T:
        def tx() -> T:
            now = utcnow()
            with self.engine.execution_options(**WRITE).begin() as conn:
                return fn(conn, now)

        return retrying(tx, what=what, where=self.where, attempts=attempts)

    def _read(self, fn: Callable[[Any, datetime], T], what: str, attempts: int = RETRIES) -> T:
        def tx() -> T:
            now = utcnow()
            with self.engine.connect() as conn:
                return fn(conn, now)

        return retrying(tx, what=what, where=self.where, attempts=attempts)
