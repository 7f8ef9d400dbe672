"""The classroom (issue 10): one class per server, its members, the teacher, the lesson and the quotas.

``dlplay class`` creates a class (or reopens the one a previous server left open). Students open
the join page, type the class's join code and a display name, and get a server-issued session
(``server/sessions.py``) that makes them a *member*; the teacher holds the class's *teacher key*
(the ``/teacher?key=...`` link sets the ``dlplay_teacher`` cookie, an HMAC of the key; scripts send
``Authorization: Bearer KEY``). While a class is open the server serves nothing but the join page to
anyone else (``server/security.py``).

Everything persists in the SQLite store (``classes``, ``class_members``, ``class_runs``): a new
``ClassroomService`` over the same data folder reloads the open class, its members (their sessions
keep working: a session is a signed id, and the secret survives restarts), the lesson and the runs.

What a member may start is checked by ``check_start``: the class's quotas (steps, parameters,
multiply-adds per step, runs at once) and the lesson's locked fields; in challenge mode a run over
the parameter budget is allowed but marked (``within_budget``), and ranks after the others.

This module knows nothing of HTTP: the routes (``server/api/routes/classroom.py``) and the
security middleware turn ``ClassError`` (a code, a message with its fix, an HTTP status) into answers.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from pydantic import ValidationError

from server.config import Settings
from server.schemas import Experiment
from server.security import SlidingWindowLimiter, load_secret, same_secret, sign
from server.sessions import SessionIssuer, new_session_id
from server.store import Store

log = logging.getLogger("dlplay.class")

TEACHER_COOKIE = "dlplay_teacher"
TEACHER_COOKIE_MAX_AGE = 30 * 24 * 3600  # seconds: a term's lessons from the same laptop without the link again
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector, typed on a phone
CODE_LENGTH = 6  # 32^6 = 10^9 codes; with 20 wrong tries an hour per address, guessing takes ages
NAME_MAX_CHARS = 40  # a display name on a small multiple of the dashboard
MAX_MEMBERS = 1000  # members per class: a lecture hall; bounds what a leaked code can fill the store with
LESSON_NOTE_MAX_CHARS = 4000  # the teacher's note above the lesson: a few paragraphs
# Quotas per student, with the reason for each default. ``max_step_macs`` None: the server's own limit.
DEFAULT_QUOTAS: dict[str, int | None] = {
    "max_active_runs": 2,  # a run and the one they compare it with; more only slows everyone down
    "max_steps": 5000,  # a spiral MLP converges in ~1000; 5000 leaves room and keeps a run to minutes
    "max_params": 2_000_000,  # every MLP and LeNet-sized CNN of the lessons fits
    "max_step_macs": None,  # multiply-adds per training step; None: the server's max_step_macs (server/cost.py)
    "uploads": 5,  # dataset files a student may have at once
}
# Experiment paths a student may always change, lesson or not: the run's name and which probes it computes
# (what they look at, not what they train).
ALWAYS_EDITABLE = ("name", "probes")


class ClassError(Exception):
    """A refusal by the classroom: ``code`` (ERROR_CODES in server/messages.py), ``message`` (with its fix), ``status``."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Member:
    """A student in a class; ``session_id`` is the server-issued session the join gave them."""

    id: str
    class_id: str
    name: str
    session_id: str
    joined_at: float
    kicked: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass
class Classroom:
    """A class. ``code`` is shown and stored as ``ABC-123``; students may type it in any case, dash or not."""

    id: str
    title: str
    code: str
    teacher_key: str
    joining_open: bool
    created_at: float
    ended_at: float | None
    leaderboard_published: bool
    lesson: dict[str, Any] | None
    quotas: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


@dataclass(frozen=True)
class StartCheck:
    """What ``check_start`` measured of an admitted run (the leaderboard shows it)."""

    params: int
    step_macs: int
    within_budget: bool | None  # None: no challenge; False: over the lesson's parameter budget (allowed, marked)


@dataclass
class _RunEntry:
    member_id: str
    run_id: str
    started_at: float
    params: int | None
    within_budget: bool | None


def new_code() -> str:
    """A fresh join code, ``ABC-123`` style."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return display_code(raw)


def display_code(raw: str) -> str:
    return f"{raw[:3]}-{raw[3:]}"


def normalize_code(typed: str) -> str:
    """What a student typed, as the stored form: upper case, spaces and dashes ignored, ``ABC-123``."""
    plain = "".join(ch for ch in str(typed).upper() if ch not in " -\t")
    return display_code(plain) if len(plain) == CODE_LENGTH else plain


def clean_name(name: Any) -> str:
    """A display name, trimmed; ``ClassError bad_name`` when empty, too long or with control characters."""
    text = unicodedata.normalize("NFC", str(name or "")).strip()
    if not text:
        raise ClassError("bad_name", "type a display name (your first name will do). Fix: fill in the name field", 400)
    if len(text) > NAME_MAX_CHARS:
        raise ClassError("bad_name", f"a display name has at most {NAME_MAX_CHARS} characters (yours has "
                         f"{len(text)}). Fix: use a shorter name", 400)
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise ClassError("bad_name", "a display name cannot contain control characters. Fix: type it again", 400)
    return " ".join(text.split())  # runs of spaces in the middle shown as one


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.optimizer.lr": 0.01, "network.layers.0.out_features": 16, ...}``: the leaves by dotted path.

    Lists of objects are indexed (``network.layers.0``); lists of plain values are one leaf.
    """
    if isinstance(document, dict):
        out: dict[str, Any] = {}
        for key, value in document.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(document, list) and any(isinstance(v, (dict, list)) for v in document):
        out = {}
        for index, value in enumerate(document):
            out.update(flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: document}


def _covered(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def locked_changes(lesson_experiment: dict[str, Any], experiment: dict[str, Any],
                   editable: list[str]) -> list[tuple[str, Any, Any]]:
    """Where ``experiment`` differs from the lesson's in a field the lesson locks: (path, lesson's, yours).

    Both are normalized documents (``Experiment.model_dump(mode="json")``). ``editable`` holds dotted
    path prefixes the students may change (``"network.layers"`` covers every layer, added or removed);
    ``"*"`` unlocks everything.
    """
    if "*" in editable:
        return []
    allowed = (*ALWAYS_EDITABLE, *editable)
    theirs, yours = flatten(lesson_experiment), flatten(experiment)
    changes = []
    for path in sorted(set(theirs) | set(yours)):
        if theirs.get(path) != yours.get(path) and not _covered(path, allowed):
            changes.append((path, theirs.get(path), yours.get(path)))
    return changes


def _teacher_cookie_value(secret: bytes, key: str) -> str:
    return sign(secret, "teacher", key)


def _scope_of(connection: Any) -> dict[str, Any]:
    return connection if isinstance(connection, dict) else connection.scope


def _scope_header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _scope_cookie(scope: dict[str, Any], name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is treated as no cookie
                continue
            if name in jar:
                return jar[name].value
    return None


def _scope_query(scope: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def bearer(scope: dict[str, Any]) -> str:
    """The ``Authorization: Bearer <value>`` of a request, or ""."""
    authorization = _scope_header(scope, b"authorization") or ""
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""


def is_teacher(connection: Any, classroom: "ClassroomService") -> bool:
    """Whether a request or websocket (or its ASGI scope) comes from the class's teacher.

    The ``dlplay_teacher`` cookie, ``Authorization: Bearer KEY`` or ``?key=KEY`` (websockets and links);
    keys are compared in constant time. False when no class gates the server.
    """
    scope = _scope_of(connection)
    if classroom.gating is None:
        return False
    cookie = _scope_cookie(scope, TEACHER_COOKIE)
    if cookie is not None and classroom.teacher_cookie_matches(cookie):
        return True
    given = bearer(scope) or _scope_query(scope).get("key", "")
    return bool(given) and classroom.teacher_key_matches(given)


def session_of(connection: Any, issuer: SessionIssuer) -> str | None:
    """The server-issued session a request or websocket carries, as server/sessions.py reads it: a websocket's
    ``?session=<token>``, else the cookie's (HTTP routes know only the cookie)."""
    scope = _scope_of(connection)
    requested = _scope_query(scope).get("session") if scope.get("type") == "websocket" else None
    if requested is not None:
        return issuer.verify(requested)
    return issuer.from_cookie(scope)


class ClassroomService:
    """The class of this server, persisted in ``store`` (see the module docstring).

    Thread-safe: the event loop (routes, the websocket) and worker threads may call it.
    ``current`` is the open class (None when there is none); ``gating`` is the class that decides
    who may use the server: the open one, or the one that ended while this server ran (its
    students are then locked out; after a restart an ended class gates nothing).
    """

    def __init__(self, store: Store, issuer: SessionIssuer, settings: Settings) -> None:
        self.store = store
        self.issuer = issuer
        self.settings = settings
        self._secret = load_secret(settings.data_dir)  # the same secret signs sessions and the teacher cookie
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._scheduler: Any = None
        # Wrong join codes and teacher keys per address (a code is a password a class shares).
        self.wrong_attempts = SlidingWindowLimiter(settings.max_access_attempts_per_ip_per_hour)
        self.current: Classroom | None = None
        self._ended: Classroom | None = None  # a class that ended while this server ran
        self._teacher_cookie = ""
        self._members: dict[str, Member] = {}  # id -> member
        self._by_session: dict[str, Member] = {}
        self._runs: dict[str, list[_RunEntry]] = {}  # member id -> their runs, oldest first
        self._run_owner: dict[str, str] = {}  # run id -> member id
        row = store.open_class()
        if row is not None:
            self._load(_classroom(row))

    # -- wiring --------------------------------------------------------------------

    def attach_scheduler(self, scheduler: Any) -> None:
        """The app's scheduler: counts a member's runs at once, and stops runs on a kick or the end of the class."""
        self._scheduler = scheduler

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after any change (a join, a kick, joining opened or closed, a lesson, publishing, the end)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener's bug must not undo the change the teacher just made
                log.exception("a classroom change listener failed")

    # -- the class -------------------------------------------------------------------

    @property
    def gating(self) -> Classroom | None:
        with self._lock:
            return self.current or self._ended

    def _load(self, classroom: Classroom) -> None:
        """Make ``classroom`` current with its members and runs from the store (under no lock: at start)."""
        self.current = classroom
        self._ended = None
        self._teacher_cookie = _teacher_cookie_value(self._secret, classroom.teacher_key)
        self._members, self._by_session, self._runs, self._run_owner = {}, {}, {}, {}
        for row in self.store.class_members(classroom.id):
            member = Member(id=row["id"], class_id=row["class_id"], name=row["name"], session_id=row["session_id"],
                            joined_at=row["joined_at"], kicked=bool(row["kicked"]))
            self._members[member.id] = member
            self._by_session[member.session_id] = member
        for row in self.store.class_runs(classroom.id):
            within = row["within_budget"]
            self._add_run(_RunEntry(row["member_id"], row["run_id"], row["started_at"], row["params"],
                                    None if within is None else bool(within)))

    def _add_run(self, entry: _RunEntry) -> None:
        self._runs.setdefault(entry.member_id, []).append(entry)
        self._run_owner[entry.run_id] = entry.member_id

    def create(self, title: str = "", quotas: dict[str, Any] | None = None) -> Classroom:
        """Open a new class (raises ValueError when one is open: end it first, or reopen it)."""
        merged = self._quotas(quotas)
        with self._lock:
            if self.current is not None:
                raise ValueError(f"class {self.current.title!r} ({self.current.code}) is still open. Fix: reopen it, "
                                 "or end it first (dlplay class --new ends it and starts another)")
            now = time.time()
            classroom = Classroom(id=secrets.token_hex(8), title=(title or "").strip()[:200] or "dlplay class",
                                  code=new_code(), teacher_key=secrets.token_urlsafe(16), joining_open=True,
                                  created_at=now, ended_at=None, leaderboard_published=False, lesson=None,
                                  quotas=merged)
            self.store.create_class({
                "id": classroom.id, "title": classroom.title, "code": classroom.code,
                "teacher_key": classroom.teacher_key, "joining_open": 1, "created_at": now, "ended_at": None,
                "leaderboard_published": 0, "lesson_json": None, "quotas_json": json.dumps(merged)})
            self._load(classroom)
        self._changed()
        return classroom

    def _quotas(self, given: dict[str, Any] | None) -> dict[str, Any]:
        unknown = set(given or {}) - set(DEFAULT_QUOTAS)
        if unknown:
            raise ValueError(f"unknown quota {sorted(unknown)}; the quotas are {', '.join(DEFAULT_QUOTAS)}")
        merged = {**DEFAULT_QUOTAS, **{k: v for k, v in (given or {}).items() if v is not None}}
        if merged["max_step_macs"] is None:
            merged["max_step_macs"] = self.settings.max_step_macs
        for key, value in merged.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "max_step_macs" else 1):
                raise ValueError(f"quota {key} must be a whole number of at least 1, not {value!r}")
        return merged

    def _require_open(self) -> Classroom:
        """The open class, or ClassError: no class, or the class has ended."""
        with self._lock:
            if self.current is not None:
                return self.current
            if self._ended is not None:
                raise ClassError("class_ended", f"the class {self._ended.title!r} has ended. Fix: ask your teacher "
                                 "for the next class's code", 410)
        raise ClassError("no_class", "no class is open on this server. Fix: start one with `dlplay class`", 404)

    def set_joining(self, open: bool) -> None:
        with self._lock:
            classroom = self._require_open()
            classroom.joining_open = bool(open)
            self.store.update_class(classroom.id, joining_open=int(bool(open)))
        self._changed()

    def end(self) -> None:
        """End the class: nobody can join, students are locked out, their runs stop; the teacher keeps access."""
        with self._lock:
            classroom = self._require_open()
            classroom.ended_at = time.time()
            classroom.joining_open = False
            self.store.update_class(classroom.id, ended_at=classroom.ended_at, joining_open=0)
            self.current, self._ended = None, classroom
            runs = list(self._run_owner)
        self._stop_runs(runs)
        self._changed()

    def publish_leaderboard(self, published: bool) -> None:
        with self._lock:
            classroom = self._require_open()
            classroom.leaderboard_published = bool(published)
            self.store.update_class(classroom.id, leaderboard_published=int(bool(published)))
        self._changed()

    # -- the teacher -----------------------------------------------------------------

    def teacher_key_matches(self, key: str) -> bool:
        classroom = self.gating
        return classroom is not None and bool(key) and same_secret(key, classroom.teacher_key)

    def teacher_cookie_matches(self, value: str) -> bool:
        return self.gating is not None and bool(self._teacher_cookie) and same_secret(value, self._teacher_cookie)

    def teacher_cookie_header(self) -> str:
        """The ``Set-Cookie`` value that makes a browser the teacher's (an HMAC of the key, not the key)."""
        return (f"{TEACHER_COOKIE}={self._teacher_cookie}; Path=/; Max-Age={TEACHER_COOKIE_MAX_AGE}; HttpOnly; "
                "SameSite=Lax")

    # -- members ---------------------------------------------------------------------

    def join(self, code: str, name: str, *, ip: str | None = None,
             session_id: str | None = None) -> tuple[Member, str]:
        """A student joins with the class's code and a display name: (member, their session token).

        ``ip``: the caller's address, held to ``max_access_attempts_per_ip_per_hour`` wrong codes.
        ``session_id``: the caller's current session; a member joining again from the same browser
        under the same name gets their membership back instead of ``name_taken``.
        Raises ClassError: too_many_attempts (429), class_ended (410), no_class (404), bad_code (403),
        joining_closed (403), bad_name (400), class_full (403), name_taken (409).
        """
        if ip is not None and self.wrong_attempts.exhausted(ip):
            raise ClassError("too_many_attempts", "too many wrong codes from this computer. Fix: wait, then try "
                             f"again (in {self.wrong_attempts.retry_after(ip)} s)", 429)
        typed = normalize_code(code)
        with self._lock:
            classroom = self.current
            if classroom is None or not same_secret(typed, classroom.code):
                if any(row["ended_at"] is not None for row in self.store.classes_with_code(typed)):
                    raise ClassError("class_ended", "that class has ended. Fix: ask your teacher for the code of "
                                     "today's class", 410)
                if ip is not None:
                    self.wrong_attempts.record(ip)
                if classroom is None:
                    raise ClassError("no_class", "no class is open on this server. Fix: check the address, or ask "
                                     "your teacher to start the class", 404)
                raise ClassError("bad_code", "that is not this class's code. Fix: type the code shown by your "
                                 "teacher (6 letters and digits, like ABC-123)", 403)
            display = clean_name(name)
            key = display.casefold()
            if session_id is not None:
                mine = self._by_session.get(session_id)
                if mine is not None and not mine.kicked and mine.name.casefold() == key:
                    return mine, self.issuer.token_for(mine.session_id)
            if not classroom.joining_open:
                raise ClassError("joining_closed", "the teacher has closed joining for this class. Fix: ask your "
                                 "teacher to open it again", 403)
            if len(self._members) >= MAX_MEMBERS:
                raise ClassError("class_full", f"this class has {MAX_MEMBERS} members, the most one may have. "
                                 "Fix: ask your teacher", 403)
            if any(m.name.casefold() == key for m in self._members.values()):
                raise ClassError("name_taken", f"someone in this class is already called {display!r}. Fix: add an "
                                 "initial or a number", 409)
            member = Member(id=secrets.token_hex(8), class_id=classroom.id, name=display,
                            session_id=new_session_id(), joined_at=time.time())
            added = self.store.add_member({
                "id": member.id, "class_id": member.class_id, "name": member.name, "name_key": key,
                "session_id": member.session_id, "joined_at": member.joined_at, "kicked": 0})
            if not added:  # the store's unique index agrees with the check above; kept as the last word
                raise ClassError("name_taken", f"someone in this class is already called {display!r}. Fix: add an "
                                 "initial or a number", 409)
            self._members[member.id] = member
            self._by_session[member.session_id] = member
        self._changed()
        return member, self.issuer.token_for(member.session_id)

    def member_of_session(self, session_id: str | None) -> Member | None:
        """The open class's member with this session; None for anyone else, and for a kicked member."""
        if not session_id:
            return None
        with self._lock:
            member = self._by_session.get(session_id) if self.current is not None else None
            return member if member is not None and not member.kicked else None

    def former_member(self, session_id: str | None) -> Member | None:
        """The member this session belonged to if they were kicked or their class ended (for the refusal's words)."""
        if not session_id:
            return None
        with self._lock:
            member = self._by_session.get(session_id)
            if member is None:
                return None
            return member if member.kicked or self.current is None else None

    def members(self) -> list[Member]:
        """The class's members (kicked ones too), in the order they joined."""
        with self._lock:
            return list(self._members.values())

    def member(self, member_id: str) -> Member | None:
        with self._lock:
            return self._members.get(member_id)

    def kick(self, member_id: str) -> None:
        """Remove a student: their session no longer opens anything, and their runs stop."""
        with self._lock:
            self._require_open()
            member = self._members.get(member_id)
            if member is None:
                raise ClassError("no_member", f"no member {member_id!r} in this class. Fix: take the id from "
                                 "GET /api/class", 404)
            member.kicked = True
            self.store.set_member_kicked(member_id)
            runs = [entry.run_id for entry in self._runs.get(member_id, [])]
        self._stop_runs(runs)
        self._changed()

    def _stop_runs(self, run_ids: list[str]) -> None:
        """Stop those of ``run_ids`` that are training or waiting (a kick, the end of the class)."""
        scheduler = self._scheduler
        if scheduler is None:
            return  # no scheduler (the command line made this service): nothing of this process runs
        for run_id in run_ids:
            run = scheduler.get(run_id)
            if run is not None and (run.active or run.state == "queued"):
                scheduler.command(run_id, "stop")  # the run's stream says when it stopped

    # -- the lesson -------------------------------------------------------------------

    def push_lesson(self, lesson: dict[str, Any]) -> dict[str, Any]:
        """Check and store the lesson every student starts from (see the contract's shape); returns it, stamped."""
        with self._lock:
            classroom = self._require_open()
        checked = _check_lesson(lesson)
        with self._lock:
            classroom.lesson = checked
            self.store.update_class(classroom.id, lesson_json=json.dumps(checked))
        self._changed()
        return checked

    # -- runs -------------------------------------------------------------------------

    def record_run(self, member_id: str, run_id: str, *, params: int | None = None,
                   within_budget: bool | None = None) -> None:
        """Remember that a member started a run (persisted: it survives a restart)."""
        entry = _RunEntry(member_id, run_id, time.time(), params, within_budget)
        with self._lock:
            if run_id in self._run_owner:
                return
            self.store.add_class_run(member_id, run_id, started_at=entry.started_at, params=params,
                                     within_budget=within_budget)
            self._add_run(entry)

    def runs_of(self, member_id: str) -> list[str]:
        """A member's run ids, oldest first."""
        with self._lock:
            return [entry.run_id for entry in self._runs.get(member_id, [])]

    def run_entry(self, run_id: str) -> tuple[Member, int | None, bool | None] | None:
        """(the member who started ``run_id``, its parameters, its challenge standing), or None if no member did."""
        with self._lock:
            member_id = self._run_owner.get(run_id)
            if member_id is None:
                return None
            entry = next(e for e in self._runs[member_id] if e.run_id == run_id)
            return self._members[member_id], entry.params, entry.within_budget

    def check_start(self, member: Member, experiment: Experiment, report: dict[str, Any]) -> StartCheck:
        """May ``member`` start ``experiment``? Raises ClassError, or returns what was measured.

        ``report`` is ``validate_document``'s (``total_steps``, ``cost.params``, ``cost.step_macs``):
        the same figures the admission by cost used. Checked: the class is open and the member in it,
        the quotas (steps, parameters, multiply-adds per step, runs at once), and the lesson's locked
        fields. In challenge mode a run over the parameter budget is allowed, marked ``within_budget=False``.
        """
        classroom = self._require_open()
        if self.member_of_session(member.session_id) is None:
            raise ClassError("not_in_class", "you are no longer in this class. Fix: ask your teacher", 401)
        quotas = classroom.quotas
        cost = report.get("cost") or {}
        params, step_macs = int(cost.get("params", 0)), int(cost.get("step_macs", 0))
        total_steps = report.get("total_steps")
        if total_steps is None or total_steps > quotas["max_steps"]:
            length = "trains until stopped" if total_steps is None else f"takes {total_steps} steps"
            raise ClassError("over_quota", f"this run {length}; in this class a run may take at most "
                             f"{quotas['max_steps']} steps. Fix: set train.max_steps to {quotas['max_steps']} or less",
                             403)
        if params > quotas["max_params"]:
            raise ClassError("over_quota", f"this network has {params:,} parameters; in this class a network may have "
                             f"at most {quotas['max_params']:,}. Fix: use fewer or narrower layers", 403)
        if quotas["max_step_macs"] and step_macs > quotas["max_step_macs"]:
            raise ClassError("over_quota", f"one training step of this run takes {step_macs:,} multiply-adds; in this "
                             f"class a step may take at most {quotas['max_step_macs']:,}. Fix: use a smaller "
                             "batch_size or fewer channels", 403)
        active = self._active_runs(member.id)
        if active >= quotas["max_active_runs"]:
            raise ClassError("too_many_runs", f"you have {active} runs training or waiting, the most a student of "
                             "this class may have at once. Fix: stop one of them, or wait for one to finish", 429)
        lesson = classroom.lesson
        within_budget = None
        if lesson is not None:
            changes = locked_changes(lesson["experiment"], experiment.model_dump(mode="json"), lesson["editable"])
            if changes:
                path, theirs, yours = changes[0]
                more = f" (and {len(changes) - 1} more locked fields)" if len(changes) > 1 else ""
                editable = ", ".join(lesson["editable"]) or "nothing"
                raise ClassError("locked_field", f"the lesson locks {path}: it is {json.dumps(theirs)} in the lesson, "
                                 f"{json.dumps(yours)} in yours{more}. You may change: {editable}. Fix: set it back, "
                                 "or reload the lesson", 403)
            challenge = lesson.get("challenge")
            if challenge is not None:
                within_budget = params <= challenge["param_budget"]
        return StartCheck(params=params, step_macs=step_macs, within_budget=within_budget)

    def runs_left(self, member: Member) -> int:
        """How many more runs ``member`` may have at once: the class's quota less those training or waiting."""
        classroom = self._require_open()
        return max(0, classroom.quotas["max_active_runs"] - self._active_runs(member.id))

    def _active_runs(self, member_id: str) -> int:
        scheduler = self._scheduler
        if scheduler is None:
            return 0  # no scheduler (the command line made this service): nothing of this process runs
        count = 0
        for run_id in self.runs_of(member_id):
            run = scheduler.get(run_id)
            count += run is not None and (run.active or run.state == "queued")
        return count

    def check_upload(self, member: Member, uploads_now: int) -> None:
        """Refuse another upload when the member already has their quota of files (ClassError over_quota, 429)."""
        classroom = self._require_open()
        limit = classroom.quotas["uploads"]
        if uploads_now >= limit:
            raise ClassError("over_quota", f"you have {uploads_now} uploaded files, the most a student of this class "
                             "may keep. Fix: delete one (DELETE /api/uploads/{id}) and upload again", 429)


def _classroom(row: dict[str, Any]) -> Classroom:
    return Classroom(
        id=row["id"], title=row["title"], code=row["code"], teacher_key=row["teacher_key"],
        joining_open=bool(row["joining_open"]), created_at=row["created_at"], ended_at=row["ended_at"],
        leaderboard_published=bool(row["leaderboard_published"]),
        lesson=None if row["lesson_json"] is None else json.loads(row["lesson_json"]),
        quotas=json.loads(row["quotas_json"]))


def _check_lesson(lesson: Any) -> dict[str, Any]:
    """The lesson in its stored form (experiment normalized, ``pushed_at`` stamped); ClassError bad_lesson (400)."""
    if not isinstance(lesson, dict):
        raise ClassError("bad_lesson", 'a lesson is an object: {"experiment": {...}, "note": "...", "editable": '
                         '[...], "challenge": null}', 400)
    unknown = set(lesson) - {"experiment", "note", "editable", "challenge", "source", "pushed_at"}
    if unknown:
        raise ClassError("bad_lesson", f"a lesson has no field {sorted(unknown)[0]!r}; its fields are experiment, "
                         "note, editable, challenge and source", 400)
    try:
        experiment = Experiment.model_validate(lesson.get("experiment")).model_dump(mode="json")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "experiment"
        raise ClassError("bad_lesson", f"the lesson's experiment is not valid: {where}: {first.get('msg')}. Fix: "
                         "check it in the editor (Validate) before pushing it", 400) from None
    note = lesson.get("note") or ""
    if not isinstance(note, str) or len(note) > LESSON_NOTE_MAX_CHARS:
        raise ClassError("bad_lesson", f"the lesson's note is text of at most {LESSON_NOTE_MAX_CHARS} characters", 400)
    editable = lesson.get("editable", [])
    if not isinstance(editable, list) or not all(isinstance(p, str) and p for p in editable):
        raise ClassError("bad_lesson", 'editable is a list of dotted paths, e.g. ["train.optimizer.lr", '
                         '"network.layers"], or ["*"] for everything', 400)
    paths = flatten(experiment)
    for prefix in editable:
        if prefix != "*" and not any(_covered(path, (prefix,)) for path in paths):
            raise ClassError("bad_lesson", f"editable names {prefix!r}, which is no field of the lesson's experiment. "
                             "Fix: use a dotted path such as train.optimizer.lr or network.layers", 400)
    challenge = lesson.get("challenge")
    if challenge is not None:
        budget = challenge.get("param_budget") if isinstance(challenge, dict) else None
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1 or set(challenge) != {"param_budget"}:
            raise ClassError("bad_lesson", 'challenge is null or {"param_budget": <parameters, at least 1>}', 400)
        challenge = {"param_budget": budget}
    source = lesson.get("source") or "document"
    if not isinstance(source, str) or not (source == "document" or source.startswith(("preset:", "run:"))):
        raise ClassError("bad_lesson", 'source is "document", "preset:<name>" or "run:<id>"', 400)
    return {"experiment": experiment, "note": note, "editable": list(dict.fromkeys(editable)),
            "challenge": challenge, "pushed_at": time.time(), "source": source}


# ---------------------------------------------------------------------------
# The leaderboard (pure: the route gathers each run's figures)
# ---------------------------------------------------------------------------


def rank_leaderboard(rows: list[dict[str, Any]], challenge: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each student's best run, best first.

    ``rows``: one per run, ``{member_id, name, run_id, best_val_acc, params, within_budget, state, step}``.
    A student's best run is the one with the highest ``best_val_acc`` (in challenge mode, within the
    budget first); the students are then sorted the same way, runs without a validation accuracy last
    and ties by name. In challenge mode runs over the parameter budget rank after every run within it.
    """
    def key(row: dict[str, Any]) -> tuple:
        accuracy = row.get("best_val_acc")
        over = challenge is not None and row.get("within_budget") is False
        missing = accuracy is None or (isinstance(accuracy, float) and math.isnan(accuracy))
        return (over, missing, -(accuracy or 0.0) if not missing else 0.0, row.get("name", "").casefold())

    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = best.get(row["member_id"])
        if held is None or key(row) < key(held):
            best[row["member_id"]] = row
    return sorted(best.values(), key=key)


__all__ = ["ClassError", "Classroom", "ClassroomService", "DEFAULT_QUOTAS", "Member", "StartCheck", "TEACHER_COOKIE",
           "bearer", "is_teacher", "locked_changes", "normalize_code", "rank_leaderboard", "session_of"]
