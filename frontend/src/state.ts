/**
 * The whole UI state: the Experiment document plus the few UI choices worth sharing
 * (which side panel and tab are open, theme, projector mode). It serializes to the URL
 * hash so a link reproduces exactly what the teacher sees:
 *
 *     #s=z.<base64url(deflate-raw(JSON))>     (CompressionStream available: every modern browser)
 *     #s=j.<base64url(JSON)>                  (fallback, also accepted when decoding)
 *
 * decode(encode(state)) deep-equals state: nothing is added or dropped on the way.
 *
 * The run the page shows rides along as `&run=<id>` after the state, so a reload,
 * Back/Forward or a second tab reattaches to it (runFromHash / hashWithRun). A run
 * belongs to the browser session that started it: a link with a run id works in the
 * same browser; elsewhere the page says the run is not available and keeps the state.
 *
 * The Store owns the state and its undo/redo history (snapshots of the document; UI
 * choices are not undoable). Everything else the page shows (registry, validation,
 * run status) is derived and lives with the component that fetched it.
 */

import type { Experiment } from "./generated/schema";
import type { Theme } from "./viewContext";

export type LayerSpec = Experiment["network"]["layers"][number];
export type LayerKind = LayerSpec["kind"];

export const SIDE_PANELS = ["data", "network", "train"] as const;
export type SidePanel = (typeof SIDE_PANELS)[number];

export const TABS = ["training", "inside", "filters", "attention", "2d", "evaluation", "runs", "search"] as const;
export type TabId = (typeof TABS)[number];

export interface UIChoices {
  side: SidePanel;
  tab: TabId;
  theme: Theme;
  projector: boolean;
  /** the guided lesson open beside the views (lessons/LessonGuide.ts); absent or null: none */
  lesson?: { preset: string; done: number[]; collapsed?: boolean } | null;
}

export interface AppState {
  experiment: Experiment;
  ui: UIChoices;
}

export const DEFAULT_UI: UIChoices = { side: "network", tab: "training", theme: "light", projector: false };

// ---------------------------------------------------------------------------
// Document normalization
// ---------------------------------------------------------------------------

/** Fields whose value may be written as a bare kind name ("relu" for {kind: "relu"}) in a document. */
const SHORTHAND_FIELDS = new Set(["activation", "weight_init", "bias_init", "optimizer", "schedule"]);

/**
 * Spell out the server's shorthands (`"activation": "relu"`) so the editor sees one form.
 * The result validates to the same pydantic model as the input.
 */
export function normalizeExperiment(doc: Experiment): Experiment {
  const walk = (value: unknown, key: string | null): unknown => {
    if (typeof value === "string" && key !== null && SHORTHAND_FIELDS.has(key)) return { kind: value };
    if (Array.isArray(value)) return value.map((v) => walk(v, null));
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    }
    return value;
  };
  return walk(doc, null) as Experiment;
}

export function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

// ---------------------------------------------------------------------------
// URL hash encoding
// ---------------------------------------------------------------------------

function toBase64Url(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

async function pipe(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Response(new Blob([bytes as BlobPart]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}

/** The hash fragment (without "#") that reproduces `state`. */
export async function encodeState(state: AppState): Promise<string> {
  const json = new TextEncoder().encode(JSON.stringify(state));
  if (typeof CompressionStream !== "undefined") {
    return `s=z.${toBase64Url(await pipe(json, new CompressionStream("deflate-raw")))}`;
  }
  return `s=j.${toBase64Url(json)}`;
}

/** Parse a hash made by encodeState; null when there is none. Throws on a damaged link. */
export async function decodeState(hash: string): Promise<AppState | null> {
  const match = /(?:^#?|&)s=([zj])\.([A-Za-z0-9_-]+)/.exec(hash);
  if (!match) return null;
  const [, codec, payload] = match;
  let bytes = fromBase64Url(payload ?? "");
  if (codec === "z") bytes = await pipe(bytes, new DecompressionStream("deflate-raw"));
  const parsed = JSON.parse(new TextDecoder().decode(bytes)) as Partial<AppState>;
  if (!parsed || typeof parsed !== "object" || !parsed.experiment) throw new Error("the link holds no experiment");
  return { experiment: parsed.experiment, ui: { ...DEFAULT_UI, ...(parsed.ui ?? {}) } };
}

/** Run ids are the server's 16 hex digits; anything id-shaped up to 64 characters is accepted. */
const RUN_PARAM = /(?:^#?|&)run=([A-Za-z0-9_-]{1,64})(?=&|$)/;

/** The run id a hash names (`...&run=<id>`), or null. */
export function runFromHash(hash: string): string | null {
  return RUN_PARAM.exec(hash)?.[1] ?? null;
}

/** A state hash (from encodeState, without "#") with the shown run appended, or as it is when there is none. */
export function hashWithRun(stateHash: string, runId: string | null): string {
  const bare = stateHash.replace(/&run=[^&]*/g, "");
  if (runId === null) return bare;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(runId)) throw new Error(`not a run id: ${JSON.stringify(runId)}`);
  return bare === "" ? `run=${runId}` : `${bare}&run=${runId}`;
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

export type Change = "experiment" | "ui";
export type Listener = (state: AppState, changed: ReadonlySet<Change>) => void;

interface EditOptions {
  /** Consecutive edits with the same key within COALESCE_MS are one undo step (typing in a field). */
  coalesce?: string;
  /** Replace the document without an undo step (loading a preset or a link starts a fresh history). */
  resetHistory?: boolean;
}

const COALESCE_MS = 1000; // ms: one undo step per burst of typing
const HISTORY_LIMIT = 200; // snapshots kept for undo

export class Store {
  private current: AppState;
  private listeners = new Set<Listener>();
  private undoStack: string[] = [];
  private redoStack: string[] = [];
  private lastCoalesce: { key: string; at: number } | null = null;

  constructor(initial: AppState) {
    this.current = initial;
  }

  get state(): AppState {
    return this.current;
  }

  get experiment(): Experiment {
    return this.current.experiment;
  }

  get ui(): UIChoices {
    return this.current.ui;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Change the document through a function on a private copy; records an undo step. */
  edit(mutate: (doc: Experiment) => void, options: EditOptions = {}): void {
    const before = JSON.stringify(this.current.experiment);
    const next = JSON.parse(before) as Experiment;
    mutate(next);
    if (JSON.stringify(next) === before) return;
    this.commit(next, before, options);
  }

  /** Replace the whole document (preset, import, link). */
  setExperiment(doc: Experiment, options: EditOptions = {}): void {
    const before = JSON.stringify(this.current.experiment);
    this.commit(normalizeExperiment(clone(doc)), before, options);
  }

  private commit(next: Experiment, before: string, options: EditOptions): void {
    if (options.resetHistory) {
      this.undoStack = [];
      this.redoStack = [];
      this.lastCoalesce = null;
    } else {
      const now = performance.now();
      const coalesced =
        options.coalesce !== undefined &&
        this.lastCoalesce?.key === options.coalesce &&
        now - this.lastCoalesce.at < COALESCE_MS;
      if (!coalesced) {
        this.undoStack.push(before);
        if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
      }
      this.redoStack = [];
      this.lastCoalesce = options.coalesce !== undefined ? { key: options.coalesce, at: now } : null;
    }
    this.current = { ...this.current, experiment: next };
    this.emit(new Set<Change>(["experiment"]));
  }

  setUI(patch: Partial<UIChoices>): void {
    const next = { ...this.current.ui, ...patch };
    if (JSON.stringify(next) === JSON.stringify(this.current.ui)) return;
    this.current = { ...this.current, ui: next };
    this.emit(new Set<Change>(["ui"]));
  }

  /** Replace everything (a shared link was opened). */
  load(state: AppState): void {
    this.undoStack = [];
    this.redoStack = [];
    this.lastCoalesce = null;
    this.current = { experiment: normalizeExperiment(clone(state.experiment)), ui: { ...DEFAULT_UI, ...state.ui } };
    this.emit(new Set<Change>(["experiment", "ui"]));
  }

  canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  canRedo(): boolean {
    return this.redoStack.length > 0;
  }

  undo(): boolean {
    return this.travel(this.undoStack, this.redoStack);
  }

  redo(): boolean {
    return this.travel(this.redoStack, this.undoStack);
  }

  private travel(from: string[], to: string[]): boolean {
    const snapshot = from.pop();
    if (snapshot === undefined) return false;
    to.push(JSON.stringify(this.current.experiment));
    this.lastCoalesce = null;
    this.current = { ...this.current, experiment: JSON.parse(snapshot) as Experiment };
    this.emit(new Set<Change>(["experiment"]));
    return true;
  }

  private emit(changed: Set<Change>): void {
    for (const listener of [...this.listeners]) listener(this.current, changed);
  }
}
