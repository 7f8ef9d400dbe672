/**
 * Training vs validation loss and accuracy (two uPlot charts) plus the learning
 * rate, appended from `metrics` messages and redrawn at most once per frame.
 *
 * The training series is drawn twice: raw (faint) and smoothed with a debiased EMA
 * (TensorBoard's smoothing: the first points are not dragged towards zero). The
 * validation series is sparse (one point per evaluation) and drawn raw with markers.
 * The loss axis can be switched to log scale, where plateaus and late progress show.
 * A point no line segment reaches (a one-point curve, a point between NaN gaps: a run that
 * exploded early) is drawn as a dot, so such a run never shows an empty chart.
 *
 * The root carries `data-points` (metric points drawn) and `data-step` (the newest step
 * drawn): a reattached page must show the run's whole curve, and the tests count it.
 */

import type { FinalMsg, MetricsMsg, ServerMessage, StatusMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, cssNumber, el, emptyState, fillSize, finite, fmt, fmtPct, onSizeChange, onWidthChange, toNum, toggle, widthOf } from "../viz/dom";
import { readPalette, withAlpha } from "../viz/theme";
import { Legend, axis, baseOptions, loneMarkers, recordDrawing, uPlot, valueAt, yAxisSize } from "./uplotTheme";

export interface LossCurvesOptions {
  /** EMA weight 0..0.99 (default 0.6) */
  smoothing?: number;
  /** start with a log-scale loss axis (default false) */
  logLoss?: boolean;
}

type Col = (number | null)[];

/** Debiased exponential moving average, extended one value at a time. */
class Ema {
  private last = 0;
  private n = 0;
  constructor(private readonly w: number) {}
  /**
   * The smoothed value after `v`. A missing value (an evaluation-only point) keeps the
   * curve going at its current value; a non-finite one (NaN/inf) is a gap, not a flat line.
   */
  push(v: number | null): number | null {
    if (v === null) return this.n === 0 ? null : this.last / (1 - Math.pow(this.w, this.n));
    if (!Number.isFinite(v)) return null;
    this.last = this.last * this.w + (1 - this.w) * v;
    this.n++;
    return this.w === 0 ? v : this.last / (1 - Math.pow(this.w, this.n));
  }
}

let instances = 0;

/** Markers on the validation series only while they are few enough to read (≤ 1 per 12 px). */
function sparsePoints(u: uPlot, seriesIdx: number, i0: number, i1: number): boolean {
  const col = u.data[seriesIdx];
  if (col === undefined) return false;
  let n = 0;
  for (let i = i0; i <= i1; i++) if (col[i] != null) n++;
  return n <= u.bbox.width / devicePixelRatio / 12;
}

/** How often a chart with data but no width yet looks again (ms): cheap, and bounded by a hidden tab. */
const HIDDEN_RETRY_MS = 250;

export class LossCurves {
  private readonly redraw: Redraw;
  private readonly syncKey = `dl-loss-${++instances}`;
  private smoothing: number;
  private logLoss: boolean;

  // columns, one entry per metrics message
  private step: number[] = [];
  private epoch: number[] = [];
  private trainLoss: Col = [];
  private trainAcc: Col = [];
  private valLoss: Col = [];
  private valAcc: Col = [];
  private lr: Col = [];
  private sLoss: Col = [];
  private sAcc: Col = [];
  private emaLoss: Ema;
  private emaAcc: Ema;
  private lastMetrics: MetricsMsg | null = null;
  private bestValAcc: number | null = null;
  /** first step whose training loss was NaN or infinite (sent as "nan"/"inf") */
  private firstBad: number | null = null;
  private state: string | null = null;
  private finalMsg: FinalMsg | null = null;

  private charts: { loss: uPlot; acc: uPlot; lr: uPlot } | null = null;
  /** "WxH" of the three charts as last sized, to skip resizes that change nothing */
  private chartSizes = "";
  private hasAcc = true;

  // DOM
  private readonly body: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly stats: HTMLElement;
  private readonly badge: HTMLElement;
  private readonly slider: HTMLInputElement;
  private readonly sliderValue: HTMLElement;
  private readonly lossBox: HTMLElement;
  private readonly accBox: HTMLElement;
  private readonly lrBox: HTMLElement;
  private lossLegend: Legend | null = null;
  private accLegend: Legend | null = null;
  private lrLegend: Legend | null = null;
  private readonly lossHead: HTMLElement;
  private readonly accHead: HTMLElement;
  private readonly lrHead: HTMLElement;
  private readonly accCard: HTMLElement;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: LossCurvesOptions = {}) {
    this.smoothing = Math.min(0.99, Math.max(0, opts.smoothing ?? 0.6));
    this.logLoss = opts.logLoss ?? false;
    this.emaLoss = new Ema(this.smoothing);
    this.emaAcc = new Ema(this.smoothing);
    this.redraw = new Redraw(ctx, () => this.draw());

    this.slider = el("input", { class: "viz-range", attrs: { type: "range", min: "0", max: "0.99", step: "0.01" }, title: "EMA smoothing of the training curves" });
    this.slider.value = String(this.smoothing);
    this.sliderValue = el("span", { class: "viz-num", text: this.smoothing.toFixed(2) });
    this.slider.addEventListener("input", () => this.setSmoothing(parseFloat(this.slider.value)));
    const logToggle = toggle("log loss", this.logLoss, (on) => {
      this.logLoss = on;
      this.destroyCharts();
      this.redraw.request();
    }, "logarithmic loss axis: shows late progress and plateaus");

    this.stats = el("div", { class: "viz-stats" });
    this.badge = el("span", { class: "viz-badge", attrs: { hidden: "" } });
    const toolbar = el("div", { class: "viz-toolbar" }, [
      this.stats,
      this.badge,
      el("span", { class: "viz-spacer" }),
      el("label", { class: "viz-control", title: "EMA smoothing of the training curves" }, ["smoothing", this.slider, this.sliderValue]),
      logToggle.label,
    ]);

    this.lossBox = el("div", { class: "viz-plot" });
    this.accBox = el("div", { class: "viz-plot" });
    this.lrBox = el("div", { class: "viz-plot viz-plot-small" });
    this.lossHead = el("div", { class: "viz-card-legend" });
    this.accHead = el("div", { class: "viz-card-legend" });
    this.lrHead = el("div", { class: "viz-card-legend" });
    const cardOf = (title: string, head: HTMLElement, box: HTMLElement, cls = ""): HTMLElement =>
      el("section", { class: `viz-card ${cls}` }, [
        el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: title }), head]),
        box,
      ]);
    this.accCard = cardOf("Accuracy", this.accHead, this.accBox);
    this.body = el("div", { class: "viz-loss-body" }, [
      el("div", { class: "viz-grid2" }, [cardOf("Loss", this.lossHead, this.lossBox), this.accCard]),
      cardOf("Learning rate", this.lrHead, this.lrBox, "viz-card-lr"),
    ]);
    this.empty = emptyState("Start training to see the loss curves", "Training loss and accuracy appear every few steps; validation after each evaluation.");
    root.classList.add("viz-view", "viz-loss");
    root.replaceChildren(toolbar, this.empty, this.body);

    onWidthChange(root, () => this.resize());
    // projector mode sizes the chart boxes to the tab (fill boxes): follow their height too
    for (const box of [this.lossBox, this.accBox, this.lrBox]) onSizeChange(box, () => this.resize());
    ctx.onThemeChange(() => {
      this.destroyCharts();
      this.redraw.request();
    });
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case "metrics":
        this.addMetrics(msg);
        break;
      case "status":
        this.setStatus(msg);
        break;
      case "final":
        this.finalMsg = msg;
        if (finite(msg.best_val_acc) !== null) this.bestValAcc = finite(msg.best_val_acc);
        this.redraw.request();
        break;
      default:
        return;
    }
  }

  reset(): void {
    this.step = [];
    this.epoch = [];
    this.trainLoss = [];
    this.trainAcc = [];
    this.valLoss = [];
    this.valAcc = [];
    this.lr = [];
    this.sLoss = [];
    this.sAcc = [];
    this.emaLoss = new Ema(this.smoothing);
    this.emaAcc = new Ema(this.smoothing);
    this.lastMetrics = null;
    this.bestValAcc = null;
    this.firstBad = null;
    this.state = null;
    this.finalMsg = null;
    this.destroyCharts();
    this.redraw.request();
  }

  resize(): void {
    if (this.charts !== null && widthOf(this.lossBox) > 0) {
      const sizes = this.sizes();
      const key = JSON.stringify(sizes);
      if (key !== this.chartSizes) {
        this.charts.loss.setSize(sizes.loss);
        this.charts.acc.setSize(sizes.acc);
        this.charts.lr.setSize(sizes.lr);
        this.chartSizes = key;
      }
    }
    this.redraw.request();
  }

  /**
   * Each chart's size in CSS pixels: its box's when the stylesheet makes the boxes fill the tab
   * (projector mode, `fillSize`), else the box's width and the --viz-chart-h heights.
   */
  private sizes(): Record<"loss" | "acc" | "lr", { width: number; height: number }> {
    const h = cssNumber(this.root, "--viz-chart-h", 210);
    const hs = cssNumber(this.root, "--viz-chart-h-small", 110);
    const of = (box: HTMLElement, height: number) => fillSize(box) ?? { width: widthOf(box), height };
    return { loss: of(this.lossBox, h), acc: of(this.accBox, h), lr: of(this.lrBox, hs) };
  }

  private addMetrics(m: MetricsMsg): void {
    const n = this.step.length;
    if (n > 0) {
      const last = this.step[n - 1]!;
      if (m.step === last) return; // replayed after a reconnect
      if (m.step < last) {
        // replay from earlier: drop what follows so the series stays ascending
        const keep = this.step.findIndex((s) => s >= m.step);
        this.truncate(keep);
      }
    }
    const num = finite;
    // null = not measured at this point (kept as a gap the line spans); NaN/inf = broken (a real gap)
    const wire = (v: unknown): number | null => toNum(v);
    this.step.push(m.step);
    this.epoch.push(m.epoch);
    this.trainLoss.push(num(m.train_loss));
    this.trainAcc.push(num(m.train_acc));
    this.valLoss.push(num(m.val_loss));
    this.valAcc.push(num(m.val_acc));
    this.lr.push(num(m.lr));
    this.sLoss.push(this.emaLoss.push(wire(m.train_loss)));
    const raw = toNum(m.train_loss);
    if (this.firstBad === null && raw !== null && !Number.isFinite(raw)) this.firstBad = m.step;
    this.sAcc.push(this.emaAcc.push(wire(m.train_acc)));
    const va = finite(m.val_acc);
    if (va !== null && (this.bestValAcc === null || va > this.bestValAcc)) this.bestValAcc = va;
    this.lastMetrics = m;
    this.redraw.request();
  }

  private truncate(keep: number): void {
    for (const col of [this.step, this.epoch, this.trainLoss, this.trainAcc, this.valLoss, this.valAcc, this.lr] as unknown[][]) col.length = keep;
    this.resmooth();
  }

  private setStatus(s: StatusMsg): void {
    this.state = s.state === "queued" && s.position !== undefined ? `queued #${s.position}` : s.state;
    this.redraw.request();
  }

  private setSmoothing(w: number): void {
    this.smoothing = Math.min(0.99, Math.max(0, w));
    this.sliderValue.textContent = this.smoothing.toFixed(2);
    this.resmooth();
    this.redraw.request();
  }

  private resmooth(): void {
    this.emaLoss = new Ema(this.smoothing);
    this.emaAcc = new Ema(this.smoothing);
    this.sLoss = this.trainLoss.map((v) => this.emaLoss.push(v));
    this.sAcc = this.trainAcc.map((v) => this.emaAcc.push(v));
  }

  private destroyCharts(): void {
    if (this.charts !== null) {
      this.charts.loss.destroy();
      this.charts.acc.destroy();
      this.charts.lr.destroy();
      this.charts = null;
    }
    this.lossBox.replaceChildren();
    this.accBox.replaceChildren();
    this.lrBox.replaceChildren();
  }

  private buildCharts(): void {
    const p = readPalette(this.root, this.ctx.theme());
    const sizes = this.sizes();
    const lw = p.lineW;
    // the raw training curve is a faint backdrop to the smoothed one: half its width
    const rawW = Math.max(1, lw / 2);
    const ySize = yAxisSize(p);
    const xAxis = axis(p, { size: Math.round(p.fontPx * 1.9) });

    // loss: raw train, smoothed train, validation
    const lossOpts = baseOptions(sizes.loss.width, sizes.loss.height, this.syncKey, p.fontPx);
    lossOpts.scales = { x: { time: false }, y: this.logLoss ? { distr: 3, log: 10 } : { auto: true } };
    lossOpts.axes = [xAxis, axis(p, { size: ySize, log: this.logLoss })];
    lossOpts.series = [
      {},
      { label: "train (raw)", stroke: withAlpha(p.train, 0.28), width: rawW, points: { show: false }, spanGaps: true },
      { label: "train", stroke: p.train, width: lw, points: { show: false, filter: loneMarkers, size: lw + 5, fill: p.train, stroke: p.train } },
      { label: "validation", stroke: p.val, width: lw, spanGaps: true, points: { show: sparsePoints, filter: loneMarkers, size: lw + 3, fill: p.val, stroke: p.val } },
    ];
    this.lossLegend = new Legend([
      { label: "train", color: p.train },
      { label: "validation", color: p.val },
    ]);
    lossOpts.hooks = { setCursor: [(u) => this.updateLegend(u, "loss")], draw: [(u) => this.markNonFinite(u, p.bad, p.fontPx)] };
    this.lossHead.replaceChildren(this.lossLegend.el);

    const accOpts = baseOptions(sizes.acc.width, sizes.acc.height, this.syncKey, p.fontPx);
    accOpts.scales = {
      x: { time: false },
      y: {
        range: (_u, lo, hi) => {
          if (lo == null || hi == null || !Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
          const pad = Math.max(0.01, (hi - lo) * 0.08);
          return [Math.max(0, lo - pad), Math.min(1, hi + pad)];
        },
      },
    };
    accOpts.axes = [xAxis, axis(p, { size: ySize, values: (_u, splits) => splits.map((v) => (v == null ? "" : `${Math.round(v * 1000) / 10}%`)) })];
    accOpts.series = [
      {},
      { label: "train (raw)", stroke: withAlpha(p.train, 0.28), width: rawW, points: { show: false }, spanGaps: true },
      { label: "train", stroke: p.train, width: lw, points: { show: false, filter: loneMarkers, size: lw + 5, fill: p.train, stroke: p.train } },
      { label: "validation", stroke: p.val, width: lw, spanGaps: true, points: { show: sparsePoints, filter: loneMarkers, size: lw + 3, fill: p.val, stroke: p.val } },
    ];
    this.accLegend = new Legend([
      { label: "train", color: p.train },
      { label: "validation", color: p.val },
    ]);
    accOpts.hooks = { setCursor: [(u) => this.updateLegend(u, "acc")] };
    this.accHead.replaceChildren(this.accLegend.el);

    const lrOpts = baseOptions(sizes.lr.width, sizes.lr.height, this.syncKey, p.fontPx);
    lrOpts.axes = [axis(p, { size: Math.round(p.fontPx * 1.9) }), axis(p, { size: ySize, ticks: { show: false } })];
    lrOpts.series = [{}, { label: "lr", stroke: p.lr, width: lw, points: { show: false, filter: loneMarkers, size: lw + 4, fill: p.lr, stroke: p.lr }, fill: withAlpha(p.lr, 0.08) }];
    lrOpts.scales = { x: { time: false }, y: { range: (_u, lo, hi) => [Math.min(0, lo ?? 0), (hi ?? 1) * 1.08 || 1] } };
    this.lrLegend = new Legend([{ label: "learning rate", color: p.lr }]);
    lrOpts.hooks = { setCursor: [(u) => this.updateLegend(u, "lr")] };
    this.lrHead.replaceChildren(this.lrLegend.el);

    this.lossBox.replaceChildren();
    this.accBox.replaceChildren();
    this.lrBox.replaceChildren();
    this.charts = {
      loss: new uPlot(lossOpts, this.lossData(), this.lossBox),
      acc: new uPlot(accOpts, [this.step, this.trainAcc, this.sAcc, this.valAcc], this.accBox),
      lr: new uPlot(lrOpts, [this.step, this.lr], this.lrBox),
    };
    this.chartSizes = JSON.stringify(sizes);
    recordDrawing(this.lossBox, this.charts.loss);
    recordDrawing(this.accBox, this.charts.acc);
    recordDrawing(this.lrBox, this.charts.lr);
  }

  /** A red dashed line where the loss first became NaN/inf: the moment the run broke. */
  private markNonFinite(u: uPlot, color: string, fontPx: number): void {
    if (this.firstBad === null) return;
    const x = Math.round(u.valToPos(this.firstBad, "x", true));
    const { top, height } = u.bbox;
    const g = u.ctx;
    const dpr = devicePixelRatio || 1;
    g.save();
    g.strokeStyle = color;
    g.lineWidth = 1.5 * dpr;
    g.setLineDash([5 * dpr, 4 * dpr]);
    g.beginPath();
    g.moveTo(x, top);
    g.lineTo(x, top + height);
    g.stroke();
    g.fillStyle = color;
    g.font = `600 ${Math.round(fontPx * 0.78 * dpr)}px sans-serif`;
    g.textAlign = "right";
    g.textBaseline = "top";
    g.fillText("loss → NaN/∞", x - 4 * dpr, top + 4 * dpr);
    g.restore();
  }

  private lossData(): uPlot.AlignedData {
    if (!this.logLoss) return [this.step, this.trainLoss, this.sLoss, this.valLoss];
    const pos = (c: Col): Col => c.map((v) => (v !== null && v > 0 ? v : null));
    return [this.step, pos(this.trainLoss), pos(this.sLoss), pos(this.valLoss)];
  }

  private updateLegend(u: uPlot, which: "loss" | "acc" | "lr"): void {
    const n = this.step.length;
    const i = u.cursor.idx ?? (n > 0 ? n - 1 : null);
    if (which === "lr") {
      this.lrLegend?.set([fmt(valueAt(u, 1, i))]);
      return;
    }
    // validation: the value at or before the cursor (it is sparse)
    let vi = i;
    while (vi != null && vi >= 0 && valueAt(u, 3, vi) === null) vi--;
    const f = which === "acc" ? (v: number | null) => fmtPct(v) : (v: number | null) => fmt(v, 4);
    const legend = which === "acc" ? this.accLegend : this.lossLegend;
    legend?.set([f(valueAt(u, 2, i)), f(vi != null && vi >= 0 ? valueAt(u, 3, vi) : null)]);
  }

  private draw(): void {
    const has = this.step.length > 0;
    this.empty.hidden = has;
    this.body.hidden = !has;
    this.drawStats();
    if (!has) {
      this.root.dataset.points = "0";
      delete this.root.dataset.step;
      return;
    }
    if (widthOf(this.lossBox) <= 0) {
      // Not laid out yet (a hidden tab, or a replay that arrived before the page's first layout): look
      // again shortly. The width observer alone missed the case where the root had its width all along
      // and only the chart's box was still empty, which left a reopened run's chart blank.
      window.setTimeout(() => this.redraw.request(), HIDDEN_RETRY_MS);
      return;
    }
    const hasAcc = this.trainAcc.some((v) => v !== null);
    if (hasAcc !== this.hasAcc) {
      this.hasAcc = hasAcc;
      this.accCard.hidden = !hasAcc;
      this.destroyCharts();
    }
    if (this.charts === null) this.buildCharts();
    const c = this.charts;
    if (c === null) return;
    c.loss.setData(this.lossData());
    c.acc.setData([this.step, this.trainAcc, this.sAcc, this.valAcc]);
    c.lr.setData([this.step, this.lr]);
    this.root.dataset.points = String(this.step.length);
    this.root.dataset.step = String(this.step[this.step.length - 1]);
    if (c.loss.cursor.idx == null) {
      this.updateLegend(c.loss, "loss");
      this.updateLegend(c.acc, "acc");
      this.updateLegend(c.lr, "lr");
    }
  }

  private drawStats(): void {
    const m = this.lastMetrics;
    const parts: [string, string][] = [];
    if (m !== null) {
      parts.push(["step", m.step.toLocaleString()]);
      parts.push(["epoch", (finite(m.epoch) ?? 0).toFixed(2)]);
      parts.push(["train loss", fmt(m.train_loss, 4)]);
      if (this.bestValAcc !== null) parts.push(["best val acc", fmtPct(this.bestValAcc)]);
      const eps = finite(m.examples_per_s);
      if (eps !== null && eps > 0) parts.push(["ex/s", Math.round(eps).toLocaleString()]);
    }
    this.stats.replaceChildren(...parts.map(([k, v]) => el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: k }), el("b", { text: v })])));
    const f = this.finalMsg;
    const label = f !== null ? (f.stop_reason === "finished" ? "finished" : f.stop_reason.replace("_", " ")) : this.state;
    this.badge.hidden = label === null;
    if (label !== null) {
      this.badge.textContent = label;
      this.badge.dataset.kind = f !== null && (f.stop_reason === "exploded" || f.stop_reason === "non_finite") ? "bad" : label === "running" ? "live" : "";
      this.badge.title = f?.message ?? "";
    }
  }
}
