/**
 * The REST client (/api, see ARCHITECTURE.md "Server"). One function per endpoint so the
 * paths are spelled once; `api()` is the generic JSON fetch views get through ViewContext.
 */

import type { Experiment, TrainConfig } from "./generated/schema";
import type { LiveViewInfo } from "./live";
import type { Health, PresetInfo, RunInfo, ValidateResult } from "./protocol";
import type { Registry } from "./registry";

/** A failed request; `message` is the server's own explanation when it gave one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail: unknown = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** JSON request to `/api${path}`. A plain-object body is sent as JSON. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  let body = init.body;
  if (body !== undefined && body !== null && !(body instanceof FormData) && typeof body !== "string") {
    body = JSON.stringify(body);
  }
  if (typeof body === "string" && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  let response: Response;
  try {
    response = await fetch(`/api${path}`, { credentials: "same-origin", ...init, headers, body });
  } catch (err) {
    throw new ApiError(0, `cannot reach the server (${String(err)})`);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(data, response), data);
  return data as T;
}

/** FastAPI errors: {detail: "text"} or {detail: [{loc, msg}]} or {detail: {message}}. */
function errorMessage(data: unknown, response: Response): string {
  const detail = (data as { detail?: unknown; message?: unknown } | null)?.detail ?? (data as { message?: unknown })?.message;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join(".") || "request"}: ${d.msg ?? ""}`)
      .join("; ");
  }
  if (detail && typeof detail === "object" && "message" in detail) return String((detail as { message: unknown }).message);
  if (typeof data === "string" && data.length < 300) return data;
  return `${response.status} ${response.statusText}`;
}

const post = (body: unknown): RequestInit => ({ method: "POST", body: body as BodyInit });

/** Dataset preview (GET /api/datasets/{name}/preview). 2D sets give points, image sets give images. */
export interface DatasetPreview {
  name?: string;
  kind?: "2d" | "image" | "tabular";
  classes?: string[];
  input_shape?: number[];
  n_train?: number;
  n_val?: number;
  /** 2D: [x, y, label] */
  points?: [number, number, number][];
  /** images: PNGs with their labels */
  images?: { w: number; h: number; c: number; png: string; label?: number }[];
  labels?: number[];
  /** one PNG grid of samples, with the label of each tile */
  grid?: { w: number; h: number; c: number; png: string };
  [key: string]: unknown;
}

/** POST /api/uploads result. */
export interface UploadResult {
  id: string;
  name?: string;
  kind?: string;
  classes?: string[];
  n?: number;
  input_shape?: number[];
  [key: string]: unknown;
}

export const endpoints = {
  health: () => api<Health>("/health"),
  registry: () => api<Registry>("/registry"),
  presets: () => api<PresetInfo[]>("/presets"),
  preset: (id: string) => api<PresetInfo>(`/presets/${encodeURIComponent(id)}`),
  validate: (experiment: Experiment, signal?: AbortSignal) =>
    api<ValidateResult>("/validate", { ...post(experiment), signal: signal ?? null }),
  preview: (data: { name: string; n_samples?: number | null; noise?: number; seed?: number }, n = 64) => {
    const q = new URLSearchParams({ n: String(n) });
    if (data.n_samples != null) q.set("n_samples", String(data.n_samples));
    if (data.noise != null) q.set("noise", String(data.noise));
    if (data.seed != null) q.set("seed", String(data.seed));
    const qs = q.toString();
    return api<DatasetPreview>(`/datasets/${encodeURIComponent(data.name)}/preview${qs ? `?${qs}` : ""}`);
  },
  upload: (file: File) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return api<UploadResult>("/uploads", { method: "POST", body: form });
  },
  runs: () => api<RunInfo[] | { runs: RunInfo[] }>("/runs"),
  /** one run of this session: its experiment, summary, status and final figures */
  run: (id: string) => api<RunInfo>(`/runs/${encodeURIComponent(id)}`),
  /** the frame clock's live views and their default rates (404 on a server without one) */
  views: () => api<LiveViewInfo[]>("/views"),
  /** [[step, lr], ...], step 1 first, at most 1000 pairs; a plateau schedule is drawn flat. */
  schedulePreview: (train: TrainConfig, stepsPerEpoch: number, totalSteps: number) =>
    api<[number, number][]>("/schedule/preview", post({ train, steps_per_epoch: stepsPerEpoch, total_steps: totalSteps })),
};
