"""The classroom's REST API (issue 10): joining, the student's view, and the teacher's controls.

``POST /api/class/join {code, name}`` makes a student a member (a server-issued session, also set
as the ``dlplay_session`` cookie); ``GET /api/class/me`` is a member's view (lesson, quotas, runs) or,
for the teacher, ``{teacher: true}``. The teacher (the ``dlplay_teacher`` cookie or
``Authorization: Bearer KEY``) reads the class and its members, closes joining, kicks, ends the
class, pushes a lesson, publishes the leaderboard and pauses, resumes or stops any member's run.
Refusals are ``{"detail", "code"}`` with the code's status (``server/classroom.py`` ClassError).
``/join`` and ``/teacher`` serve the pages the frontend builds (``static/join.html``,
``static/teacher.html``), or a small page of their own until it is built.

Who may reach these at all while a class is open is the security middleware's business
(``server/security.py``): anyone may join; everything else needs a member's session or the teacher.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from server.api.deps import get_datasets, get_scheduler, get_settings, get_store
from server.api.openapi import errors
from server.api.routes.validate import validate_document
from server.classroom import ClassError, Classroom, ClassroomService, Member, is_teacher, rank_leaderboard, session_of
from server.config import Settings
from server.data_cache import DatasetCache
from server.scheduler import Scheduler, SchedulerError
from server.security import JOIN_PATH, client_ip, is_loopback, share_urls, split_host
from server.sessions import SessionSlot
from server.store import Store

router = APIRouter(tags=["classroom"])
pages = APIRouter()  # /join and /teacher: pages, not API

QR_DEFAULT_SCALE = 8  # pixels per QR module: ~300 px for a short URL, readable from the back of a room


class JoinBody(BaseModel):
    code: str = Field(max_length=32, description="the class's join code as the teacher shows it, e.g. ABC-123 "
                      "(any case, dash or not)")
    name: str = Field(max_length=200, description="the student's display name (1-40 characters, unique in the class)")


class JoiningBody(BaseModel):
    open: bool = Field(description="true: students may join; false: the class is closed to newcomers")


class PublishBody(BaseModel):
    published: bool = Field(description="true: students see the leaderboard; false: only the teacher does")


def get_classroom(request: Request) -> ClassroomService:
    return request.app.state.classroom


def _refused(error: ClassError) -> JSONResponse:
    """A ClassError as the API answers it: its status, ``{"detail": message, "code": code}``."""
    return JSONResponse(status_code=error.status, content={"detail": error.message, "code": error.code})


def _teacher(request: Request, classroom: ClassroomService) -> Classroom:
    """The class the caller teaches; ClassError no_class (404) or not_teacher (403)."""
    gating = classroom.gating
    if gating is None:
        raise ClassError("no_class", "no class is open on this server. Fix: start one with `dlplay class`", 404)
    if not is_teacher(request, classroom):
        raise ClassError("not_teacher", "only the class's teacher may do this. Fix: open the teacher URL that "
                         "`dlplay class` printed (/teacher?key=...), or send 'Authorization: Bearer KEY'", 403)
    return gating


def _member(request: Request, classroom: ClassroomService) -> Member | None:
    return classroom.member_of_session(session_of(request, classroom.issuer))


def join_url(request: Request, settings: Settings) -> str:
    """The address students open: the one the teacher's browser used, unless that is this computer's own
    (loopback), then the server's first network address."""
    host = request.headers.get("host", "")
    if host and not is_loopback(split_host(host)[0]):
        return f"{request.url.scheme}://{host}{JOIN_PATH}"
    port = split_host(host)[1] or settings.port
    urls = share_urls(settings.host, port, None, JOIN_PATH)
    network = [url for where, url in urls if where == "on the network"]
    return (network or [urls[0][1]])[0]


def class_view(classroom: Classroom, request: Request, settings: Settings) -> dict[str, Any]:
    """The class as the teacher sees it (the key is not repeated: the teacher has it)."""
    return {
        "id": classroom.id, "title": classroom.title, "code": classroom.code,
        "join_url": join_url(request, settings), "joining_open": classroom.joining_open,
        "leaderboard_published": classroom.leaderboard_published, "quotas": classroom.quotas,
        "created_at": classroom.created_at, "ended_at": classroom.ended_at,
    }


# ---------------------------------------------------------------------------
# Students
# ---------------------------------------------------------------------------


@router.post("/class/join", status_code=201, responses=errors(400, 403, 404, 409, 410, 429),
             summary="Join the class with its code and a display name: a session (also set as the cookie)")
def join(body: JoinBody, request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    slot: SessionSlot = request.scope["state"]["session"]
    try:
        member, token = classroom.join(body.code, body.name, ip=client_ip(request.scope), session_id=slot.session_id)
    except ClassError as error:
        return _refused(error)
    slot.session_id, slot.issued_token = member.session_id, token  # the session middleware sets the cookie
    current = classroom.current
    return {"session": token, "member": member.public(), "class": {"title": current.title if current else ""}}


@router.get("/class/me", responses=errors(404),
            summary="A member's class: the lesson, the quotas and their runs (the teacher: {teacher: true})")
def me(request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    try:
        current = classroom.gating
        if current is None:
            raise ClassError("no_class", "no class is open on this server", 404)
        summary = {"title": current.title, "code": current.code,
                   "leaderboard_published": current.leaderboard_published, "ended": current.ended}
        if is_teacher(request, classroom):
            return {"teacher": True, "class": summary}
        member = _member(request, classroom)
        if member is None:
            raise ClassError("not_in_class", f"you are not a member of this class. Fix: join it at {JOIN_PATH}", 401)
        return {"member": member.public(), "class": summary, "lesson": current.lesson, "quotas": current.quotas,
                "runs": classroom.runs_of(member.id)}
    except ClassError as error:
        return _refused(error)


# ---------------------------------------------------------------------------
# The teacher
# ---------------------------------------------------------------------------


@router.get("/class", responses=errors(403, 404), summary="The class, its members and their runs, the lesson (teacher)")
def get_class(request: Request, classroom: ClassroomService = Depends(get_classroom),
              settings: Settings = Depends(get_settings)) -> Any:
    try:
        current = _teacher(request, classroom)
    except ClassError as error:
        return _refused(error)
    members = [{"id": m.id, "name": m.name, "joined_at": m.joined_at, "kicked": m.kicked,
                "runs": classroom.runs_of(m.id)} for m in classroom.members()]
    return {"class": class_view(current, request, settings), "members": members, "lesson": current.lesson}


@router.get("/class/qr.svg", responses=errors(403, 404), response_class=Response,
            summary="The join URL as a QR code (SVG), for the teacher's page and the projector")
def qr_code(request: Request, scale: int = Query(QR_DEFAULT_SCALE, ge=1, le=40, description="pixels per module"),
            classroom: ClassroomService = Depends(get_classroom), settings: Settings = Depends(get_settings)) -> Any:
    import segno  # local: only the teacher's page needs it

    try:
        _teacher(request, classroom)
    except ClassError as error:
        return _refused(error)
    buffer = io.BytesIO()
    segno.make(join_url(request, settings), error="m").save(buffer, kind="svg", scale=scale, border=4,
                                                            title="Join the class")
    return Response(buffer.getvalue(), media_type="image/svg+xml", headers={"cache-control": "no-store"})


@router.post("/class/joining", responses=errors(403, 404, 410), summary="Open or close joining (teacher)")
def set_joining(body: JoiningBody, request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    try:
        _teacher(request, classroom)
        classroom.set_joining(body.open)
    except ClassError as error:
        return _refused(error)
    return {"joining_open": body.open}


@router.post("/class/members/{member_id}/kick", responses=errors(403, 404, 410),
             summary="Remove a student: their session opens nothing any more and their runs stop (teacher)")
def kick(member_id: str, request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    try:
        _teacher(request, classroom)
        classroom.kick(member_id)
    except ClassError as error:
        return _refused(error)
    return {"kicked": member_id}


@router.post("/class/end", responses=errors(403, 404, 410),
             summary="End the class: joining closes, students are locked out, their runs stop (teacher)")
def end_class(request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    try:
        _teacher(request, classroom)
        classroom.end()
    except ClassError as error:
        return _refused(error)
    return {"ended": True}


@router.post("/class/lesson", responses=errors(400, 403, 404, 410),
             summary="Push a lesson: the experiment every student starts from, the fields they may change (teacher)")
async def push_lesson(request: Request, lesson: dict[str, Any],
                      classroom: ClassroomService = Depends(get_classroom), settings: Settings = Depends(get_settings),
                      datasets: DatasetCache = Depends(get_datasets), store: Store = Depends(get_store)) -> Any:
    try:
        _teacher(request, classroom)
        # The experiment must start on this server (its data, its cost), not only match the schema.
        experiment, report = await asyncio.to_thread(
            validate_document, lesson.get("experiment"), datasets=datasets, settings=settings,
            uploads_dir=store.uploads_dir, uploads=None)
        if experiment is None:
            problems = report["errors"]
            raise ClassError("bad_lesson", f"the lesson's experiment would not start: {problems[0]['message']}", 400)
        return classroom.push_lesson(lesson)
    except ClassError as error:
        return _refused(error)


@router.post("/class/leaderboard", responses=errors(403, 404, 410),
             summary="Show the leaderboard to the students, or hide it again (teacher)")
def publish(body: PublishBody, request: Request, classroom: ClassroomService = Depends(get_classroom)) -> Any:
    try:
        _teacher(request, classroom)
        classroom.publish_leaderboard(body.published)
    except ClassError as error:
        return _refused(error)
    return {"leaderboard_published": body.published}


@router.post("/class/runs/{run_id}/{action}", responses=errors(403, 404, 409),
             summary="Pause, resume or stop any member's run (teacher)")
async def control_run(run_id: str, action: Literal["pause", "resume", "stop"], request: Request,
                      classroom: ClassroomService = Depends(get_classroom),
                      scheduler: Scheduler = Depends(get_scheduler)) -> Any:
    try:
        _teacher(request, classroom)
    except ClassError as error:
        return _refused(error)
    entry = classroom.run_entry(run_id)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"no run {run_id!r} of a member of this class")
    try:
        await asyncio.wrap_future(scheduler.command(run_id, action))
    except (SchedulerError, ValueError) as error:  # ended, queued, not in memory: the run's own reason
        return JSONResponse(status_code=409, content={"detail": str(error), "code": getattr(error, "code", "bad_state")})
    run = scheduler.get(run_id)
    return {"run_id": run_id, "action": action, "member_id": entry[0].id, "state": run.state if run else None}


# ---------------------------------------------------------------------------
# The leaderboard
# ---------------------------------------------------------------------------


def run_progress(run_id: str, store: Store, scheduler: Scheduler) -> dict[str, Any] | None:
    """A run's state, latest step and best validation accuracy so far; None when it was deleted.

    In-memory runs answer from their channel (up to this instant), others from the store (their final
    figures, else their metric history).
    """
    run = scheduler.get(run_id)
    if run is not None:
        final, state = run.final, run.state
        metrics = run.channel.messages("metrics") if final is None else []
    else:
        record = store.get_run(run_id)
        if record is None:
            return None
        final, state = record.final, record.status
        metrics = store.metrics(run_id) if final is None else []
    accuracies = [m["val_acc"] for m in metrics if isinstance(m.get("val_acc"), (int, float))]
    best = final.get("best_val_acc") if final else None
    if best is None and accuracies:
        best = max(accuracies)
    if isinstance(best, float) and math.isnan(best):
        best = None
    step = (final or {}).get("steps") or (metrics[-1].get("step", 0) if metrics else 0)
    return {"state": state, "step": step, "best_val_acc": best}


@router.get("/class/leaderboard", responses=errors(403, 404),
            summary="Each student's best run by validation accuracy (students: once the teacher publishes it)")
def leaderboard(request: Request, classroom: ClassroomService = Depends(get_classroom),
                store: Store = Depends(get_store), scheduler: Scheduler = Depends(get_scheduler)) -> Any:
    try:
        current = classroom.gating
        if current is None:
            raise ClassError("no_class", "no class is open on this server", 404)
        if not is_teacher(request, classroom):
            if _member(request, classroom) is None:
                raise ClassError("not_in_class", f"you are not a member of this class. Fix: join it at {JOIN_PATH}", 401)
            if not current.leaderboard_published:
                raise ClassError("leaderboard_hidden", "the teacher has not published the leaderboard yet. Fix: wait "
                                 "for them to show it", 403)
    except ClassError as error:
        return _refused(error)
    challenge = (current.lesson or {}).get("challenge")
    rows = []
    for member in classroom.members():
        if member.kicked:
            continue
        for run_id in classroom.runs_of(member.id):
            progress = run_progress(run_id, store, scheduler)
            entry = classroom.run_entry(run_id)
            if progress is None or entry is None:
                continue
            _, params, within_budget = entry
            rows.append({"member_id": member.id, "name": member.name, "run_id": run_id, "params": params,
                         "within_budget": within_budget, **progress})
    return {"rows": rank_leaderboard(rows, challenge), "challenge": challenge}


# ---------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------

FALLBACK_JOIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Join the class: dlplay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:18px/1.5 system-ui,sans-serif;max-width:24em;margin:4em auto;padding:0 1em}
input,button{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin-top:.3em}
button{margin-top:1em}#error{color:#b00020}</style></head>
<body><h1>Join the class</h1>
<form id="join"><label>Class code <input name="code" autocomplete="off" required placeholder="ABC-123"></label>
<label>Your name <input name="name" maxlength="40" required></label>
<button type="submit">Join</button><p id="error" role="alert"></p></form>
<script>
document.getElementById("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await fetch("/api/class/join", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({code: form.get("code"), name: form.get("name")})});
  if (answer.ok) { location.href = "/"; return; }
  const body = await answer.json().catch(() => ({}));
  document.getElementById("error").textContent = body.detail || ("could not join (" + answer.status + ")");
});
</script></body></html>
"""

FALLBACK_TEACHER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Class dashboard: dlplay</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}</style></head>
<body><h1>Class dashboard</h1>
<p>The dashboard page is not built yet (<code>static/teacher.html</code> is missing). The class works:
see <a href="/api/class">/api/class</a> for the members and <a href="/api/class/qr.svg">the join QR code</a>.</p>
</body></html>
"""


@pages.get(JOIN_PATH, include_in_schema=False)
def join_page(settings: Settings = Depends(get_settings)) -> Response:
    page = settings.static_dir / "join.html"
    return FileResponse(page, headers={"cache-control": "no-cache"}) if page.is_file() else HTMLResponse(FALLBACK_JOIN_PAGE)


@pages.get("/teacher", include_in_schema=False)
def teacher_page(settings: Settings = Depends(get_settings)) -> Response:
    page = settings.static_dir / "teacher.html"
    if page.is_file():
        return FileResponse(page, headers={"cache-control": "no-cache"})
    return HTMLResponse(FALLBACK_TEACHER_PAGE)
