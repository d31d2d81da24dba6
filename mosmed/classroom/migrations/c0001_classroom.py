"""The first classroom schema: sessions, their studies, the presenter, participants, questions, answers,
failed attempts.

Revision ID: c0001
Revises:
Create Date: 2026-12-08

A branch of its own (``classroom``): it references no review table, so it needs no review revision first.
Frozen: the lists and bounds below are those of this revision (a later change is a new revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = ("classroom",)
depends_on = None

_CLASSES = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")
_STATES = ("open", "closed", "revealed")
_PLANES = ("axial", "coronal", "sagittal")
_KINDS = ("join", "rejoin", "teacher")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _bool(name: str) -> sa.Boolean:
    return sa.Boolean(create_constraint=True, name=name)


def upgrade() -> None:
    op.create_table(
        "class_sessions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("title", sa.String(480), nullable=False),
        sa.Column("dataset_digest", sa.String(64), nullable=False),
        sa.Column("dataset_label", sa.String(200), nullable=False, server_default=""),
        sa.Column("dataset_root", sa.Text(), nullable=False, server_default=""),
        sa.Column("teacher_key_hash", sa.String(64), nullable=False),
        sa.Column("teacher_subject", sa.String(400), nullable=True),
        sa.Column("names_public", _bool("ck_class_sessions_names_public_bool"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_class_sessions"),
        sa.UniqueConstraint("code", name="uq_class_sessions_code"),
        sa.CheckConstraint("length(code) = 8", name="ck_class_sessions_code_length"),
        sa.CheckConstraint("length(title) BETWEEN 1 AND 120", name="ck_class_sessions_title_length"),
        sa.CheckConstraint("length(teacher_key_hash) = 64", name="ck_class_sessions_teacher_key_sha256"),
    )
    op.create_table(
        "class_studies",
        sa.Column("class_id", _ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("class_id", "position", name="pk_class_studies"),
        sa.UniqueConstraint("class_id", "study_id", name="uq_class_studies_class_id_study_id"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["class_sessions.id"], ondelete="CASCADE", name="fk_class_studies_class_id_class_sessions"
        ),
        sa.CheckConstraint("position >= 0", name="ck_class_studies_position_nonnegative"),
        sa.CheckConstraint("study_id >= 0", name="ck_class_studies_study_id_nonnegative"),
    )
    op.create_table(
        "class_questions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("class_id", _ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("truth", sa.String(4), nullable=False),
        sa.Column("involvement_pct", sa.Float(), nullable=True),
        sa.Column("estimated_pct", sa.Float(), nullable=True),
        sa.Column("estimate_calibrated", _bool("ck_class_questions_estimate_calibrated_bool"), nullable=True),
        sa.Column("has_mask", _bool("ck_class_questions_has_mask_bool"), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("revealed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_class_questions"),
        sa.UniqueConstraint("class_id", "number", name="uq_class_questions_class_id_number"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["class_sessions.id"], ondelete="CASCADE", name="fk_class_questions_class_id_class_sessions"
        ),
        sa.CheckConstraint(_in("truth", _CLASSES), name="ck_class_questions_truth_known"),
        sa.CheckConstraint(_in("state", _STATES), name="ck_class_questions_state_known"),
        sa.CheckConstraint("number >= 1", name="ck_class_questions_number_positive"),
    )
    op.create_table(
        "class_presenter",
        sa.Column("class_id", _ID, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("slice", sa.Integer(), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("width", sa.Float(), nullable=False),
        sa.Column("window_name", sa.String(16), nullable=True),
        sa.Column("plane", sa.String(8), nullable=False),
        sa.Column("cursor_row", sa.Integer(), nullable=False),
        sa.Column("cursor_col", sa.Integer(), nullable=False),
        sa.Column("question_id", _ID, nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("class_id", name="pk_class_presenter"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["class_sessions.id"], ondelete="CASCADE", name="fk_class_presenter_class_id_class_sessions"
        ),
        sa.ForeignKeyConstraint(
            ["question_id"],
            ["class_questions.id"],
            ondelete="SET NULL",
            name="fk_class_presenter_question_id_class_questions",
        ),
        sa.CheckConstraint(_in("plane", _PLANES), name="ck_class_presenter_plane_known"),
        sa.CheckConstraint(
            "slice >= 0 AND cursor_row >= 0 AND cursor_col >= 0", name="ck_class_presenter_position_nonnegative"
        ),
        sa.CheckConstraint("width > 0", name="ck_class_presenter_width_positive"),
    )
    op.create_table(
        "class_participants",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("class_id", _ID, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(160), nullable=False),
        sa.Column("name_key", sa.String(160), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("following", _bool("ck_class_participants_following_bool"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_class_participants"),
        sa.UniqueConstraint("token_hash", name="uq_class_participants_token_hash"),
        sa.UniqueConstraint("class_id", "name_key", name="uq_class_participants_class_id_name_key"),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["class_sessions.id"],
            ondelete="CASCADE",
            name="fk_class_participants_class_id_class_sessions",
        ),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 40", name="ck_class_participants_name_length"),
        sa.CheckConstraint("length(token_hash) = 64", name="ck_class_participants_token_sha256"),
    )
    op.create_index("ix_class_participants_class_seen", "class_participants", ["class_id", "last_seen"])
    op.create_table(
        "class_answers",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("question_id", _ID, nullable=False),
        sa.Column("participant_id", _ID, nullable=False),
        sa.Column("answer", sa.String(4), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_class_answers"),
        sa.UniqueConstraint("question_id", "participant_id", name="uq_class_answers_question_id_participant_id"),
        sa.ForeignKeyConstraint(
            ["question_id"],
            ["class_questions.id"],
            ondelete="CASCADE",
            name="fk_class_answers_question_id_class_questions",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["class_participants.id"],
            ondelete="CASCADE",
            name="fk_class_answers_participant_id_class_participants",
        ),
        sa.CheckConstraint(_in("answer", _CLASSES), name="ck_class_answers_answer_known"),
    )
    op.create_index("ix_class_answers_participant", "class_answers", ["participant_id"])
    op.create_table(
        "class_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("client_key", sa.String(64), nullable=False),
        sa.Column("browser_key", sa.String(64), nullable=False),
        sa.Column("class_id", _ID, nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_class_attempts"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["class_sessions.id"], ondelete="CASCADE", name="fk_class_attempts_class_id_class_sessions"
        ),
        sa.CheckConstraint(_in("kind", _KINDS), name="ck_class_attempts_kind_known"),
    )
    op.create_index("ix_class_attempts_at", "class_attempts", ["at"])
    op.create_index("ix_class_attempts_client", "class_attempts", ["client_key", "at"])
    op.create_index("ix_class_attempts_browser", "class_attempts", ["browser_key", "at"])
    op.create_index("ix_class_attempts_class", "class_attempts", ["class_id", "at"])


def downgrade() -> None:
    for ix, table in (
        ("ix_class_attempts_class", "class_attempts"),
        ("ix_class_attempts_browser", "class_attempts"),
        ("ix_class_attempts_client", "class_attempts"),
        ("ix_class_attempts_at", "class_attempts"),
    ):
        op.drop_index(ix, table_name=table)
    op.drop_table("class_attempts")
    op.drop_index("ix_class_answers_participant", table_name="class_answers")
    op.drop_table("class_answers")
    op.drop_index("ix_class_participants_class_seen", table_name="class_participants")
    op.drop_table("class_participants")
    op.drop_table("class_presenter")
    op.drop_table("class_questions")
    op.drop_table("class_studies")
    op.drop_table("class_sessions")
