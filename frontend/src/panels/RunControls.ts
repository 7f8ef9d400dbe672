/**
 * Start / Pause / Step / Stop, the training speed (max, 100, 10 or 1 steps per second: the
 * `speed` command) and the status line (queued position, step of total, examples/s, why it
 * stopped), with a thin progress bar for runs that have an end.
 */

import { compact, h, num } from "../dom";
import { SPEEDS } from "../live";
import type { RunSnapshot } from "../run";
import type { SocketStatus } from "../socket";

export interface RunActions {
  start(): void;
  pause(): void;
  resume(): void;
  step(): void;
  stop(): void;
  /** at most `stepsPerS` optimizer steps per second; null = as fast as the machine goes */
  speed(stepsPerS: number | null): void;
}

// short: the menu sits in the crowded top bar, next to Step; its tooltip says "steps per second"
const speedLabel = (v: number | null): string => (v === null ? "max" : `${v.toLocaleString("en-US")}/s`);
const speedValue = (v: number | null): string => (v === null ? "max" : String(v));

/** The run's total steps from its summary; null for a run that trains until stopped (or before the summary). */
export function totalSteps(snap: RunSnapshot | null): number | null {
  const total = (snap?.summary as { total_steps?: number | null } | null | undefined)?.total_steps;
  return typeof total === "number" && total > 0 ? total : null;
}

const STOP_REASONS: Record<string, string> = {
  finished: "finished",
  non_finite: "stopped: the loss became NaN/inf",
  exploded: "stopped: the loss exploded",
  early_stopping: "early stopping",
  stopped: "stopped",
};

export class RunControls {
  readonly el: HTMLElement;
  private startBtn: HTMLButtonElement;
  private pauseBtn: HTMLButtonElement;
  private stepBtn: HTMLButtonElement;
  private stopBtn: HTMLButtonElement;
  private speedSelect: HTMLSelectElement;
  private speedAvailable = true;
  private chosenSpeed: number | null = null;
  private progress: HTMLElement;
  private status: HTMLElement;
  private dot: HTMLElement;
  private socketBadge: HTMLElement;
  private snap: RunSnapshot | null = null;
  private valid = true;

  constructor(private readonly actions: RunActions) {
    // Buttons give the focus back after a click: Space then means pause/resume, not "press Restart again".
    const act = (fn: () => void) => (e: Event) => {
      (e.currentTarget as HTMLElement).blur();
      fn();
    };
    this.startBtn = h("button.btn.primary#start", { type: "button", title: "start training (Ctrl+Enter)", onclick: act(() => this.actions.start()) }, "▶ Train");
    this.pauseBtn = h("button.btn#pause", { type: "button", title: "pause / resume (Space)", onclick: act(() => this.togglePause()) }, "❚❚ Pause");
    this.stepBtn = h("button.btn#step", { type: "button", title: "one training step (while paused)", onclick: act(() => this.actions.step()) }, "Step");
    this.stopBtn = h("button.btn#stop", { type: "button", title: "stop the run", onclick: act(() => this.actions.stop()) }, "■ Stop");
    this.speedSelect = h("select#speed.speed-select", { name: "speed", "aria-label": "training speed" },
      SPEEDS.map((v) => h("option", { value: speedValue(v) }, speedLabel(v))));
    this.speedSelect.addEventListener("change", () => {
      this.chosenSpeed = this.speedSelect.value === "max" ? null : Number(this.speedSelect.value);
      this.speedSelect.blur();
      this.actions.speed(this.chosenSpeed);
      this.render();
    });
    this.dot = h("span.state-dot");
    this.status = h("span.status-text#status", { "aria-live": "polite" }, "ready");
    this.socketBadge = h("span.socket-badge", { hidden: true });
    this.progress = h("span.run-progress", { hidden: true, "aria-hidden": "true" });
    this.el = h("div.run-controls", null,
      this.startBtn, this.pauseBtn, this.stepBtn, this.stopBtn, this.speedSelect,
      h("div.status-line", null, this.dot, this.status, this.socketBadge, this.progress));
    this.render();
  }

  /** The speed the page asks for (sent with every new run; null = max). */
  get speed(): number | null {
    return this.chosenSpeed;
  }

  /** The server acknowledged a speed (a `hyperparams` reply, or the replay of a reattached run). */
  showSpeed(stepsPerS: number | null): void {
    this.chosenSpeed = stepsPerS;
    const value = speedValue(stepsPerS);
    if (![...this.speedSelect.options].some((o) => o.value === value)) {
      this.speedSelect.append(h("option", { value }, speedLabel(stepsPerS)));
    }
    this.speedSelect.value = value;
    this.render();
  }

  /** Whether the server has the `speed` command (its frame clock); without it the menu is disabled. */
  setSpeedAvailable(available: boolean): void {
    this.speedAvailable = available;
    this.render();
  }

  private togglePause(): void {
    if (this.snap?.state === "paused") this.actions.resume();
    else this.actions.pause();
  }

  /** Space bar: pause or resume the shown run. */
  toggle(): void {
    const state = this.snap?.state;
    if (state === "running" || state === "paused" || state === "queued") this.togglePause();
  }

  setValid(valid: boolean): void {
    this.valid = valid;
    this.render();
  }

  update(snap: RunSnapshot): void {
    this.snap = snap;
    this.render();
  }

  socket(status: SocketStatus, detail: { retryInMs?: number }): void {
    this.socketBadge.hidden = status === "open";
    this.socketBadge.textContent =
      status === "connecting" ? "connecting…" : status === "reconnecting" ? `reconnecting${detail.retryInMs ? ` in ${(detail.retryInMs / 1000).toFixed(1)}s` : "…"}` : status === "closed" ? "offline" : "";
    this.socketBadge.className = `socket-badge ${status}`;
  }

  private render(): void {
    const snap = this.snap;
    const state = snap?.state ?? "idle";
    const active = state === "running" || state === "paused" || state === "queued" || state === "starting";
    this.startBtn.textContent = active || snap?.runId ? "↻ Restart" : "▶ Train";
    this.startBtn.disabled = state === "starting";
    this.startBtn.title = this.valid ? "start training from scratch (Ctrl+Enter)" : "the network has errors: fix the red layers first";
    this.startBtn.classList.toggle("warn", !this.valid);
    this.pauseBtn.disabled = !(state === "running" || state === "paused" || state === "queued");
    this.pauseBtn.textContent = state === "paused" ? "▶ Resume" : "❚❚ Pause";
    // Step also works before any run (or after one ended): a new run opens paused and takes one step
    this.stepBtn.disabled = !(state === "paused" || (!active && this.valid));
    this.stepBtn.title = state === "paused" ? "one training step" : "start a run paused at step 0 and take one training step";
    this.stopBtn.disabled = !active || state === "starting";
    this.speedSelect.disabled = !this.speedAvailable;
    this.speedSelect.title = this.speedAvailable
      ? "training speed in optimizer steps per second: slow it down to watch each step change the views (Step moves one step while paused)"
      : "this server has no speed control";
    this.dot.className = `state-dot ${state}`;
    const text = statusText(snap);
    this.status.textContent = text;
    // the top bar may cut the line short: the tooltip has all of it
    this.status.title = snap?.error ?? snap?.message ?? text;
    const total = totalSteps(snap);
    const step = snap?.metrics?.step ?? null;
    const live = state === "running" || state === "paused";
    this.progress.hidden = !(live && total !== null && step !== null);
    if (total !== null && step !== null) this.progress.style.setProperty("--done", String(Math.min(1, step / total)));
  }
}

export function statusText(snap: RunSnapshot | null): string {
  if (!snap) return "ready";
  const m = snap.metrics;
  const total = totalSteps(snap);
  // a run that trains until stopped has no total: its progress is the step alone
  const stepText = m ? (total !== null ? `step ${m.step.toLocaleString()}/${total.toLocaleString()}` : `step ${m.step.toLocaleString()}`) : "";
  const speed = m?.examples_per_s != null ? ` · ${compact(m.examples_per_s)} ex/s` : "";
  const progress = m ? `${stepText} · epoch ${num(m.epoch, 3)}${speed}` : "";
  const device = snap.summary ? ` on ${snap.summary.device}` : "";
  switch (snap.state) {
    case "idle":
      return snap.error ? `not started: ${snap.error}` : "ready";
    case "starting":
      return "starting…";
    case "attaching":
      return `reattaching to run ${snap.runId ?? ""}…`;
    case "queued":
      return snap.position ? `queued: position ${snap.position}${snap.message ? ` · ${snap.message}` : ""}` : "queued…";
    case "running":
      return progress ? progress : `running${device}`;
    case "paused":
      return `paused${m ? ` at step ${m.step.toLocaleString()}` : ""}`;
    case "finished":
    case "stopped": {
      const f = snap.final;
      if (!f) return snap.state;
      const reason = STOP_REASONS[f.stop_reason] ?? f.stop_reason;
      const acc = f.val_acc !== null ? ` · val acc ${(100 * f.val_acc).toFixed(1)}%` : "";
      return `${reason} after ${f.steps.toLocaleString()} steps${acc}${f.message && f.stop_reason !== "finished" ? ` · ${f.message}` : ""}`;
    }
    case "failed":
      return `failed: ${snap.error ?? snap.message ?? "see the server log"}`;
    default:
      return String(snap.state);
  }
}
