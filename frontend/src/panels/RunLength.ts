/**
 * How long a run trains: until stopped, a number of epochs, or a number of steps.
 *
 * "Until stopped" is how TensorFlow Playground trains, and the natural choice for the 2D
 * and small presets: the run goes on, the views animate, and the student presses Pause or
 * Stop when the boundary has formed. On the wire it is `train.epochs: null` with no
 * `max_steps` (the server then reports `total_steps: null`); "steps" sets `max_steps`,
 * which wins over epochs; "epochs" clears `max_steps`.
 */

import { h } from "../dom";
import type { TrainConfig } from "../generated/schema";

export type LengthMode = "until_stopped" | "epochs" | "steps";

export interface RunLength {
  mode: LengthMode;
  /** epochs or steps; null when the mode has no number (until stopped) */
  value: number | null;
}

const MODES: [LengthMode, string][] = [
  ["until_stopped", "until stopped"],
  ["epochs", "epochs"],
  ["steps", "steps"],
];
const MAX_EPOCHS = 100_000; // TrainConfig.epochs' bound (server/schemas.py)
const DEFAULT_STEPS = 1000; // offered when switching to "steps" with none set before

/** The length a TrainConfig asks for; `defaultEpochs` is the schema's default (an absent field). */
export function lengthOf(train: TrainConfig | undefined, defaultEpochs: number): RunLength {
  const t = train ?? {};
  if (typeof t.max_steps === "number") return { mode: "steps", value: t.max_steps };
  if (t.epochs === null) return { mode: "until_stopped", value: null };
  return { mode: "epochs", value: typeof t.epochs === "number" ? t.epochs : defaultEpochs };
}

/** Write `length` into a TrainConfig (mutates `train`): the only fields touched are epochs and max_steps. */
export function applyLength(train: TrainConfig, length: RunLength): void {
  const t = train as Record<string, unknown>;
  switch (length.mode) {
    case "until_stopped":
      t.epochs = null;
      delete t.max_steps;
      break;
    case "epochs":
      t.epochs = length.value;
      delete t.max_steps;
      break;
    case "steps":
      t.max_steps = length.value;
      break;
  }
}

/** Why `value` is not a valid count for `mode`, or null. */
export function lengthProblem(mode: LengthMode, value: number): string | null {
  if (!Number.isFinite(value)) return "a number, please";
  if (mode === "epochs") return value > 0 && value <= MAX_EPOCHS ? null : `epochs must be > 0 and ≤ ${MAX_EPOCHS.toLocaleString("en-US")}`;
  if (mode === "steps") return Number.isInteger(value) && value >= 1 ? null : "steps must be a whole number ≥ 1";
  return null;
}

/** The "train for" row of the training panel. */
export class RunLengthControl {
  readonly el: HTMLElement;
  private readonly mode: HTMLSelectElement;
  private readonly input: HTMLInputElement;
  private readonly unitNote: HTMLElement;
  private readonly error: HTMLElement;
  /** the last number used per mode, so switching back and forth keeps it */
  private remembered: Record<"epochs" | "steps", number>;

  constructor(private readonly onChange: (length: RunLength) => void, defaultEpochs: number) {
    this.remembered = { epochs: defaultEpochs, steps: DEFAULT_STEPS };
    this.mode = h("select", { name: "length_mode", "aria-label": "how long to train" },
      MODES.map(([v, label]) => h("option", { value: v }, label)));
    this.input = h("input.num", { type: "number", min: 1, step: "any", name: "epochs", "aria-label": "how many" });
    this.unitNote = h("span.range");
    this.error = h("div.field-error");
    this.mode.addEventListener("change", () => {
      const mode = this.mode.value as LengthMode;
      const value = mode === "until_stopped" ? null : this.remembered[mode];
      this.show({ mode, value });
      this.onChange({ mode, value });
    });
    this.input.addEventListener("input", () => {
      const mode = this.mode.value as LengthMode;
      if (mode === "until_stopped" || this.input.value.trim() === "") return;
      const value = Number(this.input.value);
      const problem = lengthProblem(mode, value);
      this.setError(problem);
      if (problem !== null) return;
      this.remembered[mode] = value;
      this.onChange({ mode, value });
    });
    this.el = h("div.field.run-length", { "data-field": "epochs" },
      h("label.field-label", { title: "until stopped: train until you press Stop (as TensorFlow Playground does); or a number of passes over the training set (epochs) or of optimizer steps" }, "train for"),
      h("span.control", null, this.mode, this.input, this.unitNote),
      this.error);
  }

  /** Show the document's length (never overwrites the box being typed in). */
  sync(length: RunLength): void {
    if (length.mode !== "until_stopped" && length.value !== null) this.remembered[length.mode] = length.value;
    this.show(length);
  }

  private show(length: RunLength): void {
    this.mode.value = length.mode;
    const counted = length.mode !== "until_stopped";
    this.input.hidden = !counted;
    this.input.name = length.mode === "steps" ? "max_steps" : "epochs";
    this.input.step = length.mode === "steps" ? "1" : "any";
    if (counted && document.activeElement !== this.input) this.input.value = length.value === null ? "" : String(length.value);
    // until stopped: no number to give; the select's title says how it ends
    this.unitNote.textContent = counted ? "" : "∞";
    this.mode.title = counted ? "" : "trains until you press Stop (or Pause), as TensorFlow Playground does";
    if (document.activeElement !== this.input) this.setError(null);
  }

  private setError(message: string | null): void {
    this.error.textContent = message ?? "";
    this.el.classList.toggle("invalid", message !== null);
  }
}
