/**
 * Compare runs: their curves overlaid in one chart (data from
 * GET /api/runs/compare?ids=a,b,...) and the table of configuration differences.
 *
 * The run picker lists GET /api/runs; `compare(ids)` may also be called by the
 * shell (e.g. from a "compare with previous run" button). One run is enough to
 * compare, and every run has an "open" button that shows it in the whole page
 * again (its curves, views and network: `options.onOpen`). Responses are read
 * tolerantly: metrics as a list of points or as columns, the diff as `diff` or
 * `config_diff`, runs as a list or an object keyed by id.
 */

import type { MetricPoint, RunInfo, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, Tooltip, button, cssNumber, el, emptyState, fmt, fmtPct, fmtTick, onWidthChange, select, toggle, widthOf } from "../viz/dom";
import { readPalette, seriesColor, withAlpha } from "../viz/theme";
import { axis, baseOptions, cursorTooltip, uPlot, yAxisSize } from "./uplotTheme";

export type CompareMetric = "val_acc" | "val_loss" | "train_loss" | "train_acc" | "lr";

export interface RunsOverlayOptions {
  /** runs to compare right away */
  ids?: string[];
  /** metric shown first (default "val_acc") */
  metric?: CompareMetric;
  /** show this run in the page again (reattach to it); without it runs have no "open" button */
  onOpen?: (runId: string) => void;
}

/** One run of a comparison, normalized. */
export interface ComparedRun {
  id: string;
  name: string;
  points: MetricPoint[];
}

export interface ConfigDiff {
  path: string;
  values: unknown[];
}

const METRICS: [CompareMetric, string][] = [
  ["val_acc", "validation accuracy"],
  ["val_loss", "validation loss"],
  ["train_loss", "training loss"],
  ["train_acc", "training accuracy"],
  ["lr", "learning rate"],
];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Metric points from a list of objects or from columns ({step: [...], val_acc: [...]}). */
function toPoints(m: unknown): MetricPoint[] {
  if (Array.isArray(m)) return m.filter(isRecord) as unknown as MetricPoint[];
  if (isRecord(m) && Array.isArray(m.step)) {
    const steps = m.step as number[];
    return steps.map((s, i) => {
      const p: Record<string, unknown> = { step: s };
      for (const [k, col] of Object.entries(m)) if (Array.isArray(col)) p[k] = col[i] ?? null;
      return p as unknown as MetricPoint;
    });
  }
  return [];
}

/** Normalize a /runs/compare response. */
export function parseCompare(resp: unknown, ids: string[]): { runs: ComparedRun[]; diff: ConfigDiff[] } {
  let rawRuns: unknown = isRecord(resp) ? resp.runs : resp;
  if (isRecord(rawRuns)) rawRuns = Object.entries(rawRuns).map(([id, r]) => (isRecord(r) ? { id, ...r } : { id, metrics: r }));
  const runs: ComparedRun[] = (Array.isArray(rawRuns) ? rawRuns : []).filter(isRecord).map((r, i) => {
    const id = String(r.id ?? r.run_id ?? ids[i] ?? `run ${i + 1}`);
    const exp = isRecord(r.experiment) ? r.experiment : null;
    const name = String(r.name ?? r.experiment_name ?? exp?.name ?? id);
    return { id, name, points: toPoints(r.metrics ?? r.history ?? r.points) };
  });
  const seen = new Map<string, number>();
  for (const r of runs) seen.set(r.name, (seen.get(r.name) ?? 0) + 1);
  for (const r of runs) if ((seen.get(r.name) ?? 0) > 1) r.name = `${r.name} · ${r.id.slice(0, 6)}`;
  const rawDiff = isRecord(resp) ? resp.diff ?? resp.config_diff ?? resp.differences : null;
  const diff: ConfigDiff[] = Array.isArray(rawDiff)
    ? rawDiff.filter(isRecord).map((d) => ({ path: String(d.path ?? ""), values: Array.isArray(d.values) ? d.values : [] }))
    : [];
  return { runs, diff };
}

function runsList(resp: unknown): RunInfo[] {
  const arr = Array.isArray(resp) ? resp : isRecord(resp) && Array.isArray(resp.runs) ? resp.runs : [];
  return arr.filter(isRecord).filter((r) => typeof r.id === "string") as RunInfo[];
}

function fmtConfig(v: unknown): string {
  if (v === undefined) return "—";
  if (v === null) return "none";
  if (typeof v === "number") return fmt(v, 4);
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "yes" : "no";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}…` : s;
}

export class RunsOverlay {
  private readonly redraw: Redraw;
  private runs: ComparedRun[] = [];
  private diff: ConfigDiff[] = [];
  private available: RunInfo[] = [];
  private chosen = new Set<string>();
  private metric: CompareMetric;
  private xKey: "step" | "epoch" = "step";
  private log = false;
  private chart: uPlot | null = null;
  private chartKey = "";
  private error: string | null = null;
  private loading = false;
  private readonly onOpen: ((runId: string) => void) | undefined;

  private readonly picker = el("div", { class: "viz-run-picker" });
  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly plot = el("div", { class: "viz-plot" });
  private readonly legend = el("div", { class: "viz-card-legend" });
  private readonly diffTable = el("table", { class: "viz-table viz-diff" });
  private readonly diffCard: HTMLElement;
  private readonly status = el("span", { class: "viz-note" });
  private readonly tip: Tooltip;
  private readonly chartTitle = el("h4", { class: "viz-card-title" });

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: RunsOverlayOptions = {}) {
    this.metric = opts.metric ?? "val_acc";
    this.onOpen = opts.onOpen;
    this.redraw = new Redraw(ctx, () => this.draw());
    const metricSel = select(METRICS, this.metric, (v) => {
      this.metric = v as CompareMetric;
      this.redraw.request();
    });
    const xSel = select([["step", "steps"], ["epoch", "epochs"]], this.xKey, (v) => {
      this.xKey = v === "epoch" ? "epoch" : "step";
      this.redraw.request();
    }, "x axis");
    const logT = toggle("log", false, (on) => {
      this.log = on;
      this.destroy();
      this.redraw.request();
    }, "logarithmic y axis");
    const chartCard = el("section", { class: "viz-card" }, [el("header", { class: "viz-card-head" }, [this.chartTitle, this.legend]), this.plot]);
    this.tip = new Tooltip(chartCard);
    this.diffCard = el("section", { class: "viz-card" }, [
      el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "What differs" }), el("span", { class: "viz-card-sub", text: "experiment settings that are not the same in every run" })]),
      el("div", { class: "viz-table-wrap" }, [this.diffTable]),
    ]);
    this.body = el("div", { class: "viz-loss-body" }, [
      el("div", { class: "viz-toolbar" }, [el("label", { class: "viz-control" }, ["show", metricSel]), el("label", { class: "viz-control" }, ["against", xSel]), logT.label]),
      chartCard,
      this.diffCard,
    ]);
    this.empty = emptyState(
      "Tick runs and press Compare, or open one",
      "Compared runs are overlaid in one chart with the settings that differ; “open” shows a run in the whole page again: its curves, views and network.",
    );
    root.classList.add("viz-view", "viz-runs");
    root.replaceChildren(
      el("div", { class: "viz-toolbar" }, [
        this.picker,
        el("span", { class: "viz-spacer" }),
        this.status,
        button("↻", () => void this.refreshRuns(), { title: "reload the list of runs" }),
        button("Compare", () => void this.compare([...this.chosen]), { class: "primary" }),
      ]),
      this.empty,
      this.body,
    );
    onWidthChange(root, () => this.resize());
    ctx.onThemeChange(() => {
      this.destroy();
      this.redraw.request();
    });
    void this.refreshRuns();
    if (opts.ids !== undefined && opts.ids.length > 0) void this.compare(opts.ids);
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    // a run that ends becomes comparable; a new one appears in the list
    if (msg.type === "final" || msg.type === "summary") void this.refreshRuns();
  }

  reset(): void {
    // comparisons span runs: keep them; only the list may have changed
    void this.refreshRuns();
  }

  resize(): void {
    const w = widthOf(this.plot);
    if (this.chart !== null && w > 0) this.chart.setSize({ width: w, height: cssNumber(this.root, "--viz-chart-h", 210) * 1.3 });
  }

  /** Load and show the comparison of these runs. */
  async compare(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    for (const id of ids) this.chosen.add(id);
    this.loading = true;
    this.error = null;
    this.redraw.request();
    try {
      const resp = await this.ctx.api<unknown>(`/runs/compare?ids=${ids.map(encodeURIComponent).join(",")}`);
      const { runs, diff } = parseCompare(resp, ids);
      this.runs = runs;
      this.diff = diff;
      this.destroy();
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    } finally {
      this.loading = false;
      this.buildPicker();
      this.redraw.request();
    }
  }

  /** Reload the run list (GET /api/runs). */
  async refreshRuns(): Promise<void> {
    try {
      this.available = runsList(await this.ctx.api<unknown>("/runs"));
      this.buildPicker();
    } catch {
      // the list is a convenience; the comparison still works through compare(ids)
    }
  }

  private buildPicker(): void {
    const p = readPalette(this.root, this.ctx.theme());
    const shownIdx = new Map(this.runs.map((r, i) => [r.id, i]));
    const nameCount = new Map<string, number>();
    for (const r of this.available) nameCount.set(String(r.name ?? r.id), (nameCount.get(String(r.name ?? r.id)) ?? 0) + 1);
    this.picker.replaceChildren(
      ...this.available.slice(0, 24).map((r) => {
        const input = el("input", { attrs: { type: "checkbox" } });
        input.checked = this.chosen.has(r.id);
        input.addEventListener("change", () => {
          if (input.checked) this.chosen.add(r.id);
          else this.chosen.delete(r.id);
        });
        const idx = shownIdx.get(r.id);
        const state = String(r.status ?? r.state ?? "");
        const name = String(r.name ?? r.id);
        // same-named runs ("untitled") are told apart by their id
        const label = (nameCount.get(name) ?? 0) > 1 ? `${name} · ${r.id.slice(0, 6)}` : name;
        const shown = this.ctx.runId() === r.id;
        const chip = el("label", { class: "viz-run-chip", title: `${r.id}${state !== "" ? ` · ${state}` : ""}` }, [
          input,
          idx !== undefined ? el("i", { class: "viz-swatch box", style: { "--c": seriesColor(idx, p.theme) } }) : null,
          label,
          state === "failed" ? el("span", { class: "viz-bad", text: " ✕" }) : state === "running" || state === "paused" ? el("span", { class: "viz-good", text: " ●" }) : null,
        ]);
        const open = this.onOpen;
        if (open === undefined) return chip;
        const openBtn = button(shown ? "shown" : "open", () => open(r.id), {
          class: "viz-run-open",
          title: shown ? "this run is the one the page shows" : "show this run in the page: its curves, live views and network",
          attrs: { "data-run": r.id },
        });
        openBtn.disabled = shown;
        return el("span", { class: `viz-run-item${shown ? " shown" : ""}` }, [chip, openBtn]);
      }),
    );
  }

  private destroy(): void {
    this.chart?.destroy();
    this.chart = null;
    this.chartKey = "";
    this.plot.replaceChildren();
  }

  private draw(): void {
    this.status.textContent = this.loading ? "loading…" : this.error !== null ? `could not load: ${this.error}` : "";
    const has = this.runs.length > 0;
    this.empty.hidden = has;
    this.body.hidden = !has;
    if (!has) return;
    const p = readPalette(this.root, this.ctx.theme());
    const metricName = METRICS.find(([k]) => k === this.metric)?.[1] ?? this.metric;
    this.chartTitle.textContent = metricName;
    const isAcc = this.metric.endsWith("acc");

    // union of x values; each run's series has nulls where it has no point
    const xs = new Set<number>();
    for (const r of this.runs) for (const pt of r.points) {
      const x = pt[this.xKey];
      const v = pt[this.metric];
      if (typeof x === "number" && v != null) xs.add(x);
    }
    const x = [...xs].sort((a, b) => a - b);
    const index = new Map(x.map((v, i) => [v, i]));
    const ys = this.runs.map((r) => {
      const col: (number | null)[] = new Array<number | null>(x.length).fill(null);
      for (const pt of r.points) {
        const xv = pt[this.xKey];
        const v = pt[this.metric];
        const i = typeof xv === "number" ? index.get(xv) : undefined;
        if (i !== undefined && typeof v === "number" && Number.isFinite(v) && (!this.log || v > 0)) col[i] = v;
      }
      return col;
    });

    const w = widthOf(this.plot);
    if (w > 0) {
      const key = `${this.runs.map((r) => r.id).join(",")}|${this.log}|${isAcc}|${p.theme}`;
      if (this.chart === null || this.chartKey !== key) {
        this.destroy();
        const o = baseOptions(w, cssNumber(this.root, "--viz-chart-h", 210) * 1.3, undefined, p.fontPx);
        o.scales = { x: { time: false }, y: this.log ? { distr: 3, log: 10 } : { auto: true } };
        o.axes = [
          axis(p, { size: Math.round(p.fontPx * 1.9) }),
          axis(p, isAcc && !this.log ? { size: yAxisSize(p), values: (_u, s) => s.map((v) => (v == null ? "" : fmtPct(v, 0))) } : { size: yAxisSize(p), log: this.log }),
        ];
        o.series = [{}, ...this.runs.map((r, i) => ({
          label: r.name,
          stroke: seriesColor(i, p.theme),
          width: 2,
          spanGaps: true,
          points: { show: this.metric.startsWith("val"), size: 4, fill: seriesColor(i, p.theme) },
        }))];
        o.hooks = { setCursor: [cursorTooltip(this.tip, (v) => `${this.xKey} ${this.xKey === "step" ? fmtTick(v) : fmt(v, 3)}`, (v) => (isAcc ? fmtPct(v) : fmt(v, 4)))] };
        this.chart = new uPlot(o, [x, ...ys], this.plot);
        this.chartKey = key;
      } else {
        this.chart.setData([x, ...ys]);
      }
    }
    // legend with each run's last (or best, for accuracy) value
    this.legend.replaceChildren(el("div", { class: "viz-legend" }, this.runs.map((r, i) => {
      const vals = ys[i]!.filter((v): v is number => v !== null);
      const summary = vals.length === 0 ? "–" : isAcc ? `best ${fmtPct(Math.max(...vals))}` : this.metric === "lr" ? fmt(vals[vals.length - 1]) : `min ${fmt(Math.min(...vals), 4)}`;
      return el("span", { class: "viz-legend-item" }, [el("i", { class: "viz-swatch", style: { "--c": seriesColor(i, p.theme) } }), el("span", { class: "viz-legend-name", text: r.name }), el("b", { class: "viz-legend-value", text: summary })]);
    })));
    this.drawDiff(p.theme === "dark" ? 0.16 : 0.1);
  }

  private drawDiff(tint: number): void {
    const p = readPalette(this.root, this.ctx.theme());
    this.diffCard.hidden = false;
    if (this.diff.length === 0) {
      this.diffTable.replaceChildren(el("tbody", {}, [el("tr", {}, [el("td", { class: "viz-note", text: "The runs have the same settings (or the server sent no diff)." })])]));
      return;
    }
    const head = el("tr", {}, [el("th", { text: "setting" }), ...this.runs.map((r, i) => el("th", {}, [el("i", { class: "viz-swatch box", style: { "--c": seriesColor(i, p.theme) } }), ` ${r.name}`]))]);
    const rows = this.diff.map((d) =>
      el("tr", {}, [
        el("td", {}, [el("code", { text: d.path })]),
        ...this.runs.map((_, i) => {
          const v = d.values[i];
          const differs = i > 0 && JSON.stringify(v) !== JSON.stringify(d.values[0]);
          return el("td", { class: "num", text: fmtConfig(v), style: differs ? { background: withAlpha(seriesColor(i, p.theme), tint) } : {} });
        }),
      ]),
    );
    this.diffTable.replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
  }
}
