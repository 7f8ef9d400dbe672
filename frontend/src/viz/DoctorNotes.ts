/**
 * The training doctor's notes: `hint` messages as dismissible notes, coloured by
 * severity, newest first. A hint repeated with the same code updates its note
 * (and counts the repeats) instead of stacking. "Show evidence" calls
 * `options.onShowChart(chart)` so the shell can switch to the tab with that chart.
 */

import type { HintMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, el, emptyState, fmt, shortParam } from "./dom";

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
  private running = false;

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
      this.running = msg.state === "running";
      this.redraw.request();
      return;
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
    this.running = false;
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
    this.empty.querySelector(".viz-empty-title")!.textContent = this.running || this.notes.size > 0 ? "No problems spotted" : "Start training: the doctor will comment here";
    this.list.replaceChildren(...visible.map((n) => this.noteEl(n)));
  }

  private noteEl(n: Note): HTMLElement {
    const h = n.hint;
    const sev = h.severity in ICON ? h.severity : "info";
    const actions: (HTMLElement | null)[] = [];
    if (h.chart !== null && h.chart !== "" && this.onShowChart !== undefined) {
      const chart = h.chart;
      const cb = this.onShowChart;
      actions.push(el("a", { class: "viz-link", text: "show evidence →", attrs: { href: "#", role: "button" }, on: { click: (e: MouseEvent) => { e.preventDefault(); cb(chart); } } }));
    }
    const ev = this.evidence(h.evidence);
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
  private evidence(ev: unknown): HTMLElement | null {
    if (ev === null || ev === undefined || ev === "") return null;
    if (typeof ev === "string" || typeof ev === "number") return el("div", { class: "viz-note-evidence", text: String(ev) });
    if (Array.isArray(ev)) return el("div", { class: "viz-note-evidence", text: ev.map((v) => (typeof v === "number" ? fmt(v) : JSON.stringify(v))).join(", ") });
    if (typeof ev === "object") {
      const chips = Object.entries(ev as Record<string, unknown>).slice(0, 8).map(([k, v]) =>
        el("span", { class: "viz-chip" }, [el("span", { text: k.replace(/_/g, " ") }), el("b", { text: v === null || v === undefined ? "–" : typeof v === "number" ? fmt(v) : typeof v === "string" && v.startsWith("blocks.") ? shortParam(v) : Array.isArray(v) ? `[${v.slice(0, 4).map((x) => (typeof x === "number" ? fmt(x) : String(x))).join(", ")}${v.length > 4 ? ", …" : ""}]` : String(v) })]),
      );
      return el("div", { class: "viz-note-evidence" }, chips);
    }
    return null;
  }
}

function fmtTime(t: number): string {
  if (!Number.isFinite(t)) return "–";
  const m = Math.floor(t / 60);
  const s = Math.floor(t % 60);
  return m > 0 ? `${m}m ${String(s).padStart(2, "0")}s` : `${t.toFixed(1)} s`;
}
