"""The websocket against a real uvicorn server with the real RunSession, through the ``websockets`` client.

Every command, reconnect-and-resume without a missing seq, malformed commands,
two sessions kept apart, and failing runs next to one that finishes.
Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from api_helpers import HANG_GUARD, WsClient, is_final, is_type, make_settings, running_server, tiny_experiment

from server import protocol
from server.sessions import SESSION_COOKIE

ALICE = "alice"  # names of sessions the server issues (srv.session(name))
BOB = "bob"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One server for this module (runs are independent; sessions keep tests apart)."""
    # max_metrics_hz: every log interval is its own metrics point here, so the replay tests can count them
    # (merging fast intervals is tested in test_live_views.py).
    settings = make_settings(tmp_path_factory.mktemp("ws"), max_params=20_000, max_message_bytes=16 * 1024,
                             slice_seconds=0.02, max_metrics_hz=1000)
    with running_server(settings) as server:
        yield server


def rest(srv, session: str) -> httpx.Client:
    """An HTTP client in the session this module calls ``session``, talking like the page (same-origin)."""
    return httpx.Client(base_url=srv.url, cookies={SESSION_COOKIE: srv.session(session)},
                        headers={"origin": srv.url}, timeout=60)


def non_image_seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages if "seq" in m and m["type"] not in protocol.IMAGE_TYPES]


def test_start_streams_a_run_to_its_end(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        ws.send(cmd="start", experiment=tiny_experiment(120), id="req-1")
        first = ws.until(lambda m: m.get("run_id") is not None)
        run_id = first["run_id"]
        assert first["type"] == "status" and first["state"] == "queued" and first["position"] >= 1
        assert first["seq"] == 1 and first["request_id"] == "req-1"
        final = ws.until(is_final(run_id))
        assert final["steps"] == 120 and final["stop_reason"] == "finished"
        ws.until(is_type("status", run_id))
        messages = ws.of(run_id)
        types = [m["type"] for m in messages]
        assert types.index("summary") < types.index("metrics") < types.index("final")
        summary = messages[types.index("summary")]
        assert summary["network"]["total_params"] == 82 and summary["dataset"]["name"] == "spiral"
        seqs = [m["seq"] for m in messages]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(m["run_id"] == run_id and isinstance(m["t"], (int, float)) for m in messages)
    with rest(srv, ALICE) as http:
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "finished" and run["final"]["steps"] == 120 and run["has_weights"]
        assert run["summary"]["network"]["total_params"] == 82
        points = http.get(f"/api/runs/{run_id}/metrics").json()["points"]
        assert [p["step"] for p in points] == [m["step"] for m in messages if m["type"] == "metrics"]


def test_a_run_started_paused_waits_at_step_0_and_steps_once_per_step(srv):
    """``start`` with ``paused``: the Step button before any run (and the lesson's "Press Step once"):
    the run opens, says paused, trains nothing until told; each ``step`` is exactly one step."""
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        ws.send(cmd="start", experiment=tiny_experiment(50), paused=True, id="p")
        run_id = ws.until(lambda m: m.get("run_id") is not None)["run_id"]
        ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "paused")
        ws.send(cmd="step", run_id=run_id)
        first = ws.until(is_type("metrics", run_id))
        assert first["step"] == 1  # no step was taken before the first "step"
        ws.send(cmd="step", run_id=run_id)
        assert ws.until(is_type("metrics", run_id))["step"] == 2
        ws.send(cmd="resume", run_id=run_id)
        final = ws.until(is_final(run_id))
        assert final["steps"] == 50 and final["stop_reason"] == "finished"
        ws.send(cmd="start", experiment=tiny_experiment(5), paused="yes", id="bad")
        error = ws.until(is_type("error"))
        assert error["code"] == "bad_arguments" and error["request_id"] == "bad" and "paused" in error["message"]


def test_every_run_command(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        run_id = ws.start(tiny_experiment(1_000_000))
        ws.until(is_type("metrics", run_id))
        ws.send(cmd="pause", run_id=run_id)
        ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "paused")
        # While paused, "step" trains exactly one step, with the light probes.
        ws.send(cmd="step", run_id=run_id)
        step_probe = ws.until(is_type("activations", run_id))
        ws.send(cmd="step", run_id=run_id)
        assert ws.until(is_type("activations", run_id))["step"] == step_probe["step"] + 1
        ws.send(cmd="set", run_id=run_id, lr=0.001, id="s1")
        assert ws.until(is_type("hyperparams", run_id))["values"]["lr"] == pytest.approx(0.001)
        ws.send(cmd="probe", run_id=run_id, probe="boundary")
        boundary = ws.until(is_type("boundary", run_id))
        assert boundary["probs"]["png"] and len(boundary["extent"]) == 4
        ws.send(cmd="probe", run_id=run_id, probe="saliency", id="p2")  # needs images: spiral is 2D
        error = ws.until(is_type("error"))
        assert error["request_id"] == "p2" and "image" in error["message"] and error["run_id"] == run_id
        ws.send(cmd="predict", run_id=run_id, input=[0.1, -0.2])
        prediction = ws.until(is_type("prediction", run_id))
        assert len(prediction["probs"]) == 2 and sum(prediction["probs"]) == pytest.approx(1.0, abs=1e-3)
        ws.send(cmd="resume", run_id=run_id)
        ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m["state"] == "running")
        ws.until(is_type("metrics", run_id))
        ws.send(cmd="stop", run_id=run_id)
        final = ws.until(is_final(run_id))
        assert final["stop_reason"] == "stopped" and final["steps"] > step_probe["step"]
        ws.send(cmd="resume", run_id=run_id, id="late")
        late = ws.until(is_type("error"))
        assert late["code"] == "run_ended" and late["request_id"] == "late"
    with rest(srv, ALICE) as http:
        assert http.get(f"/api/runs/{run_id}").json()["status"] == "stopped"


def test_reconnect_and_resume_loses_no_message(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as first:
        run_id = first.start(tiny_experiment(400))
        first.until(lambda m: m.get("run_id") == run_id and m["type"] == "metrics" and m["step"] >= 50)
        seen_before = first.of(run_id)
    # The connection is gone; the run goes on. Reconnect and pick up after the last seq received.
    last = max(m["seq"] for m in seen_before)
    with WsClient(srv.ws, srv.session(ALICE)) as second:
        second.send(cmd="subscribe", run_id=run_id, after_seq=last)
        second.until(is_final(run_id))
        seen_after = second.of(run_id)
    assert min(m["seq"] for m in seen_after) > last
    # A fresh subscriber from seq 0 gets the whole log: compare.
    with WsClient(srv.ws, srv.session(ALICE)) as full:
        full.send(cmd="subscribe", run_id=run_id, after_seq=0)
        full.until(is_final(run_id))
        everything = full.of(run_id)
    got = non_image_seqs(seen_before) + non_image_seqs(seen_after)
    assert got == non_image_seqs(everything)  # no missing, no repeated non-image message
    assert sorted(m["seq"] for m in everything) == [m["seq"] for m in everything]
    steps = [m["step"] for m in seen_before + seen_after if m["type"] == "metrics"]
    assert steps == [m["step"] for m in everything if m["type"] == "metrics"]  # every metric point
    assert set(range(10, 401, 10)) <= set(steps)


def test_malformed_unknown_and_oversized_commands_keep_the_connection(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        cases = [
            ("not json at all", "bad_json"),
            ("[1, 2, 3]", "bad_command"),
            (json.dumps({"cmd": "fly"}), "unknown_command"),
            (json.dumps({"nocmd": 1}), "unknown_command"),
            (json.dumps({"cmd": "pause"}), "bad_arguments"),
            (json.dumps({"cmd": "start", "experiment": "nope"}), "bad_arguments"),
            (json.dumps({"cmd": "set", "run_id": "x"}), "not_found"),
            (json.dumps({"cmd": "ping", "pad": "x" * 20_000}), "too_large"),  # the limit here is 16 KiB
            (b"\x00binary", "bad_frame"),
        ]
        for text, code in cases:
            ws.send_raw(text)
            error = ws.until(is_type("error"))
            assert error["code"] == code, (text[:40], error)
            assert error["message"]
        ws.send(cmd="ping", id=7)
        pong = ws.until(is_type("pong"))
        assert pong["request_id"] == 7


def test_an_invalid_experiment_is_refused_with_the_builders_message(srv):
    with rest(srv, ALICE) as http:
        before = len(http.get("/api/runs").json())
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        document = tiny_experiment()
        document["network"]["layers"][1]["out_features"] = 5
        ws.send(cmd="start", experiment=document, id="bad")
        error = ws.until(is_type("error"))
        assert error["code"] == "invalid_experiment" and error["request_id"] == "bad"
        assert error["message"].startswith("layer 'out':") and "Fix:" in error["message"]
        assert error["errors"][0]["layer"] == "out"
        ws.send(cmd="start", experiment=tiny_experiment(hidden=10_000))  # over this server's 20,000 parameters
        error = ws.until(is_type("error"))
        assert error["code"] == "invalid_experiment" and "param" in error["message"].lower()
    with rest(srv, ALICE) as http:
        assert len(http.get("/api/runs").json()) == before  # nothing was created


def test_two_sessions_cannot_see_or_touch_each_others_runs(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as alice, WsClient(srv.ws, srv.session(BOB)) as bob:
        run_id = alice.start(tiny_experiment(1_000_000))
        for command in ("pause", "resume", "step", "stop", "subscribe"):
            bob.send(cmd=command, run_id=run_id)
            error = bob.until(is_type("error"))
            assert error["code"] == "not_found", command
        bob.send(cmd="set", run_id=run_id, lr=0.1)
        assert bob.until(is_type("error"))["code"] == "not_found"
        bob.send(cmd="probe", run_id=run_id, probe="boundary")
        assert bob.until(is_type("error"))["code"] == "not_found"
        with rest(srv, BOB) as http:
            assert run_id not in [r["id"] for r in http.get("/api/runs").json()]
            assert http.get(f"/api/runs/{run_id}").status_code == 404
            assert http.delete(f"/api/runs/{run_id}").status_code == 404
        assert all(m["type"] == "error" for m in bob.of(run_id))  # bob got none of the run's messages
        with rest(srv, ALICE) as http:
            assert run_id in [r["id"] for r in http.get("/api/runs").json()]
            assert http.get(f"/api/runs/{run_id}").json()["status"] in ("running", "paused")
            assert http.delete(f"/api/runs/{run_id}").status_code == 204  # the owner may: it stops and goes
            assert http.get(f"/api/runs/{run_id}").status_code == 404


def test_a_diverging_run_fails_while_another_finishes(srv):
    with WsClient(srv.ws, srv.session(BOB)) as ws:
        good = ws.start(tiny_experiment(300, name="good"))
        nan = ws.start(tiny_experiment(100_000, name="nan", lr=1e6))
        nan_final = ws.until(is_final(nan))
        assert nan_final["stop_reason"] in ("non_finite", "exploded")
        status = ws.until(lambda m: m.get("run_id") == nan and m["type"] == "status")
        assert status["state"] == "failed"
        good_final = ws.until(is_final(good))
        assert good_final["stop_reason"] == "finished" and good_final["steps"] == 300
    with rest(srv, BOB) as http:
        statuses = {r["id"]: r["status"] for r in http.get("/api/runs").json()}
        assert statuses[nan] == "failed" and statuses[good] == "finished"


def test_a_stop_sent_just_before_the_socket_closes_still_stops_the_run(srv):
    """A page that sends stop and leaves: the command was accepted, so it is carried out (closing the socket used
    to cancel it, and some of those runs trained on until the time limit)."""
    document = tiny_experiment(10)
    document["train"].update(max_steps=None, epochs=None)  # until stopped
    runs = []
    for _ in range(6):
        ws = WsClient(srv.ws, srv.session("leaver"))
        run_id = ws.start(document)
        ws.until(lambda m, r=run_id: m.get("run_id") == r and m["type"] == "metrics")
        ws.send(cmd="stop", run_id=run_id)
        ws.close()
        runs.append(run_id)
    scheduler = srv.app.state.scheduler
    deadline = time.monotonic() + HANG_GUARD
    while any(scheduler.get(r) is not None and scheduler.get(r).active for r in runs):
        assert time.monotonic() < deadline, [scheduler.get(r).state for r in runs if scheduler.get(r)]
        time.sleep(0.05)
    assert {srv.app.state.store.get_run(r).status for r in runs} == {"stopped"}
