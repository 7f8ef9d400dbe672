"""RunSession: one training run as a stream of protocol messages.

This is the loop that ``dlplay run`` and the server's jobs share. It owns a
Trainer, decides when probes run (on a schedule, within a time budget) and
turns every result into a message through ``protocol``. It does no I/O: the
caller prints the messages or sends them over a websocket.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from server import probes, protocol
from server.schemas import Experiment
from server.trainer import ExperimentError, StepResult, Trainer

# How many validation examples the 2D boundary view draws as points.
BOUNDARY_POINTS = 400  # points

# Probe kinds a client may request on demand (the websocket ``probe`` command).
ON_DEMAND_PROBES = (
    "feature_maps", "saliency", "gradcam", "attention", "boundary", "confusion",
    "misclassified", "filters", "weights", "backprop_trace", "gradient_check",
)


@dataclass
class Limits:
    """Per-run resource limits; the server fills them from its settings."""

    max_params: int = 50_000_000  # parameters per network
    max_activation_bytes: int = 2 * 1024**3  # bytes of activations for one batch
    max_seconds: float | None = None  # wall-clock seconds per run; None = unlimited


class RunSession:
    """Trainer + probes, producing unstamped protocol messages (dicts with a ``type``).

    Raises a ``ValueError`` subclass from the constructor when the experiment is
    invalid (unknown dataset, bad network, limits); nothing is allocated then.
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        run_id: str = "run",
        device: str | None = None,
        limits: Limits | None = None,
        uploads_dir: Path | None = None,
        dataset: Any = None,
    ) -> None:
        self.experiment = experiment
        self.run_id = run_id
        self.limits = limits or Limits()
        # A server passes its cached copy of the data so concurrent runs share one load.
        self.trainer = Trainer(experiment, device=device, uploads_dir=uploads_dir, limits=self.limits, dataset=dataset)
        self.model = self.trainer.model
        self.dataset = self.trainer.dataset
        self.probe_config = experiment.probes
        self.history: list[dict[str, Any]] = []  # metric points, for the doctor
        self.final: dict[str, Any] | None = None
        self.paused = False
        self._started_at = time.perf_counter()
        self._probe_seconds = 0.0
        self._busy_seconds = 0.0
        self._last_activation_stats: list[Any] = []
        self._last_update_ratios: list[Any] = []
        self._hints_sent: set[str] = set()
        self._last_eval: Any = None
        self._filter_normalizers: dict[str, Any] = {}
        self._best_val_acc: float | None = None
        self._conv_layers = [name for name, block in self.model.blocks.items() if block.kind == "conv2d"]

    # -- lifecycle -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.final is not None

    def start(self) -> list[dict[str, Any]]:
        """The first messages: the network summary, the running status and the step-0 views."""
        messages = [self._summary_message(), protocol.status_message("running")]
        if self.probe_config.enabled:
            messages += self._timed(self._heavy_messages, include_eval=False)
        return messages

    def advance(self, *, max_steps: int = 1_000_000, max_seconds: float = 0.1) -> list[dict[str, Any]]:
        """Train for up to ``max_steps`` steps or ``max_seconds`` seconds (a time slice)."""
        messages: list[dict[str, Any]] = []
        deadline = time.perf_counter() + max_seconds
        for _ in range(max_steps):
            if self.done:
                break
            messages += self._one_step()
            if time.perf_counter() >= deadline:
                break
        return messages

    def step_once(self) -> list[dict[str, Any]]:
        """One training step with every light probe (the Step button)."""
        if self.done:
            return [protocol.error_message("run_finished", "This run has ended; start a new one.")]
        return self._one_step(force_probe=True)

    def stop(self) -> list[dict[str, Any]]:
        """End the run now; returns its final messages."""
        if self.done:
            return []
        self.trainer.request_stop()
        return self._finish()

    def close(self) -> None:
        """Drop references to the model and data so their memory is freed promptly."""
        self.trainer = None  # type: ignore[assignment]
        self.model = None  # type: ignore[assignment]
        self.dataset = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def set_hyperparams(self, **values: Any) -> list[dict[str, Any]]:
        """Change LR, momentum, weight decay or dropout live; invalid values raise ValueError."""
        applied = self.trainer.set_hyperparams(**values)
        return [{"type": "hyperparams", "step": self.trainer.step_count, "values": protocol.jsonable(applied)}]

    # -- the training loop ---------------------------------------------------

    def _one_step(self, force_probe: bool = False) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        next_step = self.trainer.step_count + 1
        light = self.probe_config.enabled and (force_probe or (next_step % self.probe_config.every == 0 and self._within_budget()))
        messages: list[dict[str, Any]] = []
        if light:
            result, probe_messages = self._probed_step()
            messages += probe_messages
        else:
            result = self.trainer.step()
        messages = self._result_messages(result) + messages
        if self.probe_config.enabled and not result.stop and next_step % self.probe_config.heavy_every == 0 and self._within_budget():
            messages += self._timed(self._heavy_messages, include_eval=True)
        if self.limits.max_seconds is not None and time.perf_counter() - self._started_at > self.limits.max_seconds and not result.stop:
            self.trainer.request_stop()
            messages += self._finish(reason_message=f"The run reached its time limit of {self.limits.max_seconds:g} s.")
        elif result.stop is not None:
            messages += self._finish()
        self._busy_seconds += time.perf_counter() - t0
        return messages

    def _within_budget(self) -> bool:
        """Probes may use at most ``probes.budget`` of the wall time spent so far."""
        total = self._busy_seconds
        return total <= 0 or self._probe_seconds <= self.probe_config.budget * total

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self._probe_seconds += time.perf_counter() - t0

    def _probed_step(self) -> tuple[StepResult, list[dict[str, Any]]]:
        """A training step recorded by hooks: activation/gradient statistics and update ratios."""
        model = self.model
        before = self._timed(probes.snapshot_params, model)
        recorder = probes.ActivationRecorder(model.blocks, grads=True, training_only=True)
        with recorder:
            result = self.trainer.step()
            t0 = time.perf_counter()
            bins = self.probe_config.histogram_bins
            act_stats = probes.activation_stats(recorder.activations, model.blocks, bins)
            grad_stats = probes.gradient_stats(model.named_parameters(), recorder.output_grads)
            ratios = probes.update_ratios(before, model.named_parameters())
        self._last_activation_stats = act_stats
        self._last_update_ratios = ratios
        messages = [
            protocol.activations_message(result.step, act_stats),
            protocol.gradients_message(result.step, grad_stats, ratios, self._param_layer),
        ]
        self._probe_seconds += time.perf_counter() - t0
        return result, messages

    def _param_layer(self, param_name: str) -> str:
        """'blocks.conv1.core.weight' -> 'conv1' (the document's layer name)."""
        return self.model.layer_of(param_name) or param_name

    def _result_messages(self, result: StepResult) -> list[dict[str, Any]]:
        if result.evaluation is not None:
            self._last_eval = result.evaluation
            acc = result.evaluation.accuracy
            if acc is not None and not math.isnan(acc):
                self._best_val_acc = acc if self._best_val_acc is None else max(self._best_val_acc, acc)
        if result.metrics is None and result.evaluation is None:
            return []
        m, e = result.metrics, result.evaluation
        message = protocol.metrics_message(
            result,
            train_loss=m.train_loss if m else None,
            train_acc=m.train_acc if m else None,
            examples_per_s=m.examples_per_s if m else None,
            val_loss=e.loss if e else None,
            val_acc=e.accuracy if e else None,
        )
        self.history.append(message)
        return [message] + self._timed(self._hint_messages)

    # -- probes --------------------------------------------------------------

    def _heavy_messages(self, include_eval: bool) -> list[dict[str, Any]]:
        """Low-rate views: weights, filters, the 2D boundary, the confusion matrix."""
        step = self.trainer.step_count
        messages = [protocol.weights_message(step, probes.weight_histograms(self.model.blocks, self.probe_config.histogram_bins))]
        if self._conv_layers:
            messages.append(self._filters_message(self._conv_layers[0]))
        if self.dataset.kind == "2d":
            messages.append(self._boundary_message())
        if include_eval:
            messages += self._evaluation_messages()
        return messages

    def probe(self, kind: str, **args: Any) -> list[dict[str, Any]]:
        """Run one probe on demand (feature maps, saliency, Grad-CAM, ...) for ``index``/``class``/``layer``."""
        if kind not in ON_DEMAND_PROBES:
            raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(ON_DEMAND_PROBES)}")
        handler = getattr(self, f"_probe_{kind}")
        return self._timed(handler, **args)

    def _example(self, index: int | None) -> tuple[int, torch.Tensor, int]:
        n = len(self.dataset.y_val)
        if n == 0:
            raise ValueError("this dataset has no validation examples to probe; raise data.val_fraction")
        index = 0 if index is None else int(index)
        if not 0 <= index < n:
            raise ValueError(f"example index {index} is out of range: the validation split has {n} examples (0..{n - 1})")
        return index, self.dataset.x_val[index : index + 1], int(self.dataset.y_val[index])

    def _require_images(self, what: str) -> None:
        if self.dataset.kind != "image":
            raise ValueError(f"{what} needs an image dataset; {self.dataset.name!r} is {self.dataset.kind} data")

    def _display(self, x: torch.Tensor) -> dict[str, Any]:
        return protocol.encode_image(self.dataset.display_images(x)[0])

    def _check_class(self, target: int | None) -> int | None:
        if target is None:
            return None
        target = int(target)
        if not 0 <= target < self.dataset.num_classes:
            raise ValueError(f"class {target} is out of range: this dataset has classes 0..{self.dataset.num_classes - 1}")
        return target

    def _probe_feature_maps(self, index: int | None = None, **_: Any) -> list[dict[str, Any]]:
        index, x, label = self._example(index)
        maps = probes.feature_maps(self.model, self.model.blocks, x)
        image = self._display(x) if self.dataset.kind == "image" else None
        return [protocol.feature_maps_message(self.trainer.step_count, index, label, image, maps)]

    def _probe_saliency(self, index: int | None = None, target: int | None = None, smoothgrad: bool = False, **_: Any) -> list[dict[str, Any]]:
        self._require_images("saliency")
        index, x, _label = self._example(index)
        result = probes.saliency(self.model, x, self._check_class(target), smoothgrad_samples=16 if smoothgrad else 0)
        return [protocol.saliency_message(self.trainer.step_count, index, self._display(x), result, smoothgrad)]

    def _probe_gradcam(self, index: int | None = None, target: int | None = None, layer: str | None = None, **_: Any) -> list[dict[str, Any]]:
        self._require_images("Grad-CAM")
        if not self._conv_layers:
            raise ValueError("Grad-CAM needs a conv2d layer; this network has none")
        index, x, _label = self._example(index)
        result = probes.gradcam(self.model, x, layer=layer, target=self._check_class(target))
        return [protocol.gradcam_message(self.trainer.step_count, index, self._display(x), result)]

    def _probe_attention(self, index: int | None = None, **_: Any) -> list[dict[str, Any]]:
        self._require_images("attention masks")
        index, x, _label = self._example(index)
        masks = probes.attention_masks(self.model, x)
        if not masks:
            raise ValueError("this network has no squeeze_excite or spatial_attention layer")
        return [protocol.attention_message(self.trainer.step_count, index, self._display(x), masks)]

    def _probe_boundary(self, **_: Any) -> list[dict[str, Any]]:
        if self.dataset.kind != "2d":
            raise ValueError(f"the decision boundary needs 2D data; {self.dataset.name!r} is {self.dataset.kind} data")
        return [self._boundary_message()]

    def _probe_confusion(self, **_: Any) -> list[dict[str, Any]]:
        return self._evaluation_messages()[:1]

    def _probe_misclassified(self, **_: Any) -> list[dict[str, Any]]:
        return self._evaluation_messages()[1:]

    def _probe_filters(self, layer: str | None = None, **_: Any) -> list[dict[str, Any]]:
        if not self._conv_layers:
            raise ValueError("this network has no conv2d layer, so it has no filters to show")
        layer = layer or self._conv_layers[0]
        if layer not in self._conv_layers:
            raise ValueError(f"{layer!r} is not a conv2d layer; choose one of {', '.join(self._conv_layers)}")
        return [self._filters_message(layer)]

    def _probe_weights(self, **_: Any) -> list[dict[str, Any]]:
        stats = probes.weight_histograms(self.model.blocks, self.probe_config.histogram_bins)
        return [protocol.weights_message(self.trainer.step_count, stats)]

    def _probe_backprop_trace(self, index: int | None = None, **_: Any) -> list[dict[str, Any]]:
        index, x, label = self._example(index)
        loss = "mse" if self.experiment.train.loss == "mse" else "cross_entropy"
        trace = probes.backprop_trace(self.model, x, label, loss=loss, lr=self.trainer.lr)
        return [protocol.backprop_trace_message(trace)]

    def _probe_gradient_check(self, **_: Any) -> list[dict[str, Any]]:
        n = min(8, len(self.dataset.y_train))
        x, y = self.dataset.x_train[:n], self.dataset.y_train[:n]
        report = probes.gradient_check(self.model, x, y, self.trainer.loss_fn)
        return [protocol.gradient_check_message(report)]

    def predict(self, values: Any) -> list[dict[str, Any]]:
        """Class probabilities for an input the user supplies (e.g. a drawn digit), raw in [0, 1]."""
        x = self._prepare_input(values)
        result = probes.predict(self.trainer.eval_model(), x)
        return [protocol.prediction_message(result, self.dataset.classes)]

    def _prepare_input(self, values: Any) -> torch.Tensor:
        """Raw user values (flat or nested, images in [0, 1]) -> one preprocessed input ``(1, *input_shape)``."""
        shape = tuple(self.dataset.input_shape)
        expected = math.prod(shape)
        try:
            x = torch.as_tensor(values, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError("input must be a list of numbers") from None
        if x.numel() != expected:
            raise ValueError(
                f"input has {x.numel()} values but this network takes {expected} "
                f"({'x'.join(map(str, shape))}); send the values flattened in that order"
            )
        if not torch.isfinite(x).all():
            raise ValueError("input contains NaN or infinite values")
        return self.dataset.normalize(x.reshape(1, *shape).to(self.dataset.device))

    def _filters_message(self, layer: str) -> dict[str, Any]:
        normalizer = self._filter_normalizers.setdefault(layer, probes.FilterNormalizer())
        grid = probes.filter_images(self.model.blocks[layer].core, normalizer=normalizer)
        return protocol.filters_message(self.trainer.step_count, layer, grid)

    def _boundary_message(self) -> dict[str, Any]:
        x = torch.cat([self.dataset.x_train, self.dataset.x_val])
        lo, hi = x.min(0).values.tolist(), x.max(0).values.tolist()
        pad = [(h - l) * 0.1 for l, h in zip(lo, hi)]
        extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        model = self.trainer.eval_model()
        # An EMA copy wraps the network (AveragedModel.module); hook the copy's own blocks.
        blocks = getattr(model, "blocks", None) or getattr(getattr(model, "module", None), "blocks", None)
        boundary = probes.decision_boundary(model, blocks, extent=extent, resolution=self.probe_config.boundary_resolution)
        n = min(BOUNDARY_POINTS, len(self.dataset.y_val))
        points = torch.cat([self.dataset.x_val[:n], self.dataset.y_val[:n, None].float()], dim=1)
        return protocol.boundary_message(self.trainer.step_count, boundary, points.cpu().numpy())

    def _evaluation_messages(self) -> list[dict[str, Any]]:
        model = self.trainer.eval_model()
        x, y = self.dataset.x_val, self.dataset.y_val
        if len(y) == 0:
            return []
        matrix = probes.confusion(model, x, y, self.dataset.num_classes)
        mistakes = probes.most_confident_mistakes(model, x, y, k=16)
        images = None
        if self.dataset.kind == "image" and mistakes:
            idx = torch.tensor([m.index for m in mistakes], device=x.device)
            images = self.dataset.display_images(x[idx])
        step = self.trainer.step_count
        return [
            protocol.confusion_message(step, self.dataset.classes, matrix),
            protocol.misclassified_message(step, mistakes, images),
        ]

    def _hint_messages(self) -> list[dict[str, Any]]:
        """New doctor hints (each code is sent once per run)."""
        evidence = probes.DoctorEvidence(
            num_classes=self.dataset.num_classes,
            loss=self.experiment.train.loss,
            initial_loss=self.trainer.initial_loss,
            history=self._doctor_history(),
            stop_reason=self.trainer.stop.reason if self.trainer.stop else None,
            activations=[
                probes.LayerActivity(
                    layer=s.layer, activation=s.act, dead_fraction=s.dead_fraction, saturated_fraction=s.saturated_fraction
                )
                for s in self._last_activation_stats
            ],
            update_ratios={r.name: r.ratio for r in self._last_update_ratios},
            l2=self.experiment.train.l2,
            l1=self.experiment.train.l1,
        )
        fresh = []
        for hint in probes.diagnose(evidence):
            if hint.code not in self._hints_sent:
                self._hints_sent.add(hint.code)
                fresh.append(protocol.hint_message(hint))
        return fresh

    def _doctor_history(self) -> list[Any]:
        """Metric points for the doctor: one per logged interval, with the latest evaluation attached."""
        points: list[Any] = []
        for m in self.history:
            if m["train_loss"] is not None:
                points.append(probes.MetricPoint(step=m["step"], train_loss=_num(m["train_loss"]),
                                                 train_acc=_num(m["train_acc"]), lr=_num(m["lr"])))
            if m["val_loss"] is not None and points:
                points[-1].val_loss, points[-1].val_acc = _num(m["val_loss"]), _num(m["val_acc"])
        return points

    # -- summaries -----------------------------------------------------------

    def _summary_message(self) -> dict[str, Any]:
        ds = self.dataset
        return {
            "type": "summary",
            "experiment_name": self.experiment.name,
            "device": str(self.trainer.device),
            "dataset": {
                "name": ds.name, "kind": ds.kind, "classes": list(ds.classes), "input_shape": list(ds.input_shape),
                "n_train": int(len(ds.y_train)), "n_val": int(len(ds.y_val)), "source": ds.source, "licence": ds.licence,
            },
            "network": protocol.jsonable(self.trainer.summary.to_dict()),
            "steps_per_epoch": self.trainer.steps_per_epoch,
            "total_steps": self.trainer.total_steps,
        }

    def _finish(self, reason_message: str | None = None) -> list[dict[str, Any]]:
        trainer = self.trainer
        messages: list[dict[str, Any]] = []
        final_eval = self._last_eval
        if trainer.stop is None or trainer.stop.reason not in ("non_finite", "exploded"):
            final_eval = trainer.evaluate()
            self._last_eval = final_eval
            if self.probe_config.enabled:
                messages += self._timed(self._heavy_messages, include_eval=True)
        last_train = next((m["train_loss"] for m in reversed(self.history) if m["train_loss"] is not None), None)
        stop = trainer.stop
        self.final = {
            "type": "final",
            "steps": trainer.step_count,
            "epochs": protocol.clean_float(trainer.epoch),
            "stop_reason": stop.reason if stop else "stopped",
            "message": reason_message or (stop.message if stop else "Stopped."),
            "train_loss": last_train,
            "val_loss": protocol.clean_float(final_eval.loss) if final_eval else None,
            "val_acc": protocol.clean_float(final_eval.accuracy) if final_eval else None,
            "best_val_acc": protocol.clean_float(self._best_val_acc if final_eval is None else max(self._best_val_acc or 0.0, final_eval.accuracy)),
            "wall_s": round(time.perf_counter() - self._started_at, 3),
            "probe_share": round(self._probe_seconds / max(self._busy_seconds, 1e-9), 4),
        }
        messages += self._timed(self._hint_messages)
        if stop and stop.reason in ("non_finite", "exploded"):
            state = "failed"
        elif stop and stop.reason == "stopped":
            state = "stopped"
        else:
            state = "finished"
        return messages + [self.final, protocol.status_message(state, message=self.final["message"])]


def _num(value: Any) -> float | None:
    """Back from a message's clean float ("nan" strings included) to a float."""
    if value is None:
        return None
    return float(value)


__all__ = ["Limits", "RunSession", "ExperimentError", "ON_DEMAND_PROBES"]
