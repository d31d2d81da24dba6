"""Live teaching sessions (issue 13): a class follows its presenter and answers a class quiz, across replicas.

No Streamlit import anywhere in this package; every piece of shared state lives in the database (the review
database of :mod:`mosmed.reviews.db`, same ``MOSMED_DB``), so a teacher and their students may be served by
different app processes. One module a concern:

- :mod:`.errors`     typed errors (each ``str()`` a complete sentence);
- :mod:`.model`      bounds, the validated title and names, the value types the store hands out;
- :mod:`.codes`      join codes (alphabet, length, why ~40 bits), teacher keys and student tokens, hashing;
- :mod:`.limits`     how many failed join / rejoin / teacher attempts are allowed, per client, per browser
  session, per class and in all;
- :mod:`.schema`     the tables (SQLAlchemy Core), constraints in the schema;
- :mod:`.migrations` Alembic revisions of the ``classroom`` branch (registered in
  :data:`mosmed.reviews.migrations.VERSION_LOCATIONS`);
- :mod:`.store`      :class:`~mosmed.classroom.store.ClassroomStore`: create, join, follow, ask, answer,
  reveal, scores, export;
- :mod:`.seat`       a student's client-side state machine (pending answers kept through an outage, follow,
  heartbeat), used by the app's component and by the simulated students of the load tests alike.
"""
