/**
 * The run the page shows: which run id, its state, the last metrics and summary.
 * It reads the shell's messages (summary, status, metrics, final, error) and tells its
 * listeners; the live views get every message separately from main.ts.
 *
 * A `start` carries an `id`; the server echoes it as `request_id` on the new run's first
 * message (`status queued`) or on the error that refused it, which is how the page knows
 * which run is its own even when several tabs share a session.
 *
 * A page can also attach to a run it did not start (a reload, Back/Forward, a second tab,
 * a run reopened from the Runs tab): `attach(runId)` makes that run the shown one before
 * its replay arrives (state "attaching" until the replay's first status says where it is).
 */

import type { FinalMsg, MetricsMsg, RunState, ServerMessage, SummaryMsg } from "./protocol";

export interface RunSnapshot {
  runId: string | null;
  /** "attaching": subscribed to a run's replay, its state not known yet */
  state: RunState | "idle" | "starting" | "attaching";
  position: number | null;
  message: string | null;
  summary: SummaryMsg | null;
  metrics: MetricsMsg | null;
  final: FinalMsg | null;
  error: string | null;
}

const ACTIVE: ReadonlySet<RunSnapshot["state"]> = new Set(["starting", "queued", "running", "paused"]);

const EMPTY: RunSnapshot = { runId: null, state: "idle", position: null, message: null, summary: null, metrics: null, final: null, error: null };

export class RunTracker {
  private snap: RunSnapshot = EMPTY;
  private listeners = new Set<(s: RunSnapshot) => void>();
  /** the id of the `start` awaiting its run, or null */
  private pending: string | null = null;
  private counter = 0;

  get snapshot(): RunSnapshot {
    return this.snap;
  }

  get active(): boolean {
    return ACTIVE.has(this.snap.state);
  }

  subscribe(cb: (s: RunSnapshot) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** A `start` is about to be sent; returns the command id to send with it. */
  starting(): string {
    this.pending = `start-${Date.now().toString(36)}-${++this.counter}`;
    this.update({ state: "starting", error: null, message: null, position: null, final: null });
    return this.pending;
  }

  /** Show `runId` (its messages are "current" from now on); the caller subscribes to its replay. */
  attach(runId: string): void {
    this.pending = null;
    this.snap = { ...EMPTY, runId, state: "attaching" };
    for (const cb of this.listeners) cb(this.snap);
  }

  /** Forget the shown run (it could not be attached: `reason` says why). */
  detach(reason: string | null = null): void {
    this.pending = null;
    this.snap = { ...EMPTY, error: reason };
    for (const cb of this.listeners) cb(this.snap);
  }

  /**
   * Whether `msg` belongs to the shown run: "new" when it is the first message of the run
   * our pending `start` created (the caller resets the views), "current", or "other" (ignore).
   */
  classify(msg: ServerMessage): "new" | "current" | "other" {
    const fromOurStart = this.pending !== null && msg.request_id === this.pending;
    if (!msg.run_id) return "current"; // a reply to one of our commands (error, pong)
    if (msg.run_id === this.snap.runId) return "current";
    if (fromOurStart || (this.pending !== null && msg.request_id === undefined && msg.type === "status")) {
      this.pending = null;
      this.snap = { ...EMPTY, runId: msg.run_id, state: "queued" };
      return "new";
    }
    return "other";
  }

  handle(msg: ServerMessage): void {
    switch (msg.type) {
      case "summary":
        this.update({ summary: msg });
        break;
      case "status":
        this.update({ state: msg.state, position: msg.position ?? null, message: msg.message ?? null });
        break;
      case "metrics": {
        const waiting = this.snap.state === "queued" || this.snap.state === "starting" || this.snap.state === "attaching";
        this.update({ metrics: msg, state: waiting ? "running" : this.snap.state });
        break;
      }
      case "final":
        this.update({
          final: msg,
          message: msg.message,
          state: this.snap.state === "failed" ? "failed" : msg.stop_reason === "stopped" ? "stopped" : "finished",
        });
        break;
      case "error":
        if (this.pending !== null && (msg.request_id === this.pending || msg.request_id === undefined) && !msg.run_id) {
          // our start was refused (invalid experiment, a limit): no run was created
          this.pending = null;
          this.update({ state: this.snap.runId ? (this.snap.final ? this.snap.state : "idle") : "idle", error: msg.message });
          if (this.snap.state === "starting") this.update({ state: "idle" });
        } else {
          this.update({ error: msg.message });
        }
        break;
      default:
        break;
    }
  }

  private update(patch: Partial<RunSnapshot>): void {
    this.snap = { ...this.snap, ...patch };
    for (const cb of this.listeners) cb(this.snap);
  }
}
