/**
 * "Push a lesson": the teacher picks a starting document (a preset, or one of their own runs),
 * writes a note, ticks the fields students may change and, for a challenge, a parameter budget;
 * Push sends it to every student (POST /api/class/lesson), where it appears as the starting point.
 */

import { endpoints } from "../api";
import { h, replace } from "../dom";
import type { Experiment } from "../generated/schema";
import { withoutLesson } from "../lessons/lesson";
import type { PresetInfo, RunInfo } from "../protocol";
import { classEndpoints, errorText, type Lesson } from "./classApi";
import { ago, EDITABLE_FIELDS, EVERYTHING, fieldLabel } from "./model";

export interface LessonFormShell {
  toast(message: string, kind?: "error" | "info"): void;
  /** the class's limit on a run's steps (quotas.max_steps), or null when it has none */
  maxSteps(): number | null;
  /** the lesson was pushed (the dashboard shows it as current) */
  pushed(lesson: Lesson): void;
}

/** Default fields left open: the ones a first lesson is about. */
const DEFAULT_OPEN = new Set(["train.optimizer.lr", "network.layers", "train.epochs", "train.max_steps"]);
/** The budget a new challenge proposes (parameters): a small MLP on a 2D set fits well under it. */
const DEFAULT_BUDGET = 500;

export class LessonForm {
  readonly el: HTMLElement;
  private source = h("select#lesson-source", { name: "source", "aria-label": "starting point" });
  private note = h("textarea#lesson-note", { name: "note", rows: 3, maxlength: 2000, placeholder: "What to try, e.g. “Make it learn the spiral with as few neurons as you can.”" });
  private everything: HTMLInputElement;
  private boxes = new Map<string, HTMLInputElement>();
  private challenge = h("input#lesson-challenge", { type: "checkbox", name: "challenge" });
  private budget = h("input#lesson-budget", { type: "number", name: "param_budget", min: 1, step: 1, value: DEFAULT_BUDGET, disabled: true });
  private pushBtn = h("button.btn.primary#lesson-push", { type: "submit" }, "Push to all students");
  private current = h("div.lesson-current", { hidden: true });
  private presets: PresetInfo[] = [];

  constructor(private readonly shell: LessonFormShell) {
    this.everything = h("input", { type: "checkbox", name: "editable", value: EVERYTHING });
    this.everything.addEventListener("change", () => this.syncBoxes());
    const fields = EDITABLE_FIELDS.map((f) => {
      const box = h("input", { type: "checkbox", name: "editable", value: f.path, checked: DEFAULT_OPEN.has(f.path) });
      this.boxes.set(f.path, box);
      return h("label.check", { title: f.hint }, box, f.label);
    });
    this.challenge.addEventListener("change", () => {
      this.budget.disabled = !this.challenge.checked;
      if (this.challenge.checked) this.budget.focus();
    });
    const form = h("form.lesson-form", { novalidate: true },
      h("label.lf-field", null, h("span.lf-label", null, "Start from"), this.source),
      h("label.lf-field.wide", null, h("span.lf-label", null, "Note to students"), this.note),
      h("fieldset.lf-field.wide.lesson-fields", null,
        h("legend.lf-label", null, "Students may change"),
        h("div.checks", null, ...fields, h("label.check.all", null, this.everything, "Everything"))),
      h("div.lf-field.lesson-challenge", null,
        h("label.check", null, this.challenge, "Challenge: rank by val acc within a budget of"),
        h("span.budget", null, this.budget, h("span.muted", null, "parameters"))),
      h("div.lesson-submit", null, this.pushBtn));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.push();
    });
    this.el = h("section.panel.class-lesson-panel#lesson", null,
      h("h2.panel-title", null, "Push a lesson"),
      this.current,
      form);
  }

  /** Fill the "Start from" menu: the presets (spiral first when present) and the teacher's own runs. */
  async load(): Promise<void> {
    const [presets, runs] = await Promise.allSettled([endpoints.presets(), endpoints.runs()]);
    this.presets = presets.status === "fulfilled" ? presets.value : [];
    const ownRuns: RunInfo[] = runs.status === "fulfilled" ? (Array.isArray(runs.value) ? runs.value : runs.value.runs ?? []) : [];
    const presetOptions = this.presets.map((p) => h("option", { value: `preset:${p.id}`, title: p.description ?? "" }, p.name || p.id));
    const runOptions = ownRuns.slice(0, 30).map((r) => h("option", { value: `run:${r.id}` }, `${r.name ?? r.id} (${r.state ?? "run"})`));
    replace(this.source,
      h("optgroup", { label: "Presets" }, presetOptions),
      runOptions.length ? h("optgroup", { label: "My runs" }, runOptions) : null);
    // the classroom's usual first lesson: a small network on the spiral (trains in seconds, and the boundary shows it)
    const spiral = this.presets.find((p) => p.id.startsWith("spiral")) ?? this.presets.find((p) => /spiral/i.test(p.id));
    if (spiral) this.source.value = `preset:${spiral.id}`;
    if (presets.status === "rejected") this.shell.toast(`cannot list the presets: ${errorText(presets.reason)}`, "error");
  }

  /** Show the lesson students have now (from GET /api/class or after a push). */
  showCurrent(lesson: Lesson | null): void {
    this.current.hidden = !lesson;
    if (!lesson) return;
    const open = lesson.editable.includes(EVERYTHING) ? "everything" : lesson.editable.length ? lesson.editable.map(fieldLabel).join(", ") : "nothing";
    replace(this.current,
      h("b", null, "Students have: "),
      h("span", null, lesson.experiment?.name || lesson.source || "a lesson"),
      h("span.muted", null, ` · pushed ${ago(lesson.pushed_at)} · open: ${open}`),
      lesson.challenge ? h("span.muted", null, ` · challenge ≤ ${lesson.challenge.param_budget.toLocaleString("en-US")} params`) : null,
    );
  }

  private syncBoxes(): void {
    for (const box of this.boxes.values()) box.disabled = this.everything.checked;
  }

  private editable(): string[] {
    if (this.everything.checked) return [EVERYTHING];
    return [...this.boxes].filter(([, box]) => box.checked).map(([path]) => path);
  }

  /**
   * The document students start from. A preset's guided lesson (its steps, issue 11) is left out:
   * the teacher's note is the lesson here, and students' pages load documents without one.
   */
  private async experiment(source: string): Promise<Experiment> {
    const [kind, id = ""] = [source.slice(0, source.indexOf(":")), source.slice(source.indexOf(":") + 1)];
    if (kind === "preset") {
      const known = this.presets.find((p) => p.id === id);
      return withoutLesson(known?.experiment ?? (await endpoints.preset(id)).experiment);
    }
    const run = await endpoints.run(id);
    if (!run.experiment) throw new Error(`run ${id} has no experiment document`);
    return withoutLesson(run.experiment);
  }

  /**
   * The document with a length students may run: the class refuses a run that trains until stopped
   * or past quotas.max_steps, so a preset like that (the playground spiral trains until stopped)
   * gets train.max_steps = the limit instead of a lesson nobody can start. `capped`: the steps set.
   */
  private async withinStepQuota(experiment: Experiment): Promise<{ experiment: Experiment; capped: number | null }> {
    const limit = this.shell.maxSteps();
    if (!limit) return { experiment, capped: null };
    const report = await endpoints.validate(experiment);
    const total = report.total_steps ?? null;
    if (total !== null && total <= limit) return { experiment, capped: null };
    return { experiment: { ...experiment, train: { ...(experiment.train ?? {}), max_steps: limit } }, capped: limit };
  }

  private async push(): Promise<void> {
    const source = this.source.value;
    if (!source) return this.shell.toast("Pick what students start from (a preset or one of your runs).", "error");
    let challenge: Lesson["challenge"] = null;
    if (this.challenge.checked) {
      const budget = Math.floor(Number(this.budget.value));
      if (!Number.isFinite(budget) || budget < 1) {
        this.budget.focus();
        return this.shell.toast("A challenge needs a parameter budget of at least 1. Fix: type how many parameters a network may have.", "error");
      }
      challenge = { param_budget: budget };
    }
    this.pushBtn.disabled = true;
    try {
      const { experiment, capped } = await this.withinStepQuota(await this.experiment(source));
      const lesson = { experiment, note: this.note.value.trim(), editable: this.editable(), challenge, source };
      const pushed = await classEndpoints.pushLesson(lesson);
      const shown: Lesson = pushed && typeof pushed === "object" && "experiment" in pushed ? pushed : { ...lesson, pushed_at: Date.now() / 1000 };
      this.showCurrent(shown);
      this.shell.pushed(shown);
      const cap = capped === null ? "" : `; it would train longer than the class allows, so it stops at ${capped.toLocaleString("en-US")} steps (train.max_steps)`;
      this.shell.toast(`pushed “${experiment.name ?? source}” to every student${cap}`);
    } catch (err) {
      this.shell.toast(`cannot push the lesson: ${errorText(err)}`, "error");
    } finally {
      this.pushBtn.disabled = false;
    }
  }
}
