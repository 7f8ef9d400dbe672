"""Helpers for the server tests: a tiny experiment, settings on a temporary data dir, a stand-in
RunSession, a real uvicorn server in a background thread, and a small websocket client.

The websocket tests drive the real thing: uvicorn, the real RunSession and the
``websockets`` client. Timeouts in here are hang guards only; no test asserts
how long anything takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import httpx
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from server.app import create_app
from server.channel import Outbox
from server.config import Settings

HANG_GUARD = 60.0  # seconds: generous; only there so a broken server fails the test instead of hanging it
# Where TestClient pretends the app is: a loopback address the server trusts (server/security.py), as the page would see it.
TEST_ORIGIN = "http://127.0.0.1:8000"


def tiny_experiment(steps: int = 200, *, name: str = "tiny", lr: float = 0.03, probes: bool = True,
                    hidden: int = 16, **train: Any) -> dict[str, Any]:
    """A 2D MLP on a small spiral: trains in well under a second on a CPU."""
    return {
        "name": name,
        "data": {"name": "spiral", "n_samples": 200, "seed": 1},
        "network": {"layers": [
            {"kind": "linear", "name": "hidden", "out_features": hidden, "activation": "tanh"},
            {"kind": "linear", "name": "out", "out_features": 2},
        ]},
        "train": {"optimizer": {"kind": "adam", "lr": lr}, "batch_size": 32, "max_steps": steps, "log_every": 10,
                  **train},
        "probes": {"enabled": probes},
    }


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, static_dir=data_dir / "no-static", **overrides)


# ---------------------------------------------------------------------------
# A stand-in for RunSession (scheduler tests that must not depend on training speed)
# ---------------------------------------------------------------------------


class FakeSession:
    """Follows RunSession's contract with counters instead of training.

    ``experiment.name`` selects behaviour: "crash" raises RuntimeError at step 20,
    "bad" raises ValueError in the constructor. Every step emits a ``boundary``
    (image type) message; every ``log_every`` steps a ``metrics`` one. ``calls``
    (shared, class-level) records the order of ``advance`` calls by run id.
    """

    calls: list[str] = []
    step_delay = 0.0  # seconds per step, to make slices hold several steps

    def __init__(self, experiment: Any, *, run_id: str, device: str, limits: Any, uploads_dir: Path,
                 max_metrics_hz: float | None = None) -> None:
        if experiment.name == "bad":
            raise ValueError("layer 'x': bad on purpose. Fix: do not")
        self.experiment = experiment
        self.run_id = run_id
        self.total = experiment.train.max_steps or 1000
        self.log_every = experiment.train.log_every
        self.final: dict[str, Any] | None = None
        self.closed = False
        self.lr = experiment.train.optimizer.lr
        self.trainer = SimpleNamespace(model=torch.nn.Linear(2, 2), step_count=0, epoch=0.0)
        self.views: dict[str, dict[str, Any]] | None = None  # what set_views was last given
        self.steps_per_s: float | None = None
        self._credit_at = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.final is not None

    def start(self, frames: bool = True) -> list[dict[str, Any]]:
        return [{"type": "summary", "experiment_name": self.experiment.name}, {"type": "status", "state": "running"}]

    def _step(self) -> list[dict[str, Any]]:
        if self.experiment.name == "crash" and self.trainer.step_count == 20:
            raise RuntimeError("boom")
        if self.step_delay:
            time.sleep(self.step_delay)
        self.trainer.step_count += 1
        k = self.trainer.step_count
        out = [{"type": "boundary", "step": k}]
        if k % self.log_every == 0:
            out.append({"type": "metrics", "step": k, "train_loss": 1.0 / k, "val_loss": None, "lr": self.lr})
        if k >= self.total:
            out += self._finish("finished")
        return out

    def _finish(self, reason: str) -> list[dict[str, Any]]:
        self.final = {"type": "final", "steps": self.trainer.step_count, "stop_reason": reason, "message": reason}
        return [self.final, {"type": "status", "state": "finished"}]

    def advance(self, *, max_steps: int, max_seconds: float, until_frame: bool = False,
                cpu_time: bool = False) -> list[dict[str, Any]]:
        FakeSession.calls.append(self.run_id)
        if self.steps_per_s is not None:
            max_steps = min(max_steps, 1)
            self._credit_at = time.perf_counter()
        out: list[dict[str, Any]] = []
        deadline = time.perf_counter() + max_seconds
        for _ in range(max_steps):
            if self.done:
                break
            out += self._step()
            if time.perf_counter() >= deadline:
                break
        return out

    def step_once(self) -> list[dict[str, Any]]:
        return self._step() + self.refresh()

    def set_views(self, views: dict[str, dict[str, Any]] | None) -> None:
        self.views = views

    def refresh(self) -> list[dict[str, Any]]:
        """A frame of each watched view: here a ``boundary`` when it is watched."""
        return [{"type": "boundary", "step": self.trainer.step_count}] if "boundary" in (self.views or {}) else []

    def set_speed(self, steps_per_s: float | None) -> list[dict[str, Any]]:
        if steps_per_s is not None and steps_per_s <= 0:
            raise ValueError("steps_per_s must be positive")
        self.steps_per_s = steps_per_s
        self._credit_at = time.perf_counter()
        return [{"type": "hyperparams", "values": {"steps_per_s": steps_per_s}}]

    def next_step_in(self) -> float:
        if self.steps_per_s is None:
            return 0.0
        return max(0.0, self._credit_at + 1.0 / self.steps_per_s - time.perf_counter())

    def stop(self) -> list[dict[str, Any]]:
        return [] if self.done else self._finish("stopped")

    def set_hyperparams(self, **values: Any) -> list[dict[str, Any]]:
        if values.get("lr", 1) <= 0:
            raise ValueError("lr must be positive")
        self.lr = values.get("lr", self.lr)
        return [{"type": "hyperparams", "values": values}]

    def probe(self, kind: str, **args: Any) -> list[dict[str, Any]]:
        if kind != "saliency":
            raise ValueError(f"unknown probe {kind!r}")
        return [{"type": "saliency", "step": self.trainer.step_count, **args}]

    def predict(self, x: Any) -> list[dict[str, Any]]:
        return [{"type": "prediction", "probs": [0.5, 0.5], "input": x}]

    def close(self) -> None:
        self.closed = True
        self.trainer = None


# ---------------------------------------------------------------------------
# A real server
# ---------------------------------------------------------------------------


def page_client(app: FastAPI) -> TestClient:
    """A TestClient that talks like the app's own page: Host 127.0.0.1 and a same-origin ``Origin``.

    (TestClient's default host, ``testserver``, is not a host the server answers to.)
    """
    return TestClient(app, base_url=TEST_ORIGIN, headers={"origin": TEST_ORIGIN})


def issue_session(base_url: str) -> str:
    """A session token from ``POST /api/session``, for ``/ws?session=`` (a client cannot choose its own)."""
    response = httpx.post(f"{base_url}/api/session", headers={"origin": base_url}, timeout=HANG_GUARD)
    assert response.status_code == 201, response.text
    return response.json()["session"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(settings: Settings, **app_kwargs: Any) -> Iterator[SimpleNamespace]:
    """uvicorn serving ``create_app(settings)`` on 127.0.0.1 in a background thread.

    The namespace's ``session(name)`` is a server-issued session token per name (tests say "alice", "bob").
    """
    port = free_port()
    app = create_app(settings, **app_kwargs)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=16 * 1024**2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + HANG_GUARD
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    tokens: dict[str, str] = {}

    def session(name: str) -> str:
        """The session token this test calls ``name`` (issued by the server the first time it is asked for)."""
        if name not in tokens:
            tokens[name] = issue_session(url)
        return tokens[name]

    try:
        yield SimpleNamespace(app=app, port=port, url=url, ws=f"ws://127.0.0.1:{port}/ws", session=session)
    finally:
        server.should_exit = True
        thread.join(HANG_GUARD)


class WsClient:
    """A synchronous websocket client that keeps every message it received, per run."""

    _requests = 0

    def __init__(self, url: str, session: str | None = None) -> None:
        """``session``: a server-issued token (``issue_session`` or the server namespace's ``session(name)``)."""
        self.url = url if session is None else f"{url}?session={session}"
        self.conn = connect(self.url, max_size=32 * 1024**2, open_timeout=HANG_GUARD).__enter__()
        self.received: list[dict[str, Any]] = []

    def send(self, **command: Any) -> None:
        self.conn.send(json.dumps(command))

    def send_raw(self, text: str | bytes) -> None:
        self.conn.send(text)

    def recv(self, timeout: float = HANG_GUARD) -> dict[str, Any]:
        message = json.loads(self.conn.recv(timeout=timeout))
        self.received.append(message)
        return message

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = HANG_GUARD) -> dict[str, Any]:
        """Receive until a message matches ``predicate``; returns it (everything is kept in ``received``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message arrived (hang guard)")
            message = self.recv(timeout=remaining)
            if predicate(message):
                return message

    def start(self, experiment: dict[str, Any], **extra: Any) -> str:
        """Start a run; returns its id (from its first message, which echoes the command's id)."""
        WsClient._requests += 1
        request_id = f"start-{WsClient._requests}"
        self.send(cmd="start", experiment=experiment, id=request_id, **extra)
        first = self.until(lambda m: m.get("request_id") == request_id)
        if first["type"] == "error":
            raise AssertionError(f"start failed: {first}")
        return first["run_id"]

    def of(self, run_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("run_id") == run_id and (type_ is None or m["type"] == type_)]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Reading a scheduler outbox (test_jobs.py, test_isolation.py)
# ---------------------------------------------------------------------------


async def until(box: Outbox, predicate: Callable[[dict], bool], seen: list | None = None) -> dict:
    """Read frames from ``box`` until one matches; everything read is appended to ``seen``."""
    seen = [] if seen is None else seen

    async def read() -> dict:
        while True:
            message = json.loads((await box.get()).text)
            seen.append(message)
            if predicate(message):
                return message

    return await asyncio.wait_for(read(), HANG_GUARD)


def of_type(type_: str, **fields: Any) -> Callable[[dict], bool]:
    return lambda m: m["type"] == type_ and all(m.get(k) == v for k, v in fields.items())


def is_final(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("run_id") == run_id and m["type"] == "final"


def is_type(type_: str, run_id: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == type_ and (run_id is None or m.get("run_id") == run_id)
