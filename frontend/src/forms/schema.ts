/**
 * Reading pydantic's JSON schema into the few field shapes a form needs.
 *
 * The registry sends each kind's parameters as JSON schema (server/registry.py); this module
 * turns one property schema into a FieldShape: a number with its range, a boolean, a choice
 * among literals, a kind-discriminated union (activation, initializer) with each member's own
 * parameters, a nested object, or a "mixed" value such as kernel_size (3 or [3, 5]) or
 * batch_size (32 or "full").
 */

export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  items?: JsonSchema | JsonSchema[];
  prefixItems?: JsonSchema[];
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  discriminator?: { propertyName: string; mapping?: Record<string, string> };
  [key: string]: unknown;
}

export type Defs = Record<string, JsonSchema>;

export interface NumberShape {
  type: "number";
  integer: boolean;
  min?: number;
  max?: number;
  /** true when the bound itself is not allowed */
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

export interface UnionMember {
  kind: string;
  description: string;
  properties: Record<string, JsonSchema>;
  required: string[];
}

/** One accepted spelling of a mixed value. */
export type MixedPart =
  | { type: "int" }
  | { type: "number" }
  | { type: "pair" }
  | { type: "const"; value: string | number | boolean };

export type FieldShape =
  | NumberShape
  | { type: "boolean" }
  | { type: "string"; pattern?: string; maxLength?: number }
  | { type: "choice"; options: (string | number | boolean)[] }
  | { type: "union"; members: UnionMember[] }
  | { type: "object"; properties: Record<string, JsonSchema>; required: string[] }
  | { type: "list"; item: "string" | "number" }
  | { type: "mixed"; parts: MixedPart[] }
  | { type: "unknown" };

export interface Field {
  shape: FieldShape;
  /** null is a valid value (shown as "none" / an empty box) */
  nullable: boolean;
  default: unknown;
  hasDefault: boolean;
  description: string;
}

export function resolve(schema: JsonSchema, defs: Defs): JsonSchema {
  let current = schema;
  for (let i = 0; i < 8 && current.$ref; i++) {
    const name = current.$ref.split("/").pop() ?? "";
    const target = defs[name];
    if (!target) break;
    const { $ref: _ref, ...rest } = current;
    current = { ...target, ...rest };
  }
  return current;
}

const isNull = (s: JsonSchema): boolean => s.type === "null";

/** Describe one property schema. `defs` resolves $ref (registry entries carry their own defs). */
export function describe(raw: JsonSchema, defs: Defs): Field {
  const schema = resolve(raw, defs);
  const hasDefault = "default" in schema;
  let nullable = false;
  let inner: JsonSchema = schema;
  const alternatives = schema.anyOf ?? (schema.oneOf && !isKindUnion(schema.oneOf, defs) ? schema.oneOf : undefined);
  if (alternatives) {
    const rest = alternatives.filter((s) => !isNull(s));
    nullable = rest.length < alternatives.length;
    if (rest.length === 1 && rest[0]) inner = resolve(rest[0], defs);
    else inner = { ...schema, anyOf: rest };
    if (inner !== schema && rest.length !== 1) delete inner.oneOf;
  }
  return {
    shape: shapeOf(inner, defs),
    nullable,
    default: schema.default,
    hasDefault,
    description: String(schema.description ?? inner.description ?? ""),
  };
}

function isKindUnion(options: JsonSchema[], defs: Defs): boolean {
  return options.length > 0 && options.every((o) => resolve(o, defs).properties?.kind?.const !== undefined);
}

function shapeOf(schema: JsonSchema, defs: Defs): FieldShape {
  const union = schema.oneOf ?? schema.anyOf;
  if (union && isKindUnion(union, defs)) {
    return {
      type: "union",
      members: union.map((o) => {
        const member = resolve(o, defs);
        const props = { ...(member.properties ?? {}) };
        const kind = String(props.kind?.const ?? "");
        delete props.kind;
        return { kind, description: String(member.description ?? ""), properties: props, required: (member.required ?? []).filter((r) => r !== "kind") };
      }),
    };
  }
  if (union) {
    const parts = union.map((o) => resolve(o, defs));
    if (parts.every((p) => p.const !== undefined || p.enum)) {
      return { type: "choice", options: parts.flatMap((p) => (p.enum ?? [p.const]) as (string | number | boolean)[]) };
    }
    const mixed: MixedPart[] = [];
    for (const p of parts) {
      if (p.const !== undefined) mixed.push({ type: "const", value: p.const as string });
      else if (p.enum) for (const v of p.enum) mixed.push({ type: "const", value: v as string });
      else if (p.type === "integer") mixed.push({ type: "int" });
      else if (p.type === "number") mixed.push({ type: "number" });
      else if (p.type === "array") mixed.push({ type: "pair" });
      else return { type: "unknown" };
    }
    return { type: "mixed", parts: mixed };
  }
  if (schema.enum) return { type: "choice", options: schema.enum as (string | number | boolean)[] };
  if (schema.const !== undefined) return { type: "choice", options: [schema.const as string] };
  switch (schema.type) {
    case "integer":
    case "number": {
      const shape: NumberShape = { type: "number", integer: schema.type === "integer" };
      if (schema.minimum !== undefined) shape.min = schema.minimum;
      if (schema.exclusiveMinimum !== undefined) {
        shape.min = schema.exclusiveMinimum;
        shape.minExclusive = true;
      }
      if (schema.maximum !== undefined) shape.max = schema.maximum;
      if (schema.exclusiveMaximum !== undefined) {
        shape.max = schema.exclusiveMaximum;
        shape.maxExclusive = true;
      }
      return shape;
    }
    case "boolean":
      return { type: "boolean" };
    case "string": {
      const shape: { type: "string"; pattern?: string; maxLength?: number } = { type: "string" };
      if (schema.pattern) shape.pattern = schema.pattern;
      if (schema.maxLength !== undefined) shape.maxLength = schema.maxLength;
      return shape;
    }
    case "array": {
      const items = Array.isArray(schema.items) ? schema.items[0] : schema.items;
      const item = items ? resolve(items, defs) : {};
      return { type: "list", item: item.type === "number" || item.type === "integer" ? "number" : "string" };
    }
    case "object":
      if (schema.properties) return { type: "object", properties: schema.properties, required: schema.required ?? [] };
      return { type: "unknown" };
    default:
      if (schema.properties) return { type: "object", properties: schema.properties, required: schema.required ?? [] };
      return { type: "unknown" };
  }
}

/** Why `value` is out of range, or null when it is fine. */
export function rangeProblem(shape: NumberShape, value: number): string | null {
  if (!Number.isFinite(value)) return "not a number";
  if (shape.integer && !Number.isInteger(value)) return "must be a whole number";
  if (shape.min !== undefined && (shape.minExclusive ? value <= shape.min : value < shape.min)) {
    return `must be ${shape.minExclusive ? ">" : "≥"} ${shape.min}`;
  }
  if (shape.max !== undefined && (shape.maxExclusive ? value >= shape.max : value > shape.max)) {
    return `must be ${shape.maxExclusive ? "<" : "≤"} ${shape.max}`;
  }
  return null;
}

export function rangeText(shape: NumberShape): string {
  const lo = shape.min === undefined ? "" : `${shape.minExclusive ? "(" : "["}${shape.min}`;
  const hi = shape.max === undefined ? "" : `${shape.max}${shape.maxExclusive ? ")" : "]"}`;
  if (!lo && !hi) return shape.integer ? "integer" : "number";
  return `${lo || "(-∞"}, ${hi || "∞)"}`;
}

/** "out_channels" -> "out channels" */
export function label(name: string): string {
  return name.replace(/_/g, " ");
}
