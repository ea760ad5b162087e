/**
 * The `$system` bucket (api.md §14.2): server-written audit events and WARN-or-worse log messages.
 *
 * Requests are counted in memory, aggregated by (token, method, path, status), and flushed once a
 * second as one small JSON record per aggregate into `audit/<instance>/<token>`; log messages go to
 * `logs/<instance>/messages`. Aggregation keeps a busy server from doubling its write load with
 * audit records. Nothing here ever throws into the request path: failures to write are counted
 * in `dropped` and otherwise ignored (logging them would feed back into this bucket).
 */
import { isFerryError } from '../protocol/errors.js';
import { stringifyJson } from '../protocol/json.js';
import type { FerryConfig } from '../config/types.js';
import type { Bucket, Labels, Storage } from '../storage/types.js';

/** Name of the system bucket. */
export const SYSTEM_BUCKET = '$system';

const FLUSH_INTERVAL_MS = 1000;
/** Upper bounds of what is buffered between flushes; beyond them events are dropped and counted. */
const MAX_AUDIT_KEYS = 10_000;
const MAX_LOG_MESSAGES = 1_000;
const MAX_MESSAGE_LENGTH = 4096;

interface AuditAggregate {
  entry: string;
  tokenName: string;
  method: string;
  path: string;
  status: number;
  count: number;
  firstTs: bigint;
  lastTs: bigint;
}

interface PendingRecord {
  entry: string;
  ts: bigint;
  labels: Labels;
  payload: Buffer;
}

/** Makes a string usable as one segment of an entry name (letters, digits, `-`, `_`). */
function segment(s: string): string {
  const out = s.replace(/[^A-Za-z0-9_-]/g, '_');
  return out === '' ? '_' : out;
}

const nowUs = (): bigint => BigInt(Date.now()) * 1000n;

/** Options of `SystemEvents.open`. */
export interface SystemEventsOptions {
  storage: Storage;
  config: FerryConfig;
  /** Flush period in ms (default 1000). */
  flushIntervalMs?: number;
}

/** Writer of the `$system` bucket. A disabled instance accepts every call and does nothing. */
export class SystemEvents {
  private audits = new Map<string, AuditAggregate>();
  private logs: PendingRecord[] = [];
  private lastTs = new Map<string, bigint>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private droppedCount = 0;
  private closed = false;
  private readonly instance: string;

  private constructor(
    private readonly storage: Storage | undefined,
    private readonly config: FerryConfig,
    flushIntervalMs: number,
  ) {
    this.instance = segment(config.instanceName);
    if (storage) {
      this.timer = setInterval(() => void this.flush(), flushIntervalMs);
      this.timer.unref();
    }
  }

  /**
   * Creates the `$system` bucket when system events are enabled (provisioned, FIFO quota
   * `RS_SYSTEM_EVENTS_QUOTA_SIZE`) and starts the periodic flush.
   */
  static async open(opts: SystemEventsOptions): Promise<SystemEvents> {
    const { storage, config } = opts;
    if (!config.systemEvents.enabled) return new SystemEvents(undefined, config, 0);
    const events = new SystemEvents(storage, config, opts.flushIntervalMs ?? FLUSH_INTERVAL_MS);
    await events.ensureBucket();
    return events;
  }

  /** True when events are written. */
  get enabled(): boolean {
    return this.storage !== undefined;
  }

  /** Events lost because of full buffers or failed writes since start. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Creates `$system` or re-applies its provisioned settings (the engine treats both alike). */
  private ensureBucket(): Promise<Bucket> {
    const quota = { quota_type: 'FIFO' as const, quota_size: this.config.systemEvents.quotaSize };
    return (this.storage as Storage).createBucket(SYSTEM_BUCKET, quota, { provisioned: true });
  }

  /** Records one handled request of an authenticated caller. `path` may carry a query string. */
  audit(tokenName: string, method: string, path: string, status: number): void {
    if (!this.storage || this.closed) return;
    const q = path.indexOf('?');
    const cleanPath = q >= 0 ? path.slice(0, q) : path;
    const key = `${tokenName}\u0000${method}\u0000${cleanPath}\u0000${status}`;
    const ts = nowUs();
    const agg = this.audits.get(key);
    if (agg) {
      agg.count++;
      agg.lastTs = ts;
      return;
    }
    if (this.audits.size >= MAX_AUDIT_KEYS) {
      this.droppedCount++;
      return;
    }
    this.audits.set(key, {
      entry: `audit/${this.instance}/${segment(tokenName)}`,
      tokenName,
      method,
      path: cleanPath,
      status,
      count: 1,
      firstTs: ts,
      lastTs: ts,
    });
  }

  /** Records a WARN or ERROR message of the server log. */
  log(level: 'WARN' | 'ERROR', message: string): void {
    if (!this.storage || this.closed) return;
    if (this.logs.length >= MAX_LOG_MESSAGES) {
      this.droppedCount++;
      return;
    }
    const text = message.length > MAX_MESSAGE_LENGTH ? `${message.slice(0, MAX_MESSAGE_LENGTH)}…` : message;
    this.logs.push({
      entry: `logs/${this.instance}/messages`,
      ts: nowUs(),
      labels: { level },
      payload: Buffer.from(stringifyJson({ level, message: text })),
    });
  }

  /** Records one run of a lifecycle policy in `lifecycles/<instance>/<policy>` (api.md §14.2). */
  lifecycleRun(policy: string, labels: Labels, payload: unknown): void {
    if (!this.storage || this.closed) return;
    if (this.logs.length >= MAX_LOG_MESSAGES) {
      this.droppedCount++;
      return;
    }
    this.logs.push({
      entry: `lifecycles/${this.instance}/${segment(policy)}`,
      ts: nowUs(),
      labels,
      payload: Buffer.from(stringifyJson(payload)),
    });
  }

  /** Writes everything buffered so far. Concurrent calls share one flush. */
  flush(): Promise<void> {
    if (!this.storage) return Promise.resolve();
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.audits.size === 0 && this.logs.length === 0) return Promise.resolve();
    this.flushing = this.writePending().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async writePending(): Promise<void> {
    const records: PendingRecord[] = this.logs;
    this.logs = [];
    for (const a of this.audits.values()) {
      records.push({
        entry: a.entry,
        ts: a.firstTs,
        labels: { method: a.method, status: String(a.status), call_count: String(a.count) },
        payload: Buffer.from(
          stringifyJson({
            token_name: a.tokenName,
            method: a.method,
            path: a.path,
            status: a.status,
            call_count: a.count,
            first_ts: a.firstTs,
            last_ts: a.lastTs,
          }),
        ),
      });
    }
    this.audits.clear();

    let bucket: Bucket;
    try {
      bucket = this.storage!.hasBucket(SYSTEM_BUCKET)
        ? this.storage!.bucket(SYSTEM_BUCKET)
        : await this.ensureBucket();
    } catch {
      this.droppedCount += records.length;
      return;
    }
    // One chain per entry keeps timestamps of an entry ascending; entries are written in parallel
    // so that the engine's group commit makes one fsync of the lot.
    const byEntry = new Map<string, PendingRecord[]>();
    for (const r of records) {
      const list = byEntry.get(r.entry);
      if (list) list.push(r);
      else byEntry.set(r.entry, [r]);
    }
    await Promise.all(
      [...byEntry.values()].map(async (list) => {
        list.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
        for (const r of list) await this.writeOne(bucket, r);
      }),
    );
  }

  private async writeOne(bucket: Bucket, r: PendingRecord): Promise<void> {
    const last = this.lastTs.get(r.entry);
    let ts = last !== undefined && r.ts <= last ? last + 1n : r.ts;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await bucket.write(
          r.entry,
          ts,
          { size: r.payload.length, contentType: 'application/json', labels: r.labels },
          r.payload,
        );
        this.lastTs.set(r.entry, ts);
        return;
      } catch (e) {
        // A record from before a restart may hold this timestamp: move past it.
        if (isFerryError(e) && e.status === 409) {
          ts += 1n;
          continue;
        }
        break;
      }
    }
    this.droppedCount++;
  }

  /** Stops the timer and writes what is still buffered. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
  }
}
