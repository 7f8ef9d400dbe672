/**
 * The shared animation-frame scheduler (ViewContext.requestFrame): every callback
 * requested before the next frame runs once in it, however many times it was requested,
 * so a burst of 50 messages costs one draw. A throwing callback does not stop the others.
 */
export class FrameScheduler {
  private pending = new Set<() => void>();
  private handle: number | null = null;

  request(cb: () => void): void {
    this.pending.add(cb);
    if (this.handle === null) this.handle = requestAnimationFrame(() => this.flush());
  }

  private flush(): void {
    this.handle = null;
    const callbacks = [...this.pending];
    this.pending.clear();
    for (const cb of callbacks) {
      try {
        cb();
      } catch (err) {
        // One broken view must not blank the others; surface it where developers look.
        console.error("view draw failed", err);
      }
    }
  }
}
