/**
 * Concurrent write load for crash tests: writers that use every write path (single records through
 * reduct-js, v1 batches as raw HTTP, v2 batches through reduct-js) and record, in a ledger, what every
 * attempted write sent and which ones the server acknowledged.
 */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { Client, type Bucket } from 'reduct-js';
import type { RecordDigest } from './records.js';
import { seededBytes, seededRandom } from './seed.js';

/** What one attempted write sent, plus whether the server acknowledged it. */
export interface AttemptedRecord extends RecordDigest {
  entry: string;
  ts: bigint;
  acked: boolean;
  /** Load round (0-based) in which it was written. */
  round: number;
}

/** Every write ever attempted against one bucket, keyed `entry@ts` like {@link BucketSnapshot}. */
export class WriteLedger {
  readonly records = new Map<string, AttemptedRecord>();
  /** Per write path: attempted and acknowledged record counts. */
  readonly stats: Record<WritePath, { attempted: number; acked: number; requests: number }> = {
    single: { attempted: 0, acked: 0, requests: 0 },
    v1: { attempted: 0, acked: 0, requests: 0 },
    v2: { attempted: 0, acked: 0, requests: 0 },
  };

  attempt(rec: Omit<AttemptedRecord, 'acked'>, path: WritePath): AttemptedRecord {
    const key = `${rec.entry}@${rec.ts}`;
    if (this.records.has(key)) throw new Error(`workload bug: ${key} attempted twice`);
    const full: AttemptedRecord = { ...rec, acked: false };
    this.records.set(key, full);
    this.stats[path].attempted++;
    return full;
  }

  ack(rec: AttemptedRecord, path: WritePath): void {
    rec.acked = true;
    this.stats[path].acked++;
  }

  acked(): AttemptedRecord[] {
    return [...this.records.values()].filter((r) => r.acked);
  }
}

/** The three write paths exercised. */
export type WritePath = 'single' | 'v1' | 'v2';

const CONTENT_TYPES = [
  'application/octet-stream',
  'text/plain',
  'image/jpeg',
  'application/x-ferry.test+bin',
];

/** Options of {@link runWriters}. */
export interface WorkloadOptions {
  url: string;
  token: string;
  bucket: string;
  writers: number;
  ledger: WriteLedger;
  round: number;
  /**
   * Names the seeded random streams of this load (see `seed.ts`): writer `i` draws from
   * `<seedName>/writer-<i>`, so its choices and payloads replay with the run's seed whatever the
   * interleaving of the writers.
   */
  seedName: string;
  /** Called after each acknowledged record. */
  onAck?: (path: WritePath) => void;
  /** Hands out unique timestamps (a crash test never reuses one: an unacknowledged write may exist). */
  nextTs: (count: number) => bigint;
  /** Writers stop starting new requests once this returns true. */
  stopped: () => boolean;
}

function pickSize(rnd: () => number): number {
  const x = rnd();
  if (x < 0.15) return 0;
  if (x < 0.55) return 1024;
  if (x < 0.8) return 64 * 1024;
  if (x < 0.97) return 1 + Math.floor(rnd() * 8191);
  return 1024 * 1024 + Math.floor(rnd() * 4096);
}

function pickLabels(rnd: () => number, writer: number, round: number): Record<string, string> {
  const labels: Record<string, string> = { writer: String(writer), round: String(round) };
  if (rnd() < 0.5) labels.score = (rnd() * 100).toFixed(3);
  if (rnd() < 0.2) labels.flag = rnd() < 0.5 ? 'true' : 'false';
  if (rnd() < 0.15) labels.list = '[a,b]'; // needs quoting in batch headers
  return labels;
}

interface Planned {
  entry: string;
  ts: bigint;
  payload: Buffer;
  contentType: string;
  labels: Record<string, string>;
}

function plan(rnd: () => number, o: WorkloadOptions, writer: number, entry: string, ts: bigint): Planned {
  return {
    entry,
    ts,
    payload: seededBytes(rnd, pickSize(rnd)),
    contentType: CONTENT_TYPES[Math.floor(rnd() * CONTENT_TYPES.length)]!,
    labels: pickLabels(rnd, writer, o.round),
  };
}

function attempt(o: WorkloadOptions, p: Planned, path: WritePath): AttemptedRecord {
  return o.ledger.attempt(
    {
      entry: p.entry,
      ts: p.ts,
      size: p.payload.length,
      sha256: createHash('sha256').update(p.payload).digest('hex'),
      contentType: p.contentType,
      labels: p.labels,
      round: o.round,
    },
    path,
  );
}

function acknowledge(o: WorkloadOptions, rec: AttemptedRecord, path: WritePath): void {
  o.ledger.ack(rec, path);
  o.onAck?.(path);
}

/** Encodes one v1 batch header value (api.md §10.1): quoted when the value holds a comma. */
function v1Header(p: Planned): string {
  const labels = Object.entries(p.labels).map(([k, v]) => `${k}=${v.includes(',') ? `"${v}"` : v}`);
  return [String(p.payload.length), p.contentType, ...labels].join(',');
}

async function writeSingle(o: WorkloadOptions, bucket: Bucket, p: Planned): Promise<void> {
  const rec = attempt(o, p, 'single');
  o.ledger.stats.single.requests++;
  const w = await bucket.beginWrite(p.entry, { ts: p.ts, contentType: p.contentType, labels: p.labels });
  await w.write(p.payload);
  acknowledge(o, rec, 'single');
}

async function writeV1(o: WorkloadOptions, records: Planned[]): Promise<void> {
  const entry = records[0]!.entry;
  const headers: Record<string, string> = {
    authorization: `Bearer ${o.token}`,
    'content-type': 'application/octet-stream',
  };
  for (const p of records) headers[`x-reduct-time-${p.ts}`] = v1Header(p);
  const attempted = records.map((p) => attempt(o, p, 'v1'));
  o.ledger.stats.v1.requests++;
  const res = await request(`${o.url}/api/v1/b/${o.bucket}/${entry}/batch`, {
    method: 'POST',
    headers,
    body: Buffer.concat(records.map((p) => p.payload)),
  });
  await res.body.dump();
  if (res.statusCode !== 200) return;
  for (const rec of attempted) {
    if (res.headers[`x-reduct-error-${rec.ts}`] === undefined) acknowledge(o, rec, 'v1');
  }
}

async function writeV2(o: WorkloadOptions, bucket: Bucket, records: Planned[]): Promise<void> {
  const batch = bucket.beginWriteRecordBatch();
  for (const p of records) batch.add(p.entry, p.ts, p.payload, p.contentType, p.labels);
  const attempted = records.map((p) => attempt(o, p, 'v2'));
  o.ledger.stats.v2.requests++;
  const errors = await batch.send();
  for (const rec of attempted) {
    if (errors.get(rec.entry)?.get(rec.ts) === undefined) acknowledge(o, rec, 'v2');
  }
}

async function writerLoop(o: WorkloadOptions, writer: number): Promise<void> {
  const client = new Client(o.url, { apiToken: o.token });
  const bucket = await client.getBucket(o.bucket);
  const rnd = seededRandom(`${o.seedName}/writer-${writer}`);
  const main = `w${writer}`;
  const nested = `w${writer}/cam/${writer % 2 === 0 ? 'left' : 'right'}`;
  while (!o.stopped()) {
    const kind = rnd();
    try {
      if (kind < 0.4) {
        await writeSingle(o, bucket, plan(rnd, o, writer, rnd() < 0.7 ? main : nested, o.nextTs(1)));
      } else if (kind < 0.7) {
        const n = 1 + Math.floor(rnd() * 8);
        const base = o.nextTs(n);
        const entry = rnd() < 0.7 ? main : nested;
        await writeV1(
          o,
          Array.from({ length: n }, (_, i) => plan(rnd, o, writer, entry, base + BigInt(i))),
        );
      } else {
        // Entries do not interleave in time within one batch: reduct-js orders v2 payloads by time
        // and is only correct in that case (api.md §11.2).
        const a = 1 + Math.floor(rnd() * 5);
        const b = Math.floor(rnd() * 4);
        const base = o.nextTs(a + b);
        const records = [
          ...Array.from({ length: a }, (_, i) => plan(rnd, o, writer, main, base + BigInt(i))),
          ...Array.from({ length: b }, (_, i) => plan(rnd, o, writer, nested, base + BigInt(a + i))),
        ];
        await writeV2(o, bucket, records);
      }
    } catch {
      // Refused or cut off by the crash: whatever it was, it stays unacknowledged.
      if (o.stopped()) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** Runs `o.writers` concurrent writers until `o.stopped()` and every in-flight request settled. */
export async function runWriters(o: WorkloadOptions): Promise<void> {
  await Promise.all(Array.from({ length: o.writers }, (_, i) => writerLoop(o, i)));
}
