"""End-to-end fixtures: a real dlplay server in a subprocess and a real headless Chromium.

The server runs ``server.app.serve`` on a free port with DLPLAY_DATA_DIR in a temporary
folder and is killed after the session. Every page records console errors, uncaught
exceptions and requests; a test fails if the page logged an error or asked any host
other than the local server (the page must work offline: no CDN, no web fonts).
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DLPLAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
SERVER_START_S = 90  # seconds to wait for /api/health (torch import on a cold machine is slow)
VIEWPORT = {"width": 1280, "height": 720}  # the classroom laptop the page must fit without scrolling
# CI sets this: a missing browser or bundle is then a failure, not a skip.
REQUIRE = os.environ.get("DLPLAY_REQUIRE_E2E") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (DLPLAY_REQUIRE_E2E=1: the browser tests must run)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[str]:
    """A dlplay server over ``data_dir`` in a subprocess on a free port; yields its base URL once it is healthy."""
    port = _free_port()
    log_path = data_dir / "server.log"
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from server.app import serve; serve('127.0.0.1', {port}, False)"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /api/health in {SERVER_START_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """Base URL of a running dlplay server (``http://127.0.0.1:PORT``)."""
    if not (ROOT / "static" / "index.html").is_file():
        _unavailable("static/index.html missing: run `npm run build` in frontend/")
    with serving(tmp_path_factory.mktemp("dlplay-data")) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (set DLPLAY_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageWatch:
    """What a page did that a test must not let pass: console errors, exceptions, foreign requests."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.allowed_errors: list[str] = []

    def allow(self, fragment: str) -> None:
        """Tolerate console errors containing ``fragment`` (a test that provokes a server error on purpose)."""
        self.allowed_errors.append(fragment)

    def problems(self) -> list[str]:
        errors = [e for e in self.errors if not any(a in e for a in self.allowed_errors)]
        return errors + [f"request to a foreign host: {u}" for u in self.foreign]


@pytest.fixture()
def page(browser, server, request):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    watch = PageWatch()

    def on_console(msg):
        if msg.type == "error":
            watch.errors.append(f"console error: {msg.text}")

    def on_request(req):
        url = urlparse(req.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.hostname not in LOCAL_HOSTS:
            watch.foreign.append(req.url)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: watch.errors.append(f"uncaught: {exc}"))
    pg.on("request", on_request)
    pg.watch = watch  # type: ignore[attr-defined]
    pg.base_url = server  # type: ignore[attr-defined]
    yield pg
    problems = watch.problems()
    _stop_live_runs(pg)
    context.close()
    if problems and not request.node.rep_call_failed:
        pytest.fail("the page misbehaved:\n" + "\n".join(problems[:20]))


def _stop_live_runs(pg) -> None:
    """Stop this page's runs that still train or wait: a run left paused by a failed test would keep a slot of
    the shared server (and count against 127.0.0.1's runs) and fail the next tests for a reason not theirs."""
    try:
        pg.evaluate("""async () => {
            const d = window.__dlplay; if (!d || !d.socket) return;
            const runs = await fetch('/api/runs').then(r => r.ok ? r.json() : []);
            for (const r of runs) if (['queued', 'starting', 'running', 'paused'].includes(r.status)) d.socket.send({ cmd: 'stop', run_id: r.id });
            await new Promise(res => setTimeout(res, 200)); }""")
    except Exception:  # a page that crashed or navigated away: nothing of ours to stop from here
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_failed = report.failed
    elif not hasattr(item, "rep_call_failed"):
        item.rep_call_failed = False
