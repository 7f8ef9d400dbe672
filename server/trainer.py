"""The trainer: an Experiment -> a model trained one ``step()`` at a time. Pure, no I/O.

The hot path is a bare PyTorch loop (zero_grad(set_to_none) -> forward -> loss ->
backward -> optimizer.step) plus only what the document asks for. The data lives
on the device for the whole run and mini-batches are gathered there from a
device-side permutation, so no step copies from the host. The loss of each step
stays a 0-d tensor on the device; the trainer synchronizes (``.item()``) only on
the first step (the initial loss), every ``log_every`` steps (interval metrics
and health checks) and at evaluations.

Reproducibility: the same document and seed on the CPU give bit-identical loss
curves. Shuffling and augmentation draw from a ``torch.Generator`` owned by the
trainer; dropout draws from torch's global generator, so a model with dropout
swaps its own generator state in and out around each step (two runs interleaved
in one thread stay independent).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import clip_grad_norm_
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from server.fused_mlp import FusedMLP, why_not_fused
from server.builder import GraphModel, NetworkSummary, apply_data_dependent_init, build_model
from server.datasets import Augmenter, Dataset, load_dataset
from server.losses import Objective, build_objective, perceptron_objective
from server.optim import (
    BETA1_KINDS,
    MOMENTUM_KINDS,
    PerceptronRule,
    build_optimizer,
    check_perceptron_network,
    is_weight,
)
from server.schedules import PlateauState, lr_at
from server.schemas import ConstantSchedule, Experiment, PlateauSchedule

EVAL_BATCH = 1024  # examples per forward pass in evaluate(): bounds activation memory, not the result
LSUV_BATCH = 512  # training examples LSUV measures output variances on
LOSS_CHUNK = 1024  # steps kept as separate tensors before they are folded (bounds Python objects)
PENDING_EXAMPLES = 1 << 20  # predictions+labels kept before they are folded (16 MiB of int64 pairs)
MAX_LR = 1e7  # the schema's bound on every optimizer's lr

StopReason = Literal["finished", "non_finite", "exploded", "early_stopping", "stopped"]


class ExperimentError(ValueError):
    """A problem across parts of the document (network vs optimizer, freeze vs layers, device vs machine)."""


@dataclass
class EvalResult:
    """Mean loss and accuracy of the evaluation model over ``n`` examples of a split (NaN when n is 0)."""

    loss: float
    accuracy: float
    n: int


@dataclass
class IntervalMetrics:
    """Training statistics over the ``steps`` steps since the previous metrics point."""

    train_loss: float  # mean of the steps' mini-batch losses (data loss, without the l1/l2 penalty)
    train_acc: float  # share of the interval's training examples classified right (before each update)
    examples_per_s: float  # training examples / seconds spent in step() over the interval
    steps: int


@dataclass
class StopInfo:
    reason: StopReason
    message: str


@dataclass
class StepResult:
    step: int  # steps done, 1 after the first step
    epoch: float  # passes over the training set done: step / steps_per_epoch
    lr: float  # the LR this step used
    batch_size: int
    # The data loss of this step's batch: a 0-d detached tensor on the device (no sync per step), or a
    # float from the fused NumPy path (making a tensor of it on every step would cost more than the step).
    raw_loss: Tensor | float
    metrics: IntervalMetrics | None  # every log_every steps, and on the step that ends the run
    evaluation: EvalResult | None  # every eval_every steps (default once an epoch), and on the final step
    stop: StopInfo | None  # set on the step that ends the run

    @property
    def loss(self) -> Tensor:
        """The step's data loss as a 0-d tensor."""
        loss = self.raw_loss
        return loss if isinstance(loss, Tensor) else torch.tensor(loss)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; an explicit device must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ExperimentError(f"unknown device {name!r}. Fix: use 'auto', 'cpu' or 'cuda'") from None
    if device.type not in ("cpu", "cuda"):
        raise ExperimentError(f"device {name!r} is not supported. Fix: use 'auto', 'cpu' or 'cuda'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ExperimentError(
                f"train.device is {name!r} but this machine has no CUDA GPU. Fix: set train.device to 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ExperimentError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s). Fix: use 'cuda'"
            )
    return device


def _limit_kwargs(limits: Any) -> dict[str, int]:
    """build_model's size limits from a Limits-like object (any of its fields may be missing)."""
    if limits is None:
        return {}
    names = ("max_params", "max_activation_bytes")
    return {n: getattr(limits, n) for n in names if getattr(limits, n, None) is not None}


def _uses_lsuv(experiment: Experiment) -> bool:
    return any(
        getattr(getattr(layer, field, None), "kind", None) == "lsuv"
        for layer in experiment.network.layers
        for field in ("weight_init", "bias_init")
    )


class Trainer:
    """Trains the network of an Experiment on its data, one ``step()`` at a time.

    Attributes:
        model: the GraphModel being trained; summary: its NetworkSummary.
        dataset: the Dataset, resident on ``device``.
        optimizer: the torch optimizer (a ``PerceptronRule`` for the perceptron).
        objective: the loss and decision rule; ``loss_fn`` is ``objective.loss``.
        batch_size, steps_per_epoch, total_steps: the run's shape (the last partial
            batch of an epoch is dropped, so every step sees ``batch_size`` examples).
        step_count, epoch: progress; done, stop: whether and why the run ended.
        initial_loss: the first step's loss (None before it).
        last_eval, best_val_acc: the latest evaluation and the best validation accuracy so far.
    """

    def __init__(self, experiment: Experiment, *, device: str | None = None, dataset: Dataset | None = None,
                 uploads_dir=None, limits=None, fused: bool = True, init_weights=None):
        self.experiment = experiment
        train = self.config = experiment.train
        self.device = resolve_device(device or train.device)
        self.perceptron = train.optimizer.kind == "perceptron"
        self._check_document(experiment)

        # -- data, resident on the device ----------------------------------------------------
        if dataset is None:
            dataset = load_dataset(experiment.data, uploads_dir=uploads_dir)
        self.dataset = dataset = dataset.to(self.device)
        n_train, n_val = int(dataset.x_train.shape[0]), int(dataset.x_val.shape[0])
        if n_train == 0:
            raise ExperimentError(f"dataset {dataset.name!r} has no training examples. Fix: lower data.val_fraction")
        needs_val = [what for what, on in (("early_stopping", train.early_stopping is not None),
                                           ("the plateau schedule", isinstance(train.schedule, PlateauSchedule))) if on]
        if needs_val and n_val == 0:
            raise ExperimentError(
                f"{' and '.join(needs_val)} watch the validation loss, but the validation split is empty. "
                "Fix: set data.val_fraction above 0"
            )
        if self.perceptron:
            try:
                check_perceptron_network(experiment.network, dataset.num_classes)
            except ValueError as e:
                raise ExperimentError(str(e)) from None
        augmenter = Augmenter(experiment.data.augmentation, dataset.kind)  # validates the spec against the data
        self._augment = augmenter if augmenter.enabled else None  # disabled: skipped entirely

        # -- model ----------------------------------------------------------------------------
        torch.manual_seed(train.seed)
        model, summary = build_model(
            experiment.network, dataset.input_shape, dataset.num_classes, seed=train.seed, **_limit_kwargs(limits)
        )
        self.model: GraphModel = model.to(self.device)
        self.model.train()
        self.summary: NetworkSummary = summary
        num_outputs = math.prod(summary.output_shape)
        if not (num_outputs == dataset.num_classes or (num_outputs == 1 and dataset.num_classes == 2)):
            last = experiment.network.layers[-1].name
            raise ExperimentError(
                f"layer {last!r}: the network ends with {num_outputs} outputs but {dataset.name!r} has "
                f"{dataset.num_classes} classes. Fix: give the last layer {dataset.num_classes} outputs"
                + (" (or 1 for a two-class problem)" if dataset.num_classes == 2 else "")
            )
        if _uses_lsuv(experiment):
            apply_data_dependent_init(self.model, dataset.x_train[:LSUV_BATCH])
        # train.init_from (issue 12): saved weights replace the fresh ones; the caller resolved the file.
        self.init_report = None
        if train.init_from is not None or init_weights is not None:
            from server.export.weights import apply_init_from  # local: only runs that load weights import it

            self.init_report = apply_init_from(self.model, train.init_from, init_weights)
        for name in train.freeze:
            for p in self.model.blocks[name].parameters():
                p.requires_grad_(False)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            frozen = f" (frozen: {', '.join(train.freeze)})" if train.freeze else ""
            raise ExperimentError(f"the network has no trainable parameters{frozen}. Fix: unfreeze a weighted layer")
        self._weights = [p for p in self._params if is_weight(p)]  # what l1/l2 act on: not biases or norm scales

        # -- optimizer, loss, schedule ------------------------------------------------------------
        if self.perceptron:
            linear = self.model.blocks[check_perceptron_network(experiment.network)].core
            if not isinstance(linear, nn.Linear):
                raise ExperimentError("the perceptron needs its layer built as nn.Linear")
            self.optimizer = PerceptronRule.from_spec(train.optimizer, linear)
            self.objective: Objective = perceptron_objective()
        else:
            self.optimizer = build_optimizer(train.optimizer, self._params)
            self.objective = build_objective(train.loss, num_outputs)
        self.loss_fn = self.objective.loss
        self._lbfgs = isinstance(self.optimizer, torch.optim.LBFGS)
        self.l2, self.l1 = train.l2, train.l1
        self._regularized = bool(self.l2 or self.l1)
        self._schedule = train.schedule
        self.plateau = PlateauState(train.schedule) if isinstance(train.schedule, PlateauSchedule) else None
        # The LR moves each step only for time-based schedules or during warm-up; otherwise it changes
        # only at evaluations (plateau) or live (set_hyperparams), and the hot path skips lr_at.
        self._lr_moves = not isinstance(train.schedule, (ConstantSchedule, PlateauSchedule)) or train.warmup_steps > 0
        self.base_lr = float(train.optimizer.lr)

        # -- run shape ---------------------------------------------------------------------------
        self.n_train, self.n_val = n_train, n_val
        self.batch_size = n_train if train.batch_size == "full" else min(train.batch_size, n_train)
        self.steps_per_epoch = n_train // self.batch_size
        # None: train until stopped (no epochs, no max_steps), like TF Playground.
        self.total_steps: int | None
        if train.max_steps is not None:
            self.total_steps = train.max_steps
        elif train.epochs is not None:
            self.total_steps = max(1, math.ceil(train.epochs * self.steps_per_epoch - 1e-9))
        else:
            self.total_steps = None
        self._full_batch = self.batch_size == n_train  # order is irrelevant: use the data as it lies
        self._eval_every = train.eval_every or self.steps_per_epoch
        self._log_every = train.log_every
        self._metrics_next_step = False  # request_metrics(): the next step ends a metrics interval early
        self._clip = train.grad_clip

        # -- randomness: a generator for shuffling/augmentation; the global one for dropout --------
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(train.seed)
        self._stochastic = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in self.model.modules())
        self._rng_state = self._get_rng() if self._stochastic else None

        # -- EMA of the weights (buffers too, so batch-norm statistics follow) ------------------------
        self.ema: AveragedModel | None = None
        if train.ema_decay is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)
            self.ema.eval()

        # -- state ----------------------------------------------------------------------------------
        self.step_count = 0
        self.epoch = 0.0
        self.done = False
        self.stop: StopInfo | None = None
        self.initial_loss: float | None = None
        self.last_eval: EvalResult | None = None
        self.best_val_acc: float | None = None
        self._lr = -1.0
        self._set_lr(self._scheduled_lr(0))
        self._batch_in_epoch = 0
        self._batches: Tensor = torch.empty(0, dtype=torch.int64)  # (steps_per_epoch, batch_size) this epoch's order
        self._x, self._y = dataset.x_train, dataset.y_train
        self._losses: list[Tensor] = []  # pending per-step losses (0-d)
        self._preds: list[Tensor] = []  # ... predicted classes (N,) and labels (N,) of each step's batch
        self._targets: list[Tensor] = []
        self._loss_chunks: list[Tensor] = []  # folded pending steps (see _stack_chunk)
        self._correct_chunks: list[Tensor] = []
        # Fold pending steps every so often so long log intervals hold few tensors and little memory.
        self._chunk_steps = max(1, min(LOSS_CHUNK, PENDING_EXAMPLES // self.batch_size))
        self._interval_seconds = 0.0
        self._best_val = math.inf
        self._best_val_step = 0
        self._bad_evals = 0

        # -- the fused NumPy path for small MLPs (server/fused_mlp.py) -----------------------------------
        # Its steps report plain floats, so interval statistics are summed in Python (on the CPU a sync is free).
        self.fused: FusedMLP | None = None
        self.fused_reason = "disabled" if not fused else why_not_fused(
            self.model, experiment, self.device, augmenting=self._augment is not None, ema=self.ema is not None)
        if self.fused_reason is None and not self.perceptron and not self._stochastic:
            self.fused = FusedMLP(self.model, self.optimizer, self.objective, train.loss)
            self._x_np = dataset.x_train.reshape(n_train, -1).numpy()
            self._y_np = dataset.y_train.numpy()
        self._acc_steps = 0
        self._acc_loss = 0.0
        self._acc_correct = 0
        self._acc_bad: tuple[float, int] | None = None  # (value, step) of the interval's first non-finite loss

    # -- validation of the document -----------------------------------------------------------

    def _check_document(self, experiment: Experiment) -> None:
        """Cross-part checks that need no data or model (so nothing is allocated on error)."""
        train = experiment.train
        names = [layer.name for layer in experiment.network.layers]
        unknown = [n for n in train.freeze if n not in names]
        if unknown:
            raise ExperimentError(
                f"train.freeze names {', '.join(repr(n) for n in unknown)}, which the network does not have. "
                f"Fix: freeze some of {', '.join(names)}"
            )
        if self.perceptron:
            try:
                check_perceptron_network(experiment.network)
            except ValueError as e:
                raise ExperimentError(str(e)) from None
            used = [f"{f}={getattr(train, f)}" for f in ("l2", "l1", "grad_clip") if getattr(train, f)]
            if used:
                raise ExperimentError(
                    f"the perceptron rule does not follow a loss gradient, so {', '.join(used)} would have no effect. "
                    "Fix: set them to 0/null, or pick a gradient optimizer"
                )

    # -- the LR -----------------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        """The LR of the next step (for the perceptron: before its tau/(tau+epoch) decay)."""
        return self._lr

    def _scheduled_lr(self, step: int) -> float:
        return lr_at(self._schedule, self.base_lr, step, self.steps_per_epoch, self.config.warmup_steps, self.plateau)

    def _set_lr(self, lr: float) -> None:
        if lr != self._lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._lr = lr

    # -- randomness -------------------------------------------------------------------------------

    def _get_rng(self) -> Tensor:
        if self.device.type == "cuda":
            return torch.cuda.get_rng_state(self.device)
        return torch.get_rng_state()

    def _set_rng(self, state: Tensor) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        if self._full_batch:
            return self._x, self._y
        idx = self._next_indices()
        return self._x.index_select(0, idx), self._y.index_select(0, idx)

    def _next_indices(self) -> Tensor:
        """The next mini-batch's example indices, (batch_size,) int64: a fresh permutation each epoch."""
        i = self._batch_in_epoch
        if i == 0:
            n, bs = self.n_train, self.batch_size
            perm = torch.randperm(n, generator=self.generator, device=self.device)
            self._batches = perm[: self.steps_per_epoch * bs].reshape(self.steps_per_epoch, bs)
        self._batch_in_epoch = i + 1 if i + 1 < self.steps_per_epoch else 0
        return self._batches[i]

    # -- one step ---------------------------------------------------------------------------------

    def _penalty(self) -> Tensor:
        """l2/2 * sum(w^2) + l1 * sum(|w|) over trainable weights (not biases, not norm parameters)."""
        total = torch.zeros((), device=self.device)
        if self.l2:
            total = total + (self.l2 / 2) * sum(w.pow(2).sum() for w in self._weights)
        if self.l1:
            total = total + self.l1 * sum(w.abs().sum() for w in self._weights)
        return total

    def _lbfgs_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        first: list[tuple[Tensor, Tensor]] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(x)
            loss = self.loss_fn(out, y)
            total = loss + self._penalty() if self._regularized else loss
            total.backward()
            if self._clip is not None:
                clip_grad_norm_(self._params, self._clip)
            if not first:
                first.append((out.detach(), loss.detach()))
            return total

        self.optimizer.step(closure)
        return first[0]

    def step(self, *, observed: bool = False) -> StepResult:
        """One optimizer step on the next mini-batch; see StepResult for what comes back when.

        observed: hooks watch this step (activation/gradient probes), so it must run through the
        module's forward and autograd even when the fused NumPy path could take it.
        """
        if self.done:
            raise RuntimeError(f"the run has ended ({self.stop.reason}): {self.stop.message}")
        t0 = time.perf_counter()
        k = self.step_count
        if self.fused is not None and not observed:
            return self._fused_step(k, t0)
        if self._stochastic:
            self._set_rng(self._rng_state)
        if self._lr_moves:
            self._set_lr(self._scheduled_lr(k))
        lr = self._lr
        x, y = self._next_batch()
        if self._augment is not None:
            x = self._augment(x, self.generator)

        if self.perceptron:
            with torch.no_grad():
                out = self.model(x)
                loss = self.loss_fn(out, y)
                self.optimizer.update(x, y, out, k // self.steps_per_epoch)
        elif self._lbfgs:
            out, loss = self._lbfgs_step(x, y)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(x)
            loss = self.loss_fn(out, y)
            if self._regularized:
                (loss + self._penalty()).backward()
            else:
                loss.backward()
            if self._clip is not None:
                clip_grad_norm_(self._params, self._clip)
            self.optimizer.step()
            loss = loss.detach()
            out = out.detach()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if self._stochastic:
            self._rng_state = self._get_rng()

        if self.fused is not None:
            # A run on the fused path sums its interval in Python; an observed step joins that sum.
            self._accumulate(loss.item(), int(self.objective.correct(out, y)), k + 1)
        else:
            # One kernel per step for the metrics (argmax); comparing with the labels waits for the flush.
            self._losses.append(loss)
            self._preds.append(self.objective.predict(out))
            self._targets.append(y)
            if len(self._losses) >= self._chunk_steps:
                self._stack_chunk()
        k += 1
        self.step_count = k
        self.epoch = k / self.steps_per_epoch
        self._interval_seconds += time.perf_counter() - t0
        return self._after_step(k, lr, loss)

    def _fused_step(self, k: int, t0: float) -> StepResult:
        """One step on the fused NumPy path: the same batch order, LR and update as the autograd path."""
        if self._lr_moves:
            self._set_lr(self._scheduled_lr(k))
        lr = self._lr
        if self._full_batch:
            x, y = self._x_np, self._y_np
        else:
            idx = self._next_indices().numpy()  # a view: no copy
            x, y = self._x_np[idx], self._y_np[idx]
        result = self.fused.step(x, y, lr, self.l1, self.l2, self._clip)
        k += 1
        self._accumulate(result.loss, result.correct, k)
        self.step_count = k
        self.epoch = k / self.steps_per_epoch
        self._interval_seconds += time.perf_counter() - t0
        return self._after_step(k, lr, result.loss)

    def _accumulate(self, loss: float, correct: int, step: int) -> None:
        self._acc_steps += 1
        self._acc_loss += loss
        self._acc_correct += correct
        if self._acc_bad is None and not math.isfinite(loss):
            self._acc_bad = (loss, step)

    def _after_step(self, k: int, lr: float, loss: Tensor | float) -> StepResult:
        """Bookkeeping that syncs, on the steps that need it: initial loss, metrics, evaluation, stop."""
        metrics = evaluation = None
        last = self.total_steps is not None and k >= self.total_steps
        if k == 1:
            t = time.perf_counter()
            self.initial_loss = loss if isinstance(loss, float) else loss.item()
            self._interval_seconds += time.perf_counter() - t
            if not math.isfinite(self.initial_loss):
                self._finish("non_finite", self._non_finite_message(self.initial_loss, 1))
        if k % self._log_every == 0 or last or self._metrics_next_step:
            self._metrics_next_step = False
            metrics = self._flush_metrics(k)
        if self.n_val and (k % self._eval_every == 0 or last) and (
            self.stop is None or self.stop.reason not in ("non_finite", "exploded")
        ):
            evaluation = self.evaluate()
            self._after_evaluation(evaluation, k)
        if last:
            self._finish("finished", f"Finished: {k} steps, {self.epoch:.4g} epochs.")
        if self.stop is not None and metrics is None and (self._losses or self._loss_chunks or self._acc_steps):
            metrics = self._flush_metrics(k, check=False)
        return StepResult(k, self.epoch, lr, self.batch_size, loss, metrics, evaluation, self.stop)

    def _stack_chunk(self) -> None:
        """Fold the pending steps into one loss vector and one correct count (still on the device)."""
        self._loss_chunks.append(torch.stack(self._losses))
        correct = (torch.cat(self._preds) == torch.cat(self._targets)).sum()
        self._correct_chunks.append(correct.reshape(1))
        self._losses, self._preds, self._targets = [], [], []

    def _flush_metrics(self, k: int, check: bool = True) -> IntervalMetrics:
        """Interval means (one sync) and the health checks on them."""
        t = time.perf_counter()
        if self.fused is not None:
            steps, loss_sum, n_correct, bad = self._acc_steps, self._acc_loss, self._acc_correct, self._acc_bad
            self._acc_steps, self._acc_loss, self._acc_correct, self._acc_bad = 0, 0.0, 0, None
        else:
            if self._losses:
                self._stack_chunk()
            losses = torch.cat(self._loss_chunks)
            correct = torch.cat(self._correct_chunks).sum()
            self._loss_chunks, self._correct_chunks = [], []
            loss_sum, n_correct = torch.stack([losses.sum().double(), correct.double()]).tolist()
            steps = int(losses.shape[0])
            bad = None
            if not math.isfinite(loss_sum):
                first = int((~torch.isfinite(losses)).nonzero()[0, 0])
                bad = (losses[first].item(), k - steps + 1 + first)
        seconds = self._interval_seconds + (time.perf_counter() - t)
        self._interval_seconds = 0.0
        examples = steps * self.batch_size
        mean = loss_sum / steps
        metrics = IntervalMetrics(mean, n_correct / examples, examples / seconds if seconds > 0 else math.inf, steps)
        if check and self.stop is None:
            if not math.isfinite(mean):
                value, at = bad if bad is not None else (mean, k)
                self._finish("non_finite", self._non_finite_message(value, at))
            elif (not self.perceptron and self.initial_loss is not None and self.initial_loss > 0
                  and mean > self.config.explosion_factor * self.initial_loss):
                self._finish("exploded", (
                    f"The loss exploded at step {k}: its mean over the last {steps} steps is {mean:.4g}, more than "
                    f"{self.config.explosion_factor:g}x its first value {self.initial_loss:.4g}. The learning rate is "
                    f"probably too high: try 10x lower (now {self._lr:g})."
                ))
        return metrics

    def _non_finite_message(self, value: float, step: int) -> str:
        word = "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return (
            f"The loss became {word} at step {step}. Cost {word} almost always means the learning rate is too high: "
            f"try 10x lower (now {self._lr:g})."
        )

    def _after_evaluation(self, ev: EvalResult, k: int) -> None:
        self.last_eval = ev
        if not math.isnan(ev.accuracy):
            self.best_val_acc = ev.accuracy if self.best_val_acc is None else max(self.best_val_acc, ev.accuracy)
        if self.plateau is not None and self.plateau.update(ev.loss):
            self._set_lr(self._scheduled_lr(k))
        es = self.config.early_stopping
        if es is not None:
            if ev.loss < self._best_val - es.min_delta:
                self._best_val, self._best_val_step, self._bad_evals = ev.loss, k, 0
            else:
                self._bad_evals += 1
                if self._bad_evals >= es.patience:
                    self._finish("early_stopping", (
                        f"Early stopping at step {k}: the validation loss has not improved by more than "
                        f"{es.min_delta:g} for {es.patience} evaluations (best {self._best_val:.4g} at step "
                        f"{self._best_val_step})."
                    ))

    def _finish(self, reason: StopReason, message: str) -> None:
        if self.stop is None:
            self.stop = StopInfo(reason, message)
            self.done = True

    def request_metrics(self) -> None:
        """Report the next step's interval metrics whatever ``log_every`` says (the Step button shows its loss)."""
        self._metrics_next_step = True

    def request_stop(self) -> None:
        """End the run now (reason "stopped"); later step() calls raise RuntimeError."""
        self._finish("stopped", f"Stopped on request at step {self.step_count}.")

    # -- evaluation --------------------------------------------------------------------------------

    def eval_model(self) -> nn.Module:
        """The module evaluation uses: the EMA copy of the model when ema_decay is set, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def evaluate(self, split: Literal["val", "train"] = "val") -> EvalResult:
        """Mean loss and accuracy over a whole split, in eval mode (dropout off, batch-norm running stats)."""
        if split == "val":
            x, y = self.dataset.x_val, self.dataset.y_val
        elif split == "train":
            x, y = self.dataset.x_train, self.dataset.y_train
        else:
            raise ValueError(f"unknown split {split!r}; use 'val' or 'train'")
        n = int(y.shape[0])
        if n == 0:
            return EvalResult(math.nan, math.nan, 0)
        model = self.eval_model()
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        try:
            for i in range(0, n, EVAL_BATCH):
                xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
                out = model(xb)
                loss_sum += self.loss_fn(out, yb).double() * yb.shape[0]
                correct += self.objective.correct(out, yb)
        finally:
            model.train(was_training)
        loss, n_correct = torch.stack([loss_sum, correct.double()]).tolist()
        return EvalResult(loss / n, n_correct / n, n)

    # -- live changes ---------------------------------------------------------------------------------

    def set_hyperparams(self, *, lr: float | None = None, momentum: float | None = None,
                        weight_decay: float | None = None, dropout: float | None = None) -> dict[str, float]:
        """Change hyperparameters between steps; returns what was applied.

        lr: the new base LR (the schedule continues from it). momentum: SGD-family and
        RMSprop momentum, or beta1 for Adam/AdamW. weight_decay: the l2 coefficient
        (AdamW: its decoupled decay). dropout: p of every dropout layer. Every value is
        checked before any is applied: an invalid one raises ValueError and changes nothing.
        """
        kind = self.config.optimizer.kind
        checked: dict[str, float] = {}
        if lr is not None:
            lr = float(lr)
            if not (math.isfinite(lr) and 0 < lr <= MAX_LR):
                raise ValueError(f"lr must be a positive number up to {MAX_LR:g}, got {lr:g}")
            checked["lr"] = lr
        if momentum is not None:
            momentum = float(momentum)
            if kind not in MOMENTUM_KINDS + BETA1_KINDS:
                raise ValueError(
                    f"the {kind} optimizer has no momentum; momentum applies to sgd, momentum, nesterov and rmsprop "
                    "(and sets beta1 of adam and adamw)"
                )
            if not (math.isfinite(momentum) and 0 <= momentum < 1):
                raise ValueError(f"momentum must be in [0, 1), got {momentum:g}")
            if kind == "nesterov" and momentum == 0:
                raise ValueError("Nesterov momentum must be above 0; to turn momentum off switch to the sgd optimizer")
            checked["momentum"] = momentum
        if weight_decay is not None:
            weight_decay = float(weight_decay)
            if self.perceptron:
                raise ValueError("the perceptron rule has no weight decay")
            if not (math.isfinite(weight_decay) and 0 <= weight_decay <= 100):
                raise ValueError(f"weight_decay must be in [0, 100], got {weight_decay:g}")
            checked["weight_decay"] = weight_decay
        dropouts = [m for m in self.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if dropout is not None:
            dropout = float(dropout)
            if not dropouts:
                raise ValueError("the network has no dropout layer to change. Fix: add a dropout layer to the network")
            if not (math.isfinite(dropout) and 0 <= dropout < 1):
                raise ValueError(f"dropout must be in [0, 1), got {dropout:g}")
            checked["dropout"] = dropout

        if "lr" in checked:
            self.base_lr = checked["lr"]
            self._set_lr(self._scheduled_lr(self.step_count))
        if "momentum" in checked:
            self._set_momentum(kind, checked["momentum"])
        if "weight_decay" in checked:
            if kind == "adamw":
                for group in self.optimizer.param_groups:
                    if all(is_weight(p) for p in group["params"]):
                        group["weight_decay"] = checked["weight_decay"]
            else:
                self.l2 = checked["weight_decay"]
                self._regularized = bool(self.l2 or self.l1)
        if "dropout" in checked:
            for m in dropouts:
                m.p = checked["dropout"]
        return checked

    def _set_momentum(self, kind: str, momentum: float) -> None:
        for group in self.optimizer.param_groups:
            if kind in BETA1_KINDS:
                group["betas"] = (momentum, group["betas"][1])
                continue
            if kind == "rmsprop" and momentum > 0 and group["momentum"] == 0:
                # torch's RMSprop creates momentum buffers only at its first step; make them now.
                for p in group["params"]:
                    state = self.optimizer.state.get(p)
                    if state and "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            group["momentum"] = momentum


__all__ = [
    "EvalResult", "ExperimentError", "IntervalMetrics", "StepResult", "StopInfo", "Trainer", "resolve_device",
]
