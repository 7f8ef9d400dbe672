/** Short notices in the bottom-right corner (errors stay until clicked or 8 s). */

import { h } from "./dom";

export type ToastKind = "error" | "info";

export class Toasts {
  readonly el: HTMLElement = h("div.toasts", { role: "status", "aria-live": "polite" });

  show(message: string, kind: ToastKind = "info"): void {
    const item = h(`div.toast.${kind}`, { title: "click to dismiss" }, message);
    item.addEventListener("click", () => item.remove());
    this.el.append(item);
    while (this.el.childElementCount > 4) this.el.firstElementChild?.remove();
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 3500);
  }
}
