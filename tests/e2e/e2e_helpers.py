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


