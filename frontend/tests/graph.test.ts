import assert from "node:assert/strict";
import { test } from "node:test";
import {
  connect,
  connectProblem,
  disconnect,
  effectiveInputs,
  insertLayer,
  layout,
  moveLayer,
  removeLayer,
  renameLayer,
  uniqueName,
} from "../src/editor/graph";
import type { LayerSpec } from "../src/state";

const L = (name: string, inputs?: string[]): LayerSpec =>
  ({ kind: "linear", name, out_features: 4, ...(inputs ? { inputs } : {}) }) as LayerSpec;
const names = (layers: LayerSpec[]) => layers.map((l) => `${l.name}${l.inputs ? `<${l.inputs.join(",")}` : ""}`);

test("default inputs are the previous layer, the first reads the data", () => {
  const layers = [L("a"), L("b"), L("c", ["input", "a"])];
  assert.deepEqual(effectiveInputs(layers, 0), ["input"]);
  assert.deepEqual(effectiveInputs(layers, 1), ["a"]);
  assert.deepEqual(effectiveInputs(layers, 2), ["input", "a"]);
});

test("insert between two layers keeps the chain; explicit readers of the previous layer read the new one", () => {
  const layers = [L("a"), L("b", ["a"])];
  insertLayer(layers, 1, L("n"));
  assert.deepEqual(names(layers), ["a", "n", "b<n"]);
});

test("remove splices a layer out and rewires explicit references", () => {
  const layers = [L("a"), L("b"), L("c"), L("sum", ["b", "c"])];
  removeLayer(layers, "b");
  assert.deepEqual(names(layers), ["a", "c", "sum<a,c"]);
});

test("removing a merge layer keeps what read from it reading from its inputs", () => {
  const layers = [L("a"), L("b"), L("sum", ["a", "b"]), L("out")];
  removeLayer(layers, "sum");
  assert.deepEqual(names(layers), ["a", "b", "out<a,b"]);
});

test("rename updates every reference", () => {
  const layers = [L("a"), L("b", ["a"]), L("c", ["a", "b"])];
  renameLayer(layers, "a", "stem");
  assert.deepEqual(names(layers), ["stem", "b<stem", "c<stem,b"]);
});

test("connections go downwards only, once, and a layer keeps one input", () => {
  const layers = [L("a"), L("b"), L("c")];
  assert.match(connectProblem(layers, "c", "a") ?? "", /comes before/);
  assert.match(connectProblem(layers, "b", "c") ?? "", /already feeds/);
  assert.equal(connectProblem(layers, "a", "c"), null);
  connect(layers, "a", "c");
  assert.deepEqual(names(layers), ["a", "b", "c<b,a"]);
  assert.equal(disconnect(layers, "a", "c"), null);
  assert.deepEqual(names(layers), ["a", "b", "c"]);
  assert.match(disconnect(layers, "b", "c") ?? "", /needs an input/);
});

test("move reorders a chain", () => {
  const layers = [L("a"), L("b"), L("c")];
  assert.ok(moveLayer(layers, "c", -1));
  assert.deepEqual(names(layers), ["a", "c", "b"]);
  assert.ok(!moveLayer(layers, "a", -1));
});

test("unique names count up per kind", () => {
  assert.equal(uniqueName([L("linear_1")], "linear"), "linear_2");
});

test("layout ranks by longest path; skip edges are marked", () => {
  const layers = [L("a"), L("b"), L("sum", ["input", "b"])];
  const lay = layout(layers, { nodeWidth: 100, nodeHeight: () => 40, rankGap: 10, colGap: 10, width: 300, padding: 5 });
  assert.deepEqual([...lay.nodes.values()].map((n) => [n.name, n.rank]), [["input", 0], ["a", 1], ["b", 2], ["sum", 3]]);
  assert.deepEqual(lay.edges.filter((e) => e.skip).map((e) => `${e.from}->${e.to}`), ["input->sum"]);
  const ys = [...lay.nodes.values()].map((n) => n.y);
  assert.deepEqual(ys, [...ys].sort((x, y) => x - y));
});
