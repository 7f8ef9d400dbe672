/**
 * One scatter of the search: validation accuracy (y, 0 to 1) against one hyperparameter (x, log
 * scale), one mark per trial that has a run. Finished trials are filled dots (coarse and fine in
 * two colours), trials still training are pulsing rings at their latest validation accuracy (on
 * the axis until their first evaluation), diverged ones are crosses on the axis, stopped or failed
 * ones grey rings. The fine stage's narrowed range is a shaded band, the best trial is circled.
 * SVG, so every mark is an element (`.point[data-index]`) the tests and the tooltip can find.
 */

import { s } from "../dom";
import { onWidthChange } from "../viz/dom";
import { logScale } from "../viz/plot";
import { shownAccuracy, type TrialInfo } from "./model";

export type Param = "lr" | "l2";

const HEIGHT = 210; // px: two scatters side by side above the trial table fit a 720 px high laptop screen
const MARGIN = { left: 42, right: 12, top: 12, bottom: 34 }; // px: room for tick labels and the axis title
const ACC_TICKS = [0, 0.25, 0.5, 0.75, 1];
const STATUS_WORDS: Record<string, string> = {
  queued: "waiting for its turn", running: "training", finished: "finished", diverged: "diverged",
  stopped: "stopped", failed: "failed",
};

export interface ScatterData {
  trials: readonly TrialInfo[];
  /** the coarse stage's range of this hyperparameter (the x axis covers its decades) */
  range: [number, number];
  /** the fine stage's narrowed range, once planned */
  fine: [number, number] | null;
  best: number | null;
  selected: number | null;
}

export class SearchScatter {
  readonly el: HTMLElement;
  private readonly svg: SVGSVGElement;
  private data: ScatterData | null = null;

  constructor(
    private readonly param: Param,
    private readonly title: string,
    private readonly onPick: (index: number) => void,
  ) {
    this.svg = s("svg", { class: "search-scatter-svg", role: "img", "aria-label": `validation accuracy against ${title}` });
    this.el = document.createElement("figure");
    this.el.className = "search-scatter";
    this.el.dataset.param = param;
    const caption = document.createElement("figcaption");
    caption.textContent = `validation accuracy vs ${title}`;
    this.el.append(caption, this.svg);
    onWidthChange(this.el, () => this.draw());
  }

  update(data: ScatterData): void {
    this.data = data;
    this.draw();
  }

  private draw(): void {
    const data = this.data;
    const width = Math.max(240, this.el.clientWidth);
    this.svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    this.svg.setAttribute("width", String(width));
    this.svg.setAttribute("height", String(HEIGHT));
    this.svg.replaceChildren();
    if (!data) return;
    const x0 = MARGIN.left;
    const x1 = width - MARGIN.right;
    const y0 = HEIGHT - MARGIN.bottom;
    const y1 = MARGIN.top;
    const x = logScale(data.range[0], data.range[1], x0, x1);
    const y = (acc: number): number => y0 + Math.min(1, Math.max(0, acc)) * (y1 - y0);

    const grid = s("g", { class: "grid" });
    for (const t of ACC_TICKS) {
      grid.append(s("line", { x1: x0, x2: x1, y1: y(t), y2: y(t) }));
      grid.append(s("text", { class: "tick", x: x0 - 5, y: y(t) + 3.5, "text-anchor": "end" }, `${Math.round(t * 100)}%`));
    }
    for (const t of x.ticks()) {
      const px = x.px(t);
      grid.append(s("line", { x1: px, x2: px, y1: y0, y2: y1 }));
      grid.append(s("text", { class: "tick", x: px, y: y0 + 14, "text-anchor": "middle" }, x.label(t)));
    }
    grid.append(s("text", { class: "axis-title", x: (x0 + x1) / 2, y: HEIGHT - 4, "text-anchor": "middle" }, `${this.title} (log scale)`));
    this.svg.append(grid);

    // the searched range, and the fine stage's narrowed one
    this.svg.append(s("rect", { class: "coarse-band", x: x.px(data.range[0]), y: y1, width: Math.max(1, x.px(data.range[1]) - x.px(data.range[0])), height: y0 - y1 }));
    if (data.fine) {
      const [lo, hi] = data.fine;
      const band = s("rect", { class: "fine-band", x: x.px(lo), y: y1, width: Math.max(2, x.px(hi) - x.px(lo)), height: y0 - y1 });
      band.append(s("title", null, `fine stage: ${this.title} from ${lo.toPrecision(3)} to ${hi.toPrecision(3)}`));
      this.svg.append(band);
    }

    const marks = s("g", { class: "marks" });
    let count = 0;
    // finished first, live ones and the best on top
    const order = [...data.trials].sort((a, b) => rank(a, data.best) - rank(b, data.best));
    for (const trial of order) {
      if (!trial.run_id || trial.status === "pending" || trial.status === "waiting" || trial.status === "skipped") continue;
      const px = x.px(trial[this.param]);
      const acc = shownAccuracy(trial) ?? trial.val_acc;
      const py = y(trial.status === "diverged" ? 0 : acc ?? 0);
      const classes = ["point", trial.stage, trial.status];
      if (trial.index === data.selected) classes.push("selected");
      const attrs = { class: classes.join(" "), "data-index": trial.index, "data-status": trial.status, onclick: () => this.onPick(trial.index) };
      let mark: SVGElement;
      if (trial.status === "diverged") {
        const r = 4.5;
        mark = s("path", { ...attrs, d: `M${px - r},${py - r}L${px + r},${py + r}M${px - r},${py + r}L${px + r},${py - r}` });
      } else {
        mark = s("circle", { ...attrs, cx: px, cy: py, r: trial.status === "finished" ? 4.5 : 5 });
      }
      mark.append(s("title", null, tooltip(trial)));
      if (trial.index === data.best) marks.append(s("circle", { class: "best-ring", cx: px, cy: py, r: 9 }));
      marks.append(mark);
      count += 1;
    }
    this.svg.append(marks);
    this.el.dataset.points = String(count);
  }
}

function rank(t: TrialInfo, best: number | null): number {
  if (t.index === best) return 3;
  if (t.status === "running" || t.status === "queued") return 2;
  return t.status === "finished" ? 1 : 0;
}

function tooltip(t: TrialInfo): string {
  const acc = shownAccuracy(t);
  const accText = acc === null ? "no validation accuracy yet" : `validation accuracy ${(100 * acc).toFixed(1)}%`;
  const progress = t.status === "running" ? ` (step ${t.step} of ${t.steps})` : "";
  return `trial ${t.index + 1} (${t.stage}): lr ${t.lr.toPrecision(3)}, l2 ${t.l2.toPrecision(3)}\n${STATUS_WORDS[t.status] ?? t.status}${progress}, ${accText}`;
}
