/**
 * First-layer (or any conv layer's) filters from `filters` messages: the grid image
 * scaled up by an integer factor with square pixels, a layer picker, a step
 * scrubber over the filters' history and a play button to watch them form.
 *
 * While the tab is open the server streams the chosen layer's filters (about one frame
 * a second); the view follows the newest frame unless the scrubber holds an older one.
 */

import { rateOf, type WatchedViews } from "../live";
import type { FiltersMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { colormap, legendCanvas } from "./colormap";
import { Redraw, button, cssNumber, el, emptyState, fitCanvas, fmt, onWidthChange, toggle, widthOf } from "./dom";
import { FrameInfo } from "./frameInfo";
import { colorizeGrey, decodeImage, drawTiles, type Decoded } from "./image";
import { font, readPalette, type Palette } from "./theme";

export interface FiltersOptions {
  /** snapshots kept per layer for the step scrubber (default 80) */
  history?: number;
}

export class Filters {
  private readonly redraw: Redraw;
  private readonly history: number;
  private byLayer = new Map<string, FiltersMsg[]>();
  /** the network's convolution layers (from the run's summary): the layers one can pick */
  private convLayers: string[] = [];
  private decoded = new WeakMap<FiltersMsg, Decoded>();
  private layer: string | null = null;
  /** the layer the user picked (streamed with the `filters` view); null = the server's default */
  private chosenLayer: string | null = null;
  /** index into the layer's history; null = follow the newest */
  private pos: number | null = null;
  private diverging = false;
  private playing: number | null = null;

  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly layerSeg = el("div", { class: "viz-seg" });
  private readonly slider = el("input", { class: "viz-range viz-range-wide", attrs: { type: "range", min: "0", max: "0", step: "1" }, title: "scrub through the filters' history" });
  private readonly playBtn: HTMLButtonElement;
  private readonly canvas = el("canvas", { class: "viz-canvas viz-filters-canvas" });
  private readonly caption = el("div", { class: "viz-caption" });
  private readonly scale = el("span", { class: "viz-scale" });
  private readonly frame: FrameInfo;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: FiltersOptions = {}) {
    this.history = Math.max(2, opts.history ?? 80);
    this.redraw = new Redraw(ctx, () => this.draw());
    this.frame = new FrameInfo(root);
    this.slider.addEventListener("input", () => {
      this.stop();
      const list = this.current();
      const v = parseInt(this.slider.value, 10);
      this.pos = v >= list.length - 1 ? null : v;
      this.redraw.request();
    });
    this.playBtn = button("▶ play", () => this.togglePlay(), { title: "replay how the filters formed" });
    const refresh = button("↻ now", () => this.requestNow(), { title: "ask the server for the current filters" });
    const div = toggle("signed colours", false, (on) => {
      this.diverging = on;
      this.redraw.request();
    }, "orange = negative weight, blue = positive (instead of black/white)");
    this.body = el("div", { class: "viz-filters-body" }, [
      el("div", { class: "viz-toolbar" }, [this.layerSeg, el("span", { class: "viz-control" }, ["history", this.slider]), this.playBtn, this.frame.el, div.label, el("span", { class: "viz-spacer" }), this.scale, refresh]),
      el("div", { class: "viz-plot viz-center" }, [this.canvas]),
      this.caption,
    ]);
    this.empty = emptyState("Start training a convolutional network to see its filters", "The first layer's kernels are drawn as small images: edges and colour blobs appear as it learns.");
    root.classList.add("viz-view", "viz-filters");
    root.replaceChildren(this.empty, this.body);
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => this.redraw.request());
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "summary") {
      this.convLayers = msg.network.layers.filter((l) => l.kind === "conv2d").map((l) => l.name);
      this.buildLayerButtons();
      return;
    }
    if (msg.type !== "filters") return;
    let list = this.byLayer.get(msg.layer);
    if (list === undefined) {
      list = [];
      this.byLayer.set(msg.layer, list);
      this.buildLayerButtons();
    }
    const last = list[list.length - 1];
    if (last !== undefined && msg.step <= last.step) {
      const i = list.findIndex((m) => m.step >= msg.step);
      list.splice(i, list.length - i);
    }
    list.push(msg);
    if (list.length > this.history) list.splice(1, 1); // keep the very first (the initialization)
    if (this.layer === null) this.setLayer(msg.layer);
    decodeImage(msg.grid)
      .then((d) => {
        this.decoded.set(msg, d);
        this.redraw.request();
      })
      .catch(() => undefined);
  }

  reset(): void {
    this.stop();
    this.byLayer.clear();
    this.convLayers = [];
    this.layer = null;
    this.chosenLayer = null;
    this.pos = null;
    this.layerSeg.replaceChildren();
    this.frame.clear();
    this.redraw.request();
  }

  /** The filters of the chosen layer (the server's default layer until one is picked). */
  watch(): WatchedViews {
    return { filters: this.chosenLayer !== null ? { layer: this.chosenLayer } : {} };
  }

  resize(): void {
    this.redraw.request();
  }

  private current(): FiltersMsg[] {
    return this.layer !== null ? this.byLayer.get(this.layer) ?? [] : [];
  }

  private setLayer(layer: string): void {
    this.layer = layer;
    this.pos = null;
    this.stop();
    for (const b of this.layerSeg.querySelectorAll<HTMLButtonElement>("button")) b.classList.toggle("active", b.dataset.layer === layer);
    this.redraw.request();
  }

  private buildLayerButtons(): void {
    const layers = [...new Set([...this.convLayers, ...this.byLayer.keys()])];
    this.layerSeg.replaceChildren(
      ...layers.map((l) => {
        const b = button(l, () => {
          this.chosenLayer = l;
          this.setLayer(l);
          this.ctx.watchChanged();
          // a layer never streamed yet: ask once now rather than wait for the next frame
          if (this.current().length === 0) this.requestNow();
        });
        b.dataset.layer = l;
        b.classList.toggle("active", l === this.layer);
        return b;
      }),
    );
    this.layerSeg.hidden = layers.length < 2;
  }

  private requestNow(): void {
    const run = this.ctx.runId();
    if (run === null) return;
    this.ctx.send(this.layer !== null ? { cmd: "probe", run_id: run, probe: "filters", layer: this.layer } : { cmd: "probe", run_id: run, probe: "filters" });
  }

  private togglePlay(): void {
    if (this.playing !== null) return this.stop();
    const list = this.current();
    if (list.length < 2) return;
    this.pos = 0;
    this.playBtn.textContent = "■ stop";
    this.playing = window.setInterval(() => {
      const n = this.current().length;
      if (this.pos === null || this.pos >= n - 1) {
        this.stop();
        return;
      }
      this.pos++;
      this.redraw.request();
    }, 220);
    this.redraw.request();
  }

  private stop(): void {
    if (this.playing !== null) window.clearInterval(this.playing);
    this.playing = null;
    this.playBtn.textContent = "▶ play";
    if (this.pos !== null && this.pos >= this.current().length - 1) this.pos = null;
  }

  private draw(): void {
    const list = this.current();
    const any = this.byLayer.size > 0;
    this.empty.hidden = any;
    this.body.hidden = !any;
    if (list.length === 0) {
      if (any) {
        fitCanvas(this.canvas, 1, 1);
        this.caption.textContent = `waiting for the filters of ${this.layer ?? "this layer"}…`;
      }
      return;
    }
    const i = this.pos === null ? list.length - 1 : Math.min(this.pos, list.length - 1);
    const msg = list[i]!;
    this.slider.max = String(list.length - 1);
    this.slider.value = String(i);
    this.slider.disabled = list.length < 2;
    this.playBtn.disabled = list.length < 2;
    const d = this.decoded.get(msg);
    const p = readPalette(this.root, this.ctx.theme());
    const [th, tw] = msg.tile;
    this.caption.textContent = `${msg.layer} · ${msg.n} filter${msg.n === 1 ? "" : "s"} · ${th}×${tw}${msg.rgb ? " · RGB" : ""} · step ${msg.step.toLocaleString()}${i === list.length - 1 ? "" : "  (history)"}`;
    const signed = this.diverging && !msg.rgb;
    const key = `${signed}|${p.theme}`;
    if (this.scale.dataset.key !== key) {
      this.scale.dataset.key = key;
      this.scale.replaceChildren(
        ...(msg.rgb
          ? ["colours: weights per input channel"]
          : [`−${fmt(msg.scale, 2)}`, legendCanvas(signed ? colormap("diverging") : colormap("grey"), 64, 9), `+${fmt(msg.scale, 2)}`]),
      );
    }
    this.scale.title = `grey level 0.5 = weight 0; the colour range is ±${fmt(msg.scale)}`;
    if (d === undefined) return;
    const src = signed ? colorizeGrey(d, colormap("diverging")) : d.canvas;
    this.drawTiles(msg, src, p);
    this.frame.drawn(msg.step, rateOf(msg));
  }

  /**
   * Draw the tiles of the server's grid (1 px gaps, `cols` per row) re-laid out:
   * a single column (a first layer: one tile per filter) flows into rows that fill
   * the width; a wider grid (rows = output channels, columns = input channels) keeps
   * its shape. Tiles are scaled by an integer and separated by fixed CSS gaps, so a
   * 5×5 kernel reads as 25 clean squares at any zoom.
   */
  private drawTiles(msg: FiltersMsg, src: CanvasImageSource, p: Palette): void {
    const [th, tw] = msg.tile;
    const n = Math.max(1, msg.n);
    const srcCols = Math.max(1, msg.cols);
    const width = widthOf(this.canvas.parentElement ?? this.root);
    const maxH = cssNumber(this.root, "--viz-filters-h", 30 * p.fontPx);
    const maxTile = cssNumber(this.root, "--viz-filter-tile", 7 * p.fontPx);
    const gap = Math.max(2, Math.round(p.fontPx * 0.3));
    const keep = srcCols > 1;
    const labelW = keep ? Math.round(p.fontPx * 1.8) : 0;
    let s = Math.max(1, Math.floor(maxTile / Math.max(1, tw)));
    let cols = keep ? srcCols : n;
    let rows = Math.ceil(n / cols);
    for (;;) {
      const tilePx = tw * s;
      if (!keep) cols = Math.max(1, Math.min(n, Math.floor((width - labelW + gap) / (tilePx + gap))));
      rows = Math.ceil(n / cols);
      const fitsW = labelW + cols * tilePx + (cols - 1) * gap <= width;
      const fitsH = rows * th * s + (rows - 1) * gap <= maxH;
      if ((fitsW && fitsH) || s === 1) break;
      s--;
    }
    const cw = labelW + cols * tw * s + (cols - 1) * gap;
    const ch = rows * th * s + (rows - 1) * gap;
    const g = fitCanvas(this.canvas, Math.min(cw, width), ch);
    const fit = Math.min(1, width / cw); // only when even scale 1 is too wide
    g.save();
    g.scale(fit, fit);
    drawTiles(g, src, { n, srcCols, tile: [th, tw] }, cols, s, gap, labelW, 0);
    const tilePx = tw * s * fit;
    g.font = font(p, 0.62);
    if (keep) {
      // rows are output channels
      g.fillStyle = p.muted;
      g.textAlign = "right";
      g.textBaseline = "middle";
      for (let r = 0; r < rows; r++) if (th * s >= p.fontPx * 0.7) g.fillText(String(r), labelW - 4, r * (th * s + gap) + (th * s) / 2);
    } else if (tilePx >= p.fontPx * 2.2) {
      // faint tile numbers help when discussing single filters in class
      g.textBaseline = "top";
      g.textAlign = "left";
      for (let k = 0; k < n; k++) {
        const x = (k % cols) * (tw * s + gap);
        const y = Math.floor(k / cols) * (th * s + gap);
        g.fillStyle = "rgba(0,0,0,0.45)";
        g.fillRect(x, y, p.fontPx * 1.2, p.fontPx * 0.8);
        g.fillStyle = "rgba(255,255,255,0.85)";
        g.fillText(String(k), x + 2, y + 1);
      }
    }
    g.restore();
  }
}
