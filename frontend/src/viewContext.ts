/**
 * What a live view (frontend/src/viz, frontend/src/charts) gets from the page.
 *
 * Every view is a class in its own file:
 *
 *     export class LossChart {
 *       constructor(root: HTMLElement, ctx: ViewContext) { ... }
 *       onMessage(msg: ServerMessage): void { ... }   // every message of the current run
 *       reset(): void { ... }                          // a new run starts: forget everything
 *       resize?(): void                                // optional: its panel became visible / changed size
 *       watch?(): WatchedViews                         // optional: live views to stream while its tab is open
 *     }
 *
 * main.ts creates the views, routes every websocket message to each view's
 * onMessage, and calls reset() when a new run starts. The live views a view names in
 * `watch()` (with their arguments: the example, layer, class it shows) are what the page
 * asks the server's frame clock to stream while the view's tab is open; a view calls
 * `ctx.watchChanged()` when those arguments change.
 */

import type { WatchedViews } from "./live";
import type { ClientCommand, ServerMessage } from "./protocol";

export type Theme = "light" | "dark";

export interface ViewContext {
  /** Send a websocket command (queued while the socket reconnects). */
  send(cmd: ClientCommand): void;
  /** The run the page currently shows, or null before the first start. */
  runId(): string | null;
  /** Class names of the current dataset (from the run's summary, else the data panel's choice). */
  classes(): string[];
  /** The current colour theme; projector mode is a light or dark theme with larger type. */
  theme(): Theme;
  /**
   * Shared animation-frame scheduler: `cb` runs once in the next frame, however
   * often it is requested before then (keyed by the callback identity), so a view
   * draws at most once per frame however fast messages arrive.
   */
  requestFrame(cb: () => void): void;
  /** JSON request to the server's REST API; `path` is relative to /api, e.g. "/runs". Rejects with ApiError. */
  api<T>(path: string, init?: RequestInit): Promise<T>;
  /** Subscribe to theme changes (dark / projector toggles) so a view can redraw; returns an unsubscribe. */
  onThemeChange(cb: (theme: Theme) => void): () => void;
  /** What a view streams changed (its `watch()` answers differently): tell the server. */
  watchChanged(): void;
}

/** The shape every live view follows (see the file comment). */
export interface View {
  onMessage(msg: ServerMessage): void;
  reset(): void;
  resize?(): void;
  /** The live views (and their arguments) this view wants streamed while its tab is open. */
  watch?(): WatchedViews;
}

export type ViewClass = new (root: HTMLElement, ctx: ViewContext) => View;
