"""Helpers the end-to-end tests share: open the app, load presets, edit the document, screenshots."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def shoot(page, name: str) -> Path:
    """Save a screenshot as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_app(page, hash_: str = "") -> None:
    """Load the page and wait until it has its registry, state and socket."""
    page.goto(f"{page.base_url}/{hash_}")
    page.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)
    page.wait_for_function("window.__dlplay.socket.status === 'open'", timeout=15_000)
    wait_valid(page)


def wait_valid(page, timeout: int = 20_000) -> None:
    """Wait for the live validation of the current document to come back."""
    page.wait_for_function("document.querySelector('.validity') && !document.querySelector('.validity.pending')", timeout=timeout)


def load_preset(page, preset_id: str) -> None:
    page.select_option("#preset", preset_id)
    page.wait_for_function(
        "id => window.__dlplay.store.experiment.name === window.__dlplay.presetName(id)", arg=preset_id, timeout=10_000)
    wait_valid(page)


def edit(page, js_body: str) -> None:
    """Change the document in the page's store: ``js_body`` runs with ``doc`` bound (an undoable edit)."""
    page.evaluate(f"() => window.__dlplay.store.edit((doc) => {{ {js_body} }})")
    wait_valid(page)


def start_and_wait(page, condition: str, timeout: int = 120_000) -> None:
    """Click Train and wait for a JS condition over `d` (window.__dlplay)."""
    page.click("#start")
    page.wait_for_function(f"() => {{ const d = window.__dlplay; return {condition}; }}", timeout=timeout)




def set_length(page, mode: str, value: float | None = None) -> None:
    """Choose how long to train in the Training panel: "until_stopped", "epochs" or "steps" (with ``value``)."""
    page.click("[data-side=train]")
    page.select_option("select[name=length_mode]", mode)
    if value is not None:
        page.fill("[data-field=epochs] input", str(value))
    wait_valid(page)


def wait_drawn(page, selector: str, frames: int = 1, timeout: int = 60_000) -> int:
    """Wait until the live view at ``selector`` has painted ``frames`` frames; the step it shows now."""
    page.wait_for_function(
        "([s, n]) => { const el = document.querySelector(s); return el && Number(el.dataset.frames || 0) >= n; }",
        arg=[selector, frames], timeout=timeout)
    return int(page.get_attribute(selector, "data-step"))


# Collects the distinct values of a view's data-step (written when a frame is painted) for `ms`.
_DISTINCT_STEPS_JS = """([selector, ms]) => new Promise((resolve) => {
  const el = document.querySelector(selector);
  const steps = new Set();
  const note = () => { if (el.dataset.step !== undefined) steps.add(Number(el.dataset.step)); };
  const observer = new MutationObserver(note);
  observer.observe(el, { attributes: true, attributeFilter: ["data-step"] });
  setTimeout(() => { observer.disconnect(); resolve([...steps].sort((a, b) => a - b)); }, ms);
})"""


def distinct_steps_drawn(page, selector: str, seconds: float) -> list[int]:
    """The distinct training steps the live view at ``selector`` painted during the next ``seconds``."""
    return page.evaluate(_DISTINCT_STEPS_JS, [selector, int(seconds * 1000)])


def points_drawn(page) -> int:
    """Metric points the loss chart has drawn (LossCurves' data-points)."""
    return int(page.get_attribute("[data-view=LossCurves]", "data-points") or 0)


def stored_metric_count(page, run_id: str) -> int:
    """How many metric points the server holds for ``run_id`` (GET /api/runs/{id}/metrics, the page's session)."""
    return page.evaluate(
        "id => fetch(`/api/runs/${id}/metrics`).then(r => r.json()).then(j => j.points.length)", run_id)
