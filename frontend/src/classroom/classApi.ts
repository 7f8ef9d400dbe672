/**
 * The classroom's REST client and payload types (/api/class/*, issue 10; the contract between
 * the server and the pages is in server/classroom.py and the classroom routes). One function per
 * endpoint so every path is spelled once; the join page, the teacher's dashboard and the
 * student's class bar all talk to the server through these.
 */

import { api, ApiError } from "../api";
import type { Experiment } from "../generated/schema";

/** A class as the server describes it (members see title, code, leaderboard_published; the teacher everything). */
export interface ClassInfo {
  id?: string;
  title: string;
  /** the join code without the dash ("ABC123"); shown as "ABC-123" */
  code?: string;
  /** what students open: the join page's address on the LAN */
  join_url?: string;
  joining_open?: boolean;
  leaderboard_published?: boolean;
  ended_at?: number | null;
  quotas?: Quotas;
  [key: string]: unknown;
}

/** Limits per student. */
export interface Quotas {
  max_active_runs?: number;
  max_steps?: number;
  max_params?: number;
  max_step_macs?: number;
  uploads?: number;
  [key: string]: unknown;
}

/** The challenge of a lesson: rank by validation accuracy among networks within a parameter budget. */
export interface Challenge {
  param_budget: number;
}

/** A lesson the teacher pushed: the starting document, a note and the fields students may change. */
export interface Lesson {
  experiment: Experiment;
  note: string;
  /** dotted paths students may change ("train.optimizer.lr", "network.layers"); "*" = everything; [] = nothing */
  editable: string[];
  challenge: Challenge | null;
  /** server time (s) it was pushed; absent in what the teacher sends */
  pushed_at?: number;
  /** "preset:<id>", "run:<id>" or "document" */
  source?: string;
}

/** A student as the teacher sees it in GET /api/class. */
export interface MemberInfo {
  id: string;
  name: string;
  joined_at?: number;
  kicked?: boolean;
  runs?: string[];
}

/** GET /api/class/me for a student. */
export interface MeAsMember {
  member: { id: string; name: string };
  class: ClassInfo;
  lesson: Lesson | null;
  quotas?: Quotas;
  runs?: string[];
}

/** GET /api/class/me for the teacher. */
export interface MeAsTeacher {
  teacher: true;
  class: ClassInfo;
}

export type Me = MeAsMember | MeAsTeacher;

/** GET /api/class (teacher only). */
export interface ClassState {
  class: ClassInfo;
  members: MemberInfo[];
  lesson: Lesson | null;
}

/** POST /api/class/join's answer. */
export interface JoinResult {
  session: string;
  member: { id: string; name: string };
  class: { title: string };
}

/** One row of GET /api/class/leaderboard, best first. */
export interface LeaderboardRow {
  member_id: string;
  name: string;
  run_id: string | null;
  best_val_acc: number | null;
  params: number | null;
  within_budget: boolean | null;
  state?: string | null;
  step?: number | null;
}

export interface Leaderboard {
  rows: LeaderboardRow[];
  challenge: Challenge | null;
}

/**
 * A student's current run as the live dashboard sees it (/ws/class `Summary`): curves are
 * downsampled by the server to at most 120 [step, value] points each.
 */
export interface StudentSummary {
  member_id: string;
  name: string;
  run_id: string | null;
  state: string;
  step: number;
  epoch?: number | null;
  loss: [number, number][];
  val_acc: [number, number][];
  train_acc?: number | null;
  val_acc_last?: number | null;
  best_val_acc: number | null;
  /** the network in one line: "2-16-16-2 tanh" */
  network: string;
  params: number | null;
  kicked?: boolean;
  within_budget?: boolean | null;
}

/** /ws/class messages. */
export type ClassFeedMessage =
  | { type: "class_snapshot"; class: ClassInfo; students: StudentSummary[] }
  | { type: "class_update"; students: StudentSummary[]; t?: number };

export type RunAction = "pause" | "resume" | "stop";

const post = (body: unknown = {}): RequestInit => ({ method: "POST", body: body as BodyInit });

export const classEndpoints = {
  join: (code: string, name: string) => api<JoinResult>("/class/join", post({ code, name })),
  me: () => api<Me>("/class/me"),
  state: () => api<ClassState>("/class"),
  setJoining: (open: boolean) => api<unknown>("/class/joining", post({ open })),
  kick: (memberId: string) => api<unknown>(`/class/members/${encodeURIComponent(memberId)}/kick`, post()),
  end: () => api<unknown>("/class/end", post()),
  pushLesson: (lesson: Omit<Lesson, "pushed_at">) => api<Lesson>("/class/lesson", post(lesson)),
  publishLeaderboard: (published: boolean) => api<unknown>("/class/leaderboard", post({ published })),
  leaderboard: () => api<Leaderboard>("/class/leaderboard"),
  runAction: (runId: string, action: RunAction) => api<unknown>(`/class/runs/${encodeURIComponent(runId)}/${action}`, post()),
};

/** Is this /api/class/me answer the teacher's? */
export function isTeacher(me: Me): me is MeAsTeacher {
  return (me as MeAsTeacher).teacher === true;
}

/**
 * The server's error code of a failed request ("bad_code", "name_taken", "not_in_class", ...),
 * from `{code}` or `{detail: {code}}`; null when it gave none (a network failure, a plain 500).
 */
export function errorCode(err: unknown): string | null {
  if (!(err instanceof ApiError)) return null;
  const data = err.detail as { code?: unknown; detail?: { code?: unknown } } | null;
  const code = data?.code ?? data?.detail?.code;
  return typeof code === "string" ? code : null;
}

/** The message to show for a failed request: the server's own words, else the error's. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The address of the teacher's live feed (same origin; the teacher cookie goes with the handshake). */
export function classFeedUrl(): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws/class`;
}

// ---- "this browser is in a class" ----------------------------------------------------------
// The main page asks GET /api/class/me only when this browser joined a class (or is its teacher):
// on a server without a class that request would fail (404), and every page load would log it.

const IN_CLASS_KEY = "dlplay.classroom.in";

/** Remember that this browser joined a class (the join page) or teaches it (the dashboard). */
export function rememberClass(role: "member" | "teacher"): void {
  try {
    localStorage.setItem(IN_CLASS_KEY, role);
  } catch {
    // storage disabled: the main page then shows no class bar, and training works as usual
  }
}

/** Did this browser join a class or open its dashboard? */
export function rememberedClass(): boolean {
  try {
    return localStorage.getItem(IN_CLASS_KEY) !== null;
  } catch {
    return false;
  }
}

/** The server has no class for this browser any more (it ended, or this is another server). */
export function forgetClass(): void {
  try {
    localStorage.removeItem(IN_CLASS_KEY);
  } catch {
    // see rememberClass
  }
}
