/** Presets (GET /api/presets), import / export of the experiment JSON, and the share link. */

import { endpoints } from "../api";
import { h } from "../dom";
import type { Experiment } from "../generated/schema";
import type { PresetInfo } from "../protocol";
import { ExportMenu } from "./ExportMenu";

export interface FileActions {
  load(experiment: Experiment, label: string): void;
  current(): Experiment;
  shareLink(): Promise<string>;
  toast(message: string, kind?: "error" | "info"): void;
}

export class FileMenu {
  readonly el: HTMLElement;
  private presetSelect: HTMLSelectElement;
  private presets: PresetInfo[] = [];

  constructor(private readonly actions: FileActions) {
    this.presetSelect = h("select.preset-select#preset", { "aria-label": "load a preset", title: "load a classic network" },
      h("option", { value: "" }, "Presets…"));
    this.presetSelect.addEventListener("change", () => {
      const id = this.presetSelect.value;
      this.presetSelect.value = "";
      if (id) void this.loadPreset(id);
    });
    const file = h("input", { type: "file", accept: ".json,application/json", hidden: true, name: "import" });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      file.value = "";
      if (f) void this.import(f);
    });
    this.el = h("div.file-menu", null,
      this.presetSelect,
      h("button.btn#import", { type: "button", title: "open an experiment JSON file", onclick: () => file.click() }, "Import"),
      h("button.btn#export", { type: "button", title: "download this experiment as JSON", onclick: () => this.export() }, "Export"),
      h("button.btn#share", { type: "button", title: "copy a link that reproduces this page", onclick: () => void this.share() }, "Share"),
      file);
    // issue 12: export runs (code, notebook, ONNX, TorchScript, weights) and start from saved weights
    const runs = new ExportMenu(actions);
    this.el.append(runs.button, runs.el);
  }

  get list(): PresetInfo[] {
    return this.presets;
  }

  async loadList(): Promise<PresetInfo[]> {
    this.setList(await endpoints.presets());
    return this.presets;
  }

  setList(presets: PresetInfo[]): void {
    this.presets = presets;
    this.presetSelect.replaceChildren(
      h("option", { value: "" }, "Presets…"),
      ...this.presets.map((p) => h("option", { value: p.id, title: p.description ?? "" }, p.name || p.id)),
    );
  }

  async loadPreset(id: string): Promise<void> {
    try {
      const known = this.presets.find((p) => p.id === id);
      const experiment = known?.experiment ?? (await endpoints.preset(id)).experiment;
      this.actions.load(experiment, `preset ${known?.name ?? id}`);
    } catch (err) {
      this.actions.toast(`cannot load preset ${id}: ${(err as Error).message}`, "error");
    }
  }

  private async import(file: File): Promise<void> {
    try {
      const doc = JSON.parse(await file.text()) as Experiment | { experiment: Experiment };
      const experiment = unwrap(doc);
      if (!experiment || typeof experiment !== "object" || !experiment.network || !experiment.data) {
        throw new Error("not an experiment document (needs data and network)");
      }
      this.actions.load(experiment, file.name);
    } catch (err) {
      this.actions.toast(`cannot import ${file.name}: ${(err as Error).message}`, "error");
    }
  }

  private export(): void {
    const doc = this.actions.current();
    const blob = new Blob([`${JSON.stringify(doc, null, 2)}\n`], { type: "application/json" });
    const a = h("a", { href: URL.createObjectURL(blob), download: `${slug(doc.name ?? "experiment")}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  private async share(): Promise<void> {
    const link = await this.actions.shareLink();
    try {
      await navigator.clipboard.writeText(link);
      this.actions.toast("link copied: it reproduces this experiment and view");
    } catch {
      // no clipboard permission (plain http on another host): the address bar holds the same link
      this.actions.toast("the address bar now holds the link to this experiment: copy it from there");
    }
  }
}

function unwrap(doc: Experiment | { experiment: Experiment }): Experiment {
  return "experiment" in doc && doc.experiment ? doc.experiment : (doc as Experiment);
}

function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^_+|_+$/g, "") || "experiment";
}
