/**
 * A byte-rate pacer (a token bucket kept as its theoretical arrival time): `take(n)` resolves when
 * `n` more bytes may go out without exceeding the rate. Time the sender lost (a stalled request, a
 * slow disk at the destination) is credited up to `burstMs`, so a short stall does not cost its
 * bandwidth for good; over any interval T the bytes released are at most `rate × (T + burstMs)`
 * plus the one reservation in progress.
 */
import type { Clock } from './clock.js';

/** What the pacer reports about itself (status of a rate-limited replication). */
export interface PacerState {
  /** Bytes reserved by callers that are still waiting. */
  waitingBytes: number;
  /** Callers waiting now. */
  waiting: number;
  /** How long a new reservation would wait now (ms). */
  delayMs: number;
  /** Total time callers have waited (ms, summed per wait episode of the bucket). */
  throttledMs: number;
  /** When the current stretch of waiting began (null when nobody waits). */
  throttledSince: number | null;
  /** End of the last wait (null: never waited). */
  lastThrottledAt: number | null;
}

/** Paces bytes to `bytesPerSec`. */
export class TokenBucket {
  /** Time (ms) at which everything reserved so far has been paid for. */
  private paidUntil: number;
  private waitingBytes = 0;
  private waiting = 0;
  private throttledMs = 0;
  private throttledSince: number | null = null;
  private lastThrottledAt: number | null = null;

  constructor(
    readonly bytesPerSec: number,
    private readonly timers: Clock,
    /** Credit for lost time (ms of the rate); 0 = none. */
    private readonly burstMs = 0,
  ) {
    this.paidUntil = timers.now();
  }

  /**
   * Reserves `bytes` and resolves when they may be sent. Reservations are served in call order;
   * an aborted wait gives its reservation back only when nothing was reserved after it.
   */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = this.timers.now();
    const start = Math.max(now - this.burstMs, this.paidUntil);
    const cost = (bytes / this.bytesPerSec) * 1000;
    this.paidUntil = start + cost;
    const wait = start - now;
    if (wait <= 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    this.waiting++;
    this.waitingBytes += bytes;
    this.throttledSince ??= now;
    return new Promise<void>((resolve, reject) => {
      const end = (): void => {
        signal?.removeEventListener('abort', onAbort);
        this.waiting--;
        this.waitingBytes -= bytes;
        const at = this.timers.now();
        this.lastThrottledAt = at;
        if (this.waiting === 0) {
          this.throttledMs += at - (this.throttledSince ?? at);
          this.throttledSince = null;
        }
      };
      const timer = this.timers.setTimeout(() => {
        end();
        resolve();
      }, wait);
      const onAbort = (): void => {
        this.timers.clearTimeout(timer);
        if (this.paidUntil === start + cost) this.paidUntil = Math.max(this.timers.now(), start);
        end();
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The pacer's figures now. */
  state(): PacerState {
    const now = this.timers.now();
    return {
      waitingBytes: this.waitingBytes,
      waiting: this.waiting,
      delayMs: Math.max(0, this.paidUntil - now),
      throttledMs: this.throttledMs + (this.throttledSince === null ? 0 : now - this.throttledSince),
      throttledSince: this.throttledSince,
      lastThrottledAt: this.lastThrottledAt,
    };
  }
}
