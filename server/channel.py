"""A run's outgoing stream and each client's outbox: frames, replay, coalescing.

Messages leave a run through its ``RunChannel``: it stamps them (run_id, seq, t),
encodes each once to JSON, keeps every non-image message for replay (a client
that reconnects with ``after_seq`` misses no metric point) and only the newest
message of each image type, and hands frames to subscribers. A subscriber is an
``Outbox`` on the event loop, fed with ``loop.call_soon_threadsafe``: the worker
never waits for a client. A slow client's outbox keeps every non-image frame but
replaces a pending image frame by the newer one of the same type (coalescing).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from server import protocol


def encode(message: dict[str, Any]) -> str:
    """Compact JSON text; NaN/inf (which JSON cannot carry) become the strings the protocol uses."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(protocol.jsonable(message), separators=(",", ":"), allow_nan=False, default=str)


@dataclass(frozen=True)
class Frame:
    """One message ready to send: its JSON text and what the outbox needs to order and coalesce it."""

    text: str
    type: str
    run_id: str | None = None
    seq: int | None = None  # None for replies that belong to no run's stream (pong, command errors)

    @property
    def coalesce_key(self) -> tuple[str, str] | None:
        """Pending image frames with the same key are replaced by the newest."""
        if self.run_id is not None and self.type in protocol.IMAGE_TYPES:
            return (self.run_id, self.type)
        return None


def direct_frame(message: dict[str, Any]) -> Frame:
    """A frame outside any run's stream (a reply to one client)."""
    return Frame(text=encode(message), type=message["type"], run_id=message.get("run_id"))


class Outbox:
    """One client's frames waiting to be sent, on the event loop; ``deliver`` may be called from any thread.

    Non-image frames are always kept, in order. An image frame replaces a pending
    frame with the same ``(run_id, type)`` (it is removed and the new one appended,
    so seq order is kept). Beyond ``max_frames`` pending frames the outbox marks
    itself ``overflowed``: the connection should be closed, and the client
    reconnects and replays from its last seq.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_frames: int = 20_000) -> None:
        self._loop = loop
        self._max_frames = max_frames
        self._frames: OrderedDict[int, Frame] = OrderedDict()
        self._slots: dict[tuple[str, str], int] = {}  # coalesce key -> key of its pending frame
        self._counter = 0
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.coalesced = 0  # image frames replaced before they were sent

    def deliver(self, frames: list[Frame]) -> None:
        """Queue frames from any thread (the worker, or the loop itself)."""
        if self.closed or not frames:
            return
        try:
            self._loop.call_soon_threadsafe(self.put, frames)
        except RuntimeError:  # the loop is closed: the client is gone
            self.closed = True

    def put(self, frames: list[Frame]) -> None:
        """Queue frames; call on the event loop."""
        if self.closed or self.overflowed:  # an overflowed client is being dropped; it will replay
            return
        for frame in frames:
            key = frame.coalesce_key
            if key is not None:
                old = self._slots.pop(key, None)
                if old is not None and self._frames.pop(old, None) is not None:
                    self.coalesced += 1
            self._counter += 1
            self._frames[self._counter] = frame
            if key is not None:
                self._slots[key] = self._counter
        if len(self._frames) > self._max_frames:
            self.overflowed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._frames)

    def pop_nowait(self) -> Frame | None:
        if not self._frames:
            return None
        number, frame = self._frames.popitem(last=False)
        key = frame.coalesce_key
        if key is not None and self._slots.get(key) == number:
            del self._slots[key]
        return frame

    async def get(self) -> Frame:
        """The next frame to send (oldest first); waits for one."""
        while True:
            frame = self.pop_nowait()
            if frame is not None:
                return frame
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._slots.clear()
        self._ready.set()


class RunChannel:
    """A run's outgoing stream: stamping, the replay log, and its subscribers (thread-safe)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._stamper = protocol.Stamper(run_id)
        self._lock = threading.Lock()
        self._log: list[Frame] = []  # every non-image frame, in seq order
        self._log_seqs: list[int] = []
        self._images: dict[str, Frame] = {}  # type -> newest frame of each image type
        self._subscribers: set[Outbox] = set()

    def publish(self, messages: list[dict[str, Any]],
                persist: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Stamp, log and send messages; returns the stamped dicts.

        ``persist(stamped)`` runs before anyone is sent them (under the channel's lock), so
        a client that has seen a message can count on the store knowing it too.
        """
        stamped: list[dict[str, Any]] = []
        with self._lock:
            frames = []
            for message in messages:
                full = self._stamper.stamp(message)
                frame = Frame(text=encode(full), type=full["type"], run_id=self.run_id, seq=full["seq"])
                if frame.type in protocol.IMAGE_TYPES:
                    self._images[frame.type] = frame
                else:
                    self._log.append(frame)
                    self._log_seqs.append(frame.seq)
                frames.append(frame)
                stamped.append(full)
            if persist is not None:
                persist(stamped)
            # Delivered under the lock, so every subscriber sees one total order.
            if frames:
                for outbox in list(self._subscribers):
                    if outbox.closed:
                        self._subscribers.discard(outbox)
                    else:
                        outbox.deliver(frames)
        return stamped

    def subscribe(self, outbox: Outbox, after_seq: int = 0) -> int:
        """Send ``outbox`` every logged frame after ``after_seq`` and the newest image of each type, then live ones.

        Returns how many frames were replayed.
        """
        with self._lock:
            start = bisect.bisect_right(self._log_seqs, after_seq)
            replay = self._log[start:] + [f for f in self._images.values() if f.seq > after_seq]
            replay.sort(key=lambda f: f.seq)
            self._subscribers.add(outbox)
            outbox.deliver(replay)
        return len(replay)

    def unsubscribe(self, outbox: Outbox) -> None:
        with self._lock:
            self._subscribers.discard(outbox)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._stamper.seq

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        """The logged (non-image) messages, optionally of one type, decoded."""
        with self._lock:
            frames = [f for f in self._log if type_ is None or f.type == type_]
        return [json.loads(f.text) for f in frames]


