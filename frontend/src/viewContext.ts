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
 *     }
 *
 * main.ts creates the views, routes every websocket message to each view's
 * onMessage, and calls reset() when a new run starts.
 */

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
}

/** The shape every live view follows (see the file comment). */
export interface View {
  onMessage(msg: ServerMessage): void;
  reset(): void;
  resize?(): void;
}

export type ViewClass = new (root: HTMLElement, ctx: ViewContext) => View;
