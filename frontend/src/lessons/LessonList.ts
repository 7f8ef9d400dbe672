/**
 * The lesson list: the top bar's "Lessons" button opens the curriculum's lessons in order, grouped
 * by its parts, each with its number, title and the preset(s) that teach it. Choosing one loads
 * the preset into the editor and opens its steps beside the views.
 */

import { h } from "../dom";
import type { LessonEntry } from "./lesson";

export class LessonList {
  /** the top bar's button */
  readonly button: HTMLButtonElement;
  /** the dialog (an overlay like the help) */
  readonly el: HTMLElement;
  private current: string | null = null;
  private readonly items = new Map<string, HTMLButtonElement>();

  constructor(private readonly lessons: LessonEntry[], private readonly choose: (presetId: string) => void) {
    this.button = h("button.btn#lessons", { type: "button", title: "guided lessons: the curriculum, step by step", "aria-haspopup": "dialog", onclick: () => this.toggle() }, "Lessons");
    this.button.disabled = lessons.length === 0;
    const parts: HTMLElement[] = [];
    let part: HTMLElement | null = null;
    let partName = "";
    for (const lesson of lessons) {
      if (lesson.part !== partName || part === null) {
        partName = lesson.part;
        part = h("ol.lesson-part", { start: lesson.number });
        parts.push(h("section.lesson-part-box", null, h("h3.lesson-part-title", null, partName), part));
      }
      part.append(this.row(lesson));
    }
    this.el = h("div.overlay.lesson-overlay", { hidden: true, role: "dialog", "aria-label": "lessons", onclick: (e: Event) => e.target === this.el && this.hide() },
      h("div.dialog.lesson-dialog", null,
        h("div.dialog-head", null,
          h("b", null, "Lessons"),
          h("span.muted.lesson-dialog-sub", null, "choose one: its preset loads into the editor and its steps open beside the views"),
          h("span.spacer"),
          h("button.icon", { type: "button", onclick: () => this.hide(), title: "close (Esc)" }, "×")),
        h("div.lesson-parts", null, parts)));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.open) {
        e.stopPropagation();
        this.hide();
      }
    }, true);
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  toggle(): void {
    if (this.open) this.hide();
    else this.show();
  }

  show(): void {
    this.el.hidden = false;
    (this.items.get(this.current ?? "") ?? this.el.querySelector<HTMLButtonElement>(".lesson-pick"))?.focus();
  }

  hide(): void {
    this.el.hidden = true;
  }

  /** Highlight the lesson shown in the panel. */
  setCurrent(presetId: string | null): void {
    this.current = presetId;
    for (const [id, item] of this.items) item.classList.toggle("current", id === presetId);
    this.button.classList.toggle("on", presetId !== null);
  }

  private row(lesson: LessonEntry): HTMLElement {
    const picks = lesson.presets.map((p) => {
      const pick = h("button.lesson-pick", { type: "button", "data-preset": p.id, title: p.description, onclick: () => {
        this.hide();
        this.choose(p.id);
      } },
        h("span.lesson-pick-title", null, p.title),
        h("span.lesson-pick-meta", null, `${p.name} · ${p.steps} step${p.steps === 1 ? "" : "s"}`));
      this.items.set(p.id, pick);
      return pick;
    });
    return h("li.lesson-row", { "data-lesson": lesson.number },
      h("span.lesson-num", null, String(lesson.number)),
      h("div.lesson-picks", null, picks.length ? picks : h("span.muted", null, "no preset teaches this lesson yet")));
  }
}
