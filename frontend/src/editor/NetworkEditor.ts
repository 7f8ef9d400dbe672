/**
 * The network editor: palette + graph + inspector over the Store's document, with
 * debounced live validation (POST /api/validate) whose shapes, parameter counts, receptive
 * fields and errors are drawn on the nodes. See README.md for why it is hand-written.
 */

import { ApiError, endpoints } from "../api";
import { compact, debounce, h, shape as fmtShape } from "../dom";
import { describe } from "../forms/schema";
import type { LayerInfo, ValidateResult, ValidationError } from "../protocol";
import { findKind, type KindEntry, type Registry } from "../registry";
import type { LayerSpec, Store } from "../state";
import {
  connect,
  connectProblem,
  disconnect,
  effectiveInputs,
  insertLayer,
  moveLayer,
  removeLayer,
  renameLayer,
  simplifyInputs,
  uniqueName,
} from "./graph";
import { GraphView, type Selection } from "./GraphView";
import { Inspector } from "./Inspector";
import { Palette } from "./Palette";

const VALIDATE_DELAY_MS = 250; // after the last edit

export interface Validation {
  result: ValidateResult | null;
  /** a transport or schema error that is not about one layer */
  problem: string | null;
}

export class NetworkEditor {
  readonly el: HTMLElement;
  private graph: GraphView;
  private palette: Palette;
  private inspector: Inspector;
  private registry: Registry | null = null;
  private selection: Selection = null;
  private validation: Validation = { result: null, problem: null };
  private pending = false;
  private requestId = 0;
  private abort: AbortController | null = null;
  private globalErrors: HTMLElement;
  private totals: HTMLElement;
  private listeners = new Set<(v: Validation) => void>();
  private readonly scheduleValidation = debounce(() => void this.validate(), VALIDATE_DELAY_MS);

  constructor(
    private readonly store: Store,
    private readonly toast: (message: string, kind?: "error" | "info") => void,
  ) {
    this.palette = new Palette((kind) => this.add(kind));
    this.graph = new GraphView({
      select: (sel) => this.select(sel),
      insert: (kind, index) => this.insert(kind, index),
      connect: (from, to) => this.connect(from, to),
    });
    this.inspector = new Inspector({
      rename: (from, to) => this.rename(from, to),
      setParam: (name, key, value) =>
        this.store.edit((doc) => {
          const layer = doc.network.layers.find((l) => l.name === name) as Record<string, unknown> | undefined;
          if (!layer) return;
          if (value === undefined) delete layer[key];
          else layer[key] = value;
        }, { coalesce: `param:${name}:${key}` }),
      setInputs: (name, inputs) =>
        this.store.edit((doc) => {
          const layer = doc.network.layers.find((l) => l.name === name);
          if (layer) layer.inputs = inputs;
          simplifyInputs(doc.network.layers);
        }),
      setFrozen: (name, frozen) =>
        this.store.edit((doc) => {
          const train = (doc.train ??= {});
          const set = new Set(train.freeze ?? []);
          if (frozen) set.add(name);
          else set.delete(name);
          if (set.size) train.freeze = [...set];
          else delete train.freeze;
        }),
      move: (name, delta) => this.store.edit((doc) => void moveLayer(doc.network.layers, name, delta)),
      remove: (name) => this.remove(name),
    });
    this.globalErrors = h("div.global-errors");
    this.totals = h("span.totals");
    this.el = h("div.network-editor",
      h("div.section-head", null, h("span.section-title", null, "Network"), this.totals),
      h("div.editor-body", null, this.palette.el, h("div.graph-wrap", null, this.globalErrors, this.graph.el)),
      this.inspector.el);
    store.subscribe((_, changed) => {
      if (changed.has("experiment")) this.refresh(true);
    });
  }

  setRegistry(registry: Registry): void {
    this.registry = registry;
    this.palette.setKinds(registry.layers);
    this.refresh(true);
  }

  onValidation(cb: (v: Validation) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  get lastValidation(): Validation {
    return this.validation;
  }

  /** Re-render from the document; `revalidate` schedules a server check. */
  refresh(revalidate = false): void {
    const layers = this.store.experiment.network.layers;
    if (this.selection?.type === "layer" && !layers.some((l) => l.name === (this.selection as { name: string }).name)) this.selection = null;
    if (revalidate) {
      this.pending = true;
      this.scheduleValidation();
    }
    const { info, errors, stale } = this.indexValidation();
    this.graph.render({
      layers,
      info,
      errors,
      stale,
      inputShape: this.validation.result?.summary?.input_shape ?? this.validation.result?.dataset?.input_shape ?? this.lastInputShape,
      selection: this.selection,
      pending: this.pending,
      defaults: (kind) => this.defaultsOf(kind),
      ...this.transferLayers(layers.map((l) => l.name)),
    });
    this.renderGlobal();
    this.renderInspector(stale ? new Map() : info, errors);
  }

  /** Transfer learning in the document: the frozen layers, and those train.init_from loads (all when it names none). */
  private transferLayers(names: string[]): { frozen: Set<string>; loaded: Set<string> } {
    const train = this.store.experiment.train;
    const init = train?.init_from ?? null;
    const loaded = init === null ? [] : init.layers ?? names;
    return { frozen: new Set(train?.freeze ?? []), loaded: new Set(loaded) };
  }

  private defaultCache = new Map<string, Record<string, unknown>>();

  /** The schema defaults of a layer kind's parameters (from the registry). */
  private defaultsOf(kind: string): Record<string, unknown> {
    let cached = this.defaultCache.get(kind);
    if (cached) return cached;
    const entry = this.registry ? findKind(this.registry.layers, kind) : undefined;
    cached = {};
    for (const [key, schema] of Object.entries(entry?.params ?? {})) {
      if ("default" in schema) cached[key] = schema.default;
    }
    if (entry) this.defaultCache.set(kind, cached);
    return cached;
  }

  /** Shapes of the last network that validated: shown dimmed while the current one has errors. */
  private lastGood = new Map<string, LayerInfo>();
  private lastInputShape: number[] | null = null;
  /** "layer:field" -> the server's problem with that field */
  private fieldErrors = new Map<string, string>();

  private indexValidation(): { info: Map<string, LayerInfo>; errors: Map<string, string[]>; stale: boolean } {
    const info = new Map<string, LayerInfo>();
    const errors = new Map<string, string[]>();
    const summary = this.validation.result?.summary;
    for (const l of summary?.layers ?? []) info.set(l.name, l);
    const stale = !summary;
    if (summary) {
      this.lastGood = new Map(info);
      this.lastInputShape = summary.input_shape;
    }
    else for (const [k, v] of this.lastGood) info.set(k, v);
    this.fieldErrors.clear();
    for (const e of this.validation.result?.errors ?? []) {
      if (!e.layer) continue;
      // pydantic problems name the field: network.layers.2.kernel_size
      const field = /^network\.layers\.\d+\.([A-Za-z_]+)/.exec(e.path ?? "")?.[1];
      if (field) this.fieldErrors.set(`${e.layer}:${field}`, e.problem || e.message);
      else {
        // builder problems name the parameter in words: "out_channels must be at least 1"
        const layer = this.store.experiment.network.layers.find((l) => l.name === e.layer);
        for (const key of Object.keys(layer ?? {})) {
          if (key !== "name" && key !== "kind" && new RegExp(`\\b${key}\\b`).test(e.problem)) this.fieldErrors.set(`${e.layer}:${key}`, e.problem);
        }
      }
      const text = e.problem ? `${e.problem}${e.fix ? `. Fix: ${e.fix}` : ""}` : e.message;
      errors.set(e.layer, [...(errors.get(e.layer) ?? []), text]);
    }
    return { info, errors, stale };
  }

  private renderGlobal(): void {
    const v = this.validation;
    const global = (v.result?.errors ?? []).filter((e) => !e.layer).map((e) => e.message || e.problem);
    if (v.problem) global.unshift(v.problem);
    this.globalErrors.replaceChildren(...global.map((m) => h("div.error-box", null, m)));
    const s = v.result?.summary;
    this.totals.replaceChildren(
      s ? h("span", { title: "trainable + frozen parameters" }, `${compact(s.total_params)} params`) : "",
      s ? h("span", { title: "multiply-adds per example" }, `${compact(s.total_macs)} MACs`) : "",
      s ? h("span", { title: "output shape" }, `→ ${fmtShape(s.output_shape)}`) : "",
      h("span.validity", { class: `validity ${this.pending ? "pending" : v.result?.ok ? "ok" : "bad"}`, title: this.pending ? "checking…" : v.result?.ok ? "the network is valid" : "the network has errors" },
        this.pending ? "checking" : v.result?.ok ? "valid" : "invalid"),
    );
  }

  private renderInspector(info: Map<string, LayerInfo>, errors: Map<string, string[]>): void {
    const layers = this.store.experiment.network.layers;
    const sel = this.selection;
    if (sel?.type === "layer") {
      const index = layers.findIndex((l) => l.name === sel.name);
      const layer = layers[index];
      if (layer) {
        this.inspector.show({
          layer,
          index,
          entry: this.registry ? findKind(this.registry.layers, layer.kind) : undefined,
          earlier: layers.slice(0, index).map((l) => l.name),
          inputs: effectiveInputs(layers, index),
          info: info.get(layer.name),
          errors: errors.get(layer.name) ?? [],
          frozen: this.store.experiment.train?.freeze?.includes(layer.name) ?? false,
          fieldErrors: new Map([...this.fieldErrors].filter(([k]) => k.startsWith(`${layer.name}:`)).map(([k, v]) => [k.slice(layer.name.length + 1), v])),
          last: index === layers.length - 1,
        });
        return;
      }
    }
    const s = this.validation.result?.summary;
    const about = this.store.experiment.description;
    this.inspector.showNetwork(
      h("div.inspector-empty", null,
        about ? h("p.about", null, about) : null,
        sel?.type === "edge"
          ? h("p", null, h("b", null, `${sel.from} → ${sel.to}`), " selected. Press Delete to remove this connection.")
          : h("p", null, "Click a layer to edit it. Drag a kind from the palette onto the graph (or click it) to add one; drag a node's bottom port onto a later layer for a skip connection."),
        s
          ? h("p.muted", null, `${layers.length} layers · ${s.total_params.toLocaleString()} parameters · ${compact(s.total_macs)} multiply-adds and ${compact(s.activation_bytes)}B of activations per example`)
          : null,
        h("p.muted", null, "Press ? for shortcuts.")),
    );
  }

  select(selection: Selection): void {
    this.selection = selection;
    this.refresh(false);
    if (selection?.type === "layer") this.graph.reveal(selection.name);
  }

  get selected(): Selection {
    return this.selection;
  }

  private newLayer(kind: string, name: string): LayerSpec {
    const layer: Record<string, unknown> = { kind, name };
    const entry: KindEntry | undefined = this.registry ? findKind(this.registry.layers, kind) : undefined;
    for (const key of entry?.required ?? []) {
      const schema = entry?.params[key];
      if (!schema) continue;
      const field = describe(schema, entry.defs);
      if (field.hasDefault) continue;
      const shape = field.shape;
      // Required parameters without a default need a starting value; the student edits it next.
      if (shape.type === "number") layer[key] = shape.integer ? 16 : (shape.min ?? 0);
      else if (shape.type === "union") {
        const preferred = shape.members.find((m) => m.kind === "relu") ?? shape.members[0];
        if (preferred) layer[key] = { kind: preferred.kind };
      } else if (shape.type === "choice" && shape.options[0] !== undefined) layer[key] = shape.options[0];
    }
    return layer as unknown as LayerSpec;
  }

  /** Click on a palette chip: add after the selected layer, or at the end. */
  add(kind: string): void {
    const layers = this.store.experiment.network.layers;
    const sel = this.selection;
    const index = sel?.type === "layer" ? layers.findIndex((l) => l.name === sel.name) + 1 : layers.length;
    this.insert(kind, index);
  }

  insert(kind: string, index: number): void {
    const name = uniqueName(this.store.experiment.network.layers, kind);
    const layer = this.newLayer(kind, name);
    this.store.edit((doc) => insertLayer(doc.network.layers, index, layer));
    this.select({ type: "layer", name });
  }

  connect(from: string, to: string): void {
    const problem = connectProblem(this.store.experiment.network.layers, from, to);
    if (problem) return this.toast(problem, "error");
    this.store.edit((doc) => connect(doc.network.layers, from, to));
    this.select({ type: "layer", name: to });
  }

  rename(from: string, to: string): void {
    if (this.store.experiment.network.layers.some((l) => l.name === to) || to === "input") {
      this.toast(`a layer named '${to}' exists already`, "error");
      return;
    }
    this.store.edit((doc) => {
      renameLayer(doc.network.layers, from, to);
      if (doc.train?.freeze) doc.train.freeze = doc.train.freeze.map((n) => (n === from ? to : n));
    }, { coalesce: `rename:${from}` });
    this.selection = { type: "layer", name: to };
    this.refresh(false);
  }

  remove(name: string): void {
    const layers = this.store.experiment.network.layers;
    if (layers.length <= 1) return this.toast("a network needs at least one layer", "error");
    const index = layers.findIndex((l) => l.name === name);
    this.store.edit((doc) => {
      removeLayer(doc.network.layers, name);
      if (doc.train?.freeze) {
        doc.train.freeze = doc.train.freeze.filter((n) => n !== name);
        if (!doc.train.freeze.length) delete doc.train.freeze;
      }
    });
    const after = this.store.experiment.network.layers;
    const next = after[Math.min(index, after.length - 1)];
    this.select(next ? { type: "layer", name: next.name } : null);
  }

  /** Delete / Esc / arrows when the focus is not in a form field; true when handled. */
  handleKey(e: KeyboardEvent): boolean {
    const layers = this.store.experiment.network.layers;
    const sel = this.selection;
    if (e.key === "Escape" && sel) {
      this.select(null);
      return true;
    }
    if ((e.key === "Delete" || e.key === "Backspace") && sel) {
      if (sel.type === "layer") this.remove(sel.name);
      else {
        const problem = (() => {
          let p: string | null = null;
          this.store.edit((doc) => void (p = disconnect(doc.network.layers, sel.from, sel.to)));
          return p;
        })();
        if (problem) this.toast(problem, "error");
        else this.select(null);
      }
      return true;
    }
    if ((e.key === "ArrowUp" || e.key === "ArrowDown") && layers.length) {
      const delta = e.key === "ArrowUp" ? -1 : 1;
      if (e.altKey && sel?.type === "layer") {
        this.store.edit((doc) => void moveLayer(doc.network.layers, sel.name, delta));
        return true;
      }
      const index = sel?.type === "layer" ? layers.findIndex((l) => l.name === sel.name) : delta > 0 ? -1 : layers.length;
      const next = layers[Math.max(0, Math.min(layers.length - 1, index + delta))];
      if (next) this.select({ type: "layer", name: next.name });
      return true;
    }
    return false;
  }

  private async validate(): Promise<void> {
    const id = ++this.requestId;
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    const experiment = this.store.experiment;
    let next: Validation;
    try {
      const result = await endpoints.validate(experiment, abort.signal);
      next = { result, problem: null };
    } catch (err) {
      if (id !== this.requestId) return;
      if (err instanceof ApiError && err.status === 422) {
        next = { result: { ok: false, summary: null, errors: schemaErrors(err.detail, experiment.network.layers) }, problem: null };
      } else if ((err as { name?: string }).name === "AbortError") {
        return;
      } else {
        next = { result: this.validation.result, problem: `cannot validate: ${(err as Error).message}` };
      }
    }
    if (id !== this.requestId) return;
    this.validation = next;
    this.pending = false;
    this.refresh(false);
    for (const cb of this.listeners) cb(next);
  }
}

/** FastAPI's 422 detail ([{loc: ["body", "network", "layers", 2, "conv2d", "out_channels"], msg}]) -> per-layer errors. */
function schemaErrors(detail: unknown, layers: LayerSpec[]): ValidationError[] {
  const list = (detail as { detail?: unknown })?.detail;
  if (!Array.isArray(list)) return [{ layer: null, problem: String((detail as { detail?: unknown })?.detail ?? detail), fix: "", message: String(detail), path: null }];
  return list.map((d: { loc?: (string | number)[]; msg?: string }) => {
    const loc = d.loc ?? [];
    const at = loc.indexOf("layers");
    const index = at >= 0 ? loc[at + 1] : undefined;
    const layer = typeof index === "number" ? (layers[index]?.name ?? null) : null;
    const field = loc.slice(at >= 0 ? at + 3 : 1).join(".");
    const message = `${field ? `${field}: ` : ""}${d.msg ?? "invalid"}`;
    return { layer, problem: message, fix: "", message: layer ? message : `${loc.slice(1).join(".")}: ${d.msg ?? ""}`, path: loc.slice(1).join(".") || null };
  });
}
