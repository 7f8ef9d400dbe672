/**
 * GET /api/registry: every name the page may offer (server/registry.py builds it from the
 * pydantic schemas). The page never spells a layer, activation, initializer, optimizer,
 * schedule, loss or dataset name itself; menus and forms come from here.
 */

import type { JsonSchema } from "./forms/schema";

export interface KindEntry {
  kind: string;
  title: string;
  /** first line of the class docstring */
  description: string;
  /** parameter name -> JSON schema (type, range, default, description) */
  params: Record<string, JsonSchema>;
  required: string[];
  /** $defs the params refer to (nested activation / initializer choices) */
  defs: Record<string, JsonSchema>;
}

export interface DatasetEntry {
  name: string;
  kind: "2d" | "image" | "tabular";
  description: string;
  source: string;
  licence: string;
}

export interface Registry {
  layers: KindEntry[];
  activations: KindEntry[];
  initializers: KindEntry[];
  optimizers: KindEntry[];
  schedules: KindEntry[];
  losses: string[];
  datasets: DatasetEntry[];
  train_schema: JsonSchema;
  data_schema: JsonSchema;
  experiment_schema: JsonSchema;
}

export function findKind(entries: KindEntry[], kind: string): KindEntry | undefined {
  return entries.find((e) => e.kind === kind);
}

/** Docstrings use reStructuredText literals (``x``); the page shows plain text. */
export function plainText(text: string): string {
  return text.replace(/``([^`]*)``/g, "$1");
}

/** The registry with its descriptions made plain text (entries and their parameters). */
export function tidyRegistry(reg: Registry): Registry {
  const tidy = (e: KindEntry): KindEntry => ({
    ...e,
    description: plainText(e.description),
    params: Object.fromEntries(
      Object.entries(e.params).map(([k, v]) => [k, v.description ? { ...v, description: plainText(v.description) } : v]),
    ),
  });
  return {
    ...reg,
    layers: reg.layers.map(tidy),
    activations: reg.activations.map(tidy),
    initializers: reg.initializers.map(tidy),
    optimizers: reg.optimizers.map(tidy),
    schedules: reg.schedules.map(tidy),
    datasets: reg.datasets.map((d) => ({ ...d, description: plainText(d.description) })),
  };
}
