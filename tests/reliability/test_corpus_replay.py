"""Replay the committed corpus (make_corpus.py) against a real server; every case gets a clear, documented answer.

For each websocket frame: the reply is the expected ``error`` code, one of server/messages.py's
ERROR_CODES, with a message, and the socket stays open (a ping right after is answered). For each
REST request: the expected status with a string ``detail`` (POST /api/validate: ``ok: false`` naming
the field). Afterwards the server is healthy, only the replay's own run exists, and its log holds
no traceback: nothing in the corpus reached a code path that was not written for it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from make_corpus import CORPUS, GOOD_EXPERIMENT
from reliability_helpers import HANG_GUARD, ServerProcess, Session
from websockets.sync.client import ClientConnection, connect

from server.messages import ERROR_CODES


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / name).read_text().splitlines() if line.strip()]


WS_CASES = load("ws_frames.jsonl")
REST_CASES = load("rest_requests.jsonl")
_ping_ids = itertools.count(1)


class Socket:
    """One websocket of the replay's session; reads the replies meant for this client (no ``seq``)."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    def send(self, text: str, binary: bool = False) -> None:
        self.conn.send(text.encode() if binary else text)

    def reply(self) -> dict[str, Any]:
        """The next message that is not part of a run's stream (errors, pong: they carry no seq)."""
        while True:
            message = json.loads(self.conn.recv(timeout=HANG_GUARD))
            if "seq" not in message:
                return message

    def ping(self) -> None:
        """Assert the socket is open and nothing else is pending: the next reply is this ping's pong."""
        request_id = f"ping-{next(_ping_ids)}"
        self.send(json.dumps({"cmd": "ping", "id": request_id}))
        answer = self.reply()
        assert (answer["type"], answer.get("request_id")) == ("pong", request_id), f"after the case: {answer}"


@pytest.fixture(scope="module")
def socket_with_run(server: ServerProcess, session: Session) -> Iterator[tuple[Socket, str]]:
    """The session's websocket, and the id of a run it keeps training slowly (the run commands' target)."""
    with connect(f"{server.ws}?session={session.token}", max_size=32 * 1024**2, open_timeout=HANG_GUARD) as conn:
        socket = Socket(conn)
        experiment = {**GOOD_EXPERIMENT, "train": {**GOOD_EXPERIMENT["train"], "max_steps": None, "epochs": None}}
        socket.send(json.dumps({"cmd": "start", "id": "run", "experiment": experiment}))
        run_id = None
        while True:
            message = json.loads(conn.recv(timeout=HANG_GUARD))
            assert message["type"] != "error", message
            run_id = run_id or message.get("run_id")
            if message["type"] == "status" and message["state"] == "running":
                break
        # Slow, so the replay does not compete with it for the cores; it stays running until the end.
        socket.send(json.dumps({"cmd": "speed", "run_id": run_id, "steps_per_s": 5}))
        socket.ping()
        yield socket, run_id
        socket.send(json.dumps({"cmd": "stop", "run_id": run_id}))


@pytest.mark.parametrize("case", WS_CASES, ids=[case["name"] for case in WS_CASES])
def test_websocket_frame(case: dict[str, Any], socket_with_run: tuple[Socket, str]):
    socket, run_id = socket_with_run
    socket.send(case["frame"].replace("$RUN", run_id) + " " * case.get("pad", 0), binary=case.get("binary", False))
    answer = socket.reply()
    if case["expect"] == "pong":
        assert answer["type"] == "pong", answer
    else:
        assert answer["type"] == "error", answer
        assert answer["code"] == case["expect"], answer
        assert answer["code"] in ERROR_CODES  # documented in PROTOCOL.md's table, which is generated from it
        assert isinstance(answer["message"], str) and len(answer["message"]) > 10, answer
        assert "Traceback" not in answer["message"]
    socket.ping()  # still open, and that was the only reply


@pytest.mark.parametrize("case", REST_CASES, ids=[case["name"] for case in REST_CASES])
def test_rest_request(case: dict[str, Any], session: Session):
    kwargs: dict[str, Any] = {}
    if "json" in case:
        kwargs["json"] = case["json"]
    elif "body" in case:
        kwargs["content"] = case["body"].encode()
        kwargs["headers"] = {"content-type": case.get("content_type", "application/json")}
    elif "upload" in case:
        kwargs["files"] = {"file": (case["upload"], (CORPUS / "uploads" / case["upload"]).read_bytes())}
    response = session.http.request(case["method"], case["path"], **kwargs)
    assert response.status_code == case["expect"], response.text[:500]
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["detail"], str) and body["detail"], body
        assert case.get("detail", "") in body["detail"], body["detail"]
    elif case["path"] == "/api/validate":
        assert body["ok"] is False and body["errors"], body
        path = body["errors"][0]["path"] or ""
        assert path.startswith(case.get("detail", "")), body["errors"][0]


def test_afterwards_the_server_is_healthy_nothing_else_started_and_nothing_was_logged_as_a_crash(
        server: ServerProcess, session: Session, socket_with_run: tuple[Socket, str]):
    socket, run_id = socket_with_run
    socket.ping()
    assert session.http.get("/api/health").json()["status"] == "ok"
    runs = session.http.get("/api/runs").json()
    assert [run["id"] for run in runs] == [run_id], "a corpus case started a run"
    assert session.http.get("/api/uploads").json() == [], "a corpus upload was stored"
    log = server.log()
    assert "Traceback" not in log and "command_failed" not in log, log[-5000:]


def test_the_committed_corpus_is_what_make_corpus_writes():
    """The corpus is reviewed as committed; it must be regenerated when make_corpus.py changes."""
    from make_corpus import corpus_files

    expected = corpus_files()
    committed = {p.relative_to(CORPUS).as_posix(): p.read_bytes() for p in Path(CORPUS).rglob("*") if p.is_file()}
    assert committed.keys() == expected.keys(), "run: .venv/bin/python tests/reliability/make_corpus.py"
    stale = [name for name, content in expected.items() if committed[name] != content]
    assert not stale, f"stale corpus files {stale}: run .venv/bin/python tests/reliability/make_corpus.py"
