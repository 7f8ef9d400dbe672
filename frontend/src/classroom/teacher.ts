/**
 * The teacher's dashboard (/teacher): the class's join code, address and QR code for the board;
 * joining, leaderboard and end-of-class controls; "Push a lesson"; and every student's current
 * run as small multiples, live from /ws/class, sortable and filterable, beside the leaderboard.
 * A card's "Open" shows that run full size and read-only in a new tab (`/#run=<id>&watch=1`).
 *
 * The projector toggle enlarges the whole dashboard with the viewport (text at least 18 px at
 * 1920×1080) and leaves the lesson form out, so the cards fill the screen.
 */

import "../styles.css";
import "./teacher.css";
import { h } from "../dom";
import { Toasts } from "../toast";
import { ClassFeed, type FeedStatus } from "./ClassFeed";
import {
  classEndpoints, errorCode, errorText, rememberClass, type ClassInfo, type ClassState, type Leaderboard, type RunAction, type StudentSummary,
} from "./classApi";
import { confirmAction } from "./confirm";
import { LeaderboardTable } from "./LeaderboardTable";
import { LessonForm } from "./LessonForm";
import { formatCode, rankStudents, rowsFromServer, visibleStudents, type SortKey, type StateFilter } from "./model";
import { applyStoredTheme, currentTheme, logo, setProjector, setTheme, storedProjector } from "./pageTheme";
import { StudentCard } from "./StudentCard";

const LEADERBOARD_POLL_MS = 2000; // the server's ranking, refreshed while the dashboard is open
const BOARD_SOON_MS = 500; // after a student's best changes: at most two leaderboard requests a second
const RUN_ACTION_TEXT: Record<RunAction, string> = { pause: "paused", resume: "resumed", stop: "stopped" };

async function boot(): Promise<void> {
  applyStoredTheme();
  setProjector(storedProjector());
  const root = document.getElementById("app");
  if (!root) return;
  const toasts = new Toasts();

  let state: ClassState;
  try {
    state = await classEndpoints.state();
  } catch (err) {
    root.replaceChildren(refusal(err), toasts.el);
    return;
  }
  let klass: ClassInfo = state.class;
  rememberClass("teacher"); // the main page then shows the teacher's class bar (and watch mode's owner name)

  // ---- the class strip: title, code, address, QR, controls ----------------------------------------
  const title = h("h1.t-title", null, klass.title || "Class");
  const code = h("div.t-code#class-code", { title: "the join code: students type it on the join page" });
  const joinUrl = h("a.t-url#join-url", { target: "_blank", rel: "noopener" });
  const qr = h("img.t-qr#join-qr", { alt: "QR code of the join address", width: 112, height: 112 });
  const joinState = h("span.t-joining");
  const joiningBtn = h("button.btn#joining-toggle", { type: "button", onclick: () => void toggleJoining() });
  const publishBtn = h("button.btn#publish-toggle", { type: "button", onclick: () => void togglePublish() });
  const endBtn = h("button.btn.danger#end-class", { type: "button", onclick: () => void endClass() }, "End class");
  const copyBtn = h("button.btn#copy-url", { type: "button", title: "copy the join address", onclick: () => void copyUrl() }, "Copy");

  const feedBadge = h("span.feed-badge#feed-status", { title: "the live feed of the students' runs" }, "connecting…");
  const themeBtn = h("button.icon#theme", { type: "button", title: "dark / light theme", onclick: () => toggleTheme() }, "◐");
  const projectorBtn = h("button.btn.toggle#projector", {
    type: "button", title: "projector mode: the dashboard fills the screen, large type", "aria-pressed": "false",
    onclick: () => toggleProjector(),
  }, "Projector");

  // ---- the students: toolbar, cards, leaderboard --------------------------------------------------
  let sort: SortKey = "name";
  let stateFilter: StateFilter = "all";
  let text = "";
  const sortSelect = h("select#sort", { "aria-label": "sort students by" },
    h("option", { value: "name" }, "Sort: name"),
    h("option", { value: "best" }, "Sort: best val acc"),
    h("option", { value: "step" }, "Sort: step"));
  sortSelect.addEventListener("change", () => {
    sort = sortSelect.value as SortKey;
    layoutCards();
  });
  const filterButtons = (["all", "training", "idle", "failed"] as const).map((f) =>
    h("button.seg", { type: "button", "data-filter": f, "aria-pressed": String(f === "all"), onclick: () => setFilter(f) },
      f === "all" ? "All" : f[0]!.toUpperCase() + f.slice(1)));
  const search = h("input#name-filter", { type: "search", placeholder: "Filter by name", "aria-label": "filter students by name" });
  search.addEventListener("input", () => {
    text = search.value;
    layoutCards();
  });
  const count = h("span.t-count#student-count");
  const grid = h("div.cards#cards", { "aria-live": "off" });
  const emptyNote = h("div.cards-empty", { hidden: true });
  const leaderboard = new LeaderboardTable();
  const lbNote = h("p.muted.lb-note");
  const lessonForm = new LessonForm({
    toast: (m, k) => toasts.show(m, k),
    maxSteps: () => (typeof klass.quotas?.max_steps === "number" ? klass.quotas.max_steps : null),
    pushed: (lesson) => void (state.lesson = lesson),
  });

  const head = h("header.t-head", null,
    h("div.t-brand", null, logo(), h("span", null, "dlplay"), h("span.t-role", null, "teacher")),
    title, h("span.spacer"), feedBadge, themeBtn, projectorBtn);
  const strip = h("section.t-strip", null,
    h("div.t-code-box", null, h("span.t-caption", null, "Join code"), code),
    h("div.t-where", null,
      h("span.t-caption", null, "Students open"),
      h("div.t-url-line", null, joinUrl, copyBtn),
      h("div.t-joining-line", null, joinState)),
    qr,
    h("div.t-controls", null, joiningBtn, publishBtn, endBtn));
  const studentsPanel = h("section.panel.students", null,
    h("div.students-bar", null,
      h("h2.panel-title", null, "Students ", count),
      h("span.spacer"),
      h("div.segmented", { role: "group", "aria-label": "show students" }, filterButtons),
      search, sortSelect),
    grid, emptyNote);
  const lbPanel = h("section.panel.lb-panel#leaderboard", null,
    h("h2.panel-title", null, "Leaderboard"), leaderboard.el, lbNote);
  const aside = h("aside.t-aside", null, lbPanel, lessonForm.el);
  const ended = h("div.t-ended#class-ended", { hidden: true });
  root.replaceChildren(h("div.teacher", null, head, strip, ended, h("div.t-body", null, studentsPanel, aside)), toasts.el);

  // ---- state -> DOM ---------------------------------------------------------------------------
  const cards = new Map<string, StudentCard>();
  const students = new Map<string, StudentSummary>();

  const showClass = (): void => {
    title.textContent = klass.title || "Class";
    document.title = `${klass.title || "Class"} · dlplay teacher`;
    code.textContent = klass.code ? formatCode(klass.code) : "—";
    const url = klass.join_url ?? `${location.origin}/join`;
    joinUrl.textContent = url.replace(/^https?:\/\//, "");
    joinUrl.href = url;
    if (!qr.src) qr.src = "/api/class/qr.svg?scale=8";
    const open = klass.joining_open !== false;
    joinState.textContent = open ? "Joining is open" : "Joining is closed: new students are refused";
    joinState.dataset.open = String(open);
    joiningBtn.textContent = open ? "Close joining" : "Open joining";
    const published = klass.leaderboard_published === true;
    publishBtn.textContent = published ? "Hide leaderboard" : "Publish leaderboard";
    publishBtn.title = published ? "students see the leaderboard now; hide it from them" : "let students see the leaderboard";
    publishBtn.classList.toggle("on", published);
    lbNote.textContent = published ? "Students see this leaderboard." : "Only you see this leaderboard until you publish it.";
    if (klass.ended_at) showEnded();
  };

  const showEnded = (): void => {
    ended.hidden = false;
    ended.replaceChildren(h("b", null, "This class has ended."), h("span", null, " Students can no longer use the server. Start a new class with "), h("code", null, "dlplay class"), ".");
    for (const b of [joiningBtn, publishBtn, endBtn]) b.disabled = true;
    feed.close();
    feedBadge.textContent = "ended";
    feedBadge.dataset.status = "refused";
  };

  const layoutCards = (): void => {
    const shown = visibleStudents(students.values(), { sort, state: stateFilter, text });
    const wanted = shown.map((s) => {
      let card = cards.get(s.member_id);
      if (!card) {
        card = new StudentCard(s, cardActions);
        cards.set(s.member_id, card);
      }
      return card.el;
    });
    // move only what is out of place: re-appending every card would restart their layout each update
    wanted.forEach((el, i) => {
      if (grid.children[i] !== el) grid.insertBefore(el, grid.children[i] ?? null);
    });
    while (grid.children.length > wanted.length) grid.lastElementChild?.remove();
    for (const el of wanted) if (!el.isConnected) grid.append(el);
    const total = [...students.values()].filter((s) => !s.kicked).length;
    count.textContent = shown.length === total ? `(${total})` : `(${shown.length} of ${total})`;
    emptyNote.hidden = shown.length > 0;
    emptyNote.textContent = total === 0
      ? `No student has joined yet. They open ${joinUrl.textContent || "the join address"} and type ${code.textContent}.`
      : "No student matches the filter.";
    fitProjector(shown.length);
    for (const card of cards.values()) if (card.el.isConnected) card.redraw();
  };

  /**
   * Projector mode: as many columns as give the largest cards (about 4:3) that fit the screen below
   * the grid's top, so a few students fill it and many still read from the back row; the page
   * scrolls only when even the smallest readable cards do not fit.
   */
  const fitProjector = (n: number): void => {
    if (document.documentElement.dataset.projector !== "true" || n === 0) {
      grid.style.gridTemplateColumns = "";
      grid.style.gridAutoRows = "";
      return;
    }
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const gap = parseFloat(getComputedStyle(grid).rowGap) || 0;
    const width = grid.clientWidth;
    const height = window.innerHeight - (grid.getBoundingClientRect().top + window.scrollY) - 2.2 * rem;
    const minWidth = 13.5 * rem; // narrower and the name, the state and the curves' values no longer fit
    const minHeight = 10.5 * rem; // shorter and the curves are gone
    // every column count whose cards are wide enough: those that fit the screen rank by the card's
    // usable size (about 4:3); when none fits, the fewest rows (the least scrolling) wins
    let best = { score: -Infinity, columns: 1, rowHeight: minHeight };
    for (let columns = 1; columns <= n; columns++) {
      const cardWidth = (width - gap * (columns - 1)) / columns;
      if (cardWidth < minWidth && columns > 1) break;
      const rows = Math.ceil(n / columns);
      const rowHeight = (height - gap * (rows - 1)) / rows;
      const score = rowHeight >= minHeight ? Math.min(cardWidth, rowHeight * 1.35) : -rows;
      if (score > best.score) best = { score, columns, rowHeight: Math.max(minHeight, rowHeight) };
    }
    grid.style.gridTemplateColumns = `repeat(${best.columns}, minmax(0, 1fr))`;
    grid.style.gridAutoRows = `${Math.floor(best.rowHeight)}px`;
  };

  const setFilter = (f: StateFilter): void => {
    stateFilter = f;
    for (const b of filterButtons) b.setAttribute("aria-pressed", String(b.dataset.filter === f));
    layoutCards();
  };

  const applySummaries = (list: StudentSummary[], full: boolean): void => {
    // a student's best changed (or someone joined or left): the leaderboard follows within half a second
    if (full || list.some((s) => students.get(s.member_id)?.best_val_acc !== s.best_val_acc)) refreshBoardSoon();
    if (full) students.clear();
    for (const s of list) {
      students.set(s.member_id, s);
      cards.get(s.member_id)?.update(s);
    }
    for (const id of [...cards.keys()]) if (!students.has(id)) cards.delete(id);
    layoutCards();
  };

  // ---- actions --------------------------------------------------------------------------------
  const cardActions = {
    run: (runId: string, action: RunAction, name: string) => {
      classEndpoints.runAction(runId, action)
        .then(() => toasts.show(`${name}'s run ${RUN_ACTION_TEXT[action]}`))
        .catch((err) => toasts.show(`cannot ${action} ${name}'s run: ${errorText(err)}`, "error"));
    },
    kick: (memberId: string, name: string) => {
      void confirmAction(`Remove ${name} from the class?`, `${name}'s runs stop and their browser can no longer use the server. They could join again with the code while joining is open.`, "Remove")
        .then((yes) => {
          if (!yes) return;
          classEndpoints.kick(memberId)
            .then(() => {
              toasts.show(`${name} was removed from the class`);
              const s = students.get(memberId);
              if (s) applySummaries([{ ...s, kicked: true }], false);
            })
            .catch((err) => toasts.show(`cannot remove ${name}: ${errorText(err)}`, "error"));
        });
    },
    open: (runId: string) => {
      window.open(`/#run=${encodeURIComponent(runId)}&watch=1`, "_blank", "noopener");
    },
  };

  async function toggleJoining(): Promise<void> {
    const open = klass.joining_open === false;
    try {
      await classEndpoints.setJoining(open);
      klass = { ...klass, joining_open: open };
      showClass();
      toasts.show(open ? "joining is open" : "joining is closed: the code no longer lets anyone in");
    } catch (err) {
      toasts.show(`cannot ${open ? "open" : "close"} joining: ${errorText(err)}`, "error");
    }
  }

  async function togglePublish(): Promise<void> {
    const published = klass.leaderboard_published !== true;
    try {
      await classEndpoints.publishLeaderboard(published);
      klass = { ...klass, leaderboard_published: published };
      showClass();
      toasts.show(published ? "students can see the leaderboard" : "the leaderboard is hidden from students");
    } catch (err) {
      toasts.show(`cannot ${published ? "publish" : "hide"} the leaderboard: ${errorText(err)}`, "error");
    }
  }

  async function endClass(): Promise<void> {
    const yes = await confirmAction("End the class?", "Every student's runs stop and their browsers can no longer use the server. The runs stay stored. This cannot be undone.", "End class");
    if (!yes) return;
    try {
      await classEndpoints.end();
      klass = { ...klass, ended_at: Date.now() / 1000 };
      showEnded();
    } catch (err) {
      toasts.show(`cannot end the class: ${errorText(err)}`, "error");
    }
  }

  async function copyUrl(): Promise<void> {
    try {
      await navigator.clipboard.writeText(joinUrl.href);
      toasts.show("join address copied");
    } catch {
      toasts.show(`copy it by hand: ${joinUrl.href}`, "error");
    }
  }

  function toggleTheme(): void {
    setTheme(currentTheme() === "dark" ? "light" : "dark");
    for (const card of cards.values()) card.redraw();
  }

  function toggleProjector(): void {
    const on = document.documentElement.dataset.projector !== "true";
    setProjector(on);
    projectorBtn.classList.toggle("on", on);
    projectorBtn.setAttribute("aria-pressed", String(on));
    requestAnimationFrame(() => layoutCards()); // after the larger type has laid the page out
  }
  projectorBtn.classList.toggle("on", storedProjector());
  projectorBtn.setAttribute("aria-pressed", String(storedProjector()));

  // ---- the leaderboard: the server ranks (a student's best run), the live summaries meanwhile ----------
  let lastBoard: Leaderboard | null = null;
  const refreshLeaderboard = async (): Promise<void> => {
    try {
      lastBoard = await classEndpoints.leaderboard();
      leaderboard.set(rowsFromServer(lastBoard.rows), lastBoard.challenge);
    } catch {
      leaderboard.set(rankStudents(students.values()), state.lesson?.challenge ?? null);
    }
  };
  let boardPending = false;
  function refreshBoardSoon(): void {
    if (boardPending) return;
    boardPending = true;
    setTimeout(() => {
      boardPending = false;
      void refreshLeaderboard();
    }, BOARD_SOON_MS);
  }
  const pollLeaderboard = (): void => {
    if (klass.ended_at) return;
    void refreshLeaderboard().finally(() => setTimeout(pollLeaderboard, LEADERBOARD_POLL_MS));
  };

  // ---- the live feed --------------------------------------------------------------------------
  const FEED_TEXT: Record<FeedStatus, string> = { connecting: "connecting…", open: "live", reconnecting: "reconnecting…", refused: "not live" };
  const feed = new ClassFeed({
    snapshot: (k, list) => {
      klass = { ...klass, ...k };
      showClass();
      applySummaries(list, true);
    },
    update: (list) => applySummaries(list, false),
    status: (status, detail) => {
      feedBadge.textContent = FEED_TEXT[status];
      feedBadge.dataset.status = status;
      feedBadge.title = detail || "the live feed of the students' runs";
      if (status === "refused") toasts.show(`the live feed stopped: ${detail}`, "error");
    },
  });

  new ResizeObserver(() => {
    for (const card of cards.values()) card.redraw();
  }).observe(grid);
  window.addEventListener("resize", () => layoutCards());

  // Until the feed's first snapshot: the members GET /api/class listed, with no run yet.
  applySummaries(state.members.filter((m) => !m.kicked).map((m) => ({
    member_id: m.id, name: m.name, run_id: null, state: "idle", step: 0, loss: [], val_acc: [], best_val_acc: null, network: "", params: null,
  })), true);
  showClass();
  lessonForm.showCurrent(state.lesson);
  void lessonForm.load();
  feed.connect();
  pollLeaderboard();
  window.addEventListener("pagehide", () => feed.close());

  // Test hooks: the e2e tests read the dashboard through these.
  (window as unknown as { __dlplayTeacher: unknown }).__dlplayTeacher = {
    ready: true,
    feed,
    students: () => [...students.values()],
    leaderboard: () => lastBoard,
  };
}

/** The page for a browser that is not the class's teacher, or a server with no class: what to do instead. */
function refusal(err: unknown): HTMLElement {
  const code = errorCode(err);
  const status = (err as { status?: number }).status;
  const [head, fix] =
    code === "not_teacher" || code === "not_in_class" || status === 401 || status === 403
      ? ["This is the teacher's dashboard", "Open the teacher link that `dlplay class` printed in its terminal (it ends in ?key=…); it signs this browser in as the teacher."]
      : code === "no_class" || status === 404
        ? ["No class is open on this server", "Start one with `dlplay class`, then open the teacher link it prints."]
        : ["Cannot load the class", `${errorText(err)}. Fix: check that the server is running, then reload.`];
  return h("div.t-refused", null, h("div.t-brand", null, logo(), h("span", null, "dlplay")), h("h1", null, head), h("p", null, fix),
    code || status ? h("p.muted.small", null, errorText(err)) : null);
}

void boot();
