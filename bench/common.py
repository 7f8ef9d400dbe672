"""Shared pieces of the benchmarks: the LeNet-5 preset and an interleaved timing loop.

Side-by-side measurement: both contenders run in the same process on the same
data, alternating in short rounds, so load from elsewhere on a shared machine
hits both alike. Each prints a throughput ratio as its last line.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
LENET_PRESET = ROOT / "models" / "lenet5_mnist.json"


def lenet_experiment(probes: bool):
    """The LeNet-5 preset, made to run long enough and evaluate never (the bare loop does not evaluate)."""
    from server.schemas import Experiment

    document = json.loads(LENET_PRESET.read_text())
    document["train"].update({"epochs": 10_000, "eval_every": 10**9})
    document.setdefault("probes", {})["enabled"] = probes
    return Experiment.model_validate(document)


class BareLoop:
    """The reference: the textbook PyTorch loop on the same model copy, data, batch size and optimizer."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, lr: float, seed: int = 0):
        self.model = copy.deepcopy(model).train()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.generator = torch.Generator(device=x.device).manual_seed(seed)
        self.order = torch.randperm(len(x), generator=self.generator, device=x.device)
        self.position = 0

    def step(self) -> None:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.x), generator=self.generator, device=self.x.device)
            self.position = 0
        idx = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
        loss.backward()
        self.optimizer.step()


def interleaved(contenders: dict[str, Callable[[int], None]], steps_per_round: int, rounds: int,
                warmup_rounds: int = 2, sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds each contender took for each round of ``steps_per_round`` steps, alternating A B A B ...

    The order within a round alternates too, so neither always runs first.
    Returns name -> per-round seconds (warm-up rounds dropped).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(warmup_rounds + rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            sync()
            t0 = time.perf_counter()
            contenders[name](steps_per_round)
            sync()
            if r >= warmup_rounds:
                times[name].append(time.perf_counter() - t0)
    return times


def report(times: dict[str, list[float]], ours: str, bare: str, examples_per_round: int, label: str) -> float:
    """Print throughputs and the ratio ours/bare (the last line printed), and return that ratio.

    The ratio is the median over rounds of (bare time / our time) for the two
    back-to-back runs of each round: on a shared machine a burst of outside load
    hits one round of both, so pairing cancels it, and the median drops outliers.
    """
    ours_rate = examples_per_round * len(times[ours]) / sum(times[ours])
    bare_rate = examples_per_round * len(times[bare]) / sum(times[bare])
    paired = sorted(b / o for o, b in zip(times[ours], times[bare]))
    median = paired[len(paired) // 2] if len(paired) % 2 else (paired[len(paired) // 2 - 1] + paired[len(paired) // 2]) / 2
    print(f"{ours:>14}: {ours_rate:8.0f} examples/s (total-time ratio {ours_rate / bare_rate:.3f})")
    print(f"{bare:>14}: {bare_rate:8.0f} examples/s")
    print(f"paired round ratios: min {paired[0]:.3f}, median {median:.3f}, max {paired[-1]:.3f} over {len(paired)} rounds")
    print(f"ratio {label}: {median:.3f}")
    return median
