"""Load (``make soak``): a class of 30 across two replicas behind nginx, 10 questions.

The teacher and 2 students are in Chromium, 28 students are simulated over Streamlit's own protocol
(tests/classroom_sim.py: real sessions running the page's whole code path, without drawing), all spread over
the two replicas by nginx's sticky cookie. The teacher moves through a study (the Chromium students' viewers
must follow), then asks 10 questions that everyone answers at random moments within 2 s. No answer may be lost
or counted twice (the database's UNIQUE (question, participant) and the teacher's counts must both say 300), and
the run prints its figures: follow and answer-to-teacher latencies (p50 / p95 / max), each replica's memory.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from tests.e2e import browser_unavailable_reason, in_ci

N_STUDENTS = int(os.environ.get("MOSMED_CLASS_STUDENTS", "30"))
N_QUESTIONS = int(os.environ.get("MOSMED_CLASS_QUESTIONS", "10"))


def _stats(v: list[float]) -> dict:
    if not v:
        return {"n": 0}
    a = np.asarray(v, dtype=float)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": round(float(a.max()), 1),
    }


def test_thirty_students_answer_ten_questions_on_two_replicas(figures, tmp_path) -> None:
    import sys

    from tests.e2e import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    import serve_replicas
    from classroom_sim import class_load

    for reason in (serve_replicas.nginx_unavailable_reason(), browser_unavailable_reason()):
        if reason:
            if in_ci():
                pytest.fail(reason)
            pytest.skip(reason)
    from mosmed.config import demo_root
    from mosmed.dataset import Dataset
    from mosmed.synthetic import generate_demo

    cache = tmp_path / "cache"
    demo = generate_demo(demo_root(cache), n_studies=20, workers=2)
    Dataset(demo, cache).build_cache(workers=2)
    db = f"sqlite:///{tmp_path / 'class.db'}"
    rs = serve_replicas.ReplicaSet(
        n=2,
        workdir=tmp_path / "replicas",
        debug_headers=True,
        env={"MOSMED_CACHE": str(cache), "MOSMED_DATA": "", "MOSMED_DB": db},
    )
    rs.start()
    try:
        got = asyncio.run(
            class_load(rs, db_url=db, n_students=N_STUDENTS, n_browsers=2, n_questions=N_QUESTIONS, n_moves=10)
        )
    finally:
        rs.stop()
    figures.update({k: v for k, v in got.items() if not k.endswith("_ms")})
    for k in (
        "follow_ms",
        "follow_sim_ms",
        "answer_to_teacher_ms",
        "answer_to_teacher_received_ms",
        "answer_to_stored_ms",
    ):
        figures[k] = _stats(got[k])
    figures["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    assert got["answers_stored"] == got["answers_expected"] == N_STUDENTS * N_QUESTIONS  # none lost, none twice
    assert got["answers_distinct"] == got["answers_stored"]  # none twice
    assert not [e for e in got["sim_errors"] if "exception" in e], got["sim_errors"]
    assert figures["follow_ms"]["n"] >= 10 and figures["answer_to_teacher_ms"]["n"] >= N_STUDENTS * N_QUESTIONS - 5
