"""The frame clock: views due by wall time, rates that fit the probe budget, fairly, never zero."""

import pytest

from server.live import DEFAULT_VIEWS, LIVE_VIEWS, ON_DEMAND, VIEWS, describe
from server.live.base import MIN_RATE_HZ, FrameClock


def clock(budget=0.05, **targets):
    return FrameClock(dict(targets), budget)


def test_a_newly_watched_view_is_due_at_once_then_once_per_period():
    c = clock(boundary=20.0)
    c.watch(["boundary"])
    assert c.due(0.0, step=1) == ["boundary"]
    c.ran("boundary", 0.0001, now=0.0, step=1)
    assert c.due(0.01, step=2) == []  # 10 ms later: not yet (period 50 ms)
    assert c.due(0.051, step=3) == ["boundary"]


def test_a_frame_of_an_unchanged_model_is_not_due_again():
    c = clock(boundary=20.0)
    c.watch(["boundary"])
    c.ran("boundary", 0.0001, now=0.0, step=7)
    assert c.due(1.0, step=7) == []  # paused or throttled: same step, nothing new to draw
    assert c.due(1.0, step=8) == ["boundary"]


def test_only_watched_views_are_due():
    c = clock(boundary=20.0, weights=1.0)
    c.watch(["weights"])
    assert c.due(0.0, step=1) == ["weights"]
    c.watch([])
    assert c.due(10.0, step=2) == [] and not c.anything_due(10.0)


def test_rates_hold_their_targets_when_the_budget_allows():
    c = clock(budget=0.05, boundary=20.0, layer_stats=5.0)
    c.watch(["boundary", "layer_stats"])
    c.ran("boundary", 0.001, 0.0, 1)  # 20 x 1 ms = 2% of the time
    c.ran("layer_stats", 0.002, 0.0, 1)  # 5 x 2 ms = 1%
    assert c.rate("boundary") == 20.0 and c.rate("layer_stats") == 5.0


def test_an_expensive_view_is_slowed_to_fit_the_budget_and_a_cheap_one_keeps_its_rate():
    c = clock(budget=0.05, evaluation=2.0, filters=1.0)
    c.watch(["evaluation", "filters"])
    for _ in range(30):  # the smoothed costs settle
        c.ran("evaluation", 0.1, 0.0, 1)  # 100 ms a frame: 20% of the time at 2/s
        c.ran("filters", 0.0004, 0.0, 1)
    assert c.rate("filters") == 1.0  # max-min fair: the cheap view is not punished for the expensive one
    assert c.rate("evaluation") == pytest.approx((0.05 - 0.0004) / 0.1, rel=0.05)
    assert c.share() <= 0.05 + 1e-9


def test_a_watched_view_never_stops_however_expensive():
    c = clock(budget=0.05, boundary=20.0)
    c.watch(["boundary"])
    for _ in range(30):
        c.ran("boundary", 5.0, 0.0, 1)  # five seconds a frame
    assert c.rate("boundary") == MIN_RATE_HZ > 0


def test_invalidate_makes_a_view_due_at_once():
    c = clock(feature_maps=1.0)
    c.watch(["feature_maps"])
    c.ran("feature_maps", 0.001, 0.0, 5)
    assert c.due(0.1, 6) == []
    c.invalidate("feature_maps")  # another example was picked
    assert c.due(0.1, 5) == ["feature_maps"]


def test_the_table_lists_every_view_once_with_what_it_sends():
    rows = {row["name"]: row for row in describe()}
    assert set(rows) == set(VIEWS)
    assert set(DEFAULT_VIEWS) <= set(LIVE_VIEWS) and set(LIVE_VIEWS) <= set(VIEWS)
    assert {"layer_stats", "boundary", "filters", "weights", "evaluation"} <= set(DEFAULT_VIEWS)
    assert rows["boundary"]["default_hz"] >= 20 and rows["layer_stats"]["default_hz"] >= 5
    for name in ("filters", "weights", "feature_maps", "saliency", "gradcam", "attention"):
        assert rows[name]["default_hz"] >= 1, name
    assert {"gradient_check", "backprop_trace"} <= set(ON_DEMAND) - set(LIVE_VIEWS)
    messages = [m for row in rows.values() for m in row["messages"]]
    assert len(messages) == len(set(messages))  # each message type has one view that sends it


def test_view_arguments_are_checked():
    with pytest.raises(ValueError, match="does not take 'colour'"):
        VIEWS["feature_maps"].check_arguments({"colour": 1})
    with pytest.raises(ValueError, match="index must be an int"):
        VIEWS["feature_maps"].check_arguments({"index": "3"})
    assert VIEWS["gradcam"].check_arguments({"index": 3, "layer": "c1", "target": None}) == {"index": 3, "layer": "c1"}
