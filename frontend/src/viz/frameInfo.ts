/**
 * The discreet corner note of a live view: the training step of the frame it draws and the
 * rate the server streams the view at ("step 1,240 · 20 fps").
 *
 * It also writes the drawn step to the view's root as `data-step` (and the count of
 * frames drawn as `data-frames`), at the moment the frame is painted rather than when the
 * message arrives: end-to-end tests count the distinct steps a view really drew.
 */

import { fmtRate } from "../live";
import { el } from "./dom";

const RATE_TITLE =
  "frames per second the server streams this view at; it lowers the rate when computing the view would slow training down";

export class FrameInfo {
  readonly el: HTMLElement;
  private readonly stepEl = el("b");
  private readonly rateEl = el("span", { class: "viz-frame-rate", title: RATE_TITLE });
  private frames = 0;

  /** `root` is the view's root element (it gets data-step); `label` names the axis ("step"). */
  constructor(private readonly root: HTMLElement, label = "step") {
    this.el = el("span", { class: "viz-frame", attrs: { hidden: "" } }, [el("span", { class: "viz-frame-k", text: label }), this.stepEl, this.rateEl]);
  }

  /** A frame of `step` was drawn; `rateHz` is the message's rate_hz (null: an on-demand reply, not a stream). */
  drawn(step: number, rateHz: number | null): void {
    this.frames += 1;
    this.el.hidden = false;
    this.stepEl.textContent = step.toLocaleString("en-US");
    const rate = rateHz !== null ? fmtRate(rateHz) : "";
    this.rateEl.textContent = rate;
    this.rateEl.hidden = rate === "";
    this.root.dataset.step = String(step);
    this.root.dataset.frames = String(this.frames);
  }

  /** A new run: nothing drawn yet. */
  clear(): void {
    this.frames = 0;
    this.el.hidden = true;
    delete this.root.dataset.step;
    delete this.root.dataset.frames;
  }
}
