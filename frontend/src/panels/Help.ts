/** The "?" overlay: keyboard shortcuts and how to use the editor. */

import { h } from "../dom";

const SHORTCUTS: [string, string][] = [
  ["Ctrl+Enter", "start / restart training"],
  ["Space", "pause / resume"],
  ["Ctrl+Z", "undo"],
  ["Ctrl+Shift+Z, Ctrl+Y", "redo"],
  ["Delete, Backspace", "delete the selected layer or connection"],
  ["Esc", "deselect / close this help"],
  ["↑ ↓", "select the previous / next layer"],
  ["Alt+↑ Alt+↓", "move the selected layer up / down"],
  ["1 … 7", "switch live-view tab"],
  ["?", "this help"],
];

export class Help {
  readonly el: HTMLElement;

  constructor() {
    this.el = h("div.overlay", { hidden: true, role: "dialog", "aria-label": "help", onclick: (e: Event) => e.target === this.el && this.hide() },
      h("div.dialog", null,
        h("div.dialog-head", null, h("b", null, "dlplay: shortcuts"), h("span.spacer"), h("button.icon", { type: "button", onclick: () => this.hide(), title: "close (Esc)" }, "×")),
        h("table.shortcuts", null, SHORTCUTS.map(([k, v]) => h("tr", null, h("td", null, k.split(", ").map((x) => h("kbd", null, x))), h("td", null, v)))),
        h("p.muted", null,
          "Network editor: drag a layer kind from the palette onto the graph (or click it to add after the selected layer). ",
          "Drag from a node's bottom port onto a later layer to add a skip connection; click a connection and press Delete to remove it. ",
          "Each node shows its output shape, parameter count and receptive field, checked by the server as you edit; errors appear in red on the layer."),
        h("p.muted", null,
          "While a run trains, the open tab's views redraw by themselves; each says which step it shows and how many frames a second it gets. ",
          "The speed menu next to Stop slows training to 100, 10 or 1 steps a second; while paused, Step does exactly one. ",
          "\u201cTrain for: until stopped\u201d runs until you press Stop. The address names the run: reload, go Back or open it in another tab ",
          "of this browser and the page follows it again; the Runs tab reopens any earlier run. A\u207a is projector mode.")),
    );
  }

  get open(): boolean {
    return !this.el.hidden;
  }

  toggle(): void {
    this.el.hidden = !this.el.hidden;
  }

  hide(): void {
    this.el.hidden = true;
  }
}
