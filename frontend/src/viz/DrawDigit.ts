/**
 * Draw a digit with the mouse or a finger and see what the network predicts.
 *
 * The drawing is preprocessed the way the data set was made before it is sent:
 * - 28×28 (MNIST-like): the ink's bounding box is scaled to fit 20×20 (aspect kept)
 *   and placed so its centre of mass is at the centre of the 28×28 field;
 * - small inputs (8×8 `digits`): the bounding box is scaled to fill the field.
 * The result is sent as `{cmd: "predict", run_id, input}` with `input` the H×W grey
 * values in [0, 1], flattened row-major (1 = ink). The `prediction` reply is shown
 * as a bar chart with class labels. While drawing, predictions are requested at
 * most every 150 ms (the server answers in milliseconds).
 */

import type { PredictionMsg, ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, cssNumber, el, emptyState, fitCanvas, fmtPct, toggle } from "./dom";
import { blankCanvas, ctx2d, pixelCanvas } from "./image";
import { clipText } from "./plot";
import { font, readPalette } from "./theme";

export interface DrawDigitOptions {
  /** predict while drawing, not only when the stroke ends (default true) */
  live?: boolean;
}

/** Resolution of the drawing canvas (the display size comes from CSS). */
const PAD = 280;

export class DrawDigit {
  private readonly redraw: Redraw;
  private summary: SummaryMsg | null = null;
  private prediction: PredictionMsg | null = null;
  private live: boolean;
  private drawing = false;
  private last: [number, number] | null = null;
  private inked = false;
  private lastSent = 0;
  private timer: number | null = null;
  private side = 28;
  private input: Float32Array | null = null;

  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly pad = el("canvas", { class: "viz-draw-pad", attrs: { width: String(PAD), height: String(PAD) } });
  private readonly g: CanvasRenderingContext2D;
  private readonly preview = el("div", { class: "viz-draw-preview" });
  private readonly bars = el("canvas", { class: "viz-canvas" });
  private readonly verdict = el("div", { class: "viz-draw-verdict" });
  private readonly hint = el("div", { class: "viz-note" });

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: DrawDigitOptions = {}) {
    this.live = opts.live ?? true;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.g = ctx2d(this.pad, true); // read back on every prediction
    this.clear();
    const liveToggle = toggle("predict while drawing", this.live, (on) => (this.live = on));
    this.body = el("div", { class: "viz-draw" }, [
      el("div", { class: "viz-draw-left" }, [
        this.pad,
        el("div", { class: "viz-toolbar" }, [button("Clear", () => this.clear()), liveToggle.label]),
      ]),
      el("div", { class: "viz-draw-mid" }, [el("div", { class: "viz-card-title", text: "what the network sees" }), this.preview, this.hint]),
      el("div", { class: "viz-draw-right" }, [el("div", { class: "viz-card-title", text: "prediction" }), this.verdict, this.bars]),
    ]);
    this.empty = emptyState("Train a digit classifier to draw for it", "Works with image data sets of one channel (MNIST, digits); start a run first.");
    root.classList.add("viz-view", "viz-drawdigit");
    root.replaceChildren(this.empty, this.body);

    this.pad.addEventListener("pointerdown", (e) => {
      this.pad.setPointerCapture(e.pointerId);
      this.drawing = true;
      this.last = this.pos(e);
      this.stroke(this.last, this.last);
      e.preventDefault();
    });
    this.pad.addEventListener("pointermove", (e) => {
      if (!this.drawing) return;
      const pnt = this.pos(e);
      this.stroke(this.last ?? pnt, pnt);
      this.last = pnt;
      if (this.live) this.schedule();
    });
    const end = (): void => {
      if (!this.drawing) return;
      this.drawing = false;
      this.last = null;
      this.send();
    };
    this.pad.addEventListener("pointerup", end);
    this.pad.addEventListener("pointercancel", end);
    this.pad.style.touchAction = "none";
    ctx.onThemeChange(() => this.redraw.request());
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "summary") {
      this.summary = msg;
      const shape = msg.dataset.input_shape;
      this.side = shape.length >= 2 ? shape[shape.length - 1]! : Math.round(Math.sqrt(shape[0] ?? 784));
      this.redraw.request();
    } else if (msg.type === "prediction") {
      this.prediction = msg;
      this.redraw.request();
    }
  }

  reset(): void {
    this.summary = null;
    this.prediction = null;
    this.clear();
  }

  resize(): void {
    this.redraw.request();
  }

  /** Whether the current data set is one the pad can draw for: greyscale images. */
  private usable(): boolean {
    const s = this.summary;
    if (s === null) return false;
    const shape = s.dataset.input_shape;
    if (s.dataset.kind === "image") return shape.length === 3 ? shape[0] === 1 : true;
    // a flattened square image (e.g. 64 = 8×8 digits given as tabular)
    const n = shape.length === 1 ? shape[0]! : 0;
    return n >= 16 && Number.isInteger(Math.sqrt(n));
  }

  private pos(e: PointerEvent): [number, number] {
    const r = this.pad.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * PAD, ((e.clientY - r.top) / r.height) * PAD];
  }

  private stroke(a: [number, number], b: [number, number]): void {
    const g = this.g;
    g.strokeStyle = "#fff";
    g.lineCap = "round";
    g.lineJoin = "round";
    // MNIST strokes are ~2.5 px of 28; the 8×8 digits are blurrier and bolder
    g.lineWidth = PAD * (this.side <= 12 ? 0.11 : 0.085);
    g.beginPath();
    g.moveTo(a[0], a[1]);
    g.lineTo(b[0], b[1]);
    g.stroke();
    this.inked = true;
  }

  private clear(): void {
    this.g.fillStyle = "#000";
    this.g.fillRect(0, 0, PAD, PAD);
    this.inked = false;
    this.input = null;
    this.prediction = null;
    this.redraw.request();
  }

  private schedule(): void {
    const wait = 150 - (performance.now() - this.lastSent);
    if (wait <= 0) this.send();
    else if (this.timer === null) {
      this.timer = window.setTimeout(() => {
        this.timer = null;
        this.send();
      }, wait);
    }
  }

  private send(): void {
    if (!this.inked) return;
    this.input = this.downsample();
    this.lastSent = performance.now();
    this.redraw.request();
    const run = this.ctx.runId();
    if (run === null || !this.usable()) return;
    this.ctx.send({ cmd: "predict", run_id: run, input: Array.from(this.input, (v) => Math.round(v * 1000) / 1000) });
  }

  /** The drawing as side×side grey values in [0, 1], preprocessed like the data set (see the file comment). */
  private downsample(): Float32Array {
    const S = this.side;
    const data = this.g.getImageData(0, 0, PAD, PAD).data;
    const ink = new Float32Array(PAD * PAD);
    let x0 = PAD;
    let y0 = PAD;
    let x1 = -1;
    let y1 = -1;
    for (let i = 0; i < ink.length; i++) {
      const v = data[4 * i]! / 255;
      ink[i] = v;
      if (v > 0.05) {
        const x = i % PAD;
        const y = (i / PAD) | 0;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    const out = new Float32Array(S * S);
    if (x1 < 0) return out;
    const bw = x1 - x0 + 1;
    const bh = y1 - y0 + 1;
    const mnist = S >= 16;
    const box = mnist ? (S * 20) / 28 : S; // MNIST: digits fit a 20×20 box in 28×28
    const scale = box / Math.max(bw, bh); // output pixels per pad pixel
    const w = bw * scale;
    const h = bh * scale;
    // place the box centred, then (MNIST) shift so the centre of mass is central
    let ox = (S - w) / 2;
    let oy = (S - h) / 2;
    const sample = (offX: number, offY: number): Float32Array => {
      const o = new Float32Array(S * S);
      const k = 4; // supersampling per output pixel and axis
      for (let y = 0; y < S; y++) {
        for (let x = 0; x < S; x++) {
          let acc = 0;
          for (let sy = 0; sy < k; sy++) {
            for (let sx = 0; sx < k; sx++) {
              const px = x0 + (x + (sx + 0.5) / k - offX) / scale;
              const py = y0 + (y + (sy + 0.5) / k - offY) / scale;
              if (px >= x0 && py >= y0 && px <= x1 + 1 && py <= y1 + 1) {
                // box filter: average the pad pixels this sample covers
                const r = Math.max(0, Math.floor(0.5 / scale / k));
                let s = 0;
                let n = 0;
                for (let dy = -r; dy <= r; dy++) {
                  for (let dx = -r; dx <= r; dx++) {
                    const qx = Math.min(PAD - 1, Math.max(0, Math.floor(px) + dx));
                    const qy = Math.min(PAD - 1, Math.max(0, Math.floor(py) + dy));
                    s += ink[qy * PAD + qx]!;
                    n++;
                  }
                }
                acc += s / n;
              }
            }
          }
          o[y * S + x] = acc / (k * k);
        }
      }
      return o;
    };
    let img = sample(ox, oy);
    if (mnist) {
      let m = 0;
      let cx = 0;
      let cy = 0;
      for (let i = 0; i < img.length; i++) {
        m += img[i]!;
        cx += (i % S) * img[i]!;
        cy += ((i / S) | 0) * img[i]!;
      }
      if (m > 0) {
        ox += (S - 1) / 2 - cx / m;
        oy += (S - 1) / 2 - cy / m;
        img = sample(ox, oy);
      }
    }
    out.set(img);
    let max = 0;
    for (const v of out) max = Math.max(max, v);
    if (max > 0) for (let i = 0; i < out.length; i++) out[i] = Math.min(1, out[i]! / max);
    return out;
  }

  private draw(): void {
    const ok = this.usable();
    this.empty.hidden = ok;
    this.body.hidden = !ok;
    if (!ok) return;
    const p = readPalette(this.root, this.ctx.theme());
    const S = this.side;
    this.hint.textContent = `${S}×${S}${S >= 16 ? ", centred by mass as in MNIST" : ""}`;
    const size = cssNumber(this.root, "--viz-draw-preview", 7 * p.fontPx);
    const prev = blankCanvas(S, S);
    const pg = ctx2d(prev);
    const im = pg.createImageData(S, S);
    const src = this.input;
    for (let i = 0; i < S * S; i++) {
      const v = src !== null ? Math.round(src[i]! * 255) : 0;
      im.data[4 * i] = im.data[4 * i + 1] = im.data[4 * i + 2] = v;
      im.data[4 * i + 3] = 255;
    }
    pg.putImageData(im, 0, 0);
    this.preview.replaceChildren(pixelCanvas(prev, size, size));

    const pr = this.prediction;
    const classes = pr?.classes ?? this.summary?.dataset.classes ?? this.ctx.classes();
    const probs = pr?.probs ?? classes.map(() => 0);
    if (pr !== null) {
      this.verdict.replaceChildren(el("span", { class: "viz-draw-big", text: classes[pr.predicted] ?? String(pr.predicted) }), el("span", { class: "viz-note", text: ` ${fmtPct(pr.probs[pr.predicted])}` }));
    } else {
      this.verdict.replaceChildren(el("span", { class: "viz-note", text: this.inked ? "…" : "draw a digit on the black pad" }));
    }
    const w = Math.max(160, Math.min(this.bars.parentElement?.clientWidth ?? 260, 22 * p.fontPx));
    const rowH = Math.round(Math.max(p.fontPx * 1.1, Math.min(p.fontPx * 1.7, (p.fontPx * 18) / Math.max(1, classes.length))));
    const g = fitCanvas(this.bars, w, rowH * classes.length + 4);
    g.font = font(p, 0.82);
    const labelW = Math.min(p.fontPx * 6, Math.max(...classes.map((c) => g.measureText(c).width), 10)) + 10;
    const valueW = p.fontPx * 3;
    const bw = w - labelW - valueW;
    classes.forEach((c, i) => {
      const y = 2 + i * rowH;
      const v = probs[i] ?? 0;
      const win = pr !== null && i === pr.predicted;
      g.fillStyle = win ? p.fg : p.muted;
      g.font = font(p, 0.82, win ? 700 : 400);
      g.textAlign = "right";
      g.textBaseline = "middle";
      g.fillText(clipText(g, c, labelW - 10), labelW - 8, y + rowH / 2);
      g.fillStyle = p.grid;
      g.fillRect(labelW, y + rowH * 0.2, bw, rowH * 0.6);
      g.fillStyle = win ? p.train : p.muted;
      g.fillRect(labelW, y + rowH * 0.2, Math.max(v > 0 ? 1 : 0, bw * v), rowH * 0.6);
      g.fillStyle = win ? p.fg : p.muted;
      g.textAlign = "left";
      g.font = font(p, 0.72);
      g.fillText(pr !== null ? fmtPct(v, 0) : "", labelW + bw + 5, y + rowH / 2);
    });
  }
}
