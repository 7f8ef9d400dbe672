/**
 * A small canvas plot of the learning rate per step: the preview (POST /api/schedule/preview)
 * before training (a line), and the LR the run really used (its metrics' `lr`) as dots over it as it trains.
 *
 * The live line matters for schedules the preview cannot know: reduce-on-plateau is previewed
 * flat and drops only when the validation loss stalls, and a live LR change (`set lr`) moves the
 * whole schedule. A run that starts again at an earlier step clears the live line.
 */

import { h, num } from "../dom";

export class SchedulePlot {
  readonly el: HTMLElement;
  private canvas: HTMLCanvasElement;
  private caption: HTMLElement;
  private values: number[] = [];
  private steps: number[] = [];
  private stepsPerEpoch = 1;
  private marker: number | null = null;
  /** the run's LR so far: [step, lr], steps increasing */
  private liveSteps: number[] = [];
  private liveValues: number[] = [];
  /** said before the caption's figures, e.g. that only the first epochs of an endless run are shown */
  private note: string | null = null;

  constructor() {
    this.canvas = h("canvas.lr-plot", { "aria-label": "learning rate schedule" });
    this.caption = h("div.lr-caption.muted.small");
    this.el = h("div.lr-plot-wrap", null, this.canvas, this.caption);
    new ResizeObserver(() => this.draw()).observe(this.el);
  }

  /** `points` are [step, lr] pairs (possibly thinned: steps need not be consecutive); `note` prefixes the caption. */
  set(points: [number, number][], stepsPerEpoch: number, note: string | null = null): void {
    this.steps = points.map((p) => p[0]);
    this.values = points.map((p) => p[1]);
    this.stepsPerEpoch = Math.max(1, stepsPerEpoch);
    this.note = note;
    this.draw();
  }

  error(message: string): void {
    this.values = [];
    this.steps = [];
    this.caption.textContent = message;
    this.draw();
  }

  /** Mark the run's current step (null hides the marker). */
  mark(step: number | null): void {
    if (step === this.marker) return;
    this.marker = step;
    this.draw();
  }

  /**
   * The LR the run used at `step` (from a metrics message). Points arrive in step order; a step
   * before the last one means another run is shown: the live line starts again. null clears it.
   */
  live(step: number | null, lr: number | null): void {
    if (step === null || lr === null || !Number.isFinite(lr)) {
      if (step === null && this.liveSteps.length > 0) {
        this.liveSteps = [];
        this.liveValues = [];
        this.draw();
      }
      return;
    }
    const last = this.liveSteps[this.liveSteps.length - 1];
    if (last !== undefined && step < last) {
      this.liveSteps = [];
      this.liveValues = [];
    } else if (last === step) {
      return;
    }
    this.liveSteps.push(step);
    this.liveValues.push(lr);
    this.draw();
  }

  /** The live LR points drawn (a test hook and the caption's source). */
  livePoints(): number {
    return this.liveSteps.length;
  }

  private draw(): void {
    const width = this.el.clientWidth || 300;
    const height = 64; // css px
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const g = this.canvas.getContext("2d");
    if (!g) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(this.el);
    const fg = style.getPropertyValue("--accent").trim() || "#2563eb";
    const grid = style.getPropertyValue("--grid").trim() || "rgba(0,0,0,0.1)";
    const muted = style.getPropertyValue("--muted").trim() || "#888";
    const v = this.values;
    const liveColor = style.getPropertyValue("--viz-val").trim() || "#e8730c";
    g.strokeStyle = grid;
    g.strokeRect(0.5, 0.5, width - 1, height - 1);
    this.el.dataset.live = String(this.liveSteps.length);
    if (!v.length) return;
    let hi = Math.max(...v);
    let lo = Math.min(0, ...v);
    for (const lr of this.liveValues) {
      hi = Math.max(hi, lr);
      lo = Math.min(lo, lr);
    }
    const span = hi - lo || 1;
    const first = this.steps[0] ?? 1;
    const last = this.steps[this.steps.length - 1] ?? v.length;
    const xs = (step: number) => 4 + ((step - first) / Math.max(1, last - first)) * (width - 8);
    const x = (i: number) => xs(this.steps[i] ?? i);
    const y = (val: number) => height - 6 - ((val - lo) / span) * (height - 14);
    // epoch ticks
    const epochs = last / this.stepsPerEpoch;
    const every = Math.max(1, Math.ceil(epochs / 10));
    g.fillStyle = grid;
    for (let e = every; e < epochs; e += every) g.fillRect(Math.round(xs(e * this.stepsPerEpoch)), 1, 1, height - 2);
    g.beginPath();
    const stride = Math.max(1, Math.floor(v.length / (width * 2)));
    for (let i = 0; i < v.length; i += stride) {
      if (i === 0) g.moveTo(x(i), y(v[i] ?? 0));
      else g.lineTo(x(i), y(v[i] ?? 0));
    }
    g.lineTo(x(v.length - 1), y(v[v.length - 1] ?? 0));
    g.strokeStyle = fg;
    g.lineWidth = 1.5;
    g.stroke();
    if (this.marker !== null && this.marker <= last) {
      g.fillStyle = muted;
      g.fillRect(Math.round(xs(this.marker)), 1, 1.5, height - 2);
    }
    // the run's own LR over the preview, as dots: metrics points can be many steps apart (the server
    // merges fast intervals), and a line between two of them would invent a slope a step schedule never had
    const shown = this.liveSteps.filter((s) => s <= last).length;
    g.fillStyle = liveColor;
    for (let i = 0; i < shown; i++) {
      g.beginPath();
      g.arc(xs(this.liveSteps[i]!), y(this.liveValues[i]!), 2.2, 0, 2 * Math.PI);
      g.fill();
    }
    const figures = `LR ${num(v[0] ?? 0)} → ${num(v[v.length - 1] ?? 0)}, peak ${num(Math.max(...v))} · ${last.toLocaleString()} steps (${num(epochs)} epochs)`;
    const now = this.liveValues[this.liveValues.length - 1];
    const live = now !== undefined ? ` · live LR ${num(now)} at step ${(this.liveSteps[this.liveSteps.length - 1] ?? 0).toLocaleString()}` : "";
    this.caption.textContent = (this.note !== null ? `${this.note} · ${figures}` : figures) + live;
  }
}
