/**
 * Numerical gradient check (`gradient_check`): analytic vs finite-difference
 * gradients per sampled parameter entry, with the relative error
 * |a − n| / max(|a|, |n|) colour-coded by the usual thresholds (CS231n):
 * < 1e-7 excellent, < 1e-4 fine, < 1e-2 suspicious (acceptable at kinks such as
 * ReLU's 0), ≥ 1e-2 the gradient is probably wrong.
 */

import type { GradientCheckMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, el, emptyState, fmt, shortParam, toNum, toggle } from "./dom";
import { decadeLabel } from "./plot";

export interface GradCheckOptions {
  /** sort rows by relative error, worst first (default false: server order) */
  sortByError?: boolean;
}

interface Level {
  max: number;
  cls: string;
  label: string;
}

const LEVELS: Level[] = [
  { max: 1e-7, cls: "excellent", label: "excellent" },
  { max: 1e-4, cls: "good", label: "fine" },
  { max: 1e-2, cls: "warn", label: "suspicious (ok at kinks)" },
  { max: Infinity, cls: "bad", label: "wrong" },
];

/** The level of a relative error; the server's own `verdict` (great/ok/suspicious/wrong) wins when given. */
export function errorLevel(rel: number | string, verdict?: string): Level {
  const byVerdict: Record<string, number> = { great: 0, ok: 1, suspicious: 2, wrong: 3 };
  const v = verdict !== undefined ? byVerdict[verdict] : undefined;
  if (v !== undefined) return LEVELS[v]!;
  const x = typeof rel === "number" ? rel : Number.NaN;
  if (!Number.isFinite(x)) return LEVELS[3]!;
  return LEVELS.find((l) => x < l.max) ?? LEVELS[3]!;
}

export class GradCheck {
  private readonly redraw: Redraw;
  private msg: GradientCheckMsg | null = null;
  private sortByError: boolean;
  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly summary = el("div", { class: "viz-stats" });
  private readonly table = el("table", { class: "viz-table" });

  constructor(root: HTMLElement, ctx: ViewContext, opts: GradCheckOptions = {}) {
    this.sortByError = opts.sortByError ?? false;
    this.redraw = new Redraw(ctx, () => this.draw());
    const run = (): void => {
      const id = ctx.runId();
      if (id !== null) ctx.send({ cmd: "probe", run_id: id, probe: "gradient_check" });
    };
    const sort = toggle("worst first", this.sortByError, (on) => {
      this.sortByError = on;
      this.redraw.request();
    });
    const legend = el("div", { class: "viz-legend" }, LEVELS.map((l, i) =>
      el("span", { class: "viz-legend-item" }, [el("i", { class: `viz-err-dot err-${l.cls}` }), el("span", { class: "viz-legend-name", text: `${i === 0 ? "<" : i === 3 ? "≥" : "<"} ${decadeLabel(Math.round(Math.log10(i === 3 ? LEVELS[2]!.max : l.max)))} ${l.label}` })]),
    ));
    this.body = el("div", { class: "viz-loss-body" }, [
      el("div", { class: "viz-toolbar" }, [this.summary, el("span", { class: "viz-spacer" }), sort.label, button("↻ check again", run, { class: "primary" })]),
      legend,
      el("div", { class: "viz-table-wrap" }, [this.table]),
    ]);
    this.empty = emptyState("Check the gradients numerically", "Compares backprop's gradients with finite differences (f(w+h) − f(w−h)) / 2h on a few weights.");
    this.empty.append(el("div", { class: "viz-empty-actions" }, [button("Run gradient check", run, { class: "primary" })]));
    root.classList.add("viz-view", "viz-gradcheck");
    root.replaceChildren(this.empty, this.body);
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type !== "gradient_check") return;
    this.msg = msg;
    this.redraw.request();
  }

  reset(): void {
    this.msg = null;
    this.redraw.request();
  }

  private draw(): void {
    const m = this.msg;
    this.empty.hidden = m !== null;
    this.body.hidden = m === null;
    if (m === null) return;
    const extra = m as GradientCheckMsg & { verdict?: string; kinks?: number; eps?: number };
    const worst = errorLevel(m.max_rel_error, extra.verdict);
    this.summary.replaceChildren(
      el("span", { class: `viz-badge`, text: m.passed ? "passed" : "failed", attrs: { "data-kind": m.passed ? "good" : "bad" } }),
      el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "max relative error" }), el("b", { class: `err-text-${worst.cls}`, text: fmt(m.max_rel_error, 2) })]),
      el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "entries" }), el("b", { text: String(m.entries.length) })]),
      ...(extra.kinks !== undefined && extra.kinks > 0 ? [el("span", { class: "viz-stat", title: "entries next to a non-differentiable point (ReLU at 0): finite differences straddle the kink" }, [el("span", { class: "viz-stat-k", text: "at kinks" }), el("b", { text: String(extra.kinks) })])] : []),
      ...(extra.eps !== undefined ? [el("span", { class: "viz-stat" }, [el("span", { class: "viz-stat-k", text: "h" }), el("b", { text: fmt(extra.eps) })])] : []),
    );
    const rows = [...m.entries];
    // "inf" (a non-finite side) sorts first: it is the worst mismatch
    if (this.sortByError) rows.sort((a, b) => (toNum(b.rel_error) ?? 0) - (toNum(a.rel_error) ?? 0));
    const head = el("tr", {}, ["parameter", "index", "analytic", "numeric", "relative error", ""].map((h) => el("th", { text: h })));
    this.table.replaceChildren(
      el("thead", {}, [head]),
      el("tbody", {}, rows.map((e) => {
        const lv = errorLevel(e.rel_error, (e as typeof e & { verdict?: string }).verdict);
        // bar on a log axis from 1e-10 (empty) to 1 (full)
        const rel = toNum(e.rel_error) ?? Number.NaN;
        const frac = rel === Number.POSITIVE_INFINITY ? 1 : Number.isFinite(rel) && rel > 0 ? Math.max(0.02, Math.min(1, (Math.log10(rel) + 10) / 10)) : 0;
        return el("tr", { class: `err-row-${lv.cls}` }, [
          el("td", { title: e.param }, [el("code", { text: shortParam(e.param) })]),
          el("td", { class: "num", text: Array.isArray(e.index) ? `[${e.index.join(", ")}]` : String(e.index) }),
          el("td", { class: "num", text: sci(e.analytic) }),
          el("td", { class: "num", text: sci(e.numeric) }),
          el("td", { class: "num" }, [el("span", { class: `viz-err-chip err-${lv.cls}`, text: fmt(e.rel_error, 2) })]),
          el("td", { class: "viz-err-barcell", title: lv.label }, [el("span", { class: `viz-err-bar err-${lv.cls}`, style: { width: `${(frac * 100).toFixed(1)}%` } })]),
        ]);
      })),
    );
  }
}

/** 4 significant digits in scientific notation (analytic vs numeric gradients line up digit by digit). */
function sci(v: number | string): string {
  const x = toNum(v);
  if (x === null) return "–";
  if (!Number.isFinite(x)) return fmt(x);
  return x.toExponential(4).replace(/-/g, "−");
}
