"""The REST API through FastAPI's TestClient: every endpoint, its errors, sessions and the page."""

from __future__ import annotations


import numpy as np
import pytest
from api_helpers import make_settings, page_client, tiny_experiment
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from server import protocol
from server.app import create_app
from server.sessions import SESSION_COOKIE


@pytest.fixture
def client(tmp_path):
    settings = make_settings(tmp_path / "data", max_upload_bytes=4096, max_params=10_000)
    with page_client(create_app(settings)) as client:
        client.get("/")  # loading the page gives it its session cookie
        yield client


def session_of(client: TestClient) -> str:
    """The client's session id (its cookie is the id signed by the server)."""
    return client.app.state.sessions.verify(client.cookies[SESSION_COOKIE])


# ---------------------------------------------------------------------------
# health, sessions, page, errors
# ---------------------------------------------------------------------------


def test_health(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["device"] in ("cpu", "cuda") and isinstance(body["cuda"], bool)
    assert body["version"] and body["active_runs"] == 0 and body["queued_runs"] == 0


def test_a_session_cookie_is_set_once(tmp_path):
    with page_client(create_app(make_settings(tmp_path))) as client:
        assert "set-cookie" not in client.get("/api/health").headers  # polling the health check mints no session
        first = client.get("/")  # the page: where a browser's session starts
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "Path=/" in cookie
        session_id, signature = client.cookies[SESSION_COOKIE].split(".")
        assert len(session_id) == 32 and int(session_id, 16) >= 0  # 128 random bits in hex, signed by the server
        assert client.app.state.sessions.verify(client.cookies[SESSION_COOKIE]) == session_id
        assert "set-cookie" not in client.get("/").headers  # it had one
        assert "set-cookie" not in client.get("/api/runs").headers


def test_placeholder_page_when_the_bundle_is_missing(client):
    page = client.get("/")
    assert page.status_code == 200 and "frontend bundle is missing" in page.text


def test_static_page_is_served_when_present(tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>the real page</html>")
    (static / "app.js").write_text("console.log(1)")
    settings = make_settings(tmp_path / "data").model_copy(update={"static_dir": static})
    with page_client(create_app(settings)) as client:
        assert "the real page" in client.get("/").text
        assert client.get("/app.js").text == "console.log(1)"
        assert client.get("/api/health").json()["status"] == "ok"  # /api is not shadowed by the mount


def test_unknown_endpoints_answer_json(client):
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404 and "/api/no-such-thing" in response.json()["detail"]


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/health", "/api/validate", "/api/uploads", "/api/runs/{run_id}", "/api/schedule/preview"):
        assert path in paths


# ---------------------------------------------------------------------------
# registry, presets
# ---------------------------------------------------------------------------


def test_registry(client):
    body = client.get("/api/registry").json()
    assert {"layers", "activations", "initializers", "optimizers", "schedules", "losses", "datasets"} <= set(body)
    assert "linear" in {entry["kind"] for entry in body["layers"]}


def test_presets(client):
    presets = client.get("/api/presets").json()
    ids = [p["id"] for p in presets]
    assert "spiral_mlp" in ids and all({"id", "name", "description", "experiment"} <= set(p) for p in presets)
    one = client.get("/api/presets/spiral_mlp").json()
    assert one["experiment"]["data"]["name"] == "spiral"
    missing = client.get("/api/presets/nope")
    assert missing.status_code == 404 and "spiral_mlp" in missing.json()["detail"]


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def test_validate_accepts_a_good_document(client):
    body = client.post("/api/validate", json=tiny_experiment(300)).json()
    assert body["ok"] and body["errors"] == []
    assert body["summary"]["total_params"] == (2 * 16 + 16) + (16 * 2 + 2)
    assert body["summary"]["input_shape"] == [2] and body["summary"]["output_shape"] == [2]
    assert body["dataset"]["name"] == "spiral" and body["dataset"]["input_shape"] == [2]
    assert len(body["dataset"]["classes"]) == 2
    assert body["total_steps"] == 300 and body["steps_per_epoch"] >= 1


def test_validate_reports_pydantic_errors_with_path_layer_and_fix(client):
    document = tiny_experiment()
    document["network"]["layers"][0]["activation"] = "relux"
    document["train"]["optimizer"]["lr"] = -1
    document["data"]["bogus"] = 1
    response = client.post("/api/validate", json=document)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    by_path = {e["path"]: e for e in body["errors"]}
    activation = by_path["network.layers.0.activation"]
    assert activation["layer"] == "hidden" and "relux" in activation["problem"] and "'tanh'" in activation["fix"]
    assert activation["message"].startswith("layer 'hidden': ")
    assert by_path["train.optimizer.lr"]["layer"] is None and "> 0" in by_path["train.optimizer.lr"]["fix"]
    assert "remove 'bogus'" in by_path["data.bogus"]["fix"]
    assert all({"layer", "problem", "fix", "message", "path"} <= set(e) for e in body["errors"])


def test_validate_reports_builder_errors(client):
    document = tiny_experiment()
    document["network"]["layers"][1]["out_features"] = 3  # spiral has 2 classes
    body = client.post("/api/validate", json=document).json()
    [error] = body["errors"]
    assert body["ok"] is False and error["layer"] == "out" and error["path"] == "network.layers.1"
    assert error["problem"] and error["fix"] and error["message"].startswith("layer 'out'")


def test_validate_enforces_the_parameter_limit(client):
    body = client.post("/api/validate", json=tiny_experiment(hidden=5000)).json()  # limit: 10,000 in this app
    assert body["ok"] is False and "param" in body["errors"][0]["message"].lower()


def test_validate_reports_data_errors_and_non_objects(client):
    document = tiny_experiment()
    document["data"]["name"] = "no_such_data"
    body = client.post("/api/validate", json=document).json()
    assert body["ok"] is False and body["errors"][0]["path"] == "data" and "spiral" in body["errors"][0]["fix"]
    body = client.post("/api/validate", json=[1, 2]).json()
    assert body["ok"] is False and body["errors"][0]["fix"] == "send a JSON object"


def test_validate_caches_datasets(client):
    cache = client.app.state.datasets
    for _ in range(3):
        assert client.post("/api/validate", json=tiny_experiment()).json()["ok"]
    assert cache.misses == 1 and cache.hits >= 2


# ---------------------------------------------------------------------------
# datasets, uploads, schedules
# ---------------------------------------------------------------------------


def test_preview_of_2d_points(client):
    body = client.get("/api/datasets/spiral/preview", params={"n": 10}).json()
    assert body["kind"] == "2d" and len(body["points"]) == 10 and len(body["points"][0]) == 2
    assert len(body["labels"]) == 10 and len(body["classes"]) == 2


def test_preview_of_images_is_png(client):
    body = client.get("/api/datasets/mnist/preview", params={"n": 3}).json()
    assert body["kind"] == "image" and len(body["images"]) == 3
    pixels = protocol.decode_image(body["images"][0])
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8 and pixels.max() > 0


def test_preview_errors(client):
    missing = client.get("/api/datasets/nope/preview")
    assert missing.status_code == 404 and "spiral" in missing.json()["detail"]
    assert client.get("/api/datasets/spiral/preview", params={"n": 0}).status_code == 422


def csv_upload(rows: int = 40) -> bytes:
    rng = np.random.default_rng(0)
    lines = ["x,y,label"] + [f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in rng.normal(size=(rows, 2))]
    return "\n".join(lines).encode()


def test_upload_a_csv_then_use_it(client):
    response = client.post("/api/uploads", files={"file": ("points.csv", csv_upload(), "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == f"upload:{body['id']}" and body["kind"] == "2d" and body["n"] == 40
    document = tiny_experiment()
    document["data"] = {"name": body["name"]}
    assert client.post("/api/validate", json=document).json()["ok"]


def test_upload_over_the_limit_is_413_with_a_clear_message(client):
    response = client.post("/api/uploads", files={"file": ("big.csv", csv_upload(2000), "text/csv")})
    assert response.status_code == 413
    assert "4,096 bytes" in response.json()["detail"] and "Fix" in response.json()["detail"]


def test_upload_errors_are_400(client):
    bad = client.post("/api/uploads", files={"file": ("notes.txt", b"hello,world\nfoo,bar\n", "text/plain")})
    assert bad.status_code == 400 and "upload 'notes.txt'" in bad.json()["detail"]
    wrong = client.post("/api/uploads", files={"file": ("x.pkl", b"\x80\x04", "application/octet-stream")})
    assert wrong.status_code == 400 and "unsupported" in wrong.json()["detail"]
    nofile = client.post("/api/uploads", data={"other": "1"}, files={"nothing": ("a.csv", b"1,2,0")})
    assert nofile.status_code == 400 and "'file'" in nofile.json()["detail"]
    notmultipart = client.post("/api/uploads", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert notmultipart.status_code == 400


def test_schedule_preview(client):
    body = client.post("/api/schedule/preview", json={
        "train": {"optimizer": {"kind": "sgd", "lr": 0.1}, "schedule": {"kind": "step", "every_epochs": 1, "gamma": 0.5}},
        "steps_per_epoch": 10, "total_steps": 30,
    }).json()
    assert body[0] == [1, 0.1] and body[-1][0] == 30
    assert dict(body)[11] == pytest.approx(0.05) and dict(body)[21] == pytest.approx(0.025)
    plateau = client.post("/api/schedule/preview", json={
        "train": {"schedule": "plateau"}, "steps_per_epoch": 10, "total_steps": 5000})
    assert len(plateau.json()) <= 1000 and "plateau" in plateau.headers["x-schedule-note"]


def test_schedule_preview_errors_have_a_readable_detail(client):
    response = client.post("/api/schedule/preview", json={"train": {"schedule": "bogus"}, "steps_per_epoch": 0,
                                                             "total_steps": 10})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "train.schedule" in detail and "steps_per_epoch" in detail


# ---------------------------------------------------------------------------
# runs (seeded through the store; tests/api/test_ws.py makes real ones)
# ---------------------------------------------------------------------------


def seed_run(client: TestClient, run_id: str, session: str, lr: float = 0.03, steps: int = 5) -> None:
    store = client.app.state.store
    store.create_run(run_id, session, f"run {run_id}", tiny_experiment(100, lr=lr))
    store.append_metrics([(run_id, [{"type": "metrics", "run_id": run_id, "seq": i + 1, "step": 10 * (i + 1),
                                     "train_loss": 1.0 / (i + 1), "val_loss": None} for i in range(steps)])])
    import torch

    path = store.save_weights(run_id, torch.nn.Linear(2, 2).state_dict())
    store.finish_run(run_id, "finished", final={"type": "final", "steps": 10 * steps, "stop_reason": "finished"},
                     stop_reason="finished", weights_path=path)


def test_runs_list_get_metrics_delete(client):
    me = session_of(client)
    seed_run(client, "aaaa0001", me)
    seed_run(client, "bbbb0002", "someone-else")
    listed = client.get("/api/runs").json()
    assert [r["id"] for r in listed] == ["aaaa0001"] and listed[0]["status"] == "finished"
    run = client.get("/api/runs/aaaa0001").json()
    assert run["experiment"]["data"]["name"] == "spiral" and run["final"]["steps"] == 50 and run["has_weights"]
    metrics = client.get("/api/runs/aaaa0001/metrics").json()
    assert [p["step"] for p in metrics["points"]] == [10, 20, 30, 40, 50]
    weights = client.app.state.store.get_run("aaaa0001").weights_path
    assert set(load_file(weights)) == {"weight", "bias"}
    assert client.delete("/api/runs/aaaa0001").status_code == 204
    assert client.get("/api/runs/aaaa0001").status_code == 404
    assert client.get("/api/runs").json() == []


def test_another_sessions_runs_are_not_found(client):
    seed_run(client, "cccc0003", "someone-else")
    for method, path in [("get", "/api/runs/cccc0003"), ("get", "/api/runs/cccc0003/metrics"),
                         ("delete", "/api/runs/cccc0003"), ("get", "/api/runs/compare?ids=cccc0003")]:
        response = getattr(client, method)(path)
        assert response.status_code == 404 and "cccc0003" in response.json()["detail"], path
    assert client.app.state.store.get_run("cccc0003") is not None  # not deleted


def test_compare_runs(client):
    me = session_of(client)
    seed_run(client, "dddd0004", me, lr=0.03, steps=3)
    seed_run(client, "eeee0005", me, lr=0.1, steps=4)
    body = client.get("/api/runs/compare", params={"ids": "dddd0004,eeee0005"}).json()
    assert [r["id"] for r in body["runs"]] == ["dddd0004", "eeee0005"]
    assert [len(r["metrics"]) for r in body["runs"]] == [3, 4]
    diff = {d["path"]: d["values"] for d in body["diff"]}
    assert diff == {"train.optimizer.lr": [0.03, 0.1]}
    assert client.get("/api/runs/compare", params={"ids": ""}).status_code == 400


def test_upload_size_is_enforced_while_streaming(client):
    """Without a Content-Length (chunked), the body is refused as soon as it passes the limit."""
    boundary = "XyZ"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(1000):  # 1000 x 1 KiB, far beyond 4 KiB + the envelope allowance
            yield b"1.0,2.0,1\n" * 100
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/uploads", content=body(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413 and "4,096 bytes" in response.json()["detail"]
    declared = client.post("/api/uploads", content=b"x" * 200_000,
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert declared.status_code == 413  # refused from its Content-Length alone
