/**
 * The guided lessons, as data: the lesson list built from the presets (each preset's `lesson`
 * block, see models/README.md), what each step's button does, and the document edits it makes.
 * Pure functions, no DOM: the panel (LessonPanel.ts) and the shell hooks (LessonGuide.ts) use them,
 * the unit tests (frontend/tests/lessons.test.ts) check them.
 */

import type { Experiment, LessonChange, LessonSpec, LessonStep } from "../generated/schema";
import type { PresetInfo } from "../protocol";
import type { SidePanel, TabId } from "../state";

/** One preset that teaches a lesson. */
export interface LessonPreset {
  id: string;
  /** the lesson block's title, e.g. "The perceptron fails on XOR" */
  title: string;
  /** the experiment's name, e.g. "Perceptron on XOR (never converges)" */
  name: string;
  description: string;
  steps: number;
}

/** One lesson of the curriculum (shared/CURRICULUM.md) with the presets that teach it, in file order. */
export interface LessonEntry {
  number: number;
  /** the curriculum's part, e.g. "Initialization" */
  part: string;
  presets: LessonPreset[];
}

/** CURRICULUM.md's parts: the first lesson number of each, in order. */
export const CURRICULUM_PARTS: readonly [number, string][] = [
  [1, "Neurons and networks"],
  [4, "Activations"],
  [5, "Initialization"],
  [8, "Optimization"],
  [12, "Regularization and normalization"],
  [15, "Convolutional networks"],
];

export function partOf(lessonNumber: number): string {
  let part = CURRICULUM_PARTS[0]?.[1] ?? "";
  for (const [first, name] of CURRICULUM_PARTS) if (lessonNumber >= first) part = name;
  return part;
}

/**
 * The lesson list: one entry per lesson number from 1 to the highest any preset teaches, in the
 * curriculum's order; a lesson no preset teaches has no presets (the list says so).
 */
export function lessonCatalog(presets: readonly PresetInfo[]): LessonEntry[] {
  const byNumber = new Map<number, LessonPreset[]>();
  for (const p of presets) {
    const lesson = p.experiment.lesson;
    if (!lesson) continue;
    const list = byNumber.get(lesson.number) ?? [];
    list.push({ id: p.id, title: lesson.title, name: p.name || p.experiment.name || p.id, description: p.description ?? "", steps: lesson.steps.length });
    byNumber.set(lesson.number, list);
  }
  const last = Math.max(0, ...byNumber.keys());
  const entries: LessonEntry[] = [];
  for (let n = 1; n <= last; n++) entries.push({ number: n, part: partOf(n), presets: byNumber.get(n) ?? [] });
  return entries;
}

/** What a step's button does, decided once from the step (in this order of precedence). */
export type StepAction =
  | { kind: "apply"; changes: LessonChange[]; loadLayers: string[] | null }
  | { kind: "compare"; path: string; values: unknown[]; labels: string[] }
  | { kind: "probe"; view: string; args: Record<string, boolean | number | string | undefined> }
  | { kind: "train" }
  | { kind: "step" }
  | { kind: "show" };

export interface StepPlan {
  action: StepAction;
  /** the button's label */
  label: string;
  /** what the button does, as its tooltip */
  hint: string;
  /** the tab to open after the action (the one the text names, or where the reply is drawn) */
  tab: TabId | null;
  /** the side panel to open (the summary lives with the network editor) */
  side: SidePanel | null;
}

/**
 * Which tab draws each on-demand view's reply. fgsm, fgsm_sweep and optimizer_race are drawn by
 * the lesson views in viz/ (their message types in protocol.ts): adversarial images sit with the
 * other "where the network looks" maps, the optimizer race with the training curves.
 */
export const PROBE_TABS: Readonly<Record<string, TabId>> = {
  backprop_trace: "2d",
  gradient_check: "inside",
  boundary: "2d",
  weights: "inside",
  filters: "filters",
  feature_maps: "filters",
  saliency: "attention",
  gradcam: "attention",
  attention: "attention",
  evaluation: "evaluation",
  confusion: "evaluation",
  misclassified: "evaluation",
  fgsm: "attention",
  fgsm_sweep: "attention",
  optimizer_race: "training",
};

/** The view (views.ts slot name, the box's data-view) that draws a probe's reply, to scroll it into sight. */
export const PROBE_VIEWS: Readonly<Record<string, string>> = {
  backprop_trace: "BackpropTrace",
  gradient_check: "GradCheck",
  feature_maps: "FeatureMaps",
  gradcam: "Attention",
  saliency: "Attention",
  attention: "Attention",
  fgsm: "Fgsm",
  fgsm_sweep: "Fgsm",
  optimizer_race: "OptimizerRace",
};

/** A probe view's name for a button: "backprop_trace" -> "backprop trace", "gradcam" -> "Grad-CAM". */
const PROBE_LABELS: Readonly<Record<string, string>> = {
  backprop_trace: "Show the backprop trace",
  gradient_check: "Run the gradient check",
  feature_maps: "Show the feature maps",
  gradcam: "Show Grad-CAM",
  saliency: "Show the saliency map",
  attention: "Show the attention masks",
  fgsm: "Attack with FGSM",
  fgsm_sweep: "Accuracy against ε",
  optimizer_race: "Run the race",
};

/** Tab names as lesson texts spell them ("open the Inside tab", "the Filters and Feature maps tabs"). */
const TAB_WORDS: [RegExp, TabId][] = [
  [/\binside\b/i, "inside"],
  [/\b2d\b/i, "2d"],
  [/\bfilters\b/i, "filters"],
  [/\bfeature maps\b/i, "filters"],
  [/\battention\b/i, "attention"],
  [/\bevaluation\b/i, "evaluation"],
  [/\bruns\b/i, "runs"],
  [/\btraining\b/i, "training"],
];

/** The tab a step's text tells the class to open ("… and open the Inside tab"), or null. */
export function tabNamed(text: string): TabId | null {
  const match = /\b(?:open|watch|see|in) the ([A-Za-z0-9 &]+?) tabs?\b/i.exec(text);
  if (!match) return null;
  for (const [word, tab] of TAB_WORDS) if (word.test(match[1] ?? "")) return tab;
  return null;
}

/** Whether a step without changes tells the class to train ("Press Train …"). */
const SAYS_TRAIN = /\bpress train\b/i;
/** … or to take one step ("Press Step once"). */
const SAYS_STEP = /\bpress step\b/i;

const short = (value: unknown): string => {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}…` : text;
};

/** What step `step`'s button does, its label and where it leads. */
export function planStep(step: LessonStep): StepPlan {
  const namedTab = tabNamed(step.text);
  if (step.compare) {
    const { path, values, labels } = step.compare;
    return {
      action: { kind: "compare", path, values, labels },
      label: `Race ${values.length} runs`,
      hint: `start ${values.length} runs side by side from the same seed, one per ${path} (${labels.join(", ")}), curves overlaid in the Runs tab`,
      tab: "runs",
      side: null,
    };
  }
  if (step.probe) {
    const { view, args } = step.probe;
    const argText = Object.entries(args ?? {}).map(([k, v]) => `${k} ${short(v)}`).join(", ");
    return {
      action: { kind: "probe", view, args: { ...(args ?? {}) } },
      label: PROBE_LABELS[view] ?? `Show ${view.replace(/_/g, " ")}`,
      hint: `ask the run for the ${view.replace(/_/g, " ")} view${argText ? ` (${argText})` : ""}; starts training first when nothing has trained yet`,
      tab: PROBE_TABS[view] ?? namedTab,
      side: null,
    };
  }
  const changes = step.apply ?? [];
  const loadLayers = step.load_from_last_run ?? null;
  if (changes.length > 0 || loadLayers !== null) {
    const edits = changes.map((c) => `${c.path} = ${short(c.value)}`);
    if (loadLayers !== null) edits.push(`train.init_from = the last run (${loadLayers.join(", ")})`);
    return {
      action: { kind: "apply", changes, loadLayers },
      label: "Apply",
      hint: `change the document: ${edits.join("; ")}`,
      tab: namedTab,
      side: null,
    };
  }
  if (SAYS_STEP.test(step.text)) {
    return { action: { kind: "step" }, label: "Step once", hint: "start a run paused and train exactly one step", tab: namedTab, side: null };
  }
  if (SAYS_TRAIN.test(step.text)) {
    return { action: { kind: "train" }, label: "Train", hint: "start training (the top bar's Train)", tab: namedTab, side: null };
  }
  // Nothing to change or start: open what the text talks about (the summary, a tab, the drawing pad).
  const summary = /\bsummary\b/i.test(step.text);
  const draw = /\bdraw a digit\b/i.test(step.text);
  const tab = draw ? "evaluation" : namedTab ?? (/\bruns?\b/i.test(step.text) && /\bopen\b/i.test(step.text) ? "runs" : null);
  return {
    action: { kind: "show" },
    label: summary ? "Show the summary" : draw ? "Open the drawing pad" : tab ? `Open the ${tab === "2d" ? "2D" : tab} tab` : "Done",
    hint: summary ? "open the Network panel: each layer's shape, parameters, multiply-adds and receptive field" : "mark this step as read",
    tab,
    side: summary ? "network" : null,
  };
}

/**
 * A copy of `doc` with each change made in order: the page's twin of server/schemas.py
 * apply_changes. Throws an Error naming the path when it names no field the document has (a key
 * it lacks, an index past the end of a list): a lesson only changes what the document has.
 */
export function applyChanges<T>(doc: T, changes: readonly LessonChange[]): T {
  const out = JSON.parse(JSON.stringify(doc)) as T;
  for (const change of changes) {
    const keys = change.path.split(".");
    let node: unknown = out;
    keys.forEach((key, depth) => {
      const where = keys.slice(0, depth).join(".") || "the document";
      let slot: string | number = key;
      if (Array.isArray(node)) {
        if (!/^\d+$/.test(key) || Number(key) >= node.length) {
          throw new Error(`${change.path}: ${where} is a list of ${node.length} items; ${key} is not an index of it`);
        }
        slot = Number(key);
      } else if (node === null || typeof node !== "object" || !(key in node)) {
        throw new Error(`${change.path}: ${where} has no field ${key}`);
      }
      const container = node as Record<string | number, unknown>;
      if (depth === keys.length - 1) container[slot] = JSON.parse(JSON.stringify(change.value ?? null)) as unknown;
      else node = container[slot];
    });
  }
  return out;
}

/** The value at a dotted path of `doc`, or undefined. */
export function valueAt(doc: unknown, path: string): unknown {
  let node: unknown = doc;
  for (const key of path.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** A document without its lesson block: what the editor holds while the panel guides the lesson. */
export function withoutLesson(doc: Experiment): Experiment {
  if (!("lesson" in doc)) return doc;
  const copy = { ...doc };
  delete copy.lesson;
  return copy;
}

/** The preset a loaded document's lesson came from (same number and title), or null. */
export function presetOfLesson(lesson: LessonSpec | null | undefined, presets: readonly PresetInfo[]): PresetInfo | null {
  if (!lesson) return null;
  return presets.find((p) => p.experiment.lesson?.number === lesson.number && p.experiment.lesson?.title === lesson.title) ?? null;
}

/** The step to do next: the first one after the last done, or the first not done. */
export function currentStep(done: readonly number[], steps: number): number {
  if (done.length === 0) return 0;
  const next = Math.max(...done) + 1;
  if (next < steps) return next;
  for (let i = 0; i < steps; i++) if (!done.includes(i)) return i;
  return steps; // all done
}

/** Whether an earlier step of the lesson trains: then an applied change is worth a new run. */
export function trainedBefore(plans: readonly StepPlan[], index: number): boolean {
  return plans.slice(0, index).some((p) => p.action.kind === "train" || p.action.kind === "step" || p.action.kind === "compare" || p.action.kind === "probe");
}
