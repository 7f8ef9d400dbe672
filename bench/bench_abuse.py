"""One client abuses the server; does a well-behaved student still get a prompt, fast run? (issue 9)

    python bench/bench_abuse.py [--seconds 20] [--only NAME ...]

Starts a real server process (127.0.0.1, a free port, a temporary data dir, default
limits). A well-behaved student (from 127.0.0.1) trains the spiral preset in short runs,
one after another, and we measure what they see: the time from ``start`` to the first
``metrics`` frame (p50/p95) and their throughput (steps per second from ``start`` to
``final``). First on an idle server, then while an abuser (from 127.0.0.2, another
computer as far as the server can tell) runs each abuse of the issue's repros:

* oversized_run   - repro 1: a conv net at batch 4000 on MNIST, started again and again
* preview_flood   - repro 2: six concurrent previews of 87,000 photo patches, new seeds each time
* session_minting - repro 3: mint sessions and start endless runs in each until refused
* slow_steps      - repro 4: in-limit runs with slow steps (a wide CNN) and a flood of heavy probes
* upload_flood    - repro 5: a 4.9M-row CSV (3 at once) and incompressible 19 MB NPZ files
* foreign_origin  - repro 6: websocket handshakes and uploads from a foreign Origin
* malformed       - repro 7: JSON nested 1,000 deep, 400-digit numbers, 1e999

Prints one row per abuse: p50/p95 first metrics, throughput and its ratio to idle, what
the abuser got back, and the server's memory (its process and its runs' processes).
Targets (issue 9): first-metrics p95 < 1 s and throughput >= 0.5x idle under every abuse.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_server import free_port, percentile, start_server  # noqa: E402

GOOD_ADDRESS = "127.0.0.1"
ABUSER_ADDRESS = "127.0.0.2"  # all of 127/8 is loopback on Linux: the server sees a second computer
GOOD_STEPS = 400  # steps per well-behaved run (about a second on an idle 2-core machine)
STUDENT_GRACE = 60.0  # seconds past its row's time the student keeps trying for a first run that trains
REPRO_1 = {"data": {"name": "mnist"}, "network": {"layers": [
    {"kind": "conv2d", "name": "c0", "out_channels": 96, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "conv2d", "name": "c1", "out_channels": 96, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "global_avg_pool", "name": "g"},
    {"kind": "linear", "name": "out", "out_features": 10}]}, "train": {"batch_size": 4000, "max_steps": 3}}
# A wide CNN within the limits: each step takes a good fraction of a second on 2 cores.
SLOW_STEPS = {"data": {"name": "mnist"}, "network": {"layers": [
    {"kind": "conv2d", "name": "c0", "out_channels": 32, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "conv2d", "name": "c1", "out_channels": 64, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "global_avg_pool", "name": "g"},
    {"kind": "linear", "name": "out", "out_features": 10}]},
    "train": {"batch_size": 256, "max_steps": 10**9, "epochs": None}}


def tree_pids(pid: int) -> set[int]:
    """A process and every process below it (the fork server, the runs)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - tree
        tree |= frontier
    return tree


def tree_pss_mib(pid: int) -> float:
    """Proportional memory (PSS: shared pages split between their sharers, so forked runs are not counted
    many times over) of a process and every process below it (the fork server, the runs), MiB."""
    total = 0.0
    for member in tree_pids(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class Server:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/ws"

    async def session(self, address: str) -> str | None:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=60) as http:
            response = await http.post(f"{self.base}/api/session", headers={"origin": self.base})
        return response.json()["session"] if response.status_code == 201 else None


# ---------------------------------------------------------------------------
# The well-behaved student
# ---------------------------------------------------------------------------


async def good_student(server: Server, preset: dict, seconds: float) -> tuple[list[float], float, list[str]]:
    """Short runs back to back for ``seconds``; returns (first-metrics times, steps per second, errors)."""
    session = await server.session(GOOD_ADDRESS)
    firsts: list[float] = []
    steps = 0
    busy = 0.0
    errors: list[str] = []
    document = json.loads(json.dumps(preset))
    document["train"].update(max_steps=GOOD_STEPS, epochs=None)
    async with connect(f"{server.ws}?session={session}", max_size=64 * 1024**2,
                       local_addr=(GOOD_ADDRESS, 0)) as ws:
        end = time.perf_counter() + seconds
        give_up = end + STUDENT_GRACE
        number = 0
        while time.perf_counter() < end or not firsts:
            if time.perf_counter() > give_up:  # every run failed or was refused: say so instead of trying forever
                raise SystemExit(f"the student got no first metrics in {seconds + STUDENT_GRACE:g} s; "
                                 f"its errors: {Counter(errors).most_common(3)}")
            number += 1
            sent = time.perf_counter()
            await ws.send(json.dumps({"cmd": "start", "experiment": document, "id": f"good-{number}"}))
            run_id = None
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if message["type"] == "error" and message.get("request_id") == f"good-{number}":
                    errors.append(message["code"])
                    await asyncio.sleep(0.5)
                    break
                if run_id is None and message.get("request_id") == f"good-{number}":
                    run_id = message.get("run_id")
                if message.get("run_id") != run_id:
                    continue
                if message["type"] == "metrics" and len(firsts) < number:
                    firsts.append(time.perf_counter() - sent)
                if message["type"] == "final":
                    steps += int(message["steps"])
                    busy += time.perf_counter() - sent
                    break
    return firsts, steps / busy if busy else 0.0, errors


# ---------------------------------------------------------------------------
# The abuses (each runs until cancelled; returns what it got back)
# ---------------------------------------------------------------------------


async def oversized_run(server: Server, got: Counter) -> None:
    session = await server.session(ABUSER_ADDRESS)
    async with connect(f"{server.ws}?session={session}", local_addr=(ABUSER_ADDRESS, 0)) as ws:
        while True:
            await ws.send(json.dumps({"cmd": "start", "experiment": REPRO_1, "id": "big"}))
            while True:
                message = json.loads(await ws.recv())
                if message.get("request_id") == "big":
                    got[message.get("code", message["type"])] += 1
                    break


async def preview_flood(server: Server, got: Counter) -> None:
    async def one(lane: int) -> None:
        seed = lane * 10_000
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ABUSER_ADDRESS),
                                     timeout=120) as http:
            while True:
                seed += 1
                response = await http.get(f"{server.base}/api/datasets/photo_patches/preview",
                                          params={"n": 1, "n_samples": 87000, "seed": seed})
                got[f"HTTP {response.status_code}"] += 1

    await asyncio.gather(*(one(lane) for lane in range(6)))


async def session_minting(server: Server, got: Counter) -> None:
    endless = {"data": {"name": "spiral"}, "network": {"layers": [
        {"kind": "linear", "name": "h", "out_features": 8, "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 2}]},
        "train": {"batch_size": 10, "max_steps": 10**12, "epochs": None}}
    sockets = []
    started: list[tuple] = []
    try:
        for _ in range(9):
            session = await server.session(ABUSER_ADDRESS)
            if session is None:
                got["session refused"] += 1
                break
            ws = await connect(f"{server.ws}?session={session}", local_addr=(ABUSER_ADDRESS, 0)).__aenter__()
            sockets.append(ws)
            for k in range(12):
                await ws.send(json.dumps({"cmd": "start", "experiment": endless, "id": f"m{k}"}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("request_id") == f"m{k}":
                        got["run started" if message["type"] != "error" else message["code"]] += 1
                        if message["type"] != "error":
                            started.append((ws, message["run_id"]))
                        break
        await asyncio.Event().wait()  # keep them training
    finally:
        for ws in sockets:  # leave nothing running for the next row: stop each socket's runs, wait for their ends
            await stop_until_ended(ws, [run_id for owner, run_id in started if owner is ws])
            await ws.close()


async def slow_steps(server: Server, got: Counter) -> None:
    session = await server.session(ABUSER_ADDRESS)
    async with connect(f"{server.ws}?session={session}", local_addr=(ABUSER_ADDRESS, 0),
                       max_size=64 * 1024**2) as ws:
        runs = []
        for k in range(4):
            await ws.send(json.dumps({"cmd": "start", "experiment": SLOW_STEPS, "id": f"s{k}"}))
        while len(runs) < 4:
            message = json.loads(await ws.recv())
            if str(message.get("request_id", "")).startswith("s"):
                if message["type"] == "error":
                    got[message["code"]] += 1
                    runs.append(None)
                else:
                    runs.append(message["run_id"])
        live = [r for r in runs if r]
        got["runs started"] += len(live)
        try:
            while live:
                for i in range(600):  # 600 heavy probes in a burst
                    await ws.send(json.dumps({"cmd": "probe", "run_id": live[i % len(live)],
                                              "probe": "gradient_check", "id": f"p{i}"}))
                deadline = time.perf_counter() + 2.0
                while time.perf_counter() < deadline:
                    try:
                        message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                    except asyncio.TimeoutError:
                        continue
                    if message["type"] == "error":
                        got[message["code"]] += 1
            await asyncio.Event().wait()
        finally:
            await stop_until_ended(ws, live)  # leave nothing running for the next row


async def stop_until_ended(ws, run_ids: list[str], guard: float = 20.0) -> None:
    """Stop these runs and wait for each one's ``final``. A stop sent while the probe flood still fills this
    connection's command queue is refused with ``too_busy`` (the limit under test): send it again until it is
    taken. A stop sent once and not checked left the runs training (runs outlive their socket, up to
    max_run_seconds) and every later row measured the student beside them."""
    pending = set(run_ids)
    for run_id in pending:
        await ws.send(json.dumps({"cmd": "stop", "run_id": run_id, "id": f"stop-{run_id}"}))
    deadline = time.perf_counter() + guard
    while pending and time.perf_counter() < deadline:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
        except asyncio.TimeoutError:
            continue
        if message["type"] == "final":
            pending.discard(message.get("run_id"))
        elif message["type"] == "error" and str(message.get("request_id", "")).startswith("stop-"):
            run_id = message["request_id"].removeprefix("stop-")
            if message.get("code") == "too_busy" and run_id in pending:
                await asyncio.sleep(0.2)
                await ws.send(json.dumps({"cmd": "stop", "run_id": run_id, "id": f"stop-{run_id}"}))
            else:
                pending.discard(run_id)  # already ended, or not ours: nothing left to stop


def _csv_rows(rows: int) -> bytes:
    block = b"".join(b"0.1,0.2,%d\n" % (i % 2) for i in range(10_000))
    return b"x,y,label\n" + block * (rows // 10_000)


async def upload_flood(server: Server, got: Counter) -> None:
    big_csv = _csv_rows(4_900_000)
    buffer = io.BytesIO()
    np.savez(buffer, x=np.random.default_rng(0).random((4_700_000,), dtype=np.float32), y=np.zeros(10, np.int64))
    noise_npz = buffer.getvalue()[: 19 * 1024**2]
    session = await server.session(ABUSER_ADDRESS)
    cookies = {"dlplay_session": session} if session else {}

    async def lane(payload: bytes, name: str) -> None:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ABUSER_ADDRESS), timeout=120,
                                     cookies=cookies, headers={"origin": server.base}) as http:
            while True:
                response = await http.post(f"{server.base}/api/uploads", files={"file": (name, payload)})
                got[f"HTTP {response.status_code}"] += 1

    await asyncio.gather(lane(big_csv, "big.csv"), lane(big_csv, "big.csv"), lane(big_csv, "big.csv"),
                         lane(noise_npz, "noise.npz"))


async def foreign_origin(server: Server, got: Counter) -> None:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ABUSER_ADDRESS), timeout=60) as http:
        while True:
            try:
                async with connect(server.ws, local_addr=(ABUSER_ADDRESS, 0),
                                   additional_headers={"Origin": "http://evil.example"}) as ws:
                    await ws.send(json.dumps({"cmd": "start", "experiment": REPRO_1}))
                    got["handshake accepted"] += 1
            except Exception as error:  # the refusal (HTTP 403) is what we want
                got[type(error).__name__] += 1
            response = await http.post(f"{server.base}/api/uploads", headers={"origin": "http://evil.example"},
                                       files={"file": ("x.csv", b"x,y,label\n1,2,0\n")})
            got[f"upload HTTP {response.status_code}"] += 1


async def malformed(server: Server, got: Counter) -> None:
    session = await server.session(ABUSER_ADDRESS)
    frames = ["[" * 1000 + "]" * 1000, '{"cmd":"set","run_id":"x","lr":1' + "0" * 400 + "}",
              '{"cmd":"probe","run_id":"x","probe":"saliency","index":1e999}', "{" * 5000, "not json"]
    async with connect(f"{server.ws}?session={session}", local_addr=(ABUSER_ADDRESS, 0)) as ws:
        while True:
            for frame in frames:
                await ws.send(frame)
                message = json.loads(await ws.recv())
                got[message.get("code", message["type"])] += 1


ABUSES = {"oversized_run": oversized_run, "preview_flood": preview_flood, "session_minting": session_minting,
          "slow_steps": slow_steps, "upload_flood": upload_flood, "foreign_origin": foreign_origin,
          "malformed": malformed}


def abuser_process(name: str, port: int, address: str, seconds: float, report) -> None:
    """Run one abuse from its own process (another computer, as the server sees it) for ``seconds``."""
    global ABUSER_ADDRESS
    ABUSER_ADDRESS = address
    got: Counter = Counter()

    async def bounded() -> None:
        try:
            await asyncio.wait_for(ABUSES[name](Server(port), got), seconds)
        except asyncio.TimeoutError:
            pass
        except Exception as error:  # noqa: BLE001 - what went wrong for the abuser is part of its report
            got[f"abuser failed: {type(error).__name__}: {error}"[:80]] += 1

    asyncio.run(bounded())
    report.put(dict(got))


def measure(port: int, preset: dict, seconds: float, name: str | None,
            address: str) -> tuple[list[float], float, Counter, list[str]]:
    got: Counter = Counter()
    abuser = None
    if name is not None:
        context = multiprocessing.get_context("spawn")
        report = context.Queue()
        abuser = context.Process(target=abuser_process, args=(name, port, address, seconds + 6.0, report))
        abuser.start()
        time.sleep(4.0)  # the abuse is in full swing before the student starts
    firsts, rate, errors = asyncio.run(good_student(Server(port), preset, seconds))
    if abuser is not None:
        try:
            got.update(report.get(timeout=120))
        except Exception:  # noqa: BLE001
            got["abuser gave no report"] += 1
        abuser.join(30)
        if abuser.is_alive():
            abuser.kill()
    return firsts, rate, got, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="the student's measuring time per row (default 15)")
    parser.add_argument("--only", nargs="*", choices=sorted(ABUSES), help="run only these abuses")
    parser.add_argument("--preset", type=Path, default=ROOT / "models" / "playground_spiral.json")
    args = parser.parse_args()
    preset = json.loads(args.preset.read_text())
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = start_server(Path(data_dir), port, clients=1, limits=False)
        rows = []
        try:
            print(f"server pid {process.pid}, {os.cpu_count()} cores; student: {args.preset.name}, "
                  f"{GOOD_STEPS} steps a run, {args.seconds:g} s per row; PSS = server + fork server + its runs' processes")
            names = ["idle"] + (args.only or list(ABUSES))
            idle_rate = None
            header = (f"{'abuse':16s} {'p50 first':>10s} {'p95 first':>10s} {'steps/s':>9s} {'x idle':>7s} "
                      f"{'PSS MiB':>8s}  abuser got")
            print(header)
            for name in names:
                address = f"127.0.0.{2 + len(rows)}"  # each abuser a computer of its own: limits per address
                firsts, rate, got, errors = measure(port, preset, args.seconds, None if name == "idle" else name,
                                                    address)
                idle_rate = rate if name == "idle" else idle_rate
                ratio = rate / idle_rate if idle_rate else float("nan")
                rss = tree_pss_mib(process.pid)
                summary = ", ".join(f"{k} x{v}" for k, v in got.most_common(4)) or "-"
                if errors:
                    summary += f"; student errors: {Counter(errors).most_common(3)}"
                row = (name, percentile(firsts, 0.5), percentile(firsts, 0.95), rate, ratio, rss, summary)
                rows.append(row)
                print(f"{name:16s} {row[1]:9.3f}s {row[2]:9.3f}s {rate:9.0f} {ratio:7.2f} {rss:8.0f}  {summary}",
                      flush=True)
                time.sleep(3.0)  # what the abuse left running (its runs) is stopped or freed before the next row
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    worst_p95 = max(r[2] for r in rows[1:]) if len(rows) > 1 else float("nan")
    worst_ratio = min(r[4] for r in rows[1:]) if len(rows) > 1 else float("nan")
    print(f"\nworst under abuse: first-metrics p95 {worst_p95:.3f} s (target < 1 s), "
          f"throughput {worst_ratio:.2f}x idle (target >= 0.5x); median first metrics idle "
          f"{statistics.median([rows[0][1]]):.3f} s")


if __name__ == "__main__":
    main()
