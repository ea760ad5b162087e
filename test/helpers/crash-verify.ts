/**
 * Checks a recovered server against a {@link WriteLedger}: acknowledged records intact, nothing
 * served that was not sent byte for byte, and bucket/entry accounting consistent with what is served.
 */
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { parseJson } from '../../src/protocol/json.js';
import { descriptorSize } from '../../src/storage/descriptor-size.js';
import { snapshotBucket, type BucketSnapshot, type RecordDigest } from './records.js';
import type { AttemptedRecord, WriteLedger } from './crash-workload.js';

/** Outcome of {@link verifyRecovered}: `problems` is empty when everything holds. */
export interface VerifyReport {
  problems: string[];
  snapshot: BucketSnapshot;
  /** Records served by the query. */
  served: number;
  /** Acknowledged records found intact in the query. */
  ackedChecked: number;
  /** Single `GET ?ts=` reads performed. */
  singleReads: number;
  /** Unacknowledged attempts that are served (complete and intact). */
  unackedPresent: number;
  /** Bucket info as served, for comparing across restarts. */
  bucketInfo: unknown;
}

/** Options of {@link verifyRecovered}. */
export interface VerifyOptions {
  /** Which attempted records to read one by one with `GET ?ts=`. */
  singleRead: (rec: AttemptedRecord) => boolean;
  /** Parallel single reads. */
  concurrency?: number;
}

function sameDigest(a: RecordDigest, b: RecordDigest): boolean {
  if (a.size !== b.size || a.sha256 !== b.sha256 || a.contentType !== b.contentType) return false;
  const ka = Object.keys(a.labels).sort();
  const kb = Object.keys(b.labels).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a.labels[k] === b.labels[k]);
}

function describe(d: RecordDigest): string {
  return `${d.size} B sha ${d.sha256.slice(0, 12)} ${d.contentType} ${JSON.stringify(d.labels)}`;
}

interface EntryInfo {
  name: string;
  size: number | bigint;
  record_count: number | bigint;
  oldest_record: number | bigint;
  latest_record: number | bigint;
}

/** Reads one record with `GET /b/{bucket}/{entry}?ts=`; null digest when not answered 200. */
async function readSingle(
  url: string,
  token: string,
  bucket: string,
  rec: AttemptedRecord,
): Promise<{ status: number; digest?: RecordDigest; error?: string }> {
  const res = await request(`${url}/api/v1/b/${bucket}/${rec.entry}?ts=${rec.ts}`, {
    headers: { authorization: `Bearer ${token}` },
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  if (res.statusCode !== 200) {
    await res.body.dump();
    return { status: res.statusCode, error: String(res.headers['x-reduct-error'] ?? '') };
  }
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const labels: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (name.startsWith('x-reduct-label-')) labels[name.slice('x-reduct-label-'.length)] = String(value);
  }
  const declared = Number(res.headers['content-length']);
  if (declared !== size)
    return { status: 200, error: `content-length ${declared} but ${size} bytes arrived` };
  return {
    status: 200,
    digest: { size, sha256: hash.digest('hex'), contentType: String(res.headers['content-type']), labels },
  };
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Verifies the server at `url` against everything the ledger attempted on `bucket`. Never throws for
 * a data problem: each one becomes a line in `problems`.
 */
export async function verifyRecovered(
  url: string,
  token: string,
  bucket: string,
  ledger: WriteLedger,
  opts: VerifyOptions,
): Promise<VerifyReport> {
  const problems: string[] = [];
  const snapshot = await snapshotBucket(url, token, bucket);
  let ackedChecked = 0;
  let unackedPresent = 0;

  for (const [key, rec] of ledger.records) {
    const got = snapshot.get(key);
    if (got === undefined) {
      if (rec.acked) problems.push(`acknowledged ${key} (round ${rec.round}) is missing from the query`);
      continue;
    }
    if (!sameDigest(rec, got)) {
      problems.push(
        `${key} served as ${describe(got)} but was sent as ${describe(rec)} (acked ${rec.acked})`,
      );
    } else if (rec.acked) ackedChecked++;
    else unackedPresent++;
  }
  for (const key of snapshot.keys()) {
    if (!ledger.records.has(key)) problems.push(`query serves ${key}, which was never written`);
  }

  // Single reads: present records must be served intact, absent ones must not be served at all.
  const toRead = [...ledger.records.values()].filter(opts.singleRead);
  await pool(toRead, opts.concurrency ?? 8, async (rec) => {
    const key = `${rec.entry}@${rec.ts}`;
    const inQuery = snapshot.get(key);
    const got = await readSingle(url, token, bucket, rec);
    if (inQuery !== undefined) {
      if (got.digest === undefined)
        problems.push(`GET ${key}: HTTP ${got.status} ${got.error ?? ''} but the query serves it`);
      else if (!sameDigest(inQuery, got.digest)) {
        problems.push(`GET ${key} serves ${describe(got.digest)}, the query ${describe(inQuery)}`);
      }
    } else if (got.status === 200) {
      problems.push(
        `GET ${key} answers 200 (${got.digest ? describe(got.digest) : got.error}) but the query does not serve it`,
      );
    } else if (got.status !== 404) {
      problems.push(
        `GET ${key} (absent, acked ${rec.acked}) answers ${got.status} ${got.error ?? ''}, expected 404`,
      );
    }
  });

  // Accounting: record counts and time ranges exact, sizes within the descriptor-size bounds.
  const res = await request(`${url}/api/v1/b/${bucket}`, { headers: { authorization: `Bearer ${token}` } });
  const bucketInfo = parseJson(await res.body.text()) as {
    info: { size: number | bigint; entry_count: number };
    entries: EntryInfo[];
  };
  const perEntry = new Map<string, { count: number; min: bigint; max: bigint; lo: number; hi: number }>();
  for (const [key, d] of snapshot) {
    const at = key.lastIndexOf('@');
    const entry = key.slice(0, at);
    const ts = BigInt(key.slice(at + 1));
    const e = perEntry.get(entry) ?? { count: 0, min: ts, max: ts, lo: 0, hi: 0 };
    e.count++;
    if (ts < e.min) e.min = ts;
    if (ts > e.max) e.max = ts;
    // begin = 0 is the smallest descriptor; an offset near the 64 MB block limit the largest.
    e.lo += d.size + descriptorSize(ts, 0, d.size, d.contentType, d.labels);
    e.hi += d.size + descriptorSize(ts, 63_000_000, d.size, d.contentType, d.labels);
    perEntry.set(entry, e);
  }
  let sizeSum = 0n;
  for (const info of bucketInfo.entries) {
    sizeSum += BigInt(info.size);
    const e = perEntry.get(info.name);
    const count = Number(info.record_count);
    if (e === undefined) {
      if (count !== 0 || BigInt(info.size) !== 0n) {
        problems.push(
          `entry ${info.name} reports ${count} records / ${info.size} B but the query serves none`,
        );
      }
      continue;
    }
    if (count !== e.count)
      problems.push(`entry ${info.name} reports record_count ${count}, the query serves ${e.count}`);
    if (BigInt(info.oldest_record) !== e.min || BigInt(info.latest_record) !== e.max) {
      problems.push(
        `entry ${info.name} reports ${info.oldest_record}..${info.latest_record}, served ${e.min}..${e.max}`,
      );
    }
    const size = Number(info.size);
    if (size < e.lo || size > e.hi)
      problems.push(`entry ${info.name} reports size ${size}, served records need ${e.lo}..${e.hi}`);
  }
  for (const name of perEntry.keys()) {
    if (!bucketInfo.entries.some((e) => e.name === name))
      problems.push(`entry ${name} is served but not listed`);
  }
  if (BigInt(bucketInfo.info.size) !== sizeSum) {
    problems.push(`bucket size ${bucketInfo.info.size} != sum of entry sizes ${sizeSum}`);
  }

  return {
    problems,
    snapshot,
    served: snapshot.size,
    ackedChecked,
    singleReads: toRead.length,
    unackedPresent,
    bucketInfo,
  };
}
