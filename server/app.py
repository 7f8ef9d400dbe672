"""The FastAPI application: REST under /api, the websocket at /ws, the page at /, docs at /docs.

``create_app(settings)`` builds an app; its lifespan opens the store (marking runs
a previous process left active as interrupted) and starts the scheduler, and on
shutdown stops it. ``serve`` runs it with uvicorn (the ``dlplay`` command).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
import webbrowser
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api import api_router
from server.api.deps import DatasetCache
from server.api.openapi import install as install_openapi
from server.api.routes import classroom as class_routes
from server.api.routes import export as export_routes
from server.api.routes import session as session_routes
from server.api.routes import searches as search_routes
from server.api.class_ws import router as class_ws_router
from server.api.ws import router as ws_router
from server.class_monitor import ClassMonitor
from server.classroom import ClassroomService
from server.config import Settings, get_settings, version
from server.datasets import UPLOAD_PREFIX
from server.scheduler import Scheduler, SessionFactory
from server.security import AccessGate, SecurityMiddleware, exposure_problem, load_secret, share_urls
from server.sessions import SessionIssuer, SessionMiddleware
from server.store import Store
from server.threads import use_threads
from server.uploads import UploadStore
from server.isolation import spare_children, start_fork_server
from server.warmup import warm_up

log = logging.getLogger("dlplay")

PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dlplay</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}</style></head>
<body><h1>dlplay is running</h1>
<p>The frontend bundle is missing: <code>static/index.html</code> was not found, so there is no page to show yet.
Build the frontend into <code>static/</code>, then reload.</p>
<p>The server works: see the API at <a href="/docs">/docs</a>, or <a href="/api/health">/api/health</a>.</p>
</body></html>
"""


SWITCH_INTERVAL_SECONDS = 0.001  # seconds a thread may hold the GIL while another waits (Python's default: 0.005)


def create_app(settings: Settings | None = None, *, session_factory: SessionFactory | None = None) -> FastAPI:
    """Build the app. ``settings`` default to the process's; ``session_factory`` replaces RunSession in tests."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_threads(settings.torch_threads)  # torch and NumPy's BLAS: cores - 1 (server/threads.py)
        # The training thread runs tight Python loops (the fused MLP path: ~50 NumPy calls a step) that hold the
        # GIL; the event loop waits up to one switch interval each time it needs it back, several times a send.
        # 1 ms instead of Python's 5 ms lets 20 boundary frames a second out on time.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        # Before the first request: the first run after boot then starts as fast as any (server/warmup.py). Runs
        # train in processes forked from a fork server that warms the engine up once (server/isolation.py).
        if settings.isolation == "ray":  # runs train on a Ray cluster (server/ray_backend.py): connect once, now
            from server.ray_backend import connect as connect_ray

            resources = await asyncio.to_thread(connect_ray, settings.ray_address, settings.ray_node_ip)
            log.info("runs train on the Ray cluster at %s (%g CPUs)", settings.ray_address, resources.get("CPU", 0))
            from server.ray_backend import HOSTS, HOST_READY_SECONDS

            try:  # each node's host warms the engine up once; the first students then do not wait for it
                hosts = await asyncio.to_thread(HOSTS.wait_ready, HOST_READY_SECONDS)
                log.info("%d Ray node host(s) ready, warm-up %s s", len(hosts),
                         ", ".join(f"{h['warm_up_seconds']:.1f}" for h in hosts))
            except Exception as exc:  # a slow or broken node: its runs' opens wait for it, or fail and say why
                log.warning("not every Ray node host came up in %.0f s: %s", HOST_READY_SECONDS, exc)
        if settings.isolation == "process" and session_factory is None:
            log.info("started the run fork server (engine warm) in %.2f s", await asyncio.to_thread(start_fork_server))
        else:
            log.info("warmed up the engine in %.2f s", await asyncio.to_thread(warm_up))
        store = Store(settings.data_dir, metric_cap=settings.metric_history_points)
        interrupted = store.mark_interrupted()
        if interrupted:
            log.info("%d run(s) left active by the previous server are marked interrupted", interrupted)
        # Bounded in bytes, one large load at a time (server/data_cache.py); uploads owned, bounded and swept.
        datasets = DatasetCache(settings.dataset_cache_budget, large_bytes=settings.dataset_large_bytes,
                                wait_seconds=settings.dataset_wait_seconds)
        uploads = UploadStore(store.uploads_dir, settings,
                              on_delete=lambda upload_id: datasets.forget(f"{UPLOAD_PREFIX}{upload_id}"))
        uploads.start()
        # Runs share the cached data only with the real RunSession; test fakes build their own.
        scheduler = Scheduler(store, settings, session_factory=session_factory,
                              datasets=datasets if session_factory is None else None)
        # Issue 10: the open class (a restart reopens it, members and all); it stops runs on a kick or the end.
        classroom = ClassroomService(store, app.state.sessions, settings)
        classroom.attach_scheduler(scheduler)
        app.state.classroom = classroom
        if settings.isolation == "process" and session_factory is None:
            # Run processes forked and warmed ahead of need: a class pressing Train at once starts at once.
            spare_children(settings.spare_processes(classroom.current is not None)).fill()
        # The teacher's live dashboard (/ws/class): follows every member's run (server/class_monitor.py).
        app.state.class_monitor = ClassMonitor(classroom, scheduler, store)
        app.state.class_monitor.start()
        app.state.store = store
        app.state.scheduler = scheduler
        app.state.datasets = datasets
        app.state.uploads = uploads
        try:
            yield
        finally:
            uploads.close()
            await app.state.class_monitor.close()
            await asyncio.to_thread(scheduler.shutdown)
            store.close()
            if settings.isolation == "ray":
                from server.ray_backend import disconnect as disconnect_ray

                await asyncio.to_thread(disconnect_ray)

    app = FastAPI(
        title="dlplay",
        version=version(),
        description="The deep-learning playground: build, train and watch small networks live. "
        "Training runs over the websocket at /ws; see ARCHITECTURE.md and server/PROTOCOL.md.",
        lifespan=lifespan,
        docs_url="/docs",
    )
    app.state.settings = settings
    # Issue 9: only server-issued (signed) sessions, and only this server's own hosts and pages. The last
    # middleware added runs first: Host, Origin and the access token are checked before a session is looked at.
    secret = load_secret(settings.data_dir)
    app.state.sessions = SessionIssuer(secret, settings.max_sessions_per_ip_per_hour)
    app.add_middleware(SessionMiddleware, issuer=app.state.sessions)
    app.add_middleware(SecurityMiddleware, settings=settings,
                       gate=AccessGate(secret, settings.access_token, settings.max_access_attempts_per_ip_per_hour))
    _add_error_handlers(app)
    app.include_router(api_router)
    app.include_router(export_routes.router, prefix="/api")  # issue 12: export runs, upload weights
    app.include_router(session_routes.router, prefix="/api")  # issue 9: POST /api/session for scripts
    app.include_router(search_routes.router, prefix="/api")  # issue 11: hyperparameter search (lesson 21)
    app.include_router(class_routes.router, prefix="/api")  # issue 10: the classroom (join, teacher controls)
    app.include_router(class_routes.pages)  # issue 10: /join and /teacher, before static/ takes every other path
    app.state.export_lock = threading.Lock()  # one export at a time (ONNX takes seconds of CPU)
    app.include_router(ws_router)
    app.include_router(class_ws_router)  # issue 10: /ws/class, the teacher's live dashboard
    _mount_page(app, settings)
    install_openapi(app)  # the error bodies and statuses the routes really send (server/api/openapi.py)
    return app


@functools.cache  # once per process, however many apps (tests build many)
def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a human-readable ``detail``."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for error in errors[:3]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return JSONResponse(
            status_code=422,
            content={"detail": "; ".join(parts) + more, "errors": _jsonable_errors(errors)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint or file: {request.url.path}"
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal server error ({type(exc).__name__}); see the server log"})


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for error in errors:
        item = {k: error.get(k) for k in ("type", "loc", "msg")}
        item["loc"] = [str(p) for p in item["loc"] or ()]
        out.append(item)
    return out


def _mount_page(app: FastAPI, settings: Settings) -> None:
    """Serve ``static/`` at / (index.html for /), or a placeholder page when the bundle is missing."""
    static = settings.static_dir
    if not (static / "index.html").is_file():

        @app.get("/", include_in_schema=False)
        def placeholder() -> HTMLResponse:
            return HTMLResponse(PLACEHOLDER_PAGE)

    if static.is_dir():
        app.mount("/", StaticFiles(directory=static, html=True), name="static")


def serve(host: str, port: int, open_browser: bool = False, token: str | None = None, *,
          class_open: bool = False, ray_address: str | None = None, open_url: str | None = None) -> None:
    """Run the server until interrupted (the ``dlplay`` command); prints the URLs to open.

    Beyond loopback it refuses to start without an access token (``token`` or DLPLAY_ACCESS_TOKEN)
    or an open class (``class_open``: ``dlplay class`` made one and printed its own URLs): raises
    SystemExit with the reason (server/security.py). ``ray_address``: the Ray cluster runs train on
    (``settings.ray_address``). ``open_url``: what ``open_browser`` opens (default: the first URL).
    """
    import uvicorn

    base = get_settings()
    settings = base.model_copy(update={"host": host, "port": port, "access_token": token or base.access_token,
                                       "ray_address": ray_address or base.ray_address,
                                       # --ray: runs train on that cluster (server/ray_backend.py)
                                       "isolation": "ray" if ray_address else base.isolation})
    problem = exposure_problem(host, settings.access_token, class_open=class_open)
    if problem:
        raise SystemExit(f"dlplay: {problem}")
    if settings.isolation == "ray":  # before the server starts: a missing Ray or cluster is one clear line
        from server.ray_backend import RayUnavailable, connect as connect_ray

        try:
            connect_ray(settings.ray_address, settings.ray_node_ip)
        except RayUnavailable as error:
            raise SystemExit(f"dlplay: {error}") from None
    app = create_app(settings)
    urls = share_urls(host, port, settings.access_token)
    print(f"dlplay {version()}: data in {settings.data_dir}; Ctrl-C stops", flush=True)
    if not class_open:  # a class's students open its join URL, printed by `dlplay class`
        for where, url in urls:
            print(f"  open {url}  ({where})", flush=True)
    if settings.access_token:
        print("  anyone with the access token can use this server: share it with your class only", flush=True)
    if open_browser:
        opener = threading.Timer(1.0, webbrowser.open, args=(open_url or urls[0][1],))  # once uvicorn is listening
        opener.daemon = True
        opener.start()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        # Commands are capped at max_message_bytes by the handler (with a clear error); only far
        # larger frames are cut off by the protocol layer.
        ws_max_size=max(16 * 1024**2, 4 * settings.max_message_bytes),
        timeout_graceful_shutdown=5,
    )
