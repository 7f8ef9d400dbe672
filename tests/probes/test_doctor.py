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
    SATURATED_MAX,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_LOW,
    DoctorEvidence,
    Hint,
    LayerActivity,
    MetricPoint,
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
    flat = [0.69] * 12
    e = DoctorEvidence(num_classes=2, initial_loss=0.69, history=history(flat, val=flat),
                       update_ratios={"fc.weight": 1e-2})
    assert codes(diagnose(e)) == ["underfitting"]


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
    assert hints[0].evidence["series"] == "val_loss" and hints[0].evidence["best_val_loss"] == 0.44
    assert "regularization" in hints[0].message and "augmentation" in hints[0].message


def test_a_growing_accuracy_gap_is_overfitting():
    train = [0.6, 0.5, 0.4, 0.35, 0.3, 0.25]
    val = [0.62, 0.55, 0.5, 0.48, 0.47, 0.46]  # still falling, but accuracy tells
    train_acc = [0.7, 0.8, 0.85, 0.9, 0.95, 0.99]
    val_acc = [0.7, 0.76, 0.8, 0.8, 0.8, 0.8]
    e = DoctorEvidence(num_classes=2, initial_loss=LN2,
                       history=history(train, val=val, train_acc=train_acc, val_acc=val_acc))
    hints = diagnose(e)
    assert codes(hints) == ["overfitting"] and hints[0].evidence["series"] == "val_acc"
    assert hints[0].evidence["value"] == pytest.approx(0.19)


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


def test_real_tanh_run_with_big_weights_saturates():
    model = mlp([2, 16, 2], act=nn.Tanh, seed=0)
    with torch.no_grad():
        model.blocks["fc1"].core.weight.mul_(40.0)
    e = train_run(model, torch.optim.SGD(model.parameters(), 1e-2), *BLOBS, steps=30)
    hints = [h for h in diagnose(e) if h.code == "saturated"]
    assert [h.evidence["layer"] for h in hints] == ["fc1"] and hints[0].evidence["value"] > 0.5


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
