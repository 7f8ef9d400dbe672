/**
 * WCAG 2 contrast arithmetic for chart colours: relative luminance, contrast ratio, and
 * the two adjustments the views make so marks stay readable on a projector.
 *
 * A chart mark (line, point, bar) must have a contrast ratio of at least 3:1 against what
 * it is drawn on (WCAG 2.1, 1.4.11 "non-text contrast"). The palette in viz.css is chosen
 * to meet that against the page's panels; these helpers derive what cannot be listed in CSS:
 * the fills of the 2D plot's regions (`regionTint`) and colours for series beyond the ten
 * listed ones (`ensureContrast`). Pure functions of RGB triples (0..255), no DOM.
 */

/** An sRGB colour, each channel 0..255. */
export type Rgb = readonly [number, number, number];

/** The ratio WCAG asks of graphical objects against their background. */
export const MIN_CHART_CONTRAST = 3;

/** One sRGB channel (0..255) in linear light (WCAG 2's formula, with its 0.04045 knee). */
function linear(channel: number): number {
  const v = channel / 255;
  return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
}

/** WCAG relative luminance of `c`: 0 for black, 1 for white. */
export function relativeLuminance(c: Rgb): number {
  return 0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2]);
}

/** WCAG contrast ratio of two colours, 1 (identical luminance) to 21 (black on white). */
export function contrastRatio(a: Rgb, b: Rgb): number {
  const la = relativeLuminance(a);
  const lb = relativeLuminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** `a` moved a fraction `t` (0..1) of the way to `b`, per sRGB channel, rounded to integers. */
export function mixRgb(a: Rgb, b: Rgb, t: number): [number, number, number] {
  const k = Math.min(1, Math.max(0, t));
  return [
    Math.round(a[0] + (b[0] - a[0]) * k),
    Math.round(a[1] + (b[1] - a[1]) * k),
    Math.round(a[2] + (b[2] - a[2]) * k),
  ];
}

/** "#rrggbb" of an RGB triple. */
export function rgbHex(c: Rgb): string {
  return "#" + c.map((v) => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, "0")).join("");
}

/** Search resolution for the mixes below: 1/64 steps are finer than one 8-bit level change matters. */
const MIX_STEPS = 64;

/**
 * `color` darkened (on a light `bg`) or lightened (on a dark one) just enough to reach
 * `minRatio` against `bg`; unchanged if it already does. Mixing towards black or white keeps
 * the hue, so a generated series colour stays recognisable. Returns black or white when even
 * they fall short (a mid-grey background below 3:1 against both).
 */
export function ensureContrast(color: Rgb, bg: Rgb, minRatio = MIN_CHART_CONTRAST): [number, number, number] {
  if (contrastRatio(color, bg) >= minRatio) return [color[0], color[1], color[2]];
  // towards whichever end lies farther (in luminance) from the background
  const target: Rgb = relativeLuminance(bg) > 0.18 ? [0, 0, 0] : [255, 255, 255];
  for (let i = 1; i <= MIX_STEPS; i++) {
    const m = mixRgb(color, target, i / MIX_STEPS);
    if (contrastRatio(m, bg) >= minRatio) return m;
  }
  return [target[0], target[1], target[2]];
}

/**
 * The fill of a decision region for a class drawn in `color`: `color` washed towards the
 * plot's background `bg`, as little as possible while every point colour in `points` (all the
 * classes, since a misclassified point sits in another class's region) keeps `minRatio`
 * against it. The least washed-out tint keeps the regions' hue strong; the points stay
 * readable on top by construction. Falls back to `bg` itself (which the palette guarantees
 * the points contrast with) when no tint qualifies.
 */
export function regionTint(color: Rgb, bg: Rgb, points: readonly Rgb[], minRatio = MIN_CHART_CONTRAST): [number, number, number] {
  for (let i = 0; i <= MIX_STEPS; i++) {
    const tint = mixRgb(color, bg, i / MIX_STEPS);
    if (points.every((p) => contrastRatio(p, tint) >= minRatio)) return tint;
  }
  return [bg[0], bg[1], bg[2]];
}
