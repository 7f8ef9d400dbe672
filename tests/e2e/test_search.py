"""The Search tab (lesson 21) in a real browser against a real server: trials are real runs.

The lesson's preset (an MLP on the 8x8 digits, 60 steps of SGD) is opened the way the guided
lesson opens it (``window.__dlplay.openSearch(presetDoc)``); the default search of 9 random coarse
trials and 4 fine ones runs through the server's scheduler; every trial gets one mark in each
scatter and one row in the table; sorting by accuracy puts the best trial first; "Open best"
shows that trial's run in the page. Nothing is timed: waits have hang guards only.
"""

from __future__ import annotations

from e2e_helpers import open_app, shoot

SEARCH = "[data-view=SearchView]"
HANG_GUARD_MS = 120_000  # 13 short runs on a shared 2-core machine; only there so a broken page fails


def test_search_fills_the_scatters_and_the_table_and_opens_the_best_trial(page):
    open_app(page)
    page.evaluate("""async () => {
        const preset = await fetch('/api/presets/hyperparameter_search').then((r) => r.json());
        window.__dlplay.openSearch(preset.experiment);
    }""")
    page.wait_for_function("window.__dlplay.store.ui.tab === 'search'")
    # The form is filled for the preset: its 60-step runs, the lecture's ranges, 9 + 4 trials.
    assert page.input_value(f"{SEARCH} input[name=steps]") == "60"
    assert page.input_value(f"{SEARCH} input[name=trials]") == "9"
    assert page.input_value(f"{SEARCH} input[name=lr_low]") == "1e-4"
    assert page.is_checked(f"{SEARCH} input[name=fine_on]")

    # A bad range is refused before anything starts, with the reason.
    page.fill(f"{SEARCH} input[name=lr_low]", "2")
    page.click("#search-start")
    assert "swap them" in page.text_content(f"{SEARCH} .search-error")
    assert page.get_attribute(SEARCH, "data-status") == "none"
    page.fill(f"{SEARCH} input[name=lr_low]", "1e-4")

    page.click("#search-start")
    page.wait_for_function(f"document.querySelector('{SEARCH}').dataset.status === 'finished'", timeout=HANG_GUARD_MS)
    search = page.evaluate("window.__dlplay.search().current")
    trials = search["trials"]
    assert len(trials) == 13 and [t["stage"] for t in trials].count("fine") == 4
    with_runs = [t for t in trials if t["run_id"]]
    assert len(with_runs) == 13 and all(t["status"] in ("finished", "diverged") for t in trials)

    # One mark per trial in each scatter, one row per trial in the table.
    for param in ("lr", "l2"):
        marks = page.locator(f"{SEARCH} figure[data-param={param}] .point")
        assert marks.count() == 13
        assert sorted(int(i) for i in marks.evaluate_all("els => els.map((e) => e.dataset.index)")) == list(range(13))
    assert page.locator(f"{SEARCH} figure[data-param=lr] .fine-band").count() == 1
    assert page.locator(f"{SEARCH} table.search-trials tbody tr").count() == 13

    # The best trial: the highest score of all trials, first in the table once sorted by accuracy.
    best = search["best"]
    scores = [t["best_val_acc"] for t in trials if t["best_val_acc"] is not None]
    assert best["best_val_acc"] == max(scores)
    page.click(f"{SEARCH} th[data-sort=score]")
    first = page.locator(f"{SEARCH} table.search-trials tbody tr").first
    assert first.get_attribute("data-index") == str(best["index"]) and "best" in first.get_attribute("class")
    shoot(page, "search")

    # "Open best" shows that trial's run in the page: its document, its finished history.
    page.click("#search-open-best")
    page.wait_for_function(
        "id => { const d = window.__dlplay; return d.tracker.snapshot.runId === id"
        " && d.tracker.snapshot.state === 'finished' && d.store.ui.tab === 'training'; }",
        arg=best["run_id"], timeout=30_000)
    lr = page.evaluate("window.__dlplay.store.experiment.train.optimizer.lr")
    assert abs(lr - best["lr"]) <= 1e-9 * best["lr"]
