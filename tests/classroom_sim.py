"""Simulated students for the classroom's load runs: real Streamlit sessions driven over Streamlit's own
WebSocket protocol, without a browser.

Each :class:`SimStudent` opens ``/_stcore/stream`` through nginx exactly as the browser does (subprotocol
``streamlit``, same-origin ``Origin``, nginx's sticky cookie), asks for the teaching page with the student's own
link (``?class=CODE&seat=TOKEN``: the page takes the seat again, as after a reconnect), and then does what the
browser's Streamlit client does: reruns the fragments that asked for it (``auto_rerun``: the follow poll every
0.25 s), and clicks an answer button (a trigger of the button's widget id, as a fragment rerun). So the
replica runs the page's whole code path for it (seat, poll, viewer payload, answer callback), only the pixels
are not drawn. Used by tests/e2e/test_classroom.py (a small load in ``make test``), tests/soak/ and
bench/sect_classroom.py.

Messages are parsed with Streamlit's own protobufs; viewer payloads (``mosmed_ct_viewer``) are unpacked to
read the navigation the page sent (what the student's viewer would show).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SimStudent", "run_students", "run_sync"]


@dataclass
class SimStudent:
    """One headless student session. ``base`` is nginx's URL; ``cookie`` pins it to a replica (``r0`` ...)."""

    base: str
    code: str
    token: str
    name: str = ""
    cookie: str | None = None
    page: str = "teaching"
    # What the session has received:
    buttons: dict[str, str] = field(default_factory=dict)        # widget key -> widget id
    fragments: dict[str, float] = field(default_factory=dict)    # fragment id -> auto-rerun interval (s)
    viewer: dict | None = None                                   # the last viewer payload header
    viewer_at: float = 0.0
    texts: list[str] = field(default_factory=list)               # markdown of the last run (bounded)
    runs_finished: int = 0
    errors: list[str] = field(default_factory=list)
    messages: int = 0
    bytes_in: int = 0
    connected: bool = False
    _ws: Any = None
    _fragment_of: dict[str, str] = field(default_factory=dict)   # widget id -> fragment id it was drawn in
    _tasks: list = field(default_factory=list)
    _sent_answer: dict[int, float] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ protocol

    def _ws_url(self) -> str:
        u = urllib.parse.urlparse(self.base)
        return f"ws://{u.netloc}/_stcore/stream"

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        u = urllib.parse.urlparse(self.base)
        headers = {}
        if self.cookie:
            headers["Cookie"] = f"mosmed_replica={self.cookie}"
        self._ws = await connect(self._ws_url(), subprotocols=["streamlit"], origin=f"{u.scheme}://{u.netloc}",
                                 additional_headers=headers, max_size=None, compression=None, open_timeout=30,
                                 proxy=None)
        self.connected = True
        self._tasks.append(asyncio.create_task(self._receive()))
        await self.rerun()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._ws is not None:
            await self._ws.close()
        self.connected = False

    def _client_state(self, **kw):
        from streamlit.proto.ClientState_pb2 import ClientState

        cs = ClientState(query_string=urllib.parse.urlencode({"class": self.code, "seat": self.token}),
                         page_name=self.page, **kw)
        return cs

    async def rerun(self, *, fragment_id: str = "", widget_states=None, auto: bool = False) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        cs = self._client_state(fragment_id=fragment_id, is_auto_rerun=auto)
        if widget_states is not None:
            cs.widget_states.CopyFrom(widget_states)
        msg.rerun_script.CopyFrom(cs)
        await self._ws.send(msg.SerializeToString())

    async def click(self, key: str) -> bool:
        """Click the button with widget ``key`` (False when the page has not drawn it)."""
        from streamlit.proto.WidgetStates_pb2 import WidgetStates

        wid = self.buttons.get(key)
        if wid is None:
            return False
        ws = WidgetStates()
        w = ws.widgets.add()
        w.id = wid
        w.trigger_value = True
        await self.rerun(fragment_id=self._fragment_of.get(wid, ""), widget_states=ws)
        return True

    async def answer(self, question_id: int, choice: str) -> float | None:
        """Click the answer ``choice`` of question ``question_id``; the wall-clock time it was sent, or None."""
        key = f"classroom.s.answer.{int(question_id)}.{choice}"
        t = time.time()
        if await self.click(key):
            self._sent_answer[int(question_id)] = t
            return t
        return None

    def answer_keys(self) -> list[str]:
        return [k for k in self.buttons if k.startswith("classroom.s.answer.")]

    def open_question(self) -> int | None:
        """The question whose answer buttons the page shows now (its id), or None."""
        ids = {int(m.group(1)) for k in self.buttons if (m := re.match(r"classroom\.s\.answer\.(\d+)\.", k))}
        return max(ids) if ids else None

    async def _auto(self, fragment_id: str, interval: float) -> None:
        while self.connected:
            await asyncio.sleep(interval)
            if self.fragments.get(fragment_id) != interval:
                return
            try:
                await self.rerun(fragment_id=fragment_id, auto=True)
            except Exception as e:  # noqa: BLE001 - connection gone: the receive loop says so
                self.errors.append(f"auto rerun: {e}")
                return

    async def _receive(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            async for raw in self._ws:
                self.messages += 1
                self.bytes_in += len(raw)
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                kind = msg.WhichOneof("type")
                if kind == "delta":
                    self._on_delta(msg)
                elif kind == "auto_rerun":
                    fid, iv = msg.auto_rerun.fragment_id, float(msg.auto_rerun.interval)
                    if self.fragments.get(fid) != iv:
                        self.fragments[fid] = iv
                        self._tasks.append(asyncio.create_task(self._auto(fid, iv)))
                elif kind == "script_finished":
                    self.runs_finished += 1
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"receive: {type(e).__name__}: {e}")
        self.connected = False

    def _on_delta(self, msg) -> None:
        d = msg.delta
        if d.WhichOneof("type") != "new_element":
            return
        el = d.new_element
        which = el.WhichOneof("type")
        fid = d.fragment_id or ""                 # the fragment this element was drawn in ("" for a full run)
        if which == "button":
            wid = el.button.id
            parts = wid.split("-", 2)                 # "$$ID-<hash>-<user key>"
            if len(parts) == 3 and parts[0] == "$$ID":
                self.buttons[parts[2]] = wid
                self._fragment_of[wid] = fid
        elif which == "bidi_component" and el.bidi_component.component_name.endswith("mosmed_ct_viewer"):
            from mosmed import wire

            try:
                header, _ = wire.unpack(bytes(el.bidi_component.bytes))
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"viewer payload: {e}")
                return
            self.viewer, self.viewer_at = header, time.time()
        elif which == "markdown":
            self.texts.append(el.markdown.body)
            del self.texts[:-60]
        elif which == "exception":
            self.errors.append(f"exception: {el.exception.message}")


async def run_students(students: list[SimStudent], coro_fn, *, stagger_s: float = 0.05) -> Any:
    """Connect every student (a little apart, as a class does), run ``coro_fn(students)``, close them all."""
    try:
        for s in students:
            await s.connect()
            await asyncio.sleep(stagger_s)
        return await coro_fn(students)
    finally:
        for s in students:
            try:
                await s.close()
            except Exception:  # noqa: BLE001
                pass


def run_sync(students: list[SimStudent], coro_fn, *, stagger_s: float = 0.05, timeout_s: float = 600.0) -> Any:
    """:func:`run_students` from synchronous code, in a thread of its own: Playwright's sync API keeps an event
    loop running in the calling thread, where ``asyncio.run`` is refused."""
    import threading

    out: dict = {}

    def work() -> None:
        try:
            out["value"] = asyncio.run(run_students(students, coro_fn, stagger_s=stagger_s))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=work, name="sim-students", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"the simulated students did not finish in {timeout_s:.0f} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")
