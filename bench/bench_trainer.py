"""Our Trainer vs a bare PyTorch loop: LeNet-5 on MNIST-5k, same model, data, batch and optimizer.

    python bench/bench_trainer.py [--rounds 20] [--steps 25] [--device cpu|cuda]

Probes are off: this measures what the trainer itself costs (it should cost
nothing). The last line is the throughput ratio ours / bare.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import BareLoop, interleaved, lenet_experiment, report  # noqa: E402
from server.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds per contender")
    parser.add_argument("--steps", type=int, default=25, help="training steps per round")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = parser.parse_args()

    experiment = lenet_experiment(probes=False)
    trainer = Trainer(experiment, device=args.device)
    data = trainer.dataset
    batch = experiment.train.batch_size
    bare = BareLoop(trainer.model, data.x_train, data.y_train, batch, experiment.train.optimizer.lr)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    def ours(n: int) -> None:
        for _ in range(n):
            trainer.step()

    def reference(n: int) -> None:
        for _ in range(n):
            bare.step()

    times = interleaved({"ours": ours, "bare": reference}, args.steps, args.rounds, sync=sync)
    print(f"device: {trainer.device}, torch threads: {torch.get_num_threads()}, batch {batch}, "
          f"{args.rounds} rounds x {args.steps} steps each; probes off")
    report(times, "ours", "bare", args.steps * batch, "ours/bare")


if __name__ == "__main__":
    main()
