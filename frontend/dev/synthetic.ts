/**
 * Made-up but realistic server messages (ARCHITECTURE.md "Messages") for the
 * offline viz harness: an MNIST CNN run with probes, a 10-layer tanh MLP whose
 * activations collapse with depth, a 2D spiral boundary, a backprop trace.
 */

import type {
  ActivationsMsg, AttentionMsg, BackpropTraceMsg, BoundaryMsg, ConfusionMsg, FeatureMapsMsg, FiltersMsg,
  GradcamMsg, GradientCheckMsg, GradientsMsg, HintMsg, Image, MetricsMsg, MisclassifiedMsg, PredictionMsg,
  SaliencyMsg, ServerMessage, SummaryMsg, WeightsMsg, FinalMsg, StatusMsg,
} from "../src/protocol";

export const RUN = "run-harness-1";
let seq = 0;
const env = (t = 0): { run_id: string; seq: number; t: number } => ({ run_id: RUN, seq: ++seq, t });

// deterministic PRNG so screenshots are stable
let rs = 12345;
export function rand(): number {
  rs = (rs * 1664525 + 1013904223) >>> 0;
  return rs / 4294967296;
}
function randn(): number {
  const u = Math.max(1e-9, rand());
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export const DIGITS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

// ---------------------------------------------------------------- images

/** A PNG message image from a per-pixel function returning grey 0..255 or [r,g,b]. */
export function makeImage(w: number, h: number, px: (x: number, y: number) => number | [number, number, number]): Image {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const g = c.getContext("2d")!;
  const img = g.createImageData(w, h);
  let rgb = false;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = px(x, y);
      const i = 4 * (y * w + x);
      if (typeof v === "number") {
        img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
      } else {
        rgb = true;
        img.data[i] = v[0];
        img.data[i + 1] = v[1];
        img.data[i + 2] = v[2];
      }
      img.data[i + 3] = 255;
    }
  }
  g.putImageData(img, 0, 0);
  return { w, h, c: rgb ? 3 : 1, png: c.toDataURL("image/png").replace(/^data:image\/png;base64,/, "") };
}

/** Grey pixels (0..1) of a digit drawn with the system font, a little rotated/jittered. */
export function digitPixels(d: number, size = 28, seed = 0): Float32Array {
  const c = document.createElement("canvas");
  c.width = c.height = size;
  const g = c.getContext("2d")!;
  g.fillStyle = "#000";
  g.fillRect(0, 0, size, size);
  g.translate(size / 2, size / 2);
  g.rotate(((seed % 7) - 3) * 0.06);
  g.fillStyle = "#fff";
  g.font = `bold ${Math.round(size * 0.8)}px sans-serif`;
  g.textAlign = "center";
  g.textBaseline = "middle";
  g.fillText(String(d), ((seed % 3) - 1) * 0.5, size * 0.04);
  const data = g.getImageData(0, 0, size, size).data;
  const out = new Float32Array(size * size);
  for (let i = 0; i < out.length; i++) out[i] = data[4 * i]! / 255;
  return out;
}

export function digitImage(d: number, seed = 0): Image {
  const p = digitPixels(d, 28, seed);
  return makeImage(28, 28, (x, y) => Math.round(255 * p[y * 28 + x]!));
}

function blur(src: Float32Array, w: number, h: number, r: number): Float32Array {
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      let n = 0;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx >= 0 && yy >= 0 && xx < w && yy < h) {
            s += src[yy * w + xx]!;
            n++;
          }
        }
      out[y * w + x] = s / n;
    }
  return out;
}

/** A grid image of n tiles (th x tw) in `cols` columns, 1px gaps, from a per-tile pixel function in [-1, 1]. */
function gridImage(n: number, cols: number, th: number, tw: number, f: (k: number, x: number, y: number) => number): Image {
  const rows = Math.ceil(n / cols);
  const W = cols * (tw + 1) - 1;
  const H = rows * (th + 1) - 1;
  return makeImage(W, H, (x, y) => {
    const cx = Math.floor(x / (tw + 1));
    const cy = Math.floor(y / (th + 1));
    const lx = x % (tw + 1);
    const ly = y % (th + 1);
    const k = cy * cols + cx;
    if (lx === tw || ly === th || k >= n) return 128;
    return Math.max(0, Math.min(255, Math.round(128 + 127 * f(k, lx, ly))));
  });
}

// ---------------------------------------------------------------- run

export function summaryCnn(): SummaryMsg {
  const L = (name: string, kind: string, shape: number[], params: number, inputs: string[]) => ({
    name, kind, inputs, output_shape: shape, params, trainable: params > 0, macs: params * 100,
    receptive_field: null, jump: null, activation_bytes: shape.reduce((a, b) => a * b, 4),
  });
  return {
    type: "summary", ...env(), experiment_name: "mnist-cnn", device: "cuda:0 (NVIDIA H100)",
    dataset: { name: "mnist", kind: "image", classes: DIGITS, input_shape: [1, 28, 28], n_train: 4000, n_val: 1000 },
    network: {
      input_shape: [1, 28, 28], output_shape: [10],
      layers: [
        L("conv1", "conv2d", [16, 24, 24], 416, ["input"]),
        L("pool1", "max_pool2d", [16, 12, 12], 0, ["conv1"]),
        L("se1", "squeeze_excite", [16, 12, 12], 84, ["pool1"]),
        L("conv2", "conv2d", [32, 8, 8], 12832, ["se1"]),
        L("sa2", "spatial_attention", [32, 8, 8], 99, ["conv2"]),
        L("pool2", "max_pool2d", [32, 4, 4], 0, ["sa2"]),
        L("fc1", "linear", [64], 32832, ["pool2"]),
        L("out", "linear", [10], 650, ["fc1"]),
      ],
      total_params: 46913, total_macs: 1_200_000, activation_bytes: 60000,
    },
    steps_per_epoch: 125, total_steps: 2500,
  };
}

export function status(state: StatusMsg["state"]): StatusMsg {
  return { type: "status", ...env(), state };
}

export function metricsSeries(n = 240, every = 10, evalEvery = 200): MetricsMsg[] {
  const out: MetricsMsg[] = [];
  for (let i = 1; i <= n; i++) {
    const step = i * every;
    const base = 2.1 * Math.exp(-step / 350) + 0.07 + 0.05 * Math.exp(-step / 3000);
    const loss = base * (1 + 0.25 * randn() * Math.min(1, 0.4 + step / 1500));
    const acc = Math.min(1, Math.max(0, 1 - base / 2.35 + 0.03 * randn()));
    const isEval = step % evalEvery === 0;
    const total = n * every;
    out.push({
      type: "metrics", ...env(step / 400), step, epoch: step / 125,
      train_loss: Math.max(0.01, loss), train_acc: acc,
      val_loss: isEval ? base * 1.08 + 0.03 + step / 60000 : null,
      val_acc: isEval ? Math.min(1, 1 - base / 2.3 - 0.012) : null,
      lr: step < 200 ? (1e-3 * step) / 200 : 1e-3 * 0.5 * (1 + Math.cos((Math.PI * (step - 200)) / (total - 200))),
      examples_per_s: 5200 + 300 * randn(),
    });
  }
  return out;
}

export function finalMsg(): FinalMsg {
  return {
    type: "final", ...env(600), steps: 2400, epochs: 19.2, stop_reason: "finished", message: "finished 2400 steps",
    train_loss: 0.09, val_loss: 0.14, val_acc: 0.968, best_val_acc: 0.971, wall_s: 61.2,
  };
}

// ---------------------------------------------------------------- layer statistics (10-layer tanh MLP)

const DEEP = Array.from({ length: 10 }, (_, i) => `fc${i + 1}`);

function histOf(samples: number[], bins: number): { hist: number[]; edges: [number, number] } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of samples) {
    lo = Math.min(lo, s);
    hi = Math.max(hi, s);
  }
  if (hi <= lo) hi = lo + 1e-9;
  const hist = new Array<number>(bins).fill(0);
  for (const s of samples) hist[Math.min(bins - 1, Math.floor(((s - lo) / (hi - lo)) * bins))]!++;
  return { hist, edges: [lo, hi] };
}

/** Activations of a tanh net with too-small init: the std shrinks ~2x per layer, and barely recovers. */
export function activations(step: number): ActivationsMsg {
  const recover = Math.min(1, step / 6000);
  const layers = DEEP.map((layer, i) => {
    const pre = 1.6 * Math.pow(0.5 + 0.15 * recover, i);
    const xs: number[] = [];
    for (let k = 0; k < 600; k++) xs.push(Math.tanh(pre * randn()));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    const { hist, edges } = histOf(xs, 32);
    return {
      layer, kind: "linear", act: "tanh", mean, std, min: edges[0], max: edges[1], hist, edges,
      dead_fraction: null, saturated_fraction: xs.filter((v) => Math.abs(v) > 0.97).length / xs.length,
    };
  });
  return { type: "activations", ...env(step / 400), step, layers };
}

export function gradients(step: number): GradientsMsg {
  const params: GradientsMsg["params"] = [];
  const ratios: GradientsMsg["update_ratios"] = [];
  DEEP.forEach((layer, i) => {
    const depthFactor = Math.pow(0.55, 9 - i);
    for (const kind of ["weight", "bias"]) {
      const norm = (kind === "weight" ? 0.8 : 0.1) * depthFactor * (1 + 0.2 * randn()) * Math.exp(-step / 8000);
      params.push({ name: `${layer}.${kind}`, layer, norm: Math.abs(norm), std: Math.abs(norm) / 20 });
      if (kind === "weight") ratios.push({ name: `${layer}.weight`, layer, ratio: 2e-3 * Math.pow(0.6, 9 - i) * (1 + 0.3 * randn()) ** 2 * (1 - 0.5 * Math.min(1, step / 3000)) });
    }
  });
  const outputs = DEEP.map((layer, i) => ({ layer, norm: 0.5 * Math.pow(0.6, 9 - i), std: 0.01 * Math.pow(0.6, 9 - i) }));
  return { type: "gradients", ...env(step / 400), step, params, outputs, update_ratios: ratios };
}

export function weights(step: number): WeightsMsg {
  const layers = DEEP.map((layer) => {
    const std = 0.05 * (1 + step / 5000);
    const xs: number[] = [];
    for (let k = 0; k < 400; k++) xs.push(std * randn());
    const { hist, edges } = histOf(xs, 32);
    return { layer, mean: 0, std, hist, edges };
  });
  return { type: "weights", ...env(step / 400), step, layers };
}

// ---------------------------------------------------------------- CNN probes

export function filters(step: number, layer = "conv1"): FiltersMsg {
  const n = layer === "conv1" ? 16 : 32;
  const k = layer === "conv1" ? 5 : 3;
  // as the server lays them out: conv1 one tile per filter in a column, conv2 rows = out, cols = in channels
  const cols = layer === "conv1" ? 1 : 4;
  const train = Math.min(1, step / 2000);
  const grid = gridImage(n, cols, k, k, (f, x, y) => {
    const th = (f / n) * Math.PI;
    const u = (x - k / 2 + 0.5) * Math.cos(th) + (y - k / 2 + 0.5) * Math.sin(th);
    const noise = randn() * 0.6;
    return (1 - train) * noise + train * (Math.cos(u * (1.2 + (f % 3) * 0.4)) * Math.exp(-((x - k / 2) ** 2) / 8 - ((y - k / 2) ** 2) / 8) + 0.1 * noise);
  });
  return { type: "filters", ...env(step / 400), step, layer, rgb: false, scale: 0.42, n, cols, tile: [k, k], grid };
}

export function featureMaps(index: number, step = 2400): FeatureMapsMsg {
  const label = index % 10;
  const p = digitPixels(label, 28, index);
  const mk = (n: number, side: number, cols: number, src: Float32Array, srcSide: number) =>
    gridImage(n, cols, side, side, (k, x, y) => {
      const sx = Math.floor((x / side) * srcSide);
      const sy = Math.floor((y / side) * srcSide);
      const v = src[sy * srcSide + sx]!;
      const th = (k / n) * Math.PI * 2;
      const edge = Math.cos(th) * (src[sy * srcSide + Math.min(srcSide - 1, sx + 1)]! - v) + Math.sin(th) * (src[Math.min(srcSide - 1, sy + 1) * srcSide + sx]! - v);
      return Math.max(-1, Math.min(1, (k % 2 === 0 ? v * 1.4 - 0.4 : 0) + edge * 3 - 0.2));
    });
  const values = (n: number) => Array.from({ length: n }, (_, i) => Math.max(0, randn() * 1.2 + (i === label ? 4 : 0)));
  return {
    type: "feature_maps", ...env(), step, index, label, input: digitImage(label, index),
    layers: [
      { layer: "conv1", shape: [16, 24, 24], cols: 8, grid: mk(16, 24, 8, p, 28), values: null },
      { layer: "pool1", shape: [16, 12, 12], cols: 8, grid: mk(16, 12, 8, p, 28), values: null },
      { layer: "conv2", shape: [32, 8, 8], cols: 8, grid: mk(32, 8, 8, blur(p, 28, 28, 1), 28), values: null },
      { layer: "fc1", shape: [64], cols: 16, grid: null, values: values(64) },
      { layer: "out", shape: [10], cols: 10, grid: null, values: Array.from({ length: 10 }, (_, i) => (i === label ? 9 : randn() * 2)) },
    ],
  };
}

function probsFor(label: number, wrong?: number): number[] {
  const raw = Array.from({ length: 10 }, (_, i) => (i === (wrong ?? label) ? 4.2 : i === label ? 2.8 : randn() * 0.8));
  const m = Math.max(...raw);
  const e = raw.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function saliency(index: number, target?: number): SaliencyMsg {
  const label = index % 10;
  const p = digitPixels(label, 28, index);
  const b = blur(p, 28, 28, 1);
  return {
    type: "saliency", ...env(), step: 2400, index, target: target ?? label, predicted: label, input: digitImage(label, index),
    map: makeImage(28, 28, (x, y) => Math.round(255 * Math.min(1, b[y * 28 + x]! * (0.4 + 1.2 * rand()) * (0.5 + Math.abs(Math.sin(x * 0.3)))))),
    smoothgrad: false,
  };
}

export function gradcam(index: number, layer = "conv2", target?: number): GradcamMsg {
  const label = index % 10;
  const p = blur(digitPixels(label, 28, index), 28, 28, 3);
  // a 7x7 map, as Grad-CAM on a late conv layer gives
  const map = makeImage(7, 7, (x, y) => Math.round(255 * Math.min(1, 1.6 * p[(y * 4 + 2) * 28 + x * 4 + 2]! + (x === 4 && y === 2 ? 0.3 : 0))));
  const wrong = index % 7 === 3 ? (label + 5) % 10 : undefined;
  const probs = probsFor(label, wrong);
  return { type: "gradcam", ...env(), step: 2400, index, layer, target: target ?? probs.indexOf(Math.max(...probs)), predicted: probs.indexOf(Math.max(...probs)), probs, input: digitImage(label, index), map };
}

export function attention(index: number): AttentionMsg {
  const label = index % 10;
  const p = blur(digitPixels(label, 12, index), 12, 12, 1);
  return {
    type: "attention", ...env(), step: 2400, index, input: digitImage(label, index),
    masks: [
      { layer: "se1", kind: "channel", values: Array.from({ length: 16 }, (_, i) => 1 / (1 + Math.exp(-(randn() * 1.5 + (i % 5 === 0 ? 2 : 0))))), map: null },
      { layer: "sa2", kind: "spatial", values: null, map: makeImage(12, 12, (x, y) => Math.round(255 * Math.min(1, 0.15 + p[y * 12 + x]! * 1.3))) },
    ],
  };
}

export function confusion(step = 2400): ConfusionMsg {
  const matrix: number[][] = [];
  const cells: Record<string, number[]> = {};
  const conf: Record<string, number> = { "4,9": 9, "9,4": 6, "3,5": 7, "5,3": 5, "7,1": 4, "2,7": 5, "8,3": 4, "1,7": 2, "6,0": 3, "9,7": 4 };
  for (let t = 0; t < 10; t++) {
    const row: number[] = [];
    for (let q = 0; q < 10; q++) {
      let v = conf[`${t},${q}`] ?? (rand() < 0.25 ? 1 : 0);
      if (t === q) v = 0;
      row.push(v);
    }
    row[t] = 100 - row.reduce((a, b) => a + b, 0) + Math.round(randn() * 3);
    matrix.push(row);
    // synthetic world: example index % 10 is its true digit
    row.forEach((v, q) => {
      if (v > 0) cells[`${t},${q}`] = Array.from({ length: v }, (_, k) => (q * 100 + k) * 10 + t);
    });
  }
  const per = matrix.map((r, t) => r[t]! / r.reduce((a, b) => a + b, 0));
  const total = matrix.flat().reduce((a, b) => a + b, 0);
  const correct = matrix.reduce((a, r, t) => a + r[t]!, 0);
  return { type: "confusion", ...env(), step, classes: DIGITS, matrix, per_class_accuracy: per, accuracy: correct / total, cells };
}

export function misclassified(step = 2400): MisclassifiedMsg {
  const pairs: [number, number][] = [[4, 9], [9, 4], [3, 5], [5, 3], [7, 1], [2, 7], [8, 3], [9, 7], [6, 0], [4, 9], [3, 5], [1, 7], [5, 6], [0, 6], [7, 2], [8, 9]];
  return {
    type: "misclassified", ...env(), step,
    examples: pairs.map(([t, q], k) => {
      const index = 100 * q + k * 10 + t;
      return { index, true: t, predicted: q, confidence: 0.5 + 0.49 * rand(), image: digitImage(t, index) };
    }),
  };
}

export function prediction(label = 7): PredictionMsg {
  const probs = probsFor(label);
  return { type: "prediction", ...env(), probs, predicted: probs.indexOf(Math.max(...probs)), classes: DIGITS };
}

// ---------------------------------------------------------------- 2D boundary

export function summary2d(): SummaryMsg {
  const s = summaryCnn();
  return {
    ...s, experiment_name: "spiral-mlp",
    dataset: { name: "spiral", kind: "2d", classes: ["orange", "blue"], input_shape: [2], n_train: 400, n_val: 100 },
  };
}

export function boundary(step = 1200): BoundaryMsg {
  const R = 64;
  const ext: [number, number, number, number] = [-6, 6, -6, 6];
  const f = (x: number, y: number): number => {
    const r = Math.hypot(x, y);
    const th = Math.atan2(y, x);
    return 1 / (1 + Math.exp(-3.5 * Math.sin(r * 1.1 - th)));
  };
  const toXY = (i: number, j: number, n: number): [number, number] => [ext[0] + ((i + 0.5) / n) * (ext[1] - ext[0]), ext[3] - ((j + 0.5) / n) * (ext[3] - ext[2])];
  const probs = makeImage(R, R, (i, j) => {
    const [x, y] = toXY(i, j, R);
    return Math.round(255 * f(x, y));
  });
  const points: [number, number, number][] = [];
  while (points.length < 200) {
    const x = (rand() * 2 - 1) * 5.5;
    const y = (rand() * 2 - 1) * 5.5;
    const pr = f(x, y);
    // mostly points that sit clearly in a region, a few near/over the boundary
    if (Math.abs(pr - 0.5) < 0.3 && rand() < 0.85) continue;
    const label = rand() < 0.04 ? (pr > 0.5 ? 0 : 1) : pr > 0.5 ? 1 : 0;
    points.push([x, y, label]);
  }
  const neurons: BoundaryMsg["neurons"] = [];
  for (let u = 0; u < 8; u++) {
    const a = Math.cos((u / 8) * Math.PI * 2);
    const b = Math.sin((u / 8) * Math.PI * 2);
    const c = randn();
    neurons.push({ layer: "hidden1", unit: u, map: makeImage(24, 24, (i, j) => { const [x, y] = toXY(i, j, 24); return Math.round(127.5 + 127.5 * Math.tanh((a * x + b * y + c) * 0.6)); }) });
  }
  for (let u = 0; u < 6; u++) {
    neurons.push({ layer: "hidden2", unit: u, map: makeImage(24, 24, (i, j) => { const [x, y] = toXY(i, j, 24); return Math.round(127.5 + 127.5 * Math.tanh(Math.sin(Math.hypot(x, y) * (0.6 + u * 0.15) - Math.atan2(y, x) * (u % 2 ? 1 : -1)) * 1.5)); }) });
  }
  return { type: "boundary", ...env(), step, extent: ext, resolution: R, probs, neurons, points };
}

// ---------------------------------------------------------------- teaching probes

export function backpropTrace(): BackpropTraceMsg {
  const x1 = 2, w1 = -3, x2 = 0, w2 = 1, b = 6.8813735870195432;
  const x1w1 = x1 * w1, x2w2 = x2 * w2, s = x1w1 + x2w2, n = s + b, o = Math.tanh(n), L = (o - 1) ** 2;
  const dO = 2 * (o - 1), dN = dO * (1 - o * o);
  return {
    type: "backprop_trace", ...env(), loss: L,
    nodes: [
      { id: "x1", label: "x1", op: "input", value: x1, grad: w1 * dN, local_grads: [], inputs: [] },
      { id: "w1", label: "w1", op: "param", value: w1, grad: x1 * dN, local_grads: [], inputs: [] },
      { id: "x2", label: "x2", op: "input", value: x2, grad: w2 * dN, local_grads: [], inputs: [] },
      { id: "w2", label: "w2", op: "param", value: w2, grad: x2 * dN, local_grads: [], inputs: [] },
      { id: "b", label: "b", op: "param", value: b, grad: dN, local_grads: [], inputs: [] },
      { id: "m1", label: "x1·w1", op: "mul", value: x1w1, grad: dN, local_grads: [w1, x1], inputs: ["x1", "w1"] },
      { id: "m2", label: "x2·w2", op: "mul", value: x2w2, grad: dN, local_grads: [w2, x2], inputs: ["x2", "w2"] },
      { id: "s", label: "Σ", op: "add", value: s, grad: dN, local_grads: [1, 1], inputs: ["m1", "m2"] },
      { id: "n", label: "n", op: "add", value: n, grad: dN, local_grads: [1, 1], inputs: ["s", "b"] },
      { id: "o", label: "o", op: "tanh", value: o, grad: dO, local_grads: [1 - o * o], inputs: ["n"] },
      { id: "L", label: "loss", op: "mse", value: L, grad: 1, local_grads: [dO], inputs: ["o"] },
    ],
    params: [
      { id: "w1", name: "w1", value: w1, grad: x1 * dN, new_value: w1 - 0.1 * x1 * dN },
      { id: "w2", name: "w2", value: w2, grad: x2 * dN, new_value: w2 - 0.1 * x2 * dN },
      { id: "b", name: "b", value: b, grad: dN, new_value: b - 0.1 * dN },
    ],
  };
}

export function gradientCheck(): GradientCheckMsg {
  const entries: GradientCheckMsg["entries"] = [];
  const names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"];
  names.forEach((param, i) => {
    for (let k = 0; k < 3; k++) {
      const analytic = randn() * 0.1;
      const err = i === 2 && k === 1 ? 3.2e-3 : i === 4 && k === 0 ? 4e-6 : Math.pow(10, -9 + 2 * rand());
      const numeric = analytic * (1 + err * 2);
      entries.push({ param, index: param.endsWith("weight") ? [k, (k * 7) % 5] : k, analytic, numeric, rel_error: err });
    }
  });
  return { type: "gradient_check", ...env(), entries, max_rel_error: Math.max(...entries.map((e) => e.rel_error)), passed: false };
}

export function hints(): HintMsg[] {
  return [
    {
      type: "hint", ...env(), code: "vanishing_activations", severity: "warning",
      message: "Activations shrink about 2× per layer: fc10's std is 0.003 (fc1: 0.62). Deep tanh layers output almost constant values, so the gradients reaching fc1 vanish.",
      evidence: { "fc1 std": 0.62, "fc10 std": 0.0031, ratio_per_layer: 0.52 }, chart: "activations",
    },
    {
      type: "hint", ...env(), code: "update_ratio_low", severity: "info",
      message: "Update/weight ratios of fc1–fc4 are below 1e-5: those layers barely learn. Try Xavier or LSUV initialization.",
      evidence: { "fc1.weight": 4.1e-6, "fc2.weight": 6.9e-6 }, chart: "update_ratios",
    },
    {
      type: "hint", ...env(), code: "overfitting", severity: "error",
      message: "Validation loss has risen for 5 evaluations while training loss keeps falling.",
      evidence: "val_loss 0.141 → 0.188 since step 1800", chart: "loss",
    },
  ];
}

export function allCnnStream(): ServerMessage[] {
  const msgs: ServerMessage[] = [summaryCnn(), status("running"), ...metricsSeries()];
  for (let s = 0; s <= 2400; s += 100) {
    msgs.push(activations(s), gradients(s), weights(s));
  }
  for (let s = 0; s <= 2400; s += 400) msgs.push(filters(s, "conv1"), filters(s, "conv2"));
  msgs.push(featureMaps(17), saliency(17), gradcam(17), attention(17), confusion(), misclassified(), prediction(7), boundary(), backpropTrace(), gradientCheck(), ...hints(), finalMsg());
  return msgs;
}

/** A 2-2-1 tanh MLP unrolled into scalar nodes, as server/probes/backprop_trace.py builds it. */
export function backpropTraceMlp(): BackpropTraceMsg {
  type N = BackpropTraceMsg["nodes"][number];
  const nodes: N[] = [];
  const val = new Map<string, number>();
  const add = (id: string, label: string, op: string, value: number, local: Record<string, number>): void => {
    nodes.push({ id, label, op, value, grad: 0, local_grads: local, inputs: Object.keys(local) });
    val.set(id, value);
  };
  const x = [0.6, -0.4];
  const W1 = [[0.8, -0.5], [0.3, 0.9]];
  const b1 = [0.1, -0.2];
  const W2 = [1.1, -0.7];
  const b2 = 0.05;
  const y = 1;
  x.forEach((v, i) => add(`x${i}`, `x${i}`, "input", v, {}));
  for (let j = 0; j < 2; j++) {
    const terms: Record<string, number> = {};
    for (let i = 0; i < 2; i++) {
      add(`h.w[${j},${i}]`, `w[${j},${i}]`, "weight", W1[j]![i]!, {});
      add(`h.m[${j},${i}]`, `w·x`, "mul", W1[j]![i]! * x[i]!, { [`h.w[${j},${i}]`]: x[i]!, [`x${i}`]: W1[j]![i]! });
      terms[`h.m[${j},${i}]`] = 1;
    }
    add(`h.b[${j}]`, `b[${j}]`, "bias", b1[j]!, {});
    terms[`h.b[${j}]`] = 1;
    const z = Object.keys(terms).reduce((s, k) => s + val.get(k)!, 0);
    add(`h.z[${j}]`, `z${j}`, "add", z, terms);
    add(`h.a[${j}]`, `a${j}`, "tanh", Math.tanh(z), { [`h.z[${j}]`]: 1 - Math.tanh(z) ** 2 });
  }
  const terms: Record<string, number> = {};
  for (let j = 0; j < 2; j++) {
    add(`o.w[${j}]`, `v[${j}]`, "weight", W2[j]!, {});
    add(`o.m[${j}]`, `v·a`, "mul", W2[j]! * val.get(`h.a[${j}]`)!, { [`o.w[${j}]`]: val.get(`h.a[${j}]`)!, [`h.a[${j}]`]: W2[j]! });
    terms[`o.m[${j}]`] = 1;
  }
  add("o.b", "c", "bias", b2, {});
  terms["o.b"] = 1;
  const out = Object.keys(terms).reduce((s, k) => s + val.get(k)!, 0);
  add("o.y", "ŷ", "add", out, terms);
  add("L", "L", "mse", 0.5 * (out - y) ** 2, { "o.y": out - y });
  // backward
  const grad = new Map<string, number>([["L", 1]]);
  for (const n of [...nodes].reverse()) {
    const g = grad.get(n.id) ?? 0;
    n.grad = g;
    for (const [inp, lg] of Object.entries(n.local_grads as Record<string, number>)) grad.set(inp, (grad.get(inp) ?? 0) + g * lg);
  }
  const lr = 0.5;
  const params = nodes.filter((n) => n.op === "weight" || n.op === "bias").map((n) => ({ id: n.id, name: n.id.replace("h.", "hidden.").replace("o.", "out."), value: n.value as number, grad: n.grad as number, new_value: (n.value as number) - lr * (n.grad as number) }));
  return { type: "backprop_trace", ...env(), loss: val.get("L")!, nodes, params, ...({ lr, loss_kind: "mse" } as object) } as BackpropTraceMsg;
}

/** Three Gaussian blobs: a multi-class boundary with a `predicted` class-index image. */
export function boundary3(): BoundaryMsg {
  const R = 64;
  const ext: [number, number, number, number] = [-4, 4, -4, 4];
  const centers: [number, number][] = [[-2, -1.2], [2, -1.2], [0, 2.2]];
  const toXY = (i: number, j: number): [number, number] => [ext[0] + ((i + 0.5) / R) * 8, ext[3] - ((j + 0.5) / R) * 8];
  const cls = (x: number, y: number): number => {
    const d = centers.map(([cx, cy]) => (x - cx) ** 2 + (y - cy) ** 2);
    return d.indexOf(Math.min(...d));
  };
  const points: [number, number, number][] = [];
  for (let k = 0; k < 150; k++) {
    const c = k % 3;
    points.push([centers[c]![0] + randn() * 0.9, centers[c]![1] + randn() * 0.9, c]);
  }
  const msg = {
    type: "boundary" as const, ...env(), step: 800, extent: ext, resolution: R,
    probs: makeImage(R, R, (i, j) => (cls(...toXY(i, j)) === 1 ? 220 : 30)),
    predicted: makeImage(R, R, (i, j) => cls(...toXY(i, j))),
    neurons: [], points,
  };
  return msg;
}

export function summary3(): SummaryMsg {
  const s = summary2d();
  return { ...s, dataset: { ...s.dataset, name: "blobs", classes: ["red", "green", "blue"] } };
}
