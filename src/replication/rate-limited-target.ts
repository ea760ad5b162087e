/**
 * `rate_limit: {bytes_per_sec}` (replication.md §3) as a Target decorator, so that the engine and
 * both targets stay as they are: every write is cut into pieces of at most a tenth of a second of
 * payload and each piece waits for its bytes in a {@link TokenBucket} (with a quarter of a second of credit
 * for time lost to stalls) before it goes to the inner target. The shipments in flight of one replication share its bucket. Payload bytes are counted
 * (what the counters call bytes); label updates carry none and pass at once.
 */
import type { RateLimitStatus } from '../protocol/replication-status.js';
import { TokenBucket } from './token-bucket.js';
import { realClock, type Clock } from './clock.js';
import type { ItemOutcome, ShipRecord, Target } from './target.js';

/**
 * Lost time credited back (ms): a stall of the destination up to a quarter of a second is made up for
 * afterwards, and a 10 s stretch can exceed the limit by at most 2.5%.
 */
const BURST_MS = 250;
/** A throttled stretch ended less than this long ago: status still says `throttling`. */
const THROTTLING_HOLD_MS = 1000;

/**
 * Window bytes of a rate-limited replication: at most one second of payload, so that shipments
 * queued behind each other in the bucket finish well within the engine's watchdog.
 */
export function rateLimitedBatchBytes(bytesPerSec: number): number {
  return Math.max(4096, Math.floor(bytesPerSec));
}

/** A target whose writes are paced to `bytesPerSec`. */
export class RateLimitedTarget implements Target {
  private readonly bucket: TokenBucket;
  private readonly pieceBytes: number;
  private abort = new AbortController();

  constructor(
    private readonly inner: Target,
    readonly bytesPerSec: number,
    private readonly timers: Clock = realClock,
    burstMs = BURST_MS,
  ) {
    this.bucket = new TokenBucket(bytesPerSec, timers, burstMs);
    this.pieceBytes = Math.max(1, Math.floor(bytesPerSec / 10));
  }

  get description(): string {
    return this.inner.description;
  }

  get instanceId(): string {
    return this.inner.instanceId;
  }

  get available(): boolean {
    return this.inner.available;
  }

  prepare(): Promise<void> {
    return this.inner.prepare();
  }

  async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const out: ItemOutcome[] = [];
    const signal = this.abort.signal;
    for (let i = 0; i < records.length;) {
      // at least one record per piece, however large
      let j = i + 1;
      let bytes = records[i]!.size;
      while (j < records.length && bytes + records[j]!.size <= this.pieceBytes) bytes += records[j++]!.size;
      await this.bucket.take(bytes, signal);
      out.push(...(await this.inner.write(entry, records.slice(i, j))));
      i = j;
    }
    return out;
  }

  update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return this.inner.update(entry, records);
  }

  async reset(): Promise<void> {
    this.abort.abort(new Error('Shipment abandoned while waiting for the rate limit'));
    this.abort = new AbortController();
    await this.inner.reset();
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('Replication stopped'));
    await this.inner.close();
  }

  /** The `rate_limit` status, given the replication's pending payload bytes. */
  status(pendingBytes: number): RateLimitStatus {
    const s = this.bucket.state();
    const now = this.timers.now();
    const recent = s.lastThrottledAt !== null && now - s.lastThrottledAt < THROTTLING_HOLD_MS;
    return {
      bytes_per_sec: this.bytesPerSec,
      throttling: s.waiting > 0 || recent,
      throttled_since: s.throttledSince === null ? null : new Date(s.throttledSince).toISOString(),
      waiting_bytes: s.waitingBytes,
      delay_ms: Math.round(s.delayMs),
      throttled_ms: Math.round(s.throttledMs),
      catch_up_ms: Math.round(Math.max(s.delayMs, (pendingBytes / this.bytesPerSec) * 1000)),
    };
  }
}
