/**
 * Transfer learning at a glance (lesson 19): a strip at the top of the Training tab saying which
 * layers of the shown run are frozen (not trained) and which started from another run's weights.
 *
 * It reads the run's `summary` (`frozen`, `loaded_from`): what the run really did, which may differ
 * from the document now in the editor. A run with neither shows nothing, so the strip costs the
 * other lessons no space.
 */

import "./lessonViews.css";
import type { ServerMessage, SummaryMsg } from "../protocol";
import type { ViewContext } from "../viewContext";
import { el } from "./dom";

export class TransferBanner {
  private summary: SummaryMsg | null = null;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext) {
    root.classList.add("viz-view", "lv-transfer-view");
    this.draw();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type !== "summary") return;
    this.summary = msg;
    this.draw();
  }

  reset(): void {
    this.summary = null;
    this.draw();
  }

  private draw(): void {
    const s = this.summary;
    const frozen = s?.frozen ?? [];
    const loaded = s?.loaded_from ?? null;
    // the host box (the tab's grid cell) disappears with the strip: no empty gap above the charts
    const host = this.root;
    host.hidden = frozen.length === 0 && loaded === null;
    host.dataset.frozen = frozen.join(",");
    host.dataset.loaded = loaded?.layers.join(",") ?? "";
    if (host.hidden || s === null) {
      host.replaceChildren();
      return;
    }
    const layers = s.network.layers.filter((l) => l.params > 0).map((l) => l.name);
    const trained = layers.filter((n) => !frozen.includes(n));
    const chips = (names: string[], cls: string, icon: () => Node): HTMLElement[] =>
      names.map((n) => el("span", { class: `lv-chip ${cls}`, attrs: { "data-layer": n } }, [icon(), n]));
    const source = loaded === null ? "" : loaded.run_id !== null ? `run ${loaded.run_id.slice(0, 8)}` : "an uploaded file";
    const fresh = loaded === null ? [] : layers.filter((n) => !loaded.layers.includes(n));
    host.replaceChildren(
      el("div", { class: "lv-transfer", attrs: { role: "note" } }, [
        el("b", { text: "Transfer learning" }),
        loaded !== null
          ? el("span", { class: "lv-transfer-item", attrs: { "data-part": "loaded" } }, [
              `weights from ${source}:`,
              ...chips(loaded.layers, "loaded", () => document.createTextNode("⤓")),
              fresh.length > 0 ? el("span", { class: "viz-note", text: `(${fresh.join(", ")} start fresh)` }) : null,
            ])
          : null,
        frozen.length > 0
          ? el("span", { class: "lv-transfer-item", attrs: { "data-part": "frozen" } }, [
              "frozen, not trained:",
              ...chips(frozen, "frozen", lockIcon),
              el("span", { class: "viz-note", text: trained.length > 0 ? `(training ${trained.join(", ")})` : "" }),
            ])
          : el("span", { class: "viz-note", text: "every layer trains (fine-tuning)" }),
      ]),
    );
  }
}

/** A padlock, drawn (an emoji would need a colour-emoji font the classroom machine may lack). */
export function lockIcon(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 10 12");
  svg.setAttribute("class", "lv-lock");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = '<rect x="1" y="5" width="8" height="6.5" rx="1.2" fill="currentColor"/>' +
    '<path d="M3 5V3.4a2 2 0 0 1 4 0V5" fill="none" stroke="currentColor" stroke-width="1.4"/>';
  return svg;
}
