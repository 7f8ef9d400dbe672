import assert from "node:assert/strict";
import { test } from "node:test";
import { lonePointIndices } from "../src/charts/lonePoints";
import type { TrainConfig } from "../src/generated/schema";
import { AUTO_PROBE_ID, EndedRunProbes, ViewsDemand, fmtRate, mergeWatched, probeCommands, rateOf, speedOf, streamable, watchKey } from "../src/live";
import { applyLength, lengthOf, lengthProblem } from "../src/panels/RunLength";
import type { ClientCommand, HyperparamsMsg, ServerMessage } from "../src/protocol";
import { hashWithRun, runFromHash } from "../src/state";
import { evidenceChips } from "../src/viz/DoctorNotes";

test("the open tab's views merge into one request, arguments included", () => {
  const merged = mergeWatched([{ filters: {} }, undefined, { feature_maps: { index: 3 } }, null]);
  assert.deepEqual(merged, { filters: {}, feature_maps: { index: 3 } });
  // two views watching the same live view: their arguments merge, undefined ones are dropped
  assert.deepEqual(mergeWatched([{ gradcam: { index: 1, target: undefined } }, { gradcam: { layer: "conv2" } }]), {
    gradcam: { index: 1, layer: "conv2" },
  });
  assert.deepEqual(mergeWatched([]), {});
});

test("a request's key ignores key order, so the same request is never sent twice", () => {
  assert.equal(watchKey({ boundary: {}, layer_stats: {} }), watchKey({ layer_stats: {}, boundary: {} }));
  assert.equal(watchKey({ saliency: { index: 2, target: 1 } }), watchKey({ saliency: { target: 1, index: 2 } }));
  assert.notEqual(watchKey({ feature_maps: { index: 2 } }), watchKey({ feature_maps: { index: 3 } }));
});

test("views are sent when they change, and again after a reconnect", () => {
  const sent: ClientCommand[] = [];
  const demand = new ViewsDemand((cmd) => sent.push(cmd));
  assert.equal(demand.update("run1", { boundary: {} }), true);
  assert.equal(demand.update("run1", { boundary: {} }), false);
  assert.equal(demand.update("run1", { layer_stats: {}, weights: {} }), true);
  assert.equal(demand.update("run2", { layer_stats: {}, weights: {} }), true, "another run is another request");
  demand.forget();
  assert.equal(demand.update("run2", { layer_stats: {}, weights: {} }), true, "a new connection starts from the defaults");
  assert.deepEqual(sent.map((c) => (c.cmd === "views" ? [c.run_id, Object.keys(c.views)] : c.cmd)), [
    ["run1", ["boundary"]],
    ["run1", ["layer_stats", "weights"]],
    ["run2", ["layer_stats", "weights"]],
    ["run2", ["layer_stats", "weights"]],
  ]);
  // an empty request is a real one: the tab shows no live view, the server computes none
  assert.equal(demand.update("run2", {}), true);
});

test("rates read like a frame counter", () => {
  assert.equal(fmtRate(20), "20 fps");
  assert.equal(fmtRate(19.6), "20 fps");
  assert.equal(fmtRate(5), "5 fps");
  assert.equal(fmtRate(2.5), "2.5 fps");
  assert.equal(fmtRate(0.25), "0.3 fps");
  assert.equal(fmtRate(0.01), "0.1 fps");
  assert.equal(fmtRate(0), "");
  assert.equal(fmtRate(Number.NaN), "");
  const frame = { type: "boundary", rate_hz: 20 } as unknown as ServerMessage;
  assert.equal(rateOf(frame), 20);
  assert.equal(rateOf({ type: "boundary" } as unknown as ServerMessage), null, "an on-demand reply has no rate");
});

test("the speed comes back in a hyperparams message; null is max speed", () => {
  const msg = (values: object): HyperparamsMsg => ({ type: "hyperparams", step: 3, values }) as unknown as HyperparamsMsg;
  assert.equal(speedOf(msg({ steps_per_s: 10 })), 10);
  assert.equal(speedOf(msg({ steps_per_s: null })), null);
  assert.equal(speedOf(msg({ lr: 0.1 })), undefined, "a `set` acknowledgement says nothing about the speed");
});

test("run length: until stopped is epochs null without max_steps; steps win over epochs", () => {
  assert.deepEqual(lengthOf(undefined, 10), { mode: "epochs", value: 10 });
  assert.deepEqual(lengthOf({ epochs: 3 }, 10), { mode: "epochs", value: 3 });
  assert.deepEqual(lengthOf({ epochs: null }, 10), { mode: "until_stopped", value: null });
  assert.deepEqual(lengthOf({ epochs: 5, max_steps: 700 }, 10), { mode: "steps", value: 700 });
  assert.deepEqual(lengthOf({ epochs: null, max_steps: 700 }, 10), { mode: "steps", value: 700 });

  const train: TrainConfig = { epochs: 5, max_steps: 700, batch_size: 32 };
  applyLength(train, { mode: "until_stopped", value: null });
  assert.deepEqual(train, { epochs: null, batch_size: 32 });
  applyLength(train, { mode: "steps", value: 250 });
  assert.deepEqual(lengthOf(train, 10), { mode: "steps", value: 250 });
  applyLength(train, { mode: "epochs", value: 2 });
  assert.deepEqual(train, { epochs: 2, batch_size: 32 });

  assert.equal(lengthProblem("epochs", 0.5), null);
  assert.match(lengthProblem("epochs", 0) ?? "", /> 0/);
  assert.match(lengthProblem("steps", 2.5) ?? "", /whole number/);
  assert.match(lengthProblem("steps", 0) ?? "", /≥ 1/);
});

test("the shown run rides in the address after the state", () => {
  assert.equal(runFromHash("#s=z.abc&run=0123456789abcdef"), "0123456789abcdef");
  assert.equal(runFromHash("s=j.abc"), null);
  assert.equal(runFromHash("#run=ff00"), "ff00");
  assert.equal(runFromHash("#s=z.abc&run=ff00&x=1"), "ff00");
  assert.equal(runFromHash("#s=z.abc&running=1"), null);
  assert.equal(hashWithRun("s=z.abc", "ff00"), "s=z.abc&run=ff00");
  assert.equal(hashWithRun("s=z.abc&run=ff00", "aa11"), "s=z.abc&run=aa11", "one run at a time");
  assert.equal(hashWithRun("s=z.abc&run=ff00", null), "s=z.abc");
  assert.equal(hashWithRun("", "ff00"), "run=ff00");
  assert.throws(() => hashWithRun("s=z.abc", "a b"), /not a run id/);
});

test("lone points get a marker: a one-point curve, or a point between NaN gaps", () => {
  assert.deepEqual(lonePointIndices([0.7], false), [0]);
  assert.deepEqual(lonePointIndices([0.7], true), [0]);
  assert.deepEqual(lonePointIndices([0.7, Number.NaN, null], false), [0], "exploded after its first point");
  assert.deepEqual(lonePointIndices([1, 2, null, 3, null, 4, 5], false), [3]);
  assert.deepEqual(lonePointIndices([1, 2, null, 3, null, 4, 5], true), [], "a line bridging gaps reaches every point");
  assert.deepEqual(lonePointIndices([null, 3, null], true), [1]);
  assert.deepEqual(lonePointIndices([], false), []);
});

test("doctor evidence shows real values: labelled by what they measure, none as '–'", () => {
  // lr_too_high after an explosion with no NaN: the value was not measured
  const exploded = evidenceChips({ series: "train_loss", value: null, step: 10, lr: 3, stop_reason: "exploded" }, "lr_too_high");
  assert.deepEqual(exploded, [["step", "10"], ["lr", "3"], ["stop reason", "exploded"]]);
  assert.ok(!exploded.some(([, v]) => v === "–"));
  // the loss became NaN: the wire sends "nan"
  assert.deepEqual(evidenceChips({ series: "train_loss", value: "nan", step: 10 }, "lr_too_high")[0], ["train loss", "NaN"]);
  // shares read as percentages, the value comes first
  assert.deepEqual(evidenceChips({ series: "dead_fraction", layer: "conv1", value: 0.62, threshold: 0.5 }, "dead_relu"), [
    ["dead fraction", "62.0%"],
    ["layer", "conv1"],
    ["threshold", "50.0%"],
  ]);
  // lr_too_low measures the loss's relative change, not the loss
  assert.deepEqual(evidenceChips({ series: "train_loss", value: 0.004, threshold: 0.01 }, "lr_too_low"), [
    ["loss change", "0.4%"],
    ["threshold", "1.0%"],
  ]);
  assert.deepEqual(evidenceChips({ series: "update_ratio", value: 0.2, layer: "blocks.fc1.core.weight" }, "update_ratio_high")[1], ["layer", "fc1.weight"]);
});

test("only views the server streams, and only for the run's kind of data, are asked for", () => {
  const table = [
    { name: "boundary", messages: ["boundary"], default_hz: 20, arguments: [], kinds: ["2d"] },
    { name: "saliency", messages: ["saliency"], default_hz: 1, arguments: [{ name: "index", type: "int" }], kinds: ["image"] },
    { name: "layer_stats", messages: ["activations", "gradients"], default_hz: 5, arguments: [], kinds: null },
    { name: "gradient_check", messages: ["gradient_check"], default_hz: null, arguments: [], kinds: null },
  ];
  const watched = { boundary: {}, saliency: { index: 4 }, layer_stats: {}, gradient_check: {} } as Parameters<typeof streamable>[0];
  assert.deepEqual(streamable(watched, table, "2d"), { boundary: {}, layer_stats: {} });
  assert.deepEqual(streamable(watched, table, "image"), { saliency: { index: 4 }, layer_stats: {} });
  assert.deepEqual(streamable(watched, table, null), { boundary: {}, saliency: { index: 4 }, layer_stats: {} });
  assert.deepEqual(streamable(watched, null, "2d"), watched, "without the server's table the server decides");
});

test("a run that ended is asked once per view for its frames, with the probe's argument names", () => {
  const sent: ClientCommand[] = [];
  const probes = new EndedRunProbes((cmd) => sent.push(cmd));
  const views = { boundary: {}, layer_stats: {}, gradcam: { index: 4, target: 2, layer: "conv2" } } as Parameters<typeof streamable>[0];
  assert.equal(probes.update("r1", views), 2, "layer_stats is measured inside a training step: no probe");
  assert.deepEqual(sent, [
    { cmd: "probe", run_id: "r1", probe: "boundary", id: AUTO_PROBE_ID },
    { cmd: "probe", run_id: "r1", probe: "gradcam", id: AUTO_PROBE_ID, index: 4, class: 2, layer: "conv2" },
  ]);
  assert.equal(probes.update("r1", views), 0, "asked once");
  assert.equal(probes.update("r1", { gradcam: { index: 5 } }), 1, "another example is another question");
  probes.forget();
  assert.equal(probes.update("r1", { boundary: {} }), 1);
  assert.deepEqual(probeCommands("r2", { evaluation: {} }), [{ cmd: "probe", run_id: "r2", probe: "evaluation", id: AUTO_PROBE_ID }]);
});
