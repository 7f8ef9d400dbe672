"""The training doctor: plain-language hints from the evidence a run leaves behind.

Each rule looks at one symptom that the lectures teach to read off the charts
(loss curve, activation statistics, update/weight ratios) and, when it is
present, returns a ``Hint`` that names the symptom, the likely cause, what to
try, the numbers that triggered it and the chart that shows it. Every
threshold is a named constant below with the reason for its value.

The doctor is a pure function of a ``DoctorEvidence`` record; collecting the
evidence (metrics history, activation and update statistics) is the runner's job.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Severity = Literal["info", "warning", "error"]
Chart = Literal["loss", "activations", "gradients", "updates"]

# --- Divergence ------------------------------------------------------------------
DIVERGED_STOP_REASONS = ("non_finite", "exploded")  # the trainer's StopInfo reasons that mean the loss blew up

# --- Flat loss: the learning rate is too low ---------------------------------------
FLAT_WINDOW = 10            # metric intervals the loss must have stayed flat over (fewer is noise, not a trend)
FLAT_REL_CHANGE = 0.01      # < 1% change between the window's first and second half: the optimizer is not getting anywhere
FLAT_NOISE = 2.0            # ...or a change within 2 standard errors of the interval-to-interval jitter (minibatch noise)
FLAT_MAX_PROGRESS = 0.10    # and < 10% below the initial loss overall: it never started (a converged run fell first)
UPDATES_MOVING = 1e-4       # median update/weight ratio above which the weights do move, so a flat loss is not the LR's fault

# --- Initial loss ------------------------------------------------------------------
INIT_LOSS_TOLERANCE = 0.5   # |initial - ln C| > 0.5 ln C: small random logits give ln C (uniform softmax); a default
                            # init lands within ~20% (one batch's noise included), so half of ln C away means large
                            # logits (init or unnormalized inputs) or a large penalty term

# --- Overfitting -------------------------------------------------------------------
OVERFIT_WINDOW = 4          # evaluations compared (the latest and the 3 before): one noisy evaluation is not a trend
OVERFIT_VAL_RISE = 0.05     # val loss > 5% above its best while train loss fell: past evaluation noise
OVERFIT_ACC_GAP = 0.10      # train accuracy 10 points above validation, and growing: the model memorizes

# --- Underfitting ------------------------------------------------------------------
UNDERFIT_MIN_POINTS = FLAT_WINDOW + 1  # metric intervals before judging capacity: early losses are high in every run;
                            # as many as the flat-loss rule needs, so a loss that never moved is read as a too-low LR first
UNDERFIT_LOSS = 0.5         # train loss > 0.5 ln C (cross-entropy) or > 0.5 x initial loss (other losses): still far from fit
UNDERFIT_GAP = 0.10         # train and val loss within 10% of each other: not overfitting, just not fitting
UNDERFIT_PLATEAU = 0.05     # < 5% change over the last PLATEAU_WINDOW intervals: more steps will not fix it
PLATEAU_WINDOW = 5

# --- Activations -------------------------------------------------------------------
DEAD_MAX = 0.5              # > 50% of a layer's ReLUs never fire on the probe batch: half the layer gets no gradient
SATURATED_MAX = 0.3         # > 30% of tanh/sigmoid outputs in the flat tails (slope < ~0.02): a third of the layer learns
                            # ~50x slower; healthy layers sit well under 10%

# --- Update / weight ratio (per step, ||w_after - w_before|| / ||w_before||, median over weight tensors) ---
UPDATE_RATIO_HIGH = 1e-1    # each step rewrites > 10% of the weights: the run is jumping around, not descending.
                            # Karpathy's rule of thumb is ~1e-3 for SGD on large networks, but small playground
                            # networks with Adam at 1e-2 (every weight moves by ~lr) run at 1e-2..6e-2 in their first
                            # steps and train fine (measured), so the alarm sits above that
UPDATE_RATIO_LOW = 1e-5     # < 0.001% per step: ~100,000 steps to change the weights appreciably


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
    update_ratios: parameter name -> ||update|| / ||weight|| of the latest step (stats.update_ratios).
        Names ending in "bias" are ignored when weights are present (a bias starts at or near 0,
        so its ratio is large and says nothing about the learning rate), and so are exact zeros
        (frozen parameters, or parameters that got no gradient).
    l2, l1: regularization strengths (TrainConfig.l2 / l1); their penalty is part of the loss.
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


@dataclass
class Hint:
    """One diagnosis.

    code: stable identifier ("lr_too_high", "lr_too_low", "initial_loss", "overfitting",
        "underfitting", "dead_relu", "saturated", "update_ratio_high", "update_ratio_low").
    severity: "error" (the run is broken), "warning" (it is going wrong), "info".
    message: plain language: what is seen, the likely cause, what to try.
    evidence: the numbers behind it; always ``series`` (what was measured) and
        ``value``, plus ``threshold``, ``layer``, ``step``, ... where they apply.
    chart: the chart that shows the symptom.
    """

    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any]
    chart: Chart


def diagnose(evidence: DoctorEvidence) -> list[Hint]:
    """Run every rule on ``evidence``; hints come in rule order, errors first.

    A diverged run gets only the divergence hint plus the activation and
    update rules (its loss curve says nothing else); a too-low learning rate
    silences "underfitting", because a loss that never moved says nothing
    about capacity.
    """
    diverged = _lr_too_high(evidence)
    if diverged is not None:
        hints = [diverged]
        if evidence.initial_loss is not None and math.isfinite(evidence.initial_loss):
            hints += _initial_loss(evidence)
        return hints + _dead_relu(evidence) + _saturated(evidence) + _update_ratio(evidence)
    hints: list[Hint] = []
    for rule in _RULES:
        hints += rule(evidence)
    if any(h.code == "lr_too_low" for h in hints):
        hints = [h for h in hints if h.code != "underfitting"]
    return hints


# ---------------------------------------------------------------------------
# Rules: evidence -> hints (an empty list when the symptom is absent)
# ---------------------------------------------------------------------------


def _lr_too_high(e: DoctorEvidence) -> Hint | None:
    bad = next((p for p in e.history if not math.isfinite(p.train_loss)), None)
    if e.stop_reason not in DIVERGED_STOP_REASONS and bad is None:
        return None
    step = bad.step if bad is not None else (e.history[-1].step if e.history else None)
    lr = bad.lr if bad is not None else (e.history[-1].lr if e.history else None)
    what = "became infinite or NaN" if e.stop_reason != "exploded" or bad is not None else "exploded"
    return Hint(
        code="lr_too_high",
        severity="error",
        message=(
            f"The loss {what}{_at(step)}: the steps overshoot and the weights blow up. "
            f"Lower the learning rate{_lr_text(lr)} by 10x; gradient clipping or batch normalization also help."
        ),
        evidence={"series": "train_loss", "value": None if bad is None else bad.train_loss, "step": step,
                  "lr": lr, "stop_reason": e.stop_reason},
        chart="loss",
    )


def _lr_too_low(e: DoctorEvidence) -> list[Hint]:
    points = [p for p in e.history if math.isfinite(p.train_loss)]
    if len(points) < FLAT_WINDOW + 1:
        return []
    window = [p.train_loss for p in points[-(FLAT_WINDOW + 1):]]
    half = len(window) // 2
    before, after = statistics.fmean(window[:half]), statistics.fmean(window[-half:])
    change = abs(after - before) / max(abs(before), 1e-12)
    # Minibatch losses jitter by a few percent from interval to interval; a change within
    # FLAT_NOISE standard errors of that jitter is no trend either.
    jitter = statistics.stdev(b - a for a, b in zip(window, window[1:])) / math.sqrt(2)
    within_noise = abs(after - before) < FLAT_NOISE * jitter * math.sqrt(2 / half)
    start = e.initial_loss if e.initial_loss is not None and math.isfinite(e.initial_loss) else points[0].train_loss
    progress = (start - window[-1]) / max(abs(start), 1e-12)
    if not (change < FLAT_REL_CHANGE or within_noise) or progress >= FLAT_MAX_PROGRESS:
        return []
    ratio = _median_ratio(e)
    if ratio is not None and ratio >= UPDATES_MOVING:
        return []  # the weights do move, so the optimizer is not starved; the capacity rule speaks instead
    lr = points[-1].lr
    return [Hint(
        code="lr_too_low",
        severity="warning",
        message=(
            f"The loss has barely moved: {change:.1%} over the last {FLAT_WINDOW} intervals and {max(progress, 0.0):.1%} "
            f"below where it started. The learning rate{_lr_text(lr)} is probably too low; raise it "
            "10x at a time. If that does not help, look for dead units or vanishing gradients."
        ),
        evidence={"series": "train_loss", "value": change, "threshold": FLAT_REL_CHANGE,
                  "from_step": points[-(FLAT_WINDOW + 1)].step, "to_step": points[-1].step,
                  "progress": progress, "lr": lr, "update_ratio": ratio},
        chart="loss",
    )]


def _initial_loss(e: DoctorEvidence) -> list[Hint]:
    if e.loss != "cross_entropy" or e.initial_loss is None or e.num_classes < 2:
        return []
    expected = math.log(e.num_classes)
    if not math.isfinite(e.initial_loss) or abs(e.initial_loss - expected) <= INIT_LOSS_TOLERANCE * expected:
        return []
    reg = e.l2 > 0 or e.l1 > 0
    if e.initial_loss > expected:
        cause = ("The network starts confidently wrong: its initial weights (or inputs) are too large, "
                 "so the logits are far from 0. Use a scaled init (Xavier/He) and normalize the inputs.")
    else:
        cause = "The network starts more confident than chance, which an untrained network should not be; check the init."
    penalty = (f" Regularization adds its penalty to the loss (l2={e.l2:g}, l1={e.l1:g}) and raises it; "
               "set it to 0 to check the init alone." if reg else
               " (Regularization would add its penalty and raise it; here there is none.)")
    return [Hint(
        code="initial_loss",
        severity="warning",
        message=(f"The loss started at {e.initial_loss:.3g}, but with {e.num_classes} classes and small random weights "
                 f"it should start near ln({e.num_classes}) = {expected:.3g}. {cause}{penalty}"),
        evidence={"series": "train_loss", "value": e.initial_loss, "expected": expected,
                  "threshold": INIT_LOSS_TOLERANCE * expected, "l2": e.l2, "l1": e.l1},
        chart="loss",
    )]


def _overfitting(e: DoctorEvidence) -> list[Hint]:
    evals = [p for p in e.history if p.val_loss is not None and math.isfinite(p.val_loss) and math.isfinite(p.train_loss)]
    if len(evals) < OVERFIT_WINDOW:
        return []
    window = evals[-OVERFIT_WINDOW:]
    best_val = min(p.val_loss for p in evals)
    rising = (window[-1].val_loss > window[0].val_loss and window[-1].val_loss > (1 + OVERFIT_VAL_RISE) * best_val
              and window[-1].train_loss < window[0].train_loss)
    gaps = [p.train_acc - p.val_acc for p in window if p.val_acc is not None]
    widening = len(gaps) == len(window) and gaps[-1] > OVERFIT_ACC_GAP and gaps[-1] > gaps[0]
    if not (rising or widening):
        return []
    last = window[-1]
    seen = (f"the validation loss rose to {last.val_loss:.3g} (best {best_val:.3g}) while the training loss fell"
            if rising else f"training accuracy is {gaps[-1]:.0%} above validation accuracy and the gap is growing")
    return [Hint(
        code="overfitting",
        severity="warning",
        message=(f"Overfitting: {seen}. The network memorizes the training set. Add regularization (L2, dropout), "
                 "data augmentation or more data, or stop earlier (early stopping)."),
        evidence={"series": "val_loss" if rising else "val_acc", "value": last.val_loss if rising else gaps[-1],
                  "threshold": OVERFIT_VAL_RISE if rising else OVERFIT_ACC_GAP, "best_val_loss": best_val,
                  "step": last.step, "train_loss": last.train_loss},
        chart="loss",
    )]


def _underfitting(e: DoctorEvidence) -> list[Hint]:
    points = [p for p in e.history if math.isfinite(p.train_loss)]
    if len(points) < UNDERFIT_MIN_POINTS:
        return []
    if e.loss == "cross_entropy" and e.num_classes >= 2:
        reference, ref_name = math.log(e.num_classes), f"ln({e.num_classes})"
    elif e.initial_loss is not None and math.isfinite(e.initial_loss):
        reference, ref_name = e.initial_loss, "the initial loss"
    else:
        return []
    last = points[-1]
    recent = points[-(PLATEAU_WINDOW + 1):]
    plateau = abs(recent[0].train_loss - last.train_loss) / max(abs(recent[0].train_loss), 1e-12)
    val = next((p.val_loss for p in reversed(points) if p.val_loss is not None and math.isfinite(p.val_loss)), None)
    close = val is None or abs(val - last.train_loss) <= UNDERFIT_GAP * max(last.train_loss, 1e-12)
    if last.train_loss <= UNDERFIT_LOSS * reference or plateau >= UNDERFIT_PLATEAU or not close:
        return []
    both = "training and validation losses are both" if val is not None else "training loss is"
    return [Hint(
        code="underfitting",
        severity="warning",
        message=(f"Underfitting: the {both} high ({last.train_loss:.3g}, more than half of {ref_name}) and no longer "
                 "falling. The network is too small or too constrained for the task: add units or layers, "
                 "lower the regularization, or train longer with a higher learning rate."),
        evidence={"series": "train_loss", "value": last.train_loss, "val_loss": val,
                  "threshold": UNDERFIT_LOSS * reference, "step": last.step, "plateau_change": plateau},
        chart="loss",
    )]


def _dead_relu(e: DoctorEvidence) -> list[Hint]:
    return [
        Hint(
            code="dead_relu",
            severity="warning",
            message=(f"{a.dead_fraction:.0%} of the ReLUs in layer '{a.layer}' are dead: they output 0 for every "
                     "example, so no gradient flows through them and they never recover. Usual causes: a too-high "
                     "learning rate or negative bias init. Use He init, a small positive bias, a lower LR or leaky ReLU."),
            evidence={"series": "dead_fraction", "layer": a.layer, "value": a.dead_fraction, "threshold": DEAD_MAX},
            chart="activations",
        )
        for a in e.activations
        if a.dead_fraction is not None and a.dead_fraction > DEAD_MAX
    ]


def _saturated(e: DoctorEvidence) -> list[Hint]:
    return [
        Hint(
            code="saturated",
            severity="warning",
            message=(f"{a.saturated_fraction:.0%} of the {a.activation} outputs in layer '{a.layer}' are saturated "
                     "(stuck near their limits, where the slope is almost 0), so gradients vanish there. The "
                     "weights or inputs are too large: use Xavier init, normalize the inputs, or try batch "
                     "normalization or ReLU."),
            evidence={"series": "saturated_fraction", "layer": a.layer, "value": a.saturated_fraction,
                      "threshold": SATURATED_MAX, "activation": a.activation},
            chart="activations",
        )
        for a in e.activations
        if a.saturated_fraction is not None and a.saturated_fraction > SATURATED_MAX
    ]


def _update_ratio(e: DoctorEvidence) -> list[Hint]:
    ratio = _median_ratio(e)
    if ratio is None or UPDATE_RATIO_LOW <= ratio <= UPDATE_RATIO_HIGH:
        return []
    high = ratio > UPDATE_RATIO_HIGH
    worst = (max if high else min)(_weight_ratios(e).items(), key=lambda item: item[1])
    advice = ("Each step changes the weights by more than a tenth: lower the learning rate."
              if high else "The weights hardly change from step to step: raise the learning rate.")
    return [Hint(
        code="update_ratio_high" if high else "update_ratio_low",
        severity="warning",
        message=(f"The update/weight ratio is {ratio:.1e} (median over weights); 1e-4 to 1e-2 is typical. {advice}"),
        evidence={"series": "update_ratio", "value": ratio,
                  "threshold": UPDATE_RATIO_HIGH if high else UPDATE_RATIO_LOW,
                  "layer": worst[0], "layer_value": worst[1]},
        chart="updates",
    )]


_RULES: tuple[Callable[[DoctorEvidence], list[Hint]], ...] = (
    _initial_loss, _lr_too_low, _overfitting, _underfitting, _dead_relu, _saturated, _update_ratio,
)


def _weight_ratios(e: DoctorEvidence) -> dict[str, float]:
    """The update ratios that speak about the learning rate.

    Left out: non-finite ones; exact zeros (a frozen parameter, or one that got no
    gradient at all, e.g. behind dead units: not a learning-rate question); and
    biases when there are weights (a bias starting at 0 has a huge ratio).
    """
    finite = {n: r for n, r in e.update_ratios.items() if math.isfinite(r)}
    weights = {n: r for n, r in finite.items() if not n.endswith("bias")}
    return {n: r for n, r in (weights or finite).items() if r != 0.0}


def _median_ratio(e: DoctorEvidence) -> float | None:
    values = list(_weight_ratios(e).values())
    return statistics.median(values) if values else None


def _at(step: int | None) -> str:
    return "" if step is None else f" at step {step}"


def _lr_text(lr: float | None) -> str:
    return "" if lr is None else f" ({lr:g})"
