/**
 * Colour maps as 256-entry lookup tables (RGB, 768 bytes), built once from a few stops.
 *
 * - `viridis`: perceptually uniform sequential map (matplotlib's, 11 stops), for
 *   densities and heat strips.
 * - `inferno`: sequential, dark -> bright yellow; reads well as a heat overlay on
 *   greyscale inputs (saliency, Grad-CAM).
 * - `diverging`: TensorFlow-Playground orange (low / class 0) through a pale neutral
 *   to blue (high / class 1), for decision regions and signed neuron maps.
 * - `grey`.
 */

/** 256 RGB triples, flattened: lut[3*i], lut[3*i+1], lut[3*i+2]. */
export type Lut = Uint8ClampedArray;

export type ColormapName = "viridis" | "inferno" | "diverging" | "grey";

const VIRIDIS = [
  "#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
  "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725",
];
const INFERNO = [
  "#000004", "#160b39", "#420a68", "#6a176e", "#932667", "#bc3754",
  "#dd513a", "#f37819", "#fca50a", "#f6d746", "#fcffa4",
];
/** TF Playground: orange #f59322 -> #e8eaeb -> blue #0877bd */
const DIVERGING = ["#f59322", "#f7c288", "#e8eaeb", "#82b7dc", "#0877bd"];

/** [r, g, b] of a "#rrggbb" or "#rgb" string. */
export function hexToRgb(hex: string): [number, number, number] {
  let h = hex.trim().replace(/^#/, "");
  if (h.length === 3) h = h.split("").map((ch) => ch + ch).join("");
  const n = parseInt(h.slice(0, 6), 16);
  if (Number.isNaN(n)) return [128, 128, 128];
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

let probe: CanvasRenderingContext2D | null = null;

/** [r, g, b] of any CSS colour (hex, rgb(), hsl(), names) via a canvas normalization. */
export function cssToRgb(color: string): [number, number, number] {
  const [r, g, b] = cssToRgba(color);
  return [r, g, b];
}

/** [r, g, b, a] (a in 0..1) of any CSS colour. */
export function cssToRgba(color: string): [number, number, number, number] {
  if (/^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color.trim())) return [...hexToRgb(color), 1];
  if (probe === null) {
    const c = document.createElement("canvas");
    c.width = c.height = 1;
    probe = c.getContext("2d");
  }
  if (probe === null) return [128, 128, 128, 1];
  probe.fillStyle = "#808080";
  probe.fillStyle = color;
  const norm = String(probe.fillStyle);
  if (norm.startsWith("#")) return [...hexToRgb(norm), 1];
  const m = norm.match(/rgba?\(([^)]+)\)/);
  if (m !== null) {
    const parts = m[1]!.split(/[,\s/]+/).filter((x) => x !== "").map((s) => parseFloat(s));
    return [parts[0] ?? 128, parts[1] ?? 128, parts[2] ?? 128, parts[3] ?? 1];
  }
  return [128, 128, 128, 1];
}

/** A LUT interpolating linearly between evenly spaced colour stops. */
export function lutFromStops(stops: string[]): Lut {
  const rgb = stops.map((s) => cssToRgb(s));
  const lut = new Uint8ClampedArray(256 * 3);
  const segs = rgb.length - 1;
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * segs;
    const k = Math.min(segs - 1, Math.floor(x));
    const f = x - k;
    const a = rgb[k]!;
    const b = rgb[k + 1]!;
    lut[3 * i] = a[0] + (b[0] - a[0]) * f;
    lut[3 * i + 1] = a[1] + (b[1] - a[1]) * f;
    lut[3 * i + 2] = a[2] + (b[2] - a[2]) * f;
  }
  return lut;
}

const cache = new Map<string, Lut>();

/** The named colour map's LUT (built once). */
export function colormap(name: ColormapName): Lut {
  let lut = cache.get(name);
  if (lut === undefined) {
    const stops =
      name === "viridis" ? VIRIDIS : name === "inferno" ? INFERNO : name === "diverging" ? DIVERGING : ["#000000", "#ffffff"];
    lut = lutFromStops(stops);
    cache.set(name, lut);
  }
  return lut;
}

/** A two-colour sequential LUT, e.g. from the page background to the accent (confusion matrix). */
export function sequential(from: string, to: string): Lut {
  const key = `seq:${from}:${to}`;
  let lut = cache.get(key);
  if (lut === undefined) {
    lut = lutFromStops([from, to]);
    cache.set(key, lut);
  }
  return lut;
}

/** CSS colour of `t` in [0, 1] (clamped; NaN gives the low end). */
export function lutColor(lut: Lut, t: number, alpha = 1): string {
  const i = Number.isFinite(t) ? Math.max(0, Math.min(255, Math.round(t * 255))) : 0;
  const r = lut[3 * i]!;
  const g = lut[3 * i + 1]!;
  const b = lut[3 * i + 2]!;
  return alpha >= 1 ? `rgb(${r},${g},${b})` : `rgba(${r},${g},${b},${alpha})`;
}

export interface ColorizeOptions {
  /** overall opacity 0..1 (default 1) */
  alpha?: number;
  /**
   * Make opacity grow with the value (alpha * (floor + (1 - floor) * v)), so that
   * low values let the image underneath show through: the usual heat-overlay look.
   */
  alphaByValue?: boolean;
  /** opacity at value 0 when alphaByValue (default 0.1) */
  floor?: number;
}

/**
 * Colourize greyscale pixels in place: each pixel's red channel (0..255) indexes the LUT.
 * `data` is RGBA (ImageData.data).
 */
export function colorizeRGBA(data: Uint8ClampedArray, lut: Lut, opts: ColorizeOptions = {}): void {
  const alpha = opts.alpha ?? 1;
  const floor = opts.floor ?? 0.1;
  for (let p = 0; p < data.length; p += 4) {
    const v = data[p]!;
    const srcA = data[p + 3]! / 255;
    data[p] = lut[3 * v]!;
    data[p + 1] = lut[3 * v + 1]!;
    data[p + 2] = lut[3 * v + 2]!;
    const a = opts.alphaByValue === true ? alpha * (floor + (1 - floor) * (v / 255)) : alpha;
    data[p + 3] = Math.round(255 * a * srcA);
  }
}

/** A horizontal legend strip for `lut` (a canvas `width` x `height` CSS px). */
export function legendCanvas(lut: Lut, width: number, height: number): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = 256;
  c.height = 1;
  c.style.width = `${width}px`;
  c.style.height = `${height}px`;
  c.style.imageRendering = "auto";
  c.className = "viz-legend-strip";
  const g = c.getContext("2d");
  if (g !== null) {
    const img = g.createImageData(256, 1);
    for (let i = 0; i < 256; i++) {
      img.data[4 * i] = lut[3 * i]!;
      img.data[4 * i + 1] = lut[3 * i + 1]!;
      img.data[4 * i + 2] = lut[3 * i + 2]!;
      img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }
  return c;
}
