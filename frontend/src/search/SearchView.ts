/**
 * The Search tab (lesson 21): random or grid search over the learning rate and the l2 strength
 * on a log scale, coarse then fine, as a set of short runs of the current network that share the
 * server's scheduler with everyone's runs (POST /api/searches; server/search_runner.py).
 *
 * - The form: strategy, both ranges, coarse trials and steps, an optional fine stage.
 * - Two scatters (validation accuracy against lr and against l2, log axes) and a sortable table
 *   of the trials; "Open best" shows the best trial's run in the page (the Runs tab's `openRun`),
 *   "Use best values" writes its lr and l2 into the document (one undo step).
 *
 * Where the data comes from: GET /api/searches/{id} every POLL_MS while the search runs is the
 * authority (trials, their run ids, statuses, scores, the fine ranges); in between, the page
 * follows each trial that is training over the existing websocket (`subscribe`, then `views {}`
 * so the trial computes no live views), so its point moves as its validation accuracy comes in.
 * main.ts hands this view every message of a trial run (`claims`) before the shown run's routing,
 * and tells it when the socket reconnected (`reconnected`), since subscriptions die with a socket.
 */

import type { Experiment } from "../generated/schema";
import type { ServerMessage } from "../protocol";
import type { View, ViewContext } from "../viewContext";
import { fmt, fmtPct } from "../viz/dom";
import {
  ACTIVE_SEARCH, LIVE_TRIAL, defaultForm, formProblems, shownAccuracy, sortTrials,
  type SearchForm, type SearchInfo, type SortKey, type TrialInfo,
} from "./model";
import { SearchScatter } from "./SearchScatter";
import "./search.css";

const POLL_MS = 700; // the search's state while it runs: trials start and end several times a second

/** What the Search tab needs from the page around it. */
export interface SearchHost {
  /** the document the trials vary (the editor's) */
  experiment(): Experiment;
  /** show a run in the whole page (the Runs tab's "open") */
  openRun(runId: string): void;
  /** write a trial's values into the document (undoable) */
  useValues(lr: number, l2: number): void;
  toast(message: string, kind?: "info" | "error"): void;
}

interface Field {
  input: HTMLInputElement;
  read(): number;
}

const COLUMNS: [SortKey, string, string][] = [
  ["index", "#", "trial number, in the order planned"],
  ["stage", "stage", "coarse (wide ranges, short runs) or fine (narrowed ranges, longer runs)"],
  ["lr", "lr", "learning rate"],
  ["l2", "l2", "l2 regularization strength (weight decay)"],
  ["steps", "steps", "optimizer steps: done / planned"],
  ["status", "status", ""],
  ["score", "val acc", "best validation accuracy of the run (live while it trains)"],
];

export class SearchView implements View {
  private search: SearchInfo | null = null;
  private form: SearchForm;
  private readonly fields = new Map<string, Field>();
  private readonly strategy: HTMLSelectElement;
  private readonly fineOn: HTMLInputElement;
  private readonly startBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly openBestBtn: HTMLButtonElement;
  private readonly useBestBtn: HTMLButtonElement;
  private readonly statusLine: HTMLElement;
  private readonly errorLine: HTMLElement;
  private readonly bestLine: HTMLElement;
  private readonly scatters: SearchScatter[];
  private readonly tbody: HTMLTableSectionElement;
  private readonly headCells = new Map<SortKey, HTMLTableCellElement>();
  private sortKey: SortKey = "index";
  private sortDescending = false;
  private selected: number | null = null;
  /** trial runs this page follows over the websocket */
  private readonly subscribed = new Set<string>();
  /** run id -> trial index, for the messages main.ts hands over */
  private readonly trialOfRun = new Map<string, number>();
  private pollTimer: ReturnType<typeof setTimeout> | null = null;
  private polling = false;
  private busy = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly ctx: ViewContext,
    private readonly host: SearchHost,
  ) {
    this.form = defaultForm(host.experiment());
    root.classList.add("search-view");

    this.strategy = el("select", { name: "strategy", title: "random: every trial draws both values; grid: an a x b grid in log space" });
    for (const [value, text] of [["random", "random search"], ["grid", "grid search"]] as const) {
      const option = el("option", { value });
      option.textContent = text;
      this.strategy.append(option);
    }
    this.fineOn = el("input", { type: "checkbox", name: "fine_on", title: "then search fine: narrowed ranges around the best coarse trials, longer runs" });
    this.fineOn.addEventListener("change", () => this.syncFormState());
    this.startBtn = button("Start search", "search-start", "btn primary", () => void this.start());
    this.stopBtn = button("Stop", "search-stop", "btn", () => void this.stop());
    this.openBestBtn = button("Open best", "search-open-best", "btn", () => this.openBest());
    this.useBestBtn = button("Use best values", "search-use-best", "btn", () => this.useBest());
    this.openBestBtn.title = "show the best trial's run in the page: its curves, views and network";
    this.useBestBtn.title = "write the best trial's learning rate and l2 into the document (Ctrl+Z undoes it)";
    this.statusLine = el("div", { class: "search-status", "aria-live": "polite" });
    this.errorLine = el("div", { class: "search-error", role: "alert" });
    this.bestLine = el("div", { class: "search-best" });

    const row = (...children: Node[]): HTMLElement => {
      const div = el("div", { class: "search-row" });
      div.append(...children);
      return div;
    };
    const formEl = el("form", { class: "search-form" });
    formEl.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.start();
    });
    formEl.append(
      row(label("Strategy", this.strategy),
        label("lr from", this.field("lr_low", "smallest learning rate tried")),
        label("to", this.field("lr_high", "largest learning rate tried")),
        label("l2 from", this.field("l2_low", "smallest l2 strength tried")),
        label("to", this.field("l2_high", "largest l2 strength tried"))),
      row(label("Trials", this.field("trials", "coarse trials (2 to 64)", true)),
        label("steps each", this.field("steps", "optimizer steps per coarse trial", true)),
        label("then fine", this.fineOn),
        label("trials", this.field("fine_trials", "fine trials in the narrowed ranges", true)),
        label("steps each", this.field("fine_steps", "optimizer steps per fine trial", true)),
        this.startBtn, this.stopBtn),
    );
    const intro = el("p", { class: "muted search-intro" });
    intro.textContent = "Each trial is a short run of the current network with its own learning rate and l2, drawn on a log scale. "
      + "Trials share the server fairly with everyone's runs, a few at a time; the rest wait their turn.";

    this.scatters = [
      new SearchScatter("lr", "learning rate", (i) => this.select(i)),
      new SearchScatter("l2", "l2 strength", (i) => this.select(i)),
    ];
    const plots = el("div", { class: "search-plots" });
    plots.append(...this.scatters.map((sc) => sc.el));
    const legend = el("div", { class: "search-legend muted" });
    for (const [cls, text] of [["coarse", "coarse trial"], ["fine", "fine trial"], ["live", "training now"], ["diverged", "diverged"], ["band", "fine range"], ["best", "best"]] as const) {
      const item = el("span", { class: `key ${cls}` });
      item.textContent = text;
      legend.append(item);
    }

    const table = el("table", { class: "search-trials" });
    const head = el("tr");
    for (const [key, text, hint] of COLUMNS) {
      const th = el("th", { "data-sort": key, title: hint ? `${hint} (click to sort)` : "click to sort", scope: "col" });
      th.textContent = text;
      th.addEventListener("click", () => this.sortBy(key));
      this.headCells.set(key, th);
      head.append(th);
    }
    head.append(el("th", { scope: "col" }));
    const thead = el("thead");
    thead.append(head);
    this.tbody = el("tbody");
    table.append(thead, this.tbody);
    const tableBox = el("div", { class: "search-table-box" });
    tableBox.append(table);

    const actions = row(this.statusLine, this.bestLine, this.openBestBtn, this.useBestBtn);
    actions.classList.add("search-actions");
    root.append(intro, formEl, this.errorLine, actions, plots, legend, tableBox);
    this.writeForm();
    this.render();
    void this.loadLatest();
  }

  // ---- the View contract: the shown run's messages are not the search's -------------

  onMessage(_msg: ServerMessage): void {}

  reset(): void {}

  resize(): void {
    this.render();
  }

  // ---- what main.ts calls ---------------------------------------------------------------

  /**
   * A message of one of this search's trial runs: taken here. True when the page's own routing
   * should not see it (it is not the run the page shows).
   */
  claims(msg: ServerMessage, shownRun: string | null): boolean {
    const runId = msg.run_id;
    if (!runId || !this.trialOfRun.has(runId)) return false;
    const trial = this.search?.trials[this.trialOfRun.get(runId) ?? -1];
    if (trial && !isEnded(trial)) {
      if (msg.type === "metrics") {
        trial.step = Math.max(trial.step, msg.step);
        if (typeof msg.val_acc === "number") trial.val_acc = msg.val_acc;
        if (trial.status === "queued") trial.status = "running";
        this.ctx.requestFrame(this.redraw);
      } else if (msg.type === "status" && msg.state === "running" && trial.status === "queued") {
        trial.status = "running";
        this.ctx.requestFrame(this.redraw);
      } else if (msg.type === "final") {
        this.schedulePoll(0); // the server has its score now
      }
    }
    return runId !== shownRun;
  }

  /** The socket reconnected: its subscriptions are gone; follow the live trials again. */
  reconnected(): void {
    this.subscribed.clear();
    this.syncSubscriptions();
  }

  /**
   * Fill the form for a document (a lesson's preset): the lecture's ranges, trials as long as the
   * document's own run. `start` starts the search right away.
   */
  prefill(doc: Experiment, options: { start?: boolean; form?: Partial<SearchForm> } = {}): void {
    this.form = { ...defaultForm(doc), ...(options.form ?? {}) };
    this.writeForm();
    if (options.start) void this.start(doc);
  }

  /** The search shown (tests and the console). */
  get current(): SearchInfo | null {
    return this.search;
  }

  // ---- the form --------------------------------------------------------------------------

  private field(name: string, title: string, integer = false): HTMLInputElement {
    const input = el("input", { type: "text", name, inputmode: integer ? "numeric" : "decimal", title, spellcheck: "false", size: "7" });
    this.fields.set(name, { input, read: () => (input.value.trim() === "" ? Number.NaN : Number(input.value)) });
    input.addEventListener("input", () => this.errorLine.replaceChildren());
    return input;
  }

  private writeForm(): void {
    const f = this.form;
    const set = (name: string, v: number | null): void => {
      const field = this.fields.get(name);
      if (field) field.input.value = v === null ? "" : formNumber(v);
    };
    this.strategy.value = f.strategy;
    set("lr_low", f.lr.low);
    set("lr_high", f.lr.high);
    set("l2_low", f.l2.low);
    set("l2_high", f.l2.high);
    set("trials", f.trials);
    set("steps", f.steps);
    this.fineOn.checked = f.fine_trials > 0;
    set("fine_trials", f.fine_trials > 0 ? f.fine_trials : 4);
    set("fine_steps", f.fine_steps ?? 3 * f.steps);
    this.syncFormState();
  }

  private readForm(): SearchForm {
    const v = (name: string): number => this.fields.get(name)?.read() ?? Number.NaN;
    const fine = this.fineOn.checked;
    return {
      strategy: this.strategy.value === "grid" ? "grid" : "random",
      lr: { low: v("lr_low"), high: v("lr_high") },
      l2: { low: v("l2_low"), high: v("l2_high") },
      trials: v("trials"),
      steps: v("steps"),
      fine_trials: fine ? v("fine_trials") : 0,
      fine_steps: fine ? v("fine_steps") : null,
    };
  }

  private syncFormState(): void {
    const running = this.search !== null && ACTIVE_SEARCH.has(this.search.status);
    for (const { input } of this.fields.values()) input.disabled = running;
    this.strategy.disabled = running;
    this.fineOn.disabled = running;
    for (const name of ["fine_trials", "fine_steps"]) {
      const f = this.fields.get(name);
      if (f) f.input.disabled = running || !this.fineOn.checked;
    }
    this.startBtn.disabled = running || this.busy;
    this.stopBtn.disabled = !running || this.search?.status === "stopping";
    const best = this.search?.best ?? null;
    this.openBestBtn.disabled = !best?.run_id;
    this.useBestBtn.disabled = !best;
  }

  // ---- start, stop, follow --------------------------------------------------------------

  private async start(doc: Experiment = this.host.experiment()): Promise<void> {
    const form = this.readForm();
    const problems = formProblems(form);
    if (problems.length) {
      this.errorLine.textContent = problems.join("; ");
      return;
    }
    this.errorLine.replaceChildren();
    this.busy = true;
    this.syncFormState();
    try {
      const search = await this.ctx.api<SearchInfo>("/searches", { method: "POST", body: { ...form, experiment: doc } as unknown as BodyInit });
      this.form = form;
      this.selected = null;
      this.show(search);
    } catch (err) {
      this.errorLine.textContent = `The search did not start: ${(err as Error).message}`;
    } finally {
      this.busy = false;
      this.syncFormState();
    }
  }

  private async stop(): Promise<void> {
    if (!this.search) return;
    try {
      this.show(await this.ctx.api<SearchInfo>(`/searches/${encodeURIComponent(this.search.id)}`, { method: "DELETE" }));
    } catch (err) {
      this.host.toast(`could not stop the search: ${(err as Error).message}`, "error");
    }
  }

  /** After a reload: the session's newest search, if any. */
  private async loadLatest(): Promise<void> {
    try {
      const list = await this.ctx.api<SearchInfo[]>("/searches");
      const newest = list[0];
      if (newest && this.search === null) this.show(await this.ctx.api<SearchInfo>(`/searches/${encodeURIComponent(newest.id)}`));
    } catch {
      // a server without searches: the tab still offers to start one, and says so if that fails
    }
  }

  private show(search: SearchInfo): void {
    // a trial this page follows may be ahead of the server's last answer: keep its newer live values
    const before = this.search?.id === search.id ? this.search : null;
    for (const trial of search.trials) {
      const old = before?.trials[trial.index];
      if (old && LIVE_TRIAL.has(trial.status) && old.step > trial.step) {
        trial.step = old.step;
        trial.val_acc = old.val_acc;
      }
    }
    this.search = search;
    this.trialOfRun.clear();
    for (const t of search.trials) if (t.run_id) this.trialOfRun.set(t.run_id, t.index);
    this.syncSubscriptions();
    this.syncFormState();
    this.render();
    if (ACTIVE_SEARCH.has(search.status)) this.schedulePoll(POLL_MS);
  }

  private schedulePoll(ms: number): void {
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.poll(), ms);
  }

  private async poll(): Promise<void> {
    this.pollTimer = null;
    const search = this.search;
    if (!search || this.polling) return;
    this.polling = true;
    try {
      this.show(await this.ctx.api<SearchInfo>(`/searches/${encodeURIComponent(search.id)}`));
    } catch (err) {
      this.statusLine.textContent = `lost track of the search: ${(err as Error).message}`;
      if (ACTIVE_SEARCH.has(search.status)) this.schedulePoll(4 * POLL_MS);
    } finally {
      this.polling = false;
    }
  }

  /** Follow the trials that train; let go of those that ended (unless the page shows that run). */
  private syncSubscriptions(): void {
    const live = new Set((this.search?.trials ?? []).filter((t) => t.run_id && LIVE_TRIAL.has(t.status)).map((t) => t.run_id as string));
    for (const runId of live) {
      if (this.subscribed.has(runId)) continue;
      this.subscribed.add(runId);
      this.ctx.send({ cmd: "subscribe", run_id: runId, after_seq: 0 });
      this.ctx.send({ cmd: "views", run_id: runId, views: {} }); // metrics and final only: no probes for a trial
    }
    for (const runId of [...this.subscribed]) {
      if (live.has(runId)) continue;
      this.subscribed.delete(runId);
      if (runId !== this.ctx.runId()) this.ctx.send({ cmd: "unsubscribe", run_id: runId });
    }
  }

  // ---- best, selection, sorting ---------------------------------------------------------

  private openBest(): void {
    const runId = this.search?.best?.run_id;
    if (runId) this.host.openRun(runId);
  }

  private useBest(): void {
    const best = this.search?.best;
    if (!best) return;
    this.host.useValues(best.lr, best.l2);
    this.host.toast(`the document now trains with lr ${fmt(best.lr)} and l2 ${fmt(best.l2)} (Ctrl+Z undoes it)`);
  }

  private select(index: number): void {
    this.selected = this.selected === index ? null : index;
    this.render();
    this.tbody.querySelector(`tr[data-index="${index}"]`)?.scrollIntoView({ block: "nearest" });
  }

  private sortBy(key: SortKey): void {
    if (this.sortKey === key) this.sortDescending = !this.sortDescending;
    else {
      this.sortKey = key;
      this.sortDescending = key === "score"; // the best accuracy first
    }
    this.render();
  }

  // ---- drawing -------------------------------------------------------------------------------

  private readonly redraw = (): void => this.render();

  private render(): void {
    const search = this.search;
    const trials = search?.trials ?? [];
    const best = search?.best?.index ?? null;
    this.root.dataset.status = search?.status ?? "none";
    this.root.dataset.trials = String(trials.length);
    this.statusLine.textContent = search ? statusText(search) : "No search yet: set the ranges and press Start search.";
    this.bestLine.textContent = search?.best
      ? `best: trial ${search.best.index + 1}, lr ${fmt(search.best.lr)}, l2 ${fmt(search.best.l2)}: ${fmtPct(search.best.best_val_acc)}`
      : "";
    for (const scatter of this.scatters) {
      const param = scatter.el.dataset.param === "l2" ? "l2" : "lr";
      const coarse = search?.spaces.coarse[param] ?? [this.form[param].low, this.form[param].high];
      scatter.update({ trials, range: coarse, fine: search?.spaces.fine?.[param] ?? null, best, selected: this.selected });
    }
    for (const [key, th] of this.headCells) {
      th.setAttribute("aria-sort", key === this.sortKey ? (this.sortDescending ? "descending" : "ascending") : "none");
    }
    const rows = sortTrials(trials, this.sortKey, this.sortDescending).map((t) => this.row(t, t.index === best));
    this.tbody.replaceChildren(...rows);
  }

  private row(t: TrialInfo, isBest: boolean): HTMLTableRowElement {
    const tr = el("tr", { "data-index": String(t.index), "data-status": t.status, class: [isBest ? "best" : "", t.index === this.selected ? "selected" : ""].join(" ").trim() });
    tr.addEventListener("click", () => this.select(t.index));
    const acc = shownAccuracy(t);
    const cells: string[] = [
      `${t.index + 1}${isBest ? " ★" : ""}`,
      t.stage,
      fmt(t.lr),
      fmt(t.l2),
      t.status === "running" || t.status === "stopped" ? `${t.step} / ${t.steps}` : String(t.steps),
      t.status,
      acc === null ? "–" : fmtPct(acc),
    ];
    for (const [i, text] of cells.entries()) {
      const td = el("td");
      td.textContent = text;
      if (i === 5) {
        td.className = `status ${t.status}`;
        if (t.message) td.title = t.message;
      }
      if (i === 6 && t.best_val_acc === null && acc !== null) td.className = "live"; // not final yet
      tr.append(td);
    }
    const open = el("td");
    if (t.run_id) {
      const b = button("open", "", "btn small", () => this.host.openRun(t.run_id as string));
      b.title = "show this trial's run in the page";
      b.addEventListener("click", (e) => e.stopPropagation());
      open.append(b);
    }
    tr.append(open);
    return tr;
  }
}

/** A number as the form shows it: 1e-6 rather than 0.000001, so a log-scale end fits its box. */
function formNumber(v: number): string {
  return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential().replace(/\.?0*e/, "e").replace("e+", "e") : String(v);
}

function isEnded(t: TrialInfo): boolean {
  return !LIVE_TRIAL.has(t.status) && t.status !== "pending" && t.status !== "waiting";
}

/** One line: how far the search is; the server's own words when it did not simply finish. */
function statusText(search: SearchInfo): string {
  const count = (s: string): number => search.trials.filter((t) => t.status === s).length;
  const live = count("running") + count("queued");
  const skipped = count("skipped");
  const done = search.trials.filter(isEnded).length - skipped;
  const diverged = count("diverged");
  let text = `${search.spec.strategy} search ${search.status}: ${done} of ${search.trials.length} trials done`;
  if (diverged) text += `, ${diverged} diverged`;
  if (skipped) text += `, ${skipped} never started`;
  if (ACTIVE_SEARCH.has(search.status)) text += `, ${live} training (at most ${search.parallel} at once). ${search.message}`;
  else if (search.status !== "finished") text += `. ${search.message}`;
  return text;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== "") e.setAttribute(k, v);
  return e;
}

function button(text: string, id: string, cls: string, onClick: () => void): HTMLButtonElement {
  const b = el("button", { type: "button", class: cls, id });
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

function label(text: string, control: HTMLElement): HTMLLabelElement {
  const l = el("label", { class: "search-field" });
  const span = el("span");
  span.textContent = text;
  l.append(span, control);
  return l;
}
