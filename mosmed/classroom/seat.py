"""A student's side of a class, as plain Python: their seat, whether they follow, answers not stored yet.

The app's student page (``components/classroom_student.py``) keeps this state in the browser session's
server-side state; the load tests' simulated students keep it in a dict. Both run the same steps:

- :meth:`StudentSeat.step` (every poll): send the answers kept during a database outage, say "I am here"
  every :data:`HEARTBEAT_S` (and at once when following changes), and read the class (:meth:`~mosmed.
  classroom.store.ClassroomStore.poll`);
- :meth:`StudentSeat.answer`: store an answer, or keep it (with the time it was given) when the database is
  away, to be sent by a later step. The question's closing does not lose it: an answer given while the
  question was open is taken when it arrives (:meth:`ClassroomStore.answer`, ``given_at``).

Nothing here is trusted by the store: every call carries the seat's token, checked in the database.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime

from mosmed.classroom.errors import ClassroomError, NotAllowedError, QuestionClosedError
from mosmed.classroom.model import Seat
from mosmed.classroom.store import ClassroomStore, Poll
from mosmed.reviews.db import utcnow
from mosmed.reviews.errors import ReviewDatabaseError

__all__ = ["HEARTBEAT_S", "StudentSeat", "Step", "Outcome"]

#: Seconds between two "I am here" writes of one student (the teacher counts who is present and following).
HEARTBEAT_S = 5.0


@dataclass(frozen=True)
class Step:
    """What one poll found: the class (``None`` when the database did not answer), why not, answers sent."""

    poll: Poll | None
    problem: str | None
    sent: int
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What an answer did. ``status``: ``"stored"``, ``"already"`` (an earlier answer counts), ``"kept"``
    (database away: sent later), ``"closed"`` (too late), ``"refused"`` (not this student's question)."""

    status: str
    answer: str | None
    message: str


class StudentSeat:
    """One student's client state, kept in ``box`` (a mutable mapping the caller owns).

    ``box`` holds only plain values: ``seat`` (participant id, class id, name, token), ``following``,
    ``pending`` ({question id: [answer, ISO time given]}), ``touched`` (monotonic time of the last heartbeat)
    and ``touched_following``.
    """

    def __init__(self, box: MutableMapping) -> None:
        self.box = box

    @classmethod
    def start(cls, box: MutableMapping, seat: Seat) -> StudentSeat:
        """Put ``seat`` into ``box`` (a join or a rejoin), following the teacher, nothing pending."""
        box.clear()
        box.update(
            seat=[int(seat.participant_id), int(seat.class_id), str(seat.name), str(seat.token)],
            following=True,
            pending={},
            touched=0.0,
            touched_following=None,
        )
        return cls(box)

    @property
    def seat(self) -> Seat:
        pid, cid, name, token = self.box["seat"]
        return Seat(int(pid), int(cid), str(name), str(token))

    @property
    def following(self) -> bool:
        return bool(self.box.get("following", True))

    def set_following(self, on: bool) -> None:
        self.box["following"] = bool(on)

    def pending(self) -> dict[int, tuple[str, str]]:
        return {int(k): (str(v[0]), str(v[1])) for k, v in dict(self.box.get("pending") or {}).items()}

    def pending_answer(self, question_id: int) -> str | None:
        got = self.pending().get(int(question_id))
        return got[0] if got else None

    def _set_pending(self, items: dict[int, tuple[str, str]]) -> None:
        self.box["pending"] = {str(k): [v[0], v[1]] for k, v in items.items()}

    # ----------------------------------------------------------------------------------------------- steps

    def flush(self, store: ClassroomStore) -> tuple[int, str | None, tuple[str, ...]]:
        """Send the kept answers, oldest question first: (how many stored, the outage that stopped it, dropped)."""
        items = self.pending()
        sent, dropped = 0, []
        for qid in sorted(items):
            choice, given = items[qid]
            try:
                store.answer(self.seat, qid, choice, given_at=datetime.fromisoformat(given))
            except ReviewDatabaseError as e:
                self._set_pending(items)
                return sent, str(e), tuple(dropped)
            except (QuestionClosedError, NotAllowedError, ClassroomError) as e:
                dropped.append(f"your answer {choice} could not be counted: {e}")
            else:
                sent += 1
            items.pop(qid)
        self._set_pending(items)
        return sent, None, tuple(dropped)

    def step(self, store: ClassroomStore, *, now: float | None = None) -> Step:
        """One poll: send kept answers, heartbeat when due, read the class."""
        now = time.monotonic() if now is None else now
        sent, problem, dropped = (0, None, ())
        if self.box.get("pending"):
            sent, problem, dropped = self.flush(store)
            if problem is not None:
                return Step(None, problem, sent, dropped)
        due = (
            now - float(self.box.get("touched") or 0.0) >= HEARTBEAT_S
            or self.box.get("touched_following") != self.following
        )
        try:
            if due:
                store.touch(self.seat, following=self.following)
                self.box["touched"], self.box["touched_following"] = now, self.following
            poll = store.poll(self.seat.class_id, self.seat.participant_id)
        except ReviewDatabaseError as e:
            return Step(None, str(e), sent, dropped)
        return Step(poll, None, sent, dropped)

    def answer(self, store: ClassroomStore, question_id: int, choice: str) -> Outcome:
        """Answer a question: stored now, or kept for later when the database is away."""
        given = utcnow()
        try:
            res = store.answer(self.seat, int(question_id), choice, given_at=given)
        except ReviewDatabaseError as e:
            items = self.pending()
            items.setdefault(int(question_id), (str(choice), given.isoformat()))
            self._set_pending(items)
            return Outcome(
                "kept",
                items[int(question_id)][0],
                f"kept in this browser session and sent when the class database is back ({e})",
            )
        except QuestionClosedError as e:
            return Outcome("closed", None, str(e))
        except ClassroomError as e:
            return Outcome("refused", None, str(e))
        if res.stored:
            return Outcome("stored", res.answer, "answer received")
        return Outcome("already", res.answer, f"your first answer ({res.answer}) is the one that counts")
