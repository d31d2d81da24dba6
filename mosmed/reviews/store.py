"""Saving and reading reviews: one write transaction per save, history kept, latest per reader shown.

A save inserts one ``review_events`` row (who, when, what) with its flags and moves the reader's
``review_latest`` pointer for that study forward, all in one transaction; nothing is ever updated in place
or deleted, so the history is complete. Reads never write (a dataset seen for the first time is created by
its first save).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import and_, select

from mosmed.reviews import schema
from mosmed.reviews.db import Store
from mosmed.reviews.errors import ReviewInputError
from mosmed.reviews.identity import DatasetIdentity
from mosmed.reviews.model import CLASS_GRADES, FLAGS, Reader, Review

__all__ = ["SavedReview", "ReviewStore", "LATEST_COLUMNS", "HISTORY_COLUMNS", "per_study"]

#: Columns of :meth:`ReviewStore.latest` (one row per study and reader).
LATEST_COLUMNS = ("study_id", "reader_key", "reader", "verified", "grade", "flags", "note", "updated_at", "event_id")
#: Columns of :meth:`ReviewStore.history` (one row per save, oldest first).
HISTORY_COLUMNS = (
    "event_id",
    "study_id",
    "reader_key",
    "reader",
    "verified",
    "grade",
    "flags",
    "note",
    "action",
    "source",
    "created_at",
)


@dataclass(frozen=True)
class SavedReview:
    """What one save wrote."""

    event_id: int
    study_id: int
    reader: Reader
    review: Review
    action: str
    saved_at: datetime


class ReviewStore(Store):
    """Reviews of every dataset in one database. Thread-safe: it holds only the engine (no mutable state).

    Parameters
    ----------
    db : Database
        From :func:`mosmed.reviews.db.open_database` (migrated and checked).
    """

    # ------------------------------------------------------------------------------------------------ writes

    def _dataset_id(self, conn, identity: DatasetIdentity, now: datetime) -> int:
        t = schema.datasets
        found = conn.execute(select(t.c.id).where(t.c.identity == identity.digest)).scalar()
        if found is not None:
            return int(found)
        conn.execute(
            self._insert(t)
            .values(
                identity=identity.digest, label=identity.label[:200], n_studies=int(identity.n_studies), created_at=now
            )
            .on_conflict_do_nothing(index_elements=[t.c.identity])
        )
        return int(conn.execute(select(t.c.id).where(t.c.identity == identity.digest)).scalar_one())

    def _reader_id(self, conn, reader: Reader, now: datetime) -> int:
        t = schema.readers
        key = and_(t.c.kind == reader.kind, t.c.subject == reader.subject)
        row = conn.execute(select(t.c.id, t.c.display_name).where(key)).first()
        if row is None:
            conn.execute(
                self._insert(t)
                .values(kind=reader.kind, subject=reader.subject, display_name=reader.display_name, created_at=now)
                .on_conflict_do_nothing(index_elements=[t.c.kind, t.c.subject])
            )
            return int(conn.execute(select(t.c.id).where(key)).scalar_one())
        if row.display_name != reader.display_name:  # the newest spelling of a name (or login name) is shown
            conn.execute(t.update().where(t.c.id == row.id).values(display_name=reader.display_name))
        return int(row.id)

    def save(
        self,
        identity: DatasetIdentity,
        study_id: int,
        reader: Reader,
        review: Review,
        *,
        valid_ids: Collection[int] | None = None,
        source: str = "app",
    ) -> SavedReview:
        """Save ``reader``'s review of one study (an empty review clears it; both stay in the history).

        ``reader`` comes from the caller's session (the app) or its command line (the CLI); there is no way
        to write a review under another reader's name through the app.

        Raises
        ------
        ReviewInputError
            ``study_id`` is not in ``valid_ids`` (the dataset's registry), or ``source`` is unknown.
        ReviewDatabaseError
            The database is unreachable or stays locked past the retries (nothing was written).
        """
        try:
            study_id = int(study_id)
        except (TypeError, ValueError):
            raise ReviewInputError(f"study id {str(study_id)[:20]!r} is not a number") from None
        if study_id < 0 or (valid_ids is not None and study_id not in valid_ids):
            raise ReviewInputError(
                f"study {study_id} is not in the registry of dataset {identity.label}", study_id=None
            )
        if source not in ("app", "cli"):
            raise ReviewInputError(f"unknown review source {source!r}")
        action = "clear" if review.is_empty else "save"

        def tx(conn, now) -> SavedReview:
            ds_id = self._dataset_id(conn, identity, now)
            rd_id = self._reader_id(conn, reader, now)
            res = conn.execute(
                schema.events.insert().values(
                    dataset_id=ds_id,
                    study_id=study_id,
                    reader_id=rd_id,
                    grade=review.grade,
                    note=review.note,
                    action=action,
                    source=source,
                    created_at=now,
                )
            )
            ev_id = int(res.inserted_primary_key[0])
            if review.flags:
                conn.execute(schema.event_flags.insert(), [{"event_id": ev_id, "flag": f} for f in review.flags])
            lt = schema.latest
            up = self._insert(lt).values(
                dataset_id=ds_id, study_id=study_id, reader_id=rd_id, event_id=ev_id, updated_at=now
            )
            # Only forward: of two saves racing in two processes, the later event id is the latest.
            up = up.on_conflict_do_update(
                index_elements=[lt.c.dataset_id, lt.c.study_id, lt.c.reader_id],
                set_={"event_id": up.excluded.event_id, "updated_at": up.excluded.updated_at},
                where=lt.c.event_id < up.excluded.event_id,
            )
            conn.execute(up)
            # Committed when this returns (the transaction ends with the call).
            return SavedReview(
                event_id=ev_id,
                study_id=study_id,
                reader=reader,
                review=review,
                action=action,
                saved_at=now.replace(tzinfo=UTC),
            )

        return self._write(tx, f"saving the review of study {study_id}")

    # ------------------------------------------------------------------------------------------------- reads

    def latest(
        self, identity: DatasetIdentity, study_ids: Iterable[int] | None = None, *, include_cleared: bool = False
    ) -> pd.DataFrame:
        """Each reader's current review per study (:data:`LATEST_COLUMNS`); cleared reviews left out."""
        e, lt, r, d, f = schema.events, schema.latest, schema.readers, schema.datasets, schema.event_flags
        ids = None if study_ids is None else sorted({int(i) for i in study_ids})

        def q(conn, _now):
            cond = [d.c.identity == identity.digest]
            if ids is not None and len(ids) <= 500:
                cond.append(lt.c.study_id.in_(ids))
            base = (
                select(
                    lt.c.study_id,
                    lt.c.event_id,
                    lt.c.updated_at,
                    r.c.kind,
                    r.c.subject,
                    r.c.display_name,
                    e.c.grade,
                    e.c.note,
                    e.c.action,
                )
                .select_from(
                    lt.join(d, d.c.id == lt.c.dataset_id)
                    .join(e, e.c.id == lt.c.event_id)
                    .join(r, r.c.id == lt.c.reader_id)
                )
                .where(*cond)
            )
            rows = conn.execute(base).all()
            flags = conn.execute(
                select(f.c.event_id, f.c.flag)
                .select_from(f.join(lt, lt.c.event_id == f.c.event_id).join(d, d.c.id == lt.c.dataset_id))
                .where(*cond)
            ).all()
            return rows, flags

        rows, flags = self._read(q, "reading the reviews")
        by_event: dict[int, list[str]] = {}
        for ev, flag in flags:
            by_event.setdefault(int(ev), []).append(str(flag))
        out = []
        for row in rows:
            if ids is not None and int(row.study_id) not in ids:
                continue
            if row.action == "clear" and not include_cleared:
                continue
            reader = Reader(row.kind, row.subject, row.display_name)
            out.append(
                {
                    "study_id": int(row.study_id),
                    "reader_key": reader.key,
                    "reader": reader.display_name,
                    "verified": reader.verified,
                    "grade": row.grade,
                    "flags": _sorted_flags(by_event.get(int(row.event_id), [])),
                    "note": row.note or "",
                    "updated_at": _utc(row.updated_at),
                    "event_id": int(row.event_id),
                }
            )
        df = pd.DataFrame(out, columns=list(LATEST_COLUMNS))
        return df.sort_values(["study_id", "reader"], kind="stable").reset_index(drop=True)

    def history(self, identity: DatasetIdentity, study_id: int | None = None) -> pd.DataFrame:
        """Every save (:data:`HISTORY_COLUMNS`), oldest first; one study's when ``study_id`` is given."""
        e, r, d, f = schema.events, schema.readers, schema.datasets, schema.event_flags

        def q(conn, _now):
            cond = [d.c.identity == identity.digest]
            if study_id is not None:
                cond.append(e.c.study_id == int(study_id))
            rows = conn.execute(
                select(
                    e.c.id,
                    e.c.study_id,
                    e.c.grade,
                    e.c.note,
                    e.c.action,
                    e.c.source,
                    e.c.created_at,
                    r.c.kind,
                    r.c.subject,
                    r.c.display_name,
                )
                .select_from(e.join(d, d.c.id == e.c.dataset_id).join(r, r.c.id == e.c.reader_id))
                .where(*cond)
                .order_by(e.c.id)
            ).all()
            flags = conn.execute(
                select(f.c.event_id, f.c.flag)
                .select_from(f.join(e, e.c.id == f.c.event_id).join(d, d.c.id == e.c.dataset_id))
                .where(*cond)
            ).all()
            return rows, flags

        rows, flags = self._read(q, "reading the review history")
        by_event: dict[int, list[str]] = {}
        for ev, flag in flags:
            by_event.setdefault(int(ev), []).append(str(flag))
        out = []
        for row in rows:
            reader = Reader(row.kind, row.subject, row.display_name)
            out.append(
                {
                    "event_id": int(row.id),
                    "study_id": int(row.study_id),
                    "reader_key": reader.key,
                    "reader": reader.display_name,
                    "verified": reader.verified,
                    "grade": row.grade,
                    "flags": _sorted_flags(by_event.get(int(row.id), [])),
                    "note": row.note or "",
                    "action": row.action,
                    "source": row.source,
                    "created_at": _utc(row.created_at),
                }
            )
        return pd.DataFrame(out, columns=list(HISTORY_COLUMNS))

    def review_of(self, identity: DatasetIdentity, study_id: int, reader: Reader) -> tuple[Review, datetime] | None:
        """``reader``'s current review of one study and when it was saved, or ``None``."""
        df = self.latest(identity, [int(study_id)])
        mine = df[df["reader_key"] == reader.key]
        if mine.empty:
            return None
        row = mine.iloc[0]
        return Review(grade=row["grade"], flags=tuple(row["flags"]), note=row["note"]), row["updated_at"]

    def datasets(self) -> pd.DataFrame:
        """Every dataset identity in the database with its label and number of saves."""
        d, e = schema.datasets, schema.events
        from sqlalchemy import func

        def q(conn, _now):
            return conn.execute(
                select(d.c.identity, d.c.label, d.c.n_studies, d.c.created_at, func.count(e.c.id).label("n_saves"))
                .select_from(d.outerjoin(e, e.c.dataset_id == d.c.id))
                .group_by(d.c.id)
                .order_by(d.c.id)
            ).all()

        rows = self._read(q, "listing the reviewed datasets")
        return pd.DataFrame(
            [
                {
                    "identity": r.identity,
                    "label": r.label,
                    "n_studies": int(r.n_studies),
                    "first_seen": _utc(r.created_at),
                    "n_saves": int(r.n_saves),
                }
                for r in rows
            ],
            columns=["identity", "label", "n_studies", "first_seen", "n_saves"],
        )


def _sorted_flags(flags: Iterable[str]) -> tuple[str, ...]:
    order = {f: i for i, f in enumerate(FLAGS)}
    return tuple(sorted(set(flags), key=lambda f: order.get(f, len(order))))


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# ------------------------------------------------------------------------------------------ per-study frame

PER_STUDY_COLUMNS = ("study_id", "n_readers", "reviewed_by_me", "my_grade", "my_flags", "flags", "grades", "disagree")


def per_study(latest: pd.DataFrame, me: str | None, categories: pd.Series) -> pd.DataFrame:
    """One row per reviewed study from :meth:`ReviewStore.latest`, for the registry's review facets.

    Parameters
    ----------
    latest : DataFrame
        :data:`LATEST_COLUMNS`.
    me : str or None
        The current reader's ``reader_key``.
    categories : Series
        Registry class per study id (index = study id).

    Returns
    -------
    DataFrame
        ``study_id``, ``n_readers``, ``reviewed_by_me`` (bool), ``my_grade``, ``my_flags`` (tuple),
        ``flags`` (tuple: any reader's), ``grades`` ("name: CT-1; other: CT-2"), ``disagree`` (a reader's
        CT grade differs from the registry class).
    """
    rows = []
    for sid, group in latest.groupby("study_id", sort=True):
        sid = int(sid)
        cat = str(categories.get(sid, "")) if categories is not None else ""
        mine = group[group["reader_key"] == me] if me else group.iloc[0:0]
        flags = _sorted_flags(f for fl in group["flags"] for f in fl)
        graded = [g for g in group["grade"] if isinstance(g, str) and g in CLASS_GRADES]
        rows.append(
            {
                "study_id": sid,
                "n_readers": int(group["reader_key"].nunique()),
                "reviewed_by_me": not mine.empty,
                "my_grade": (mine.iloc[0]["grade"] if not mine.empty else None),
                "my_flags": (tuple(mine.iloc[0]["flags"]) if not mine.empty else ()),
                "flags": flags,
                "grades": "; ".join(f"{r}: {g or '—'}" for r, g in zip(group["reader"], group["grade"])),
                "disagree": bool(cat in CLASS_GRADES and any(g != cat for g in graded)),
            }
        )
    return pd.DataFrame(rows, columns=list(PER_STUDY_COLUMNS))
