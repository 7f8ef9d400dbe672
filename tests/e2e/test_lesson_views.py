"""The lesson views in a real browser: the optimizer race (lesson 9), FGSM (20), transfer learning (19),
batch size and the noise of the loss (8), learning-rate schedules (10).

Each test drives the page as a teacher would and checks that what is drawn agrees with the
messages the server sent (the number of paths = the number of racers, the predictions shown =
the ``fgsm`` message's, the badged layers = ``train.freeze``, the overlay's points = the runs'
logged points). Screenshots go to test-artifacts/screenshots/lesson_views/ at 1280x720 and
1920x1080, light and dark. Runs are kept short (a few dozen steps): these tests check the views,
the lessons' effects are proved in tests/lessons/.
"""

from __future__ import annotations

import pytest

from e2e_helpers import edit, load_preset, open_app, shoot

pytestmark = pytest.mark.e2e

SHOTS = "lesson_views"
FULL_HD = {"width": 1920, "height": 1080}
LAPTOP = {"width": 1280, "height": 720}


def snap(page, name: str, *, theme: str = "light", viewport: dict | None = None, view: str | None = None) -> None:
    """A screenshot in a theme and at a size, ``view``'s top at the top of its tab (the layout settles first)."""
    page.set_viewport_size(viewport or LAPTOP)
    page.evaluate("t => window.__dlplay.store.setUI({ theme: t })", theme)
    page.wait_for_timeout(400)
    if view is not None:
        top(page, view)
        page.wait_for_timeout(200)
    shoot(page, f"{SHOTS}/{name}")


def train_to_end(page, steps: int, timeout: int = 120_000) -> str:
    """Train the document for ``steps`` steps; the run's id once it has finished."""
    edit(page, f"doc.train.max_steps = {steps};")
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=timeout)
    return page.evaluate("() => window.__dlplay.tracker.snapshot.runId")


def top(page, view: str) -> None:
    """Scroll the view's top to the top of its tab."""
    page.evaluate("v => document.querySelector(`[data-view=${v}]`).scrollIntoView({ block: 'start' })", view)


def show_tab(page, tab: str) -> None:
    page.click(f".tab[data-tab={tab}]")


# ---------------------------------------------------------------------------
# Lesson 9: the optimizer race
# ---------------------------------------------------------------------------

RACE_CHECK_JS = """() => {
  const msg = window.__dlplay.last('optimizer_race');
  const root = document.querySelector('[data-view=OptimizerRace]');
  const lines = [...root.querySelectorAll('svg.lv-race-paths polyline')];
  const rows = [...root.querySelectorAll('.lv-race-legend tbody tr')];
  return {
    racers: msg.racers.map(r => r.optimizer),
    lines: lines.map(l => l.dataset.optimizer),
    pointsMatch: lines.every(l => {
      const r = msg.racers.find(r => r.optimizer === l.dataset.optimizer);
      return r && Number(l.dataset.points) === r.points.length;
    }),
    lossesMatch: rows.every(row => {
      const r = msg.racers.find(r => r.optimizer === row.dataset.optimizer);
      return r && Number(row.querySelector('.lv-loss').dataset.loss) === r.losses[r.losses.length - 1];
    }),
    rows: rows.length,
    minima: root.querySelectorAll('.lv-race-minimum').length,
    msgMinima: msg.minima.length,
    step: Number(root.dataset.step), steps: msg.steps, fn: msg.function,
  };
}"""


def race_view(page):
    return page.locator("[data-view=OptimizerRace]")


def wait_race_end(page, count: int, *, skip: bool = False) -> None:
    """Wait until the ``count``-th race has been drawn to its last step (``skip``: drag the scrubber to the end)."""
    if skip:
        page.wait_for_function("n => document.querySelector('[data-view=OptimizerRace]').dataset.race === String(n)",
                               arg=count, timeout=60_000)
        page.evaluate("""() => { const s = document.querySelector('[data-view=OptimizerRace] .lv-scrubber');
          s.value = s.max; s.dispatchEvent(new Event('input')); }""")
    page.wait_for_function(
        "n => { const r = document.querySelector('[data-view=OptimizerRace]');"
        " return r.dataset.race === String(n) && r.dataset.step === r.dataset.steps; }", arg=count, timeout=60_000)


def test_optimizer_race_draws_one_path_per_optimizer_step_by_step(page):
    open_app(page)
    load_preset(page, "optimizer_race")
    train_to_end(page, 20)
    show_tab(page, "training")
    view = race_view(page)
    view.scroll_into_view_if_needed()
    view.locator("button[data-action=race]").click()
    # the paths grow while the race plays: a step between the start and the end is drawn first
    page.wait_for_function(
        "() => { const r = document.querySelector('[data-view=OptimizerRace]'); const s = Number(r.dataset.step);"
        " return s > 0 && s < Number(r.dataset.steps); }", timeout=60_000)
    wait_race_end(page, 1)
    got = page.evaluate(RACE_CHECK_JS)
    assert got["fn"] == "valley" and len(got["racers"]) == 7
    assert got["lines"] == got["racers"]  # one polyline per optimizer, in the server's order
    assert got["pointsMatch"] and got["lossesMatch"] and got["rows"] == 7
    assert got["minima"] == got["msgMinima"] == 1
    snap(page, "race_valley_1280_light", view="OptimizerRace")

    # a racer unticked in the legend leaves the plot
    view.locator("tr[data-optimizer=sgd] input[type=checkbox]").uncheck()
    page.wait_for_function("() => document.querySelectorAll('[data-view=OptimizerRace] polyline').length === 6")
    view.locator("tr[data-optimizer=sgd] input[type=checkbox]").check()

    # bad settings are explained and nothing is sent
    view.locator("input[name=race_steps]").fill("5000")
    view.locator("button[data-action=race]").click()
    assert "from 1 to 1000" in view.locator(".viz-note").first.inner_text()
    assert page.evaluate("() => window.__dlplay.received('optimizer_race')") == 1

    # the saddle with one learning rate for all, 60 steps: replay goes back to step 0 and plays again
    view.locator("input[name=race_steps]").fill("60")
    view.locator("input[name=race_lr]").fill("0.05")
    view.locator("select").first.select_option("saddle")
    view.locator("button[data-action=race]").click()
    wait_race_end(page, 2, skip=True)
    got = page.evaluate(RACE_CHECK_JS)
    assert got["fn"] == "saddle" and got["steps"] == 60 and got["lines"] == got["racers"]
    assert got["pointsMatch"] and got["lossesMatch"] and got["msgMinima"] == got["minima"] == 2, got
    assert page.evaluate("() => window.__dlplay.last('optimizer_race').racers.every(r => r.lr === 0.05)")
    view.locator("button[data-action=replay]").click()
    page.wait_for_function("() => Number(document.querySelector('[data-view=OptimizerRace]').dataset.step) < 60")
    wait_race_end(page, 2, skip=True)

    view.locator("select").first.select_option("rosenbrock")
    view.locator("input[name=race_steps]").fill("")
    view.locator("input[name=race_lr]").fill("")
    view.locator("button[data-action=race]").click()
    wait_race_end(page, 3, skip=True)
    assert page.evaluate(RACE_CHECK_JS)["lines"] == page.evaluate(RACE_CHECK_JS)["racers"]
    snap(page, "race_rosenbrock_1920_dark", theme="dark", viewport=FULL_HD, view="OptimizerRace")
    snap(page, "race_rosenbrock_1280_dark", theme="dark", view="OptimizerRace")


# ---------------------------------------------------------------------------
# Lesson 20: FGSM
# ---------------------------------------------------------------------------

FGSM_CHECK_JS = """() => {
  const m = window.__dlplay.last('fgsm');
  const classes = window.__dlplay.tracker.snapshot.summary.dataset.classes;
  const pct = v => `${(100 * v).toFixed(1)}%`;
  const card = document.querySelector('[data-view=Fgsm] .lv-fgsm');
  const shown = role => {
    const box = card.querySelector(`[data-prediction=${role}]`);
    return { predicted: Number(box.dataset.predicted), name: box.querySelector('.lv-pred-name').textContent,
             conf: box.querySelector('.lv-pred-conf').textContent };
  };
  const want = p => ({ predicted: p.predicted, name: classes[p.predicted], conf: pct(p.confidence) });
  return {
    shown: [shown('original'), shown('adversarial')],
    want: [want(m.original_prediction), want(m.adversarial_prediction)],
    images: [...card.querySelectorAll('[data-image]')].map(f => f.dataset.image),
    fooledShown: card.dataset.fooled, fooled: String(m.fooled), target: m.target, index: m.index, epsilon: m.epsilon,
    head: card.querySelector('.viz-card-head').textContent,
  };
}"""


def test_fgsm_shows_the_attack_and_the_accuracy_sweep(page):
    open_app(page)
    load_preset(page, "fool_lenet")
    train_to_end(page, 40)
    show_tab(page, "attention")
    view = page.locator("[data-view=Fgsm]")
    view.scroll_into_view_if_needed()
    view.locator("input.viz-input").fill("3")
    view.locator("button", has_text="Attack").click()
    page.wait_for_function("() => window.__dlplay.received('fgsm') >= 1", timeout=60_000)
    page.wait_for_selector("[data-view=Fgsm] .lv-fgsm [data-prediction=adversarial]")
    got = page.evaluate(FGSM_CHECK_JS)
    assert got["index"] == 3 and got["target"] is None and got["epsilon"] == pytest.approx(0.1)
    assert got["shown"] == got["want"]
    assert got["images"] == ["original", "perturbation", "adversarial"]
    assert got["fooledShown"] == got["fooled"]

    # a targeted attack at a larger epsilon: the slider re-attacks the shown example when released
    view.locator("select").first.select_option("3")
    page.wait_for_function("() => window.__dlplay.received('fgsm') >= 2 && window.__dlplay.last('fgsm').target === 3", timeout=60_000)
    page.evaluate("""() => { const s = document.querySelector('[data-view=Fgsm] input[name=fgsm_epsilon]');
      s.value = '0.25'; s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); }""")
    page.wait_for_function("() => window.__dlplay.received('fgsm') >= 3 && window.__dlplay.last('fgsm').epsilon === 0.25", timeout=60_000)
    page.wait_for_function("() => document.querySelector('[data-view=Fgsm] .lv-fgsm .viz-card-head').textContent.includes('ε = 0.25')")
    got = page.evaluate(FGSM_CHECK_JS)
    assert got["target"] == 3 and got["shown"] == got["want"] and got["fooledShown"] == got["fooled"]
    assert "target 3" in got["head"]

    view.locator("button[data-action=sweep]").click()
    page.wait_for_function("() => window.__dlplay.received('fgsm_sweep') >= 1", timeout=90_000)
    page.wait_for_selector("[data-view=Fgsm] .lv-sweep:not([hidden])")
    sweep = page.evaluate("() => window.__dlplay.last('fgsm_sweep')")
    assert view.locator(".lv-sweep").get_attribute("data-points") == str(len(sweep["epsilons"]))
    assert sweep["epsilons"][0] == 0 and sweep["accuracy"][0] >= sweep["accuracy"][-1]
    snap(page, "fgsm_1280_light", view="Fgsm")
    snap(page, "fgsm_1920_dark", theme="dark", viewport=FULL_HD, view="Fgsm")


# ---------------------------------------------------------------------------
# Lesson 19: transfer learning
# ---------------------------------------------------------------------------


def test_transfer_learning_badges_frozen_and_loaded_layers_and_compares_with_scratch(page):
    open_app(page)
    load_preset(page, "transfer_learning")
    source = train_to_end(page, 20)
    # the lesson's second step: the shapes, a 4-class head, conv1 and conv2 loaded from the MNIST run and frozen
    edit(page, f"""doc.data = {{ name: 'shapes', n_samples: 1000, train_subset: 100, preprocessing: 'standardize' }};
      doc.network.layers[7].out_features = 4; doc.train.freeze = ['conv1', 'conv2'];
      doc.train.init_from = {{ run_id: '{source}', layers: ['conv1', 'conv2'] }};""")
    page.click("[data-side=network]")
    badges = page.evaluate("""() => ({
      frozen: [...document.querySelectorAll('svg.graph .node.frozen')].map(n => n.dataset.node),
      locks: document.querySelectorAll('svg.graph .frozen-badge').length,
      loaded: [...document.querySelectorAll('svg.graph .node.loaded')].map(n => n.dataset.node),
      freeze: window.__dlplay.store.experiment.train.freeze })""")
    assert badges["frozen"] == badges["freeze"] == ["conv1", "conv2"]
    assert badges["locks"] == 2 and badges["loaded"] == ["conv1", "conv2"]

    fine_tuned = train_to_end(page, 20)
    show_tab(page, "training")
    banner = page.locator("[data-view=TransferBanner]")
    banner.wait_for(state="visible")
    assert banner.get_attribute("data-frozen") == "conv1,conv2"
    assert banner.get_attribute("data-loaded") == "conv1,conv2"
    assert banner.locator(".lv-chip.frozen").count() == 2
    assert source[:8] in banner.inner_text()
    snap(page, "transfer_editor_1280_light")
    snap(page, "transfer_editor_1920_dark", theme="dark", viewport=FULL_HD)

    # from scratch: nothing loaded, nothing frozen, and the strip goes away
    edit(page, "doc.train.init_from = null; doc.train.freeze = [];")
    assert page.locator("svg.graph .frozen-badge").count() == 0
    scratch = train_to_end(page, 20)
    page.wait_for_function("() => document.querySelector('[data-view=TransferBanner]').hidden")

    # the Runs tab overlays the last two runs, fine-tuned and scratch, the settings that differ named
    show_tab(page, "runs")
    overlay = page.locator("[data-view=RunsOverlay]")
    overlay.locator("button[data-action=latest]").click()
    page.wait_for_function("() => document.querySelector('[data-view=RunsOverlay]').dataset.runs === '2'")
    legend = [overlay.locator(".viz-legend-item").nth(i).get_attribute("data-run") for i in range(2)]
    assert legend == [fine_tuned, scratch]
    # both runs carry the preset's name: each is labelled by what sets it apart
    names = overlay.locator(".viz-legend-name").all_inner_texts()
    assert names == ["weights from " + source[:6] + ", frozen conv1, conv2", "from scratch, all layers train"]
    diff = overlay.locator(".viz-diff").inner_text()
    assert "train.init_from" in diff and "train.freeze" in diff
    snap(page, "transfer_compare_1280_light")


# ---------------------------------------------------------------------------
# Lessons 8 and 10: batch size and the noise of the loss; learning-rate schedules
# ---------------------------------------------------------------------------

START_RUNS_JS = """(sizes) => {
  const doc = window.__dlplay.store.experiment;
  for (const b of sizes) {
    const exp = JSON.parse(JSON.stringify(doc));
    exp.name = `batch ${b}`;
    exp.train.batch_size = b;
    window.__dlplay.socket.send({ cmd: 'start', id: `batch-${b}`, experiment: exp });
  }
}"""


def test_batch_sizes_overlay_live_with_the_raw_noise(page):
    open_app(page)
    load_preset(page, "batch_size_noise")
    page.evaluate(START_RUNS_JS, [1, 32, "full"])
    # the three runs train until stopped, side by side from the same seed
    page.wait_for_function("""() => fetch('/api/runs').then(r => r.json()).then(rs => {
      const list = Array.isArray(rs) ? rs : rs.runs; return list.filter(r => r.status === 'running').length >= 3; })""",
                           timeout=60_000, polling=500)
    runs = page.evaluate("() => fetch('/api/runs').then(r => r.json()).then(rs => (Array.isArray(rs) ? rs : rs.runs))")
    ids = {r["name"]: r["id"] for r in runs}
    order = [ids["batch 1"], ids["batch 32"], ids["batch full"]]
    show_tab(page, "runs")
    overlay = page.locator("[data-view=RunsOverlay]")
    overlay.locator("button[title='reload the list of runs']").click()
    for run_id in order:
        overlay.locator(f".viz-run-item:has(button[data-run='{run_id}']) input[type=checkbox]").check()
    overlay.locator("button", has_text="Compare").click()
    page.wait_for_function("() => document.querySelector('[data-view=RunsOverlay]').dataset.runs === '3'")
    assert overlay.get_attribute("data-live") == "true"
    # live runs show their training loss; the curves grow while the runs train
    assert overlay.locator("select").first.input_value() == "train_loss"
    first = int(overlay.locator(f".viz-legend-item[data-run='{order[0]}']").get_attribute("data-points"))
    page.wait_for_function(
        "([id, n]) => Number(document.querySelector(`[data-view=RunsOverlay] .viz-legend-item[data-run='${id}']`).dataset.points) > n",
        arg=[order[0], max(first, 60)], timeout=60_000)
    for run_id in order:
        page.evaluate("id => window.__dlplay.socket.send({ cmd: 'stop', run_id: id })", run_id)
    page.wait_for_function("() => document.querySelector('[data-view=RunsOverlay]').dataset.live === 'false'", timeout=30_000)

    # every logged point is drawn (the server thins by picking points, never by averaging), so the noise shows
    history = page.evaluate("ids => fetch(`/api/runs/compare?ids=${ids.join(',')}`).then(r => r.json())", order)
    roughness = []
    for run_id, run in zip(order, history["runs"]):
        losses = [p["train_loss"] for p in run["metrics"] if isinstance(p.get("train_loss"), (int, float))]
        assert overlay.locator(f".viz-legend-item[data-run='{run_id}']").get_attribute("data-points") == str(len(losses))
        steps = list(zip(losses, losses[1:]))
        roughness.append(sum(abs(b - a) for a, b in steps) / max(1, len(steps)))
    assert roughness[0] > roughness[1] > roughness[2]  # batch 1 is the noisiest curve, the full batch the smoothest
    snap(page, "batch_noise_1280_light")
    snap(page, "batch_noise_1920_dark", theme="dark", viewport=FULL_HD)


def test_schedule_preview_then_live_lr(page):
    open_app(page)
    load_preset(page, "lr_schedules")
    edit(page, "doc.train.schedule = { kind: 'step', every_epochs: 1, gamma: 0.5 }; doc.train.epochs = 3;")
    page.click("[data-side=train]")
    plot = page.locator(".lr-plot-wrap")
    page.wait_for_function("() => document.querySelector('.lr-caption').textContent.startsWith('LR 0.2 →')", timeout=20_000)
    assert plot.get_attribute("data-live") == "0"
    page.click("#start")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'finished'", timeout=120_000)
    # one live point per distinct metrics step, the last one the run's final LR
    live = int(plot.get_attribute("data-live"))
    steps = page.evaluate("""(id) => fetch(`/api/runs/${id}/metrics`).then(r => r.json())
      .then(j => new Set(j.points.map(p => p.step)).size)""", page.evaluate("() => window.__dlplay.tracker.snapshot.runId"))
    assert live == steps
    last_lr = page.evaluate("() => window.__dlplay.tracker.snapshot.metrics.lr")
    assert last_lr == pytest.approx(0.2 * 0.5**2)
    assert "live LR 0.05 at step" in page.locator(".lr-caption").inner_text()
    snap(page, "schedule_live_1280_light")
    snap(page, "schedule_live_1280_dark", theme="dark")
