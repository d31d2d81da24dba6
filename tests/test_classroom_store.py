"""The classroom in the database, on SQLite and on a real PostgreSQL: a class from creation to export, the
constraints, the migrations (from empty and from the reviews' head), who may do what, the student-safe
poll, answers from many processes at once, the attempt limits across replicas, and a database that goes away."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pg import db_url, pg_cluster, pg_url, start_cluster  # noqa: F401  (fixtures)
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from mosmed.classroom import codes, limits
from mosmed.classroom import schema as cschema
from mosmed.classroom.errors import (
    ClassNotFoundError,
    ClassroomInputError,
    NotAllowedError,
    QuestionClosedError,
    TooManyAttemptsError,
)
from mosmed.classroom.model import Seat, TeacherGrant, View
from mosmed.classroom.seat import StudentSeat
from mosmed.classroom.store import ClassroomStore, client_key
from mosmed.reviews import migrations
from mosmed.reviews.db import database_url, open_database, utcnow
from mosmed.reviews.errors import ReviewDatabaseError

REPO = Path(__file__).resolve().parents[1]
DIGEST = "d" * 64
HOSTILE = "<img src=x onerror=alert(1)> **b** [x](javascript:1) 'q\"; DROP TABLE class_answers;--"
NAME = "<b>x</b> =1+1 [y](javascript:1) 'q\";--"
C1, B1 = client_key("10.0.0.1"), client_key("browser-1")


@pytest.fixture
def store(db_url: str):
    db = open_database(db_url)
    yield ClassroomStore(db)
    db.dispose()


def view(study: int = 3, k: int = 5, **kw) -> View:
    base = {
        "study_id": study,
        "slice": k,
        "level": -600.0,
        "width": 1500.0,
        "window_name": "lung",
        "plane": "axial",
        "row": 30,
        "col": 40,
    }
    base.update(kw)
    return View(**base)


def new_class(store: ClassroomStore, title: object = "Week 1", ids=(3, 5, 7), **kw):
    return store.create_class(
        title=title,
        dataset_digest=DIGEST,
        dataset_label="demo",
        dataset_root="/data/x",
        study_ids=list(ids),
        start=view(ids[0]),
        **kw,
    )


def ask(store, grant, study=5, truth="CT-2"):
    return store.open_question(
        grant,
        study_id=study,
        truth=truth,
        involvement_pct=None,
        estimated_pct=31.5,
        estimate_calibrated=True,
        has_mask=False,
        view=view(study, 2),
    )


# ------------------------------------------------------------------------------------------------ lifecycle


def test_a_class_from_creation_to_export(store: ClassroomStore) -> None:
    info, grant = new_class(store, HOSTILE)
    assert info.title == HOSTILE and len(info.code) == codes.CODE_LENGTH and info.study_ids == (3, 5, 7)
    assert grant.key and codes.looks_like_secret(grant.key)
    with store.engine.connect() as conn:  # only the key's hash is stored
        stored = conn.execute(text("SELECT teacher_key_hash FROM class_sessions")).scalar_one()
    assert stored == codes.secret_hash(grant.key) and grant.key not in stored
    v1 = store.presenter(info.id).version
    assert store.set_view(grant, view(7, 9, plane="coronal", row=1, col=2)) == v1 + 1
    p = store.presenter(info.id)
    assert (p.view.study_id, p.view.slice, p.view.plane, p.view.row, p.view.col) == (7, 9, "coronal", 1, 2)
    with pytest.raises(ClassroomInputError, match="not one of this class"):
        store.set_view(grant, view(99))
    # Students join with the code as typed (lower case, spaces, O for 0 ...), names once per class.
    _, ana = store.join(info.join_code.lower().replace("-", " "), NAME, client=C1, browser=B1)
    _, bob = store.join(info.code, "Bob", client=C1, browser=B1)
    with pytest.raises(ClassroomInputError, match="already taken"):
        store.join(info.code, "  bob ", client=C1, browser=B1)
    q = ask(store, grant)
    assert q.number == 1 and q.state == "open" and store.presenter(info.id).view.study_id == 5
    assert store.answer(ana, q.id, "CT-2").stored and store.answer(bob, q.id, "CT-3").stored
    again = store.answer(ana, q.id, "CT-4")
    assert not again.stored and again.answer == "CT-2"  # the first answer counts
    tq = store.teacher_question(grant, q.id)
    assert tq.counts == {"CT-0": 0, "CT-1": 0, "CT-2": 1, "CT-3": 1, "CT-4": 0} and tq.n_answers == 2
    # Scores move only at the reveal (a score that moved before it would tell whether an answer was right).
    assert store.scores(info.id)["correct"].tolist() == [0, 0]
    with pytest.raises(NotAllowedError, match="reveal question 1"):
        ask(store, grant, 7)
    store.reveal(grant, q.id)
    sc = store.scores(info.id).set_index("name")
    assert sc.loc[NAME, "correct"] == 1 and sc.loc["Bob", "correct"] == 0 and sc["revealed"].tolist() == [1, 1]
    board = store.leaderboard(info.id, names_public=False, me=bob.participant_id)
    assert board["student"].tolist() == ["Student 1", "You"] and board["rank"].tolist() == [1, 2]
    named = store.leaderboard(info.id, names_public=True)
    assert named["student"].tolist() == [NAME, "Bob"]
    res = store.results(grant)
    assert len(res) == 2 and set(res["student"]) == {NAME, "Bob"} and res["correct"].tolist() == [True, False]
    from mosmed.reviews.export import to_csv_bytes

    csv = to_csv_bytes(res).decode()
    # Text stays text, never a spreadsheet formula.
    assert "javascript:1" in csv and ",=1+1" not in csv and "'=1+1" not in csv.replace("'<b>", "")
    q2 = ask(store, grant, 7, "CT-4")  # the next question after a reveal
    assert q2.number == 2
    store.end_class(grant)
    assert store.class_info(info.id).ended and store.teacher_question(grant, q2.id).state == "closed"
    with pytest.raises(ClassNotFoundError):
        store.join(info.code, "Cleo", client=C1, browser=B1)
    with pytest.raises(NotAllowedError, match="has ended"):
        store.set_view(grant, view(3))


def test_bad_input_is_refused_with_a_reason(store: ClassroomStore) -> None:
    for title, match in (("", "empty"), ("x" * 121, "at most 120"), ("a\x00b", "control characters"), (None, "empty")):
        with pytest.raises(ClassroomInputError, match=match):
            new_class(store, title)
    with pytest.raises(ClassroomInputError, match="at least one study"):
        store.create_class(
            title="t", dataset_digest=DIGEST, dataset_label="", dataset_root="", study_ids=[], start=view(3)
        )
    with pytest.raises(ClassroomInputError, match="listed twice"):
        store.create_class(
            title="t", dataset_digest=DIGEST, dataset_label="", dataset_root="", study_ids=[3, 3], start=view(3)
        )
    with pytest.raises(ClassroomInputError, match="start on one of its studies"):
        store.create_class(
            title="t", dataset_digest=DIGEST, dataset_label="", dataset_root="", study_ids=[3], start=view(4)
        )
    for bad in ({"slice": -1}, {"plane": "oblique"}, {"width": 0.0}, {"level": float("nan")}, {"study_id": True}):
        with pytest.raises(ClassroomInputError):
            view(**bad)
    info, grant = new_class(store)
    _, s = store.join(info.code, "Ana", client=C1, browser=B1)
    q = ask(store, grant)
    for choice in ("CT-5", "ct-2", "", None, "CT-2; DROP"):
        with pytest.raises(ClassroomInputError, match="is not one of CT-0"):
            store.answer(s, q.id, choice)
    for name in ("", "x" * 41, "tab\there"):
        with pytest.raises(ClassroomInputError):
            store.join(info.code, name, client=C1, browser=B1)


def test_constraints_hold_in_the_schema(store: ClassroomStore) -> None:
    info, grant = new_class(store)
    _, s = store.join(info.code, "Ana", client=C1, browser=B1)
    q = ask(store, grant)
    store.answer(s, q.id, "CT-1")
    now = "CURRENT_TIMESTAMP"
    bad = [
        # A second answer by the same student to the same question: UNIQUE (question, participant).
        f"INSERT INTO class_answers (question_id, participant_id, answer, answered_at, received_at) "
        f"VALUES ({q.id}, {s.participant_id}, 'CT-3', {now}, {now})",
        f"INSERT INTO class_answers (question_id, participant_id, answer, answered_at, received_at) "
        f"VALUES ({q.id}, 999, 'CT-3', {now}, {now})",  # no such student
        "UPDATE class_answers SET answer = 'CT-9'",
        "UPDATE class_questions SET truth = 'CT-7'",
        "UPDATE class_questions SET state = 'maybe'",
        "UPDATE class_presenter SET plane = 'oblique'",
        "UPDATE class_presenter SET width = 0",
        "UPDATE class_sessions SET code = 'SHORT'",
        f"UPDATE class_sessions SET title = '{'x' * 121}'",
        f"INSERT INTO class_participants (class_id, token_hash, name, name_key, joined_at, last_seen, following) "
        f"VALUES ({info.id}, '{'e' * 64}', 'ana', 'ana', {now}, {now}, true)",  # the same name again
        f"INSERT INTO class_questions (class_id, number, study_id, truth, has_mask, state, opened_at) "
        f"VALUES ({info.id}, 1, 5, 'CT-1', false, 'open', {now})",  # number 1 twice
        "INSERT INTO class_attempts (kind, client_key, browser_key, at) VALUES ('guess', 'a', 'b', CURRENT_TIMESTAMP)",
    ]
    for sql in bad:
        with pytest.raises(IntegrityError):
            with store.engine.begin() as conn:
                conn.execute(text(sql))
    assert store.answer_count(info.id) == 1


# ----------------------------------------------------------------------------------------------- migrations


def test_migrations_from_empty_match_the_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = open_database(db_url)
    try:
        assert set(db.revisions) == set(migrations.heads()) and "c0001" in db.revisions and "0002" in db.revisions
        with db.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), cschema.metadata)
        # The review tables are not in the classroom's metadata (test_review_store compares them).
        ours = [d for d in diffs if _table_of(d).startswith("class_")]
        assert ours == [], ours
    finally:
        db.dispose()


def _table_of(diff) -> str:
    """The table an Alembic autogenerate diff is about."""
    d = diff[0] if isinstance(diff, list) else diff
    for part in d[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if name and d[0].endswith("_table"):
            return str(name)
    return str(d[2]) if len(d) > 2 and isinstance(d[2], str) else ""


def test_upgrade_from_the_reviews_head_keeps_the_reviews(db_url: str) -> None:
    from mosmed.reviews.identity import DatasetIdentity
    from mosmed.reviews.model import Reader, Review
    from mosmed.reviews.store import ReviewStore

    engine = create_engine(database_url(db_url))
    with engine.begin() as conn:
        migrations.upgrade(conn, "reviews@head")  # a database of the review release
    with engine.begin() as conn:
        assert migrations.current_revisions(conn) == ("0002",)
    engine.dispose()
    db = open_database(db_url)  # this app: the classroom branch is added
    ident = DatasetIdentity(DIGEST, "demo", 3)
    ReviewStore(db).save(ident, 3, Reader.named("Ana"), Review("CT-1"))
    db.dispose()
    db = open_database(db_url)
    try:
        assert set(db.revisions) == {"0002", "c0001"}
        assert ReviewStore(db).latest(ident)["grade"].tolist() == ["CT-1"]
        info, grant = new_class(ClassroomStore(db))
        assert ClassroomStore(db).check_teacher(grant).id == info.id
    finally:
        db.dispose()


# -------------------------------------------------------------------------------------------- who may do what


def test_only_the_teacher_drives_the_class(store: ClassroomStore) -> None:
    info, grant = new_class(store)
    other, other_grant = new_class(store, "Other class")
    _, s = store.join(info.code, "Ana", client=C1, browser=B1)
    forged = [
        None,
        TeacherGrant(info.id),
        TeacherGrant(info.id, key="x" * 32),
        TeacherGrant(info.id, key=s.token),
        TeacherGrant(info.id, key=other_grant.key),
        TeacherGrant(info.id, subject="iss|someone"),
        TeacherGrant(other.id + 100, key=grant.key),
    ]
    for g in forged:
        for call in (
            lambda g: store.set_view(g, view(3)),
            lambda g: ask(store, g),
            lambda g: store.end_class(g),
            lambda g: store.results(g),
            lambda g: store.set_names_public(g, True),
            lambda g: store.check_teacher(g),
        ):
            with pytest.raises(NotAllowedError):
                call(g)
    q = ask(store, grant)
    for g in forged[1:]:
        with pytest.raises(NotAllowedError):
            store.reveal(g, q.id)
        with pytest.raises(NotAllowedError):
            store.teacher_question(g, q.id)
    with pytest.raises(NotAllowedError):  # the right teacher, another class's question
        store.reveal(other_grant, q.id)
    assert store.student_question(q.id).truth is None
    # A login identity drives the classes it created, without the key.
    mine, _ = new_class(store, "Logged in", teacher_subject="https://idp|t-1")
    assert store.check_teacher(TeacherGrant(mine.id, subject="https://idp|t-1")).id == mine.id
    assert [c.id for c in store.classes_of("https://idp|t-1")] == [mine.id]
    with pytest.raises(NotAllowedError):
        store.check_teacher(TeacherGrant(mine.id, subject="https://idp|t-2"))


def test_a_student_reads_no_class_before_the_reveal(store: ClassroomStore) -> None:
    info, grant = new_class(store)
    _, s = store.join(info.code, "Ana", client=C1, browser=B1)
    q = ask(store, grant)
    for state_change in (None, "close_question"):
        if state_change:
            getattr(store, state_change)(grant, q.id)
        p = store.poll(info.id, s.participant_id)
        assert p.question is not None and p.question.truth is None and p.question.estimated_pct is None
        assert p.question.estimate_calibrated is None and p.question.has_mask is None
        assert "CT-2" not in repr(p) and "31.5" not in repr(p)
    store.reveal(grant, q.id)
    p = store.poll(info.id, s.participant_id)
    assert p.question.truth == "CT-2" and p.question.estimated_pct == 31.5 and p.question.estimate_calibrated


def test_answers_go_only_where_they_belong(store: ClassroomStore) -> None:
    info, grant = new_class(store)
    other, other_grant = new_class(store, "Other")
    _, ana = store.join(info.code, "Ana", client=C1, browser=B1)
    _, bob = store.join(info.code, "Bob", client=C1, browser=B1)
    _, eve = store.join(other.code, "Eve", client=C1, browser=B1)
    q = ask(store, grant)
    q_other = ask(store, other_grant)
    for seat, qid in (
        (Seat(ana.participant_id, info.id, "Ana", bob.token), q.id),  # Bob's token, Ana's seat
        (Seat(ana.participant_id, info.id, "Ana", "y" * 22), q.id),  # a forged token
        (Seat(ana.participant_id, info.id, "Ana", None), q.id),
        (eve, q.id),
        (ana, q_other.id),
        (ana, 10**9),
        (ana, "1 OR 1=1"),
    ):
        with pytest.raises(NotAllowedError):
            store.answer(seat, qid, "CT-1")
    assert store.answer_count(info.id) == 0 and store.answer_count(other.id) == 0
    before_close = utcnow()
    time.sleep(0.01)
    store.close_question(grant, q.id)
    with pytest.raises(QuestionClosedError):
        store.answer(ana, q.id, "CT-1")
    # An answer given while the question was open (kept through an outage) still counts when it arrives.
    assert store.answer(bob, q.id, "CT-0", given_at=before_close).stored
    with pytest.raises(QuestionClosedError):
        store.answer(ana, q.id, "CT-1", given_at=utcnow() + timedelta(hours=1))


# ------------------------------------------------------------------------------------------------- limits


def test_wrong_codes_are_limited_across_replicas(db_url: str) -> None:
    one, two = ClassroomStore(open_database(db_url)), ClassroomStore(open_database(db_url))  # two processes' engines
    try:
        info, grant = new_class(one)
        _, seat = one.join(info.code, "Ana", client=C1, browser=B1)
        browser_limit = limits.limit("browser").max_failures
        for i in range(browser_limit):
            store = one if i % 2 else two
            with pytest.raises(ClassNotFoundError):
                store.join("ZZZZ-ZZZZ", "Guesser", client=C1, browser=B1)
        for store in (one, two):  # refused before the code is even looked up
            with pytest.raises(TooManyAttemptsError, match="this browser"):
                store.join(info.join_code, "Guesser", client=C1, browser=B1)
        # Another browser session of the same address can still join, until the address's limit.
        assert one.join(info.code, "Cleo", client=C1, browser=client_key("browser-2"))[1].name == "Cleo"
        left = limits.limit("client").max_failures - one.failures(client=C1)
        for k in range(left):
            with pytest.raises(ClassNotFoundError):
                two.join("ZZZZ-ZZZ1", "x", client=C1, browser=client_key(f"b-{k % 5}-x"))
        with pytest.raises(TooManyAttemptsError, match="this address"):
            one.join(info.code, "Dan", client=C1, browser=client_key("fresh"))
        # A student's own link (a right token) always works: someone else's guessing never locks them out.
        assert two.rejoin(info.code, seat.token, client=C1, browser=B1)[1].participant_id == seat.participant_id
        with pytest.raises(ClassNotFoundError):
            two.rejoin(info.code, "z" * 22, client=client_key("other"), browser=client_key("o"))
        assert two.resume_teacher(info.code, grant.key, client=C1, browser=B1)[0].id == info.id
        with pytest.raises(NotAllowedError):
            two.resume_teacher(info.code, "k" * 32, client=client_key("other"), browser=client_key("o"))
        # Failures age out of the window.
        with one.engine.begin() as conn:
            conn.execute(cschema.attempts.update().values(at=utcnow() - timedelta(seconds=3600)))
        assert one.join(info.code, "Dan", client=C1, browser=B1)[1].name == "Dan"
    finally:
        one.db.dispose()
        two.db.dispose()


def test_the_global_limit_stops_distributed_guessing(store: ClassroomStore) -> None:
    info, _ = new_class(store)
    lim = limits.limit("all").max_failures
    now = utcnow()
    with store.engine.begin() as conn:  # many clients' failures in the last minutes
        conn.execute(
            cschema.attempts.insert(),
            [{"kind": "join", "client_key": f"c{i}", "browser_key": f"b{i}", "at": now} for i in range(lim)],
        )
    with pytest.raises(TooManyAttemptsError, match="everyone"):
        store.join(info.code, "Ana", client=client_key("new"), browser=client_key("new"))


# -------------------------------------------------------------------------------------------- many processes

STUDENT = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
from mosmed.reviews.db import open_database
from mosmed.classroom.model import Seat
from mosmed.classroom.seat import StudentSeat
from mosmed.classroom.store import ClassroomStore
url, seats, go = sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
store = ClassroomStore(open_database(url))
boxes = [{} for _ in seats]
students = [StudentSeat.start(b, Seat(*s)) for b, s in zip(boxes, seats)]
while time.time() < go:
    time.sleep(0.005)
done, sent = set(), 0
deadline = time.time() + 120
while time.time() < deadline:
    p = store.poll(students[0].seat.class_id, attempts=4)
    if p.ended:
        break
    q = p.question
    if q is not None and q.open and q.id not in done:
        for k, st in enumerate(students):
            choice = ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")[(st.seat.participant_id + q.number) % 5]
            st.answer(store, q.id, choice)
            st.answer(store, q.id, choice)          # every answer twice: a retry must never count twice
            sent += 1
        done.add(q.id)
    time.sleep(0.01)
print(json.dumps({"sent": sent}))
"""


def test_thirty_students_in_many_processes_answer_ten_questions(db_url: str, tmp_path: Path) -> None:
    n_students, n_questions, n_procs = 30, 10, 6
    store = ClassroomStore(open_database(db_url))
    try:
        info, grant = new_class(store, ids=tuple(range(1, n_questions + 1)))
        seats = [
            store.join(info.code, f"student {i}", client=C1, browser=client_key(f"s{i}"))[1] for i in range(n_students)
        ]
        script = tmp_path / "student.py"
        script.write_text(STUDENT)
        go = time.time() + 4.0
        procs = []
        for k in range(n_procs):
            mine = [[s.participant_id, s.class_id, s.name, s.token] for s in seats[k::n_procs]]
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(script), str(REPO), db_url, json.dumps(mine), str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        time.sleep(max(0.0, go - time.time()))
        for number in range(1, n_questions + 1):
            q = ask(store, grant, study=number, truth="CT-1")
            deadline = time.time() + 60
            while store.teacher_question(grant, q.id).n_answers < n_students and time.time() < deadline:
                time.sleep(0.05)
            store.reveal(grant, q.id)
        store.end_class(grant)
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        qs = store.questions(grant)
        assert [q.n_answers for q in qs] == [n_students] * n_questions  # none lost, none twice
        assert store.answer_count(info.id) == n_students * n_questions
        for q in qs:  # the teacher's counts are exactly what was sent
            expect = {c: 0 for c in ("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")}
            for s in seats:
                expect[("CT-0", "CT-1", "CT-2", "CT-3", "CT-4")[(s.participant_id + q.number) % 5]] += 1
            assert q.counts == expect
        sc = store.scores(info.id)
        assert sc["answered"].tolist() == [n_questions] * n_students
    finally:
        store.db.dispose()


# ------------------------------------------------------------------------------------------------ an outage


def test_a_database_that_goes_away_loses_nothing(tmp_path: Path) -> None:
    from pg import find_pg_bin, in_ci

    if find_pg_bin() is None:
        if in_ci():
            pytest.fail("PostgreSQL binaries not found")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    cluster = start_cluster()
    try:
        url = cluster.create_database("outage")
        store = ClassroomStore(open_database(url))
        info, grant = new_class(store)
        _, ana = store.join(info.code, "Ana", client=C1, browser=B1)
        q = ask(store, grant)
        seat = StudentSeat.start({}, ana)
        assert seat.step(store).poll is not None
        opts = cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "stop")
        assert opts.returncode == 0
        step = seat.step(store)
        assert step.poll is None and "not available" in step.problem  # paused, with the reason
        out = seat.answer(store, q.id, "CT-2")
        assert out.status == "kept" and seat.pending_answer(q.id) == "CT-2"
        with pytest.raises(ReviewDatabaseError):
            store.reveal(grant, q.id)
        conf = (
            f"-p {cluster.port} -k {cluster.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB"
        )
        cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-o", conf, "-w", "-t", "60", "start")
        step = seat.step(store)  # the database is back: the kept answer goes first
        assert step.sent == 1 and step.poll is not None and step.poll.my_answer == "CT-2"
        assert seat.pending() == {} and store.teacher_question(grant, q.id).counts["CT-2"] == 1
        store.db.dispose()
    finally:
        cluster.stop()


def test_heartbeats_are_throttled_and_follow_changes_are_sent_at_once(store: ClassroomStore) -> None:
    info, _ = new_class(store)
    _, ana = store.join(info.code, "Ana", client=C1, browser=B1)
    calls = []
    real = store.touch

    def spy(seat, **kw):
        calls.append(kw["following"])
        return real(seat, **kw)

    store.touch = spy  # type: ignore[method-assign]
    seat = StudentSeat.start({}, ana)
    for t in (100.0, 100.3, 101.0, 104.0):
        seat.step(store, now=t)
    assert calls == [True]
    seat.set_following(False)
    seat.step(store, now=104.1)
    assert calls == [True, False] and store.followers(info.id).following == 0
    seat.step(store, now=110.0)
    assert calls == [True, False, False] and store.followers(info.id).present == 1


def test_codes_are_hard_to_guess_and_easy_to_type() -> None:
    assert len(codes.CODE_ALPHABET) == 32 and codes.CODE_LENGTH * 5 == codes.CODE_BITS == 40
    assert not set("ILOU") & set(codes.CODE_ALPHABET)
    drawn = {codes.new_code() for _ in range(2000)}
    assert len(drawn) == 2000 and all(len(c) == 8 and set(c) <= set(codes.CODE_ALPHABET) for c in drawn)
    seen = {ch for c in drawn for ch in c}
    assert seen == set(codes.CODE_ALPHABET)  # every symbol is used (no biased alphabet)
    c = sorted(drawn)[0]
    shown = codes.format_code(c)
    assert codes.parse_code(shown) == c and codes.parse_code(shown.lower()) == c
    assert codes.parse_code(" o1il-0000 ") == "0111" + "0000"
    for bad in ("ABCD-EFG", "ABCD-EFGHI", "ABCD-EFGU", "", None, 12345678, "ABCD\x00EFGH", "x" * 100):
        assert codes.parse_code(bad) is None
    assert codes.looks_like_secret(codes.new_teacher_key()) and codes.looks_like_secret(codes.new_student_token())
    assert not codes.looks_like_secret("short") and not codes.looks_like_secret("x" * 30 + "<")


def test_no_secret_is_ever_printed() -> None:
    g = TeacherGrant(1, key="supersecretkeyvalue0123456789")
    s = Seat(1, 1, "Ana", token="supersecrettokenvalue123")
    assert "supersecret" not in repr(g) and "supersecret" not in repr(s)
