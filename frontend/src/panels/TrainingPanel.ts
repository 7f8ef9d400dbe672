/**
 * The training panel: optimizer and its parameters, the learning rate (log slider + box;
 * live while a run is going: a `set` command), the schedule with a plot of its LR curve,
 * how long to train (until stopped, epochs or steps), batch size, regularization,
 * dropout, seed and device, and the live views' frame rates. Every form is generated
 * from the registry's schemas; fields the page does not place explicitly fall into
 * "Advanced" by themselves, so a new TrainConfig field appears without code here.
 */

import { endpoints } from "../api";
import { debounce, h, num } from "../dom";
import { fieldControl, objectForm, type Control, type ObjectForm } from "../forms/fields";
import { describe, resolve, type JsonSchema } from "../forms/schema";
import type { Experiment, TrainConfig } from "../generated/schema";
import type { LiveViewInfo } from "../live";
import type { Health } from "../protocol";
import { findKind, type KindEntry, type Registry } from "../registry";
import type { Store } from "../state";
import { RunLengthControl, applyLength, lengthOf } from "./RunLength";
import { SchedulePlot } from "./SchedulePlot";

/** Live-tunable values (the `set` command). */
export interface LivePatch {
  lr?: number;
  momentum?: number;
  weight_decay?: number;
  dropout?: number;
}

export interface TrainingPanelHooks {
  /** true while a run is going: edits of live values are sent to it */
  running(): boolean;
  sendLive(patch: LivePatch): void;
  /**
   * Steps per epoch and in the whole run, as the server computed them (POST /api/validate),
   * when known; totalSteps is null for a run that trains until stopped.
   */
  runShape(): { stepsPerEpoch: number; totalSteps: number | null } | null;
}

const PRIMARY = ["batch_size", "l2", "l1", "loss", "seed", "device"]; // placed in the main groups, after "train for"
const DEFAULT_EPOCHS = 10; // TrainConfig.epochs' default when the schema does not say
const UNBOUNDED_PREVIEW_EPOCHS = 10; // LR preview horizon of a run that trains until stopped
const MAX_RATE_HZ = 60; // ProbeConfig.rates' bound (server/schemas.py)
/** Labels of the ProbeConfig fields ("probes" are the live views since the frame clock). */
const PROBE_LABELS: Record<string, string> = {
  enabled: "live views on",
  budget: "time budget",
  histogram_bins: "histogram bins",
  boundary_resolution: "2D map cells",
  doctor_ignore: "doctor ignores",
};
const LR_SLIDER = { lo: -5, hi: 1 }; // log10 range of the slider; the box accepts the schema's full range
const PREVIEW_DELAY_MS = 250;

export class TrainingPanel {
  readonly el: HTMLElement;
  private registry: Registry | null = null;
  private optSelect: HTMLSelectElement;
  private optDesc: HTMLElement;
  private optForm: ObjectForm | null = null;
  private optKind: string | null = null;
  private optHost: HTMLElement;
  private schedSelect: HTMLSelectElement;
  private schedForm: ObjectForm | null = null;
  private schedKind: string | null = null;
  private schedHost: HTMLElement;
  private lrSlider: HTMLInputElement;
  private lrBox: HTMLInputElement;
  private lrLive: HTMLElement;
  private dropoutRow: HTMLElement;
  private dropoutSlider: HTMLInputElement;
  private dropoutValue: HTMLElement;
  private controls = new Map<string, Control>();
  private mainHost: HTMLElement;
  private advancedHost: HTMLElement;
  private probeForm: ObjectForm | null = null;
  private length: RunLengthControl | null = null;
  private defaultEpochs = DEFAULT_EPOCHS;
  /** the frame clock's live views (GET /api/views), for the frame-rate rows */
  private liveViews: LiveViewInfo[] = [];
  private ratesHost: HTMLElement;
  private rateInputs = new Map<string, HTMLInputElement>();
  private deviceInfo: HTMLElement;
  private plot = new SchedulePlot();
  private lastPreviewKey = "";
  private readonly schedulePreview = debounce(() => void this.loadPreview(), PREVIEW_DELAY_MS);

  constructor(
    private readonly store: Store,
    private readonly hooks: TrainingPanelHooks,
  ) {
    this.optSelect = h("select", { name: "optimizer", "aria-label": "optimizer" });
    this.optSelect.addEventListener("change", () =>
      this.store.edit((doc) => {
        const train = (doc.train ??= {});
        const lr = this.lr();
        const entry = this.registry && findKind(this.registry.optimizers, this.optSelect.value);
        // keep the learning rate only if the student set one; otherwise take the new optimizer's default
        train.optimizer = { kind: this.optSelect.value, ...(train.optimizer && "lr" in train.optimizer && entry?.params.lr ? { lr } : {}) } as TrainConfig["optimizer"];
      }));
    this.optDesc = h("div.muted.small");
    this.optHost = h("div");
    this.schedSelect = h("select", { name: "schedule", "aria-label": "schedule" });
    this.schedSelect.addEventListener("change", () =>
      this.store.edit((doc) => {
        (doc.train ??= {}).schedule = { kind: this.schedSelect.value } as TrainConfig["schedule"];
      }));
    this.schedHost = h("div");
    this.lrSlider = h("input.lr-slider", { type: "range", min: LR_SLIDER.lo, max: LR_SLIDER.hi, step: 0.01, name: "lr_slider", "aria-label": "learning rate (log scale)" });
    this.lrBox = h("input.num", { type: "number", step: "any", name: "lr", "aria-label": "learning rate" });
    this.lrLive = h("span.live-badge", { hidden: true, title: "changes go to the running training at once" }, "live");
    this.lrSlider.addEventListener("input", () => this.setLr(Number((10 ** Number(this.lrSlider.value)).toPrecision(2))));
    this.lrBox.addEventListener("input", () => {
      const v = Number(this.lrBox.value);
      if (this.lrBox.value !== "" && Number.isFinite(v) && v > 0) this.setLr(v, false);
    });
    this.dropoutSlider = h("input", { type: "range", min: 0, max: 0.9, step: 0.05, name: "dropout", "aria-label": "dropout probability" });
    this.dropoutValue = h("span.value");
    this.dropoutSlider.addEventListener("input", () => this.setDropout(Number(this.dropoutSlider.value)));
    this.dropoutRow = h("div.field", { "data-field": "dropout", hidden: true },
      h("label.field-label", { title: "drop probability p of every dropout layer in the network" }, "dropout p"),
      h("span.control", null, this.dropoutSlider, this.dropoutValue));
    this.mainHost = h("div");
    this.advancedHost = h("div");
    this.ratesHost = h("div.rates");
    this.deviceInfo = h("span.muted.small");
    this.el = h("div.training-panel.panel-scroll",
      h("div.section-head", null, h("span.section-title", null, "Optimizer")),
      h("div.field", null, h("label.field-label", null, "optimizer"), h("span.control", null, this.optSelect)),
      this.optDesc,
      h("div.field.lr-field", { "data-field": "lr" },
        h("label.field-label", { title: "learning rate; drag while training to change it live" }, "learning rate"),
        h("span.control", null, this.lrSlider, this.lrBox, this.lrLive)),
      this.optHost,
      h("div.section-head", null, h("span.section-title", null, "Schedule")),
      h("div.field", null, h("label.field-label", null, "schedule"), h("span.control", null, this.schedSelect)),
      this.schedHost,
      this.plot.el,
      h("div.section-head", null, h("span.section-title", null, "Length, batch & regularization")),
      this.mainHost,
      this.dropoutRow,
      h("details.group", null, h("summary", null, "Advanced: clipping, early stopping, EMA, logging, live views"), this.advancedHost),
      h("div.device-line", null, this.deviceInfo));
    store.subscribe((_, changed) => {
      if (changed.has("experiment")) this.sync();
    });
  }

  setHealth(health: Health): void {
    const load = health.active_runs || health.queued_runs ? ` · ${health.active_runs} running, ${health.queued_runs} queued` : "";
    this.deviceInfo.textContent = `trains on ${health.device}${health.cuda_name ? ` (${health.cuda_name})` : ""} · dlplay ${health.version}${load}`;
  }

  setRegistry(registry: Registry): void {
    this.registry = registry;
    this.optSelect.replaceChildren(...registry.optimizers.map((o) => h("option", { value: o.kind, title: o.description }, o.kind)));
    this.schedSelect.replaceChildren(...registry.schedules.map((o) => h("option", { value: o.kind, title: o.description }, o.kind)));
    const schema = registry.train_schema;
    const defs = (schema.$defs ?? {}) as Record<string, JsonSchema>;
    const props = schema.properties ?? {};
    this.controls.clear();
    const epochsDefault = props.epochs?.default;
    this.defaultEpochs = typeof epochsDefault === "number" ? epochsDefault : DEFAULT_EPOCHS;
    this.length = new RunLengthControl((length) => this.store.edit((doc) => applyLength((doc.train ??= {}), length), { coalesce: "train:length" }), this.defaultEpochs);
    const make = (key: string): HTMLElement | null => {
      const s = props[key];
      if (!s) return null;
      const control = fieldControl({ name: key, schema: s, defs, onChange: (v) => this.setTrain(key, v) });
      this.controls.set(key, control);
      return control.el;
    };
    this.mainHost.replaceChildren(this.length.el, ...PRIMARY.map(make).filter((e): e is HTMLElement => e !== null));
    // warmup lives with the schedule
    const warm = make("warmup_steps");
    if (warm) this.schedHost.after(warm);
    const placed = new Set([...PRIMARY, "epochs", "max_steps", "optimizer", "schedule", "warmup_steps", "freeze"]);
    const advanced = Object.keys(props).filter((k) => !placed.has(k)).map(make).filter((e): e is HTMLElement => e !== null);
    const probeSchema = (registry.experiment_schema.$defs as Record<string, JsonSchema> | undefined)?.ProbeConfig;
    const probeHost: HTMLElement[] = [];
    if (probeSchema?.properties) {
      this.probeForm = objectForm(probeSchema.properties, defs, [], (key, value) =>
        this.store.edit((doc) => {
          const probes: Record<string, unknown> = { ...(doc.probes ?? {}) };
          if (value === undefined) delete probes[key];
          else probes[key] = value;
          doc.probes = probes as Experiment["probes"];
        }, { coalesce: `probes:${key}` }), { labels: PROBE_LABELS, skip: ["rates"] });
      probeHost.push(h("div.subhead", null, "Live views (what is measured while training)"), this.probeForm.el, this.ratesHost);
    }
    this.advancedHost.replaceChildren(...advanced, ...probeHost);
    this.buildRates();
    this.sync();
  }

  /** The frame clock's live views (GET /api/views): one frame-rate box each under "Live views". */
  setLiveViews(views: LiveViewInfo[]): void {
    this.liveViews = views;
    this.buildRates();
    this.sync();
  }

  /** Frame-rate boxes: empty = the view's default rate (the placeholder), else frames per second. */
  private buildRates(): void {
    this.rateInputs.clear();
    if (this.liveViews.length === 0) {
      this.ratesHost.replaceChildren();
      return;
    }
    // views a button computes (no rate) have nothing to set here
    const rows = this.liveViews.filter((v) => v.default_hz !== null).map((v) => {
      const input = h("input.num", {
        type: "number", min: 0, max: MAX_RATE_HZ, step: "any", name: `rate_${v.name}`,
        placeholder: String(v.default_hz), "aria-label": `${v.name} frames per second`,
      });
      const error = h("div.field-error");
      input.addEventListener("input", () => {
        const text = input.value.trim();
        const value = Number(text);
        const bad = text !== "" && !(Number.isFinite(value) && value > 0 && value <= MAX_RATE_HZ);
        error.textContent = bad ? `a rate in (0, ${MAX_RATE_HZ}] frames per second, or empty for ${v.default_hz ?? "the default"}` : "";
        row.classList.toggle("invalid", bad);
        if (bad) return;
        this.store.edit((doc) => {
          const probes: Record<string, unknown> = { ...(doc.probes ?? {}) };
          const rates: Record<string, number> = { ...((probes.rates as Record<string, number> | undefined) ?? {}) };
          if (text === "") delete rates[v.name];
          else rates[v.name] = value;
          if (Object.keys(rates).length > 0) probes.rates = rates;
          else delete probes.rates;
          doc.probes = probes as Experiment["probes"];
        }, { coalesce: `probes:rates:${v.name}` });
      });
      this.rateInputs.set(v.name, input);
      const row = h("div.field", { "data-field": `rate_${v.name}` },
        h("label.field-label", { title: `${v.description ? `${v.description} · ` : ""}messages: ${v.messages.join(", ")} · default ${v.default_hz} frames/s` }, v.name.replace(/_/g, " ")),
        h("span.control", null, input, h("span.range", null, "frames/s")),
        error);
      return row;
    });
    this.ratesHost.replaceChildren(h("div.subhead", null, "Frame rates (empty = default)"), ...rows);
  }

  private train(): TrainConfig {
    return this.store.experiment.train ?? {};
  }

  private optEntry(): KindEntry | undefined {
    if (!this.registry) return undefined;
    const kind = this.train().optimizer?.kind ?? this.defaultOf("optimizer");
    return findKind(this.registry.optimizers, kind ?? "") ?? this.registry.optimizers[0];
  }

  /** The `kind` a TrainConfig union field defaults to (from the schema). */
  private defaultOf(key: "optimizer" | "schedule"): string | undefined {
    const schema = this.registry?.train_schema.properties?.[key];
    const d = schema?.default as { kind?: string } | undefined;
    if (d?.kind) return d.kind;
    // pydantic writes default_factory fields without a default: the first union member
    const defs = (this.registry?.train_schema.$defs ?? {}) as Record<string, JsonSchema>;
    const field = schema ? describe(schema, defs) : null;
    return field?.shape.type === "union" ? field.shape.members[0]?.kind : undefined;
  }

  lr(): number {
    const opt = this.train().optimizer as { lr?: number } | undefined;
    const entry = this.optEntry();
    return opt?.lr ?? (entry?.params.lr?.default as number | undefined) ?? 0.01;
  }

  private setLr(value: number, fromSlider = true): void {
    this.store.edit((doc) => {
      const train = (doc.train ??= {});
      const kind = train.optimizer?.kind ?? this.optEntry()?.kind;
      train.optimizer = { ...(train.optimizer ?? { kind }), lr: value } as TrainConfig["optimizer"];
    }, { coalesce: "lr" });
    if (!fromSlider) this.syncLrSlider(value);
    if (this.hooks.running()) this.hooks.sendLive({ lr: value });
  }

  private setDropout(p: number): void {
    this.dropoutValue.textContent = num(p, 2);
    this.store.edit((doc) => {
      for (const layer of doc.network.layers) if (layer.kind === "dropout") layer.p = p;
    }, { coalesce: "dropout" });
    if (this.hooks.running()) this.hooks.sendLive({ dropout: p });
  }

  private setTrain(key: string, value: unknown): void {
    this.store.edit((doc) => {
      const train = (doc.train ??= {}) as Record<string, unknown>;
      if (value === undefined) delete train[key];
      else train[key] = value;
    }, { coalesce: `train:${key}` });
  }

  private syncLrSlider(lr: number): void {
    this.lrSlider.value = String(Math.max(LR_SLIDER.lo, Math.min(LR_SLIDER.hi, Math.log10(lr))));
  }

  /** Reflect the document (and whether a run is live) in the controls. */
  sync(): void {
    if (!this.registry) return;
    const train = this.train();
    const entry = this.optEntry();
    if (entry && entry.kind !== this.optKind) {
      this.optKind = entry.kind;
      const params = { ...entry.params };
      delete params.lr;
      this.optForm = objectForm(params, entry.defs, entry.required, (key, value) => {
        this.store.edit((doc) => {
          const t = (doc.train ??= {});
          const opt: Record<string, unknown> = { ...(t.optimizer ?? { kind: entry.kind }) };
          if (value === undefined) delete opt[key];
          else opt[key] = value;
          t.optimizer = opt as unknown as TrainConfig["optimizer"];
        }, { coalesce: `opt:${key}` });
        if (this.hooks.running() && (key === "momentum" || key === "weight_decay") && typeof value === "number") {
          this.hooks.sendLive({ [key]: value });
        }
      });
      this.optHost.replaceChildren(this.optForm.el);
      this.optDesc.textContent = entry.description;
    }
    this.optSelect.value = entry?.kind ?? "";
    this.optForm?.sync((train.optimizer ?? {}) as Record<string, unknown>);
    const lr = this.lr();
    if (document.activeElement !== this.lrBox) this.lrBox.value = String(lr);
    if (document.activeElement !== this.lrSlider) this.syncLrSlider(lr);
    const schedKind = train.schedule?.kind ?? this.defaultOf("schedule") ?? "";
    if (schedKind !== this.schedKind && this.registry) {
      this.schedKind = schedKind;
      const sEntry = findKind(this.registry.schedules, schedKind);
      this.schedForm = sEntry
        ? objectForm(sEntry.params, sEntry.defs, sEntry.required, (key, value) =>
            this.store.edit((doc) => {
              const t = (doc.train ??= {});
              const sched: Record<string, unknown> = { ...(t.schedule ?? { kind: schedKind }) };
              if (value === undefined) delete sched[key];
              else sched[key] = value;
              t.schedule = sched as unknown as TrainConfig["schedule"];
            }, { coalesce: `sched:${key}` }))
        : null;
      this.schedHost.replaceChildren(sEntry?.description ? h("div.muted.small", null, sEntry.description) : "", this.schedForm?.el ?? "");
    }
    this.schedSelect.value = schedKind;
    this.schedForm?.sync((train.schedule ?? {}) as Record<string, unknown>);
    for (const [key, control] of this.controls) control.sync((train as Record<string, unknown>)[key]);
    this.length?.sync(lengthOf(train, this.defaultEpochs));
    const probes = (this.store.experiment.probes ?? {}) as Record<string, unknown>;
    this.probeForm?.sync(probes);
    const rates = (probes.rates ?? {}) as Record<string, number>;
    for (const [name, input] of this.rateInputs) if (document.activeElement !== input) input.value = rates[name] !== undefined ? String(rates[name]) : "";
    const dropouts = this.store.experiment.network.layers.filter((l) => l.kind === "dropout");
    this.dropoutRow.hidden = dropouts.length === 0;
    if (dropouts.length && document.activeElement !== this.dropoutSlider) {
      const p = (dropouts[0] as { p?: number }).p ?? 0.5;
      this.dropoutSlider.value = String(p);
      this.dropoutValue.textContent = num(p, 2);
    }
    this.setLive(this.hooks.running());
    const key = JSON.stringify([train, this.hooks.runShape()]);
    if (key !== this.lastPreviewKey) {
      this.lastPreviewKey = key;
      this.schedulePreview();
    }
  }

  /** Show that LR / dropout edits go to the running training. */
  setLive(live: boolean): void {
    this.lrLive.hidden = !live;
    this.el.classList.toggle("live", live);
  }

  /** The shown run's step and the LR it used there (its last metrics; null before any): drawn on the LR plot. */
  markStep(step: number | null, lr: number | null = null): void {
    this.plot.mark(step);
    this.plot.live(step, lr);
  }

  private async loadPreview(): Promise<void> {
    const train = this.train();
    const shape = this.hooks.runShape();
    if (!shape) return this.plot.error("the LR curve appears once the experiment validates");
    const key = this.lastPreviewKey;
    // a run without an end: preview its first epochs (a schedule that needs the length is the server's to refuse)
    const horizon = shape.totalSteps ?? UNBOUNDED_PREVIEW_EPOCHS * shape.stepsPerEpoch;
    try {
      const points = await endpoints.schedulePreview(train, shape.stepsPerEpoch, horizon);
      if (key !== this.lastPreviewKey) return;
      this.plot.set(points, shape.stepsPerEpoch, shape.totalSteps === null ? `trains until stopped; preview of its first ${UNBOUNDED_PREVIEW_EPOCHS} epochs` : null);
    } catch (err) {
      if (key === this.lastPreviewKey) this.plot.error(`no LR preview: ${(err as Error).message}`);
    }
  }
}
