"""The review tables at the head revision (SQLAlchemy Core), constraints in the schema.

History is append-only: every save is a row of ``review_events`` (who, when, what) with its flags in
``review_event_flags``; ``review_latest`` points at each reader's newest event per study, which is what the
app shows. The Alembic revisions in :mod:`mosmed.reviews.migrations` build exactly these tables (a test
compares them); a schema change is a new revision plus the change here.

Other features add their own tables to the same database with their own Alembic revisions (a branch of
their own, see :mod:`mosmed.reviews.migrations`); they may reference ``review_datasets`` and ``review_readers``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from mosmed.reviews.model import FLAGS, GRADES, MAX_NAME_CHARS, MAX_NOTE_CHARS, READER_KINDS

__all__ = ["NAMING", "metadata", "datasets", "readers", "events", "event_flags", "latest", "sql_in"]

#: Constraint names are fixed by convention so migrations (and SQLite batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

#: An id column that is BIGINT on PostgreSQL and SQLite's rowid alias (INTEGER PRIMARY KEY) there.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def sql_in(column: str, values) -> str:
    """``"column IN ('a', 'b')"`` for a CHECK constraint (values are our own identifiers, never user text)."""
    for v in values:
        if "'" in v:
            raise ValueError(f"identifier {v!r} cannot go into a CHECK constraint")
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


datasets = Table(
    "review_datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("identity", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False, server_default=""),
    Column("n_studies", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(), nullable=False),
    CheckConstraint("length(identity) = 64", name="identity_sha256"),
)

readers = Table(
    "review_readers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    UniqueConstraint("kind", "subject", name="uq_review_readers_kind_subject"),
    CheckConstraint(sql_in("kind", READER_KINDS), name="kind_known"),
    CheckConstraint(f"length(display_name) BETWEEN 1 AND {MAX_NAME_CHARS}", name="display_name_length"),
)

events = Table(
    "review_events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("dataset_id", Integer, ForeignKey("review_datasets.id", ondelete="CASCADE"), nullable=False),
    Column("study_id", Integer, nullable=False),
    Column("reader_id", Integer, ForeignKey("review_readers.id", ondelete="CASCADE"), nullable=False),
    Column("grade", String(12), nullable=True),
    Column("note", Text, nullable=False, server_default=""),
    Column("action", String(8), nullable=False),
    Column("source", String(8), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    CheckConstraint("study_id >= 0", name="study_id_nonnegative"),
    CheckConstraint("grade IS NULL OR " + sql_in("grade", GRADES), name="grade_known"),
    CheckConstraint(f"length(note) <= {MAX_NOTE_CHARS}", name="note_length"),
    CheckConstraint(sql_in("action", ("save", "clear")), name="action_known"),
    CheckConstraint(sql_in("source", ("app", "cli")), name="source_known"),
    Index("ix_review_events_dataset_study", "dataset_id", "study_id", "id"),
    Index("ix_review_events_reader", "reader_id"),
)

event_flags = Table(
    "review_event_flags",
    metadata,
    Column("event_id", _ID, ForeignKey("review_events.id", ondelete="CASCADE"), nullable=False),
    Column("flag", String(32), nullable=False),
    PrimaryKeyConstraint("event_id", "flag", name="pk_review_event_flags"),
    CheckConstraint(sql_in("flag", FLAGS), name="flag_known"),
)

# Revision 0002: the newest event per (dataset, study, reader), kept in the same transaction as each save, so
# the registry's review facets read one row per reader and study instead of grouping the whole history.
latest = Table(
    "review_latest",
    metadata,
    Column("dataset_id", Integer, ForeignKey("review_datasets.id", ondelete="CASCADE"), nullable=False),
    Column("study_id", Integer, nullable=False),
    Column("reader_id", Integer, ForeignKey("review_readers.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", _ID, ForeignKey("review_events.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("updated_at", DateTime(), nullable=False),
    PrimaryKeyConstraint("dataset_id", "study_id", "reader_id", name="pk_review_latest"),
)
