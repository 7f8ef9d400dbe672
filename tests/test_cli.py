"""`dlplay run`: JSON Lines out, exit code 2 and one clear stderr line on invalid input."""

import json
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
    "probes": {"every": 10, "heavy_every": 20},
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
