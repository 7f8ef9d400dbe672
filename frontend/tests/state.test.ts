import assert from "node:assert/strict";
import { test } from "node:test";
import type { Experiment } from "../src/generated/schema";
import { DEFAULT_UI, Store, decodeState, encodeState, normalizeExperiment, type AppState } from "../src/state";

const doc = (): Experiment => ({
  name: "spiral ünïcode ✓",
  data: { name: "spiral", noise: 0.2 },
  network: { layers: [{ kind: "linear", name: "h", out_features: 8, activation: { kind: "tanh" } }, { kind: "linear", name: "out", out_features: 2 }] },
  train: { optimizer: { kind: "adam", lr: 0.01 }, batch_size: "full", epochs: 3 },
});

test("the URL hash round-trips the state exactly", async () => {
  const state: AppState = { experiment: doc(), ui: { ...DEFAULT_UI, tab: "inside", theme: "dark", projector: true } };
  const hash = await encodeState(state);
  assert.match(hash, /^s=[zj]\.[A-Za-z0-9_-]+$/);
  const back = await decodeState(`#${hash}`);
  assert.equal(JSON.stringify(back), JSON.stringify(state));
});

test("a hash without state decodes to null; a damaged one throws", async () => {
  assert.equal(await decodeState(""), null);
  await assert.rejects(decodeState("#s=z.AAAA"));
});

test("shorthand kinds are spelled out", () => {
  const raw = { ...doc(), network: { layers: [{ kind: "linear", name: "h", out_features: 2, activation: "relu" }] } } as unknown as Experiment;
  const layer = normalizeExperiment(raw).network.layers[0] as { activation: unknown };
  assert.deepEqual(layer.activation, { kind: "relu" });
});

test("undo / redo, with typing coalesced into one step", () => {
  const store = new Store({ experiment: doc(), ui: DEFAULT_UI });
  store.edit((d) => void (d.name = "a"));
  store.edit((d) => void (d.name = "ab"), { coalesce: "name" });
  store.edit((d) => void (d.name = "abc"), { coalesce: "name" });
  assert.equal(store.experiment.name, "abc");
  store.undo();
  assert.equal(store.experiment.name, "a");
  store.undo();
  assert.equal(store.experiment.name, doc().name);
  assert.ok(!store.canUndo());
  store.redo();
  store.redo();
  assert.equal(store.experiment.name, "abc");
  store.edit((d) => void (d.name = "x"));
  assert.ok(!store.canRedo());
});

test("an edit that changes nothing records nothing", () => {
  const store = new Store({ experiment: doc(), ui: DEFAULT_UI });
  store.edit(() => undefined);
  assert.ok(!store.canUndo());
});
