"""Hyperparameter searches (POST/GET/DELETE /api/searches): real short runs through the real scheduler.

Each trial is a real run of a small MLP on a 200-point spiral (tens of milliseconds), so these tests
check the search against what the runs themselves report: every trial's run exists in the session
with the trial's lr, l2 and length, the best trial is the maximum of the runs' own final messages,
no more than ``parallel`` trials were ever admitted at once (from the scheduler's own admission and
end times), and the fine stage's ranges are what the pure engine (server/lessons/search.py) narrows
the coarse results to. Nothing here is timed: the loops wait with a hang guard only.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from api_helpers import HANG_GUARD, make_settings, page_client, tiny_experiment
from fastapi.testclient import TestClient

from server.app import create_app
from server.lessons.search import SearchSpace, LogRange, Trial, TrialConfig, narrow
from server.sessions import SESSION_COOKIE

QUOTA = 2  # active runs per session in these tests: a search of parallel 3 must hold itself to 2


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("search-data"), max_active_runs_per_session=QUOTA)
    with page_client(create_app(settings)) as client:
        client.post("/api/session")  # receives its session cookie
        yield client


def spec(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"strategy": "random", "trials": 6, "steps": 30, "parallel": 3,
                            "experiment": tiny_experiment(probes=False)}
    body.update(overrides)
    return body


def wait_ended(client: TestClient, search_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        body = client.get(f"/api/searches/{search_id}").json()
        if body["status"] not in ("running", "stopping"):
            return body
        assert time.monotonic() < deadline, f"the search did not end: {body['message']}"
        time.sleep(0.05)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that contain one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def test_every_trial_is_a_run_the_best_is_the_max_and_at_most_k_train_at_once(client):
    started = client.post("/api/searches", json=spec())
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["parallel"] == QUOTA  # asked for 3; the session may train only 2 at once
    assert [t["stage"] for t in body["trials"]] == ["coarse"] * 6
    body = wait_ended(client, body["id"])
    assert body["status"] == "finished", body["message"]
    trials = body["trials"]
    run_ids = [t["run_id"] for t in trials]
    assert all(run_ids) and len(set(run_ids)) == 6
    assert all(t["status"] == "finished" and t["step"] == 30 for t in trials)

    # Each trial is an ordinary run of this session, with the trial's values and length.
    finals = {}
    for trial in trials:
        run = client.get(f"/api/runs/{trial['run_id']}").json()
        assert run["status"] == "finished"
        train = run["experiment"]["train"]
        assert train["optimizer"]["lr"] == pytest.approx(trial["lr"]) and train["l2"] == pytest.approx(trial["l2"])
        assert train["max_steps"] == 30 and run["final"]["steps"] == 30
        assert 1e-4 <= trial["lr"] <= 1.0 and 1e-6 <= trial["l2"] <= 1e-1
        finals[trial["run_id"]] = run["final"]["best_val_acc"]
        assert trial["best_val_acc"] == pytest.approx(finals[trial["run_id"]])
    # Random search on a log scale: the learning rates are distinct draws, not a few grid values.
    assert len({round(t["lr"], 12) for t in trials}) == 6

    # The best trial is the maximum of the runs' own finals (the first of equals).
    best_value = max(finals.values())
    first_best = next(t for t in trials if finals[t["run_id"]] == best_value)
    assert body["best"]["best_val_acc"] == pytest.approx(best_value)
    assert body["best"]["run_id"] == first_best["run_id"] and body["best"]["index"] == first_best["index"]

    # The scheduler's own record: never more than the quota of trials admitted at once.
    scheduler = client.app.state.scheduler
    runs = [scheduler.get(run_id) for run_id in run_ids]
    assert all(r is not None and r.admitted_at is not None and r.ended_at is not None for r in runs)
    assert max_overlap([(r.admitted_at, r.ended_at) for r in runs]) <= QUOTA
    assert 1 <= body["max_in_flight"] <= QUOTA


def test_grid_coarse_then_fine_narrows_around_the_best_coarse_trials(client):
    body = client.post("/api/searches", json=spec(
        strategy="grid", trials=4, steps=20, fine_trials=3, fine_steps=40, top_k=2,
        lr={"low": 1e-4, "high": 1.0}, l2={"low": 1e-6, "high": 1e-2})).json()
    body = wait_ended(client, body["id"])
    assert body["status"] == "finished", body["message"]
    coarse = [t for t in body["trials"] if t["stage"] == "coarse"]
    fine = [t for t in body["trials"] if t["stage"] == "fine"]
    assert len(coarse) == 4 and len(fine) == 3
    # A 2 x 2 grid in log space: the ends of both ranges.
    assert sorted({t["lr"] for t in coarse}) == pytest.approx([1e-4, 1.0])
    assert sorted({t["l2"] for t in coarse}) == pytest.approx([1e-6, 1e-2])
    assert all(t["steps"] == 20 for t in coarse) and all(t["steps"] == 40 and t["step"] == 40 for t in fine)

    # The fine ranges are what the engine narrows the coarse scores to, and they are narrower.
    space = SearchSpace(lr=LogRange(1e-4, 1.0), l2=LogRange(1e-6, 1e-2))
    scored = [Trial(t["index"], TrialConfig(t["lr"], t["l2"], "coarse", 20),
                    math.nan if t["best_val_acc"] is None else t["best_val_acc"]) for t in coarse]
    expected = narrow(space, scored, top_k=2)
    got = body["spaces"]["fine"]
    assert got["lr"] == pytest.approx([expected.lr.low, expected.lr.high])
    assert got["l2"] == pytest.approx([expected.l2.low, expected.l2.high])
    assert math.log10(got["lr"][1] / got["lr"][0]) < 4  # the coarse lr range spans 4 decades
    best_coarse = max(coarse, key=lambda t: -1 if t["best_val_acc"] is None else t["best_val_acc"])
    assert got["lr"][0] <= best_coarse["lr"] <= got["lr"][1]
    for t in fine:
        assert got["lr"][0] * (1 - 1e-9) <= t["lr"] <= got["lr"][1] * (1 + 1e-9)
        assert got["l2"][0] * (1 - 1e-9) <= t["l2"] <= got["l2"][1] * (1 + 1e-9)
    finished = [t["best_val_acc"] for t in body["trials"] if t["best_val_acc"] is not None]
    assert body["best"]["best_val_acc"] == pytest.approx(max(finished))


def test_a_search_belongs_to_its_session_and_stops_on_delete(client):
    body = client.post("/api/searches", json=spec(trials=8, steps=20000)).json()
    search_id = body["id"]
    # One search at a time per session.
    again = client.post("/api/searches", json=spec())
    assert again.status_code == 409 and search_id in again.json()["detail"]

    mine = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, "another-session-0001")
    try:
        assert client.get(f"/api/searches/{search_id}").status_code == 404
        assert client.delete(f"/api/searches/{search_id}").status_code == 404
        assert client.get("/api/searches").json() == []
    finally:
        client.cookies.set(SESSION_COOKIE, mine)
    assert client.get(f"/api/searches/{search_id}").json()["status"] == "running"  # untouched by the other session
    assert [s["id"] for s in client.get("/api/searches").json()][0] == search_id

    # Stop once a trial has started: the trials in flight end "stopped", the rest never start.
    deadline = time.monotonic() + HANG_GUARD
    while not any(t["status"] == "running" for t in client.get(f"/api/searches/{search_id}").json()["trials"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.delete(f"/api/searches/{search_id}").json()["status"] in ("stopping", "stopped")
    body = wait_ended(client, search_id)
    assert body["status"] == "stopped"
    statuses = [t["status"] for t in body["trials"]]
    assert "running" not in statuses and "queued" not in statuses and "skipped" in statuses
    for trial in body["trials"]:
        if trial["run_id"]:
            assert client.get(f"/api/runs/{trial['run_id']}").json()["status"] in ("stopped", "finished")


@pytest.mark.parametrize("change, fragment", [
    ({"trials": 1}, "trials: Input should be greater than or equal to 2"),
    ({"trials": 65}, "trials: Input should be less than or equal to 64"),
    ({"lr": {"low": 0, "high": 1}}, "lr.low: Input should be greater than 0"),
    ({"l2": {"low": -1e-3, "high": 1e-2}}, "l2.low: Input should be greater than 0"),
    ({"lr": {"low": 1.0, "high": 0.01}}, "low (1) is above high (0.01). Fix: swap them"),
    ({"strategy": "bayes"}, "strategy: Input should be 'random' or 'grid'"),
    ({"trials": 40, "fine_trials": 30}, "a search runs at most 64"),
    ({"fine_trials": 1}, "a fine stage of 1 trial searches nothing"),
    ({"experiment": tiny_experiment() | {"data": {"name": "no-such-data"}}}, "experiment: "),
])
def test_a_bad_spec_is_a_422_with_a_clear_message_and_starts_nothing(client, change, fragment):
    before_runs = len(client.get("/api/runs").json())
    before_searches = len(client.get("/api/searches").json())
    reply = client.post("/api/searches", json=spec(**change))
    assert reply.status_code == 422
    assert fragment in reply.json()["detail"]
    assert len(client.get("/api/runs").json()) == before_runs
    assert len(client.get("/api/searches").json()) == before_searches
