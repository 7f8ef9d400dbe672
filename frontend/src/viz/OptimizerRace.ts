/**
 * The optimizer race (lesson 9): SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and L-BFGS
 * from one start on a 2D test function, their paths drawn over its contours step by step.
 *
 * The race is an on-demand view (`probe optimizer_race {function, steps, lr}`; any run can
 * host it, the server does not read the run's model). Its reply `optimizer_race` carries the
 * surface (a log-scaled grey image of f over `extent`, row 0 at the top) and every racer's
 * points and losses. The page animates the paths: all racers advance one step together, the
 * whole race lasting about PLAY_SECONDS whatever its length, with a scrubber to go back and
 * a replay button. The legend gives each racer's colour, learning rate, its loss at the shown
 * step and the step it came within REACHED_TOLERANCE of the minimum; a small chart beside
 * the plot draws every loss against steps.
 *
 * The paths are SVG polylines (`data-optimizer` = the racer), one per racer, over a canvas
 * that holds the surface and its contour lines, so each path stays crisp at any size.
 */

import "./lessonViews.css";
import type { OptimizerRaceMsg, RacerPath, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { contourSegments } from "./contour";
import { lutFromStops } from "./colormap";
import { Redraw, button, cssNumber, el, emptyState, fitCanvas, fmt, onWidthChange, select, widthOf } from "./dom";
import { colorizeGrey, decodeImage, greyValues, type Decoded } from "./image";
import { finiteExtent, linScale, logScale, positiveExtent, type Scale } from "./plot";
import { font, readPalette, seriesColor, withAlpha, type Palette } from "./theme";

/** The racers in the server's order (server/lessons/optim_race.py OPTIMIZERS); fixes each one's colour. */
const RACERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "lbfgs"] as const;
const RACER_NAMES: Record<string, string> = {
  sgd: "SGD", momentum: "Momentum", nesterov: "Nesterov", adagrad: "AdaGrad", rmsprop: "RMSProp", adam: "Adam", lbfgs: "L-BFGS",
};
const FUNCTIONS: [string, string][] = [
  ["valley", "long narrow valley"],
  ["rosenbrock", "Rosenbrock's banana"],
  ["saddle", "saddle point"],
];
const PLAY_SECONDS = 6; // a whole race plays in this long, 100 steps or 1,000
const REACHED_TOLERANCE = 1e-3; // a racer "arrived" when its loss is this close to the minimum's
const MAX_STEPS = 1000; // the server's limit per race (optim_race.MAX_STEPS)
const LOG_FLOOR = 1e-12; // f − f* below this is drawn at it (L-BFGS lands within 1e-10)
const CONTOUR_LEVELS = 14; // iso-lines of the log-scaled surface, evenly spaced in (0, 1)
/** A path point this many plot-sizes outside the region is clamped there: SVG coordinates stay sane. */
const CLAMP_FACTOR = 20;

export interface OptimizerRaceOptions {
  /** the surface asked for first (default "valley") */
  function?: string;
}

interface Shown {
  msg: OptimizerRaceMsg;
  surface: Decoded;
  /** the surface's grey levels (0..1), row-major, for the contour lines */
  heights: Float32Array;
  /** the lowest value reached by any racer: the loss axis' floor */
  floor: number;
  /** f at the minima (the message's min_value; else the lowest value reached): "arrived" is within tolerance of it */
  target: number;
}

export function racerName(kind: string): string {
  return RACER_NAMES[kind] ?? kind;
}

export function racerColor(kind: string, p: Palette): string {
  const i = RACERS.indexOf(kind as (typeof RACERS)[number]);
  return seriesColor(i >= 0 ? i : RACERS.length, p);
}

export class OptimizerRace {
  private readonly redraw: Redraw;
  private shown: Shown | null = null;
  /** the step drawn (fractional while playing: the paths advance smoothly) */
  private step = 0;
  private playing = false;
  private playStart = 0;
  private playFrom = 0;
  private pending = false;
  private readonly hidden = new Set<string>();
  /** the surface drawn into the plot's size, cached per race / size / theme */
  private background: { key: string; canvas: HTMLCanvasElement } | null = null;

  private readonly functionSel: HTMLSelectElement;
  private readonly stepsInput: HTMLInputElement;
  private readonly lrInput: HTMLInputElement;
  private readonly status = el("span", { class: "viz-note" });
  private readonly playBtn: HTMLButtonElement;
  private readonly scrubber: HTMLInputElement;
  private readonly stepLabel = el("span", { class: "viz-num lv-step-label" });
  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly title = el("h4", { class: "viz-card-title" });
  private readonly formula = el("span", { class: "viz-card-sub" });
  private readonly plotBox = el("div", { class: "lv-race-plot" });
  private readonly canvas = el("canvas", { class: "lv-race-surface" });
  private readonly svg: SVGSVGElement;
  private readonly legend = el("table", { class: "viz-table lv-race-legend" });
  private readonly lossHead = el("th", { class: "num" });
  private readonly legendRows = new Map<string, { loss: HTMLElement; note: HTMLElement }>();
  private legendKey = "";
  /** races received: a new race rebuilds the legend even when its function and length are the same */
  private raceCount = 0;
  private readonly lossCanvas = el("canvas", { class: "lv-race-losses" });
  private readonly lossCaption = el("figcaption", { class: "viz-card-sub" });

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: OptimizerRaceOptions = {}) {
    this.redraw = new Redraw(ctx, () => this.draw());
    this.functionSel = select(FUNCTIONS, opts.function ?? "valley", () => undefined, "the 2D test function to race on");
    this.stepsInput = el("input", { class: "viz-input lv-num-input", attrs: { type: "number", min: "1", max: String(MAX_STEPS), step: "1", placeholder: "auto", name: "race_steps" }, title: `steps per optimizer, 1 to ${MAX_STEPS}; empty: the function's own (100, 500 or 150)` });
    this.lrInput = el("input", { class: "viz-input lv-num-input", attrs: { type: "number", min: "0", step: "any", placeholder: "each its own", name: "race_lr" }, title: "one learning rate for every optimizer; empty: each optimizer's own, tuned for the function" });
    for (const input of [this.stepsInput, this.lrInput]) input.addEventListener("keydown", (e) => e.key === "Enter" && this.run());
    this.playBtn = button("❚❚", () => this.togglePlay(), { title: "pause / play the race", attrs: { "data-action": "play" } });
    this.scrubber = el("input", { class: "viz-range lv-scrubber", attrs: { type: "range", min: "0", max: "1", step: "1", value: "0" }, title: "the step shown" });
    this.scrubber.addEventListener("input", () => {
      this.playing = false;
      this.step = parseInt(this.scrubber.value, 10) || 0;
      this.redraw.request();
    });
    this.svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.svg.classList.add("lv-race-paths");
    this.plotBox.append(this.canvas, this.svg);
    const controls = el("div", { class: "viz-toolbar" }, [
      el("h3", { class: "lv-section-title", text: "Optimizer race" }),
      el("label", { class: "viz-control" }, ["function", this.functionSel]),
      el("label", { class: "viz-control" }, ["steps", this.stepsInput]),
      el("label", { class: "viz-control" }, ["lr", this.lrInput]),
      button("Run the race", () => this.run(), { class: "primary", title: "every optimizer from the same start (probe optimizer_race)", attrs: { "data-action": "race" } }),
      this.status,
    ]);
    const player = el("div", { class: "viz-toolbar lv-player" }, [
      this.playBtn,
      button("↺ Replay", () => this.replay(), { title: "play the race again from the start", attrs: { "data-action": "replay" } }),
      this.scrubber,
      this.stepLabel,
    ]);
    const side = el("div", { class: "lv-race-side" }, [
      this.legend,
      el("figure", { class: "lv-race-loss-fig" }, [this.lossCanvas, this.lossCaption]),
    ]);
    this.body = el("section", { class: "viz-card lv-race" }, [
      el("header", { class: "viz-card-head" }, [this.title, this.formula]),
      player,
      el("div", { class: "lv-race-body" }, [this.plotBox, side]),
    ]);
    this.empty = emptyState(
      "Race the optimizers on a 2D surface",
      "Pick a function and press Run the race: SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and L-BFGS start from the same point, and their paths are drawn step by step over the contours.",
    );
    root.classList.add("viz-view", "lv-optimizer-race");
    root.replaceChildren(controls, this.empty, this.body);
    onWidthChange(root, () => this.redraw.request());
    ctx.onThemeChange(() => {
      this.background = null;
      this.redraw.request();
    });
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "optimizer_race") {
      this.pending = false;
      void this.take(msg);
    } else if (msg.type === "error" && this.pending && (msg.code === "bad_arguments" || msg.code === "command_failed")) {
      this.pending = false;
      this.status.textContent = msg.message;
    }
  }

  /** A new run: the race belongs to no run (the surface does not depend on it), so it stays. */
  reset(): void {
    this.pending = false;
    this.redraw.request();
  }

  resize(): void {
    this.redraw.request();
  }

  /** Ask the server for a race with the toolbar's settings; bad settings are explained and nothing is sent. */
  run(): void {
    const run = this.ctx.runId();
    if (run === null) {
      this.status.textContent = "press Train first: the race runs beside any run";
      return;
    }
    const cmd: { cmd: "probe"; run_id: string; probe: "optimizer_race"; function: string; steps?: number; lr?: number } = {
      cmd: "probe", run_id: run, probe: "optimizer_race", function: this.functionSel.value,
    };
    const stepsText = this.stepsInput.value.trim();
    if (stepsText !== "") {
      const steps = Number(stepsText);
      if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) {
        this.status.textContent = `steps must be a whole number from 1 to ${MAX_STEPS} (empty: the function's own)`;
        return;
      }
      cmd.steps = steps;
    }
    const lrText = this.lrInput.value.trim();
    if (lrText !== "") {
      const lr = Number(lrText);
      if (!Number.isFinite(lr) || lr <= 0 || lr > 1000) {
        this.status.textContent = "lr must be a positive number up to 1000 (empty: each optimizer's own)";
        return;
      }
      cmd.lr = lr;
    }
    this.pending = true;
    this.status.textContent = "racing…";
    this.ctx.send(cmd);
  }

  /** Play from the first step again. */
  replay(): void {
    if (this.shown === null) return;
    this.play(0);
  }

  private togglePlay(): void {
    if (this.shown === null) return;
    if (this.playing) {
      this.playing = false;
      this.step = Math.round(this.step);
      this.redraw.request();
    } else {
      this.play(this.step >= this.shown.msg.steps ? 0 : this.step);
    }
  }

  private play(from: number): void {
    this.playing = true;
    this.playFrom = from;
    this.playStart = performance.now();
    this.redraw.request();
  }

  private async take(msg: OptimizerRaceMsg): Promise<void> {
    const surface = await decodeImage(msg.surface);
    let floor = Infinity;
    for (const r of msg.racers) for (const v of r.losses) if (Number.isFinite(v) && v < floor) floor = v;
    floor = Number.isFinite(floor) ? floor : 0;
    const target = typeof msg.min_value === "number" ? msg.min_value : floor;
    this.shown = { msg, surface, heights: greyValues(surface), floor: Math.min(floor, target), target };
    this.raceCount++;
    this.background = null;
    this.status.textContent = "";
    this.functionSel.value = msg.function;
    this.scrubber.max = String(msg.steps);
    this.play(0);
    showWhenAsked(this.root);
  }

  /** The largest step index any racer has (a diverged racer stops early). */
  private lastIndex(r: RacerPath): number {
    return r.points.length - 1;
  }

  private draw(): void {
    const shown = this.shown;
    this.empty.hidden = shown !== null;
    this.body.hidden = shown === null;
    if (this.pending) this.status.textContent = "racing…";
    if (shown === null) return;
    const msg = shown.msg;
    if (this.playing) {
      const elapsed = (performance.now() - this.playStart) / 1000;
      this.step = Math.min(msg.steps, this.playFrom + (elapsed * msg.steps) / PLAY_SECONDS);
      if (this.step >= msg.steps) this.playing = false;
      else this.redraw.request(); // the next frame of the animation
    }
    const k = this.step;
    const whole = Math.floor(k);
    this.playBtn.textContent = this.playing ? "❚❚" : "▶";
    this.scrubber.value = String(whole);
    this.stepLabel.textContent = `step ${whole.toLocaleString()} / ${msg.steps.toLocaleString()}`;
    this.root.dataset.step = String(whole);
    this.root.dataset.steps = String(msg.steps);
    this.root.dataset.function = msg.function;
    this.root.dataset.race = String(this.raceCount); // races drawn so far (tests wait for the newest)
    this.title.textContent = msg.title;
    this.formula.textContent = `f(x, y) = ${msg.formula} · start (${fmt(msg.start[0])}, ${fmt(msg.start[1])})`;

    const p = readPalette(this.root, this.ctx.theme());
    const width = widthOf(this.plotBox);
    if (width <= 0) return;
    const height = Math.round(Math.min(cssNumber(this.root, "--lv-race-h", 24 * p.fontPx), Math.max(12 * p.fontPx, width * 0.75)));
    const pad = { l: Math.round(p.fontPx * 2.8), r: 8, t: 8, b: Math.round(p.fontPx * 1.6) };
    const [x0, x1, y0, y1] = msg.extent;
    const xs = linScale(x0, x1, pad.l, width - pad.r, 8);
    const ys = linScale(y0, y1, height - pad.b, pad.t, 5);
    this.drawSurface(shown, p, width, height, xs, ys);
    this.drawPaths(shown, p, width, height, xs, ys, k);
    this.drawLegend(shown, p, whole);
    this.drawLosses(shown, p, k);
  }

  /** The surface (pale where f is low), its contour lines and the axes, cached while nothing changes. */
  private drawSurface(shown: Shown, p: Palette, width: number, height: number, xs: Scale, ys: Scale): void {
    const key = `${width}x${height}|${p.theme}|${p.fontPx}`;
    if (this.background === null || this.background.key !== key) {
      const off = document.createElement("canvas");
      const g = fitCanvas(off, width, height);
      const [px0, px1] = [xs.px(xs.lo), xs.px(xs.hi)];
      const [py0, py1] = [ys.px(ys.hi), ys.px(ys.lo)];
      // low = nearly the panel's background, high = a muted slate: coloured paths stay the loudest thing
      const lut = p.theme === "dark" ? lutFromStops(["#1b2130", "#2c3a55", "#51628a"]) : lutFromStops(["#fbfcfe", "#dfe6f1", "#aebbd1"]);
      g.imageSmoothingEnabled = true;
      g.drawImage(colorizeGrey(shown.surface, lut), px0, py0, px1 - px0, py1 - py0);
      const { w, h } = shown.surface;
      g.strokeStyle = withAlpha(p.fg, p.theme === "dark" ? 0.22 : 0.16);
      g.lineWidth = 1;
      g.beginPath();
      for (let i = 1; i <= CONTOUR_LEVELS; i++) {
        for (const [ax, ay, bx, by] of contourSegments(shown.heights, w, h, i / (CONTOUR_LEVELS + 1))) {
          g.moveTo(px0 + ((ax + 0.5) / w) * (px1 - px0), py0 + ((ay + 0.5) / h) * (py1 - py0));
          g.lineTo(px0 + ((bx + 0.5) / w) * (px1 - px0), py0 + ((by + 0.5) / h) * (py1 - py0));
        }
      }
      g.stroke();
      g.strokeStyle = p.grid;
      g.strokeRect(px0 + 0.5, py0 + 0.5, px1 - px0 - 1, py1 - py0 - 1);
      // axis labels outside the region
      g.font = font(p, 0.75);
      g.fillStyle = p.muted;
      g.textAlign = "center";
      g.textBaseline = "top";
      for (const t of xs.ticks()) g.fillText(xs.label(t), xs.px(t), py1 + 3);
      g.textAlign = "right";
      g.textBaseline = "middle";
      for (const t of ys.ticks()) g.fillText(ys.label(t), px0 - 4, ys.px(t));
      g.textAlign = "left";
      g.textBaseline = "bottom";
      g.fillText("x", px1 - g.measureText("x").width - 2, py1 - 2);
      g.textBaseline = "top";
      g.fillText("y", px0 + 3, py0 + 2);
      this.background = { key, canvas: off };
    }
    const g = fitCanvas(this.canvas, width, height);
    g.drawImage(this.background.canvas, 0, 0, width, height);
  }

  /** Each racer's path up to step k (SVG), its head, the start and the minima. */
  private drawPaths(shown: Shown, p: Palette, width: number, height: number, xs: Scale, ys: Scale, k: number): void {
    const msg = shown.msg;
    const svg = this.svg;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    const [x0, x1, y0, y1] = msg.extent;
    const spanX = (x1 - x0) * CLAMP_FACTOR;
    const spanY = (y1 - y0) * CLAMP_FACTOR;
    // unclamped pixel positions (linScale clamps into the region; a path leaving it should be seen leaving)
    const px = (x: number): number => xs.px(x0) + ((Math.max(x0 - spanX, Math.min(x1 + spanX, x)) - x0) / (x1 - x0)) * (xs.px(x1) - xs.px(x0));
    const py = (y: number): number => ys.px(y0) + ((Math.max(y0 - spanY, Math.min(y1 + spanY, y)) - y0) / (y1 - y0)) * (ys.px(y1) - ys.px(y0));
    const ns = "http://www.w3.org/2000/svg";
    const make = <K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>): SVGElementTagNameMap[K] => {
      const e = document.createElementNS(ns, tag);
      for (const [a, v] of Object.entries(attrs)) e.setAttribute(a, v);
      return e;
    };
    const clipId = `lv-race-clip-${msg.function}`;
    const children: SVGElement[] = [];
    const defs = make("defs", {});
    const clip = make("clipPath", { id: clipId });
    clip.append(make("rect", { x: String(xs.px(x0)), y: String(ys.px(y1)), width: String(xs.px(x1) - xs.px(x0)), height: String(ys.px(y0) - ys.px(y1)) }));
    defs.append(clip);
    children.push(defs);
    const paths = make("g", { "clip-path": `url(#${clipId})` });
    for (const r of msg.racers) {
      if (this.hidden.has(r.optimizer)) continue;
      const color = racerColor(r.optimizer, p);
      const last = Math.min(this.lastIndex(r), Math.floor(k));
      const pts: string[] = [];
      for (let i = 0; i <= last; i++) {
        const pt = r.points[i]!;
        pts.push(`${px(pt[0]).toFixed(1)},${py(pt[1]).toFixed(1)}`);
      }
      // between two steps the head slides along the segment, so a slow race still moves smoothly
      let head = r.points[last]!;
      const next = r.points[last + 1];
      if (next !== undefined && k > last) {
        const f = k - last;
        head = [head[0] + (next[0] - head[0]) * f, head[1] + (next[1] - head[1]) * f];
        pts.push(`${px(head[0]).toFixed(1)},${py(head[1]).toFixed(1)}`);
      }
      const line = make("polyline", {
        points: pts.join(" "), fill: "none", stroke: color, "stroke-width": "2", "stroke-linejoin": "round", "stroke-linecap": "round",
        "data-optimizer": r.optimizer, "data-points": String(last + 1),
      });
      const title = make("title", {});
      title.textContent = racerName(r.optimizer);
      line.append(title);
      paths.append(line);
      const dead = r.diverged_at !== null && k >= this.lastIndex(r) + 1;
      paths.append(make("circle", {
        cx: px(head[0]).toFixed(1), cy: py(head[1]).toFixed(1), r: dead ? "3" : "4.5",
        fill: dead ? p.bg : color, stroke: dead ? color : p.bg, "stroke-width": "1.5", class: "lv-race-head",
      }));
    }
    children.push(paths);
    for (const m of msg.minima) children.push(this.star(make, px(m[0]), py(m[1]), p));
    children.push(make("circle", { cx: px(msg.start[0]).toFixed(1), cy: py(msg.start[1]).toFixed(1), r: "5", fill: "none", stroke: p.fg, "stroke-width": "1.5", class: "lv-race-start" }));
    svg.replaceChildren(...children);
  }

  private star(make: <K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string>) => SVGElementTagNameMap[K], x: number, y: number, p: Palette): SVGElement {
    const pts: string[] = [];
    for (let i = 0; i < 10; i++) {
      const a = -Math.PI / 2 + (i * Math.PI) / 5;
      const rad = i % 2 === 0 ? 7 : 3;
      pts.push(`${(x + rad * Math.cos(a)).toFixed(1)},${(y + rad * Math.sin(a)).toFixed(1)}`);
    }
    const star = make("polygon", { points: pts.join(" "), fill: p.warn, stroke: p.fg, "stroke-width": "0.8", class: "lv-race-minimum" });
    const title = make("title", {});
    title.textContent = "a global minimum";
    star.append(title);
    return star;
  }

  /** The legend's rows, built once per race (and theme): the animation only rewrites their numbers. */
  private buildLegend(shown: Shown, p: Palette): void {
    this.legendRows.clear();
    const rows = shown.msg.racers.map((r) => {
      const box = el("input", { attrs: { type: "checkbox", "aria-label": `show ${racerName(r.optimizer)}` } });
      box.checked = !this.hidden.has(r.optimizer);
      const row = el("tr", { attrs: { "data-optimizer": r.optimizer } });
      box.addEventListener("change", () => {
        if (box.checked) this.hidden.delete(r.optimizer);
        else this.hidden.add(r.optimizer);
        row.classList.toggle("lv-off", !box.checked);
        this.redraw.request();
      });
      const loss = el("td", { class: "num lv-loss" });
      const note = el("td", { class: "lv-note" });
      row.append(
        el("td", {}, [el("label", { class: "lv-racer" }, [box, el("i", { class: "viz-swatch", style: { "--c": racerColor(r.optimizer, p) } }), racerName(r.optimizer)])]),
        el("td", { class: "num", text: fmt(r.lr, 3) }),
        loss,
        note,
      );
      row.classList.toggle("lv-off", this.hidden.has(r.optimizer));
      this.legendRows.set(r.optimizer, { loss, note });
      return row;
    });
    this.legend.replaceChildren(
      el("thead", {}, [el("tr", {}, [el("th", { text: "optimizer" }), el("th", { class: "num", text: "lr" }), this.lossHead, el("th", { text: "" })])]),
      el("tbody", {}, rows),
    );
    this.legendKey = `${shown.msg.function}|${shown.msg.steps}|${p.theme}|${this.raceCount}`;
  }

  /** f at the shown step for each racer, and whether it has arrived at a minimum or flown off. */
  private drawLegend(shown: Shown, p: Palette, k: number): void {
    if (this.legendKey !== `${shown.msg.function}|${shown.msg.steps}|${p.theme}|${this.raceCount}`) this.buildLegend(shown, p);
    this.lossHead.textContent = `f at step ${k}`;
    for (const r of shown.msg.racers) {
      const cells = this.legendRows.get(r.optimizer);
      if (cells === undefined) continue;
      const loss = r.losses[Math.min(k, this.lastIndex(r))];
      cells.loss.textContent = loss !== undefined ? fmt(loss, 4) : "–";
      cells.loss.dataset.loss = String(loss ?? "");
      const arrived = r.losses.findIndex((v) => v - shown.target <= REACHED_TOLERANCE);
      const [text, cls] =
        r.diverged_at !== null && k > this.lastIndex(r)
          ? [`flew off at step ${r.diverged_at}`, "viz-bad"]
          : arrived >= 0 && arrived <= k
            ? [`at the minimum from step ${arrived}`, "viz-good"]
            : r.optimizer === "lbfgs"
              ? [`${r.evaluations.toLocaleString()} evaluations of f`, "viz-note"]
              : ["", "viz-note"];
      if (cells.note.textContent !== text) {
        cells.note.textContent = text;
        cells.note.className = `lv-note ${cls}`;
      }
    }
  }

  /**
   * Every racer's distance to the minimum's value, f − f*, against steps on a log scale (linear
   * convergence is a straight line, and 1e-10 is told apart from 1e-3), the shown step marked.
   * Without the message's min_value, f itself on a linear scale.
   */
  private drawLosses(shown: Shown, p: Palette, k: number): void {
    const msg = shown.msg;
    const w = Math.max(160, widthOf(this.lossCanvas.parentElement ?? this.root));
    const h = Math.round(p.fontPx * 9);
    const g = fitCanvas(this.lossCanvas, w, h);
    const pad = { l: Math.round(p.fontPx * 2.8), r: Math.round(p.fontPx * 1.2), t: 6, b: Math.round(p.fontPx * 1.4) };
    const log = typeof msg.min_value === "number";
    const gap = (v: number): number => Math.max(LOG_FLOOR, v - shown.target);
    const value = log ? gap : (v: number): number => v;
    const all: number[] = [];
    for (const r of msg.racers) for (const v of r.losses) all.push(value(v));
    const ext = (log ? positiveExtent(all) : finiteExtent(all)) ?? [0, 1];
    const xs = linScale(0, msg.steps, pad.l, w - pad.r, 4);
    const ys = log ? logScale(ext[0], ext[1], h - pad.b, pad.t) : linScale(ext[0], ext[1], h - pad.b, pad.t, 3);
    this.lossCaption.textContent = log ? "f − f(minimum) at each step, log scale (the shown step marked)" : "f at each step (the shown step marked)";
    g.font = font(p, 0.72);
    g.strokeStyle = p.grid;
    g.fillStyle = p.muted;
    g.textAlign = "right";
    g.textBaseline = "middle";
    const ticks = ys.ticks();
    const every = Math.max(1, Math.ceil(ticks.length / 5)); // at most ~5 labels on a small chart
    ticks.forEach((t, i) => {
      g.beginPath();
      g.moveTo(pad.l, Math.round(ys.px(t)) + 0.5);
      g.lineTo(w - pad.r, Math.round(ys.px(t)) + 0.5);
      g.stroke();
      if (i % every === 0) g.fillText(ys.label(t), pad.l - 4, ys.px(t));
    });
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const t of xs.ticks()) g.fillText(xs.label(t), xs.px(t), h - pad.b + 3);
    g.save();
    g.beginPath();
    g.rect(pad.l, pad.t - 2, w - pad.l - pad.r, h - pad.t - pad.b + 4);
    g.clip();
    for (const r of msg.racers) {
      if (this.hidden.has(r.optimizer)) continue;
      g.strokeStyle = racerColor(r.optimizer, p);
      g.lineWidth = 1.5;
      g.beginPath();
      const last = Math.min(this.lastIndex(r), Math.floor(k));
      for (let i = 0; i <= last; i++) {
        const v = value(r.losses[i]!);
        if (i === 0) g.moveTo(xs.px(i), ys.px(v));
        else g.lineTo(xs.px(i), ys.px(v));
      }
      g.stroke();
    }
    g.restore();
    g.fillStyle = withAlpha(p.fg, 0.35);
    g.fillRect(Math.round(xs.px(k)), pad.t, 1, h - pad.t - pad.b);
  }
}

/**
 * Bring an on-demand view's answer on screen: it sits below the tab's other views, and the race
 * (or the attack) was just asked for, by this view's button or a lesson step. Nothing happens in
 * a hidden tab.
 */
export function showWhenAsked(target: HTMLElement): void {
  requestAnimationFrame(() => {
    if (widthOf(target) === 0) return;
    const box = target.getBoundingClientRect();
    if (box.top >= 0 && box.top < window.innerHeight * 0.5) return; // already in view
    target.scrollIntoView({ block: "start", behavior: "smooth" });
  });
}
