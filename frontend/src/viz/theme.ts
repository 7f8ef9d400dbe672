/**
 * Colours and type sizes for canvas drawing, read from the page's CSS variables.
 *
 * The shell defines --fg, --bg, --muted, --accent, --grid (light and dark); viz.css
 * adds the view-specific --viz-* colours on top of them. Canvas code cannot use
 * CSS variables directly, so every draw reads a `Palette` once (cheap: one
 * getComputedStyle) and passes it down. Font sizes come from the element's
 * computed font-size, so projector mode (larger type in CSS) enlarges canvas text too.
 *
 * Projector mode also sets two lengths the canvas code cannot infer from the font alone:
 * --viz-tick-size (axis tick labels, at least 18 px on a projector) and --viz-line-width
 * (data lines, 3 px on a projector). Both are registered with @property in viz.css, so
 * getComputedStyle returns them resolved to pixels. Every chart colour (series, classes,
 * status colours) is a CSS variable too, chosen per theme for at least 3:1 contrast against
 * the panels the charts sit on (tests/e2e/test_projector.py measures the computed colours).
 */

import type { Theme } from "../viewContext";
import { cssToRgb, cssToRgba } from "./colormap";
import { ensureContrast, rgbHex } from "./contrast";

export interface Palette {
  theme: Theme;
  fg: string;
  bg: string;
  /** background of the cards most charts sit on (--viz-panel) */
  panel: string;
  muted: string;
  grid: string;
  accent: string;
  /** training series */
  train: string;
  /** validation series */
  val: string;
  /** learning rate series */
  lr: string;
  /** orange (class 0 / negative), after TensorFlow Playground, darkened to read on white */
  neg: string;
  /** blue (class 1 / positive), after TensorFlow Playground */
  pos: string;
  /** categorical colours of classes 0..9 (--viz-class-0 .. --viz-class-9); 0 and 1 are neg and pos */
  classes: string[];
  good: string;
  warn: string;
  bad: string;
  /** band fill for "healthy range" marks */
  band: string;
  /** base font size in CSS pixels (projector mode makes it larger) */
  fontPx: number;
  fontFamily: string;
  /** axis tick label size in CSS pixels (--viz-tick-size; at least 18 on a projector) */
  tickPx: number;
  /** width of data lines in CSS pixels (--viz-line-width; 3 on a projector) */
  lineW: number;
}

type Colors = Omit<Palette, "theme" | "fontPx" | "fontFamily" | "tickPx" | "lineW" | "panel">;

/** How many categorical class colours the CSS defines (--viz-class-0 .. -9). */
export const CLASS_COUNT = 10;

/**
 * The colours viz.css defines, for a page whose stylesheet did not load (and for the unit
 * tests, which check that they meet 3:1 against their background). Keep in step with viz.css.
 */
export const DEFAULTS: Record<Theme, Colors> = {
  light: {
    fg: "#1f2430",
    bg: "#ffffff",
    muted: "#6b7280",
    grid: "rgba(31,36,48,0.10)",
    accent: "#2563eb",
    train: "#2f6fdb",
    val: "#d55e00",
    lr: "#7c3aed",
    neg: "#d55e00",
    pos: "#0877bd",
    classes: ["#d55e00", "#0877bd", "#289328", "#d62728", "#9467bd", "#8c564b", "#be4a9b", "#767676", "#857f00", "#118e9b"],
    good: "#15803d",
    warn: "#b45309",
    bad: "#dc2626",
    band: "rgba(22,163,74,0.12)",
  },
  dark: {
    fg: "#e6e8ee",
    bg: "#15181f",
    muted: "#9aa3b2",
    grid: "rgba(230,232,238,0.12)",
    accent: "#60a5fa",
    train: "#5b9cff",
    val: "#ff9b3d",
    lr: "#b794f6",
    neg: "#f7a440",
    pos: "#3aa0e0",
    classes: ["#f7a440", "#3aa0e0", "#2ca02c", "#e05555", "#a27fd0", "#b08377", "#e377c2", "#8f8f8f", "#bcbd22", "#17becf"],
    good: "#34d399",
    warn: "#fbbf24",
    bad: "#f87171",
    band: "rgba(52,211,153,0.14)",
  },
};

function readVar(style: CSSStyleDeclaration, name: string): string | null {
  const v = style.getPropertyValue(name).trim();
  return v === "" ? null : v;
}

/** The palette for `el` (its computed CSS variables, falling back to built-in light/dark colours). */
export function readPalette(el: Element, theme: Theme): Palette {
  const style = getComputedStyle(el);
  const d = DEFAULTS[theme] ?? DEFAULTS.light;
  const pick = (cssName: string, fallback: string): string => readVar(style, cssName) ?? fallback;
  const fontPx = parseFloat(style.fontSize) || 13;
  const px = (cssName: string, fallback: number): number => {
    const v = parseFloat(readVar(style, cssName) ?? "");
    return Number.isFinite(v) && v > 0 ? v : fallback;
  };
  return {
    theme,
    fg: pick("--fg", d.fg),
    bg: pick("--bg", d.bg),
    panel: pick("--viz-panel", pick("--panel", d.bg)),
    muted: pick("--muted", d.muted),
    grid: pick("--grid", d.grid),
    accent: pick("--accent", d.accent),
    train: pick("--viz-train", d.train),
    val: pick("--viz-val", d.val),
    lr: pick("--viz-lr", d.lr),
    neg: pick("--viz-neg", d.neg),
    pos: pick("--viz-pos", d.pos),
    classes: d.classes.map((c, i) => pick(`--viz-class-${i}`, c)),
    good: pick("--viz-good", pick("--ok", d.good)),
    warn: pick("--viz-warn", pick("--warn", d.warn)),
    bad: pick("--viz-bad", pick("--danger", d.bad)),
    band: pick("--viz-band", d.band),
    fontPx,
    fontFamily: style.fontFamily || "system-ui, sans-serif",
    // registered <length> / <number> properties (viz.css): already resolved to px by the browser
    // whole pixels (uPlot rewrites "<int>px" for the device pixel ratio), never rounded below the CSS size
    tickPx: Math.ceil(px("--viz-tick-size", fontPx * 0.75) - 0.01),
    lineW: px("--viz-line-width", 2),
  };
}

/** Canvas font string at `scale` times the base size. */
export function font(p: Palette, scale = 0.85, weight = 400): string {
  return `${weight} ${Math.round(p.fontPx * scale * 10) / 10}px ${p.fontFamily}`;
}

/** Canvas font string for axis tick labels: the palette's tick size (>= 18 px on a projector). */
export function tickFont(p: Palette, weight = 400): string {
  return `${weight} ${p.tickPx}px ${p.fontFamily}`;
}

/**
 * Categorical colour of class `i` (Tableau-10 hues, class 0 / 1 TensorFlow Playground's orange /
 * blue, each tuned per theme in viz.css to reach 3:1 against the panels; wraps after ten).
 */
export function classColor(p: Palette, i: number): string {
  const n = p.classes.length;
  return p.classes[((i % n) + n) % n]!;
}

/**
 * Distinct colours for many series (runs, parameters): the class colours, blue first, then
 * golden-angle hues darkened or lightened to 3:1 against the page background.
 */
export function seriesColor(i: number, p: Palette): string {
  // blue first, then orange: the usual "run A / run B" pairing
  if (i < p.classes.length) return classColor(p, i === 0 ? 1 : i === 1 ? 0 : i);
  const hue = (i * 137.508) % 360;
  return readable(p.theme === "dark" ? `hsl(${hue.toFixed(0)} 70% 65%)` : `hsl(${hue.toFixed(0)} 65% 45%)`, p);
}

/**
 * `color` (any CSS colour) darkened or lightened just enough for 3:1 against both the page
 * background and the panels (as "#rrggbb"): for colours computed at run time (generated
 * series, colour-map samples), which the stylesheet cannot list.
 */
export function readable(color: string, p: Palette): string {
  const onPanel = ensureContrast(cssToRgb(color), cssToRgb(p.panel));
  return rgbHex(ensureContrast(onPanel, cssToRgb(p.bg)));
}

/** `color` (any CSS colour) with its opacity multiplied by `a`, as rgba(). */
export function withAlpha(color: string, a: number): string {
  const [r, g, b, a0] = cssToRgba(color);
  return `rgba(${r},${g},${b},${Math.round(a * a0 * 1000) / 1000})`;
}
