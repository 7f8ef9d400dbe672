"""`dlplay run`: JSON Lines out, exit code 2 and one clear stderr line on invalid input."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def write(tmp_path: Path, document) -> str:
    path = tmp_path / "experiment.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


SPIRAL = {
    "data": {"name": "spiral", "n_samples": 200},
    "network": {"layers": [
        {"kind": "linear", "name": "hidden", "out_features": 8, "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 2}]},
    "train": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 5, "log_every": 5},
    "probes": {"rates": {"layer_stats": 20, "boundary": 20}},
}


def test_run_prints_json_lines_with_envelopes(tmp_path):
    result = run_cli(write(tmp_path, SPIRAL), "--steps", "30")
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    types = [m["type"] for m in messages]
    assert types[0] == "summary" and "final" in types and "metrics" in types
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    final = next(m for m in messages if m["type"] == "final")
    assert final["steps"] == 30
    summary = messages[0]
    assert [layer["name"] for layer in summary["network"]["layers"]] == ["hidden", "out"]
    assert summary["network"]["layers"][0]["params"] == 2 * 8 + 8


@pytest.mark.parametrize(
    "document, fragment",
    [
        ("{not json", "not valid JSON"),
        ({"data": {"name": "spiral"}}, "network"),
        ({**SPIRAL, "train": {"optimizer": {"kind": "adam", "lr": -1}}}, "lr"),
        ({**SPIRAL, "data": {"name": "no_such_set"}}, "no_such_set"),
        ({**SPIRAL, "network": {"layers": [{"kind": "linear", "name": "out", "out_features": 3}]}}, "out"),
        ({**SPIRAL, "network": {"layers": [{"kind": "teleport", "name": "x"}]}}, "teleport"),
    ],
    ids=["bad-json", "missing-network", "negative-lr", "unknown-dataset", "wrong-class-count", "unknown-kind"],
)
def test_invalid_input_exits_2_with_one_clear_line(tmp_path, document, fragment):
    result = run_cli(write(tmp_path, document), timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in lines[0]


def test_missing_file_exits_2(tmp_path):
    result = run_cli(str(tmp_path / "nope.json"), timeout=60)
    assert result.returncode == 2 and "no such file" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_a_run_until_stopped_ends_with_its_final_messages_on_ctrl_c_even_started_in_the_background(tmp_path, sig):
    """`dlplay run x.json &` from a script inherits an ignored SIGINT; Ctrl-C must still stop it cleanly."""
    forever = {**SPIRAL, "train": {**SPIRAL["train"], "epochs": None}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "run", write(tmp_path, forever)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines = []
    try:
        seen = 0
        while seen < 3:  # a few metrics points: it is training, not still importing
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
            seen += json.loads(line)["type"] == "metrics"
        os.kill(proc.pid, sig)
        # Read on through the same buffered reader until the process closes stdout (communicate() would read
        # the pipe beneath it and miss what readline() already buffered).
        lines += proc.stdout.read().splitlines()
        proc.wait(timeout=120)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    messages = [json.loads(line) for line in lines]  # every line whole: a stop never cuts one
    final = next(m for m in messages if m["type"] == "final")
    assert final["stop_reason"] == "stopped" and final["steps"] > 0
    assert messages[-1]["type"] == "status" and messages[-1]["state"] == "stopped"


def test_run_uses_the_servers_thread_count(tmp_path):
    """torch's and NumPy's BLAS threads = cores - 1 (DLPLAY_TORCH_THREADS), as in the server, not one per core."""
    script = (
        "import sys, torch; from server import cli; from server.config import settings;"
        "from threadpoolctl import threadpool_info;"
        "cli._use_server_threads(); print(torch.get_num_threads(), settings.torch_threads,"
        "min(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))"
    )
    env = {**os.environ, "DLPLAY_TORCH_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() == ["1", "1", "1"], done.stderr  # torch, the setting, NumPy's BLAS
