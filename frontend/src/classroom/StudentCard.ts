/**
 * One student on the teacher's dashboard: name, run state, the network in one line, loss and
 * validation-accuracy sparklines, best validation accuracy and step, and the teacher's actions
 * on that student's run (pause/resume, stop, open full size read-only) and on the student (kick).
 * `data-step`, `data-state` and `data-best` on the root say what it shows (for tests).
 */

import { compact, h, num } from "../dom";
import type { RunAction, StudentSummary } from "./classApi";
import { percent, stateBucket } from "./model";
import { Sparkline } from "./Sparkline";

export interface CardActions {
  run(runId: string, action: RunAction, name: string): void;
  kick(memberId: string, name: string): void;
  open(runId: string): void;
}

/** The state's words on the pill (the server's names are terse). */
const STATE_TEXT: Record<string, string> = {
  running: "training",
  queued: "queued",
  starting: "starting",
  paused: "paused",
  finished: "finished",
  stopped: "stopped",
  failed: "failed",
  interrupted: "interrupted",
  idle: "idle",
};

export class StudentCard {
  readonly el: HTMLElement;
  private nameEl = h("h3.card-name");
  private pill = h("span.state-pill");
  private network = h("div.card-net");
  private best = h("b.card-best");
  private step = h("span.card-step");
  private budget = h("span.card-budget", { hidden: true });
  private loss = new Sparkline({ colorVar: "--accent", label: "training loss" });
  private acc = new Sparkline({ colorVar: "--ok", label: "validation accuracy", range: [0, 1] });
  /** the newest value of each curve, beside its caption */
  private lossNow = h("b.card-now");
  private accNow = h("b.card-now");
  private pauseBtn: HTMLButtonElement;
  private stopBtn: HTMLButtonElement;
  private openBtn: HTMLButtonElement;
  private summary: StudentSummary;

  constructor(summary: StudentSummary, private readonly actions: CardActions) {
    this.summary = summary;
    const act = (fn: () => void) => (e: Event) => {
      e.stopPropagation();
      fn();
    };
    this.pauseBtn = h("button.btn.card-pause", { type: "button", onclick: act(() => this.togglePause()) }, "Pause");
    this.stopBtn = h("button.btn.card-stop", {
      type: "button", title: "stop this run (the student can start another)",
      onclick: act(() => this.summary.run_id && this.actions.run(this.summary.run_id, "stop", this.summary.name)),
    }, "Stop");
    this.openBtn = h("button.btn.card-open", {
      type: "button", title: "open this run full size, read-only, in a new tab (for the projector)",
      onclick: act(() => this.summary.run_id && this.actions.open(this.summary.run_id)),
    }, "Open ↗");
    const kickBtn = h("button.btn.card-kick", {
      type: "button", title: "remove this student from the class",
      onclick: act(() => this.actions.kick(this.summary.member_id, this.summary.name)),
    }, "Kick");
    this.el = h("article.student-card", { "data-member": summary.member_id },
      h("header.card-head", null, this.nameEl, this.pill),
      this.network,
      h("div.card-charts", null,
        h("figure.card-chart", null, h("figcaption", null, "loss ", this.lossNow), this.loss.el),
        h("figure.card-chart", null, h("figcaption", null, "val acc ", this.accNow), this.acc.el)),
      h("div.card-figures", null,
        h("span", null, h("span.muted", null, "best "), this.best),
        this.budget,
        this.step),
      h("footer.card-actions", null, this.pauseBtn, this.stopBtn, this.openBtn, h("span.spacer"), kickBtn));
    // a click anywhere on the card (but its buttons) opens the run full size: the quickest way to put it on the projector
    this.el.addEventListener("click", () => this.summary.run_id && this.actions.open(this.summary.run_id));
    this.update(summary);
  }

  get memberId(): string {
    return this.summary.member_id;
  }

  update(summary: StudentSummary): void {
    this.summary = summary;
    const state = summary.run_id ? summary.state || "idle" : "idle";
    this.el.dataset.state = state;
    this.el.dataset.bucket = stateBucket(state);
    this.el.dataset.step = String(summary.step ?? 0);
    this.el.dataset.best = summary.best_val_acc === null || summary.best_val_acc === undefined ? "" : String(summary.best_val_acc);
    this.el.dataset.run = summary.run_id ?? "";
    this.nameEl.textContent = summary.name;
    this.nameEl.title = summary.name;
    this.pill.textContent = STATE_TEXT[state] ?? state;
    this.pill.dataset.state = state;
    this.network.textContent = summary.network || (summary.run_id ? "" : "has not trained yet");
    this.network.title = summary.params ? `${summary.network} · ${summary.params.toLocaleString("en-US")} parameters` : summary.network;
    this.best.textContent = percent(summary.best_val_acc);
    this.step.textContent = `step ${(summary.step ?? 0).toLocaleString("en-US")}`;
    this.budget.hidden = summary.within_budget !== false;
    this.budget.textContent = summary.params ? `over budget · ${compact(summary.params)} params` : "over budget";
    this.loss.set(summary.loss ?? []);
    this.acc.set(summary.val_acc ?? []);
    this.lossNow.textContent = num(summary.loss?.at(-1)?.[1] ?? null);
    this.accNow.textContent = percent(summary.val_acc_last ?? summary.val_acc?.at(-1)?.[1] ?? null);
    const live = state === "running" || state === "queued" || state === "starting" || state === "paused";
    this.pauseBtn.disabled = !live;
    this.pauseBtn.textContent = state === "paused" ? "Resume" : "Pause";
    this.stopBtn.disabled = !live;
    this.openBtn.disabled = !summary.run_id;
    this.el.classList.toggle("openable", !!summary.run_id);
    this.el.title = summary.run_id ? `click to open ${summary.name}'s run full size, read-only, in a new tab` : `${summary.name} has not started a run`;
  }

  /** Redraw the sparklines (after a resize, a theme or projector change). */
  redraw(): void {
    this.loss.draw();
    this.acc.draw();
  }

  private togglePause(): void {
    const { run_id: runId, state, name } = this.summary;
    if (runId) this.actions.run(runId, state === "paused" ? "resume" : "pause", name);
  }
}
