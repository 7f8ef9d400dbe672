"""RunSession: one training run as a stream of protocol messages.

This is the loop that ``dlplay run`` and the server's jobs share. It owns a
Trainer, runs the live views of ``server/live`` when the frame clock says they
are due (frames per second of wall time, within a probe budget of wall time and of
the time the run is given to work, only the views someone watches), merges metric points when asked to send at most
``max_metrics_hz`` of them (the server does), keeps the doctor's running statistics, and turns every
result into a message through ``protocol``. It does no I/O: the caller prints
the messages or sends them over a websocket.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from server import live, probes, protocol
from server.schemas import Experiment
from server.trainer import ExperimentError, IntervalMetrics, StepResult, Trainer

# The fastest speed a client may set; above it "max" (None) is what they mean.
MAX_STEPS_PER_S = 100_000.0  # steps per second
# A speed limit lets a few steps' credit build up, so a 10 steps/s run does not stutter behind a slow slice.
SPEED_BURST_SECONDS = 0.25  # seconds of credit
# The views' share of a run's own compute (probes.budget) may be saved up to this many seconds of probing: a
# run may catch up a frame or two after a pause, but never spend a long burst on views (issue 10).
VIEW_CREDIT_CAP_SECONDS = 0.25  # seconds of probing
# Weight of the newest plain step in the smoothed step time (a few dozen steps of memory).
STEP_TIME_SMOOTHING = 0.05
# Legacy on-demand probe names -> the view that sends their messages now.
PROBE_ALIASES = {"confusion": "evaluation", "misclassified": "evaluation"}
ON_DEMAND_PROBES = live.ON_DEMAND + tuple(PROBE_ALIASES)


@dataclass
class Limits:
    """Per-run resource limits; the server fills them from its settings."""

    max_params: int = 50_000_000  # parameters per network
    max_activation_bytes: int = 2 * 1024**3  # bytes of activations for one batch
    max_seconds: float | None = None  # wall-clock seconds per run; None = unlimited


class RunSession:
    """Trainer + live views, producing unstamped protocol messages (dicts with a ``type``).

    Raises a ``ValueError`` subclass from the constructor when the experiment is
    invalid (unknown dataset, bad network, limits, an unknown view in ``probes.rates``);
    nothing is allocated then.

    The attributes live views read (``server/live``): ``model``, ``dataset``, ``trainer``,
    ``experiment``, ``probe_config``, ``conv_layers``, and the helpers ``example``,
    ``display``, ``check_class``, ``filter_normalizer``, ``param_layer``, ``cached``,
    ``remember_layer_stats``.
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
        max_metrics_hz: float | None = None,
        init_weights: Any = None,  # train.init_from's file, resolved by the caller (issue 12)
    ) -> None:
        """``max_metrics_hz``: send at most this many metrics points per second, merging faster log intervals
        (weighted by their steps). The server sets it: a 10,000-steps/s MLP logging every 10 steps would send
        1,000 points a second, more than a chart can show or a replay log should keep. None: every interval."""
        unknown = sorted(set(experiment.probes.rates) - set(live.LIVE_VIEWS))
        if unknown:
            raise ExperimentError(
                f"probes.rates names {', '.join(map(repr, unknown))}, which is not a live view. "
                f"Fix: use some of {', '.join(live.LIVE_VIEWS)}"
            )
        self.experiment = experiment
        self.run_id = run_id
        self.limits = limits or Limits()
        # A server passes its cached copy of the data so concurrent runs share one load.
        self.trainer = Trainer(experiment, device=device, uploads_dir=uploads_dir, limits=self.limits, dataset=dataset,
                               init_weights=init_weights)
        self.model = self.trainer.model
        self.dataset = self.trainer.dataset
        self.probe_config = experiment.probes
        self.conv_layers = [name for name, block in self.model.blocks.items() if block.kind == "conv2d"]
        self._last_train_loss: Any = None  # the newest metrics message's train_loss (for the final message)
        self.final: dict[str, Any] | None = None
        self.doctor = probes.RunDoctor(
            num_classes=self.dataset.num_classes, loss=experiment.train.loss,
            l1=experiment.train.l1, l2=experiment.train.l2, ignore=experiment.probes.doctor_ignore,
        )
        self._started_at = time.perf_counter()
        self._probe_seconds = 0.0
        self._busy_seconds = 0.0
        self._last_activation_stats: list[Any] = []
        self._last_update_ratios: list[Any] = []
        self._hints_sent: set[str] = set()
        self._last_eval: Any = None
        self._eval_count = 0  # evaluations so far: the evaluation view wants a frame only after a new one
        self._eval_count_shown = -1
        self._filter_normalizers: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}
        self._best_val_acc: float | None = None
        # Metric intervals not yet sent (merged when they come faster than MAX_METRICS_HZ).
        self._pending: list[tuple[StepResult, IntervalMetrics]] = []
        self._pending_eval: Any = None
        self._last_metrics_at = -math.inf
        self._metrics_gap = 0.0 if not max_metrics_hz else 1.0 / max_metrics_hz  # seconds between points, at least
        # The frame clock over the live views, and what each watched view was asked for.
        targets = {name: live.VIEWS[name].default_hz for name in live.LIVE_VIEWS}
        targets.update(experiment.probes.rates)
        self.clock = live.FrameClock(targets, experiment.probes.budget)
        self._view_args: dict[str, dict[str, Any]] = {}
        self._step_view: str | None = None  # the watched view that wraps a training step (layer_stats)
        self.set_views(None)
        # Speed control: None = as fast as the machine goes.
        self.steps_per_s: float | None = None
        self._speed_credit = 0.0
        self._speed_at = time.perf_counter()
        self._framed = False  # a view frame was made in this slice (advance ends it then)
        # Seconds of probing the views may still spend: probes.budget of the time this run was given to work (its
        # slices), not of all wall time. For a run alone that is the same; in a class of 50 on 2 cores a run works
        # 1/25 of the time, and views at their wall-time rates would leave it no time to train (issue 10).
        budget = experiment.probes.budget
        self._view_credit_rate = budget / max(1.0 - budget, 1e-9)  # probing s per working s (budget 1: unbounded)
        self._view_credit = 0.0
        self._credited_at = time.perf_counter()  # until when the run's working time has been credited
        # What a frame costs, in this thread's CPU time on the CPU: on a busy machine (a browser, other runs)
        # wall time counts the time others had the core, and the clock would slow the views for nothing.
        # A GPU's work is asynchronous, so there wall time it is.
        self._cost_clock = time.thread_time if self.trainer.device.type == "cpu" else time.perf_counter
        self._plain_step_seconds = 0.0  # smoothed time of an unobserved step, to tell an observed step's extra cost
        # Views wait for the first metrics point (start(frames=False)): a run's open makes only what the first
        # metrics need, and its first frames come with its next slice (a class of 50 pressing Train at once pays
        # 50 opens before the last one's first metrics: step-0 frames tripled an open's cost; issue 10).
        self._views_held = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.final is not None

    def start(self, frames: bool = True) -> list[dict[str, Any]]:
        """The first messages: the network summary, the running status and a step-0 frame of every watched view.

        ``frames`` False: no step-0 frames, and no view runs until the first metrics point has been made
        (the caller advances to it at once); the views' first frames then come with the next slice.
        """
        messages = [self._summary_message(), protocol.status_message("running")]
        if not frames:
            self._views_held = True
            return messages
        return messages + self.refresh()

    def advance(self, *, max_steps: int = 1_000_000, max_seconds: float = 0.1,
                until_frame: bool = False, cpu_time: bool = False) -> list[dict[str, Any]]:
        """Train for up to ``max_steps`` steps or ``max_seconds`` seconds (a time slice), within the speed limit.

        ``cpu_time``: ``max_seconds`` counts this thread's CPU time, not wall time (a run's open: with many runs
        opening at once, each has a sliver of a core, and wall time would end it short of its first metrics).

        ``until_frame``: end the slice as soon as a live view made a frame, so the caller sends it at once.
        The server does: two frames of one view sent together reach the page at the same instant, and it
        paints only the newer (on a busy machine slices stretch to 100 ms and more, many frames' worth).
        """
        messages: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        clock = time.thread_time if cpu_time else time.perf_counter
        deadline = clock() + max_seconds
        if self.steps_per_s is not None:
            max_steps = min(max_steps, self._speed_allowance(t0))
        taken = 0
        self._framed = False
        if self.steps_per_s is None:
            self._credited_at = t0  # the time spent waiting for this slice was other runs' (no credit for views)
        # With a speed limit the run waits between steps by choice: that time is its own, and its views earn their
        # share of it (credited from its last step). Otherwise a run slowed to watch it learn (10 steps/s) would
        # earn almost nothing and its views would hardly move.
        held = self._views_held
        while taken < max_steps and not self.done:
            messages += self._one_step()
            taken += 1
            if held and not self._views_held:  # a quick open made its first metrics point: that is all it does
                break
            if until_frame and self._framed:
                if taken > 1:
                    break
                # A frame on the slice's first step came due while the run waited for its turn (with 50 runs
                # sharing a core, every turn): ending the slice there would leave the run one step per turn
                # (issue 10). It goes out with this slice, at most a slice later.
                self._framed = False
            if clock() >= deadline:
                break
        if self.steps_per_s is not None:
            self._speed_credit -= taken
        return messages

    def step_once(self) -> list[dict[str, Any]]:
        """One training step, observed by every step view, then a frame of every watched view (the Step button)."""
        if self.done:
            return [protocol.error_message("run_finished", "This run has ended; start a new one.")]
        self.trainer.request_metrics()  # the stepped step's loss is shown, between log_every points too
        messages = self._one_step(observe=True, flush=True)
        if not self.done:
            messages += self.refresh()
        return messages

    def refresh(self) -> list[dict[str, Any]]:
        """A frame of every watched view now (on start, pause and step), whatever the clock says."""
        if not self.probe_config.enabled or self.trainer is None:
            return []
        messages: list[dict[str, Any]] = []
        step = self.trainer.step_count
        credit = self._view_credit  # frames asked for (start, pause, a Step) are not the clock's: they owe nothing
        for name in self.clock.watched:
            if live.VIEWS[name].compute is not None:
                messages += self._frame(name, time.perf_counter(), step)
        self._view_credit = credit
        return messages

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
        self._cache.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- what the clients ask for ----------------------------------------------

    def set_hyperparams(self, **values: Any) -> list[dict[str, Any]]:
        """Change LR, momentum, weight decay or dropout live; invalid values raise ValueError."""
        applied = self.trainer.set_hyperparams(**values)
        return [{"type": "hyperparams", "step": self.trainer.step_count, "values": protocol.jsonable(applied)}]

    def set_speed(self, steps_per_s: float | None) -> list[dict[str, Any]]:
        """Train at most ``steps_per_s`` steps per second (None: as fast as possible); acknowledged as ``hyperparams``."""
        if steps_per_s is not None:
            if isinstance(steps_per_s, bool) or not isinstance(steps_per_s, (int, float)) or not (
                math.isfinite(steps_per_s) and 0 < steps_per_s <= MAX_STEPS_PER_S
            ):
                raise ValueError(
                    f"steps_per_s must be a number in (0, {MAX_STEPS_PER_S:,.0f}], or null for as fast as possible; "
                    f"got {steps_per_s!r}"
                )
            steps_per_s = float(steps_per_s)
        self.steps_per_s = steps_per_s
        self._speed_credit = 0.0
        self._speed_at = time.perf_counter()
        return [{"type": "hyperparams", "step": self.trainer.step_count, "values": {"steps_per_s": steps_per_s}}]

    def next_step_in(self) -> float:
        """Seconds until the speed limit allows the next step (0 when it may step now or has no limit)."""
        if self.steps_per_s is None:
            return 0.0
        missing = 1.0 - self._speed_credit - (time.perf_counter() - self._speed_at) * self.steps_per_s
        return max(0.0, missing / self.steps_per_s)

    def _speed_allowance(self, now: float) -> int:
        burst = max(1.0, self.steps_per_s * SPEED_BURST_SECONDS)
        self._speed_credit = min(burst, self._speed_credit + (now - self._speed_at) * self.steps_per_s)
        self._speed_at = now
        return int(self._speed_credit)

    def set_views(self, views: Mapping[str, Mapping[str, Any]] | None) -> None:
        """Watch these live views (name -> arguments); None: the defaults. Unknown names or arguments raise ValueError.

        Views that do not apply to this run (the boundary on image data, filters without a conv
        layer) are left out silently: a page watches what its open tab shows, whatever the run.
        """
        if views is None:
            views = {name: {} for name in live.DEFAULT_VIEWS}
        checked = live.check_views(views)
        if self.trainer is None:
            return
        watched = {n: a for n, a in checked.items() if live.VIEWS[n].reason_not_applicable(self) is None}
        changed = [n for n, a in watched.items() if self._view_args.get(n) != a]
        self._view_args = watched
        self.clock.watch(watched)
        for name in changed:  # new arguments (another example, another layer): a fresh frame at once
            self.clock.invalidate(name)
        self._step_view = next((n for n in watched if live.VIEWS[n].wrap_step is not None), None)

    def probe(self, kind: str, **args: Any) -> list[dict[str, Any]]:
        """Compute one view now, on demand (feature maps, saliency, Grad-CAM, a gradient check, ...)."""
        name = PROBE_ALIASES.get(kind, kind)
        view = live.VIEWS.get(name)
        if view is None or view.compute is None:
            raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(live.ON_DEMAND)}")
        reason = view.reason_not_applicable(self)
        if reason:
            raise ValueError(reason)
        args = view.check_arguments(args)
        t0 = time.perf_counter()
        try:
            return view.compute(self, **args)
        finally:
            self._probe_seconds += time.perf_counter() - t0

    def predict(self, values: Any) -> list[dict[str, Any]]:
        """Class probabilities for an input the user supplies (e.g. a drawn digit), raw in [0, 1]."""
        x = self._prepare_input(values)
        result = probes.predict(self.trainer.eval_model(), x)
        return [protocol.prediction_message(result, self.dataset.classes)]

    # -- the training loop ---------------------------------------------------

    def _one_step(self, observe: bool = False, flush: bool = False) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        # The time since the last step (or the slice's start) was this run's to work: the views earn their share.
        earned = (t0 - self._credited_at) * self._view_credit_rate
        self._view_credit = min(VIEW_CREDIT_CAP_SECONDS, self._view_credit + earned)
        self._credited_at = t0
        c0 = self._cost_clock()
        trainer = self.trainer
        step_view = self._step_view if self.probe_config.enabled else None
        messages: list[dict[str, Any]] = []
        # A Step shows its frames whatever the credit; nothing is drawn before the first metrics point of a quick open.
        views_allowed = (observe or flush or self._view_credit >= 0) and not self._views_held
        if step_view is not None and (observe or (views_allowed and step_view in self.clock.due(t0, trainer.step_count))):
            # A step the view's hooks observe: a plain step's time is training, the rest is the probe's cost.
            result, messages = live.VIEWS[step_view].wrap_step(self, lambda: trainer.step(observed=True))
            spent = max(0.0, self._cost_clock() - c0 - self._plain_step_seconds)
            self.clock.ran(step_view, spent, time.perf_counter(), result.step)
            self._probe_seconds += spent
            self._view_credit -= spent
            self._framed = True
            self._stamp_rate(step_view, messages)
        else:
            result = trainer.step()
            took = self._cost_clock() - c0
            self._plain_step_seconds += STEP_TIME_SMOOTHING * (took - self._plain_step_seconds)
        messages = self._result_messages(result, force=flush) + messages
        if self._views_held and messages:  # the first metrics point (or the final) is made: the views may run
            self._views_held = False
            views_allowed = False  # ... from the next step: this one ends the open's slice
        if self.probe_config.enabled and not result.stop:
            now = time.perf_counter()
            if views_allowed and self.clock.anything_due(now):
                for name in self.clock.due(now, result.step):
                    view = live.VIEWS[name]
                    if view.wrap_step is not None or (view.on_evaluation and self._eval_count == self._eval_count_shown):
                        continue
                    messages += self._frame(name, now, result.step)
        if self.limits.max_seconds is not None and time.perf_counter() - self._started_at > self.limits.max_seconds and not result.stop:
            trainer.request_stop()
            messages += self._finish(reason_message=f"The run reached its time limit of {self.limits.max_seconds:g} s.")
        elif result.stop is not None:
            messages += self._finish()
        self._busy_seconds += self._cost_clock() - c0
        return messages

    def _frame(self, name: str, now: float, step: int) -> list[dict[str, Any]]:
        """One frame of a watched view, stamped with the rate its view runs at now."""
        view = live.VIEWS[name]
        c0 = self._cost_clock()
        try:
            messages = view.compute(self, **self._view_args.get(name, {}))
        except ValueError as exc:
            # It applied when it was watched but not now (e.g. an example index beyond the split): say so once.
            self._view_args.pop(name, None)
            self.clock.watch(self._view_args)
            return [protocol.error_message("bad_arguments", f"view {name!r} stopped: {exc}")]
        spent = self._cost_clock() - c0
        self._probe_seconds += spent
        self._view_credit -= spent
        self._framed = True
        self.clock.ran(name, spent, time.perf_counter(), step)
        if view.on_evaluation:
            self._eval_count_shown = self._eval_count
        self._stamp_rate(name, messages)
        return messages

    def _stamp_rate(self, name: str, messages: list[dict[str, Any]]) -> None:
        """Tell the page the rate this view streams at now (it may be below its target; see FrameClock)."""
        rate = self.clock.rate(name)
        if rate is not None:
            for message in messages:
                message["rate_hz"] = round(rate, 3)

    def _result_messages(self, result: StepResult, force: bool = False) -> list[dict[str, Any]]:
        """A metrics message when one is due: intervals arriving faster than MAX_METRICS_HZ are merged."""
        if result.evaluation is not None:
            self._last_eval = self._pending_eval = result.evaluation
            self._eval_count += 1
            acc = result.evaluation.accuracy
            if acc is not None and not math.isnan(acc):
                self._best_val_acc = acc if self._best_val_acc is None else max(self._best_val_acc, acc)
        if result.metrics is not None:
            self._pending.append((result, result.metrics))
        if not self._pending and self._pending_eval is None:
            return []
        if not (force or result.stop is not None or time.perf_counter() - self._last_metrics_at >= self._metrics_gap):
            return []
        return self._metrics_now(self._pending[-1][0] if self._pending else result)

    def _metrics_now(self, result: StepResult) -> list[dict[str, Any]]:
        """Send the held-back intervals (and the latest evaluation) as one metrics point at ``result``'s step."""
        self._last_metrics_at = time.perf_counter()
        m = _merge(self._pending, result.batch_size)
        e, self._pending_eval, self._pending = self._pending_eval, None, []
        message = protocol.metrics_message(
            result,
            train_loss=m.train_loss if m else None,
            train_acc=m.train_acc if m else None,
            examples_per_s=m.examples_per_s if m else None,
            val_loss=e.loss if e else None,
            val_acc=e.accuracy if e else None,
        )
        if message["train_loss"] is not None:
            self._last_train_loss = message["train_loss"]
        if m is not None:
            self.doctor.observe(probes.MetricPoint(
                step=result.step, train_loss=m.train_loss, train_acc=m.train_acc, lr=result.lr,
                val_loss=e.loss if e else None, val_acc=e.accuracy if e else None,
            ))
        return [message] + self._hint_messages()

    # -- helpers the live views use -------------------------------------------

    def example(self, index: int | None) -> tuple[int, torch.Tensor, int]:
        """Validation example ``index`` (default 0): ``(index, x (1, *input_shape), label)``."""
        n = len(self.dataset.y_val)
        if n == 0:
            raise ValueError("this dataset has no validation examples to probe; raise data.val_fraction")
        index = 0 if index is None else int(index)
        if not 0 <= index < n:
            raise ValueError(f"example index {index} is out of range: the validation split has {n} examples (0..{n - 1})")
        return index, self.dataset.x_val[index : index + 1], int(self.dataset.y_val[index])

    def display(self, x: torch.Tensor) -> dict[str, Any]:
        """A preprocessed image ``(1, C, H, W)`` as the protocol's Image (preprocessing undone)."""
        return protocol.encode_image(self.dataset.display_images(x)[0])

    def check_class(self, target: int | None) -> int | None:
        if target is None:
            return None
        target = int(target)
        if not 0 <= target < self.dataset.num_classes:
            raise ValueError(f"class {target} is out of range: this dataset has classes 0..{self.dataset.num_classes - 1}")
        return target

    def filter_normalizer(self, layer: str) -> Any:
        """The layer's filter colour scale, kept across frames so filters brighten and fade truthfully."""
        return self._filter_normalizers.setdefault(layer, probes.FilterNormalizer())

    def param_layer(self, param_name: str) -> str:
        """'blocks.conv1.core.weight' -> 'conv1' (the document's layer name)."""
        return self.model.layer_of(param_name) or param_name

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """A value computed once per run (a view's constant inputs, e.g. the boundary's extent)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def remember_layer_stats(self, activations: list[Any], update_ratios: list[Any]) -> None:
        """The latest activation statistics and update ratios, for the doctor."""
        self._last_activation_stats = activations
        self._last_update_ratios = update_ratios

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

    def _hint_messages(self) -> list[dict[str, Any]]:
        """New doctor hints (each code is sent once per run)."""
        hints = self.doctor.diagnose(
            initial_loss=self.trainer.initial_loss,
            stop_reason=self.trainer.stop.reason if self.trainer.stop else None,
            activations=[
                probes.LayerActivity(
                    layer=s.layer, activation=s.act, dead_fraction=s.dead_fraction, saturated_fraction=s.saturated_fraction
                )
                for s in self._last_activation_stats
            ],
            update_ratios={r.name: r.ratio for r in self._last_update_ratios},
        )
        fresh = []
        for hint in hints:
            if hint.code not in self._hints_sent:
                self._hints_sent.add(hint.code)
                fresh.append(protocol.hint_message(hint))
        return fresh

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
            **self._transfer_fields(),
        }

    def _transfer_fields(self) -> dict[str, Any]:
        """Transfer learning in the summary: the frozen layers and where loaded weights came from (absent if none)."""
        train = self.experiment.train
        fields: dict[str, Any] = {}
        if train.freeze:
            fields["frozen"] = list(train.freeze)
        report = self.trainer.init_report  # None when the run started from a fresh initialization
        if report is not None:
            source = train.init_from
            fields["loaded_from"] = {"run_id": source.run_id if source else None,
                                     "upload_id": source.upload_id if source else None, "layers": list(report.loaded)}
        return fields

    def _finish(self, reason_message: str | None = None) -> list[dict[str, Any]]:
        trainer = self.trainer
        messages: list[dict[str, Any]] = []
        final_eval = self._last_eval
        if trainer.stop is None or trainer.stop.reason not in ("non_finite", "exploded"):
            final_eval = trainer.evaluate()
            self._last_eval = final_eval
            self._eval_count += 1
            messages += self.refresh()
        if self._pending:  # a stop between metric points: the held-back intervals go out first
            messages = self._metrics_now(self._pending[-1][0]) + messages
        stop = trainer.stop
        self.final = {
            "type": "final",
            "steps": trainer.step_count,
            "epochs": protocol.clean_float(trainer.epoch),
            "stop_reason": stop.reason if stop else "stopped",
            "message": reason_message or (stop.message if stop else "Stopped."),
            "train_loss": self._last_train_loss,
            "val_loss": protocol.clean_float(final_eval.loss) if final_eval else None,
            "val_acc": protocol.clean_float(final_eval.accuracy) if final_eval else None,
            "best_val_acc": protocol.clean_float(self._best_val_acc if final_eval is None else max(self._best_val_acc or 0.0, final_eval.accuracy)),
            "wall_s": round(time.perf_counter() - self._started_at, 3),
            "probe_share": round(self._probe_seconds / max(self._busy_seconds, 1e-9), 4),
        }
        messages += self._hint_messages()
        if stop and stop.reason in ("non_finite", "exploded"):
            state = "failed"
        elif stop and stop.reason == "stopped":
            state = "stopped"
        else:
            state = "finished"
        return messages + [self.final, protocol.status_message(state, message=self.final["message"])]


def _merge(intervals: list[tuple[StepResult, IntervalMetrics]], batch_size: int) -> IntervalMetrics | None:
    """One interval from several consecutive ones (means weighted by their steps; speed over their total time)."""
    if not intervals:
        return None
    if len(intervals) == 1:
        return intervals[0][1]
    steps = sum(m.steps for _, m in intervals)
    examples = steps * batch_size
    seconds = sum(m.steps * batch_size / m.examples_per_s for _, m in intervals if m.examples_per_s and math.isfinite(m.examples_per_s))
    return IntervalMetrics(
        train_loss=sum(m.train_loss * m.steps for _, m in intervals) / steps,
        train_acc=sum(m.train_acc * m.steps for _, m in intervals) / steps,
        examples_per_s=examples / seconds if seconds > 0 else math.inf,
        steps=steps,
    )


__all__ = ["Limits", "RunSession", "ExperimentError", "ON_DEMAND_PROBES"]
