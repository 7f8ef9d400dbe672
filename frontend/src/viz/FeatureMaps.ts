/**
 * What each layer computes for one example (`feature_maps`): the input, then per
 * layer a grid of its channels (conv layers) or a heat row of its units (linear
 * layers). While the tab is open the server streams the chosen example's maps (about
 * one frame a second, the `feature_maps {index}` live view); picking an example
 * (index + random) changes what is streamed and asks for it at once with
 * `{cmd: "probe", probe: "feature_maps", index}`.
 */

import { rateOf, type WatchedViews } from "../live";
import type { FeatureMapsMsg, ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { colormap, legendCanvas, lutColor, type ColormapName } from "./colormap";
import { Redraw, cssNumber, el, emptyState, fitCanvas, fmt, onWidthChange, select, widthOf } from "./dom";
import { ExamplePicker } from "./ExamplePicker";
import { FrameInfo } from "./frameInfo";
import { colorizeGrey, decodeAll, drawTiles, fitScale, pixelCanvas, tilesSize, type Decoded, type TileGrid } from "./image";
import { readPalette } from "./theme";

export interface FeatureMapsOptions {
  /** colour map for the channel grids (default "viridis") */
  colormap?: ColormapName;
}

export class FeatureMaps {
  private readonly redraw: Redraw;
  private msg: FeatureMapsMsg | null = null;
  private images: (Decoded | null)[] = [];
  private summary: SummaryMsg | null = null;
  private cmap: ColormapName;
  private pending = false;
  /** the validation example streamed */
  private index = 0;

  private readonly picker: ExamplePicker;
  private readonly empty: HTMLElement;
  private readonly content = el("div", { class: "viz-fm" });
  private readonly status = el("span", { class: "viz-note" });
  private readonly frame: FrameInfo;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: FeatureMapsOptions = {}) {
    this.cmap = opts.colormap ?? "viridis";
    this.redraw = new Redraw(ctx, () => this.draw());
    this.frame = new FrameInfo(root);
    this.picker = new ExamplePicker("example #", (i) => this.request(i));
    const cm = select([["viridis", "viridis"], ["grey", "grey"], ["inferno", "inferno"]], this.cmap, (v) => {
      this.cmap = v as ColormapName;
      this.redraw.request();
    }, "colour map of the channel images");
    const toolbar = el("div", { class: "viz-toolbar" }, [this.picker.el, this.status, el("span", { class: "viz-spacer" }), this.frame.el, el("label", { class: "viz-control" }, ["colours", cm])]);
    this.empty = emptyState("What every layer computes for one example", "Start training: example #0 appears here and follows the training; pick another index (or random) above.");
    root.classList.add("viz-view", "viz-featuremaps");
    root.replaceChildren(toolbar, this.empty, this.content);
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => this.redraw.request());
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "summary") {
      this.summary = msg;
      this.picker.setMax(msg.dataset.n_val);
      this.redraw.request();
    } else if (msg.type === "feature_maps") {
      if (msg.index === this.index) this.pending = false;
      void decodeAll([msg.input, ...msg.layers.map((l) => l.grid)]).then((imgs) => {
        this.msg = msg;
        this.images = imgs;
        this.redraw.request();
      });
    }
  }

  reset(): void {
    this.msg = null;
    this.images = [];
    this.summary = null;
    this.pending = false;
    this.frame.clear();
    this.redraw.request();
  }

  /** The chosen example's maps, streamed while the tab is open. */
  watch(): WatchedViews {
    return { feature_maps: { index: this.index } };
  }

  resize(): void {
    this.redraw.request();
  }

  private request(index: number): void {
    this.index = index;
    const run = this.ctx.runId();
    if (run === null) {
      this.status.textContent = "start a run first";
      return;
    }
    this.pending = true;
    this.ctx.send({ cmd: "probe", run_id: run, probe: "feature_maps", index });
    this.ctx.watchChanged();
    this.redraw.request();
  }

  private className(i: number): string {
    const cls = this.summary?.dataset.classes ?? this.ctx.classes();
    return cls[i] ?? String(i);
  }

  private draw(): void {
    const m = this.msg;
    this.status.textContent = this.pending ? "computing…" : "";
    this.empty.hidden = m !== null;
    this.content.hidden = m === null;
    if (m === null) return;
    this.frame.drawn(m.step, rateOf(m));
    const p = readPalette(this.root, this.ctx.theme());
    const lut = colormap(this.cmap);
    const width = widthOf(this.root);
    const inputSize = cssNumber(this.root, "--viz-input-size", 8 * p.fontPx);
    const input = this.images[0];

    const inputCard = el("figure", { class: "viz-fm-input" }, [
      input != null ? pixelCanvas(input.canvas, inputSize, (inputSize * input.h) / input.w) : el("div"),
      el("figcaption", {}, [el("b", { text: `#${m.index}` }), ` label ${this.className(m.label)}`]),
    ]);
    const cards: HTMLElement[] = [];
    // a grid may use the whole column beside the input; small grids then sit side by side
    const maxW = Math.max(120, width - inputSize - 3 * p.fontPx);
    m.layers.forEach((l, li) => {
      const shape = l.shape.join("×");
      // the server scales each layer's grid from lo (black) to hi (white)
      const extra = l as typeof l & { lo?: number | string; hi?: number | string; kind?: string };
      const range = extra.lo !== undefined && extra.hi !== undefined ? ` · ${fmt(extra.lo)} … ${fmt(extra.hi)}` : "";
      const head = el("div", { class: "viz-fm-head" }, [el("b", { text: l.layer }), el("span", { class: "viz-note", text: `${shape}${range}` })]);
      const img = this.images[li + 1];
      let body: HTMLElement;
      if (img != null) {
        const colored = this.cmap === "grey" || img.c !== 1 ? img.canvas : colorizeGrey(img, lut);
        const boxW = Math.min(maxW, cssNumber(this.root, "--viz-fm-w", 30 * p.fontPx));
        const boxH = cssNumber(this.root, "--viz-fm-h", 16 * p.fontPx);
        const t = extra as typeof extra & { tile?: [number, number]; channels?: number };
        if (t.tile !== undefined && t.channels !== undefined && l.cols > 0) {
          body = this.tileCanvas(colored, { n: t.channels, srcCols: l.cols, tile: t.tile }, boxW, boxH, p.fontPx);
        } else {
          const s = fitScale(img.w, img.h, boxW, boxH);
          body = pixelCanvas(colored, img.w * s, img.h * s);
        }
      } else if (l.values !== null && l.values.length > 0) {
        // flat layers: a wide strip of cells (the server's cols is for grids)
        const n = l.values.length;
        const cols = l.cols > 1 ? l.cols : n <= 16 ? n : Math.min(32, Math.ceil(Math.sqrt(n * 4)));
        body = this.valuesCanvas(l.values, cols, maxW, p.fontPx);
      } else {
        body = el("div", { class: "viz-note", text: "not shown" });
      }
      cards.push(el("figure", { class: "viz-fm-layer" }, [head, body]));
    });
    const legend = el("div", { class: "viz-scale" }, ["low", legendCanvas(lut, 64, 9), "high activation (one scale per layer: lo … hi)"]);
    this.content.replaceChildren(el("div", { class: "viz-fm-row" }, [inputCard, el("div", { class: "viz-fm-layers" }, cards)]), legend);
  }

  /** Channel tiles re-laid out with small CSS gaps (no filler tiles), at the largest integer zoom that fits. */
  private tileCanvas(src: HTMLCanvasElement, grid: TileGrid, maxW: number, maxH: number, fontPx: number): HTMLElement {
    const gap = Math.max(2, Math.round(fontPx * 0.2));
    const cols = grid.srcCols;
    let s = 1;
    for (let k = 8; k >= 1; k--) {
      const [w, h] = tilesSize(grid.n, cols, grid.tile, k, gap);
      if (w <= maxW && h <= maxH) {
        s = k;
        break;
      }
    }
    const [w, h] = tilesSize(grid.n, cols, grid.tile, s, gap);
    const c = el("canvas", { class: "viz-pix" });
    const g = fitCanvas(c, w, h);
    drawTiles(g, src, grid, cols, s, gap);
    return c;
  }

  /** Unit activations of a linear layer as a heat grid, `cols` units per row, scaled by the max |value|. */
  private valuesCanvas(values: number[], cols: number, maxW: number, fontPx: number): HTMLElement {
    const rows = Math.ceil(values.length / cols);
    // big cells for a handful of outputs (the logits), small ones for hundreds of units
    const cell = Math.max(4, Math.min(fontPx * (values.length > 64 ? 0.9 : 1.6), Math.floor(maxW / cols)));
    const c = el("canvas", { class: "viz-pix" });
    const g = fitCanvas(c, cols * cell, rows * cell);
    const lut = colormap(this.cmap === "grey" ? "grey" : this.cmap);
    let max = 0;
    let lo = 0;
    for (const v of values) {
      if (Number.isFinite(v)) {
        max = Math.max(max, Math.abs(v));
        lo = Math.min(lo, v);
      }
    }
    const signed = lo < 0;
    values.forEach((v, i) => {
      const t = max > 0 ? (signed ? 0.5 + v / (2 * max) : v / max) : 0;
      g.fillStyle = lutColor(signed ? colormap("diverging") : lut, t);
      g.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, cell - 1, cell - 1);
    });
    c.title = `${values.length} units · max |value| ${fmt(max)}${signed ? " · orange < 0 < blue" : ""}`;
    return c;
  }
}
