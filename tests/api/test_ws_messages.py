"""Every frame the websocket sends validates against its model in server/messages.py.

A real uvicorn server and the real RunSession: replies to malformed and refused commands (which
carry no seq), pong, a run's stream while the page changes its views, speed, hyperparameters,
pauses, steps and stops it, and the replay a second connection gets. Timeouts are hang guards only.
"""

from __future__ import annotations

import json

from api_helpers import WsClient, is_final, is_type, tiny_experiment
from websockets.sync.client import connect

from server.messages import validate_message

SESSION = "messages"  # a session the server issues (server.session(name))


def invalid(messages: list[dict]) -> list[str]:
    failures = []
    for message in messages:
        try:
            validate_message(message)
        except ValueError as error:  # pydantic.ValidationError and UnknownMessageType are ValueErrors
            failures.append(f"{message.get('type')}: {error}")
    return failures


def reply(ws: WsClient, request_id: str) -> dict:
    return ws.until(lambda m: m.get("request_id") == request_id)


def test_replies_to_bad_commands_are_valid_errors_without_seq(server):
    with WsClient(server.ws, server.session(SESSION)) as ws:
        ws.send(cmd="ping", id="ping-1")
        assert reply(ws, "ping-1")["type"] == "pong"
        for raw, code in (("{not json", "bad_json"), ("[1, 2]", "bad_command"), (b"\x00\x01", "bad_frame")):
            ws.send_raw(raw)
            error = ws.until(is_type("error"))
            assert error["code"] == code and "seq" not in error
        sent = {
            "unknown": ({"cmd": "jump"}, "unknown_command"),
            "no-run": ({"cmd": "pause"}, "bad_arguments"),
            "not-mine": ({"cmd": "pause", "run_id": "0123456789abcdef"}, "not_found"),
            "bad-doc": ({"cmd": "start", "experiment": {"data": {"name": "spiral"}, "network": {"layers": [
                {"kind": "conv2d", "name": "c", "out_channels": 4, "kernel_size": 3}]}}}, "invalid_experiment"),
        }
        for request_id, (command, code) in sent.items():
            ws.send(**command, id=request_id)
            error = reply(ws, request_id)
            assert error["type"] == "error" and error["code"] == code and "seq" not in error, error
        assert error["errors"], "invalid_experiment lists every problem"
        assert not invalid(ws.received), "\n".join(invalid(ws.received))


def test_a_bad_session_is_told_why_before_the_socket_closes(server):
    with connect(f"{server.ws}?session=no", open_timeout=60) as conn:
        error = json.loads(conn.recv(timeout=60))
    assert error["code"] == "bad_session"
    assert not invalid([error])


def test_a_run_stream_and_its_replay_validate_while_the_page_drives_the_run(server):
    with WsClient(server.ws, server.session(SESSION)) as ws:
        run_id = ws.start(tiny_experiment(1_000_000))
        ws.send(cmd="views", run_id=run_id, views={"boundary": {}, "layer_stats": {}, "evaluation": {}}, id="views-1")
        ws.send(cmd="speed", run_id=run_id, steps_per_s=200, id="speed-1")
        ws.until(lambda m: m["type"] == "hyperparams" and "steps_per_s" in m["values"])
        ws.until(is_type("boundary", run_id))
        ws.send(cmd="set", run_id=run_id, lr=0.01, id="set-1")
        ws.until(lambda m: m["type"] == "hyperparams" and "lr" in m["values"])
        ws.send(cmd="pause", run_id=run_id)
        ws.until(lambda m: m["type"] == "status" and m.get("state") == "paused")
        ws.send(cmd="step", run_id=run_id)
        ws.until(is_type("activations", run_id))
        ws.send(cmd="probe", run_id=run_id, probe="saliency", id="probe-1")  # the spiral is not image data
        assert reply(ws, "probe-1")["code"] == "bad_arguments"
        ws.send(cmd="stop", run_id=run_id)
        ws.until(is_final(run_id))
        ws.until(lambda m: m.get("run_id") == run_id and m["type"] == "status" and m.get("state") == "stopped")
        ws.send(cmd="pause", run_id=run_id, id="late-1")
        assert reply(ws, "late-1")["code"] == "run_ended"
        stream = ws.received
    with WsClient(server.ws, server.session(SESSION)) as other:
        other.send(cmd="subscribe", run_id=run_id, after_seq=0)
        other.until(is_final(run_id))
        replay = other.received
    assert {"summary", "metrics", "hyperparams", "boundary", "final"} <= {m["type"] for m in replay}
    failures = invalid(stream) + invalid(replay)
    assert not failures, "\n".join(failures[:10])
