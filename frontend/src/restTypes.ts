/**
 * REST payloads (/api) the page reads: hand-written, since they are not websocket messages.
 *
 * The websocket protocol itself is generated into ./protocol.ts from server/messages.py, which
 * re-exports these types, so the page imports everything from "./protocol".
 */

import type { Experiment } from "./generated/schema";
import type { DatasetKind, FinalMsg, MetricsMsg, NetworkSummary, RunState, Shape, ValidationError } from "./protocol";

/** GET /api/health */
export interface Health {
  status: string;
  device: string;
  cuda: boolean;
  cuda_name: string | null;
  version: string;
  active_runs: number;
  queued_runs: number;
  [key: string]: unknown;
}

/** POST /api/validate (always HTTP 200) */
export interface ValidateResult {
  ok: boolean;
  summary?: NetworkSummary | null;
  errors: ValidationError[];
  dataset?: { name: string; kind: DatasetKind; input_shape: Shape; classes: string[]; n_train: number; n_val: number };
  steps_per_epoch?: number;
  total_steps?: number | null;
}

/** GET /api/presets: every preset with its document */
export interface PresetInfo {
  id: string;
  name: string;
  description: string;
  experiment: Experiment;
}

/** GET /api/runs/{id}/metrics: the metric history of a run */
export type MetricPoint = Omit<MetricsMsg, "type" | "run_id" | "seq" | "t"> & { t?: number };

export interface RunInfo {
  id: string;
  name?: string;
  state?: RunState;
  created?: string | number;
  experiment?: Experiment;
  final?: Omit<FinalMsg, "type" | "run_id" | "seq" | "t"> | null;
  [key: string]: unknown;
}
