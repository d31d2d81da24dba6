"""Live teaching (issue 13): a class of 30 on two replicas behind nginx, follow and quiz latencies, answers, memory.

One run of :func:`tests.classroom_sim.class_load` (the same code as the soak test
tests/soak/test_classroom_load.py): ``scripts/serve_replicas.py`` starts two Streamlit replicas and Debian's
nginx on localhost (sticky cookie, WebSocket upgrade), serving the full-size benchmark set (``prepare.FULL``)
with the warm cache run.py built; the class database is SQLite (WAL, ``synchronous=FULL``), the default
backend. The teacher and 2 students are headless Chromium pages, the other 28 students are simulated clients
speaking Streamlit's own WebSocket protocol (real sessions on the replicas, running the page's whole code path:
seat, follow poll, viewer payload, answer callback; only the drawing is skipped). nginx's cookie spreads them:
replica 0 has the teacher and 15 students, replica 1 the other 15.

- ``classroom_follow_p95_ms``: the teacher presses a key in the presenter's viewer (slice up/down, window
  preset); from that keydown (the teacher page's ``Date.now()``) to the moment the Chromium student's viewer
  shows the same slice / window / crosshair (a MutationObserver on the viewer's ``data-slice``,
  ``data-level``, ``data-row``, ``data-col``; the student sits on the other replica than the teacher for one
  of the two). Same machine, same clock. It includes the teacher's report to its replica, the database write,
  the student's poll (``st.fragment(run_every=0.5 s)``), the payload and the draw.
- ``quiz_answer_to_teacher_p95_ms``: every student answers each question at a random moment within 2 s; the
  k-th answer sent (sorted by send time) against the first moment the teacher's page showed a count >= k
  (MutationObserver on the "Answers" metric). It includes the answer's round trip to its replica, the write,
  the teacher's poll (``run_every=0.25 s``) and the draw. ``quiz_answer_to_stored`` (context) is the same
  k-th-answer measure against the row's arrival in the database (read every 20 ms by the benchmark itself):
  the app's share; the rest is the teacher's poll and their browser drawing it.
- ``classroom_30_answers_lost``: answers expected (students x questions) minus distinct (question, student)
  pairs stored; ``classroom_30_answers_duplicated``: stored rows minus distinct pairs (both must be 0).
- ``classroom_rss_mb_per_replica_15_students``: the larger of the two replicas' peak resident memory (process
  and children, /proc, sampled every second), each serving 15 students (one also the teacher).

``--quick``: 3 questions and 6 moves (30 students still); the full run: 10 questions, 20 moves.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from common import OUT, REPO, Context, p95, prepare, say, summary

TARGETS: dict[str, tuple[str, float, str, str]] = {
    "classroom_follow_p95_ms": ("<=", 1000, "ms", "teacher's key -> student's viewer shows it (other replica)"),
    "quiz_answer_to_teacher_p95_ms": ("<=", 1000, "ms", "answer sent -> teacher's count shows it, 30 students"),
    "classroom_30_answers_lost": ("<=", 0, "", "answers expected - stored, 30 students"),
    "classroom_30_answers_duplicated": ("<=", 0, "", "answers stored twice, 30 students"),
}

N_STUDENTS = 30
N_BROWSERS = 2
N_REPLICAS = 2


def run(res: dict, ctx: Context) -> None:
    if ctx.skip_browser:
        say("classroom: skipped (--skip-browser)")
        return
    for p in (str(REPO / "scripts"), str(REPO / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    import serve_replicas

    from tests.classroom_sim import class_load

    reason = serve_replicas.nginx_unavailable_reason()
    if reason:
        res.setdefault("errors", []).append(f"classroom: {reason}")
        say(f"classroom: {reason}")
        return
    n_questions, n_moves = (3, 6) if ctx.quick else (10, 20)
    base = OUT / "classroom-bench"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    db = f"sqlite:///{base / 'class.db'}"
    ids = [int(i) for i in prepare.WARM_IDS]  # cached studies: the class's list, the first is shown first
    rs = serve_replicas.ReplicaSet(
        n=N_REPLICAS,
        workdir=base / "replicas",
        env={"MOSMED_DATA": str(prepare.FULL), "MOSMED_CACHE": str(ctx.run_cache), "MOSMED_DB": db},
    )
    say(
        f"classroom: {N_STUDENTS} students ({N_BROWSERS} in Chromium) on {N_REPLICAS} replicas behind nginx, "
        f"{n_questions} questions ..."
    )
    load_before = [round(x, 2) for x in os.getloadavg()]
    rs.start()
    try:
        got = asyncio.run(
            class_load(
                rs,
                db_url=db,
                n_students=N_STUDENTS,
                n_browsers=N_BROWSERS,
                n_questions=n_questions,
                n_moves=n_moves,
                log=say,
                dataset_root=str(prepare.FULL),
                study_ids=ids,
                cache_root=str(ctx.run_cache),
                trace_path=str(base / "teacher-websocket.txt"),
            )
        )
    except Exception:
        say(rs.tail(n=2000))
        raise
    finally:
        rs.stop()
    load_after = [round(x, 2) for x in os.getloadavg()]
    res["classroom_students"] = N_STUDENTS
    res["classroom_students_in_chromium"] = N_BROWSERS
    res["classroom_questions"] = n_questions
    res["classroom_replicas"] = N_REPLICAS
    res["classroom_database"] = "sqlite (WAL, synchronous=FULL)"
    res["classroom_join_all_s"] = got["join_all_s"]
    res["classroom_follow"] = summary(got["follow_ms"])
    res["classroom_follow_p95_ms"] = round(p95(got["follow_ms"]), 1)
    res["classroom_follow_simulated_payload"] = summary(got["follow_sim_ms"])
    res["quiz_answer_to_teacher"] = summary(got["answer_to_teacher_ms"])
    res["quiz_answer_to_teacher_p95_ms"] = round(p95(got["answer_to_teacher_ms"]), 1)
    res["quiz_answer_to_stored"] = summary(got["answer_to_stored_ms"])
    res["quiz_answer_to_teacher_received"] = summary(got["answer_to_teacher_received_ms"])
    res["classroom_answers_expected"] = got["answers_expected"]
    res["classroom_answers_stored"] = got["answers_stored"]
    res["classroom_30_answers_lost"] = got["answers_expected"] - got["answers_distinct"]
    res["classroom_30_answers_duplicated"] = got["answers_stored"] - got["answers_distinct"]
    res["classroom_rss_mb_peak"] = got["rss_mb"]
    res["classroom_rss_mb_median"] = got["rss_mb_median"]
    peaks = [v for v in got["rss_mb"].values() if v is not None]
    res["classroom_rss_mb_per_replica_15_students"] = max(peaks) if peaks else None
    res["classroom_ws_messages_per_simulated_student"] = got["ws_messages_per_student"]
    res["classroom_sim_errors"] = got["sim_errors"]
    res["classroom_teacher_ask_clicks_lost"] = got["teacher_ask_clicks_lost"]
    res["classroom_load_avg"] = {"before": load_before, "after": load_after}
    say(
        f"classroom: follow p95 {res['classroom_follow_p95_ms']} ms, answer->teacher p95 "
        f"{res['quiz_answer_to_teacher_p95_ms']} ms, answers {got['answers_stored']}/{got['answers_expected']}, "
        f"RSS peak {got['rss_mb']} MB; load average {load_before} -> {load_after}"
    )
