/**
 * Where the network looks: saliency and Grad-CAM heat maps over the input, and the
 * masks of squeeze-excite / spatial-attention layers.
 *
 * Pickers: an example index, a target class ("predicted" by default, from
 * ctx.classes()) and a Grad-CAM layer (the summary's conv2d layers, last by
 * default). While the tab is open the server streams Grad-CAM (networks with conv
 * layers), saliency and the attention masks (networks with squeeze-excite or spatial
 * attention layers) for the picked example, class and layer, about once a second;
 * the buttons ask for one at once (`probe` commands `saliency`, `gradcam`, `attention`).
 * The cards keep a fixed order so a stream does not shuffle them.
 */

import { rateOf, type WatchedViews } from "../live";
import type { AttentionMsg, GradcamMsg, Image, ProbeKind, SaliencyMsg, ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { colormap, legendCanvas } from "./colormap";
import { Redraw, button, cssNumber, el, emptyState, fitCanvas, fmtPct, onWidthChange, select, setOptions } from "./dom";
import { ExamplePicker } from "./ExamplePicker";
import { FrameInfo } from "./frameInfo";
import { colorizeGrey, decodeAll, overlayCanvas, pixelCanvas, type Decoded } from "./image";
import { clipText } from "./plot";
import { font, readPalette, type Palette } from "./theme";

export interface AttentionOptions {
  /** heat-map opacity over the input, 0..1 (default 0.65) */
  opacity?: number;
}

interface Result<M> {
  msg: M;
  imgs: (Decoded | null)[];
}

const ATTENTION_KINDS = new Set(["squeeze_excite", "spatial_attention"]);
/** Card order, fixed: Grad-CAM (the usual question) first. */
const CARD_ORDER = ["gradcam", "saliency", "attention"] as const;

export class Attention {
  private readonly redraw: Redraw;
  private summary: SummaryMsg | null = null;
  private saliency: Result<SaliencyMsg> | null = null;
  private gradcam: Result<GradcamMsg> | null = null;
  private attention: Result<AttentionMsg> | null = null;
  /** the kinds that have a result to show */
  private order: ("saliency" | "gradcam" | "attention")[] = [];
  /** newest step drawn and its stream rate */
  private newest: { step: number; rate: number | null } | null = null;
  private opacity: number;
  private lastProbe: ProbeKind = "gradcam";
  private pending: ProbeKind | null = null;

  private readonly picker: ExamplePicker;
  private readonly classSel: HTMLSelectElement;
  private readonly layerSel: HTMLSelectElement;
  private readonly attnBtn: HTMLButtonElement;
  private readonly status = el("span", { class: "viz-note" });
  private readonly empty: HTMLElement;
  private readonly results = el("div", { class: "viz-attn-results" });
  private readonly frame: FrameInfo;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: AttentionOptions = {}) {
    this.opacity = opts.opacity ?? 0.65;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.frame = new FrameInfo(root);
    this.picker = new ExamplePicker("example #", () => {
      this.probe(this.lastProbe);
      ctx.watchChanged();
    }, null);
    this.classSel = select([["", "predicted class"]], "", () => ctx.watchChanged(), "class whose evidence is shown");
    this.layerSel = select([], "", () => ctx.watchChanged(), "convolutional layer for Grad-CAM (the last one is the usual choice)");
    this.attnBtn = button("Attention masks", () => this.probe("attention"), { title: "masks of squeeze-excite / spatial attention layers" });
    this.attnBtn.hidden = true;
    const opacity = el("input", { class: "viz-range", attrs: { type: "range", min: "0", max: "1", step: "0.05" }, title: "heat map opacity" });
    opacity.value = String(this.opacity);
    opacity.addEventListener("input", () => {
      this.opacity = parseFloat(opacity.value);
      this.redraw.request();
    });
    const toolbar = el("div", { class: "viz-toolbar" }, [
      this.picker.el,
      el("label", { class: "viz-control" }, ["class", this.classSel]),
      el("label", { class: "viz-control" }, ["layer", this.layerSel]),
    ]);
    const actions = el("div", { class: "viz-toolbar" }, [
      button("Saliency", () => this.probe("saliency"), { class: "primary", title: "gradient of the class score w.r.t. each input pixel" }),
      button("Grad-CAM", () => this.probe("gradcam"), { class: "primary", title: "class-weighted activation map of the chosen conv layer" }),
      this.attnBtn,
      this.status,
      el("span", { class: "viz-spacer" }),
      this.frame.el,
      el("label", { class: "viz-control" }, ["opacity", opacity]),
      el("span", { class: "viz-scale" }, ["low", legendCanvas(colormap("inferno"), 64, 9), "high"]),
    ]);
    this.empty = emptyState("Ask where the network looks", "Pick an example and press Saliency or Grad-CAM: the heat map shows which pixels drove the prediction.");
    root.classList.add("viz-view", "viz-attention");
    root.replaceChildren(toolbar, actions, this.empty, this.results);
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => this.redraw.request());
    this.refreshPickers();
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case "summary":
        this.summary = msg;
        this.picker.setMax(msg.dataset.n_val);
        this.refreshPickers();
        // which live views apply depends on the layers the summary lists
        this.ctx.watchChanged();
        break;
      case "saliency":
        this.take("saliency", msg, [msg.input, msg.map], (r) => (this.saliency = r));
        break;
      case "gradcam":
        this.take("gradcam", msg, [msg.input, msg.map], (r) => (this.gradcam = r));
        break;
      case "attention":
        this.take("attention", msg, [msg.input, ...msg.masks.map((m) => m.map)], (r) => (this.attention = r));
        break;
      default:
        return;
    }
  }

  reset(): void {
    this.summary = null;
    this.saliency = this.gradcam = this.attention = null;
    this.order = [];
    this.pending = null;
    this.newest = null;
    this.frame.clear();
    this.refreshPickers();
    this.redraw.request();
  }

  /**
   * Streamed while the tab is open, for the picked example / class / layer: Grad-CAM when the
   * network has conv layers, saliency always, the masks when it has attention layers.
   */
  watch(): WatchedViews {
    const index = this.picker.index();
    const target = this.classSel.value !== "" ? parseInt(this.classSel.value, 10) : undefined;
    const layers = this.summary?.network.layers ?? [];
    const views: WatchedViews = { saliency: { index, target } };
    if (layers.some((l) => l.kind === "conv2d")) views.gradcam = { index, target, layer: this.layerSel.value !== "" ? this.layerSel.value : undefined };
    if (layers.some((l) => ATTENTION_KINDS.has(l.kind))) views.attention = { index };
    return views;
  }

  resize(): void {
    this.redraw.request();
  }

  private take<M extends SaliencyMsg | GradcamMsg | AttentionMsg>(
    kind: "saliency" | "gradcam" | "attention",
    msg: M,
    imgs: (Image | null)[],
    store: (r: Result<M>) => void,
  ): void {
    if (this.pending === kind) this.pending = null;
    const rate = rateOf(msg);
    void decodeAll(imgs).then((d) => {
      store({ msg, imgs: d });
      if (!this.order.includes(kind)) this.order = CARD_ORDER.filter((k) => k === kind || this.order.includes(k));
      if (this.newest === null || msg.step >= this.newest.step) this.newest = { step: msg.step, rate: rate ?? this.newest?.rate ?? null };
      this.redraw.request();
    });
  }

  private refreshPickers(): void {
    const classes = this.summary?.dataset.classes ?? this.ctx.classes();
    const prevClass = this.classSel.value;
    setOptions(this.classSel, [["", "predicted class"], ...classes.map((c, i): [string, string] => [String(i), `${i}: ${c}`])], prevClass);
    const layers = this.summary?.network.layers ?? [];
    const convs = layers.filter((l) => l.kind === "conv2d").map((l) => l.name);
    const prevLayer = this.layerSel.value;
    setOptions(this.layerSel, convs.map((n): [string, string] => [n, n]), convs.includes(prevLayer) ? prevLayer : convs[convs.length - 1] ?? "");
    this.layerSel.disabled = convs.length === 0;
    const label = this.layerSel.parentElement;
    if (label !== null) label.hidden = convs.length === 0;
    this.attnBtn.hidden = !layers.some((l) => ATTENTION_KINDS.has(l.kind));
  }

  private probe(kind: ProbeKind): void {
    const run = this.ctx.runId();
    if (run === null) {
      this.status.textContent = "start a run first";
      return;
    }
    this.lastProbe = kind;
    const cmd: { cmd: "probe"; run_id: string; probe: ProbeKind; index: number; class?: number; layer?: string } = {
      cmd: "probe",
      run_id: run,
      probe: kind,
      index: this.picker.index(),
    };
    if (this.classSel.value !== "" && kind !== "attention") cmd.class = parseInt(this.classSel.value, 10);
    if (kind === "gradcam" && this.layerSel.value !== "") cmd.layer = this.layerSel.value;
    this.pending = kind;
    this.ctx.send(cmd);
    this.redraw.request();
  }

  private cls(i: number): string {
    const classes = this.summary?.dataset.classes ?? this.ctx.classes();
    return classes[i] ?? String(i);
  }

  private draw(): void {
    this.status.textContent = this.pending !== null ? `computing ${this.pending}…` : "";
    const has = this.order.length > 0;
    this.empty.hidden = has;
    this.results.hidden = !has;
    if (!has) return;
    if (this.newest !== null) this.frame.drawn(this.newest.step, this.newest.rate);
    const p = readPalette(this.root, this.ctx.theme());
    const tile = cssNumber(this.root, "--viz-tile", 9 * p.fontPx);
    const cards: HTMLElement[] = [];
    for (const kind of this.order) {
      if (kind === "saliency" && this.saliency !== null) cards.push(this.saliencyCard(this.saliency, tile));
      if (kind === "gradcam" && this.gradcam !== null) cards.push(this.gradcamCard(this.gradcam, tile, p));
      if (kind === "attention" && this.attention !== null) cards.push(this.attentionCard(this.attention, tile, p));
    }
    this.results.replaceChildren(...cards);
  }

  private triptych(input: Decoded | null, map: Decoded | null, tile: number, mapLabel: string): HTMLElement[] {
    if (input === null || map === null) return [el("div", { class: "viz-note", text: "image missing" })];
    const h = (tile * input.h) / input.w;
    const fig = (c: HTMLCanvasElement, cap: string): HTMLElement => el("figure", { class: "viz-tile" }, [pixelCanvas(c, tile, h), el("figcaption", { text: cap })]);
    return [
      fig(input.canvas, "input"),
      fig(colorizeGrey(map, colormap("inferno")), mapLabel),
      fig(overlayCanvas(input, map, { alpha: this.opacity }), "overlay"),
    ];
  }

  private head(title: string, bits: (string | HTMLElement)[]): HTMLElement {
    return el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: title }), el("span", { class: "viz-card-sub" }, bits)]);
  }

  private verdict(target: number, predicted: number): HTMLElement[] {
    const ok = target === predicted;
    return [
      el("span", { text: `target ` }),
      el("b", { text: this.cls(target) }),
      el("span", { text: ` · predicted ` }),
      el("b", { class: ok ? "viz-good" : "viz-bad", text: this.cls(predicted) }),
    ];
  }

  private saliencyCard(r: Result<SaliencyMsg>, tile: number): HTMLElement {
    const m = r.msg;
    return el("section", { class: "viz-card" }, [
      this.head(m.smoothgrad ? "Saliency (SmoothGrad)" : "Saliency", [`#${m.index} · `, ...this.verdict(m.target, m.predicted), ` · step ${m.step.toLocaleString()}`]),
      el("div", { class: "viz-tiles" }, this.triptych(r.imgs[0] ?? null, r.imgs[1] ?? null, tile, "|∂score/∂pixel|")),
    ]);
  }

  private gradcamCard(r: Result<GradcamMsg>, tile: number, p: Palette): HTMLElement {
    const m = r.msg;
    return el("section", { class: "viz-card" }, [
      this.head("Grad-CAM", [`#${m.index} · layer `, el("b", { text: m.layer }), " · ", ...this.verdict(m.target, m.predicted), ` · step ${m.step.toLocaleString()}`]),
      el("div", { class: "viz-tiles" }, [
        ...this.triptych(r.imgs[0] ?? null, r.imgs[1] ?? null, tile, `Grad-CAM @ ${m.layer}`),
        ...(Array.isArray(m.probs) && m.probs.length > 0 ? [this.probBars(m.probs, m.target, m.predicted, p, tile)] : []),
      ]),
    ]);
  }

  /** Top-5 class probabilities as horizontal bars. */
  private probBars(probs: number[], target: number, predicted: number, p: Palette, tile: number): HTMLElement {
    const top = probs.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 5);
    const rowH = Math.round(p.fontPx * 1.5);
    const w = Math.round(tile * 1.4);
    const c = el("canvas", { class: "viz-probbars" });
    const g = fitCanvas(c, w, rowH * top.length + 4);
    const labelW = Math.round(w * 0.38);
    top.forEach(([v, i], k) => {
      const y = 2 + k * rowH;
      g.font = font(p, 0.78, i === predicted ? 650 : 400);
      g.fillStyle = p.fg;
      g.textAlign = "right";
      g.textBaseline = "middle";
      g.fillText(clipText(g, this.cls(i), labelW - 6), labelW - 6, y + rowH / 2);
      g.fillStyle = p.grid;
      g.fillRect(labelW, y + 3, w - labelW - 2, rowH - 6);
      g.fillStyle = i === predicted ? p.train : i === target ? p.val : p.muted;
      g.fillRect(labelW, y + 3, Math.max(1, (w - labelW - 2) * v), rowH - 6);
      g.font = font(p, 0.72);
      const txt = fmtPct(v, 0);
      const tw = g.measureText(txt).width;
      const end = labelW + (w - labelW - 2) * v;
      if (end + 3 + tw <= w) {
        g.fillStyle = p.fg;
        g.textAlign = "left";
        g.fillText(txt, end + 3, y + rowH / 2);
      } else {
        g.fillStyle = "#fff";
        g.textAlign = "right";
        g.fillText(txt, end - 3, y + rowH / 2);
      }
    });
    return el("figure", { class: "viz-tile" }, [c, el("figcaption", { text: "top classes" })]);
  }

  private attentionCard(r: Result<AttentionMsg>, tile: number, p: Palette): HTMLElement {
    const m = r.msg;
    const input = r.imgs[0] ?? null;
    const tiles: HTMLElement[] = [];
    if (input !== null) tiles.push(el("figure", { class: "viz-tile" }, [pixelCanvas(input.canvas, tile, (tile * input.h) / input.w), el("figcaption", { text: "input" })]));
    m.masks.forEach((mask, k) => {
      const map = r.imgs[k + 1] ?? null;
      if (mask.kind === "spatial" && map !== null && input !== null) {
        const h = (tile * input.h) / input.w;
        tiles.push(el("figure", { class: "viz-tile" }, [pixelCanvas(colorizeGrey(map, colormap("inferno")), tile, h), el("figcaption", { text: `${mask.layer} · spatial mask (0…1)` })]));
        tiles.push(el("figure", { class: "viz-tile" }, [pixelCanvas(overlayCanvas(input, map, { alpha: this.opacity }), tile, h), el("figcaption", { text: "mask over input" })]));
      } else if (mask.values !== null) {
        tiles.push(el("figure", { class: "viz-tile" }, [this.channelBars(mask.values, p, tile), el("figcaption", { text: `${mask.layer} · channel weights` })]));
      }
    });
    return el("section", { class: "viz-card" }, [this.head("Attention masks", [`#${m.index} · step ${m.step.toLocaleString()}`]), el("div", { class: "viz-tiles" }, tiles)]);
  }

  /** Squeeze-excite channel gates (0..1) as a bar per channel. */
  private channelBars(values: number[], p: Palette, tile: number): HTMLElement {
    const w = Math.round(tile * 1.6);
    const h = Math.round(tile);
    const c = el("canvas");
    const g = fitCanvas(c, w, h);
    const n = values.length;
    const bw = (w - 4) / Math.max(1, n);
    g.strokeStyle = p.grid;
    g.strokeRect(0.5, 0.5, w - 1, h - 1);
    values.forEach((v, i) => {
      const bh = Math.max(1, (h - 6) * Math.max(0, Math.min(1, v)));
      g.fillStyle = p.train;
      g.fillRect(2 + i * bw + (bw > 3 ? 0.5 : 0), h - 3 - bh, Math.max(1, bw - (bw > 3 ? 1 : 0)), bh);
    });
    c.title = `${n} channels, gate values 0..1`;
    return c;
  }
}
