"""Issue 9: the server only talks to its own pages.

Foreign ``Host`` and ``Origin`` headers are refused (HTTP and websocket handshake, 403) and nothing
starts; sessions exist only if the server issued them; each address is limited in the sessions it is
issued, the runs it has training or waiting (whatever its sessions: repro 3) and its uploads; beyond
loopback the server needs an access token. A real uvicorn server where the transport matters (the
websocket handshake, the banner), TestClient for the HTTP surface. Timeouts are hang guards only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_helpers import (HANG_GUARD, TEST_ORIGIN, FakeSession, WsClient, free_port, is_type, issue_session,
                         make_settings, page_client, running_server, tiny_experiment)
from websockets.sync.client import connect

from server import cli
from server.app import create_app, serve
from server.security import SECRET_FILE, exposure_problem, same_origin, share_urls, split_host
from server.sessions import SESSION_COOKIE

REPO = Path(__file__).resolve().parents[2]
FOREVER = 10**12  # max_steps of repro 3: a run that would hold its slot until max_run_seconds


def handshake(port: int, *, host: str, origin: str | None = None, path: str = "/ws") -> tuple[int, str]:
    """A raw websocket upgrade request with exactly these headers; (HTTP status, body) of the answer."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        length = re.search(rb"content-length: (\d+)", head, re.I)
        while length and len(body) < int(length.group(1)):
            chunk = conn.recv(4096)
            if not chunk:
                break
            body += chunk
    return status, body.decode("utf-8", "replace")


def stored_runs(srv) -> int:
    """Runs in the store, whatever their session (read through a connection of our own)."""
    with contextlib.closing(sqlite3.connect(srv.app.state.store.path)) as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server with fake training (cheap to keep runs going) and small per-address limits."""
    settings = make_settings(tmp_path_factory.mktemp("security"), max_runs_per_ip=3, max_active_runs=1,
                             max_sessions_per_ip_per_hour=50)
    with running_server(settings, session_factory=FakeSession) as server:
        yield server


# ---------------------------------------------------------------------------
# Host and Origin
# ---------------------------------------------------------------------------


def test_a_foreign_host_or_origin_is_refused_before_the_handshake_and_nothing_starts(srv):
    token = srv.session("host-origin")
    runs_before = stored_runs(srv)
    good_host = f"127.0.0.1:{srv.port}"
    for host, origin in [("evil.example", None), (f"evil.example:{srv.port}", f"http://evil.example:{srv.port}"),
                         (good_host, "http://evil.example"), (good_host, f"http://localhost:{srv.port}"),
                         (good_host, "null"), (good_host, f"http://127.0.0.1:{srv.port + 1}")]:
        status, body = handshake(srv.port, host=host, origin=origin, path=f"/ws?session={token}")
        assert status == 403, (host, origin, status)
    # through a real client too: the upgrade is refused, so not a single command can be sent
    with pytest.raises(Exception, match="403"):
        connect(f"{srv.ws}?session={token}", origin="http://evil.example", open_timeout=HANG_GUARD)
    assert srv.app.state.scheduler.counts() == {"active": 0, "queued": 0} and stored_runs(srv) == runs_before

    # the control: the same token from the server's own page (or a script, which sends no Origin) gets in
    with connect(f"{srv.ws}?session={token}", origin=f"http://127.0.0.1:{srv.port}", open_timeout=HANG_GUARD) as ws:
        ws.send(json.dumps({"cmd": "ping", "id": "p"}))
        assert json.loads(ws.recv(timeout=HANG_GUARD))["type"] == "pong"
    assert handshake(srv.port, host=f"localhost:{srv.port}", origin=f"http://localhost:{srv.port}",
                     path=f"/ws?session={token}")[0] == 101


def test_http_with_a_foreign_host_or_origin_is_refused(srv):
    evil = httpx.get(f"{srv.url}/api/health", headers={"host": "evil.example"}, timeout=HANG_GUARD)
    assert evil.status_code == 403 and "does not answer to the host name 'evil.example'" in evil.json()["detail"]
    assert httpx.get(f"{srv.url}/api/health", headers={"host": f"localhost:{srv.port}"}).status_code == 200
    cross = httpx.post(f"{srv.url}/api/validate", json=tiny_experiment(), timeout=HANG_GUARD,
                       headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site request refused" in cross.json()["detail"]
    # a state-changing request must say where it comes from; the message says how a script does that
    anonymous = httpx.post(f"{srv.url}/api/validate", json=tiny_experiment(), timeout=HANG_GUARD)
    assert anonymous.status_code == 403 and f"Origin: http://127.0.0.1:{srv.port}" in anonymous.json()["detail"]
    same = httpx.post(f"{srv.url}/api/validate", json=tiny_experiment(), headers={"origin": srv.url}, timeout=HANG_GUARD)
    assert same.status_code == 200 and same.json()["ok"]


def csv_upload(rows: int = 50) -> bytes:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(rows, 2))
    return b"x1,x2,label\n" + "".join(f"{a:.4f},{b:.4f},{int(a > b)}\n" for a, b in points).encode()


def test_a_cross_site_multipart_upload_is_refused_and_stores_nothing(tmp_path):
    settings = make_settings(tmp_path / "data")
    with page_client(create_app(settings)) as client:
        uploads = client.app.state.store.uploads_dir
        before = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
        files = {"file": ("points.csv", csv_upload(), "text/csv")}
        for headers in ({"origin": "http://evil.example"}, {"origin": "null"}):
            refused = client.post("/api/uploads", files=files, headers=headers)
            assert refused.status_code == 403 and "cross-site" in refused.json()["detail"]
        no_origin = httpx.Client(transport=client._transport, base_url=TEST_ORIGIN)  # a form without Origin
        assert no_origin.post("/api/uploads", files=files).status_code == 403
        after = sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []
        assert after == before
        accepted = client.post("/api/uploads", files=files)  # the page's own upload
        assert accepted.status_code == 200, accepted.text


def test_uploads_are_limited_per_address(tmp_path):
    settings = make_settings(tmp_path / "data", max_uploads_per_ip_per_hour=2)
    with page_client(create_app(settings)) as client:
        files = {"file": ("points.csv", csv_upload(), "text/csv")}
        assert [client.post("/api/uploads", files=files).status_code for _ in range(2)] == [200, 200]
        third = client.post("/api/uploads", files=files)
        assert third.status_code == 429 and "uploaded 2 files in the last hour" in third.json()["detail"]
        assert len(list(client.app.state.store.uploads_dir.glob("*"))) >= 2  # the first two were kept


def test_trusted_hosts_and_origins_parse_ports_and_ipv6():
    assert split_host("Example.ORG:8000") == ("example.org", 8000)
    assert split_host("[::1]:8000") == ("::1", 8000) and split_host("localhost.") == ("localhost", None)
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("http://dlplay.lan", "dlplay.lan:80") and same_origin("https://dlplay.lan", "dlplay.lan")
    assert not same_origin("http://dlplay.lan", "dlplay.lan:8000")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("null", "127.0.0.1:8000") and not same_origin("file://", "127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1.evil.example:8000", "127.0.0.1:8000")


def test_allowed_hosts_adds_names(tmp_path):
    settings = make_settings(tmp_path / "data", allowed_hosts="dlplay.school.lan, other.lan")
    with page_client(create_app(settings)) as client:
        named = {"host": "dlplay.school.lan:8000", "origin": "http://dlplay.school.lan:8000"}
        assert client.get("/api/health", headers=named).status_code == 200
        assert client.get("/api/health", headers={"host": "other.lan", "origin": "http://other.lan"}).status_code == 200
        refused = client.get("/api/health", headers={"host": "school.lan", "origin": "http://school.lan"})
        assert refused.status_code == 403 and "DLPLAY_ALLOWED_HOSTS" in refused.json()["detail"]


# ---------------------------------------------------------------------------
# Server-issued sessions
# ---------------------------------------------------------------------------


def test_an_unsigned_or_forged_session_is_refused(srv, tmp_path):
    real = srv.session("forgery-victim")
    with WsClient(srv.ws, real) as victim:  # the victim has a run a forger would like to see
        victim_run = victim.start(tiny_experiment(5, probes=False))
        victim.until(is_type("final", victim_run))
    runs_before = stored_runs(srv)
    session_id = real.split(".")[0]
    with running_server(make_settings(tmp_path / "other")) as other:  # another server: another secret
        foreign = other.session("someone")
    for forged in ["alice-session-0001", session_id, f"{session_id}.AAAAAAAAAAAAAAAAAAAAAA",
                   f"{session_id}.{foreign.split('.')[1]}", foreign, real + "x", real.upper()]:
        with connect(f"{srv.ws}?session={forged}", open_timeout=HANG_GUARD) as conn:
            error = json.loads(conn.recv(timeout=HANG_GUARD))
            assert error["type"] == "error" and error["code"] == "bad_session"
            assert "must be a session token this server issued" in error["message"] and "POST /api/session" in error["message"]
            with pytest.raises(Exception):  # the server closed the socket (1008): nothing more is read
                conn.recv(timeout=HANG_GUARD)
    # a forged cookie is no session: the server issues a real one instead of taking it
    with httpx.Client(base_url=srv.url, cookies={SESSION_COOKIE: session_id}, headers={"origin": srv.url}) as http:
        response = http.get("/api/runs")
        assert response.status_code == 200 and response.json() == []  # not the victim's run: a new session
        issued = response.cookies[SESSION_COOKIE]
        assert srv.app.state.sessions.verify(issued) not in (None, session_id)
    assert stored_runs(srv) == runs_before


def test_a_real_token_works_for_the_websocket_and_the_cookie(srv):
    token = srv.session("owner")
    with WsClient(srv.ws, token) as ws:
        run_id = ws.start(tiny_experiment(20))
        ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "final")
    with httpx.Client(base_url=srv.url, cookies={SESSION_COOKIE: token}) as http:
        assert [r["id"] for r in http.get("/api/runs").json()] == [run_id]
    with httpx.Client(base_url=srv.url, cookies={SESSION_COOKIE: srv.session("stranger")}) as http:
        assert http.get("/api/runs").json() == []


def test_session_minting_is_limited_per_address(tmp_path):
    settings = make_settings(tmp_path / "data", max_sessions_per_ip_per_hour=3)
    with running_server(settings, session_factory=FakeSession) as server:
        with httpx.Client(base_url=server.url, headers={"origin": server.url}, timeout=HANG_GUARD) as http:
            tokens = [http.post("/api/session") for _ in range(3)]
            assert [t.status_code for t in tokens] == [201, 201, 201]
            assert len({t.json()["session"] for t in tokens}) == 3
            refused = http.post("/api/session")
            assert refused.status_code == 429
            assert "has been given 3 sessions in the last hour" in refused.json()["detail"]
            assert http.get("/api/health").status_code == 200  # what needs no session still works
        # a websocket without a session cannot mint one either: it is told why, and nothing runs
        with connect(server.ws, open_timeout=HANG_GUARD) as conn:
            error = json.loads(conn.recv(timeout=HANG_GUARD))
            assert error["code"] == "too_many_sessions" and "3 sessions in the last hour" in error["message"]
        # sessions already issued keep working
        with WsClient(server.ws, tokens[0].json()["session"]) as ws:
            ws.send(cmd="ping", id="p")
            assert ws.until(lambda m: m.get("request_id") == "p")["type"] == "pong"


# ---------------------------------------------------------------------------
# Repro 3: runs per address, whatever the sessions
# ---------------------------------------------------------------------------


def test_minting_sessions_does_not_get_around_the_runs_limit_of_an_address(srv):
    """Issue 9 repro 3: sessions x runs of max_steps 1e12 filled every slot; now one address gets max_runs_per_ip."""
    limit = srv.app.state.settings.max_runs_per_ip
    scheduler = srv.app.state.scheduler
    clients = [WsClient(srv.ws, srv.session(f"minted-{i}")) for i in range(3)]
    started, refusals = [], []
    try:
        for client in clients:  # each session asks for more runs than the per-address limit
            for n in range(limit):
                request_id = f"{client.url[-8:]}-{n}"
                client.send(cmd="start", experiment=tiny_experiment(FOREVER, probes=False), id=request_id)
                first = client.until(lambda m, r=request_id: m.get("request_id") == r)
                (refusals if first["type"] == "error" else started).append((client, first))
        assert len(started) == limit
        counts = scheduler.counts()
        assert counts["active"] + counts["queued"] == limit
        assert len(refusals) == 3 * limit - limit
        for _, error in refusals:
            assert error["code"] == "too_many_runs" and "127.0.0.1" in error["message"]
            assert f"already has {limit} runs training or waiting" in error["message"] and "Fix:" in error["message"]
        # stopping one frees a place for this address again
        client, first = started[0]
        client.send(cmd="stop", run_id=first["run_id"])
        client.until(is_type("final", first["run_id"]))
        retry = clients[-1]
        run_id = retry.start(tiny_experiment(FOREVER, probes=False))
        assert scheduler.get(run_id) is not None
        started.append((retry, {"run_id": run_id}))
    finally:
        for client, first in started:
            client.send(cmd="stop", run_id=first["run_id"])
        for client, first in started:
            run = scheduler.get(first["run_id"])
            if run is not None and not run.ended:
                client.until(is_type("final", first["run_id"]))
        for client in clients:
            client.close()


def test_another_address_is_not_held_up_by_one_that_reached_its_limit(tmp_path):
    """The per-address count is the scheduler's (Scheduler.submit(client_ip=...)), across sessions."""
    from server.scheduler import Scheduler, SchedulerError
    from server.schemas import Experiment
    from server.store import Store

    settings = make_settings(tmp_path, max_runs_per_ip=2, max_active_runs=1)
    store = Store(settings.data_dir)
    scheduler = Scheduler(store, settings, session_factory=FakeSession)
    experiment = Experiment.model_validate(tiny_experiment(FOREVER, probes=False))
    try:
        scheduler.submit("s1", experiment, client_ip="10.0.0.5")
        scheduler.submit("s2", experiment, client_ip="10.0.0.5")
        with pytest.raises(SchedulerError, match=r"this computer \(10\.0\.0\.5\) already has 2 runs"):
            scheduler.submit("s3", experiment, client_ip="10.0.0.5")
        scheduler.submit("s4", experiment, client_ip="10.0.0.6")  # another student's laptop
        assert scheduler.counts()["active"] + scheduler.counts()["queued"] == 3
    finally:
        scheduler.shutdown()
        store.close()


# ---------------------------------------------------------------------------
# Beyond loopback: the access token
# ---------------------------------------------------------------------------

TOKEN = "correct-horse-battery"


@pytest.fixture
def gated(tmp_path):
    settings = make_settings(tmp_path / "data", host="0.0.0.0", access_token=TOKEN, max_access_attempts_per_ip_per_hour=3)
    with page_client(create_app(settings)) as client:
        yield client


def test_without_the_token_only_the_access_page_answers(gated):
    api = gated.get("/api/health")
    assert api.status_code == 401 and "needs its access token" in api.json()["detail"]
    page = gated.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/access?next=%2F"
    form = gated.get("/access")
    assert form.status_code == 200 and 'name="token"' in form.text and TOKEN not in form.text
    assert gated.post("/api/session").status_code == 401
    assert "dlplay_access" not in gated.cookies


def test_the_access_page_checks_the_token_and_sets_the_cookie(gated):
    wrong = gated.post("/access", data={"token": "guess", "next": "/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not the access token" in wrong.text and "dlplay_access" not in gated.cookies
    right = gated.post("/access", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/"  # never off to another site
    cookie = gated.cookies["dlplay_access"]
    assert TOKEN not in cookie  # an HMAC of the token, not the token
    assert gated.get("/api/health").status_code == 200
    assert gated.get("/").status_code == 200 and SESSION_COOKIE in gated.cookies  # the page, with its session


def test_a_shared_link_with_the_token_signs_in_and_drops_it_from_the_address(gated):
    link = gated.get(f"/?token={TOKEN}", follow_redirects=False)
    assert link.status_code == 303 and link.headers["location"] == "/" and "dlplay_access" in gated.cookies
    assert gated.get("/api/health").status_code == 200
    gated.cookies.clear()
    bearer = gated.get("/api/health", headers={"authorization": f"Bearer {TOKEN}"})  # scripts
    assert bearer.status_code == 200


def test_wrong_tokens_are_limited_per_address(gated):
    for _ in range(3):
        assert gated.post("/access", data={"token": "guess"}).status_code == 401
    blocked = gated.post("/access", data={"token": TOKEN}, follow_redirects=False)  # even the right one, for a while
    assert blocked.status_code == 429 and "Too many wrong tokens" in blocked.text
    assert gated.get("/api/health", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 429


def test_the_websocket_needs_the_token_too(tmp_path):
    settings = make_settings(tmp_path / "data", access_token=TOKEN)
    with running_server(settings, session_factory=FakeSession) as server:
        status, body = handshake(server.port, host=f"127.0.0.1:{server.port}")
        assert status in (401, 403) and server.app.state.scheduler.counts() == {"active": 0, "queued": 0}
        with httpx.Client(base_url=server.url, headers={"origin": server.url, "authorization": f"Bearer {TOKEN}"}) as http:
            token = http.post("/api/session").json()["session"]
        with WsClient(f"{server.ws}?token={TOKEN}&session={token}") as ws:
            ws.send(cmd="ping", id="p")
            assert ws.until(lambda m: m.get("request_id") == "p")["type"] == "pong"


def test_a_non_loopback_bind_without_a_token_refuses_to_start(capsys, monkeypatch):
    monkeypatch.delenv("DLPLAY_ACCESS_TOKEN", raising=False)
    assert cli.main(["--host", "0.0.0.0"]) == cli.EXIT_INVALID
    message = capsys.readouterr().err
    assert message.startswith("dlplay: refusing to listen on every network interface without an access token")
    assert re.search(r"Fix: dlplay --host 0\.0\.0\.0 --token \S{8,}", message)
    assert cli.main(["--host", "192.168.1.20", "--token", "short"]) == cli.EXIT_INVALID
    assert "at least 8 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="without an access token"):  # serve() itself refuses too
        serve("0.0.0.0", free_port())
    assert exposure_problem("127.0.0.1", None) is None and exposure_problem("localhost", None) is None
    assert exposure_problem("::1", None) is None and exposure_problem("0.0.0.0", TOKEN) is None


def test_the_banner_prints_every_address_with_the_token_and_the_link_works(tmp_path):
    """``serve`` on 0.0.0.0 in a child process: its printed URLs open the page with the token."""
    port = free_port()
    env = {**os.environ, "DLPLAY_DATA_DIR": str(tmp_path / "data"), "DLPLAY_STATIC_DIR": str(tmp_path / "no-static")}
    process = subprocess.Popen(
        [sys.executable, "-c", f"from server.app import serve; serve('0.0.0.0', {port}, False, token={TOKEN!r})"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        while not any("anyone with the access token" in line for line in lines):
            line = process.stdout.readline()
            assert line, f"the server exited: {lines}"
            lines.append(line)
        urls = re.findall(r"open (http://\S+)", "".join(lines))
        assert urls[0] == f"http://127.0.0.1:{port}/?token={TOKEN}"
        assert urls[1:] == [url for _, url in share_urls("0.0.0.0", port, TOKEN)][1:]
        assert all(url.endswith(f":{port}/?token={TOKEN}") for url in urls)
        assert (tmp_path / "data" / SECRET_FILE).stat().st_mode & 0o777 == 0o600
        for url in urls:  # each printed address answers: the link signs in and lands on the page
            deadline_tries = 0
            while True:
                try:
                    with httpx.Client(timeout=HANG_GUARD) as http:
                        page = http.get(url, follow_redirects=True)
                    break
                except httpx.TransportError:  # printed before uvicorn listens
                    deadline_tries += 1
                    assert deadline_tries < 600 and process.poll() is None
                    time.sleep(0.1)
            assert page.status_code == 200 and "dlplay" in page.text and str(page.url).endswith(f":{port}/")
    finally:
        process.terminate()
        process.wait(30)
