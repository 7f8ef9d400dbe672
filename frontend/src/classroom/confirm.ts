/**
 * A modal yes/no question in the page's own style (a native <dialog>: focus is trapped, Escape
 * cancels). Used before what cannot be undone: kicking a student, ending the class.
 */

import { h } from "../dom";

export function confirmAction(question: string, detail: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const yes = h("button.btn.primary.danger#confirm-yes", { type: "button" }, confirmLabel);
    const no = h("button.btn#confirm-no", { type: "button" }, "Cancel");
    const dialog = h("dialog.confirm-dialog", { "aria-labelledby": "confirm-title" },
      h("h2#confirm-title", null, question),
      h("p", null, detail),
      h("div.confirm-actions", null, no, yes));
    let answered = false;
    const finish = (answer: boolean): void => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    yes.addEventListener("click", () => finish(true));
    no.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
    no.focus(); // the safe answer is the default one
  });
}
