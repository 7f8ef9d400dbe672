/**
 * The guided lesson beside the views: which lesson is open, which steps are done, and what each
 * step's button does to the page (lesson.ts decides the action; this module carries it out).
 *
 * - apply: the document edited as if the user changed those fields (an undoable edit: the editor,
 *   the forms and the live validation follow); `load_from_last_run` points train.init_from at the
 *   run this lesson trained last.
 * - train / step: the top bar's Train (Step: a run paused after one step).
 * - probe: the `probe` command to the shown run (started first when nothing has trained), then
 *   the tab that draws the reply.
 * - compare: one run per value, all from the document's seed (the same initial weights and
 *   batches); the first is the run the page shows, the others stream only their metrics (an empty
 *   `views`), and the Runs tab overlays all of them live (RunsOverlay reloads a live comparison).
 *
 * Progress (lesson preset, steps done, collapsed) is part of the UI state, so a link or a reload
 * reopens the lesson where the class was.
 */

import type { Experiment, LessonChange } from "../generated/schema";
import type { ClientCommand, PresetInfo, ProbeCommand, ServerMessage } from "../protocol";
import type { RunSnapshot } from "../run";
import type { SidePanel, Store, TabId } from "../state";
import { LessonList } from "./LessonList";
import { LessonPanel, type StepState } from "./LessonPanel";
import { PROBE_VIEWS, applyChanges, currentStep, lessonCatalog, planStep, presetOfLesson, trainedBefore, valueAt, withoutLesson, type StepPlan } from "./lesson";

/** What the guide needs from the page (main.ts wires these). */
export interface LessonShell {
  store: Store;
  presets: readonly PresetInfo[];
  /** the page's Train: start `experiment` (default: the document) as the shown run */
  /** Train `experiment` (default: the editor's); `paused`: the run waits at step 0 for step or resume. */
  startRun(experiment?: Experiment, paused?: boolean): void;
  /** the shown run */
  run(): RunSnapshot;
  onRun(cb: (snap: RunSnapshot) => void): void;
  send(cmd: ClientCommand): void;
  showTab(tab: TabId): void;
  showSide(side: SidePanel): void;
  /** the Runs tab's overlay: compare these runs in one chart (it reloads them by itself while they train) */
  overlay(): { compare(ids: string[]): Promise<void> } | null;
  toast(message: string, kind?: "error" | "info"): void;
}

/** The lesson state kept in the UI choices (and so in the link). */
export interface LessonProgress {
  preset: string;
  done: number[];
  collapsed?: boolean;
}

/** One run of a compare step. */
interface ComparedRun {
  label: string;
  requestId: string;
  runId: string | null;
  live: boolean;
}

const PROBE_ID = "lesson-probe"; // the id of a step's probe command, echoed on its error reply
const LIVE_STATES: ReadonlySet<string> = new Set(["starting", "queued", "running", "paused"]);

export class LessonGuide {
  readonly list: LessonList;
  readonly panel: LessonPanel;
  private plans: StepPlan[] = [];
  private shownPreset: string | null = null;
  /** the runs this page started while a lesson was open, newest last */
  private lessonRuns: string[] = [];
  private lastSnap: RunSnapshot | null = null;
  /** an action waiting for the shown run to train (probe, step) */
  private whenRunning: ((runId: string) => void) | null = null;
  /** `whenRunning` waits for a run started paused (it has no metrics yet), not for its first metrics */
  private whenPausedAtStart = false;
  /** the run shown when that paused start was asked for (an older paused run is not the new one) */
  private pausedStartFrom: string | null = null;
  /** probe replies awaited: message type -> step index */
  private awaiting = new Map<string, number>();
  private compared: ComparedRun[] = [];
  private compareStep: number | null = null;
  private compareStart: { docs: Experiment[]; batch: number } | null = null;
  private compareBatch = 0;
  private stepStates = new Map<number, StepState>();
  /** the last probe step, asked again on a fresh run if the shown run's model is gone */
  private retryProbe: { index: number; act: (runId: string) => void } | null = null;

  constructor(private readonly shell: LessonShell) {
    this.list = new LessonList(lessonCatalog(shell.presets), (id) => this.openPreset(id));
    this.panel = new LessonPanel({
      run: (index) => void this.runStep(index),
      train: () => this.shell.startRun(),
      stopCompare: () => this.stopCompared(),
      collapse: (collapsed) => this.setProgress({ collapsed }),
      close: () => this.close(),
      choose: () => this.list.show(),
    });
    shell.onRun((snap) => this.onRun(snap));
    shell.store.subscribe((_, changed) => {
      if (changed.has("ui")) this.sync();
    });
    this.sync();
  }

  /** The lesson shown now, from the UI state. */
  get progress(): LessonProgress | null {
    return this.shell.store.ui.lesson ?? null;
  }

  /** Load a lesson preset into the editor and open its steps (the lesson list's choice). */
  openPreset(id: string): void {
    const preset = this.shell.presets.find((p) => p.id === id);
    if (!preset?.experiment.lesson) {
      this.shell.toast(`no lesson preset ${id}`, "error");
      return;
    }
    this.stopCompared();
    this.lessonRuns = [];
    this.shell.store.setExperiment(withoutLesson(preset.experiment));
    this.shell.store.setUI({ lesson: { preset: id, done: [] } });
    this.shell.toast(`lesson ${preset.experiment.lesson.number}: ${preset.experiment.lesson.title} (Ctrl+Z brings back your network)`);
  }

  /**
   * A document was loaded some other way (the preset menu, an import): when it carries a lesson
   * block, the lesson opens with it. Returns the document the editor should hold (without the
   * block: the panel guides the lesson, and a later edit of the network never makes the lesson's
   * paths invalid).
   */
  adopt(experiment: Experiment): Experiment {
    const preset = presetOfLesson(experiment.lesson, this.shell.presets);
    if (!experiment.lesson) return experiment;
    if (preset) {
      this.stopCompared();
      this.lessonRuns = [];
      this.shell.store.setUI({ lesson: { preset: preset.id, done: [] } });
    }
    return withoutLesson(experiment);
  }

  close(): void {
    this.stopCompared();
    this.shell.store.setUI({ lesson: null });
  }

  /** Redraw from the UI state (main.ts calls it on every UI change). */
  sync(): void {
    const progress = this.progress;
    const preset = progress ? this.shell.presets.find((p) => p.id === progress.preset) ?? null : null;
    const lesson = preset?.experiment.lesson ?? null;
    this.list.setCurrent(progress?.preset ?? null);
    if (!progress || !lesson || !preset) {
      this.shownPreset = null;
      this.plans = [];
      this.panel.hide();
      return;
    }
    if (this.shownPreset !== preset.id) {
      this.shownPreset = preset.id;
      this.plans = lesson.steps.map((s) => planStep(s));
      this.stepStates.clear();
      this.awaiting.clear();
    }
    const current = currentStep(progress.done, lesson.steps.length);
    this.panel.show({
      number: lesson.number,
      title: lesson.title,
      presetName: preset.name || preset.experiment.name || preset.id,
      steps: lesson.steps.map((step, i) => ({
        text: step.text,
        plan: this.plans[i]!,
        done: progress.done.includes(i),
        current: i === current,
        state: this.stepStates.get(i) ?? null,
        offerTrain: this.plans[i]!.action.kind === "apply" && progress.done.includes(i) && trainedBefore(this.plans, i) && i === Math.max(...progress.done),
      })),
      collapsed: !!progress.collapsed,
      comparing: this.compareStep !== null ? { step: this.compareStep, live: this.compared.filter((r) => r.live).length, total: this.compared.length } : null,
    });
  }

  /** Every server message the page receives (its own run's and the compared runs'). */
  onMessage(msg: ServerMessage): void {
    this.trackCompared(msg);
    const step = this.awaiting.get(msg.type);
    if (step !== undefined && msg.run_id === this.shell.run().runId) {
      this.awaiting.delete(msg.type);
      this.setStepState(step, { text: "shown", kind: "ok" });
      // the reply's view may sit below the fold of its tab (FGSM under the attention maps)
      const box = document.querySelector(`[data-view="${PROBE_VIEWS[msg.type] ?? ""}"]`);
      requestAnimationFrame(() => box?.scrollIntoView({ block: "nearest", behavior: "smooth" }));
    }
    if (msg.type === "error" && msg.code === "run_closed" && msg.request_id === PROBE_ID && this.retryProbe) {
      // the shown run's model is gone (evicted from memory): train a fresh run, then ask again
      const retry = this.retryProbe;
      this.retryProbe = null;
      this.afterStart(retry.index, retry.act, true);
    }
    if (msg.type === "error" && msg.request_id !== undefined && String(msg.request_id).startsWith("lesson-compare")) {
      const failed = this.compared.find((r) => r.requestId === msg.request_id);
      if (failed) {
        failed.live = false;
        this.sync();
      }
    }
  }

  // ---- steps ----------------------------------------------------------------------

  /** Press step `index`'s button. */
  async runStep(index: number): Promise<void> {
    const plan = this.plans[index];
    const progress = this.progress;
    if (!plan || !progress) return;
    const action = plan.action;
    try {
      switch (action.kind) {
        case "apply":
          this.applyStep(action.changes, action.loadLayers);
          break;
        case "train":
          this.shell.startRun();
          break;
        case "step":
          // a fresh run that waits at step 0, then exactly one step: the first loss, whatever the machine's speed
          // (a run started running could finish a short lesson before a later "step" reached it)
          this.whenRunning = (runId) => this.shell.send({ cmd: "step", run_id: runId });
          this.whenPausedAtStart = true;
          this.pausedStartFrom = this.shell.run().runId;
          this.shell.startRun(undefined, true);
          this.setStepState(index, { text: "training first…", kind: "busy" });
          break;
        case "probe": {
          const cmd = { cmd: "probe", id: PROBE_ID, run_id: "", probe: action.view, ...action.args } as ProbeCommand;
          const act = (runId: string): void => this.shell.send({ ...cmd, run_id: runId });
          this.awaiting.set(action.view, index);
          this.retryProbe = { index, act };
          this.setStepState(index, { text: "asking the run…", kind: "busy" });
          this.afterStart(index, act, false);
          break;
        }
        case "compare":
          this.startCompare(index, action.path, action.values, action.labels);
          break;
        case "show":
          break;
      }
    } catch (err) {
      this.shell.toast(`step ${index + 1}: ${(err as Error).message}`, "error");
      return;
    }
    if (plan.side) this.shell.showSide(plan.side);
    if (plan.tab) this.shell.showTab(plan.tab);
    this.markDone(index);
  }

  private applyStep(changes: Parameters<typeof applyChanges>[1], loadLayers: string[] | null): void {
    // applyChanges throws (naming the path) before anything changes: the document stays as it was
    let doc = applyChanges(this.shell.store.experiment, changes);
    if (loadLayers !== null) {
      const last = this.lessonRuns[this.lessonRuns.length - 1] ?? this.shell.run().runId;
      if (!last) throw new Error("this step starts from the weights of the lesson's last run: train it first (the step above)");
      doc.train = { ...doc.train, init_from: { run_id: last, layers: loadLayers } };
    }
    this.shell.store.setExperiment(doc);
  }

  /**
   * Do `act(runId)` on the shown run once it trains: at once when it is running, paused or has
   * ended with its model; otherwise after starting one (`fresh`: always start a new run).
   */
  private afterStart(index: number, act: (runId: string) => void, fresh: boolean): void {
    const snap = this.shell.run();
    // a finished run keeps its model for probes; a stopped or failed one does not (the server frees it)
    const ready = snap.runId !== null && (snap.state === "running" || snap.state === "paused" || snap.state === "finished") && snap.metrics !== null;
    if (!fresh && ready && snap.runId) {
      act(snap.runId);
      return;
    }
    this.whenRunning = act;
    this.whenPausedAtStart = false;
    if (fresh || !(snap.state === "queued" || snap.state === "running" || snap.state === "starting")) this.shell.startRun();
    this.setStepState(index, { text: "training first…", kind: "busy" });
  }

  private markDone(index: number): void {
    const progress = this.progress;
    if (!progress || progress.done.includes(index)) {
      this.sync();
      return;
    }
    this.setProgress({ done: [...progress.done, index] });
  }

  private setProgress(patch: Partial<LessonProgress>): void {
    const progress = this.progress;
    if (!progress) return;
    this.shell.store.setUI({ lesson: { ...progress, ...patch } });
  }

  private setStepState(index: number, state: StepState | null): void {
    if (state === null) this.stepStates.delete(index);
    else this.stepStates.set(index, state);
    this.sync();
  }

  private onRun(snap: RunSnapshot): void {
    const previous = this.lastSnap;
    this.lastSnap = snap;
    const progress = this.progress;
    if (!progress) return;
    // a run the page started while the lesson is open: the lesson's "last run"
    if (snap.runId && snap.runId !== previous?.runId && snap.state === "queued") this.lessonRuns.push(snap.runId);
    // the top bar's Train does what a "press Train" step says
    if (snap.state === "starting" && previous?.state !== "starting") {
      const current = currentStep(progress.done, this.plans.length);
      if (this.plans[current]?.action.kind === "train") this.markDone(current);
    }
    // the compare step's later runs start once the first is the shown run
    if (this.compareStart && snap.runId && snap.state === "queued" && snap.runId !== previous?.runId) {
      const first = this.compared[0];
      if (first) {
        first.runId = snap.runId;
        this.startRestOfCompare();
      }
    }
    if (this.compareStep !== null) {
      const first = this.compared[0];
      if (first && first.runId === snap.runId) {
        const live = LIVE_STATES.has(snap.state);
        if (first.live !== live) {
          first.live = live;
          this.refreshOverlay();
        }
      }
    }
    const opened = this.whenPausedAtStart
      ? snap.state === "paused" && snap.runId !== this.pausedStartFrom // the new run, waiting at step 0
      : snap.metrics !== null && (snap.state === "running" || snap.state === "paused");
    if (this.whenRunning && snap.runId && opened) {
      const act = this.whenRunning;
      this.whenRunning = null;
      this.whenPausedAtStart = false;
      for (const [i, s] of this.stepStates) if (s.kind === "busy" && s.text === "training first…") this.stepStates.delete(i);
      act(snap.runId);
      this.sync();
    }
    if (snap.state === "failed" || (snap.state === "idle" && snap.error)) {
      this.whenRunning = null;
      this.whenPausedAtStart = false;
      for (const [i, s] of this.stepStates) if (s.kind === "busy") this.stepStates.set(i, { text: "the run did not start", kind: "error" });
      this.sync();
    }
  }

  // ---- compare ------------------------------------------------------------------------

  private startCompare(index: number, path: string, values: unknown[], labels: string[]): void {
    const base = this.shell.store.experiment;
    // every document first: a value the document cannot take fails before any run starts
    const docs = values.map((value, i) => {
      const doc = applyChanges(base, [{ path, value: value as LessonChange["value"] }]);
      doc.name = labels[i] ?? `${path} = ${JSON.stringify(value)}`;
      return doc;
    });
    if (valueAt(base, path) === undefined) throw new Error(`the document has no field ${path}`);
    this.stopCompared();
    const batch = ++this.compareBatch;
    this.compareStep = index;
    this.compared = docs.map((doc, i) => ({ label: doc.name ?? "", requestId: `lesson-compare-${batch}-${i}`, runId: null, live: true }));
    this.compareStart = { docs, batch };
    this.shell.startRun(docs[0]);
    this.sync();
  }

  private startRestOfCompare(): void {
    const start = this.compareStart;
    this.compareStart = null;
    if (!start || start.batch !== this.compareBatch) return;
    start.docs.slice(1).forEach((experiment, i) => {
      const run = this.compared[i + 1];
      if (run) this.shell.send({ cmd: "start", id: run.requestId, experiment });
    });
    this.refreshOverlay();
  }

  /** The compared runs other than the shown one: learn their ids, watch only their metrics. */
  private trackCompared(msg: ServerMessage): void {
    if (this.compared.length === 0 || !msg.run_id) return;
    let run = this.compared.find((r) => r.runId === msg.run_id);
    if (!run && msg.request_id !== undefined) {
      run = this.compared.find((r) => r.requestId === msg.request_id && r.runId === null);
      if (run) {
        run.runId = msg.run_id;
        // no live-view frames for the runs beside the shown one: the overlay needs only their metrics
        this.shell.send({ cmd: "views", run_id: msg.run_id, views: {} });
        this.refreshOverlay();
      }
    }
    if (!run || run === this.compared[0]) return;
    if (msg.type === "final" || (msg.type === "status" && !LIVE_STATES.has(msg.state))) {
      if (run.live) {
        run.live = false;
        this.refreshOverlay();
        this.sync();
      }
    }
  }

  /** Stop the compare step's runs that still train. */
  stopCompared(): void {
    this.compareStart = null;
    for (const run of this.compared) {
      // a started run stays "live" until its final arrives (then the overlay reloads it as ended)
      if (run.live && run.runId) this.shell.send({ cmd: "stop", run_id: run.runId });
      else run.live = false;
    }
    this.sync();
  }

  private refreshOverlay(): void {
    const ids = this.compared.map((r) => r.runId).filter((id): id is string => id !== null);
    if (ids.length > 0) void this.shell.overlay()?.compare(ids);
    this.sync();
  }

  /** Test hook: the compared runs' ids (null until the server named them). */
  comparedRuns(): (string | null)[] {
    return this.compared.map((r) => r.runId);
  }
}
