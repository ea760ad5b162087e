/**
 * The replication API of one server: the compatible routes (create, replace, get, list, mode,
 * delete), Ferry's status, failures, and `follow()` over the events stream.
 */
import type {
  ReplicationDetail,
  ReplicationFailures,
  ReplicationListItem,
  ReplicationMode,
  ReplicationSettingsRequest,
  ModeRequest,
  ReplicationList,
} from '../protocol/replications.js';
import { FINAL_STATES, type ReplicationStatus, type StateEvent } from '../protocol/replication-status.js';
import type { U64 } from '../protocol/buckets.js';
import { parseJson } from '../protocol/json.js';
import { isFerryError } from '../protocol/errors.js';
import type { VerifyResult } from '../protocol/verify.js';
import { delay } from './delay.js';
import type { Timestamp } from './records.js';
import { readSse } from './sse.js';
import { encodePath, type CallOptions, type Transport } from './transport.js';

/** Options of {@link Replications.verify}. */
export interface VerifyOptions extends CallOptions {
  /** Ship what is missing or different, then verify again. */
  repair?: boolean;
  /** With `repair`: also remove records that only the destination holds. */
  removeExtra?: boolean;
  /** Compare from this timestamp (µs, inclusive). */
  start?: Timestamp;
  /** Compare up to this timestamp (µs, exclusive). */
  stop?: Timestamp;
  /** Source entries or patterns to compare (default: the replication's scope). */
  entries?: string[];
}

/** One event of {@link Replications.follow}. */
export type ReplicationEvent =
  { type: 'status'; status: ReplicationStatus } | { type: 'state'; state: StateEvent };

/** Options of {@link Replications.follow}. */
export interface FollowOptions {
  /** Stops following (the iterator then ends without an error). */
  signal?: AbortSignal;
  /** Most one status snapshot per this many ms (server default 1000). */
  intervalMs?: number;
  /** First reconnection delay after the stream broke (default 250 ms), doubled up to `maxBackoffMs`. */
  backoffMs?: number;
  /** Longest reconnection delay (default 10 s). */
  maxBackoffMs?: number;
  /** Give up after this many failed reconnections in a row (default: never). */
  maxRetries?: number;
  /** Time limit to open the stream, per attempt (default: the client's timeout). */
  timeoutMs?: number;
}

/** Replications of one server; obtained as `client.replications`. */
export class Replications {
  constructor(private readonly http: Transport) {}

  private path(name: string, suffix = ''): string {
    return `replications/${encodePath(name)}${suffix}`;
  }

  /**
   * Every replication with its info, sorted by name.
   * @example
   * for (const r of await client.replications.list()) console.log(r.name, r.mode, r.pending_records);
   */
  async list(opts: CallOptions = {}): Promise<ReplicationListItem<U64>[]> {
    return (await this.http.json<ReplicationList<U64>>({ ...opts, method: 'GET', path: 'replications' }))
      .replications;
  }

  /**
   * Info, settings (token masked) and hourly diagnostics of one replication; 404 if unknown.
   * @example
   * const { info, settings, diagnostics } = await client.replications.get('to-cloud');
   */
  get(name: string, opts: CallOptions = {}): Promise<ReplicationDetail<U64>> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name) });
  }

  /**
   * Creates a replication (does not contact the destination).
   * @example
   * await client.replications.create('to-cloud', {
   *   src_bucket: 'cameras',
   *   dst_bucket: 'robot-1',
   *   dst_host: 'https://cloud:8383',
   *   dst_token: process.env.CLOUD_TOKEN,
   *   when: { '&quality': { $eq: 'ok' } },
   * });
   */
  async create(name: string, settings: ReplicationSettingsRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'POST', path: this.path(name), json: settings });
  }

  /**
   * Replaces the settings (fields left out take their defaults; a missing `dst_token` is kept).
   * @example
   * await client.replications.replace('to-cloud', { src_bucket: 'cameras', dst_bucket: 'b', dst_host: url });
   */
  async replace(name: string, settings: ReplicationSettingsRequest, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'PUT', path: this.path(name), json: settings });
  }

  /**
   * Switches the mode: `paused` keeps collecting work, `disabled` drops it, `enabled` ships.
   * @example
   * await client.replications.setMode('to-cloud', 'paused');
   */
  async setMode(name: string, mode: ReplicationMode, opts: CallOptions = {}): Promise<void> {
    const body: ModeRequest = { mode };
    await this.http.empty({ ...opts, method: 'PATCH', path: this.path(name, '/mode'), json: body });
  }

  /**
   * Deletes a replication (the data already copied stays at the destination).
   * @example
   * await client.replications.delete('to-cloud');
   */
  async delete(name: string, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'DELETE', path: this.path(name) });
  }

  /**
   * Ferry's full status: state and reason, counters, pending work, lag, throughput, last error.
   * @example
   * const s = await client.replications.status('to-cloud');
   * console.log(s.state, s.pending_records, s.lag_ms, s.throughput.last_10s.records_per_sec);
   */
  status(name: string, opts: CallOptions = {}): Promise<ReplicationStatus> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name, '/status') });
  }

  /**
   * Records the destination refused and that were skipped (`on_write_failure: "skip"`), newest first.
   * @example
   * const { total, failures } = await client.replications.failures('to-cloud');
   */
  failures(name: string, opts: CallOptions = {}): Promise<ReplicationFailures<U64>> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name, '/failures') });
  }

  /**
   * Verifies that the destination holds exactly the replication's scope (range digests, no blob
   * read), optionally repairing it; answers when done. Long verifications: raise `timeoutMs`, and
   * watch `activeTasks()` for progress meanwhile.
   * @example
   * const r = await client.replications.verify('to-cloud', { repair: true, timeoutMs: 600_000 });
   * console.log(r.outcome, r.totals.missing, r.repair?.written);
   */
  verify(name: string, o: VerifyOptions = {}): Promise<VerifyResult> {
    const body: Record<string, unknown> = {};
    if (o.start !== undefined) body.start = BigInt(o.start);
    if (o.stop !== undefined) body.stop = BigInt(o.stop);
    if (o.entries !== undefined) body.entries = o.entries;
    if (o.removeExtra) body.remove_extra = true;
    return this.http.json({
      ...o,
      method: 'POST',
      path: this.path(name, '/verify'),
      query: { repair: o.repair ? true : undefined },
      json: body,
    });
  }

  /**
   * The last verification's result with its time (kept across restarts); 404 if never verified.
   * @example
   * const { outcome, finished_at } = await client.replications.lastVerify('to-cloud');
   */
  lastVerify(name: string, opts: CallOptions = {}): Promise<VerifyResult> {
    return this.http.json({ ...opts, method: 'GET', path: this.path(name, '/verify') });
  }

  /**
   * Follows a replication live: a `status` snapshot on connect and whenever something changed, and
   * a `state` event at every transition. Reconnects with backoff when the stream breaks; ends after
   * the state `completed` (a one-shot), when the signal aborts, or when you break out of the loop.
   * A 4xx answer (404 unknown replication, 401, 403) ends it with that error; network failures and
   * 5xx answers are retried (give `maxRetries` to bound that).
   * @example
   * for await (const ev of client.replications.follow('backfill')) {
   *   if (ev.type === 'status') console.log(ev.status.state, ev.status.pending_records);
   *   else console.log(`${ev.state.from} → ${ev.state.to}`);
   * }
   */
  async *follow(name: string, opts: FollowOptions = {}): AsyncGenerator<ReplicationEvent> {
    const base = opts.backoffMs ?? 250;
    const max = opts.maxBackoffMs ?? 10_000;
    let wait = base;
    let failures = 0;
    while (!opts.signal?.aborted) {
      let sawEvent = false;
      let finished = false;
      try {
        const { response, done } = await this.http.send({
          method: 'GET',
          path: this.path(name, '/events'),
          query: { interval_ms: opts.intervalMs },
          headers: { accept: 'text/event-stream' },
          signal: opts.signal,
          timeoutMs: opts.timeoutMs,
          stream: true,
        });
        try {
          // 204: the run has finished and the server has nothing more to send.
          if (response.status === 204) return;
          if (!response.body) throw new Error('events answer without a body');
          for await (const ev of readSse(response.body)) {
            const item = toEvent(ev.event, ev.data);
            if (!item) continue;
            sawEvent = true;
            failures = 0;
            wait = base;
            yield item;
            // The server ends the stream after `completed`; read on so the last events arrive too.
            if (isFinal(item)) finished = true;
          }
        } finally {
          done();
        }
        if (finished) return;
      } catch (e) {
        if (opts.signal?.aborted) return;
        // A 4xx answer (unknown replication, bad token) will not change by retrying; 5xx may.
        if (isFerryError(e) && e.status >= 400 && e.status < 500) throw e;
        if (!sawEvent) failures++;
        if (opts.maxRetries !== undefined && failures > opts.maxRetries) throw e;
      }
      try {
        await delay(wait, opts.signal);
      } catch {
        return;
      }
      wait = Math.min(max, wait * 2);
    }
  }
}

function toEvent(event: string, data: string): ReplicationEvent | undefined {
  if (event === 'status') return { type: 'status', status: parseJson(data) as ReplicationStatus };
  if (event === 'state') return { type: 'state', state: parseJson(data) as StateEvent };
  return undefined;
}

function isFinal(ev: ReplicationEvent): boolean {
  return FINAL_STATES.has(ev.type === 'status' ? ev.status.state : ev.state.to);
}
