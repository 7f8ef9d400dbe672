"""The teacher's live dashboard feed: the websocket at /ws/class.

Only the teacher may open it (the ``dlplay_teacher`` cookie, ``?key=KEY`` or
``Authorization: Bearer KEY``); anyone else's handshake is accepted only to be closed
with 4403 and a reason (a browser cannot read a refused handshake's reason; 4401 when no
class is open). The first message is ``class_snapshot {class, students: [Summary...]}``;
then ``class_update {students: [the changed Summary...], t}`` at most 4 times a second,
and a new ``class_snapshot`` after a join, a kick, a lesson or the end of the class.
The summaries come from ``server/class_monitor.py``.

The socket never queues: what a teacher connection still has to be sent is a set of
students (``TeacherFeed``), so a page that reads slowly gets fewer, fuller updates and
costs the server nothing more. The page may send ``{"cmd": "snapshot"}`` to ask for a
full picture again (anything else is ignored).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from server.class_monitor import ClassMonitor, TeacherFeed
from server.classroom import ClassroomService, is_teacher

router = APIRouter()

CLOSE_NO_CLASS = 4401  # no class is open: there is no dashboard to show
CLOSE_NOT_TEACHER = 4403  # the page's ClassFeed stops retrying on these codes


@router.websocket("/ws/class")
async def class_feed(websocket: WebSocket) -> None:
    state = websocket.app.state
    classroom = state.classroom
    if classroom.gating is None:  # an ended class's dashboard stays open to its teacher until the server stops
        await _refuse(websocket, CLOSE_NO_CLASS, "no_class", "no class is open on this server. Fix: start one with "
                      "`dlplay class`")
        return
    if not connection_is_teacher(websocket, classroom):
        await _refuse(websocket, CLOSE_NOT_TEACHER, "not_teacher", "the class dashboard is the teacher's. Fix: open "
                      "the teacher URL that `dlplay class` printed (/teacher?key=...)")
        return
    await websocket.accept()
    await serve_teacher(websocket, state.class_monitor)


def connection_is_teacher(connection: Any, classroom: ClassroomService) -> bool:
    """Whether a request or websocket comes from the teacher: the teacher cookie, ``?key=`` or a bearer key.

    The cookie's format and the constant-time key comparison are the classroom's (``server/classroom.py``).
    """
    return is_teacher(connection, classroom)


def teacher_may_watch(connection: Any, owner_session: str | None) -> bool:
    """Whether ``connection`` is the class's teacher and the run's owner (a session) is a member of the open class."""
    classroom = connection.app.state.classroom
    return (owner_session is not None and classroom.member_of_session(owner_session) is not None
            and connection_is_teacher(connection, classroom))


async def _refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    """Accept, say why (a script reads it), close with ``code`` (the page stops retrying)."""
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "error", "code": error, "message": message}))
    await websocket.close(code=code, reason=error)


async def serve_teacher(websocket: WebSocket, monitor: ClassMonitor) -> None:
    """Send the feed until the teacher leaves: a snapshot first, then updates no more than 4 a second."""
    feed = monitor.add_feed()
    reader = asyncio.create_task(_read(websocket, feed))
    try:
        await _write(websocket, monitor, feed, reader)
    finally:
        monitor.remove_feed(feed)
        reader.cancel()


async def _write(websocket: WebSocket, monitor: ClassMonitor, feed: TeacherFeed, reader: asyncio.Task) -> None:
    last_sent = 0.0
    while not reader.done():
        ready = asyncio.ensure_future(feed.ready.wait())
        done, _ = await asyncio.wait({ready, reader}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            return  # the teacher left
        # Rate limit: updates at most every monitor.interval; changes made meanwhile merge into the next one.
        wait = last_sent + monitor.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        feed.ready.clear()
        text = monitor.next_frame(feed)
        if text is None:
            continue
        try:
            await websocket.send_text(text)
        except Exception:  # the socket is gone; the reader sees the disconnect
            return
        last_sent = time.monotonic()


async def _read(websocket: WebSocket, feed: TeacherFeed) -> None:
    """The page's few requests (``{"cmd": "snapshot"}``); returns when the teacher disconnects."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                command = json.loads(message.get("text") or "null")
            except ValueError:
                continue
            if isinstance(command, dict) and command.get("cmd") == "snapshot":
                feed.mark_snapshot()
    except (WebSocketDisconnect, RuntimeError):
        return
