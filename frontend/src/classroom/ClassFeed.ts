/**
 * The teacher's live feed (/ws/class): a snapshot of every student's current run, then the
 * summaries that changed (at most 4 updates a second). Reconnects by itself with backoff and
 * jitter; every new connection starts with a fresh snapshot, so nothing is lost across a drop.
 */

import { classFeedUrl, type ClassFeedMessage, type ClassInfo, type StudentSummary } from "./classApi";

export type FeedStatus = "connecting" | "open" | "reconnecting" | "refused";

export interface FeedHandlers {
  /** a full picture: every student (after a connect, a join, a kick, a lesson) */
  snapshot(klass: ClassInfo, students: StudentSummary[]): void;
  /** the students whose run moved */
  update(students: StudentSummary[]): void;
  status(status: FeedStatus, detail: string): void;
}

const BACKOFF_FIRST_MS = 500; // first retry delay
const BACKOFF_MAX_MS = 8000; // cap on the retry delay
const JITTER = 0.25; // +-25% of the delay
/** close codes of a refused handshake (not the teacher, or the class ended): retrying cannot help */
const REFUSED = new Set([4401, 4403, 4410]);

export class ClassFeed {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** messages received (a test hook: the dashboard is live) */
  received = 0;

  constructor(private readonly handlers: FeedHandlers) {}

  connect(): void {
    this.closed = false;
    this.open();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.ws?.close(1000, "page closed");
  }

  private open(): void {
    this.handlers.status(this.attempt === 0 ? "connecting" : "reconnecting", "");
    const ws = new WebSocket(classFeedUrl());
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.handlers.status("open", "");
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      let msg: ClassFeedMessage;
      try {
        msg = JSON.parse(event.data) as ClassFeedMessage;
      } catch {
        return;
      }
      this.received += 1;
      if (msg.type === "class_snapshot") this.handlers.snapshot(msg.class, msg.students ?? []);
      else if (msg.type === "class_update") this.handlers.update(msg.students ?? []);
    };
    ws.onclose = (event: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed) return;
      if (REFUSED.has(event.code)) {
        this.handlers.status("refused", event.reason || `the server refused the live feed (${event.code})`);
        return;
      }
      this.retry();
    };
    ws.onerror = () => undefined; // always followed by onclose, which retries
  }

  private retry(): void {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (1 - JITTER + 2 * JITTER * Math.random()));
    this.attempt += 1;
    this.handlers.status("reconnecting", `retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open();
    }, delay);
  }
}
