/**
 * Layer health from `activations`, `weights` and `gradients` probe messages:
 *
 * - distributions over time: one heat strip per layer (columns = probe steps,
 *   colour = histogram density), activations or weights, on a shared or per-layer range;
 * - std by depth on a log axis (latest step bold, step 0 dashed, gradient std too):
 *   a 10-layer tanh net with a too-small init shows a straight falling line;
 * - std over time per layer (log);
 * - mean ± std and min..max per layer; dead and saturated fractions per layer;
 * - update/weight ratio per parameter over time (log) with the healthy ~1e-3 band.
 *
 * Cards carry data-chart names ("activations", "weights", "std", "mean",
 * "dead", "update_ratios", "gradients") so a hint's `chart` can point at one: see showChart().
 *
 * While the Inside tab is open the server streams `layer_stats` (activations and
 * gradients, about 5 frames/s) and `weights` (about 1/s); every frame redraws the cards.
 */

import { rateOf, type WatchedViews } from "../live";
import type { ActivationsMsg, GradientsMsg, ServerMessage, WeightsMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Legend, axis, bandHook, baseOptions, cursorTooltip, recordDrawing, uPlot, yAxisSize } from "../charts/uplotTheme";
import { colormap, legendCanvas } from "./colormap";
import { Redraw, Tooltip, button, cssNumber, el, emptyState, finite, fitCanvas, fmt, fmtPct, fmtTick, onWidthChange, shortParam, toggle, widthOf } from "./dom";
import { FrameInfo } from "./frameInfo";
import {
  depthColor, drawDepthProfile, drawFractions, drawHeatStrips, drawMeanStd, heatStripsHeight, slotAt,
  type HeatLayout, type HistSnapshot,
} from "./layerCharts";
import { readPalette, withAlpha, type Palette } from "./theme";

export interface LayerStatsOptions {
  /** probe snapshots kept per series before older ones are thinned out (default 240) */
  maxSnapshots?: number;
}

type Source = "activations" | "weights";
type ActLayer = ActivationsMsg["layers"][number];

/** Healthy update/weight ratio (Karpathy's rule of thumb: about 1e-3), as a band half a decade each side. */
const RATIO_BAND: [number, number] = [10 ** -3.5, 10 ** -2.5];

/** Keep at most `cap` items: when over, drop every other one (keeping the newest). */
function thin<T>(arr: T[], cap: number): T[] {
  if (arr.length <= cap) return arr;
  return arr.filter((_, i) => i % 2 === 0 || i === arr.length - 1);
}

export class LayerStats {
  private readonly redraw: Redraw;
  private readonly cap: number;
  private acts: { step: number; layers: Map<string, ActLayer> }[] = [];
  private weightSnaps: HistSnapshot[] = [];
  private grads: GradientsMsg[] = [];
  private layerOrder: string[] = [];
  private actOf = new Map<string, string>();
  private source: Source = "activations";
  private shared: Record<Source, boolean> = { activations: true, weights: false };
  private heatLayout: HeatLayout | null = null;
  private heatLayers: string[] = [];
  private heatSnaps: HistSnapshot[] = [];
  /** category-chart geometry per canvas, for hover */
  private catFrames = new Map<HTMLCanvasElement, { frame: { x0: number; x1: number; slot: number }; layers: string[] }>();
  private stdChart: uPlot | null = null;
  private stdKey = "";
  private ratioChart: uPlot | null = null;
  private ratioKey = "";
  /** stream rate of the newest activations/gradients frame (null: on-demand replies only) */
  private rate: number | null = null;

  private readonly frame: FrameInfo;
  private readonly body: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly stats: HTMLElement;
  private readonly srcButtons: Record<Source, HTMLButtonElement>;
  private readonly sharedToggle: HTMLInputElement;
  private readonly heatCanvas = el("canvas", { class: "viz-canvas" });
  private readonly heatTitle = el("h4", { class: "viz-card-title" });
  private readonly heatTip: Tooltip;
  private readonly depthCanvas = el("canvas", { class: "viz-canvas" });
  private readonly depthLegend = el("div", { class: "viz-card-legend" });
  private readonly depthTip: Tooltip;
  private readonly meanCanvas = el("canvas", { class: "viz-canvas" });
  private readonly meanTip: Tooltip;
  private readonly fracCanvas = el("canvas", { class: "viz-canvas" });
  private readonly fracLegend = el("div", { class: "viz-card-legend" });
  private readonly fracTip: Tooltip;
  private readonly fracNote = el("div", { class: "viz-note", attrs: { hidden: "" } });
  private readonly stdBox = el("div", { class: "viz-plot" });
  private readonly stdLegend = el("div", { class: "viz-card-legend" });
  private readonly stdTip: Tooltip;
  private readonly ratioBox = el("div", { class: "viz-plot" });
  private readonly ratioLegend = el("div", { class: "viz-card-legend" });
  private readonly ratioTip: Tooltip;
  private readonly ratioCard: HTMLElement;
  private readonly stdCard: HTMLElement;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: LayerStatsOptions = {}) {
    this.cap = Math.max(16, opts.maxSnapshots ?? 240);
    this.redraw = new Redraw(ctx, () => this.draw());
    this.frame = new FrameInfo(root);

    this.srcButtons = {
      activations: button("Activations", () => this.setSource("activations"), { title: "post-activation outputs of each layer" }),
      weights: button("Weights", () => this.setSource("weights"), { title: "weight values of each layer" }),
    };
    const shared = toggle("shared range", true, (on) => {
      this.shared[this.source] = on;
      this.redraw.request();
    }, "one value range for all layers: a collapsing layer shows as a thin line at 0");
    this.sharedToggle = shared.input;
    this.stats = el("div", { class: "viz-stats" });
    const toolbar = el("div", { class: "viz-toolbar" }, [
      el("div", { class: "viz-seg" }, [this.srcButtons.activations, this.srcButtons.weights]),
      shared.label,
      this.frame.el,
      this.stats,
      el("span", { class: "viz-spacer" }),
      el("span", { class: "viz-scale" }, ["low", legendCanvas(colormap("viridis"), 72, 9), "high density"]),
    ]);

    const heatCard = el("section", { class: "viz-card", attrs: { "data-chart": "activations" } }, [
      el("header", { class: "viz-card-head" }, [this.heatTitle, el("span", { class: "viz-card-sub", text: "one row per layer · columns = probe steps · colour = share of values" })]),
      el("div", { class: "viz-plot" }, [this.heatCanvas]),
    ]);
    this.heatTip = new Tooltip(heatCard);

    const cardOf = (chart: string, title: string, sub: string, legend: HTMLElement | null, content: HTMLElement[]): HTMLElement =>
      el("section", { class: "viz-card", attrs: { "data-chart": chart } }, [
        el("header", { class: "viz-card-head" }, [
          el("h4", { class: "viz-card-title", text: title }),
          sub !== "" ? el("span", { class: "viz-card-sub", text: sub }) : null,
          legend,
        ]),
        ...content,
      ]);

    const depthCard = cardOf("std", "Std by depth", "log scale", this.depthLegend, [el("div", { class: "viz-plot" }, [this.depthCanvas])]);
    this.depthTip = new Tooltip(depthCard);
    this.stdCard = cardOf("std_time", "Std over time", "log scale, one line per layer", this.stdLegend, [this.stdBox]);
    this.stdTip = new Tooltip(this.stdCard);
    const meanCard = cardOf("mean", "Mean ± std", "latest step · whiskers: min..max", null, [el("div", { class: "viz-plot" }, [this.meanCanvas])]);
    this.meanTip = new Tooltip(meanCard);
    const fracCard = cardOf("dead", "Dead and saturated units", "latest step", this.fracLegend, [el("div", { class: "viz-plot" }, [this.fracCanvas]), this.fracNote]);
    this.fracTip = new Tooltip(fracCard);
    this.ratioCard = cardOf("update_ratios", "Update / weight ratio", "log scale · ‖Δw‖/‖w‖ per step", this.ratioLegend, [this.ratioBox]);
    this.ratioTip = new Tooltip(this.ratioCard);

    this.body = el("div", { class: "viz-loss-body" }, [
      heatCard,
      el("div", { class: "viz-grid2" }, [depthCard, this.stdCard]),
      el("div", { class: "viz-grid2" }, [meanCard, fracCard]),
      this.ratioCard,
    ]);
    this.empty = emptyState(
      "Start training to see layer statistics",
      "While this tab is open, activation and gradient statistics stream a few times a second: histograms, std per layer, dead units, update ratios.",
    );
    root.classList.add("viz-view", "viz-layerstats");
    root.replaceChildren(toolbar, this.empty, this.body);

    this.hookHover();
    onWidthChange(root, () => this.resize());
    ctx.onThemeChange(() => {
      this.destroyCharts();
      this.redraw.request();
    });
    this.setSource("activations");
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "activations" || msg.type === "gradients") this.rate = rateOf(msg) ?? this.rate;
    switch (msg.type) {
      case "activations":
        this.addActivations(msg);
        break;
      case "weights":
        this.addWeights(msg);
        break;
      case "gradients":
        this.grads = thin(this.dropReplay(this.grads, msg.step).concat([msg]), this.cap);
        this.redraw.request();
        break;
      default:
        return;
    }
  }

  reset(): void {
    this.acts = [];
    this.weightSnaps = [];
    this.grads = [];
    this.layerOrder = [];
    this.actOf.clear();
    this.rate = null;
    this.frame.clear();
    this.destroyCharts();
    this.redraw.request();
  }

  /** The Inside tab's live views: activation/gradient statistics and weight histograms. */
  watch(): WatchedViews {
    return { layer_stats: {}, weights: {} };
  }

  resize(): void {
    const w = widthOf(this.stdBox);
    if (this.stdChart !== null && w > 0) this.stdChart.setSize({ width: w, height: this.chartH() });
    const w2 = widthOf(this.ratioBox);
    if (this.ratioChart !== null && w2 > 0) this.ratioChart.setSize({ width: w2, height: this.chartH() });
    this.redraw.request();
  }

  /** Scroll to the card for `chart` (a hint's chart name) and flash it; false if this view has no such chart. */
  showChart(chart: string): boolean {
    // hint charts (server/probes/doctor.py): loss | activations | gradients | updates
    const alias: Record<string, string> = { gradients: "std", updates: "update_ratios", histograms: "activations", saturation: "dead", dead_units: "dead" };
    const name = alias[chart] ?? chart;
    if (name === "weights") this.setSource("weights");
    if (name === "activations") this.setSource("activations");
    const card = this.root.querySelector<HTMLElement>(`[data-chart="${name === "weights" ? "activations" : name}"]`);
    if (card === null) return false;
    card.scrollIntoView({ behavior: "smooth", block: "center" });
    card.classList.remove("viz-flash");
    void card.offsetWidth;
    card.classList.add("viz-flash");
    return true;
  }

  // ------------------------------------------------------------ data

  private dropReplay<T extends { step: number }>(arr: T[], step: number): T[] {
    const last = arr[arr.length - 1];
    return last !== undefined && step <= last.step ? arr.filter((a) => a.step < step) : arr;
  }

  private noteLayers(names: string[]): void {
    for (const n of names) if (!this.layerOrder.includes(n)) this.layerOrder.push(n);
  }

  private addActivations(m: ActivationsMsg): void {
    this.noteLayers(m.layers.map((l) => l.layer));
    for (const l of m.layers) this.actOf.set(l.layer, l.act !== "" ? l.act : l.kind);
    const snap = { step: m.step, layers: new Map(m.layers.map((l) => [l.layer, l])) };
    this.acts = thin(this.dropReplay(this.acts, m.step).concat([snap]), this.cap);
    this.redraw.request();
  }

  private addWeights(m: WeightsMsg): void {
    this.noteLayers(m.layers.map((l) => l.layer));
    const snap: HistSnapshot = { step: m.step, layers: new Map(m.layers.map((l) => [l.layer, { hist: l.hist, edges: l.edges, mean: l.mean, std: l.std }])) };
    this.weightSnaps = thin(this.dropReplay(this.weightSnaps, m.step).concat([snap]), this.cap);
    this.redraw.request();
  }

  private setSource(s: Source): void {
    this.source = s;
    this.srcButtons.activations.classList.toggle("active", s === "activations");
    this.srcButtons.weights.classList.toggle("active", s === "weights");
    this.sharedToggle.checked = this.shared[s];
    this.redraw.request();
  }

  private chartH(): number {
    return cssNumber(this.root, "--viz-chart-h", 210);
  }

  private destroyCharts(): void {
    this.stdChart?.destroy();
    this.stdChart = null;
    this.stdKey = "";
    this.ratioChart?.destroy();
    this.ratioChart = null;
    this.ratioKey = "";
    this.stdBox.replaceChildren();
    this.ratioBox.replaceChildren();
  }

  // ------------------------------------------------------------ drawing

  private draw(): void {
    const has = this.acts.length > 0 || this.weightSnaps.length > 0 || this.grads.length > 0;
    this.empty.hidden = has;
    this.body.hidden = !has;
    if (!has || widthOf(this.root) <= 0) return;
    const p = readPalette(this.root, this.ctx.theme());
    const lastAct = this.acts[this.acts.length - 1];
    const lastStep = Math.max(lastAct?.step ?? 0, this.grads[this.grads.length - 1]?.step ?? 0, this.weightSnaps[this.weightSnaps.length - 1]?.step ?? 0);
    this.frame.drawn(lastStep, this.rate);
    this.stats.replaceChildren(
      el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "layers" }), el("b", { text: String(this.layerOrder.length) })]),
    );
    this.drawHeat(p);
    this.drawDepth(p);
    this.drawStdTime(p);
    this.drawMean(p);
    this.drawFrac(p);
    this.drawRatios(p);
  }

  private drawHeat(p: Palette): void {
    const snaps: HistSnapshot[] =
      this.source === "activations"
        ? this.acts.map((a) => ({ step: a.step, layers: new Map([...a.layers].map(([k, l]) => [k, { hist: l.hist, edges: l.edges, mean: l.mean, std: l.std }])) }))
        : this.weightSnaps;
    const layers = this.layerOrder.filter((l) => snaps.some((s) => s.layers.has(l)));
    this.heatTitle.textContent = this.source === "activations" ? "Activation distributions over time" : "Weight distributions over time";
    this.heatLayers = layers;
    this.heatSnaps = snaps;
    // how many layers and probe columns the strips show (tests read it: an empty strip was a bug)
    this.heatCanvas.dataset.rows = String(layers.length);
    this.heatCanvas.dataset.columns = String(snaps.length);
    const w = widthOf(this.heatCanvas.parentElement ?? this.root);
    if (layers.length === 0) {
      const g = fitCanvas(this.heatCanvas, w, p.fontPx * 3);
      g.fillStyle = p.muted;
      g.font = `${p.fontPx * 0.9}px ${p.fontFamily}`;
      g.fillText(`No ${this.source} histograms yet.`, 8, p.fontPx * 1.5);
      this.heatLayout = null;
      return;
    }
    // row height: generous for few layers, compact for deep nets
    const rowH = Math.round(Math.max(p.fontPx * 0.9, Math.min(p.fontPx * 2.4, (p.fontPx * 30) / layers.length)));
    const g = fitCanvas(this.heatCanvas, w, heatStripsHeight(layers.length, rowH, p));
    this.heatLayout = drawHeatStrips(g, p, {
      width: w,
      layers,
      sub: (l) => (this.source === "activations" ? this.actOf.get(l) ?? "" : "weights"),
      snaps,
      shared: this.shared[this.source],
      rowH,
    });
  }

  private drawDepth(p: Palette): void {
    const w = widthOf(this.depthCanvas.parentElement ?? this.root);
    const h = this.chartH();
    const g = fitCanvas(this.depthCanvas, w, h);
    const layers = this.layerOrder.filter((l) => this.acts.some((a) => a.layers.has(l)));
    const last = this.acts[this.acts.length - 1];
    const first = this.acts[0];
    const lastGrad = this.grads[this.grads.length - 1];
    const series = [];
    const legend: { label: string; color: string; dashed?: boolean }[] = [];
    if (first !== undefined && first !== last) {
      series.push({ label: `step ${first.step}`, color: withAlpha(p.muted, 0.9), values: layers.map((l) => first.layers.get(l)?.std ?? null), width: p.lineW * 0.75, dashed: true, points: false });
      legend.push({ label: `activations @ ${fmtTick(first.step)}`, color: p.muted, dashed: true });
    }
    if (last !== undefined) {
      series.push({ label: `step ${last.step}`, color: p.train, values: layers.map((l) => last.layers.get(l)?.std ?? null), width: p.lineW * 1.25 });
      legend.push({ label: `activations @ ${fmtTick(last.step)}`, color: p.train });
    }
    if (lastGrad !== undefined) {
      const byLayer = new Map(lastGrad.outputs.map((o) => [o.layer, finite(o.std)]));
      if (layers.some((l) => byLayer.has(l))) {
        series.push({ label: "gradient", color: p.val, values: layers.map((l) => byLayer.get(l) ?? null), width: p.lineW, dashed: true });
        legend.push({ label: "∂loss/∂output", color: p.val, dashed: true });
      }
    }
    const key = JSON.stringify(legend);
    if (this.depthLegend.dataset.key !== key) {
      this.depthLegend.dataset.key = key;
      this.depthLegend.replaceChildren(new Legend(legend).el);
    }
    const r = drawDepthProfile(g, p, { width: w, height: h, layers, series });
    if (r !== null) this.catFrames.set(this.depthCanvas, { frame: r.frame, layers });
    else this.catFrames.delete(this.depthCanvas);
  }

  private drawStdTime(p: Palette): void {
    const layers = this.layerOrder.filter((l) => this.acts.some((a) => a.layers.has(l)));
    const w = widthOf(this.stdBox);
    if (w <= 0) return;
    const key = `${layers.join(",")}|${p.theme}|${p.tickPx}|${p.lineW}|${this.chartH()}`;
    if (this.stdChart === null || this.stdKey !== key) {
      this.stdChart?.destroy();
      this.stdBox.replaceChildren();
      const o = baseOptions(w, this.chartH(), undefined, p.fontPx);
      o.scales = { x: { time: false }, y: { distr: 3, log: 10 } };
      o.axes = [axis(p, { size: Math.round(p.fontPx * 1.9) }), axis(p, { size: yAxisSize(p), log: true })];
      o.series = [{}, ...layers.map((l, i) => ({ label: l, stroke: depthColor(i, layers.length, p), width: p.lineW, points: { show: false }, spanGaps: true }))];
      o.hooks = { setCursor: [cursorTooltip(this.stdTip, (x) => `step ${fmtTick(x)} · std`, (v) => fmt(v))] };
      this.stdChart = new uPlot(o, [[]], this.stdBox);
      recordDrawing(this.stdBox, this.stdChart);
      this.stdKey = key;
      const n = layers.length;
      this.stdLegend.replaceChildren(
        n > 0
          ? new Legend(n <= 4 ? layers.map((l, i) => ({ label: l, color: depthColor(i, n, p) })) : [
            { label: `${layers[0]} (first)`, color: depthColor(0, n, p) },
            { label: `${layers[n - 1]} (last)`, color: depthColor(n - 1, n, p) },
          ]).el
          : el("span"),
      );
    }
    const x = this.acts.map((a) => a.step);
    const ys = layers.map((l) => this.acts.map((a) => {
      const v = a.layers.get(l)?.std;
      return v !== undefined && v > 0 && Number.isFinite(v) ? v : null;
    }));
    this.stdChart.setData([x, ...ys]);
  }

  private drawMean(p: Palette): void {
    const w = widthOf(this.meanCanvas.parentElement ?? this.root);
    const h = this.chartH();
    const g = fitCanvas(this.meanCanvas, w, h);
    const last = this.acts[this.acts.length - 1];
    const layers = this.layerOrder.filter((l) => last?.layers.has(l) === true);
    const r = drawMeanStd(g, p, {
      width: w,
      height: h,
      layers,
      stats: layers.map((l) => {
        const a = last?.layers.get(l);
        return a === undefined ? null : { mean: a.mean, std: a.std, min: a.min, max: a.max };
      }),
      color: p.train,
    });
    this.catFrames.set(this.meanCanvas, { frame: r.frame, layers });
  }

  private drawFrac(p: Palette): void {
    const w = widthOf(this.fracCanvas.parentElement ?? this.root);
    const h = this.chartH();
    const g = fitCanvas(this.fracCanvas, w, h);
    const last = this.acts[this.acts.length - 1];
    const layers = this.layerOrder.filter((l) => last?.layers.has(l) === true);
    const dead = layers.map((l) => last?.layers.get(l)?.dead_fraction ?? null);
    const sat = layers.map((l) => last?.layers.get(l)?.saturated_fraction ?? null);
    const legend = [
      { label: "dead (never active)", color: p.bad },
      { label: "saturated", color: p.warn },
    ];
    if (this.fracLegend.childElementCount === 0 || this.fracLegend.dataset.theme !== p.theme) {
      this.fracLegend.dataset.theme = p.theme;
      this.fracLegend.replaceChildren(new Legend(legend.map((x) => ({ ...x }))).el);
      this.fracLegend.querySelectorAll(".viz-swatch").forEach((s) => s.classList.add("box"));
    }
    const none = dead.every((v) => v === null) && sat.every((v) => v === null);
    this.fracNote.hidden = !none;
    this.fracNote.textContent = none ? "No dead/saturation measure for these activations (only ReLU-like and sigmoid/tanh layers have one)." : "";
    const r = drawFractions(g, p, { width: w, height: h, layers, groups: [{ ...legend[0]!, values: dead }, { ...legend[1]!, values: sat }] });
    this.catFrames.set(this.fracCanvas, { frame: r.frame, layers });
  }

  private drawRatios(p: Palette): void {
    // the ~1e-3 rule of thumb is about weight matrices; biases are shown only when there are no weights
    let names: string[] = [];
    for (const gm of this.grads) for (const r of gm.update_ratios) if (!names.includes(r.name)) names.push(r.name);
    const weightsOnly = names.filter((n) => !/bias$/.test(n));
    if (weightsOnly.length > 0) names = weightsOnly;
    this.ratioCard.hidden = names.length === 0 && this.grads.length === 0;
    const w = widthOf(this.ratioBox);
    if (w <= 0 || this.ratioCard.hidden) return;
    const key = `${names.join(",")}|${p.theme}|${p.tickPx}|${p.lineW}|${this.chartH()}`;
    if (this.ratioChart === null || this.ratioKey !== key) {
      this.ratioChart?.destroy();
      this.ratioBox.replaceChildren();
      const o = baseOptions(w, this.chartH(), undefined, p.fontPx);
      o.scales = {
        x: { time: false },
        y: {
          distr: 3,
          log: 10,
          // always include the healthy band so "too small" and "too large" read at a glance
          range: (_u, lo, hi) => [Math.min(lo ?? RATIO_BAND[0], RATIO_BAND[0] / 3), Math.max(hi ?? RATIO_BAND[1], RATIO_BAND[1] * 3)],
        },
      };
      o.axes = [axis(p, { size: Math.round(p.fontPx * 1.9) }), axis(p, { size: yAxisSize(p), log: true })];
      o.series = [{}, ...names.map((n, i) => ({ label: shortParam(n), stroke: depthColor(i, names.length, p), width: p.lineW, points: { show: false }, spanGaps: true }))];
      o.hooks = {
        drawAxes: [bandHook(RATIO_BAND[0], RATIO_BAND[1], p.band, { y: 1e-3, stroke: p.good })],
        setCursor: [cursorTooltip(this.ratioTip, (x) => `step ${fmtTick(x)} · update/weight`, (v) => fmt(v))],
      };
      this.ratioChart = new uPlot(o, [[]], this.ratioBox);
      recordDrawing(this.ratioBox, this.ratioChart);
      this.ratioKey = key;
      const n = names.length;
      const items = [
        ...(n > 0 ? [{ label: shortParam(names[0]!), color: depthColor(0, n, p) }] : []),
        ...(n > 1 ? [{ label: shortParam(names[n - 1]!), color: depthColor(n - 1, n, p) }] : []),
        { label: "healthy ≈ 1e-3", color: p.good, dashed: true },
      ];
      this.ratioLegend.replaceChildren(new Legend(items).el);
    }
    const x = this.grads.map((gm) => gm.step);
    const ys = names.map((n) => this.grads.map((gm) => {
      const r = finite(gm.update_ratios.find((u) => u.name === n)?.ratio);
      return r !== null && r > 0 ? r : null;
    }));
    this.ratioChart.setData([x, ...ys]);
  }

  // ------------------------------------------------------------ hover

  private hookHover(): void {
    const rel = (e: MouseEvent, c: HTMLElement, host: HTMLElement): { x: number; y: number; hx: number; hy: number } => {
      const r = c.getBoundingClientRect();
      const hr = host.getBoundingClientRect();
      return { x: e.clientX - r.left, y: e.clientY - r.top, hx: e.clientX - hr.left, hy: e.clientY - hr.top };
    };
    this.heatCanvas.addEventListener("mousemove", (e) => {
      const L = this.heatLayout;
      const host = this.heatTip.el.parentElement!;
      const { x, y, hx, hy } = rel(e, this.heatCanvas, host);
      if (L === null || x < L.x0 || x > L.x1 || L.cols === 0) return this.heatTip.hide();
      const row = Math.floor((y - L.top) / (L.rowH + L.gap));
      const col = Math.min(L.cols - 1, Math.floor(((x - L.x0) / (L.x1 - L.x0)) * L.cols));
      const layer = this.heatLayers[row];
      const snap = this.heatSnaps[col];
      if (layer === undefined || snap === undefined) return this.heatTip.hide();
      const e2 = snap.layers.get(layer);
      const a = this.source === "activations" ? this.acts.find((s) => s.step === snap.step)?.layers.get(layer) : undefined;
      const rows: [string, string][] = e2 === undefined ? [] : [["mean", fmt(e2.mean)], ["std", fmt(e2.std)], ["range", `${fmt(e2.edges[0])} … ${fmt(e2.edges[1])}`]];
      if (a?.dead_fraction != null) rows.push(["dead", fmtPct(a.dead_fraction)]);
      if (a?.saturated_fraction != null) rows.push(["saturated", fmtPct(a.saturated_fraction)]);
      this.heatTip.show(hx, hy, `${layer} · step ${snap.step.toLocaleString()}`, rows);
    });
    this.heatCanvas.addEventListener("mouseleave", () => this.heatTip.hide());

    const catHover = (canvas: HTMLCanvasElement, tip: Tooltip, rows: (layer: string) => [string, string][]): void => {
      canvas.addEventListener("mousemove", (e) => {
        const ph = this.catFrames.get(canvas) ?? null;
        const host = tip.el.parentElement!;
        const { x, hx, hy } = rel(e, canvas, host);
        if (ph === null) return tip.hide();
        const i = slotAt({ ...ph.frame, y0: 0, y1: 0, cx: () => 0 }, x, ph.layers.length);
        const layer = ph.layers[i];
        if (layer === undefined) return tip.hide();
        tip.show(hx, hy, layer, rows(layer));
      });
      canvas.addEventListener("mouseleave", () => tip.hide());
    };
    const last = (): Map<string, ActLayer> | undefined => this.acts[this.acts.length - 1]?.layers;
    catHover(this.depthCanvas, this.depthTip, (l) => {
      const first = this.acts[0]?.layers.get(l);
      const a = last()?.get(l);
      const gstd = this.grads[this.grads.length - 1]?.outputs.find((o) => o.layer === l)?.std;
      return [["std now", fmt(a?.std)], ["std at start", fmt(first?.std)], ["gradient std", fmt(gstd)]];
    });
    catHover(this.meanCanvas, this.meanTip, (l) => {
      const a = last()?.get(l);
      return [["mean", fmt(a?.mean)], ["std", fmt(a?.std)], ["min", fmt(a?.min)], ["max", fmt(a?.max)]];
    });
    catHover(this.fracCanvas, this.fracTip, (l) => {
      const a = last()?.get(l);
      return [["activation", a?.act ?? "–"], ["dead", fmtPct(a?.dead_fraction)], ["saturated", fmtPct(a?.saturated_fraction)]];
    });
  }
}
