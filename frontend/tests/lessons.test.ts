import assert from "node:assert/strict";
import { test } from "node:test";
import type { Experiment, LessonStep } from "../src/generated/schema";
import { applyChanges, currentStep, lessonCatalog, partOf, planStep, presetOfLesson, tabNamed, valueAt, withoutLesson } from "../src/lessons/lesson";
import type { PresetInfo } from "../src/protocol";

const doc = (): Experiment => ({
  name: "net",
  data: { name: "spiral" },
  network: { layers: [{ kind: "linear", name: "h", out_features: 8, activation: { kind: "tanh" } }] },
  train: { optimizer: { kind: "sgd", lr: 0.1 } },
} as unknown as Experiment);

const preset = (id: string, number: number, title: string, steps: LessonStep[] = [{ text: "Press Train." }]): PresetInfo => ({
  id,
  name: `${id} name`,
  description: "",
  experiment: { ...doc(), name: `${id} name`, lesson: { number, title, steps } },
});

test("changes are made in order on a copy, and a path the document lacks changes nothing", () => {
  const before = doc();
  const after = applyChanges(before, [
    { path: "network.layers.0.out_features", value: 4 as never },
    { path: "train.optimizer", value: { kind: "adam", lr: 0.01 } },
    { path: "train.optimizer.lr", value: 0.5 as never },
  ]);
  assert.equal(valueAt(after, "network.layers.0.out_features"), 4);
  assert.deepEqual(valueAt(after, "train.optimizer"), { kind: "adam", lr: 0.5 });
  assert.equal(valueAt(before, "network.layers.0.out_features"), 8, "the input is not touched");
  assert.throws(() => applyChanges(before, [{ path: "network.layers.3.out_features", value: 1 as never }]), /list of 1 items; 3 is not an index/);
  assert.throws(() => applyChanges(before, [{ path: "train.momentum", value: 1 as never }]), /train has no field momentum/);
});

test("the lesson list follows the curriculum's numbers, two presets under one lesson, gaps kept", () => {
  const list = lessonCatalog([preset("b", 3, "Backprop"), preset("a2", 1, "Fails on XOR"), preset("a1", 1, "Perceptron"), { ...preset("x", 0, ""), experiment: doc() }]);
  assert.deepEqual(list.map((l) => l.number), [1, 2, 3]);
  assert.deepEqual(list[0]!.presets.map((p) => p.id), ["a2", "a1"], "presets keep the server's (file) order");
  assert.deepEqual(list[1]!.presets, [], "a lesson no preset teaches is listed empty");
  assert.equal(list[0]!.part, "Neurons and networks");
  assert.equal(partOf(6), "Initialization");
  assert.equal(partOf(21), "Convolutional networks");
});

test("each step's button: compare, probe, apply, then what a plain text asks", () => {
  assert.equal(planStep({ text: "x", compare: { path: "train.batch_size", values: [1, 32], labels: ["SGD", "mini"] } }).action.kind, "compare");
  const probe = planStep({ text: "x", probe: { view: "fgsm", args: { epsilon: 0.1 } } });
  assert.deepEqual(probe.action, { kind: "probe", view: "fgsm", args: { epsilon: 0.1 } });
  assert.equal(probe.tab, "attention");
  assert.equal(planStep({ text: "x", probe: { view: "backprop_trace" } }).tab, "2d");
  const apply = planStep({ text: "Switch to ReLU. Keep an eye on the dead fraction in the Inside tab.", apply: [{ path: "train.l2", value: 0.01 as never }] });
  assert.equal(apply.action.kind, "apply");
  assert.equal(apply.tab, "inside");
  const load = planStep({ text: "Transfer.", load_from_last_run: ["conv1"] });
  assert.deepEqual(load.action, { kind: "apply", changes: [], loadLayers: ["conv1"] });
  assert.equal(planStep({ text: "Press Train and open the 2D tab: the line moves." }).action.kind, "train");
  assert.equal(planStep({ text: "Press Train and open the 2D tab." }).tab, "2d");
  assert.equal(planStep({ text: "Press Step once: the first loss is 2.30." }).action.kind, "step");
  const summary = planStep({ text: "Open the summary: every layer's shape." });
  assert.equal(summary.action.kind, "show");
  assert.equal(summary.side, "network");
  assert.equal(planStep({ text: "Draw a digit of your own." }).tab, "evaluation");
});

test("tab names as the lessons spell them", () => {
  assert.equal(tabNamed("open the Filters and Feature maps tabs"), "filters");
  assert.equal(tabNamed("watch the 2D tab and the loss curves"), "2d");
  assert.equal(tabNamed("(see the Filters tab)"), "filters");
  assert.equal(tabNamed("the loss curves"), null);
});

test("the current step follows the last one done; the lesson block leaves the editor's document", () => {
  assert.equal(currentStep([], 3), 0);
  assert.equal(currentStep([0], 3), 1);
  assert.equal(currentStep([1], 3), 2);
  assert.equal(currentStep([2], 3), 0, "after the last, the first left undone");
  assert.equal(currentStep([0, 1, 2], 3), 3, "all done");
  const p = preset("a1", 1, "Perceptron");
  assert.equal("lesson" in withoutLesson(p.experiment), false);
  assert.equal(presetOfLesson(p.experiment.lesson, [preset("b", 3, "Backprop"), p])?.id, "a1");
  assert.equal(presetOfLesson({ number: 1, title: "Other", steps: [{ text: "x" }] }, [p]), null);
});
