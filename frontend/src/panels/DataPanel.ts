/**
 * The data panel: pick a dataset from the registry, set its generation / split /
 * preprocessing / augmentation options (forms from the registry's DataSpec schema), see
 * samples (GET /api/datasets/{name}/preview), and upload your own CSV/NPZ (POST /api/uploads).
 */

import { ApiError, endpoints, type DatasetPreview } from "../api";
import { debounce, h } from "../dom";
import { objectForm, type ObjectForm } from "../forms/fields";
import { resolve, type JsonSchema } from "../forms/schema";
import type { DataSpec } from "../generated/schema";
import type { DatasetEntry, Registry } from "../registry";
import type { Store } from "../state";

const PREVIEW_DELAY_MS = 300; // after the last data edit
const UPLOAD_PREFIX = "upload:";

/** Class colours for previews: TensorFlow Playground's orange/blue first, then a qualitative set. */
const CLASS_COLOURS = ["#f59322", "#0877bd", "#16a34a", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#92400e", "#475569"];

export class DataPanel {
  readonly el: HTMLElement;
  private select: HTMLSelectElement;
  private info: HTMLElement;
  private form: ObjectForm | null = null;
  private augForm: ObjectForm | null = null;
  private formHost: HTMLElement;
  private preview: HTMLElement;
  private uploadStatus: HTMLElement;
  private registry: Registry | null = null;
  private uploads: (DatasetEntry & { label?: string })[] = [];
  private lastPreviewKey = "";
  private previewData: DatasetPreview | null = null;
  private previewListeners = new Set<(p: DatasetPreview | null) => void>();
  private readonly schedulePreview = debounce(() => void this.loadPreview(), PREVIEW_DELAY_MS);

  constructor(private readonly store: Store) {
    this.select = h("select.dataset-select", { name: "dataset", "aria-label": "dataset" });
    this.select.addEventListener("change", () => {
      const name = this.select.value;
      this.store.edit((doc) => {
        doc.data = { ...doc.data, name };
        // counts and noise belong to the previous set; let the new one use its defaults
        delete doc.data.n_samples;
      });
    });
    this.info = h("div.dataset-info");
    this.formHost = h("div");
    this.preview = h("div.preview", { "aria-label": "dataset samples" });
    this.uploadStatus = h("div.upload-status");
    const file = h("input", { type: "file", accept: ".csv,.npz", name: "upload", hidden: true });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      if (f) void this.upload(f);
      file.value = "";
    });
    this.el = h("div.data-panel.panel-scroll",
      h("div.section-head", null, h("span.section-title", null, "Data")),
      h("div.field", null, h("label.field-label", null, "dataset"), h("span.control", null, this.select)),
      this.info,
      this.preview,
      this.formHost,
      h("div.section-head", null, h("span.section-title", null, "Your own data")),
      h("p.muted.small", null, "CSV (features…, label per row) or NPZ (x, y arrays). Files stay on this machine."),
      h("div.row", null,
        h("button.btn", { type: "button", onclick: () => file.click(), title: "upload a CSV or NPZ file" }, "Upload CSV / NPZ…"),
        file),
      this.uploadStatus);
    store.subscribe((_, changed) => {
      if (changed.has("experiment")) this.sync();
    });
  }

  onPreview(cb: (p: DatasetPreview | null) => void): void {
    this.previewListeners.add(cb);
  }

  get currentPreview(): DatasetPreview | null {
    return this.previewData;
  }

  setRegistry(registry: Registry): void {
    this.registry = registry;
    const schema = registry.data_schema;
    const defs = (schema.$defs ?? {}) as Record<string, JsonSchema>;
    const props = { ...(schema.properties ?? {}) };
    const aug = props.augmentation ? resolve(props.augmentation, defs) : null;
    delete props.name;
    delete props.augmentation;
    this.form = objectForm(props, defs, [], (key, value) => this.setField(key, value));
    const host: (HTMLElement | string)[] = [h("div.section-head", null, h("span.section-title", null, "Split & preprocessing")), this.form.el];
    if (aug?.properties) {
      this.augForm = objectForm(aug.properties, defs, [], (key, value) =>
        this.store.edit((doc) => {
          const next: Record<string, unknown> = { ...(doc.data.augmentation ?? {}) };
          if (value === undefined) delete next[key];
          else next[key] = value;
          doc.data.augmentation = next;
        }, { coalesce: `aug:${key}` }));
      host.push(h("details.group", null, h("summary", { title: aug.description ?? "" }, "Augmentation (training only)"), this.augForm.el));
    }
    this.formHost.replaceChildren(...host);
    this.sync();
  }

  private setField(key: string, value: unknown): void {
    this.store.edit((doc) => {
      const data = doc.data as unknown as Record<string, unknown>;
      if (value === undefined) delete data[key];
      else data[key] = value;
    }, { coalesce: `data:${key}` });
  }

  private entries(): DatasetEntry[] {
    return [...(this.registry?.datasets ?? []), ...this.uploads];
  }

  private sync(): void {
    const data = this.store.experiment.data;
    const entries = this.entries();
    if (data.name.startsWith(UPLOAD_PREFIX) && !entries.some((e) => e.name === data.name)) {
      this.uploads.push({ name: data.name, kind: "tabular", description: "your upload", source: "uploaded", licence: "yours" });
    }
    this.renderSelect();
    this.select.value = data.name;
    const entry = this.entries().find((e) => e.name === data.name);
    this.info.replaceChildren(
      entry
        ? h("div", null, h("span.kind-tag", null, entry.kind), " ", entry.description,
            h("div.muted.small", null, `source: ${entry.source} · licence: ${entry.licence}`))
        : h("div.error-box", null, `unknown dataset '${data.name}'`),
    );
    this.form?.sync(data as unknown as Record<string, unknown>);
    this.augForm?.sync((data.augmentation ?? {}) as Record<string, unknown>);
    const key = JSON.stringify([data.name, data.n_samples, data.noise, data.seed]);
    if (key !== this.lastPreviewKey) {
      this.lastPreviewKey = key;
      this.preview.classList.add("loading"); // the old samples stay, dimmed, until the new ones come
      this.schedulePreview();
    }
  }

  private renderSelect(): void {
    const groups = new Map<string, DatasetEntry[]>();
    for (const e of this.entries()) groups.set(e.kind, [...(groups.get(e.kind) ?? []), e]);
    const labels: Record<string, string> = { "2d": "2D points", image: "images", tabular: "tables" };
    const signature = this.entries().map((e) => e.name).join("|");
    if (this.select.dataset.sig === signature) return;
    this.select.dataset.sig = signature;
    this.select.replaceChildren(
      ...[...groups].map(([kind, list]) =>
        h("optgroup", { label: labels[kind] ?? kind }, list.map((e) => h("option", { value: e.name, title: e.description }, (e as { label?: string }).label ?? e.name)))),
    );
  }

  private async loadPreview(): Promise<void> {
    const data = this.store.experiment.data;
    const key = this.lastPreviewKey;
    this.preview.classList.add("loading");
    try {
      const kind = this.entries().find((e) => e.name === data.name)?.kind;
      const p = await endpoints.preview(data, kind === "2d" ? 256 : 48);
      if (key !== this.lastPreviewKey) return;
      this.previewData = p;
      this.renderPreview(p);
    } catch (err) {
      if (key !== this.lastPreviewKey) return;
      this.previewData = null;
      this.preview.replaceChildren(h("div.error-box", null, `no preview: ${(err as Error).message}`));
    }
    this.preview.classList.remove("loading");
    for (const cb of this.previewListeners) cb(this.previewData);
  }

  private renderPreview(p: DatasetPreview): void {
    const classes = p.classes ?? [];
    const legend = h("div.legend", null,
      classes.slice(0, 10).map((c, i) => h("span.legend-item", null, h("i", { style: { background: CLASS_COLOURS[i % CLASS_COLOURS.length] } }), c)));
    const points = p.points ?? (p.kind === "2d" ? (p.rows as number[][] | undefined) : undefined);
    if (points?.length) {
      this.preview.replaceChildren(scatter(points as number[][], p.labels ?? []), legend);
      return;
    }
    const images = p.images;
    if (Array.isArray(images) && images.length) {
      const grid = h("div.sample-grid");
      images.slice(0, 48).forEach((img, i) => {
        const label = (img as { label?: number }).label ?? p.labels?.[i];
        grid.append(imageTile(img, label !== undefined ? (classes[label] ?? String(label)) : ""));
      });
      this.preview.replaceChildren(grid);
      return;
    }
    if (p.grid) {
      this.preview.replaceChildren(h("img.sample-sheet", { src: `data:image/png;base64,${p.grid.png}`, alt: "samples" }));
      return;
    }
    const rows = p.rows as number[][] | undefined;
    if (rows?.length) {
      this.preview.replaceChildren(
        h("table.rows", null, rows.slice(0, 8).map((r, i) =>
          h("tr", null, r.slice(0, 8).map((v) => h("td", null, v.toFixed(2))), h("td.label", null, classes[p.labels?.[i] ?? -1] ?? "")))),
      );
      return;
    }
    this.preview.replaceChildren(h("div.muted", null, "no samples to show"));
  }

  private async upload(file: File): Promise<void> {
    this.uploadStatus.replaceChildren(h("span.muted", null, `uploading ${file.name}…`));
    try {
      const result = await endpoints.upload(file);
      const name = result.name && result.name.startsWith(UPLOAD_PREFIX) ? result.name : `${UPLOAD_PREFIX}${result.id}`;
      const kind = (result.kind as DatasetEntry["kind"]) ?? "tabular";
      const label = `${String(result.filename ?? file.name)} (upload)`;
      this.uploads = [
        ...this.uploads.filter((u) => u.name !== name),
        { name, kind, label, description: `${file.name}${result.n ? `, ${result.n} examples` : ""}`, source: "your upload", licence: "yours" },
      ];
      this.select.dataset.sig = "";
      this.store.edit((doc) => {
        doc.data = { ...doc.data, name } as DataSpec;
        delete doc.data.n_samples;
      });
      this.uploadStatus.replaceChildren(h("div.ok-box", null, `${file.name} uploaded as ${name}`));
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      this.uploadStatus.replaceChildren(h("div.error-box", null, `${file.name}: ${message}`));
    }
  }
}

/** A 2D scatter of [x, y(, label)] points on a canvas, coloured by class. */
function scatter(points: number[][], labels: number[]): HTMLCanvasElement {
  const size = 180; // css px
  const dpr = window.devicePixelRatio || 1;
  const canvas = h("canvas.scatter", { width: size * dpr, height: size * dpr, style: { width: `${size}px`, height: `${size}px` } });
  const g = canvas.getContext("2d");
  if (!g) return canvas;
  g.scale(dpr, dpr);
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) for (const v of p.slice(0, 2)) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const span = hi - lo || 1;
  const m = 8;
  const sx = (v: number) => m + ((v - lo) / span) * (size - 2 * m);
  const sy = (v: number) => size - m - ((v - lo) / span) * (size - 2 * m);
  g.strokeStyle = "rgba(127,127,127,0.35)";
  g.strokeRect(0.5, 0.5, size - 1, size - 1);
  points.forEach((p, i) => {
    const label = p.length > 2 ? (p[2] ?? 0) : (labels[i] ?? 0);
    g.fillStyle = CLASS_COLOURS[label % CLASS_COLOURS.length] ?? "#888";
    g.beginPath();
    g.arc(sx(p[0] ?? 0), sy(p[1] ?? 0), 2.6, 0, 2 * Math.PI);
    g.fill();
  });
  return canvas;
}

/** One sample image: a base64 PNG ({w, h, png}) or raw uint8 rows ([H][W] or [H][W][C]). */
function imageTile(img: unknown, label: string): HTMLElement {
  const wrap = h("figure.sample", { title: label });
  const asPng = img as { png?: string };
  if (typeof asPng.png === "string") {
    wrap.append(h("img", { src: `data:image/png;base64,${asPng.png}`, alt: label }));
  } else if (Array.isArray(img)) {
    wrap.append(rawCanvas(img as number[][] | number[][][]));
  }
  wrap.append(h("figcaption", null, label));
  return wrap;
}

function rawCanvas(rows: number[][] | number[][][]): HTMLCanvasElement {
  const hgt = rows.length;
  const wid = rows[0]?.length ?? 0;
  const canvas = h("canvas", { width: wid, height: hgt });
  const g = canvas.getContext("2d");
  if (!g || !wid) return canvas;
  const data = g.createImageData(wid, hgt);
  for (let y = 0; y < hgt; y++) {
    for (let x = 0; x < wid; x++) {
      const v = rows[y]?.[x];
      const [r, gg, b] = Array.isArray(v) ? [v[0] ?? 0, v[1] ?? v[0] ?? 0, v[2] ?? v[0] ?? 0] : [v ?? 0, v ?? 0, v ?? 0];
      const o = 4 * (y * wid + x);
      data.data[o] = r;
      data.data[o + 1] = gg;
      data.data[o + 2] = b;
      data.data[o + 3] = 255;
    }
  }
  g.putImageData(data, 0, 0);
  return canvas;
}
