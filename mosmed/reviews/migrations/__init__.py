"""Alembic migrations of the review database, run programmatically at open (no alembic.ini at run time).

Layout: ``env.py`` (the environment: runs on the connection it is handed), ``script.py.mako`` (template for
``alembic revision``), ``versions/`` (the review revisions, branch label ``reviews``: ``0001`` the first schema,
``0002`` the latest-review table).

Adding tables for another feature (e.g. the classroom)
------------------------------------------------------
Put its revisions in its own folder (``mosmed/<feature>/migrations_versions/``) as a branch of its own:
the first revision has ``down_revision = None``, ``branch_labels = ("<feature>",)`` and
``depends_on = "0001"`` (or whichever review revision its foreign keys need). Add the folder to
:data:`VERSION_LOCATIONS`. Every process then upgrades all branches to their heads at open; a database with
any revision that is not in these folders is refused as newer than the app (:func:`check_known`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from mosmed.reviews.errors import SchemaTooNewError

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_LOCATIONS",
    "FIRST_REVISION",
    "alembic_config",
    "heads",
    "current_revisions",
    "check_known",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent
#: Every folder of revisions the app knows (one per feature branch). Append a feature's folder here.
#: ``classroom``: the live teaching sessions of issue 13 (mosmed/classroom/migrations, its own base).
VERSION_LOCATIONS: tuple[Path, ...] = (
    MIGRATIONS_DIR / "versions",
    MIGRATIONS_DIR.parents[1] / "classroom" / "migrations",
)
#: The first review schema; kept forever, the upgrade path from it is tested.
FIRST_REVISION = "0001"


def alembic_config(connection=None, locations: tuple[Path, ...] = VERSION_LOCATIONS) -> Config:
    """An Alembic ``Config`` built in code; ``connection`` is handed to env.py through ``attributes``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    import os

    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script(locations: tuple[Path, ...] = VERSION_LOCATIONS) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(None, locations))


def heads(locations: tuple[Path, ...] = VERSION_LOCATIONS) -> tuple[str, ...]:
    """The head revision of every branch the app knows."""
    return tuple(sorted(_script(locations).get_heads()))


def current_revisions(connection) -> tuple[str, ...]:
    """The revisions recorded in the database (empty for a new database)."""
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def check_known(connection, where: str, locations: tuple[Path, ...] = VERSION_LOCATIONS) -> tuple[str, ...]:
    """The database's revisions, after checking that this app knows every one of them.

    Raises
    ------
    SchemaTooNewError
        A revision the app does not know: the database was written by a newer version of the app.
    """
    current = current_revisions(connection)
    script = _script(locations)
    unknown = []
    for rev in current:
        try:
            if script.get_revision(rev) is None:
                unknown.append(rev)
        except CommandError:
            unknown.append(rev)
    if unknown:
        raise SchemaTooNewError(
            f"the review database {where} has schema revision {', '.join(unknown)}, newer than this app knows "
            f"(up to {', '.join(heads(locations))}); it was written by a newer MosMed Explorer. Nothing was "
            "written to it: update the app, or point MOSMED_DB at another database"
        )
    return current


def upgrade(connection, target: str = "heads", locations: tuple[Path, ...] = VERSION_LOCATIONS) -> None:
    """Upgrade the database on ``connection`` (already in a transaction: all revisions commit together)."""
    command.upgrade(alembic_config(connection, locations), target)
