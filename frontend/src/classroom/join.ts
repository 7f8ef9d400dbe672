/**
 * The join page (/join): what a student sees first, and the only page a server in class mode
 * serves to a browser that has not joined. The student types the class's join code (any case,
 * with or without the dash) and a display name; the server answers with a session cookie and
 * the page goes on to the playground (/). Every refusal says what went wrong and what to do.
 */

import "../styles.css";
import "./join.css";
import { h } from "../dom";
import { classEndpoints, errorCode, errorText, rememberClass } from "./classApi";
import { codeProblem, formatCode, NAME_MAX, nameProblem, normalizeCode } from "./model";
import { applyStoredTheme, logo } from "./pageTheme";

/** What each refusal of POST /api/class/join means to a student: a headline, and which field is at fault. */
const REFUSALS: Record<string, { title: string; field: "code" | "name" | null }> = {
  bad_code: { title: "That code does not open this class", field: "code" },
  name_taken: { title: "Someone in the class already has that name", field: "name" },
  bad_name: { title: "That name cannot be used", field: "name" },
  joining_closed: { title: "Joining is closed", field: null },
  class_ended: { title: "This class has ended", field: null },
  no_class: { title: "No class is running on this server", field: null },
  rate_limited: { title: "Too many tries", field: null },
};

/** A fix for refusals whose server message might not carry one. */
const FIXES: Record<string, string> = {
  bad_code: "Fix: check the code on the board (it looks like ABC-123) and type it again.",
  name_taken: "Fix: add an initial or a number, e.g. “Ada L.”.",
  joining_closed: "Fix: ask your teacher to open joining, then press Join again.",
  class_ended: "Fix: ask your teacher for the link to the next class.",
  rate_limited: "Fix: wait a minute, then try again.",
};

function boot(): void {
  applyStoredTheme();
  const root = document.getElementById("app");
  if (!root) return;
  const params = new URLSearchParams(location.search);

  const codeInput = h("input.join-code#join-code", {
    name: "code", type: "text", inputmode: "text", autocomplete: "off", autocapitalize: "characters", spellcheck: "false",
    placeholder: "ABC-123", maxlength: 12, "aria-describedby": "join-code-hint", required: true,
  });
  const nameInput = h("input.join-name#join-name", {
    name: "name", type: "text", autocomplete: "nickname", spellcheck: "false", maxlength: NAME_MAX,
    placeholder: "e.g. Ada L.", "aria-describedby": "join-name-hint", required: true,
  });
  const submit = h("button.btn.primary.join-submit#join-submit", { type: "submit" }, "Join the class");
  const errorBox = h("div.join-error", { role: "alert", hidden: true });
  const form = h("form.join-form", { novalidate: true },
    h("label.join-label", { for: "join-code" }, "Join code"),
    codeInput,
    h("p.join-hint#join-code-hint", null, "On the board or the projector: six letters and digits."),
    h("label.join-label", { for: "join-name" }, "Your name"),
    nameInput,
    h("p.join-hint#join-name-hint", null, "What your teacher and the leaderboard will show."),
    errorBox,
    submit);

  const prefill = params.get("code");
  if (prefill) codeInput.value = formatCode(prefill);

  // typed "abc123" reads back as "ABC-123" at once: the same shape as on the board
  codeInput.addEventListener("input", () => {
    const bare = normalizeCode(codeInput.value);
    const formatted = bare.length > 3 ? `${bare.slice(0, 3)}-${bare.slice(3)}` : bare;
    if (formatted !== codeInput.value) codeInput.value = formatted;
    clearError();
  });
  nameInput.addEventListener("input", () => clearError());

  function clearError(): void {
    errorBox.hidden = true;
    codeInput.removeAttribute("aria-invalid");
    nameInput.removeAttribute("aria-invalid");
  }

  function showError(title: string, detail: string, field: "code" | "name" | null): void {
    errorBox.replaceChildren(h("strong", null, title), h("span", null, detail));
    errorBox.hidden = false;
    if (field) {
      const input = field === "code" ? codeInput : nameInput;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      input.select();
    }
  }

  let busy = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (busy) return;
    clearError();
    const badCode = codeProblem(codeInput.value);
    if (badCode) return showError("Check the join code", badCode, "code");
    const badName = nameProblem(nameInput.value);
    if (badName) return showError("Check your name", badName, "name");
    busy = true;
    submit.disabled = true;
    submit.textContent = "Joining…";
    classEndpoints
      .join(normalizeCode(codeInput.value), nameInput.value.trim())
      .then((joined) => {
        rememberClass("member");
        submit.textContent = `Welcome, ${joined.member.name}`;
        location.assign("/");
      })
      .catch((err: unknown) => {
        busy = false;
        submit.disabled = false;
        submit.textContent = "Join the class";
        const code = errorCode(err) ?? ((err as { status?: number }).status === 429 ? "rate_limited" : null);
        const known = code ? REFUSALS[code] : undefined;
        let detail = errorText(err);
        const fix = code ? FIXES[code] : undefined;
        if (fix && !/fix:/i.test(detail)) detail = `${detail} ${fix}`;
        showError(known?.title ?? "Could not join", detail, known?.field ?? null);
      });
  });

  const hero = h("section.join-hero", null,
    h("div.join-brand", null, logo(), h("span", null, "dlplay")),
    h("h1", null, "Build, train and look inside real neural networks."),
    h("ul.join-points", null,
      h("li", null, h("b", null, "Your own runs. "), "Every network you train runs for real, on the class's server."),
      h("li", null, h("b", null, "Live views. "), "Watch the loss fall and the decision boundary form as it learns."),
      h("li", null, h("b", null, "Together. "), "Start from your teacher's lesson and climb the leaderboard.")));
  const card = h("section.join-card", null,
    h("h2", null, "Join your class"),
    h("p.muted", null, "No account needed: the code and a name are enough."),
    form,
    h("p.join-again.muted.small", null, "Joined before on this computer? The same code and name bring your runs back."));
  root.replaceChildren(h("main.join-page", null, hero, card));
  (prefill ? nameInput : codeInput).focus();

  (window as unknown as { __dlplayJoin: unknown }).__dlplayJoin = { ready: true };
}

boot();
