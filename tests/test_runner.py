"""RunSession: the loop shared by `dlplay run` and the server (live views on the frame clock, messages, cleanup)."""

import gc
import time
import tracemalloc

import pytest
import torch

from server.cli import load_experiment
from server.presets import MODELS_DIR
from server.runner import VIEW_CREDIT_CAP_SECONDS, RunSession


def session_for(preset: str, steps: int, **rates: float) -> RunSession:
    """A preset capped at ``steps`` steps; ``rates`` override live views' frames per second."""
    experiment = load_experiment(str(MODELS_DIR / f"{preset}.json"))
    experiment.train.max_steps = steps
    experiment.probes.rates.update(rates)
    return RunSession(experiment, run_id=preset, device="cpu")


def run_to_end(session: RunSession) -> list[dict]:
    messages = session.start()
    while not session.done:
        messages += session.advance(max_steps=100, max_seconds=60)
    return messages


def activation_stds(message: dict) -> list[float]:
    return [layer["std"] for layer in message["layers"] if layer["layer"].startswith("fc")]


def test_small_init_collapses_activations_and_xavier_holds_them():
    """Lesson 6: 10 tanh layers of 500; 0.01*randn collapses geometrically, Xavier keeps the std."""
    small = run_to_end(session_for("deep_tanh_small_init", 1))
    xavier = run_to_end(session_for("deep_tanh_xavier", 1))
    small_stds = activation_stds(next(m for m in small if m["type"] == "activations"))
    xavier_stds = activation_stds(next(m for m in xavier if m["type"] == "activations"))
    assert len(small_stds) == len(xavier_stds) == 10
    # Each layer shrinks the std by roughly 0.01*sqrt(500)*E[tanh'] ~ 0.22: far more than 2x per layer.
    assert all(b < a / 2 for a, b in zip(small_stds, small_stds[1:])), small_stds
    assert small_stds[-1] < 1e-5
    assert min(xavier_stds) > 0.1, xavier_stds


def test_hooks_are_released_after_probed_steps_and_stop():
    session = session_for("lenet5_mnist", 30, layer_stats=60, filters=60)
    run_to_end(session)
    for block in session.model.blocks.values():
        for module in block.modules():
            assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks


def test_memory_does_not_grow_over_many_runs():
    def one_run() -> None:
        session = session_for("spiral_mlp", 20, layer_stats=60, boundary=60)
        run_to_end(session)
        session.probe("boundary")
        session.close()

    for _ in range(3):  # warm caches (dataset generation, torch kernels)
        one_run()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(15):
        one_run()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 2_000_000, f"{grown} bytes kept after 15 runs"


def test_on_demand_probes_validate_their_arguments():
    session = session_for("lenet5_mnist", 5)
    run_to_end(session)
    with pytest.raises(ValueError, match="out of range"):
        session.probe("feature_maps", index=10**6)
    with pytest.raises(ValueError, match="class 12 is out of range"):
        session.probe("gradcam", index=0, target=12)
    with pytest.raises(ValueError, match="not a conv2d layer"):
        session.probe("filters", layer="fc1")
    with pytest.raises(ValueError, match="unknown probe"):
        session.probe("mind_reading")
    with pytest.raises(ValueError, match="784"):
        session.predict([0.5] * 10)


def test_prediction_matches_the_model_on_the_preprocessed_input():
    session = session_for("lenet5_mnist", 20)
    run_to_end(session)
    raw = session.dataset.denormalize(session.dataset.x_val[:1])
    message = session.predict(raw.flatten().tolist())[0]
    with torch.no_grad():
        expected = torch.softmax(session.trainer.eval_model()(session.dataset.x_val[:1]), dim=1)[0]
    assert message["predicted"] == int(expected.argmax())
    assert message["probs"] == pytest.approx(expected.tolist(), abs=1e-4)


def test_non_finite_loss_ends_the_run_with_an_explanation():
    experiment = load_experiment(str(MODELS_DIR / "spiral_mlp.json"))
    experiment.train.optimizer.lr = 1e6
    experiment.train.max_steps = 200
    session = RunSession(experiment, run_id="nan", device="cpu")
    messages = run_to_end(session)
    final = next(m for m in messages if m["type"] == "final")
    assert final["stop_reason"] in ("non_finite", "exploded")
    assert "learning rate" in final["message"]
    assert any(m["type"] == "hint" and m["code"] == "lr_too_high" for m in messages)
    assert messages[-1] == {"type": "status", "state": "failed", "message": final["message"]}


def test_a_slice_goes_on_past_a_frame_that_was_due_when_it_began():
    """Issue 10: with 50 runs on 2 cores every turn starts with a frame due; ending the slice there left each
    run one step per turn. A frame due at the slice's start goes out with the slice, which keeps training."""
    experiment = load_experiment(str(MODELS_DIR / "spiral_mlp.json"))
    experiment.train.max_steps = 10_000
    experiment.probes.budget = 1.0  # no budget limit here: only where the slice ends is tested
    session = RunSession(experiment, run_id="slices", device="cpu")
    session.set_views({"boundary": {}})
    session.start()
    for _ in range(5):
        session.clock.invalidate("boundary")  # due now, as after a wait for the turn
        messages = session.advance(max_steps=20, max_seconds=60, until_frame=True)
        assert [m["type"] for m in messages].count("boundary") >= 1
        steps = [m["step"] for m in messages if m["type"] == "boundary"]
        assert max(steps) > 0 and session.trainer.step_count > 1
    assert session.trainer.step_count > 5  # more than one step per slice
    session.close()


def test_views_take_at_most_their_budget_of_the_time_a_run_is_given():
    """Issue 10: probes.budget holds for the run's own slices, however rarely it gets one (a class of 50)."""
    experiment = load_experiment(str(MODELS_DIR / "spiral_mlp.json"))
    experiment.train.max_steps = 10_000
    experiment.probes.budget = 0.05
    session = RunSession(experiment, run_id="budget", device="cpu")
    session.set_views({"boundary": {}})
    session.start()
    probing_before = session._probe_seconds
    worked = 0.0
    for _ in range(100):
        session.clock.invalidate("boundary")  # a frame is due at every turn, as after a long wait for it
        t0 = time.perf_counter()
        session.advance(max_steps=10, max_seconds=60, until_frame=True)
        worked += time.perf_counter() - t0
    probing = session._probe_seconds - probing_before
    allowed = worked * 0.05 / 0.95 + VIEW_CREDIT_CAP_SECONDS  # the budget of the work, plus the credit it may save
    assert probing <= allowed, (probing, worked)
    session.close()
