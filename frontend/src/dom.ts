/** A tiny element builder: h("div.panel#id", {title: "x", onclick}, child, "text"). No framework, no weight. */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

/** "button.btn#start" -> "button"; "div#x.y" -> "div" */
type TagName<S extends string> = S extends `${infer T}.${string}` ? TagName<T> : S extends `${infer T}#${string}` ? T : S;
export type ElementOf<S extends string> = TagName<S> extends keyof HTMLElementTagNameMap ? HTMLElementTagNameMap[TagName<S>] : HTMLElement;

/** `tag` is "name", "name.class1.class2" or "name#id.class"; a Node or string as `attrs` is a first child. */
export function h<S extends string>(tag: S, attrs?: Attrs | Child | null, ...children: (Child | Child[])[]): ElementOf<S> {
  const name = /^[a-z0-9-]*/i.exec(tag)?.[0] || "div";
  const el = document.createElement(name);
  const classes: string[] = [];
  for (const [, sigil, word] of tag.slice(name.length).matchAll(/([.#])([^.#]+)/g)) {
    if (sigil === "#") el.id = word ?? "";
    else classes.push(word ?? "");
  }
  if (classes.length) el.className = classes.join(" ");
  if (attrs instanceof Node || typeof attrs === "string" || typeof attrs === "number") children.unshift(attrs);
  else if (attrs) applyAttrs(el, attrs);
  append(el, children);
  return el as ElementOf<S>;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** The SVG twin of h(): attributes are set with setAttribute (numbers stringified). */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: (Child | Child[])[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key === "class" || key === "className") {
      el.setAttribute("class", String(value));
    } else if (key === "style" && typeof value === "object") {
      Object.assign((el as HTMLElement).style, value);
    } else if (key === "dataset" && typeof value === "object") {
      Object.assign((el as HTMLElement).dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else if ((key === "value" || key === "checked") && key in el) {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el`. */
export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

/** 1234567 -> "1.23M", 12345 -> "12.3k" */
export function compact(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${trim(n / 1e9)}G`;
  if (abs >= 1e6) return `${trim(n / 1e6)}M`;
  if (abs >= 1e3) return `${trim(n / 1e3)}k`;
  return String(Math.round(n));
}

function trim(x: number): string {
  return x.toPrecision(3).replace(/\.?0+$/, "");
}

/** A number for display: 3 significant digits, exponent for tiny/huge values. */
export function num(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
  const abs = Math.abs(x);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return x.toExponential(digits - 1).replace("e", "e");
  return String(Number(x.toPrecision(digits)));
}

/** "(16, 28, 28)" -> "16×28×28" */
export function shape(dims: readonly number[]): string {
  return dims.length ? dims.join("×") : "scalar";
}

/** Calls `fn` `ms` after the last call. */
export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number): (...args: A) => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return (...args: A) => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      fn(...args);
    }, ms);
  };
}
