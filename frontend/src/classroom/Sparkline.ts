/**
 * A small line chart without axes for a dashboard card: one [step, value] series on a canvas,
 * scaled to the series' own range (or a fixed one, 0..1 for accuracies), with the last value
 * marked. Sized by CSS: it reads its box on every draw, so the projector's larger cards get
 * sharper lines, not stretched pixels.
 */

import { h } from "../dom";

export interface SparklineOptions {
  /** CSS variable holding the line's colour, e.g. "--accent" */
  colorVar: string;
  /** a fixed value range (accuracy: [0, 1]); default: the data's */
  range?: [number, number];
  /** what the chart shows, for screen readers and the tooltip */
  label: string;
}

export class Sparkline {
  /** the box CSS sizes (any height: projector mode stretches it); the canvas fills it */
  readonly el: HTMLElement;
  private canvas: HTMLCanvasElement;
  private points: [number, number][] = [];

  constructor(private readonly options: SparklineOptions) {
    this.canvas = h("canvas.spark-canvas", { role: "img", "aria-label": options.label });
    this.el = h("div.sparkline", { title: options.label }, this.canvas);
  }

  /** Replace the series and redraw. */
  set(points: readonly [number, number][]): void {
    this.points = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
    this.el.dataset.points = String(this.points.length);
    this.draw();
  }

  /** Redraw at the current size and theme (after a resize or a theme change). */
  draw(): void {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const hgt = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== hgt) canvas.height = hgt;
    const g = canvas.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, w, hgt);
    const style = getComputedStyle(canvas);
    const color = style.getPropertyValue(this.options.colorVar).trim() || "#2563eb";
    const grid = style.getPropertyValue("--grid").trim() || "rgba(0,0,0,0.1)";
    // lines 2 CSS px on a laptop, up to 4 px on a projector's tall cards: the back row sees the shape
    const line = Math.min(4, Math.max(2, canvas.clientHeight / 40)) * dpr;
    const pad = line + 2 * dpr; // the line and the last point's dot stay inside the box
    // the baseline, so an empty card still reads as a chart
    g.strokeStyle = grid;
    g.lineWidth = dpr;
    g.beginPath();
    g.moveTo(pad, hgt - pad);
    g.lineTo(w - pad, hgt - pad);
    g.stroke();
    const pts = this.points;
    if (!pts.length) return;
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs);
    const x1 = Math.max(...xs);
    let [y0, y1] = this.options.range ?? [Math.min(...ys), Math.max(...ys)];
    if (y1 - y0 < 1e-12) {
      y0 -= 0.5;
      y1 += 0.5;
    }
    const px = (x: number): number => pad + (x1 > x0 ? ((x - x0) / (x1 - x0)) * (w - 2 * pad) : (w - 2 * pad) / 2);
    const py = (y: number): number => hgt - pad - ((Math.min(y1, Math.max(y0, y)) - y0) / (y1 - y0)) * (hgt - 2 * pad);
    g.strokeStyle = color;
    g.lineWidth = line;
    g.lineJoin = "round";
    g.lineCap = "round";
    g.beginPath();
    pts.forEach(([x, y], i) => (i === 0 ? g.moveTo(px(x), py(y)) : g.lineTo(px(x), py(y))));
    g.stroke();
    const [lx, ly] = pts[pts.length - 1] ?? [0, 0];
    g.fillStyle = color;
    g.beginPath();
    g.arc(px(lx), py(ly), line * 1.1, 0, 2 * Math.PI);
    g.fill();
  }
}
