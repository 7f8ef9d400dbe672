/**
 * One training step of a small network, written out (`backprop_trace`): the
 * computational graph laid out left → right, each node's forward value above it
 * and its gradient ∂loss/∂node below, local gradients on the edges, and the
 * parameter updates (value, gradient, new value) in a table.
 *
 * "Backward step" reveals the gradients one layer of the graph at a time, from the
 * loss back to the inputs, for explaining the chain rule in class.
 */

import type { BackpropTraceMsg, ServerMessage } from "../protocol";
import type { ViewContext } from "../viewContext";
import { Redraw, button, el, emptyState, fmt, fmtValue, widthOf } from "./dom";
import { readPalette } from "./theme";

export interface BackpropTraceOptions {
  /** show all gradients at once instead of starting from the forward pass only (default true) */
  revealAll?: boolean;
}

type Node = BackpropTraceMsg["nodes"][number];

const SVG = "http://www.w3.org/2000/svg";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Local gradient for edge input k → node, from a list aligned with `inputs` or a map keyed by input id. */
function localGrad(n: Node, k: number): unknown {
  const lg = n.local_grads;
  if (Array.isArray(lg)) return lg.length === n.inputs.length ? lg[k] : undefined;
  if (lg !== null && typeof lg === "object") return (lg as Record<string, unknown>)[n.inputs[k] ?? ""];
  return undefined;
}

export class BackpropTrace {
  private readonly redraw: Redraw;
  private msg: BackpropTraceMsg | null = null;
  /** how many graph layers (from the loss backwards) show their gradients; Infinity = all */
  private reveal: number;
  private readonly revealAll: boolean;

  private readonly empty: HTMLElement;
  private readonly body: HTMLElement;
  private readonly graph = el("div", { class: "viz-trace-graph" });
  private readonly table = el("table", { class: "viz-table" });
  private readonly lossEl = el("span", { class: "viz-stat" });
  private readonly updateSub = el("span", { class: "viz-card-sub" });
  private readonly backBtn: HTMLButtonElement;

  constructor(private readonly root: HTMLElement, private readonly ctx: ViewContext, opts: BackpropTraceOptions = {}) {
    this.revealAll = opts.revealAll ?? true;
    this.reveal = this.revealAll ? Infinity : 0;
    this.redraw = new Redraw(ctx, () => this.draw());
    const trace = (): void => {
      const run = ctx.runId();
      if (run !== null) ctx.send({ cmd: "probe", run_id: run, probe: "backprop_trace" });
    };
    this.backBtn = button("◀ backward step", () => {
      this.reveal = this.reveal === Infinity ? 1 : this.reveal + 1;
      this.redraw.request();
    }, { title: "show the gradients of one more layer, from the loss towards the inputs" });
    this.body = el("div", { class: "viz-loss-body" }, [
      el("div", { class: "viz-toolbar" }, [
        this.lossEl,
        el("span", { class: "viz-spacer" }),
        button("forward only", () => {
          this.reveal = 0;
          this.redraw.request();
        }),
        this.backBtn,
        button("all gradients", () => {
          this.reveal = Infinity;
          this.redraw.request();
        }),
        button("↻ trace a step", trace, { class: "primary", title: "run one training step and trace it" }),
      ]),
      el("section", { class: "viz-card" }, [
        el("header", { class: "viz-card-head" }, [
          el("h4", { class: "viz-card-title", text: "Computational graph" }),
          el("span", { class: "viz-card-sub" }, [el("span", { class: "viz-fwd", text: "value" }), " above · ", el("span", { class: "viz-bwd", text: "∂loss/∂node" }), " below · edges: local gradient"]),
        ]),
        this.graph,
      ]),
      el("section", { class: "viz-card" }, [el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: "Parameter updates" }), this.updateSub]), el("div", { class: "viz-table-wrap viz-table-scroll" }, [this.table])]),
    ]);
    this.empty = emptyState("Trace one step of backpropagation", "Start a run of a small network, then press “trace a step”: every value and gradient of the step, node by node.");
    this.empty.append(el("div", { class: "viz-empty-actions" }, [button("↻ trace a step", trace, { class: "primary" })]));
    root.classList.add("viz-view", "viz-trace");
    root.replaceChildren(this.empty, this.body);
    ctx.onThemeChange(() => this.redraw.request());
    this.redraw.request();
  }

  onMessage(msg: ServerMessage): void {
    if (msg.type !== "backprop_trace") return;
    this.msg = msg;
    this.reveal = this.revealAll ? Infinity : 0;
    this.redraw.request();
  }

  reset(): void {
    this.msg = null;
    this.redraw.request();
  }

  resize(): void {
    this.redraw.request();
  }

  private draw(): void {
    const m = this.msg;
    this.empty.hidden = m !== null;
    this.body.hidden = m === null;
    if (m === null) return;
    const extra = m as BackpropTraceMsg & { lr?: number; loss_kind?: string };
    this.lossEl.replaceChildren(
      el("span", { class: "viz-stat-k", text: extra.loss_kind !== undefined ? `loss (${extra.loss_kind})` : "loss" }),
      el("b", { class: "viz-big", text: fmt(m.loss, 5) }),
      ...(extra.lr !== undefined ? [el("span", { class: "viz-stat-k", text: " · lr" }), el("b", { text: fmt(extra.lr) })] : []),
    );
    this.updateSub.textContent = extra.lr !== undefined ? `new value = value − lr · gradient, lr = ${fmt(extra.lr)}` : "new value = value − lr · gradient";
    this.drawGraph(m);
    this.drawTable(m);
  }

  private drawGraph(m: BackpropTraceMsg): void {
    const p = readPalette(this.root, this.ctx.theme());
    const byId = new Map(m.nodes.map((n) => [n.id, n]));
    // depth = longest path from a source
    const depth = new Map<string, number>();
    const depthOf = (id: string, seen: Set<string>): number => {
      const known = depth.get(id);
      if (known !== undefined) return known;
      if (seen.has(id)) return 0; // a cycle would be a server bug; do not hang
      seen.add(id);
      const n = byId.get(id);
      const d = n === undefined || n.inputs.length === 0 ? 0 : 1 + Math.max(...n.inputs.map((i) => depthOf(i, seen)));
      depth.set(id, d);
      return d;
    };
    for (const n of m.nodes) depthOf(n.id, new Set());
    // sources (inputs, parameters) sit just left of their first consumer, so that
    // a bias added late does not draw a long edge through the graph
    for (const n of m.nodes) {
      if (n.inputs.length > 0) continue;
      const users = m.nodes.filter((u) => u.inputs.includes(n.id)).map((u) => depth.get(u.id) ?? 1);
      if (users.length > 0) depth.set(n.id, Math.max(0, Math.min(...users) - 1));
    }
    const maxD = Math.max(0, ...depth.values());
    // sinks (the loss) sit in the last column; sources hug their consumers
    const cols: Node[][] = Array.from({ length: maxD + 1 }, () => []);
    for (const n of m.nodes) cols[depth.get(n.id) ?? 0]!.push(n);
    // order each column by the mean row of its consumers (fewer crossings), right to left
    const row = new Map<string, number>();
    cols[maxD]!.forEach((n, i) => row.set(n.id, i));
    for (let d = maxD - 1; d >= 0; d--) {
      const users = (id: string): number[] => m.nodes.filter((n) => n.inputs.includes(id)).map((n) => row.get(n.id) ?? 0);
      const key = (n: Node): number => {
        const u = users(n.id);
        return u.length > 0 ? u.reduce((a, b) => a + b, 0) / u.length : 0;
      };
      cols[d]!.sort((a, b) => key(a) - key(b));
      cols[d]!.forEach((n, i) => row.set(n.id, i));
    }

    const fs = p.fontPx;
    // wide enough for the longest label ("w[0,1]·a[1]"), at ~0.62 em per character of the bold label font
    const longest = Math.max(...m.nodes.map((n) => n.label.length), 4);
    const boxW = Math.round(Math.max(fs * 6.2, fs * (longest * 0.62 + 1.4)));
    const boxH = Math.round(fs * 2.6);
    const gapX = Math.round(fs * 4.2);
    const maxRows = Math.max(...cols.map((c) => c.length));
    // value above and gradient below each box need ~1.2 lines each; tighter for tall columns
    const pitchY = Math.round(boxH + fs * (maxRows > 5 ? 2.7 : 3.4));
    const width = Math.max(widthOf(this.graph), (maxD + 1) * (boxW + gapX));
    const colPitch = (width - boxW - 20) / Math.max(1, maxD);
    const height = maxRows * pitchY + fs;
    const pos = new Map<string, { x: number; y: number }>();
    cols.forEach((c, d) => {
      const offset = ((maxRows - c.length) * pitchY) / 2;
      c.forEach((n, i) => pos.set(n.id, { x: 10 + (maxD === 0 ? (width - boxW) / 2 - 10 : d * colPitch), y: fs * 1.5 + offset + i * pitchY }));
    });
    // reveal: gradient visible when the node is within `reveal` layers of the end
    const shows = (id: string): boolean => this.reveal === Infinity || maxD - (depth.get(id) ?? 0) < this.reveal;
    this.backBtn.disabled = this.reveal !== Infinity && this.reveal > maxD;

    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "viz-trace-svg" });
    const defs = svg("defs", {});
    const marker = svg("marker", { id: "viz-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "viz-trace-arrow" }));
    defs.append(marker);
    root.append(defs);
    const edges = svg("g", {});
    const labels = svg("g", {});
    const nodes = svg("g", {});
    root.append(edges, nodes, labels);
    for (const n of m.nodes) {
      const b = pos.get(n.id)!;
      n.inputs.forEach((inp, k) => {
        const a = pos.get(inp);
        if (a === undefined) return;
        const x1 = a.x + boxW;
        const y1 = a.y + boxH / 2;
        const x2 = b.x - 2;
        const y2 = b.y + boxH / 2;
        const mx = (x1 + x2) / 2;
        edges.append(svg("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, class: "viz-trace-edge", "marker-end": "url(#viz-arrow)" }));
        const lg = localGrad(n, k);
        if (lg !== undefined && shows(n.id)) {
          const t = `×${fmtValue(lg, 2)}`;
          const lx = mx;
          const ly = (y1 + y2) / 2;
          const w = t.length * fs * 0.48 + 8;
          labels.append(svg("rect", { x: lx - w / 2, y: ly - fs * 0.62, width: w, height: fs * 1.24, rx: 4, class: "viz-trace-pill" }));
          labels.append(svg("text", { x: lx, y: ly, class: "viz-trace-local", "text-anchor": "middle", "dominant-baseline": "central" }, t));
        }
      });
    }
    for (const n of m.nodes) {
      const { x, y } = pos.get(n.id)!;
      const isLoss = !m.nodes.some((o) => o.inputs.includes(n.id)) && n.inputs.length > 0;
      const isParam = m.params.some((q) => q.id === n.id) || n.op === "param" || n.op === "weight" || n.op === "bias";
      const cls = `viz-trace-node${isLoss ? " loss" : ""}${isParam ? " param" : ""}${n.inputs.length === 0 && !isParam ? " input" : ""}`;
      const g = svg("g", { class: cls });
      const title = svg("title", {}, `${n.label} (${n.op})\nvalue ${fmtValue(n.value, 8)}\ngrad ${fmtValue(n.grad, 8)}`);
      g.append(title);
      g.append(svg("rect", { x, y, width: boxW, height: boxH, rx: 7 }));
      g.append(svg("text", { x: x + boxW / 2, y: y + boxH * 0.4, "text-anchor": "middle", "dominant-baseline": "central", class: "viz-trace-label" }, n.label));
      g.append(svg("text", { x: x + boxW / 2, y: y + boxH * 0.78, "text-anchor": "middle", "dominant-baseline": "central", class: "viz-trace-op" }, n.op));
      g.append(svg("text", { x: x + boxW / 2, y: y - fs * 0.55, "text-anchor": "middle", class: "viz-trace-value" }, fmtValue(n.value, 3)));
      if (shows(n.id)) g.append(svg("text", { x: x + boxW / 2, y: y + boxH + fs * 1.05, "text-anchor": "middle", class: "viz-trace-grad" }, fmtValue(n.grad, 3)));
      nodes.append(g);
    }
    this.graph.replaceChildren(root);
  }

  private drawTable(m: BackpropTraceMsg): void {
    const head = el("tr", {}, ["parameter", "value", "gradient", "new value", "change"].map((h) => el("th", { text: h })));
    const rows = m.params.map((q) => {
      const delta = typeof q.new_value === "number" && typeof q.value === "number" ? q.new_value - q.value : null;
      return el("tr", {}, [
        el("td", {}, [el("b", { text: q.name })]),
        el("td", { class: "num", text: fmtValue(q.value) }),
        el("td", { class: "num viz-bwd", text: fmtValue(q.grad) }),
        el("td", { class: "num", text: fmtValue(q.new_value) }),
        el("td", { class: `num ${delta === null ? "" : delta > 0 ? "viz-up" : delta < 0 ? "viz-down" : ""}`, text: delta === null ? "" : `${delta > 0 ? "▲" : delta < 0 ? "▼" : "="} ${fmt(Math.abs(delta))}` }),
      ]);
    });
    this.table.replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
  }
}
