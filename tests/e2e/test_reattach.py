"""The page keeps its runs: the run id rides in the address, and a reload, Back (away and back again)
or a second tab reattaches to the live run with `subscribe {run_id, after_seq: 0}`; the server's
replay brings back the whole curve. A finished run reopens from its stored history, from the
address or from the Runs tab.

"The whole curve" is checked against the server: the loss chart's drawn points
(``data-points``) equal the run's metric count from GET /api/runs/{id}/metrics once the run is
paused (a running run keeps adding points, so before that the chart must have at least every
point that existed when the page came back).
"""

from __future__ import annotations

import pytest
from e2e_helpers import load_preset, open_app, points_drawn, set_length, shoot, stored_metric_count, wait_drawn

pytestmark = pytest.mark.e2e

FILTERS = "[data-view=Filters]"


def start_lenet(page, min_points: int = 8) -> str:
    """Start LeNet-5 on MNIST (until stopped); the run id once `min_points` metric points are drawn."""
    open_app(page)
    load_preset(page, "lenet5_mnist")
    set_length(page, "until_stopped")
    page.click("#start")
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points || 0) >= n",
                           arg=min_points, timeout=120_000)
    run_id = page.evaluate("() => window.__dlplay.tracker.snapshot.runId")
    # the address names the run, next to the shared state
    page.wait_for_function("id => location.hash.includes('&run=' + id)", arg=run_id, timeout=10_000)
    return run_id


def wait_ready(page) -> None:
    page.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)


def assert_reattached(page, run_id: str, at_least: int) -> None:
    """The page shows `run_id` again, live, with every point it had before and the live views streaming."""
    page.wait_for_function("id => window.__dlplay.tracker.snapshot.runId === id", arg=run_id, timeout=20_000)
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'running'", timeout=30_000)
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points || 0) >= n",
                           arg=at_least, timeout=30_000)
    # the run goes on in the page: new points keep arriving
    now = points_drawn(page)
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points) > n",
                           arg=now, timeout=60_000)
    # and the live views stream again (the page re-sent what its tab watches)
    page.click(".tab[data-tab=filters]")
    wait_drawn(page, FILTERS, 2, timeout=60_000)
    page.click(".tab[data-tab=training]")


def assert_whole_curve(page, run_id: str) -> None:
    """Pause, then the chart's points are exactly the server's metric history."""
    page.click("#pause")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'paused'", timeout=30_000)
    page.wait_for_timeout(200)  # a metrics message in flight when the pause landed
    stored = stored_metric_count(page, run_id)
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points) === n",
                           arg=stored, timeout=10_000)
    assert points_drawn(page) == stored


def test_reload_reattaches_with_the_full_curve(page):
    run_id = start_lenet(page)
    before = stored_metric_count(page, run_id)
    page.reload()
    wait_ready(page)
    assert_reattached(page, run_id, before)
    shoot(page, "30_reattached_after_reload")
    assert_whole_curve(page, run_id)
    page.click("#stop")


def test_back_after_leaving_reattaches(page):
    run_id = start_lenet(page)
    before = stored_metric_count(page, run_id)
    page.goto("about:blank")  # away from the page (a JSON page would make the browser ask for a favicon)...
    page.go_back()  # ...and back
    wait_ready(page)
    assert_reattached(page, run_id, before)
    assert_whole_curve(page, run_id)
    page.click("#stop")


def test_a_second_tab_follows_the_same_run(page):
    run_id = start_lenet(page)
    before = stored_metric_count(page, run_id)
    second = page.context.new_page()  # same browser, same session cookie
    errors: list[str] = []
    second.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    second.on("pageerror", lambda e: errors.append(str(e)))
    second.goto(page.url)
    wait_ready(second)
    assert_reattached(second, run_id, before)
    shoot(second, "31_second_tab")
    # either tab controls the run: pause from the second, both see it
    assert_whole_curve(second, run_id)
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'paused'", timeout=30_000)
    page.bring_to_front()  # a background tab paints nothing (no animation frames) until it is shown
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points) === n",
                           arg=points_drawn(second), timeout=10_000)
    second.click("#stop")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'stopped'", timeout=30_000)
    assert not errors, errors


def test_a_finished_run_reopens_from_the_runs_tab(page):
    open_app(page)
    load_preset(page, "spiral_mlp")
    set_length(page, "steps", 300)
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=120_000)
    first = page.evaluate("() => window.__dlplay.tracker.snapshot.runId")
    first_points = stored_metric_count(page, first)
    # a second run replaces it in the page...
    set_length(page, "steps", 100)
    page.click("#start")
    page.wait_for_function("id => { const s = window.__dlplay.tracker.snapshot; return s.runId !== id && s.state === 'finished'; }",
                           arg=first, timeout=120_000)
    # ...and the Runs tab opens the first again, alone (no comparison needed)
    page.click(".tab[data-tab=runs]")
    page.locator(f".viz-run-open[data-run='{first}']").click()
    page.wait_for_function("id => window.__dlplay.tracker.snapshot.runId === id", arg=first, timeout=10_000)
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=20_000)
    assert page.evaluate("() => window.__dlplay.store.experiment.train.max_steps") == 300
    assert page.evaluate("() => window.__dlplay.store.ui.tab") == "training"
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points) === n",
                           arg=first_points, timeout=20_000)
    assert "finished after 300 steps" in page.locator("#status").inner_text()
    shoot(page, "32_reopened_run")
    # the address names it, so a reload shows it again from its stored history
    page.wait_for_function("id => location.hash.includes('&run=' + id)", arg=first, timeout=10_000)
    page.reload()
    wait_ready(page)
    page.wait_for_function("id => { const s = window.__dlplay.tracker.snapshot; return s.runId === id && s.state === 'finished'; }",
                           arg=first, timeout=20_000)
    page.wait_for_function("n => Number(document.querySelector('[data-view=LossCurves]').dataset.points) === n",
                           arg=first_points, timeout=20_000)


def test_a_link_to_another_sessions_run_keeps_the_state(page, browser):
    run_id = start_lenet(page, min_points=1)
    url = page.url
    page.click("#stop")
    # another browser (another session cookie) opening the same address: the state loads, the run does not
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    other = context.new_page()
    other.goto(url)
    wait_ready(other)
    other.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'idle'", timeout=20_000)
    assert other.evaluate("() => window.__dlplay.tracker.snapshot.runId") is None
    assert "not available" in other.locator(".toast").first.inner_text()
    assert other.evaluate("() => window.__dlplay.store.experiment.name") == page.evaluate(
        "() => window.__dlplay.store.experiment.name")
    other.wait_for_function("id => !location.hash.includes('run=' + id)", arg=run_id, timeout=10_000)
    context.close()
