/**
 * Minimal canvas plotting: linear and log scales with nice ticks, and axis/grid
 * drawing in the page's palette. Used by the small custom charts (per-layer bars,
 * depth profiles, probability bars) where uPlot's time-series model does not fit.
 */

import { fmt } from "./dom";
import { tickFont, type Palette } from "./theme";

export interface Scale {
  lo: number;
  hi: number;
  log: boolean;
  /** pixel position of value v (clamped into the scale's domain) */
  px(v: number): number;
  ticks(): number[];
  label(v: number): string;
}

/** "Nice" ticks (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

export function linScale(lo: number, hi: number, a: number, b: number, nTicks = 5): Scale {
  if (!(hi > lo)) {
    const m = Number.isFinite(lo) ? lo : 0;
    lo = m - 1;
    hi = m + 1;
  }
  return {
    lo,
    hi,
    log: false,
    px: (v) => a + ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (b - a),
    ticks: () => niceTicks(lo, hi, nTicks),
    label: (v) => fmt(v, 2),
  };
}

const SUP: Record<string, string> = { "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹" };

/** 10^k written as "10⁻³" (and 1, 10 for k = 0, 1). */
export function decadeLabel(k: number): string {
  if (k === 0) return "1";
  if (k === 1) return "10";
  return "10" + String(k).split("").map((ch) => SUP[ch] ?? ch).join("");
}

/** Log10 scale over whole decades containing [lo, hi] (both > 0). */
export function logScale(lo: number, hi: number, a: number, b: number): Scale {
  const l0 = Math.floor(Math.log10(Math.max(1e-30, lo)));
  let l1 = Math.ceil(Math.log10(Math.max(1e-30, hi)));
  if (l1 <= l0) l1 = l0 + 1;
  const span = l1 - l0;
  // at most ~6 labelled decades
  const every = Math.max(1, Math.ceil(span / 6));
  return {
    lo: Math.pow(10, l0),
    hi: Math.pow(10, l1),
    log: true,
    px: (v) => {
      const lv = v > 0 && Number.isFinite(v) ? Math.log10(v) : l0;
      return a + ((Math.min(l1, Math.max(l0, lv)) - l0) / span) * (b - a);
    },
    ticks: () => {
      const t: number[] = [];
      for (let k = l0; k <= l1; k += every) t.push(Math.pow(10, k));
      return t;
    },
    label: (v) => decadeLabel(Math.round(Math.log10(v))),
  };
}

/** Finite, positive extent of values (for log scales); null when none. */
export function positiveExtent(values: Iterable<number | null | undefined>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v != null && Number.isFinite(v) && v > 0) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

export function finiteExtent(values: Iterable<number | null | undefined>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v != null && Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

/**
 * Set `g`'s font to the palette's tick label font, and note on its canvas (data-tick-font) the
 * font the canvas normalized it to: what it will draw the labels with, for the projector tests.
 */
export function useTickFont(g: CanvasRenderingContext2D, p: Palette): void {
  g.font = tickFont(p);
  if (typeof HTMLCanvasElement !== "undefined" && g.canvas instanceof HTMLCanvasElement) g.canvas.dataset.tickFont = g.font;
}

/** Horizontal grid lines at the y scale's ticks, labels right-aligned at x0 - 4. */
export function gridY(g: CanvasRenderingContext2D, p: Palette, y: Scale, x0: number, x1: number): void {
  g.save();
  useTickFont(g, p);
  g.textAlign = "right";
  g.textBaseline = "middle";
  g.lineWidth = 1;
  for (const t of y.ticks()) {
    const py = Math.round(y.px(t)) + 0.5;
    g.strokeStyle = p.grid;
    g.beginPath();
    g.moveTo(x0, py);
    g.lineTo(x1, py);
    g.stroke();
    g.fillStyle = p.muted;
    g.fillText(y.label(t), x0 - 4, py);
  }
  g.restore();
}

/** Vertical grid lines at the x scale's ticks, labels centred below y1 + 3. */
export function gridX(g: CanvasRenderingContext2D, p: Palette, x: Scale, y0: number, y1: number, labels = true): void {
  g.save();
  useTickFont(g, p);
  g.textAlign = "center";
  g.textBaseline = "top";
  g.lineWidth = 1;
  for (const t of x.ticks()) {
    const px = Math.round(x.px(t)) + 0.5;
    g.strokeStyle = p.grid;
    g.beginPath();
    g.moveTo(px, y0);
    g.lineTo(px, y1);
    g.stroke();
    if (labels) {
      g.fillStyle = p.muted;
      g.fillText(x.label(t), px, y1 + 3);
    }
  }
  g.restore();
}

/** Text shortened with an ellipsis to fit maxW pixels in the current font. */
export function clipText(g: CanvasRenderingContext2D, s: string, maxW: number): string {
  if (g.measureText(s).width <= maxW) return s;
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (g.measureText(s.slice(0, mid) + "…").width <= maxW) lo = mid;
    else hi = mid - 1;
  }
  return s.slice(0, lo) + "…";
}
