/**
 * The typed websocket client (/ws; ARCHITECTURE.md "Websocket").
 *
 * - Reconnects by itself with exponential backoff (250 ms doubling to 8 s, with jitter so a
 *   classroom of laptops does not reconnect in lock-step after a server restart).
 * - Tracks the last `seq` seen per run. After a reconnect it first sends
 *   `subscribe {run_id, after_seq}` for the run it follows, so the server replays what was
 *   missed, then flushes commands queued while offline.
 * - Drops duplicates (seq <= last seen), so a replay that overlaps is harmless, and counts
 *   gaps (seq > last + 1) for diagnostics.
 * - `attach(runId)` follows a run from its first message (`subscribe {run_id, after_seq: 0}`):
 *   how a reloaded page, a second tab or a reopened run gets the run's whole history.
 */

import type { ClientCommand, ServerMessage } from "./protocol";

export type SocketStatus = "connecting" | "open" | "reconnecting" | "closed";

export interface SocketHandlers {
  message(msg: ServerMessage): void;
  status?(status: SocketStatus, detail: { attempt: number; retryInMs?: number }): void;
  /**
   * A connection opened and re-subscribed the followed run (queued commands flushed): the
   * server knows nothing else about this page yet, e.g. which live views it watches.
   */
  opened?(): void;
}

const BACKOFF_FIRST_MS = 250; // first retry delay
const BACKOFF_MAX_MS = 8000; // cap on the retry delay
const JITTER = 0.25; // +-25% of the delay

export class Socket {
  private ws: WebSocket | null = null;
  private queue: ClientCommand[] = [];
  private lastSeq = new Map<string, number>();
  private followed: string | null = null;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private closedOnPurpose = false;
  private current: SocketStatus = "closed";
  /** How many times a seq jumped by more than one. */
  gaps = 0;
  /** How many connections were opened (1 + reconnects). */
  opens = 0;

  constructor(
    private readonly url: string,
    private readonly handlers: SocketHandlers,
  ) {}

  get status(): SocketStatus {
    return this.current;
  }

  connect(): void {
    this.closedOnPurpose = false;
    this.open();
  }

  /** Send now, or as soon as the socket is back. */
  send(cmd: ClientCommand): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(cmd));
    else this.queue.push(cmd);
  }

  /** Follow a run: its messages are sequence-checked and it is resubscribed after a reconnect. */
  follow(runId: string | null): void {
    if (runId === this.followed) return;
    this.followed = runId;
    this.gaps = 0;
  }

  get following(): string | null {
    return this.followed;
  }

  /**
   * Follow `runId` from its very first message: what was seen of it before is forgotten and
   * the server replays its whole stream (now, or as soon as the socket is open).
   */
  attach(runId: string): void {
    this.followed = runId;
    this.gaps = 0;
    this.lastSeq.delete(runId);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ cmd: "subscribe", run_id: runId, after_seq: 0 }));
  }

  lastSeqOf(runId: string): number {
    return this.lastSeq.get(runId) ?? 0;
  }

  /** Test hook and "simulate a flaky network" button: kill the connection as a network failure would. */
  drop(): void {
    this.ws?.close(4000, "dropped by the page");
  }

  close(): void {
    this.closedOnPurpose = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.ws?.close(1000, "page closed");
    this.setStatus("closed");
  }

  private open(): void {
    this.setStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.opens += 1;
      this.setStatus("open");
      if (this.followed !== null) {
        ws.send(JSON.stringify({ cmd: "subscribe", run_id: this.followed, after_seq: this.lastSeqOf(this.followed) }));
      }
      const queued = this.queue;
      this.queue = [];
      for (const cmd of queued) ws.send(JSON.stringify(cmd));
      this.handlers.opened?.();
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== "string") return;
      let msg: ServerMessage;
      try {
        msg = JSON.parse(event.data) as ServerMessage;
      } catch {
        return;
      }
      if (this.accept(msg)) this.handlers.message(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closedOnPurpose) return;
      this.scheduleRetry();
    };
    // onerror is always followed by onclose, which retries.
    ws.onerror = () => undefined;
  }

  /** Sequence bookkeeping; false for a duplicate. */
  private accept(msg: ServerMessage): boolean {
    if (msg.run_id === null || msg.run_id === undefined || typeof msg.seq !== "number") return true;
    const last = this.lastSeq.get(msg.run_id) ?? 0;
    if (msg.seq <= last) return false;
    if (msg.seq > last + 1 && last > 0) this.gaps += 1;
    this.lastSeq.set(msg.run_id, msg.seq);
    return true;
  }

  private scheduleRetry(): void {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (1 - JITTER + 2 * JITTER * Math.random()));
    this.attempt += 1;
    this.setStatus("reconnecting", delay);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  private setStatus(status: SocketStatus, retryInMs?: number): void {
    this.current = status;
    this.handlers.status?.(status, retryInMs === undefined ? { attempt: this.attempt } : { attempt: this.attempt, retryInMs });
  }
}

export function socketUrl(): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}
