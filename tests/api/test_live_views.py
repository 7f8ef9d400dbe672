"""The websocket's live views through a real server: what pages watch is what runs; speed; pause redraws."""

from __future__ import annotations

import time

import httpx
import pytest
from api_helpers import WsClient, make_settings, running_server, tiny_experiment

ALICE = "alice"  # names of sessions the server issues (srv.session(name))
BOB = "bob"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_server(make_settings(tmp_path_factory.mktemp("live"), slice_seconds=0.02)) as server:
        yield server


def forever(**train):
    return tiny_experiment(name="forever", epochs=None, max_steps=None, **train)


def collect(ws: WsClient, run_id: str, seconds: float) -> list[dict]:
    """Every message of ``run_id`` received over ``seconds``."""
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            message = ws.recv(timeout=max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        if message.get("run_id") == run_id:
            out.append(message)
    return out


def types(messages: list[dict]) -> set[str]:
    return {m["type"] for m in messages}


def test_the_server_computes_the_union_of_what_its_pages_watch(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as alice:
        run_id = alice.start(forever())
        alice.send(cmd="views", run_id=run_id, views={"boundary": {}})
        alice.until(lambda m: m["type"] == "hyperparams" or m["type"] == "metrics")
        collect(alice, run_id, 0.5)  # frames of the default views already on their way
        only_boundary = collect(alice, run_id, 1.5)
        assert "boundary" in types(only_boundary) and not types(only_boundary) & {"activations", "weights", "confusion"}

        with WsClient(srv.ws, srv.session(ALICE)) as second_tab:  # the same student's other tab opens the Inside tab
            second_tab.send(cmd="subscribe", run_id=run_id, after_seq=10**9)
            second_tab.send(cmd="views", run_id=run_id, views={"layer_stats": {}})
            both = collect(second_tab, run_id, 1.5)
            assert {"boundary", "activations", "gradients"} <= types(both)
        collect(alice, run_id, 0.5)
        after = collect(alice, run_id, 1.5)  # the second tab is gone: its view is no longer computed
        assert "boundary" in types(after) and "activations" not in types(after)
        alice.send(cmd="stop", run_id=run_id)
        alice.until(lambda m: m["type"] == "final" and m["run_id"] == run_id)


def test_pause_draws_the_watched_views_at_the_paused_step(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        run_id = ws.start(forever())
        ws.send(cmd="views", run_id=run_id, views={"boundary": {}})
        ws.until(lambda m: m["type"] == "metrics" and m["step"] >= 50)
        ws.send(cmd="pause", run_id=run_id)
        ws.until(lambda m: m["type"] == "status" and m.get("state") == "paused")
        frame = ws.until(lambda m: m["type"] == "boundary")
        later = collect(ws, run_id, 0.7)
        steps = [m["step"] for m in later if "step" in m and m["type"] in ("metrics", "boundary")]
        assert all(s <= frame["step"] for s in steps), "training went on while paused"
        ws.send(cmd="step", run_id=run_id)
        stepped = ws.until(lambda m: m["type"] == "boundary" and m["step"] == frame["step"] + 1)
        assert stepped["rate_hz"] > 0
        ws.send(cmd="stop", run_id=run_id)
        ws.until(lambda m: m["type"] == "final")


def test_speed_limits_the_steps_and_is_acknowledged(srv):
    with WsClient(srv.ws, srv.session(BOB)) as ws:
        run_id = ws.start(forever(log_every=1))
        ws.send(cmd="speed", run_id=run_id, steps_per_s=5)
        ack = ws.until(lambda m: m["type"] == "hyperparams")
        assert ack["values"] == {"steps_per_s": 5.0}
        first = ws.until(lambda m: m["type"] == "metrics")
        started = time.monotonic()
        messages = collect(ws, run_id, 2.0)
        elapsed = time.monotonic() - started
        last = max(m["step"] for m in messages if m["type"] == "metrics")
        assert last - first["step"] <= 5 * elapsed + 3  # 5 a second, and the small burst a limit may bank
        ws.send(cmd="speed", run_id=run_id, steps_per_s=None)
        ws.until(lambda m: m["type"] == "metrics" and m["step"] > last + 100)  # unlimited again
        for bad, code in ((0, "bad_arguments"), ("fast", "bad_arguments")):
            ws.send(cmd="speed", run_id=run_id, steps_per_s=bad)
            assert ws.until(lambda m: m["type"] == "error")["code"] == code
        ws.send(cmd="stop", run_id=run_id)
        ws.until(lambda m: m["type"] == "final")


def test_views_are_checked_and_need_a_subscription(srv):
    with WsClient(srv.ws, srv.session(ALICE)) as ws:
        run_id = ws.start(forever())
        ws.send(cmd="views", run_id=run_id, views={"telepathy": {}})
        error = ws.until(lambda m: m["type"] == "error")
        assert error["code"] == "bad_arguments" and "telepathy" in error["message"]
        ws.send(cmd="views", run_id=run_id, views={"feature_maps": {"index": "three"}})
        assert "index must be an int" in ws.until(lambda m: m["type"] == "error")["message"]
        ws.send(cmd="views", run_id=run_id, views=["boundary"])
        assert ws.until(lambda m: m["type"] == "error")["code"] == "bad_arguments"
        with WsClient(srv.ws, srv.session(ALICE)) as other_tab:
            other_tab.send(cmd="views", run_id=run_id, views={"boundary": {}})
            assert other_tab.until(lambda m: m["type"] == "error")["code"] == "bad_state"
        with WsClient(srv.ws, srv.session(BOB)) as stranger:
            stranger.send(cmd="views", run_id=run_id, views={"boundary": {}})
            assert stranger.until(lambda m: m["type"] == "error")["code"] == "not_found"
        ws.send(cmd="stop", run_id=run_id)
        ws.until(lambda m: m["type"] == "final")


def test_the_views_endpoint_lists_the_table(srv):
    rows = httpx.get(f"{srv.url}/api/views", timeout=30).json()
    by_name = {row["name"]: row for row in rows}
    assert by_name["boundary"]["messages"] == ["boundary"] and by_name["boundary"]["default_hz"] == 20.0
    assert by_name["layer_stats"]["messages"] == ["activations", "gradients"]
    assert [a["name"] for a in by_name["gradcam"]["arguments"]] == ["index", "target", "layer"]
