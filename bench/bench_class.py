"""A class of 50 on one machine: students train, the teacher's dashboard follows them; is it fair, prompt, flat?

    python bench/bench_class.py [--students 50] [--seconds 120]
                                [--isolation process|ray] [--ray-address ADDR] [--compare]

Starts a real server in class mode (127.0.0.1, a free port, a temporary data dir with a
class created in it, as ``dlplay class`` does; the server reopens it at start), then for
``--seconds``:

- ``--students`` simulated students, each from its own loopback address (127.0.1.N: one
  laptop each, as in a classroom, so the server's per-address limits and fair shares
  apply to them as to real students): join with the code (``POST /api/class/join``),
  open the websocket, train small presets back to back (even students: a 2-layer MLP on
  the spiral; odd: an MLP on digits), watching live views as the page does
  (``views {boundary, evaluation}`` or ``{layer_stats, evaluation}``), and start a new run
  as soon as one ends;
- one teacher dashboard on ``/ws/class``, counting snapshots and updates.

Prints one table: fairness (within each preset, the slowest student's steps / the
fastest's: identical models, so steps are the measure; the class figure is the lower of
the two), first-metrics latency p50/p95 over every run started (``start`` sent -> its
first ``metrics`` frame), dashboard updates received per second and how many students it
showed training, and the memory of the server with its run processes (PSS of the process
tree: shared pages counted once; the server process's RSS beside it) at the start and the
end. Targets on 2 cores: fairness >= 0.8, first-metrics p95 < 1 s, dashboard >= 1
update/s, memory flat.

``--isolation ray`` runs the trainings on a Ray cluster (``DLPLAY_ISOLATION=ray``,
``DLPLAY_RAY_ADDRESS``): ``--ray-address ADDR``, or else a local cluster started for the bench
(a head and two worker nodes on this machine); ``--compare`` runs the local processes and Ray
one after the other and prints them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_abuse import tree_pids, tree_pss_mib  # noqa: E402
from bench.bench_server import free_port, percentile, rss_mib  # noqa: E402

START_GUARD = 180.0  # seconds to wait for the server to come up (a hang guard)
RECV_GUARD = 120.0  # seconds without any message before a client gives up (a hang guard)
MEMORY_SAMPLE_SECONDS = 10.0  # how often the server's memory is sampled
SPARES_STEADY_SECONDS = 2.0  # the server is warm when its count of spare run processes has not moved for this long
RAMP_UP_SECONDS = 20.0  # memory is compared from the first sample after this (every first run started by then)

# The two presets the class trains: small, as in a first lesson. Steps per run: a run lasts
# some tens of seconds with 50 students sharing 2 cores, so every student starts several.
SPIRAL_MLP = {
    "name": "bench spiral MLP",
    "data": {"name": "spiral", "noise": 0.1, "n_samples": 600, "preprocessing": "standardize"},
    "network": {"layers": [
        {"kind": "linear", "name": "h1", "out_features": 16, "activation": "tanh"},
        {"kind": "linear", "name": "h2", "out_features": 16, "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 2}]},
    "train": {"optimizer": {"kind": "adam", "lr": 0.03}, "batch_size": 32, "epochs": None, "max_steps": 1500,
              "log_every": 10},
}
DIGITS_MLP = {
    "name": "bench digits MLP",
    "data": {"name": "digits", "preprocessing": "standardize"},
    "network": {"layers": [
        {"kind": "linear", "name": "hidden", "out_features": 50, "activation": "relu"},
        {"kind": "linear", "name": "out", "out_features": 10}]},
    "train": {"optimizer": {"kind": "sgd", "lr": 0.1}, "batch_size": 32, "epochs": None, "max_steps": 1500,
              "log_every": 5},
}
PRESETS = {"spiral": (SPIRAL_MLP, {"boundary": {}, "evaluation": {}}),
           "digits": (DIGITS_MLP, {"layer_stats": {}, "evaluation": {}})}


# The frames a student client decodes (the channel stamps "type" first): the rest (views' images) are skipped.
READ_PREFIXES = tuple(f'{{"type":"{kind}"' for kind in ("status", "summary", "metrics", "final", "error"))


def student_address(index: int) -> str:
    """Student ``index``'s own loopback address: 127.0.1.1, 127.0.1.2, ... (Linux routes all of 127/8 to lo)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


@dataclass
class StudentResult:
    preset: str
    steps: int = 0  # steps over every run, the current one up to its last metrics point
    runs: int = 0
    first_metrics_s: list[float] = field(default_factory=list)
    burst_first_metrics_s: float | None = None  # the first run's: every student presses Train at the same instant
    # Where a start's time goes, per run: (accepted: start sent -> its "queued" received; opened: the run's
    # summary, and stamped: its first metrics, in the server's time since the run was accepted).
    start_phases: list[tuple[float, float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class TeacherResult:
    snapshots: int = 0
    updates: int = 0
    students_in_updates: int = 0
    first_update_at: float | None = None
    last_update_at: float | None = None
    shown: dict[str, dict[str, Any]] = field(default_factory=dict)  # member id -> the newest summary
    errors: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    label: str
    students: list[StudentResult]
    teacher: TeacherResult
    seconds: float
    memory: list[tuple[float, float, float]]  # (seconds since the class started, tree PSS MiB, server RSS MiB)
    health: dict[str, Any]
    cpu: dict[str, Any]  # CPU seconds: server_start/server_end, children_start/children_now (pid -> s), wall
    spares: int = 0  # spare run processes the server had ready when the class started



# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


def open_class(data_dir: Path) -> tuple[str, str]:
    """Create the class in the server's data folder, as ``dlplay class`` does; returns (join code, teacher key).

    The server reopens it at start (a class is stored in SQLite and survives restarts).
    """
    from server.classroom import ClassroomService
    from server.config import Settings
    from server.security import load_secret
    from server.sessions import SessionIssuer
    from server.store import Store

    settings = Settings(data_dir=data_dir)
    store = Store(data_dir)
    try:
        issuer = SessionIssuer(load_secret(data_dir), settings.max_sessions_per_ip_per_hour)
        classroom = ClassroomService(store, issuer, settings).create("bench class")
    finally:
        store.close()
    return classroom.code, classroom.teacher_key


def start_class_server(data_dir: Path, port: int, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str, str, int]:
    """A server with a class open on 127.0.0.1:``port``, warm; returns (process, join code, teacher key, its spare
    run processes)."""
    code, key = open_class(data_dir)
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir), **env_extra}
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-c", f"from server.app import serve; serve('127.0.0.1', {port}, False)"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_GUARD
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the class server exited during startup:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return process, code, key, wait_until_warm(port)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the class server did not come up")
        time.sleep(0.2)


def wait_until_warm(port: int) -> int:
    """Wait until the server's spare run processes stop growing (it forks and warms them at start, as a class's
    server has long done by the time 50 students have typed the code): the bench measures a warm server."""
    last, steady_since = -1, time.monotonic()
    deadline = time.monotonic() + START_GUARD
    while time.monotonic() < deadline:
        ready = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json().get("spare_processes", 0)
        if ready != last:
            last, steady_since = ready, time.monotonic()
        elif time.monotonic() - steady_since > SPARES_STEADY_SECONDS:
            return ready
        time.sleep(0.2)
    return last


# ---------------------------------------------------------------------------
# The students and the teacher
# ---------------------------------------------------------------------------


async def join(base: str, code: str, name: str, address: str) -> str:
    """Join the class from ``address`` like the join page does; returns the session token."""
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=60) as http:
        response = await http.post(f"{base}/api/class/join", json={"code": code, "name": name},
                                   headers={"origin": base})
    if response.status_code != 201:
        raise RuntimeError(f"{name} could not join: HTTP {response.status_code} {response.text[:300]}")
    return response.json()["session"]


async def student(ws_url: str, session: str, address: str, preset: str, go: asyncio.Event,
                  stop_at: list[float], watch: bool = True) -> StudentResult:
    """Train ``preset`` back to back until ``stop_at[0]`` (perf_counter), watching views as the page does
    (``watch`` False: none, a page on another tab)."""
    experiment, views = PRESETS[preset]
    result = StudentResult(preset)
    async with connect(f"{ws_url}?session={session}", max_size=64 * 1024**2, local_addr=(address, 0)) as ws:
        await go.wait()
        while time.perf_counter() < stop_at[0]:
            result.runs += 1
            request = f"{preset}-{result.runs}"
            sent = time.perf_counter()
            await ws.send(json.dumps({"cmd": "start", "experiment": experiment, "id": request}))
            run_id = None
            last_step = 0
            ended = False
            while not ended:
                timeout = stop_at[0] - time.perf_counter()
                if timeout <= 0:
                    break
                try:
                    text = await asyncio.wait_for(ws.recv(), min(timeout, RECV_GUARD))
                except asyncio.TimeoutError:
                    if time.perf_counter() >= stop_at[0]:
                        break
                    result.errors.append(f"run {request}: nothing for {RECV_GUARD:.0f} s")
                    return result
                # A student's page would draw every frame; this one reads only what it measures, so the
                # 50 clients (on the server's own cores here) take as little CPU from the server as they can.
                if not text.startswith(READ_PREFIXES):
                    continue
                message = json.loads(text)
                kind = message["type"]
                if run_id is None:
                    if kind == "error" and message.get("request_id") == request:
                        result.errors.append(f"{message.get('code')}: {message.get('message', '')[:200]}")
                        await asyncio.sleep(1.0)
                        break
                    if message.get("request_id") == request and message.get("run_id"):
                        run_id = message["run_id"]
                        accepted = time.perf_counter() - sent
                        opened = None
                        await ws.send(json.dumps({"cmd": "views", "run_id": run_id, "views": views if watch else {}}))
                    continue
                if message.get("run_id") != run_id:
                    continue
                if kind == "summary":
                    opened = message["t"]
                elif kind == "metrics":
                    if last_step == 0:
                        result.first_metrics_s.append(time.perf_counter() - sent)
                        if result.runs == 1:
                            result.burst_first_metrics_s = result.first_metrics_s[-1]
                        result.start_phases.append((accepted, opened or float("nan"), message["t"]))
                    last_step = max(last_step, int(message.get("step") or 0))
                elif kind == "final":
                    last_step = int(message.get("steps") or last_step)
                    ended = True
                elif kind == "error" and message.get("request_id") is None:
                    result.errors.append(f"{message.get('code')}: {message.get('message', '')[:200]}")
            result.steps += last_step
            if not ended and run_id is not None:  # time is up: stop it (the class is over)
                await ws.send(json.dumps({"cmd": "stop", "run_id": run_id}))
    return result


async def teacher(base_ws: str, key: str, go: asyncio.Event, stop_at: list[float]) -> TeacherResult:
    """The dashboard: counts snapshots and updates, and keeps the newest summary of every student."""
    result = TeacherResult()
    async with connect(f"{base_ws}/ws/class?key={key}", max_size=64 * 1024**2) as ws:
        await go.wait()
        t0 = time.perf_counter()
        while True:
            timeout = stop_at[0] - time.perf_counter()
            if timeout <= 0:
                break
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            except asyncio.TimeoutError:
                break
            kind = message.get("type")
            if kind == "class_snapshot":
                result.snapshots += 1
                result.shown = {s["member_id"]: s for s in message["students"]}
            elif kind == "class_update":
                now = time.perf_counter() - t0
                result.updates += 1
                result.students_in_updates += len(message["students"])
                result.first_update_at = now if result.first_update_at is None else result.first_update_at
                result.last_update_at = now
                for summary in message["students"]:
                    result.shown[summary["member_id"]] = summary
            elif kind == "error":
                result.errors.append(f"{message.get('code')}: {message.get('message')}")
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_memory(pid: int, go: asyncio.Event, stop_at: list[float], into: list, cpu: dict) -> None:
    """Memory every MEMORY_SAMPLE_SECONDS; CPU of the server process and of its runs (ended runs' time is lost
    with them, so the runs' figure is a lower bound) over the class."""
    await go.wait()
    t0 = time.perf_counter()
    cpu["server_start"] = cpu_seconds(pid)
    cpu["load_start"] = os.getloadavg()[0]
    while True:
        into.append((time.perf_counter() - t0, tree_pss_mib(pid), rss_mib(pid)))
        children = {c: cpu_seconds(c) for c in tree_pids(pid) - {pid}}
        for child, used in children.items():
            cpu.setdefault("children_start", {}).setdefault(child, used)
            cpu.setdefault("children_now", {})[child] = used
        left = stop_at[0] - time.perf_counter()
        if left <= 0:
            cpu["server_end"] = cpu_seconds(pid)
            cpu["load_end"] = os.getloadavg()[0]
            cpu["wall"] = time.perf_counter() - t0
            return
        await asyncio.sleep(min(MEMORY_SAMPLE_SECONDS, left))


async def run_class(base: str, pid: int, code: str, key: str, students: int, seconds: float, watch: bool) -> tuple:
    ws_url = base.replace("http://", "ws://", 1)
    addresses = [student_address(i) for i in range(students)]
    sessions = await asyncio.gather(*(join(base, code, f"Student {i + 1:02d}", addresses[i]) for i in range(students)))
    go = asyncio.Event()
    stop_at = [float("inf")]
    memory: list[tuple[float, float, float]] = []
    tasks = [asyncio.create_task(student(f"{ws_url}/ws", sessions[i], addresses[i],
                                         "spiral" if i % 2 == 0 else "digits", go, stop_at, watch))
             for i in range(students)]
    watcher = asyncio.create_task(teacher(ws_url, key, go, stop_at))
    cpu: dict[str, Any] = {}
    sampler = asyncio.create_task(sample_memory(pid, go, stop_at, memory, cpu))
    await asyncio.sleep(1.0)  # every socket open before the clock starts
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    taught = await watcher
    await sampler
    return results, taught, memory, wall, cpu


def measure(label: str, students: int, seconds: float, env_extra: dict[str, str], watch: bool = True) -> Outcome:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="dlplay-bench-class-") as tmp:
        process, code, key, spares = start_class_server(Path(tmp), port, env_extra)
        try:
            results, taught, memory, wall, cpu = asyncio.run(
                run_class(base, process.pid, code, key, students, seconds, watch))
            health = httpx.get(f"{base}/api/health", timeout=30).json()
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    return Outcome(label, results, taught, wall, memory, health, cpu, spares)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


def figures(outcome: Outcome) -> dict[str, str]:
    """The table's column for one configuration (text per row)."""
    by_preset: dict[str, list[int]] = {}
    for result in outcome.students:
        by_preset.setdefault(result.preset, []).append(result.steps)
    fairness = {p: (min(s) / max(s) if max(s) else 0.0) for p, s in by_preset.items()}
    firsts = [f for r in outcome.students for f in r.first_metrics_s]
    burst = [r.burst_first_metrics_s for r in outcome.students if r.burst_first_metrics_s is not None]
    later = [f for r in outcome.students for f in r.first_metrics_s[1 if r.burst_first_metrics_s is not None else 0:]]
    errors = [e for r in outcome.students for e in r.errors] + outcome.teacher.errors
    t = outcome.teacher
    span = (t.last_update_at or 0) - (t.first_update_at or 0)
    rate = (t.updates - 1) / span if t.updates > 1 and span > 0 else 0.0
    live = sum(1 for s in t.shown.values() if s.get("run_id"))
    # "Start" is the first sample once every student's first run is up (the process tree grows by a process a
    # run until then): flat means that from there to the end the memory does not keep growing.
    settled = [m for m in outcome.memory if m[0] >= RAMP_UP_SECONDS] or outcome.memory or [(0, 0, 0)]
    start, end = settled[0], settled[-1]
    peak = max((m[1] for m in settled), default=0)
    rows = {
        "students x seconds": f"{len(outcome.students)} x {outcome.seconds:.0f} s",
        "fairness, class (min of presets)": f"{min(fairness.values(), default=0):.3f}",
    }
    for preset, steps in sorted(by_preset.items()):
        rows[f"  {preset}: steps min/median/max"] = f"{min(steps)} / {statistics.median(steps):.0f} / {max(steps)}"
        rows[f"  {preset}: fairness (min/max steps)"] = f"{fairness[preset]:.3f}"
    rows.update({
        "runs started": f"{sum(r.runs for r in outcome.students)}",
        "first metrics p50 / p95 / max (s)": (f"{percentile(firsts, 0.5):.3f} / {percentile(firsts, 0.95):.3f} / "
                                              f"{max(firsts, default=float('nan')):.3f}"),
        "  first runs (all at once) p50 / p95 (s)": f"{percentile(burst, 0.5):.3f} / {percentile(burst, 0.95):.3f}",
        "  later runs (restarts) p50 / p95 (s)": f"{percentile(later, 0.5):.3f} / {percentile(later, 0.95):.3f}",
        "  start: accepted / summary / metrics p50 (s)": phases_text(outcome, 0.5),
        "  start: accepted / summary / metrics p95 (s)": phases_text(outcome, 0.95),
        "dashboard updates/s (students per update)": (f"{rate:.2f} ({t.students_in_updates / max(t.updates, 1):.1f})"),
        "dashboard snapshots; students shown with a run": f"{t.snapshots}; {live}/{len(outcome.students)}",
        "memory, tree PSS from ~20 s to the end (peak) MiB": f"{start[1]:.0f} -> {end[1]:.0f} ({peak:.0f})",
        "server process RSS from ~20 s to the end MiB": f"{start[2]:.0f} -> {end[2]:.0f}",
        "memory before the class (tree PSS / server RSS) MiB": (f"{outcome.memory[0][1]:.0f} / "
                                                                f"{outcome.memory[0][2]:.0f}" if outcome.memory else "-"),
        "CPU, server process / runs (cores)": cpu_text(outcome.cpu),
        "machine load average start -> end": f"{outcome.cpu.get('load_start', 0):.1f} -> "
                                             f"{outcome.cpu.get('load_end', 0):.1f}",
        "spare run processes ready at the start": f"{outcome.spares}",
        "errors": f"{len(errors)}" + (f": {errors[:2]}" if errors else ""),
    })
    return rows


def phases_text(outcome: Outcome, q: float) -> str:
    """Percentiles of where a start's time went: accepted (client-measured), then the server's stamps."""
    phases = [p for r in outcome.students for p in r.start_phases]
    return " / ".join(f"{percentile([p[i] for p in phases], q):.2f}" for i in range(3))


def cpu_text(cpu: dict[str, Any]) -> str:
    wall = cpu.get("wall") or 0
    if not wall:
        return "-"
    server = (cpu.get("server_end", 0) - cpu.get("server_start", 0)) / wall
    start, now = cpu.get("children_start", {}), cpu.get("children_now", {})
    runs = sum(now[c] - start[c] for c in now) / wall
    return f"{server:.2f} / {runs:.2f}"


def print_table(outcomes: list[Outcome]) -> None:
    columns = [figures(o) for o in outcomes]
    names = list(dict.fromkeys(name for column in columns for name in column))
    width = max(len(n) for n in names) + 2
    cell = max(24, *(len(v) for column in columns for v in column.values() if len(v) < 60))
    print(f"{os.cpu_count()} cores; device: {outcomes[0].health.get('device', '?')}")
    print(" " * width + "".join(f"{o.label:>{cell}}  " for o in outcomes))
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{column.get(name, '-'):>{cell}}  " for column in columns))
    print("targets: fairness >= 0.8, first metrics p95 < 1 s, dashboard >= 1 update/s, memory flat "
          "(fairness: identical models per preset, so steps are compared within each preset)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=50, help="simulated students (default 50)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the class trains (default 120)")
    parser.add_argument("--isolation", choices=["process", "ray"], default="process",
                        help="where runs train: local processes (default) or a Ray cluster")
    parser.add_argument("--ray-address", default=None, help="the Ray cluster (with --isolation ray or --compare; default: a local one started for the bench)")
    parser.add_argument("--compare", action="store_true", help="run local processes, then Ray, side by side")
    parser.add_argument("--no-views", action="store_true",
                        help="students watch no live views (what the views cost: compare with and without)")
    args = parser.parse_args()
    outcomes = []
    if args.compare or args.isolation == "process":
        outcomes.append(measure("local processes", args.students, args.seconds, {"DLPLAY_ISOLATION": "process"},
                                not args.no_views))
    if args.compare or args.isolation == "ray":
        with _ray_cluster(args.ray_address) as ray_env:
            label = f"ray {'local cluster' if args.ray_address is None else args.ray_address}"
            outcomes.append(measure(label, args.students, args.seconds, {"DLPLAY_ISOLATION": "ray", **ray_env},
                                    not args.no_views))
    print_table(outcomes)


@contextlib.contextmanager
def _ray_cluster(address: str | None):
    """The server's settings for a Ray cluster: ``address`` as given, or a local cluster started here for the
    bench (a head and two worker nodes on this machine, tests/cluster/local_ray_cluster.py) and torn down after
    it. The worker nodes split this machine's cores between them (1 each on 2 cores): the server drives one run
    per cluster CPU at a time, as it drives one per core with local processes, so the two compare like for like.
    The server joins the local cluster as the README says to (on a node, with the GCS address; the nodes listen
    on 127.0.0.2, so it names that address), not through a Ray Client proxy."""
    if address is not None:
        yield {"DLPLAY_RAY_ADDRESS": address}
        return
    sys.path.insert(0, str(ROOT / "tests" / "cluster"))
    from local_ray_cluster import NODE_IP, local_ray_cluster  # noqa: E402 - needs the [cluster] extra

    with local_ray_cluster(worker_nodes=2, cpus_per_node=max(1, (os.cpu_count() or 2) // 2)) as cluster:
        yield {"DLPLAY_RAY_ADDRESS": cluster.address, "DLPLAY_RAY_NODE_IP": NODE_IP}


if __name__ == "__main__":
    main()
