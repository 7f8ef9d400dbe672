import assert from "node:assert/strict";
import { test } from "node:test";
import type { StudentSummary } from "../src/classroom/classApi";
import {
  codeProblem, formatCode, lockedFields, nameProblem, normalizeCode, rankStudents, stateBucket, visibleStudents, watchFromHash, withWatch,
} from "../src/classroom/model";

const student = (name: string, over: Partial<StudentSummary> = {}): StudentSummary => ({
  member_id: `m-${name}`, name, run_id: `r-${name}`, state: "running", step: 0, loss: [], val_acc: [],
  best_val_acc: null, network: "2-8-2 tanh", params: 42, ...over,
});

test("join codes are typed in any case, with or without the dash", () => {
  assert.equal(normalizeCode("abc-123"), "ABC123");
  assert.equal(normalizeCode(" Abc 123 "), "ABC123");
  assert.equal(formatCode("abc234"), "ABC-234");
  assert.equal(codeProblem("abc-234"), null);
  assert.equal(codeProblem("ABC234"), null);
});

test("a join code's usual slips are named before asking the server", () => {
  assert.match(codeProblem("") ?? "", /Type the join code/);
  assert.match(codeProblem("AB-23") ?? "", /6 characters; this one has 4/);
  // O and 0, I and 1 are not in the alphabet: say so rather than "wrong code"
  assert.match(codeProblem("ABO-234") ?? "", /never contain O/);
  assert.match(codeProblem("AB1-234") ?? "", /never contain 1/);
  assert.match(codeProblem("AB!-234") ?? "", /only letters and digits/);
});

test("display names: 1 to 40 characters", () => {
  assert.equal(nameProblem("Ada"), null);
  assert.match(nameProblem("   ") ?? "", /Type the name/);
  assert.match(nameProblem("x".repeat(41)) ?? "", /at most 40/);
});

test("the locked fields are the listed ones no editable path covers", () => {
  const locked = (editable: string[]) => lockedFields(editable).map((f) => f.path);
  assert.deepEqual(locked(["*"]), []);
  // "train.optimizer" covers its learning rate; "data" is a prefix of nothing else listed
  assert.ok(!locked(["train.optimizer"]).includes("train.optimizer.lr"));
  assert.ok(locked(["train.optimizer.lr"]).includes("train.optimizer"));
  assert.ok(locked([]).includes("network.layers"));
  assert.ok(!locked(["network.layers"]).includes("network.layers"));
});

test("the dashboard filters by state and name and sorts by name, best val acc or step", () => {
  const all = [
    student("bo", { best_val_acc: 0.8, step: 50 }),
    student("Ann", { best_val_acc: 0.95, step: 10, state: "finished" }),
    student("cy", { best_val_acc: null, step: 300, state: "failed" }),
    student("dee", { kicked: true, best_val_acc: 0.99 }),
  ];
  const names = (list: StudentSummary[]) => list.map((s) => s.name);
  assert.deepEqual(names(visibleStudents(all, { sort: "name", state: "all", text: "" })), ["Ann", "bo", "cy"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "best", state: "all", text: "" })), ["Ann", "bo", "cy"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "step", state: "all", text: "" })), ["cy", "bo", "Ann"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "name", state: "training", text: "" })), ["bo"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "name", state: "idle", text: "" })), ["Ann"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "name", state: "failed", text: "" })), ["cy"]);
  assert.deepEqual(names(visibleStudents(all, { sort: "name", state: "all", text: "AN" })), ["Ann"]);
  assert.equal(stateBucket("paused"), "training");
  assert.equal(stateBucket(null), "idle");
});

test("the live leaderboard ranks by best val acc, over-budget networks after the others", () => {
  const rows = rankStudents([
    student("big", { best_val_acc: 0.99, within_budget: false }),
    student("small", { best_val_acc: 0.9, within_budget: true }),
    student("smaller", { best_val_acc: 0.93, within_budget: true }),
    student("none", { best_val_acc: null, within_budget: true }),
  ]);
  assert.deepEqual(rows.map((r) => [r.rank, r.name]), [[1, "smaller"], [2, "small"], [3, "none"], [4, "big"]]);
});

test("watch mode survives the page rewriting its hash", () => {
  assert.equal(watchFromHash("#run=abc&watch=1"), true);
  assert.equal(watchFromHash("#s=z.xx&run=abc"), false);
  assert.equal(watchFromHash("#run=abc&watch=10"), false);
  assert.equal(withWatch("s=z.xx&run=abc", true), "s=z.xx&run=abc&watch=1");
  assert.equal(withWatch("s=z.xx&run=abc&watch=1", true), "s=z.xx&run=abc&watch=1");
  assert.equal(withWatch("watch=1&run=abc", false), "run=abc");
});
