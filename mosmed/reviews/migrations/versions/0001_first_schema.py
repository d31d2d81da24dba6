"""The first review schema: datasets, readers, the append-only history of events and their flags.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Frozen: the grade and flag lists below are those of this revision (a later change is a new revision), so
they are written out here rather than imported from mosmed.reviews.model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = ("reviews",)
depends_on = None

_GRADES = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4", "ungradable")
_FLAGS = ("label_doubtful", "mask_problem", "artefact", "wrong_series", "orientation", "duplicate", "other")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "review_datasets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("identity", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("n_studies", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_datasets"),
        sa.UniqueConstraint("identity", name="uq_review_datasets_identity"),
        sa.CheckConstraint("length(identity) = 64", name="ck_review_datasets_identity_sha256"),
    )
    op.create_table(
        "review_readers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_readers"),
        sa.UniqueConstraint("kind", "subject", name="uq_review_readers_kind_subject"),
        sa.CheckConstraint(_in("kind", ("name", "oidc")), name="ck_review_readers_kind_known"),
        sa.CheckConstraint("length(display_name) BETWEEN 1 AND 80", name="ck_review_readers_display_name_length"),
    )
    op.create_table(
        "review_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(12), nullable=True),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_events"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["review_datasets.id"],
            ondelete="CASCADE",
            name="fk_review_events_dataset_id_review_datasets",
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["review_readers.id"], ondelete="CASCADE", name="fk_review_events_reader_id_review_readers"
        ),
        sa.CheckConstraint("study_id >= 0", name="ck_review_events_study_id_nonnegative"),
        sa.CheckConstraint("grade IS NULL OR " + _in("grade", _GRADES), name="ck_review_events_grade_known"),
        sa.CheckConstraint("length(note) <= 2000", name="ck_review_events_note_length"),
        sa.CheckConstraint(_in("action", ("save", "clear")), name="ck_review_events_action_known"),
        sa.CheckConstraint(_in("source", ("app", "cli")), name="ck_review_events_source_known"),
    )
    op.create_index("ix_review_events_dataset_study", "review_events", ["dataset_id", "study_id", "id"])
    op.create_index("ix_review_events_reader", "review_events", ["reader_id"])
    op.create_table(
        "review_event_flags",
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "flag", name="pk_review_event_flags"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["review_events.id"], ondelete="CASCADE", name="fk_review_event_flags_event_id_review_events"
        ),
        sa.CheckConstraint(_in("flag", _FLAGS), name="ck_review_event_flags_flag_known"),
    )


def downgrade() -> None:
    op.drop_table("review_event_flags")
    op.drop_index("ix_review_events_reader", table_name="review_events")
    op.drop_index("ix_review_events_dataset_study", table_name="review_events")
    op.drop_table("review_events")
    op.drop_table("review_readers")
    op.drop_table("review_datasets")
