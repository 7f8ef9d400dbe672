"""Live views animate while the run trains: the server's frame clock streams what the open tab shows
and the page draws every frame.

The views write the training step of the frame they paint to ``data-step`` on their root, at paint
time; the tests collect the distinct values over a stretch of training. Counting drawn steps is not
a speed test: the frame clock targets 20 boundary frames, 5 layer-statistics frames and 1 filter
frame per second, and the thresholds are a fraction of that.
"""

from __future__ import annotations

import pytest
from e2e_helpers import distinct_steps_drawn, load_preset, open_app, set_length, shoot, wait_drawn

pytestmark = pytest.mark.e2e

BOUNDARY = "[data-view=Boundary2D]"
LAYER_STATS = "[data-view=LayerStats]"
FILTERS = "[data-view=Filters]"


def run_state(page) -> str:
    return page.evaluate("() => window.__dlplay.tracker.snapshot.state")


def test_spiral_boundary_and_inside_animate_while_training(page):
    open_app(page)
    load_preset(page, "spiral_mlp")
    # trains until Stop, as TensorFlow Playground does; slow at first so the first frames are early steps
    set_length(page, "until_stopped")
    page.click("[data-side=network]")  # the network beside its boundary, for the screenshots
    page.select_option("#speed", "10")
    page.click(".tab[data-tab='2d']")
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'running'", timeout=60_000)
    assert page.evaluate("() => window.__dlplay.tracker.snapshot.summary.total_steps") is None
    # the page says what it watches: the 2D tab streams the boundary
    assert "boundary" in page.evaluate("() => window.__dlplay.watching()")
    wait_drawn(page, BOUNDARY, 2)
    early = int(page.get_attribute(BOUNDARY, "data-step"))
    shoot(page, "20_spiral_boundary_early")
    # the speed was applied: at 10 steps/s the run is still near its start
    assert early < 200, f"the first boundary frames should come from early steps at 10 steps/s, got step {early}"
    assert page.locator(f"{BOUNDARY} .viz-frame-rate").inner_text().endswith("fps")

    page.select_option("#speed", "max")
    page.wait_for_function("() => document.querySelector('#speed').value === 'max'")
    steps = distinct_steps_drawn(page, BOUNDARY, seconds=3)
    assert len(steps) >= 30, f"the 2D view drew {len(steps)} distinct steps in 3 s of training: {steps}"
    assert steps == sorted(steps) and steps[-1] > early
    shoot(page, "21_spiral_boundary_middle")

    page.click(".tab[data-tab=inside]")
    page.wait_for_function("() => 'layer_stats' in window.__dlplay.watching()")
    wait_drawn(page, LAYER_STATS, 1)
    inside = distinct_steps_drawn(page, LAYER_STATS, seconds=3)
    assert len(inside) >= 10, f"the Inside tab drew {len(inside)} distinct steps in 3 s of training: {inside}"
    # the activation heat strips have a row per layer (hidden, out) and a column per frame drawn
    heat = page.locator(f"{LAYER_STATS} [data-chart=activations] canvas")
    assert heat.get_attribute("data-rows") == "2"
    assert int(heat.get_attribute("data-columns")) >= len(inside)
    shoot(page, "22_inside_live")

    # late: the lesson's 1,500 steps separate the arms; the boundary has formed
    page.click(".tab[data-tab='2d']")
    page.wait_for_function(
        "s => Number(document.querySelector(s).dataset.step) >= 1500", arg=BOUNDARY, timeout=120_000)
    late_acc = page.wait_for_function(
        "() => { const m = window.__dlplay.tracker.snapshot.metrics; return m && m.step >= 1500 && m.val_acc !== null && m.val_acc; }",
        timeout=60_000).json_value()
    shoot(page, "23_spiral_boundary_late")
    assert late_acc >= 0.9, f"validation accuracy {late_acc} after 1,500 steps"
    assert run_state(page) == "running", "an until-stopped run must still be training"
    page.click("#stop")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'stopped'", timeout=30_000)


def test_pause_and_step_refresh_the_2d_view(page):
    open_app(page)
    load_preset(page, "spiral_mlp")
    set_length(page, "until_stopped")
    page.click(".tab[data-tab='2d']")
    page.click("#start")
    wait_drawn(page, BOUNDARY, 1)
    page.click("#pause")
    # Pausing sends a frame of every watched view: a boundary frame after the `status paused`...
    page.wait_for_function("""() => { const d = window.__dlplay, s = d.last('status'), b = d.last('boundary');
                                      return s && s.state === 'paused' && b && b.seq > s.seq; }""", timeout=30_000)
    paused_at = page.evaluate("() => window.__dlplay.last('boundary').step")
    # ...and the view draws it
    page.wait_for_function("([s, n]) => Number(document.querySelector(s).dataset.step) === n",
                           arg=[BOUNDARY, paused_at], timeout=10_000)
    shoot(page, "25_spiral_paused")
    # one Step: one more frame, one step later
    page.click("#step")
    page.wait_for_function("([s, n]) => Number(document.querySelector(s).dataset.step) === n + 1",
                           arg=[BOUNDARY, paused_at], timeout=30_000)
    assert run_state(page) == "paused"
    page.click("#stop")


def test_lenet_filters_refresh_by_themselves(page):
    open_app(page)
    load_preset(page, "lenet5_mnist")
    set_length(page, "until_stopped")
    page.click(".tab[data-tab=filters]")
    page.click("#start")
    assert page.evaluate("() => Object.keys(window.__dlplay.watching()).sort()") == ["feature_maps", "filters"]
    wait_drawn(page, FILTERS, 1, timeout=120_000)
    steps = distinct_steps_drawn(page, FILTERS, seconds=5)
    assert len(steps) >= 3, f"the filters changed {len(steps)} times in 5 s of training: {steps}"
    # the feature maps of the picked example follow the training too, with no button pressed
    wait_drawn(page, "[data-view=FeatureMaps]", 2, timeout=60_000)
    shoot(page, "24_lenet_filters_live")
    page.click("#stop")
