"""Ray is an optional extra: without it the server says how to install it (runs whether or not Ray is installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from server import ray_backend
from server.app import serve


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(ray_backend.RayUnavailable, match=r"Fix: pip install -e \.\[cluster\]"):
        ray_backend.connect("auto")


def test_serving_on_ray_without_ray_stops_before_the_server_starts_with_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)

    def started(*args, **kwargs):
        raise AssertionError("the server started without Ray")

    monkeypatch.setattr("uvicorn.run", started)  # a regression fails here instead of serving forever
    with pytest.raises(SystemExit) as stopped:
        serve("127.0.0.1", 8765, ray_address="127.0.0.1:6379")
    assert str(stopped.value).startswith("dlplay: isolation 'ray' needs Ray") and "[cluster]" in str(stopped.value)


def test_importing_the_backend_needs_no_ray(monkeypatch):
    """Nothing imports Ray until a Ray run is made: the module and its spec work without it."""
    monkeypatch.setitem(sys.modules, "ray", None)
    assert ray_backend.RUN_CPUS == 1
    assert ray_backend.describe_error(ValueError("bad lr"), "set_hyperparams") == ("value", "bad_arguments", "bad lr")
    assert ray_backend.describe_error(MemoryError(), "advance")[:2] == ("oom", "out_of_memory")


def _spec(run_id: str = "r1", steps: int = 40, **kwargs) -> ray_backend.RaySpec:
    from server.runner import RunSession
    from server.schemas import Experiment

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
    from api_helpers import tiny_experiment

    experiment = Experiment.model_validate(tiny_experiment(steps, probes=False))
    return ray_backend.spec_for_run(run_id, RunSession, experiment, {"run_id": run_id, "device": "cpu", **kwargs},
                                    memory_limit_bytes=None)


def test_a_node_host_runs_whole_runs_in_child_processes_and_replies_as_a_child_does(monkeypatch):
    """RunHost without Ray: open forks the run's child and opens it, advance to the end, the weights once, errors
    as (kind, code, text), the speed limit's next step as seconds from now (the server's clock is not the
    node's), freeze/thaw by generation, and a kill that ends one run's process and not the other's."""
    monkeypatch.setitem(sys.modules, "ray", None)
    host = ray_backend.RunHost()
    try:
        _run_two_runs_on(host)
    finally:
        host.close()  # a frozen child left behind would hold up the test process's exit


def _process_state(pid: int) -> str:
    """The kernel's one-letter state of a process (R, S, T: stopped, ...)."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


def _run_two_runs_on(host: ray_backend.RunHost) -> None:
    import os
    import time

    assert host.ready()["node_id"] is None and host.ready()["pid"] == os.getpid()  # no Ray here: no node id
    messages, error, state, weights = host.open(_spec("r1"), {"first_steps": 10, "first_seconds": 1.0})
    assert error is None and [m["type"] for m in messages][:3] == ["summary", "status", "metrics"]
    first_metrics = next(m for m in messages if m["type"] == "metrics")
    assert state.steps == first_metrics["step"] <= 10 and weights is None  # a quick open ends at its first metrics
    other = host.open(_spec("r2", steps=1000), {"first_steps": 10, "first_seconds": 1.0})
    assert other[1] is None
    pids = {run: host.where(run)["pid"] for run in ("r1", "r2")}
    assert len(set(pids.values()) | {os.getpid()}) == 3  # a process per run, neither the host

    messages, error, state, _ = host.call("r1", "set_speed", {"steps_per_s": 0.5})
    assert error is None and 0.0 < state.next_step_at <= 2.0  # seconds to wait, not a time on this clock
    host.call("r1", "set_speed", {"steps_per_s": None})
    host.set_frozen("r1", 2, True)
    host.set_frozen("r1", 1, False)  # older than the freeze: ignored, so the child stays stopped
    deadline = time.monotonic() + 10.0  # a hang guard: the kernel stops it when it next runs
    while _process_state(pids["r1"]) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _process_state(pids["r1"]) == "T"
    host.set_frozen("r1", 3, False)
    sent = []
    while not state.done:
        messages, error, state, weights = host.call("r1", "advance", {"max_steps": 1000, "max_seconds": 5.0})
        assert error is None
        sent.append(weights)
    assert state.final["steps"] == 40 and sent[-1] is not None and all(w is None for w in sent[:-1])
    assert host.call("r1", "refresh", {})[3] is None  # the weights go once
    _, error, _, _ = host.call("r1", "launch", {})
    assert error == ("value", "unknown_command", "unknown operation 'launch'")
    _, error, _, _ = host.call("r1", "set_hyperparams", {"lr": -1.0})
    assert error[:2] == ("value", "bad_arguments")

    host.kill("r2")  # stop's last resort: the run's process ends, the host and its other runs go on
    _, error, _, _ = host.call("r2", "advance", {"max_steps": 10, "max_seconds": 1.0})
    assert error[:2] == ("crash", "run_crashed")
    assert host.call("r1", "refresh", {})[1] is None
    assert host.run_count() == 1


def test_a_node_host_reports_a_run_it_cannot_load_or_that_dies(monkeypatch):
    """A dataset that does not load fails that run's open with the load's own message; a child killed from
    outside (SIGKILL, as the kernel's OOM killer does) fails with out_of_memory, as on one machine."""
    monkeypatch.setitem(sys.modules, "ray", None)
    host = ray_backend.RunHost()
    try:
        _load_failure_and_crash_on(host)
    finally:
        host.close()


def _load_failure_and_crash_on(host: ray_backend.RunHost) -> None:
    import os
    import signal

    spec = _spec("bad")
    spec.experiment = spec.experiment.model_copy(update={"data": spec.experiment.data.model_copy(
        update={"name": "upload:00000000deadbeef"})})
    spec.files = {}
    _, error, _, _ = host.open(spec, {"first_steps": 10, "first_seconds": 1.0})
    assert error[0] == "value" and "no such upload" in error[2] and "Fix" in error[2], error
    assert host.open(_spec("doomed", steps=10**6), {"first_steps": 10, "first_seconds": 1.0})[1] is None
    os.kill(host.where("doomed")["pid"], signal.SIGKILL)
    _, error, _, _ = host.call("doomed", "advance", {"max_steps": 10, "max_seconds": 1.0})
    # What a child process says on one machine: a SIGKILL from outside is most likely the OOM killer.
    assert error[:2] == ("oom", "out_of_memory") and "killed (SIGKILL)" in error[2], error
    assert host.run_count() == 0


def test_what_only_the_servers_disk_has_travels_in_the_spec(tmp_path):
    """An uploaded dataset's file and train.init_from's weights go with the run; a missing upload is left for
    the run's own load to report."""
    import torch
    from safetensors.torch import save_file

    from server.datasets.uploads import parse_upload, save_upload

    rows = "\n".join(f"{i / 10:.1f},{i % 3 / 3:.2f},{i % 2}" for i in range(40))
    upload_id = save_upload(parse_upload("p.csv", ("a,b,label\n" + rows).encode(), max_bytes=10**6, max_examples=100),
                            tmp_path)
    weights_file = tmp_path / "w.safetensors"
    save_file({"hidden.weight": torch.ones(2, 2)}, str(weights_file))
    spec = _spec(uploads_dir=tmp_path, init_weights=weights_file)
    assert spec.files is None and "uploads_dir" not in spec.kwargs  # spiral: nothing to ship
    assert torch.equal(spec.kwargs["init_weights"]["hidden.weight"], torch.ones(2, 2))

    spec.experiment = spec.experiment.model_copy(update={"data": spec.experiment.data.model_copy(
        update={"name": f"upload:{upload_id}"})})
    shipped = ray_backend.spec_for_run("r2", spec.factory, spec.experiment, {"uploads_dir": tmp_path},
                                       memory_limit_bytes=None)
    assert shipped.files == {f"{upload_id}.npz": (tmp_path / f"{upload_id}.npz").read_bytes()}
    (tmp_path / f"{upload_id}.npz").unlink()
    missing = ray_backend.spec_for_run("r3", spec.factory, spec.experiment, {"uploads_dir": tmp_path},
                                       memory_limit_bytes=None)
    assert missing.files == {}  # the actor still gets an (empty) uploads folder: "no such upload. Fix: ..."
