/** The layer kinds from the registry as chips: drag one onto the graph, or click to add it after the selection. */

import { h } from "../dom";
import type { KindEntry } from "../registry";
import { DRAG_MIME } from "./GraphView";

export class Palette {
  readonly el: HTMLElement;

  constructor(private readonly onAdd: (kind: string) => void) {
    this.el = h("div.palette", { role: "toolbar", "aria-label": "layer palette" });
  }

  setKinds(kinds: KindEntry[]): void {
    this.el.replaceChildren(
      ...kinds.map((entry) => {
        const chip = h(
          "button.chip",
          {
            type: "button",
            draggable: "true",
            title: `${entry.description || entry.title}\n(drag onto the graph, or click to add after the selected layer)`,
            "data-kind": entry.kind,
            onclick: () => this.onAdd(entry.kind),
          },
          entry.kind,
        );
        chip.addEventListener("dragstart", (e) => {
          e.dataTransfer?.setData(DRAG_MIME, entry.kind);
          e.dataTransfer?.setData("text/plain", entry.kind);
          if (e.dataTransfer) e.dataTransfer.effectAllowed = "copy";
        });
        return chip;
      }),
    );
  }
}
