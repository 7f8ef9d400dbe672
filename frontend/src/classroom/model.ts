/**
 * The classroom pages' pure logic (no DOM): join codes, the fields a lesson may leave open,
 * and the dashboard's sorting, filtering and ranking of students. Unit-tested in
 * frontend/tests/classroom.test.ts.
 */

import type { LeaderboardRow, StudentSummary } from "./classApi";

/** The characters of a join code: no I, O, 0 or 1, which read alike on a projector. */
export const CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/** Characters in a join code (without the dash). */
export const CODE_LENGTH = 6;

/** "abc-123", " ABC 123 " -> "ABC123": upper case, without dashes or spaces. */
export function normalizeCode(typed: string): string {
  return typed.toUpperCase().replace(/[\s-]+/g, "");
}

/** "ABC123" -> "ABC-123" (what the teacher shows and students type). Other lengths are returned as they are. */
export function formatCode(code: string): string {
  const bare = normalizeCode(code);
  return bare.length === CODE_LENGTH ? `${bare.slice(0, 3)}-${bare.slice(3)}` : bare;
}

/**
 * Why a typed code cannot be a join code, or null when it can (the server decides whether it is
 * this class's). Catches the usual slips before a round trip: a short code, an O for a 0.
 */
export function codeProblem(typed: string): string | null {
  const bare = normalizeCode(typed);
  if (!bare) return "Type the join code your teacher shows (like ABC-123).";
  const foreign = [...new Set([...bare].filter((c) => !CODE_ALPHABET.includes(c)))];
  if (foreign.length) {
    const lookalikes = foreign.filter((c) => "IO01".includes(c));
    return lookalikes.length
      ? `Join codes never contain ${lookalikes.join(", ")} (they look like other characters). Check the code on the board.`
      : `A join code has only letters and digits; "${foreign.join("")}" is not part of one.`;
  }
  if (bare.length !== CODE_LENGTH) return `A join code has ${CODE_LENGTH} characters; this one has ${bare.length}.`;
  return null;
}

/** Display names: 1-40 characters after trimming (the server enforces the same, and uniqueness). */
export const NAME_MAX = 40;

export function nameProblem(typed: string): string | null {
  const name = typed.trim();
  if (!name) return "Type the name the class will see.";
  if (name.length > NAME_MAX) return `Names are at most ${NAME_MAX} characters; this one has ${name.length}.`;
  return null;
}

/** A field a lesson can leave open to students: its dotted path in the Experiment document and its label. */
export interface EditableField {
  path: string;
  label: string;
  hint: string;
}

/** Everything, as one path (the server's special "*"). */
export const EVERYTHING = "*";

/** The fields the teacher can leave open, in the order the form lists them. */
export const EDITABLE_FIELDS: readonly EditableField[] = [
  { path: "train.optimizer.lr", label: "Learning rate", hint: "the optimizer's step size" },
  { path: "train.optimizer", label: "Optimizer", hint: "the optimizer and all its settings (includes the learning rate)" },
  { path: "network.layers", label: "Layers", hint: "add, remove and change layers" },
  { path: "train.batch_size", label: "Batch size", hint: "examples per step" },
  { path: "train.epochs", label: "Epochs", hint: "passes over the training set" },
  { path: "train.max_steps", label: "Max steps", hint: "stop after this many steps (wins over epochs)" },
  { path: "train.schedule", label: "LR schedule", hint: "how the learning rate changes while training" },
  { path: "train.l2", label: "Weight decay (L2)", hint: "the L2 penalty on the weights" },
  { path: "data", label: "Data", hint: "the dataset, its noise and size" },
];

/** A dotted path's label for students ("train.optimizer.lr" -> "Learning rate"); unknown paths as they are. */
export function fieldLabel(path: string): string {
  if (path === EVERYTHING) return "Everything";
  return EDITABLE_FIELDS.find((f) => f.path === path)?.label ?? path;
}

/** The listed fields a lesson keeps locked: the form's fields not covered by an editable path. */
export function lockedFields(editable: readonly string[]): EditableField[] {
  if (editable.includes(EVERYTHING)) return [];
  const open = (path: string): boolean => editable.some((e) => path === e || path.startsWith(`${e}.`));
  return EDITABLE_FIELDS.filter((f) => !open(f.path));
}

// ---- watch mode ----------------------------------------------------------------------

/** Is the page opened read-only for a run (`...&watch=1` in the hash)? */
export function watchFromHash(hash: string): boolean {
  return /(?:^#?|&)watch=1(?=&|$)/.test(hash);
}

/** A hash with `&watch=1` kept at its end when watching (the page rewrites its hash as the state changes). */
export function withWatch(hash: string, watching: boolean): string {
  const bare = hash.replace(/(^|&)watch=1(?=&|$)/g, "").replace(/^&/, "");
  if (!watching) return bare;
  return bare ? `${bare}&watch=1` : "watch=1";
}

// ---- the dashboard --------------------------------------------------------------------

export type SortKey = "name" | "best" | "step";
export type StateFilter = "all" | "training" | "idle" | "failed";

/** Run states that count as training on the dashboard (queued: it will train as soon as a core is free). */
const TRAINING = new Set(["running", "queued", "starting", "paused"]);
const FAILED = new Set(["failed", "error", "interrupted"]);

/** Which filter bucket a student's state falls in. */
export function stateBucket(state: string | null | undefined): Exclude<StateFilter, "all"> {
  if (state && TRAINING.has(state)) return "training";
  if (state && FAILED.has(state)) return "failed";
  return "idle";
}

/** The students the dashboard shows: kicked ones never, then the state and name filters, then the sort. */
export function visibleStudents(
  students: Iterable<StudentSummary>,
  options: { sort: SortKey; state: StateFilter; text: string },
): StudentSummary[] {
  const needle = options.text.trim().toLowerCase();
  const shown = [...students].filter(
    (s) => !s.kicked && (options.state === "all" || stateBucket(s.state) === options.state) && (!needle || s.name.toLowerCase().includes(needle)),
  );
  const byName = (a: StudentSummary, b: StudentSummary): number => a.name.localeCompare(b.name, undefined, { sensitivity: "base" });
  const desc = (x: number | null | undefined, y: number | null | undefined): number => (y ?? -Infinity) - (x ?? -Infinity);
  const compare: Record<SortKey, (a: StudentSummary, b: StudentSummary) => number> = {
    name: byName,
    best: (a, b) => desc(a.best_val_acc, b.best_val_acc) || byName(a, b),
    step: (a, b) => desc(a.step, b.step) || byName(a, b),
  };
  return shown.sort(compare[options.sort]);
}

/** One leaderboard line. */
export interface RankedRow {
  rank: number;
  memberId: string;
  name: string;
  runId: string | null;
  bestValAcc: number | null;
  params: number | null;
  withinBudget: boolean | null;
}

/**
 * The leaderboard from the live summaries, ranked as the server ranks it: best validation accuracy
 * first; in a challenge, networks over the parameter budget rank after every network within it.
 * Students with no accuracy yet come last, by name.
 */
export function rankStudents(students: Iterable<StudentSummary>): RankedRow[] {
  const rows = [...students].filter((s) => !s.kicked);
  const overBudget = (s: StudentSummary): number => (s.within_budget === false ? 1 : 0);
  rows.sort(
    (a, b) =>
      overBudget(a) - overBudget(b) ||
      (b.best_val_acc ?? -Infinity) - (a.best_val_acc ?? -Infinity) ||
      a.name.localeCompare(b.name, undefined, { sensitivity: "base" }),
  );
  return rows.map((s, i) => ({
    rank: i + 1,
    memberId: s.member_id,
    name: s.name,
    runId: s.run_id,
    bestValAcc: s.best_val_acc,
    params: s.params,
    withinBudget: s.within_budget ?? null,
  }));
}

/** 0.9731 -> "97.3%"; null -> "–" */
export function percent(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : `${(100 * x).toFixed(1)}%`;
}

/** A server time in seconds as "3 min ago" / "just now", for the pushed lesson. */
export function ago(seconds: number | undefined, now: number = Date.now() / 1000): string {
  if (seconds === undefined) return "";
  const d = Math.max(0, now - seconds);
  if (d < 45) return "just now";
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return `${Math.round(d / 3600)} h ago`;
}

/** The server's leaderboard rows (GET /api/class/leaderboard, already ranked) as table rows. */
export function rowsFromServer(rows: readonly LeaderboardRow[]): RankedRow[] {
  return rows.map((r, i) => ({
    rank: i + 1,
    memberId: r.member_id,
    name: r.name,
    runId: r.run_id,
    bestValAcc: r.best_val_acc,
    params: r.params,
    withinBudget: r.within_budget,
  }));
}
