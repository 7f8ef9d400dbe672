"""Browser sessions: which runs belong to whom. A session exists only if this server issued it.

A session id is 128 random bits (32 hex digits, the ``session_id`` of the store's runs). The server
hands it out as a *token*, ``<id>.<signature>``, where the signature is an HMAC of the id with the
server's secret (``secret.key`` in the data folder; server/security.py). There are no accounts: the
token is the key, so it is unguessable, and a client cannot choose or forge one (issue 9, repro 3:
client-chosen ``?session=`` ids let one laptop mint sessions to get around the per-session limits).

How a client gets one:

- a browser: the ``dlplay_session`` cookie (HttpOnly, SameSite=Lax), set when it loads the page, when
  a route that needs a session finds none, or on a websocket handshake without one;
- a script, the bench or a test: ``POST /api/session`` returns ``{"session": token}`` (and sets the
  cookie); the websocket then takes ``?session=<token>``;
- later, a classroom join code will be one more way to be issued one.

Each address may be issued ``max_sessions_per_ip_per_hour`` sessions. Requests that need no session
(the health check, the page's assets) never mint one, so polling does not use up the allowance.
An unsigned or forged ``?session=`` is refused with a clear error; an unsigned or forged cookie (say,
from before the secret was replaced) is treated as no cookie.
"""

from __future__ import annotations

import re
import secrets
from http.cookies import SimpleCookie

from fastapi import HTTPException, Request, WebSocket
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.security import SlidingWindowLimiter, client_ip, same_secret, sign

SESSION_COOKIE = "dlplay_session"
SESSION_MAX_AGE = 365 * 24 * 3600  # seconds: a course lasts a term; the runs stay listed that long
_TOKEN = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{22})")  # the id, then a 128-bit HMAC in base64url


class SessionLimitError(Exception):
    """This address was issued its maximum of sessions in the last hour."""


class ForgedSessionError(Exception):
    """A ``?session=`` that this server did not issue."""


def new_session_id() -> str:
    """128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


class SessionIssuer:
    """Issues signed session tokens, at most ``per_ip_per_hour`` to each address, and verifies them."""

    def __init__(self, secret: bytes, per_ip_per_hour: int) -> None:
        self._secret = secret
        self.issued = SlidingWindowLimiter(per_ip_per_hour)

    def token_for(self, session_id: str) -> str:
        return f"{session_id}.{sign(self._secret, 'session', session_id)}"

    def issue(self, ip: str) -> tuple[str, str]:
        """A new session for a client at ``ip``: (session id, token). Raises SessionLimitError past the limit."""
        if not self.issued.try_acquire(ip):
            raise SessionLimitError(
                f"this computer ({ip}) has been given {self.issued.limit} sessions in the last hour, the most one "
                "address may have (each session's runs are separate, so more would get around the limits on "
                "runs). Fix: keep the session you have (allow cookies; a script keeps its token), or try again in "
                f"{self.issued.retry_after(ip)} s")
        session_id = new_session_id()
        return session_id, self.token_for(session_id)

    def verify(self, token: str | None) -> str | None:
        """The session id in ``token`` if this server signed it, else None (checked in constant time)."""
        found = _TOKEN.fullmatch(token or "")
        if found is None:
            return None
        session_id, signature = found.groups()
        return session_id if same_secret(signature, sign(self._secret, "session", session_id)) else None

    def from_cookie(self, scope: Scope) -> str | None:
        """The session in the request's cookie, if it has one this server signed."""
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                jar = SimpleCookie()
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is treated as no cookie
                    continue
                morsel = jar.get(SESSION_COOKIE)
                if morsel is not None:
                    session_id = self.verify(morsel.value)
                    if session_id is not None:
                        return session_id
        return None


def set_cookie_header(token: str) -> str:
    return f"{SESSION_COOKIE}={token}; Path=/; Max-Age={SESSION_MAX_AGE}; HttpOnly; SameSite=Lax"


class SessionSlot:
    """One request's session: the cookie's, or one issued the first time something asks for it."""

    def __init__(self, issuer: SessionIssuer, ip: str, session_id: str | None) -> None:
        self.issuer = issuer
        self.ip = ip
        self.session_id = session_id
        self.issued_token: str | None = None  # set when this request minted the session: the response sets the cookie

    def get(self) -> str:
        """The session id, issuing one if the request had none (raises SessionLimitError)."""
        if self.session_id is None:
            self.session_id, self.issued_token = self.issuer.issue(self.ip)
        return self.session_id


def request_session(request: Request) -> str:
    """The caller's session id (the ``get_session_id`` dependency); 429 with the reason if none can be issued."""
    try:
        return request.scope["state"]["session"].get()
    except SessionLimitError as error:
        raise HTTPException(status_code=429, detail=str(error)) from None


def issue_for_request(request: Request) -> str:
    """A fresh session for ``POST /api/session`` (also set as the cookie); returns its token."""
    slot: SessionSlot = request.scope["state"]["session"]
    try:
        slot.session_id, slot.issued_token = slot.issuer.issue(slot.ip)
    except SessionLimitError as error:
        raise HTTPException(status_code=429, detail=str(error)) from None
    return slot.issued_token


def websocket_session(websocket: WebSocket) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The websocket's session and the handshake's extra headers (a cookie when one was issued).

    ``?session=<token>`` wins over the cookie; it must be a token this server issued
    (raises ForgedSessionError). Without either a session is issued (raises SessionLimitError).
    """
    issuer: SessionIssuer = websocket.app.state.sessions
    requested = websocket.query_params.get("session")
    if requested is not None:
        session_id = issuer.verify(requested)
        if session_id is None:
            raise ForgedSessionError(
                "?session= must be a session token this server issued (a client cannot choose its session). "
                "Fix: POST /api/session and pass its 'session' value, or leave ?session= out to use the cookie")
        return session_id, []
    session_id = issuer.from_cookie(websocket.scope)
    if session_id is not None:
        return session_id, []
    session_id, token = issuer.issue(client_ip(websocket.scope))
    return session_id, [(b"set-cookie", set_cookie_header(token).encode("latin-1"))]


def _is_page(scope: Scope) -> bool:
    """The page itself (not its assets or the API): where a browser's session starts."""
    path = scope["path"]
    return scope.get("method") == "GET" and (path == "/" or path.endswith(".html"))


class SessionMiddleware:
    """Puts a ``SessionSlot`` in ``scope["state"]["session"]``; sets the cookie when the request minted a session.

    Loading the page mints one at once (so the page's first API calls and its websocket share it);
    an API route mints one only when it asks (``request_session``).
    """

    def __init__(self, app: ASGIApp, *, issuer: SessionIssuer) -> None:
        self.app = app
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = SessionSlot(self.issuer, client_ip(scope), self.issuer.from_cookie(scope))
        scope.setdefault("state", {})["session"] = slot
        if slot.session_id is None and _is_page(scope):
            try:
                slot.get()
            except SessionLimitError:
                pass  # the page still loads; its websocket then explains why it gets no session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and slot.issued_token is not None:
                MutableHeaders(scope=message).append("set-cookie", set_cookie_header(slot.issued_token))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
