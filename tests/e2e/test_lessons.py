"""Every lesson preset walked through in the page: chosen from the lesson list, each step's button
pressed in order, and what the button should cause waited for.

- apply: the document's fields take the step's values and the editor's validation says "valid";
- train / step: a run starts and its metrics arrive (then it is stopped: a short run is enough);
- probe: the on-demand view's reply message arrives for the shown run;
- compare: one run per value starts from the same document, and the Runs overlay draws >= 2 runs
  with metric points (then all of them are stopped);
- show: the tab or side panel the step names opens.

One screenshot per preset in test-artifacts/screenshots/lessons/<preset>.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_helpers import SCREENSHOTS, ROOT, open_app, wait_valid

pytestmark = pytest.mark.e2e

PRESETS = sorted(p.stem for p in (ROOT / "models").glob("*.json"))
LESSON_PRESETS = [p for p in PRESETS if json.loads((ROOT / "models" / f"{p}.json").read_text()).get("lesson")]
# Fields written as a bare kind ("relu") that the page spells out ({"kind": "relu"}): state.ts normalizeExperiment.
SHORTHAND_FIELDS = {"activation", "weight_init", "bias_init", "optimizer", "schedule"}
RUN_TIMEOUT_MS = 90_000  # a run's first metrics on a busy 2-core machine (MNIST presets load their data first)


def _normalized(value, key=None):
    if isinstance(value, str) and key in SHORTHAND_FIELDS:
        return {"kind": value}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v, k) for k, v in value.items()}
    return value


def _contains(actual, expected) -> bool:
    """``expected`` (a step's value, normalized) is in ``actual``: equal, or every key of it equal (the page
    keeps a sub-object's other fields, e.g. defaults the server filled in)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_contains(a, e) for a, e in zip(actual, expected))
    return actual == expected


def _value_at(doc, path: str):
    node = doc
    for key in path.split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _press(page, index: int) -> None:
    page.click(f"#lesson-panel .lesson-step[data-step='{index}'] .lesson-do")


def _stop_shown_run(page) -> None:
    """Stop the shown run if it still trains, and wait until the server says it ended."""
    # the Stop button's command, sent from the page: the run may end on its own between a check and a click
    page.evaluate("""() => { const d = window.__dlplay; const s = d.tracker.snapshot;
        if (s.runId && ['queued', 'running', 'paused'].includes(s.state)) d.socket.send({ cmd: 'stop', run_id: s.runId }); }""")
    page.wait_for_function(
        "() => !['starting', 'queued', 'running', 'paused'].includes(window.__dlplay.tracker.snapshot.state)", timeout=RUN_TIMEOUT_MS)


def _wait_metrics_of_new_run(page, before: str | None) -> str:
    page.wait_for_function(
        "before => { const s = window.__dlplay.tracker.snapshot; return s.runId && s.runId !== before && s.metrics !== null; }",
        arg=before, timeout=RUN_TIMEOUT_MS)
    return page.evaluate("() => window.__dlplay.tracker.snapshot.runId")


@pytest.mark.parametrize("preset", LESSON_PRESETS)
def test_lesson_walkthrough(page, preset):
    spec = json.loads((ROOT / "models" / f"{preset}.json").read_text())
    lesson = spec["lesson"]
    open_app(page)

    # the lesson list: in the curriculum's order, this preset under its lesson number
    page.click("#lessons")
    numbers = page.eval_on_selector_all(".lesson-row", "rows => rows.map(r => Number(r.dataset.lesson))")
    assert numbers == sorted(numbers) and numbers[0] == 1
    page.click(f".lesson-pick[data-preset='{preset}']")
    page.wait_for_selector("#lesson-panel:not([hidden])")
    page.wait_for_function("name => window.__dlplay.store.experiment.name === name", arg=spec["name"])
    wait_valid(page)
    assert page.inner_text("#lesson-panel .lesson-title") == lesson["title"]
    assert page.locator("#lesson-panel .lesson-step").count() == len(lesson["steps"])
    # the editor holds the document without its lesson block (the panel guides the lesson)
    assert page.evaluate("() => 'lesson' in window.__dlplay.store.experiment") is False

    for index, step in enumerate(lesson["steps"]):
        assert page.get_attribute(f"#lesson-panel .lesson-step[data-step='{index}']", "class").count("current") == 1
        action = page.get_attribute(f"#lesson-panel .lesson-step[data-step='{index}'] .lesson-do", "data-action")
        shown_before = page.evaluate("() => window.__dlplay.tracker.snapshot.runId")

        if step.get("compare"):
            assert action == "compare"
            _press(page, index)
            values = step["compare"]["values"]
            page.wait_for_function("n => window.__dlplay.lessons.comparedRuns().filter(Boolean).length >= Math.min(n, 2)",
                                   arg=len(values), timeout=RUN_TIMEOUT_MS)
            page.wait_for_selector("[data-view=RunsOverlay]:not([hidden])")
            # the overlay draws at least two of the compared runs, each with enough metric points to be a curve
            page.wait_for_function(
                """() => { const el = document.querySelector('[data-view=RunsOverlay]');
                           return el && Number(el.dataset.runs || 0) >= 2; }""", timeout=RUN_TIMEOUT_MS)
            page.wait_for_function(
                """async () => { const ids = window.__dlplay.lessons.comparedRuns().filter(Boolean);
                   const r = await fetch(`/api/runs/compare?ids=${ids.join(',')}`).then(r => r.json());
                   return r.runs.filter(run => run.metrics.length >= 10).length >= 2; }""", timeout=RUN_TIMEOUT_MS, polling=500)
            names = page.evaluate(
                """async () => { const ids = window.__dlplay.lessons.comparedRuns().filter(Boolean);
                   const r = await fetch(`/api/runs/compare?ids=${ids.join(',')}`).then(r => r.json());
                   return r.runs.map(run => run.name); }""")
            assert set(names) <= set(step["compare"]["labels"])
            assert page.evaluate("() => window.__dlplay.store.ui.tab") == "runs"
            # the step's "Stop all" (short runs may have finished already: then there is no button)
            page.evaluate("() => window.__dlplay.lessons.stopCompared()")
            page.wait_for_function(
                "() => !['starting', 'queued', 'running', 'paused'].includes(window.__dlplay.tracker.snapshot.state)",
                timeout=RUN_TIMEOUT_MS)
        elif step.get("probe"):
            assert action == "probe"
            view = step["probe"]["view"]
            seen = page.evaluate("t => window.__dlplay.received(t)", view)
            _press(page, index)
            page.wait_for_function(
                "([t, n]) => window.__dlplay.tracker.snapshot.runId && window.__dlplay.received(t) > n",
                arg=[view, seen if shown_before else 0], timeout=RUN_TIMEOUT_MS)
            page.wait_for_selector(f"#lesson-panel .lesson-step[data-step='{index}'] .lesson-state.ok")
        elif step.get("apply") or step.get("load_from_last_run"):
            assert action == "apply"
            _press(page, index)
            wait_valid(page)
            doc = page.evaluate("() => window.__dlplay.store.experiment")
            for change in step.get("apply", []):
                key = change["path"].split(".")[-1]
                assert _contains(_value_at(doc, change["path"]), _normalized(change["value"], key)), change["path"]
            if step.get("load_from_last_run"):
                init = doc["train"]["init_from"]
                assert init["layers"] == step["load_from_last_run"]
                assert init["run_id"] == shown_before  # the run this lesson trained last
            assert page.get_attribute(".validity", "class").split()[-1] == "ok"
        elif action in ("train", "step"):
            _press(page, index)
            _wait_metrics_of_new_run(page, shown_before)
            if action == "step":
                page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'paused'", timeout=RUN_TIMEOUT_MS)
            _stop_shown_run(page)
        else:
            assert action == "show"
            _press(page, index)
        page.wait_for_selector(f"#lesson-panel .lesson-step[data-step='{index}'].done")

    assert page.locator("#lesson-panel .lesson-step.done").count() == len(lesson["steps"])
    _stop_shown_run(page)
    out = SCREENSHOTS / "lessons"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{preset}.png"))


def test_every_preset_teaches_a_lesson():
    """The walk-through covers every preset: each one has a lesson block."""
    assert LESSON_PRESETS == PRESETS
