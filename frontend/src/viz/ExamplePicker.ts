/** The example picker of the probe views: index input, "random" and a go button. */

import { button, el, randInt } from "./dom";

/** Shared by FeatureMaps and Attention; `onPick(index)` sends the probe. */
export class ExamplePicker {
  readonly el: HTMLElement;
  readonly input: HTMLInputElement;
  private max = 0;
  constructor(label: string, private readonly onPick: (index: number) => void, goLabel: string | null = "Show") {
    this.input = el("input", { class: "viz-input", attrs: { type: "number", min: "0", step: "1", value: "0" }, title: "index of a validation example" });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.go();
    });
    this.el = el("span", { class: "viz-control" }, [
      label,
      this.input,
      button("random", () => {
        this.input.value = String(randInt(this.max > 0 ? this.max : 100));
        this.go();
      }, { title: "a random validation example" }),
      goLabel !== null ? button(goLabel, () => this.go(), { class: "primary" }) : null,
    ]);
  }
  /** Validation set size (from the summary): bounds the index. */
  setMax(n: number): void {
    this.max = n;
    this.input.max = String(Math.max(0, n - 1));
  }
  index(): number {
    const v = parseInt(this.input.value, 10);
    const i = Number.isFinite(v) ? Math.max(0, v) : 0;
    return this.max > 0 ? Math.min(this.max - 1, i) : i;
  }
  set(i: number): void {
    this.input.value = String(i);
  }
  go(): void {
    this.onPick(this.index());
  }
}
