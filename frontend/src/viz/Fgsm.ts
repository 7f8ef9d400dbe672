/**
 * Fooling the network (lesson 20): the fast gradient sign method on one validation image, and
 * validation accuracy as the attack budget ε grows.
 *
 * One example (`probe fgsm {index, class, epsilon}`): the original, the perturbation (amplified:
 * grey is unchanged, white +ε, black −ε) and the adversarial image side by side, then the
 * network's prediction on each with its confidence and top classes, and whether it was fooled.
 * The ε slider re-attacks the shown example when released; the class picker makes the attack
 * targeted (push towards that class) or untargeted (away from the true class).
 *
 * Batch mode (`probe fgsm_sweep {epsilon: the largest}`): accuracy on the first validation
 * examples at evenly spaced ε from 0 (the clean accuracy), drawn as a curve with the slider's
 * ε marked.
 */

import "./lessonViews.css";
import type { ClassPrediction, FgsmMsg, FgsmSweepMsg, ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, cssNumber, el, emptyState, fitCanvas, fmt, fmtPct, onWidthChange, select, setOptions, widthOf } from "./dom";
import { ExamplePicker } from "./ExamplePicker";
import { decodeAll, pixelCanvas, type Decoded } from "./image";
import { showWhenAsked } from "./OptimizerRace";
import { linScale } from "./plot";
import { font, readPalette, type Palette } from "./theme";

export interface FgsmOptions {
  /** the ε the slider starts at (default 0.1: invisible on a digit, enough to fool an undefended LeNet-5) */
  epsilon?: number;
}

const EPSILON_MAX = 0.3; // the slider's end and the sweep's largest ε (the server's default sweep)
const EPSILON_STEP = 0.01;
const TOP_CLASSES = 5; // probability bars per prediction

interface Attack {
  msg: FgsmMsg;
  imgs: (Decoded | null)[];
}

export class Fgsm {
  private readonly redraw: Redraw;
  private summary: SummaryMsg | null = null;
  private attack: Attack | null = null;
  private sweep: FgsmSweepMsg | null = null;
  private pending: "fgsm" | "fgsm_sweep" | null = null;
  private epsilon: number;

  private readonly picker: ExamplePicker;
  private readonly targetSel: HTMLSelectElement;
  private readonly epsInput: HTMLInputElement;
  private readonly epsValue = el("span", { class: "viz-num lv-eps-value" });
  private readonly status = el("span", { class: "viz-note" });
  private readonly empty: HTMLElement;
  private readonly attackCard = el("section", { class: "viz-card lv-fgsm" });
  private readonly sweepCard = el("section", { class: "viz-card lv-sweep" });
  private readonly sweepCanvas = el("canvas", { class: "lv-sweep-chart" });
  private readonly sweepSub = el("span", { class: "viz-card-sub" });

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: FgsmOptions = {}) {
    this.epsilon = opts.epsilon ?? 0.1;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.picker = new ExamplePicker("example #", () => this.attackNow(), "Attack");
    this.targetSel = select([["", "untargeted"]], "", () => this.attackIfShown(), "untargeted: move away from the true class; a class: push the prediction towards it");
    this.epsInput = el("input", { class: "viz-range", attrs: { type: "range", min: "0", max: String(EPSILON_MAX), step: String(EPSILON_STEP), name: "fgsm_epsilon" }, title: "ε: the most any pixel (in [0, 1]) may move" });
    this.epsInput.value = String(this.epsilon);
    this.epsInput.addEventListener("input", () => {
      this.epsilon = parseFloat(this.epsInput.value);
      this.redraw.request();
    });
    // released: attack the shown example again at the new ε
    this.epsInput.addEventListener("change", () => this.attackIfShown());
    const toolbar = el("div", { class: "viz-toolbar" }, [
      el("h3", { class: "lv-section-title", text: "Fooling the network" }),
      this.picker.el,
      el("label", { class: "viz-control" }, ["class", this.targetSel]),
      el("label", { class: "viz-control" }, ["ε", this.epsInput, this.epsValue]),
      button("Accuracy vs ε", () => this.sweepNow(), { title: `attack the first validation examples at ε from 0 to ${EPSILON_MAX} (batch mode)`, attrs: { "data-action": "sweep" } }),
      this.status,
    ]);
    this.sweepCard.append(
      el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "Accuracy under attack" }), this.sweepSub]),
      this.sweepCanvas,
    );
    this.empty = emptyState(
      "Fool the network",
      "Pick a validation example and press Attack: every pixel moves by at most ε in the direction that raises the loss (FGSM). The change is invisible to us; the prediction flips.",
    );
    root.classList.add("viz-view", "lv-fgsm-view");
    root.replaceChildren(toolbar, this.empty, el("div", { class: "lv-fgsm-row" }, [this.attackCard, this.sweepCard]));
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => this.redraw.request());
    this.refreshClasses();
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case "summary":
        this.summary = msg;
        this.picker.setMax(msg.dataset.n_val);
        this.refreshClasses();
        this.redraw.request();
        break;
      case "fgsm":
        if (this.pending === "fgsm") this.pending = null;
        // a lesson step may have asked: the controls show what was attacked, so the slider re-attacks the same
        this.picker.set(msg.index);
        this.targetSel.value = msg.target !== null ? String(msg.target) : "";
        if (msg.epsilon <= EPSILON_MAX) {
          this.epsilon = msg.epsilon;
          this.epsInput.value = String(msg.epsilon);
        }
        void decodeAll([msg.original, msg.perturbation, msg.adversarial]).then((imgs) => {
          this.attack = { msg, imgs };
          this.redraw.request();
          showWhenAsked(this.root);
        });
        break;
      case "fgsm_sweep":
        if (this.pending === "fgsm_sweep") this.pending = null;
        this.sweep = msg;
        this.redraw.request();
        showWhenAsked(this.root);
        break;
      case "error":
        if (this.pending !== null && (msg.code === "bad_arguments" || msg.code === "command_failed")) {
          this.pending = null;
          this.status.textContent = msg.message;
        }
        break;
      default:
    }
  }

  reset(): void {
    this.summary = null;
    this.attack = null;
    this.sweep = null;
    this.pending = null;
    this.status.textContent = "";
    this.refreshClasses();
    this.redraw.request();
  }

  resize(): void {
    this.redraw.request();
  }

  private refreshClasses(): void {
    const classes = this.summary?.dataset.classes ?? this.ctx.classes();
    setOptions(this.targetSel, [["", "untargeted"], ...classes.map((c, i): [string, string] => [String(i), `towards ${i}: ${c}`])], this.targetSel.value);
  }

  private cls(i: number): string {
    const classes = this.summary?.dataset.classes ?? this.ctx.classes();
    return classes[i] ?? String(i);
  }

  /** The shown run, or null with the reason in the status line. */
  private run(): string | null {
    const run = this.ctx.runId();
    if (run === null) this.status.textContent = "train a network first (the Fooling LeNet-5 preset), then attack it";
    else if (this.summary !== null && this.summary.dataset.kind !== "image") {
      this.status.textContent = `FGSM attacks images; this run's data (${this.summary.dataset.name}) is not an image set`;
      return null;
    }
    return run;
  }

  private attackIfShown(): void {
    if (this.attack !== null) this.attackNow();
  }

  attackNow(): void {
    const run = this.run();
    if (run === null) return;
    const cmd: { cmd: "probe"; run_id: string; probe: "fgsm"; index: number; epsilon: number; class?: number } = {
      cmd: "probe", run_id: run, probe: "fgsm", index: this.picker.index(), epsilon: this.epsilon,
    };
    if (this.targetSel.value !== "") cmd.class = parseInt(this.targetSel.value, 10);
    this.pending = "fgsm";
    this.status.textContent = "";
    this.ctx.send(cmd);
    this.redraw.request();
  }

  sweepNow(): void {
    const run = this.run();
    if (run === null) return;
    this.pending = "fgsm_sweep";
    this.status.textContent = "";
    this.ctx.send({ cmd: "probe", run_id: run, probe: "fgsm_sweep", epsilon: EPSILON_MAX });
    this.redraw.request();
  }

  private draw(): void {
    this.epsValue.textContent = this.epsilon.toFixed(2);
    if (this.pending !== null) this.status.textContent = this.pending === "fgsm" ? "attacking…" : "attacking the validation set at every ε…";
    else if (this.status.textContent === "attacking…" || this.status.textContent?.startsWith("attacking the")) this.status.textContent = "";
    this.empty.hidden = this.attack !== null || this.sweep !== null;
    this.attackCard.hidden = this.attack === null;
    this.sweepCard.hidden = this.sweep === null;
    const p = readPalette(this.root, this.ctx.theme());
    if (this.attack !== null) this.drawAttack(this.attack, p);
    if (this.sweep !== null) this.drawSweep(this.sweep, p);
  }

  private drawAttack(a: Attack, p: Palette): void {
    const m = a.msg;
    const tile = cssNumber(this.root, "--viz-tile", 9 * p.fontPx);
    const fig = (img: Decoded | null, caption: string, role: string): HTMLElement => {
      if (img === null) return el("div", { class: "viz-note", text: "image missing" });
      return el("figure", { class: "viz-tile", attrs: { "data-image": role } }, [pixelCanvas(img.canvas, tile, (tile * img.h) / img.w), el("figcaption", { text: caption })]);
    };
    const amp = m.epsilon > 0 ? 0.5 / m.epsilon : 1;
    const fooled = m.fooled;
    const verdict = m.target === null
      ? fooled
        ? `fooled: ${this.cls(m.label)} → ${this.cls(m.adversarial_prediction.predicted)}`
        : "not fooled: still the true class"
      : fooled
        ? `fooled into ${this.cls(m.target)}`
        : `not pushed to ${this.cls(m.target)}`;
    const sub = [
      `#${m.index} · true class `, el("b", { text: this.cls(m.label) }),
      m.target !== null ? ` · target ${this.cls(m.target)}` : " · untargeted",
      ` · ε = ${fmt(m.epsilon, 3)} · weights of step ${m.step.toLocaleString()}`,
    ];
    this.attackCard.dataset.fooled = String(fooled);
    this.attackCard.replaceChildren(
      el("header", { class: "viz-card-head" }, [
        el("h4", { class: "viz-card-title", text: "Fast gradient sign attack" }),
        el("span", { class: "viz-card-sub" }, sub),
        el("span", { class: `lv-verdict ${fooled ? "viz-bad" : "viz-good"}`, text: verdict, attrs: { "data-verdict": fooled ? "fooled" : "held" } }),
      ]),
      el("div", { class: "lv-fgsm-row" }, [
        el("div", { class: "lv-fgsm-figs" }, [
          fig(a.imgs[0] ?? null, "original", "original"),
          el("span", { class: "lv-fgsm-op", text: "+" }),
          fig(a.imgs[1] ?? null, `perturbation ×${fmt(amp, 2)} (grey: 0)`, "perturbation"),
          el("span", { class: "lv-fgsm-op", text: "=" }),
          fig(a.imgs[2] ?? null, "adversarial", "adversarial"),
        ]),
        el("div", { class: "lv-fgsm-preds" }, [
          this.prediction("on the original", m.original_prediction, m.label, m.target, p, "original"),
          this.prediction("on the adversarial", m.adversarial_prediction, m.label, m.target, p, "adversarial"),
        ]),
      ]),
    );
  }

  /** The predicted class, its confidence and the top classes' probability bars. */
  private prediction(title: string, pred: ClassPrediction, label: number, target: number | null, p: Palette, role: string): HTMLElement {
    const right = pred.predicted === label;
    const top = pred.probs.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0]).slice(0, TOP_CLASSES);
    const bars = top.map(([v, i]) => {
      const color = i === pred.predicted ? (right ? p.good : p.bad) : i === target ? p.val : p.muted;
      return el("div", { class: "lv-bar-row", attrs: { "data-class": String(i) } }, [
        el("span", { class: "lv-bar-label", text: this.cls(i) }),
        el("span", { class: "lv-bar-track" }, [el("span", { class: "lv-bar-fill", style: { width: `${(100 * Math.max(0, Math.min(1, v))).toFixed(1)}%`, background: color } })]),
        el("span", { class: "lv-bar-value", text: fmtPct(v, 1) }),
      ]);
    });
    return el("div", { class: "lv-pred", attrs: { "data-prediction": role, "data-predicted": String(pred.predicted) } }, [
      el("span", { class: "lv-pred-head", text: title }),
      el("span", { class: `lv-pred-class ${right ? "viz-good" : "viz-bad"}` }, [
        el("span", { class: "lv-pred-name", text: this.cls(pred.predicted) }),
        el("span", { class: "viz-card-sub", text: " · " }),
        el("span", { class: "lv-pred-conf", text: fmtPct(pred.confidence, 1) }),
      ]),
      el("div", { class: "lv-bars" }, bars),
    ]);
  }

  /** Accuracy (0..100 %) against ε, one point per ε of the sweep, the slider's ε marked. */
  private drawSweep(s: FgsmSweepMsg, p: Palette): void {
    this.sweepSub.textContent = `${s.n.toLocaleString()} validation examples · weights of step ${s.step.toLocaleString()}`;
    this.sweepCard.dataset.points = String(s.epsilons.length);
    const w = Math.max(220, widthOf(this.sweepCard) - 2 * p.fontPx);
    const h = Math.round(cssNumber(this.root, "--viz-chart-h", 15 * p.fontPx) * 0.9);
    const g = fitCanvas(this.sweepCanvas, w, h);
    const pad = { l: Math.round(p.fontPx * 3), r: 12, t: 10, b: Math.round(p.fontPx * 2.6) };
    const top = Math.max(EPSILON_MAX, ...s.epsilons);
    const xs = linScale(0, top, pad.l, w - pad.r, 6);
    const ys = linScale(0, 1, h - pad.b, pad.t, 4);
    g.font = font(p, 0.75);
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const t of ys.ticks()) {
      const y = Math.round(ys.px(t)) + 0.5;
      g.strokeStyle = p.grid;
      g.beginPath();
      g.moveTo(pad.l, y);
      g.lineTo(w - pad.r, y);
      g.stroke();
      g.fillStyle = p.muted;
      g.fillText(fmtPct(t, 0), pad.l - 5, y);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const t of xs.ticks()) g.fillText(fmt(t, 2), xs.px(t), h - pad.b + 4);
    g.fillText("ε (the most any pixel moves)", (pad.l + w - pad.r) / 2, h - pad.b + 4 + p.fontPx);
    // the slider's ε
    g.fillStyle = p.accent;
    g.fillRect(Math.round(xs.px(this.epsilon)), pad.t, 1.5, h - pad.t - pad.b);
    g.strokeStyle = p.bad;
    g.lineWidth = 2;
    g.beginPath();
    s.epsilons.forEach((e, i) => {
      const x = xs.px(e);
      const y = ys.px(s.accuracy[i] ?? 0);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
    g.font = font(p, 0.72, 600);
    g.textBaseline = "bottom";
    s.epsilons.forEach((e, i) => {
      const acc = s.accuracy[i] ?? 0;
      const x = xs.px(e);
      const y = ys.px(acc);
      g.fillStyle = p.bad;
      g.beginPath();
      g.arc(x, y, 3.5, 0, 2 * Math.PI);
      g.fill();
      g.fillStyle = p.fg;
      g.textAlign = i === 0 ? "left" : i === s.epsilons.length - 1 ? "right" : "center";
      g.fillText(fmtPct(acc, 0), x + (i === 0 ? 5 : 0), y - 5);
    });
  }
}
