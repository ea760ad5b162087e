/**
 * The naive comparison of two copies that a user can run without Ferry's verify: read every
 * record's metadata from both instances through the query API (`POST /io/{b}/q`, then batches of
 * `GET|HEAD /io/{b}/read`, protocol v2 as reduct-js reads them) and compare them in this process.
 *
 * The API carries no content digest: with `payloads: false` the query is `only_metadata` (HEAD reads)
 * and a payload of the same size cannot be told apart; with `payloads: true` every payload is read
 * and hashed (SHA-256) here. Bytes are counted on the sockets (requests and answers, headers included).
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { buildConnector, Pool } from 'undici';
import { LAST_HEADER, parseV2Batch, QUERY_ID_HEADER } from '../../src/protocol/batch-v2.js';
import type { Difference, DifferencePart } from './verify-differences.js';

/** A record's metadata as the comparison sees it. */
export interface ApiRecord {
  entry: string;
  ts: bigint;
  size: number;
  contentType: string;
  labels: Record<string, string>;
  /** SHA-256 of the payload (hex) when payloads were read. */
  digest?: string;
}

/** One instance to read from. */
export interface ApiSide {
  url: string;
  token: string;
  bucket: string;
}

/** Options of {@link compareOverApi}. */
export interface ApiCompareOptions {
  /** Read and hash payloads (default false: `only_metadata`). */
  payloads?: boolean;
  /** `#batch_records` of the query (default 10 000; the server's 512 kB metadata limit cuts first). */
  batchRecords?: number;
}

/** Result of {@link compareOverApi}. */
export interface ApiCompareResult {
  seconds: number;
  /** HTTP requests to both instances. */
  requests: number;
  bytesSent: number;
  bytesReceived: number;
  /** Records read from each side. */
  records: [number, number];
  differences: Difference[];
}

/** An undici pool whose sockets count the bytes they move, and the requests made through it. */
class CountingPool {
  readonly pool: Pool;
  requests = 0;
  private readonly sockets: Socket[] = [];

  constructor(url: string) {
    const connect = buildConnector({});
    this.pool = new Pool(url, {
      connections: 1,
      // v2 batch metadata travels in headers (the server allows 512 kB of it per batch)
      maxHeaderSize: 4 * 1024 * 1024,
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
      connect: (opts, cb) =>
        connect(opts, (...args) => {
          if (args[0] === null) this.sockets.push(args[1]);
          cb(...args);
        }),
    });
  }

  bytes(): { sent: number; received: number } {
    let sent = 0;
    let received = 0;
    for (const s of this.sockets) {
      sent += s.bytesWritten;
      received += s.bytesRead;
    }
    return { sent, received };
  }
}

const byKey = (a: ApiRecord, b: ApiRecord): number =>
  a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0;

/** Reads every record of a bucket, one batch at a time, each batch in (ts, entry) order. */
async function* readRecords(
  side: ApiSide,
  http: CountingPool,
  opts: ApiCompareOptions,
): AsyncGenerator<ApiRecord[]> {
  const auth = `Bearer ${side.token}`;
  const q = await http.pool.request({
    method: 'POST',
    path: `/api/v1/io/${side.bucket}/q`,
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      query_type: 'QUERY',
      only_metadata: opts.payloads !== true,
      when: { '#batch_records': opts.batchRecords ?? 10_000 },
    }),
  });
  http.requests++;
  const text = await q.body.text();
  if (q.statusCode !== 200) throw new Error(`query on ${side.url}: HTTP ${q.statusCode} ${text}`);
  const id = String((JSON.parse(text) as { id: number }).id);
  for (;;) {
    const res = await http.pool.request({
      method: opts.payloads === true ? 'GET' : 'HEAD',
      path: `/api/v1/io/${side.bucket}/read`,
      headers: { authorization: auth, [QUERY_ID_HEADER]: id },
    });
    http.requests++;
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode === 204) return;
    if (res.statusCode !== 200) throw new Error(`read on ${side.url}: HTTP ${res.statusCode}`);
    const batch = parseV2Batch(res.headers);
    let offset = 0;
    const records = batch.records.map((r): ApiRecord => {
      const out: ApiRecord = {
        entry: r.entry,
        ts: r.ts,
        size: r.size,
        contentType: r.contentType,
        labels: r.labels,
      };
      if (opts.payloads === true) {
        // the body is ordered as the records are: entry index first, then timestamp
        out.digest = createHash('sha256')
          .update(body.subarray(offset, offset + r.size))
          .digest('hex');
        offset += r.size;
      }
      return out;
    });
    yield records.sort(byKey);
    if (res.headers[LAST_HEADER] === 'true') return;
  }
}

/** A read position in a stream of sorted batches; the next batch is fetched while this one is compared. */
class Cursor {
  private batch: ApiRecord[] = [];
  private i = 0;
  private done = false;
  private pending: Promise<IteratorResult<ApiRecord[]>>;
  count = 0;

  constructor(private readonly it: AsyncIterator<ApiRecord[]>) {
    this.pending = this.fetch();
  }

  private fetch(): Promise<IteratorResult<ApiRecord[]>> {
    const p = this.it.next();
    p.catch(() => undefined); // awaited later; a failure of the other side must not leave it unhandled
    return p;
  }

  /** The current record, or undefined when the batch is used up (then `refill`) or the stream ended. */
  head(): ApiRecord | undefined {
    return this.batch[this.i];
  }

  needsRefill(): boolean {
    return !this.done && this.i >= this.batch.length;
  }

  async refill(): Promise<void> {
    while (this.needsRefill()) {
      const r = await this.pending;
      if (r.done === true) {
        this.done = true;
        return;
      }
      this.batch = r.value;
      this.i = 0;
      this.pending = this.fetch();
    }
  }

  advance(): void {
    this.i++;
    this.count++;
  }
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => a[k] === b[k]);
}

/** What differs between two records of the same entry and timestamp (empty: equal). */
function differingParts(s: ApiRecord, d: ApiRecord): DifferencePart[] {
  const parts: DifferencePart[] = [];
  if (s.contentType !== d.contentType) parts.push('content_type');
  if (!sameLabels(s.labels, d.labels)) parts.push('labels');
  if (s.size !== d.size || s.digest !== d.digest) parts.push('payload');
  return parts.sort();
}

/**
 * Merges two streams of batches, each batch sorted by (ts, entry) and the batches in that order, and
 * lists the records missing in `dst`, extra in `dst` and different. Returns how many records each had.
 */
export async function compareSorted(
  src: AsyncIterable<ApiRecord[]>,
  dst: AsyncIterable<ApiRecord[]>,
): Promise<{ differences: Difference[]; records: [number, number] }> {
  const a = new Cursor(src[Symbol.asyncIterator]());
  const b = new Cursor(dst[Symbol.asyncIterator]());
  const differences: Difference[] = [];
  const diff = (r: ApiRecord, kind: Difference['kind'], parts?: DifferencePart[]): void => {
    differences.push({ entry: r.entry, ts: Number(r.ts), kind, ...(parts ? { parts } : {}) });
  };
  for (;;) {
    if (a.needsRefill() || b.needsRefill()) await Promise.all([a.refill(), b.refill()]);
    const s = a.head();
    const d = b.head();
    if (s === undefined && d === undefined) break;
    const order = s === undefined ? 1 : d === undefined ? -1 : byKey(s, d);
    if (order < 0) {
      diff(s!, 'missing');
      a.advance();
    } else if (order > 0) {
      diff(d!, 'extra');
      b.advance();
    } else {
      const parts = differingParts(s!, d!);
      if (parts.length > 0) diff(d!, 'different', parts);
      a.advance();
      b.advance();
    }
  }
  return { differences, records: [a.count, b.count] };
}

/** Reads both instances' records concurrently and compares them (see the module comment). */
export async function compareOverApi(
  src: ApiSide,
  dst: ApiSide,
  opts: ApiCompareOptions = {},
): Promise<ApiCompareResult> {
  const pools = [new CountingPool(src.url), new CountingPool(dst.url)] as const;
  try {
    const t0 = performance.now();
    const { differences, records } = await compareSorted(
      readRecords(src, pools[0], opts),
      readRecords(dst, pools[1], opts),
    );
    const seconds = (performance.now() - t0) / 1000;
    const [x, y] = [pools[0].bytes(), pools[1].bytes()];
    return {
      seconds,
      requests: pools[0].requests + pools[1].requests,
      bytesSent: x.sent + y.sent,
      bytesReceived: x.received + y.received,
      records,
      differences,
    };
  } finally {
    await Promise.all(pools.map((p) => p.pool.close()));
  }
}
