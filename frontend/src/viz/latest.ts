/**
 * Work on the newest item of a fast stream, one at a time: while one item is being
 * processed (decoded, say), newer ones replace each other, and the newest is taken
 * next. A view that gets 20 frames a second but needs 80 ms to decode one then shows
 * every frame it can, always the most recent, and never falls behind.
 */
export class Latest<T> {
  private waiting: T | null = null;
  private busy = false;
  private generation = 0;

  /** `work(item, current)`: `current()` turns false once reset() was called (drop the result then). */
  constructor(private readonly work: (item: T, current: () => boolean) => Promise<void>) {}

  push(item: T): void {
    this.waiting = item;
    this.pump();
  }

  /** Forget the waiting item; the one in progress finishes but its `current()` is false. */
  reset(): void {
    this.waiting = null;
    this.generation += 1;
  }

  private pump(): void {
    const item = this.waiting;
    if (this.busy || item === null) return;
    this.waiting = null;
    this.busy = true;
    const generation = this.generation;
    const current = (): boolean => generation === this.generation;
    this.work(item, current)
      .catch((err: unknown) => console.warn("a live frame could not be shown", err))
      .finally(() => {
        this.busy = false;
        this.pump();
      });
  }
}
