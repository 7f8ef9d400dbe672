"""A real dlplay server for the reliability suite: uvicorn in its own process, its log kept for inspection.

The corpus replay talks to it over HTTP and the websocket exactly as a hostile client would, and
reads the log afterwards: nothing a client sends may make the server log a traceback. Timeouts
here are hang guards only; no test asserts how long anything takes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from make_corpus import MAX_MESSAGE_BYTES
from reliability_helpers import HANG_GUARD, SERVER_START_S, ServerProcess, Session

ROOT = Path(__file__).resolve().parents[2]
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``uvicorn server.app:create_app`` on a free port, with the corpus's small max_message_bytes."""
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("reliability-data")
    log_path = data_dir / "server.log"
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir), "DLPLAY_STATIC_DIR": str(data_dir / "no-static"),
           "DLPLAY_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).json().get("status") == "ok":
                    break
            except (httpx.HTTPError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /api/health in {SERVER_START_S:g} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield ServerProcess(url=url, ws=f"ws://127.0.0.1:{port}/ws", log_path=log_path, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> Iterator[Session]:
    """One server-issued session: an HTTP client with its cookie, speaking as the app's own page (Origin)."""
    with httpx.Client(base_url=server.url, headers={"origin": server.url}, timeout=HANG_GUARD) as http:
        response = http.post("/api/session")
        assert response.status_code == 201, response.text
        yield Session(http=http, token=response.json()["session"])
