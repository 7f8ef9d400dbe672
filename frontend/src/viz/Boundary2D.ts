/**
 * Decision regions of a 2D classifier (`boundary`), TensorFlow-Playground style:
 * P(class 1) as an orange→blue heat map with the 0.5 contour, the validation
 * points on top, and small multiples of every hidden neuron's response. Hovering
 * a neuron shows its map large in place of the output (as the Playground does).
 *
 * It animates like the Playground: the server's frame clock streams a `boundary`
 * frame about 20 times a second while this view is open, and every frame redraws the
 * regions, the contour and the neuron maps. The regions (one or two small PNGs) and the
 * neuron maps (one PNG per unit) are decoded in two pipelines, each always on the newest
 * frame (a burst that outruns a decoder skips the frames in between), so the boundary
 * keeps its pace however many neurons there are; everything is painted once per
 * animation frame, and the neuron tiles in place, so hovering one keeps working.
 *
 * Image orientation: row 0 of `probs` and of each neuron map is the top of the
 * plot (y = extent[3]), column 0 is x = extent[0]. With more than two classes the
 * regions come from the `predicted` image (grey level = class index), coloured with
 * the class palette (theme.ts classColor) that the points use too.
 *
 * Colours: each region is its class colour washed towards the page background just enough
 * that every class's points keep 3:1 contrast on it (contrast.ts regionTint), so a point,
 * right or wrong, reads on any region; P = 0.5 is the background itself. In projector mode
 * the plot is a fill box: it takes the whole height the tab leaves, as large as it fits.
 */

import type { WatchedViews } from "../live";
import { rateOf } from "../live";
import type { BoundaryMsg, Image, ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { colormap, cssToRgb, legendCanvas, lutFromStops, type Lut } from "./colormap";
import { regionTint, rgbHex, type Rgb } from "./contrast";
import { contourSegments } from "./contour";
import { Redraw, Tooltip, button, cssNumber, el, emptyState, fillSize, fitCanvas, fmt, onSizeChange, onWidthChange, toggle, widthOf } from "./dom";
import { FrameInfo } from "./frameInfo";
import { blankCanvas, colorizeGrey, ctx2d, decodeAll, drawPixelated, greyValues, type Decoded } from "./image";
import { Latest } from "./latest";
import { classColor, readPalette, type Palette } from "./theme";
import { linScale, useTickFont } from "./plot";


/** Up to this many hidden units, their tiles redraw with every frame, as TensorFlow Playground's do. */
const NEURON_TILES_UNTHROTTLED = 8;
/** Beyond that, tiles refresh at most this often (frames/s); the decision regions keep the full rate. */
const NEURON_TILE_MAX_HZ = 5;

export interface Boundary2DOptions {
  /** show the validation points (default true) */
  points?: boolean;
}

interface Neuron {
  layer: string;
  unit: number;
  /** the unit's map coloured (orange < 0 < blue), at the grid's resolution; null when it failed to decode */
  colored: HTMLCanvasElement | null;
}

/** A neuron's small-multiple tile, kept across frames and repainted in place. */
interface NeuronTile {
  key: string;
  canvas: HTMLCanvasElement;
  figure: HTMLElement;
}

export class Boundary2D {
  private readonly redraw: Redraw;
  private msg: BoundaryMsg | null = null;
  private probs: Decoded | null = null;
  private probValues: Float32Array | null = null;
  /** class index per cell (multi-class), from the message's `predicted` image */
  private classIdx: Float32Array | null = null;
  private classImg: HTMLCanvasElement | null = null;
  /** what classImg was coloured for (frame and palette), so it is recoloured only when either changes */
  private classImgKey = "";
  private neurons: Neuron[] = [];
  /** tiles by "layer#unit", in the order of the last frame; rebuilt only when the set of neurons changes */
  private tiles = new Map<string, NeuronTile>();
  private tilesKey = "";
  /** the regions' and the neurons' decoders, each on the newest frame */
  private readonly regionFrames: Latest<BoundaryMsg>;
  private readonly neuronFrames: Latest<BoundaryMsg>;
  /** the neuron tiles need repainting (new maps, new size, focus) */
  private neuronsDirty = false;
  private summary: SummaryMsg | null = null;
  private showPoints: boolean;
  private discrete = false;
  /** neuron shown in the main plot while hovered */
  private focus: Neuron | null = null;
  private plot: { x0: number; y0: number; size: number } | null = null;

  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly canvas = el("canvas", { class: "viz-boundary-canvas" });
  private readonly mainTitle = el("div", { class: "viz-caption" });
  /** the plot's box: in projector mode a fill box the canvas is sized to (see draw) */
  private readonly wrap = el("div", { class: "viz-boundary-wrap" }, [this.canvas, this.mainTitle]);
  private readonly neuronBox = el("div", { class: "viz-neurons" });
  private readonly stats = el("div", { class: "viz-stats" });
  private readonly frame: FrameInfo;
  private readonly legend = el("div", { class: "viz-legend" });
  private readonly tip: Tooltip;
  /** performance.now() of the last neuron-tile decode (see decodeNeurons) */
  private lastNeuronDecode = -Infinity;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: Boundary2DOptions = {}) {
    this.showPoints = opts.points ?? true;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.regionFrames = new Latest((msg, current) => this.decodeRegions(msg, current));
    this.neuronFrames = new Latest((msg, current) => this.decodeNeurons(msg, current));
    this.frame = new FrameInfo(root);
    const pts = toggle("points", this.showPoints, (on) => {
      this.showPoints = on;
      this.redraw.request();
    }, "validation points");
    const disc = toggle("discretize", false, (on) => {
      this.discrete = on;
      this.redraw.request();
    }, "colour by the predicted class only (P > 0.5), as TensorFlow Playground's 'discretize output'");
    const refresh = button("↻ now", () => {
      const run = ctx.runId();
      if (run !== null) ctx.send({ cmd: "probe", run_id: run, probe: "boundary" });
    }, { title: "recompute the regions now (they also refresh by themselves while training)" });
    const main = el("figure", { class: "viz-boundary-main" }, [this.wrap]);
    this.body = el("div", { class: "viz-boundary-body" }, [
      el("div", { class: "viz-toolbar" }, [this.frame.el, this.stats, el("span", { class: "viz-spacer" }), this.legend, pts.label, disc.label, refresh]),
      el("div", { class: "viz-boundary-row" }, [main, this.neuronBox]),
    ]);
    this.tip = new Tooltip(main);
    this.empty = emptyState("Start training on a 2D dataset to see the decision regions", "Spirals, circles, XOR…: the background shows what the network predicts at every point.");
    root.classList.add("viz-view", "viz-boundary");
    root.replaceChildren(this.empty, this.body);
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => this.tip.hide());
    onWidthChange(root, () => this.redraw.request());
    onSizeChange(this.wrap, () => this.redraw.request());
    ctx.onThemeChange(() => this.redraw.request());
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "summary") {
      this.summary = msg;
      this.redraw.request();
      return;
    }
    if (msg.type !== "boundary") return;
    this.regionFrames.push(msg);
    this.neuronFrames.push(msg);
  }

  /** The live view this view streams: the regions and neuron maps, at the frame clock's rate. */
  watch(): WatchedViews {
    return { boundary: {} };
  }

  /**
   * A frame's regions: P(class 1) for two classes (the heat map, the contour, which points
   * are wrong), else the predicted class per cell. Only the image the plot needs is decoded.
   */
  private async decodeRegions(msg: BoundaryMsg, current: () => boolean): Promise<void> {
    const probsImage = (msg as { probs?: Image | null }).probs ?? null;
    const predicted = (msg as { predicted?: Image | null }).predicted ?? null;
    const binary = probsImage !== null && this.classes().length <= 2;
    const [probs, pred] = await decodeAll([probsImage, binary ? null : predicted]);
    if (!current()) return;
    if ((probs ?? null) === null && (pred ?? null) === null) throw new Error("a boundary frame without regions");
    this.msg = msg;
    this.probs = probs ?? null;
    this.probValues = probs != null && probs.c === 1 ? greyValues(probs) : null;
    this.classIdx = pred != null ? greyValues(pred).map((v) => Math.round(v * 255)) : null;
    this.classImg = null; // coloured at draw time, in the palette of the moment
    this.classImgKey = "";
    this.redraw.request();
  }

  /**
   * A frame's neuron maps, decoded and coloured once (the tiles and the hover enlargement reuse them).
   * With many units the tiles refresh at most NEURON_TILE_MAX_HZ times a second: decoding 32 maps per
   * frame on the page's one thread would otherwise take the time the decision regions need.
   */
  private async decodeNeurons(msg: BoundaryMsg, current: () => boolean): Promise<void> {
    if (msg.neurons.length > NEURON_TILES_UNTHROTTLED) {
      const wait = this.lastNeuronDecode + 1000 / NEURON_TILE_MAX_HZ - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.lastNeuronDecode = performance.now();
    }
    const imgs = await decodeAll(msg.neurons.map((n) => n.map));
    if (!current()) return;
    const lut = colormap("diverging");
    const prevFocus = this.focus;
    this.neurons = msg.neurons.map((n, i) => {
      const img = imgs[i] ?? null;
      return { layer: n.layer, unit: n.unit, colored: img === null ? null : img.c === 1 ? colorizeGrey(img, lut) : img.canvas };
    });
    this.focus = prevFocus !== null ? this.neurons.find((n) => n.layer === prevFocus.layer && n.unit === prevFocus.unit) ?? null : null;
    this.neuronsDirty = true;
    this.redraw.request();
  }

  reset(): void {
    this.msg = null;
    this.probs = null;
    this.probValues = null;
    this.classIdx = null;
    this.classImg = null;
    this.classImgKey = "";
    this.neurons = [];
    this.focus = null;
    this.summary = null;
    this.regionFrames.reset();
    this.neuronFrames.reset();
    this.tiles.clear();
    this.tilesKey = "";
    this.neuronBox.replaceChildren();
    this.frame.clear();
    this.redraw.request();
  }

  resize(): void {
    this.redraw.request();
  }

  /**
   * The fill of each class's region (classes 0..n-1, at least two) on this palette's background:
   * see regionTint. Every class colour counts as a point colour, since any point may sit anywhere.
   */
  private regionFills(p: Palette): Rgb[] {
    const n = Math.max(2, this.classes().length);
    const points = Array.from({ length: n }, (_, k) => cssToRgb(classColor(p, k)));
    const bg = cssToRgb(p.bg);
    return points.map((c) => regionTint(c, bg, points));
  }

  /** Region image of a class-index field (w x h cells) in the region fills. */
  private classCanvas(w: number, h: number, idx: Float32Array, fills: Rgb[]): HTMLCanvasElement {
    const c = blankCanvas(w, h);
    const g = ctx2d(c);
    const img = g.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      const k = fills[(idx[i]! | 0) % fills.length]!;
      img.data[4 * i] = k[0];
      img.data[4 * i + 1] = k[1];
      img.data[4 * i + 2] = k[2];
      img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return c;
  }

  /** Multi-class maps (more than two classes and a `predicted` image). */
  private multiclass(): boolean {
    return this.classIdx !== null && (this.probs === null || this.probs.c !== 1 || this.classes().length > 2);
  }

  private classes(): string[] {
    return this.summary?.dataset.classes ?? this.ctx.classes();
  }

  /**
   * The binary region colour map over P(class 1): class 0's fill → the background (P = 0.5)
   * → class 1's fill, or the two fills flat when discretized.
   */
  private lut(p: Palette): Lut {
    const [f0, f1] = this.regionFills(p);
    const bg = rgbHex(cssToRgb(p.bg));
    if (!this.discrete) return lutFromStops([rgbHex(f0!), bg, rgbHex(f1!)]);
    const lut = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) lut.set(i < 128 ? f0! : f1!, 3 * i);
    return lut;
  }

  /**
   * The neuron small multiples: one tile per hidden unit, grouped by layer. The tiles are
   * built once per network (when the set of layer/unit pairs changes) and repainted in
   * place on every frame, so 20 frames a second cost no DOM churn and hover survives.
   */
  private drawNeurons(p: Palette): void {
    const key = this.neurons.map((n) => `${n.layer}#${n.unit}`).join(",");
    const size = Math.round(cssNumber(this.root, "--viz-neuron", 4.2 * p.fontPx));
    const first = this.tiles.values().next().value;
    if (!this.neuronsDirty && key === this.tilesKey && first !== undefined && first.canvas.style.width === `${size}px`) return;
    this.neuronsDirty = false;
    if (key !== this.tilesKey) {
      this.tilesKey = key;
      this.tiles.clear();
      const groups = new Map<string, Neuron[]>();
      for (const n of this.neurons) {
        const g = groups.get(n.layer) ?? [];
        g.push(n);
        groups.set(n.layer, g);
      }
      const sections: HTMLElement[] = [];
      for (const [layer, ns] of groups) {
        const figures = ns.map((n) => {
          const canvas = el("canvas", { class: "viz-pix" });
          const figure = el("figure", { class: "viz-neuron", title: `${layer} · unit ${n.unit}: hover to enlarge` }, [canvas, el("figcaption", { text: String(n.unit) })]);
          const tileKey = `${n.layer}#${n.unit}`;
          figure.addEventListener("mouseenter", () => {
            this.focus = this.neurons.find((m) => `${m.layer}#${m.unit}` === tileKey) ?? null;
            this.neuronsDirty = true;
            this.redraw.request();
          });
          figure.addEventListener("mouseleave", () => {
            this.focus = null;
            this.neuronsDirty = true;
            this.redraw.request();
          });
          this.tiles.set(tileKey, { key: tileKey, canvas, figure });
          return figure;
        });
        sections.push(el("section", { class: "viz-neuron-layer" }, [el("div", { class: "viz-fm-head" }, [el("b", { text: layer }), el("span", { class: "viz-note", text: `${ns.length} neurons` })]), el("div", { class: "viz-neuron-grid" }, figures)]));
      }
      this.neuronBox.replaceChildren(...sections);
      this.neuronBox.hidden = sections.length === 0;
    }
    for (const n of this.neurons) {
      const tile = this.tiles.get(`${n.layer}#${n.unit}`);
      if (tile === undefined) continue;
      const g = fitCanvas(tile.canvas, size, size);
      tile.figure.classList.toggle("focus", this.focus !== null && this.focus.layer === n.layer && this.focus.unit === n.unit);
      if (n.colored === null) {
        g.fillStyle = p.grid;
        g.fillRect(0, 0, size, size);
        continue;
      }
      drawPixelated(g, n.colored, 0, 0, size, size, true);
    }
  }

  private draw(): void {
    const m = this.msg;
    this.empty.hidden = m !== null;
    this.body.hidden = m === null;
    const probs = this.probs;
    if (m === null || (probs === null && this.classIdx === null)) return;
    const p = readPalette(this.root, this.ctx.theme());
    const classes = this.classes();
    const fills = this.regionFills(p);
    if (this.multiclass() && this.classIdx !== null) {
      const key = `${m.seq}|${fills.map((f) => rgbHex(f)).join(",")}`;
      if (this.classImg === null || this.classImgKey !== key) {
        this.classImg = this.classCanvas(m.resolution, m.resolution, this.classIdx, fills);
        this.classImgKey = key;
      }
    }
    this.frame.drawn(m.step, rateOf(m));
    const shownPoints = String(m.points.length);
    if (this.stats.dataset.points !== shownPoints) {
      this.stats.dataset.points = shownPoints;
      this.stats.replaceChildren(el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "points" }), el("b", { text: shownPoints })]));
    }
    this.drawNeurons(p);
    const binary = !this.multiclass();
    const lkey = `${binary}|${classes.join(",")}|${this.discrete}|${p.bg}|${p.classes.join(",")}`;
    if (this.legend.dataset.key !== lkey) {
      this.legend.dataset.key = lkey;
      this.legend.replaceChildren(
        ...(binary
          ? [el("span", { class: "viz-scale" }, [classes[0] ?? "class 0", legendCanvas(this.lut(p), 64, 9), classes[1] ?? "class 1"])]
          : classes.map((c, i) => el("span", { class: "viz-legend-item" }, [el("i", { class: "viz-swatch box", style: { "--c": classColor(p, i) } }), el("span", { class: "viz-legend-name", text: c })]))),
      );
    }

    // gutters for the tick labels ("−2.5" left, one line below)
    const left = Math.round(Math.max(p.fontPx * 2.6, p.tickPx * 2.8));
    const bottom = Math.round(Math.max(p.fontPx * 1.6, p.tickPx * 1.5));
    const fit = fillSize(this.wrap);
    let size: number;
    if (fit !== null) {
      // projector: the largest square the box holds (the box is sized by the layout, not by us)
      // (the caption sits in the box, under the plot)
      size = Math.max(120, Math.min(fit.width - left - 6, fit.height - bottom - 6 - this.mainTitle.offsetHeight - 4));
    } else {
      const width = widthOf(this.body);
      const neuronsW = this.neurons.length > 0 ? Math.min(width * 0.45, 22 * p.fontPx) : 0;
      const maxSize = cssNumber(this.root, "--viz-boundary-size", 26 * p.fontPx);
      size = Math.max(120, Math.min(maxSize, width - neuronsW - left - 24));
    }
    const g = fitCanvas(this.canvas, size + left + 6, size + bottom + 6);
    const x0 = left;
    const y0 = 4;
    this.plot = { x0, y0, size };
    // the plot square in canvas CSS pixels, for tests that sample what is drawn under the points
    this.canvas.dataset.plot = `${x0},${y0},${size}`;

    const focus = this.focus;
    if (focus !== null && focus.colored !== null) {
      drawPixelated(g, focus.colored, x0, y0, size, size, true);
      this.mainTitle.textContent = `neuron ${focus.layer} #${focus.unit} (orange < 0 < blue)`;
    } else {
      const img = binary && probs !== null ? colorizeGrey(probs, this.lut(p)) : this.classImg ?? probs?.canvas;
      if (img === undefined || img === null) return;
      // smooth: a 64x64 grid reads as a continuous field, as in the Playground. The fills are
      // already pale (dark) enough for the points: no veil on top.
      drawPixelated(g, img, x0, y0, size, size, !this.discrete);
      this.mainTitle.textContent = binary ? `P(${classes[1] ?? "class 1"}) · line: P = 0.5` : "predicted class";
      if (binary && probs !== null && this.probValues !== null) this.drawContour(g, p, this.probValues, probs.w, probs.h, x0, y0, size);
    }

    // axes
    const [ex0, ex1, ey0, ey1] = m.extent;
    const xs = linScale(ex0, ex1, x0, x0 + size, 4);
    const ys = linScale(ey0, ey1, y0 + size, y0, 4);
    g.strokeStyle = p.grid;
    g.strokeRect(x0 + 0.5, y0 + 0.5, size - 1, size - 1);
    useTickFont(g, p);
    g.fillStyle = p.muted;
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const t of xs.ticks()) g.fillText(fmt(t, 2), xs.px(t), y0 + size + 3);
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const t of ys.ticks()) g.fillText(fmt(t, 2), x0 - 4, ys.px(t));

    // points
    if (this.showPoints && focus === null) {
      // radius grows with the plot (a 900 px projector plot gets 8 px points), never below 2.5
      const r = Math.max(2.5, Math.min(8, size / 110));
      const ring = Math.max(1.2, r / 4);
      const stroke = p.theme === "dark" ? "rgba(0,0,0,0.75)" : "rgba(255,255,255,0.95)";
      this.canvas.dataset.pointRadius = String(Math.round(r * 10) / 10);
      for (const [px, py, label] of m.points) {
        const x = xs.px(px);
        const y = ys.px(py);
        const wrong = this.predictedAt(px, py) !== null && this.predictedAt(px, py) !== label;
        g.beginPath();
        g.arc(x, y, wrong ? r + 0.8 : r, 0, Math.PI * 2);
        g.fillStyle = classColor(p, label);
        g.fill();
        g.strokeStyle = wrong ? p.fg : stroke;
        g.lineWidth = wrong ? ring * 1.5 : ring;
        g.stroke();
      }
    }
  }

  private drawContour(g: CanvasRenderingContext2D, p: Palette, v: Float32Array, w: number, h: number, x0: number, y0: number, size: number): void {
    const segs = contourSegments(v, w, h, 0.5);
    g.save();
    g.beginPath();
    g.rect(x0, y0, size, size);
    g.clip();
    g.strokeStyle = p.theme === "dark" ? "rgba(255,255,255,0.85)" : "rgba(20,24,32,0.8)";
    g.lineWidth = p.lineW;
    g.lineCap = "round";
    this.canvas.dataset.contourWidth = String(g.lineWidth);
    g.beginPath();
    const sx = size / w;
    const sy = size / h;
    for (const [a, b, c, d] of segs) {
      g.moveTo(x0 + a * sx, y0 + b * sy);
      g.lineTo(x0 + c * sx, y0 + d * sy);
    }
    g.stroke();
    g.restore();
  }

  /** Predicted class at data point (x, y): from the class map, else P(class 1) > 0.5. */
  private predictedAt(x: number, y: number): number | null {
    if (this.multiclass()) {
      const k = this.valueAt(x, y, this.classIdx);
      return k === null ? null : Math.round(k);
    }
    const v = this.valueAt(x, y);
    return v === null ? null : v > 0.5 ? 1 : 0;
  }

  private valueAt(x: number, y: number, field: Float32Array | null = this.probValues): number | null {
    const m = this.msg;
    const v = field;
    // both maps share the grid: `resolution` cells a side
    const img = m === null ? null : { w: m.resolution, h: m.resolution };
    if (m === null || v === null || img === null) return null;
    const [ex0, ex1, ey0, ey1] = m.extent;
    const i = Math.floor(((x - ex0) / (ex1 - ex0)) * img.w);
    const j = Math.floor(((ey1 - y) / (ey1 - ey0)) * img.h);
    if (i < 0 || j < 0 || i >= img.w || j >= img.h) return null;
    return v[j * img.w + i] ?? null;
  }

  private hover(e: MouseEvent): void {
    const m = this.msg;
    const pl = this.plot;
    if (m === null || pl === null) return;
    const r = this.canvas.getBoundingClientRect();
    const hr = this.tip.el.parentElement!.getBoundingClientRect();
    const cx = e.clientX - r.left - pl.x0;
    const cy = e.clientY - r.top - pl.y0;
    if (cx < 0 || cy < 0 || cx > pl.size || cy > pl.size) return this.tip.hide();
    const [ex0, ex1, ey0, ey1] = m.extent;
    const x = ex0 + (cx / pl.size) * (ex1 - ex0);
    const y = ey1 - (cy / pl.size) * (ey1 - ey0);
    const v = this.valueAt(x, y);
    const k = this.predictedAt(x, y);
    const classes = this.classes();
    const rows: [string, string][] = [["x₁", fmt(x, 3)], ["x₂", fmt(y, 3)]];
    if (v !== null && !this.multiclass()) rows.push([`P(${classes[1] ?? "class 1"})`, fmt(v, 2)]);
    this.tip.show(e.clientX - hr.left, e.clientY - hr.top, k !== null ? `predicts ${classes[k] ?? k}` : "point", rows);
  }
}
