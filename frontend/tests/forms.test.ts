import assert from "node:assert/strict";
import { test } from "node:test";
import { describe, rangeProblem } from "../src/forms/schema";

const defs = {
  ReLUAct: { properties: { kind: { const: "relu", type: "string" } } },
  LeakyReLUAct: { properties: { kind: { const: "leaky_relu" }, negative_slope: { type: "number", default: 0.01, minimum: 0, maximum: 1 } } },
};

test("pydantic shapes: numbers with ranges, kernel pairs, batch 'full', nullable unions", () => {
  const lr = describe({ type: "number", default: 0.001, exclusiveMinimum: 0, maximum: 1e7 }, {});
  assert.equal(lr.shape.type, "number");
  if (lr.shape.type === "number") {
    assert.equal(rangeProblem(lr.shape, 0), "must be > 0");
    assert.equal(rangeProblem(lr.shape, 0.1), null);
  }
  const kernel = describe({ anyOf: [{ type: "integer" }, { type: "array", prefixItems: [{ type: "integer" }, { type: "integer" }] }, { const: "same", type: "string" }], default: 3 }, {});
  assert.deepEqual(kernel.shape, { type: "mixed", parts: [{ type: "int" }, { type: "pair" }, { type: "const", value: "same" }] });
  const batch = describe({ anyOf: [{ type: "integer" }, { const: "full", type: "string" }], default: 32 }, {});
  assert.equal(batch.shape.type, "mixed");
  const epochs = describe({ anyOf: [{ type: "number", exclusiveMinimum: 0 }, { type: "null" }], default: 10 }, {});
  assert.equal(epochs.shape.type, "number");
  assert.ok(epochs.nullable);
  const activation = describe({ anyOf: [{ oneOf: [{ $ref: "#/$defs/ReLUAct" }, { $ref: "#/$defs/LeakyReLUAct" }] }, { type: "null" }], default: null }, defs);
  assert.ok(activation.nullable);
  assert.equal(activation.shape.type, "union");
  if (activation.shape.type === "union") {
    assert.deepEqual(activation.shape.members.map((m) => m.kind), ["relu", "leaky_relu"]);
    assert.deepEqual(Object.keys(activation.shape.members[1]?.properties ?? {}), ["negative_slope"]);
  }
  const loss = describe({ enum: ["cross_entropy", "mse", "hinge"], default: "cross_entropy", type: "string" }, {});
  assert.deepEqual(loss.shape, { type: "choice", options: ["cross_entropy", "mse", "hinge"] });
});
