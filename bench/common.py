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
    document["probes"]["enabled"] = probes
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
                warmup_rounds: int = 2, sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Seconds each contender spent on ``rounds × steps_per_round`` steps, alternating A B A B ...

    The order within a round alternates too, so neither always runs first.
    """
    totals = {name: 0.0 for name in contenders}
    names = list(contenders)
    for r in range(warmup_rounds + rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            sync()
            t0 = time.perf_counter()
            contenders[name](steps_per_round)
            sync()
            if r >= warmup_rounds:
                totals[name] += time.perf_counter() - t0
    return totals
