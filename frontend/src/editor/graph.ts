/**
 * Pure graph logic over the document's layer list (no DOM).
 *
 * A layer's `inputs` default to the previous layer ("input", the data, for the first), so a
 * chain needs no inputs at all; skip connections list them explicitly.
 */

import type { LayerSpec } from "../state";

export const INPUT = "input";

/** The names feeding layer `i`, with the default spelled out. */
export function effectiveInputs(layers: readonly LayerSpec[], i: number): string[] {
  const layer = layers[i];
  if (!layer) return [];
  if (layer.inputs && layer.inputs.length) return [...layer.inputs];
  return [i === 0 ? INPUT : (layers[i - 1]?.name ?? INPUT)];
}

export function defaultInput(layers: readonly LayerSpec[], i: number): string {
  return i === 0 ? INPUT : (layers[i - 1]?.name ?? INPUT);
}

export interface Edge {
  from: string;
  to: string;
  /** spans more than one rank: drawn around the nodes in between */
  skip: boolean;
}

export interface NodeBox {
  name: string;
  /** index in the layer list, -1 for the input */
  index: number;
  rank: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface LayoutOptions {
  nodeWidth: number;
  /** height of each node (errors make some taller) */
  nodeHeight(name: string): number;
  rankGap: number;
  colGap: number;
  width: number;
  padding: number;
}

export interface Layout {
  nodes: Map<string, NodeBox>;
  edges: Edge[];
  width: number;
  height: number;
}

/** Top-to-bottom layout: a node's rank is the longest path from the input; ranks stack downwards. */
export function layout(layers: readonly LayerSpec[], opts: LayoutOptions): Layout {
  const rank = new Map<string, number>([[INPUT, 0]]);
  const edges: Edge[] = [];
  layers.forEach((layer, i) => {
    const inputs = effectiveInputs(layers, i);
    let r = 1;
    for (const src of inputs) r = Math.max(r, (rank.get(src) ?? 0) + 1);
    rank.set(layer.name, r);
  });
  layers.forEach((layer, i) => {
    for (const src of effectiveInputs(layers, i)) {
      if (!rank.has(src)) continue; // a dangling reference: the validator reports it on the node
      edges.push({ from: src, to: layer.name, skip: (rank.get(layer.name) ?? 0) - (rank.get(src) ?? 0) > 1 });
    }
  });
  const byRank: string[][] = [];
  for (const [name, r] of rank) (byRank[r] ??= []).push(name);
  const nodes = new Map<string, NodeBox>();
  let y = opts.padding;
  let width = opts.width;
  for (let r = 0; r < byRank.length; r++) {
    const names = byRank[r] ?? [];
    if (!names.length) continue;
    const rowWidth = names.length * opts.nodeWidth + (names.length - 1) * opts.colGap;
    width = Math.max(width, rowWidth + 2 * opts.padding + 60);
    const rowHeight = Math.max(...names.map((n) => opts.nodeHeight(n)));
    names.forEach((name, k) => {
      const x0 = Math.max(opts.padding, (opts.width - rowWidth) / 2 - 24);
      nodes.set(name, {
        name,
        index: name === INPUT ? -1 : layers.findIndex((l) => l.name === name),
        rank: r,
        x: x0 + k * (opts.nodeWidth + opts.colGap),
        y,
        w: opts.nodeWidth,
        h: opts.nodeHeight(name),
      });
    });
    y += rowHeight + opts.rankGap;
  }
  return { nodes, edges, width, height: y - opts.rankGap + opts.padding };
}

/** A fresh name for a layer of `kind`: conv2d_1, conv2d_2, ... */
export function uniqueName(layers: readonly LayerSpec[], kind: string): string {
  const taken = new Set(layers.map((l) => l.name));
  for (let n = 1; ; n++) {
    const name = `${kind}_${n}`;
    if (!taken.has(name)) return name;
  }
}

/** Insert `layer` at `index` (0 = first). A later layer that read from the layer before now reads from the new one. */
export function insertLayer(layers: LayerSpec[], index: number, layer: LayerSpec): void {
  const at = Math.max(0, Math.min(index, layers.length));
  const before = defaultInput(layers, at);
  const next = layers[at];
  layers.splice(at, 0, layer);
  if (next?.inputs?.includes(before) && before !== INPUT) {
    next.inputs = next.inputs.map((n) => (n === before ? layer.name : n));
  }
}

/** Remove a layer; layers that read from it read from its inputs instead. */
export function removeLayer(layers: LayerSpec[], name: string): string[] {
  const i = layers.findIndex((l) => l.name === name);
  if (i < 0) return [];
  const its = effectiveInputs(layers, i);
  // Layers after i with default inputs keep reading "the previous layer"; make explicit the ones
  // that would change meaning, so removal never silently rewires a branch.
  const next = layers[i + 1];
  if (next && !next.inputs?.length) {
    const fallback = defaultInput(layers, i); // what "previous" becomes after removal
    if (its.length !== 1 || its[0] !== fallback) next.inputs = its;
  }
  layers.splice(i, 1);
  for (const layer of layers) {
    if (!layer.inputs?.includes(name)) continue;
    const replaced: string[] = [];
    for (const src of layer.inputs) for (const s of src === name ? its : [src]) if (!replaced.includes(s)) replaced.push(s);
    layer.inputs = replaced;
  }
  simplifyInputs(layers);
  return its;
}

/** Rename a layer and every reference to it. */
export function renameLayer(layers: LayerSpec[], from: string, to: string): void {
  for (const layer of layers) {
    if (layer.name === from) layer.name = to;
    if (layer.inputs) layer.inputs = layer.inputs.map((n) => (n === from ? to : n));
  }
}

/** Why `from -> to` cannot be added, or null. */
export function connectProblem(layers: readonly LayerSpec[], from: string, to: string): string | null {
  if (from === to) return "a layer cannot feed itself";
  const ti = layers.findIndex((l) => l.name === to);
  const fi = from === INPUT ? -1 : layers.findIndex((l) => l.name === from);
  if (ti < 0) return "the input takes no inputs";
  if (fi < 0 && from !== INPUT) return `no layer '${from}'`;
  if (fi >= ti) return `'${to}' comes before '${from}'; connections go downwards (layers run in document order)`;
  if (effectiveInputs(layers, ti).includes(from)) return `'${from}' already feeds '${to}'`;
  return null;
}

/** Add `from` to `to`'s inputs (a skip connection). */
export function connect(layers: LayerSpec[], from: string, to: string): void {
  const ti = layers.findIndex((l) => l.name === to);
  const target = layers[ti];
  if (!target) return;
  target.inputs = [...effectiveInputs(layers, ti), from];
}

/** Remove the edge `from -> to`; a layer keeps at least one input. */
export function disconnect(layers: LayerSpec[], from: string, to: string): string | null {
  const ti = layers.findIndex((l) => l.name === to);
  const target = layers[ti];
  if (!target) return "no such layer";
  const rest = effectiveInputs(layers, ti).filter((n) => n !== from);
  if (!rest.length) return `'${to}' needs an input; delete the layer instead`;
  target.inputs = rest;
  simplifyInputs(layers);
  return null;
}

/**
 * Move a layer one place up (-1) or down (+1) in the document order. In a chain (default
 * inputs) this reorders the chain; explicit inputs keep naming the same layers, and the
 * validator flags one that would now read from a later layer.
 */
export function moveLayer(layers: LayerSpec[], name: string, delta: -1 | 1): boolean {
  const i = layers.findIndex((l) => l.name === name);
  const j = i + delta;
  const a = layers[i];
  const b = layers[j];
  if (!a || !b) return false;
  layers[i] = b;
  layers[j] = a;
  simplifyInputs(layers);
  return true;
}

/** Drop explicit inputs that equal the default ([previous layer]), keeping documents short. */
export function simplifyInputs(layers: LayerSpec[]): void {
  layers.forEach((layer, i) => {
    if (layer.inputs && layer.inputs.length === 1 && layer.inputs[0] === defaultInput(layers, i)) delete layer.inputs;
    else if (layer.inputs && layer.inputs.length === 0) delete layer.inputs;
  });
}
