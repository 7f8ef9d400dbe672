/**
 * Canvas drawings for LayerStats: per-layer heat strips of histograms over time,
 * a std-by-depth profile (log), mean ± std per layer, and per-layer fraction bars.
 * Pure functions of their inputs (context, palette, data); LayerStats owns state.
 */

import { colormap, lutColor } from "./colormap";
import { fmt, fmtTick } from "./dom";
import { blankCanvas, ctx2d } from "./image";
import { clipText, gridY, linScale, logScale, positiveExtent, useTickFont, type Scale } from "./plot";
import { font, readable, withAlpha, type Palette } from "./theme";

/** One layer's histogram at one probe step. */
export interface HistEntry {
  hist: number[];
  edges: [number, number];
  mean: number;
  std: number;
}

export interface HistSnapshot {
  step: number;
  layers: Map<string, HistEntry>;
}

/** Geometry of a drawn heat-strip chart, for hover hit-testing. */
export interface HeatLayout {
  x0: number;
  x1: number;
  top: number;
  rowH: number;
  gap: number;
  cols: number;
  rows: number;
  /** value range of each row's strip */
  ranges: [number, number][];
}

const BINS_Y = 48; // vertical resolution of a strip, in resampled bins

/** Add a histogram (counts over [a, b] split evenly) to `out` (BINS_Y rows over [lo, hi]). */
function resample(hist: number[], a: number, b: number, lo: number, hi: number, out: Float32Array): void {
  const n = hist.length;
  if (n === 0 || !(hi > lo)) return;
  const w = (b - a) / n;
  const k = BINS_Y / (hi - lo);
  for (let i = 0; i < n; i++) {
    const c = hist[i]!;
    if (!(c > 0)) continue;
    const r0 = Math.max(0, Math.min(BINS_Y, (a + i * w - lo) * k));
    const r1 = Math.max(0, Math.min(BINS_Y, (a + (i + 1) * w - lo) * k));
    if (r1 - r0 < 1e-9) {
      out[Math.min(BINS_Y - 1, Math.floor(r0))]! += c;
      continue;
    }
    for (let r = Math.floor(r0); r < Math.ceil(r1) && r < BINS_Y; r++) {
      const ov = Math.min(r1, r + 1) - Math.max(r0, r);
      if (ov > 0) out[r]! += (c * ov) / (r1 - r0);
    }
  }
}

function symmetric(lo: number, hi: number): [number, number] {
  if (!(hi > lo)) {
    const m = Math.max(Math.abs(lo), 1e-12);
    return [lo - m, hi + m];
  }
  if (lo < 0 && hi > 0) {
    const m = Math.max(-lo, hi);
    return [-m, m];
  }
  return [lo, hi];
}

/** Value ranges per layer: each layer's own envelope over time, or one shared by all. */
export function stripRanges(layers: string[], snaps: HistSnapshot[], shared: boolean): [number, number][] {
  const per = layers.map((name): [number, number] => {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of snaps) {
      const e = s.layers.get(name);
      if (e === undefined || !Number.isFinite(e.edges[0]) || !Number.isFinite(e.edges[1])) continue;
      lo = Math.min(lo, e.edges[0]);
      hi = Math.max(hi, e.edges[1]);
    }
    return lo <= hi ? [lo, hi] : [-1, 1];
  });
  if (!shared) return per.map(([lo, hi]) => symmetric(lo, hi));
  const lo = Math.min(...per.map((r) => r[0]));
  const hi = Math.max(...per.map((r) => r[1]));
  const r = symmetric(lo, hi);
  return per.map(() => r);
}

/**
 * Per-layer histograms over time as heat strips: one row per layer, one column per
 * probe step, colour = density within the column (viridis, gamma 0.5 so tails show).
 * With a shared value range a layer whose activations collapse shows as a thin
 * bright line at 0; the right column prints each layer's latest std.
 */
export function drawHeatStrips(
  g: CanvasRenderingContext2D,
  p: Palette,
  o: { width: number; layers: string[]; sub: (layer: string) => string; snaps: HistSnapshot[]; shared: boolean; rowH: number },
): HeatLayout {
  const lut = colormap("viridis");
  const labelW = Math.round(p.fontPx * 6.2);
  const rightW = Math.round(p.fontPx * 5.2);
  const x0 = labelW;
  const x1 = o.width - rightW;
  const top = 2;
  const gap = Math.max(2, Math.round(o.rowH * 0.14));
  const rowH = o.rowH;
  const cols = o.snaps.length;
  const ranges = stripRanges(o.layers, o.snaps, o.shared);
  const stripW = Math.max(1, x1 - x0);

  o.layers.forEach((name, li) => {
    const y = top + li * (rowH + gap);
    const [lo, hi] = ranges[li]!;
    // render the strip at native resolution (cols x BINS_Y), then scale up unsmoothed
    const off = blankCanvas(Math.max(1, cols), BINS_Y);
    const og = ctx2d(off);
    const img = og.createImageData(Math.max(1, cols), BINS_Y);
    const col = new Float32Array(BINS_Y);
    for (let c = 0; c < cols; c++) {
      col.fill(0);
      const e = o.snaps[c]!.layers.get(name);
      if (e !== undefined) resample(e.hist, e.edges[0], e.edges[1], lo, hi, col);
      let max = 0;
      for (let r = 0; r < BINS_Y; r++) max = Math.max(max, col[r]!);
      for (let r = 0; r < BINS_Y; r++) {
        const t = max > 0 ? Math.sqrt(col[r]! / max) : 0;
        const li8 = Math.round(t * 255);
        const pi = 4 * ((BINS_Y - 1 - r) * cols + c); // high values at the top
        img.data[pi] = lut[3 * li8]!;
        img.data[pi + 1] = lut[3 * li8 + 1]!;
        img.data[pi + 2] = lut[3 * li8 + 2]!;
        img.data[pi + 3] = e === undefined ? 60 : 255;
      }
    }
    og.putImageData(img, 0, 0);
    g.save();
    g.imageSmoothingEnabled = false;
    g.drawImage(off, x0, y, stripW, rowH);
    g.restore();
    // zero line
    if (lo < 0 && hi > 0) {
      const yz = Math.round(y + rowH * (hi / (hi - lo))) + 0.5;
      g.strokeStyle = "rgba(255,255,255,0.22)";
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(x0, yz);
      g.lineTo(x1, yz);
      g.stroke();
    }
    // labels
    g.textBaseline = "middle";
    g.textAlign = "right";
    const twoLines = rowH >= p.fontPx * 1.9;
    g.font = font(p, 0.82, 600);
    g.fillStyle = p.fg;
    g.fillText(clipText(g, name, labelW - 8), x0 - 6, twoLines ? y + rowH * 0.33 : y + rowH / 2);
    if (twoLines) {
      g.font = font(p, 0.7);
      g.fillStyle = p.muted;
      g.fillText(clipText(g, o.sub(name), labelW - 8), x0 - 6, y + rowH * 0.72);
    }
    // latest std, and the strip's range
    const last = o.snaps[cols - 1]?.layers.get(name);
    g.textAlign = "left";
    g.font = font(p, 0.78, 600);
    g.fillStyle = p.fg;
    g.fillText(last !== undefined ? `σ ${fmt(last.std, 2)}` : "–", x1 + 6, twoLines ? y + rowH * 0.33 : y + rowH / 2);
    if (twoLines) {
      g.font = font(p, 0.68);
      g.fillStyle = p.muted;
      g.fillText(`±${fmt(Math.max(Math.abs(lo), Math.abs(hi)), 2)}`, x1 + 6, y + rowH * 0.72);
    }
  });

  // x axis: probe steps
  const yAxis = top + o.layers.length * (rowH + gap);
  useTickFont(g, p);
  g.fillStyle = p.muted;
  g.textBaseline = "top";
  g.textAlign = "center";
  if (cols > 0) {
    const want = Math.max(2, Math.floor(stripW / (p.fontPx * 6)));
    const every = Math.max(1, Math.ceil(cols / want));
    for (let c = 0; c < cols; c += every) {
      const x = x0 + ((c + 0.5) / cols) * stripW;
      g.fillText(fmtTick(o.snaps[c]!.step), x, yAxis + 2);
    }
  }
  g.textAlign = "right";
  g.fillText("step", x0 - 6, yAxis + 2);
  return { x0, x1, top, rowH, gap, cols, rows: o.layers.length, ranges };
}

/** Height a heat-strip chart with `rows` rows of `rowH` needs. */
export function heatStripsHeight(rows: number, rowH: number, p: Palette): number {
  const gap = Math.max(2, Math.round(rowH * 0.14));
  return 2 + rows * (rowH + gap) + Math.round(Math.max(p.fontPx * 1.4, p.tickPx * 1.5));
}

// ---------------------------------------------------------------- category charts (x = layer)

interface CatFrame {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  slot: number;
  cx(i: number): number;
}

/** Frame for a chart with one x slot per layer; draws the layer labels (rotated when crowded). */
function categoryFrame(g: CanvasRenderingContext2D, p: Palette, layers: string[], w: number, h: number, leftW: number): CatFrame {
  useTickFont(g, p);
  const maxLabel = Math.min(p.fontPx * 6, Math.max(...layers.map((l) => g.measureText(l).width), 10));
  const x0 = leftW;
  const x1 = w - 8;
  const slot = (x1 - x0) / Math.max(1, layers.length);
  const rotate = maxLabel + 6 > slot;
  const bottom = rotate ? Math.min(p.fontPx * 6, maxLabel * 0.7 + p.fontPx) + 4 : Math.max(p.fontPx * 1.5, p.tickPx * 1.6);
  const y0 = 8;
  const y1 = h - bottom;
  const cx = (i: number): number => x0 + (i + 0.5) * slot;
  g.fillStyle = p.muted;
  const every = rotate ? Math.max(1, Math.ceil((p.fontPx * 1.1) / slot)) : 1;
  layers.forEach((name, i) => {
    if (i % every !== 0) return;
    const s = clipText(g, name, p.fontPx * 6);
    if (rotate) {
      g.save();
      g.translate(cx(i), y1 + 5);
      g.rotate(-Math.PI / 4);
      g.textAlign = "right";
      g.textBaseline = "middle";
      g.fillText(s, 0, 0);
      g.restore();
    } else {
      g.textAlign = "center";
      g.textBaseline = "top";
      g.fillText(s, cx(i), y1 + 4);
    }
  });
  return { x0, x1, y0, y1, slot, cx };
}

export interface ProfileSeries {
  label: string;
  color: string;
  values: (number | null)[];
  width?: number;
  dashed?: boolean;
  points?: boolean;
}

/**
 * Std (or any positive quantity) per layer on a log axis, one line per series:
 * activations that collapse with depth show as a straight falling line.
 * Returns the frame and y scale for hover.
 */
export function drawDepthProfile(
  g: CanvasRenderingContext2D,
  p: Palette,
  o: { width: number; height: number; layers: string[]; series: ProfileSeries[]; band?: [number, number] },
): { frame: CatFrame; y: Scale } | null {
  const ext = positiveExtent(o.series.flatMap((s) => s.values));
  const frame = categoryFrame(g, p, o.layers, o.width, o.height, Math.round(p.fontPx * 3.2));
  if (ext === null) return null;
  const y = logScale(ext[0], ext[1], frame.y1, frame.y0);
  gridY(g, p, y, frame.x0, frame.x1);
  if (o.band !== undefined) {
    const ya = y.px(o.band[1]);
    const yb = y.px(o.band[0]);
    g.fillStyle = p.band;
    g.fillRect(frame.x0, ya, frame.x1 - frame.x0, yb - ya);
  }
  for (const s of o.series) {
    g.save();
    g.strokeStyle = s.color;
    g.fillStyle = s.color;
    g.lineWidth = s.width ?? 2;
    g.lineJoin = "round";
    if (s.dashed === true) g.setLineDash([5, 4]);
    g.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v == null || !(v > 0)) {
        pen = false;
        return;
      }
      const px = frame.cx(i);
      const py = y.px(v);
      if (pen) g.lineTo(px, py);
      else g.moveTo(px, py);
      pen = true;
    });
    g.stroke();
    g.setLineDash([]);
    if (s.points !== false) {
      s.values.forEach((v, i) => {
        if (v == null || !(v > 0)) return;
        g.beginPath();
        g.arc(frame.cx(i), y.px(v), (s.width ?? 2) + 1.2, 0, Math.PI * 2);
        g.fill();
      });
    }
    g.restore();
  }
  return { frame, y };
}

export interface MeanStd {
  mean: number;
  std: number;
  min: number;
  max: number;
}

/** Mean (dot), ± std (box) and min..max (whisker) per layer at one step, linear axis. */
export function drawMeanStd(
  g: CanvasRenderingContext2D,
  p: Palette,
  o: { width: number; height: number; layers: string[]; stats: (MeanStd | null)[]; color: string },
): { frame: CatFrame; y: Scale } {
  const frame = categoryFrame(g, p, o.layers, o.width, o.height, Math.round(p.fontPx * 3.2));
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of o.stats) {
    if (s === null) continue;
    lo = Math.min(lo, s.min, s.mean - s.std);
    hi = Math.max(hi, s.max, s.mean + s.std);
  }
  if (!(lo <= hi)) {
    lo = -1;
    hi = 1;
  }
  const pad = (hi - lo) * 0.06 || 0.1;
  const y = linScale(lo - pad, hi + pad, frame.y1, frame.y0, 4);
  gridY(g, p, y, frame.x0, frame.x1);
  const bw = Math.max(3, Math.min(frame.slot * 0.45, p.fontPx * 1.6));
  o.stats.forEach((s, i) => {
    if (s === null) return;
    const x = frame.cx(i);
    g.strokeStyle = withAlpha(o.color, 0.7);
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(Math.round(x) + 0.5, y.px(s.min));
    g.lineTo(Math.round(x) + 0.5, y.px(s.max));
    g.stroke();
    for (const v of [s.min, s.max]) {
      g.beginPath();
      g.moveTo(x - bw / 4, Math.round(y.px(v)) + 0.5);
      g.lineTo(x + bw / 4, Math.round(y.px(v)) + 0.5);
      g.stroke();
    }
    const ya = y.px(s.mean + s.std);
    const yb = y.px(s.mean - s.std);
    g.fillStyle = withAlpha(o.color, 0.28);
    g.fillRect(x - bw / 2, ya, bw, Math.max(1.5, yb - ya));
    g.strokeStyle = o.color;
    g.strokeRect(x - bw / 2 + 0.5, ya + 0.5, bw - 1, Math.max(1, yb - ya - 1));
    g.fillStyle = o.color;
    g.beginPath();
    g.arc(x, y.px(s.mean), 3, 0, Math.PI * 2);
    g.fill();
  });
  return { frame, y };
}

export interface FractionGroup {
  label: string;
  color: string;
  values: (number | null)[];
}

/** Grouped bars of fractions in [0, 1] per layer (dead and saturated units). */
export function drawFractions(
  g: CanvasRenderingContext2D,
  p: Palette,
  o: { width: number; height: number; layers: string[]; groups: FractionGroup[] },
): { frame: CatFrame; y: Scale } {
  const frame = categoryFrame(g, p, o.layers, o.width, o.height, Math.round(p.fontPx * 3.2));
  let max = 0;
  for (const gr of o.groups) for (const v of gr.values) if (v != null && Number.isFinite(v)) max = Math.max(max, v);
  // zoom in when all fractions are small, but never past 10 %
  const top = max <= 0.1 ? 0.1 : max <= 0.25 ? 0.25 : max <= 0.5 ? 0.5 : 1;
  const y = linScale(0, top, frame.y1, frame.y0, 4);
  y.label = (v) => `${Math.round(v * 1000) / 10}%`;
  gridY(g, p, y, frame.x0, frame.x1);
  const n = o.groups.length;
  const bw = Math.max(2, Math.min((frame.slot * 0.7) / n, p.fontPx * 1.2));
  o.groups.forEach((gr, k) => {
    gr.values.forEach((v, i) => {
      const x = frame.cx(i) - (n * bw) / 2 + k * bw;
      if (v == null || !Number.isFinite(v)) {
        g.fillStyle = p.grid;
        g.fillRect(x + 1, frame.y1 - 2, bw - 2, 2);
        return;
      }
      const yv = y.px(v);
      g.fillStyle = gr.color;
      g.fillRect(x + 1, yv, bw - 2, Math.max(v > 0 ? 1.5 : 0, frame.y1 - yv));
    });
  });
  return { frame, y };
}

/** Index of the category slot under x, or -1. */
export function slotAt(frame: CatFrame, x: number, n: number): number {
  if (x < frame.x0 || x > frame.x1) return -1;
  const i = Math.floor((x - frame.x0) / frame.slot);
  return i >= 0 && i < n ? i : -1;
}

/**
 * A viridis colour for layer `i` of `n` (shallow = purple, deep = green-yellow),
 * kept off the end that would vanish into the background.
 */
export function depthColor(i: number, n: number, p: Palette): string {
  const t = n <= 1 ? 0.5 : i / (n - 1);
  // viridis' dark end vanishes on a dark page and its yellow end on a white one: lift each to 3:1
  const c = lutColor(colormap("viridis"), p.theme === "dark" ? 0.3 + 0.7 * t : 0.02 + 0.83 * t);
  return readable(c, p);
}
