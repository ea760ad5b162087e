/**
 * The time source and timers of the replication engine's parts, injected so that unit tests can
 * move time by hand (test/helpers/manual-clock.ts implements the same shape).
 */

/** Time (ms since epoch) and timers. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The process's own clock and timers (timers do not keep the process alive). */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
