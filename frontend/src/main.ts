/**
 * The page: wiring only. Builds the shell (top bar, side panels, tabs), connects the
 * Store, the socket, the run tracker, the editor and panels, and routes every server
 * message to the live views. Logic lives in the modules it wires.
 *
 * Two duties span modules and live here:
 * - the shown run is part of the address (`#s=...&run=<id>`): a reload, Back/Forward or a
 *   second tab reattaches to it with `subscribe {run_id, after_seq: 0}` and the server's
 *   replay rebuilds its whole history; the Runs tab reopens any run the same way;
 * - the open tab decides which live views the server streams (`views`, see live.ts): the
 *   union of the tab's views' `watch()`, sent when the tab, a view's arguments, the run or
 *   the connection changes.
 */

import "./styles.css";
import "./viz/viz.css";
import { api, endpoints } from "./api";
import { ClassroomBar, watchFromHash, withWatch } from "./classroom/student";
import { debounce, h } from "./dom";
import { NetworkEditor } from "./editor/NetworkEditor";
import { FrameScheduler } from "./frame";
import { RunsOverlay } from "./charts/RunsOverlay";
import { LessonGuide } from "./lessons/LessonGuide";
import { withoutLesson } from "./lessons/lesson";
import type { Experiment } from "./generated/schema";
import { AUTO_PROBE_ID, EndedRunProbes, ViewsDemand, mergeWatched, speedOf, streamable, type LiveViewInfo, type WatchedViews } from "./live";
import { DataPanel } from "./panels/DataPanel";
import { FileMenu } from "./panels/FileMenu";
import { Help } from "./panels/Help";
import { RunControls } from "./panels/RunControls";
import { TrainingPanel } from "./panels/TrainingPanel";
import type { PresetInfo, RunInfo, ServerMessage } from "./protocol";
import { tidyRegistry, type Registry } from "./registry";
import { RunTracker } from "./run";
import { Socket, socketUrl } from "./socket";
import {
  DEFAULT_UI, SIDE_PANELS, Store, TABS, decodeState, encodeState, hashWithRun, normalizeExperiment, runFromHash,
  type AppState, type SidePanel, type TabId,
} from "./state";
import { Toasts } from "./toast";
import type { Theme, View, ViewContext } from "./viewContext";
import { tabSpecs } from "./views";
import type { SearchView } from "./search/SearchView";

const HASH_DELAY_MS = 300; // URL update after the last edit

const SIDE_TITLES: Record<SidePanel, string> = { data: "Data", network: "Network", train: "Training" };

async function boot(): Promise<void> {
  const root = document.getElementById("app");
  if (!root) return;
  const toasts = new Toasts();
  const frames = new FrameScheduler();
  const themeListeners = new Set<(t: Theme) => void>();

  // What the server offers, and the state to start from: a link, else a preset.
  const [registry, presetsResult, health, viewsResult] = await Promise.allSettled([
    endpoints.registry(),
    endpoints.presets(),
    endpoints.health(),
    endpoints.views(),
  ]);
  if (registry.status === "rejected") {
    root.replaceChildren(h("div.fatal", null, h("h1", null, "dlplay"), h("p", null, `Cannot load the registry from the server: ${(registry.reason as Error).message}`)));
    return;
  }
  const reg: Registry = tidyRegistry(registry.value);
  const presets: PresetInfo[] = presetsResult.status === "fulfilled" ? presetsResult.value : [];
  // null: a server without the frame clock (no `views` / `speed` commands); the page then takes its defaults
  const liveViews: LiveViewInfo[] | null = viewsResult.status === "fulfilled" && Array.isArray(viewsResult.value) ? viewsResult.value : null;
  const initialRun = runFromHash(location.hash);
  // the teacher's read-only view of a student's run (the dashboard's "Open"): nothing is started or edited
  const watching = initialRun !== null && watchFromHash(location.hash);
  let initial: AppState | null = null;
  try {
    initial = await decodeState(location.hash);
  } catch (err) {
    toasts.show(`the link is damaged (${(err as Error).message}); starting from a preset`, "error");
  }
  const store = new Store(initial ?? { experiment: normalizeExperiment(withoutLesson(startingExperiment(reg, presets))), ui: { ...DEFAULT_UI } });

  // ---- runs and the socket ------------------------------------------------
  const tracker = new RunTracker();
  const views: View[] = [];
  const viewHosts = new Map<TabId, View[]>();
  const seqLog: number[] = [];
  const received = new Map<string, number>();
  const lastOfType = new Map<string, ServerMessage>();
  const controls = new RunControls({
    start: () => startRun(),
    pause: () => withRun((run_id) => socket.send({ cmd: "pause", run_id })),
    resume: () => withRun((run_id) => socket.send({ cmd: "resume", run_id })),
    step: () => {
      if (tracker.snapshot.state === "paused") withRun((run_id) => socket.send({ cmd: "step", run_id }));
      else if (!tracker.active) {
        // no run to step: one opens paused at step 0, then takes its first step (tracker.subscribe below)
        stepWhenOpened = tracker.snapshot.runId ?? "";
        startRun(store.experiment, true);
      }
    },
    stop: () => withRun((run_id) => socket.send({ cmd: "stop", run_id })),
    speed: (steps_per_s) => {
      if (liveViews !== null && tracker.active) withRun((run_id) => socket.send({ cmd: "speed", run_id, steps_per_s }));
    },
  });
  controls.setSpeedAvailable(liveViews !== null);
  /** Train: `experiment` (default: the document; a lesson's compare step passes its own) becomes the shown run. */
  const startRun = (experiment: Experiment = store.experiment, paused = false): void => {
    if (watching) return toasts.show("this page shows a student's run read-only; open dlplay in a new tab to train", "error");
    // Restart: the old run would keep a share of the device; stop it first.
    const previous = tracker.snapshot.runId;
    if (previous && tracker.active) socket.send({ cmd: "stop", run_id: previous });
    const id = tracker.starting();
    socket.send(paused ? { cmd: "start", id, experiment, paused } : { cmd: "start", id, experiment });
  };
  /** Step pressed with no run: the run shown before (""), until the new paused run opens and is stepped */
  let stepWhenOpened: string | null = null;
  const withRun = (fn: (runId: string) => void): void => {
    const id = tracker.snapshot.runId;
    if (id) fn(id);
  };
  const socket = new Socket(socketUrl(), {
    message: (msg) => route(msg),
    status: (status, detail) => controls.socket(status, detail),
    // a new connection watches the server's defaults until told otherwise
    opened: () => {
      demand.forget();
      pushWatch();
      searchView?.reconnected(); // the search's trials are followed again on the new connection
    },
  });
  const demand = new ViewsDemand((cmd) => socket.send(cmd));
  const endedProbes = new EndedRunProbes((cmd) => socket.send(cmd));
  /** Forget what the views show: a different run is about to be shown. */
  const clearShown = (): void => {
    seqLog.length = 0;
    received.clear();
    lastOfType.clear();
    demand.forget();
    endedProbes.forget();
    for (const view of views) safely(() => view.reset());
  };
  /** the Search tab (made with the tabs below); it takes the messages of its trials' runs */
  let searchView: SearchView | null = null;
  const route = (msg: ServerMessage): void => {
    // the lesson guide also follows the runs of a compare step beside the shown one
    lessons.onMessage(msg);
    classroom.onMessage(msg);
    if (searchView?.claims(msg, tracker.snapshot.runId)) return; // a search trial, not the shown run
    const kind = tracker.classify(msg);
    if (kind === "other") return;
    if (kind === "new") {
      socket.follow(msg.run_id ?? null);
      clearShown();
      // the page's chosen speed holds for every run it starts
      if (liveViews !== null && controls.speed !== null && msg.run_id) {
        socket.send({ cmd: "speed", run_id: msg.run_id, steps_per_s: controls.speed });
      }
    }
    if (msg.type === "error" && msg.code === "not_found" && msg.run_id && msg.run_id === tracker.snapshot.runId && tracker.snapshot.state === "attaching") {
      // a link to a run of another browser session, or a deleted run: keep the state, drop the run
      const reason = `run ${msg.run_id} is not available here (it belongs to another browser session, or was deleted)`;
      socket.follow(null);
      tracker.detach(reason);
      void writeHashNow();
      toasts.show(reason, "error");
      return;
    }
    if (msg.type === "error" && msg.request_id === AUTO_PROBE_ID) {
      // the page's own probe of an ended run whose model is gone (a server restart): nothing to show, nothing wrong
      console.info(`no ${msg.code === "bad_arguments" ? "such view" : "frame"} for the ended run: ${msg.message}`);
      return;
    }
    if (msg.run_id && typeof msg.seq === "number") seqLog.push(msg.seq);
    received.set(msg.type, (received.get(msg.type) ?? 0) + 1);
    lastOfType.set(msg.type, msg);
    tracker.handle(msg);
    if (msg.type === "error") toasts.show(msg.message, "error");
    if (msg.type === "hyperparams") {
      const speed = speedOf(msg);
      if (speed !== undefined) controls.showSpeed(speed);
    }
    for (const view of views) safely(() => view.onMessage(msg));
  };
  /** Show `runId` again: reset the views and replay its whole stream from the server. */
  const attachRun = (runId: string): void => {
    const previous = socket.following;
    // the page shows one run; the one it leaves keeps going on the server, unwatched
    if (previous !== null && previous !== runId) socket.send({ cmd: "unsubscribe", run_id: previous });
    tracker.attach(runId);
    clearShown();
    controls.showSpeed(null); // a run trains at full speed unless its replay says otherwise
    socket.attach(runId);
    void writeHashNow();
  };
  /**
   * What the open tab's views watch: streamed for the shown run while it is live; asked for once
   * (probes) when it has ended, so a tab opened after the end shows the trained network.
   */
  const pushWatch = (): void => {
    const snap = tracker.snapshot;
    if (liveViews === null || snap.runId === null) return;
    const live = snap.state === "queued" || snap.state === "running" || snap.state === "paused";
    const ended = snap.state === "finished" || snap.state === "stopped";
    if (!live && !ended) return;
    // the run's data kind (its summary; before that, the document's dataset) decides which views apply
    const kind = snap.summary?.dataset.kind ?? reg.datasets.find((d) => d.name === store.experiment.data.name)?.kind ?? null;
    const views = streamable(watchedNow(), liveViews, kind);
    if (live) demand.update(snap.runId, views);
    else endedProbes.update(snap.runId, views);
  };
  const watchedNow = (): WatchedViews => mergeWatched((viewHosts.get(store.ui.tab) ?? []).map((v) => v.watch?.()));

  // ---- panels ------------------------------------------------------------------
  const editor = new NetworkEditor(store, (m, k) => toasts.show(m, k));
  const dataPanel = new DataPanel(store);
  const training = new TrainingPanel(store, {
    running: () => tracker.active && tracker.snapshot.runId !== null,
    sendLive: (patch) => withRun((run_id) => socket.send({ cmd: "set", run_id, ...patch })),
    runShape: () => {
      const r = editor.lastValidation.result;
      // total_steps is null for a run that trains until stopped
      return r?.steps_per_epoch ? { stepsPerEpoch: r.steps_per_epoch, totalSteps: r.total_steps ?? null } : null;
    },
  });
  const help = new Help();
  const files = new FileMenu({
    load: (experiment, label) => {
      // a lesson preset opens its steps beside the views; the editor gets the document without them
      store.setExperiment(lessons.adopt(experiment));
      editor.select(null);
      toasts.show(`loaded ${label} (Ctrl+Z to go back)`);
    },
    current: () => store.experiment,
    // the state only: a run belongs to this browser's session, so it stays out of links for others
    shareLink: async () => `${location.origin}${location.pathname}${location.search}#${await encodeState(store.state)}`,
    toast: (m, k) => toasts.show(m, k),
  });
  files.setList(presets);
  // issue 10: the class bar and the teacher's pushed lesson (shown only when this browser is in a class)
  const classroom = new ClassroomBar({
    load: (experiment, label) => {
      store.setExperiment(normalizeExperiment(experiment));
      editor.select(null);
      toasts.show(`loaded ${label} (Ctrl+Z to go back)`);
    },
    toast: (m, k) => toasts.show(m, k),
    leave: () => socket.close(),
  });
  const lessons = new LessonGuide({
    store,
    presets,
    startRun: (experiment, paused) => startRun(experiment, paused),
    run: () => tracker.snapshot,
    onRun: (cb) => void tracker.subscribe(cb),
    send: (cmd) => socket.send(cmd),
    showTab: (tab) => store.setUI({ tab }),
    showSide: (side) => store.setUI({ side }),
    overlay: () => views.find((v): v is RunsOverlay => v instanceof RunsOverlay) ?? null,
    toast: (m, k) => toasts.show(m, k),
  });
  editor.setRegistry(reg);
  dataPanel.setRegistry(reg);
  training.setRegistry(reg);
  if (health.status === "fulfilled") training.setHealth(health.value);
  if (liveViews !== null) training.setLiveViews(liveViews);
  editor.onValidation((v) => {
    controls.setValid(v.result?.ok ?? false);
    training.sync();
  });
  let addressRun: string | null = initialRun;
  tracker.subscribe((snap) => {
    if (stepWhenOpened !== null && snap.runId && snap.runId !== stepWhenOpened && snap.state === "paused") {
      stepWhenOpened = null;
      socket.send({ cmd: "step", run_id: snap.runId });
    } else if (stepWhenOpened !== null && (snap.state === "failed" || (snap.state === "idle" && snap.error))) stepWhenOpened = null;
    controls.update(snap);
    training.setLive(tracker.active && snap.runId !== null);
    training.markStep(snap.metrics?.step ?? null, snap.metrics?.lr ?? null);
    if (snap.runId !== addressRun) {
      addressRun = snap.runId;
      void writeHashNow();
    }
    pushWatch();
  });

  // ---- the view context ------------------------------------------------------------
  const ctx: ViewContext = {
    send: (cmd) => socket.send(cmd),
    runId: () => tracker.snapshot.runId,
    classes: () => tracker.snapshot.summary?.dataset.classes ?? dataPanel.currentPreview?.classes ?? [],
    theme: () => store.ui.theme,
    requestFrame: (cb) => frames.request(cb),
    api: <T,>(path: string, init?: RequestInit) => api<T>(path, init),
    onThemeChange: (cb) => {
      themeListeners.add(cb);
      return () => themeListeners.delete(cb);
    },
    watchChanged: () => pushWatch(),
  };

  // ---- layout --------------------------------------------------------------------
  const nameInput = h("input.exp-name", { type: "text", name: "experiment_name", "aria-label": "experiment name", spellcheck: "false", maxlength: 200 });
  nameInput.addEventListener("input", () => store.edit((doc) => void (doc.name = nameInput.value), { coalesce: "name" }));
  const undoBtn = h("button.icon#undo", { type: "button", title: "undo (Ctrl+Z)", onclick: () => store.undo() }, "↶");
  const redoBtn = h("button.icon#redo", { type: "button", title: "redo (Ctrl+Shift+Z)", onclick: () => store.redo() }, "↷");
  const themeBtn = h("button.icon#theme", { type: "button", title: "dark / light theme", onclick: () => store.setUI({ theme: store.ui.theme === "dark" ? "light" : "dark" }) }, "◐");
  // an icon like the theme's: the top bar also holds the run controls, the speed and the status line
  const projectorBtn = h("button.icon.toggle#projector", { type: "button", title: "projector mode: large type, high contrast", "aria-label": "projector mode", onclick: () => store.setUI({ projector: !store.ui.projector }) }, "A⁺");
  const helpBtn = h("button.icon#help", { type: "button", title: "shortcuts (?)", onclick: () => help.toggle() }, "?");

  const sideButtons = new Map<SidePanel, HTMLButtonElement>();
  const sideBodies = new Map<SidePanel, HTMLElement>([
    ["data", dataPanel.el],
    ["network", editor.el],
    ["train", training.el],
  ]);
  const sideTabs = h("div.side-tabs", { role: "tablist" },
    SIDE_PANELS.map((id) => {
      const b = h("button.side-tab", { type: "button", role: "tab", "data-side": id, onclick: () => store.setUI({ side: id }) }, SIDE_TITLES[id]);
      sideButtons.set(id, b);
      return b;
    }));
  const side = h("aside.side", null, sideTabs, h("div.side-body", null, [...sideBodies.values()]));

  const TAB_SPECS = tabSpecs({
    showTab: (tab) => store.setUI({ tab }),
    openRun: (runId) => void openRun(runId),
    search: {
      experiment: () => store.experiment,
      openRun: (runId) => void openRun(runId),
      useValues: (lr, l2) => store.edit((doc) => {
        doc.train = { ...(doc.train ?? {}), l2 };
        doc.train.optimizer = { ...(doc.train.optimizer ?? { kind: "sgd" }), lr } as typeof doc.train.optimizer;
      }),
      toast: (m, k) => toasts.show(m, k),
      ready: (view) => void (searchView = view),
    },
  });
  /**
   * The Search tab for a document (lesson 21's step "search coarse then fine"): loads `doc` into the
   * editor when it differs (undoable), fills the search form for it and shows the tab; `start` starts it.
   */
  const openSearch = (doc: Experiment, options: { start?: boolean } = {}): void => {
    const wanted = normalizeExperiment(withoutLesson(doc));
    if (JSON.stringify(wanted) !== JSON.stringify(store.experiment)) store.setExperiment(wanted);
    store.setUI({ tab: "search" });
    searchView?.prefill(store.experiment, options);
  };
  const tabButtons = new Map<TabId, HTMLButtonElement>();
  const tabPanels = new Map<TabId, HTMLElement>();
  for (const spec of TAB_SPECS) {
    const button = h("button.tab", { type: "button", role: "tab", "data-tab": spec.id, title: spec.hint, onclick: () => store.setUI({ tab: spec.id }) }, spec.title);
    tabButtons.set(spec.id, button);
    const panel = h("section.tab-panel", { "data-tab": spec.id, role: "tabpanel" });
    const hosted: View[] = [];
    for (const slot of spec.views) {
      const box = h(`div.view-box${slot.wide ? ".wide" : ""}`, { "data-view": slot.name });
      panel.append(box);
      try {
        const view = slot.create(box, ctx);
        views.push(view);
        hosted.push(view);
      } catch (err) {
        console.error(`view ${slot.name} failed to start`, err);
        box.replaceChildren(h("div.error-box", null, `${slot.name} failed to start: ${(err as Error).message}`));
      }
    }
    if (!spec.views.length) panel.append(h("div.empty-tab", null, h("b", null, spec.title), h("p.muted", null, spec.hint)));
    tabPanels.set(spec.id, panel);
    viewHosts.set(spec.id, hosted);
  }
  const main = h("main.main", null,
    h("nav.tabs", { role: "tablist" }, [...tabButtons.values()]),
    h("div.tab-panels", null, [...tabPanels.values()]));

  const brand = h("div.brand", { title: "dlplay: the deep-learning playground" }, logo(), h("span", null, "dlplay"));
  const topbar = h("header.topbar", null,
    brand, nameInput, files.el, lessons.list.button, h("span.sep"), undoBtn, redoBtn, h("span.spacer"),
    controls.el, h("span.sep"), themeBtn, projectorBtn, helpBtn);
  root.replaceChildren(topbar, classroom.el, h("div.workspace", null, side, main, lessons.panel.el), help.el, lessons.list.el, toasts.el);

  // ---- state -> DOM ------------------------------------------------------------------
  let lastTab: TabId | null = null;
  const applyUI = (): void => {
    const ui = store.ui;
    const html = document.documentElement;
    const themeChanged = html.dataset.theme !== ui.theme || html.dataset.projector !== String(ui.projector);
    html.dataset.theme = ui.theme;
    html.dataset.projector = String(ui.projector);
    html.dataset.watch = String(watching);
    projectorBtn.classList.toggle("on", ui.projector);
    for (const [id, b] of sideButtons) b.setAttribute("aria-selected", String(id === ui.side));
    for (const [id, body] of sideBodies) body.hidden = id !== ui.side;
    for (const [id, b] of tabButtons) b.setAttribute("aria-selected", String(id === ui.tab));
    for (const [id, p] of tabPanels) p.hidden = id !== ui.tab;
    if (ui.tab !== lastTab || themeChanged) {
      const tabChanged = ui.tab !== lastTab;
      lastTab = ui.tab;
      for (const view of viewHosts.get(ui.tab) ?? []) safely(() => view.resize?.());
      if (tabChanged) pushWatch();
    }
    if (themeChanged) {
      for (const cb of themeListeners) safely(() => cb(ui.theme));
      editor.refresh(false);
    }
  };
  const applyExperiment = (): void => {
    const doc = store.experiment;
    if (document.activeElement !== nameInput) nameInput.value = doc.name ?? "";
    document.title = `${doc.name && doc.name !== "untitled" ? `${doc.name} · ` : ""}dlplay`;
    undoBtn.disabled = !store.canUndo();
    redoBtn.disabled = !store.canRedo();
    const kind = reg.datasets.find((d) => d.name === doc.data.name)?.kind;
    for (const spec of TAB_SPECS) tabButtons.get(spec.id)?.classList.toggle("dim", !!kind && !!spec.kinds && !spec.kinds.includes(kind));
  };
  let writtenHash = location.hash.replace(/^#/, "");
  let hashVersion = 0; // encoding is async: only the newest state may write the address bar
  /** The address: the state, and the shown run so a reload or a second tab reattaches to it. */
  async function writeHashNow(): Promise<void> {
    const version = ++hashVersion;
    const hash = withWatch(hashWithRun(await encodeState(store.state), tracker.snapshot.runId), watching);
    if (version !== hashVersion || hash === writtenHash) return;
    writtenHash = hash;
    history.replaceState(history.state, "", `#${hash}`);
  }
  const writeHash = debounce(() => void writeHashNow(), HASH_DELAY_MS);
  store.subscribe((_, changed) => {
    if (changed.has("ui")) applyUI();
    if (changed.has("experiment")) applyExperiment();
    writeHash();
  });
  window.addEventListener("hashchange", () => {
    const hash = location.hash.replace(/^#/, "");
    if (hash === writtenHash) return;
    writtenHash = hash;
    const run = runFromHash(hash);
    if (run !== null && run !== tracker.snapshot.runId) attachRun(run);
    decodeState(hash)
      .then((state) => state && store.load(state))
      .catch((err: Error) => toasts.show(`the link is damaged: ${err.message}`, "error"));
  });

  /** The Runs tab's "open": the run's network in the editor, its history and views in the tabs. */
  async function openRun(runId: string): Promise<void> {
    let info: RunInfo;
    try {
      info = await endpoints.run(runId);
    } catch (err) {
      toasts.show(`cannot open run ${runId}: ${(err as Error).message}`, "error");
      return;
    }
    if (info.experiment && JSON.stringify(normalizeExperiment(info.experiment)) !== JSON.stringify(store.experiment)) {
      store.setExperiment(info.experiment);
      editor.select(null);
    }
    // the tab first: attachRun writes the address at once, and a reload right after must find the tab in it too
    store.setUI({ tab: "training" });
    attachRun(runId);
    toasts.show(`opened run “${info.name ?? runId}” (Ctrl+Z brings back the network you had)`);
  }
  applyUI();
  applyExperiment();
  if (!initial) writeHash();

  // ---- keyboard --------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement | null;
    const editing = !!target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
    const mod = e.ctrlKey || e.metaKey;
    if (e.key === "Escape" && help.open) return help.hide();
    if (mod && e.key === "Enter") {
      e.preventDefault();
      startRun();
      return;
    }
    if (editing) return;
    if (mod && (e.key === "z" || e.key === "Z")) {
      e.preventDefault();
      if (e.shiftKey) store.redo();
      else store.undo();
      return;
    }
    if (mod && (e.key === "y" || e.key === "Y")) {
      e.preventDefault();
      store.redo();
      return;
    }
    if (mod || e.altKey && !/^Arrow/.test(e.key)) return;
    if (e.key === "?") {
      help.toggle();
      return;
    }
    if (e.key === " " && target?.tagName !== "BUTTON") {
      e.preventDefault();
      controls.toggle();
      return;
    }
    if (/^[1-7]$/.test(e.key) && !e.altKey) {
      const tab = TABS[Number(e.key) - 1];
      if (tab) store.setUI({ tab });
      return;
    }
    if (store.ui.side === "network" && editor.handleKey(e)) e.preventDefault();
  });

  if (initialRun !== null) attachRun(initialRun);
  socket.connect();
  classroom.start();
  if (watching && initialRun !== null) classroom.watch(initialRun);
  // Closed when the page is hidden for good or put in the back/forward cache; a page restored
  // from that cache (Back, then Forward) reconnects and resumes from the last seq it saw.
  window.addEventListener("pagehide", () => socket.close());
  window.addEventListener("pageshow", (e) => {
    if (e.persisted && socket.status === "closed") socket.connect();
  });

  // Test and console hooks: the e2e tests drive and inspect the page through these.
  (window as unknown as { __dlplay: unknown }).__dlplay = {
    store,
    socket,
    tracker,
    editor,
    seqLog: () => [...seqLog],
    /** messages of `type` received for the shown run */
    received: (type: string) => received.get(type) ?? 0,
    /** the newest message of `type` received for the shown run */
    last: (type: string) => lastOfType.get(type) ?? null,
    presetName: (id: string) => presets.find((p) => p.id === id)?.experiment.name ?? null,
    /** the live views the open tab watches now (what `views` sends for a live run) */
    watching: () => watchedNow(),
    /** the frame clock's live views, or null on a server without one */
    liveViews,
    openRun: (id: string) => openRun(id),
    /** the Search tab: openSearch(presetDoc, {start?}) and the view (its `current` search) */
    openSearch,
    search: () => searchView,
    /** the guided lesson: open a preset's lesson, the compared runs */
    lessons,
    encodeState,
    decodeState,
    ready: true,
  };
}

/**
 * Without a link: the widest preset on a 2D set (it trains in seconds and the boundary view
 * shows at once), else the first preset.
 */
function startingExperiment(reg: Registry, presets: PresetInfo[]): Experiment {
  const is2d = (p: PresetInfo): boolean => reg.datasets.find((d) => d.name === p.experiment.data.name)?.kind === "2d";
  const width = (p: PresetInfo): number =>
    p.experiment.network.layers.reduce((sum, l) => sum + Number((l as { out_features?: number }).out_features ?? 0), 0);
  const chosen = presets.filter(is2d).sort((a, b) => width(b) - width(a))[0] ?? presets[0];
  if (chosen) return chosen.experiment;
  return { name: "untitled", data: { name: reg.datasets[0]?.name ?? "" }, network: { layers: [] } };
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    console.error(err);
  }
}

function logo(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "logo");
  svg.innerHTML =
    '<circle cx="5" cy="6" r="2.6"/><circle cx="5" cy="18" r="2.6"/><circle cx="12" cy="12" r="2.6"/><circle cx="19" cy="6" r="2.6"/><circle cx="19" cy="18" r="2.6"/>' +
    '<path d="M7.3 7.2 9.8 10.6M7.3 16.8l2.5-3.4M14.2 10.6l2.5-3.4M14.2 13.4l2.5 3.4" fill="none" stroke-width="1.6"/>';
  return svg;
}

void boot();
