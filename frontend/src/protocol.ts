/**
 * The wire protocol between the page and the server: one place.
 *
 * Mirrors ARCHITECTURE.md "Messages" and "Websocket /ws" (server/protocol.py and
 * server/PROTOCOL.md are the reference once written). Every server message carries
 * the envelope {type, run_id, seq, t}; `seq` counts 1, 2, ... per run and lets the
 * socket resume with `subscribe {run_id, after_seq}` after a reconnect.
 */

import type { Experiment } from "./generated/schema";

// ---------------------------------------------------------------------------
// Shared payload pieces
// ---------------------------------------------------------------------------

/** An image inside a message: a base64 PNG with its size and channel count. */
export interface Image {
  w: number;
  h: number;
  c: 1 | 3 | 4;
  /** base64 PNG, without the `data:` prefix */
  png: string;
}

/**
 * A float on the wire: NaN and infinities arrive as the strings "nan", "inf", "-inf"
 * (PROTOCOL.md), so losses that blow up still reach the charts.
 */
export type WireNumber = number | "nan" | "inf" | "-inf";

/** Shape without the batch axis: (1, 28, 28) for MNIST, (2,) for a 2D point. */
export type Shape = number[];

/** builder.LayerInfo.to_dict() */
export interface LayerInfo {
  name: string;
  kind: string;
  inputs: string[];
  output_shape: Shape;
  params: number;
  trainable: boolean;
  /** multiply-adds per example */
  macs: number;
  /** side, in input pixels, for image networks */
  receptive_field: number | null;
  /** product of strides so far */
  jump: number | null;
  /** float32 bytes of this layer's output per example */
  activation_bytes: number;
}

/** builder.NetworkSummary.to_dict() */
export interface NetworkSummary {
  input_shape: Shape;
  output_shape: Shape;
  layers: LayerInfo[];
  total_params: number;
  total_macs: number;
  activation_bytes: number;
}

/** "starting" (building the model), "interrupted" (a previous server process died) and "deleted" come from the server too. */
export type RunState = "queued" | "starting" | "running" | "paused" | "stopped" | "finished" | "failed" | "interrupted" | "deleted";
export type StopReason = "finished" | "non_finite" | "exploded" | "early_stopping" | "stopped";
export type DatasetKind = "2d" | "image" | "tabular";

// ---------------------------------------------------------------------------
// Server -> page messages
// ---------------------------------------------------------------------------

/** Fields every message of a run's stream carries. */
export interface Envelope {
  run_id: string | null;
  /** 1, 2, ... per run */
  seq: number;
  /** seconds since the run started */
  t: number;
  /** the `id` of the command that caused it, when it had one (the first `status queued` after a `start`) */
  request_id?: unknown;
}

/**
 * Messages for one client only (replies to its commands), outside a run's stream: no `seq`.
 * `status` also arrives this way when replaying a run that is no longer in memory.
 */
export interface DirectEnvelope {
  run_id?: string | null;
  seq?: number;
  t?: number;
  request_id?: unknown;
}

export interface SummaryMsg extends Envelope {
  type: "summary";
  experiment_name: string;
  device: string;
  dataset: {
    name: string;
    kind: DatasetKind;
    classes: string[];
    input_shape: Shape;
    n_train: number;
    n_val: number;
    source?: string;
    licence?: string;
  };
  network: NetworkSummary;
  /** size the progress bar */
  steps_per_epoch: number;
  total_steps: number;
}

export interface MetricsMsg extends Envelope {
  type: "metrics";
  step: number;
  epoch: number;
  /** mean since the previous point; null on an evaluation-only point */
  train_loss: WireNumber | null;
  train_acc: number | null;
  /** null when no evaluation ran at this step */
  val_loss: WireNumber | null;
  val_acc: number | null;
  lr: number;
  examples_per_s: number;
}

/** Acknowledges a live `set` with the values now in force. */
export interface HyperparamsMsg extends Envelope {
  type: "hyperparams";
  step: number;
  values: { lr?: number; momentum?: number; weight_decay?: number; dropout?: number };
}

export interface StatusMsg extends DirectEnvelope {
  type: "status";
  state: RunState;
  /** place in the device queue when state is "queued" */
  position?: number;
  message?: string;
}

export interface FinalMsg extends Envelope {
  type: "final";
  steps: number;
  epochs: number;
  stop_reason: StopReason;
  message: string;
  train_loss: WireNumber | null;
  val_loss: WireNumber | null;
  val_acc: number | null;
  best_val_acc: number | null;
  wall_s: number;
  /** share of the run's busy time spent in probes */
  probe_share?: number;
}

export interface ErrorMsg extends DirectEnvelope {
  type: "error";
  /** e.g. invalid_experiment, bad_arguments, not_found, unknown_command, limit codes */
  code: string;
  message: string;
  /** invalid_experiment: every problem, as POST /api/validate reports them */
  errors?: ValidationError[];
}

/** Reply to `ping`. */
export interface PongMsg extends DirectEnvelope {
  type: "pong";
}

export interface ActivationsMsg extends Envelope {
  type: "activations";
  step: number;
  layers: {
    layer: string;
    kind: string;
    act: string;
    mean: number;
    std: number;
    min: number;
    max: number;
    /** bin counts over `edges = [lo, hi]` split evenly */
    hist: number[];
    edges: [number, number];
    /** count of NaN/inf values in the batch */
    nonfinite?: number;
    dead_fraction: number | null;
    saturated_fraction: number | null;
  }[];
}

export interface GradientsMsg extends Envelope {
  type: "gradients";
  step: number;
  params: { name: string; layer: string; norm: number; std: number }[];
  outputs: { layer: string; norm: number; std: number }[];
  update_ratios: { name: string; layer: string; ratio: number }[];
}

export interface WeightsMsg extends Envelope {
  type: "weights";
  step: number;
  layers: {
    layer: string;
    kind?: string;
    shape?: Shape;
    mean: number;
    std: number;
    min?: number;
    max?: number;
    hist: number[];
    edges: [number, number];
    nonfinite?: number;
  }[];
}

export interface FiltersMsg extends Envelope {
  type: "filters";
  step: number;
  layer: string;
  rgb: boolean;
  scale: number;
  n: number;
  cols: number;
  tile: [number, number];
  /** [out_channel, in_channel] per tile (in_channel null for colour tiles) */
  tiles?: [number, number | null][];
  max_abs?: number;
  grid: Image;
}

export interface FeatureMapsMsg extends Envelope {
  type: "feature_maps";
  step: number;
  index: number;
  label: number;
  input: Image;
  layers: {
    layer: string;
    kind?: string;
    shape: Shape;
    /** the grid's grey scale: 0 = lo, 255 = hi */
    lo?: number;
    hi?: number;
    cols: number;
    channels?: number;
    tile?: [number, number];
    grid: Image | null;
    values: number[] | null;
  }[];
}

export interface SaliencyMsg extends Envelope {
  type: "saliency";
  step: number;
  index: number;
  target: number;
  predicted: number;
  input: Image;
  /** grey, 255 = most salient */
  map: Image;
  smoothgrad: boolean;
}

export interface GradcamMsg extends Envelope {
  type: "gradcam";
  step: number;
  index: number;
  layer: string;
  target: number;
  predicted: number;
  probs: number[] | null;
  input: Image;
  /** grey */
  map: Image;
}

export interface AttentionMsg extends Envelope {
  type: "attention";
  step: number;
  index: number;
  input: Image;
  masks: { layer: string; kind: "channel" | "spatial"; values: number[] | null; map: Image | null }[];
}

export interface BoundaryMsg extends Envelope {
  type: "boundary";
  step: number;
  extent: [number, number, number, number];
  resolution: number;
  /** grey = P(class 1), or RGB class colours */
  probs: Image;
  /** the class index per cell */
  predicted?: Image;
  /** symmetric scale: 128 = 0, 255 = max |output| */
  neurons: { layer: string; unit: number; lo?: number; hi?: number; map: Image }[];
  /** [x, y, label] */
  points: [number, number, number][];
}

export interface ConfusionMsg extends Envelope {
  type: "confusion";
  step: number;
  classes: string[];
  /** matrix[true][predicted] */
  matrix: number[][];
  per_class_accuracy: number[];
  accuracy: number;
  /** "t,p" -> validation example indices */
  cells: Record<string, number[]>;
}

export interface MisclassifiedMsg extends Envelope {
  type: "misclassified";
  step: number;
  /** image is null for non-image data */
  examples: { index: number; true: number; predicted: number; confidence: number; image: Image | null }[];
}

export interface PredictionMsg extends Envelope {
  type: "prediction";
  probs: number[];
  predicted: number;
  classes: string[];
}

export interface BackpropTraceMsg extends Envelope {
  type: "backprop_trace";
  loss: number;
  loss_kind?: string;
  lr?: number;
  nodes: {
    id: string;
    label: string;
    op: string;
    value: number | number[];
    grad: number | number[];
    local_grads: unknown;
    inputs: string[];
  }[];
  params: { id: string; name: string; value: number | number[]; grad: number | number[]; new_value: number | number[] }[];
}

export interface GradientCheckMsg extends Envelope {
  type: "gradient_check";
  entries: { param: string; index: number | number[]; analytic: number; numeric: number; rel_error: number; verdict?: string }[];
  max_rel_error: number;
  passed: boolean;
  /** great | ok | suspicious | wrong */
  verdict?: string;
  kinks?: number;
  eps?: number;
}

export interface HintMsg extends Envelope {
  type: "hint";
  code: string;
  severity: "info" | "warning" | "error";
  message: string;
  evidence: unknown;
  /** which chart the hint is about (e.g. "loss", "activations") */
  chart: string | null;
}

export type ServerMessage =
  | SummaryMsg
  | MetricsMsg
  | HyperparamsMsg
  | StatusMsg
  | FinalMsg
  | ErrorMsg
  | PongMsg
  | ActivationsMsg
  | GradientsMsg
  | WeightsMsg
  | FiltersMsg
  | FeatureMapsMsg
  | SaliencyMsg
  | GradcamMsg
  | AttentionMsg
  | BoundaryMsg
  | ConfusionMsg
  | MisclassifiedMsg
  | PredictionMsg
  | BackpropTraceMsg
  | GradientCheckMsg
  | HintMsg;

export type MessageType = ServerMessage["type"];
/** The message of one type: `MessageOf<"metrics">` is `MetricsMsg`. */
export type MessageOf<T extends MessageType> = Extract<ServerMessage, { type: T }>;

/** Probe kinds a client can ask for on demand with the `probe` command. */
export type ProbeKind =
  | "weights"
  | "feature_maps"
  | "saliency"
  | "gradcam"
  | "attention"
  | "filters"
  | "boundary"
  | "confusion"
  | "misclassified"
  | "backprop_trace"
  | "gradient_check";

// ---------------------------------------------------------------------------
// Page -> server commands (websocket)
// ---------------------------------------------------------------------------

/**
 * Commands may carry an `id`; replies caused by it echo it as `request_id`
 * (errors, pong, and the first `status queued` of a started run).
 */
export type ClientCommand = (
  | { cmd: "start"; experiment: Experiment }
  | { cmd: "pause"; run_id: string }
  | { cmd: "resume"; run_id: string }
  | { cmd: "step"; run_id: string }
  | { cmd: "stop"; run_id: string }
  | { cmd: "set"; run_id: string; lr?: number; momentum?: number; weight_decay?: number; dropout?: number }
  | { cmd: "probe"; run_id: string; probe: ProbeKind; index?: number; class?: number; layer?: string; smoothgrad?: boolean }
  /** input: a drawn image (H x W greyscale rows in [0, 1]) or a 2D point / feature vector */
  | { cmd: "predict"; run_id: string; input: number[] | number[][] | number[][][] }
  | { cmd: "subscribe"; run_id: string; after_seq: number }
  | { cmd: "unsubscribe"; run_id: string }
  | { cmd: "ping" }
) & { id?: string | number };

export type CommandName = ClientCommand["cmd"];

// ---------------------------------------------------------------------------
// REST payloads (/api)
// ---------------------------------------------------------------------------

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

export interface ValidationError {
  /** offending layer's name ("#3" for an unnamed one), null for whole-document problems */
  layer: string | null;
  problem: string;
  fix: string;
  /** the full sentence: "layer 'conv2': <problem>. Fix: <fix>" */
  message: string;
  /** dotted path in the document, e.g. "network.layers.2.out_channels" or "data" */
  path?: string | null;
}

/** POST /api/validate (always HTTP 200) */
export interface ValidateResult {
  ok: boolean;
  summary?: NetworkSummary | null;
  errors: ValidationError[];
  dataset?: { name: string; kind: DatasetKind; input_shape: Shape; classes: string[]; n_train: number; n_val: number };
  steps_per_epoch?: number;
  total_steps?: number;
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
