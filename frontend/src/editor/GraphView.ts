/**
 * Draws the network as an SVG top-to-bottom graph and turns gestures into edit requests:
 * click a node or edge to select it, drop a palette chip between nodes to insert a layer,
 * drag from a node's output port (bottom dot) onto another node to add a connection.
 * It never edits the document itself: the NetworkEditor owns the edits.
 */

import { compact, s, shape as fmtShape } from "../dom";
import type { LayerInfo } from "../protocol";
import type { LayerSpec } from "../state";
import { INPUT, layout, type Layout, type NodeBox } from "./graph";

export type Selection = { type: "layer"; name: string } | { type: "edge"; from: string; to: string } | null;

export interface GraphCallbacks {
  select(selection: Selection): void;
  insert(kind: string, index: number): void;
  connect(from: string, to: string): void;
}

export interface GraphData {
  layers: LayerSpec[];
  info: Map<string, LayerInfo>;
  errors: Map<string, string[]>;
  inputShape: number[] | null;
  selection: Selection;
  /** `info` is from the last valid network (the current one has errors): drawn dimmed */
  stale: boolean;
  /** a validation request is in flight */
  pending: boolean;
  /** schema defaults of a kind's parameters; values equal to them are not shown on the node */
  defaults(kind: string): Record<string, unknown>;
  /** layers not trained (train.freeze): dimmed, with a lock badge */
  frozen?: ReadonlySet<string>;
  /** layers that start from saved weights (train.init_from): a "loaded" badge */
  loaded?: ReadonlySet<string>;
}

export const DRAG_MIME = "application/x-dlplay-layer";

const NODE_W = 176; // px
const BASE_H = 52; // px: name row, parameter row, stats row
const INPUT_H = 34; // px
const LINE_H = 13; // px per error line
const CHAR_W = 6.1; // px: average width of an 11px system-ui character, for wrapping error text
const PAD = 14; // px around the graph

export class GraphView {
  readonly el: HTMLElement;
  private svg: SVGSVGElement;
  private data: GraphData | null = null;
  private lay: Layout | null = null;
  private dropIndicator: SVGLineElement | null = null;
  private connecting: { from: string; line: SVGPathElement } | null = null;
  private scale = 1;

  constructor(private readonly callbacks: GraphCallbacks) {
    this.svg = s("svg", { class: "graph", role: "img", "aria-label": "network graph" });
    this.el = document.createElement("div");
    this.el.className = "graph-scroll";
    this.el.tabIndex = 0;
    this.el.append(this.svg);
    this.svg.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.el.addEventListener("dragover", (e) => this.onDragOver(e));
    this.el.addEventListener("dragleave", () => this.clearDropIndicator());
    this.el.addEventListener("drop", (e) => this.onDrop(e));
    new ResizeObserver(() => this.draw()).observe(this.el);
  }

  render(data: GraphData): void {
    this.data = data;
    this.draw();
  }

  /** Redraw at the current root font size (projector mode toggled). */
  redraw(): void {
    this.draw();
  }

  /** Error text wrapped into lines that fit a node. */
  private errorLines(name: string): string[] {
    const messages = this.data?.errors.get(name) ?? [];
    const perLine = Math.floor((NODE_W - 16) / CHAR_W);
    const lines: string[] = [];
    for (const message of messages) {
      let line = "";
      for (const word of message.split(/\s+/)) {
        if (line && (line + " " + word).length > perLine) {
          lines.push(line);
          line = word;
        } else line = line ? `${line} ${word}` : word;
      }
      if (line) lines.push(line);
    }
    return lines.slice(0, 7);
  }

  private draw(): void {
    const data = this.data;
    if (!data) return;
    // Projector mode enlarges the root font; the graph scales with it (drawn in 13px units).
    const scale = (parseFloat(getComputedStyle(document.documentElement).fontSize) || 13) / 13;
    this.scale = scale;
    const width = Math.max(260, this.el.clientWidth / scale);
    const lay = layout(data.layers, {
      nodeWidth: NODE_W,
      nodeHeight: (name) => (name === INPUT ? INPUT_H : BASE_H + this.errorLines(name).length * LINE_H + (this.errorLines(name).length ? 6 : 0)),
      rankGap: 22,
      colGap: 14,
      width,
      padding: PAD,
    });
    this.lay = lay;
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute("width", String(lay.width * scale));
    svg.setAttribute("height", String(Math.max(lay.height, 80) * scale));
    svg.setAttribute("viewBox", `0 0 ${lay.width} ${Math.max(lay.height, 80)}`);
    svg.append(
      s("defs", null,
        s("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrow-head" })),
        s("marker", { id: "arrow-sel", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrow-head selected" }))),
    );
    const edgeLayer = s("g", { class: "edges" });
    const nodeLayer = s("g", { class: "nodes" });
    svg.append(edgeLayer, nodeLayer);

    let lane = 0;
    for (const edge of lay.edges) {
      const a = lay.nodes.get(edge.from);
      const b = lay.nodes.get(edge.to);
      if (!a || !b) continue;
      let d: string;
      if (edge.skip) {
        const bulge = 34 + 12 * (lane++ % 6);
        const x0 = a.x + a.w;
        const y0 = a.y + a.h / 2;
        const x1 = b.x + b.w;
        const y1 = b.y + Math.min(18, b.h / 2);
        d = `M${x0},${y0} C${x0 + bulge},${y0} ${x1 + bulge},${y1} ${x1 + 1},${y1}`;
      } else {
        const x0 = a.x + a.w / 2;
        const y0 = a.y + a.h;
        const x1 = b.x + b.w / 2;
        const y1 = b.y - 1;
        const my = (y0 + y1) / 2;
        d = `M${x0},${y0} C${x0},${my} ${x1},${my} ${x1},${y1}`;
      }
      const sel = data.selection;
      const selected = sel?.type === "edge" && sel.from === edge.from && sel.to === edge.to;
      const g = s("g", { class: `edge${edge.skip ? " skip" : ""}${selected ? " selected" : ""}`, "data-from": edge.from, "data-to": edge.to },
        s("path", { d, class: "edge-line", "marker-end": selected ? "url(#arrow-sel)" : "url(#arrow)" }),
        s("path", { d, class: "edge-hit" }),
        s("title", null, `${edge.from} → ${edge.to} (click, then Delete to remove)`));
      edgeLayer.append(g);
    }

    for (const box of lay.nodes.values()) nodeLayer.append(this.node(box, data));
    for (const text of nodeLayer.querySelectorAll<SVGTextElement>("text[data-fit]")) fitText(text, Number(text.dataset.fit));
    if (!data.layers.length) {
      svg.append(s("text", { x: lay.width / 2, y: 100, class: "graph-empty", "text-anchor": "middle" }, "Drag a layer here from the palette"));
    }
  }

  private node(box: NodeBox, data: GraphData): SVGGElement {
    const isInput = box.name === INPUT;
    const layer = isInput ? null : data.layers[box.index];
    const info = data.info.get(box.name);
    const errors = this.errorLines(box.name);
    const selected = data.selection?.type === "layer" && data.selection.name === box.name;
    const cls = ["node", isInput ? "input" : `kind-${layer?.kind ?? ""}`];
    if (selected) cls.push("selected");
    if (errors.length) cls.push("error");
    const frozen = !isInput && data.frozen?.has(box.name) === true;
    const loaded = !isInput && data.loaded?.has(box.name) === true;
    if (frozen) cls.push("frozen");
    if (loaded) cls.push("loaded");
    const g = s("g", { class: cls.join(" "), transform: `translate(${box.x},${box.y})`, "data-node": box.name, tabindex: -1 });
    g.append(s("rect", { class: "node-box", width: box.w, height: box.h, rx: 6, ry: 6 }));
    g.append(s("rect", { class: "node-stripe", width: 4, height: box.h, rx: 2 }));
    if (isInput) {
      g.append(s("text", { x: 12, y: 21, class: "node-name" }, "input"));
      if (data.inputShape) {
        const badge = this.badge(box.w - 8, 11, fmtShape(data.inputShape));
        if (data.stale) badge.classList.add("stale");
        g.append(badge);
      }
    } else if (layer) {
      // the name gets the width the kind label leaves (~6.3px a 10.5px mono character); fitText trims it once drawn
      g.append(s("text", { x: 12, y: 17, class: "node-name", "data-fit": box.w - 24 - layer.kind.length * 6.3 }, layer.name, s("title", null, layer.name)));
      g.append(s("text", { x: box.w - 8, y: 17, class: "node-kind", "text-anchor": "end" }, layer.kind));
      const params = paramSummary(layer, data.defaults(layer.kind));
      g.append(s("text", { x: 12, y: 31, class: "node-params" }, truncate(params, Math.floor((box.w - 22) / 6.3)), s("title", null, params)));
      if (info && !errors.length) {
        const stats = [`${compact(info.params)} p`];
        if (info.receptive_field) stats.push(`rf ${info.receptive_field}`);
        g.append(s("text", { x: 12, y: 45, class: "node-stats" }, stats.join(" · ")));
        const badge = this.badge(box.w - 8, 35, fmtShape(info.output_shape));
        if (data.stale) badge.classList.add("stale");
        g.append(badge);
      } else if (!errors.length) {
        g.append(s("text", { x: 12, y: 45, class: "node-stats" }, data.pending ? "…" : "shape unknown"));
      }
      if (data.stale && !errors.length) g.classList.add("stale");
      errors.forEach((line, k) => g.append(s("text", { x: 10, y: BASE_H + 6 + k * LINE_H, class: "node-error" }, line)));
      g.append(s("circle", { class: "port port-in", cx: box.w / 2, cy: 0, r: 3.5 }));
    }
    g.append(s("circle", { class: "port port-out", cx: box.w / 2, cy: box.h, r: 5, "data-port": box.name },
      s("title", null, "drag onto a later layer to connect")));
    // transfer learning: pills on the node's top edge, right-aligned (the input port is at its centre)
    let right = box.w - 6;
    if (frozen) {
      const pill = this.pill(right, "frozen", "frozen-badge", "train.freeze: this layer's weights are not trained", true);
      right -= pill.width + 4;
      g.append(pill.g);
    }
    if (loaded) g.append(this.pill(right, "⤓ loaded", "loaded-badge", "train.init_from: this layer starts from saved weights").g);
    return g;
  }

  /** A small pill straddling the node's top edge, ending at x = right; `lock` draws a padlock before the text. */
  private pill(right: number, text: string, cls: string, title: string, lock = false): { g: SVGGElement; width: number } {
    const icon = lock ? 10 : 0; // drawn, not an emoji: the classroom's fonts may have none
    const width = Math.round(text.length * 5.6 + 12 + icon);
    const g = s("g", { class: `node-pill ${cls}`, transform: `translate(${right - width},-7)` },
      s("rect", { width, height: 14, rx: 7 }),
      s("text", { x: (width + icon) / 2, y: 10.5, "text-anchor": "middle" }, text),
      s("title", null, title));
    if (lock) {
      g.append(s("rect", { class: "pill-icon", x: 6, y: 6, width: 7, height: 5.5, rx: 1 }));
      g.append(s("path", { class: "pill-shackle", d: "M7.7 6V4.6a1.8 1.8 0 0 1 3.6 0V6" }));
    }
    return { g, width };
  }

  private badge(right: number, y: number, text: string): SVGGElement {
    const w = Math.max(24, text.length * 6.4 + 10);
    return s("g", { class: "shape-badge", transform: `translate(${right - w},${y})` },
      s("rect", { width: w, height: 15, rx: 7.5 }),
      s("text", { x: w / 2, y: 11, "text-anchor": "middle" }, text));
  }

  private onPointerDown(e: PointerEvent): void {
    const target = e.target as Element;
    const port = target.closest("[data-port]");
    if (port && e.button === 0) {
      e.preventDefault();
      this.startConnect(port.getAttribute("data-port") ?? "", e);
      return;
    }
    const node = target.closest("[data-node]");
    if (node) {
      const name = node.getAttribute("data-node") ?? "";
      this.callbacks.select(name === INPUT ? null : { type: "layer", name });
      this.el.focus({ preventScroll: true });
      return;
    }
    const edge = target.closest(".edge");
    if (edge) {
      this.callbacks.select({ type: "edge", from: edge.getAttribute("data-from") ?? "", to: edge.getAttribute("data-to") ?? "" });
      this.el.focus({ preventScroll: true });
      return;
    }
    this.callbacks.select(null);
  }

  private point(e: { clientX: number; clientY: number }): [number, number] {
    const rect = this.svg.getBoundingClientRect();
    return [(e.clientX - rect.left) / this.scale, (e.clientY - rect.top) / this.scale];
  }

  private startConnect(from: string, e: PointerEvent): void {
    const box = this.lay?.nodes.get(from);
    if (!box) return;
    const x0 = box.x + box.w / 2;
    const y0 = box.y + box.h;
    const line = s("path", { class: "connecting", d: `M${x0},${y0}` });
    this.svg.append(line);
    this.connecting = { from, line };
    this.svg.classList.add("is-connecting");
    let hover: Element | null = null;
    const move = (ev: PointerEvent): void => {
      const [x, y] = this.point(ev);
      line.setAttribute("d", `M${x0},${y0} C${x0},${(y0 + y) / 2} ${x},${(y0 + y) / 2} ${x},${y}`);
      const over = document.elementFromPoint(ev.clientX, ev.clientY)?.closest("[data-node]") ?? null;
      if (over !== hover) {
        hover?.classList.remove("drop-target");
        hover = over && over.getAttribute("data-node") !== from ? over : null;
        hover?.classList.add("drop-target");
      }
    };
    const up = (ev: PointerEvent): void => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      this.svg.classList.remove("is-connecting");
      hover?.classList.remove("drop-target");
      line.remove();
      this.connecting = null;
      const over = document.elementFromPoint(ev.clientX, ev.clientY)?.closest("[data-node]");
      const to = over?.getAttribute("data-node");
      if (to && to !== from) this.callbacks.connect(from, to);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
    move(e);
  }

  /** Where a drop at `y` would insert: after every layer whose centre lies above it. */
  private dropIndex(y: number): { index: number; lineY: number } {
    const layers = this.data?.layers ?? [];
    let index = 0;
    let lineY = PAD + INPUT_H + 11;
    for (const box of this.lay?.nodes.values() ?? []) {
      if (box.name === INPUT) continue;
      if (box.y + box.h / 2 < y && box.index + 1 > index) {
        index = box.index + 1;
        lineY = box.y + box.h + 11;
      }
    }
    return { index: Math.min(index, layers.length), lineY };
  }

  private onDragOver(e: DragEvent): void {
    if (!e.dataTransfer?.types.includes(DRAG_MIME)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    const [, y] = this.point(e);
    const { lineY } = this.dropIndex(y);
    if (!this.dropIndicator) {
      this.dropIndicator = s("line", { class: "drop-indicator" });
      this.svg.append(this.dropIndicator);
    }
    const width = Number(this.svg.getAttribute("width")) / this.scale;
    this.dropIndicator.setAttribute("x1", String(PAD));
    this.dropIndicator.setAttribute("x2", String(width - PAD));
    this.dropIndicator.setAttribute("y1", String(lineY));
    this.dropIndicator.setAttribute("y2", String(lineY));
  }

  private clearDropIndicator(): void {
    this.dropIndicator?.remove();
    this.dropIndicator = null;
  }

  private onDrop(e: DragEvent): void {
    const kind = e.dataTransfer?.getData(DRAG_MIME);
    this.clearDropIndicator();
    if (!kind) return;
    e.preventDefault();
    const [, y] = this.point(e);
    this.callbacks.insert(kind, this.dropIndex(y).index);
  }

  /** Scroll a node into view (after keyboard selection or an inserted layer). */
  reveal(name: string): void {
    const box = this.lay?.nodes.get(name);
    if (!box) return;
    const top = (box.y - 10) * this.scale;
    const bottom = (box.y + box.h + 10) * this.scale;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (bottom > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = bottom - this.el.clientHeight;
  }

  get isConnecting(): boolean {
    return this.connecting !== null;
  }
}

/** Shorten an SVG text (drawn, so measurable) with an ellipsis until it fits `width` px. */
function fitText(el: SVGTextElement, width: number): void {
  const full = el.firstChild?.textContent ?? "";
  let n = full.length;
  const node = el.firstChild;
  if (!node) return;
  while (n > 3 && el.getComputedTextLength() > width) {
    n -= 1;
    node.textContent = `${full.slice(0, n)}…`;
  }
}

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

const HIDDEN_KEYS = new Set(["name", "kind", "inputs"]);

/**
 * "16 out · relu · ks=3 padding=same wi=normal(0.01)": the layer's parameters that differ from
 * the schema defaults, most telling first (width, activation), abbreviated by their words' initials.
 */
export function paramSummary(layer: LayerSpec, defaults: Record<string, unknown> = {}): string {
  const head: string[] = [];
  const rest: string[] = [];
  for (const [key, value] of Object.entries(layer)) {
    if (HIDDEN_KEYS.has(key) || value === undefined || value === null) continue;
    if (key in defaults && JSON.stringify(defaults[key]) === JSON.stringify(value)) continue;
    if (typeof value === "object" && !Array.isArray(value)) {
      const { kind, ...args } = value as { kind?: string } & Record<string, unknown>;
      if (!kind || kind === "default") continue;
      const shown = Object.values(args).filter((v) => typeof v === "number" && v !== 0);
      const text = shown.length ? `${kind}(${shown.join(",")})` : kind;
      if (key === "activation") head.push(text);
      else rest.push(`${initials(key)}=${text}`);
      continue;
    }
    const shown = Array.isArray(value) ? value.join("×") : typeof value === "boolean" ? (value ? "on" : "off") : String(value);
    if (key.startsWith("out_")) head.unshift(`${shown} out`);
    else rest.push(`${initials(key)}=${shown}`);
  }
  const parts = rest.length ? [...head, rest.join(" ")] : head;
  return parts.join(" · ") || "defaults";
}

function initials(key: string): string {
  const words = key.split("_").filter(Boolean);
  return words.length === 1 ? (words[0] ?? key) : words.map((w) => w[0]).join("");
}
