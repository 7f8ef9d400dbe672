/**
 * The page side of the server's frame clock (issue 8): which live views the open tab
 * looks at (the `views` command), the training speed (the `speed` command), and the few
 * wire fields that protocol.ts does not spell out yet.
 *
 * The server streams each watched view at a target rate (boundary 20 frames/s, layer
 * statistics 5/s, filters, weights, feature maps and attention 1/s) and computes only
 * what some client watches, so the page must say what it shows: the union of the
 * open tab's views, sent again whenever the tab, a view's arguments (the example, the
 * layer, the class) or the run changes, and after every reconnect (a new connection
 * starts from the server's defaults).
 *
 * A run that no longer trains streams nothing; a tab opened on it then asks once for
 * each of its views with the `probe` command (EndedRunProbes), so the views show the
 * trained network rather than stay empty.
 */

import type { ClientCommand, HyperparamsMsg, LiveViewName, ProbeKind, ServerMessage } from "./protocol";

/** What a connection watches: view name -> its arguments, e.g. {feature_maps: {index: 3}}. */
export type WatchedViews = Partial<Record<LiveViewName, Record<string, unknown>>>;

/** GET /api/views: one row per view of the server's table (server/live). */
export interface LiveViewInfo {
  name: string;
  /** what it shows, in a sentence */
  description?: string;
  /** message types the view sends (layer_stats sends activations and gradients) */
  messages: string[];
  /** target frames per second before the budget lowers it; null: on demand only (a button), never streamed */
  default_hz: number | null;
  /** watched by a connection that never sent `views` */
  default_on?: boolean;
  /** the arguments the view takes */
  arguments: { name: string; type: string; description?: string }[];
  /** dataset kinds the view applies to; null: every kind */
  kinds: string[] | null;
}

/**
 * The part of `views` the server can stream for a run on `datasetKind` data: views it
 * lists as live (a rate, not only a button) and made for that kind of data. Before the
 * server's list is known (null) everything passes, and the server decides.
 */
export function streamable(views: WatchedViews, table: readonly LiveViewInfo[] | null, datasetKind: string | null): WatchedViews {
  if (table === null) return views;
  const rows = new Map(table.map((row) => [row.name, row]));
  const out: WatchedViews = {};
  for (const [name, args] of Object.entries(views) as [LiveViewName, Record<string, unknown>][]) {
    const row = rows.get(name);
    if (row === undefined || row.default_hz === null) continue;
    if (datasetKind !== null && row.kinds !== null && !row.kinds.includes(datasetKind)) continue;
    out[name] = args;
  }
  return out;
}

/**
 * Training speeds offered next to the Step button, in optimizer steps per second;
 * null = as fast as the machine goes. 1/s is slow enough to follow a single step in the
 * 2D view, 10/s to watch the boundary bend, 100/s to see a run form in a minute.
 */
export const SPEEDS: readonly (number | null)[] = [null, 100, 10, 1];

/** `steps_per_s` of a `hyperparams` reply, when it carries one (undefined: the message is about something else). */
export function speedOf(msg: HyperparamsMsg): number | null | undefined {
  const values = msg.values as HyperparamsMsg["values"] & { steps_per_s?: number | null };
  if (!("steps_per_s" in values)) return undefined;
  const v = values.steps_per_s;
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : null;
}

/** The stream rate a live-view message carries (frames per second), or null for an on-demand reply. */
export function rateOf(msg: ServerMessage): number | null {
  const r = (msg as { rate_hz?: unknown }).rate_hz;
  return typeof r === "number" && Number.isFinite(r) && r > 0 ? r : null;
}

/** "20 fps", "2.5 fps", "0.3 fps": short enough to sit in a view's corner. */
export function fmtRate(hz: number): string {
  if (!(hz > 0) || !Number.isFinite(hz)) return "";
  if (hz >= 9.5) return `${Math.round(hz)} fps`;
  return `${Math.max(0.1, Number(hz.toFixed(1)))} fps`;
}

/**
 * The union of several views' requests (the views of one tab). Two views watching the same
 * live view merge their arguments; the later one wins on a conflicting argument.
 */
export function mergeWatched(parts: readonly (WatchedViews | null | undefined)[]): WatchedViews {
  const out: WatchedViews = {};
  for (const part of parts) {
    if (!part) continue;
    for (const [name, args] of Object.entries(part) as [LiveViewName, Record<string, unknown> | undefined][]) {
      if (args === undefined) continue;
      out[name] = { ...(out[name] ?? {}), ...dropUndefined(args) };
    }
  }
  return out;
}

function dropUndefined(args: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
}

/** A canonical string of a request (sorted keys at every level), to tell "changed" from "the same again". */
export function watchKey(views: WatchedViews): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === "object") {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(canon(views));
}

/**
 * Sends `views` for the shown run when what the page watches changes, and only then
 * (tab switches and re-renders ask often; the server needs to hear each change once).
 */
export class ViewsDemand {
  /** "<run id> <key>" last sent on the current connection, null after a reconnect */
  private sent: string | null = null;

  constructor(private readonly send: (cmd: ClientCommand) => void) {}

  /** Tell the server that this connection watches `views` of `runId` (no-op when it already knows). */
  update(runId: string, views: WatchedViews): boolean {
    const key = `${runId} ${watchKey(views)}`;
    if (key === this.sent) return false;
    this.sent = key;
    this.send({ cmd: "views", run_id: runId, views });
    return true;
  }

  /** The connection was replaced (or the run changed): the next update must be sent. */
  forget(): void {
    this.sent = null;
  }
}

/** The `id` of the probes the page sends by itself: their errors (a model no longer in memory) are not the user's. */
export const AUTO_PROBE_ID = "auto-probe";

type ProbeCmd = Extract<ClientCommand, { cmd: "probe" }>;

/**
 * The `probe` commands that compute `views` once, now. layer_stats has none: its
 * statistics are measured inside a training step. The live views' `target` is the
 * probe's `class`.
 */
export function probeCommands(runId: string, views: WatchedViews): ProbeCmd[] {
  const out: ProbeCmd[] = [];
  for (const [name, args] of Object.entries(views) as [LiveViewName, Record<string, unknown>][]) {
    if (name === "layer_stats") continue;
    const cmd: ProbeCmd = { cmd: "probe", run_id: runId, probe: name as ProbeKind, id: AUTO_PROBE_ID };
    if (typeof args.index === "number") cmd.index = args.index;
    if (typeof args.target === "number") cmd.class = args.target;
    if (typeof args.layer === "string") cmd.layer = args.layer;
    if (typeof args.smoothgrad === "boolean") cmd.smoothgrad = args.smoothgrad;
    out.push(cmd);
  }
  return out;
}

/** Asks once per view and arguments for the frames of a run that no longer trains (the tabs opened after it ended). */
export class EndedRunProbes {
  private asked = new Set<string>();

  constructor(private readonly send: (cmd: ClientCommand) => void) {}

  /** Probe the views of `views` not asked for yet on `runId`; returns how many were sent. */
  update(runId: string, views: WatchedViews): number {
    let sent = 0;
    for (const [name, args] of Object.entries(views) as [LiveViewName, Record<string, unknown>][]) {
      const key = `${runId} ${watchKey({ [name]: args })}`;
      if (this.asked.has(key)) continue;
      this.asked.add(key);
      for (const cmd of probeCommands(runId, { [name]: args })) {
        this.send(cmd);
        sent += 1;
      }
    }
    return sent;
  }

  /** Another run is shown. */
  forget(): void {
    this.asked.clear();
  }
}
