/**
 * Small DOM and canvas helpers shared by the views: element building, number
 * formatting, HiDPI canvas sizing, the per-view frame scheduler and empty states.
 */

import type { ViewContext } from "../viewContext";

type Child = Node | string | null | undefined | false;

export interface ElProps {
  class?: string | undefined;
  text?: string | undefined;
  title?: string | undefined;
  attrs?: Record<string, string> | undefined;
  style?: Partial<Record<string, string>> | undefined;
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (ev: HTMLElementEventMap[K]) => void }>;
}

/** document.createElement with class, text, attributes, listeners and children. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: ElProps = {},
  children: Child[] = [],
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.class !== undefined) e.className = props.class;
  if (props.text !== undefined) e.textContent = props.text;
  if (props.title !== undefined) e.title = props.title;
  if (props.attrs !== undefined) for (const [k, v] of Object.entries(props.attrs)) e.setAttribute(k, v);
  if (props.style !== undefined) for (const [k, v] of Object.entries(props.style)) if (v !== undefined) e.style.setProperty(k, v);
  if (props.on !== undefined) {
    for (const [k, fn] of Object.entries(props.on)) if (fn !== undefined) e.addEventListener(k, fn as EventListener);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

export function button(label: string, onClick: () => void, props: ElProps = {}): HTMLButtonElement {
  const b = el("button", { ...props, text: label, attrs: { type: "button", ...(props.attrs ?? {}) } });
  b.classList.add("viz-btn");
  b.addEventListener("click", onClick);
  return b;
}

/** A labelled checkbox; returns the label (append it) and the input. */
export function toggle(label: string, checked: boolean, onChange: (on: boolean) => void, title?: string): { label: HTMLLabelElement; input: HTMLInputElement } {
  const input = el("input", { attrs: { type: "checkbox" } });
  input.checked = checked;
  input.addEventListener("change", () => onChange(input.checked));
  const lab = el("label", { class: "viz-toggle", title }, [input, label]);
  return { label: lab, input };
}

/** A <select> of (value, label) options. */
export function select(options: [string, string][], value: string, onChange: (v: string) => void, title?: string): HTMLSelectElement {
  const s = el("select", { class: "viz-select", title });
  setOptions(s, options, value);
  s.addEventListener("change", () => onChange(s.value));
  return s;
}

export function setOptions(s: HTMLSelectElement, options: [string, string][], value: string): void {
  s.replaceChildren(...options.map(([v, l]) => el("option", { text: l, attrs: { value: v } })));
  if (options.some(([v]) => v === value)) s.value = value;
}

/** The "nothing yet" placeholder every view shows before its first message. */
export function emptyState(text: string, sub?: string): HTMLElement {
  return el("div", { class: "viz-empty" }, [el("div", { class: "viz-empty-title", text }), sub !== undefined ? el("div", { class: "viz-empty-sub", text: sub }) : null]);
}

/** A titled card inside a view. */
export function card(title: string, body: Node[], extra?: Node[]): HTMLElement {
  return el("section", { class: "viz-card" }, [
    el("header", { class: "viz-card-head" }, [el("h4", { class: "viz-card-title", text: title }), ...(extra ?? [])]),
    ...body,
  ]);
}

/**
 * A number from a message field: the server sends non-finite floats as the strings
 * "nan", "inf", "-inf" (PROTOCOL.md); null/undefined/other stay null.
 */
export function toNum(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (v === "nan" || v === "NaN") return Number.NaN;
  if (v === "inf" || v === "Infinity") return Number.POSITIVE_INFINITY;
  if (v === "-inf" || v === "-Infinity") return Number.NEGATIVE_INFINITY;
  return null;
}

/** A finite number from a message field, else null (for plotting: gaps). */
export function finite(v: unknown): number | null {
  const n = toNum(v);
  return n !== null && Number.isFinite(n) ? n : null;
}

/** Compact number: 3 significant digits, exponent for very small/large magnitudes. */
export function fmt(v: number | string | null | undefined, digits = 3): string {
  const x = toNum(v);
  if (x === null) return "–";
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) {
    return x.toExponential(Math.max(0, digits - 1)).replace(/\.?0+e/, "e").replace("e+", "e").replace(/-/g, "−");
  }
  if (a >= Math.pow(10, digits)) return Math.round(x).toLocaleString("en-US").replace(/-/g, "−");
  const s = x.toPrecision(digits);
  return (s.includes(".") && !s.includes("e") ? s.replace(/\.?0+$/, "") : s).replace(/-/g, "−");
}

/** Axis tick label: 1.25k, 2M for large round numbers, else `fmt`. */
export function fmtTick(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e3 && a < 1e12) {
    const [d, suffix] = a >= 1e9 ? [1e9, "G"] : a >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return fmt(v / d, 3) + suffix;
  }
  return fmt(v, 3);
}

export function fmtPct(v: number | string | null | undefined, digits = 1): string {
  const x = finite(v);
  if (x === null) return "–";
  return `${(100 * x).toFixed(digits)}%`;
}

/** A number or a short vector, for trace tables: "0.532" or "[0.1, −0.3, …] (n=12)". */
export function fmtValue(v: unknown, maxItems = 4): string {
  if (typeof v === "number") return fmt(v);
  if (Array.isArray(v)) {
    const flat = (v as unknown[]).flat(3) as unknown[];
    const shown = flat.slice(0, maxItems).map((x) => (typeof x === "number" ? fmt(x) : String(x)));
    return `[${shown.join(", ")}${flat.length > maxItems ? ", …" : ""}]${flat.length > maxItems ? ` (n=${flat.length})` : ""}`;
  }
  if (v === null || v === undefined) return "–";
  return String(v);
}

/**
 * Size a canvas for crisp drawing at CSS size cssW x cssH on this screen; returns
 * its context scaled so drawing code works in CSS pixels.
 */
export function fitCanvas(c: HTMLCanvasElement, cssW: number, cssH: number): CanvasRenderingContext2D {
  const dpr = Math.max(1, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(cssW * dpr));
  const h = Math.max(1, Math.round(cssH * dpr));
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  c.style.width = `${Math.round(cssW)}px`;
  c.style.height = `${Math.round(cssH)}px`;
  const g = c.getContext("2d");
  if (g === null) throw new Error("canvas 2d context unavailable");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssW, cssH);
  return g;
}

/**
 * One view's redraw request: `request()` as often as messages arrive; the draw
 * function runs at most once per animation frame via the shared scheduler.
 */
export class Redraw {
  private readonly cb: () => void;
  constructor(private readonly ctx: ViewContext, draw: () => void) {
    this.cb = () => {
      try {
        draw();
      } catch (e) {
        console.error("viz draw failed", e);
      }
    };
  }
  request(): void {
    this.ctx.requestFrame(this.cb);
  }
}

/** Call `cb` when `target`'s content width changes (not on height-only changes, to avoid feedback loops). */
export function onWidthChange(target: Element, cb: () => void): ResizeObserver {
  let last = -1;
  const ro = new ResizeObserver((entries) => {
    for (const e of entries) {
      const w = Math.round(e.contentRect.width);
      if (w !== last) {
        last = w;
        cb();
      }
    }
  });
  ro.observe(target);
  return ro;
}

/**
 * Call `cb` when `target`'s content box changes in width or height. Only for boxes whose size
 * does not follow their content (a fill box, see `fillSize`): otherwise resizing the content
 * from `cb` would call it again.
 */
export function onSizeChange(target: Element, cb: () => void): ResizeObserver {
  let last = "";
  const ro = new ResizeObserver((entries) => {
    for (const e of entries) {
      const key = `${Math.round(e.contentRect.width)}x${Math.round(e.contentRect.height)}`;
      if (key !== last) {
        last = key;
        cb();
      }
    }
  });
  ro.observe(target);
  return ro;
}

/**
 * The content box of `e` (CSS pixels) when the stylesheet makes it a fill box (`--viz-fill: 1`:
 * projector mode sizes the main charts by flex/grid to the space the tab leaves, and the chart
 * draws to that box), else null (the chart picks its own height from --viz-chart-h). A fill box
 * gets its size from its container, never from what is drawn in it (flex-basis 0, min-height 0,
 * overflow hidden), so a chart can size itself to it without a feedback loop.
 */
export function fillSize(e: HTMLElement): { width: number; height: number } | null {
  if (getComputedStyle(e).getPropertyValue("--viz-fill").trim() !== "1") return null;
  const width = Math.floor(e.clientWidth);
  const height = Math.floor(e.clientHeight);
  return width > 0 && height > 0 ? { width, height } : null;
}

/** Usable width of `e` in CSS pixels (0 while hidden). */
export function widthOf(e: Element): number {
  return Math.floor(e.getBoundingClientRect().width);
}

/**
 * A length in CSS pixels from a custom property on `e` (e.g. --viz-chart-h: 15em),
 * or `fallback`. px, em (of `e`) and rem are understood, so sizes can follow the
 * font size (projector mode).
 */
export function cssNumber(e: Element, name: string, fallback: number): number {
  const style = getComputedStyle(e);
  const raw = style.getPropertyValue(name).trim();
  const m = raw.match(/^(-?[\d.]+)\s*(px|em|rem)?$/);
  if (m === null) return fallback;
  let v = parseFloat(m[1]!);
  if (m[2] === "em") v *= parseFloat(style.fontSize) || 16;
  else if (m[2] === "rem") v *= parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** Random integer in [0, n). */
export function randInt(n: number): number {
  return Math.floor(Math.random() * Math.max(1, n));
}

/** A floating tooltip inside `host` (which becomes position: relative). */
export class Tooltip {
  readonly el: HTMLElement;
  constructor(private readonly host: HTMLElement) {
    // (the host may not be in the document yet, so no getComputedStyle test here)
    host.classList.add("viz-tip-host");
    this.el = el("div", { class: "viz-tip", attrs: { hidden: "" } });
    host.append(this.el);
  }
  /** Show at (x, y) in host coordinates; rows are [key, value] pairs or plain lines. */
  show(x: number, y: number, title: string, rows: ([string, string] | string)[]): void {
    this.el.replaceChildren(
      el("div", { class: "viz-tip-title", text: title }),
      ...rows.map((r) => (typeof r === "string" ? el("div", { text: r }) : el("div", { class: "viz-tip-row" }, [el("span", { text: r[0] }), el("b", { text: r[1] })]))),
    );
    this.el.hidden = false;
    const hw = this.host.clientWidth;
    const tw = this.el.offsetWidth;
    const left = x + 14 + tw > hw ? Math.max(0, x - 14 - tw) : x + 14;
    this.el.style.left = `${left}px`;
    this.el.style.top = `${Math.max(0, y - 10)}px`;
  }
  hide(): void {
    this.el.hidden = true;
  }
}

/** Short display name of a PyTorch parameter: "blocks.conv1.core.weight" -> "conv1.weight". */
export function shortParam(name: string): string {
  return name.replace(/^blocks\./, "").replace(/\.core\./, ".");
}
