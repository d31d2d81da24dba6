"""The newest event per (dataset, study, reader) as a table, backfilled from the history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The registry's review facets need each reader's current review of every study on every page run; with only
the history that is a GROUP BY over all events. The store keeps this table in the same transaction as each
save (an upsert that only moves forward: a newer event id wins).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_latest",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "study_id", "reader_id", name="pk_review_latest"),
        sa.UniqueConstraint("event_id", name="uq_review_latest_event_id"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["review_datasets.id"],
            ondelete="CASCADE",
            name="fk_review_latest_dataset_id_review_datasets",
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["review_readers.id"], ondelete="CASCADE", name="fk_review_latest_reader_id_review_readers"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["review_events.id"], ondelete="CASCADE", name="fk_review_latest_event_id_review_events"
        ),
    )
    # Backfill: each reader's newest event per study in the first schema's history.
    op.execute(
        "INSERT INTO review_latest (dataset_id, study_id, reader_id, event_id, updated_at) "
        "SELECT e.dataset_id, e.study_id, e.reader_id, e.id, e.created_at FROM review_events e "
        "JOIN (SELECT dataset_id, study_id, reader_id, MAX(id) AS id FROM review_events "
        "      GROUP BY dataset_id, study_id, reader_id) m ON m.id = e.id"
    )


def downgrade() -> None:
    op.drop_table("review_latest")
