/**
 * Message images (`{w, h, c, png}`: a base64 PNG) -> pixels on screen.
 *
 * Images are small (a 28x28 digit, a 64x64 boundary map, a filter grid) and must be
 * shown large without blurring: every helper draws with nearest-neighbour scaling
 * (imageSmoothingEnabled = false, CSS image-rendering: pixelated), except where a
 * coarse heat map (a 7x7 Grad-CAM) is deliberately smoothed over a finer input.
 */

import type { Image } from "../protocol";
import { colormap, colorizeRGBA, type ColorizeOptions, type Lut } from "./colormap";

/** A decoded message image: its pixels in a canvas at native resolution. */
export interface Decoded {
  w: number;
  h: number;
  c: number;
  canvas: HTMLCanvasElement;
}

const decoded = new WeakMap<Image, Promise<Decoded>>();

function base64ToBytes(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64.replace(/^data:[^,]*,/, ""));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function loadElement(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const el = new window.Image();
    el.onload = () => resolve(el);
    el.onerror = () => reject(new Error("image decode failed"));
    el.src = url;
  });
}

export function blankCanvas(w: number, h: number): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = Math.max(1, Math.round(w));
  c.height = Math.max(1, Math.round(h));
  return c;
}

export function ctx2d(c: HTMLCanvasElement, willReadFrequently = false): CanvasRenderingContext2D {
  const g = c.getContext("2d", willReadFrequently ? { willReadFrequently: true } : undefined);
  if (g === null) throw new Error("canvas 2d context unavailable");
  return g;
}

/**
 * Decode a message image (cached per image object, so re-drawing is free).
 * Resolves to a canvas holding the pixels at the image's own resolution.
 */
export function decodeImage(img: Image): Promise<Decoded> {
  let p = decoded.get(img);
  if (p === undefined) {
    p = (async (): Promise<Decoded> => {
      let source: CanvasImageSource;
      let w = img.w;
      let h = img.h;
      if (typeof createImageBitmap === "function") {
        const bmp = await createImageBitmap(new Blob([base64ToBytes(img.png)], { type: "image/png" }));
        source = bmp;
        w = bmp.width;
        h = bmp.height;
      } else {
        const el = await loadElement(`data:image/png;base64,${img.png}`);
        source = el;
        w = el.naturalWidth;
        h = el.naturalHeight;
      }
      const canvas = blankCanvas(w, h);
      ctx2d(canvas).drawImage(source, 0, 0);
      return { w, h, c: img.c, canvas };
    })();
    decoded.set(img, p);
  }
  return p;
}

/** Decode several images; null entries stay null. */
export function decodeAll(imgs: (Image | null | undefined)[]): Promise<(Decoded | null)[]> {
  return Promise.all(imgs.map((im) => (im == null ? Promise.resolve(null) : decodeImage(im).catch(() => null))));
}

/** Draw `src` into a rectangle, nearest-neighbour unless `smooth`. */
export function drawPixelated(
  g: CanvasRenderingContext2D,
  src: CanvasImageSource,
  x: number,
  y: number,
  w: number,
  h: number,
  smooth = false,
): void {
  const prev = g.imageSmoothingEnabled;
  g.imageSmoothingEnabled = smooth;
  if (smooth) g.imageSmoothingQuality = "high";
  g.drawImage(src, x, y, w, h);
  g.imageSmoothingEnabled = prev;
}

/**
 * The largest scale at which a w x h image fits in maxW x maxH: an integer when >= 1
 * (so pixels stay square and equal), a fraction when the image must shrink.
 */
export function fitScale(w: number, h: number, maxW: number, maxH: number = Number.POSITIVE_INFINITY): number {
  const s = Math.min(maxW / Math.max(1, w), maxH / Math.max(1, h));
  return s >= 1 ? Math.floor(s) : s;
}

/**
 * A grey map coloured through `lut` (the red channel is the grey level), as a new
 * canvas at the map's resolution. `opts.alphaByValue` fades low values out.
 */
export function colorizeGrey(map: Decoded, lut: Lut = colormap("inferno"), opts: ColorizeOptions = {}): HTMLCanvasElement {
  const out = blankCanvas(map.w, map.h);
  const g = ctx2d(out);
  g.drawImage(map.canvas, 0, 0);
  const data = g.getImageData(0, 0, map.w, map.h);
  colorizeRGBA(data.data, lut, opts);
  g.putImageData(data, 0, 0);
  return out;
}

/** Grey levels (0..1) of a decoded single-channel image, row-major. */
export function greyValues(img: Decoded): Float32Array {
  const data = ctx2d(img.canvas).getImageData(0, 0, img.w, img.h).data;
  const out = new Float32Array(img.w * img.h);
  for (let i = 0; i < out.length; i++) out[i] = data[4 * i]! / 255;
  return out;
}

export interface OverlayOptions {
  /** opacity of the heat map (default 0.6) */
  alpha?: number;
  lut?: Lut;
  /** fade low map values out so the input shows through (default true) */
  alphaByValue?: boolean;
  /** dim the input under the map, 0..1 (default 0.15) */
  dimInput?: number;
}

/**
 * The input with a colourized grey heat map on top, as a canvas at the input's
 * resolution (or the map's, if larger). A coarser map (Grad-CAM at 7x7 over 28x28)
 * is upsampled smoothly, as Grad-CAM is conventionally shown; the input stays sharp.
 */
export function overlayCanvas(input: Decoded, map: Decoded, opts: OverlayOptions = {}): HTMLCanvasElement {
  const w = Math.max(input.w, map.w);
  const h = Math.max(input.h, map.h);
  // upscale by an integer so an input smaller than the map stays crisp
  const k = Math.max(1, Math.round(Math.max(w / input.w, h / input.h)));
  const outW = input.w * k >= w ? input.w * k : w;
  const outH = input.h * k >= h ? input.h * k : h;
  const out = blankCanvas(outW, outH);
  const g = ctx2d(out);
  drawPixelated(g, input.canvas, 0, 0, outW, outH, false);
  const dim = opts.dimInput ?? 0.15;
  if (dim > 0) {
    g.fillStyle = `rgba(0,0,0,${dim})`;
    g.fillRect(0, 0, outW, outH);
  }
  const heat = colorizeGrey(map, opts.lut ?? colormap("inferno"), {
    alpha: opts.alpha ?? 0.6,
    alphaByValue: opts.alphaByValue ?? true,
    floor: 0.05,
  });
  drawPixelated(g, heat, 0, 0, outW, outH, map.w < outW);
  return out;
}

/**
 * A canvas element showing `src` (native pixels) at `scale`, crisp via CSS
 * image-rendering: pixelated. Cheap for galleries: no re-rasterizing on resize.
 */
export function pixelCanvas(src: HTMLCanvasElement, cssW: number, cssH?: number, className = "viz-pix"): HTMLCanvasElement {
  const c = blankCanvas(src.width, src.height);
  ctx2d(c).drawImage(src, 0, 0);
  c.className = className;
  c.style.width = `${Math.round(cssW)}px`;
  c.style.height = `${Math.round(cssH ?? (cssW * src.height) / src.width)}px`;
  return c;
}

export interface TileGrid {
  /** tiles in the source image */
  n: number;
  /** tiles per row in the source image */
  srcCols: number;
  /** tile size in source pixels, [h, w] */
  tile: [number, number];
  /** source pixels between tiles (the server uses 1) */
  srcGap?: number;
}

/**
 * Draw the tiles of a server grid image (channels, filters) one by one at integer
 * `scale`, `cols` per row with `gap` CSS pixels between them: crisp separations at
 * any zoom, and no filler where the last row is short.
 */
export function drawTiles(
  g: CanvasRenderingContext2D,
  src: CanvasImageSource,
  grid: TileGrid,
  cols: number,
  scale: number,
  gap: number,
  x0 = 0,
  y0 = 0,
): void {
  const [th, tw] = grid.tile;
  const sg = grid.srcGap ?? 1;
  const prev = g.imageSmoothingEnabled;
  g.imageSmoothingEnabled = false;
  for (let k = 0; k < grid.n; k++) {
    const sx = (k % grid.srcCols) * (tw + sg);
    const sy = Math.floor(k / grid.srcCols) * (th + sg);
    g.drawImage(src, sx, sy, tw, th, x0 + (k % cols) * (tw * scale + gap), y0 + Math.floor(k / cols) * (th * scale + gap), tw * scale, th * scale);
  }
  g.imageSmoothingEnabled = prev;
}

/** CSS size of a tile layout. */
export function tilesSize(n: number, cols: number, tile: [number, number], scale: number, gap: number): [number, number] {
  const rows = Math.ceil(n / Math.max(1, cols));
  const c = Math.min(n, cols);
  return [c * tile[1] * scale + (c - 1) * gap, rows * tile[0] * scale + (rows - 1) * gap];
}
