"""The scheduler, channels and outboxes, with a stand-in RunSession (see conftest.FakeSession).

These pin down the scheduling rules (round robin, queue, limits, failure
isolation, commands between slices) without depending on how fast real
training is; tests/api/test_ws.py runs the same paths with the real RunSession.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import pytest

from server.channel import Frame, Outbox, RunChannel
from server.scheduler import Scheduler, SchedulerError
from server.schemas import Experiment
from server.store import Store

from api_helpers import HANG_GUARD, FakeSession, make_settings, of_type, tiny_experiment, until


def experiment(name: str = "tiny", steps: int = 100, log_every: int = 10) -> Experiment:
    return Experiment.model_validate(tiny_experiment(steps, name=name, log_every=log_every))


class Harness:
    """A Scheduler with FakeSessions, and outboxes on this test's event loop."""

    def __init__(self, tmp_path, **overrides: Any) -> None:
        overrides.setdefault("slice_seconds", 0.002)
        self.settings = make_settings(tmp_path, **overrides)
        self.store = Store(self.settings.data_dir)
        self.scheduler = Scheduler(self.store, self.settings, session_factory=FakeSession)
        self.loop = asyncio.get_running_loop()

    def outbox(self) -> Outbox:
        return Outbox(self.loop, max_frames=100_000)

    def submit(self, name: str = "tiny", steps: int = 100, session: str = "s1", log_every: int = 10):
        box = self.outbox()
        run = self.scheduler.submit(session, experiment(name, steps, log_every), subscriber=box)
        return run, box

    async def wait(self, future) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(future), HANG_GUARD)

    def close(self) -> None:
        self.scheduler.shutdown()
        self.store.close()


def run_async(fn):
    """Run an async test body on a fresh loop (no pytest plugin needed)."""
    def wrapper(tmp_path):
        return asyncio.run(fn(tmp_path))
    wrapper.__name__ = fn.__name__
    return wrapper


@pytest.fixture(autouse=True)
def _reset_fake():
    FakeSession.calls = []
    FakeSession.step_delay = 0.0
    yield


# ---------------------------------------------------------------------------
# Outbox and channel
# ---------------------------------------------------------------------------


@run_async
async def test_outbox_keeps_every_metric_and_coalesces_pending_images(tmp_path):
    box = Outbox(asyncio.get_running_loop(), max_frames=100)
    frames = [Frame(text=str(i), type=t, run_id="r", seq=i) for i, t in enumerate(
        ["metrics", "boundary", "metrics", "filters", "boundary", "metrics", "boundary"], start=1)]
    box.put(frames)
    out = []
    while len(box):
        out.append(box.pop_nowait())
    assert [(f.type, f.seq) for f in out] == [("metrics", 1), ("metrics", 3), ("filters", 4), ("metrics", 6), ("boundary", 7)]
    assert box.coalesced == 2
    # Once sent, an image is not replaced any more: the next one queues normally.
    box.put([Frame(text="x", type="boundary", run_id="r", seq=8), Frame(text="y", type="boundary", run_id="other", seq=1)])
    assert len(box) == 2  # different runs never coalesce


@run_async
async def test_outbox_overflow_marks_it_for_disconnection(tmp_path):
    box = Outbox(asyncio.get_running_loop(), max_frames=3)
    box.put([Frame(text=str(i), type="metrics", run_id="r", seq=i) for i in range(5)])
    assert box.overflowed


@run_async
async def test_channel_replays_every_logged_message_after_seq_and_the_newest_images(tmp_path):
    channel = RunChannel("r1")
    messages = []
    for step in range(1, 31):
        messages.append({"type": "metrics", "step": step})
        if step % 3 == 0:
            messages.append({"type": "boundary", "step": step})
    stamped = channel.publish(messages)
    assert [m["seq"] for m in stamped] == list(range(1, len(messages) + 1))
    assert all(m["run_id"] == "r1" for m in stamped)
    box = Outbox(asyncio.get_running_loop())
    after = 17
    replayed = channel.subscribe(box, after_seq=after)
    await asyncio.sleep(0)  # deliveries are scheduled with call_soon_threadsafe
    got = []
    while len(box):
        got.append(json.loads(box.pop_nowait().text))
    expected_metrics = [m["seq"] for m in stamped if m["type"] == "metrics" and m["seq"] > after]
    assert [m["seq"] for m in got if m["type"] == "metrics"] == expected_metrics
    assert [m["step"] for m in got if m["type"] == "boundary"] == [30]  # only the newest image
    assert [m["seq"] for m in got] == sorted(m["seq"] for m in got) and replayed == len(got)
    # Live messages follow the replay.
    channel.publish([{"type": "metrics", "step": 31}])
    await asyncio.sleep(0)
    assert json.loads(box.pop_nowait().text)["seq"] == stamped[-1]["seq"] + 1


# ---------------------------------------------------------------------------
# Scheduling
# ---------------------------------------------------------------------------


@run_async
async def test_runs_share_the_device_round_robin(tmp_path):
    h = Harness(tmp_path)
    FakeSession.step_delay = 0.0005
    try:
        runs = [h.submit(steps=1_000_000)[0] for _ in range(3)]
        ids = {r.id for r in runs}
        while len(FakeSession.calls) < 60 or not ids <= set(FakeSession.calls):
            await asyncio.sleep(0.01)
        calls = list(FakeSession.calls)
        start = max(calls.index(i) for i in ids) + 1
        cycle = calls[start:start + 45]
        for k in range(len(cycle) - 2):
            assert set(cycle[k:k + 3]) == ids, f"not round robin: {cycle}"
        for run in runs:
            await h.wait(h.scheduler.command(run.id, "stop"))
    finally:
        h.close()


@run_async
async def test_a_failing_run_ends_alone_and_the_others_finish(tmp_path):
    h = Harness(tmp_path)
    try:
        crash, crash_box = h.submit("crash", steps=10_000)
        good, good_box = h.submit("tiny", steps=200)
        bad, bad_box = h.submit("bad")
        crash_seen: list = []
        error = await until(crash_box, of_type("error"), crash_seen)
        assert error["code"] == "run_failed" and "boom" in error["message"]
        final = await until(crash_box, of_type("final"), crash_seen)
        assert final["stop_reason"] == "error" and final["steps"] == 20
        await until(crash_box, of_type("status", state="failed"), crash_seen)
        bad_error = await until(bad_box, of_type("error"))
        assert bad_error["code"] == "invalid_experiment" and "Fix:" in bad_error["message"]
        await until(bad_box, of_type("status", state="failed"))
        good_final = await until(good_box, of_type("final"))
        assert good_final["stop_reason"] == "finished" and good_final["steps"] == 200
        await until(good_box, of_type("status", state="finished"))
        statuses = {r.id: r.status for r in h.store.list_runs("s1")}
        assert statuses == {crash.id: "failed", good.id: "finished", bad.id: "failed"}
        assert h.store.get_run(good.id).weights_path  # weights written on finish
        assert len(h.store.metrics(good.id)) == 20  # every metric point persisted (under the cap)
        assert h.scheduler.counts() == {"active": 0, "queued": 0}
    finally:
        h.close()


@run_async
async def test_queue_positions_admission_and_stopping_a_queued_run(tmp_path):
    h = Harness(tmp_path, max_active_runs=1)
    try:
        first, first_box = h.submit(steps=1_000_000)
        await until(first_box, of_type("summary"))
        second, second_box = h.submit(steps=50)
        third, third_box = h.submit(steps=50)
        assert (await until(second_box, of_type("status")))["position"] == 1
        assert (await until(third_box, of_type("status")))["position"] == 2
        assert h.scheduler.counts() == {"active": 1, "queued": 2}
        # A queued run refuses commands other than stop, with a clear reason.
        with pytest.raises(SchedulerError, match="waiting in the queue"):
            await h.wait(h.scheduler.command(second.id, "pause"))
        await h.wait(h.scheduler.command(second.id, "stop"))
        stopped = await until(second_box, of_type("final"))
        assert stopped["stop_reason"] == "stopped" and stopped["steps"] == 0
        assert (await until(third_box, of_type("status")))["position"] == 1  # moved up
        await h.wait(h.scheduler.command(first.id, "stop"))
        await until(third_box, of_type("summary"))  # admitted once the slot freed
        await until(third_box, of_type("final"))
        assert h.store.get_run(second.id).status == "stopped"
    finally:
        h.close()


@run_async
async def test_per_session_and_queue_limits(tmp_path):
    h = Harness(tmp_path, max_active_runs=4, max_active_runs_per_session=1, max_queued_runs_per_session=1)
    try:
        a, _ = h.submit(steps=1_000_000, session="alice")
        b, b_box = h.submit(steps=1_000_000, session="alice")
        assert (await until(b_box, of_type("status")))["state"] == "queued"
        with pytest.raises(SchedulerError, match="stop one of your runs") as refused:
            h.submit(steps=10, session="alice")
        assert refused.value.code == "too_many_runs"
        c, c_box = h.submit(steps=30, session="bob")  # another session is not held up by alice's queue
        await until(c_box, of_type("final"))
        for run in (a, b):
            await h.wait(h.scheduler.command(run.id, "stop"))
    finally:
        h.close()


@run_async
async def test_commands_run_between_slices(tmp_path):
    h = Harness(tmp_path)
    FakeSession.step_delay = 0.0005
    try:
        run, box = h.submit(steps=1_000_000, log_every=1)
        seen: list = []
        await until(box, of_type("metrics"), seen)
        await h.wait(h.scheduler.command(run.id, "pause"))
        await until(box, of_type("status", state="paused"), seen)
        step_before = run.session.state.steps
        await h.wait(h.scheduler.command(run.id, "step"))
        metrics = await until(box, of_type("metrics", step=step_before + 1), seen)
        assert run.session.state.steps == step_before + 1 == metrics["step"]
        await h.wait(h.scheduler.command(run.id, "set", lr=0.5))
        assert (await until(box, of_type("hyperparams"), seen))["values"] == {"lr": 0.5}
        with pytest.raises(ValueError, match="positive"):
            await h.wait(h.scheduler.command(run.id, "set", lr=-1))
        await h.wait(h.scheduler.command(run.id, "probe", probe="saliency", index=3))
        assert (await until(box, of_type("saliency"), seen))["index"] == 3
        with pytest.raises(ValueError, match="unknown probe"):
            await h.wait(h.scheduler.command(run.id, "probe", probe="nonsense"))
        await h.wait(h.scheduler.command(run.id, "predict", input=[0.1, 0.2]))
        assert (await until(box, of_type("prediction"), seen))["input"] == [0.1, 0.2]
        assert run.session.state.steps == step_before + 1  # still paused
        await h.wait(h.scheduler.command(run.id, "resume"))
        await until(box, of_type("status", state="running"), seen)
        await until(box, of_type("metrics", step=step_before + 5), seen)
        session = run.session.session  # the FakeSession inside its in-process handle
        await h.wait(h.scheduler.command(run.id, "stop"))
        assert (await until(box, of_type("final"), seen))["stop_reason"] == "stopped"
        assert session.closed and run.session is None  # stop frees the model at once
        assert h.store.get_run(run.id).status == "stopped"
        with pytest.raises(SchedulerError, match="has ended"):
            await h.wait(h.scheduler.command(run.id, "resume"))
        seqs = [m["seq"] for m in seen]
        assert seqs == sorted(seqs)
    finally:
        h.close()


@run_async
async def test_a_finished_run_stays_loaded_for_probes(tmp_path):
    h = Harness(tmp_path)
    try:
        run, box = h.submit(steps=30)
        await until(box, of_type("final"))
        await h.wait(h.scheduler.command(run.id, "probe", probe="saliency", index=1))
        await until(box, of_type("saliency"))
        await h.wait(h.scheduler.command(run.id, "predict", input=[1, 2]))
        await until(box, of_type("prediction"))
    finally:
        h.close()


@run_async
async def test_the_wall_time_limit_stops_a_run(tmp_path):
    h = Harness(tmp_path, max_run_seconds=0.2)
    FakeSession.step_delay = 0.001
    try:
        run, box = h.submit(steps=100_000_000)
        error = await until(box, of_type("error"))
        assert error["code"] == "time_limit" and "limit" in error["message"]
        await until(box, of_type("final"))
        assert h.store.get_run(run.id).status == "stopped"
    finally:
        h.close()


@run_async
async def test_a_client_that_never_reads_does_not_hold_up_training(tmp_path):
    h = Harness(tmp_path)
    try:
        run, box = h.submit(steps=2000)  # nobody reads `box` until the run has finished
        while h.store.get_run(run.id).status != "finished":
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        kinds = [json.loads(box.pop_nowait().text)["type"] for _ in range(len(box))]
        assert kinds.count("metrics") == 200  # every metric point kept
        assert kinds.count("boundary") == 1  # 2000 image messages coalesced into the newest
    finally:
        h.close()


@run_async
async def test_shutdown_marks_active_and_queued_runs_interrupted(tmp_path):
    h = Harness(tmp_path, max_active_runs=1)
    run, box = h.submit(steps=100_000_000)
    await until(box, of_type("summary"))
    queued, _ = h.submit(steps=10)
    h.scheduler.shutdown()
    assert h.store.get_run(run.id).status == "interrupted"
    assert h.store.get_run(queued.id).status == "interrupted"
    with pytest.raises(SchedulerError, match="shutting down"):
        h.submit()
    h.store.close()


@run_async
async def test_deleting_an_active_run_frees_its_slot(tmp_path):
    h = Harness(tmp_path, max_active_runs=1)
    try:
        run, box = h.submit(steps=100_000_000)
        await until(box, of_type("summary"))
        waiting, waiting_box = h.submit(steps=20)
        session = run.session.session  # the FakeSession inside its in-process handle
        await h.wait(h.scheduler.delete(run.id))
        assert session.closed and h.scheduler.get(run.id) is None
        await until(waiting_box, of_type("final"))
    finally:
        h.close()


@run_async
async def test_ended_runs_are_released_beyond_the_retention_limit(tmp_path):
    h = Harness(tmp_path, max_retained_runs=1)
    try:
        first, first_box = h.submit(steps=20)
        await until(first_box, of_type("final"))
        session = h.scheduler.get(first.id).session.session  # the FakeSession inside its handle
        second, second_box = h.submit(steps=20)
        await until(second_box, of_type("final"))
        while h.scheduler.get(first.id) is not None:  # released at the worker's next housekeeping
            await asyncio.sleep(0.05)
        assert session.closed
        assert h.scheduler.get(second.id).session is not None  # the newest stays loaded for probes
        assert not h.scheduler.subscribe(first.id, h.outbox())  # the caller replays it from the store
        assert h.store.get_run(first.id).status == "finished"
    finally:
        h.close()
