import assert from "node:assert/strict";
import { test } from "node:test";
import type { Experiment } from "../src/generated/schema";
import { defaultForm, formProblems, shownAccuracy, sortTrials, type TrialInfo } from "../src/search/model";

function trial(index: number, patch: Partial<TrialInfo> = {}): TrialInfo {
  return {
    index, stage: "coarse", lr: 10 ** -index, l2: 1e-4, steps: 60, status: "finished", run_id: `r${index}`,
    step: 60, val_acc: null, best_val_acc: null, wall_s: null, message: null, ...patch,
  };
}

test("the form for a document: the lecture's ranges, trials as long as the document's run, a longer fine stage", () => {
  const doc = { name: "d", data: { name: "digits" }, network: { layers: [] }, train: { max_steps: 50 } } as unknown as Experiment;
  const form = defaultForm(doc);
  assert.deepEqual([form.lr, form.l2], [{ low: 1e-4, high: 1 }, { low: 1e-6, high: 1e-1 }]);
  assert.equal(form.steps, 50);
  assert.equal(form.fine_steps, 150);
  assert.equal(defaultForm(null).steps, 60); // a document without max_steps gets short trials anyway
  assert.deepEqual(formProblems(form), []);
});

test("a form the server would refuse says why before any request", () => {
  const form = defaultForm(null);
  assert.match(formProblems({ ...form, lr: { low: 1, high: 0.01 } }).join(), /lr: low \(1\) is above high \(0.01\); swap them/);
  assert.match(formProblems({ ...form, l2: { low: 0, high: 0.01 } }).join(), /l2: both ends must be positive/);
  assert.match(formProblems({ ...form, trials: 1 }).join(), /trials: 2 to 64/);
  assert.match(formProblems({ ...form, fine_trials: 1 }).join(), /fine trials/);
  assert.match(formProblems({ ...form, trials: 60, fine_trials: 10 }).join(), /more than 64/);
  assert.match(formProblems({ ...form, steps: Number.NaN }).join(), /steps/);
});

test("sorting the trial table: by accuracy best first, missing values last either way, ties by trial number", () => {
  const trials = [
    trial(0, { best_val_acc: 0.5 }),
    trial(1, { status: "diverged" }),
    trial(2, { best_val_acc: 0.9 }),
    trial(3, { status: "running", val_acc: 0.7, best_val_acc: null }),
    trial(4, { best_val_acc: 0.9 }),
  ];
  assert.deepEqual(sortTrials(trials, "score", true).map((t) => t.index), [2, 4, 3, 0, 1]);
  assert.deepEqual(sortTrials(trials, "score", false).map((t) => t.index), [0, 3, 2, 4, 1]);
  assert.deepEqual(sortTrials(trials, "lr", false).map((t) => t.index), [4, 3, 2, 1, 0]);
  assert.deepEqual(sortTrials(trials, "status", false).map((t) => t.index)[0], 3); // the running trial first
  assert.equal(shownAccuracy(trials[3] as TrialInfo), 0.7); // live value while it trains
  assert.equal(shownAccuracy(trials[1] as TrialInfo), null); // a diverged trial has no score
});
