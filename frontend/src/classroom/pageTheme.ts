/**
 * Theme and projector choice of the classroom pages (join, teacher). The main page keeps its
 * theme in the address; these pages have no document to put it in, so the choice lives in
 * localStorage, and the first visit follows the system's light/dark setting.
 */

import type { Theme } from "../viewContext";

const THEME_KEY = "dlplay.classroom.theme";
const PROJECTOR_KEY = "dlplay.classroom.projector";

function stored(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled (private mode): the choice lasts for this page only
  }
}

function store(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    // see stored()
  }
}

export function currentTheme(): Theme {
  return document.documentElement.dataset.theme === "dark" ? "dark" : "light";
}

/** Apply the stored theme (or the system's) to <html data-theme>. */
export function applyStoredTheme(): Theme {
  const saved = stored(THEME_KEY);
  const theme: Theme = saved === "dark" || saved === "light" ? saved : matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  document.documentElement.dataset.theme = theme;
  return theme;
}

export function setTheme(theme: Theme): void {
  document.documentElement.dataset.theme = theme;
  store(THEME_KEY, theme);
}

export function storedProjector(): boolean {
  return stored(PROJECTOR_KEY) === "true";
}

export function setProjector(on: boolean): void {
  document.documentElement.dataset.projector = String(on);
  store(PROJECTOR_KEY, String(on));
}

/** The dlplay mark (the main page's logo): five nodes and their edges. */
export function logo(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "logo");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML =
    '<circle cx="5" cy="6" r="2.6"/><circle cx="5" cy="18" r="2.6"/><circle cx="12" cy="12" r="2.6"/><circle cx="19" cy="6" r="2.6"/><circle cx="19" cy="18" r="2.6"/>' +
    '<path d="M7.3 7.2 9.8 10.6M7.3 16.8l2.5-3.4M14.2 10.6l2.5-3.4M14.2 13.4l2.5 3.4" fill="none" stroke-width="1.6"/>';
  return svg;
}
