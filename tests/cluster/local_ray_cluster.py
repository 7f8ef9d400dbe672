"""A real Ray cluster on this machine, for the Ray tests (tests/cluster/test_ray.py) and benchmarks.

``local_ray_cluster()`` starts a head (no CPUs: it only coordinates, as on a real cluster) and worker
nodes, each a ``ray start --block`` process of its own in a process group of its own, all on a loopback
address; connects this process to it as the server would; and tears everything down at the end (SIGTERM
to each node, SIGKILL to what is left of its process group). Nodes import the server from this checkout
and, for the deliberately bad runs, tests/api/run_doubles.py (their PYTHONPATH has both).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
START_GUARD_SECONDS = 180.0  # a hang guard for `ray start` on a busy 2-core machine
OBJECT_STORE_BYTES = 100 * 1024**2  # per node: replies are small; Ray's minimum is 75 MiB
# Every node's address. Not 127.0.0.1: Ray swaps "127.0.0.1" and "localhost" for the machine's network
# address, and this cluster's traffic stays on loopback.
NODE_IP = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(args: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start --block ...`` in a process group of its own; returns once the node is up."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([ray_cli, "start", "--block", *args], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    deadline = time.monotonic() + START_GUARD_SECONDS
    while b"block forever" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_nodes([process])
            raise RuntimeError(f"`ray start {' '.join(args)}` did not come up:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def _stop_nodes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each node (its `ray start --block` takes its raylet, GCS and workers down), SIGKILL stragglers."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 30.0
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what the node left in its group
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def local_ray_cluster(worker_nodes: int = 2, cpus_per_node: int = 2) -> Iterator[SimpleNamespace]:
    """The cluster, with this process connected (``server.ray_backend.connect``).

    ``cpus_per_node``: logical CPUs of each worker node, i.e. runs it trains at once (one actor holds one).
    Yields ``address`` (the GCS address), ``client_address`` (``ray://...``), ``head_node_id`` and
    ``connect()`` (connects this process again, after a server that ran in it disconnected at its shutdown).
    """
    import ray

    from server import ray_backend

    folder = Path(tempfile.mkdtemp(prefix="dlray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = dict(os.environ)
    env.update({
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM ends a node at once (the default drains for 30 s)
        "RAY_USAGE_STATS_ENABLED": "0",
        # Workers at the normal priority: Ray's default (15) puts the runs behind every other process here.
        "RAY_worker_niceness": "0",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "api"), env.get("PYTHONPATH", "")]),
    })
    gcs_port, client_port = _free_port(), _free_port()
    common = ["--node-ip-address", NODE_IP, "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats"]
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(
            ["--head", "--port", str(gcs_port), "--num-cpus", "0", "--temp-dir", str(folder), "--include-dashboard",
             "false", "--ray-client-server-port", str(client_port), "--dashboard-agent-listen-port",
             str(_free_port()), *common], folder / "head.log", env))
        for index in range(worker_nodes):
            base = 40000 + (os.getpid() % 200) * 100 + index * 50  # worker ports apart from other clusters' here
            nodes.append(_start_node(
                ["--address", f"{NODE_IP}:{gcs_port}", "--num-cpus", str(cpus_per_node),
                 "--min-worker-port", str(base), "--max-worker-port", str(base + 49),
                 "--dashboard-agent-listen-port", str(_free_port()), *common], folder / f"worker{index}.log", env))
        address = f"{NODE_IP}:{gcs_port}"

        def connect() -> None:
            """The server's connect, with this process placed on the cluster's loopback address first: a driver
            joins through a raylet of its own machine, which here is every node's address."""
            if not ray.is_initialized():
                ray.init(address=address, namespace=ray_backend.RAY_NAMESPACE, _node_ip_address=NODE_IP,
                         log_to_driver=False)
            ray_backend.connect(address)

        connect()
        deadline = time.monotonic() + START_GUARD_SECONDS
        while ray.cluster_resources().get("CPU", 0) < worker_nodes * cpus_per_node:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker nodes never joined: {ray.cluster_resources()}")
            time.sleep(0.2)
        head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
        yield SimpleNamespace(address=address, client_address=f"ray://{NODE_IP}:{client_port}", head_node_id=head,
                              connect=connect)
    finally:
        ray_backend.disconnect()
        _stop_nodes(nodes)
        shutil.rmtree(folder, ignore_errors=True)
