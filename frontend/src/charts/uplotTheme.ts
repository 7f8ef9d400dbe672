/**
 * uPlot options in the page's palette, shared by LossCurves and RunsOverlay (and
 * the time charts in LayerStats): axis colours, grid, fonts sized from CSS.
 */

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { decadeLabel } from "../viz/plot";
import { lonePointIndices } from "./lonePoints";
import { fmt, fmtTick } from "../viz/dom";
import { font, tickFont, type Palette } from "../viz/theme";

export { uPlot };

/** A themed axis; `log` labels decades as 10⁻³. */
export function axis(p: Palette, opts: Partial<uPlot.Axis> & { log?: boolean } = {}): uPlot.Axis {
  const { log, ...rest } = opts;
  const a: uPlot.Axis = {
    stroke: p.muted,
    // whole pixels: uPlot scales a font for the device pixel ratio by rewriting its "<int>px"
    font: tickFont(p),
    labelFont: font(p, Math.round(p.fontPx * 0.8) / p.fontPx, 600),
    grid: { stroke: p.grid, width: 1 },
    // room between ticks in proportion to their labels (uPlot's fixed default crowds large type)
    // (uPlot's defaults, 30 px on y and 50 px on x, are the floor)
    space: (self, axisIdx) => {
      const side = self.axes[axisIdx]?.side;
      return side === 1 || side === 3 ? Math.max(30, Math.round(p.tickPx * 2.6)) : Math.max(50, Math.round(p.tickPx * 4.5));
    },
    ticks: { stroke: p.grid, width: 1, size: 4 },
    gap: 3,
    ...rest,
  };
  if (log === true) {
    // grid lines at whole decades only (uPlot's default 1..9 per decade is too busy)
    a.splits = (_u, _i, min, max) => {
      const k0 = Math.ceil(Math.log10(min) - 1e-9);
      const k1 = Math.floor(Math.log10(max) + 1e-9);
      if (!(k1 - k0 >= 1)) return [min, max].filter((v) => v > 0);
      const every = Math.max(1, Math.ceil((k1 - k0) / 6));
      const out: number[] = [];
      for (let k = k0; k <= k1; k += every) out.push(10 ** k);
      return out;
    };
    a.values = (_u, splits) => splits.map((v) => {
      if (v == null || !(v > 0)) return "";
      const k = Math.log10(v);
      return Math.abs(k - Math.round(k)) < 1e-6 ? decadeLabel(Math.round(k)) : fmt(v, 2);
    });
  } else if (rest.values === undefined) {
    a.values = (_u, splits) => splits.map((v) => (v == null ? "" : fmtTick(v)));
  }
  return a;
}

/**
 * A series' `points.filter` that marks only its lone points (see lonePoints.ts): a one-point
 * curve or a point between two NaN gaps, which the line alone would not show at all.
 */
export function loneMarkers(u: uPlot, seriesIdx: number, show: boolean): number[] | null {
  if (show) return null; // every point is drawn anyway
  const col = u.data[seriesIdx];
  if (col === undefined) return null;
  const idx = lonePointIndices(col, u.series[seriesIdx]?.spanGaps === true);
  return idx.length > 0 ? idx : null;
}

/**
 * Record on `box` what chart `u` draws with, read back from uPlot's own resolved options (not
 * from the palette that fed them): `data-tick-px`, the smallest tick label size of its shown
 * axes in CSS pixels, and `data-series-widths`, each series' line width ({label: px}). The
 * projector tests read these; a reader of the DOM can see what a back row sees.
 */
export function recordDrawing(box: HTMLElement, u: uPlot): void {
  // after init uPlot keeps each axis font as [font, device px, CSS px]
  const sizes = u.axes
    .filter((a) => a.show !== false)
    .map((a) => (a.font as unknown as [string, number, number])[2])
    .filter((v) => Number.isFinite(v));
  if (sizes.length > 0) box.dataset.tickPx = String(Math.min(...sizes));
  const widths: Record<string, number> = {};
  u.series.slice(1).forEach((s, i) => {
    widths[String(s.label ?? `series ${i + 1}`)] = s.width ?? 1;
  });
  box.dataset.seriesWidths = JSON.stringify(widths);
}

/** Width of the y axis gutter for this palette's font size. */
export function yAxisSize(p: Palette): number {
  return Math.round(p.fontPx * 3.6);
}

/** Base options: no built-in legend (views draw their own), drag-to-zoom on x, a cursor sync key. */
export function baseOptions(width: number, height: number, syncKey?: string, fontPx = 13): uPlot.Options {
  const cursor: uPlot.Cursor = { points: { size: 6 }, drag: { x: true, y: false, setScale: true } };
  if (syncKey !== undefined) cursor.sync = { key: syncKey, setSeries: false };
  return {
    width,
    height,
    legend: { show: false },
    cursor,
    // room on the right for the last x tick label
    padding: [8, Math.round(fontPx * 1.4), 0, 0],
    series: [{}],
    axes: [],
    scales: { x: { time: false } },
  };
}

/** uPlot's current data at index i of series s, or null. */
export function valueAt(u: uPlot, s: number, i: number | null | undefined): number | null {
  if (i == null) return null;
  const col = u.data[s];
  if (col === undefined) return null;
  const v = col[i];
  return v == null || !Number.isFinite(v) ? null : v;
}

/**
 * A band [lo, hi] (y values) shaded across the plot, drawn under the series:
 * the "healthy" update/weight range, for example.
 */
export function bandHook(lo: number, hi: number, fill: string, mid?: { y: number; stroke: string }): (u: uPlot) => void {
  return (u: uPlot) => {
    const g = u.ctx;
    const { left, top, width, height } = u.bbox;
    const y0 = u.valToPos(hi, "y", true);
    const y1 = u.valToPos(lo, "y", true);
    g.save();
    g.beginPath();
    g.rect(left, top, width, height);
    g.clip();
    g.fillStyle = fill;
    g.fillRect(left, Math.min(y0, y1), width, Math.abs(y1 - y0));
    if (mid !== undefined) {
      const ym = Math.round(u.valToPos(mid.y, "y", true)) + 0.5;
      g.strokeStyle = mid.stroke;
      g.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
      g.lineWidth = devicePixelRatio;
      g.beginPath();
      g.moveTo(left, ym);
      g.lineTo(left + width, ym);
      g.stroke();
    }
    g.restore();
  };
}

export interface LegendItem {
  label: string;
  color: string;
  /** dashed swatch */
  dashed?: boolean;
  /** faint swatch (raw, unsmoothed series) */
  faint?: boolean;
}

/** A compact legend line (swatch, name, value) that a view updates on cursor moves. */
export class Legend {
  readonly el: HTMLElement;
  private readonly values: HTMLElement[] = [];
  constructor(items: LegendItem[]) {
    this.el = document.createElement("div");
    this.el.className = "viz-legend";
    for (const it of items) {
      const item = document.createElement("span");
      item.className = "viz-legend-item";
      const sw = document.createElement("i");
      sw.className = "viz-swatch" + (it.dashed === true ? " dashed" : "") + (it.faint === true ? " faint" : "");
      sw.style.setProperty("--c", it.color);
      const name = document.createElement("span");
      name.className = "viz-legend-name";
      name.textContent = it.label;
      const val = document.createElement("b");
      val.className = "viz-legend-value";
      item.append(sw, name, val);
      this.el.append(item);
      this.values.push(val);
    }
  }
  set(values: string[]): void {
    values.forEach((v, i) => {
      const e = this.values[i];
      if (e !== undefined && e.textContent !== v) e.textContent = v;
    });
  }
}

/**
 * A hover readout for a multi-series uPlot: a Tooltip listing each series' value at
 * the cursor (at most `maxRows`, largest first when sorted).
 */
export function cursorTooltip(
  tip: { readonly el: HTMLElement; show(x: number, y: number, title: string, rows: ([string, string] | string)[]): void; hide(): void },
  title: (x: number) => string,
  format: (v: number) => string,
  maxRows = 12,
): (u: uPlot) => void {
  return (u: uPlot) => {
    const i = u.cursor.idx;
    const left = u.cursor.left ?? -1;
    const top = u.cursor.top ?? -1;
    if (i == null || left < 0) {
      tip.hide();
      return;
    }
    const rows: [string, string][] = [];
    for (let s = 1; s < u.series.length; s++) {
      const v = valueAt(u, s, i);
      if (v !== null) rows.push([String(u.series[s]!.label ?? `series ${s}`), format(v)]);
    }
    const shown = rows.slice(0, maxRows);
    const more: string[] = rows.length > maxRows ? [`… ${rows.length - maxRows} more`] : [];
    const x = u.data[0][i];
    // cursor coordinates are relative to the plot area; the tooltip is positioned in its host
    const over = u.over;
    const host = tip.el.parentElement;
    const dx = host !== null ? over.getBoundingClientRect().left - host.getBoundingClientRect().left : 0;
    const dy = host !== null ? over.getBoundingClientRect().top - host.getBoundingClientRect().top : 0;
    tip.show(left + dx, top + dy, title(x ?? 0), [...shown, ...more]);
  };
}
