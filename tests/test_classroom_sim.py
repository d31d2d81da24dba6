"""The classroom load harness's own arithmetic and tracing (tests/classroom_sim.py), which the soak test and the
benchmark's classroom figures rest on."""

from __future__ import annotations

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.classroom_sim import WsTrace, _kth_latencies


def test_each_answer_is_timed_to_the_first_count_that_includes_it() -> None:
    sends = [1000.0, 1010.0, 1020.0, 1030.0]  # four answers sent
    counts = [(0, 1005.0), (2, 1100.0), (2, 1200.0), (3, 1300.0)]  # the count the teacher saw, and when
    # answers 1 and 2 at 1100, answer 3 at 1300, answer 4 never counted (no latency for it)
    assert _kth_latencies(sends, counts) == [100.0, 90.0, 280.0]
    # sent out of order: the k-th by send time is the one counted k-th
    assert _kth_latencies(list(reversed(sends)), counts) == [100.0, 90.0, 280.0]
    assert _kth_latencies(sends, []) == []


def test_the_websocket_trace_reads_reruns_and_the_answers_count() -> None:
    back = BackMsg()
    back.rerun_script.fragment_id = "f1"
    back.rerun_script.is_auto_rerun = True
    w = back.rerun_script.widget_states.widgets.add()
    w.id, w.trigger_value = "$$ID-abc-classroom.t.ask", True
    assert WsTrace._back(back.SerializeToString()) == "rerun frag=f1 auto=True triggers=['classroom.t.ask']"
    fwd = ForwardMsg()
    fwd.delta.fragment_id = "f1"
    fwd.delta.new_element.metric.label = "Answers"
    fwd.delta.new_element.metric.body = "7 of 30"
    assert WsTrace._fwd(fwd.SerializeToString()) == "metric Answers='7 of 30' frag=f1"
    other = ForwardMsg()
    other.delta.new_element.markdown.body = "hello"
    assert WsTrace._fwd(other.SerializeToString()) is None  # other deltas are not kept
    assert WsTrace._safe(WsTrace._fwd, b"\xff\xff not a message").startswith(("unparsed", "untraced"))
    t = WsTrace(keep=2)
    for k in range(3):
        t._add("recv", f"m{k}")
    assert [f[2] for f in t.frames] == ["m1", "m2"]  # bounded
