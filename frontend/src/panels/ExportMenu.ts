/**
 * The "⤓" dialog: this session's runs, each exported as PyTorch code, a notebook, ONNX, TorchScript or
 * safetensors (GET /api/runs/{id}/export?format=…), or used as the starting weights of a new run
 * (train.init_from). "Start from a weights file…" uploads a .safetensors file (POST /api/weights).
 *
 * Formats the server cannot make (the optional `dlplay[export]` packages are missing) stay
 * listed but disabled, with the install command; trained formats wait for a run's saved weights.
 */

import { api } from "../api";
import { h, num, replace } from "../dom";
import type { Experiment } from "../generated/schema";
import "./ExportMenu.css";

export interface ExportActions {
  load(experiment: Experiment, label: string): void;
  current(): Experiment;
  toast(message: string, kind?: "error" | "info"): void;
}

/** GET /api/export/formats */
interface FormatInfo {
  format: string;
  label: string;
  extension: string;
  trained: boolean;
  description: string;
  available: boolean;
  missing: string[];
  install: string | null;
}

/** The fields of GET /api/runs this menu uses. */
interface RunRow {
  id: string;
  name: string;
  status: string;
  created_at: number;
  has_weights: boolean;
  final: { val_acc?: number | null; steps?: number | null } | null;
}

/** POST /api/weights */
interface WeightsUpload {
  id: string;
  tensors: number;
  parameters: number;
  layers: string[];
  experiment: Experiment | null;
  init_from: { upload_id: string };
}

/** What a format's button says. */
const SHORT: Record<string, string> = {
  pytorch: "PyTorch",
  notebook: "Notebook",
  onnx: "ONNX",
  torchscript: "TorchScript",
  safetensors: "Weights",
};

export class ExportMenu {
  /** the button that opens the dialog */
  readonly button: HTMLButtonElement;
  /** the dialog (an overlay, hidden until opened) */
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly notice: HTMLElement;
  private formats: FormatInfo[] = [];

  constructor(private readonly actions: ExportActions) {
    // An icon: the top bar is full at 1280 px; the title says what it does.
    this.button = h("button.icon#runs-menu", { type: "button", "aria-label": "export a run", title: "Export a run: PyTorch code, a notebook, ONNX, TorchScript or its weights; or start from saved weights", onclick: () => void this.open() }, "⤓");
    const file = h("input", { type: "file", accept: ".safetensors", hidden: true, name: "weights" });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      file.value = "";
      if (f) void this.importWeights(f);
    });
    this.notice = h("p.muted.export-notice", { hidden: true });
    this.body = h("div.export-runs");
    this.el = h("div.overlay#export-dialog", { hidden: true, role: "dialog", "aria-label": "runs and exports", onclick: (e: Event) => e.target === this.el && this.close() },
      h("div.dialog.export-dialog", null,
        h("div.dialog-head", null,
          h("b", null, "Export a run, or start from its weights"),
          h("span.spacer"),
          h("button.btn#import-weights", { type: "button", title: "start the next run from a .safetensors file exported by dlplay", onclick: () => file.click() }, "Start from a weights file…"),
          h("button.icon", { type: "button", onclick: () => this.close(), title: "close (Esc)" }, "×")),
        this.notice,
        this.body,
        file));
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.close();
    });
  }

  async open(): Promise<void> {
    this.el.hidden = false;
    replace(this.body, h("p.muted", null, "loading your runs…"));
    try {
      const [formats, runs] = await Promise.all([api<FormatInfo[]>("/export/formats"), api<RunRow[]>("/runs")]);
      this.formats = formats;
      this.render(runs);
    } catch (err) {
      replace(this.body, h("p.error", null, `cannot list your runs: ${(err as Error).message}`));
    }
  }

  close(): void {
    this.el.hidden = true;
  }

  private render(runs: RunRow[]): void {
    const missing = this.formats.filter((f) => !f.available);
    this.notice.hidden = missing.length === 0;
    replace(this.notice, missing.length ? `${missing.map((f) => SHORT[f.format] ?? f.format).join(" and ")} export need${missing.length === 1 ? "s" : ""} ${[...new Set(missing.flatMap((f) => f.missing))].join(", ")} on the server: ${missing[0]?.install ?? "pip install 'dlplay[export]'"}` : "");
    if (!runs.length) {
      replace(this.body, h("p.muted", null, "No runs yet: press Train, then come back to export the run."));
      return;
    }
    replace(this.body, h("table.export-table", null,
      h("thead", null, h("tr", null, h("th", null, "run"), h("th", null, "status"), h("th", null, "val acc"), h("th", null, "export"), h("th", null, ""))),
      h("tbody", null, runs.map((run) => this.row(run)))));
  }

  private row(run: RunRow): HTMLElement {
    const when = new Date(run.created_at * 1000);
    const buttons = this.formats.map((f) => {
      const why = !f.available ? `needs ${f.missing.join(", ")}: ${f.install}` : f.trained && !run.has_weights ? "needs the run's weights: they are saved when it finishes or is stopped" : null;
      const button = h("button.btn", { type: "button", "data-format": f.format, disabled: why !== null, title: why ?? `${f.label}: ${f.description}` }, SHORT[f.format] ?? f.format);
      button.addEventListener("click", () => void this.download(run, f, button));
      return button;
    });
    const startFrom = h("button.btn", { type: "button", disabled: !run.has_weights, title: run.has_weights ? "load this run's experiment; the next run starts from its trained weights (train.init_from)" : "this run has no saved weights yet" }, "Start from it");
    startFrom.addEventListener("click", () => void this.startFromRun(run));
    return h("tr", { "data-run": run.id },
      h("td", { title: run.id }, h("b", null, run.name || run.id), h("br"), h("span.muted", null, when.toLocaleString())),
      h("td", null, run.status),
      h("td", null, run.final?.val_acc != null ? num(run.final.val_acc) : "–"),
      h("td", null, h("div.export-buttons", null, buttons)),
      h("td", null, startFrom));
  }

  private async download(run: RunRow, format: FormatInfo, button: HTMLButtonElement): Promise<void> {
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "exporting…";
    try {
      const response = await fetch(`/api/runs/${encodeURIComponent(run.id)}/export?format=${encodeURIComponent(format.format)}`, { credentials: "same-origin" });
      if (!response.ok) {
        const detail = ((await response.json().catch(() => null)) as { detail?: string } | null)?.detail;
        throw new Error(detail ?? `${response.status} ${response.statusText}`);
      }
      const name = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") ?? "")?.[1] ?? `${run.id}${format.extension}`;
      const url = URL.createObjectURL(await response.blob());
      const a = h("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      this.actions.toast(`cannot export ${run.name || run.id} as ${format.label}: ${(err as Error).message}`, "error");
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  private async startFromRun(run: RunRow): Promise<void> {
    try {
      const full = await api<{ experiment: Experiment }>(`/runs/${encodeURIComponent(run.id)}`);
      this.actions.load(withInitFrom(full.experiment, { run_id: run.id }), `${run.name || run.id}, starting from its trained weights`);
      this.close();
    } catch (err) {
      this.actions.toast(`cannot load run ${run.id}: ${(err as Error).message}`, "error");
    }
  }

  private async importWeights(file: File): Promise<void> {
    try {
      // the file itself is the body (api() would send it as JSON)
      const response = await fetch("/api/weights", { method: "POST", body: file, credentials: "same-origin", headers: { "Content-Type": "application/octet-stream" } });
      const data = (await response.json().catch(() => null)) as (WeightsUpload & { detail?: string }) | null;
      if (!response.ok || !data) throw new Error(data?.detail ?? `${response.status} ${response.statusText}`);
      const upload: WeightsUpload = data;
      const base = upload.experiment ?? this.actions.current();
      this.actions.load(withInitFrom(base, upload.init_from), `${file.name}: ${upload.layers.length} layers, ${upload.parameters.toLocaleString()} weights to start from`);
      this.close();
    } catch (err) {
      this.actions.toast(`cannot use ${file.name}: ${(err as Error).message}`, "error");
    }
  }
}

/** `experiment` whose next run starts from the given weights (every layer, strictly; edit init_from.layers to transfer some). */
function withInitFrom(experiment: Experiment, source: { run_id: string } | { upload_id: string }): Experiment {
  return { ...experiment, train: { ...(experiment.train ?? {}), init_from: { ...source } } };
}
