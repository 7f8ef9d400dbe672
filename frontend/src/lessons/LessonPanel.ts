/**
 * The lesson's steps beside the views: a column at the right of the tabs (it narrows them, it
 * never covers them) with the lesson's number and title and its steps in order, each with its
 * text and the button that does what it says. Done steps are ticked, the current one is
 * highlighted; collapsed, the column is a thin strip that says where the lesson is.
 */

import { h } from "../dom";
import type { StepPlan } from "./lesson";
import "./lessons.css";

/** A step's transient state next to its button: waiting for a run or a reply, or what went wrong. */
export interface StepState {
  text: string;
  kind: "busy" | "ok" | "error";
}

export interface StepView {
  text: string;
  plan: StepPlan;
  done: boolean;
  current: boolean;
  state: StepState | null;
  /** an applied change the lesson trains with: offer to train right here */
  offerTrain: boolean;
}

export interface PanelModel {
  number: number;
  title: string;
  presetName: string;
  steps: StepView[];
  collapsed: boolean;
  /** a compare step's runs: how many still train */
  comparing: { step: number; live: number; total: number } | null;
}

export interface PanelActions {
  run(index: number): void;
  train(): void;
  stopCompare(): void;
  collapse(collapsed: boolean): void;
  close(): void;
  /** open the lesson list */
  choose(): void;
}

const ACTION_ICONS: Record<StepPlan["action"]["kind"], string> = {
  apply: "✎",
  compare: "⇶",
  probe: "◉",
  train: "▶",
  step: "⏭",
  show: "→",
};

export class LessonPanel {
  readonly el: HTMLElement;
  private lastKey = "";

  constructor(private readonly actions: PanelActions) {
    this.el = h("aside.lesson-panel#lesson-panel", { hidden: true, "aria-label": "lesson steps" });
  }

  hide(): void {
    this.el.hidden = true;
    this.lastKey = "";
  }

  show(model: PanelModel): void {
    // rebuilding on every run update would reset the scroll position and steal hover: only on change
    const key = JSON.stringify(model, (k, v: unknown) => (k === "plan" ? undefined : v));
    this.el.hidden = false;
    if (key === this.lastKey) return;
    const scroll = this.el.querySelector(".lesson-steps")?.scrollTop ?? 0;
    this.lastKey = key;
    this.el.classList.toggle("collapsed", model.collapsed);
    const doneCount = model.steps.filter((s) => s.done).length;
    if (model.collapsed) {
      this.el.replaceChildren(
        h("button.lesson-strip", { type: "button", title: `lesson ${model.number}: ${model.title} (show the steps)`, onclick: () => this.actions.collapse(false) },
          h("span.lesson-badge", null, String(model.number)),
          h("span.lesson-strip-text", null, `Lesson ${model.number} · ${doneCount}/${model.steps.length}`)),
      );
      return;
    }
    const head = h("header.lesson-head", null,
      h("div.lesson-head-row", null,
        h("span.lesson-badge", { title: "lesson number in the curriculum" }, String(model.number)),
        h("div.lesson-titles", null,
          h("h2.lesson-title", null, model.title),
          h("div.lesson-sub", { title: model.presetName }, model.presetName)),
        h("button.icon#lesson-collapse", { type: "button", title: "hide the steps (the views get the room)", "aria-label": "collapse the lesson", onclick: () => this.actions.collapse(true) }, "⟩"),
        h("button.icon#lesson-close", { type: "button", title: "end the lesson", "aria-label": "close the lesson", onclick: () => this.actions.close() }, "×")),
      h("div.lesson-progress", { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": model.steps.length, "aria-valuenow": doneCount },
        h("span", { style: { width: `${(100 * doneCount) / Math.max(1, model.steps.length)}%` } })),
      h("div.lesson-progress-text", null, `${doneCount} of ${model.steps.length} steps done`,
        h("button.linkish", { type: "button", onclick: () => this.actions.choose() }, "all lessons")));
    const steps = h("ol.lesson-steps", null, model.steps.map((step, i) => this.stepItem(step, i, model)));
    this.el.replaceChildren(head, steps);
    steps.scrollTop = scroll;
    // the current step in sight (a long lesson on a 720-pixel screen)
    const current = steps.querySelector<HTMLElement>(".lesson-step.current");
    if (current && (current.offsetTop < steps.scrollTop || current.offsetTop + current.offsetHeight > steps.scrollTop + steps.clientHeight)) {
      steps.scrollTop = Math.max(0, current.offsetTop - 8);
    }
  }

  private stepItem(step: StepView, i: number, model: PanelModel): HTMLElement {
    const plan = step.plan;
    const button = h(`button.btn.lesson-do${step.current ? ".primary" : ""}`, {
      type: "button",
      title: plan.hint,
      "data-action": plan.action.kind,
      onclick: (e: Event) => {
        (e.currentTarget as HTMLElement).blur();
        this.actions.run(i);
      },
    }, h("span.lesson-do-icon", { "aria-hidden": "true" }, ACTION_ICONS[plan.action.kind]), plan.label);
    const extras: HTMLElement[] = [];
    if (step.offerTrain) {
      extras.push(h("button.btn.lesson-train", { type: "button", title: "train with this change (the top bar's Train)", onclick: () => this.actions.train() }, "▶ Train"));
    }
    const comparing = model.comparing;
    if (comparing && comparing.step === i && comparing.live > 0) {
      extras.push(h("button.btn.lesson-stop", { type: "button", title: "stop every run of this comparison", onclick: () => this.actions.stopCompare() },
        `■ Stop ${comparing.live === comparing.total ? "all " : ""}${comparing.live}`));
    }
    const state = step.state ? h(`span.lesson-state.${step.state.kind}`, null, step.state.text) : null;
    return h(`li.lesson-step${step.done ? ".done" : ""}${step.current ? ".current" : ""}`, { "data-step": i },
      h("span.lesson-step-mark", { "aria-label": step.done ? "done" : `step ${i + 1}` }, step.done ? "✓" : String(i + 1)),
      h("div.lesson-step-body", null,
        h("p.lesson-text", null, step.text),
        h("div.lesson-actions", null, button, extras, state)));
  }
}
