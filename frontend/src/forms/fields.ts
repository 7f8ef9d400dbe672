/**
 * Form controls generated from JSON schema (see schema.ts). Each control is
 * `{el, sync(value)}`: `sync` shows a value changed elsewhere (undo, a preset) without
 * rebuilding, and never overwrites the box the user is typing in.
 *
 * `onChange(value)` reports a new valid value; `undefined` means "remove the field, use the
 * default". Invalid input stays in the box, outlined red, with the reason as a tooltip and
 * under the field; it is not committed.
 */

import { h } from "../dom";
import { describe, label, rangeProblem, rangeText, type Defs, type Field, type JsonSchema, type MixedPart, type UnionMember } from "./schema";

export interface Control {
  el: HTMLElement;
  sync(value: unknown): void;
}

export interface FieldOptions {
  name: string;
  schema: JsonSchema;
  defs: Defs;
  required?: boolean;
  onChange(value: unknown): void;
  /** Overrides the label text. */
  label?: string;
  /** Options of a string field the page knows better than the schema (e.g. layer names). */
  suggestions?: string[];
}

const isFocused = (el: Element): boolean => el === document.activeElement;

function formatDefault(v: unknown): string {
  if (v === undefined) return "";
  if (v === null) return "none";
  if (Array.isArray(v)) return v.join(",");
  if (typeof v === "object") return String((v as { kind?: string }).kind ?? "");
  return String(v);
}

/** A labelled row: label on the left, control on the right, hint/error below. */
export function fieldControl(opts: FieldOptions): Control {
  const field = describe(opts.schema, opts.defs);
  const title = field.description || undefined;
  const row = h("div.field", { "data-field": opts.name });
  const errorLine = h("div.field-error");
  const setError = (message: string | null, input?: HTMLElement): void => {
    errorLine.textContent = message ?? "";
    row.classList.toggle("invalid", !!message);
    if (input) input.title = message ?? title ?? "";
  };
  const labelEl = h("label.field-label", { title }, opts.label ?? label(opts.name));
  const inner = innerControl(field, opts, setError);
  if (inner.block) {
    row.classList.add("field-block");
    row.append(h("div.field-head", null, labelEl, inner.head ?? null), inner.el, errorLine);
  } else {
    row.append(labelEl, inner.el, errorLine);
  }
  return { el: row, sync: inner.sync };
}

interface InnerControl extends Control {
  /** laid out under the label (nested forms) instead of beside it */
  block?: boolean;
  head?: HTMLElement;
}

function innerControl(field: Field, opts: FieldOptions, setError: (m: string | null, input?: HTMLElement) => void): InnerControl {
  const shape = field.shape;
  const placeholder = field.hasDefault ? formatDefault(field.default) : opts.required ? "required" : "";
  switch (shape.type) {
    case "number": {
      const input = h("input.num", {
        type: "number",
        step: shape.integer ? "1" : "any",
        placeholder: field.nullable && !field.hasDefault ? "none" : placeholder,
        min: shape.min !== undefined && !shape.minExclusive ? shape.min : undefined,
        max: shape.max !== undefined && !shape.maxExclusive ? shape.max : undefined,
        name: opts.name,
      });
      const hint = h("span.range", null, rangeText(shape));
      input.addEventListener("input", () => {
        const text = input.value.trim();
        if (text === "") {
          if (opts.required && !field.hasDefault) return setError("required", input);
          setError(null, input);
          return opts.onChange(field.nullable && !field.hasDefault ? null : undefined);
        }
        const value = Number(text);
        const problem = rangeProblem(shape, value);
        setError(problem ? `${label(opts.name)} ${problem}` : null, input);
        if (!problem) opts.onChange(value);
      });
      return {
        el: h("span.control", null, input, hint),
        sync(value) {
          if (isFocused(input)) return;
          input.value = value === undefined || value === null ? "" : String(value);
          setError(null, input);
        },
      };
    }
    case "boolean": {
      const input = h("input", { type: "checkbox", name: opts.name });
      input.addEventListener("change", () => opts.onChange(input.checked));
      return {
        el: h("span.control", null, input),
        sync(value) {
          input.checked = Boolean(value ?? field.default);
        },
      };
    }
    case "choice": {
      const select = h("select", { name: opts.name });
      if (field.nullable) select.append(h("option", { value: "__null" }, "none"));
      shape.options.forEach((o, i) => select.append(h("option", { value: String(i) }, String(o))));
      select.addEventListener("change", () => {
        if (select.value === "__null") return opts.onChange(null);
        opts.onChange(shape.options[Number(select.value)]);
      });
      return {
        el: h("span.control", null, select),
        sync(value) {
          const v = value === undefined ? field.default : value;
          const i = shape.options.indexOf(v as string);
          select.value = v === null || i < 0 ? (field.nullable ? "__null" : "0") : String(i);
        },
      };
    }
    case "string": {
      const list = opts.suggestions?.length ? `dl-${opts.name}-${Math.random().toString(36).slice(2, 8)}` : undefined;
      const input = h("input.text", { type: "text", name: opts.name, placeholder, list, spellcheck: "false" });
      const datalist = list ? h("datalist", { id: list }, (opts.suggestions ?? []).map((s) => h("option", { value: s }))) : null;
      const pattern = shape.pattern ? new RegExp(shape.pattern) : null;
      input.addEventListener("input", () => {
        const text = input.value;
        if (text === "" && field.nullable) {
          setError(null, input);
          return opts.onChange(null);
        }
        if (pattern && !pattern.test(text)) return setError(`${label(opts.name)}: letters, digits, _ . - (not starting with a digit)`, input);
        if (shape.maxLength !== undefined && text.length > shape.maxLength) return setError(`at most ${shape.maxLength} characters`, input);
        setError(null, input);
        opts.onChange(text);
      });
      return {
        el: h("span.control", null, input, datalist),
        sync(value) {
          if (isFocused(input)) return;
          input.value = value === undefined || value === null ? "" : String(value);
          setError(null, input);
        },
      };
    }
    case "list": {
      const input = h("input.text", { type: "text", name: opts.name, placeholder: "comma separated", spellcheck: "false" });
      input.addEventListener("input", () => {
        const items = input.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (shape.item === "number") {
          const nums = items.map(Number);
          if (nums.some((n) => !Number.isFinite(n))) return setError("numbers, comma separated", input);
          setError(null, input);
          return opts.onChange(nums);
        }
        setError(null, input);
        opts.onChange(items);
      });
      return {
        el: h("span.control", null, input),
        sync(value) {
          if (isFocused(input)) return;
          input.value = Array.isArray(value) ? value.join(", ") : "";
        },
      };
    }
    case "mixed":
      return mixedControl(field, shape.parts, opts, setError, placeholder);
    case "union":
      return unionControl(field, shape.members, opts);
    case "object":
      return objectFieldControl(field, shape.properties, shape.required, opts);
    default: {
      const input = h("input.text", { type: "text", name: opts.name, placeholder: "JSON" });
      input.addEventListener("change", () => {
        try {
          setError(null, input);
          opts.onChange(input.value.trim() === "" ? undefined : JSON.parse(input.value));
        } catch {
          setError("not valid JSON", input);
        }
      });
      return {
        el: h("span.control", null, input),
        sync(value) {
          if (!isFocused(input)) input.value = value === undefined ? "" : JSON.stringify(value);
        },
      };
    }
  }
}

/** kernel_size "3" or "3,5"; padding also "same"; batch_size "32" or "full". */
function mixedControl(
  field: Field,
  parts: MixedPart[],
  opts: FieldOptions,
  setError: (m: string | null, input?: HTMLElement) => void,
  placeholder: string,
): InnerControl {
  const consts = parts.filter((p): p is Extract<MixedPart, { type: "const" }> => p.type === "const").map((p) => p.value);
  const accepts = (t: MixedPart["type"]): boolean => parts.some((p) => p.type === t);
  const hintParts = [
    accepts("int") ? "n" : accepts("number") ? "x" : "",
    accepts("pair") ? "h,w" : "",
    ...consts.map((c) => `"${String(c)}"`),
  ].filter(Boolean);
  const list = consts.length ? `dl-${opts.name}-${Math.random().toString(36).slice(2, 8)}` : undefined;
  const input = h("input.text.mixed", {
    type: "text",
    name: opts.name,
    placeholder: field.nullable && !field.hasDefault ? "none" : placeholder,
    list,
    spellcheck: "false",
  });
  const datalist = list ? h("datalist", { id: list }, consts.map((c) => h("option", { value: String(c) }))) : null;
  const parse = (text: string): { ok: true; value: unknown } | { ok: false; message: string } => {
    const t = text.trim();
    if (t === "") return field.nullable ? { ok: true, value: null } : { ok: true, value: undefined };
    const c = consts.find((x) => String(x) === t);
    if (c !== undefined) return { ok: true, value: c };
    const pieces = t.split(/[,x×\s]+/).filter(Boolean);
    if (pieces.length === 2 && accepts("pair")) {
      const pair = pieces.map(Number);
      if (pair.every((n) => Number.isInteger(n))) return { ok: true, value: pair };
    }
    if (pieces.length === 1) {
      const n = Number(pieces[0]);
      if (accepts("int") && Number.isInteger(n)) return { ok: true, value: n };
      if (accepts("number") && Number.isFinite(n)) return { ok: true, value: n };
    }
    return { ok: false, message: `${label(opts.name)}: expected ${hintParts.join(" or ")}` };
  };
  input.addEventListener("input", () => {
    const parsed = parse(input.value);
    if (!parsed.ok) return setError(parsed.message, input);
    setError(null, input);
    opts.onChange(parsed.value);
  });
  return {
    el: h("span.control", null, input, datalist, h("span.range", null, hintParts.join(" | "))),
    sync(value) {
      if (isFocused(input)) return;
      input.value = value === undefined || value === null ? "" : Array.isArray(value) ? value.join(",") : String(value);
      setError(null, input);
    },
  };
}

/** A kind picker (activation, initializer) with the chosen kind's own parameters under it. */
function unionControl(field: Field, members: UnionMember[], opts: FieldOptions): InnerControl {
  const select = h("select", { name: opts.name });
  if (field.nullable) select.append(h("option", { value: "__null" }, "none"));
  for (const m of members) select.append(h("option", { value: m.kind, title: m.description }, m.kind));
  const sub = h("div.subform");
  let current: Record<string, unknown> | null = null;
  let subForm: ObjectForm | null = null;
  let subKind: string | null = null;
  const defaultKind = (field.default as { kind?: string } | null | undefined)?.kind ?? null;

  const build = (kind: string | null): void => {
    subKind = kind;
    const member = members.find((m) => m.kind === kind);
    if (!member || Object.keys(member.properties).length === 0) {
      subForm = null;
      sub.replaceChildren();
      sub.hidden = true;
      return;
    }
    subForm = objectForm(member.properties, opts.defs, member.required, (key, value) => {
      const next: Record<string, unknown> = { ...(current ?? {}), kind };
      if (value === undefined) delete next[key];
      else next[key] = value;
      current = next;
      opts.onChange(next);
    });
    sub.replaceChildren(subForm.el);
    sub.hidden = false;
  };

  select.addEventListener("change", () => {
    if (select.value === "__null") {
      current = null;
      build(null);
      return opts.onChange(null);
    }
    current = { kind: select.value };
    build(select.value);
    subForm?.sync(current);
    opts.onChange(current);
  });

  return {
    block: true,
    head: select,
    el: sub,
    sync(value) {
      const v = (value === undefined ? field.default : value) as Record<string, unknown> | string | null | undefined;
      const obj = typeof v === "string" ? { kind: v } : (v ?? null);
      current = obj ? { ...obj } : null;
      const kind = (obj?.kind as string | undefined) ?? (field.nullable ? null : defaultKind);
      select.value = kind ?? "__null";
      if (kind !== subKind || !subForm) build(kind);
      subForm?.sync(obj ?? {});
    },
  };
}

/** A nested object (augmentation, early_stopping); a nullable one gets an on/off switch. */
function objectFieldControl(field: Field, properties: Record<string, JsonSchema>, required: string[], opts: FieldOptions): InnerControl {
  let current: Record<string, unknown> | null = null;
  const form = objectForm(properties, opts.defs, required, (key, value) => {
    const next: Record<string, unknown> = { ...(current ?? {}) };
    if (value === undefined) delete next[key];
    else next[key] = value;
    current = next;
    opts.onChange(next);
  });
  const sub = h("div.subform", null, form.el);
  let toggle: HTMLInputElement | null = null;
  if (field.nullable) {
    toggle = h("input", { type: "checkbox", name: `${opts.name}__on`, title: "enable" });
    toggle.addEventListener("change", () => {
      current = toggle?.checked ? {} : null;
      sub.hidden = !toggle?.checked;
      form.sync(current ?? {});
      opts.onChange(current);
    });
  }
  return {
    block: true,
    head: toggle ?? undefined,
    el: sub,
    sync(value) {
      current = (value as Record<string, unknown> | null | undefined) ?? (field.nullable ? null : {});
      if (toggle) {
        toggle.checked = current !== null;
        sub.hidden = current === null;
      }
      form.sync(current ?? {});
    },
  };
}

export interface ObjectForm {
  el: HTMLElement;
  sync(value: Record<string, unknown>): void;
}

/** A form over an object's properties; `onChange(key, value)` per edited property. */
export function objectForm(
  properties: Record<string, JsonSchema>,
  defs: Defs,
  required: string[],
  onChange: (key: string, value: unknown) => void,
  options: { skip?: string[]; labels?: Record<string, string> } = {},
): ObjectForm {
  const el = h("div.form");
  const controls: [string, Control][] = [];
  for (const [name, schema] of Object.entries(properties)) {
    if (options.skip?.includes(name)) continue;
    const control = fieldControl({
      name,
      schema,
      defs,
      required: required.includes(name),
      onChange: (v) => onChange(name, v),
      ...(options.labels?.[name] ? { label: options.labels[name] } : {}),
    });
    controls.push([name, control]);
    el.append(control.el);
  }
  return {
    el,
    sync(value) {
      for (const [name, control] of controls) control.sync(value[name]);
    },
  };
}
