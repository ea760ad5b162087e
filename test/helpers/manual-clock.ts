/**
 * Clocks that test helpers take instead of reading the time themselves: the real one by default, a
 * manual one in tests that check timing, which then advance time by hand instead of sleeping.
 */

/** The time source and timers a helper uses. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The process's own clock and timers. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Timer {
  due: number;
  seq: number;
  fn: () => void;
}

/** A clock that stands still until {@link ManualClock.advance} moves it; timers fire in due order. */
export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  constructor(start = 1_000_000) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer: Timer = { due: this.time + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return timer;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as Timer);
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves the time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.timers) {
        if (
          t.due <= end &&
          (next === undefined || t.due < next.due || (t.due === next.due && t.seq < next.seq))
        )
          next = t;
      }
      if (next === undefined) break;
      this.timers.delete(next);
      this.time = next.due;
      next.fn();
    }
    this.time = end;
  }
}
