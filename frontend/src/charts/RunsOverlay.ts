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
 *
 * Live: while a compared run trains (a lesson's compare step starts several at once, from
 * the same seed) the overlay reloads the comparison every LIVE_REFRESH_MS while it is on
 * screen, updating the curves in place. The curves are the raw points the runs logged
 * (the server thins a long history by picking evenly spaced points, never by averaging),
 * so the noise of a batch-1 run stays visible; training curves are drawn thinner than the
 * validation ones, the first run at the bottom.
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
  /** the run's state when the comparison was loaded (queued, running, paused, finished, ...); "" if unknown */
  status: string;
}

export interface CompareOptions {
  /** the metric to show (default: the one shown; training loss when a new comparison has live runs) */
  metric?: CompareMetric;
  /** the x axis */
  x?: "step" | "epoch";
}

const LIVE_REFRESH_MS = 1000; // reload of a comparison with a training run: curves move about once a second
const LIVE_STATES = new Set(["queued", "starting", "running", "paused"]);

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

/** Whether a series has so few values (two or fewer) that it shows as points, not a line. */
function fewPoints(values: ArrayLike<number | null | undefined> | undefined): boolean {
  if (!values) return false;
  let count = 0;
  for (let i = 0; i < values.length; i++) if (values[i] != null && ++count > 2) return false;
  return true;
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
export function parseCompare(resp: unknown, ids: string[]): { runs: ComparedRun[]; diff: ConfigDiff[]; common: string | null } {
  let rawRuns: unknown = isRecord(resp) ? resp.runs : resp;
  if (isRecord(rawRuns)) rawRuns = Object.entries(rawRuns).map(([id, r]) => (isRecord(r) ? { id, ...r } : { id, metrics: r }));
  const runs: ComparedRun[] = (Array.isArray(rawRuns) ? rawRuns : []).filter(isRecord).map((r, i) => {
    const id = String(r.id ?? r.run_id ?? ids[i] ?? `run ${i + 1}`);
    const exp = isRecord(r.experiment) ? r.experiment : null;
    const name = String(r.name ?? r.experiment_name ?? exp?.name ?? id);
    return { id, name, points: toPoints(r.metrics ?? r.history ?? r.points), status: String(r.status ?? r.state ?? "") };
  });
  const rawDiff = isRecord(resp) ? resp.diff ?? resp.config_diff ?? resp.differences : null;
  const diff: ConfigDiff[] = Array.isArray(rawDiff)
    ? rawDiff.filter(isRecord).map((d) => ({ path: String(d.path ?? ""), values: Array.isArray(d.values) ? d.values : [] }))
    : [];
  // same-named runs (a lesson's runs all carry the preset's name) are told apart by what differs
  const seen = new Map<string, number>();
  for (const r of runs) seen.set(r.name, (seen.get(r.name) ?? 0) + 1);
  // all of one name: the name goes above the chart once, each run is labelled by what differs
  const common = seen.size === 1 && runs.length > 1 ? runs[0]!.name : null;
  runs.forEach((r, i) => {
    if ((seen.get(r.name) ?? 0) < 2) return;
    const what = differences(diff, i);
    const tag = what !== "" ? what : r.id.slice(0, 6);
    r.name = common !== null ? tag : `${r.name} · ${tag}`;
  });
  return { runs, diff, common };
}

const MAX_LABEL_PARTS = 2; // settings named in a run's label: more makes the legend unreadable

/**
 * What sets run `i` apart, in words, from the diff's first settings: "weights from 90cebe, frozen
 * conv1, conv2" for transfer learning, "batch_size 32" for others; "" when the diff says nothing.
 */
export function differences(diff: ConfigDiff[], i: number): string {
  const parts: string[] = [];
  const value = (path: string): unknown => diff.find((d) => d.path === path)?.values[i];
  const paths = new Set(diff.map((d) => d.path));
  if ([...paths].some((p) => p.startsWith("train.init_from"))) {
    const run = value("train.init_from.run_id") ?? (isRecord(value("train.init_from")) ? (value("train.init_from") as Record<string, unknown>).run_id : undefined);
    parts.push(typeof run === "string" ? `weights from ${run.slice(0, 6)}` : "from scratch");
  }
  if (paths.has("train.freeze")) {
    const frozen = value("train.freeze");
    parts.push(Array.isArray(frozen) && frozen.length > 0 ? `frozen ${frozen.join(", ")}` : "all layers train");
  }
  for (const d of diff) {
    if (parts.length >= MAX_LABEL_PARTS) break;
    if (d.path === "name" || d.path.startsWith("train.init_from") || d.path === "train.freeze") continue;
    parts.push(`${d.path.split(".").slice(-1)[0]} ${fmtConfig(d.values[i])}`);
  }
  return parts.slice(0, MAX_LABEL_PARTS).join(", ");
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
  /** the user picked the metric: a new comparison keeps it */
  private metricChosen = false;
  /** the name every compared run shares (a lesson's runs), shown once beside the chart's title */
  private common: string | null = null;
  private readonly commonName = el("span", { class: "viz-card-sub" });
  private liveTimer: ReturnType<typeof setTimeout> | null = null;
  private inFlight: Promise<void> | null = null;
  private readonly metricSel: HTMLSelectElement;
  private readonly xSel: HTMLSelectElement;
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
    const metricSel = (this.metricSel = select(METRICS, this.metric, (v) => {
      this.metric = v as CompareMetric;
      this.metricChosen = true;
      this.redraw.request();
    }));
    const xSel = (this.xSel = select([["step", "steps"], ["epoch", "epochs"]], this.xKey, (v) => {
      this.xKey = v === "epoch" ? "epoch" : "step";
      this.redraw.request();
    }, "x axis"));
    const logT = toggle("log", false, (on) => {
      this.log = on;
      this.destroy();
      this.redraw.request();
    }, "logarithmic y axis");
    const chartCard = el("section", { class: "viz-card" }, [el("header", { class: "viz-card-head" }, [this.chartTitle, this.commonName, this.legend]), this.plot]);
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
        button("Last two", () => void this.compareLatest(2), { title: "compare the two newest runs (e.g. fine-tuned vs from scratch)", attrs: { "data-action": "latest" } }),
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

  /** The ids of the runs shown, in order. */
  shownIds(): string[] {
    return this.runs.map((r) => r.id);
  }

  /**
   * Load and show the comparison of these runs. The same runs again (a live refresh) update the
   * curves in place; other runs replace the comparison. While one of them trains, the overlay
   * keeps reloading it (see LIVE_REFRESH_MS).
   */
  async compare(ids: string[], opts: CompareOptions = {}): Promise<void> {
    if (ids.length === 0) return;
    const same = ids.join(",") === this.shownIds().join(",");
    if (same && this.inFlight !== null && opts.metric === undefined && opts.x === undefined) return this.inFlight;
    if (!same) this.chosen = new Set(ids);
    if (opts.metric !== undefined) {
      this.metric = opts.metric;
      this.metricChosen = true;
    }
    if (opts.x !== undefined) this.xKey = opts.x;
    this.metricSel.value = this.metric;
    this.xSel.value = this.xKey;
    this.loading = !same;
    this.error = null;
    this.redraw.request();
    const load = (async (): Promise<void> => {
      try {
        const resp = await this.ctx.api<unknown>(`/runs/compare?ids=${ids.map(encodeURIComponent).join(",")}`);
        const { runs, diff, common } = parseCompare(resp, ids);
        this.common = common;
        const isNew = runs.map((r) => r.id).join(",") !== this.shownIds().join(",");
        const ended = !isNew && this.live() && !runs.some((r) => LIVE_STATES.has(r.status));
        // a new comparison of runs still training: their loss moves at once, validation only once an epoch
        if (isNew && !this.metricChosen && runs.some((r) => LIVE_STATES.has(r.status))) this.metric = "train_loss";
        this.metricSel.value = this.metric;
        this.runs = runs;
        this.diff = diff;
        if (isNew) this.destroy();
        if (ended) void this.refreshRuns(); // the picker's "training" dots go out with the last run
      } catch (e) {
        this.error = e instanceof Error ? e.message : String(e);
      } finally {
        this.loading = false;
        this.buildPicker();
        this.redraw.request();
        this.scheduleLive();
      }
    })();
    this.inFlight = load;
    try {
      await load;
    } finally {
      if (this.inFlight === load) this.inFlight = null;
    }
  }

  /** Compare the `n` newest runs of the list (GET /runs lists the newest first), oldest first. */
  async compareLatest(n: number): Promise<void> {
    await this.refreshRuns();
    const ids = this.available.slice(0, n).map((r) => r.id).reverse();
    if (ids.length === 0) {
      this.error = "there are no runs to compare yet (press Train)";
      this.redraw.request();
      return;
    }
    await this.compare(ids);
  }

  /** True while a compared run trains (its curves still grow). */
  live(): boolean {
    return this.runs.some((r) => LIVE_STATES.has(r.status));
  }

  /** Reload a live comparison soon; only while the overlay is on screen (a hidden tab costs the server nothing). */
  private scheduleLive(): void {
    if (this.liveTimer !== null || !this.live()) return;
    this.liveTimer = setTimeout(() => {
      this.liveTimer = null;
      if (!this.live()) return;
      if (widthOf(this.root) > 0) void this.compare(this.shownIds());
      else this.scheduleLive();
    }, LIVE_REFRESH_MS);
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
          idx !== undefined ? el("i", { class: "viz-swatch box", style: { "--c": seriesColor(idx, p) } }) : null,
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
    this.chartTitle.textContent = this.live() ? `${metricName} · live` : metricName;
    this.root.dataset.live = String(this.live());
    this.commonName.textContent = this.common ?? "";
    this.root.dataset.runs = String(this.runs.length);
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
        // training curves are dense and noisy: thin lines keep the noise of each run readable under the others
        const dense = this.metric.startsWith("train");
        o.series = [{}, ...this.runs.map((r, i) => ({
          label: r.name,
          stroke: dense && this.runs.length > 1 ? withAlpha(seriesColor(i, p), 0.9) : seriesColor(i, p),
          width: dense ? 1.25 : 2,
          spanGaps: true,
          // validation points are few and each matters; a run with one or two points so far has no line to
          // draw yet, so its points are the curve (a race's runs that just started would be missing otherwise)
          points: { show: (u: uPlot, si: number) => this.metric.startsWith("val") || fewPoints(u.data[si]), size: 4,
                    fill: seriesColor(i, p) },
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
      const training = LIVE_STATES.has(r.status);
      // data-points: the points drawn for this run (the raw logged ones: nothing is averaged away)
      return el("span", { class: "viz-legend-item", attrs: { "data-run": r.id, "data-points": String(vals.length) } }, [
        el("i", { class: "viz-swatch", style: { "--c": seriesColor(i, p) } }),
        el("span", { class: "viz-legend-name", text: r.name }),
        el("b", { class: "viz-legend-value", text: summary }),
        training ? el("span", { class: "viz-good", text: "● training", title: "this run is still training: its curve grows" }) : null,
      ]);
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
    const head = el("tr", {}, [el("th", { text: "setting" }), ...this.runs.map((r, i) => el("th", {}, [el("i", { class: "viz-swatch box", style: { "--c": seriesColor(i, p) } }), ` ${r.name}`]))]);
    const rows = this.diff.map((d) =>
      el("tr", {}, [
        el("td", {}, [el("code", { text: d.path })]),
        ...this.runs.map((_, i) => {
          const v = d.values[i];
          const differs = i > 0 && JSON.stringify(v) !== JSON.stringify(d.values[0]);
          return el("td", { class: "num", text: fmtConfig(v), style: differs ? { background: withAlpha(seriesColor(i, p), tint) } : {} });
        }),
      ]),
    );
    this.diffTable.replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
  }
}
