/**
 * Record-by-record snapshots of a bucket over plain HTTP, to prove that two servers (or one server
 * before and after a crash) hold the same data: nothing lost, duplicated or altered.
 */
import assert from 'node:assert/strict';
import { createHash, type Hash } from 'node:crypto';
import { Agent, request } from 'undici';
import { parseJson } from '../../src/protocol/json.js';
import { readV2Batch, type V2ReadRecord } from './v2-batch-reader.js';

/** What identifies a record's content. */
export interface RecordDigest {
  size: number;
  sha256: string;
  contentType: string;
  labels: Record<string, string>;
}

/** Records keyed by `entry@ts` (ts in µs, decimal). */
export type BucketSnapshot = Map<string, RecordDigest>;

/** Result of {@link diffSnapshots}; every list is sorted. */
export interface SnapshotDiff {
  /** Keys present in `a` but not in `b`. */
  missing: string[];
  /** Keys present in `b` but not in `a`. */
  extra: string[];
  /** Keys present in both whose size, hash, content type or labels differ. */
  different: Array<{ key: string; a: RecordDigest; b: RecordDigest }>;
}

/**
 * Records per read batch of a snapshot (the `#batch_records` directive): the default of 85 makes a
 * 100,000-record snapshot cost 1,200 requests, most of the CPU of reading it; a batch of 1,000 small
 * records carries ~40 KB of v2 headers, hence the agent's larger header limit.
 */
const SNAPSHOT_BATCH_RECORDS = 1000;
const snapshotAgent = new Agent({ maxHeaderSize: 1024 * 1024 });

/** Options of {@link snapshotBucket}. */
export interface SnapshotOptions {
  /** Entry names or patterns to query; default every entry listed by `GET /b/{bucket}`. */
  entries?: string[];
}

function errorOf(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  what: string,
): Error {
  const detail = headers['x-reduct-error'];
  return new Error(`${what}: HTTP ${status}${detail !== undefined ? ` (${String(detail)})` : ''}`);
}

/** Lists the names of the bucket's entries (without `$meta`), or [] when the bucket has none. */
async function entryNames(base: string, auth: Record<string, string>, bucket: string): Promise<string[]> {
  const res = await request(`${base}/api/v1/b/${encodeURIComponent(bucket)}`, { headers: auth });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw errorOf(res.statusCode, res.headers, `GET bucket '${bucket}'`);
  const info = parseJson(text) as { entries?: Array<{ name: string }> };
  return (info.entries ?? []).map((e) => e.name);
}

/**
 * Reads every record of `bucket` through `POST /io/{bucket}/q` and `GET /io/{bucket}/read`, hashing
 * payloads as they stream in. Throws if the server answers with an error or a record key repeats
 * (a duplicate in a query result is a bug by itself).
 */
export async function snapshotBucket(
  url: string,
  token: string,
  bucket: string,
  opts: SnapshotOptions = {},
): Promise<BucketSnapshot> {
  const base = url.replace(/\/+$/, '');
  const auth: Record<string, string> = token !== '' ? { authorization: `Bearer ${token}` } : {};
  const entries = opts.entries ?? (await entryNames(base, auth, bucket));
  const snapshot: BucketSnapshot = new Map();
  if (entries.length === 0) return snapshot;

  const q = await request(`${base}/api/v1/io/${encodeURIComponent(bucket)}/q`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      query_type: 'QUERY',
      entries,
      ttl: 60,
      when: { '#batch_records': SNAPSHOT_BATCH_RECORDS },
    }),
    dispatcher: snapshotAgent,
  });
  const qText = await q.body.text();
  if (q.statusCode !== 200) throw errorOf(q.statusCode, q.headers, `query bucket '${bucket}'`);
  const id = String((parseJson(qText) as { id: bigint | number }).id);

  for (;;) {
    const res = await request(`${base}/api/v1/io/${encodeURIComponent(bucket)}/read`, {
      headers: { ...auth, 'x-reduct-query-id': id },
      dispatcher: snapshotAgent,
    });
    if (res.statusCode === 204) {
      await res.body.dump();
      break;
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw errorOf(res.statusCode, res.headers, `read query ${id} of '${bucket}'`);
    }
    const batch = readV2Batch(res.headers);
    await consumeBody(res.body, batch.records, snapshot);
    if (batch.last) break;
  }
  return snapshot;
}

/** Splits the streamed body into the records of the batch, in order, and hashes each payload. */
async function consumeBody(
  body: AsyncIterable<Buffer>,
  records: V2ReadRecord[],
  out: BucketSnapshot,
): Promise<void> {
  let i = 0;
  let left = 0;
  let hash: Hash | undefined;
  const finishRecord = (): void => {
    const rec = records[i]!;
    const key = `${rec.entry}@${rec.ts}`;
    if (out.has(key)) throw new Error(`record ${key} returned twice by the query`);
    out.set(key, {
      size: rec.size,
      sha256: hash!.digest('hex'),
      contentType: rec.contentType,
      labels: rec.labels,
    });
    i++;
    hash = undefined;
  };
  const startNext = (): void => {
    while (i < records.length && hash === undefined) {
      hash = createHash('sha256');
      left = records[i]!.size;
      if (left === 0) finishRecord();
    }
  };
  startNext();
  for await (const chunk of body) {
    let pos = 0;
    while (pos < chunk.length) {
      if (hash === undefined) throw new Error('batch body is longer than the declared record sizes');
      const take = Math.min(left, chunk.length - pos);
      hash.update(chunk.subarray(pos, pos + take));
      pos += take;
      left -= take;
      if (left === 0) {
        finishRecord();
        startNext();
      }
    }
  }
  if (i < records.length) throw new Error(`batch body ended after ${i} of ${records.length} records`);
}

function sameDigest(a: RecordDigest, b: RecordDigest): boolean {
  if (a.size !== b.size || a.sha256 !== b.sha256 || a.contentType !== b.contentType) return false;
  const ka = Object.keys(a.labels).sort();
  const kb = Object.keys(b.labels).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a.labels[k] === b.labels[k]);
}

/** Compares two snapshots: `a` is the reference (e.g. the source), `b` the copy. */
export function diffSnapshots(a: BucketSnapshot, b: BucketSnapshot): SnapshotDiff {
  const missing: string[] = [];
  const different: SnapshotDiff['different'] = [];
  for (const [key, da] of a) {
    const db = b.get(key);
    if (db === undefined) missing.push(key);
    else if (!sameDigest(da, db)) different.push({ key, a: da, b: db });
  }
  const extra = [...b.keys()].filter((k) => !a.has(k));
  const byKey = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return {
    missing: missing.sort(byKey),
    extra: extra.sort(byKey),
    different: different.sort((x, y) => byKey(x.key, y.key)),
  };
}

/** True when the diff is empty. */
export function isEmptyDiff(d: SnapshotDiff): boolean {
  return d.missing.length === 0 && d.extra.length === 0 && d.different.length === 0;
}

/** Short human-readable summary of a diff (first few keys of each kind), for assertion messages. */
export function formatDiff(d: SnapshotDiff, max = 5): string {
  const list = (keys: string[]): string => keys.slice(0, max).join(', ') + (keys.length > max ? ', …' : '');
  return [
    `missing ${d.missing.length}${d.missing.length ? `: ${list(d.missing)}` : ''}`,
    `extra ${d.extra.length}${d.extra.length ? `: ${list(d.extra)}` : ''}`,
    `different ${d.different.length}${d.different.length ? `: ${list(d.different.map((x) => x.key))}` : ''}`,
  ].join('; ');
}

/** Asserts that `copy` holds exactly the records of `reference`; the message names `what` and the diff. */
export function assertSameSnapshots(
  reference: BucketSnapshot,
  copy: BucketSnapshot,
  what = 'copy vs reference',
): void {
  const d = diffSnapshots(reference, copy);
  assert.ok(isEmptyDiff(d), `${what}: ${formatDiff(d)}`);
}

/** A server to snapshot: its base URL and token. */
export interface SnapshotSource {
  readonly url: string;
  readonly token: string;
}

/**
 * Snapshots bucket `aBucket` of `a` (the reference) and `bBucket` of `b` (the copy) and asserts that
 * they hold the same records: nothing missing, extra or different. Returns both snapshots.
 */
export async function assertSameBuckets(
  a: SnapshotSource,
  aBucket: string,
  b: SnapshotSource,
  bBucket: string,
): Promise<{ a: BucketSnapshot; b: BucketSnapshot }> {
  const [sa, sb] = await Promise.all([
    snapshotBucket(a.url, a.token, aBucket),
    snapshotBucket(b.url, b.token, bBucket),
  ]);
  assertSameSnapshots(sa, sb, `'${bBucket}' at ${b.url} vs '${aBucket}' at ${a.url}`);
  return { a: sa, b: sb };
}
