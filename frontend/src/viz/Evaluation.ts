/**
 * Validation results: the confusion matrix (`confusion`), per-class accuracy and
 * the gallery of misclassified examples (`misclassified`).
 *
 * Clicking a matrix cell lists that cell's example indices as thumbnails (images
 * are shown when the page has seen them: in the gallery or a probe reply); clicking
 * a thumbnail or a gallery example sends a `gradcam` probe for it, and the Grad-CAM
 * overlay replaces the thumbnail when the reply arrives.
 *
 * While the tab is open the page watches the `evaluation` live view: the server sends
 * both messages at each of the run's evaluations.
 */

import { AUTO_PROBE_ID, rateOf, type WatchedViews } from "../live";
import type { ConfusionMsg, GradcamMsg, Image, MisclassifiedMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { sequential } from "./colormap";
import { Redraw, Tooltip, button, cssNumber, el, emptyState, fitCanvas, fmtPct, onWidthChange, toggle, widthOf } from "./dom";
import { FrameInfo } from "./frameInfo";
import { decodeImage, overlayCanvas, pixelCanvas, type Decoded } from "./image";
import { clipText } from "./plot";
import { font, readPalette, withAlpha, type Palette } from "./theme";

export interface EvaluationOptions {
  /** show row-normalized percentages instead of counts (default false) */
  normalize?: boolean;
  /** most thumbnails listed for one matrix cell (default 60) */
  maxThumbs?: number;
}

interface MatrixLayout {
  x0: number;
  y0: number;
  cell: number;
  n: number;
}

export class Evaluation {
  private readonly redraw: Redraw;
  private readonly maxThumbs: number;
  private confusion: ConfusionMsg | null = null;
  /** Grad-CAM needs image data: thumbnails are clickable only then */
  private imagesOk = true;
  private misclassified: MisclassifiedMsg | null = null;
  /** input images seen so far, by validation index */
  private images = new Map<number, Decoded>();
  private gradcams = new Map<number, { msg: GradcamMsg; overlay: HTMLCanvasElement }>();
  private pending = new Set<number>();
  private selected: [number, number] | null = null;
  private hoverCell: [number, number] | null = null;
  private normalize: boolean;
  private layout: MatrixLayout | null = null;
  private galleryDirty = true;
  /** run whose evaluation this view already asked for on being shown */
  private askedFor: string | null = null;

  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly stats = el("div", { class: "viz-stats" });
  private readonly frame: FrameInfo;
  private readonly matrixCanvas = el("canvas", { class: "viz-matrix" });
  private readonly accCanvas = el("canvas", { class: "viz-canvas" });
  private readonly matrixTip: Tooltip;
  private readonly cellCard: HTMLElement;
  private readonly cellTitle = el("h4", { class: "viz-card-title" });
  private readonly cellSub = el("span", { class: "viz-card-sub" });
  private readonly cellTiles = el("div", { class: "viz-gallery" });
  private readonly galleryCard: HTMLElement;
  private readonly gallery = el("div", { class: "viz-gallery" });
  private readonly gallerySub = el("span", { class: "viz-card-sub" });
  private readonly matrixCard: HTMLElement;
  private readonly accCard: HTMLElement;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: EvaluationOptions = {}) {
    this.normalize = opts.normalize ?? false;
    this.maxThumbs = opts.maxThumbs ?? 60;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.frame = new FrameInfo(root);
    const norm = toggle("row %", this.normalize, (on) => {
      this.normalize = on;
      this.redraw.request();
    }, "show each row as percentages of that class (recall) instead of counts");
    const refresh = button("↻ evaluate now", () => {
      const run = ctx.runId();
      if (run === null) return;
      ctx.send({ cmd: "probe", run_id: run, probe: "confusion" });
      ctx.send({ cmd: "probe", run_id: run, probe: "misclassified" });
    }, { title: "recompute the confusion matrix and the misclassified examples now" });

    this.matrixCard = el("section", { class: "viz-card", attrs: { "data-chart": "confusion" } }, [
      el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "Confusion matrix" }), el("span", { class: "viz-card-sub", text: "rows: true class · columns: predicted · click a cell" })]),
      el("div", { class: "viz-plot" }, [this.matrixCanvas]),
    ]);
    this.matrixTip = new Tooltip(this.matrixCard);
    this.accCard = el("section", { class: "viz-card", attrs: { "data-chart": "per_class" } }, [
      el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "Per-class accuracy" })]),
      el("div", { class: "viz-plot" }, [this.accCanvas]),
    ]);
    this.cellCard = el("section", { class: "viz-card", attrs: { hidden: "" } }, [
      el("header", { class: "viz-card-head" }, [this.cellTitle, this.cellSub, el("span", { class: "viz-spacer" }), button("×", () => this.select(null), { title: "close", class: "viz-close" })]),
      this.cellTiles,
    ]);
    this.galleryCard = el("section", { class: "viz-card", attrs: { "data-chart": "misclassified" } }, [
      el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "Misclassified" }), this.gallerySub]),
      this.gallery,
    ]);
    this.body = el("div", { class: "viz-loss-body" }, [
      el("div", { class: "viz-toolbar" }, [this.stats, el("span", { class: "viz-spacer" }), this.frame.el, norm.label, refresh]),
      el("div", { class: "viz-eval-top" }, [this.matrixCard, this.accCard]),
      this.cellCard,
      this.galleryCard,
    ]);
    this.empty = emptyState("Start training to see the confusion matrix", "After each evaluation: which classes get confused, and the examples the network gets wrong.");
    root.classList.add("viz-view", "viz-evaluation");
    root.replaceChildren(this.empty, this.body);

    this.matrixCanvas.addEventListener("mousemove", (e) => this.onHover(e));
    this.matrixCanvas.addEventListener("mouseleave", () => {
      this.hoverCell = null;
      this.matrixTip.hide();
      this.redraw.request();
    });
    this.matrixCanvas.addEventListener("click", (e) => {
      const c = this.cellAt(e);
      if (c !== null && (this.confusion?.matrix[c[0]]?.[c[1]] ?? 0) > 0) this.select(c);
    });
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => {
      this.galleryDirty = true;
      this.redraw.request();
    });
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case "summary":
        this.imagesOk = msg.dataset.kind === "image";
        this.galleryDirty = true;
        this.redraw.request();
        break;
      case "confusion":
        this.confusion = msg;
        if (this.selected !== null && (msg.matrix[this.selected[0]]?.[this.selected[1]] ?? 0) === 0) this.selected = null;
        this.galleryDirty = true;
        this.redraw.request();
        break;
      case "misclassified":
        this.misclassified = msg;
        for (const ex of msg.examples) this.remember(ex.index, ex.image);
        this.galleryDirty = true;
        this.redraw.request();
        break;
      case "gradcam":
        this.pending.delete(msg.index);
        void Promise.all([decodeImage(msg.input), decodeImage(msg.map)]).then(([input, map]) => {
          this.images.set(msg.index, input);
          this.gradcams.set(msg.index, { msg, overlay: overlayCanvas(input, map, { alpha: 0.65 }) });
          this.galleryDirty = true;
          this.redraw.request();
        });
        break;
      case "saliency":
      case "feature_maps":
      case "attention":
        this.remember(msg.index, msg.input);
        break;
      default:
        return;
    }
  }

  reset(): void {
    this.confusion = null;
    this.misclassified = null;
    this.images.clear();
    this.imagesOk = true;
    this.gradcams.clear();
    this.pending.clear();
    this.selected = null;
    this.galleryDirty = true;
    this.frame.clear();
    this.redraw.request();
  }

  /** The confusion matrix and misclassified examples, sent at each evaluation while the tab is open. */
  watch(): WatchedViews {
    return { evaluation: {} };
  }

  resize(): void {
    this.galleryDirty = true;
    this.redraw.request();
    // Shown before the run's first scheduled evaluation: ask for one now rather than show nothing.
    const run = this.ctx.runId();
    if (this.confusion === null && run !== null && this.askedFor !== run) {
      this.askedFor = run;
      // asked by the page itself: a run whose model is gone fails quietly (AUTO_PROBE_ID)
      this.ctx.send({ cmd: "probe", run_id: run, probe: "confusion", id: AUTO_PROBE_ID });
      this.ctx.send({ cmd: "probe", run_id: run, probe: "misclassified", id: AUTO_PROBE_ID });
    }
  }

  private remember(index: number, img: Image | null | undefined): void {
    // misclassified examples of non-image data come without an image
    if (img == null || this.images.has(index)) return;
    void decodeImage(img).then((d) => {
      this.images.set(index, d);
      this.galleryDirty = true;
      this.redraw.request();
    });
  }

  private select(c: [number, number] | null): void {
    this.selected = c;
    this.galleryDirty = true;
    this.redraw.request();
    if (c !== null) requestAnimationFrame(() => this.cellCard.scrollIntoView({ behavior: "smooth", block: "nearest" }));
  }

  private requestGradcam(index: number): void {
    const run = this.ctx.runId();
    if (run === null || this.pending.has(index)) return;
    this.pending.add(index);
    this.ctx.send({ cmd: "probe", run_id: run, probe: "gradcam", index });
    this.galleryDirty = true;
    this.redraw.request();
  }

  private classes(): string[] {
    return this.confusion?.classes ?? this.ctx.classes();
  }

  private cls(i: number): string {
    return this.classes()[i] ?? String(i);
  }

  // ------------------------------------------------------------ drawing

  private draw(): void {
    const cm = this.confusion;
    const has = cm !== null || this.misclassified !== null;
    this.empty.hidden = has;
    this.body.hidden = !has;
    if (!has) return;
    const p = readPalette(this.root, this.ctx.theme());
    this.stats.replaceChildren(
      ...(cm !== null
        ? [
          el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "validation accuracy" }), el("b", { class: "viz-big", text: fmtPct(cm.accuracy) })]),
          el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "examples" }), el("b", { text: cm.matrix.flat().reduce((a, b) => a + b, 0).toLocaleString() })]),
        ]
        : []),
    );
    if (cm !== null) this.frame.drawn(cm.step, rateOf(cm));
    this.matrixCard.hidden = cm === null;
    this.accCard.hidden = cm === null;
    if (cm !== null) {
      this.drawMatrix(p, cm);
      this.drawAccuracy(p, cm);
    }
    if (this.galleryDirty) {
      this.galleryDirty = false;
      this.drawCell(p);
      this.drawGallery(p);
    }
  }

  private drawMatrix(p: Palette, cm: ConfusionMsg): void {
    const n = cm.classes.length;
    const avail = widthOf(this.matrixCanvas.parentElement ?? this.root);
    const probe = fitCanvas(this.matrixCanvas, 1, 1);
    probe.font = font(p, 0.78);
    const maxLabel = Math.min(p.fontPx * 7, Math.max(...cm.classes.map((c) => probe.measureText(c).width), 8));
    const rowLabelW = Math.round(maxLabel + p.fontPx * 1.6);
    const maxCell = cssNumber(this.root, "--viz-cell", 3.6 * p.fontPx);
    const cell = Math.max(6, Math.min(maxCell, Math.floor((avail - rowLabelW - 8) / n)));
    const rotate = maxLabel + 4 > cell;
    const colLabelH = Math.round((rotate ? maxLabel * 0.75 + p.fontPx * 0.6 : p.fontPx * 1.3) + p.fontPx * 1.4);
    const showLabels = cell >= p.fontPx * 0.75;
    const W = rowLabelW + n * cell + 4;
    const H = colLabelH + n * cell + 4;
    const g = fitCanvas(this.matrixCanvas, W, H);
    const x0 = rowLabelW;
    const y0 = colLabelH;
    this.layout = { x0, y0, cell, n };
    const diagLut = sequential(p.bg, p.train);
    const offLut = sequential(p.bg, p.bad);
    const rowSums = cm.matrix.map((r) => r.reduce((a, b) => a + b, 0));

    // axis titles
    g.fillStyle = p.muted;
    g.font = font(p, 0.72, 600);
    g.textAlign = "center";
    g.textBaseline = "top";
    g.fillText("predicted →", x0 + (n * cell) / 2, 0);
    g.save();
    g.translate(2, y0 + (n * cell) / 2);
    g.rotate(-Math.PI / 2);
    g.textBaseline = "top";
    g.fillText("true →", 0, 0);
    g.restore();

    for (let t = 0; t < n; t++) {
      for (let q = 0; q < n; q++) {
        const v = cm.matrix[t]?.[q] ?? 0;
        const frac = rowSums[t]! > 0 ? v / rowSums[t]! : 0;
        const tt = t === q ? frac : Math.pow(Math.min(1, frac * 3), 0.6);
        const lut = t === q ? diagLut : offLut;
        const i = Math.round(Math.max(0, Math.min(1, tt)) * 255);
        g.fillStyle = v === 0 ? withAlpha(p.fg, 0.035) : `rgb(${lut[3 * i]},${lut[3 * i + 1]},${lut[3 * i + 2]})`;
        g.fillRect(x0 + q * cell, y0 + t * cell, cell - 1, cell - 1);
        if (cell >= p.fontPx * 1.5 && v > 0) {
          g.fillStyle = tt > 0.55 ? "#fff" : p.fg;
          g.font = font(p, cell >= p.fontPx * 2.4 ? 0.75 : 0.6, t === q ? 650 : 400);
          g.textAlign = "center";
          g.textBaseline = "middle";
          g.fillText(this.normalize ? `${Math.round(frac * 100)}` : String(v), x0 + q * cell + cell / 2, y0 + t * cell + cell / 2);
        }
      }
    }
    // labels
    if (showLabels) {
      g.fillStyle = p.fg;
      g.font = font(p, 0.78);
      for (let k = 0; k < n; k++) {
        const name = clipText(g, cm.classes[k] ?? String(k), maxLabel);
        g.textAlign = "right";
        g.textBaseline = "middle";
        g.fillText(name, x0 - 5, y0 + k * cell + cell / 2);
        if (rotate) {
          g.save();
          g.translate(x0 + k * cell + cell / 2, y0 - 5);
          g.rotate(-Math.PI / 3);
          g.textAlign = "left";
          g.fillText(name, 0, 0);
          g.restore();
        } else {
          g.textAlign = "center";
          g.textBaseline = "bottom";
          g.fillText(name, x0 + k * cell + cell / 2, y0 - 4);
        }
      }
    }
    const outline = (c: [number, number] | null, color: string, w: number): void => {
      if (c === null) return;
      g.strokeStyle = color;
      g.lineWidth = w;
      g.strokeRect(x0 + c[1] * cell - 0.5, y0 + c[0] * cell - 0.5, cell, cell);
    };
    outline(this.hoverCell, p.accent, 1.5);
    outline(this.selected, p.fg, 2.5);
  }

  private drawAccuracy(p: Palette, cm: ConfusionMsg): void {
    const n = cm.classes.length;
    const w = widthOf(this.accCanvas.parentElement ?? this.root);
    // rows as tall as the matrix rows (up to a limit), so the two charts line up
    const rowH = Math.max(p.fontPx * 0.9, Math.min(p.fontPx * 2.2, this.layout?.cell ?? p.fontPx * 1.6, (p.fontPx * 40) / n));
    const h = n * rowH + 6;
    const g = fitCanvas(this.accCanvas, w, h);
    g.font = font(p, 0.78);
    const labelW = Math.min(p.fontPx * 7, Math.max(...cm.classes.map((c) => g.measureText(c).width), 8)) + 8;
    const valueW = p.fontPx * 3.2;
    const bw = Math.max(10, w - labelW - valueW);
    const accs = cm.per_class_accuracy;
    const sorted = accs.filter((a): a is number => a !== null && Number.isFinite(a)).sort((a, b) => a - b);
    const worst = sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(n / 5) - 1))] ?? 0;
    const showText = rowH >= p.fontPx * 0.85;
    for (let k = 0; k < n; k++) {
      const y = 3 + k * rowH;
      const a = accs[k] ?? 0;
      if (showText) {
        g.fillStyle = p.fg;
        g.textAlign = "right";
        g.textBaseline = "middle";
        g.font = font(p, 0.78);
        g.fillText(clipText(g, cm.classes[k] ?? String(k), labelW - 8), labelW - 6, y + rowH / 2);
      }
      g.fillStyle = p.grid;
      g.fillRect(labelW, y + rowH * 0.18, bw, rowH * 0.64);
      g.fillStyle = a <= worst && n > 2 ? p.val : p.train;
      g.fillRect(labelW, y + rowH * 0.18, bw * Math.max(0, Math.min(1, a)), rowH * 0.64);
      if (showText) {
        g.fillStyle = a <= worst && n > 2 ? p.val : p.muted;
        g.textAlign = "left";
        g.font = font(p, 0.74, a <= worst ? 650 : 400);
        g.fillText(fmtPct(a), labelW + bw + 5, y + rowH / 2);
      }
    }
    // overall accuracy as a reference line
    const ax = labelW + bw * cm.accuracy;
    g.strokeStyle = p.fg;
    g.setLineDash([3, 3]);
    g.beginPath();
    g.moveTo(Math.round(ax) + 0.5, 0);
    g.lineTo(Math.round(ax) + 0.5, h);
    g.stroke();
    g.setLineDash([]);
  }

  /** A thumbnail tile for validation example `index`: Grad-CAM overlay, the image, or a numbered placeholder. */
  private thumb(index: number, size: number, caption: (string | HTMLElement)[], title: string): HTMLElement {
    const cam = this.gradcams.get(index);
    const img = this.images.get(index);
    let pic: HTMLElement;
    if (cam !== undefined) pic = pixelCanvas(cam.overlay, size, size);
    else if (img !== undefined) pic = pixelCanvas(img.canvas, size, (size * img.h) / img.w);
    else pic = el("div", { class: "viz-thumb-missing", text: `#${index}`, style: { width: `${size}px`, height: `${size}px` } });
    const state = this.pending.has(index) ? " pending" : cam !== undefined ? " has-cam" : "";
    const fig = el("figure", { class: `viz-thumb${state}${this.imagesOk ? "" : " static"}`, title }, [pic, el("figcaption", {}, caption)]);
    if (this.imagesOk) fig.addEventListener("click", () => this.requestGradcam(index));
    return fig;
  }

  private drawCell(p: Palette): void {
    const cm = this.confusion;
    const sel = this.selected;
    this.cellCard.hidden = cm === null || sel === null;
    if (cm === null || sel === null) return;
    const [t, q] = sel;
    const ids = cm.cells[`${t},${q}`] ?? [];
    const count = cm.matrix[t]?.[q] ?? 0;
    this.cellTitle.textContent = t === q ? `Correct: ${this.cls(t)}` : `True ${this.cls(t)} → predicted ${this.cls(q)}`;
    const image = this.imagesOk;
    this.cellSub.textContent = `${count} example${count === 1 ? "" : "s"}${ids.length < count ? ` (${ids.length} listed)` : ""}${image ? " · click one for its Grad-CAM" : ""}`;
    const size = cssNumber(this.root, "--viz-thumb", 4.5 * p.fontPx);
    this.cellTiles.replaceChildren(
      ...ids.slice(0, this.maxThumbs).map((i) => {
        const cam = this.gradcams.get(i);
        const p = cam?.msg.probs?.[cam.msg.predicted];
        const cap: (string | HTMLElement)[] = cam !== undefined ? [`#${i} → `, el("b", { text: this.cls(cam.msg.predicted) }), ...(p != null ? [` ${fmtPct(p, 0)}`] : [])] : [`#${i}`];
        return this.thumb(i, size, cap, `validation example #${i}: click for Grad-CAM`);
      }),
      ...(ids.length > this.maxThumbs ? [el("div", { class: "viz-note", text: `+${ids.length - this.maxThumbs} more` })] : []),
    );
  }

  private drawGallery(p: Palette): void {
    const m = this.misclassified;
    this.galleryCard.hidden = m === null;
    if (m === null) return;
    this.gallerySub.textContent = `${m.examples.length} shown · step ${m.step.toLocaleString()} · true → predicted (confidence)${this.imagesOk ? " · click for Grad-CAM" : ""}`;
    const size = cssNumber(this.root, "--viz-thumb", 4.5 * p.fontPx);
    if (m.examples.length === 0) {
      this.gallery.replaceChildren(el("div", { class: "viz-note", text: "No misclassified examples: every validation example is right." }));
      return;
    }
    this.gallery.replaceChildren(
      ...m.examples.map((ex) =>
        this.thumb(ex.index, size, [el("span", { text: this.cls(ex.true) }), el("span", { class: "viz-arrow", text: " → " }), el("b", { class: "viz-bad", text: this.cls(ex.predicted) }), el("span", { class: "viz-note", text: ` ${fmtPct(ex.confidence, 0)}` })], `#${ex.index}: true ${this.cls(ex.true)}, predicted ${this.cls(ex.predicted)} with ${fmtPct(ex.confidence)}`),
      ),
    );
  }

  // ------------------------------------------------------------ hit testing

  private cellAt(e: MouseEvent): [number, number] | null {
    const L = this.layout;
    if (L === null) return null;
    const r = this.matrixCanvas.getBoundingClientRect();
    const q = Math.floor((e.clientX - r.left - L.x0) / L.cell);
    const t = Math.floor((e.clientY - r.top - L.y0) / L.cell);
    return q >= 0 && t >= 0 && q < L.n && t < L.n ? [t, q] : null;
  }

  private onHover(e: MouseEvent): void {
    const c = this.cellAt(e);
    const cm = this.confusion;
    const changed = JSON.stringify(c) !== JSON.stringify(this.hoverCell);
    this.hoverCell = c;
    if (changed) this.redraw.request();
    if (c === null || cm === null) {
      this.matrixTip.hide();
      this.matrixCanvas.style.cursor = "default";
      return;
    }
    const [t, q] = c;
    const v = cm.matrix[t]?.[q] ?? 0;
    const row = cm.matrix[t]?.reduce((a, b) => a + b, 0) ?? 0;
    this.matrixCanvas.style.cursor = v > 0 ? "pointer" : "default";
    const hr = this.matrixTip.el.parentElement!.getBoundingClientRect();
    this.matrixTip.show(e.clientX - hr.left, e.clientY - hr.top, t === q ? `${this.cls(t)} correct` : `${this.cls(t)} → ${this.cls(q)}`, [
      ["examples", String(v)],
      [`share of true ${this.cls(t)}`, fmtPct(row > 0 ? v / row : 0)],
    ]);
  }
}
