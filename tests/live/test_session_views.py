"""RunSession with the frame clock: only watched views run, each frame says its rate, speed limits hold."""

import json
import math
import time

import pytest

from server.presets import MODELS_DIR
from server.runner import RunSession, _merge
from server.schemas import Experiment
from server.trainer import ExperimentError, IntervalMetrics

VIEW_MESSAGES = {"activations", "gradients", "weights", "filters", "feature_maps", "saliency", "gradcam", "attention",
                 "boundary", "confusion", "misclassified"}


def preset(name: str, **train) -> Experiment:
    document = json.loads((MODELS_DIR / f"{name}.json").read_text())
    document["train"].update(train)
    return Experiment.model_validate(document)


def train_for(session: RunSession, seconds: float) -> list[dict]:
    messages = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not session.done:
        messages += session.advance(max_seconds=0.05)
    return messages


def test_only_the_watched_views_are_computed():
    session = RunSession(preset("spiral_mlp", epochs=None), device="cpu")
    session.set_views({"boundary": {}})
    messages = session.start() + train_for(session, 1.0)
    kinds = {m["type"] for m in messages}
    assert "boundary" in kinds and "metrics" in kinds
    assert not (kinds & VIEW_MESSAGES - {"boundary"}), kinds & VIEW_MESSAGES
    session.set_views({})
    later = train_for(session, 0.5)
    assert not ({m["type"] for m in later} & VIEW_MESSAGES)
    assert session.trainer.step_count > 0


def test_a_quick_open_makes_its_first_metrics_before_any_frame_and_draws_in_the_next_slice():
    """start(frames=False), as a run's open does when it trains at once: summary, status, then the first steps
    to the first metrics point with no view computed; the next slice draws every watched view."""
    session = RunSession(preset("spiral_mlp", epochs=None), device="cpu")
    session.set_views({"boundary": {}, "layer_stats": {}, "evaluation": {}})
    opened = session.start(frames=False)
    assert [m["type"] for m in opened] == ["summary", "status"]
    first = session.advance(max_steps=session.experiment.train.log_every, max_seconds=5.0)
    assert [m["type"] for m in first] == ["metrics"], [m["type"] for m in first]
    assert first[0]["step"] == session.experiment.train.log_every
    later = session.advance(max_steps=50, max_seconds=5.0)
    drawn = {m["type"] for m in later}
    assert {"boundary", "activations", "gradients", "confusion"} <= drawn, drawn
    # A paused start still shows every view at step 0.
    paused = RunSession(preset("spiral_mlp", epochs=None), device="cpu")
    paused.set_views({"boundary": {}})
    assert [m["type"] for m in paused.start()] == ["summary", "status", "boundary"]


def test_frames_follow_wall_time_not_steps_and_each_says_its_rate():
    session = RunSession(preset("playground_spiral", epochs=None), device="cpu")
    session.set_views({"boundary": {}, "layer_stats": {}})
    started = time.perf_counter()
    messages = train_for(session, 1.5)
    elapsed = time.perf_counter() - started
    steps = session.trainer.step_count
    boundary = [m for m in messages if m["type"] == "boundary"]
    stats = [m for m in messages if m["type"] == "activations"]
    # At most one frame per period (plus the first), however many steps a period holds.
    assert 1 <= len(boundary) <= 20 * elapsed + 2 and len(boundary) < steps
    assert 1 <= len(stats) <= 5 * elapsed + 2
    assert len({m["step"] for m in boundary}) == len(boundary)  # distinct steps: each frame shows something new
    for m in boundary + stats + [m for m in messages if m["type"] == "gradients"]:
        assert 0 < m["rate_hz"] <= 20


def test_refresh_draws_every_watched_view_now():
    session = RunSession(preset("lenet5_mnist", max_steps=50), device="cpu")
    session.set_views({"filters": {}, "feature_maps": {"index": 3}, "evaluation": {}})
    session.start()
    session.advance(max_steps=5, max_seconds=60)
    frames = session.refresh()
    assert {m["type"] for m in frames} == {"filters", "feature_maps", "confusion", "misclassified"}
    assert all(m["step"] == 5 for m in frames)
    assert next(m for m in frames if m["type"] == "feature_maps")["index"] == 3


def test_step_once_observes_the_step_and_refreshes_the_views():
    session = RunSession(preset("spiral_mlp", epochs=None), device="cpu")
    session.set_views({"layer_stats": {}, "boundary": {}})
    session.start()
    messages = session.step_once()
    kinds = [m["type"] for m in messages]
    assert {"activations", "gradients", "boundary"} <= set(kinds)
    assert all(m["step"] == 1 for m in messages if m["type"] in ("activations", "boundary"))


def test_views_that_do_not_apply_are_left_out_and_unknown_ones_refused():
    session = RunSession(preset("spiral_mlp", epochs=None), device="cpu")
    session.set_views({"filters": {}, "boundary": {}})  # no conv layer: filters silently not watched
    assert session.clock.watched == ["boundary"]
    with pytest.raises(ValueError, match="unknown live view 'mind_reading'"):
        session.set_views({"mind_reading": {}})
    with pytest.raises(ValueError, match="does not take 'colour'"):
        session.set_views({"boundary": {"colour": "red"}})
    assert session.clock.watched == ["boundary"]  # a refused request changes nothing


def test_a_speed_limit_caps_the_steps():
    session = RunSession(preset("playground_spiral", epochs=None), device="cpu")
    session.start()
    assert session.set_speed(10)[0]["values"] == {"steps_per_s": 10.0}
    started = time.perf_counter()
    train_for(session, 1.0)
    elapsed = time.perf_counter() - started
    # 10 steps a second, plus the burst a limit may bank (a quarter second, at least one step).
    assert session.trainer.step_count <= 10 * elapsed + 3
    assert session.next_step_in() <= 0.1 + 1e-6
    session.set_speed(None)
    train_for(session, 0.3)
    assert session.trainer.step_count > 100  # unlimited again
    for bad in (0, -1, math.inf, "fast", True):
        with pytest.raises(ValueError, match="steps_per_s"):
            session.set_speed(bad)


def test_rates_for_unknown_views_are_refused_before_anything_is_built():
    document = json.loads((MODELS_DIR / "spiral_mlp.json").read_text())
    document["probes"] = {"rates": {"boundary": 30, "telepathy": 5}}
    with pytest.raises(ExperimentError, match="telepathy"):
        RunSession(Experiment.model_validate(document), device="cpu")


def test_fast_intervals_are_merged_into_fewer_metrics_points_with_the_same_means():
    session = RunSession(preset("playground_spiral", max_steps=2000), device="cpu", max_metrics_hz=5)
    session.set_views({})
    messages = session.start()
    while not session.done:
        messages += session.advance(max_seconds=0.05)
    points = [m for m in messages if m["type"] == "metrics" and m["train_loss"] is not None]
    assert 1 <= len(points) < 200  # 2,000 steps logged every 10: fewer points than intervals
    assert points[-1]["step"] == 2000
    a = IntervalMetrics(train_loss=1.0, train_acc=0.5, examples_per_s=100.0, steps=10)
    b = IntervalMetrics(train_loss=4.0, train_acc=1.0, examples_per_s=50.0, steps=30)
    merged = _merge([(None, a), (None, b)], batch_size=10)
    assert merged.steps == 40 and merged.train_loss == pytest.approx((10 + 120) / 40)
    assert merged.train_acc == pytest.approx((5 + 30) / 40)
    assert merged.examples_per_s == pytest.approx(400 / (1.0 + 6.0))  # 400 examples in 1 s + 6 s
