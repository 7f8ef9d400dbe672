"""Who may talk to the server: trusted hosts, same-origin requests, the access token, per-address limits.

The server only talks to its own pages (issue 9):

- **Host.** Every HTTP request and websocket handshake must name this server in its ``Host`` header:
  loopback (``localhost``, ``127.0.0.1``, ``[::1]``), the address it is bound to, this machine's own
  names and addresses, the address the connection actually arrived at, or ``DLPLAY_ALLOWED_HOSTS``.
  Anything else is refused with 403 before the app sees it: a page on ``evil.example`` whose name was
  re-pointed at 127.0.0.1 (DNS rebinding) cannot reach us.
- **Origin.** A browser names the page that made a request in ``Origin``. On every request that
  carries one it must be this server itself (scheme-default ports normalised); state-changing requests
  (POST/PUT/PATCH/DELETE) must carry one. A websocket handshake without ``Origin`` comes from a script,
  not a browser (browsers always send it), so it is allowed: scripts have no victim's cookies to ride.
- **Access token.** When the server listens beyond loopback it refuses to start without an access token
  (``dlplay --host 0.0.0.0 --token ...``). Every request then needs the ``dlplay_access`` cookie
  (set by the small ``/access`` page, or by opening any page with ``?token=...``) or an
  ``Authorization: Bearer <token>`` header.
- **A class.** While a class is open (``dlplay class``; server/classroom.py) its join code is the
  credential instead: without a member's session (issued by joining with the code) or the teacher's
  key (the ``dlplay_teacher`` cookie, ``Authorization: Bearer KEY`` or ``?key=``), only the join page,
  ``POST /api/class/join``, the health check and static assets answer; pages redirect (303) to
  ``/join``, the API answers 401 ``not_in_class`` and websockets are closed with 4401. Kicked members
  are refused the same way. Members and the teacher are not held to the per-address limits on uploads
  and runs (a class shares one NAT address); their quotas are the class's.
- **Per-address limits.** Sessions issued per hour (server/sessions.py), runs training or waiting
  (``Scheduler.submit(client_ip=...)``), uploads per hour, and wrong tokens, join codes and teacher keys per hour.

Browser sessions themselves (signed cookies and ``?session=`` tokens) live in ``server/sessions.py``;
both modules sign with the secret from ``load_secret`` (``secret.key`` in the data folder, mode 0600).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import secrets
import socket
import struct
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from server.config import Settings

log = logging.getLogger("dlplay.security")

SECRET_FILE = "secret.key"
ACCESS_COOKIE = "dlplay_access"
ACCESS_MAX_AGE = 14 * 24 * 3600  # seconds: two weeks of lessons without typing the token again
ACCESS_PATH = "/access"  # the "enter the access token" page: the one page served without the token
MIN_TOKEN_LENGTH = 8  # characters: with 20 wrong tries an hour per address, 8 random characters hold for ages
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Requests that store a file the caller sent (counted by max_uploads_per_ip_per_hour).
UPLOAD_PATHS = ("/api/uploads", "/api/weights")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
HOUR = 3600.0  # seconds
TEACHER_PATH = "/teacher"  # the class dashboard; /teacher?key=KEY signs the teacher in (server/classroom.py)
JOIN_PATH = "/join"  # the class's join page: what anyone may open while a class is open
# What anyone may reach while a class is open, besides static assets: (method, path).
CLASS_PUBLIC = frozenset({("GET", JOIN_PATH), ("GET", "/join.html"), ("POST", "/api/class/join"),
                          ("GET", "/api/health")})
CLOSE_NOT_IN_CLASS = 4401  # websocket close code for a handshake without a class credential (the page stops retrying)


# ---------------------------------------------------------------------------
# The signing secret
# ---------------------------------------------------------------------------


def load_secret(data_dir: Path) -> bytes:
    """The server's signing key: ``data_dir/secret.key`` (32 random bytes, hex), made on first start.

    Created with mode 0600 (only this user can read it: whoever has it can forge sessions and access
    cookies). It survives restarts, so cookies and ``?session=`` tokens stay valid; deleting it logs
    everyone out.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("%s was readable by other users; made it private (0600)", path)
        path.chmod(0o600)
    text = path.read_text(encoding="ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise RuntimeError(f"{path} is not a dlplay secret (64 hex digits). Fix: delete it; a new one is made at start")
    return secret


def sign(secret: bytes, purpose: str, value: str) -> str:
    """A 128-bit HMAC-SHA256 of ``value`` for ``purpose`` (so a session token is never an access cookie), base64url."""
    mac = hmac.new(secret, f"{purpose}\n{value}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings (a timing difference would leak the secret character by character)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# ---------------------------------------------------------------------------
# Per-address limits
# ---------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most ``limit`` events per key in any ``window`` seconds (keys are client addresses).

    Thread-safe: routes running in the thread pool and the event loop share one. Memory stays
    bounded: keys whose events have all expired are dropped, and beyond ``max_keys`` the key
    seen longest ago goes first.
    """

    def __init__(self, limit: int, window: float = HOUR, *, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = collections.deque()
        self._events.move_to_end(key)
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def try_acquire(self, key: str) -> bool:
        """Record one event for ``key`` if it is under its limit; False (nothing recorded) if not."""
        now = time.monotonic()
        with self._lock:
            events = self._recent(key, now)
            if len(events) >= self.limit:
                return False
            events.append(now)
            self._forget_old(now)
            return True

    def record(self, key: str) -> None:
        """Record an event even past the limit (a failed attempt still counts)."""
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)
            self._forget_old(now)

    def exhausted(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return len(self._recent(key, now)) >= self.limit

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may act again (0 if it may now)."""
        now = time.monotonic()
        with self._lock:
            events = self._recent(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, int(events[len(events) - self.limit] + self.window - now) + 1)

    def _forget_old(self, now: float) -> None:
        if len(self._events) <= self.max_keys:
            return
        for key in [k for k, events in self._events.items() if not events or events[-1] <= now - self.window]:
            del self._events[key]
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)


def client_ip(scope: Scope) -> str:
    """The connecting address (uvicorn's peer; no proxy headers are trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# ---------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------


def split_host(value: str) -> tuple[str, int | None]:
    """``"Example.org:8000"`` -> ``("example.org", 8000)``; ``"[::1]:8000"`` -> ``("::1", 8000)``; no port -> None."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[1:end], value[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:  # a name, an IPv4 address, or a bare IPv6 address
        host, port_text = value, ""
    host = host.rstrip(".")  # "localhost." is "localhost"
    port = int(port_text) if port_text.isdigit() else None
    return host, port


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1``: only this machine can connect."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (the ones a class can reach), best effort, sorted.

    Three ways, since none sees everything everywhere: each interface's address (Linux ioctl),
    what the host name resolves to, and the source address of the default route (a UDP "connect"
    sends nothing). Never raises.
    """
    found: set[str] = set()
    if sys.platform.startswith("linux"):
        try:
            import fcntl

            siocgifaddr = 0x8915
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                for _, name in socket.if_nameindex():
                    try:
                        request = struct.pack("256s", name.encode()[:15])
                        reply = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
                        found.add(socket.inet_ntoa(reply[20:24]))
                    except OSError:  # an interface without an IPv4 address
                        continue
        except (ImportError, OSError):
            pass
    try:
        found.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere; only picks a source address
            found.add(probe.getsockname()[0])
    except OSError:
        pass
    return sorted((a for a in found if not is_loopback(a) and a != "0.0.0.0"),
                  key=lambda a: tuple(int(part) for part in a.split(".")))


def machine_names() -> set[str]:
    """This machine's own names: its host name, its fully qualified name, and ``<name>.local`` (mDNS)."""
    names = set()
    try:
        name = socket.gethostname().lower()
        names |= {name, f"{name}.local", socket.getfqdn().lower()}
    except OSError:
        pass
    return {n.rstrip(".") for n in names if n}


class TrustedHosts:
    """The host names and addresses this server answers to (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        names = set(LOOPBACK_NAMES)
        bind = split_host(settings.host)[0] if settings.host.startswith("[") else settings.host.strip().lower()
        if bind not in WILDCARD_HOSTS:
            names.add(bind)
        if not is_loopback(bind):  # reachable from the network: by this machine's names and addresses too
            names |= machine_names()
            names |= set(local_addresses())
        names |= {split_host(h)[0] for h in settings.allowed_hosts.split(",") if h.strip()}
        self.names = frozenset(names)

    def allows(self, host_header: str | None, scope: Scope) -> bool:
        if not host_header:
            return False
        host, _ = split_host(host_header)
        if host in self.names:
            return True
        # An address literal the connection really arrived at (a browser that typed our IP) is never a
        # rebinding attack: that needs a *name* pointing at us.
        server = scope.get("server")
        return bool(server) and host == str(server[0]).lower()


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def same_origin(origin: str, host_header: str) -> bool:
    """Whether ``Origin`` names the server the ``Host`` header names (the default port of its scheme filled in).

    The scheme is not compared with the connection's: behind a TLS-terminating proxy the page is https while
    the server sees http, and no other server can serve a page from this host and port.
    """
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return False
    default = _default_port(parts.scheme)
    host, port = split_host(host_header)
    return parts.hostname.lower().rstrip(".") == host and (origin_port or default) == (port or default)


# ---------------------------------------------------------------------------
# The access token
# ---------------------------------------------------------------------------


def exposure_problem(host: str, token: str | None, *, class_open: bool = False) -> str | None:
    """Why the server must not start on ``host`` with ``token``, or None when it may.

    Beyond loopback anyone on the network can reach it, so it needs a token or an open class
    (``class_open``: its join code and teacher key gate everything); a short token would be guessed.
    """
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        return (f"the access token must be at least {MIN_TOKEN_LENGTH} characters (anyone who guesses it can "
                f"use this server). Fix: --token {secrets.token_urlsafe(9)}")
    if is_loopback(host) or token or class_open:
        return None
    where = "every network interface" if host.strip("[]") in WILDCARD_HOSTS else host
    return (f"refusing to listen on {where} without an access token: anyone on the network could train on "
            f"this machine and read your runs. Fix: dlplay --host {host} --token {secrets.token_urlsafe(9)} "
            "(or set DLPLAY_ACCESS_TOKEN), then share the token with your class; or start a class: dlplay class")


def share_urls(host: str, port: int, token: str | None, path: str = "/") -> list[tuple[str, str]]:
    """(where, URL) pairs to print at start: this computer, then each network address; with ``?token=``.

    ``path``: the page to open (``/join`` for a class's students).
    """
    query = f"?{urlencode({'token': token})}" if token else ""
    bind = host.strip("[]")
    if bind in WILDCARD_HOSTS:
        urls = [("this computer", f"http://127.0.0.1:{port}{path}{query}")]
        urls += [("on the network", f"http://{address}:{port}{path}{query}") for address in local_addresses()]
        return urls
    shown = f"[{bind}]" if ":" in bind else bind
    where = "this computer" if is_loopback(bind) else "on the network"
    return [(where, f"http://{shown}:{port}{path}{query}")]


ACCESS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dlplay: access token</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:28em;margin:5em auto;padding:0 1em}}
input{{font:inherit;padding:.4em;width:100%;box-sizing:border-box}}button{{font:inherit;margin-top:.8em;padding:.4em 1.2em}}
.error{{color:#b00020}}</style></head>
<body><h1>dlplay</h1>
<p>This playground is shared on the network. Enter the access token your teacher gave you
(it is printed where the server was started).</p>
{message}<form method="post" action="{action}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Enter</button></form>
</body></html>
"""


class AccessGate:
    """Checks the access token (when the server has one) and grants the access cookie.

    The cookie holds an HMAC of the token, not the token: it cannot be turned back into the token,
    and changing the token (restarting with another) locks out every browser that had the old one.
    """

    def __init__(self, secret: bytes, token: str | None, attempts_per_hour: int) -> None:
        self.token = token
        self._cookie_value = sign(secret, "access", token) if token else ""
        self.failures = SlidingWindowLimiter(attempts_per_hour)

    @property
    def required(self) -> bool:
        return self.token is not None

    def token_matches(self, given: str) -> bool:
        return self.token is not None and same_secret(given, self.token)

    def has_cookie(self, scope: Scope) -> bool:
        value = _cookie(scope, ACCESS_COOKIE)
        return value is not None and same_secret(value, self._cookie_value)

    def grant(self) -> str:
        """The ``Set-Cookie`` value for a browser that proved it may use the server (the token, later a join code)."""
        return f"{ACCESS_COOKIE}={self._cookie_value}; Path=/; Max-Age={ACCESS_MAX_AGE}; HttpOnly; SameSite=Lax"


def _cookie(scope: Scope, name: str) -> str | None:
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _classroom_of(scope: Scope):
    """The app's ClassroomService when a class gates the server (open, or ended while it ran), else None."""
    app = scope.get("app")
    classroom = getattr(getattr(app, "state", None), "classroom", None)
    return classroom if classroom is not None and classroom.gating is not None else None


def _public_in_class(scope: Scope, method: str) -> bool:
    """What anyone may reach while a class is open: the join page and API, the health check, static assets."""
    if scope["type"] != "http":
        return False
    path = scope["path"]
    if (method, path) in CLASS_PUBLIC or (method == "HEAD" and ("GET", path) in CLASS_PUBLIC):
        return True
    # A static asset: a file with a suffix (the bundle, CSS, icons), not a page (.html) and not the API or docs.
    name = path.rsplit("/", 1)[-1]
    return (method in ("GET", "HEAD") and "." in name and not name.endswith(".html")
            and not path.startswith(("/api/", "/ws", "/docs", "/redoc", "/openapi")))


def _safe_next(value: str) -> str:
    """Where to go after the access page: a path on this server only (never ``//evil.example``)."""
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


# ---------------------------------------------------------------------------
# The middleware
# ---------------------------------------------------------------------------


class SecurityMiddleware:
    """The outermost layer: refuses foreign hosts and origins, enforces the access token and upload limits.

    A refused websocket handshake gets an HTTP response instead of the upgrade (403 or 401, with a
    JSON ``detail`` where the server supports denial bodies), so no connection and nothing else starts.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings, gate: AccessGate) -> None:
        self.app = app
        self.hosts = TrustedHosts(settings)
        self.gate = gate
        self.uploads = SlidingWindowLimiter(settings.max_uploads_per_ip_per_hour)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.hosts.allows(host, scope):
            await _deny(scope, send, 403, f"this dlplay server does not answer to the host name {host!r}. Fix: open it "
                        "at the address it printed when it started, or add the name to DLPLAY_ALLOWED_HOSTS")
            return
        assert host is not None
        origin = _header(scope, b"origin")
        method = scope.get("method", "GET")
        if origin is not None and not same_origin(origin, host):
            await _deny(scope, send, 403, f"cross-site request refused: it came from a page on {origin!r}, not from "
                        "this server's own page")
            return
        if origin is None and scope["type"] == "http" and method in STATE_CHANGING:
            await _deny(scope, send, 403, f"a {method} must carry an Origin header naming this server (browsers send "
                        f"it by themselves; a script adds e.g. 'Origin: http://{host}')")
            return
        ip = client_ip(scope)
        classroom = _classroom_of(scope)
        in_class = False  # a member or the teacher: held to the class's quotas instead of the per-address limits
        if classroom is not None:
            verdict = await self._class_admitted(scope, receive, send, ip, method, classroom)
            if verdict is None:
                return
            in_class = verdict
        elif self.gate.required and not await self._admitted(scope, receive, send, ip, method):
            return
        if scope["type"] == "http" and method == "POST" and scope["path"] in UPLOAD_PATHS and not in_class:
            if not self.uploads.try_acquire(ip):
                limit = self.uploads.limit
                await _deny(scope, send, 429, f"this address has uploaded {limit} files in the last hour, the most "
                            f"one may. Fix: wait a little and try again (in {self.uploads.retry_after(ip)} s)")
                return
        await self.app(scope, receive, send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, ip: str, method: str) -> bool:
        """Whether the request may go on; if not, the answer (access page, redirect or refusal) has been sent."""
        gate = self.gate
        if scope["path"] == ACCESS_PATH and scope["type"] == "http":
            await self._access_page(scope, receive, send, ip, method)
            return False
        if gate.has_cookie(scope):
            return True
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        authorization = _header(scope, b"authorization") or ""
        given = query.get("token") or (authorization[7:].strip() if authorization.lower().startswith("bearer ") else "")
        if given:
            if gate.failures.exhausted(ip):
                await _deny(scope, send, 429, "too many wrong access tokens from this address. Fix: wait, then try "
                            f"again (in {gate.failures.retry_after(ip)} s)")
                return False
            if gate.token_matches(given):
                if "token" in query and scope["type"] == "http" and method == "GET":
                    # A shared link (?token=...): keep the cookie, drop the token from the address bar.
                    rest = {k: v for k, v in query.items() if k != "token"}
                    target = scope["path"] + (f"?{urlencode(rest)}" if rest else "")
                    await _redirect(send, target, set_cookie=gate.grant())
                    return False
                return True
            gate.failures.record(ip)
            await _deny(scope, send, 401, "wrong access token. Fix: use the token printed where dlplay was started")
            return False
        if scope["type"] == "http" and method == "GET" and "text/html" in (_header(scope, b"accept") or ""):
            await _redirect(send, f"{ACCESS_PATH}?{urlencode({'next': scope['path']})}")
            return False
        await _deny(scope, send, 401, f"this dlplay server needs its access token: open {ACCESS_PATH} in a browser, "
                    "or send 'Authorization: Bearer <token>'")
        return False

    async def _class_admitted(self, scope: Scope, receive: Receive, send: Send, ip: str, method: str,
                              classroom) -> bool | None:
        """While a class gates the server: True for a member or the teacher, False for what anyone may reach
        (and for holders of the access token), None when the request was answered (refused, or the teacher's
        sign-in link redirected)."""
        from server.classroom import TEACHER_COOKIE, bearer, session_of  # local: classroom imports this module

        path = scope["path"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if path == TEACHER_PATH and scope["type"] == "http" and method == "GET" and "key" in query:
            await self._teacher_link(scope, send, ip, query, classroom)
            return None
        cookie = _cookie(scope, TEACHER_COOKIE)
        if cookie is not None and classroom.teacher_cookie_matches(cookie):
            return True
        given = bearer(scope) or query.get("key", "")
        if given:
            if classroom.wrong_attempts.exhausted(ip):
                await _deny(scope, send, 429, "too many wrong keys or codes from this address. Fix: wait, then try "
                            f"again (in {classroom.wrong_attempts.retry_after(ip)} s)")
                return None
            if classroom.teacher_key_matches(given):
                return True
            if self.gate.required and self.gate.token_matches(given):
                return False
            classroom.wrong_attempts.record(ip)
            await _refuse_class(scope, receive, send, "wrong teacher key. Fix: use the teacher URL `dlplay class` "
                                "printed (/teacher?key=...)")
            return None
        session_id = session_of(scope, classroom.issuer)
        if classroom.member_of_session(session_id) is not None:
            return True
        if _public_in_class(scope, method) or (self.gate.required and self.gate.has_cookie(scope)):
            return False
        former = classroom.former_member(session_id)
        if former is not None and former.kicked:
            reason = "the teacher removed you from this class. Fix: ask your teacher"
        elif former is not None:
            reason = "this class has ended. Fix: ask your teacher for the next class's code"
        else:
            reason = (f"this dlplay server is running a class: join it first at {JOIN_PATH} with the class's code "
                      "(POST /api/class/join {code, name} from a script)")
        if path == TEACHER_PATH and scope["type"] == "http":
            await _page(send, 401, TEACHER_SIGN_IN_PAGE)
            return None
        await _refuse_class(scope, receive, send, reason)
        return None

    async def _teacher_link(self, scope: Scope, send: Send, ip: str, query: dict[str, str], classroom) -> None:
        """``/teacher?key=KEY``: the teacher cookie, then the dashboard without the key in the address bar."""
        if classroom.wrong_attempts.exhausted(ip):
            await _page(send, 429, TEACHER_SIGN_IN_PAGE.replace(
                "<p>", f"<p class=\"error\">Too many wrong keys from this computer. Try again in "
                f"{classroom.wrong_attempts.retry_after(ip)} s.</p><p>", 1))
            return
        if not classroom.teacher_key_matches(query["key"]):
            classroom.wrong_attempts.record(ip)
            await _page(send, 401, TEACHER_SIGN_IN_PAGE.replace(
                "<p>", '<p class="error">That is not this class\'s teacher key.</p><p>', 1))
            return
        rest = {k: v for k, v in query.items() if k != "key"}
        await _redirect(send, TEACHER_PATH + (f"?{urlencode(rest)}" if rest else ""),
                        set_cookie=classroom.teacher_cookie_header())

    async def _access_page(self, scope: Scope, receive: Receive, send: Send, ip: str, method: str) -> None:
        """GET: the token form. POST: check the token (constant time), set the cookie, go on to ``next``."""
        gate = self.gate
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if method == "GET":
            await _page(send, 200, ACCESS_PAGE.format(message="", action=ACCESS_PATH,
                                                      next=html.escape(_safe_next(query.get("next", "/")))))
            return
        if method != "POST":
            await _deny(scope, send, 405, f"{ACCESS_PATH} takes GET (the form) or POST (the token)")
            return
        body = await _read_body(receive, limit=4096)
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if body is not None else {}
        next_path = _safe_next(form.get("next", "/"))
        if gate.failures.exhausted(ip):
            message = f"Too many wrong tokens from this computer. Try again in {gate.failures.retry_after(ip)} s."
            await _page(send, 429, ACCESS_PAGE.format(message=f'<p class="error">{message}</p>', action=ACCESS_PATH,
                                                      next=html.escape(next_path)))
            return
        if gate.token_matches(form.get("token", "")):
            await _redirect(send, next_path, set_cookie=gate.grant())
            return
        gate.failures.record(ip)
        await _page(send, 401, ACCESS_PAGE.format(message='<p class="error">That is not the access token.</p>',
                                                  action=ACCESS_PATH, next=html.escape(next_path)))


TEACHER_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dlplay: teacher</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32em;margin:5em auto;padding:0 1em}.error{color:#b00020}</style>
</head><body><h1>dlplay class</h1>
<p>This is the teacher's dashboard. Open the teacher link that <code>dlplay class</code> printed where it was
started (<code>/teacher?key=...</code>). Students join at <a href="/join">/join</a>.</p>
</body></html>
"""


async def _refuse_class(scope: Scope, receive: Receive, send: Send, reason: str) -> None:
    """Refuse a request without a class credential: a page goes to /join, the API gets 401 ``not_in_class``,
    a websocket is accepted only to be told why and closed with 4401 (a browser cannot read a refused handshake)."""
    if scope["type"] == "websocket":
        log.info("refused a websocket without a class credential from %s", client_ip(scope))
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "code": "not_in_class",
                                                                    "message": reason})})
        await send({"type": "websocket.close", "code": CLOSE_NOT_IN_CLASS, "reason": "not_in_class"})
        return
    method = scope.get("method", "GET")
    if method in ("GET", "HEAD") and "text/html" in (_header(scope, b"accept") or ""):
        await _redirect(send, JOIN_PATH)
        return
    body = json.dumps({"detail": reason, "code": "not_in_class"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (the access form is a few dozen)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _deny(scope: Scope, send: Send, status: int, detail: str) -> None:
    """Refuse an HTTP request (JSON ``{"detail"}``) or a websocket handshake (before accept: nothing starts)."""
    if scope["type"] == "websocket":
        # A close before accept: the server answers the upgrade with HTTP 403 and no socket opens. (A denial
        # body, websocket.http.response, would carry the detail, but uvicorn's default websocket protocol then
        # logs "returned without completing handshake" as an error for every refusal.) The log says why.
        log.warning("refused a websocket handshake from %s: %s", client_ip(scope), detail)
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _page(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, *, set_cookie: str | None = None) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    if set_cookie:
        headers.append((b"set-cookie", set_cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
