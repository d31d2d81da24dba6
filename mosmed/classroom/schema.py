"""The classroom tables at the head revision (SQLAlchemy Core), constraints in the schema.

They live in the review database (same ``MOSMED_DB``); the Alembic revisions of the ``classroom`` branch
(:mod:`mosmed.classroom.migrations`) build exactly these tables (a test compares them).

- ``class_sessions``: one row per class (code unique; the teacher key only as a hash);
- ``class_studies``: the class's studies in order;
- ``class_presenter``: where the teacher is, with a ``version`` that moves on every change (students poll it);
- ``class_participants``: students (their link's token only as a hash; a name once per class);
- ``class_questions``: the quiz; the class and the figures kept with the question at opening;
- ``class_answers``: UNIQUE per (question, participant): a student's answer is counted once, whatever the
  retries, replicas or reconnects;
- ``class_attempts``: failed join / rejoin / teacher attempts, for :mod:`mosmed.classroom.limits`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
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

from mosmed.classroom.codes import CODE_LENGTH
from mosmed.classroom.limits import ATTEMPT_KINDS
from mosmed.classroom.model import CLASSES, MAX_NAME_CHARS, MAX_TITLE_CHARS, PLANES, QUESTION_STATES
from mosmed.reviews.schema import NAMING, sql_in

__all__ = ["metadata", "sessions", "studies", "presenter", "participants", "questions", "answers", "attempts", "TABLES"]

metadata = MetaData(naming_convention=NAMING)
_ID = BigInteger().with_variant(Integer(), "sqlite")

sessions = Table(
    "class_sessions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("code", String(CODE_LENGTH), nullable=False, unique=True),
    Column("title", String(4 * MAX_TITLE_CHARS), nullable=False),
    Column("dataset_digest", String(64), nullable=False),
    Column("dataset_label", String(200), nullable=False, server_default=""),
    Column("dataset_root", Text, nullable=False, server_default=""),
    Column("teacher_key_hash", String(64), nullable=False),
    Column("teacher_subject", String(400), nullable=True),
    Column("names_public", Boolean(create_constraint=True, name="names_public_bool"), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("ended_at", DateTime(), nullable=True),
    CheckConstraint(f"length(code) = {CODE_LENGTH}", name="code_length"),
    CheckConstraint(f"length(title) BETWEEN 1 AND {MAX_TITLE_CHARS}", name="title_length"),
    CheckConstraint("length(teacher_key_hash) = 64", name="teacher_key_sha256"),
)

studies = Table(
    "class_studies",
    metadata,
    Column("class_id", _ID, ForeignKey("class_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("study_id", Integer, nullable=False),
    PrimaryKeyConstraint("class_id", "position", name="pk_class_studies"),
    UniqueConstraint("class_id", "study_id", name="uq_class_studies_class_id_study_id"),
    CheckConstraint("position >= 0", name="position_nonnegative"),
    CheckConstraint("study_id >= 0", name="study_id_nonnegative"),
)

questions = Table(
    "class_questions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("class_id", _ID, ForeignKey("class_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("study_id", Integer, nullable=False),
    Column("truth", String(4), nullable=False),
    Column("involvement_pct", Float, nullable=True),
    Column("estimated_pct", Float, nullable=True),
    Column("estimate_calibrated", Boolean(create_constraint=True, name="estimate_calibrated_bool"), nullable=True),
    Column("has_mask", Boolean(create_constraint=True, name="has_mask_bool"), nullable=False),
    Column("state", String(8), nullable=False),
    Column("opened_at", DateTime(), nullable=False),
    Column("closed_at", DateTime(), nullable=True),
    Column("revealed_at", DateTime(), nullable=True),
    UniqueConstraint("class_id", "number", name="uq_class_questions_class_id_number"),
    CheckConstraint(sql_in("truth", CLASSES), name="truth_known"),
    CheckConstraint(sql_in("state", QUESTION_STATES), name="state_known"),
    CheckConstraint("number >= 1", name="number_positive"),
)

presenter = Table(
    "class_presenter",
    metadata,
    Column("class_id", _ID, ForeignKey("class_sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("study_id", Integer, nullable=False),
    Column("slice", Integer, nullable=False),
    Column("level", Float, nullable=False),
    Column("width", Float, nullable=False),
    Column("window_name", String(16), nullable=True),
    Column("plane", String(8), nullable=False),
    Column("cursor_row", Integer, nullable=False),
    Column("cursor_col", Integer, nullable=False),
    Column("question_id", _ID, ForeignKey("class_questions.id", ondelete="SET NULL"), nullable=True),
    Column("updated_at", DateTime(), nullable=False),
    CheckConstraint(sql_in("plane", PLANES), name="plane_known"),
    CheckConstraint("slice >= 0 AND cursor_row >= 0 AND cursor_col >= 0", name="position_nonnegative"),
    CheckConstraint("width > 0", name="width_positive"),
)

participants = Table(
    "class_participants",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("class_id", _ID, ForeignKey("class_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(4 * MAX_NAME_CHARS), nullable=False),
    Column("name_key", String(4 * MAX_NAME_CHARS), nullable=False),
    Column("joined_at", DateTime(), nullable=False),
    Column("last_seen", DateTime(), nullable=False),
    Column("following", Boolean(create_constraint=True, name="following_bool"), nullable=False),
    UniqueConstraint("class_id", "name_key", name="uq_class_participants_class_id_name_key"),
    CheckConstraint(f"length(name) BETWEEN 1 AND {MAX_NAME_CHARS}", name="name_length"),
    CheckConstraint("length(token_hash) = 64", name="token_sha256"),
    Index("ix_class_participants_class_seen", "class_id", "last_seen"),
)

answers = Table(
    "class_answers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("question_id", _ID, ForeignKey("class_questions.id", ondelete="CASCADE"), nullable=False),
    Column("participant_id", _ID, ForeignKey("class_participants.id", ondelete="CASCADE"), nullable=False),
    Column("answer", String(4), nullable=False),
    Column("answered_at", DateTime(), nullable=False),
    Column("received_at", DateTime(), nullable=False),
    UniqueConstraint("question_id", "participant_id", name="uq_class_answers_question_id_participant_id"),
    CheckConstraint(sql_in("answer", CLASSES), name="answer_known"),
    Index("ix_class_answers_participant", "participant_id"),
)

attempts = Table(
    "class_attempts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("client_key", String(64), nullable=False),
    Column("browser_key", String(64), nullable=False),
    Column("class_id", _ID, ForeignKey("class_sessions.id", ondelete="CASCADE"), nullable=True),
    Column("at", DateTime(), nullable=False),
    CheckConstraint(sql_in("kind", ATTEMPT_KINDS), name="kind_known"),
    Index("ix_class_attempts_at", "at"),
    Index("ix_class_attempts_client", "client_key", "at"),
    Index("ix_class_attempts_browser", "browser_key", "at"),
    Index("ix_class_attempts_class", "class_id", "at"),
)

#: Every table of the branch, parents first.
TABLES = (sessions, studies, questions, presenter, participants, answers, attempts)
