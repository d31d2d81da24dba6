"""Alembic environment: migrate on the connection handed in by :func:`mosmed.reviews.migrations.upgrade`.

The caller opens the transaction (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two
processes opening a new database at once migrate it once. Offline (SQL script) mode is not used.
"""

from __future__ import annotations

from alembic import context

from mosmed.reviews.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic command line
    raise RuntimeError("run migrations through mosmed.reviews.db.open_database (no alembic.ini here)")

# render_as_batch: SQLite cannot ALTER constraints; batch mode rebuilds the table (a no-op on PostgreSQL).
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
