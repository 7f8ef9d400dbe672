/**
 * Colours and type sizes for canvas drawing, read from the page's CSS variables.
 *
 * The shell defines --fg, --bg, --muted, --accent, --grid (light and dark); viz.css
 * adds the view-specific --viz-* colours on top of them. Canvas code cannot use
 * CSS variables directly, so every draw reads a `Palette` once (cheap: one
 * getComputedStyle) and passes it down. Font sizes come from the element's
 * computed font-size, so projector mode (larger type in CSS) enlarges canvas text too.
 */

import type { Theme } from "../viewContext";
import { cssToRgba } from "./colormap";

export interface Palette {
  theme: Theme;
  fg: string;
  bg: string;
  muted: string;
  grid: string;
  accent: string;
  /** training series */
  train: string;
  /** validation series */
  val: string;
  /** learning rate series */
  lr: string;
  /** TensorFlow-Playground orange (class 0 / negative) */
  neg: string;
  /** TensorFlow-Playground blue (class 1 / positive) */
  pos: string;
  good: string;
  warn: string;
  bad: string;
  /** band fill for "healthy range" marks */
  band: string;
  /** base font size in CSS pixels (projector mode makes it larger) */
  fontPx: number;
  fontFamily: string;
}

const DEFAULTS: Record<Theme, Omit<Palette, "theme" | "fontPx" | "fontFamily">> = {
  light: {
    fg: "#1f2430",
    bg: "#ffffff",
    muted: "#6b7280",
    grid: "rgba(31,36,48,0.10)",
    accent: "#2563eb",
    train: "#2f6fdb",
    val: "#e8730c",
    lr: "#7c3aed",
    neg: "#f59322",
    pos: "#0877bd",
    good: "#16a34a",
    warn: "#d97706",
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
  return {
    theme,
    fg: pick("--fg", d.fg),
    bg: pick("--bg", d.bg),
    muted: pick("--muted", d.muted),
    grid: pick("--grid", d.grid),
    accent: pick("--accent", d.accent),
    train: pick("--viz-train", d.train),
    val: pick("--viz-val", d.val),
    lr: pick("--viz-lr", d.lr),
    neg: pick("--viz-neg", d.neg),
    pos: pick("--viz-pos", d.pos),
    good: pick("--viz-good", pick("--ok", d.good)),
    warn: pick("--viz-warn", pick("--warn", d.warn)),
    bad: pick("--viz-bad", pick("--danger", d.bad)),
    band: pick("--viz-band", d.band),
    fontPx,
    fontFamily: style.fontFamily || "system-ui, sans-serif",
  };
}

/** Canvas font string at `scale` times the base size. */
export function font(p: Palette, scale = 0.85, weight = 400): string {
  return `${weight} ${Math.round(p.fontPx * scale * 10) / 10}px ${p.fontFamily}`;
}

/** Tableau-10-like categorical colours; class 0 / 1 match TensorFlow Playground's orange / blue. */
export const CLASS_COLORS = [
  "#f59322", "#0877bd", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

export function classColor(i: number): string {
  return CLASS_COLORS[((i % CLASS_COLORS.length) + CLASS_COLORS.length) % CLASS_COLORS.length]!;
}

/** Distinct colours for many series (runs, parameters): golden-angle hues. */
export function seriesColor(i: number, theme: Theme): string {
  // blue first, then orange: the usual "run A / run B" pairing
  if (i < CLASS_COLORS.length) return classColor(i === 0 ? 1 : i === 1 ? 0 : i);
  const hue = (i * 137.508) % 360;
  return theme === "dark" ? `hsl(${hue.toFixed(0)} 70% 65%)` : `hsl(${hue.toFixed(0)} 65% 45%)`;
}

/** `color` (any CSS colour) with its opacity multiplied by `a`, as rgba(). */
export function withAlpha(color: string, a: number): string {
  const [r, g, b, a0] = cssToRgba(color);
  return `rgba(${r},${g},${b},${Math.round(a * a0 * 1000) / 1000})`;
}
