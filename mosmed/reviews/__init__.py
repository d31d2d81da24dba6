"""Case review that lasts: grades, flags and notes per reader in a real database (issue 12).

No Streamlit import anywhere in this package. One module a concern:

- :mod:`.model`      grades, flags, bounds, the validated :class:`Review` and :class:`Reader` values;
- :mod:`.errors`     typed errors (each ``str()`` a complete sentence);
- :mod:`.identity`   dataset identity (which dataset a review belongs to);
- :mod:`.db`         the database URL (``MOSMED_DB`` or the default SQLite file), the engine, SQLite pragmas,
  retries, and opening a database (migrated, or refused when newer);
- :mod:`.schema`     the tables (SQLAlchemy Core);
- :mod:`.migrations` Alembic environment and revisions, run programmatically at open;
- :mod:`.store`      save a review, latest per reader, history, the per-study review frame;
- :mod:`.agreement`  Cohen's kappa (unweighted, linear), its 95 % interval, confusion matrices;
- :mod:`.export`     review rows as CSV / XLSX / JSON (text cells defused for spreadsheets);
- :mod:`.cli`        ``python -m mosmed review add | export | agreement``.
"""
