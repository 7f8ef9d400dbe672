"""Issue 10: the classroom's server core (server/classroom.py, its routes, the access rules, quotas).

A class is made the way ``dlplay class`` makes it (``ClassroomService.create``), then everything is
driven from outside: students join with the code over HTTP and train real tiny spiral runs on the
websocket, the teacher uses the key (cookie or bearer). Timeouts are hang guards only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from api_helpers import (HANG_GUARD, WsClient, free_port, is_final, make_settings, page_client, running_server,
                         tiny_experiment)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server import cli
from server.app import create_app
from server.classroom import DEFAULT_QUOTAS, ClassroomService, locked_changes, normalize_code, rank_leaderboard
from server.schemas import Experiment
from server.security import exposure_problem
from server.sessions import SESSION_COOKIE

REPO = Path(__file__).resolve().parents[2]
# Small quotas, so that going over them is cheap: tiny_experiment's 16 hidden units have 82 parameters.
QUOTAS = {"max_active_runs": 1, "max_steps": 400, "max_params": 2000}
PAUSED = "paused"


def http_client(srv: SimpleNamespace, **headers: str) -> httpx.Client:
    """A client like the page: same origin, keeps cookies."""
    return httpx.Client(base_url=srv.url, headers={"origin": srv.url, **headers}, timeout=HANG_GUARD)


def join(srv: SimpleNamespace, name: str, code: str | None = None) -> tuple[httpx.Client, str, dict[str, Any]]:
    """A student joins: (their HTTP client, holding the session cookie; their session token; the member)."""
    http = http_client(srv)
    answer = http.post("/api/class/join", json={"code": code or srv.classroom.code, "name": name})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return http, body["session"], body["member"]


def teacher(srv: SimpleNamespace) -> httpx.Client:
    """The teacher as a script: ``Authorization: Bearer KEY``."""
    return http_client(srv, authorization=f"Bearer {srv.classroom.teacher_key}")


def state_is(run_id: str, state: str):
    return lambda m: m.get("run_id") == run_id and m["type"] == "status" and m.get("state") == state


def start_error(ws: WsClient, experiment: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Start a run that must be refused; returns the error."""
    ws.send(cmd="start", experiment=experiment, id="refused", **extra)
    answer = ws.until(lambda m: m.get("request_id") == "refused")
    assert answer["type"] == "error", answer
    return answer


def closed_with(conn: Any) -> int:
    """The close code the server sent (after reading whatever came before it)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            conn.recv(timeout=HANG_GUARD)
    return closed.value.rcvd.code


@contextlib.contextmanager
def class_server(data_dir: Path, **settings: Any) -> Iterator[SimpleNamespace]:
    """A real server (real training) with an open class, made as `dlplay class` makes it."""
    with running_server(make_settings(data_dir, **settings)) as srv:
        service: ClassroomService = srv.app.state.classroom
        srv.classroom = service.current or service.create("Lesson 1", quotas=QUOTAS)
        yield srv


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[SimpleNamespace]:
    with class_server(tmp_path_factory.mktemp("classroom")) as server:
        yield server


# ---------------------------------------------------------------------------
# The pure parts
# ---------------------------------------------------------------------------


def test_codes_are_typed_in_any_case_with_or_without_the_dash():
    assert normalize_code("abc123") == normalize_code(" ABC-123 ") == normalize_code("a b c 1 2 3") == "ABC-123"
    assert normalize_code("ABC12") == "ABC12"  # too short: stays wrong


def test_locked_changes_name_each_field_the_lesson_locks():
    lesson = Experiment.model_validate(tiny_experiment(300)).model_dump(mode="json")
    lr = Experiment.model_validate(tiny_experiment(300, lr=0.1, name="mine")).model_dump(mode="json")
    wide = Experiment.model_validate(tiny_experiment(300, hidden=32)).model_dump(mode="json")
    assert locked_changes(lesson, lr, ["train.optimizer.lr"]) == []  # the name is always the student's
    assert [c[0] for c in locked_changes(lesson, lr, [])] == ["train.optimizer.lr"]
    assert locked_changes(lesson, wide, ["train.optimizer.lr"]) == [("network.layers.0.out_features", 16, 32)]
    assert locked_changes(lesson, wide, ["network.layers"]) == [] and locked_changes(lesson, wide, ["*"]) == []
    # a prefix is a path, not a string prefix: "network.lay" unlocks nothing
    assert locked_changes(lesson, wide, ["network.lay"]) != []


def test_the_leaderboard_takes_each_students_best_run_and_puts_over_budget_runs_last():
    rows = [
        {"member_id": "a", "name": "Ada", "run_id": "a1", "best_val_acc": 0.7, "within_budget": True},
        {"member_id": "a", "name": "Ada", "run_id": "a2", "best_val_acc": 0.9, "within_budget": False},
        {"member_id": "b", "name": "Bob", "run_id": "b1", "best_val_acc": 0.8, "within_budget": True},
        {"member_id": "c", "name": "Cy", "run_id": "c1", "best_val_acc": None, "within_budget": True},
    ]
    assert [r["run_id"] for r in rank_leaderboard(rows, None)] == ["a2", "b1", "c1"]
    assert [r["run_id"] for r in rank_leaderboard(rows, {"param_budget": 100})] == ["b1", "a1", "c1"]


def test_an_open_class_lets_the_server_listen_beyond_loopback_without_a_token():
    assert exposure_problem("0.0.0.0", None) is not None
    assert exposure_problem("0.0.0.0", None, class_open=True) is None
    assert "at least 8" in exposure_problem("0.0.0.0", "short", class_open=True)


# ---------------------------------------------------------------------------
# Joining
# ---------------------------------------------------------------------------


def test_a_student_joins_with_the_code_and_a_name(srv):
    code = srv.classroom.code
    with http_client(srv) as http:
        wrong = http.post("/api/class/join", json={"code": "ZZZ-ZZZ", "name": "Ada"})
        assert wrong.status_code == 403 and wrong.json()["code"] == "bad_code" and "Fix:" in wrong.json()["detail"]
        assert SESSION_COOKIE not in http.cookies
        empty = http.post("/api/class/join", json={"code": code, "name": "   "})
        assert empty.status_code == 400 and empty.json()["code"] == "bad_name"
        joined = http.post("/api/class/join", json={"code": code.lower().replace("-", ""), "name": " Ada  Lovelace "})
        assert joined.status_code == 201, joined.text
        body = joined.json()
        assert body["member"]["name"] == "Ada Lovelace" and body["class"] == {"title": "Lesson 1"}
        assert http.cookies[SESSION_COOKIE] == body["session"]  # the browser is in the class from now on
        me = http.get("/api/class/me").json()
        assert me["member"] == body["member"] and me["quotas"] == {**DEFAULT_QUOTAS, **QUOTAS,
                                                                   "max_step_macs": me["quotas"]["max_step_macs"]}
        assert me["class"]["code"] == code and me["lesson"] is None and me["runs"] == []
        # the same browser joining again under its name gets its membership back
        again = http.post("/api/class/join", json={"code": code, "name": "ada lovelace"})
        assert again.status_code == 201 and again.json()["member"]["id"] == body["member"]["id"]
    with http_client(srv) as other:  # another browser: the name is taken, whatever its case
        taken = other.post("/api/class/join", json={"code": code, "name": "ADA LOVELACE"})
        assert taken.status_code == 409 and taken.json()["code"] == "name_taken"


def test_without_the_code_only_the_join_page_answers(srv):
    with http_client(srv) as stranger:
        page = stranger.get("/", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/join"
        api = stranger.get("/api/runs")
        assert api.status_code == 401 and api.json()["code"] == "not_in_class" and "/join" in api.json()["detail"]
        assert stranger.post("/api/session").status_code == 401  # no minting sessions around the code
        assert stranger.get("/api/class").status_code == 401
        join_page = stranger.get("/join")
        assert join_page.status_code == 200 and "/api/class/join" in join_page.text  # the fallback page works
        assert stranger.get("/api/health").status_code == 200
        assert stranger.get("/app.js").status_code == 404  # a static asset: public (none built in this test)
        assert stranger.get("/teacher").status_code == 401  # the dashboard needs the key
    with connect(srv.ws, open_timeout=HANG_GUARD) as conn:  # a websocket without a member session
        error = json.loads(conn.recv(timeout=HANG_GUARD))
        assert error["type"] == "error" and error["code"] == "not_in_class"
        assert closed_with(conn) == 4401
    assert srv.app.state.scheduler.counts() == {"active": 0, "queued": 0}


def test_the_teacher_signs_in_with_the_key(srv):
    key = srv.classroom.teacher_key
    with http_client(srv) as browser:
        link = browser.get(f"/teacher?key={key}", follow_redirects=False)
        assert link.status_code == 303 and link.headers["location"] == "/teacher"  # the key leaves the address bar
        cookie = browser.cookies["dlplay_teacher"]
        assert key not in cookie
        assert browser.get("/teacher").status_code == 200
        assert browser.get("/api/runs").status_code == 200  # the teacher may use the normal page too
        view = browser.get("/api/class").json()
        assert view["class"]["code"] == srv.classroom.code and view["class"]["join_url"].endswith("/join")
        assert browser.get("/api/class/me").json()["teacher"] is True
        qr = browser.get("/api/class/qr.svg?scale=4")
        assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml" and "<svg" in qr.text
    with teacher(srv) as script:
        assert script.get("/api/class").status_code == 200
    with http_client(srv, authorization="Bearer not-the-key") as wrong:
        refused = wrong.get("/api/class")
        assert refused.status_code == 401 and refused.json()["code"] == "not_in_class"
    student, _, _ = join(srv, "Teacher Wannabe")
    with contextlib.closing(student):
        refused = student.get("/api/class")
        assert refused.status_code == 403 and refused.json()["code"] == "not_teacher"
        assert student.post("/api/class/end").json()["code"] == "not_teacher"
    with WsClient(f"{srv.ws}?key={key}") as ws:  # a teacher's script on the websocket
        ws.send(cmd="ping", id="p")
        assert ws.until(lambda m: m.get("request_id") == "p")["type"] == "pong"


# ---------------------------------------------------------------------------
# Quotas, fairness, isolation
# ---------------------------------------------------------------------------


def test_the_class_quotas_hold_for_each_student(srv):
    http, token, member = join(srv, "Quota Quinn")
    with contextlib.closing(http), WsClient(srv.ws, token) as ws:
        long = start_error(ws, tiny_experiment(5000))
        assert long["code"] == "over_quota" and "at most 400 steps" in long["message"] and "Fix:" in long["message"]
        until_stopped = {**tiny_experiment()["train"], "max_steps": None, "epochs": None}
        endless = start_error(ws, {**tiny_experiment(), "train": until_stopped})
        assert endless["code"] == "over_quota" and "until stopped" in endless["message"]
        wide = start_error(ws, tiny_experiment(100, hidden=600))  # 3,002 parameters
        assert wide["code"] == "over_quota" and "3,002 parameters" in wide["message"]
        # one run at a time in this class: a run waiting at step 0 holds the place
        first = ws.start(tiny_experiment(100), paused=True)
        ws.until(state_is(first, PAUSED))
        run = srv.app.state.scheduler.get(first)
        assert run.owner == member["id"] and run.client_ip is None  # fair share per student, not per address
        second = start_error(ws, tiny_experiment(100))
        assert second["code"] == "too_many_runs" and "Fix:" in second["message"]
        ws.send(cmd="stop", run_id=first)
        ws.until(is_final(first))
        again = ws.start(tiny_experiment(100))
        ws.until(is_final(again))
        assert http.get("/api/class/me").json()["runs"] == [first, again]


def test_a_students_search_is_held_to_the_class_quotas_and_the_lessons_locks(tmp_path):
    """A hyperparameter search (lesson 21) is a student's runs: its longest trial must pass the class's quotas,
    at most their quota of trials trains at once, the trials are theirs (fair share, dashboard), and a lesson
    that locks the learning rate allows no search over it."""
    with class_server(tmp_path / "data") as srv:
        http, _, member = join(srv, "Search Sam")
        with contextlib.closing(http):
            def search(**spec: Any) -> httpx.Response:
                return http.post("/api/searches", json={"experiment": tiny_experiment(10), "trials": 4, "steps": 40,
                                                        "parallel": 4, **spec})

            long = search(steps=5000)
            assert long.status_code == 403 and long.json()["code"] == "over_quota", long.text
            assert "at most 400 steps" in long.json()["detail"] and "Fix:" in long.json()["detail"]
            long_fine = search(fine_trials=2, fine_steps=1000)  # the fine stage's trials are the longest
            assert long_fine.status_code == 403 and "takes 1000 steps" in long_fine.json()["detail"]
            wide = search(experiment=tiny_experiment(10, hidden=600))
            assert wide.status_code == 403 and "3,002 parameters" in wide.json()["detail"]
            assert srv.app.state.scheduler.counts().get("active", 0) == 0  # nothing started

            started = search()
            assert started.status_code == 201, started.text
            search_id = started.json()["id"]
            assert started.json()["parallel"] == 1  # QUOTAS: one run at a time in this class
            deadline = time.monotonic() + HANG_GUARD
            while (body := http.get(f"/api/searches/{search_id}").json())["status"] == "running":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
            assert body["status"] == "finished", body
            runs = [t["run_id"] for t in body["trials"]]
            assert len(runs) == 4 and all(runs)
            assert http.get("/api/class/me").json()["runs"] == runs  # the student's runs on the dashboard
            for run_id in runs:
                assert srv.app.state.store.get_run(run_id).status == "finished"

            with teacher(srv) as boss:
                lesson = {"experiment": tiny_experiment(10), "editable": ["train.max_steps"], "source": "preset:spiral"}
                assert boss.post("/api/class/lesson", json=lesson).status_code == 200
            locked = search()
            assert locked.status_code == 403 and locked.json()["code"] == "locked_field", locked.text
            assert re.search(r"the lesson locks train\.(optimizer\.lr|l2)", locked.json()["detail"]), locked.text


def test_students_behind_one_address_are_not_held_to_the_per_address_run_limit(tmp_path):
    with class_server(tmp_path / "data", max_runs_per_ip=1) as srv:
        runs = []
        clients = []
        try:
            for name in ("Nat One", "Nat Two"):  # both from 127.0.0.1, like a class behind one NAT
                _, token, _ = join(srv, name)
                ws = WsClient(srv.ws, token)
                clients.append(ws)
                run_id = ws.start(tiny_experiment(100), paused=True)
                ws.until(state_is(run_id, PAUSED))
                runs.append(run_id)
            owners = {srv.app.state.scheduler.get(r).owner for r in runs}
            assert len(owners) == 2
        finally:
            for ws, run_id in zip(clients, runs):
                ws.send(cmd="stop", run_id=run_id)
                ws.until(is_final(run_id))
            for ws in clients:
                ws.close()


def test_a_student_cannot_open_another_students_run(srv):
    alice, alice_token, _ = join(srv, "Iso Alice")
    bob, bob_token, _ = join(srv, "Iso Bob")
    with contextlib.closing(alice), contextlib.closing(bob), WsClient(srv.ws, alice_token) as alice_ws, WsClient(srv.ws, bob_token) as bob_ws:
        run_id = alice_ws.start(tiny_experiment(50))
        alice_ws.until(is_final(run_id))
        assert alice.get(f"/api/runs/{run_id}").status_code == 200
        assert bob.get(f"/api/runs/{run_id}").status_code == 404
        assert bob.get(f"/api/runs/{run_id}/metrics").status_code == 404
        assert [r["id"] for r in bob.get("/api/runs").json()] == []
        for command in ({"cmd": "subscribe", "run_id": run_id, "after_seq": 0}, {"cmd": "stop", "run_id": run_id}):
            bob_ws.send(**command, id="peek")
            error = bob_ws.until(lambda m: m.get("request_id") == "peek")
            assert error["type"] == "error" and error["code"] == "not_found"
        assert bob_ws.of(run_id, "metrics") == []


def test_uploads_are_held_to_the_class_quota(tmp_path):
    settings = make_settings(tmp_path / "data")
    with page_client(create_app(settings)) as client:
        classroom = client.app.state.classroom.create("Uploads", quotas={"uploads": 1})
        assert client.post("/api/class/join", json={"code": classroom.code, "name": "Uma"}).status_code == 201
        rows = np.random.default_rng(0).normal(size=(40, 2))
        csv = b"x1,x2,label\n" + "".join(f"{a:.4f},{b:.4f},{int(a > b)}\n" for a, b in rows).encode()
        files = {"file": ("points.csv", csv, "text/csv")}
        assert client.post("/api/uploads", files=files).status_code == 200
        second = client.post("/api/uploads", files=files)
        assert second.status_code == 429 and second.json()["code"] == "over_quota" and "Fix:" in second.json()["detail"]


def test_wrong_codes_are_limited_per_address(tmp_path):
    settings = make_settings(tmp_path / "data", max_access_attempts_per_ip_per_hour=3)
    with page_client(create_app(settings)) as client:
        classroom = client.app.state.classroom.create("Guessing")
        for guess in ("AAA-AAA", "BBB-BBB", "CCC-CCC"):
            assert client.post("/api/class/join", json={"code": guess, "name": "Eve"}).json()["code"] == "bad_code"
        blocked = client.post("/api/class/join", json={"code": classroom.code, "name": "Eve"})  # even the right one
        assert blocked.status_code == 429 and blocked.json()["code"] == "too_many_attempts"


# ---------------------------------------------------------------------------
# The teacher's controls
# ---------------------------------------------------------------------------


def test_the_teacher_pauses_resumes_and_stops_a_students_run(srv):
    _, token, member = join(srv, "Controlled Carla")
    with WsClient(srv.ws, token) as ws, teacher(srv) as boss:
        run_id = ws.start(tiny_experiment(400), paused=True)
        ws.until(state_is(run_id, PAUSED))
        resumed = boss.post(f"/api/class/runs/{run_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["member_id"] == member["id"]
        ws.until(state_is(run_id, "running"))
        boss.post(f"/api/class/runs/{run_id}/pause")
        ws.until(state_is(run_id, PAUSED))
        assert boss.post(f"/api/class/runs/{run_id}/stop").status_code == 200
        assert ws.until(is_final(run_id))["stop_reason"] == "stopped"
        assert boss.post("/api/class/runs/0000000000000000/stop").status_code == 404
        late = boss.post(f"/api/class/runs/{run_id}/resume")
        assert late.status_code == 409 and late.json()["code"] == "run_ended"


def test_a_kicked_student_is_locked_out_and_their_runs_stop(srv):
    http, token, member = join(srv, "Kicked Kim")
    with contextlib.closing(http), WsClient(srv.ws, token) as ws, teacher(srv) as boss:
        run_id = ws.start(tiny_experiment(400), paused=True)
        ws.until(state_is(run_id, PAUSED))
        assert boss.post(f"/api/class/members/{member['id']}/kick").status_code == 200
        assert ws.until(is_final(run_id))["stop_reason"] == "stopped"
        refused = http.get("/api/runs")
        assert refused.status_code == 401 and "removed you" in refused.json()["detail"]
        assert http.get("/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"] == "/join"
        ws.send(cmd="ping", id="p")  # the open connection is closed on its next command
        assert ws.until(lambda m: m.get("request_id") == "p")["code"] == "not_in_class"
        assert closed_with(ws.conn) == 4401
        with connect(f"{srv.ws}?session={token}", open_timeout=HANG_GUARD) as conn:  # and cannot come back
            assert json.loads(conn.recv(timeout=HANG_GUARD))["code"] == "not_in_class"
        members = boss.get("/api/class").json()["members"]
        assert next(m for m in members if m["id"] == member["id"])["kicked"] is True
        assert boss.post("/api/class/members/nobody/kick").json()["code"] == "no_member"


# ---------------------------------------------------------------------------
# The lesson and the leaderboard
# ---------------------------------------------------------------------------


def test_a_lesson_locks_fields_and_the_leaderboard_ranks_and_publishes(tmp_path):
    with class_server(tmp_path / "data") as srv, teacher(srv) as boss:
        lesson = {"experiment": tiny_experiment(300), "note": "Change the learning rate only.",
                  "editable": ["train.optimizer.lr"], "source": "preset:spiral"}
        bad = boss.post("/api/class/lesson", json={**lesson, "editable": ["train.nonsense"]})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_lesson" and "train.nonsense" in bad.json()["detail"]
        pushed = boss.post("/api/class/lesson", json=lesson)
        assert pushed.status_code == 200 and pushed.json()["pushed_at"] > 0
        ada_http, ada_token, ada = join(srv, "Ada")
        bob_http, bob_token, bob = join(srv, "Bob")
        with contextlib.closing(ada_http), contextlib.closing(bob_http), WsClient(srv.ws, ada_token) as ada_ws, WsClient(srv.ws, bob_token) as bob_ws:
            assert ada_http.get("/api/class/me").json()["lesson"]["note"] == lesson["note"]
            locked = start_error(ada_ws, tiny_experiment(300, hidden=32))
            assert locked["code"] == "locked_field" and "network.layers.0.out_features" in locked["message"]
            assert "train.optimizer.lr" in locked["message"]  # what may be changed
            # Ada changes what she may (the learning rate) and trains; so does Bob with a poor one
            ada_run = ada_ws.start(tiny_experiment(300, lr=0.05, name="ada's"))
            bob_run = bob_ws.start(tiny_experiment(300, lr=1e-4))
            finals = {ada["id"]: ada_ws.until(is_final(ada_run)), bob["id"]: bob_ws.until(is_final(bob_run))}

            hidden = bob_http.get("/api/class/leaderboard")
            assert hidden.status_code == 403 and hidden.json()["code"] == "leaderboard_hidden"
            board = boss.get("/api/class/leaderboard").json()
            rows = board["rows"]
            assert board["challenge"] is None and {r["member_id"] for r in rows} == set(finals)
            for row in rows:  # the figures are the runs' own
                assert row["best_val_acc"] == pytest.approx(finals[row["member_id"]]["best_val_acc"])
                assert row["step"] == 300 and row["state"] == "finished" and row["params"] == 82
            assert [r["best_val_acc"] for r in rows] == sorted((r["best_val_acc"] for r in rows), reverse=True)

            assert boss.post("/api/class/leaderboard", json={"published": True}).status_code == 200
            assert bob_http.get("/api/class/leaderboard").json()["rows"] == rows
            assert bob_http.get("/api/class/me").json()["class"]["leaderboard_published"] is True


def test_the_challenge_marks_runs_over_the_budget_and_ranks_them_last(tmp_path):
    with class_server(tmp_path / "data") as srv, teacher(srv) as boss:
        lesson = {"experiment": tiny_experiment(300), "editable": ["train.optimizer.lr", "network.layers"],
                  "challenge": {"param_budget": 100}}
        assert boss.post("/api/class/lesson", json=lesson).status_code == 200
        _, big_token, big = join(srv, "Big Net")
        _, small_token, small = join(srv, "Small Net")
        with WsClient(srv.ws, big_token) as big_ws, WsClient(srv.ws, small_token) as small_ws:
            big_run = big_ws.start(tiny_experiment(300, hidden=32, lr=0.05))  # 162 parameters: over, yet it runs
            small_run = small_ws.start(tiny_experiment(300, lr=1e-4))  # 82 parameters: within, and poor
            big_final = big_ws.until(is_final(big_run))
            small_final = small_ws.until(is_final(small_run))
        rows = boss.get("/api/class/leaderboard").json()["rows"]
        assert [r["member_id"] for r in rows] == [small["id"], big["id"]]
        assert rows[0]["within_budget"] is True and rows[1]["within_budget"] is False
        assert rows[1]["params"] == 162 and rows[1]["best_val_acc"] == pytest.approx(big_final["best_val_acc"])
        assert rows[0]["best_val_acc"] == pytest.approx(small_final["best_val_acc"])


# ---------------------------------------------------------------------------
# Closing, ending, restarting
# ---------------------------------------------------------------------------


def test_joining_closes_and_the_end_locks_students_out(tmp_path):
    settings = make_settings(tmp_path / "data")
    with page_client(create_app(settings)) as student:
        classroom = student.app.state.classroom.create("Short class")
        boss = page_client(student.app)
        boss.headers["authorization"] = f"Bearer {classroom.teacher_key}"
        assert student.post("/api/class/join", json={"code": classroom.code, "name": "Early"}).status_code == 201
        assert boss.post("/api/class/joining", json={"open": False}).json() == {"joining_open": False}
        late = page_client(student.app).post("/api/class/join", json={"code": classroom.code, "name": "Late"})
        assert late.status_code == 403 and late.json()["code"] == "joining_closed"
        boss.post("/api/class/joining", json={"open": True})
        assert page_client(student.app).post("/api/class/join",
                                             json={"code": classroom.code, "name": "Late"}).status_code == 201
        assert boss.post("/api/class/end").json() == {"ended": True}
        ended = page_client(student.app).post("/api/class/join", json={"code": classroom.code, "name": "Later"})
        assert ended.status_code == 410 and ended.json()["code"] == "class_ended"
        refused = student.get("/api/runs")
        assert refused.status_code == 401 and "ended" in refused.json()["detail"]
        view = boss.get("/api/class").json()  # the teacher still sees the class
        assert view["class"]["ended_at"] is not None and len(view["members"]) == 2
        assert boss.post("/api/class/joining", json={"open": True}).json()["code"] == "class_ended"


def test_a_restart_reloads_the_class_its_members_lesson_and_runs(tmp_path):
    data = tmp_path / "data"
    with class_server(data) as srv, teacher(srv) as boss:
        code, key = srv.classroom.code, srv.classroom.teacher_key
        boss.post("/api/class/lesson", json={"experiment": tiny_experiment(200), "editable": ["*"],
                                             "note": "survives"})
        http, token, member = join(srv, "Persistent Pat")
        _, _, gone = join(srv, "Kicked Before")
        boss.post(f"/api/class/members/{gone['id']}/kick")
        boss.post("/api/class/joining", json={"open": False})
        with contextlib.closing(http), WsClient(srv.ws, token) as ws:
            run_id = ws.start(tiny_experiment(200))
            final = ws.until(is_final(run_id))
    with class_server(data) as again, teacher(again) as boss:  # a new server over the same data folder
        assert again.classroom.code == code and again.classroom.teacher_key == key
        with httpx.Client(base_url=again.url, headers={"origin": again.url}, cookies={SESSION_COOKIE: token},
                          timeout=HANG_GUARD) as http:
            me = http.get("/api/class/me").json()
            assert me["member"] == member and me["runs"] == [run_id] and me["lesson"]["note"] == "survives"
            assert http.get(f"/api/runs/{run_id}").json()["final"]["best_val_acc"] == final["best_val_acc"]
        view = boss.get("/api/class").json()
        assert view["class"]["joining_open"] is False
        assert {m["name"]: m["kicked"] for m in view["members"]} == {"Persistent Pat": False, "Kicked Before": True}
        rows = boss.get("/api/class/leaderboard").json()["rows"]
        assert [(r["run_id"], r["state"]) for r in rows] == [(run_id, "finished")]
        with WsClient(again.ws, token) as ws:  # the session still opens the websocket
            ws.send(cmd="subscribe", run_id=run_id, after_seq=0)
            assert ws.until(is_final(run_id))["steps"] == 200


# ---------------------------------------------------------------------------
# dlplay class
# ---------------------------------------------------------------------------


def test_dlplay_class_creates_then_reopens_the_class_and_prints_how_to_join(tmp_path, monkeypatch):
    from server import config

    monkeypatch.setattr(config, "settings", make_settings(tmp_path / "data"))
    first, reopened = cli.open_class("Monday")
    assert not reopened and first.title == "Monday"
    again, reopened = cli.open_class("ignored")
    assert reopened and again.id == first.id and again.code == first.code
    fresh, reopened = cli.open_class("Tuesday", new=True)  # --new ends Monday's
    assert not reopened and fresh.id != first.id
    out = io.StringIO()
    teacher_url = cli.print_class_banner(fresh, "0.0.0.0", 8123, reopened=False, out=out)
    text = out.getvalue()
    assert teacher_url == f"http://127.0.0.1:8123/teacher?key={fresh.teacher_key}" and teacher_url in text
    assert fresh.code in text and ":8123/join" in text and "token" not in text
    assert "▀" in text or "█" in text  # the QR code, in block characters
    args = cli.build_class_parser().parse_args(["--ray", "ray://head:10001", "--title", "T"])
    assert args.ray == "ray://head:10001" and args.host == "0.0.0.0"


def test_dlplay_class_listens_on_the_network_without_a_token_and_gates_everything(tmp_path):
    """The command itself in a child process: it binds 0.0.0.0 with no --token, prints the join URL, the code
    and the teacher URL; the join URL serves the join page, the teacher URL the dashboard, and nothing else
    answers without them."""
    port = free_port()
    env = {**os.environ, "DLPLAY_DATA_DIR": str(tmp_path / "data"), "DLPLAY_STATIC_DIR": str(tmp_path / "no-static")}
    env.pop("DLPLAY_ACCESS_TOKEN", None)
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "class", "--port", str(port), "--title", "Lab"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines: list[str] = []
        while not any("Ctrl-C stops" in line for line in lines):
            line = process.stdout.readline()
            assert line, f"dlplay class exited: {lines}"
            lines.append(line)
        text = "".join(lines)
        join_url = re.search(r"students open\s+(http://\S+)", text).group(1)
        code = re.search(r"class code\s+(\S+)", text).group(1)
        teacher_url = re.search(r"teacher\s+(http://\S+)", text).group(1)
        assert join_url.endswith(f":{port}/join") and re.fullmatch(r"[A-Z2-9]{3}-[A-Z2-9]{3}", code)
        assert teacher_url.startswith(f"http://127.0.0.1:{port}/teacher?key=") and "Lab" in text
        base = join_url.rsplit("/", 1)[0]
        with httpx.Client(base_url=base, headers={"origin": base}, timeout=HANG_GUARD) as http:
            for _ in range(600):  # printed before uvicorn listens
                try:
                    page = http.get("/join")
                    break
                except httpx.TransportError:
                    assert process.poll() is None
                    time.sleep(0.1)
            assert page.status_code == 200
            assert http.get("/api/runs").json()["code"] == "not_in_class"
            assert http.post("/api/class/join", json={"code": code, "name": "Remote"}).status_code == 201
            assert http.get("/api/runs").status_code == 200
        with httpx.Client(timeout=HANG_GUARD) as browser:
            dashboard = browser.get(teacher_url, follow_redirects=True)
            assert dashboard.status_code == 200 and str(dashboard.url).endswith("/teacher")
    finally:
        process.terminate()
        process.wait(30)
