"""Runs in child processes (server/isolation.py): stop within 2 s mid-step, fair share for a slow run, OOM alone.

Real runs in real child processes; the deliberately bad runs are real RunSessions
with one flaw each (tests/api/run_doubles.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import torch
from api_helpers import make_settings, of_type, tiny_experiment, until
from run_doubles import GreedySession, StuckStepSession

from safetensors.torch import load_file

from server.channel import Outbox
from server.runner import RunSession
from server.scheduler import Scheduler
from server.schemas import Experiment
from server.store import Store


def experiment(steps: int | None = None, **train: Any) -> Experiment:
    document = tiny_experiment(steps or 10, **train)
    if steps is None:
        document["train"]["max_steps"] = None
        document["train"]["epochs"] = None  # until stopped
    return Experiment.model_validate(document)


class Harness:
    """A Scheduler whose runs live in child processes, with outboxes on this test's event loop."""

    def __init__(self, tmp_path, factory: Callable[..., Any] = RunSession, **overrides: Any) -> None:
        self.settings = make_settings(tmp_path, **overrides)
        self.store = Store(self.settings.data_dir)
        self.scheduler = Scheduler(self.store, self.settings, session_factory=factory, isolation="process")
        self.loop = asyncio.get_running_loop()

    def submit(self, exp: Experiment, session: str = "s1"):
        box = Outbox(self.loop, max_frames=1_000_000)
        return self.scheduler.submit(session, exp, subscriber=box), box

    def close(self) -> None:
        self.scheduler.shutdown()
        self.store.close()


def test_stop_ends_a_run_stuck_in_a_60_s_step_within_2_s_and_others_keep_training(tmp_path):
    async def body() -> None:
        h = Harness(tmp_path, factory=StuckStepSession)
        try:
            stuck, stuck_box = h.submit(experiment())
            await until(stuck_box, of_type("metrics"))
            await asyncio.sleep(0.5)  # it is now inside its minute-long step
            # A well-behaved run started now still trains: the stuck one is frozen outside its slices.
            h.scheduler._session_factory = RunSession  # noqa: SLF001 - the next run is a normal one
            healthy, healthy_box = h.submit(experiment(steps=300))
            healthy_final = await until(healthy_box, of_type("final"))
            assert healthy_final["stop_reason"] == "finished" and healthy_final["steps"] == 300

            asked = time.monotonic()
            await asyncio.wrap_future(h.scheduler.command(stuck.id, "stop"))
            final = await until(stuck_box, of_type("final"))
            took = time.monotonic() - asked
            status = await until(stuck_box, of_type("status"))
            assert took < 2.0, f"stop took {took:.2f} s"  # the bound, not a speed claim: the step lasts 60 s
            assert final["stop_reason"] == "stopped" and "cut off" in final["message"]
            assert status["state"] == "stopped"
            assert h.store.get_run(stuck.id).status == "stopped"
            assert not stuck.worker.scheduler.get(stuck.id).session  # its process is gone
        finally:
            h.close()

    asyncio.run(body())


def test_a_run_that_runs_out_of_memory_dies_alone(tmp_path):
    async def body() -> None:
        h = Harness(tmp_path, factory=GreedySession, max_run_memory_bytes=512 * 1024**2)
        try:
            greedy, greedy_box = h.submit(experiment())
            seen: list = []
            await until(greedy_box, of_type("summary"), seen)  # built: the factory can change for the next run
            h.scheduler._session_factory = RunSession  # noqa: SLF001 - the second run is a normal one
            healthy, healthy_box = h.submit(experiment(steps=200))
            error = await until(greedy_box, of_type("error"), seen)
            assert error["code"] == "out_of_memory", error
            assert "512 MiB" in error["message"] and "batch_size" in error["message"]
            assert (await until(greedy_box, of_type("status"), seen))["state"] == "failed"
            final = await until(healthy_box, of_type("final"))
            assert final["stop_reason"] == "finished" and final["steps"] == 200
            assert h.store.get_run(greedy.id).status == "failed"
            assert h.store.get_run(healthy.id).status == "finished"
        finally:
            h.close()

    asyncio.run(body())


def test_a_process_run_matches_an_in_process_run_step_for_step(tmp_path):
    """Same seed, same data: the child's run ends with the weights and figures of an in-process RunSession (torch
    is the oracle), and its weights reach the store through the pipe."""
    async def body() -> None:
        h = Harness(tmp_path)
        try:
            run, box = h.submit(experiment(steps=60))
            final = await until(box, of_type("final"))
            await until(box, of_type("status"))
            saved = load_file(str(h.store.get_run(run.id).weights_path))
        finally:
            h.close()
        local = RunSession(experiment(steps=60))
        local.start()
        while not local.done:
            local.advance(max_steps=1000, max_seconds=5.0)
        expected = local.trainer.model.state_dict()
        assert set(saved) == set(expected)
        # Not bit for bit: steps that feed a live view run through autograd with hooks, the others through the
        # fused NumPy path (server/fused_mlp.py), whose float32 sums are ordered differently.
        for name, tensor in expected.items():
            assert torch.allclose(saved[name], tensor, rtol=1e-4, atol=1e-6), name
        assert final["steps"] == local.final["steps"] == 60
        assert abs(final["val_loss"] - local.final["val_loss"]) < 1e-4

    asyncio.run(body())


def test_the_time_limit_ends_a_run_stuck_in_a_long_step(tmp_path):
    """Repro 4: DLPLAY_MAX_RUN_SECONDS=15 stopped a run with slow steps only at 194 s; now mid-step it is killed."""
    async def body() -> None:
        h = Harness(tmp_path, factory=StuckStepSession, max_run_seconds=1.0)
        try:
            run, box = h.submit(experiment())
            seen: list = []
            await until(box, of_type("metrics"), seen)
            error = await until(box, of_type("error"), seen)
            final = await until(box, of_type("final"), seen)
            assert error["code"] == "time_limit"
            assert final["stop_reason"] == "stopped" and "cut off" in final["message"]
            # Within the 60 s step: the limit (1 s), the housekeeping tick (1 s) and the stop's grace (1.5 s).
            assert final["wall_s"] < 20.0, final
            assert h.store.get_run(run.id).status == "stopped"
        finally:
            h.close()

    asyncio.run(body())


def test_a_run_in_a_spare_process_matches_an_in_process_run_and_the_pool_refills(tmp_path):
    """A run that takes a spare (forked and warmed ahead of need; its spec and shared-memory dataset come
    through the pipe) ends with the weights of an in-process RunSession; the pool forks another spare once
    starts have paused."""
    from server.isolation import spare_children

    pool = spare_children(1)
    pool.fill()
    try:
        deadline = time.monotonic() + 120  # a hang guard: the fork server warms up first
        while pool.ready < 1:
            assert time.monotonic() < deadline, "no spare was forked"
            time.sleep(0.05)
        spare_pid = pool._spares[0][0].pid  # noqa: SLF001 - which process the run must take

        async def body() -> dict:
            h = Harness(tmp_path)
            try:
                run, box = h.submit(experiment(steps=60))
                await until(box, of_type("summary"))
                assert run.session.process.pid == spare_pid  # the run took the spare: no fork for it
                final = await until(box, of_type("final"))
                await until(box, of_type("status"))
                return {"final": final, "weights": load_file(str(h.store.get_run(run.id).weights_path))}
            finally:
                h.close()

        got = asyncio.run(body())
        local = RunSession(experiment(steps=60))
        local.start()
        while not local.done:
            local.advance(max_steps=1000, max_seconds=5.0)
        for name, tensor in local.trainer.model.state_dict().items():
            assert torch.allclose(got["weights"][name], tensor, rtol=1e-4, atol=1e-6), name
        assert got["final"]["steps"] == 60 and abs(got["final"]["val_loss"] - local.final["val_loss"]) < 1e-4

        while pool.ready < 1:  # refilled after a quiet moment
            assert time.monotonic() < deadline, "the pool did not fork a new spare"
            time.sleep(0.05)
        assert pool._spares[0][0].pid != spare_pid  # noqa: SLF001
    finally:
        spare_children(0)
        pool.close()
