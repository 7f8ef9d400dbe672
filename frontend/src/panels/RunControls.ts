/** Start / Pause / Step / Stop and the status line (queued position, step, examples/s, why it stopped). */

import { compact, h, num } from "../dom";
import type { RunSnapshot } from "../run";
import type { SocketStatus } from "../socket";

export interface RunActions {
  start(): void;
  pause(): void;
  resume(): void;
  step(): void;
  stop(): void;
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
    this.dot = h("span.state-dot");
    this.status = h("span.status-text#status", { "aria-live": "polite" }, "ready");
    this.socketBadge = h("span.socket-badge", { hidden: true });
    this.el = h("div.run-controls", null,
      this.startBtn, this.pauseBtn, this.stepBtn, this.stopBtn,
      h("div.status-line", null, this.dot, this.status, this.socketBadge));
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
    this.stepBtn.disabled = state !== "paused";
    this.stopBtn.disabled = !active || state === "starting";
    this.dot.className = `state-dot ${state}`;
    this.status.textContent = statusText(snap);
    this.status.title = snap?.error ?? snap?.message ?? "";
  }
}

export function statusText(snap: RunSnapshot | null): string {
  if (!snap) return "ready";
  const m = snap.metrics;
  const progress = m ? `step ${m.step.toLocaleString()} · epoch ${num(m.epoch, 3)} · ${compact(m.examples_per_s)} ex/s` : "";
  const device = snap.summary ? ` on ${snap.summary.device}` : "";
  switch (snap.state) {
    case "idle":
      return snap.error ? `not started: ${snap.error}` : "ready";
    case "starting":
      return "starting…";
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
