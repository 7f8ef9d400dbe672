/**
 * The classroom on the main page (issue 10), for a student and for the teacher:
 *
 * - a class bar under the top bar (the class's title, your name; the Leaderboard button once the
 *   teacher publishes it), shown only when GET /api/class/me says this browser is in a class;
 * - the lesson the teacher pushed, as a banner with the note, "Use as starting point" (loads its
 *   document into the editor) and the fields the lesson keeps locked; the server refuses a run
 *   that changes a locked field, and that refusal is repeated in the banner, not only in a toast;
 * - polling GET /api/class/me every 3 s for a new lesson, the leaderboard being published, or the
 *   student being removed or the class ending;
 * - watch mode (`#run=<id>&watch=1`, what the dashboard's "Open" opens for the teacher): the page
 *   shows that run read-only, with "watching <name>'s run".
 */

import "./student.css";
import { h, replace } from "../dom";
import type { Experiment } from "../generated/schema";
import { withoutLesson } from "../lessons/lesson";
import type { ServerMessage } from "../protocol";
import {
  classEndpoints, errorCode, errorText, forgetClass, isTeacher, rememberedClass, type Lesson, type Me, type MeAsMember,
} from "./classApi";
import { LeaderboardTable } from "./LeaderboardTable";
import { EVERYTHING, fieldLabel, lockedFields, rowsFromServer } from "./model";

export { watchFromHash, withWatch } from "./model";

const POLL_MS = 3000; // how often a student's page asks for a new lesson (the contract's 3 s)
const LEADERBOARD_POLL_MS = 3000; // while the leaderboard dialog is open
/** Refusals of a start that come from the class's rules (the lesson's locks, the quotas): the banner repeats them. */
const CLASS_REFUSALS = new Set(["locked_field", "over_quota", "too_many_runs", "not_in_class", "class_ended"]);
const USED_KEY = "dlplay.classroom.lessonUsed"; // pushed_at of the lesson this browser already loaded

export interface ClassShell {
  /** put `experiment` in the editor (undoable), as the lesson's starting point */
  load(experiment: Experiment, label: string): void;
  toast(message: string, kind?: "error" | "info"): void;
  /** the student was removed or the class ended: stop using the server (its websocket would retry forever) */
  leave(): void;
}

export class ClassroomBar {
  /** the class bar and the lesson banner; empty and hidden outside a class */
  readonly el: HTMLElement = h("div.class-area", { hidden: true });
  private bar = h("div.class-bar#class-bar");
  private banner = h("section.cl-lesson-banner#lesson-banner", { hidden: true, "aria-live": "polite" });
  private refusal = h("div.cl-lesson-refusal#lesson-refusal", { role: "alert", hidden: true });
  private me: Me | null = null;
  private lessonShown: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private dialog: HTMLDialogElement | null = null;
  private stopped = false;
  private barKey = "";

  constructor(private readonly shell: ClassShell) {
    this.el.append(this.bar, this.banner);
  }

  /**
   * Ask the server whether this browser is in a class (only when it joined one or opened the
   * dashboard: see rememberClass); a student's page then keeps asking every 3 s.
   */
  start(): void {
    if (rememberedClass()) void this.poll();
  }

  /** The student's class, or null (not in a class, or the teacher). */
  get member(): MeAsMember | null {
    return this.me && !isTeacher(this.me) ? this.me : null;
  }

  /** A server message of the shown run: a start refused by the class's rules stays visible in the banner. */
  onMessage(msg: ServerMessage): void {
    if (msg.type === "summary") this.refusal.hidden = true; // a run started: the last refusal is history
    if (msg.type !== "error" || !this.member || !CLASS_REFUSALS.has(msg.code)) return;
    if (msg.code === "not_in_class") {
      void this.poll(); // removed, or the class ended: the bar says which at once, not at the next poll
      return;
    }
    this.refusal.replaceChildren(h("strong", null, "Your run was refused: "), h("span", null, msg.message));
    this.refusal.hidden = false;
    this.banner.hidden = false;
  }

  /**
   * Watch mode (the teacher opened a student's run from the dashboard): a banner naming whose run it
   * is; the page itself hides its editing actions (main.ts sets data-watch).
   */
  watch(runId: string): void {
    this.el.hidden = false;
    this.bar.replaceChildren(
      h("span.class-chip.watch", null, "read-only"),
      h("span.class-title#watching", null, `watching ${runId}`),
      h("span.spacer"),
      h("a.class-link", { href: "/teacher" }, "Dashboard"));
    classEndpoints.state()
      .then((state) => {
        const owner = state.members.find((m) => m.runs?.includes(runId));
        const label = owner ? `watching ${owner.name}'s run` : `watching run ${runId}`;
        const el = this.bar.querySelector("#watching");
        if (el) el.textContent = label;
        document.title = `${label} · dlplay`;
      })
      .catch(() => undefined); // not the teacher: the run's own stream says whether it may be seen
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer); // an early poll (see onMessage) replaces the waiting one
    this.timer = null;
    try {
      const me = await classEndpoints.me();
      this.me = me;
      if (isTeacher(me)) {
        this.showTeacher(me.class.title);
        return; // the teacher's page has nothing to wait for
      }
      this.showMember(me);
    } catch (err) {
      const code = errorCode(err);
      if (code === "not_in_class" || code === "class_ended" || code === "no_class") {
        if (this.member) this.showGone(code, errorText(err));
        else forgetClass(); // another server, or a class that is over: stop asking on every load
        return;
      }
      // anything else (the server restarting, a network blip): ask again at the next poll
    }
    this.timer = setTimeout(() => void this.poll(), POLL_MS);
  }

  private showTeacher(title: string): void {
    if (this.bar.querySelector("#watching")) return; // watch mode's bar stays
    this.el.hidden = false;
    this.bar.replaceChildren(
      h("span.class-chip", null, "teacher"),
      h("span.class-title", null, title || "Class"),
      h("span.spacer"),
      h("a.class-link", { href: "/teacher" }, "Open the dashboard"));
  }

  private showMember(me: MeAsMember): void {
    this.el.hidden = false;
    const published = me.class.leaderboard_published === true;
    // rebuilt only when it changes: a poll every 3 s must not take the focus from its buttons
    const key = JSON.stringify([me.class.title, me.member.name, published, !!me.lesson && this.banner.hidden]);
    if (key !== this.barKey) {
      this.barKey = key;
      replace(this.bar,
        h("span.class-chip", null, "class"),
        h("span.class-title#class-title", null, me.class.title || "Class"),
        h("span.class-sep", null, "·"),
        h("span.class-me#class-me", null, "you are ", h("b", null, me.member.name)),
        h("span.spacer"),
        me.lesson && this.banner.hidden
          ? h("button.btn#show-lesson", { type: "button", onclick: () => this.reopenLesson() }, "Lesson")
          : null,
        published ? h("button.btn#leaderboard-btn", { type: "button", onclick: () => void this.openLeaderboard() }, "Leaderboard") : null);
    }
    const lesson = me.lesson;
    if (!lesson) {
      this.banner.hidden = true;
      this.lessonShown = null;
      return;
    }
    if (lesson.pushed_at !== this.lessonShown) {
      this.lessonShown = lesson.pushed_at ?? null;
      const used = this.usedLesson() === String(lesson.pushed_at);
      this.showLesson(lesson, !used);
    }
  }

  /** The banner for `lesson`; `fresh`: the student has not loaded it yet (the big call to action). */
  private showLesson(lesson: Lesson, fresh: boolean): void {
    const locked = lockedFields(lesson.editable);
    const open = lesson.editable.includes(EVERYTHING) ? ["Everything"] : lesson.editable.map(fieldLabel);
    const useBtn = h(`button.btn${fresh ? ".primary" : ""}#use-lesson`, { type: "button", onclick: () => this.useLesson(lesson) },
      fresh ? "Use as starting point" : "Load it again");
    const name = lesson.experiment?.name || "the teacher's network";
    this.refusal.hidden = true;
    this.banner.classList.toggle("fresh", fresh);
    this.banner.replaceChildren(
      h("div.cl-lesson-main", null,
        h("div.cl-lesson-head", null,
          h("span.cl-lesson-tag", null, fresh ? "New lesson" : "Lesson"),
          h("b.cl-lesson-name", null, name),
          lesson.challenge ? h("span.cl-lesson-challenge-tag", null, `Challenge: best val acc with ≤ ${lesson.challenge.param_budget.toLocaleString("en-US")} parameters`) : null),
        lesson.note ? h("p.cl-lesson-note#lesson-note", null, lesson.note) : null,
        h("div.cl-lesson-fields", null,
          h("span.muted", null, "You may change: "),
          open.length ? open.map((f) => h("span.field-chip.open", null, f)) : h("span.field-chip", null, "nothing"),
          locked.length ? [h("span.muted.locked-label", null, " Locked: "), ...locked.map((f) => h("span.field-chip.locked", { title: "the server refuses a run that changes it" }, f.label))] : null),
        this.refusal),
      h("div.cl-lesson-actions", null,
        useBtn,
        h("button.icon#hide-lesson", { type: "button", title: "hide (the Lesson button brings it back)", "aria-label": "hide the lesson", onclick: () => this.hideBanner() }, "✕")));
    this.banner.hidden = false;
    if (this.member) this.showMember({ ...this.member, lesson }); // the bar's Lesson button follows the banner
  }

  /** The bar's Lesson button: the banner of the current lesson again. */
  private reopenLesson(): void {
    const lesson = this.member?.lesson;
    if (lesson) this.showLesson(lesson, this.usedLesson() !== String(lesson.pushed_at));
  }

  private hideBanner(): void {
    this.banner.hidden = true;
    if (this.member) this.showMember(this.member);
  }

  private useLesson(lesson: Lesson): void {
    this.shell.load(withoutLesson(lesson.experiment), `the lesson “${lesson.experiment.name ?? "from your teacher"}”`);
    this.markUsed(String(lesson.pushed_at));
    this.showLesson(lesson, false);
  }

  private showGone(code: string, message: string): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.shell.leave();
    this.banner.hidden = true;
    // the server answers not_in_class for both; its message says which
    const ended = code === "class_ended" || /class has ended/.test(message);
    const text = ended ? "This class has ended." : "You are no longer in this class.";
    this.bar.replaceChildren(h("span.class-chip.gone", null, "class"), h("span.class-title", null, text), h("span.muted", null, message),
      h("span.spacer"), h("a.class-link", { href: "/join" }, ended ? "Join page" : "Join again"));
    this.bar.classList.add("gone");
  }

  private async openLeaderboard(): Promise<void> {
    const table = new LeaderboardTable(this.member?.member.id ?? null);
    const note = h("p.muted.small");
    const close = h("button.btn", { type: "button" }, "Close");
    const dialog = h("dialog.class-dialog#leaderboard-dialog", { "aria-label": "leaderboard" },
      h("h2", null, "Leaderboard"), table.el, note, h("div.dialog-actions", null, close));
    this.dialog?.remove();
    this.dialog = dialog;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const refresh = async (): Promise<void> => {
      try {
        const board = await classEndpoints.leaderboard();
        table.set(rowsFromServer(board.rows), board.challenge);
        note.textContent = "Your row is highlighted. It updates while this is open.";
      } catch (err) {
        note.textContent = `cannot load the leaderboard: ${errorText(err)}`;
      }
      if (dialog.open) timer = setTimeout(() => void refresh(), LEADERBOARD_POLL_MS);
    };
    const shut = (): void => {
      if (timer !== null) clearTimeout(timer);
      dialog.close();
      dialog.remove();
    };
    close.addEventListener("click", shut);
    dialog.addEventListener("close", () => timer !== null && clearTimeout(timer));
    dialog.addEventListener("click", (e) => e.target === dialog && shut()); // a click on the backdrop
    document.body.append(dialog);
    dialog.showModal();
    await refresh();
  }

  private usedLesson(): string | null {
    try {
      return localStorage.getItem(USED_KEY);
    } catch {
      return null;
    }
  }

  private markUsed(pushedAt: string): void {
    try {
      localStorage.setItem(USED_KEY, pushedAt);
    } catch {
      // storage disabled: the banner offers the lesson again after a reload, which is harmless
    }
  }
}
