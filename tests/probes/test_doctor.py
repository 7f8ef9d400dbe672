"""The training doctor: every rule fires on evidence built for it, and on real short training runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.probes.doctor import (
    DEAD_MAX,
    FLAT_WINDOW,
    PLATEAU_PERSIST,
    SATURATED_MAX,
    STALL_POINTS,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_LOW,
    DoctorEvidence,
    Hint,
    LayerActivity,
    MetricPoint,
    RunDoctor,
    diagnose,
)
from toy_nets import mlp

LN2, LN10 = math.log(2), math.log(10)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread; intra-op threads cost 10-30x on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def history(train, val=None, train_acc=None, val_acc=None, lr=0.01, every=10):
    """Metric points at steps every, 2*every, ... from lists of values (None where no evaluation ran)."""
    n = len(train)
    val = val or [None] * n
    train_acc = train_acc or [0.5] * n
    val_acc = val_acc or [None] * n
    return [MetricPoint(step=(i + 1) * every, train_loss=t, train_acc=ta, lr=lr, val_loss=v, val_acc=va)
            for i, (t, v, ta, va) in enumerate(zip(train, val, train_acc, val_acc))]


def codes(hints: list[Hint]) -> list[str]:
    return [h.code for h in hints]


def warnings(hints: list[Hint]) -> list[Hint]:
    return [h for h in hints if h.severity != "info"]


def check_shape(hints: list[Hint]) -> None:
    for h in hints:
        assert h.severity in ("info", "warning", "error")
        assert h.chart in ("loss", "activations", "gradients", "updates")
        assert "series" in h.evidence and "value" in h.evidence
        # The page shows every entry as a chip ("–" for a None) and only the first 8: all real, finite numbers.
        assert isinstance(h.evidence["value"], (int, float)) and math.isfinite(h.evidence["value"]), h.evidence
        assert len(h.evidence) <= 8, h.evidence
        for key, v in h.evidence.items():
            assert v is not None, (h.code, key)
            assert not isinstance(v, float) or math.isfinite(v), (h.code, key, v)
        assert len(h.message) > 40 and "{" not in h.message


# ---------------------------------------------------------------------------
# Rules on evidence built to trigger them
# ---------------------------------------------------------------------------


def test_quiet_without_evidence_and_on_a_good_curve():
    assert diagnose(DoctorEvidence(num_classes=3)) == []
    falling = [LN2 * 0.8 ** i for i in range(15)]
    e = DoctorEvidence(num_classes=2, initial_loss=LN2, history=history(falling, val=[v * 1.02 for v in falling]),
                       update_ratios={"fc.weight": 1e-3})
    assert diagnose(e) == []


@pytest.mark.parametrize("stop, losses", [
    ("non_finite", [0.7, 0.9, math.nan]),
    ("exploded", [0.7, 5.0, 40.0]),
    (None, [0.7, math.inf, math.nan]),
])
def test_diverged_loss_means_the_lr_is_too_high(stop, losses):
    e = DoctorEvidence(num_classes=2, initial_loss=0.7, history=history(losses, lr=3.0), stop_reason=stop)
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == ["lr_too_high"]
    assert hints[0].severity == "error" and hints[0].chart == "loss"
    assert "Lower the learning rate (3)" in hints[0].message
    # the evidence is the highest finite loss the chart shows before the blow-up, never a NaN or a None
    assert hints[0].evidence["value"] == max(v for v in losses if math.isfinite(v))
    assert hints[0].evidence["lr"] == 3.0 and hints[0].evidence["stop_reason"] == (stop or "non_finite")


def test_a_loss_that_is_nan_from_the_first_interval_shows_the_lr_as_evidence():
    e = DoctorEvidence(num_classes=2, initial_loss=math.nan, history=history([math.nan], lr=1e6), stop_reason="non_finite")
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == ["lr_too_high"] and hints[0].evidence["series"] == "lr" and hints[0].evidence["value"] == 1e6


def test_a_diverged_run_gets_no_loss_trend_hints_but_keeps_unit_hints():
    flat_then_nan = [0.69] * 12 + [math.nan]
    e = DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(flat_then_nan), stop_reason="non_finite",
                       activations=[LayerActivity("fc1", "relu", dead_fraction=0.9)])
    assert codes(diagnose(e)) == ["lr_too_high", "dead_relu"]


def test_flat_loss_means_the_lr_is_too_low():
    flat = [0.6931 + 0.0005 * (i % 2) for i in range(FLAT_WINDOW + 1)]
    e = DoctorEvidence(num_classes=2, initial_loss=0.6935, history=history(flat, val=flat, lr=1e-6))
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == ["lr_too_low"]  # not also "underfitting": a loss that never moved says nothing on capacity
    assert hints[0].evidence["lr"] == 1e-6 and "(1e-06)" in hints[0].message and hints[0].chart == "loss"


def test_flat_loss_needs_enough_intervals_and_no_progress():
    flat = [0.69] * FLAT_WINDOW
    assert diagnose(DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(flat))) == []
    converged = [0.05] * 12  # flat, but far below where it started
    assert diagnose(DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(converged))) == []
    falling = [0.69 - 0.02 * i for i in range(12)]
    assert "lr_too_low" not in codes(diagnose(DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(falling))))


def test_noisy_flat_minibatch_loss_is_still_flat():
    noisy = [0.69 + 0.02 * ((-1) ** i) * (1 + (i % 3)) / 3 for i in range(14)]  # +-2% jitter, no trend
    e = DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(noisy))
    assert "lr_too_low" in codes(diagnose(e))


def test_a_flat_loss_with_moving_weights_is_not_blamed_on_the_lr():
    # Weights that move at a healthy rate while the loss sits at chance: not the LR. Whether the model is too
    # small takes a long stall to tell: a 4-layer sigmoid net sits at ln 2 for ~25 intervals before it learns.
    flat = [0.69] * 12
    e = DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(flat, val=flat),
                       update_ratios={"fc.weight": 1e-2})
    assert diagnose(e) == []
    e.history = history([0.69] * STALL_POINTS, val=[0.69] * STALL_POINTS)
    assert codes(diagnose(e)) == ["underfitting"]


def test_weights_that_do_not_move_at_all_are_not_a_too_low_lr():
    # All-zero init: every weight gets an exactly zero gradient (symmetry), only the biases move. A larger
    # step would not move them either, so "raise the LR" would be wrong advice.
    flat = [0.6931 + 0.0005 * (i % 2) for i in range(FLAT_WINDOW + 1)]
    frozen = {"hidden.weight": 0.0, "out.weight": 0.0, "out.bias": 0.02}
    e = DoctorEvidence(num_classes=2, initial_loss=0.6935, history=history(flat, lr=0.3), update_ratios=frozen)
    assert diagnose(e) == []
    e.update_ratios = {"hidden.weight": 1e-7, "out.weight": 2e-7, "out.bias": 0.02}  # moving, by too little
    assert codes(diagnose(e)) == ["lr_too_low", "update_ratio_low"]


@pytest.mark.parametrize("initial, fires", [(9.0, True), (0.5, True), (2.4, False), (3.3, False)])
def test_initial_loss_far_from_ln_c(initial, fires):
    e = DoctorEvidence(num_classes=10, initial_loss=initial)
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == (["initial_loss"] if fires else [])
    if fires:
        assert "ln(10) = 2.3" in hints[0].message and hints[0].evidence["expected"] == pytest.approx(LN10)


def test_initial_loss_mentions_that_regularization_raises_it():
    hints = diagnose(DoctorEvidence(num_classes=10, initial_loss=6.0, l2=0.5))
    assert codes(hints) == ["initial_loss"]
    assert "l2=0.5" in hints[0].message and "raises it" in hints[0].message
    assert "raise it" in diagnose(DoctorEvidence(num_classes=10, initial_loss=6.0))[0].message


def test_initial_loss_is_judged_for_cross_entropy_only():
    assert diagnose(DoctorEvidence(num_classes=10, loss="mse", initial_loss=40.0)) == []
    assert diagnose(DoctorEvidence(num_classes=10, loss="hinge", initial_loss=40.0)) == []


def test_rising_val_loss_with_falling_train_loss_is_overfitting():
    train = [0.6, 0.45, 0.35, 0.28, 0.22, 0.17, 0.13]
    val = [0.62, 0.50, 0.44, 0.46, 0.50, 0.56, 0.63]
    hints = diagnose(DoctorEvidence(num_classes=2, initial_loss=LN2, history=history(train, val=val)))
    check_shape(hints)
    assert codes(hints) == ["overfitting"]
    # the best is the lowest mean of 3 consecutive evaluations (0.50, 0.44, 0.46), not the single lucky 0.44
    assert hints[0].evidence["series"] == "val_loss" and hints[0].evidence["best_val_loss"] == pytest.approx(0.4667, abs=1e-4)
    assert "regularization" in hints[0].message and "augmentation" in hints[0].message


def test_a_growing_accuracy_gap_is_overfitting_once_the_validation_loss_stalls():
    train = [0.6, 0.5, 0.4, 0.35, 0.3, 0.25]
    val = [0.62, 0.55, 0.5, 0.48, 0.49, 0.48]  # stopped improving; accuracy tells the rest
    train_acc = [0.7, 0.8, 0.85, 0.9, 0.95, 0.99]
    val_acc = [0.7, 0.76, 0.8, 0.8, 0.8, 0.8]
    e = DoctorEvidence(num_classes=2, initial_loss=LN2,
                       history=history(train, val=val, train_acc=train_acc, val_acc=val_acc))
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == ["overfitting"] and hints[0].evidence["series"] == "val_acc"
    assert hints[0].evidence["value"] == pytest.approx(0.19)
    # The same gap while the validation loss still falls at every evaluation: the network still generalizes
    # better with each step (early stopping would not stop it), so it is not overfitting yet.
    still_improving = [0.62, 0.55, 0.5, 0.48, 0.47, 0.46]
    e.history = history(train, val=still_improving, train_acc=train_acc, val_acc=val_acc)
    assert diagnose(e) == []


def test_no_overfitting_while_validation_improves_or_with_too_few_evaluations():
    train = [0.6, 0.5, 0.4, 0.3]
    assert diagnose(DoctorEvidence(num_classes=2, history=history(train, val=[0.62, 0.52, 0.43, 0.35]))) == []
    assert diagnose(DoctorEvidence(num_classes=2, history=history(train[:3], val=[0.4, 0.5, 0.9]))) == []


def test_high_close_plateaued_losses_are_underfitting():
    train = [1.9, 1.7, 1.6, 1.55, 1.52, 1.5, 1.49, 1.49, 1.48, 1.48, 1.48, 1.48]
    val = [v * 1.03 for v in train]
    e = DoctorEvidence(num_classes=10, initial_loss=2.3, history=history(train, val=val),
                       update_ratios={"fc.weight": 3e-3})
    hints = diagnose(e)
    check_shape(hints)
    assert codes(hints) == ["underfitting"]
    assert "add units or layers" in hints[0].message


def test_underfitting_needs_enough_steps_a_plateau_high_loss_and_close_losses():
    plateau = [1.48] * 12
    base = dict(num_classes=10, initial_loss=2.3, update_ratios={"fc.weight": 3e-3})
    assert diagnose(DoctorEvidence(**base, history=history(plateau[:8]))) == []              # too early
    assert diagnose(DoctorEvidence(**base, history=history([0.9] * 12))) == []              # low: < 0.5 ln 10
    assert diagnose(DoctorEvidence(**base, history=history(plateau, val=[1.9] * 12))) == []  # far apart
    still_falling = [2.2 - 0.07 * i for i in range(12)]
    assert diagnose(DoctorEvidence(**base, history=history(still_falling))) == []
    # other losses are judged against the initial loss
    mse = DoctorEvidence(num_classes=3, loss="mse", initial_loss=0.5, history=history([0.4] * 12),
                         update_ratios={"fc.weight": 3e-3})
    assert codes(diagnose(mse)) == ["underfitting"]


def test_dead_relu_layers():
    acts = [LayerActivity("fc1", "relu", dead_fraction=DEAD_MAX + 0.1), LayerActivity("fc2", "relu", dead_fraction=0.2),
            LayerActivity("out", "identity")]
    hints = diagnose(DoctorEvidence(num_classes=2, activations=acts))
    check_shape(hints)
    assert codes(hints) == ["dead_relu"]
    assert hints[0].evidence["layer"] == "fc1" and hints[0].chart == "activations" and "60%" in hints[0].message


def test_saturated_tanh_and_sigmoid_layers():
    acts = [LayerActivity("h1", "tanh", saturated_fraction=0.8), LayerActivity("h2", "sigmoid", saturated_fraction=0.35),
            LayerActivity("h3", "tanh", saturated_fraction=SATURATED_MAX - 0.01)]
    hints = diagnose(DoctorEvidence(num_classes=2, activations=acts))
    check_shape(hints)
    assert codes(hints) == ["saturated", "saturated"]
    assert [h.evidence["layer"] for h in hints] == ["h1", "h2"] and "sigmoid" in hints[1].message


def test_update_ratio_far_from_1e_3():
    high = diagnose(DoctorEvidence(num_classes=2, update_ratios={"a.weight": 0.5, "b.weight": 0.3, "c.weight": 1e-3}))
    low = diagnose(DoctorEvidence(num_classes=2, update_ratios={"a.weight": 1e-7, "b.weight": 1e-6}))
    check_shape(high + low)
    assert codes(high) == ["update_ratio_high"] and high[0].evidence["value"] == 0.3
    assert high[0].evidence["layer"] == "a.weight" and high[0].chart == "updates"
    assert codes(low) == ["update_ratio_low"] and low[0].evidence["threshold"] == UPDATE_RATIO_LOW
    assert diagnose(DoctorEvidence(num_classes=2, update_ratios={"a.weight": 1e-3, "b.weight": 2e-2})) == []
    assert UPDATE_RATIO_LOW < 1e-3 < UPDATE_RATIO_HIGH


def test_update_ratio_ignores_biases_and_parameters_that_did_not_move():
    ratios = {"a.weight": 1e-3, "a.bias": 5.0, "b.bias": 3.0, "frozen.weight": 0.0}
    assert diagnose(DoctorEvidence(num_classes=2, update_ratios=ratios)) == []
    # behind dead units nothing moves: that is the dead-unit hint's story, not the LR's
    dead = DoctorEvidence(num_classes=2, update_ratios={"a.weight": 0.0, "b.weight": 0.0, "b.bias": 0.3},
                          activations=[LayerActivity("a", "relu", dead_fraction=1.0)])
    assert codes(diagnose(dead)) == ["dead_relu"]


# ---------------------------------------------------------------------------
# Real short training runs, evidence measured directly with torch
# ---------------------------------------------------------------------------


def blobs(n: int, seed: int):
    """Two Gaussian blobs around (-1.5, -1.5) and (1.5, 1.5): linearly separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) * 0.6 + (y[:, None] * 3.0 - 1.5)
    return x, y


def xor(n: int, seed: int):
    """Labels by quadrant sign: no line separates them."""
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x, (x[:, 0] * x[:, 1] > 0).long()


def train_run(model, optimizer, data, val, *, steps=150, log_every=10, batch=32) -> DoctorEvidence:
    """Minibatch training the way the trainer does it; the evidence is measured with plain torch."""
    (x, y), (xv, yv) = data, val
    g = torch.Generator().manual_seed(0)
    points, initial, stop, ratios = [], None, "finished", {}
    losses, accs = [], []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
        out = model(x[idx])
        loss = F.cross_entropy(out, y[idx])
        initial = loss.item() if initial is None else initial
        if not math.isfinite(loss.item()):
            points.append(MetricPoint(step, loss.item(), 0.0, optimizer.param_groups[0]["lr"]))
            stop = "non_finite"
            break
        optimizer.zero_grad()
        loss.backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()} if step == steps else None
        optimizer.step()
        losses.append(loss.item())
        accs.append((out.argmax(1) == y[idx]).float().mean().item())
        if step % log_every == 0:
            with torch.no_grad():
                ov = model(xv)
            points.append(MetricPoint(step, sum(losses) / len(losses), sum(accs) / len(accs), optimizer.param_groups[0]["lr"],
                                      F.cross_entropy(ov, yv).item(), (ov.argmax(1) == yv).float().mean().item()))
            losses, accs = [], []
    if before is not None:
        ratios = {n: ((p.detach() - before[n]).norm() / before[n].norm()).item() for n, p in model.named_parameters()}
    activity = []
    with torch.no_grad():
        h = x[:128]
        for name, block in model.blocks.items():
            h = block(h)
            kind = type(block.act).__name__.lower()
            if kind == "relu":
                activity.append(LayerActivity(name, "relu", dead_fraction=(h <= 0).all(dim=0).float().mean().item()))
            elif kind == "tanh":
                activity.append(LayerActivity(name, "tanh", saturated_fraction=(h.abs() > 0.99).float().mean().item()))
    return DoctorEvidence(num_classes=2, loss="cross_entropy", initial_loss=initial, history=points, stop_reason=stop,
                          activations=activity, update_ratios=ratios)


BLOBS = (blobs(256, 0), blobs(256, 1))


def test_real_healthy_run_gets_no_warnings():
    model = mlp([2, 16, 2], act=nn.ReLU, seed=0)
    e = train_run(model, torch.optim.Adam(model.parameters(), 1e-2), *BLOBS)
    assert e.history[-1].val_acc > 0.95  # it did learn
    assert warnings(diagnose(e)) == []


def test_real_run_with_lr_1e6_diverges():
    model = mlp([2, 16, 2], act=nn.ReLU, seed=0)
    e = train_run(model, torch.optim.SGD(model.parameters(), 1e6), *BLOBS)
    hints = diagnose(e)
    assert e.stop_reason == "non_finite"
    assert codes(hints)[0] == "lr_too_high" and hints[0].severity == "error"


def test_real_run_with_lr_1e_7_is_flat():
    model = mlp([2, 16, 2], act=nn.ReLU, seed=0)
    e = train_run(model, torch.optim.SGD(model.parameters(), 1e-7), *BLOBS)
    found = codes(diagnose(e))
    assert "lr_too_low" in found and "update_ratio_low" in found and "underfitting" not in found


def test_real_run_with_huge_init_starts_far_from_ln_c():
    model = mlp([2, 16, 2], act=nn.ReLU, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)
    e = train_run(model, torch.optim.Adam(model.parameters(), 1e-2), *BLOBS, steps=30)
    assert e.initial_loss > 3 * LN2
    assert "initial_loss" in codes(diagnose(e))


def test_real_run_with_very_negative_bias_has_dead_relus():
    model = mlp([2, 16, 2], act=nn.ReLU, seed=0)
    with torch.no_grad():
        model.blocks["fc1"].core.bias.fill_(-10.0)
    e = train_run(model, torch.optim.Adam(model.parameters(), 1e-2), *BLOBS, steps=30)
    hints = diagnose(e)
    assert "dead_relu" in codes(hints)
    assert next(h for h in hints if h.code == "dead_relu").evidence["layer"] == "fc1"
    assert "update_ratio_high" not in codes(hints) and "update_ratio_low" not in codes(hints)


def saturated_tanh_mlp():
    model = mlp([2, 16, 2], act=nn.Tanh, seed=0)
    with torch.no_grad():
        model.blocks["fc1"].core.weight.mul_(40.0)  # pre-activations ~40x too large: tanh is a step function
    return model


def test_real_tanh_run_with_big_weights_saturates_and_cannot_fit_xor():
    model = saturated_tanh_mlp()
    e = train_run(model, torch.optim.SGD(model.parameters(), 1e-2), xor(256, 0), xor(256, 1), steps=100)
    assert e.history[-1].train_loss > 0.5 * LN2  # the saturated layer keeps it near chance
    hints = [h for h in diagnose(e) if h.code == "saturated"]
    check_shape(hints)
    assert [h.evidence["layer"] for h in hints] == ["fc1"] and hints[0].evidence["value"] > 0.5


def test_saturated_units_of_a_network_that_fits_are_its_decisions_not_a_problem():
    # Two blobs need one step function: the same saturated layer fits them within 30 steps, so a hint
    # that gradients vanish would contradict the loss chart (the spiral preset's tanh layer at 99% is the same).
    model = saturated_tanh_mlp()
    e = train_run(model, torch.optim.SGD(model.parameters(), 1e-2), *BLOBS, steps=30)
    assert e.activations[0].saturated_fraction > 0.5 and e.history[-1].train_loss < 0.5 * LN2
    assert "saturated" not in codes(diagnose(e))


def test_real_run_on_a_tiny_noisy_training_set_overfits():
    g = torch.Generator().manual_seed(5)
    train = (torch.randn(16, 2, generator=g), torch.randint(0, 2, (16,), generator=g))  # random labels
    val = (torch.randn(200, 2, generator=g), torch.randint(0, 2, (200,), generator=g))
    model = mlp([2, 64, 64, 2], act=nn.ReLU, seed=0)
    e = train_run(model, torch.optim.Adam(model.parameters(), 1e-2), train, val, steps=200, batch=16)
    assert "overfitting" in codes(diagnose(e))


def test_real_linear_model_on_xor_underfits():
    model = mlp([2, 2], seed=0)  # one linear layer: no line separates XOR
    e = train_run(model, torch.optim.Adam(model.parameters(), 1e-2), xor(256, 0), xor(256, 1))
    found = codes(diagnose(e))
    assert "underfitting" in found and "lr_too_low" not in found


# ---------------------------------------------------------------------------
# RunDoctor: the same rules, fed one metrics point at a time
# ---------------------------------------------------------------------------


def run_doctor(points, *, num_classes=2, loss="cross_entropy", **kwargs) -> RunDoctor:
    doctor = RunDoctor(num_classes=num_classes, loss=loss, **kwargs)
    for p in points:
        doctor.observe(p)
    return doctor


def test_the_record_wrapper_is_a_run_doctor_fed_the_history():
    train = [0.6, 0.45, 0.35, 0.28, 0.22, 0.17, 0.13]
    val = [0.62, 0.50, 0.44, 0.46, 0.50, 0.56, 0.63]
    e = DoctorEvidence(num_classes=2, initial_loss=LN2, history=history(train, val=val),
                       activations=[LayerActivity("fc1", "relu", dead_fraction=0.8)], update_ratios={"fc.weight": 0.5})
    doctor = run_doctor(e.history, persistence=False)
    assert doctor.diagnose(initial_loss=LN2, stop_reason=None, activations=e.activations,
                           update_ratios=e.update_ratios) == diagnose(e)
    assert codes(diagnose(e)) == ["overfitting", "dead_relu", "update_ratio_high"]


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match=r"'lr_to_low'.*not a hint code.*lr_too_low"):
        RunDoctor(num_classes=2, loss="cross_entropy", ignore=["lr_to_low"])
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        RunDoctor(num_classes=0, loss="cross_entropy")
    doctor = run_doctor(history([0.7, 0.6]))
    with pytest.raises(ValueError, match="step order: step 5 after step 20"):
        doctor.observe(MetricPoint(step=5, train_loss=0.5, train_acc=0.5, lr=0.01))
    with pytest.raises(ValueError, match="train_loss must be a number, got None at step 30"):
        doctor.observe(MetricPoint(step=30, train_loss=None, train_acc=0.5, lr=0.01, val_loss=0.6))


def test_ignored_codes_are_never_reported_but_still_silence_what_they_contradict():
    flat = [0.6931 + 0.0005 * (i % 2) for i in range(FLAT_WINDOW + 1)]
    points = history(flat, val=flat, lr=1e-6)
    assert codes(run_doctor(points).diagnose(initial_loss=0.6935, stop_reason=None)) == ["lr_too_low"]
    # a lesson that keeps the LR tiny on purpose: no hint at all, and "underfitting" stays silenced
    quiet = run_doctor(points, ignore=["lr_too_low"])
    assert quiet.diagnose(initial_loss=0.6935, stop_reason=None) == []
    init = run_doctor([], num_classes=10, ignore=["initial_loss"])
    assert init.diagnose(initial_loss=9.0, stop_reason=None) == []


def test_a_steadily_falling_noisy_loss_gets_no_loss_hints():
    # Minibatch SGD at a modest LR: -1% per interval with +-2% jitter, still high, train and val together.
    # "LR too low", "no longer falling" (underfitting) and overfitting would all contradict the chart.
    jitter = [0.02 * ((-1) ** i) * (1 + (i % 3)) / 3 for i in range(40)]
    train = [2.3 * 0.99 ** i * (1 + j) for i, j in enumerate(jitter)]
    val = [2.3 * 0.99 ** i * 1.02 for i in range(40)]
    train_acc = [0.1 + 0.005 * i for i in range(40)]
    val_acc = [0.1 + 0.005 * i - 0.01 for i in range(40)]
    points = history(train, val=val, train_acc=train_acc, val_acc=val_acc, lr=0.01)
    doctor = RunDoctor(num_classes=10, loss="cross_entropy")
    for p in points:
        doctor.observe(p)
        assert doctor.diagnose(initial_loss=2.3, stop_reason=None, update_ratios={"fc.weight": 1e-3}) == [], p.step


def first_hints(points, *, initial_loss, update_ratios, **kwargs) -> dict[str, int]:
    """Feed a RunDoctor one point at a time as the runner does; code -> the step it first held at."""
    doctor, first = RunDoctor(num_classes=2, **kwargs), {}
    for p in points:
        doctor.observe(p)
        for h in doctor.diagnose(initial_loss=initial_loss, stop_reason=None, update_ratios=update_ratios):
            first.setdefault(h.code, p.step)
    return first


def test_a_slow_steady_fall_is_not_a_plateau_but_a_slowing_one_is():
    # A full-batch XOR net crossing its plateau (the backprop_tiny preset): -0.4% per interval, noise-free,
    # not slowing down, still high against its start. It is falling; "no longer falling" would be wrong.
    steady = [0.129 * (1 - 0.004 * i) for i in range(40)]
    ratios = {"w.weight": 3e-3}
    assert first_hints(history(steady), initial_loss=0.129, update_ratios=ratios, loss="mse") == {}
    # The same run whose fall slows to a tenth after 20 intervals: a plateau, once it has lasted. Still within 10%
    # of its start, it is judged after STALL_POINTS intervals, then seen on PLATEAU_PERSIST points in a row.
    slowing = steady[:20] + [steady[19] * (1 - 0.0004 * i) for i in range(1, 21)]
    first = first_hints(history(slowing), initial_loss=0.129, update_ratios=ratios, loss="mse")
    assert list(first) == ["underfitting"] and first["underfitting"] == 10 * (STALL_POINTS + PLATEAU_PERSIST - 1)


def test_a_short_flat_stretch_in_a_noisy_falling_loss_is_not_a_plateau():
    # MobileNet logged every 2 steps: the loss stalls for 5 intervals, then falls on (steps 40-62 measured).
    losses = [2.3, 2.24, 2.14, 2.1, 2.0, 1.97, 1.91, 1.9, 1.84, 1.8, 1.83, 1.7, 1.57, 1.63, 1.58, 1.57, 1.59,
              1.61, 1.42, 1.31, 1.3, 1.35, 1.28, 1.2, 1.16, 1.1]
    points = history(losses, val=[v * 1.03 for v in losses], every=2)
    first = first_hints(points, initial_loss=2.3, update_ratios={"w.weight": 3e-3}, loss="cross_entropy")
    assert "underfitting" not in first
    # judged on the moment alone (persistence off) the stall does read as a plateau: the streak is what saves it
    judged_alone = first_hints(points[:18], initial_loss=2.3, update_ratios={"w.weight": 3e-3},
                               loss="cross_entropy", persistence=False)
    assert "underfitting" in judged_alone


def test_update_ratio_hints_need_two_probed_steps_in_a_row():
    # Adam's first step moves every weight by ~lr (0.17 of the spiral net's weights at step 1), then settles:
    # one high probe is the warm-up, not a too-high LR.
    doctor = run_doctor(history([0.7, 0.6, 0.5]))
    first = {"h.weight": 0.17, "out.weight": 0.3}
    assert doctor.diagnose(initial_loss=0.7, stop_reason=None, update_ratios=first) == []
    assert doctor.diagnose(initial_loss=0.7, stop_reason=None, update_ratios=dict(first)) == []  # the same probe again
    assert doctor.diagnose(initial_loss=0.7, stop_reason=None, update_ratios={"h.weight": 0.01, "out.weight": 0.02}) == []
    # a step size that stays too large on two probes in a row is the LR
    doctor.diagnose(initial_loss=0.7, stop_reason=None, update_ratios={"h.weight": 0.4, "out.weight": 0.5})
    hints = doctor.diagnose(initial_loss=0.7, stop_reason=None, update_ratios={"h.weight": 0.3, "out.weight": 0.6})
    check_shape(hints)
    assert codes(hints) == ["update_ratio_high"] and hints[0].evidence["value"] == pytest.approx(0.45)
    assert hints[0].evidence["layer"] == "out.weight" and hints[0].evidence["probed_steps"] == 2


def test_no_overfitting_before_the_network_fits_its_training_set():
    # Batch norm's running statistics lag in the first steps (the MobileNet preset at step 30): validation
    # accuracy sits at chance while training accuracy climbs. The training loss is still high, so whatever
    # the gap says, nothing is being memorized yet.
    train = [2.32, 2.28, 2.23, 2.16, 2.09, 2.0, 1.91]
    val = [2.30, 2.31, 2.31, 2.34, 2.37, 2.36, 2.29]
    train_acc = [0.1, 0.09, 0.2, 0.26, 0.38, 0.45, 0.48]
    val_acc = [0.1] * 7
    e = DoctorEvidence(num_classes=10, initial_loss=2.3,
                       history=history(train, val=val, train_acc=train_acc, val_acc=val_acc, every=5))
    assert "overfitting" not in codes(diagnose(e))
