"""Runs on a Ray cluster (server/ray_backend.py): real training through the Scheduler on a local cluster.

The module's fixture starts a real Ray cluster on this machine (tests/cluster/local_ray_cluster.py): a head
(no CPUs: it only coordinates, as on a real cluster) and two worker nodes, each a ``ray start --block``
process of its own on loopback, torn down at the end. The runs are real RunSessions; the deliberately bad
ones come from tests/api/run_doubles.py, which the nodes import (their PYTHONPATH has tests/api). Skipped
when Ray is not installed (``pip install -e .[cluster]``). Timeouts are hang guards only; no test asserts
a duration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "api"))  # the server tests' helpers and run doubles

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from api_helpers import WsClient, make_settings, of_type, running_server, tiny_experiment, until  # noqa: E402
from local_ray_cluster import local_ray_cluster  # noqa: E402
from run_doubles import GreedySession, StuckStepSession  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from server import ray_backend  # noqa: E402
from server.builder import build_model  # noqa: E402
from server.channel import Outbox  # noqa: E402
from server.datasets import load_dataset  # noqa: E402
from server.datasets.uploads import parse_upload, save_upload  # noqa: E402
from server.runner import RunSession  # noqa: E402
from server.scheduler import Scheduler  # noqa: E402
from server.schemas import Experiment  # noqa: E402
from server.store import Store  # noqa: E402

WORKER_NODES = 2
CPUS_PER_WORKER_NODE = 2  # logical CPUs: runs each node trains at once


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[SimpleNamespace]:
    """A head and two worker nodes on loopback; the test process is connected as the server would be."""
    with local_ray_cluster(WORKER_NODES, CPUS_PER_WORKER_NODE) as cluster:
        yield cluster


# ---------------------------------------------------------------------------
# Runs through the Scheduler
# ---------------------------------------------------------------------------


def experiment(steps: int | None = None, *, probes: bool = True, data: dict[str, Any] | None = None,
               **train: Any) -> Experiment:
    document = tiny_experiment(steps or 10, probes=probes, **train)
    if steps is None:
        document["train"]["max_steps"] = None
        document["train"]["epochs"] = None  # until stopped
    if data is not None:
        document["data"] = data
    return Experiment.model_validate(document)


class Harness:
    """A Scheduler whose runs live where ``isolation`` says, with outboxes on this test's event loop."""

    def __init__(self, folder: Path, isolation: str = "ray", factory: Callable[..., Any] = RunSession,
                 **overrides: Any) -> None:
        self.settings = make_settings(folder, **overrides)
        self.store = Store(self.settings.data_dir)
        self.scheduler = Scheduler(self.store, self.settings, session_factory=factory, isolation=isolation)
        self.loop = asyncio.get_running_loop()

    def submit(self, exp: Experiment, session: str = "s1"):
        box = Outbox(self.loop, max_frames=1_000_000)
        return self.scheduler.submit(session, exp, subscriber=box), box

    def close(self) -> None:
        self.scheduler.shutdown()
        self.store.close()


async def run_to_end(h: Harness, exp: Experiment) -> tuple[Any, list[dict[str, Any]]]:
    """Submit ``exp`` and read its stream up to its final status; returns the run and every message."""
    run, box = h.submit(exp)
    seen: list[dict[str, Any]] = []
    await until(box, of_type("final"), seen)
    await until(box, lambda m: m["type"] == "status" and m["state"] in ("finished", "stopped", "failed"), seen)
    return run, seen


def torch_val_loss(exp: Experiment, weights: dict[str, torch.Tensor]) -> float:
    """The oracle: the saved weights in a model built from the document, cross-entropy over the validation split."""
    data = load_dataset(exp.data)
    model, _ = build_model(exp.network, data.input_shape, data.num_classes)
    model.load_state_dict(weights)
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(data.x_val), data.y_val, reduction="mean"))


async def until_process_gone(pid: int, guard: float = 30.0) -> None:
    """Wait until process ``pid`` has ended (a hang guard, not a timing)."""
    deadline = asyncio.get_running_loop().time() + guard
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # a zombie (ended, not yet reaped by its fork server) counts as gone
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        assert asyncio.get_running_loop().time() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


def test_a_ray_run_trains_on_a_worker_node_like_a_process_run(ray_cluster, tmp_path):
    """Same seed, same data: a run on a worker node (its node host's child process) ends with the figures and weights of a run in a
    child process; the saved weights give its reported validation loss in plain PyTorch; every message comes
    back through the channel with contiguous sequence numbers."""
    exp = experiment(steps=60, probes=False)  # no image frames: nothing is coalesced, so every seq is delivered

    async def on(isolation: str, folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict, dict | None]:
        h = Harness(folder, isolation=isolation)
        try:
            run, box = h.submit(exp)
            seen: list[dict[str, Any]] = []
            await until(box, of_type("summary"), seen)
            host = await asyncio.to_thread(run.session.where) if isolation == "ray" else None
            final = await until(box, of_type("final"), seen)
            await until(box, of_type("status", state="finished"), seen)
            weights = load_file(str(h.store.get_run(run.id).weights_path))
            return final, seen, weights, host
        finally:
            h.close()

    ray_final, ray_seen, ray_weights, host = asyncio.run(on("ray", tmp_path / "ray"))
    process_final, _, process_weights, _ = asyncio.run(on("process", tmp_path / "process"))

    assert host["node_id"] != ray_cluster.head_node_id, "the head has no CPUs: the run must be on a worker node"
    assert host["pid"] != os.getpid()
    seqs = [m["seq"] for m in ray_seen]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert [m["type"] for m in ray_seen][:3] == ["status", "summary", "status"]  # queued, the network, running
    assert ray_final["stop_reason"] == "finished" and ray_final["steps"] == process_final["steps"] == 60
    assert set(ray_weights) == set(process_weights)
    for name, tensor in process_weights.items():
        assert torch.allclose(ray_weights[name], tensor, rtol=1e-4, atol=1e-6), name
    assert abs(ray_final["val_loss"] - process_final["val_loss"]) < 1e-4
    assert abs(ray_final["val_loss"] - torch_val_loss(exp, ray_weights)) < 1e-4


def test_live_views_and_commands_reach_a_ray_run(ray_cluster, tmp_path):
    """The default live views stream from the node (a boundary image), a live change of the learning rate is
    applied between steps, and pause/resume work; seq only ever increases on the client's side."""
    async def body() -> None:
        h = Harness(tmp_path)
        try:
            run, box = h.submit(experiment())
            seen: list[dict[str, Any]] = []
            await until(box, of_type("boundary"), seen)
            await asyncio.wrap_future(h.scheduler.command(run.id, "set", lr=0.01))
            change = await until(box, of_type("hyperparams"), seen)
            assert change["values"]["lr"] == pytest.approx(0.01)
            await asyncio.wrap_future(h.scheduler.command(run.id, "pause"))
            await until(box, of_type("status", state="paused"), seen)
            await asyncio.wrap_future(h.scheduler.command(run.id, "resume"))
            await until(box, of_type("status", state="running"), seen)
            await asyncio.wrap_future(h.scheduler.command(run.id, "stop"))
            await until(box, of_type("status", state="stopped"), seen)
            seqs = [m["seq"] for m in seen]
            assert seqs == sorted(set(seqs)), "sequence numbers went backwards or repeated"
        finally:
            h.close()

    asyncio.run(body())


def test_stop_ends_a_ray_run_and_saves_its_weights_and_kills_one_stuck_mid_step(ray_cluster, tmp_path):
    async def body() -> None:
        h = Harness(tmp_path, factory=StuckStepSession)
        try:
            stuck, stuck_box = h.submit(experiment())
            await until(stuck_box, of_type("metrics"))
            h.scheduler._session_factory = RunSession  # noqa: SLF001 - the next run is a normal one
            normal, normal_box = h.submit(experiment())
            await until(normal_box, of_type("metrics"))

            await asyncio.wrap_future(h.scheduler.command(normal.id, "stop"))
            final = await until(normal_box, of_type("final"))
            assert final["stop_reason"] == "stopped" and final["steps"] > 0
            assert (await until(normal_box, of_type("status")))["state"] == "stopped"
            assert h.store.get_run(normal.id).weights_path is not None  # a clean stop saves the weights

            where = await asyncio.to_thread(stuck.session.where)
            await asyncio.wrap_future(h.scheduler.command(stuck.id, "stop"))  # its step lasts a minute
            final = await until(stuck_box, of_type("final"))
            assert final["stop_reason"] == "stopped" and "cut off" in final["message"]
            assert (await until(stuck_box, of_type("status")))["state"] == "stopped"
            assert h.store.get_run(stuck.id).status == "stopped"
            # Killed, not left computing on the cluster (the nodes are on this machine: its pid is visible here),
            # and its node's host goes on (the next run trains there).
            await until_process_gone(where["pid"])
            again, again_box = h.submit(experiment(steps=20))
            assert (await until(again_box, of_type("final")))["stop_reason"] == "finished"
        finally:
            h.close()

    asyncio.run(body())


def test_failing_ray_runs_report_their_errors_and_others_go_on(ray_cluster, tmp_path):
    """A run whose data cannot load, and one whose process on its node is killed from outside, each fail with
    their own error; a run beside them finishes."""
    async def body() -> None:
        h = Harness(tmp_path)
        try:
            missing, missing_box = h.submit(experiment(data={"name": "upload:00000000deadbeef"}))
            doomed, doomed_box = h.submit(experiment())
            healthy, healthy_box = h.submit(experiment(steps=100))

            seen: list[dict[str, Any]] = []
            error = await until(missing_box, of_type("error"), seen)
            assert "no such upload" in error["message"] and "Fix" in error["message"], error
            assert (await until(missing_box, of_type("status"), seen))["state"] == "failed"

            await until(doomed_box, of_type("metrics"))
            host = await asyncio.to_thread(doomed.session.where)
            os.kill(host["pid"], signal.SIGKILL)  # a node's OOM killer (or a crash in native code)
            error = await until(doomed_box, of_type("error"))
            # What a child process says on one machine: a SIGKILL from outside is most likely the OOM killer.
            assert error["code"] == "out_of_memory" and "SIGKILL" in error["message"], error["message"]
            assert (await until(doomed_box, of_type("status")))["state"] == "failed"

            final = await until(healthy_box, of_type("final"))
            assert final["stop_reason"] == "finished" and final["steps"] == 100
            assert h.store.get_run(missing.id).status == "failed"
            assert h.store.get_run(doomed.id).status == "failed"
        finally:
            h.close()

    asyncio.run(body())


def test_a_ray_run_that_runs_out_of_memory_fails_alone(ray_cluster, tmp_path):
    async def body() -> None:
        h = Harness(tmp_path, factory=GreedySession, max_run_memory_bytes=512 * 1024**2)
        try:
            greedy, greedy_box = h.submit(experiment())
            seen: list[dict[str, Any]] = []
            error = await until(greedy_box, of_type("error"), seen)
            assert error["code"] == "out_of_memory", error
            assert "512 MiB" in error["message"] and "batch_size" in error["message"]
            assert (await until(greedy_box, of_type("status"), seen))["state"] == "failed"
        finally:
            h.close()

    asyncio.run(body())


def test_an_uploaded_dataset_travels_with_its_run_to_the_node(ray_cluster, tmp_path):
    """The upload lies on the server's disk only: the run's node host gets the file with the run and trains on it."""
    rows = [f"{x / 10:.2f},{(x * 7 % 10) / 10:.2f},{int(x % 2)}" for x in range(120)]
    uploaded = parse_upload("points.csv", ("a,b,label\n" + "\n".join(rows)).encode(), max_bytes=10**6,
                            max_examples=1000)

    async def body() -> None:
        h = Harness(tmp_path)
        try:
            upload_id = save_upload(uploaded, h.store.uploads_dir)
            run, seen = await run_to_end(h, experiment(steps=30, data={"name": f"upload:{upload_id}", "seed": 1}))
            summary = next(m for m in seen if m["type"] == "summary")
            assert summary["dataset"]["name"] == f"upload:{upload_id}"
            assert summary["dataset"]["n_train"] + summary["dataset"]["n_val"] == 120
            assert seen[-1]["state"] == "finished", seen[-3:]
        finally:
            h.close()

    asyncio.run(body())


def test_a_student_trains_on_the_cluster_through_the_server(ray_cluster, tmp_path):
    """The whole path: the app starts with isolation "ray" (connecting to the cluster), a websocket client
    starts a run, and its stream comes back through the one server, ending with its weights saved."""
    settings = make_settings(tmp_path / "data", isolation="ray", ray_address=ray_cluster.address)
    try:
        with running_server(settings) as srv, WsClient(srv.ws, srv.session("alice")) as ws:
            run_id = ws.start(tiny_experiment(50))
            final = ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "final")
            ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "finished")
            assert final["stop_reason"] == "finished" and final["steps"] == 50
            assert ws.of(run_id, "summary") and ws.of(run_id, "metrics")
            seqs = [m["seq"] for m in ws.of(run_id)]
            assert seqs == sorted(set(seqs))
            assert srv.app.state.store.get_run(run_id).weights_path is not None
    finally:
        ray_cluster.connect()  # the server's shutdown disconnected this process from the cluster


def test_each_worker_node_has_one_warm_host_at_the_normal_priority(ray_cluster):
    """One host per node with CPUs (none on the CPU-less head), its engine warmed, its runs at niceness 0."""
    ray_backend.HOSTS.refresh()
    hosts = ray_backend.HOSTS.wait_ready(timeout=120)
    assert len(hosts) == WORKER_NODES
    assert ray_cluster.head_node_id not in {h["node_id"] for h in hosts}
    assert len({h["node_id"] for h in hosts}) == WORKER_NODES
    assert all(h["niceness"] == 0 and h["warm_up_seconds"] > 0 for h in hosts), hosts


def test_the_scheduler_has_a_worker_per_cluster_cpu(ray_cluster, tmp_path):
    assert ray_backend.worker_count(max_active_runs=32) == WORKER_NODES * CPUS_PER_WORKER_NODE
    assert ray_backend.worker_count(max_active_runs=3) == 3  # never more workers than runs at once


def test_without_an_address_ray_isolation_says_how_to_fix_it():
    with pytest.raises(ray_backend.RayUnavailable, match="Fix: start one with `ray start --head`"):
        ray_backend.connect(None)
