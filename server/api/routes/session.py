"""POST /api/session: a session token for a client without a browser (a script, the bench, a test).

The websocket takes it as ``/ws?session=<token>``; the response also sets the ``dlplay_session``
cookie, so an HTTP client that keeps cookies is in the same session. A session exists only if the
server issued it, and each address gets at most ``max_sessions_per_ip_per_hour`` (server/sessions.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.api.openapi import errors
from server.sessions import issue_for_request

router = APIRouter(tags=["sessions"])


@router.post("/session", responses=errors(429), status_code=201,
             summary="A new session: {session: token} for /ws?session=<token> (also set as the cookie)")
def new_session(request: Request) -> dict[str, str]:
    return {"session": issue_for_request(request)}
