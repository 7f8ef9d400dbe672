"""The page in a real browser against a real server: what a teacher does in front of a class.

Each test drives the UI the way a person would (clicks, typing, drag and drop, drawing) and
reads the page's state through its test hook ``window.__dlplay`` (store, socket, tracker,
message counts). The fixtures fail a test whose page logged a console error or asked any
host but the local server. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from e2e_helpers import edit, load_preset, open_app, shoot, wait_valid

pytestmark = pytest.mark.e2e

LAYOUT_JS = """() => ({
  scrollW: document.scrollingElement.scrollWidth, scrollH: document.scrollingElement.scrollHeight,
  w: innerWidth, h: innerHeight,
})"""


def registry(page) -> dict:
    with urllib.request.urlopen(f"{page.base_url}/api/registry", timeout=10) as r:
        return json.load(r)


def layer_names(page) -> list[str]:
    return page.evaluate("() => window.__dlplay.store.experiment.network.layers.map(l => l.name)")


def received(page, kind: str) -> int:
    return page.evaluate("k => window.__dlplay.received(k)", kind)


def wait_step(page, step: int, timeout: int = 120_000) -> None:
    page.wait_for_function(
        "s => { const m = window.__dlplay.tracker.snapshot.metrics; return m !== null && m.step >= s; }",
        arg=step, timeout=timeout)


def wait_state(page, *states: str, timeout: int = 120_000) -> None:
    page.wait_for_function("ss => ss.includes(window.__dlplay.tracker.snapshot.state)", arg=list(states), timeout=timeout)


def test_page_loads_fits_and_builds_menus_from_the_registry(page):
    open_app(page)
    reg = registry(page)
    # the palette, the optimizer and dataset menus come from GET /api/registry, nothing hard-coded
    chips = page.eval_on_selector_all(".palette .chip", "els => els.map(e => e.dataset.kind)")
    assert chips == [entry["kind"] for entry in reg["layers"]]
    page.click("[data-side=train]")
    optimizers = page.eval_on_selector_all("select[name=optimizer] option", "els => els.map(e => e.value)")
    assert optimizers == [entry["kind"] for entry in reg["optimizers"]]
    page.click("[data-side=data]")
    datasets = page.eval_on_selector_all("select[name=dataset] option", "els => els.map(e => e.value)")
    assert set(datasets) == {d["name"] for d in reg["datasets"]}
    page.wait_for_selector(".preview canvas, .preview .sample-grid")
    # the whole tool fits a 1280x720 laptop screen: no page scroll
    box = page.evaluate(LAYOUT_JS)
    assert box["scrollW"] <= box["w"] and box["scrollH"] <= box["h"], box
    tabs = page.eval_on_selector_all(".tab", "els => els.map(e => e.dataset.tab)")
    assert tabs == ["training", "inside", "filters", "attention", "2d", "evaluation", "runs", "search"]
    shoot(page, "01_data_panel")
    page.click("[data-side=network]")
    shoot(page, "02_network_editor")


def test_preset_then_training_draws_the_curves(page):
    open_app(page)
    load_preset(page, "spiral_mlp")
    assert layer_names(page) == ["hidden", "out"]
    # Long enough that it is surely still running while we look; we stop it ourselves below.
    edit(page, "doc.train.max_steps = 200000; doc.train.log_every = 10;")
    page.click("[data-side=train]")
    page.wait_for_selector(".lr-plot")
    page.click("#start")
    wait_step(page, 60)
    assert received(page, "summary") == 1
    assert received(page, "metrics") >= 3
    # the loss chart is a drawn uPlot canvas with data in it
    page.wait_for_selector("[data-view=LossCurves] .uplot canvas", timeout=10_000)
    assert page.locator("#status").inner_text().startswith("step ")
    # the learning rate changes live: a `set` command, acknowledged by `hyperparams`
    assert page.locator(".live-badge").is_visible()
    page.fill("input[name=lr]", "0.05")
    page.wait_for_function("() => window.__dlplay.received('hyperparams') > 0", timeout=10_000)
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.metrics.lr === 0.05", timeout=20_000)
    shoot(page, "03_training_curves")
    # the page streams what the open tab shows, and a stopped run frees its model: look before stopping
    page.click(".tab[data-tab='2d']")
    page.wait_for_selector("[data-view=Boundary2D] canvas")
    page.click("#stop")
    wait_state(page, "stopped")
    assert "stopped" in page.locator("#status").inner_text()
    page.wait_for_timeout(500)
    shoot(page, "04_decision_boundary")
    page.click("#theme")
    page.click("[data-side=network]")
    page.wait_for_timeout(500)
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    shoot(page, "04b_dark_theme")
    page.click(".tab[data-tab=runs]")
    page.wait_for_timeout(800)
    shoot(page, "04c_runs")


def test_step_before_any_run_opens_one_paused_and_takes_one_step(page):
    """The Step button with nothing trained yet: a run opens paused at step 0 and takes exactly one step,
    whose loss is shown (log_every 10 would otherwise show nothing until step 10); each press is one more."""
    open_app(page)
    load_preset(page, "spiral_mlp")
    edit(page, "doc.train.max_steps = 200000; doc.train.log_every = 10;")
    wait_valid(page)
    assert page.is_enabled("#step")
    page.click("#step")
    wait_step(page, 1)
    wait_state(page, "paused")
    assert page.evaluate("() => window.__dlplay.tracker.snapshot.metrics.step") == 1
    loss = page.evaluate("() => window.__dlplay.tracker.snapshot.metrics.train_loss")
    assert 0.3 < loss < 2.0  # two classes, small initial weights: about ln 2 = 0.69
    page.click("#step")
    wait_step(page, 2)
    assert page.evaluate("() => window.__dlplay.tracker.snapshot.state") == "paused"
    page.click("#stop")
    wait_state(page, "stopped", "finished")


def test_small_cnn_filters_feature_maps_and_gradcam(page):
    open_app(page)
    load_preset(page, "lenet5_mnist")
    edit(page, "doc.train.max_steps = 2000;")
    page.click("#start")
    wait_step(page, 300, timeout=180_000)
    page.click("#pause")
    wait_state(page, "paused")

    # the page streams only what the open tab shows: opening Filters while paused draws them at once
    page.click(".tab[data-tab=filters]")
    page.wait_for_function("() => window.__dlplay.received('filters') >= 1", timeout=30_000)
    page.wait_for_selector("[data-view=Filters] canvas")
    page.locator("[data-view=FeatureMaps] button", has_text="Show").click()
    page.wait_for_function("() => window.__dlplay.received('feature_maps') > 0", timeout=30_000)
    page.wait_for_selector("[data-view=FeatureMaps] canvas")
    page.wait_for_timeout(500)
    shoot(page, "05_filters_feature_maps")

    page.click(".tab[data-tab=attention]")
    page.locator("[data-view=Attention] button", has_text="Grad-CAM").click()
    page.wait_for_function("() => window.__dlplay.received('gradcam') > 0", timeout=30_000)
    page.locator("[data-view=Attention] button", has_text="Saliency").click()
    page.wait_for_function("() => window.__dlplay.received('saliency') > 0", timeout=30_000)
    page.wait_for_selector("[data-view=Attention] canvas")
    page.wait_for_timeout(500)
    shoot(page, "06_gradcam_saliency")

    page.click(".tab[data-tab=inside]")
    page.wait_for_selector("[data-view=LayerStats] canvas")
    shoot(page, "07_inside_layer_stats")
    page.click("#stop")
    wait_state(page, "stopped", "finished")


def test_invalid_layer_shows_the_servers_message_on_the_node(page):
    open_app(page)
    load_preset(page, "lenet5_mnist")
    page.click("[data-node=conv2]")
    page.fill(".inspector [data-field=kernel_size] input", "40")
    node = page.locator(".node.error[data-node=conv2]")
    node.wait_for(timeout=10_000)
    assert "kernel" in " ".join(node.locator(".node-error").all_text_contents())
    assert "Fix" in page.locator(".inspector .error-box").inner_text()
    assert page.locator(".validity").inner_text() == "invalid"
    # the layers above keep their (last valid) shapes; the error does not blank the graph
    assert page.locator("[data-node=conv1] .shape-badge").count() == 1
    shoot(page, "08_inline_error")
    # undo from the keyboard (focus out of the form first) restores a valid network
    page.click(".graph-wrap", position={"x": 4, "y": 4})
    page.keyboard.press("Control+z")
    page.wait_for_selector(".node.error", state="detached", timeout=10_000)
    wait_valid(page)
    assert page.locator(".validity").inner_text() == "valid"
    kernel = page.evaluate("() => window.__dlplay.store.experiment.network.layers.find(l => l.name === 'conv2').kernel_size")
    assert kernel == 5


def test_editor_drag_drop_connect_delete_undo_redo(page):
    open_app(page)
    load_preset(page, "lenet5_mnist")
    before = layer_names(page)
    # drag a batch_norm from the palette onto the gap below pool1
    page.drag_and_drop(".chip[data-kind=batch_norm]", "[data-node=pool1]", target_position={"x": 80, "y": 46})
    page.wait_for_function("() => window.__dlplay.store.experiment.network.layers.length === %d" % (len(before) + 1))
    after = layer_names(page)
    assert after[after.index("pool1") + 1] == "batch_norm_1"
    wait_valid(page)
    assert page.locator("[data-node=batch_norm_1] .shape-badge").text_content() == "6×14×14"
    # click-to-append: with batch_norm_1 selected, a click adds after it
    page.click(".chip[data-kind=dropout]")
    assert layer_names(page)[after.index("batch_norm_1") + 1] == "dropout_1"
    # drag from conv1's output port onto conv2: a skip connection (conv2 now has two inputs)
    port = page.locator("[data-port=conv1]").bounding_box()
    target = page.locator("[data-node=conv2] .node-box").bounding_box()
    page.mouse.move(port["x"] + port["width"] / 2, port["y"] + port["height"] / 2)
    page.mouse.down()
    page.mouse.move(target["x"] + 40, target["y"] + 20, steps=8)
    page.mouse.up()
    inputs = page.evaluate("() => window.__dlplay.store.experiment.network.layers.find(l => l.name === 'conv2').inputs")
    assert inputs == ["dropout_1", "conv1"]
    page.locator(".node.error[data-node=conv2]").wait_for(timeout=10_000)  # a conv takes one input
    shoot(page, "09_skip_connection_error")
    # Delete removes the selected layer; undo brings everything back step by step
    page.click("[data-node=dropout_1]")
    page.keyboard.press("Delete")
    assert "dropout_1" not in layer_names(page)
    for _ in range(4):
        page.keyboard.press("Control+z")
    assert layer_names(page) == before
    page.keyboard.press("Control+Shift+z")
    assert "batch_norm_1" in layer_names(page)
    page.keyboard.press("Control+y")
    assert "dropout_1" in layer_names(page)
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    assert page.locator(".overlay[aria-label=help]").is_visible()
    shoot(page, "10_help")
    page.keyboard.press("Escape")
    assert not page.locator(".overlay[aria-label=help]").is_visible()


def test_shared_url_reproduces_the_state(page, browser):
    open_app(page)
    load_preset(page, "resnet_small")
    page.fill(".exp-name", "Residuals for period 3")
    page.click("[data-side=train]")
    page.fill("input[name=lr]", "0.0042")
    page.fill("[data-field=epochs] input", "3")
    page.click(".tab[data-tab=inside]")
    page.click("#theme")
    page.click("#projector")
    page.click("[data-side=data]")
    state = page.evaluate("() => JSON.stringify(window.__dlplay.store.state)")
    # the address bar follows every change by itself (debounced), no Share click needed
    hash_state = "() => window.__dlplay.decodeState(location.hash).then(x => JSON.stringify(x))"
    for _ in range(50):
        if page.evaluate(hash_state) == state:
            break
        page.wait_for_timeout(100)
    assert page.evaluate(hash_state) == state
    # encode -> decode is exact in the page too
    roundtrip = page.evaluate(
        "async () => { const d = window.__dlplay; const s = d.store.state;"
        " return JSON.stringify(await d.decodeState(await d.encodeState(s))) === JSON.stringify(s); }")
    assert roundtrip
    url = page.evaluate("() => location.href")
    assert len(url) < 8000, "the link should stay short enough to paste"

    context = browser.new_context(viewport={"width": 1280, "height": 720})
    other = context.new_page()
    errors: list[str] = []
    other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    other.goto(url)
    other.wait_for_function("window.__dlplay && window.__dlplay.ready", timeout=30_000)
    got = json.loads(other.evaluate("() => JSON.stringify(window.__dlplay.store.state)"))
    want = json.loads(state)
    assert got["ui"] == want["ui"]
    assert got["experiment"] == want["experiment"]
    assert json.dumps(got) == json.dumps(want)  # key order too: the same document, byte for byte
    assert other.locator(".exp-name").input_value() == "Residuals for period 3"
    assert other.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert other.locator(".tab[data-tab=inside]").get_attribute("aria-selected") == "true"
    other.wait_for_timeout(800)
    shoot(other, "11_shared_link_dark_projector")
    context.close()
    assert not errors


def test_dropped_socket_reconnects_and_resumes_without_gaps(page):
    open_app(page)
    load_preset(page, "spiral_mlp")
    # no image probes: every message is then replayed on resubscribe, so seq must be 1..N exactly
    edit(page, "doc.train.max_steps = 600; doc.train.log_every = 5; doc.probes.enabled = false;")
    page.click("#start")
    wait_step(page, 50)
    page.evaluate("() => window.__dlplay.socket.drop()")
    page.wait_for_function("() => window.__dlplay.socket.opens >= 2 && window.__dlplay.socket.status === 'open'",
                           timeout=20_000)
    wait_state(page, "finished")
    page.wait_for_function("() => window.__dlplay.received('final') === 1")
    seqs = page.evaluate("() => window.__dlplay.seqLog()")
    final_seq = page.evaluate("() => window.__dlplay.tracker.snapshot.final.seq")
    assert seqs == list(range(1, seqs[-1] + 1)), "messages missing or repeated across the reconnect"
    assert final_seq in seqs
    assert page.evaluate("() => window.__dlplay.socket.gaps") == 0
    shoot(page, "12_after_reconnect")


def test_draw_a_digit_and_get_a_prediction(page):
    open_app(page)
    load_preset(page, "lenet5_mnist")
    edit(page, "doc.train.max_steps = 2000;")
    page.click("#start")
    wait_step(page, 200, timeout=180_000)
    page.keyboard.press(" ")  # Space pauses (the Train button gave the focus back)
    wait_state(page, "paused")
    # the page streams what the open tab shows: on Inside, the weights (drawn at once while paused) and the
    # layer statistics, which a training step measures
    shown = received(page, "weights")
    page.click(".tab[data-tab=inside]")
    page.wait_for_function("n => window.__dlplay.received('weights') > n", arg=shown, timeout=20_000)
    probed = received(page, "activations")
    page.click("#step")  # one step while paused, with a frame of every watched view
    page.wait_for_function("n => window.__dlplay.received('activations') > n", arg=probed, timeout=20_000)
    assert page.evaluate("() => window.__dlplay.tracker.snapshot.state") == "paused"
    page.click(".tab[data-tab=evaluation]")
    pad = page.locator("[data-view=DrawDigit] canvas").first
    pad.wait_for()
    box = pad.bounding_box()
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for k in range(1, 13):
        page.mouse.move(x + k * 0.5, box["y"] + box["height"] * (0.2 + 0.05 * k))
    page.mouse.up()
    page.wait_for_function("() => window.__dlplay.received('prediction') > 0", timeout=20_000)
    page.wait_for_timeout(400)
    shoot(page, "13_draw_a_digit")
    page.click("#stop")
    wait_state(page, "stopped", "finished")


def test_import_export_and_upload_errors(page, tmp_path):
    open_app(page)
    load_preset(page, "spiral_mlp")
    with page.expect_download() as download:
        page.click("#export")
    exported = json.loads(download.value.path().read_text())
    assert exported == page.evaluate("() => window.__dlplay.store.experiment")
    exported["name"] = "imported copy"
    exported["network"]["layers"][0]["out_features"] = 7
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(exported))
    page.set_input_files("input[name=import]", str(path))
    page.wait_for_function("() => window.__dlplay.store.experiment.name === 'imported copy'")
    wait_valid(page)
    assert page.locator("[data-node=hidden] .shape-badge").text_content() == "7"

    page.click("[data-side=data]")
    page.watch.allow("status of 400")  # the browser logs the refused upload; the page shows it
    bad = tmp_path / "bad.csv"
    bad.write_text("this,is\nnot,numbers\n")
    page.set_input_files("input[name=upload]", str(bad))
    page.locator(".upload-status .error-box").wait_for(timeout=10_000)
    assert "bad.csv" in page.locator(".upload-status").inner_text()
    good = tmp_path / "points.csv"
    good.write_text("x,y,label\n" + "\n".join(f"{i / 50:.3f},{(i % 7) / 7:.3f},{i % 2}" for i in range(60)) + "\n")
    page.set_input_files("input[name=upload]", str(good))
    page.locator(".upload-status .ok-box").wait_for(timeout=10_000)
    assert page.evaluate("() => window.__dlplay.store.experiment.data.name").startswith("upload:")
    page.wait_for_function("() => !document.querySelector('.preview').classList.contains('loading')"
                           " && document.querySelector('.preview .legend').textContent.includes('1')")
    shoot(page, "14_upload")
