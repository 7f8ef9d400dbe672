"""Projector mode a back row can read: at 1920x1080 the main charts fill the screen, tick labels are
at least 18 px, data lines at least 3 px, and every chart colour has 3:1 contrast (WCAG 2.1, 1.4.11
non-text contrast) against what it is drawn on, in both themes.

Everything is measured from the page, never from a copy of the palette: boxes with
getBoundingClientRect, colours from getComputedStyle (CSS variables resolved by the browser), tick
sizes and line widths from what the charts record of their own drawing (uplotTheme.recordDrawing
reads uPlot's resolved options; plot.useTickFont the canvas's normalized font), and the colour
beneath each 2D point from the canvas pixels. Relative luminance and contrast are computed here,
independently of the page's contrast.ts.
"""

from __future__ import annotations

import json
import re

import pytest
from e2e_helpers import load_preset, open_app, set_length, shoot

pytestmark = pytest.mark.e2e

FULL_HD = {"width": 1920, "height": 1080}
LAPTOP = {"width": 1280, "height": 720}
BOUNDARY = "[data-view=Boundary2D]"
LOSS = "[data-view=LossCurves]"
LAYER_STATS = "[data-view=LayerStats]"
MIN_TICK_PX = 18
MIN_LINE_PX = 3
MIN_CONTRAST = 3.0
# The chart colours every view reads (theme.ts readPalette): series, status marks, the ten classes.
SERIES_VARS = ["--viz-train", "--viz-val", "--viz-lr", "--viz-good", "--viz-warn", "--viz-bad"]
CLASS_VARS = [f"--viz-class-{i}" for i in range(10)]


def srgb_to_linear(c: float) -> float:
    c /= 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: tuple[float, float, float]) -> float:
    r, g, b = (srgb_to_linear(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def parse_rgb(css: str) -> tuple[float, float, float]:
    """(r, g, b) of a computed colour ("rgb(r, g, b)" / "rgba(...)", opaque as computed styles give them)."""
    m = re.match(r"rgba?\(([^)]*)\)", css)
    assert m, f"not a computed rgb colour: {css!r}"
    parts = [float(x) for x in re.split(r"[,\s/]+", m.group(1).strip()) if x]
    assert len(parts) == 3 or parts[3] == 1, f"a chart colour should be opaque: {css}"
    return parts[0], parts[1], parts[2]


# Resolves CSS variables on an element to computed colours (through a probe's `color`), and finds the
# opaque background an element is painted on (its own or its nearest ancestor's background-color).
_COLOURS_JS = """([selector, names]) => {
  const el = document.querySelector(selector);
  const probe = document.createElement('span');
  el.append(probe);
  const out = {};
  for (const n of names) { probe.style.color = `var(${n})`; out[n] = getComputedStyle(probe).color; }
  probe.remove();
  return out;
}"""
_BACKGROUND_JS = """(selector) => {
  for (let e = document.querySelector(selector); e; e = e.parentElement) {
    const bg = getComputedStyle(e).backgroundColor;
    if (bg && bg !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(bg)) return bg;
  }
  return getComputedStyle(document.body).backgroundColor;
}"""
_BOX_JS = "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.width, r.height]; }"
# The colour of the region under each validation point (read with the points hidden) and the point's
# class, from the canvas pixels; the plot square's position comes from the canvas' data-plot.
_UNDER_POINTS_JS = """(selector) => {
  const c = document.querySelector(selector + ' canvas.viz-boundary-canvas');
  const [x0, y0, size] = c.dataset.plot.split(',').map(Number);
  const m = window.__dlplay.last('boundary');
  const [ex0, ex1, ey0, ey1] = m.extent;
  const k = c.width / c.getBoundingClientRect().width;
  const g = c.getContext('2d');
  return m.points.map(([x, y, label]) => {
    const px = x0 + (x - ex0) / (ex1 - ex0) * size, py = y0 + (ey1 - y) / (ey1 - ey0) * size;
    const d = g.getImageData(Math.round(px * k), Math.round(py * k), 1, 1).data;
    return [label, [d[0], d[1], d[2]]];
  });
}"""


def tab_panel_size(page, tab: str) -> tuple[float, float]:
    return page.evaluate(_BOX_JS, f".tab-panel[data-tab='{tab}']")


def px_of_font(font: str) -> float:
    m = re.search(r"([\d.]+)px", font)
    assert m, f"no px size in the font {font!r}"
    return float(m.group(1))


def train_spiral_and_stop(page) -> None:
    """A short spiral run (a few hundred steps), then stopped: the views keep its last frame.

    The Inside tab is opened for a few frames on the way, so its layer charts have data too."""
    open_app(page)
    load_preset(page, "spiral_mlp")
    set_length(page, "until_stopped")
    page.click(".tab[data-tab='2d']")
    page.click("#start")
    page.wait_for_function(
        "() => { const m = window.__dlplay.tracker.snapshot.metrics; return m && m.step >= 300 && m.val_acc !== null; }",
        timeout=120_000)
    page.wait_for_function("s => Number(document.querySelector(s).dataset.frames || 0) >= 2", arg=BOUNDARY, timeout=60_000)
    page.click(".tab[data-tab=inside]")
    page.wait_for_function("s => Number(document.querySelector(s).dataset.frames || 0) >= 3", arg=LAYER_STATS, timeout=60_000)
    page.click("#stop")
    page.wait_for_function("() => window.__dlplay.tracker.snapshot.state === 'stopped'", timeout=30_000)


def set_theme(page, theme: str, projector: bool) -> None:
    if page.evaluate("() => document.documentElement.dataset.theme") != theme:
        page.click("#theme")
    if page.evaluate("() => document.documentElement.dataset.projector") != str(projector).lower():
        page.click("#projector")
    page.wait_for_function("([t, p]) => document.documentElement.dataset.theme === t && document.documentElement.dataset.projector === p",
                           arg=[theme, str(projector).lower()])


def check_colours(page, view: str, chart_selector: str, names: list[str], where: str) -> dict[str, float]:
    """Contrast of each CSS colour variable against the background `chart_selector` is drawn on; all >= 3:1."""
    colours = page.evaluate(_COLOURS_JS, [view, names])
    bg = parse_rgb(page.evaluate(_BACKGROUND_JS, chart_selector))
    ratios = {n: round(contrast(parse_rgb(c), bg), 2) for n, c in colours.items()}
    low = {n: r for n, r in ratios.items() if r < MIN_CONTRAST}
    assert not low, f"{where}: chart colours below {MIN_CONTRAST}:1 against {bg}: {low}"
    return ratios


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_projector_mode_fills_the_screen_with_readable_charts(page, theme):
    page.set_viewport_size(FULL_HD)
    train_spiral_and_stop(page)
    set_theme(page, theme, projector=True)

    # ---- the 2D plot
    page.click(".tab[data-tab='2d']")
    canvas = f"{BOUNDARY} canvas.viz-boundary-canvas"
    # redrawn in projector type: the canvas font the tick labels use, as the canvas normalized it
    page.wait_for_function("([s, n]) => { const c = document.querySelector(s); const f = c && c.dataset.tickFont;"
                           " return f && parseFloat(f.match(/([\\d.]+)px/)[1]) >= n; }", arg=[canvas, MIN_TICK_PX])
    page.wait_for_timeout(300)  # the resize observer's redraw after the layout change
    shoot(page, f"projector_1920_{theme}_2d")
    panel_w, panel_h = tab_panel_size(page, "2d")
    plot_size = float(page.get_attribute(canvas, "data-plot").split(",")[2])
    wrap_w, wrap_h = page.evaluate(_BOX_JS, f"{BOUNDARY} .viz-boundary-wrap")
    canvas_w, canvas_h = page.evaluate(_BOX_JS, canvas)
    # The plot is square, so it fills its box in the box's smaller dimension: the canvas (plot plus
    # its tick gutters) takes at least 90% of the box's width or of its height (the rest: the caption
    # and a few pixels of margin). And the box takes most of the tab: at least 60% of its height and
    # 45% of its width (the neuron maps' column and, here, the lesson guide share the width).
    assert max(canvas_w / wrap_w, canvas_h / wrap_h) >= 0.9, (canvas_w, canvas_h, wrap_w, wrap_h)
    assert wrap_h >= 0.6 * panel_h and wrap_w >= 0.45 * panel_w, (wrap_w, wrap_h, panel_w, panel_h)
    # before projector mode scaled anything, the plot stayed ~440 px on a 1920x1080 screen
    assert plot_size >= 600, f"the 2D plot is {plot_size} px a side at 1920x1080"
    assert px_of_font(page.get_attribute(canvas, "data-tick-font")) >= MIN_TICK_PX
    assert float(page.get_attribute(canvas, "data-contour-width")) >= MIN_LINE_PX

    # class colours against the page behind the plot
    check_colours(page, BOUNDARY, canvas, CLASS_VARS, f"{theme} projector 2D plot")
    # ...and against the region fill under each point (points hidden, pixels read where they were)
    classes = page.evaluate(_COLOURS_JS, [BOUNDARY, CLASS_VARS])
    page.click(f"{BOUNDARY} .viz-toggle:has-text('points') input")
    page.wait_for_timeout(300)
    under = page.evaluate(_UNDER_POINTS_JS, BOUNDARY)
    page.click(f"{BOUNDARY} .viz-toggle:has-text('points') input")
    ratios = sorted(contrast(parse_rgb(classes[f"--viz-class-{label}"]), tuple(rgb)) for label, rgb in under)
    assert len(ratios) >= 50
    # Every point but those the 0.5 contour line runs through (drawn in the page's text colour, so
    # a point on it is framed by the line, not lost in it): at least 90% of points reach 3:1.
    share = sum(r >= MIN_CONTRAST for r in ratios) / len(ratios)
    print(f"\n{theme} 2D: plot {plot_size:.0f} px, canvas {canvas_w:.0f}x{canvas_h:.0f} in box {wrap_w:.0f}x{wrap_h:.0f}, "
          f"tab {panel_w:.0f}x{panel_h:.0f}; points on their region: {share:.0%} >= 3:1, lowest {ratios[0]:.2f}, median {ratios[len(ratios) // 2]:.2f}")
    assert share >= 0.9, f"{theme}: only {share:.0%} of the points reach 3:1 on their region (lowest {ratios[:5]})"

    # ---- the loss and accuracy curves
    page.click(".tab[data-tab=training]")
    loss_box = f"{LOSS} .viz-card:first-child .viz-plot"
    page.wait_for_function("([s, n]) => Number(document.querySelector(s)?.dataset.tickPx) >= n", arg=[loss_box, MIN_TICK_PX])
    page.wait_for_timeout(300)
    shoot(page, f"projector_1920_{theme}_training")
    panel_w, panel_h = tab_panel_size(page, "training")
    chart_w, chart_h = page.evaluate(_BOX_JS, f"{loss_box} canvas")
    card_w, card_h = page.evaluate(_BOX_JS, f"{LOSS} .viz-card:first-child")
    # The chart takes its card's whole width (but the card's padding) and most of its height (but
    # the title row): >= 90% and >= 80%. The loss/accuracy row takes 3/4 of the tab's height less
    # the toolbar and the learning-rate strip: the chart is at least 45% of the tab's height, and
    # the two side by side share its width (each >= 40%).
    assert chart_w >= 0.9 * card_w and chart_h >= 0.8 * card_h, (chart_w, chart_h, card_w, card_h)
    assert chart_h >= 0.45 * panel_h and chart_w >= 0.4 * panel_w, (chart_w, chart_h, panel_w, panel_h)
    assert int(page.get_attribute(loss_box, "data-tick-px")) >= MIN_TICK_PX
    widths = json.loads(page.get_attribute(loss_box, "data-series-widths"))
    # the raw training curve is a faint backdrop (28% opacity) to the smoothed one, half as wide
    assert widths["train"] >= MIN_LINE_PX and widths["validation"] >= MIN_LINE_PX, widths
    lr_widths = json.loads(page.get_attribute(f"{LOSS} .viz-card-lr .viz-plot", "data-series-widths"))
    assert lr_widths["lr"] >= MIN_LINE_PX, lr_widths
    loss_ratios = check_colours(page, LOSS, loss_box, SERIES_VARS + CLASS_VARS, f"{theme} projector loss chart")
    # a smaller screen: the charts follow their boxes (redrawn on resize, no reload)
    page.set_viewport_size({"width": 1600, "height": 900})
    page.wait_for_function("([s, h]) => document.querySelector(s).getBoundingClientRect().height < h - 50",
                           arg=[f"{loss_box} canvas", chart_h])
    page.wait_for_timeout(300)
    small_w, small_h = page.evaluate(_BOX_JS, f"{loss_box} canvas")
    card_w2, card_h2 = page.evaluate(_BOX_JS, f"{LOSS} .viz-card:first-child")
    assert small_w >= 0.9 * card_w2 and small_h >= 0.8 * card_h2, (small_w, small_h, card_w2, card_h2)
    page.set_viewport_size(FULL_HD)

    # ---- the Inside tab's layer charts: type and lines (they grow with the type; several share the tab)
    page.click(".tab[data-tab=inside]")
    std_time = f"{LAYER_STATS} [data-chart=std_time] .viz-plot"
    page.wait_for_function("([s, n]) => Number(document.querySelector(s)?.dataset.tickPx) >= n", arg=[std_time, MIN_TICK_PX])
    page.wait_for_timeout(300)
    shoot(page, f"projector_1920_{theme}_inside")
    layer_widths = json.loads(page.get_attribute(std_time, "data-series-widths"))
    assert layer_widths and min(layer_widths.values()) >= MIN_LINE_PX, layer_widths
    depth = f"{LAYER_STATS} [data-chart=std] canvas"
    assert px_of_font(page.get_attribute(depth, "data-tick-font")) >= MIN_TICK_PX
    assert px_of_font(page.get_attribute(f"{LAYER_STATS} [data-chart=activations] canvas", "data-tick-font")) >= MIN_TICK_PX
    std_w, std_h = page.evaluate(_BOX_JS, f"{std_time} canvas")
    # twice the ~210 px the layer charts had at 1920x1080 before projector mode scaled them
    assert std_h >= 300, f"the std-over-time chart is {std_h} px high"
    print(f"{theme} inside: std-over-time chart {std_w:.0f}x{std_h:.0f}, line widths {layer_widths}")
    print(f"{theme} loss: chart {chart_w:.0f}x{chart_h:.0f} in card {card_w:.0f}x{card_h:.0f}, tab {panel_w:.0f}x{panel_h:.0f}; "
          f"ticks {page.get_attribute(loss_box, 'data-tick-px')} px; widths {widths}; lowest contrast {min(loss_ratios.items(), key=lambda kv: kv[1])}")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_chart_colours_reach_3_to_1_without_projector_mode(page, theme):
    page.set_viewport_size(LAPTOP)
    train_spiral_and_stop(page)
    set_theme(page, theme, projector=False)
    page.click(".tab[data-tab=training]")
    loss_box = f"{LOSS} .viz-card:first-child .viz-plot"
    page.wait_for_function("s => document.querySelector(s)?.dataset.seriesWidths", arg=loss_box)
    check_colours(page, LOSS, loss_box, SERIES_VARS + CLASS_VARS, f"{theme} loss chart")
    # out of projector mode the chart keeps its compact size (the page fits a 1280x720 laptop)
    assert page.evaluate(_BOX_JS, f"{loss_box} canvas")[1] < 0.45 * tab_panel_size(page, "training")[1]
    shoot(page, f"normal_1280_{theme}_training")
    page.click(".tab[data-tab='2d']")
    canvas = f"{BOUNDARY} canvas.viz-boundary-canvas"
    page.wait_for_function("s => document.querySelector(s)?.dataset.plot", arg=canvas)
    check_colours(page, BOUNDARY, canvas, CLASS_VARS, f"{theme} 2D plot")
    page.wait_for_timeout(300)
    shoot(page, f"normal_1280_{theme}_2d")
