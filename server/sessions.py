"""Browser sessions: which runs belong to whom.

A session is a random 128-bit id in the ``dlplay_session`` cookie, set on the
first response that finds none (there are no accounts: the cookie is the key, so
it is unguessable and HttpOnly). The websocket takes the cookie too, or an
explicit ``?session=`` (for clients without cookies: scripts, tests, the bench).
"""

from __future__ import annotations

import re
import secrets
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "dlplay_session"
SESSION_MAX_AGE = 365 * 24 * 3600  # seconds: a course lasts a term; the runs stay listed that long
_VALID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def new_session_id() -> str:
    """128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


def valid_session_id(value: str | None) -> bool:
    """A usable id: 8 to 64 letters, digits, '-' or '_' (ours are 32 hex digits)."""
    return bool(value) and _VALID.fullmatch(value) is not None


def cookie_session(scope: Scope) -> str | None:
    """The session id in the request's cookie header, if any and valid."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is treated as no cookie
                continue
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None and valid_session_id(morsel.value):
                return morsel.value
    return None


def set_cookie_header(session_id: str) -> str:
    return f"{SESSION_COOKIE}={session_id}; Path=/; Max-Age={SESSION_MAX_AGE}; HttpOnly; SameSite=Lax"


class SessionMiddleware:
    """Puts the session id in ``request.state.session_id``; sets the cookie on the response when it was missing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session_id = cookie_session(scope)
        fresh = session_id is None
        if fresh:
            session_id = new_session_id()
        scope.setdefault("state", {})["session_id"] = session_id
        if not fresh:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", set_cookie_header(session_id))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
