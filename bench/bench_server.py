"""A classroom on one server: N websocket clients train at once; is the device shared fairly and promptly?

    python bench/bench_server.py [--clients 20] [--seconds 20] [--preset models/spiral_mlp.json]

Starts a real server process (127.0.0.1, a free port, a temporary data dir), then:

1. baseline: ONE client trains the preset alone for --baseline-seconds;
2. class: --clients clients, each in its own session, send ``start`` at the same
   moment, train for --seconds each, then ``stop``.

Prints aggregate throughput (steps/s, examples/s) and its ratio to the lone
client's, fairness (the slowest client's steps / the fastest's), the time from
``start`` to the first ``metrics`` frame (p50/p95), and the server's RSS before
and after. Targets: fairness >= 0.8 and first-frame p95 < 1 s with 20 clients on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PRESET = ROOT / "models" / "spiral_mlp.json"
START_GUARD = 180.0  # seconds to wait for the server to answer /api/health (a hang guard)


@dataclass
class ClientResult:
    steps: int = 0  # steps the run had made when it stopped (its final message)
    first_metrics_s: float | None = None  # from sending start to the first metrics frame
    frames: int = 0
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc/<pid>/status (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def endless(experiment: dict) -> dict:
    """The preset, made to train until it is stopped."""
    experiment = json.loads(json.dumps(experiment))
    experiment.setdefault("train", {}).update({"epochs": None, "max_steps": 10**9})
    return experiment


def issue_session(ws_url: str) -> str:
    """A session token from the server (``POST /api/session``): sessions exist only if the server issued them."""
    base = ws_url.replace("ws://", "http://", 1).removesuffix("/ws")
    response = httpx.post(f"{base}/api/session", headers={"origin": base}, timeout=START_GUARD)
    if response.status_code != 201:
        raise SystemExit(f"the server gave no session: {response.text}")
    return response.json()["session"]


async def client(ws_url: str, session: str, name: str, experiment: dict, seconds: float,
                 go: asyncio.Event) -> ClientResult:
    """One student (``session``: a token from ``issue_session``): start, train for ``seconds``, stop; measures
    the first metrics frame and the steps made."""
    result = ClientResult()
    async with connect(f"{ws_url}?session={session}", max_size=64 * 1024**2) as ws:
        await go.wait()
        sent = time.perf_counter()
        await ws.send(json.dumps({"cmd": "start", "experiment": experiment, "id": name}))
        run_id = None
        stop_at = sent + seconds
        stopping = False
        while True:
            timeout = None if stopping else max(0.0, stop_at - time.perf_counter())
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=timeout if not stopping else START_GUARD)
            except asyncio.TimeoutError:
                if run_id is None:
                    result.errors.append("no run id before the time was up")
                    return result
                await ws.send(json.dumps({"cmd": "stop", "run_id": run_id}))
                stopping = True
                continue
            message = json.loads(text)
            result.frames += 1
            kind = message["type"]
            if kind == "error":
                result.errors.append(message.get("message", "?"))
                if run_id is None:
                    return result
            if run_id is None and message.get("run_id"):
                run_id = message["run_id"]
            if kind == "metrics" and result.first_metrics_s is None:
                result.first_metrics_s = time.perf_counter() - sent
            if kind == "final" and message.get("run_id") == run_id:
                result.steps = int(message["steps"])
                return result


async def classroom(ws_url: str, experiment: dict, clients: int, seconds: float, prefix: str) -> tuple[list[ClientResult], float]:
    go = asyncio.Event()
    sessions = [issue_session(ws_url) for _ in range(clients)]  # one session per student, before the clock starts
    tasks = [asyncio.create_task(client(ws_url, session, f"{prefix}-{i:03d}", experiment, seconds, go))
             for i, session in enumerate(sessions)]
    await asyncio.sleep(0.5)  # every socket connected before anyone starts
    t0 = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - t0


def start_server(data_dir: Path, port: int, clients: int, *, limits: bool = True) -> subprocess.Popen:
    """The server in its own process; ``limits``: lift the limits a class of ``clients`` on one address would hit
    (False: the defaults a user gets, as bench_abuse.py wants)."""
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir)}
    if limits:
        env.update({
            "DLPLAY_MAX_ACTIVE_RUNS": str(max(clients, 32)),
            "DLPLAY_MAX_RUN_SECONDS": "3600",
            # The whole class connects from this machine's one address: lift the per-address limits (issue 9) to it.
            "DLPLAY_MAX_RUNS_PER_IP": str(max(clients, 32)),
            "DLPLAY_MAX_SESSIONS_PER_IP_PER_HOUR": str(max(4 * clients, 60)),
        })
    process = subprocess.Popen(
        [sys.executable, "-c", f"from server.app import serve; serve('127.0.0.1', {port}, False)"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_GUARD
    while True:
        if process.poll() is not None:
            raise SystemExit("the server exited during startup")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the server did not come up")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent websocket clients (default 20)")
    parser.add_argument("--seconds", type=float, default=20.0, help="training time per client (default 20)")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="lone-client run first (0: skip)")
    parser.add_argument("--preset", type=Path, default=DEFAULT_PRESET, help="experiment each client trains")
    args = parser.parse_args()

    preset = json.loads(args.preset.read_text())
    experiment = endless(preset.get("experiment", preset))
    batch = experiment["train"].get("batch_size", 32)
    port = free_port()
    ws_url = f"ws://127.0.0.1:{port}/ws"
    with tempfile.TemporaryDirectory(prefix="dlplay-bench-") as tmp:
        process = start_server(Path(tmp), port, args.clients)
        try:
            # Warm-up: the engine's first run in a process pays for imports; nobody should be timed on that.
            asyncio.run(classroom(ws_url, experiment, 1, 1.0, "warmup"))
            rss_before = rss_mib(process.pid)
            baseline_rate = None
            if args.baseline_seconds > 0:
                alone, _ = asyncio.run(classroom(ws_url, experiment, 1, args.baseline_seconds, "alone"))
                baseline_rate = alone[0].steps / args.baseline_seconds
            load_before = os.getloadavg()[0]
            results, wall = asyncio.run(classroom(ws_url, experiment, args.clients, args.seconds, "class"))
            load_after = os.getloadavg()[0]
            rss_after = rss_mib(process.pid)
            health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=30).json()
        finally:
            process.terminate()
            process.wait(60)

    steps = [r.steps for r in results]
    firsts = [r.first_metrics_s for r in results if r.first_metrics_s is not None]
    errors = [e for r in results for e in r.errors]
    total_rate = sum(steps) / args.seconds
    print(f"server: {health['device']}, {os.cpu_count()} cores, preset {args.preset.name} (batch {batch}), "
          f"{args.clients} clients x {args.seconds:g} s")
    if baseline_rate is not None:
        print(f"one client alone:       {baseline_rate:9.1f} steps/s  {baseline_rate * batch:10.0f} examples/s")
    print(f"aggregate, {args.clients:3d} clients: {total_rate:9.1f} steps/s  {total_rate * batch:10.0f} examples/s"
          + (f"  ({total_rate / baseline_rate:.2f}x one client alone)" if baseline_rate else ""))
    print(f"steps per client:       min {min(steps)}  median {statistics.median(steps):.0f}  max {max(steps)}")
    print(f"fairness (min/max steps): {min(steps) / max(max(steps), 1):.3f}   (target >= 0.8)")
    print(f"first metrics frame:    p50 {percentile(firsts, 0.5):.3f} s  p95 {percentile(firsts, 0.95):.3f} s  "
          f"max {max(firsts, default=float('nan')):.3f} s   (target p95 < 1 s; {len(firsts)}/{len(results)} clients)")
    print(f"frames received:        {sum(r.frames for r in results)} in {wall:.1f} s")
    print(f"server RSS:             {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    print(f"machine load average:   {load_before:.1f} before, {load_after:.1f} after the class "
          "(the lone-client and class phases run one after the other: compare their ratio on a quiet machine)")
    if errors:
        print(f"errors ({len(errors)}): {errors[:3]}")


if __name__ == "__main__":
    main()
