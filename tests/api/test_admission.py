"""Admission by cost (server/cost.py) and per-client limits (issue 9, repros 1 and 4).

Repro 1: a conv net on MNIST at batch 4000 passed validation (the memory check used a
batch of 256) and reached 6.2 GB. Repro 4: 600 probe commands in 0.03 s had no queue limit.
"""

from __future__ import annotations

import json

import torch

from api_helpers import HANG_GUARD, WsClient, is_type, page_client, tiny_experiment

from server.app import create_app
from server.builder import infer_shapes
from server.cost import AUTOGRAD_FACTOR, TRAIN_MAC_FACTOR, estimate_cost
from server.schemas import NetworkSpec

REPRO_1 = {"data": {"name": "mnist"}, "network": {"layers": [
    {"kind": "conv2d", "name": "c0", "out_channels": 96, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "conv2d", "name": "c1", "out_channels": 96, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "global_avg_pool", "name": "g"},
    {"kind": "linear", "name": "out", "out_features": 10}]}, "train": {"batch_size": 4000, "max_steps": 3}}


def test_the_cost_estimate_counts_what_torch_allocates_and_computes():
    """PyTorch is the oracle: activations are the forward outputs' bytes, MACs those of the conv/linear maps."""
    spec = NetworkSpec.model_validate(REPRO_1["network"])
    summary = infer_shapes(spec, (1, 28, 28), 10)
    cost = estimate_cost(summary, batch_size=8, n_train=5000, optimizer="adam")
    conv0 = torch.nn.Conv2d(1, 96, 3, padding=1)
    conv1 = torch.nn.Conv2d(96, 96, 3, padding=1)
    x = torch.zeros(8, 1, 28, 28)
    a0 = torch.relu(conv0(x))
    a1 = torch.relu(conv1(a0))
    pooled = a1.mean(dim=(2, 3))
    logits = torch.nn.Linear(96, 10)(pooled)
    forward_bytes = sum(t.numel() * 4 for t in (a0, a1, pooled, logits))
    assert cost.activation_bytes == forward_bytes * AUTOGRAD_FACTOR
    conv_macs = (96 * 1 * 9) * 28 * 28 + (96 * 96 * 9) * 28 * 28 + 96 * 10
    assert cost.step_macs >= conv_macs * 8 * TRAIN_MAC_FACTOR
    params = sum(p.numel() for m in (conv0, conv1) for p in m.parameters()) + 96 * 10 + 10
    assert cost.params == params and cost.weight_bytes == params * 4 * (2 + 2)  # Adam: two moments
    assert estimate_cost(summary, batch_size="full", n_train=5000, optimizer="sgd").batch == 5000


def test_repro_1_is_refused_before_queueing_with_the_layer_and_the_fix(settings):
    settings.max_run_memory_bytes = 2 * 1024**3
    with page_client(create_app(settings)) as client:
        report = client.post("/api/validate", json=REPRO_1).json()
        assert report["ok"] is False
        problem = report["errors"][0]
        assert problem["code"] == "too_large" and problem["layer"] in ("c0", "c1")
        assert "batch of 4000" in problem["message"] and "batch_size of at most" in problem["fix"]
        # The same document at a batch that fits is admitted, with its cost in the report.
        fitting = json.loads(json.dumps(REPRO_1))
        fitting["train"]["batch_size"] = 64
        ok = client.post("/api/validate", json=fitting).json()
        assert ok["ok"] is True and ok["cost"]["batch"] == 64
        assert ok["cost"]["memory_bytes"] < settings.max_run_memory_bytes
        # "full" is the whole training set: refused for the same reason.
        full = json.loads(json.dumps(REPRO_1))
        full["train"]["batch_size"] = "full"
        assert client.post("/api/validate", json=full).json()["errors"][0]["code"] == "too_large"


def test_repro_1_over_the_websocket_gets_too_large_and_nothing_starts(server):
    with WsClient(server.ws, server.session("alice")) as ws:
        ws.send(cmd="start", experiment=REPRO_1, id="big")
        reply = ws.until(lambda m: m.get("request_id") == "big")
        assert reply["type"] == "error" and reply["code"] == "too_large"
        assert server.app.state.scheduler.counts() == {"active": 0, "queued": 0}


def flood_a_training_run(ws: WsClient, probes: int) -> str:
    """Start a run that trains until stopped, wait for its first metrics, then send ``probes`` heavy probes at once
    (ids p0, p1, ...) without reading the replies; returns the run id."""
    document = tiny_experiment(None, hidden=32)
    document["train"].update(max_steps=None, epochs=None)
    run_id = ws.start(document)
    ws.until(is_type("metrics", run_id))
    for i in range(probes):
        ws.send(cmd="probe", run_id=run_id, probe="gradient_check", id=f"p{i}")
    return run_id


def test_a_client_whose_commands_fill_its_queue_can_still_stop_its_run(server):
    """Stop (and pause) have places of their own beyond the connection's command limit: a page that fired a
    burst of heavy probes is not locked out of stopping the run they slow down."""
    with WsClient(server.ws, server.session("carol")) as ws:
        run_id = flood_a_training_run(ws, 100)
        ws.send(cmd="stop", run_id=run_id, id="stop")
        final = ws.until(is_type("final", run_id))
        assert final["stop_reason"] == "stopped"
        assert [m for m in ws.received if m.get("request_id") == "stop" and m["type"] == "error"] == []
        assert any(m.get("code") == "too_busy" for m in ws.received)  # the flood did fill the queue


def test_repro_4_a_probe_flood_is_refused_with_too_busy_and_the_run_keeps_answering(server):
    with WsClient(server.ws, server.session("alice")) as ws:
        run_id = flood_a_training_run(ws, 600)
        replies: dict[str, dict] = {}
        while len([r for r in replies.values() if r["type"] == "error"]) < 590:
            message = ws.recv()
            if message.get("request_id", "").startswith("p") and message["type"] == "error":
                replies[message["request_id"]] = message
        codes = {r["code"] for r in replies.values()}
        assert codes == {"too_busy"}, codes
        # The run still trains and answers a command afterwards.
        ws.send(cmd="pause", run_id=run_id, id="pause")
        ws.until(lambda m: m["type"] == "status" and m.get("run_id") == run_id and m["state"] == "paused",
                 timeout=HANG_GUARD)
    # Another client of the server gets its first metrics as usual.
    with WsClient(server.ws, server.session("bob")) as other:
        other_run = other.start(tiny_experiment(50))
        other.until(is_type("final", other_run))
