"""Alembic revisions of the ``classroom`` branch (its own base; see :mod:`mosmed.reviews.migrations`).

This folder is listed in :data:`mosmed.reviews.migrations.VERSION_LOCATIONS`, so every process opening the
database (``mosmed.reviews.db.open_database``) upgrades the reviews' and the classroom's branches to their
heads in one transaction. ``c0001``: the first classroom schema.
"""
