"""Persistence across a real restart: the server runs as its own process, is killed mid-run, and comes back.

Finished runs keep their outcome, metric history and weights; the run that was
training when the process died is marked interrupted. A graceful stop (SIGTERM)
records its active run as interrupted too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from api_helpers import WsClient, free_port, is_final, is_type, issue_session, tiny_experiment
from safetensors.torch import load_file

from server.sessions import SESSION_COOKIE
from server.store import Store

REPO = Path(__file__).resolve().parents[2]
START_GUARD = 180.0  # seconds: importing torch on a busy CI machine can take a while; a hang guard only


@contextmanager
def server_process(data_dir: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``dlplay``'s own entry point (``server.app.serve``) in a child process on a free port."""
    port = free_port()
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir), "DLPLAY_STATIC_DIR": str(data_dir / "no-static")}
    process = subprocess.Popen(
        [sys.executable, "-c", f"from server.app import serve; serve('127.0.0.1', {port}, False)"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_GUARD
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up")
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        process.stderr.close()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (the fork server and the runs' processes), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """The ones still running (a zombie, dead but not yet reaped, counts as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def runs_by_id(url: str, session: str) -> dict[str, dict]:
    with httpx.Client(base_url=url, cookies={SESSION_COOKIE: session}, timeout=60) as http:
        return {run["id"]: http.get(f"/api/runs/{run['id']}").json() for run in http.get("/api/runs").json()}


def test_runs_survive_a_crash_and_the_active_one_is_interrupted(tmp_path):
    data_dir = tmp_path / "data"
    with server_process(data_dir) as (process, url):
        session = issue_session(url)  # signed with the data folder's secret: still valid after the restart
        with WsClient(url.replace("http", "ws") + "/ws", session) as ws:
            done = ws.start(tiny_experiment(150, name="finishes"))
            ws.until(is_final(done))
            ws.until(is_type("status", done))
            done_metrics = [m for m in ws.of(done, "metrics")]
            active = ws.start(tiny_experiment(10_000_000, name="killed"))
            ws.until(lambda m: m.get("run_id") == active and m["type"] == "metrics" and m["step"] >= 30)
            # The run trains in its own process, forked from the server's fork server.
            below = descendants(process.pid)
            assert len(below) >= 2, "expected the fork server and the active run's process"
            process.kill()  # SIGKILL: no shutdown code runs at all
            process.wait(30)
        # Nothing is left behind: the fork server sees its parent gone and exits, and each run's process
        # asked the kernel to kill it when the fork server dies (server/isolation.py).
        deadline = time.monotonic() + 30.0  # a hang guard, not a speed claim
        while alive(below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(below), f"processes outlived a kill -9 of the server: {sorted(alive(below))}"

    with server_process(data_dir) as (process, url):
        runs = runs_by_id(url, session)
        assert set(runs) == {done, active}
        finished, killed = runs[done], runs[active]
        assert finished["status"] == "finished" and finished["final"]["steps"] == 150
        assert finished["summary"]["network"]["total_params"] == 82
        assert killed["status"] == "interrupted" and killed["stop_reason"] == "interrupted" and killed["message"]
        with httpx.Client(base_url=url, cookies={SESSION_COOKIE: session}, timeout=60) as http:
            points = http.get(f"/api/runs/{done}/metrics").json()["points"]
        assert [p["step"] for p in points] == [m["step"] for m in done_metrics]
        weights = load_file(str(data_dir / "weights" / f"{done}.safetensors"))
        assert tuple(weights["blocks.hidden.core.weight"].shape) == (16, 2)
        # A run from before the restart can be replayed from the store, and new runs train as usual.
        with WsClient(url.replace("http", "ws") + "/ws", session) as ws:
            ws.send(cmd="subscribe", run_id=done, after_seq=0)
            ws.until(is_final(done))
            status = ws.until(is_type("status", done))
            assert status["state"] == "finished"
            assert [m["step"] for m in ws.of(done, "metrics")] == [m["step"] for m in done_metrics]
            ws.send(cmd="pause", run_id=active)
            assert ws.until(is_type("error"))["code"] == "not_in_memory"
            fresh = ws.start(tiny_experiment(40, name="after restart"))
            assert ws.until(is_final(fresh))["stop_reason"] == "finished"
            long = ws.start(tiny_experiment(10_000_000, name="stopped gracefully"))
            ws.until(is_type("metrics", long))
        process.send_signal(signal.SIGTERM)  # a graceful stop records the active run as interrupted
        # uvicorn shuts down cleanly, then re-raises the signal it caught: -SIGTERM is a clean exit here.
        assert process.wait(60) in (0, -signal.SIGTERM)
    store = Store(data_dir)
    assert store.get_run(long).status == "interrupted"
    assert store.get_run(fresh).status == "finished"
    store.close()
