"""Tiny nets at frame rate: TF Playground's spiral net through our real websocket server, side by side with bare PyTorch.

    python bench/bench_tiny.py [--seconds 30] [--bare-seconds 10]

The net is TensorFlow Playground's default on its spiral: inputs x1, x2, hidden layers of
4 and 2 tanh units, one output, SGD at lr 0.03 on batches of 10, half the points held out
(``models/playground_spiral.json``). Measured in one run:

1. **Cold start**: a fresh server process; the time from sending ``start`` to the first
   ``metrics`` frame of the first run after boot.
2. **Ours**: a websocket client starts the preset (it trains until stopped), watches every
   live view that applies to a 2D net (``WATCHED``: the boundary and neuron maps, layer
   statistics, weights, feature maps, the confusion matrix) for ``--seconds``, and counts
   what reaches it: examples per second (steps x batch / wall time), distinct boundary
   frames per second, and the validation loss at the end.
3. **Bare PyTorch**: the textbook eager loop (zero_grad, forward, BCE, backward, SGD step) on
   the same net, data and batch, in this process with the server's thread count, for
   ``--bare-seconds``.

TensorFlow Playground's figure is the yardstick measured in Chromium on a 2-core machine like
this one: 42-44 iterations/s of batch 10 with the boundary redrawn every frame, about
10,600 examples/s, test loss 0.436 at 30 s. The last line is our examples/s over that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import torch  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from bench.bench_server import free_port, issue_session, rss_mib, start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "models" / "playground_spiral.json"
TF_PLAYGROUND_EXAMPLES_PER_S = 10_600  # 42-44 iterations/s x batch 10, Chromium, 2 cores (see the module docstring)
TF_PLAYGROUND_TEST_LOSS_30S = 0.436
# Every live view that applies to a 2D MLP, at its default rate (the page's 2D tab alone watches just the boundary).
WATCHED = {"boundary": {}, "layer_stats": {}, "weights": {}, "feature_maps": {"index": 0}, "evaluation": {}}
RECV_GUARD = 60.0  # seconds without any frame before the client gives up (a hang guard, not a measurement)


def measure_server(ws_url: str, experiment: dict, seconds: float) -> dict:
    """Start the run, watch the boundary for ``seconds``, stop it; what reached the client."""
    out = {"first_metrics_s": None, "boundary_steps": set(), "rates": [], "val_loss": None, "metrics": [], "frames": {}}
    with connect(f"{ws_url}?session={issue_session(ws_url)}", max_size=64 * 1024**2) as ws:
        sent = time.perf_counter()
        ws.send(json.dumps({"cmd": "start", "experiment": experiment}))
        run_id = None
        stop_at = None
        stopping = False
        while True:
            text = ws.recv(timeout=RECV_GUARD)
            now = time.perf_counter()
            message = json.loads(text)
            kind = message["type"]
            if kind == "error":
                raise SystemExit(f"the server refused the run: {message['message']}")
            if run_id is None and message.get("run_id"):
                run_id = message["run_id"]
                ws.send(json.dumps({"cmd": "views", "run_id": run_id, "views": WATCHED}))
            if kind == "metrics":
                if out["first_metrics_s"] is None:
                    out["first_metrics_s"] = now - sent
                    stop_at = now + seconds
                    out["t0"] = now
                    out["step0"] = message["step"]
                if not stopping:
                    out["metrics"].append((now, message["step"]))
                    if message.get("val_loss") is not None:
                        out["val_loss"] = message["val_loss"]
            if "rate_hz" in message and out["first_metrics_s"] is not None and not stopping:
                out["frames"][kind] = out["frames"].get(kind, 0) + 1
            if kind == "boundary" and out["first_metrics_s"] is not None and not stopping:
                out["boundary_steps"].add(message["step"])
                out["rates"].append(message.get("rate_hz"))
            if stop_at is not None and now >= stop_at and not stopping:
                ws.send(json.dumps({"cmd": "stop", "run_id": run_id}))
                stopping = True
            if kind == "final" and message.get("run_id") == run_id:
                return out


def bare_loop(seconds: float) -> tuple[float, float]:
    """Examples per second of the eager PyTorch loop on the same net and data, and its validation loss."""
    from server.datasets import load_dataset
    from server.schemas import Experiment

    experiment = Experiment.model_validate(json.loads(PRESET.read_text()))
    data = load_dataset(experiment.data)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2), torch.nn.Tanh(),
                                torch.nn.Linear(2, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.03)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x, y = data.x_train, data.y_train.float()
    batch, steps = 10, 0
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx])[:, 0], y[idx])
            loss.backward()
            opt.step()
            steps += 1
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        val = loss_fn(model(data.x_val)[:, 0], data.y_val.float()).item()
    return steps * batch / elapsed, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds our run trains (the 30 s of the yardstick)")
    parser.add_argument("--bare-seconds", type=float, default=10.0, help="seconds the bare loop trains")
    args = parser.parse_args()

    from server.config import settings

    torch.set_num_threads(settings.torch_threads)  # the server's count, so both sides use the same
    experiment = json.loads(PRESET.read_text())
    batch = experiment["train"]["batch_size"]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = start_server(Path(tmp), port, clients=1)
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).json()
            result = measure_server(f"ws://127.0.0.1:{port}/ws", experiment, args.seconds)
            rss = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    bare_eps, bare_val = bare_loop(args.bare_seconds)

    (t_first, step_first), (t_last, step_last) = result["metrics"][0], result["metrics"][-1]
    ours_eps = (step_last - step_first) * batch / (t_last - t_first)
    frames = len(result["boundary_steps"])
    span = t_last - t_first
    rates = [r for r in result["rates"] if r is not None]
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; "
          f"server on {health['device']}, torch threads {settings.torch_threads}, RSS {rss:.0f} MiB")
    print(f"net: {experiment['name']}; batch {batch}; {args.seconds:g} s through the websocket, "
          f"watching {', '.join(WATCHED)}")
    print(f"first run after server start: first metrics {result['first_metrics_s'] * 1000:.0f} ms after start")
    print(f"ours (server, boundary streaming): {ours_eps:,.0f} examples/s = {ours_eps / batch:,.0f} steps/s "
          f"({step_last - step_first:,} steps in {span:.1f} s)")
    print(f"boundary frames reaching the client: {frames / span:.1f} distinct frames/s "
          f"(server's rate_hz {min(rates, default=float('nan')):.1f}-{max(rates, default=float('nan')):.1f})")
    print(f"validation loss at {args.seconds:g} s: ours {result['val_loss']}, "
          f"TF Playground {TF_PLAYGROUND_TEST_LOSS_30S} (test loss at 30 s), bare loop after {args.bare_seconds:g} s {bare_val:.3f}")
    print("live-view frames per second reaching the client: "
          + ", ".join(f"{kind} {count / span:.1f}" for kind, count in sorted(result["frames"].items())))
    print(f"bare PyTorch loop (eager, same net/data/batch): {bare_eps:,.0f} examples/s")
    print(f"TF Playground in Chromium (yardstick): {TF_PLAYGROUND_EXAMPLES_PER_S:,} examples/s")
    print(f"ratio ours/bare: {ours_eps / bare_eps:.2f}")
    print(f"ratio ours/TF-Playground examples/s: {ours_eps / TF_PLAYGROUND_EXAMPLES_PER_S:.2f}")


if __name__ == "__main__":
    main()
