"""Class sessions in the database: create, join, follow, ask, answer, reveal, scores and export.

Every call is one transaction (``with engine.begin()`` for writes, SQLite's ``BEGIN IMMEDIATE``), retried on a
locked SQLite or a dropped connection by :func:`mosmed.reviews.db.retrying`, which turns a database that stays
away into :class:`~mosmed.reviews.errors.ReviewDatabaseError` (nothing written). The store holds only the
engine: one per process, shared by every session of that process, thread-safe.

Who may do what is decided here, from the database, on every call:

- a teacher action takes a :class:`~mosmed.classroom.model.TeacherGrant` (the teacher key, or the login that
  created the class) and is refused with :class:`~mosmed.classroom.errors.NotAllowedError` otherwise;
- a student action takes the student's :class:`~mosmed.classroom.model.Seat` and token; an answer is stored
  for that participant only, for a question of their class, while it is open, once (UNIQUE per question and
  participant: a retry, a second replica or a reconnect never counts it twice);
- what a student reads (:meth:`ClassroomStore.poll`) has no class and no figures before the reveal: the
  store leaves them out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Integer, cast, func, select

from mosmed.classroom import codes, limits
from mosmed.classroom import schema as t
from mosmed.classroom.errors import (
    ClassNotFoundError,
    ClassroomInputError,
    NotAllowedError,
    QuestionClosedError,
    TooManyAttemptsError,
)
from mosmed.classroom.model import (
    CLASS_TTL_HOURS,
    CLASSES,
    MAX_STUDIES,
    PRESENT_WITHIN_S,
    AnswerResult,
    ClassInfo,
    Followers,
    Presenter,
    Seat,
    StudentQuestion,
    TeacherGrant,
    TeacherQuestion,
    View,
    clean_name,
    clean_title,
    name_key,
    parse_answer,
)
from mosmed.reviews.db import RETRIES, Store

__all__ = ["ClassroomStore", "Poll", "client_key", "SCORE_COLUMNS", "RESULT_COLUMNS", "LEADERBOARD_COLUMNS"]


#: Columns of :meth:`ClassroomStore.scores` (one row per student, revealed questions only).
SCORE_COLUMNS = ("participant_id", "name", "joined_at", "answered", "correct", "revealed")
#: Columns of :meth:`ClassroomStore.leaderboard`.
LEADERBOARD_COLUMNS = ("rank", "student", "correct", "answered", "you")
#: Columns of :meth:`ClassroomStore.results` (the CSV export: one row per student and question).
RESULT_COLUMNS = (
    "question",
    "study_id",
    "class",
    "state",
    "student",
    "answer",
    "correct",
    "answered_at",
    "received_at",
)
#: Codes are drawn again when a new one clashes with an existing class (1 in 2**40 per class: never, in practice).
_CODE_DRAWS = 8


def client_key(text: str) -> str:
    """A short, stable, non-reversible key for a client address or a browser session id (never stored raw)."""
    return hashlib.sha256(f"mosmed-classroom|{text}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Poll:
    """One student poll: the presenter, the current question (student-safe), the student's answer to it."""

    presenter: Presenter
    question: StudentQuestion | None
    my_answer: str | None
    ended: bool
    names_public: bool


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class ClassroomStore(Store):
    """Class sessions in one database. Thread-safe: it holds only the engine.

    Parameters
    ----------
    db : Database
        From :func:`mosmed.reviews.db.open_database` (migrated: the classroom branch included).
    """

    @staticmethod
    def _info(conn, row) -> ClassInfo:
        ids = (
            conn.execute(
                select(t.studies.c.study_id).where(t.studies.c.class_id == row.id).order_by(t.studies.c.position)
            )
            .scalars()
            .all()
        )
        return ClassInfo(
            id=int(row.id),
            code=str(row.code),
            title=str(row.title),
            dataset_digest=str(row.dataset_digest),
            dataset_label=str(row.dataset_label),
            dataset_root=str(row.dataset_root),
            names_public=bool(row.names_public),
            created_at=row.created_at,
            ended_at=row.ended_at,
            study_ids=tuple(int(i) for i in ids),
        )

    @staticmethod
    def _joinable(row, now: datetime) -> bool:
        return row.ended_at is None and row.created_at > now - timedelta(hours=CLASS_TTL_HOURS)

    def _grant_ok(self, conn, grant: TeacherGrant, now: datetime, *, running: bool = True):
        if not isinstance(grant, TeacherGrant):
            raise NotAllowedError("only the class's teacher can do this")
        row = conn.execute(select(t.sessions).where(t.sessions.c.id == int(grant.class_id))).first()
        ok = row is not None and (
            (grant.key is not None and codes.same_hash(codes.secret_hash(grant.key), row.teacher_key_hash))
            or (grant.subject is not None and row.teacher_subject is not None and grant.subject == row.teacher_subject)
        )
        if not ok:
            raise NotAllowedError("only the class's teacher can do this")
        if running and row.ended_at is not None:
            raise NotAllowedError(f"the class {row.title!r} has ended")
        return row

    def _bump(self, conn, class_id: int, now: datetime, **values) -> int:
        p = t.presenter
        conn.execute(
            p.update().where(p.c.class_id == class_id).values(version=p.c.version + 1, updated_at=now, **values)
        )
        return int(conn.execute(select(p.c.version).where(p.c.class_id == class_id)).scalar_one())

    @staticmethod
    def _view_values(view: View) -> dict:
        return {
            "study_id": view.study_id,
            "slice": view.slice,
            "level": view.level,
            "width": view.width,
            "window_name": view.window_name,
            "plane": view.plane,
            "cursor_row": view.row,
            "cursor_col": view.col,
        }

    @staticmethod
    def _presenter(row) -> Presenter:
        view = View(
            study_id=int(row.study_id),
            slice=int(row.slice),
            level=float(row.level),
            width=float(row.width),
            window_name=row.window_name,
            plane=str(row.plane),
            row=int(row.cursor_row),
            col=int(row.cursor_col),
        )
        return Presenter(
            version=int(row.version),
            view=view,
            question_id=None if row.question_id is None else int(row.question_id),
            updated_at=row.updated_at,
        )

    # ------------------------------------------------------------------------------------------- attempts

    def _over_limit(self, conn, now: datetime, client: str, browser: str) -> str | None:
        a = t.attempts
        for lim in limits.LIMITS:
            since = now - timedelta(seconds=lim.window_s)
            cond = [a.c.at > since]
            if lim.scope == "client":
                cond.append(a.c.client_key == client)
            elif lim.scope == "browser":
                cond.append(a.c.browser_key == browser)
            elif lim.scope != "all":
                continue
            n = conn.execute(select(func.count()).select_from(a).where(*cond)).scalar_one()
            if int(n) >= lim.max_failures:
                return lim.scope
        return None

    def _record_failure(
        self, conn, now: datetime, kind: str, client: str, browser: str, class_id: int | None = None
    ) -> None:
        a = t.attempts
        conn.execute(a.insert().values(kind=kind, client_key=client, browser_key=browser, class_id=class_id, at=now))
        conn.execute(a.delete().where(a.c.at < now - timedelta(seconds=limits.KEEP_ATTEMPTS_S)))

    @staticmethod
    def _too_many(scope: str) -> TooManyAttemptsError:
        who = {"browser": "this browser", "client": "this address", "all": "everyone"}.get(scope, scope)
        minutes = limits.limit(scope).window_s // 60
        return TooManyAttemptsError(
            f"too many wrong class codes from {who} recently; wait up to {minutes} "
            "minutes and try again (ask your teacher for the code or the link)"
        )

    def failures(self, *, client: str | None = None, browser: str | None = None) -> int:
        """Failed attempts in the current window for a client or browser key (all when neither is given)."""
        a = t.attempts

        def q(conn, now):
            cond = [a.c.at > now - timedelta(seconds=limits.limit("all").window_s)]
            if client is not None:
                cond.append(a.c.client_key == client)
            if browser is not None:
                cond.append(a.c.browser_key == browser)
            return int(conn.execute(select(func.count()).select_from(a).where(*cond)).scalar_one())

        return self._read(q, "counting failed attempts")

    # ---------------------------------------------------------------------------------------------- teacher

    def create_class(
        self,
        *,
        title: object,
        dataset_digest: str,
        dataset_label: str,
        dataset_root: str,
        study_ids: Iterable[int],
        start: View,
        names_public: bool = False,
        teacher_subject: str | None = None,
    ) -> tuple[ClassInfo, TeacherGrant]:
        """A new class with its studies (in order) and the presenter on ``start``.

        Returns the class and the teacher's grant: its ``key`` is the only copy of the teacher key (the
        database keeps its hash); keep it in the teacher's server-side session, never in a URL.

        Raises
        ------
        ClassroomInputError
            An empty or too long title, no studies, too many, a repeated or negative id, ``start`` on a study
            that is not in the list.
        """
        title = clean_title(title)
        ids: list[int] = []
        for i in study_ids:
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise ClassroomInputError(f"study id {str(i)[:20]!r} is not a study number")
            if i in ids:
                raise ClassroomInputError(f"study {i} is listed twice")
            ids.append(int(i))
        if not ids:
            raise ClassroomInputError("a class needs at least one study")
        if len(ids) > MAX_STUDIES:
            raise ClassroomInputError(f"a class holds at most {MAX_STUDIES} studies ({len(ids)} given)")
        if not isinstance(start, View) or start.study_id not in ids:
            raise ClassroomInputError("the class must start on one of its studies")
        if len(str(dataset_digest)) != 64:
            raise ClassroomInputError("the dataset identity is not a SHA-256 digest")
        if teacher_subject is not None and (
            not isinstance(teacher_subject, str) or not 0 < len(teacher_subject) <= 400
        ):
            raise ClassroomInputError("the login identity is not usable")
        key = codes.new_teacher_key()

        def tx(conn, now):
            for _ in range(_CODE_DRAWS):
                code = codes.new_code()
                taken = conn.execute(select(t.sessions.c.id).where(t.sessions.c.code == code)).first()
                if taken is None:
                    break
            else:  # pragma: no cover - 8 clashes in a row at 1 in 2**40 each
                raise ClassroomInputError("no free class code could be drawn; try again")
            res = conn.execute(
                t.sessions.insert().values(
                    code=code,
                    title=title,
                    dataset_digest=str(dataset_digest),
                    dataset_label=str(dataset_label)[:200],
                    dataset_root=str(dataset_root),
                    teacher_key_hash=codes.secret_hash(key),
                    teacher_subject=teacher_subject,
                    names_public=bool(names_public),
                    created_at=now,
                )
            )
            cid = int(res.inserted_primary_key[0])
            conn.execute(
                t.studies.insert(), [{"class_id": cid, "position": k, "study_id": s} for k, s in enumerate(ids)]
            )
            conn.execute(
                t.presenter.insert().values(
                    class_id=cid, version=1, updated_at=now, question_id=None, **self._view_values(start)
                )
            )
            row = conn.execute(select(t.sessions).where(t.sessions.c.id == cid)).one()
            return self._info(conn, row)

        info = self._write(tx, "creating the class")
        return info, TeacherGrant(class_id=info.id, key=key, subject=teacher_subject)

    def check_teacher(self, grant: TeacherGrant) -> ClassInfo:
        """The class when ``grant`` is its teacher's (ended classes included); :class:`NotAllowedError` otherwise."""
        return self._read(
            lambda conn, now: self._info(conn, self._grant_ok(conn, grant, now, running=False)), "checking the teacher"
        )

    def resume_teacher(self, code: object, key: object, *, client: str, browser: str) -> tuple[ClassInfo, TeacherGrant]:
        """Drive a class again from another browser session with its code and teacher key.

        A right key is always accepted (a replica that went away must never lock its teacher out); a wrong one
        is recorded as a failed attempt (:mod:`mosmed.classroom.limits`).
        """
        canon = codes.parse_code(code)
        key_text = key if codes.looks_like_secret(key) else None

        def tx(conn, now):
            row = None
            if canon is not None:
                row = conn.execute(select(t.sessions).where(t.sessions.c.code == canon)).first()
            if (
                row is not None
                and key_text is not None
                and codes.same_hash(codes.secret_hash(key_text), row.teacher_key_hash)
            ):
                return self._info(conn, row), None
            over = self._over_limit(conn, now, client, browser)
            if over is None:
                self._record_failure(conn, now, "teacher", client, browser, None if row is None else int(row.id))
            return None, over

        info, over = self._write(tx, "checking the teacher key")
        if info is None:
            if over is not None:
                raise self._too_many(over)
            raise NotAllowedError("this code and teacher key do not match a class")
        return info, TeacherGrant(class_id=info.id, key=str(key_text))

    def classes_of(self, subject: str) -> list[ClassInfo]:
        """Running classes created under a login identity (newest first): a logged-in teacher finds theirs."""

        def q(conn, now):
            rows = conn.execute(
                select(t.sessions)
                .where(t.sessions.c.teacher_subject == str(subject), t.sessions.c.ended_at.is_(None))
                .order_by(t.sessions.c.id.desc())
            ).all()
            return [self._info(conn, r) for r in rows if self._joinable(r, now)]

        return self._read(q, "listing your classes")

    def set_view(self, grant: TeacherGrant, view: View) -> int:
        """Move the presenter to ``view`` (the study must be one of the class's); returns the new version."""
        if not isinstance(view, View):
            raise ClassroomInputError("not a view")

        def tx(conn, now):
            self._grant_ok(conn, grant, now)
            known = conn.execute(
                select(t.studies.c.study_id).where(
                    t.studies.c.class_id == grant.class_id, t.studies.c.study_id == view.study_id
                )
            ).first()
            if known is None:
                raise ClassroomInputError(f"study {view.study_id} is not one of this class's studies")
            return self._bump(conn, grant.class_id, now, **self._view_values(view))

        return self._write(tx, "moving the presenter")

    def presenter(self, class_id: int, *, attempts: int = RETRIES) -> Presenter:
        """Where the teacher is now (anyone may read it: it holds no secret)."""

        def q(conn, now):
            row = conn.execute(select(t.presenter).where(t.presenter.c.class_id == int(class_id))).first()
            if row is None:
                raise ClassNotFoundError(f"class {int(class_id)} does not exist")
            return self._presenter(row)

        return self._read(q, "reading the presenter", attempts)

    def set_names_public(self, grant: TeacherGrant, public: bool) -> None:
        """Show students' names on the class's leaderboard (``True``) or hide them (the default)."""

        def tx(conn, now):
            self._grant_ok(conn, grant, now)
            conn.execute(t.sessions.update().where(t.sessions.c.id == grant.class_id).values(names_public=bool(public)))
            self._bump(conn, grant.class_id, now)

        self._write(tx, "changing the leaderboard")

    def end_class(self, grant: TeacherGrant) -> None:
        """End the class: nobody joins any more, the open question closes, results stay for export."""

        def tx(conn, now):
            self._grant_ok(conn, grant, now)
            q = t.questions
            conn.execute(
                q.update()
                .where(q.c.class_id == grant.class_id, q.c.state == "open")
                .values(state="closed", closed_at=now)
            )
            conn.execute(t.sessions.update().where(t.sessions.c.id == grant.class_id).values(ended_at=now))
            self._bump(conn, grant.class_id, now)

        self._write(tx, "ending the class")

    # ------------------------------------------------------------------------------------------- questions

    def open_question(
        self,
        grant: TeacherGrant,
        *,
        study_id: int,
        truth: str,
        involvement_pct: float | None,
        estimated_pct: float | None,
        estimate_calibrated: bool | None,
        has_mask: bool,
        view: View | None = None,
    ) -> TeacherQuestion:
        """Ask the class about one of its studies; the presenter moves to ``view`` when given.

        The class (``truth``, from the dataset's registry) and the involvement figures are kept with the
        question, so every replica reveals the same. The previous question must have been revealed.
        """
        truth = parse_answer(truth)
        if view is not None and view.study_id != int(study_id):
            raise ClassroomInputError("the question's view must show the question's study")

        def tx(conn, now):
            self._grant_ok(conn, grant, now)
            cid = grant.class_id
            if (
                conn.execute(
                    select(t.studies.c.study_id).where(
                        t.studies.c.class_id == cid, t.studies.c.study_id == int(study_id)
                    )
                ).first()
                is None
            ):
                raise ClassroomInputError(f"study {int(study_id)} is not one of this class's studies")
            q = t.questions
            current = conn.execute(
                select(q.c.number, q.c.state)
                .join(t.presenter, t.presenter.c.question_id == q.c.id)
                .where(t.presenter.c.class_id == cid)
            ).first()
            if current is not None and current.state != "revealed":
                raise NotAllowedError(f"reveal question {current.number} before asking the next one")
            number = (
                int(
                    conn.execute(select(func.coalesce(func.max(q.c.number), 0)).where(q.c.class_id == cid)).scalar_one()
                )
                + 1
            )
            res = conn.execute(
                q.insert().values(
                    class_id=cid,
                    number=number,
                    study_id=int(study_id),
                    truth=truth,
                    involvement_pct=_opt_float(involvement_pct),
                    estimated_pct=_opt_float(estimated_pct),
                    estimate_calibrated=None if estimate_calibrated is None else bool(estimate_calibrated),
                    has_mask=bool(has_mask),
                    state="open",
                    opened_at=now,
                )
            )
            qid = int(res.inserted_primary_key[0])
            values = {"question_id": qid, **(self._view_values(view) if view is not None else {})}
            self._bump(conn, cid, now, **values)
            return self._teacher_question(conn, cid, qid)

        return self._write(tx, "asking the question")

    def _set_state(self, grant: TeacherGrant, question_id: int, state: str) -> TeacherQuestion:
        def tx(conn, now):
            self._grant_ok(conn, grant, now, running=state != "open")
            q = t.questions
            row = conn.execute(select(q).where(q.c.id == int(question_id), q.c.class_id == grant.class_id)).first()
            if row is None:
                raise NotAllowedError(f"question {int(question_id)} is not one of this class's questions")
            values: dict = {"state": state}
            if row.closed_at is None:
                values["closed_at"] = now
            if state == "revealed" and row.revealed_at is None:
                values["revealed_at"] = now
            if row.state != "revealed":
                conn.execute(q.update().where(q.c.id == row.id).values(**values))
            self._bump(conn, grant.class_id, now)
            return self._teacher_question(conn, grant.class_id, int(row.id))

        return self._write(tx, "changing the question")

    def close_question(self, grant: TeacherGrant, question_id: int) -> TeacherQuestion:
        """Stop taking answers (not revealed yet)."""
        return self._set_state(grant, question_id, "closed")

    def reveal(self, grant: TeacherGrant, question_id: int) -> TeacherQuestion:
        """Reveal the class of the question's study to everyone (answers stop)."""
        return self._set_state(grant, question_id, "revealed")

    def clear_question(self, grant: TeacherGrant) -> None:
        """Put the current (revealed) question away: the class goes back to following the teacher."""

        def tx(conn, now):
            self._grant_ok(conn, grant, now)
            self._bump(conn, grant.class_id, now, question_id=None)

        self._write(tx, "putting the question away")

    def _teacher_question(self, conn, class_id: int, question_id: int) -> TeacherQuestion:
        q, a = t.questions, t.answers
        row = conn.execute(select(q).where(q.c.id == question_id, q.c.class_id == class_id)).one()
        counts = {c: 0 for c in CLASSES}
        for ans, n in conn.execute(
            select(a.c.answer, func.count()).where(a.c.question_id == question_id).group_by(a.c.answer)
        ).all():
            counts[str(ans)] = int(n)
        return TeacherQuestion(
            id=int(row.id),
            number=int(row.number),
            study_id=int(row.study_id),
            state=str(row.state),
            truth=str(row.truth),
            involvement_pct=row.involvement_pct,
            estimated_pct=row.estimated_pct,
            estimate_calibrated=row.estimate_calibrated,
            has_mask=bool(row.has_mask),
            opened_at=row.opened_at,
            counts=counts,
            n_answers=sum(counts.values()),
        )

    def teacher_question(self, grant: TeacherGrant, question_id: int, *, attempts: int = RETRIES) -> TeacherQuestion:
        """One question with its live answer counts, for its teacher."""

        def q(conn, now):
            self._grant_ok(conn, grant, now, running=False)
            return self._teacher_question(conn, grant.class_id, int(question_id))

        return self._read(q, "reading the answers", attempts)

    def questions(self, grant: TeacherGrant) -> list[TeacherQuestion]:
        """Every question of the class, in order, with counts (the teacher's history)."""

        def q(conn, now):
            self._grant_ok(conn, grant, now, running=False)
            ids = (
                conn.execute(
                    select(t.questions.c.id)
                    .where(t.questions.c.class_id == grant.class_id)
                    .order_by(t.questions.c.number)
                )
                .scalars()
                .all()
            )
            return [self._teacher_question(conn, grant.class_id, int(i)) for i in ids]

        return self._read(q, "reading the questions")

    # ---------------------------------------------------------------------------------------------- students

    def find_class(self, code: object) -> ClassInfo | None:
        """The running class with this code (no attempt is recorded: for links the app made itself)."""
        canon = codes.parse_code(code)
        if canon is None:
            return None

        def q(conn, now):
            row = conn.execute(select(t.sessions).where(t.sessions.c.code == canon)).first()
            return self._info(conn, row) if row is not None and self._joinable(row, now) else None

        return self._read(q, "finding the class")

    def class_info(self, class_id: int) -> ClassInfo:
        def q(conn, now):
            row = conn.execute(select(t.sessions).where(t.sessions.c.id == int(class_id))).first()
            if row is None:
                raise ClassNotFoundError(f"class {int(class_id)} does not exist")
            return self._info(conn, row)

        return self._read(q, "reading the class")

    def join(self, code: object, name: object, *, client: str, browser: str) -> tuple[ClassInfo, Seat]:
        """Join the running class with this code under ``name`` (unique in the class, any case).

        Raises
        ------
        TooManyAttemptsError
            This browser or address (or everyone) failed too often recently: nothing was looked up.
        ClassNotFoundError
            No running class has this code (recorded as a failed attempt).
        ClassroomInputError
            The name is empty, too long, has control characters, or is taken in this class.
        """
        display = clean_name(name)
        key = name_key(display)
        canon = codes.parse_code(code)
        token = codes.new_student_token()

        def tx(conn, now):
            over = self._over_limit(conn, now, client, browser)
            if over is not None:
                return "limited", over
            row = None
            if canon is not None:
                row = conn.execute(select(t.sessions).where(t.sessions.c.code == canon)).first()
            if row is None or not self._joinable(row, now):
                self._record_failure(conn, now, "join", client, browser, None if row is None else int(row.id))
                return "missing", None
            p = t.participants
            # The same name joining at the same moment on another replica: the UNIQUE (class, name) decides.
            # RETURNING tells whether this statement inserted the row (rowcount is not portable with it).
            ins = (
                self._insert(p)
                .values(
                    class_id=row.id,
                    token_hash=codes.secret_hash(token),
                    name=display,
                    name_key=key,
                    joined_at=now,
                    last_seen=now,
                    following=True,
                )
                .on_conflict_do_nothing(index_elements=[p.c.class_id, p.c.name_key])
                .returning(p.c.id)
            )
            pid = conn.execute(ins).scalar()
            if pid is None:
                return "taken", None
            return "ok", (self._info(conn, row), Seat(int(pid), int(row.id), display, token))

        status, value = self._write(tx, "joining the class")
        if status == "limited":
            raise self._too_many(value)
        if status == "missing":
            raise ClassNotFoundError("no running class has this code; check it with your teacher")
        if status == "taken":
            raise ClassroomInputError(f"the name {display!r} is already taken in this class; add an initial")
        return value

    def rejoin(self, code: object, token: object, *, client: str, browser: str) -> tuple[ClassInfo, Seat]:
        """Take one's seat again from one's link (another tab, a reconnect, another replica).

        A right token is always accepted; a wrong one is a failed attempt (:mod:`mosmed.classroom.limits`).
        """
        canon = codes.parse_code(code)
        tok = token if codes.looks_like_secret(token) else None

        def tx(conn, now):
            row = None
            if canon is not None:
                row = conn.execute(select(t.sessions).where(t.sessions.c.code == canon)).first()
            p = t.participants
            seat = None
            if row is not None and tok is not None:
                seat = conn.execute(
                    select(p).where(p.c.token_hash == codes.secret_hash(tok), p.c.class_id == row.id)
                ).first()
            if seat is not None and self._joinable(row, now):
                conn.execute(p.update().where(p.c.id == seat.id).values(last_seen=now))
                return self._info(conn, row), Seat(int(seat.id), int(row.id), str(seat.name), tok), None
            over = self._over_limit(conn, now, client, browser)
            if over is None:
                self._record_failure(conn, now, "rejoin", client, browser, None if row is None else int(row.id))
            return None, None, over

        info, seat, over = self._write(tx, "taking your seat again")
        if info is None:
            if over is not None:
                raise self._too_many(over)
            raise ClassNotFoundError(
                "this class link is not valid any more (the class ended, or the link is "
                "incomplete); join again with the class code"
            )
        return info, seat

    def _seat_row(self, conn, seat: Seat):
        p = t.participants
        if not isinstance(seat, Seat) or not codes.looks_like_secret(seat.token):
            raise NotAllowedError("you are not a participant of this class")
        row = conn.execute(
            select(p).where(p.c.id == int(seat.participant_id), p.c.token_hash == codes.secret_hash(str(seat.token)))
        ).first()
        if row is None or int(row.class_id) != int(seat.class_id):
            raise NotAllowedError("you are not a participant of this class")
        return row

    def poll(self, class_id: int, participant_id: int | None = None, *, attempts: int = 1) -> Poll:
        """What a student's page needs every poll: presenter, current question (student-safe), own answer.

        One read, no secret needed (nothing in it is a secret before the reveal: the class and the figures
        of an unrevealed question are left out here). ``attempts=1`` by default: a poll that fails says so
        at once and the next one tries again.
        """

        def q(conn, now):
            p, s, qu = t.presenter, t.sessions, t.questions
            row = conn.execute(
                select(p, s.c.ended_at, s.c.names_public)
                .join(s, s.c.id == p.c.class_id)
                .where(p.c.class_id == int(class_id))
            ).first()
            if row is None:
                raise ClassNotFoundError(f"class {int(class_id)} does not exist")
            question, mine = None, None
            if row.question_id is not None:
                qr = conn.execute(select(qu).where(qu.c.id == row.question_id)).first()
                if qr is not None:
                    question = _student_question(qr)
                    if participant_id is not None:
                        mine = conn.execute(
                            select(t.answers.c.answer).where(
                                t.answers.c.question_id == qr.id, t.answers.c.participant_id == int(participant_id)
                            )
                        ).scalar()
            return Poll(
                presenter=self._presenter(row),
                question=question,
                my_answer=mine,
                ended=row.ended_at is not None,
                names_public=bool(row.names_public),
            )

        return self._read(q, "reading the class", attempts)

    def student_question(self, question_id: int) -> StudentQuestion:
        """One question as students see it (no class before the reveal)."""

        def q(conn, now):
            row = conn.execute(select(t.questions).where(t.questions.c.id == int(question_id))).first()
            if row is None:
                raise NotAllowedError(f"question {int(question_id)} does not exist")
            return _student_question(row)

        return self._read(q, "reading the question")

    def touch(self, seat: Seat, *, following: bool, attempts: int = 1) -> None:
        """A student's page says it is there (every few seconds) and whether it follows the teacher."""

        def tx(conn, now):
            p = t.participants
            conn.execute(
                p.update()
                .where(p.c.id == int(seat.participant_id), p.c.token_hash == codes.secret_hash(str(seat.token)))
                .values(last_seen=now, following=bool(following))
            )

        if not isinstance(seat, Seat) or not codes.looks_like_secret(seat.token):
            raise NotAllowedError("you are not a participant of this class")
        self._write(tx, "saying you are here", attempts)

    def answer(self, seat: Seat, question_id: int, choice: object, *, given_at: datetime | None = None) -> AnswerResult:
        """Record ``seat``'s answer to a question of their class (the first answer is the one that counts).

        ``given_at`` is when the student gave it (kept by the app while the database was away): an answer given
        while the question was open is taken even if it arrives after the question closed.

        Raises
        ------
        NotAllowedError
            The seat's token does not match, or the question is not one of the seat's class.
        QuestionClosedError
            The question stopped taking answers before this answer was given.
        """
        choice = parse_answer(choice)
        try:
            qid = int(question_id)
        except (TypeError, ValueError):
            raise NotAllowedError("no such question in your class") from None

        def tx(conn, now):
            me = self._seat_row(conn, seat)
            q = t.questions
            row = conn.execute(
                select(q.c.id, q.c.class_id, q.c.state, q.c.closed_at, q.c.number).where(q.c.id == qid)
            ).first()
            if row is None or int(row.class_id) != int(me.class_id):
                raise NotAllowedError("no such question in your class")
            given = min(given_at, now) if given_at is not None else now
            if row.state != "open" and not (row.closed_at is not None and given <= row.closed_at):
                raise QuestionClosedError(f"question {row.number} has stopped taking answers")
            a = t.answers
            ins = (
                self._insert(a)
                .values(question_id=qid, participant_id=int(me.id), answer=choice, answered_at=given, received_at=now)
                .on_conflict_do_nothing(index_elements=[a.c.question_id, a.c.participant_id])
                .returning(a.c.id)
            )
            stored = conn.execute(ins).scalar() is not None
            kept = conn.execute(
                select(a.c.answer).where(a.c.question_id == qid, a.c.participant_id == int(me.id))
            ).scalar_one()
            return AnswerResult(question_id=qid, answer=str(kept), stored=bool(stored))

        return self._write(tx, "saving your answer")

    def followers(self, class_id: int, *, attempts: int = RETRIES) -> Followers:
        """How many students are here (seen within :data:`PRESENT_WITHIN_S`) and how many follow the teacher."""

        def q(conn, now):
            p = t.participants
            since = now - timedelta(seconds=PRESENT_WITHIN_S)
            joined = conn.execute(select(func.count()).select_from(p).where(p.c.class_id == int(class_id))).scalar_one()
            present, following = conn.execute(
                select(func.count(), func.coalesce(func.sum(cast(p.c.following, Integer)), 0)).where(
                    p.c.class_id == int(class_id), p.c.last_seen > since
                )
            ).one()
            return Followers(present=int(present), following=int(following), joined=int(joined))

        return self._read(q, "counting the class", attempts)

    # ------------------------------------------------------------------------------------------------ scores

    def _answers_frame(self, conn, class_id: int) -> pd.DataFrame:
        q, a, p = t.questions, t.answers, t.participants
        rows = conn.execute(
            select(
                q.c.number,
                q.c.study_id,
                q.c.truth,
                q.c.state,
                p.c.id.label("participant_id"),
                p.c.name,
                a.c.answer,
                a.c.answered_at,
                a.c.received_at,
            )
            .select_from(a.join(q, q.c.id == a.c.question_id).join(p, p.c.id == a.c.participant_id))
            .where(q.c.class_id == int(class_id))
            .order_by(q.c.number, p.c.id)
        ).all()
        return pd.DataFrame(
            [r._asdict() for r in rows],
            columns=[
                "number",
                "study_id",
                "truth",
                "state",
                "participant_id",
                "name",
                "answer",
                "answered_at",
                "received_at",
            ],
        )

    def scores(self, class_id: int) -> pd.DataFrame:
        """One row per student (:data:`SCORE_COLUMNS`), counting revealed questions only: a score never moves
        before the reveal, so it tells nobody whether an answer was right."""

        def q(conn, now):
            p, qu = t.participants, t.questions
            people = conn.execute(
                select(p.c.id, p.c.name, p.c.joined_at).where(p.c.class_id == int(class_id)).order_by(p.c.id)
            ).all()
            revealed = int(
                conn.execute(
                    select(func.count()).select_from(qu).where(qu.c.class_id == int(class_id), qu.c.state == "revealed")
                ).scalar_one()
            )
            return people, revealed, self._answers_frame(conn, class_id)

        people, revealed, ans = self._read(q, "reading the scores")
        ans = ans[ans["state"] == "revealed"]
        answered = {int(k): int(v) for k, v in ans.groupby("participant_id").size().items()}
        right = ans[ans["answer"] == ans["truth"]]
        correct = {int(k): int(v) for k, v in right.groupby("participant_id").size().items()}
        out = [
            {
                "participant_id": int(r.id),
                "name": str(r.name),
                "joined_at": r.joined_at,
                "answered": int(answered.get(int(r.id), 0)),
                "correct": int(correct.get(int(r.id), 0)),
                "revealed": revealed,
            }
            for r in people
        ]
        return pd.DataFrame(out, columns=list(SCORE_COLUMNS))

    def leaderboard(self, class_id: int, *, names_public: bool, me: int | None = None) -> pd.DataFrame:
        """The class's ranking (:data:`LEADERBOARD_COLUMNS`): most correct first, ties share a rank.

        Names are shown only when the class opted in (``names_public``); otherwise a student is "Student N"
        (N = order of joining) to everyone, and "You" to themselves (``me`` = their participant id).
        """
        sc = self.scores(class_id)
        if sc.empty:
            return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
        sc = sc.assign(order=range(1, len(sc) + 1))
        sc = sc.sort_values(["correct", "answered", "order"], ascending=[False, True, True], kind="stable")
        rank = sc["correct"].rank(method="min", ascending=False).astype(int)
        you = sc["participant_id"] == me if me is not None else pd.Series(False, index=sc.index)
        student = [n if names_public else f"Student {o}" for n, o in zip(sc["name"], sc["order"])]
        student = [("You" if not names_public else f"{s} (you)") if y else s for s, y in zip(student, you)]
        return pd.DataFrame(
            {
                "rank": rank.to_numpy(),
                "student": student,
                "correct": sc["correct"].to_numpy(),
                "answered": sc["answered"].to_numpy(),
                "you": you.to_numpy(),
            }
        )

    def results(self, grant: TeacherGrant) -> pd.DataFrame:
        """Every answer of the class for export (:data:`RESULT_COLUMNS`), for its teacher."""

        def q(conn, now):
            self._grant_ok(conn, grant, now, running=False)
            return self._answers_frame(conn, grant.class_id)

        ans = self._read(q, "reading the results")
        correct = [
            None if s != "revealed" else bool(a == tr) for a, tr, s in zip(ans["answer"], ans["truth"], ans["state"])
        ]
        return pd.DataFrame(
            {
                "question": ans["number"].astype(int) if len(ans) else pd.Series(dtype=int),
                "study_id": ans["study_id"].astype(int) if len(ans) else pd.Series(dtype=int),
                "class": ans["truth"].astype(str) if len(ans) else pd.Series(dtype=str),
                "state": ans["state"].astype(str) if len(ans) else pd.Series(dtype=str),
                "student": ans["name"].astype(str) if len(ans) else pd.Series(dtype=str),
                "answer": ans["answer"].astype(str) if len(ans) else pd.Series(dtype=str),
                "correct": correct,
                "answered_at": [_iso(x) for x in ans["answered_at"]],
                "received_at": [_iso(x) for x in ans["received_at"]],
            },
            columns=list(RESULT_COLUMNS),
        )

    def answer_count(self, class_id: int) -> int:
        """Answers stored for the class (load tests and benchmarks check it against what was sent)."""

        def q(conn, now):
            a, qu = t.answers, t.questions
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(a.join(qu, qu.c.id == a.c.question_id))
                    .where(qu.c.class_id == int(class_id))
                ).scalar_one()
            )

        return self._read(q, "counting the answers")


def _student_question(row) -> StudentQuestion:
    revealed = row.state == "revealed"
    return StudentQuestion(
        id=int(row.id),
        number=int(row.number),
        study_id=int(row.study_id),
        state=str(row.state),
        truth=str(row.truth) if revealed else None,
        involvement_pct=_opt_float(row.involvement_pct) if revealed else None,
        estimated_pct=_opt_float(row.estimated_pct) if revealed else None,
        estimate_calibrated=(None if row.estimate_calibrated is None else bool(row.estimate_calibrated))
        if revealed
        else None,
        has_mask=bool(row.has_mask) if revealed else None,
    )


def _iso(ts) -> str:
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and math.isnan(ts)):
        return ""
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
