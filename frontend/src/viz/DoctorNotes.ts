/**
 * The training doctor's notes: `hint` messages as dismissible notes, coloured by
 * severity, newest first. A hint repeated with the same code updates its note
 * (and counts the repeats) instead of stacking. "Show evidence" calls
 * `options.onShowChart(chart)` so the shell can switch to the tab with that chart.
 */

import type { HintMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, el, emptyState, fmt, fmtPct, shortParam, toNum } from "./dom";

export interface DoctorNotesOptions {
  /** called with a hint's `chart` (e.g. "loss", "activations") when "show evidence" is clicked */
  onShowChart?: (chart: string) => void;
  /** at most this many notes are kept (default 30) */
  max?: number;
}

interface Note {
  hint: HintMsg;
  count: number;
}

const ICON: Record<string, string> = { info: "i", warning: "!", error: "×" };

export class DoctorNotes {
  private readonly redraw: Redraw;
  private notes = new Map<string, Note>();
  private dismissed = new Set<string>();
  private readonly list = el("div", { class: "viz-notes" });
  private readonly empty: HTMLElement;
  private readonly max: number;
  private readonly onShowChart: ((chart: string) => void) | undefined;
  private readonly header = el("div", { class: "viz-toolbar" });
  /** the shown run has started training (a status past queued, or metrics): silence means "healthy" */
  private trained = false;

  constructor(root: HTMLElement, ctx: ViewContext, opts: DoctorNotesOptions = {}) {
    this.onShowChart = opts.onShowChart;
    this.max = opts.max ?? 30;
    this.redraw = new Redraw(ctx, () => this.draw());
    this.empty = emptyState("No problems spotted", "The doctor watches the loss, activations and gradients while you train, and writes here when something looks wrong.");
    root.classList.add("viz-view", "viz-doctor");
    root.replaceChildren(this.header, this.empty, this.list);
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type === "status") {
      if (msg.state !== "queued" && msg.state !== "starting") this.trained = true;
      this.redraw.request();
      return;
    }
    if (msg.type === "metrics" && !this.trained) {
      this.trained = true;
      this.redraw.request();
    }
    if (msg.type !== "hint") return;
    const prev = this.notes.get(msg.code);
    this.notes.delete(msg.code); // re-insert: newest last in map order
    this.notes.set(msg.code, { hint: msg, count: (prev?.count ?? 0) + 1 });
    while (this.notes.size > this.max) {
      const oldest = this.notes.keys().next().value;
      if (oldest === undefined) break;
      this.notes.delete(oldest);
    }
    this.redraw.request();
  }

  reset(): void {
    this.notes.clear();
    this.dismissed.clear();
    this.trained = false;
    this.redraw.request();
  }

  /** Number of notes not dismissed (the shell may show it as a badge on its tab). */
  count(): number {
    return [...this.notes.keys()].filter((k) => !this.dismissed.has(k)).length;
  }

  private dismiss(code: string): void {
    this.dismissed.add(code);
    this.redraw.request();
  }

  private draw(): void {
    const visible = [...this.notes.values()].filter((n) => !this.dismissed.has(n.hint.code)).reverse();
    const hidden = this.notes.size - visible.length;
    this.empty.hidden = visible.length > 0;
    this.list.hidden = visible.length === 0;
    const counts = { error: 0, warning: 0, info: 0 };
    for (const n of visible) counts[n.hint.severity] = (counts[n.hint.severity] ?? 0) + 1;
    this.header.replaceChildren(
      ...(["error", "warning", "info"] as const)
        .filter((s) => counts[s] > 0)
        .map((s) => el("span", { class: `viz-sev-count sev-${s}`, text: `${counts[s]} ${s === "info" ? "tip" : s}${counts[s] === 1 ? "" : "s"}` })),
      el("span", { class: "viz-spacer" }),
      ...(hidden > 0
        ? [button(`show ${hidden} dismissed`, () => {
          this.dismissed.clear();
          this.redraw.request();
        })]
        : []),
    );
    this.header.hidden = visible.length === 0 && hidden === 0;
    this.empty.querySelector(".viz-empty-title")!.textContent = this.trained || this.notes.size > 0 ? "No problems spotted" : "Start training: the doctor will comment here";
    this.list.replaceChildren(...visible.map((n) => this.noteEl(n)));
  }

  private noteEl(n: Note): HTMLElement {
    const h = n.hint;
    const sev = h.severity in ICON ? h.severity : "info";
    const actions: (HTMLElement | null)[] = [];
    if (h.chart !== null && this.onShowChart !== undefined) {
      const chart = h.chart;
      const cb = this.onShowChart;
      actions.push(el("a", { class: "viz-link", text: "show evidence →", attrs: { href: "#", role: "button" }, on: { click: (e: MouseEvent) => { e.preventDefault(); cb(chart); } } }));
    }
    const ev = this.evidence(h.evidence, h.code);
    return el("article", { class: `viz-note-card sev-${sev}`, attrs: { role: "status" } }, [
      el("span", { class: "viz-sev-icon", text: ICON[sev] ?? "i", attrs: { "aria-label": sev } }),
      el("div", { class: "viz-note-main" }, [
        el("div", { class: "viz-note-msg", text: h.message }),
        ev,
        el("div", { class: "viz-note-foot" }, [
          el("code", { class: "viz-note-code", text: h.code }),
          n.count > 1 ? el("span", { class: "viz-note", text: `×${n.count}` }) : null,
          el("span", { class: "viz-note", text: `at ${fmtTime(h.t)}` }),
          el("span", { class: "viz-spacer" }),
          ...actions,
        ]),
      ]),
      button("×", () => this.dismiss(h.code), { class: "viz-close", title: "dismiss" }),
    ]);
  }

  /** Evidence as compact "key value" chips (objects), a line (strings) or nothing. */
  private evidence(ev: unknown, code: string): HTMLElement | null {
    if (ev === null || ev === undefined || ev === "") return null;
    if (typeof ev === "string" || typeof ev === "number") return el("div", { class: "viz-note-evidence", text: String(ev) });
    if (Array.isArray(ev)) return el("div", { class: "viz-note-evidence", text: ev.map((v) => fmtEvidence(v)).join(", ") });
    if (typeof ev === "object") {
      const chips = evidenceChips(ev as Record<string, unknown>, code).map(([k, v]) =>
        el("span", { class: "viz-chip" }, [el("span", { text: k }), el("b", { text: v })]));
      return chips.length > 0 ? el("div", { class: "viz-note-evidence" }, chips) : null;
    }
    return null;
  }
}

/** Series whose values are shares of units (shown as percentages). */
const FRACTION_SERIES = new Set(["dead_fraction", "saturated_fraction"]);
/** Evidence keys that are shares whatever the series. */
const FRACTION_KEYS = new Set(["progress", "plateau_change"]);
const MAX_CHIPS = 8;

/**
 * What a hint's `value` measures when it is not simply its series' value (server/probes/doctor.py):
 * lr_too_low measures the loss's relative change, an overfitting hint on `val_acc` the train/val gap.
 */
function valueMeaning(code: string, series: string | null): { label: string; fraction: boolean } {
  if (code === "lr_too_low") return { label: "loss change", fraction: true };
  if (code === "initial_loss") return { label: "initial loss", fraction: false };
  if (code === "overfitting" && series === "val_acc") return { label: "accuracy gap", fraction: true };
  if (series !== null) return { label: humanize(series), fraction: FRACTION_SERIES.has(series) };
  return { label: "value", fraction: false };
}

/**
 * The doctor's evidence (always `series`, the chart measured, and `value`, the measurement,
 * plus context such as `threshold`, `step`, `lr`, `layer`) as [label, text] chips. The value
 * comes first, labelled with what it measures ("train loss 2.3e5", not "series train_loss"
 * + "value"); values that were not measured (null) are left out rather than shown as "–";
 * the wire's "nan"/"inf" strings read as NaN/∞; shares read as percentages.
 */
export function evidenceChips(ev: Record<string, unknown>, code = ""): [string, string][] {
  const series = typeof ev.series === "string" ? ev.series : null;
  const meaning = valueMeaning(code, series);
  const chips: [string, string][] = [];
  const put = (label: string, raw: unknown, fraction: boolean): void => {
    chips.push([label, fraction && toNum(raw) !== null ? fmtPct(raw as number | string) : fmtEvidence(raw)]);
  };
  if (ev.value !== null && ev.value !== undefined) put(meaning.label, ev.value, meaning.fraction);
  for (const [key, raw] of Object.entries(ev)) {
    if (key === "series" || key === "value" || raw === null || raw === undefined) continue;
    put(humanize(key), raw, FRACTION_KEYS.has(key) || (key === "threshold" && meaning.fraction));
  }
  return chips.slice(0, MAX_CHIPS);
}

function humanize(key: string): string {
  return key.replace(/_/g, " ");
}

/** One evidence value as text: numbers (also "nan"/"inf" from the wire), parameter names, short lists. */
function fmtEvidence(v: unknown): string {
  if (toNum(v) !== null) return fmt(v as number | string);
  if (typeof v === "string") return v.startsWith("blocks.") ? shortParam(v) : v.replace(/_/g, " ");
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return `[${v.slice(0, 4).map((x) => fmtEvidence(x)).join(", ")}${v.length > 4 ? ", …" : ""}]`;
  return JSON.stringify(v);
}

function fmtTime(t: number): string {
  if (!Number.isFinite(t)) return "–";
  const m = Math.floor(t / 60);
  const s = Math.floor(t % 60);
  return m > 0 ? `${m}m ${String(s).padStart(2, "0")}s` : `${t.toFixed(1)} s`;
}
