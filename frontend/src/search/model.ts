/**
 * Hyperparameter search (lesson 21) on the page: the REST shapes of /api/searches
 * (server/search_runner.py), the form's defaults for a document, and the pure helpers the
 * view uses (sorting the trial table, which trials are live, the best one). No DOM here.
 */

import type { Experiment } from "../generated/schema";

export type Strategy = "random" | "grid";
export type TrialStatus = "pending" | "waiting" | "queued" | "running" | "finished" | "diverged" | "stopped" | "failed" | "skipped";
export type SearchStatus = "running" | "stopping" | "finished" | "stopped" | "failed";

/** A log-scale range; low == high holds the hyperparameter fixed. */
export interface RangeSpec {
  low: number;
  high: number;
}

/** What POST /api/searches takes (SearchSpec). */
export interface SearchSpec {
  strategy: Strategy;
  lr: RangeSpec;
  l2: RangeSpec;
  /** coarse trials, 2..64 */
  trials: number;
  /** optimizer steps per coarse trial */
  steps: number;
  /** fine trials in the narrowed ranges; 0: coarse only */
  fine_trials: number;
  fine_steps: number | null;
  top_k?: number;
  parallel?: number;
  seed?: number;
  experiment: Experiment;
}

export interface TrialInfo {
  index: number;
  stage: "coarse" | "fine";
  lr: number;
  l2: number;
  steps: number;
  status: TrialStatus;
  run_id: string | null;
  /** the run's latest step */
  step: number;
  /** latest validation accuracy seen while it trains (live) */
  val_acc: number | null;
  /** the score: the final message's best_val_acc; finished trials only */
  best_val_acc: number | null;
  wall_s: number | null;
  message: string | null;
}

export interface SpaceInfo {
  lr: [number, number];
  l2: [number, number];
}

/** What GET /api/searches/{id} answers. */
export interface SearchInfo {
  id: string;
  status: SearchStatus;
  message: string;
  spec: Omit<SearchSpec, "experiment"> & { experiment?: Experiment };
  experiment_name: string;
  parallel: number;
  spaces: { coarse: SpaceInfo; fine: SpaceInfo | null };
  trials: TrialInfo[];
  best: { index: number; run_id: string | null; lr: number; l2: number; stage: string; best_val_acc: number } | null;
  max_in_flight: number;
  created_at: number;
  ended_at: number | null;
}

/** The form's fields (everything in the spec but the base experiment). */
export type SearchForm = Omit<SearchSpec, "experiment">;

export const LIVE_TRIAL: ReadonlySet<TrialStatus> = new Set(["queued", "running"]);
export const ACTIVE_SEARCH: ReadonlySet<SearchStatus> = new Set(["running", "stopping"]);
const FINE_STEPS_FACTOR = 3; // as the server's default: fine trials train 3x longer
const DEFAULT_STEPS = 60; // a document that trains by epochs or until stopped gets short trials of this many steps

/**
 * The form for a document: the lecture's ranges (lr 1e-4..1, l2 1e-6..0.1, log scale), 9 random
 * coarse trials as long as the document's own run (its max_steps) and 4 fine trials 3x longer.
 */
export function defaultForm(doc: Experiment | null): SearchForm {
  const steps = doc?.train?.max_steps ?? DEFAULT_STEPS;
  return {
    strategy: "random",
    lr: { low: 1e-4, high: 1 },
    l2: { low: 1e-6, high: 1e-1 },
    trials: 9,
    steps,
    fine_trials: 4,
    fine_steps: FINE_STEPS_FACTOR * steps,
  };
}

export type SortKey = "index" | "stage" | "lr" | "l2" | "steps" | "status" | "score";

/** A trial's accuracy for display and sorting: its score once finished, else the latest live value. */
export function shownAccuracy(t: TrialInfo): number | null {
  return t.best_val_acc ?? (t.status === "running" || t.status === "queued" ? t.val_acc : null);
}

const STATUS_ORDER: TrialStatus[] = ["running", "queued", "waiting", "pending", "finished", "diverged", "stopped", "failed", "skipped"];

/** The table's rows sorted by `key` (missing values last in either direction; ties by trial number). */
export function sortTrials(trials: readonly TrialInfo[], key: SortKey, descending: boolean): TrialInfo[] {
  const value = (t: TrialInfo): number | string | null => {
    switch (key) {
      case "score":
        return shownAccuracy(t);
      case "status":
        return STATUS_ORDER.indexOf(t.status);
      case "stage":
        return t.stage === "coarse" ? 0 : 1;
      default:
        return t[key];
    }
  };
  return [...trials].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === null && vb === null) return a.index - b.index;
    if (va === null) return 1;
    if (vb === null) return -1;
    const order = va < vb ? -1 : va > vb ? 1 : 0;
    return (descending ? -order : order) || a.index - b.index;
  });
}

/** The problems of a form the server would refuse anyway, said the same way before a request is made. */
export function formProblems(form: SearchForm): string[] {
  const problems: string[] = [];
  for (const name of ["lr", "l2"] as const) {
    const r = form[name];
    if (!(r.low > 0) || !(r.high > 0)) problems.push(`${name}: both ends must be positive (a log scale has no zero)`);
    else if (r.low > r.high) problems.push(`${name}: low (${r.low}) is above high (${r.high}); swap them`);
  }
  if (!Number.isInteger(form.trials) || form.trials < 2 || form.trials > 64) problems.push("trials: 2 to 64");
  if (!Number.isInteger(form.steps) || form.steps < 1) problems.push("steps: a whole number of at least 1");
  if (form.fine_trials !== 0 && (!Number.isInteger(form.fine_trials) || form.fine_trials < 2)) problems.push("fine trials: 0 (none) or at least 2");
  if (form.trials + form.fine_trials > 64) problems.push(`trials: ${form.trials} + ${form.fine_trials} fine is more than 64`);
  return problems;
}
