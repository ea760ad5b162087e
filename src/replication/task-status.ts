/**
 * The `status` object of a replication (replication.md §9) from what the task's parts report, as a
 * pure function: reading status changes nothing. Also the throughput samples it is computed from
 * (one per second while deliveries go on, the last 10 s kept).
 */
import type { Counters } from './checkpoint-store.js';
import type { LastError } from './delivery-health.js';
import type { EffectiveSettings } from './settings.js';
import type { Target } from './target.js';

/** Cumulative delivered records and bytes, sampled at most once a second. */
export class Throughput {
  private readonly samples: Array<[number, number, number]> = [];

  /** Adds a sample at `now` unless the last one is less than a second old. */
  sample(now: number, records: number, bytes: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && now - last[0] < 1000) return;
    this.samples.push([now, records, bytes]);
    if (this.samples.length > 11) this.samples.shift();
  }

  /** Records and bytes per second over the samples; 0 when the last is older than 5 s. */
  rates(now: number): { records_per_sec: number; bytes_per_sec: number } {
    const t0 = this.samples[0];
    const t1 = this.samples[this.samples.length - 1];
    const dt = t0 && t1 && t1[0] > t0[0] ? (t1[0] - t0[0]) / 1000 : 0;
    if (dt === 0 || now - t1![0] >= 5000) return { records_per_sec: 0, bytes_per_sec: 0 };
    return {
      records_per_sec: Math.round((t1![1] - t0![1]) / dt),
      bytes_per_sec: Math.round((t1![2] - t0![2]) / dt),
    };
  }
}

/** What the status is made of. */
export interface StatusView {
  now: number;
  state: { state: string; reason: string | null; since: number };
  target: Target;
  settings: EffectiveSettings;
  cursorLsn: bigint;
  logLastLsn: bigint;
  pending: { records: number; bytes: number; oldest: number | null };
  inFlightBatches: number;
  throughput: Throughput;
  counters: Counters;
  retries: number;
  consecutiveFailures: number;
  lastError: LastError | null;
  retryAt: number | null;
  needsVerify: boolean;
  needsVerifyReason: string | null;
  /** `progress`, `entry_cursors`, `copy` of a run with a copy. */
  copy: object;
  /** `replication_type`, `effective_type` and the sync fields. */
  sync: object;
  /** `group` of a consistency group's replication. */
  group: object;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The status object of GET `/replications/{name}/status`. */
export function taskStatus(v: StatusView): Record<string, unknown> {
  const p = v.pending;
  const log = v.settings.log;
  return {
    state: v.state.state,
    state_reason: v.state.reason,
    since: iso(v.state.since),
    destination: {
      target: v.target.description,
      instance_id: v.target.instanceId || null,
      available: v.target.available,
    },
    cursor_lsn: v.cursorLsn,
    log_last_lsn: v.logLastLsn,
    pending_records: p.records,
    pending_bytes: p.bytes,
    lag_ms: p.records > 0 && p.oldest !== null ? Math.max(0, v.now - p.oldest) : 0,
    in_flight_batches: v.inFlightBatches,
    throughput: v.throughput.rates(v.now),
    counters: { ...v.counters },
    retries: v.retries,
    consecutive_failures: v.consecutiveFailures,
    last_error: v.lastError
      ? { status: v.lastError.status, message: v.lastError.message, at: iso(v.lastError.at) }
      : null,
    next_retry_at: iso(v.retryAt),
    needs_verify: v.needsVerify,
    needs_verify_reason: v.needsVerifyReason,
    log: {
      max_bytes: log.max_bytes,
      on_overflow: log.on_overflow,
      over_bound: log.max_bytes > 0 && p.bytes > log.max_bytes,
    },
    ...v.copy,
    ...v.sync,
    ...v.group,
  };
}
