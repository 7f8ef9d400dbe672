"""Training with the default live probes vs a bare PyTorch loop: LeNet-5 on MNIST-5k.

    python bench/bench_probes.py [--rounds 12] [--steps 100] [--device cpu|cuda]

The instrumented side is the full RunSession that `dlplay run` and the server
use (hooks, statistics, filters, confusion matrix, doctor, message encoding) at
the preset's default probe schedule. The last line is the ratio instrumented / bare.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import BareLoop, interleaved, lenet_experiment, report  # noqa: E402
from server.protocol import Stamper  # noqa: E402
from server.runner import RunSession  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds per contender")
    parser.add_argument("--steps", type=int, default=100, help="training steps per round (probe interval is 50)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = parser.parse_args()

    experiment = lenet_experiment(probes=True)
    session = RunSession(experiment, run_id="bench", device=args.device)
    stamper = Stamper("bench")
    data = session.dataset
    batch = experiment.train.batch_size
    bare = BareLoop(session.model, data.x_train, data.y_train, batch, experiment.train.optimizer.lr)
    device = session.trainer.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    counts: dict[str, int] = {}
    sent_bytes = 0

    def consume(messages: list[dict]) -> None:
        # Serialize as the CLI and the websocket do, so encoding is part of the cost.
        nonlocal sent_bytes
        for message in messages:
            sent_bytes += len(json.dumps(stamper.stamp(message)))
            counts[message["type"]] = counts.get(message["type"], 0) + 1

    consume(session.start())

    def instrumented(n: int) -> None:
        consume(session.advance(max_steps=n, max_seconds=1e9))

    def reference(n: int) -> None:
        for _ in range(n):
            bare.step()

    times = interleaved({"instrumented": instrumented, "bare": reference}, args.steps, args.rounds, sync=sync)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, batch {batch}, "
          f"{args.rounds} rounds x {args.steps} steps; probes every {experiment.probes.every} steps, "
          f"heavy every {experiment.probes.heavy_every}")
    print("messages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; {sent_bytes / 1e6:.2f} MB of JSON")
    print(f"probe share of busy time (measured inside the run): {session._probe_seconds / max(session._busy_seconds, 1e-9):.3%}")
    report(times, "instrumented", "bare", args.steps * batch, "instrumented/bare")


if __name__ == "__main__":
    main()
