"""Training with the default live probes vs a bare PyTorch loop: LeNet-5 on MNIST-5k.

    python bench/bench_probes.py [--rounds 12] [--steps 100] [--device cpu|cuda]

The instrumented side is the full RunSession that `dlplay run` and the server
use (hooks, statistics, filters, confusion matrix, doctor, message encoding) at
the default live views on the frame clock (activation/gradient statistics 5/s, weights and
filters 1/s, within the 5% probe budget), measured at the server's torch thread count and at
one thread per core. The last line is the ratio instrumented / bare at the server's count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import BareLoop, interleaved, lenet_experiment, report  # noqa: E402
from server.protocol import Stamper  # noqa: E402
from server.runner import RunSession  # noqa: E402


def measure(threads: int, args: argparse.Namespace) -> float:
    """One side-by-side measurement at ``threads`` torch threads; prints it and returns the paired-median ratio."""
    torch.set_num_threads(threads)
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

    consume(session.start())  # watches the default views, as a connection that never says otherwise

    def instrumented(n: int) -> None:
        consume(session.advance(max_steps=n, max_seconds=1e9))

    def reference(n: int) -> None:
        for _ in range(n):
            bare.step()

    times = interleaved({"instrumented": instrumented, "bare": reference}, args.steps, args.rounds, sync=sync)
    rates = ", ".join(f"{name} {session.clock.rate(name):.2f}/s" for name in session.clock.watched)
    print(f"-- device: {device}, torch threads: {torch.get_num_threads()}, batch {batch}, "
          f"{args.rounds} rounds x {args.steps} steps; live views (frame clock, budget {experiment.probes.budget:.0%}): {rates}")
    print("messages: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; {sent_bytes / 1e6:.2f} MB of JSON")
    print(f"probe share of busy time (measured inside the run): {session._probe_seconds / max(session._busy_seconds, 1e-9):.3%}")
    return report(times, "instrumented", "bare", args.steps * batch, "instrumented/bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds per contender")
    parser.add_argument("--steps", type=int, default=100, help="training steps per round")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = parser.parse_args()

    from server.config import settings

    # The server's thread count (cores - 1) and torch's own default (one per core), as the issue asks for both.
    counts = sorted({1, settings.torch_threads, os.cpu_count() or 1})
    ratios = {threads: measure(threads, args) for threads in counts}
    print("ratios by torch threads: " + ", ".join(f"{t}: {r:.3f}" for t, r in ratios.items()))
    print(f"ratio instrumented/bare: {ratios[settings.torch_threads]:.3f}")


if __name__ == "__main__":
    main()
