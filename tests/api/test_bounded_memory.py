"""Bounded memory everywhere (issue 9, repros 2 and 5): the dataset cache, previews and uploads.

The repro tests run a real server in its own process, configured with
``DLPLAY_MAX_MEMORY_BYTES`` = MEMORY_CAP (server/config.py documents how the server is
sized from it), replay the issue's requests, and read the process's peak resident
memory (VmHWM in /proc/<pid>/status): it must stay under the cap through all of them.
Before this work, repro 2 alone took the server from 484 MB to 8.6 GB.

The rest use the app in-process: cache accounting, one large load at a time, shared
loads, previews equal to the full set's first examples, upload quotas, expiry and
ownership. No assertion is about time; waits are hang guards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import httpx
import numpy as np
import pytest
import torch
from api_helpers import HANG_GUARD, free_port, make_settings, page_client
from fastapi.testclient import TestClient

from server.app import create_app
from server.data_cache import DatasetBusy, DatasetCache, DatasetTooLarge
from server.datasets import DATASETS, load_dataset, preview
from server.datasets.base import dataset_nbytes, split_plan
from server.datasets.preview import preview_spec
from server.schemas import DataSpec
from server.uploads import LineCounter, UploadStore

REPO = Path(__file__).resolve().parents[2]
MiB = 2**20
MEMORY_CAP = 1536 * MiB  # the server's DLPLAY_MAX_MEMORY_BYTES in the repro tests: its dataset cache gets 384 MiB


# ---------------------------------------------------------------------------
# A real server process, and its memory
# ---------------------------------------------------------------------------

SERVE = """
if __name__ == "__main__":  # runs fork from a fork server, which re-imports __main__
    import sys, uvicorn
    from server.app import create_app
    from server.config import Settings
    uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[SimpleNamespace]:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's memory from /proc (Linux)")
    data_dir = tmp_path_factory.mktemp("bounded")
    script = data_dir / "serve.py"
    script.write_text(SERVE)
    port = free_port()
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "DLPLAY_DATA_DIR": str(data_dir / "data"),
        "DLPLAY_STATIC_DIR": str(data_dir / "no-static"), "DLPLAY_MAX_MEMORY_BYTES": str(MEMORY_CAP),
        "DLPLAY_TORCH_THREADS": "1",
        # Repro 5 posts from several fresh sessions on one address; the per-address limits are another test's.
        "DLPLAY_MAX_SESSIONS_PER_IP_PER_HOUR": "1000", "DLPLAY_MAX_UPLOADS_PER_IP_PER_HOUR": "1000",
        "DLPLAY_UPLOAD_QUOTA_FILES_PER_SESSION": "3", "DLPLAY_UPLOAD_QUOTA_FILES": "5",
    }
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, str(script), str(port)], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 3 * HANG_GUARD  # the fork server warms the engine up first
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start: {(data_dir / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield SimpleNamespace(url=url, pid=process.pid, data_dir=data_dir / "data")
    finally:
        process.terminate()
        try:
            process.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def session(server: SimpleNamespace) -> Iterator[httpx.Client]:
    """A client with its own cookie jar: a browser session of its own (the server issues it on the first call)."""
    with httpx.Client(base_url=server.url, timeout=HANG_GUARD, headers={"origin": server.url}) as client:
        client.get("/api/uploads")
        yield client


def assert_under_cap(server: SimpleNamespace) -> dict[str, int]:
    memory = memory_kib(server.pid)
    print(f"server memory: {memory['VmRSS'] // 1024} MiB now, {memory['VmHWM'] // 1024} MiB at most")  # pytest -s
    assert memory["VmHWM"] * 1024 < MEMORY_CAP, f"peak RSS {memory['VmHWM'] // 1024} MiB over the cap"
    return memory


def experiment_on(data: dict, classes: int = 2) -> dict:
    return {
        "name": "bounded", "data": data,
        "network": {"layers": [{"kind": "flatten", "name": "flat"},
                               {"kind": "linear", "name": "out", "out_features": classes}]},
        "train": {"optimizer": {"kind": "sgd", "lr": 0.1}, "batch_size": 32, "max_steps": 10},
    }


# ---------------------------------------------------------------------------
# Repro 2: previews and validations of large generated sets
# ---------------------------------------------------------------------------


def test_repro2_previews_of_large_sets_make_only_what_they_show(real_server):
    with session(real_server) as client:
        # The loop: 87,000 photo patches (1 GiB as a dataset) is over this server's 384 MiB budget.
        for seed in range(9):
            response = client.get("/api/datasets/photo_patches/preview",
                                  params={"n": 1, "n_samples": 87000, "seed": seed})
            assert response.status_code == 413, response.text
            assert "would take 1,020 MiB" in response.json()["detail"] and "Fix" in response.json()["detail"]
        # Within the budget (30,000 patches: 352 MiB), each preview cuts one patch and caches nothing.
        before = memory_kib(real_server.pid)["VmRSS"]
        for seed in range(9):
            body = client.get("/api/datasets/photo_patches/preview",
                              params={"n": 1, "n_samples": 30000, "seed": seed}).json()
            assert len(body["images"]) == 1 and body["n_train"] == 24000
        with ThreadPoolExecutor(6) as pool:  # "6 at once -> 6x HTTP 500 MemoryError"
            statuses = list(pool.map(lambda s: client.get("/api/datasets/photo_patches/preview", params={
                "n": 1, "n_samples": 30000, "seed": 100 + s}).status_code, range(6)))
        assert statuses == [200] * 6
        grown = memory_kib(real_server.pid)["VmRSS"] - before
        assert grown * 1024 < 64 * MiB, f"previews grew the server by {grown // 1024} MiB"
        assert_under_cap(real_server)


def test_repro2_validations_fill_the_cache_up_to_its_budget_only(real_server):
    with session(real_server) as client:
        too_big = client.post("/api/validate", json=experiment_on({"name": "photo_patches", "n_samples": 87000}))
        report = too_big.json()
        assert not report["ok"] and "this server keeps at most 384 MiB" in report["errors"][0]["message"]
        # Nine different 12,000-patch sets (141 MiB each): the cache keeps the last two, never more than its budget.
        for seed in range(9):
            report = client.post("/api/validate", json=experiment_on(
                {"name": "photo_patches", "n_samples": 12000, "seed": seed})).json()
            assert report["ok"], report
        with ThreadPoolExecutor(6) as pool:  # six large ones at once are made one at a time
            reports = list(pool.map(lambda s: client.post("/api/validate", json=experiment_on(
                {"name": "photo_patches", "n_samples": 12000, "seed": 50 + s})).json(), range(6)))
        assert all(r["ok"] for r in reports), [r["errors"] for r in reports if not r["ok"]]
        memory = assert_under_cap(real_server)
        # 15 sets of 141 MiB went through; the count-bounded cache this replaced kept 8 of them (1.1 GiB).
        assert memory["VmRSS"] * 1024 < MEMORY_CAP - 512 * MiB


# ---------------------------------------------------------------------------
# Repro 5: uploads measured before they are parsed, with quotas
# ---------------------------------------------------------------------------


def npz_bytes(n: int, features: int, seed: int) -> bytes:
    """An incompressible NPZ: random float32 features, two classes."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.random((n, features), dtype=np.float32), y=rng.integers(0, 2, n))
    return buffer.getvalue()


def test_repro5_a_csv_of_millions_of_rows_is_refused_while_it_streams(real_server):
    rows = b"x,label\n" + b"0,1\n1,0\n" * 2_450_000  # 4.9M rows in 19.6 MB: under the 20 MB byte limit
    assert len(rows) < 20 * MiB

    def post(_: int) -> httpx.Response:
        with session(real_server) as client:
            return client.post("/api/uploads", files={"file": ("rows.csv", rows, "text/csv")})

    with ThreadPoolExecutor(3) as pool:  # "three at once +3 GB never released"
        responses = list(pool.map(post, range(3)))
    for response in responses:
        assert response.status_code == 413, response.text
        assert "more than 60,000 rows" in response.json()["detail"]
    assert_under_cap(real_server)
    assert not list((real_server.data_dir / "uploads" / ".incoming").iterdir())  # nothing of them is kept


def test_repro5_incompressible_uploads_meet_the_session_and_server_quotas(real_server):
    file = npz_bytes(4000, 1200, seed=0)  # 19.2 MB, as float32 in memory too
    with session(real_server) as first:
        ids = []
        for i in range(3):
            response = first.post("/api/uploads", files={"file": (f"set{i}.npz", npz_bytes(4000, 1200, i), "x")})
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        refused = first.post("/api/uploads", files={"file": ("more.npz", file, "application/octet-stream")})
        assert refused.status_code == 429 and "this session already has 3 uploads" in refused.json()["detail"]
        assert [u["id"] for u in first.get("/api/uploads").json()] == ids
        # Fresh sessions (a script dropping its cookie) run into the server-wide quota of 5 files.
        statuses = []
        for i in range(3):
            with session(real_server) as other:
                statuses.append(other.post("/api/uploads", files={"file": (f"o{i}.npz", npz_bytes(4000, 1200, 10 + i),
                                                                            "x")}))
        assert [r.status_code for r in statuses] == [200, 200, 507]
        assert "upload space is full" in statuses[2].json()["detail"]
        # Deleting one frees room for the session.
        assert first.delete(f"/api/uploads/{ids[0]}").status_code == 200
        again = first.post("/api/uploads", files={"file": ("again.npz", file, "application/octet-stream")})
        assert again.status_code == 200, again.text
    assert_under_cap(real_server)


# ---------------------------------------------------------------------------
# The dataset cache
# ---------------------------------------------------------------------------


def shapes(seed: int, n: int = 2000) -> DataSpec:
    return DataSpec(name="shapes", n_samples=n, seed=seed)


def test_the_cache_holds_at_most_its_budget_least_recently_used_first_out():
    one = dataset_nbytes(load_dataset(shapes(0)))
    cache = DatasetCache(int(2.5 * one))
    first = cache.get(shapes(0), None)
    cache.get(shapes(1), None)
    assert cache.get(shapes(0), None) is first  # a hit, and now the most recent
    cache.get(shapes(2), None)  # evicts seed 1, the least recently used
    stats = cache.stats()
    assert stats["entries"] == 2 and stats["used_bytes"] == 2 * one <= cache.budget_bytes
    assert stats["evictions"] == 1 and stats["hits"] == 1 and stats["misses"] == 3
    assert cache.peek(shapes(0)) is first and cache.peek(shapes(1)) is None
    # The same data with other augmentation is the same entry (augmentation is applied per batch).
    augmented = shapes(0).model_copy(update={"augmentation": shapes(0).augmentation.model_copy(update={"hflip": True})})
    assert cache.get(augmented, None) is first


def test_a_set_over_the_budget_is_refused_before_anything_is_made():
    made = []
    cache = DatasetCache(10 * MiB, load=lambda spec, uploads_dir: made.append(spec) or load_dataset(spec))
    with pytest.raises(DatasetTooLarge, match="would take 60 MiB.*at most 10 MiB.*Fix: ask for fewer examples"):
        cache.get(shapes(0, n=20000), None)
    assert made == [] and cache.stats()["misses"] == 0
    assert cache.get(shapes(0, n=1000), None).n_train == 800  # a small one still loads


def test_requests_for_one_spec_share_one_load():
    release = threading.Event()
    loads = []

    def slow_load(spec, uploads_dir):
        loads.append(spec)
        assert release.wait(HANG_GUARD)
        return load_dataset(spec, uploads_dir=uploads_dir)

    cache = DatasetCache(256 * MiB, load=slow_load)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get, shapes(3), None)
        deadline = time.monotonic() + HANG_GUARD
        while not loads:  # the first request is loading
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = pool.submit(cache.get, shapes(3), None)
        while next(iter(cache._pending.values())).waiters < 1:  # the second waits on the first
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.set()
        assert first.result(HANG_GUARD) is second.result(HANG_GUARD)
    assert len(loads) == 1


def test_large_loads_run_one_at_a_time_and_a_waiter_gets_busy():
    cache = DatasetCache(256 * MiB, large_bytes=4 * MiB, wait_seconds=0.05)
    with cache.large_load(100 * MiB, "another"):  # a large load in progress
        with pytest.raises(DatasetBusy, match="another large dataset is being prepared.*Fix: try again"):
            cache.get(shapes(0), None)  # 6 MB: large here
        assert cache.get(DataSpec(name="spiral"), None).n_train == 480  # small ones go on
    assert cache.get(shapes(0), None).n_train == 1600  # and the large one once the other is done


# ---------------------------------------------------------------------------
# Previews: just the examples shown, exactly the full set's
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("variant", [{}, {"n_samples": 1001, "noise": 0.3, "val_fraction": 0.3, "train_subset": 500, "seed": 7}])
def test_a_preview_is_the_full_sets_first_examples(name, variant):
    spec = DataSpec(name=name, **variant)
    shown = preview_spec(spec, 40)
    full = load_dataset(spec)
    assert shown["labels"] == full.y_train[:40].tolist()
    assert (shown["n_train"], shown["n_val"]) == (full.n_train, full.n_val)
    want = preview(full, 40)
    key = {"image": "images", "2d": "points"}.get(shown["kind"], "rows")
    assert np.array_equal(shown[key], want[key])
    # The loader asked for just those examples makes them bit for bit as it makes all of them.
    info = DATASETS[name]
    n = (spec.n_samples or info.default_n) if info.generated else None
    labels, fixed_val = info.labeller(spec, n)
    cap = None if info.generated else spec.n_samples
    train_rows = split_plan(labels, fixed_val, seed=spec.seed, val_fraction=spec.val_fraction, cap=cap,
                            train_subset=spec.train_subset)[0]
    rows = np.sort(train_rows[:40])
    every, some = info.loader(spec, n, None), info.loader(spec, n, rows)
    assert np.array_equal(every.y, labels) and np.array_equal(some.y, labels[rows])
    assert np.array_equal(some.x, every.x[rows])
    assert torch.equal(full.x_train[:40], torch.from_numpy(every.x[train_rows[:40]]))


def test_previews_never_fill_the_cache(tmp_path):
    with page_client(create_app(make_settings(tmp_path / "data"))) as client:
        body = client.get("/api/datasets/shapes/preview", params={"n": 8, "n_samples": 50000}).json()
        assert len(body["images"]) == 8 and body["n_train"] == 40000
        assert client.app.state.datasets.stats()["entries"] == 0
        # A spec already loaded (by validation, here) is previewed from the cache.
        assert client.post("/api/validate", json=experiment_on({"name": "shapes", "n_samples": 500}, 4)).json()["ok"]
        again = client.get("/api/datasets/shapes/preview", params={"n": 8, "n_samples": 500}).json()
        assert client.app.state.datasets.stats()["hits"] == 0 and again["n_train"] == 400


# ---------------------------------------------------------------------------
# Uploads: counted while streaming, owned, expiring
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "a,b\n1,2\n\n3,4\r\n  \n5,6", "\r\r1,0\r2,1\r", "1,0\u20282,1\u20293,0\x1c4,1\x0c\n", "\n\n  \t\n", "x" * 5000 + "\n1,2",
])
def test_the_row_counter_counts_what_the_csv_parser_sees(text):
    data = text.encode()
    want = len([line for line in text.splitlines() if line.strip()])
    for size in (1, 2, 3, 7, 64, len(data) + 1):
        counter = LineCounter()
        for start in range(0, len(data), size):
            counter.feed(data[start:start + size])
        multibyte_split = size < 3 and ("\u2028" in text or "\u2029" in text)
        assert counter.lines == want or (multibyte_split and counter.lines >= want - text.count("\u2028") - 1)


def test_a_csv_is_refused_at_the_first_row_over_the_limit(tmp_path):
    settings = make_settings(tmp_path / "data", max_upload_examples=50)
    with page_client(create_app(settings)) as client:
        rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(50)]
        ok = client.post("/api/uploads", files={"file": ("fifty.csv", "\n\n".join(rows).encode(), "text/csv")})
        assert ok.status_code == 200 and ok.json()["n"] == 50  # blank lines and the header do not count
        over = client.post("/api/uploads", files={"file": ("more.csv", "\n".join(rows + ["1,1,1"]).encode(), "text/csv")})
        assert over.status_code == 413 and "more than 50 rows" in over.json()["detail"]


def test_an_npz_is_measured_from_its_headers_before_it_is_parsed(tmp_path):
    settings = make_settings(tmp_path / "data", max_upload_dataset_bytes=MiB)
    buffer = io.BytesIO()  # 300 black 64x64 images: 12 KB compressed, 4.9 MB as float32
    np.savez_compressed(buffer, x=np.zeros((300, 64, 64), dtype=np.uint8), y=np.arange(300) % 2)
    with page_client(create_app(settings)) as client:
        response = client.post("/api/uploads", files={"file": ("black.npz", buffer.getvalue(), "x")})
        assert response.status_code == 413
        assert "holds 4.7 MB of examples as float32; the limit is 1.0 MB" in response.json()["detail"]
        assert client.get("/api/uploads").json() == []


def csv_file(rows: int = 40, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["x,y,label"] + [f"{a:.3f},{b:.3f},{int(a > b)}" for a, b in rng.normal(size=(rows, 2))]
    return "\n".join(lines).encode()


def test_uploads_belong_to_the_session_that_made_them(tmp_path):
    # TestClient's own host (testserver), allowed: its websocket handshake then passes the Origin check too.
    app = create_app(make_settings(tmp_path / "data", allowed_hosts="testserver"))
    page = {"origin": "http://testserver"}
    with TestClient(app, headers=page) as alice, TestClient(app, headers=page) as bob:
        alice.get("/api/health")
        bob.get("/api/health")
        made = alice.post("/api/uploads", files={"file": ("points.csv", csv_file(), "text/csv")}).json()
        upload_id, name = made["id"], made["name"]
        assert [u["id"] for u in alice.get("/api/uploads").json()] == [upload_id]
        assert alice.get(f"/api/uploads/{upload_id}").json()["n"] == 40
        assert bob.get("/api/uploads").json() == []
        for response in (bob.get(f"/api/uploads/{upload_id}"), bob.delete(f"/api/uploads/{upload_id}"),
                         bob.get(f"/api/datasets/{name}/preview", params={"n": 4})):
            assert response.status_code == 404 and "no such upload in this session" in response.json()["detail"]
        document = experiment_on({"name": name})
        refused = bob.post("/api/validate", json=document).json()
        assert not refused["ok"] and "no such upload in this session" in refused["errors"][0]["message"]
        with bob.websocket_connect("/ws") as ws:  # a run naming it is refused at validation too
            ws.send_json({"cmd": "start", "experiment": document, "id": "s1"})
            reply = ws.receive_json()
            assert reply["code"] == "invalid_experiment" and "no such upload" in reply["message"]
        assert alice.post("/api/validate", json=document).json()["ok"]
        assert alice.get(f"/api/datasets/{name}/preview", params={"n": 4}).status_code == 200
        # The same file from Bob is Bob's own upload, with its own id.
        theirs = bob.post("/api/uploads", files={"file": ("points.csv", csv_file(), "text/csv")}).json()
        assert theirs["id"] != upload_id and bob.post("/api/validate", json=experiment_on({"name": theirs["name"]})).json()["ok"]
        # Deleting it ends its use, and drops it from the dataset cache.
        assert app.state.datasets.peek(DataSpec(name=name)) is not None
        assert alice.delete(f"/api/uploads/{upload_id}").json() == {"deleted": upload_id}
        assert app.state.datasets.peek(DataSpec(name=name)) is None
        assert alice.get("/api/uploads").json() == [] and not alice.post("/api/validate", json=document).json()["ok"]
        stored = {p.name for p in (tmp_path / "data" / "uploads").iterdir() if p.is_file()}
        assert stored == {f"{theirs['id']}.npz", f"{theirs['id']}.json"}
        assert "session" not in (tmp_path / "data" / "uploads" / f"{theirs['id']}.json").read_text()


def age(uploads_dir: Path, upload_id: str, seconds: float) -> None:
    """Make an upload look ``seconds`` older."""
    meta = uploads_dir / f"{upload_id}.json"
    record = json.loads(meta.read_text())
    record["created"] -= seconds
    meta.write_text(json.dumps(record))


def test_uploads_expire_by_the_periodic_sweep_and_at_start(tmp_path):
    settings = make_settings(tmp_path / "data", upload_max_age_seconds=3600, upload_sweep_seconds=0.05)
    uploads_dir = tmp_path / "data" / "uploads"
    with page_client(create_app(settings)) as client:
        old = client.post("/api/uploads", files={"file": ("old.csv", csv_file(seed=1), "text/csv")}).json()["id"]
        new = client.post("/api/uploads", files={"file": ("new.csv", csv_file(seed=2), "text/csv")}).json()["id"]
        age(uploads_dir, old, 3601)
        deadline = time.monotonic() + HANG_GUARD
        while (uploads_dir / f"{old}.npz").exists():  # the sweep runs every 0.05 s here
            assert time.monotonic() < deadline, "the periodic sweep did not delete the expired upload"
            time.sleep(0.02)
        assert [u["id"] for u in client.get("/api/uploads").json()] == [new]
    age(uploads_dir, new, 3601)  # expires while the server is down
    (uploads_dir / ".incoming").mkdir(exist_ok=True)
    (uploads_dir / ".incoming" / "cut-short.part").write_bytes(b"half an upload")
    store = UploadStore(uploads_dir, settings.model_copy(update={"upload_sweep_seconds": 3600}))
    store.start()  # what the app's start does
    try:
        assert not (uploads_dir / f"{new}.npz").exists() and not (uploads_dir / f"{new}.json").exists()
        assert not list((uploads_dir / ".incoming").iterdir())
    finally:
        store.close()
