"""The teacher's live view of a class (issue 10): /ws/class, and the teacher on students' runs.

Against a real uvicorn server with the real RunSession: a student joins with the code and
trains a tiny run; the dashboard's snapshot and updates must carry that run's own figures
(the last metrics message's ``train_loss`` is the summary's last loss point). The teacher may
watch, pause, resume and stop a member's run on the normal /ws (not edit it); a student still
cannot reach another's run; only the teacher opens /ws/class. The curve bound is checked on
``DecimatedSeries`` directly. Timeouts are hang guards only.
"""

from __future__ import annotations

import json

import httpx
import pytest
from api_helpers import HANG_GUARD, WsClient, is_final, make_settings, running_server, tiny_experiment
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.class_monitor import DecimatedSeries, Summary, network_line
from server.sessions import SESSION_COOKIE


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server with a class open (``srv.key``: the teacher key, ``srv.code``: the join code)."""
    settings = make_settings(tmp_path_factory.mktemp("class-live"), max_params=20_000, slice_seconds=0.02,
                             max_metrics_hz=1000)
    with running_server(settings) as server:
        classroom = server.app.state.classroom.create("live test")
        server.key, server.code = classroom.teacher_key, classroom.code
        server.ws_base = server.url.replace("http://", "ws://", 1)
        yield server


def join(srv, name: str) -> tuple[str, str]:
    """Join the class as ``name``; returns (member id, session token)."""
    response = httpx.post(f"{srv.url}/api/class/join", json={"code": srv.code.lower(), "name": name},
                          headers={"origin": srv.url}, timeout=HANG_GUARD)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["member"]["id"], body["session"]


def teacher_session(srv) -> str:
    response = httpx.post(f"{srv.url}/api/session", headers={"origin": srv.url, "authorization": f"Bearer {srv.key}"},
                          timeout=HANG_GUARD)
    assert response.status_code == 201, response.text
    return response.json()["session"]


class Dashboard:
    """The teacher's /ws/class: keeps the newest summary of every student."""

    def __init__(self, srv) -> None:
        self.conn = connect(f"{srv.ws_base}/ws/class?key={srv.key}", max_size=16 * 1024**2,
                            open_timeout=HANG_GUARD).__enter__()
        self.students: dict[str, dict] = {}
        self.messages: list[dict] = []

    def recv(self) -> dict:
        message = json.loads(self.conn.recv(timeout=HANG_GUARD))
        self.messages.append(message)
        if message["type"] == "class_snapshot":
            self.students = {s["member_id"]: s for s in message["students"]}
        elif message["type"] == "class_update":
            self.students.update({s["member_id"]: s for s in message["students"]})
        return message

    def until_student(self, member_id: str, predicate) -> dict:
        while True:
            self.recv()
            summary = self.students.get(member_id)
            if summary is not None and predicate(summary):
                return summary

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------------------
# The dashboard feed
# ---------------------------------------------------------------------------


def test_snapshot_then_updates_follow_a_students_real_run(srv):
    member_id, session = join(srv, "Ada")
    dashboard = Dashboard(srv)
    try:
        first = dashboard.recv()
        assert first["type"] == "class_snapshot"
        assert first["class"]["title"] == "live test" and first["class"]["code"] == srv.code
        ada = dashboard.students[member_id]
        assert ada["name"] == "Ada" and ada["run_id"] is None and ada["state"] == "idle" and ada["loss"] == []
        with WsClient(srv.ws, session) as student:
            run_id = student.start(tiny_experiment(150))
            final = student.until(is_final(run_id))
            metrics = student.of(run_id, "metrics")
            summary_message = student.of(run_id, "summary")[0]
        shown = dashboard.until_student(member_id, lambda s: s["run_id"] == run_id and s["state"] == "finished")
        assert any(m["type"] == "class_update" for m in dashboard.messages)
        last_loss = [m["train_loss"] for m in metrics if m["train_loss"] is not None][-1]
        assert shown["loss"][-1] == [metrics[-1]["step"], last_loss]
        # Every loss point shown is one the run sent, at its step.
        sent = {m["step"]: m["train_loss"] for m in metrics if m["train_loss"] is not None}
        assert all(sent[step] == value for step, value in shown["loss"])
        val = [m["val_acc"] for m in metrics if m["val_acc"] is not None]
        assert shown["val_acc_last"] == val[-1] and shown["best_val_acc"] == final["best_val_acc"]
        assert shown["train_acc"] == [m["train_acc"] for m in metrics if m["train_acc"] is not None][-1]
        assert shown["step"] == final["steps"] == 150
        assert shown["params"] == summary_message["network"]["total_params"] == 82
        assert shown["network"] == "2-16-2 tanh" and shown["within_budget"] is True and shown["kicked"] is False
        # A join sends every teacher a new snapshot, with the newcomer in it.
        other_id, _ = join(srv, "Grace")
        while not (dashboard.recv()["type"] == "class_snapshot" and other_id in dashboard.students):
            pass
        assert dashboard.students[other_id]["run_id"] is None
        # A kick too; the kicked student stays on the dashboard, marked.
        kicked = httpx.post(f"{srv.url}/api/class/members/{other_id}/kick", timeout=HANG_GUARD,
                            headers={"origin": srv.url, "authorization": f"Bearer {srv.key}"})
        assert kicked.status_code in (200, 204), kicked.text
        while not (dashboard.recv()["type"] == "class_snapshot" and dashboard.students[other_id]["kicked"]):
            pass
    finally:
        dashboard.close()


def test_a_student_and_a_stranger_are_refused_on_the_class_feed(srv):
    _, session = join(srv, "Mallory")
    with connect(f"{srv.ws_base}/ws/class?session={session}", open_timeout=HANG_GUARD) as ws:
        refusal = json.loads(ws.recv(timeout=HANG_GUARD))
        assert refusal["type"] == "error" and refusal["code"] == "not_teacher" and "Fix:" in refusal["message"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=HANG_GUARD)
    assert closed.value.rcvd.code == 4403
    with connect(f"{srv.ws_base}/ws/class?key=not-the-key", open_timeout=HANG_GUARD) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=HANG_GUARD)
    assert closed.value.rcvd.code in (4401, 4403)


# ---------------------------------------------------------------------------
# The teacher on a student's run (the normal /ws and REST)
# ---------------------------------------------------------------------------


def test_the_teacher_watches_pauses_resumes_and_stops_a_students_run(srv):
    _, session = join(srv, "Alan")
    with WsClient(srv.ws, session) as student:
        # Started paused and slowed down: it is still running when the teacher stops it, whatever the machine.
        run_id = student.start(tiny_experiment(5000), paused=True)
        student.send(cmd="speed", run_id=run_id, steps_per_s=20)
        student.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "paused")
        with WsClient(f"{srv.ws}?session={teacher_session(srv)}&key={srv.key}") as teacher:
            teacher.send(cmd="subscribe", run_id=run_id, after_seq=0)
            teacher.until(lambda m: m.get("run_id") == run_id and m["type"] == "summary")  # the replay
            teacher.send(cmd="views", run_id=run_id, views={"boundary": {}}, id="v")
            teacher.send(cmd="set", run_id=run_id, lr=1.0, id="edit")  # watching is read-only
            refused = teacher.until(lambda m: m.get("request_id") == "edit")
            assert refused["type"] == "error" and refused["code"] == "not_found"
            teacher.send(cmd="resume", run_id=run_id)
            teacher.until(lambda m: m.get("run_id") == run_id and m["type"] == "metrics")
            teacher.send(cmd="pause", run_id=run_id)
            teacher.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "paused")
            teacher.send(cmd="stop", run_id=run_id)
            final = teacher.until(is_final(run_id))
            assert final["stop_reason"] == "stopped" and final["steps"] < 5000
            assert not [m for m in teacher.received if m.get("request_id") == "v"]  # views accepted: no error
        assert student.until(is_final(run_id))["stop_reason"] == "stopped"  # the student sees it too
    headers = {"origin": srv.url, "authorization": f"Bearer {srv.key}"}
    run = httpx.get(f"{srv.url}/api/runs/{run_id}", headers=headers, timeout=HANG_GUARD)
    assert run.status_code == 200 and run.json()["status"] == "stopped"
    points = httpx.get(f"{srv.url}/api/runs/{run_id}/metrics", headers=headers, timeout=HANG_GUARD)
    assert points.status_code == 200 and points.json()["points"]


def test_a_student_cannot_open_another_students_run(srv):
    _, alice = join(srv, "Alice")
    _, bob = join(srv, "Bob")
    with WsClient(srv.ws, alice) as ws:
        run_id = ws.start(tiny_experiment(30))
        ws.until(is_final(run_id))
    with WsClient(srv.ws, bob) as ws:
        for cmd in ("subscribe", "stop", "pause"):
            ws.send(cmd=cmd, run_id=run_id, id=cmd)
            reply = ws.until(lambda m, cmd=cmd: m.get("request_id") == cmd)
            assert reply["type"] == "error" and reply["code"] == "not_found"
        assert not ws.of(run_id, "summary")
    for path in (f"/api/runs/{run_id}", f"/api/runs/{run_id}/metrics"):
        response = httpx.get(f"{srv.url}{path}", cookies={SESSION_COOKIE: bob}, headers={"origin": srv.url},
                             timeout=HANG_GUARD)
        assert response.status_code == 404, (path, response.text)


# ---------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------


def test_a_curve_keeps_at_most_its_bound_evenly_spaced_and_ends_at_the_newest_point():
    series = DecimatedSeries(120)
    for step in range(1, 10_001):
        series.add(step, 1.0 / step)
        assert len(series) <= 120
        assert series.points()[-1] == [step, 1.0 / step]
    points = series.points()
    kept = points[:-1] if (10_000 - 1) % series.stride else points
    gaps = {b[0] - a[0] for a, b in zip(kept, kept[1:])}
    assert gaps == {series.stride} and series.stride > 1 and len(kept) >= 60  # every stride-th point, no hole
    assert json.loads(series.json()) == points
    series.clear()
    assert series.points() == [] and series.stride == 1


def test_a_summary_folds_a_runs_messages_and_encodes_as_its_dict():
    summary = Summary("m1", "Ada")
    summary.start_run("r1", [{"kind": "linear", "activation": "relu"}, {"kind": "linear"}])
    summary.apply({"type": "status", "state": "running"})
    summary.apply({"type": "summary", "network": {"input_shape": [64], "total_params": 3260, "layers": [
        {"kind": "linear", "output_shape": [50]}, {"kind": "linear", "output_shape": [10]}]}})
    summary.apply({"type": "metrics", "step": 10, "epoch": 0.5, "train_loss": 2.1, "train_acc": 0.3,
                   "val_loss": None, "val_acc": None})
    summary.apply({"type": "metrics", "step": 20, "epoch": 1.0, "train_loss": "nan", "train_acc": 0.4,
                   "val_loss": 1.5, "val_acc": 0.6})
    summary.apply({"type": "metrics", "step": 30, "epoch": 1.5, "train_loss": 1.2, "train_acc": 0.5,
                   "val_loss": 1.4, "val_acc": 0.55})
    as_dict = summary.to_dict(param_budget=3000)
    assert as_dict["loss"] == [[10, 2.1], [30, 1.2]]  # a non-finite loss is not plotted
    assert as_dict["val_acc"] == [[20, 0.6], [30, 0.55]]
    assert as_dict["best_val_acc"] == 0.6 and as_dict["val_acc_last"] == 0.55 and as_dict["train_acc"] == 0.5
    assert as_dict["network"] == "64-50-10 relu" and as_dict["within_budget"] is False
    assert json.loads(summary.text(3000)) == as_dict
    assert json.loads(summary.text(None))["within_budget"] is True


def test_the_network_line_names_widths_convolutions_and_pools():
    network = {"input_shape": [1, 28, 28], "layers": [
        {"kind": "conv2d", "output_shape": [6, 28, 28]}, {"kind": "max_pool2d", "output_shape": [6, 14, 14]},
        {"kind": "flatten", "output_shape": [1176]}, {"kind": "dropout", "output_shape": [1176]},
        {"kind": "linear", "output_shape": [10]}]}
    layers = [{"kind": "conv2d", "activation": {"kind": "relu"}}, {"kind": "max_pool2d"}, {"kind": "flatten"},
              {"kind": "dropout"}, {"kind": "linear"}]
    assert network_line(network, layers) == "1x28x28-c6-mp-10 relu"
