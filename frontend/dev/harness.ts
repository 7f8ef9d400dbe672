/**
 * Offline visual harness: every chart/viz view in a panel, fed synthetic messages
 * (dev/synthetic.ts) or a recording of a real `dlplay run`.
 *
 *   npx esbuild frontend/dev/harness.ts --bundle --outfile=/tmp/harness/harness.js
 *   cp frontend/dev/viz-harness.html /tmp/harness/
 *   chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
 *     --run-all-compositor-stages-before-draw --virtual-time-budget=5000 \
 *     --screenshot=/tmp/x.png --window-size=1280,900 \
 *     'file:///tmp/harness/viz-harness.html?theme=dark&view=LayerStats'
 *
 * URL parameters: theme=light|dark, view=<class name> (one view, full width),
 * projector=1 (larger type), empty=1 (no messages: the empty states), width=<px>,
 * hover=<n> (mouse over the n-th chart), classes=3 (multi-class boundary),
 * trace=mlp (2-2-1 backprop graph), explode=1 / log=1 (LossCurves), replay=<name>
 * (see loadReplay). Probe commands sent by a view are answered with synthetic
 * replies, so pickers and buttons work here too.
 */

import "../src/viz/viz.css";
import type { ClientCommand, ServerMessage } from "../src/protocol";
import type { Theme, View, ViewContext } from "../src/viewContext";
import { LossCurves } from "../src/charts/LossCurves";
import { LayerStats } from "../src/viz/LayerStats";
import { Filters } from "../src/viz/Filters";
import { FeatureMaps } from "../src/viz/FeatureMaps";
import { Attention } from "../src/viz/Attention";
import { Boundary2D } from "../src/viz/Boundary2D";
import { Evaluation } from "../src/viz/Evaluation";
import { DrawDigit } from "../src/viz/DrawDigit";
import { DoctorNotes } from "../src/viz/DoctorNotes";
import { BackpropTrace } from "../src/viz/BackpropTrace";
import { GradCheck } from "../src/viz/GradCheck";
import { RunsOverlay } from "../src/charts/RunsOverlay";
import * as S from "./synthetic";

interface Entry {
  name: string;
  make(root: HTMLElement, ctx: ViewContext): View;
  stream(): ServerMessage[];
  /** extra setup after the stream (e.g. RunsOverlay.compare) */
  after?(view: View): void;
}

const params = new URLSearchParams(location.search);
const theme: Theme = params.get("theme") === "dark" ? "dark" : "light";
document.documentElement.dataset.theme = theme;
if (params.get("projector") === "1") document.documentElement.classList.add("projector");
const only = params.get("view");
const empty = params.get("empty") === "1";
const logEl = document.getElementById("log");

function log(s: string): void {
  if (logEl !== null) logEl.textContent = s;
  console.log(s);
}

// ------------------------------------------------------------ shared frame scheduler (as the shell's)

const pending = new Set<() => void>();
let scheduled = false;
function requestFrame(cb: () => void): void {
  pending.add(cb);
  if (!scheduled) {
    scheduled = true;
    const flush = (): void => {
      if (!scheduled) return;
      scheduled = false;
      const cbs = [...pending];
      pending.clear();
      for (const f of cbs) f();
    };
    requestAnimationFrame(flush);
    // headless Chromium under --virtual-time-budget runs few animation frames
    setTimeout(flush, 40);
  }
}

const themeListeners = new Set<(t: Theme) => void>();

function reply(cmd: ClientCommand): ServerMessage[] {
  if (cmd.cmd === "probe") {
    const i = cmd.index ?? 17;
    switch (cmd.probe) {
      case "feature_maps":
        return [S.featureMaps(i)];
      case "saliency":
        return [S.saliency(i, cmd.class)];
      case "gradcam":
        return [S.gradcam(i, cmd.layer, cmd.class)];
      case "attention":
        return [S.attention(i)];
      case "backprop_trace":
        return [S.backpropTrace()];
      case "gradient_check":
        return [S.gradientCheck()];
      case "confusion":
        return [S.confusion()];
      case "misclassified":
        return [S.misclassified()];
      case "boundary":
        return [S.boundary()];
      case "filters":
        return [S.filters(2400, cmd.layer ?? "conv1")];
    }
  }
  if (cmd.cmd === "predict") return [S.prediction(Math.floor(S.rand() * 10))];
  return [];
}

function makeCtx(deliver: () => View | null): ViewContext {
  return {
    send(cmd) {
      log(`send ${JSON.stringify(cmd).slice(0, 160)}`);
      const out = reply(cmd);
      setTimeout(() => {
        const v = deliver();
        if (v !== null) for (const m of out) v.onMessage(m);
      }, 60);
    },
    runId: () => S.RUN,
    classes: () => S.DIGITS,
    theme: () => theme,
    requestFrame,
    async api<T>(path: string): Promise<T> {
      log(`api ${path}`);
      return (await fakeApi(path)) as T;
    },
    onThemeChange(cb) {
      themeListeners.add(cb);
      return () => themeListeners.delete(cb);
    },
  };
}

async function fakeApi(path: string): Promise<unknown> {
  await new Promise((r) => setTimeout(r, 30));
  if (path.startsWith("/runs/compare")) return compareResponse();
  if (path === "/runs") {
    return [
      { id: "run-a", name: "mnist-cnn lr=1e-3", state: "finished", created: "2025-11-24T08:01:00Z" },
      { id: "run-b", name: "mnist-cnn lr=1e-2", state: "finished", created: "2025-11-24T08:05:00Z" },
      { id: "run-c", name: "mnist-cnn + batchnorm", state: "finished", created: "2025-11-24T08:09:00Z" },
      { id: "run-d", name: "mnist-mlp", state: "failed", created: "2025-11-24T08:12:00Z" },
    ];
  }
  throw new Error(`no fake for ${path}`);
}

function compareResponse(): unknown {
  // runs that learn at different speeds and plateau at different accuracies
  const mk = (speed: number, ceiling: number, noise: number) =>
    S.metricsSeries(200, 10, 100).map((m) => {
      const base = 2.1 * Math.exp((-m.step * speed) / 350) + (1 - ceiling) * 2;
      return {
        step: m.step, epoch: m.epoch, train_loss: base * (1 + noise * (S.rand() - 0.5)), train_acc: m.train_acc,
        val_loss: m.val_loss === null ? null : base * 1.1, val_acc: m.val_acc === null ? null : Math.min(1, ceiling - base / 2.6),
        lr: m.lr * (speed > 1 ? 10 : 1), examples_per_s: m.examples_per_s,
      };
    });
  return {
    runs: [
      { id: "run-a", name: "mnist-cnn lr=1e-3", metrics: mk(1, 0.975, 0.1) },
      { id: "run-b", name: "mnist-cnn lr=1e-2", metrics: mk(2.2, 0.94, 0.5) },
      { id: "run-c", name: "mnist-cnn + batchnorm", metrics: mk(1.7, 0.988, 0.1) },
    ],
    diff: [
      { path: "train.optimizer.lr", values: [0.001, 0.01, 0.001] },
      { path: "network.layers[1]", values: [null, null, { kind: "batch_norm", name: "bn1" }] },
      { path: "train.schedule.kind", values: ["cosine_restarts", "cosine_restarts", "constant"] },
    ],
  };
}

// ------------------------------------------------------------ the views

/** A run whose loss blows up: values become "inf"/"nan" strings on the wire, then `final` exploded. */
function explodingStream(): ServerMessage[] {
  const ms = S.metricsSeries(120);
  ms.forEach((m, i) => {
    if (i > 80) m.train_loss = Number(m.train_loss) * Math.exp((i - 80) * 0.35);
    if (i > 110) m.train_loss = i % 2 === 0 ? "inf" : "nan";
  });
  const fin = { ...S.finalMsg(), stop_reason: "exploded" as const, message: "The loss exploded at step 1120.", train_loss: "inf" as const };
  return [S.summaryCnn(), S.status("running"), ...ms, ...S.activations(1000).layers.length ? [] : [], fin];
}

function layerStream(): ServerMessage[] {
  const out: ServerMessage[] = [S.summaryCnn()];
  for (let s = 0; s <= 3000; s += 50) out.push(S.activations(s), S.gradients(s), S.weights(s));
  return out;
}

const ENTRIES: Entry[] = [
  {
    name: "Filters", make: (r, c) => new Filters(r, c),
    stream: () => { const o: ServerMessage[] = [S.summaryCnn()]; for (let s = 0; s <= 2400; s += 200) o.push(S.filters(s, "conv1"), S.filters(s, "conv2")); return o; },
  },
  { name: "FeatureMaps", make: (r, c) => new FeatureMaps(r, c), stream: () => [S.summaryCnn(), S.featureMaps(17)] },
  { name: "Attention", make: (r, c) => new Attention(r, c), stream: () => [S.summaryCnn(), S.attention(23), S.saliency(23), S.gradcam(23)] },
  { name: "LayerStats", make: (r, c) => new LayerStats(r, c), stream: layerStream },
  { name: "Boundary2D", make: (r, c) => new Boundary2D(r, c), stream: () => (params.get("classes") === "3" ? [S.summary3(), S.boundary3()] : [S.summary2d(), S.boundary()]) },
  { name: "Evaluation", make: (r, c) => new Evaluation(r, c), stream: () => [S.summaryCnn(), S.confusion(), S.misclassified()], after: (v) => { if (only === "Evaluation") setTimeout(() => clickCell(v, 4, 9), 100); } },
  { name: "DrawDigit", make: (r, c) => new DrawDigit(r, c), stream: () => [S.summaryCnn(), S.prediction(7)], after: (v) => drawSeven(v) },
  { name: "DoctorNotes", make: (r, c) => new DoctorNotes(r, c, { onShowChart: (ch) => log(`show chart ${ch}`) }), stream: () => [S.summaryCnn(), S.status("running"), ...S.hints(), S.hints()[0]!] },
  { name: "BackpropTrace", make: (r, c) => new BackpropTrace(r, c), stream: () => [params.get("trace") === "mlp" ? S.backpropTraceMlp() : S.backpropTrace()] },
  { name: "GradCheck", make: (r, c) => new GradCheck(r, c), stream: () => [S.gradientCheck()] },
  { name: "RunsOverlay", make: (r, c) => new RunsOverlay(r, c), stream: () => [], after: (v) => void (v as RunsOverlay).compare(["run-a", "run-b", "run-c"]) },
  { name: "LossCurves", make: (r, c) => new LossCurves(r, c, { logLoss: params.get("log") === "1" }), stream: () => (params.get("explode") === "1" ? explodingStream() : [S.summaryCnn(), S.status("running"), ...S.metricsSeries()]) },
];

/** Simulate a user drawing a "7" on the DrawDigit pad with pointer events. */
function drawSeven(v: View): void {
  const pad = (v as unknown as { pad: HTMLCanvasElement }).pad;
  const r = pad.getBoundingClientRect();
  const pts: [number, number][] = [[0.25, 0.22], [0.5, 0.2], [0.75, 0.21], [0.62, 0.45], [0.5, 0.65], [0.42, 0.85]];
  const fire = (type: string, [x, y]: [number, number]): void => {
    pad.dispatchEvent(new PointerEvent(type, { clientX: r.left + x * r.width, clientY: r.top + y * r.height, pointerId: 1, bubbles: true }));
  };
  try {
    fire("pointerdown", pts[0]!);
    for (let i = 1; i < pts.length; i++) {
      const [a, b] = [pts[i - 1]!, pts[i]!];
      for (let k = 1; k <= 8; k++) fire("pointermove", [a[0] + ((b[0] - a[0]) * k) / 8, a[1] + ((b[1] - a[1]) * k) / 8]);
    }
    fire("pointerup", pts[pts.length - 1]!);
  } catch (e) {
    log(`draw failed: ${String(e)}`);
  }
}

/** Click confusion cell (t, p), then the first two thumbnails (Grad-CAM requests). */
function clickCell(v: View, t: number, p: number): void {
  const ev = v as unknown as { matrixCanvas: HTMLCanvasElement; layout: { x0: number; y0: number; cell: number } | null; cellTiles: HTMLElement };
  const L = ev.layout;
  if (L === null) return;
  const r = ev.matrixCanvas.getBoundingClientRect();
  ev.matrixCanvas.dispatchEvent(new MouseEvent("click", { clientX: r.left + L.x0 + (p + 0.5) * L.cell, clientY: r.top + L.y0 + (t + 0.5) * L.cell, bubbles: true }));
  setTimeout(() => {
    const figs = ev.cellTiles.querySelectorAll("figure");
    log(`cell tiles: ${figs.length}`);
    (figs[0] as HTMLElement | undefined)?.click();
    (figs[2] as HTMLElement | undefined)?.click();
    (document.querySelector(".viz-gallery .viz-thumb") as HTMLElement | null)?.click();
  }, 600);
}

/** Move the mouse over the n-th hoverable surface (canvas or uPlot overlay) of a view, at 62% / 45%. */
function hoverAt(root: HTMLElement, which: string): void {
  const targets = [...root.querySelectorAll<HTMLElement>("canvas.viz-canvas, .u-over, canvas.viz-matrix, canvas.viz-boundary-canvas")];
  const t = targets[parseInt(which, 10) || 0];
  if (t === undefined) return;
  const r = t.getBoundingClientRect();
  t.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + r.width * 0.62, clientY: r.top + r.height * 0.45, bubbles: true }));
}

/**
 * replay=<name>: feed every view the real messages of a `dlplay run` (JSON Lines),
 * converted into replay-<name>.js beside the page:
 *   python3 -m server.cli run models/spiral_mlp.json --steps 1500 > spiral.jsonl
 *   (echo -n "window.DLPLAY_REPLAY=["; paste -sd, spiral.jsonl; echo "];") > /tmp/harness/replay-spiral.js
 */
async function loadReplay(name: string): Promise<ServerMessage[]> {
  await new Promise<void>((resolve, reject) => {
    const s = document.createElement("script");
    s.src = `replay-${name}.js`;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error(`replay-${name}.js not found`));
    document.head.append(s);
  });
  return (window as unknown as { DLPLAY_REPLAY: ServerMessage[] }).DLPLAY_REPLAY;
}

async function main(): Promise<void> {
  const replayName = params.get("replay");
  const replay: ServerMessage[] | null = replayName !== null ? await loadReplay(replayName) : null;
  if (replay !== null) for (const e of ENTRIES) e.stream = () => replay;

  const app = document.getElementById("app")!;
  const chosen = ENTRIES.filter((e) => only === null || e.name === only);
  if (only !== null) app.classList.add("single");
  if (params.get("width") !== null) app.style.maxWidth = `${params.get("width")}px`;

  for (const entry of chosen) {
    const panel = document.createElement("section");
    panel.className = "h-panel";
    const h = document.createElement("h2");
    h.textContent = entry.name;
    const root = document.createElement("div");
    panel.append(h, root);
    app.append(panel);
    let view: View | null = null;
    view = entry.make(root, makeCtx(() => view));
    if (!empty) {
      const v = view;
      const msgs = entry.stream();
      // feed in a few bursts, as a live socket would
      let i = 0;
      const burst = (): void => {
        const end = Math.min(msgs.length, i + Math.ceil(msgs.length / 4));
        for (; i < end; i++) v.onMessage(msgs[i]!);
        if (i < msgs.length) setTimeout(burst, 20);
        else {
          entry.after?.(v);
          if (params.get("hover") !== null) setTimeout(() => hoverAt(root, params.get("hover")!), 300);
        }
      };
      burst();
    }
  }
  log(`${chosen.length} view(s), theme ${theme}`);
}

void main();
