"""What a run will cost before it runs: memory and compute per step, checked against the machine.

``estimate_cost`` works from the network's summary (``builder.infer_shapes``: per-layer
output shapes, parameters and multiply-adds, nothing allocated) and the run's *real*
batch (``train.batch_size``, or every training example for ``"full"``):

* memory = parameters + their gradients + optimizer state (Adam keeps two moments,
  momentum one) + training activations (each layer's output for the batch, about
  ``AUTOGRAD_FACTOR`` times over: autograd keeps the inputs a backward pass needs, and
  the backward pass makes a gradient of each) + one evaluation batch's activations
  (``trainer.EVAL_BATCH`` examples, forward only);
* compute = multiply-adds per example x batch x ``TRAIN_MAC_FACTOR`` (a backward pass
  costs about two forward passes) per step.

``check_cost`` refuses a run whose estimate exceeds the server's limits with a
``CostError`` (code ``too_large``) that names the layer with the largest share and what
to change. The limits come from the machine (``server.config``): a run's memory is
bounded by ``max_run_memory_bytes`` (the same bound its process gets as an allocation
limit), a step's compute by ``max_step_macs`` (a few seconds of this machine's cores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.builder import NetworkSummary

# Bytes per float32 value.
FLOAT_BYTES = 4
# Training activation memory per forward output byte: the output itself, what autograd keeps for the
# backward pass (pre-activation values, masks), and its gradient during the backward pass.
AUTOGRAD_FACTOR = 3
# Multiply-adds of one training step per forward multiply-add: forward, then gradients for inputs and weights.
TRAIN_MAC_FACTOR = 3
# Optimizer state in parameter-sized tensors, per optimizer kind (the rest keep none).
OPTIMIZER_STATE = {"sgd": 1, "nesterov": 1, "momentum": 1, "adam": 2, "adamw": 2, "rmsprop": 2, "adagrad": 1, "lbfgs": 4}
# Examples per evaluation forward pass (the trainer's EVAL_BATCH; imported lazily to keep this module light).
EVAL_BATCH = 1024


class CostError(ValueError):
    """A run too large for this server; ``code`` is the protocol's error code."""

    code = "too_large"

    def __init__(self, message: str, *, layer: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.layer = layer
        self.fix = fix


@dataclass(frozen=True)
class RunCost:
    """A run's estimated needs; bytes are float32 sizes, MACs are multiply-adds."""

    batch: int  # examples per training step (the real one: "full" is every training example)
    params: int
    weight_bytes: int  # parameters + gradients + optimizer state
    activation_bytes: int  # training activations for one batch (x AUTOGRAD_FACTOR)
    eval_bytes: int  # one evaluation batch's forward outputs
    step_macs: int  # per training step (x TRAIN_MAC_FACTOR)
    largest_layer: str | None  # the layer with the largest activations per example

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.eval_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_bytes": self.memory_bytes}


def real_batch(batch_size: int | str, n_train: int) -> int:
    """The examples a step sees: ``"full"`` is all of them; a batch never exceeds the training set."""
    if batch_size == "full":
        return max(1, n_train)
    return max(1, min(int(batch_size), max(n_train, 1)))


def estimate_cost(summary: NetworkSummary, *, batch_size: int | str, n_train: int, optimizer: str) -> RunCost:
    """The memory and compute of a run of this network at its real batch (see the module docstring)."""
    batch = real_batch(batch_size, n_train)
    state = OPTIMIZER_STATE.get(optimizer, 2)  # an optimizer not listed: assume Adam-sized state
    weight_bytes = summary.total_params * FLOAT_BYTES * (2 + state)
    largest = max(summary.layers, key=lambda info: info.activation_bytes, default=None)
    return RunCost(
        batch=batch,
        params=summary.total_params,
        weight_bytes=weight_bytes,
        activation_bytes=summary.activation_bytes * batch * AUTOGRAD_FACTOR,
        eval_bytes=summary.activation_bytes * min(EVAL_BATCH, max(n_train, 1)),
        step_macs=summary.total_macs * batch * TRAIN_MAC_FACTOR,
        largest_layer=largest.name if largest is not None else None,
    )


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"


def _count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def check_cost(cost: RunCost, summary: NetworkSummary, *, max_memory_bytes: int, max_step_macs: int) -> None:
    """Raise ``CostError`` when the run needs more memory or compute per step than the server allows."""
    per_example = max(summary.activation_bytes, 1)
    largest = max(summary.layers, key=lambda info: info.activation_bytes, default=None)
    where = (f" The largest activations are '{largest.name}' {tuple(largest.output_shape)}, "
             f"{_size(largest.activation_bytes)} per example." if largest is not None else "")
    if max_memory_bytes and cost.memory_bytes > max_memory_bytes:
        # The batch that would fit with the same network, for the fix.
        spare = max_memory_bytes - cost.weight_bytes - cost.eval_bytes
        fitting = max(0, spare // (per_example * AUTOGRAD_FACTOR))
        fix = (f"use a batch_size of at most {fitting}" if fitting >= 1 else
               "use fewer channels or units in the largest layers, or pool earlier")
        raise CostError(
            f"this run needs about {_size(cost.memory_bytes)} of memory (training activations for a batch of "
            f"{cost.batch}: {_size(cost.activation_bytes)}; weights, gradients and optimizer state: "
            f"{_size(cost.weight_bytes)}; evaluation: {_size(cost.eval_bytes)}), over this server's limit of "
            f"{_size(max_memory_bytes)} per run.{where} Fix: {fix}",
            layer=largest.name if largest is not None else None, fix=fix)
    if max_step_macs and cost.step_macs > max_step_macs:
        heaviest = max(summary.layers, key=lambda info: info.macs, default=None)
        fitting = max(0, max_step_macs // max(summary.total_macs * TRAIN_MAC_FACTOR, 1))
        fix = (f"use a batch_size of at most {fitting}" if fitting >= 1 else
               "use fewer channels in the heaviest layers, or a smaller input")
        named = (f" The heaviest layer is '{heaviest.name}' with {_count(heaviest.macs)} multiply-adds per example."
                 if heaviest is not None else "")
        raise CostError(
            f"one training step of this run takes about {_count(cost.step_macs)} multiply-adds (batch {cost.batch}), "
            f"over this server's limit of {_count(max_step_macs)} per step (seconds of its CPU per step would "
            f"stall the run's live views).{named} Fix: {fix}",
            layer=heaviest.name if heaviest is not None else None, fix=fix)


__all__ = ["CostError", "RunCost", "check_cost", "estimate_cost", "real_batch"]
