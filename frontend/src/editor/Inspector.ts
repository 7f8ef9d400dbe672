/**
 * The form of the selected layer, generated from its kind's JSON schema in the registry:
 * name, inputs, every parameter (types, ranges, defaults, nested activation / initializer
 * choices), what the validator computed for it, and move / delete / freeze.
 */

import { compact, h, num, shape as fmtShape } from "../dom";
import { fieldControl, objectForm, type Control, type ObjectForm } from "../forms/fields";
import type { LayerInfo } from "../protocol";
import type { KindEntry } from "../registry";
import type { LayerSpec } from "../state";
import { INPUT } from "./graph";

export interface InspectorActions {
  rename(from: string, to: string): void;
  setParam(name: string, key: string, value: unknown): void;
  setInputs(name: string, inputs: string[]): void;
  setFrozen(name: string, frozen: boolean): void;
  move(name: string, delta: -1 | 1): void;
  remove(name: string): void;
}

export interface InspectorData {
  layer: LayerSpec;
  index: number;
  entry: KindEntry | undefined;
  /** layers before this one (candidate inputs) */
  earlier: string[];
  inputs: string[];
  info: LayerInfo | undefined;
  errors: string[];
  frozen: boolean;
  last: boolean;
  /** field -> the server's problem with it (outlined in the form) */
  fieldErrors: Map<string, string>;
}

export class Inspector {
  readonly el: HTMLElement;
  private builtFor: string | null = null;
  private form: ObjectForm | null = null;
  private nameControl: Control | null = null;
  private inputsEl: HTMLElement | null = null;
  private statsEl: HTMLElement | null = null;
  private freezeBox: HTMLInputElement | null = null;
  private moveUp: HTMLButtonElement | null = null;
  private moveDown: HTMLButtonElement | null = null;
  private current: InspectorData | null = null;

  constructor(private readonly actions: InspectorActions) {
    this.el = h("div.inspector");
  }

  /** Show nothing selected: a summary of the whole network instead. */
  showNetwork(content: HTMLElement): void {
    this.builtFor = null;
    this.current = null;
    this.el.replaceChildren(content);
  }

  show(data: InspectorData): void {
    this.current = data;
    const key = `${data.index}:${data.layer.kind}:${data.entry ? "r" : "-"}`;
    if (key !== this.builtFor || !this.form) this.build(data, key);
    this.nameControl?.sync(data.layer.name);
    this.form?.sync(data.layer as unknown as Record<string, unknown>);
    this.renderInputs(data);
    this.renderStats(data);
    if (this.freezeBox) this.freezeBox.checked = data.frozen;
    if (this.moveUp) this.moveUp.disabled = data.index === 0;
    if (this.moveDown) this.moveDown.disabled = data.last;
    for (const row of this.el.querySelectorAll<HTMLElement>(".form > .field[data-field]")) {
      const problem = data.fieldErrors.get(row.dataset.field ?? "");
      row.classList.toggle("server-invalid", problem !== undefined);
      row.title = problem ?? "";
    }
  }

  private build(data: InspectorData, key: string): void {
    this.builtFor = key;
    const entry = data.entry;
    const nameSchema = { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_.\\-]*$", maxLength: 64, description: "unique name; other layers refer to it" };
    this.nameControl = fieldControl({
      name: "name",
      schema: nameSchema,
      defs: {},
      required: true,
      onChange: (v) => {
        const cur = this.current;
        if (cur && typeof v === "string" && v && v !== cur.layer.name) this.actions.rename(cur.layer.name, v);
      },
    });
    this.form = entry
      ? objectForm(entry.params, entry.defs, entry.required, (k, v) => {
          if (this.current) this.actions.setParam(this.current.layer.name, k, v);
        })
      : null;
    this.inputsEl = h("div.inputs-list");
    this.statsEl = h("div.layer-stats");
    this.freezeBox = h("input", { type: "checkbox", name: "freeze" });
    this.freezeBox.addEventListener("change", () => {
      if (this.current) this.actions.setFrozen(this.current.layer.name, this.freezeBox?.checked ?? false);
    });
    this.moveUp = h("button.icon", { type: "button", title: "move up (Alt+↑)", onclick: () => this.current && this.actions.move(this.current.layer.name, -1) }, "↑");
    this.moveDown = h("button.icon", { type: "button", title: "move down (Alt+↓)", onclick: () => this.current && this.actions.move(this.current.layer.name, 1) }, "↓");
    const del = h("button.icon.danger", { type: "button", title: "delete layer (Delete)", onclick: () => this.current && this.actions.remove(this.current.layer.name) }, "Delete");
    this.el.replaceChildren(
      h("div.inspector-head", null,
        h("span.kind-tag", { title: entry?.title ?? "" }, data.layer.kind),
        h("span.inspector-desc", { title: entry?.description ?? "" }, entry?.description ?? "unknown kind (not in the registry)"),
        this.moveUp, this.moveDown, del),
      this.statsEl,
      h("div.form", null,
        this.nameControl.el,
        h("div.field", { "data-field": "inputs" }, h("label.field-label", { title: "layers feeding this one; drag a node's bottom port to add one" }, "inputs"), this.inputsEl),
        h("div.field", { "data-field": "freeze" }, h("label.field-label", { title: "do not train this layer's parameters (train.freeze)" }, "frozen"), h("span.control", null, this.freezeBox))),
      this.form?.el ?? "",
    );
  }

  private renderInputs(data: InspectorData): void {
    const el = this.inputsEl;
    if (!el) return;
    const explicit = !!data.layer.inputs?.length;
    const chips = data.inputs.map((name) =>
      h("span.input-chip", null, name,
        data.inputs.length > 1
          ? h("button.x", { type: "button", title: `stop reading from ${name}`, onclick: () => this.actions.setInputs(data.layer.name, data.inputs.filter((n) => n !== name)) }, "×")
          : null),
    );
    const candidates = [INPUT, ...data.earlier].filter((n) => !data.inputs.includes(n));
    const add = h("select.add-input", { title: "add an input (skip connection)" },
      h("option", { value: "" }, "+ input"),
      candidates.map((n) => h("option", { value: n }, n)));
    add.addEventListener("change", () => {
      if (add.value) this.actions.setInputs(data.layer.name, [...data.inputs, add.value]);
    });
    el.replaceChildren(...chips, candidates.length ? add : "", explicit ? "" : h("span.muted", null, " (previous layer)"));
  }

  private renderStats(data: InspectorData): void {
    const el = this.statsEl;
    if (!el) return;
    if (data.errors.length) {
      el.replaceChildren(...data.errors.map((m) => h("div.error-box", null, m)));
      return;
    }
    const info = data.info;
    if (!info) {
      el.replaceChildren(h("span.muted", null, "shape unknown until the network validates"));
      return;
    }
    const cell = (k: string, v: string, title?: string) => h("span.stat", { title: title ?? "" }, h("b", null, v), ` ${k}`);
    el.replaceChildren(
      cell("out", fmtShape(info.output_shape), "output shape (no batch axis)"),
      cell("params", compact(info.params), `${info.params.toLocaleString()} parameters${info.trainable ? "" : " (frozen)"}`),
      cell("MACs", compact(info.macs), "multiply-adds per example"),
      info.receptive_field ? cell("rf", `${info.receptive_field}px`, "receptive field: side of the input patch one output pixel sees") : "",
      info.jump ? cell("jump", num(info.jump), "input pixels per output pixel (product of strides)") : "",
      cell("act", `${compact(info.activation_bytes)}B`, "bytes of this layer's output per example (float32)"),
    );
  }
}
