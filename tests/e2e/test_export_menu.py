"""The "Export run…" dialog (issue 12) in a real browser: download a run as code and as weights, start from them.

Lives beside the other browser tests for their fixtures (tests/e2e/conftest.py): a real
server, a real headless Chromium, console errors fail the test.
"""

from __future__ import annotations

import json

import pytest
from e2e_helpers import edit, load_preset, open_app, shoot

pytestmark = pytest.mark.e2e


def test_export_a_finished_run_and_start_from_its_weights(page, tmp_path):
    open_app(page)
    load_preset(page, "spiral_mlp")
    edit(page, "doc.train.max_steps = 40; doc.train.log_every = 10;")
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=120_000)
    run_id = page.evaluate("() => window.__dlplay.tracker.snapshot.runId")

    page.click("#runs-menu")
    row = page.locator(f"#export-dialog tr[data-run='{run_id}']")
    row.wait_for(timeout=10_000)
    assert "finished" in row.inner_text()
    shoot(page, "30_export_dialog")
    with page.expect_download() as download:
        row.locator("button[data-format=pytorch]").click()
    assert download.value.suggested_filename == "one_hidden_layer_on_the_spiral.py"
    code = download.value.path().read_text()
    assert "class Net(nn.Module):" in code and f"run {run_id}" in code
    with page.expect_download() as weights:
        row.locator("button[data-format=safetensors]").click()
    assert weights.value.suggested_filename.endswith(".safetensors")
    saved = tmp_path / "weights.safetensors"
    weights.value.save_as(saved)

    # Start from the run's weights: the document gets train.init_from, and the next run uses it.
    row.locator("text=Start from it").click()
    page.wait_for_function("id => window.__dlplay.store.experiment.train.init_from?.run_id === id", arg=run_id)
    assert page.locator("#export-dialog").is_hidden()
    page.click("[data-side=train]")
    page.click("text=Advanced: clipping")
    page.wait_for_timeout(300)
    page.locator("[data-field=init_from]").scroll_into_view_if_needed()
    shoot(page, "31_init_from_in_training_panel")

    # A weights file from disk: uploaded, its experiment loaded, init_from pointing at the upload.
    page.click("#runs-menu")
    page.set_input_files("input[name=weights]", str(saved))
    page.wait_for_function("() => !!window.__dlplay.store.experiment.train.init_from?.upload_id", timeout=10_000)
    experiment = page.evaluate("() => window.__dlplay.store.experiment")
    assert experiment["name"] == "One hidden layer on the spiral"
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=120_000)
    assert json.dumps(experiment["train"]["init_from"]).count("upload_id") == 1
