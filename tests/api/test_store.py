"""The SQLite store: schema versioning, runs, metric thinning, interruption, safetensors weights."""

from __future__ import annotations

import sqlite3
import threading

import torch
from safetensors.torch import load_file

from server.store import MIGRATIONS, Store, thin_indices


def test_schema_is_versioned_and_reopening_keeps_data(tmp_path):
    store = Store(tmp_path)
    assert store.schema_version == len(MIGRATIONS)
    store.create_run("r1", "s1", "first", {"name": "first"})
    store.close()
    again = Store(tmp_path)  # migrations are not re-applied
    assert again.schema_version == len(MIGRATIONS)
    assert again.get_run("r1").experiment == {"name": "first"}


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "dlplay.sqlite3")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    try:
        Store(tmp_path)
    except RuntimeError as error:
        assert "newer than this dlplay" in str(error)
    else:
        raise AssertionError("a newer schema must be refused")


def test_runs_lifecycle_and_sessions(tmp_path):
    store = Store(tmp_path)
    store.create_run("a", "s1", "A", {"k": 1})
    store.create_run("b", "s2", "B", {"k": 2})
    store.set_status("a", "running", started=True, device="cpu")
    store.set_summary("a", {"type": "summary", "seq": 2})
    store.finish_run("a", "finished", final={"type": "final", "steps": 5}, stop_reason="finished", message="done")
    a = store.get_run("a")
    assert (a.status, a.stop_reason, a.final["steps"], a.summary["seq"], a.device) == ("finished", "finished", 5, 2, "cpu")
    assert a.started_at is not None and a.finished_at is not None
    assert [r.id for r in store.list_runs("s1")] == ["a"]
    assert [r.id for r in store.list_runs("s2")] == ["b"]


def test_mark_interrupted_only_touches_active_runs(tmp_path):
    store = Store(tmp_path)
    for run_id, status in [("q", "queued"), ("r", "running"), ("p", "paused"), ("f", "finished"), ("x", "failed")]:
        store.create_run(run_id, "s", run_id, {})
        store.set_status(run_id, status)
    assert store.mark_interrupted() == 3
    assert {r.id: r.status for r in store.list_runs("s")} == {
        "q": "interrupted", "r": "interrupted", "p": "interrupted", "f": "finished", "x": "failed"}
    assert store.get_run("r").message


def test_thinning_keeps_first_last_and_validation_points():
    has_val = [i % 10 == 0 for i in range(101)]  # a validation point every 10th
    dropped = set(thin_indices(has_val, 40))
    kept = [i for i in range(101) if i not in dropped]
    assert len(kept) <= 40
    assert kept[0] == 0 and kept[-1] == 100
    assert all(i in kept for i in range(0, 101, 10))  # validation points go last
    assert thin_indices([False] * 10, 20) == []


def test_metric_history_is_capped_per_run(tmp_path):
    store = Store(tmp_path, metric_cap=50)
    store.create_run("a", "s", "a", {})
    store.create_run("b", "s", "b", {})
    for start in range(0, 400, 20):
        store.append_metrics([("a", [{"step": s, "val_loss": None} for s in range(start, start + 20)]),
                              ("b", [{"step": start, "val_loss": 1.0}])])
    steps = [p["step"] for p in store.metrics("a")]
    assert len(steps) <= 50
    assert steps[0] == 0 and steps[-1] == 399 and steps == sorted(steps)
    assert len(store.metrics("b")) == 20  # under its cap, untouched


def test_weights_are_safetensors_and_deleted_with_the_run(tmp_path):
    store = Store(tmp_path)
    store.create_run("w", "s", "w", {})
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    path = store.save_weights("w", model.state_dict(), metadata={"run_id": "w"})
    assert path == tmp_path / "weights" / "w.safetensors"
    loaded = load_file(str(path))  # safetensors, never torch.load
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor)
    store.finish_run("w", "finished", final=None, stop_reason="finished", weights_path=path)
    assert store.get_run("w").to_dict()["has_weights"]
    store.append_metrics([("w", [{"step": 1}])])
    assert store.delete_run("w")
    assert not path.exists() and store.get_run("w") is None and store.metrics("w") == []
    assert not store.delete_run("w")


def test_store_is_usable_from_many_threads(tmp_path):
    store = Store(tmp_path)
    errors = []

    def work(n):
        try:
            for i in range(20):
                run_id = f"{n}-{i}"
                store.create_run(run_id, f"s{n}", run_id, {})
                store.append_metrics([(run_id, [{"step": 1}, {"step": 2}])])
                assert store.get_run(run_id) is not None
        except Exception as error:  # collected and asserted on the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(len(store.list_runs(f"s{n}")) for n in range(6)) == 120
