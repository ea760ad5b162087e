/**
 * Existing records for initial-copy tests (replication.md §6): a seeded plan of records spread over
 * several entries (sizes 0 B to 1 MiB, mostly small, labels and content types varied), written to a
 * real server through v1 batches, with the digest of every record kept so that a copy can be
 * compared with what was written without reading the source back. Timestamps leave gaps so that
 * writes arriving during a copy can land between existing records.
 */
import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import type { ApiNode } from './ferry-api.js';
import type { BucketSnapshot, RecordDigest } from './records.js';
import { seededBytes } from './seed.js';

/** One planned record. */
export interface PlannedRecord {
  entry: string;
  ts: bigint;
  payload: Buffer;
  contentType: string;
  labels: Record<string, string>;
}

/** Entries of the plan; uneven shares, one nested path. */
export const COPY_ENTRIES = ['cam/front', 'cam/back', 'lidar', 'imu', 'log'] as const;
const SHARES = [0.3, 0.2, 0.2, 0.2, 0.1];
const CONTENT_TYPES = ['application/octet-stream', 'image/jpeg', 'text/plain', 'application/x-ferry.copy'];
/** First timestamp of the plan and spacing of records in one entry (live writes fill the gaps). */
export const PLAN_FIRST_TS = 1_000_000n;
export const PLAN_STEP = 16n;
export const MiB = 1024 * 1024;

/** Options of {@link planRecords}. */
export interface PlanOptions {
  count: number;
  /** How many records are exactly 1 MiB (default 8). */
  mib?: number;
  /** How many records are 4..64 KiB (default count / 1000). */
  medium?: number;
}

function pickEntry(rnd: () => number): string {
  let x = rnd();
  for (let i = 0; i < SHARES.length; i++) {
    x -= SHARES[i]!;
    if (x < 0) return COPY_ENTRIES[i]!;
  }
  return COPY_ENTRIES[0]!;
}

/** Labels of the `n`-th record: `quality` good/bad, a numeric `score`, sometimes extra ones. */
export function planLabels(rnd: () => number, n: number): Record<string, string> {
  const labels: Record<string, string> = {
    quality: rnd() < 0.7 ? 'good' : 'bad',
    score: String(Math.floor(rnd() * 100)),
    n: String(n),
  };
  if (rnd() < 0.1) labels.note = 'a,b'; // quoted in v1 batch headers
  return labels;
}

/**
 * Plans `count` records: per entry, timestamps `PLAN_FIRST_TS + k * PLAN_STEP` in order. A few are
 * exactly 1 MiB, a few 4..64 KiB, 5 % empty, the rest 1..300 bytes; every choice from `rnd`.
 */
export function planRecords(rnd: () => number, opts: PlanOptions): PlannedRecord[] {
  const mib = opts.mib ?? 8;
  const medium = opts.medium ?? Math.floor(opts.count / 1000);
  const next = new Map<string, bigint>();
  const out: PlannedRecord[] = [];
  for (let n = 0; n < opts.count; n++) {
    const entry = pickEntry(rnd);
    const ts = next.get(entry) ?? PLAN_FIRST_TS;
    next.set(entry, ts + PLAN_STEP);
    // Large ones spread evenly over the plan so that every phase of a copy ships some.
    const large = mib > 0 && n % Math.floor(opts.count / mib) === 7;
    const mid = !large && medium > 0 && n % Math.floor(opts.count / medium) === 3;
    const x = rnd();
    const size = large
      ? MiB
      : mid
        ? 4096 + Math.floor(rnd() * 60 * 1024)
        : x < 0.05
          ? 0
          : 1 + Math.floor(rnd() * 300);
    out.push({
      entry,
      ts,
      payload: seededBytes(rnd, size),
      contentType: CONTENT_TYPES[Math.floor(rnd() * CONTENT_TYPES.length)]!,
      labels: planLabels(rnd, n),
    });
  }
  return out;
}

/** The digest of a planned record, as a snapshot shows it. */
export function digestOf(r: PlannedRecord): RecordDigest {
  return {
    size: r.payload.length,
    sha256: createHash('sha256').update(r.payload).digest('hex'),
    contentType: r.contentType,
    labels: r.labels,
  };
}

/** The snapshot a bucket holding exactly `records` would give. */
export function expectedSnapshot(records: Iterable<PlannedRecord>): BucketSnapshot {
  const out: BucketSnapshot = new Map();
  for (const r of records) out.set(`${r.entry}@${r.ts}`, digestOf(r));
  return out;
}

function v1Header(r: PlannedRecord): string {
  const labels = Object.entries(r.labels).map(([k, v]) => `${k}=${v.includes(',') ? `"${v}"` : v}`);
  return [String(r.payload.length), r.contentType, ...labels].join(',');
}

/**
 * Sends one v1 batch of records of one entry; resolves with the records the server acknowledged
 * (none when the request failed as a whole).
 */
export async function writeV1Batch(
  pool: Pool,
  node: ApiNode,
  bucket: string,
  records: PlannedRecord[],
): Promise<PlannedRecord[]> {
  const headers: Record<string, string> = {
    ...(node.token !== '' ? { authorization: `Bearer ${node.token}` } : {}),
    'content-type': 'application/octet-stream',
  };
  for (const r of records) headers[`x-reduct-time-${r.ts}`] = v1Header(r);
  const res = await pool.request({
    method: 'POST',
    path: `/api/v1/b/${bucket}/${encodeURIComponent(records[0]!.entry).replace(/%2F/g, '/')}/batch`,
    headers,
    body: Buffer.concat(records.map((r) => r.payload)),
  });
  await res.body.dump();
  if (res.statusCode !== 200) return [];
  return records.filter((r) => res.headers[`x-reduct-error-${r.ts}`] === undefined);
}

/**
 * Writes `records` to `bucket` (which must exist) in v1 batches of at most `perBatch` records or
 * 4 MiB, grouped by entry, `concurrency` requests at a time. Throws unless every record is acknowledged.
 */
export async function writePlanned(
  node: ApiNode,
  bucket: string,
  records: PlannedRecord[],
  opts: { perBatch?: number; concurrency?: number } = {},
): Promise<void> {
  const perBatch = opts.perBatch ?? 250;
  const batches: PlannedRecord[][] = [];
  const open = new Map<string, { list: PlannedRecord[]; bytes: number }>();
  for (const r of records) {
    let b = open.get(r.entry);
    if (b === undefined || b.list.length >= perBatch || b.bytes + r.payload.length > 4 * MiB) {
      b = { list: [], bytes: 0 };
      open.set(r.entry, b);
      batches.push(b.list);
    }
    b.list.push(r);
    b.bytes += r.payload.length;
  }
  const pool = new Pool(node.url, { connections: opts.concurrency ?? 4 });
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const acked = await writeV1Batch(pool, node, bucket, batch);
        if (acked.length !== batch.length)
          throw new Error(`batch write to '${bucket}': ${acked.length} of ${batch.length} acknowledged`);
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 4 }, worker));
  } finally {
    await pool.close();
  }
}

/**
 * Writes small v1 batches into the entries of a plan while a copy runs, until stopped: after the
 * plan's records, and with `gaps` also between them (in the gaps `PLAN_STEP` leaves). Requests that fail because the
 * server is down are retried later with new records; what the server holds is read back afterwards.
 */
export class LiveWriter {
  /** Records the server acknowledged. */
  readonly acked: PlannedRecord[] = [];
  requests = 0;
  failures = 0;
  private readonly used = new Set<string>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private pool: Pool;
  private tail = new Map<string, bigint>();

  constructor(
    private readonly node: ApiNode,
    private readonly bucket: string,
    /** Every choice (entries, timestamps, sizes, labels), from the run's seed. */
    private readonly rnd: () => number,
    /** Timestamps of the plan per entry end before this one. */
    private readonly planEnd: bigint,
    private readonly opts: {
      entries?: readonly string[];
      pauseMs?: number;
      /** Share of records written between existing ones (default 0: all after them). */
      gaps?: number;
    } = {},
  ) {
    this.pool = new Pool(node.url, { connections: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  }

  start(): this {
    this.loop = this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.pool.close();
  }

  private nextTs(entry: string): bigint {
    for (;;) {
      let ts: bigint;
      if (this.rnd() < (this.opts.gaps ?? 0)) {
        const slot = BigInt(Math.floor(this.rnd() * Number((this.planEnd - PLAN_FIRST_TS) / PLAN_STEP)));
        ts = PLAN_FIRST_TS + slot * PLAN_STEP + 1n + BigInt(Math.floor(this.rnd() * Number(PLAN_STEP - 1n)));
      } else {
        ts = (this.tail.get(entry) ?? this.planEnd) + 1n;
        this.tail.set(entry, ts);
      }
      const key = `${entry}@${ts}`;
      if (!this.used.has(key)) {
        this.used.add(key);
        return ts;
      }
    }
  }

  private async run(): Promise<void> {
    const entries = this.opts.entries ?? COPY_ENTRIES;
    let n = 0;
    while (!this.stopped) {
      const entry = entries[Math.floor(this.rnd() * entries.length)]!;
      const count = 1 + Math.floor(this.rnd() * 20);
      const records: PlannedRecord[] = Array.from({ length: count }, () => ({
        entry,
        ts: this.nextTs(entry),
        payload: seededBytes(this.rnd, Math.floor(this.rnd() * 2000)),
        contentType: CONTENT_TYPES[Math.floor(this.rnd() * CONTENT_TYPES.length)]!,
        labels: { ...planLabels(this.rnd, n++), live: 'yes' },
      }));
      this.requests++;
      try {
        this.acked.push(...(await writeV1Batch(this.pool, this.node, this.bucket, records)));
      } catch {
        this.failures++;
        // a new pool: the old one may hold a connection to the process that was killed
        await this.pool.destroy().catch(() => undefined);
        this.pool = new Pool(this.node.url, { connections: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, this.opts.pauseMs ?? 5));
    }
  }
}
