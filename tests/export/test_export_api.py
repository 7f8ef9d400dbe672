"""The export API end to end: real runs over the websocket, downloads, weight uploads and ``train.init_from``.

Everything goes through the real app (TestClient runs its lifespan: store, scheduler,
training threads); nothing is faked.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load

from server.app import create_app
from server.config import Settings
from server.datasets.images import MNIST_PATH

STEPS = 30


def experiment(**train: Any) -> dict[str, Any]:
    return {
        "name": "tiny spiral",
        "data": {"name": "spiral", "n_samples": 200, "seed": 1},
        "network": {"layers": [
            {"kind": "linear", "name": "hidden", "out_features": 8, "activation": "tanh"},
            {"kind": "linear", "name": "out", "out_features": 2}]},
        "train": {"optimizer": {"kind": "adam", "lr": 0.03}, "batch_size": 32, "max_steps": STEPS, "log_every": 10,
                  **train},
        "probes": {"enabled": False},
    }


@pytest.fixture
def client(tmp_path: Path):
    # TestClient calls itself http://testserver: a host this server answers to only when told (issue 9), and a
    # same-origin page's requests carry that Origin.
    settings = Settings(data_dir=tmp_path / "data", static_dir=tmp_path / "no-static", allowed_hosts="testserver")
    with TestClient(create_app(settings), headers={"origin": "http://testserver"}) as c:
        yield c


def session_id(client: TestClient) -> str:
    """The client's session id (its cookie holds it signed by the server)."""
    return client.app.state.sessions.verify(client.cookies.get("dlplay_session"))


def train_run(client: TestClient, document: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Start a run over the websocket and read its messages to its final one; (run id, messages)."""
    if client.cookies.get("dlplay_session") is None:
        client.post("/api/session")  # the session cookie, which the websocket then carries
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"cmd": "start", "experiment": document, "id": "start-1"})
        messages = []
        while True:
            message = ws.receive_json()
            messages.append(message)
            if message.get("type") == "error" and not message.get("run_id"):
                raise AssertionError(f"start refused: {message}")
            if message.get("type") == "status" and message.get("state") in ("finished", "failed", "stopped"):
                return message["run_id"], messages


def test_formats_say_what_each_needs(client):
    formats = {f["format"]: f for f in client.get("/api/export/formats").json()}
    assert list(formats) == ["pytorch", "notebook", "onnx", "torchscript", "safetensors"]
    assert formats["pytorch"]["available"] and not formats["pytorch"]["trained"] and formats["onnx"]["trained"]


@pytest.mark.filterwarnings("ignore:`torch.jit")  # TorchScript is deprecated in PyTorch 2.13; its files still load
def test_a_finished_run_exports_in_every_format(client):
    run_id, messages = train_run(client, experiment())
    assert messages[-1]["state"] == "finished"
    available = [f["format"] for f in client.get("/api/export/formats").json() if f["available"]]
    for name in available:
        response = client.get(f"/api/runs/{run_id}/export", params={"format": name})
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-disposition"].startswith('attachment; filename="tiny_spiral.')
        assert len(response.content) > 100
    code = client.get(f"/api/runs/{run_id}/export", params={"format": "pytorch"}).text
    compile(code, "tiny_spiral.py", "exec")
    assert f"run {run_id}" in code
    tensors = load(client.get(f"/api/runs/{run_id}/export", params={"format": "safetensors"}).content)
    assert set(tensors) == {"hidden.weight", "hidden.bias", "out.weight", "out.bias"}
    if "torchscript" in available:
        content = client.get(f"/api/runs/{run_id}/export", params={"format": "torchscript"}).content
        assert torch.jit.load(io.BytesIO(content))(torch.zeros(3, 2)).shape == (3, 2)


def test_export_errors_are_clear(client, monkeypatch):
    run_id, _ = train_run(client, experiment())
    response = client.get(f"/api/runs/{run_id}/export", params={"format": "keras"})
    assert response.status_code == 400 and "use one of pytorch, notebook, onnx" in response.json()["detail"]
    assert client.get("/api/runs/nope/export", params={"format": "pytorch"}).status_code == 404
    store = client.app.state.store
    store.create_run("queued1", session_id(client), "q", experiment())
    response = client.get("/api/runs/queued1/export", params={"format": "safetensors"})
    assert response.status_code == 409 and "no saved weights yet" in response.json()["detail"]
    assert client.get("/api/runs/queued1/export", params={"format": "pytorch"}).status_code == 200

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on a server installed without dlplay[export]
                        lambda name, *a: None if name in ("onnx", "onnxscript") else real_find_spec(name, *a))
    response = client.get(f"/api/runs/{run_id}/export", params={"format": "onnx"})
    assert response.status_code == 501
    assert response.json()["detail"].endswith("Fix: pip install 'dlplay[export]'")
    onnx = next(f for f in client.get("/api/export/formats").json() if f["format"] == "onnx")
    assert not onnx["available"] and onnx["missing"] == ["onnx", "onnxscript"] and "dlplay[export]" in onnx["install"]


def test_another_session_cannot_export_or_start_from_a_run(client):
    run_id, _ = train_run(client, experiment())
    mine = client.cookies.get("dlplay_session")
    client.cookies.clear()  # from here on the client is a newcomer: another session
    assert client.get("/").status_code == 200  # the page gives a newcomer its session
    assert client.cookies.get("dlplay_session") not in (None, mine)
    assert client.get(f"/api/runs/{run_id}/export", params={"format": "pytorch"}).status_code == 404
    _, messages = train_run(client, experiment(init_from={"run_id": run_id}))
    errors = [m for m in messages if m["type"] == "error"]
    assert messages[-1]["state"] == "failed" and f"no run '{run_id}' here" in errors[0]["message"]


def test_a_run_starts_from_a_finished_runs_weights(client):
    first, _ = train_run(client, experiment())
    second, messages = train_run(client, experiment(max_steps=10, init_from={"run_id": first}))
    assert messages[-1]["state"] == "finished", [m for m in messages if m["type"] == "error"]
    # Started from the first run's weights, the second's first evaluation shows an already trained network.
    _, fresh_messages = train_run(client, experiment(max_steps=10))
    loss = next(m["val_loss"] for m in messages if m["type"] == "metrics" and m["val_loss"] is not None)
    fresh_loss = next(m["val_loss"] for m in fresh_messages if m["type"] == "metrics" and m["val_loss"] is not None)
    assert loss < fresh_loss
    assert client.get(f"/api/runs/{second}").json()["experiment"]["train"]["init_from"]["run_id"] == first


def test_uploaded_weights_start_a_run(client):
    first, _ = train_run(client, experiment())
    content = client.get(f"/api/runs/{first}/export", params={"format": "safetensors"}).content
    response = client.post("/api/weights", content=content, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    upload = response.json()
    assert upload["layers"] == ["hidden", "out"] and upload["experiment"]["name"] == "tiny spiral"
    assert upload["init_from"] == {"upload_id": upload["id"]} and upload["parameters"] == 2 * 8 + 8 + 8 * 2 + 2
    again = client.post("/api/weights", content=content, headers={"content-type": "application/octet-stream"})
    assert again.json()["id"] == upload["id"]  # a content hash: one file, one id
    _, messages = train_run(client, experiment(max_steps=10, init_from=upload["init_from"]))
    assert messages[-1]["state"] == "finished"

    bad = client.post("/api/weights", content=b"\x00" * 64, headers={"content-type": "application/octet-stream"})
    assert bad.status_code == 400 and "not a safetensors file" in bad.json()["detail"]
    empty = client.post("/api/weights", content=b"", headers={"content-type": "application/octet-stream"})
    assert empty.status_code == 400
    leftovers = list((client.app.state.store.uploads_dir).glob(".weights.*"))
    assert leftovers == []
    _, messages = train_run(client, experiment(init_from={"upload_id": "0" * 16}))
    assert messages[-1]["state"] == "failed"
    assert "no uploaded weights" in next(m["message"] for m in messages if m["type"] == "error")


def test_the_code_of_an_mnist_run_says_where_to_get_the_data(client):
    client.post("/api/session")
    lenet = json.loads((Path(__file__).resolve().parents[2] / "models" / "lenet5_mnist.json").read_text())
    client.app.state.store.create_run("mnist1", session_id(client), "lenet", lenet)
    code = client.get("/api/runs/mnist1/export", params={"format": "pytorch"}).text
    url = "http://testserver/api/export/data/mnist_5k.npz"
    assert f"download it from {url}" in code
    served = client.get("/api/export/data/mnist_5k.npz")
    assert served.status_code == 200 and served.content == MNIST_PATH.read_bytes()
