"""The training doctor: plain-language hints from the evidence a run leaves behind.

Each rule looks at one symptom that the lectures teach to read off the charts
(loss curve, activation statistics, update/weight ratios) and, when it is
present, returns a ``Hint`` that names the symptom, the likely cause, what to
try, the numbers that triggered it and the chart that shows it. Every
threshold is a named constant below with the reason for its value.

``RunDoctor`` follows one run: ``observe`` takes each metrics point in O(1)
(bounded windows and running extremes, never a re-scan of the history) and
``diagnose`` returns the hints that hold now, at a cost that does not depend on
how long the run has been going. ``diagnose(DoctorEvidence)`` is the same
doctor over a finished record, for callers that hold the whole history.

The rules are written to agree with each other and with the lectures:
- a claim about a trend needs statistical evidence for it: "falling" means a
  fitted slope more than two standard errors below zero, "flat" means no such
  evidence, "no longer falling" means the recent fall is confidently small and
  not merely slow and steady;
- overfitting needs a network that fits its training set, and then a sustained
  rise of the validation loss or a growing train/validation accuracy gap over a
  stalled validation loss, past the evaluation-to-evaluation noise, never in the
  first evaluations of a run; underfitting needs a high training loss that has
  stopped falling with the validation loss beside it, so the two exclude each other;
- symptoms that come and go with noise must persist: an update ratio on two
  probed steps in a row, an underfitting plateau on five metric points in a row;
- codes that contradict each other are never reported together (``CONTRADICTS``).
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
Chart = Literal["loss", "activations", "gradients", "updates"]

# Every code the doctor can report, in the order its rules run (errors first).
HINT_CODES = (
    "lr_too_high", "initial_loss", "lr_too_low", "overfitting", "underfitting",
    "dead_relu", "saturated", "update_ratio_high", "update_ratio_low",
)

# Pairs that cannot both be true of one run. The code on the left wins; the one on the right is dropped.
# A run that blew up says nothing about capacity, fit or a too-small LR; dead or saturated units, measured
# directly, explain a loss that does not move better than "raise the LR" or "add units" (and dead ReLUs
# usually come from a too-high LR); a loss that never moved says nothing about capacity or memorization;
# a growing train/val gap is the opposite of "no gap, high loss".
CONTRADICTS: tuple[tuple[str, str], ...] = (
    ("lr_too_high", "lr_too_low"),
    ("lr_too_high", "underfitting"),
    ("lr_too_high", "overfitting"),
    ("lr_too_high", "update_ratio_low"),
    ("dead_relu", "lr_too_low"),
    ("dead_relu", "underfitting"),
    ("saturated", "lr_too_low"),
    ("saturated", "underfitting"),
    ("lr_too_low", "underfitting"),
    ("lr_too_low", "overfitting"),
    ("lr_too_low", "update_ratio_high"),
    ("overfitting", "underfitting"),
    ("update_ratio_high", "update_ratio_low"),
)

# --- Divergence ------------------------------------------------------------------
DIVERGED_STOP_REASONS = ("non_finite", "exploded")  # the trainer's StopInfo reasons that mean the loss blew up

# --- Trends of the training loss (one value per metrics point) ---------------------
TREND_T = 2.0               # a fitted slope counts as real at two standard errors (~95% for a handful of points)
LEVEL_POINTS = 3            # the loss "now" is the mean of the last 3 points: one minibatch interval is noisy

# --- Flat loss: the learning rate is too low ---------------------------------------
FLAT_WINDOW = 10            # metric intervals the loss must have stayed flat over (fewer is noise, not a trend)
FLAT_REL_CHANGE = 0.01      # a fitted change under 1% of the loss across the window is flat even when significant
                            # (a noise-free full-batch loss at LR 1e-7 falls measurably, but by nothing)
FLAT_MAX_PROGRESS = 0.10    # and the loss never got 10% below where it started: it never started (a converged run
                            # fell first, then went flat)
UPDATES_MOVING = 1e-4       # median update/weight ratio above which the weights do move, so a flat loss is not the LR's fault
UPDATES_LIVELY = 1e-3       # ... and the healthy rate (Karpathy's ~1e-3) above which a loss that never moved, for
                            # STALL_POINTS intervals, is the model's limit (underfitting); in between the doctor does
                            # not guess: a deep net crawling off its starting plateau (the AlexNet preset, 0.7-1.2e-4)
                            # is neither too small nor surely starved
STALL_POINTS = 30           # intervals a loss must sit near its start before that says anything about capacity: a
                            # 4-layer sigmoid net sits at ln 2 for ~25 intervals and then learns the spiral (95%);
                            # a linear model on XOR never leaves it

# --- Initial loss ------------------------------------------------------------------
INIT_LOSS_TOLERANCE = 0.5   # |initial - ln C| > 0.5 ln C: small random logits give ln C (uniform softmax); a default
                            # init lands within ~20% (one batch's noise included), so half of ln C away means large
                            # logits (init or unnormalized inputs) or a large penalty term

# --- Overfitting (one value per evaluation) -------------------------------------------
EVAL_WINDOW = 8             # evaluations kept for the noise and the trend of the validation figures
OVERFIT_MIN_EVALS = 5       # never in the first 4 evaluations: early validation figures swing with every step
OVERFIT_SUSTAIN = 3         # the last 3 evaluations must all agree: one noisy evaluation is not a trend
OVERFIT_VAL_RISE = 0.05     # their mean val loss > 5% above its best (the lowest mean of 3 consecutive evaluations: the
                            # minimum of single noisy evaluations is a lucky low that anything later looks "above"),
                            # each of them above it, rising across the newer evaluations, the training loss lower ...
OVERFIT_LOSS_GAP = 0.05     # ... and more than 5% of ln C (or of the starting loss) above the training loss: the
                            # spiral net at 99% whose val loss creeps 0.005 -> 0.008 on one confident mistake has a
                            # gap of 0.006, nothing to warn about; 100 digits memorized by a 2x256 net leave 0.28 ...
OVERFIT_ACC_MIN = 0.05      # ... and, where accuracies are known, training accuracy 5 points above validation: a val
                            # loss bump at 95% val / 97% train accuracy (the sigmoid stack of activations_compared at
                            # step 4,400, gone again by step 6,000) is not memorization
OVERFIT_ACC_GAP = 0.10      # train accuracy 10 points above validation accuracy (mean of the last 3 evaluations), ...
OVERFIT_GAP_GROWTH = 0.05   # ... grown by 5 points across the kept evaluations (a real slope, TREND_T), while the
                            # validation loss has stopped falling: a network whose validation loss still improves at
                            # every evaluation is not overfitting yet (early stopping would not stop it either), and a
                            # steady gap is the validation sample's luck, not memorization
OVERFIT_NOISE = 2.0         # and everything past twice the evaluation-to-evaluation noise of the series it is read off

# --- Underfitting ------------------------------------------------------------------
UNDERFIT_MIN_POINTS = FLAT_WINDOW + 1  # metric intervals before judging capacity: early losses are high in every run;
                            # as many as the flat-loss rule needs, so a loss that never moved is read as a too-low LR first
FIT_LOSS = 0.5              # a training loss under 0.5 ln C (cross-entropy) or 0.5 x its starting level (other losses)
                            # fits the training set: above it a network underfits (when it stops falling there), below
                            # it saturated units are decisions rather than a stall, and only below it can a network be
                            # memorizing (an early validation figure that lags, e.g. batch-norm statistics still
                            # settling at step 30, is not overfitting)
UNDERFIT_GAP = 0.10         # train and val loss within 10% of each other: not overfitting, just not fitting
PLATEAU_WINDOW = 5          # intervals the "no longer falling" test looks at (the newer half of the flat window)
UNDERFIT_PLATEAU = 0.05     # a fall under 5% across them, at the upper end of its confidence interval ...
PLATEAU_SLOWDOWN = 0.25     # ... and either no real fall, or one slowed to under 1/4 of the half-window before: a
                            # slow but steady fall (an XOR net crossing its plateau) is still falling ...
PLATEAU_HORIZON_FALL = 0.10 # ... where "real" is significant and worth 10% if it kept its pace for as many steps again
                            # as the run has taken: the 2-2-1 XOR net at step 1,500 (-1.2e-4 a step, 18%) escapes its
                            # saddle 400 steps later; a loss at -4e-5 a step after 300 steps (1%) has stopped
PLATEAU_PERSIST = 5         # metric points in a row the plateau must be seen on: minibatch noise makes flat stretches
                            # of a few intervals in every falling curve (MobileNet logged every 2 steps stalls for 10)

# --- Activations -------------------------------------------------------------------
DEAD_MAX = 0.5              # > 50% of a layer's ReLUs never fire on the probe batch: half the layer gets no gradient
SATURATED_MAX = 0.3         # > 30% of tanh/sigmoid outputs in the flat tails (slope < ~0.02): a third of the layer learns
                            # ~50x slower. Only while the network has not fit (loss above FIT_LOSS x reference): a
                            # trained classifier's hidden units sit in their tails on purpose (the spiral preset at 99%
                            # has 30-40% of its tanh outputs there, backprop_tiny's XOR net near half of its sigmoid
                            # ones), and then they are its decisions, not a vanishing gradient

# --- Update / weight ratio (per step, ||w_after - w_before|| / ||w_before||, median over weight tensors) ---
UPDATE_RATIO_HIGH = 1e-1    # each step rewrites > 10% of the weights: the run is jumping around, not descending.
                            # Karpathy's rule of thumb is ~1e-3 for SGD on large networks, but small playground
                            # networks with Adam at 1e-2 (every weight moves by ~lr) run at 1e-2..6e-2 in their first
                            # steps and train fine (measured), so the alarm sits above that
UPDATE_RATIO_LOW = 1e-5     # < 0.001% per step: ~100,000 steps to change the weights appreciably. Only while the
                            # network has not fit (FIT_LOSS): a net that has memorized its 30 examples, or crept to a
                            # low loss, takes tiny steps because its gradient is ~0, and a larger LR is no cure

# --- Probed steps (activation statistics and update ratios come from a few probed training steps) ---
PERSIST = 2                 # distinct probed steps in a row whose update ratio must agree before a hint: Adam's very
                            # first steps move every weight by ~lr (the spiral net measures 0.17 at step 1, 0.05 at
                            # step 10, 0.01 at step 100). A new mapping of ratios is a new probed step (two steps
                            # never move the weights by exactly the same amounts). Activation statistics are judged
                            # as they come: a dead layer gives the same figures at every probe, so "a new probe"
                            # cannot be told from "the same probe again" by its content
PROBED_WINDOW = 4           # probed steps kept


@dataclass
class MetricPoint:
    """One ``metrics`` message: means over the interval ending at ``step``."""

    step: int
    train_loss: float
    train_acc: float
    lr: float
    val_loss: float | None = None   # set on the points where an evaluation ran
    val_acc: float | None = None


@dataclass
class LayerActivity:
    """The latest activation statistics of one layer (from the activation probe).

    activation: the layer's activation kind ("relu", "tanh", "sigmoid", ...).
    dead_fraction: share of units that output 0 for every example of the probe
        batch (ReLU family; None for others).
    saturated_fraction: share of outputs in the flat tails, |tanh| > 0.99 or
        sigmoid outside [0.01, 0.99] (None for non-saturating activations).
    """

    layer: str
    activation: str
    dead_fraction: float | None = None
    saturated_fraction: float | None = None


@dataclass
class DoctorEvidence:
    """Everything the doctor looks at; each field is optional evidence except the class count.

    num_classes: C (2 for a one-logit binary network; its chance loss is ln 2 too).
    loss: the training loss kind ("cross_entropy", "mse", "hinge").
    initial_loss: the loss of the untrained network on the first batch (Trainer.initial_loss).
    history: the metrics points so far, oldest first.
    stop_reason: StopInfo.reason when the run ended ("finished", "non_finite", "exploded", ...), else None.
    activations: the latest activation statistics, one per layer with an activation.
    update_ratios: parameter name -> ||update|| / ||weight|| of the latest probed step (stats.update_ratios),
        taken as representative of the run (a record holds one such step). Names ending in "bias" are
        ignored when weights are present (a bias starts at or near 0, so its ratio is large and says nothing
        about the learning rate), and so are exact zeros (frozen parameters, or parameters that got no gradient).
    l2, l1: regularization strengths (TrainConfig.l2 / l1); their penalty is part of the loss.
    ignore: hint codes never reported (ProbeConfig.doctor_ignore).
    """

    num_classes: int
    loss: str = "cross_entropy"
    initial_loss: float | None = None
    history: list[MetricPoint] = field(default_factory=list)
    stop_reason: str | None = None
    activations: list[LayerActivity] = field(default_factory=list)
    update_ratios: dict[str, float] = field(default_factory=dict)
    l2: float = 0.0
    l1: float = 0.0
    ignore: list[str] = field(default_factory=list)


@dataclass
class Hint:
    """One diagnosis.

    code: stable identifier, one of ``HINT_CODES``.
    severity: "error" (the run is broken), "warning" (it is going wrong), "info".
    message: plain language: what is seen, the likely cause, what to try.
    evidence: the numbers behind it: always ``series`` (what was measured) and a
        finite ``value``, then ``threshold``, ``layer``, ``step``, ... where they
        apply; most telling first (the page shows the first 8), never a None.
    chart: the chart that shows the symptom.
    """

    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any]
    chart: Chart


def diagnose(evidence: DoctorEvidence) -> list[Hint]:
    """Run every rule on ``evidence``: a ``RunDoctor`` fed its history; hints in rule order, errors first."""
    doctor = RunDoctor(num_classes=evidence.num_classes, loss=evidence.loss, l1=evidence.l1, l2=evidence.l2,
                       ignore=evidence.ignore, persistence=False)
    for point in evidence.history:
        doctor.observe(point)
    return doctor.diagnose(initial_loss=evidence.initial_loss, stop_reason=evidence.stop_reason,
                           activations=evidence.activations, update_ratios=evidence.update_ratios)


# ---------------------------------------------------------------------------
# The running doctor
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Evaluation:
    """An evaluation, with the training figures of the metrics point it came with."""

    step: int
    val_loss: float
    val_acc: float | None
    train_loss: float
    train_acc: float | None


@dataclass(frozen=True)
class _ProbedStep:
    """The update/weight ratios of one probed step: their median and the extreme weight tensors."""

    median: float
    highest: tuple[str, float]
    lowest: tuple[str, float]


@dataclass(frozen=True)
class _Trend:
    """A least-squares line through (step, loss) points, as a relative fall across them.

    fall: (fitted first - fitted last) / mean level; > 0 when the loss falls.
    se: the standard error of ``fall`` (0 for points exactly on a line, inf for fewer than 3 points).
    """

    fall: float
    se: float

    @property
    def t(self) -> float:
        """fall / se: > TREND_T is a real fall, < -TREND_T a real rise."""
        if self.se == 0.0:
            return 0.0 if self.fall == 0.0 else math.copysign(math.inf, self.fall)
        return self.fall / self.se

    @property
    def falling(self) -> bool:
        return self.t > TREND_T

    @property
    def rising(self) -> bool:
        return self.t < -TREND_T


class RunDoctor:
    """The doctor of one run: O(1) per metrics point, diagnosis cost independent of the run's length.

    Retained state, all bounded: the last ``FLAT_WINDOW + 1`` finite training losses, the last
    ``EVAL_WINDOW`` evaluations, the last ``PROBED_WINDOW`` probed steps' update ratios, and
    running figures (first loss, lowest smoothed loss, peak loss, best evaluation, the first
    non-finite point). ``observe`` and ``diagnose`` read a few dozen stored entries at most.

    Args:
        num_classes: C (2 for a one-logit binary network).
        loss: the training loss kind ("cross_entropy", "mse", "hinge"); ln C is the chance
            level of cross-entropy only, other losses are judged against their starting level.
        l1, l2: regularization strengths (their penalty is part of the loss).
        ignore: hint codes never reported (``ProbeConfig.doctor_ignore``, for presets that
            provoke a symptom on purpose); they still silence the codes they contradict.
        persistence: symptoms that come and go with noise must persist: the update ratio out of
            range on PERSIST distinct probed steps in a row (new ``update_ratios`` mappings), an
            underfitting plateau on PLATEAU_PERSIST metric points in a row. False judges the latest
            evidence alone (``diagnose(DoctorEvidence)``: a record holds one probe and one moment).

    Attributes:
        work: stored entries the latest ``observe`` or ``diagnose`` call read; bounded by the
            window sizes whatever the run's length (what the cost tests count).
    """

    def __init__(self, *, num_classes: int, loss: str, l1: float = 0.0, l2: float = 0.0,
                 ignore: Iterable[str] = (), persistence: bool = True) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (2 for a one-logit binary network), got {num_classes!r}")
        ignore = list(ignore)
        unknown = [code for code in ignore if code not in HINT_CODES]
        if unknown:
            raise ValueError(f"doctor_ignore names {', '.join(map(repr, unknown))}, which is not a hint code. "
                             f"Fix: use some of {', '.join(HINT_CODES)}")
        self.num_classes = num_classes
        self.loss = loss
        self.l1, self.l2 = float(l1), float(l2)
        self.ignore = frozenset(ignore)
        self._ratio_persist = PERSIST if persistence else 1
        self._plateau_persist = PLATEAU_PERSIST if persistence else 1
        self.work = 0
        # metric points
        self.points = 0                                   # points observed
        self._last: MetricPoint | None = None             # the latest point
        self._recent: deque[tuple[int, float]] = deque(maxlen=FLAT_WINDOW + 1)  # (step, finite train loss)
        self._first_loss: float | None = None             # the first finite interval loss
        self._best_level = math.inf                       # lowest LEVEL_POINTS-mean of the training loss so far
        self._peak: tuple[int, float] | None = None       # (step, highest finite train loss)
        self._nonfinite: MetricPoint | None = None        # the first point whose train loss is NaN/inf
        # evaluations
        self.evaluations = 0
        self._evals: deque[_Evaluation] = deque(maxlen=EVAL_WINDOW)
        # (evaluation number, mean val loss, mean train loss) of the lowest OVERFIT_SUSTAIN-evaluation mean val loss
        self._best_val: tuple[int, float, float] | None = None
        # probed steps: the update ratios of each distinct probed step that moved any weight
        self._probed: deque[_ProbedStep] = deque(maxlen=PROBED_WINDOW)
        self._ratio_snapshot: dict[str, float] | None = None
        self._weights_frozen = False                      # the latest probed step moved no weight at all (exact zeros)
        # the underfitting plateau: how many metric points in a row it was seen on, and the last one
        self._plateau_streak = 0
        self._plateau_point = -1

    # -- feeding -------------------------------------------------------------------

    def observe(self, point: MetricPoint) -> None:
        """Take one metrics point (val_loss/val_acc set when an evaluation ran); O(1)."""
        self.work = 0
        if not isinstance(point.train_loss, numbers.Real) or isinstance(point.train_loss, bool):
            raise ValueError(f"MetricPoint.train_loss must be a number, got {point.train_loss!r} at step {point.step}; "
                             "an evaluation without a training interval belongs on the next metrics point")
        if self._last is not None and point.step < self._last.step:
            raise ValueError(f"metrics points must come in step order: step {point.step} after step {self._last.step}")
        self.points += 1
        self._last = point
        loss = float(point.train_loss)
        if not math.isfinite(loss):
            if self._nonfinite is None:
                self._nonfinite = point
            return
        if self._first_loss is None:
            self._first_loss = loss
        if self._peak is None or loss > self._peak[1]:
            self._peak = (point.step, loss)
        self._recent.append((point.step, loss))
        if len(self._recent) >= LEVEL_POINTS:
            self._best_level = min(self._best_level, self._level())
        if point.val_loss is not None and math.isfinite(point.val_loss):
            self._observe_evaluation(point, loss)

    def _observe_evaluation(self, point: MetricPoint, train_loss: float) -> None:
        ev = _Evaluation(point.step, float(point.val_loss), _finite_or_none(point.val_acc), train_loss,
                         _finite_or_none(point.train_acc))
        self.evaluations += 1
        self._evals.append(ev)
        if len(self._evals) >= OVERFIT_SUSTAIN:
            self.work += OVERFIT_SUSTAIN
            last = [self._evals[i] for i in range(-OVERFIT_SUSTAIN, 0)]
            val = statistics.fmean(e.val_loss for e in last)
            if self._best_val is None or val < self._best_val[1]:
                self._best_val = (self.evaluations, val, statistics.fmean(e.train_loss for e in last))

    @property
    def retained(self) -> int:
        """Entries held in the bounded windows (metric points, evaluations, probed steps)."""
        return len(self._recent) + len(self._evals) + len(self._probed)

    # -- diagnosis -----------------------------------------------------------------

    def diagnose(self, *, initial_loss: float | None, stop_reason: str | None,
                 activations: Sequence[LayerActivity] = (), update_ratios: Mapping[str, float] | None = None) -> list[Hint]:
        """The hints that hold now, in rule order (errors first), contradictions and ignored codes removed.

        Args:
            initial_loss: the first step's loss (Trainer.initial_loss), None before it.
            stop_reason: StopInfo.reason once the run ended, else None.
            activations: the latest activation statistics, one per layer with an activation.
            update_ratios: parameter name -> update/weight ratio of the latest probed step (the same
                mapping may come again until the next probe; only a new one counts as a new step).
        """
        self.work = 0
        if initial_loss is not None and not math.isfinite(initial_loss):
            initial = None
            diverged_at_start = True
        else:
            initial, diverged_at_start = initial_loss, False
        self._take_update_ratios(update_ratios or {})
        hints: list[Hint] = []
        diverged = self._lr_too_high(stop_reason, diverged_at_start, initial)
        if diverged is not None:
            hints.append(diverged)
        hints += self._initial_loss(initial)
        if diverged is None:
            hints += self._lr_too_low(initial)
            hints += self._overfitting(initial)
            hints += self._underfitting(initial)
        hints += self._dead_relu(activations)
        hints += self._saturated(activations, initial)
        hints += self._update_ratio(initial)
        found = {h.code for h in hints}
        dropped = {loser for winner, loser in CONTRADICTS if winner in found}
        return [h for h in hints if h.code not in dropped and h.code not in self.ignore]

    # -- running figures -------------------------------------------------------------

    def _window(self, n: int | None = None) -> list[tuple[int, float]]:
        """The last ``n`` (default: all kept) finite (step, train loss) points, oldest first; counts them as work."""
        k = len(self._recent) if n is None else min(n, len(self._recent))
        self.work += k
        return [self._recent[i] for i in range(-k, 0)]  # a deque reads its ends in O(1)

    def _level(self) -> float:
        """The training loss now: the mean of the last LEVEL_POINTS finite points."""
        return statistics.fmean(loss for _, loss in self._window(LEVEL_POINTS))

    def _start_level(self, initial: float | None) -> float | None:
        """Where the loss started: the larger of the first step's loss and the first interval's mean
        (one first batch can be lucky; a fast learner's first interval is already lower)."""
        candidates = [v for v in (initial, self._first_loss) if v is not None]
        return max(candidates) if candidates else None

    def _reference(self, initial: float | None) -> tuple[float, str] | None:
        """The loss of a network that has learned nothing: ln C for cross-entropy, else the start level."""
        if self.loss == "cross_entropy" and self.num_classes >= 2:
            return math.log(self.num_classes), f"ln({self.num_classes})"
        start = self._start_level(initial)
        return (start, "the starting loss") if start is not None and start > 0 else None

    def _fits(self, initial: float | None) -> bool:
        """The training loss now is under FIT_LOSS x the reference (False when either is unknown)."""
        reference = self._reference(initial)
        return bool(self._recent) and reference is not None and self._level() <= FIT_LOSS * reference[0]

    def _never_moved(self, initial: float | None) -> bool:
        """The loss never got FLAT_MAX_PROGRESS below where it started (not now, not at its best)."""
        start = self._start_level(initial)
        if start is None or start <= 0 or len(self._recent) < LEVEL_POINTS:
            return False
        progress = max(start - self._level(), start - self._best_level) / start
        return progress < FLAT_MAX_PROGRESS

    def _take_update_ratios(self, ratios: Mapping[str, float]) -> None:
        """Keep a new probed step's weight ratios (the same mapping again is the same step).

        A step that moved no weight (a perceptron that made no mistake, everything frozen) says
        nothing about the step size and is left out.
        """
        if not ratios or ratios == self._ratio_snapshot:
            return
        self._ratio_snapshot = dict(ratios)
        weights = _weight_ratios(ratios)
        self._weights_frozen = not weights and any(
            not name.endswith("bias") and r == 0.0 for name, r in ratios.items())
        if weights:
            self._probed.append(_ProbedStep(statistics.median(weights.values()),
                                            max(weights.items(), key=lambda item: item[1]),
                                            min(weights.items(), key=lambda item: item[1])))

    def _latest_ratio(self) -> float | None:
        return self._probed[-1].median if self._probed else None

    # -- rules: each returns the hints it finds (an empty list when the symptom is absent) --

    def _lr_too_high(self, stop_reason: str | None, diverged_at_start: bool, initial: float | None) -> Hint | None:
        bad = self._nonfinite
        if stop_reason not in DIVERGED_STOP_REASONS and bad is None and not diverged_at_start:
            return None
        last = self._last
        step = bad.step if bad is not None else (last.step if last is not None else None)
        lr = bad.lr if bad is not None else (last.lr if last is not None else None)
        exploded = stop_reason == "exploded" and bad is None
        what = "exploded" if exploded else "became infinite or NaN"
        evidence: dict[str, Any]
        if self._peak is not None:
            # The highest finite loss: what the loss chart shows just before the blow-up.
            evidence = {"series": "train_loss", "value": self._peak[1], "step": step, "peak_step": self._peak[0]}
        elif lr is not None:
            evidence = {"series": "lr", "value": lr, "step": step}  # NaN from the first interval: no finite loss to show
        else:
            evidence = {"series": "train_loss", "value": None}     # only a stop reason, no point observed: nothing measured
        evidence.update(lr=lr, stop_reason=stop_reason or "non_finite", initial_loss=initial)
        return Hint(
            code="lr_too_high",
            severity="error",
            message=(
                f"The loss {what}{_at(step)}: the steps overshoot and the weights blow up. "
                f"Lower the learning rate{_lr_text(lr)} by 10x; gradient clipping or batch normalization also help."
            ),
            evidence=_clean(evidence),
            chart="loss",
        )

    def _initial_loss(self, initial: float | None) -> list[Hint]:
        if self.loss != "cross_entropy" or initial is None or self.num_classes < 2:
            return []
        expected = math.log(self.num_classes)
        if abs(initial - expected) <= INIT_LOSS_TOLERANCE * expected:
            return []
        reg = self.l2 > 0 or self.l1 > 0
        if initial > expected:
            cause = ("The network starts confidently wrong: its initial weights (or inputs) are too large, "
                     "so the logits are far from 0. Use a scaled init (Xavier/He) and normalize the inputs.")
        else:
            cause = "The network starts more confident than chance, which an untrained network should not be; check the init."
        penalty = (f" Regularization adds its penalty to the loss (l2={self.l2:g}, l1={self.l1:g}) and raises it; "
                   "set it to 0 to check the init alone." if reg else
                   " (Regularization would add its penalty and raise it; here there is none.)")
        return [Hint(
            code="initial_loss",
            severity="warning",
            message=(f"The loss started at {initial:.3g}, but with {self.num_classes} classes and small random weights "
                     f"it should start near ln({self.num_classes}) = {expected:.3g}. {cause}{penalty}"),
            evidence=_clean({"series": "train_loss", "value": initial, "expected": expected,
                             "threshold": INIT_LOSS_TOLERANCE * expected, "l2": self.l2, "l1": self.l1}),
            chart="loss",
        )]

    def _lr_too_low(self, initial: float | None) -> list[Hint]:
        if len(self._recent) < FLAT_WINDOW + 1:
            return []
        start = self._start_level(initial)
        if start is None or start <= 0:
            return []  # a loss that starts at 0 has nothing to descend
        window = self._window()
        trend = _trend(window)
        if trend.falling and trend.fall >= FLAT_REL_CHANGE:
            return []  # never "too low" on a loss that is really falling
        if trend.rising:
            return []  # a rising loss is not a too-small step
        if not self._never_moved(initial):
            return []  # it did get somewhere: converged, or fell and came back (not a too-small step either)
        progress = (start - self._level()) / start
        ratio = self._latest_ratio()
        if ratio is not None and ratio >= UPDATES_MOVING:
            return []  # the weights do move, so the optimizer is not starved; the capacity rule speaks instead
        if ratio is None and self._weights_frozen:
            return []  # no weight moved at all (zero init's symmetry, dead units): a larger step would not move them
        lr = self._last.lr if self._last is not None else None
        change = abs(trend.fall)
        return [Hint(
            code="lr_too_low",
            severity="warning",
            message=(
                f"The loss has barely moved: {change:.1%} over the last {FLAT_WINDOW} intervals and "
                f"{max(progress, 0.0):.1%} below where it started. The learning rate{_lr_text(lr)} is probably "
                "too low; raise it 10x at a time. If that does not help, look for dead units or vanishing gradients."
            ),
            evidence=_clean({"series": "train_loss", "value": change, "threshold": FLAT_REL_CHANGE,
                             "progress": progress, "lr": lr, "update_ratio": ratio,
                             "from_step": window[0][0], "to_step": window[-1][0]}),
            chart="loss",
        )]

    def _overfitting(self, initial: float | None) -> list[Hint]:
        if self.evaluations < OVERFIT_MIN_EVALS or self._best_val is None:
            return []
        reference = self._reference(initial)
        scale = reference[0] if reference is not None else 0.0
        if reference is not None and self._recent and not self._fits(initial):
            return []  # it does not fit the training set yet, so it cannot be memorizing it
        evals = list(self._evals)
        self.work += len(evals)
        recent = evals[-OVERFIT_SUSTAIN:]
        best_index, best_val, best_train = self._best_val
        last = evals[-1]
        # (a) the validation loss turned up: the last evaluations above the best, rising across the newer ones,
        # the training loss lower than it was then, and a material gap between them (loss and accuracy)
        newer = evals[-max(OVERFIT_SUSTAIN, len(evals) // 2):]
        after_best = self.evaluations - best_index >= OVERFIT_SUSTAIN
        rise_floor = max(OVERFIT_VAL_RISE * abs(best_val), OVERFIT_NOISE * _noise([e.val_loss for e in evals]))
        val_now = statistics.fmean(e.val_loss for e in recent)
        train_now = statistics.fmean(e.train_loss for e in recent)
        rise = val_now - best_val
        with_acc = [e for e in evals if e.train_acc is not None and e.val_acc is not None]
        acc_gap = (statistics.fmean(e.train_acc - e.val_acc for e in with_acc[-OVERFIT_SUSTAIN:])  # type: ignore[operator]
                   if len(with_acc) >= OVERFIT_SUSTAIN else None)
        rising = (after_best and rise > rise_floor and all(e.val_loss > best_val for e in recent)
                  and _trend([(e.step, e.val_loss) for e in newer]).rising and train_now < best_train
                  and val_now - train_now > OVERFIT_LOSS_GAP * scale and (acc_gap is None or acc_gap > OVERFIT_ACC_MIN))
        if rising:
            return [self._overfit_hint(
                f"the validation loss rose to {last.val_loss:.3g} (best {best_val:.3g}) while the training loss "
                "kept falling",
                {"series": "val_loss", "value": last.val_loss, "best_val_loss": best_val, "rise": rise,
                 "threshold": rise_floor, "train_loss": last.train_loss, "acc_gap": acc_gap, "step": last.step})]
        # (b) the accuracy gap grows while the validation loss no longer falls, past the noise of both series
        if len(with_acc) < OVERFIT_MIN_EVALS:
            return []
        gaps = [e.train_acc - e.val_acc for e in with_acc]
        gap_now = statistics.fmean(gaps[-OVERFIT_SUSTAIN:])
        noise = OVERFIT_NOISE * _noise(gaps)
        slope, se = _fit([float(e.step) for e in with_acc], gaps)
        growth = slope * (with_acc[-1].step - with_acc[0].step)
        growing = growth > max(OVERFIT_GAP_GROWTH, noise) and (se == 0.0 or slope / se > TREND_T)
        val_stalled = not _trend([(e.step, e.val_loss) for e in newer]).falling
        # The losses must part too (the complement of underfitting's "close"): an accuracy gap over a validation
        # loss within 10% of the training loss is a few borderline examples flipping, not memorization.
        apart = val_now - train_now > UNDERFIT_GAP * max(train_now, 1e-12)
        if growing and val_stalled and apart and gap_now > max(OVERFIT_ACC_GAP, noise):
            return [self._overfit_hint(
                f"training accuracy is {gaps[-1]:.0%} above validation accuracy, the gap grew by {growth:.0%} over "
                "the last evaluations and the validation loss stopped falling",
                {"series": "val_acc", "value": gaps[-1], "gap_mean": gap_now, "threshold": OVERFIT_ACC_GAP,
                 "growth": growth, "val_acc": last.val_acc, "train_acc": last.train_acc, "step": last.step})]
        return []

    @staticmethod
    def _overfit_hint(seen: str, evidence: dict[str, Any]) -> Hint:
        return Hint(
            code="overfitting",
            severity="warning",
            message=(f"Overfitting: {seen}. The network memorizes the training set. Add regularization (L2, dropout), "
                     "data augmentation or more data, or stop earlier (early stopping)."),
            evidence=_clean(evidence),
            chart="loss",
        )

    def _underfitting(self, initial: float | None) -> list[Hint]:
        found = self._underfit_now(initial)
        # Count the metric points in a row the plateau held on (diagnose may run more than once per point).
        if found is None:
            self._plateau_streak, self._plateau_point = 0, -1
            return []
        if self._plateau_point != self.points:
            self._plateau_streak = self._plateau_streak + 1 if self._plateau_point == self.points - 1 else 1
            self._plateau_point = self.points
        return [found] if self._plateau_streak >= self._plateau_persist else []

    def _underfit_now(self, initial: float | None) -> Hint | None:
        """The underfitting hint if its conditions hold at this point, else None."""
        if len(self._recent) < UNDERFIT_MIN_POINTS:
            return None
        reference = self._reference(initial)
        if reference is None:
            return None
        ref, ref_name = reference
        level = self._level()
        if level <= FIT_LOSS * ref:
            return None
        if self._never_moved(initial):
            ratio = self._latest_ratio()
            if ratio is None or ratio < UPDATES_LIVELY:
                return None  # a loss that never left its start, with weights that barely move: the LR rule's case
            if self.points < STALL_POINTS:
                return None  # not started yet, or unable to start: too early to tell
        # "No longer falling": the newer half-window's fall is confidently small, and it is not a slow steady
        # fall (a real fall that kept the pace of the half-window before it).
        window = self._window()
        newer, older = _trend(window[-(PLATEAU_WINDOW + 1):]), _trend(window[:PLATEAU_WINDOW + 1])
        if newer.fall + TREND_T * newer.se >= UNDERFIT_PLATEAU or newer.rising:
            return None
        span = window[-1][0] - window[-(PLATEAU_WINDOW + 1)][0]
        pace = newer.fall * window[-1][0] / span if span > 0 else 0.0  # the fall over as many steps as the run's so far
        still_falling = newer.falling and pace >= PLATEAU_HORIZON_FALL
        if still_falling and not (older.falling and newer.fall < PLATEAU_SLOWDOWN * older.fall):
            return None
        last_eval = self._evals[-1] if self._evals else None
        val = last_eval.val_loss if last_eval is not None else None
        if val is not None and abs(val - level) > UNDERFIT_GAP * max(level, 1e-12):
            return None  # a gap between them: not "too small for the task" (overfitting's side, or noise)
        both = "training and validation losses are both" if val is not None else "training loss is"
        return Hint(
            code="underfitting",
            severity="warning",
            message=(f"Underfitting: the {both} high ({level:.3g}, more than half of {ref_name}) and no longer "
                     "falling. The network is too small or too constrained for the task: add units or layers, "
                     "lower the regularization, or train longer with a higher learning rate."),
            evidence=_clean({"series": "train_loss", "value": level, "threshold": FIT_LOSS * ref,
                             "val_loss": val, "plateau_change": newer.fall, "step": window[-1][0]}),
            chart="loss",
        )

    def _dead_relu(self, activations: Sequence[LayerActivity]) -> list[Hint]:
        return [
            Hint(
                code="dead_relu",
                severity="warning",
                message=(f"{a.dead_fraction:.0%} of the ReLUs in layer '{a.layer}' are dead: they output 0 for every "
                         "example, so no gradient flows through them and they never recover. Usual causes: a too-high "
                         "learning rate or negative bias init. Use He init, a small positive bias, a lower LR or leaky ReLU."),
                evidence=_clean({"series": "dead_fraction", "value": a.dead_fraction, "threshold": DEAD_MAX,
                                 "layer": a.layer, "activation": a.activation}),
                chart="activations",
            )
            for a in activations
            if a.dead_fraction is not None and a.dead_fraction > DEAD_MAX
        ]

    def _saturated(self, activations: Sequence[LayerActivity], initial: float | None) -> list[Hint]:
        saturated = [a for a in activations if a.saturated_fraction is not None and a.saturated_fraction > SATURATED_MAX]
        if not saturated:
            return []
        if self._fits(initial):
            return []  # the network fits: its saturated units are decisions it has made, not a vanishing gradient
        return [
            Hint(
                code="saturated",
                severity="warning",
                message=(f"{a.saturated_fraction:.0%} of the {a.activation} outputs in layer '{a.layer}' are saturated "
                         "(stuck near their limits, where the slope is almost 0), so gradients vanish there while "
                         "the loss is still high. The weights or inputs are too large: use Xavier init, normalize "
                         "the inputs, or try batch normalization or ReLU."),
                evidence=_clean({"series": "saturated_fraction", "value": a.saturated_fraction,
                                 "threshold": SATURATED_MAX, "layer": a.layer, "activation": a.activation}),
                chart="activations",
            )
            for a in saturated
        ]

    def _update_ratio(self, initial: float | None) -> list[Hint]:
        kept = list(self._probed)[-self._ratio_persist:]
        self.work += len(kept)
        if len(kept) < self._ratio_persist:
            return []
        if all(p.median > UPDATE_RATIO_HIGH for p in kept):
            high = True
        elif all(p.median < UPDATE_RATIO_LOW for p in kept) and not self._fits(initial):
            high = False
        else:
            return []
        ratio = kept[-1].median
        worst = kept[-1].highest if high else kept[-1].lowest
        advice = ("Each step changes the weights by more than a tenth: lower the learning rate."
                  if high else "The weights hardly change from step to step: raise the learning rate.")
        steps = f" on {len(kept)} probed steps in a row" if len(kept) > 1 else ""
        return [Hint(
            code="update_ratio_high" if high else "update_ratio_low",
            severity="warning",
            message=(f"The update/weight ratio is {ratio:.1e} (median over weights{steps}); 1e-4 to 1e-2 is typical. "
                     f"{advice}"),
            evidence=_clean({"series": "update_ratio", "value": ratio,
                             "threshold": UPDATE_RATIO_HIGH if high else UPDATE_RATIO_LOW,
                             "layer": worst[0], "layer_value": worst[1], "probed_steps": len(kept)}),
            chart="updates",
        )]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ys on xs and its standard error (0 on an exact line; inf under 3 points)."""
    n = len(xs)
    if n < 3:
        return 0.0, math.inf
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0.0:
        return 0.0, math.inf
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx
    ssr = sum((y - y_mean - slope * (x - x_mean)) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(ssr / (n - 2) / sxx)


def _trend(points: Sequence[tuple[float, float]]) -> _Trend:
    """The line through ``points`` ((step, value), oldest first) as a relative fall across them."""
    if len(points) < 3:
        return _Trend(0.0, math.inf)
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    slope, se = _fit(xs, ys)
    scale = (xs[-1] - xs[0]) / max(abs(statistics.fmean(ys)), 1e-12)
    return _Trend(-slope * scale, se * scale)


def _noise(values: Sequence[float]) -> float:
    """Standard deviation of the noise around a smooth trend, from second differences.

    For white noise of deviation s, x[i+1] - 2 x[i] + x[i-1] has deviation sqrt(6) s; a straight
    or gently bending trend adds almost nothing, so a steady rise is not mistaken for noise.
    """
    second = [values[i + 1] - 2 * values[i] + values[i - 1] for i in range(1, len(values) - 1)]
    if len(second) < 2:
        return 0.0
    return math.sqrt(statistics.fmean(d * d for d in second) / 6.0)


def _weight_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """The update ratios that speak about the learning rate.

    Left out: non-finite ones; exact zeros (a frozen parameter, or one that got no
    gradient at all, e.g. behind dead units: not a learning-rate question); and
    biases when there are weights (a bias starting at 0 has a huge ratio).
    """
    finite = {n: r for n, r in ratios.items() if math.isfinite(r)}
    weights = {n: r for n, r in finite.items() if not n.endswith("bias")}
    return {n: r for n, r in (weights or finite).items() if r != 0.0}


def _clean(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence without empty entries (the page shows "–" for a None); ``series`` and ``value`` always stay."""
    return {k: v for k, v in evidence.items() if v is not None or k in ("series", "value")}


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _at(step: int | None) -> str:
    return "" if step is None else f" at step {step}"


def _lr_text(lr: float | None) -> str:
    return "" if lr is None else f" ({lr:g})"
