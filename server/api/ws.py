"""The websocket at /ws: one per browser tab; commands in, run streams out.

A command is a JSON object ``{"cmd": ..., "id"?: ..., ...}`` (ARCHITECTURE.md):
``start {experiment}``, ``pause|resume|step|stop {run_id}``,
``set {run_id, lr?, momentum?, weight_decay?, dropout?}``,
``probe {run_id, probe, index?, class?, layer?, smoothgrad?}``, ``predict {run_id, input}``,
``subscribe {run_id, after_seq}``, ``unsubscribe {run_id}``, ``ping``,
``views {run_id, views: {name: {args}}}`` (the live views this page shows) and
``speed {run_id, steps_per_s}`` (null: as fast as possible).

Replies are the runs' protocol messages (stamped, shared by every subscriber of a
run) plus a few messages for this client only, which carry no ``seq``: ``pong``
and ``error {code, message}``, each echoing the command's ``id`` as
``request_id``. A bad command never closes the connection.

Each client has one ``Outbox`` drained by one writer task, so a slow client
delays nobody: the worker threads only append to outboxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from server.api.class_ws import connection_is_teacher
from server.api.routes.validate import validate_document
from server.channel import Frame, Outbox, direct_frame, encode
from server.classroom import ClassError
from server.protocol import CommandError, decode_command
from server.scheduler import SchedulerError
from server.security import client_ip
from server.sessions import ForgedSessionError, SessionLimitError, websocket_session

log = logging.getLogger("dlplay.ws")

router = APIRouter()

RUN_COMMANDS = ("pause", "resume", "step", "stop", "set", "speed", "probe", "predict")
COMMANDS = ("start", "subscribe", "unsubscribe", "views", "ping") + RUN_COMMANDS
# What the class's teacher may do to a student's run (issue 10): watch it and pause, resume or stop it, not edit it.
TEACHER_COMMANDS = ("subscribe", "unsubscribe", "views", "pause", "resume", "stop")
SET_FIELDS = ("lr", "momentum", "weight_decay", "dropout")
# Commands of one connection being carried out at once; more are refused with ``too_busy`` (a page sends a few).
MAX_PENDING_COMMANDS = 16
# A client may always stop or pause its own run, even one whose other commands fill its queue (a page that
# fired a burst of probes): these have this many places of their own beyond the limit, so they too are bounded.
CONTROL_COMMANDS = ("stop", "pause")
CONTROL_PLACES = 16
# Probe arguments a client may pass; "class" is the protocol's name for the runner's ``target``.
PROBE_ARGS = {"index": "index", "class": "target", "target": "target", "layer": "layer", "smoothgrad": "smoothgrad",
              "epsilon": "epsilon", "function": "function", "steps": "steps", "lr": "lr"}  # the last four: issue 11


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    # Host and Origin were checked before the handshake got here (server/security.py); the session must be
    # one this server issued (server/sessions.py).
    try:
        session_id, headers = websocket_session(websocket)
    except ForgedSessionError as error:
        await _refuse_session(websocket, {"type": "error", "code": "bad_session", "message": str(error)})
        return
    except SessionLimitError as error:
        await _refuse_session(websocket, {"type": "error", "code": "too_many_sessions", "message": str(error)})
        return
    await websocket.accept(headers=headers)
    await Client(websocket, session_id).serve()


async def _refuse_session(websocket: WebSocket, error: dict[str, Any]) -> None:
    """Say why in an error message (a script can read it; a denied handshake says nothing), then close (1008)."""
    await websocket.accept()
    await websocket.send_text(encode(error))
    await websocket.close(code=1008)


class Client:
    """One websocket connection: reads commands, owns the outbox and its writer task."""

    def __init__(self, websocket: WebSocket, session_id: str) -> None:
        state = websocket.app.state
        self.ws = websocket
        self.session_id = session_id
        self.client_ip = client_ip(websocket.scope)  # max_runs_per_ip counts this address's runs across sessions
        self.settings = state.settings
        self.scheduler = state.scheduler
        self.store = state.store
        self.datasets = state.datasets
        self.outbox = Outbox(asyncio.get_running_loop(), self.settings.outbox_max_frames)
        self.subscriptions: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        # The class's teacher (issue 10) may watch and pause/resume/stop any class member's run.
        self.classroom = state.classroom
        self.is_teacher = connection_is_teacher(websocket, self.classroom)  # False when no class is open
        # A class member (server/classroom.py): their starts are held to the class's quotas and the lesson.
        self.member = self.classroom.member_of_session(session_id)

    # -- the connection ----------------------------------------------------------

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    self._error("bad_frame", "send commands as JSON text frames, not binary")
                    continue
                await self._handle(text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for run_id in self.subscriptions:
                self.scheduler.unsubscribe(run_id, self.outbox)
            self.outbox.close()
            writer.cancel()
            for task in self._tasks:
                task.cancel()

    async def _write(self) -> None:
        """Send the outbox, oldest frame first; drop the connection if the client cannot keep up."""
        try:
            while True:
                frame = await self.outbox.get()
                if self.outbox.overflowed:
                    await self.ws.close(code=1013, reason="too slow: reconnect and subscribe with after_seq")
                    return
                await self.ws.send_text(frame.text)
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket is gone; the reader notices and cleans up
            return

    def _send(self, message: dict[str, Any]) -> None:
        self.outbox.put([direct_frame(message)])

    def _error(self, code: str, message: str, *, request_id: Any = None, run_id: Any = None) -> None:
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if run_id is not None:
            reply["run_id"] = run_id
        if request_id is not None:
            reply["request_id"] = request_id
        self._send(reply)

    # -- commands ----------------------------------------------------------------

    async def _handle(self, text: str) -> None:
        try:  # size, nesting depth, JSON, an object, numbers in range (server/protocol.py)
            command = decode_command(text, max_bytes=self.settings.max_message_bytes)
        except CommandError as error:
            self._error(error.code, error.message, request_id=error.request_id, run_id=error.run_id)
            return
        request_id = command.get("id")
        name = command.get("cmd")
        if self.member is not None and self.classroom.member_of_session(self.session_id) is None:
            # Opened as a member, kicked since (or the class ended): nothing more for this connection.
            await self.ws.send_text(encode({"type": "error", "code": "not_in_class", "request_id": request_id,
                                            "message": "you are no longer in this class. Fix: ask your teacher"}))
            await self.ws.close(code=4401, reason="not_in_class")
            return
        try:
            if name not in COMMANDS:
                raise CommandError("unknown_command", f"unknown command {name!r}; the commands are {', '.join(COMMANDS)}")
            if name == "ping":
                reply = {"type": "pong", "t": time.time()}
                if request_id is not None:
                    reply["request_id"] = request_id
                self._send(reply)
            elif name == "start":
                await self._start(command, request_id)
            elif name == "subscribe":
                self._subscribe(command)
            elif name == "unsubscribe":
                run_id = self._run_id(command)
                self.subscriptions.discard(run_id)
                self.scheduler.unsubscribe(run_id, self.outbox)
            elif name == "views":
                self._views(command, request_id)
            else:
                self._run_command(name, command, request_id)
        except CommandError as error:
            self._error(error.code, error.message, request_id=request_id, run_id=command.get("run_id"))
        except Exception as error:  # a bug of ours: say so, log it, keep the connection
            log.exception("command %r failed", name)
            self._error("command_failed", f"the server could not carry out {name!r}: {type(error).__name__}: {error}",
                        request_id=request_id, run_id=command.get("run_id"))

    async def _start(self, command: dict[str, Any], request_id: Any) -> None:
        raw = command.get("experiment")
        if not isinstance(raw, dict):
            raise CommandError("bad_arguments", "start needs {\"experiment\": {...an Experiment document...}}")
        paused = command.get("paused", False)
        if not isinstance(paused, bool):
            raise CommandError("bad_arguments", "start's \"paused\" is true or false (true: wait at step 0 for step or resume)")
        experiment, report = await asyncio.to_thread(
            validate_document, raw, datasets=self.datasets, settings=self.settings, uploads_dir=self.store.uploads_dir,
            uploads=self.ws.app.state.uploads.for_session(self.session_id))  # only this session's uploads
        if experiment is None:
            errors = report["errors"]
            more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
            code = errors[0].get("code", "invalid_experiment")  # too_large: admission by cost (server/cost.py)
            reply = {"type": "error", "code": code, "message": errors[0]["message"] + more, "errors": errors}
            if request_id is not None:
                reply["request_id"] = request_id
            self._send(reply)
            return
        # A class member's run: the class's quotas and the lesson's locked fields; its compute share is the
        # student's own (owner), and the class's members and teacher share one NAT address, so the per-address
        # limit is not theirs (their quotas are).
        check, owner, limited_ip = None, None, self.client_ip
        if self.member is not None:
            try:
                check = self.classroom.check_start(self.member, experiment, report)
            except ClassError as error:
                raise CommandError(error.code, error.message) from None
            owner, limited_ip = self.member.id, None
        elif self.is_teacher:
            limited_ip = None
        try:
            run = self.scheduler.submit(self.session_id, experiment, subscriber=self.outbox, request_id=request_id,
                                        client_ip=limited_ip, paused=paused, owner=owner)
        except SchedulerError as error:
            raise CommandError(error.code, str(error)) from None
        if self.member is not None:
            self.classroom.record_run(self.member.id, run.id, params=check.params, within_budget=check.within_budget)
        self.subscriptions.add(run.id)

    def _run_id(self, command: dict[str, Any]) -> str:
        """The command's run, checked to belong to this session (another session's run is 'not found')."""
        run_id = command.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise CommandError("bad_arguments", f"'{command.get('cmd')}' needs a run_id")
        run = self.scheduler.get(run_id)
        owner = run.session_id if run is not None else getattr(self.store.get_run(run_id), "session_id", None)
        if owner != self.session_id and not self._teacher_may(command.get("cmd"), owner):
            raise CommandError("not_found", f"no run {run_id!r} in this session")
        return run_id

    def _teacher_may(self, name: Any, owner: str | None) -> bool:
        """Whether this connection is the teacher's and ``name`` is a command they may send to a member's run."""
        return (self.is_teacher and name in TEACHER_COMMANDS and owner is not None
                and self.classroom.member_of_session(owner) is not None)

    def _subscribe(self, command: dict[str, Any]) -> None:
        run_id = self._run_id(command)
        after = command.get("after_seq", 0)
        if after is None:
            after = 0
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise CommandError("bad_arguments", "after_seq must be the last seq you received (an integer >= 0)")
        self.subscriptions.add(run_id)
        if not self.scheduler.subscribe(run_id, self.outbox, after):
            self.outbox.put(self._stored_replay(run_id, after))

    def _stored_replay(self, run_id: str, after: int) -> list[Frame]:
        """For a run no longer in memory: its summary, stored metric history and final, then its status.

        The history was thinned to ``metric_history_points``, so seqs may have gaps here.
        """
        record = self.store.get_run(run_id)
        messages = ([record.summary] if record.summary else []) + self.store.metrics(run_id)
        if record.final and "seq" in record.final:
            messages.append(record.final)
        frames = [Frame(text=encode(m), type=m["type"], run_id=run_id, seq=m.get("seq"))
                  for m in messages if (m.get("seq") or 0) > after]
        status = {"type": "status", "run_id": run_id, "state": record.status, "message": record.message}
        return frames + [direct_frame(status)]

    def _views(self, command: dict[str, Any], request_id: Any) -> None:
        """What this page shows of a run; the run then computes those views (and its other watchers')."""
        run_id = self._run_id(command)
        views = command.get("views")
        if not isinstance(views, dict) or not all(isinstance(k, str) for k in views):
            raise CommandError("bad_arguments", 'views needs {"views": {"boundary": {}, "feature_maps": {"index": 3}}}')
        if run_id not in self.subscriptions:
            raise CommandError("bad_state", f"subscribe to run {run_id!r} before choosing its views")
        self._check_not_too_busy("views")
        future = self.scheduler.watch(run_id, self.outbox, views)
        task = asyncio.create_task(self._await_command(future, run_id, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_not_too_busy(self, name: str) -> None:
        """A bounded queue per connection: a client that fires commands faster than runs answer is told to wait."""
        limit = MAX_PENDING_COMMANDS + (CONTROL_PLACES if name in CONTROL_COMMANDS else 0)
        if len(self._tasks) >= limit:
            raise CommandError("too_busy", f"{len(self._tasks)} of your commands are still being carried out; "
                               f"'{name}' was refused. Fix: wait for their replies before sending more")

    def _run_command(self, name: str, command: dict[str, Any], request_id: Any) -> None:
        run_id = self._run_id(command)
        args = self._arguments(name, command)
        self._check_not_too_busy(name)
        future = self.scheduler.command(run_id, name, **args)
        task = asyncio.create_task(self._await_command(future, run_id, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arguments(self, name: str, command: dict[str, Any]) -> dict[str, Any]:
        if name == "set":
            values = {k: command[k] for k in SET_FIELDS if command.get(k) is not None}
            if not values:
                raise CommandError("bad_arguments", f"set needs at least one of {', '.join(SET_FIELDS)}")
            for key, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise CommandError("bad_arguments", f"{key} must be a number, not {value!r}")
            return values
        if name == "probe":
            probe = command.get("probe")
            if not isinstance(probe, str) or not probe:
                raise CommandError("bad_arguments", "probe needs {\"probe\": <kind>}, e.g. \"saliency\"")
            return {"probe": probe, **{PROBE_ARGS[k]: v for k, v in command.items() if k in PROBE_ARGS and v is not None}}
        if name == "speed":
            if "steps_per_s" not in command:
                raise CommandError("bad_arguments", 'speed needs {"steps_per_s": <steps per second, or null for max>}')
            value = command["steps_per_s"]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CommandError("bad_arguments", f"steps_per_s must be a number or null, not {value!r}")
            return {"steps_per_s": value}
        if name == "predict":
            if "input" not in command:
                raise CommandError("bad_arguments", "predict needs {\"input\": ...} (a point [x, y] or an image)")
            return {"input": command["input"]}
        return {}

    async def _await_command(self, future: Any, run_id: str, request_id: Any) -> None:
        """Report a command's failure to this client (its messages go to every subscriber of the run)."""
        try:
            # Shielded: a command accepted is carried out even if this connection closes meanwhile (a page that
            # sends stop and leaves). Unshielded, closing cancelled the command's future and the worker skipped
            # it: 2 of 6 runs stopped that way kept training (until the time limit).
            await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            raise
        except SchedulerError as error:
            self._error(error.code, str(error), request_id=request_id, run_id=run_id)
        except ValueError as error:  # a run's own refusal (server/isolation.py RunError carries its code)
            self._error(getattr(error, "code", "bad_arguments"), str(error), request_id=request_id, run_id=run_id)
        except Exception as error:
            log.exception("command on run %s failed", run_id)
            self._error("command_failed", f"{type(error).__name__}: {error}", request_id=request_id, run_id=run_id)
