/**
 * The destination of a verification on another instance. A Ferry answers range digests through
 * `POST /api/v1/ferry/b/{bucket}/digests`; a destination without that route (a 404, or no
 * `x-ferry-instance` header: a plain ReductStore) is compared through its query API instead
 * (`only_metadata` queries, read with `HEAD …/batch`): timestamps, sizes, content types and
 * labels, never payloads.
 */
import type { Dispatcher } from 'undici';
import { destinationPool } from './destination-pool.js';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import { encodeV1RemoveHeaders, parseV1Batch, parseV1ErrorHeaders } from '../protocol/batch-v1.js';
import { parseJson, stringifyJson } from '../protocol/json.js';
import { MAX_DIGEST_LIST_RECORDS, MAX_DIGEST_QUERIES } from '../protocol/limits.js';
import type { DigestAnswer, DigestRequestItem } from '../protocol/verify.js';
import type { RangeDigest, RecordSummary } from '../storage/types.js';
import { boundMessage } from './target.js';
import {
  EMPTY_DIGEST,
  type Exchange,
  type PeerPage,
  type PeerQuery,
  type RemoveOutcome,
  type VerifyPeer,
} from './verify-peer.js';

/** How to reach the destination (the replication's own settings). */
export interface RemotePeerOptions {
  url: URL;
  token: string | null;
  bucket: string;
  verifyTls: boolean;
  ca?: string;
  timeoutMs: number;
  /** The pool of a named remote (replication.md §5), used instead of one of our own. */
  dispatcher?: Dispatcher;
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

const encodePath = (entry: string): string => entry.split('/').map(encodeURIComponent).join('/');

/** A verification request may take this many replication timeouts, and at least MIN_VERIFY_TIMEOUT_MS. */
const VERIFY_TIMEOUT_FACTOR = 10;
const MIN_VERIFY_TIMEOUT_MS = 120_000;

/** Records removed per request (the destination's header count bound). */
const REMOVE_PER_REQUEST = 500;

/** A failed verification request. */
export class PeerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(boundMessage(message));
    this.name = 'PeerError';
  }
}

/** Another instance as the destination of a verification. */
export class RemotePeer implements VerifyPeer {
  method: 'digest' | 'metadata' = 'digest';
  readonly exchange: Exchange = { round_trips: 0, bytes_sent: 0, bytes_received: 0 };
  private readonly pool: Dispatcher;
  /** Whether the pool is ours to close. */
  private readonly own: boolean;
  private readonly base: string;
  private readonly timeout: number;

  constructor(private readonly opts: RemotePeerOptions) {
    this.base = opts.url.pathname.replace(/\/+$/, '');
    // a digest of a large range read cold from disk takes long: more than a shipment may
    const timeout = Math.max(VERIFY_TIMEOUT_FACTOR * opts.timeoutMs, MIN_VERIFY_TIMEOUT_MS);
    this.timeout = timeout;
    this.own = opts.dispatcher === undefined;
    this.pool =
      opts.dispatcher ??
      destinationPool(opts.url, {
        connections: 2,
        timeoutMs: timeout,
        connectTimeoutMs: opts.timeoutMs,
        verifyTls: opts.verifyTls,
        ca: opts.ca,
      });
  }

  private async request(
    method: 'GET' | 'HEAD' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    const h: Record<string, string> = { ...headers };
    if (this.opts.token) h.authorization = `Bearer ${this.opts.token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    let res;
    try {
      res = await this.pool.request({
        origin: this.opts.url.origin,
        headersTimeout: this.timeout,
        bodyTimeout: this.timeout,
        method,
        path: `${this.base}/api/v1${path}`,
        headers: h,
        body: body ?? null,
      });
    } catch (e) {
      throw new PeerError(-3, `Connection error: ${(e as Error)?.message ?? String(e)}`);
    }
    const text = method === 'HEAD' ? (await res.body.dump(), '') : await res.body.text();
    this.exchange.round_trips++;
    this.exchange.bytes_sent += Buffer.byteLength(body ?? '') + requestHeaderBytes(method, path, h);
    this.exchange.bytes_received += Buffer.byteLength(text) + responseHeaderBytes(res.headers);
    return { status: res.statusCode, headers: res.headers, text };
  }

  private fail(what: string, r: { status: number; headers: IncomingHttpHeaders }): PeerError {
    return new PeerError(r.status, `${what}: ${header(r.headers, 'x-reduct-error') ?? `HTTP ${r.status}`}`);
  }

  private bucketPath(): string {
    return `/b/${encodeURIComponent(this.opts.bucket)}`;
  }

  async open(): Promise<void> {
    // an empty request tells a Ferry with the route (200) from anything else
    const r = await this.request('POST', `/ferry${this.bucketPath()}/digests`, {}, '{"queries":[]}');
    if (r.status === 200 && header(r.headers, 'x-ferry-instance') !== undefined) {
      this.method = 'digest';
      return;
    }
    if (r.status === 401 || r.status === 403) throw this.fail('Destination refused the verification', r);
    if (r.status === 404 && /^Bucket /.test(header(r.headers, 'x-reduct-error') ?? '')) {
      this.method = 'digest'; // a Ferry without the bucket: it holds no records
      return;
    }
    if (r.status !== 404 && r.status !== 405 && r.status !== 200)
      throw this.fail('Destination check failed', r);
    this.method = 'metadata';
  }

  private async ask(queries: DigestRequestItem[]): Promise<DigestAnswer['results']> {
    const r = await this.request(
      'POST',
      `/ferry${this.bucketPath()}/digests`,
      {},
      stringifyJson({ queries }),
    );
    if (r.status === 404 && /^Bucket /.test(header(r.headers, 'x-reduct-error') ?? '')) {
      return queries.map((q) =>
        q.list ? { records: [], more: false } : { count: 0, digest: EMPTY_DIGEST, bounds: [] },
      );
    }
    if (r.status !== 200) throw this.fail('Range-digest request failed', r);
    const answer = parseJson(r.text) as DigestAnswer;
    if (!Array.isArray(answer?.results) || answer.results.length !== queries.length) {
      throw new PeerError(-1, 'Malformed range-digest answer');
    }
    return answer.results;
  }

  async digests(queries: readonly PeerQuery[]): Promise<RangeDigest[]> {
    const out: RangeDigest[] = [];
    for (let i = 0; i < queries.length; i += MAX_DIGEST_QUERIES) {
      const chunk = queries.slice(i, i + MAX_DIGEST_QUERIES);
      const got = await this.ask(
        chunk.map((q) => ({
          entry: q.entry,
          start: q.start,
          stop: q.stop,
          ...(q.split ? { split: q.split } : {}),
        })),
      );
      for (const g of got) {
        if (!('digest' in g)) throw new PeerError(-1, 'Malformed range-digest answer');
        out.push({ count: Number(g.count), digest: String(g.digest), bounds: (g.bounds ?? []).map(BigInt) });
      }
    }
    return out;
  }

  async list(queries: ReadonlyArray<PeerQuery & { limit: number }>): Promise<PeerPage[]> {
    if (this.method === 'metadata') {
      const out: PeerPage[] = [];
      for (const q of queries) out.push(await this.queryPage(q));
      return out;
    }
    const out: PeerPage[] = [];
    let chunk: DigestRequestItem[] = [];
    let listed = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      for (const g of await this.ask(chunk)) {
        if (!('records' in g)) throw new PeerError(-1, 'Malformed range-digest answer');
        out.push({
          records: g.records.map(([ts, size, digest, contentType, labels]) => ({
            ts: BigInt(ts),
            size: Number(size),
            digest: String(digest),
            contentType: String(contentType),
            labels,
          })),
          more: g.more === true,
        });
      }
      chunk = [];
      listed = 0;
    };
    for (const q of queries) {
      const limit = Math.min(q.limit, MAX_DIGEST_LIST_RECORDS);
      if (listed + limit > MAX_DIGEST_LIST_RECORDS || chunk.length >= MAX_DIGEST_QUERIES) await flush();
      chunk.push({ entry: q.entry, start: q.start, stop: q.stop, list: limit });
      listed += limit;
    }
    await flush();
    return out;
  }

  /**
   * Up to `limit` records of a range through the query API (a plain ReductStore): one
   * `only_metadata` query, read batch by batch with HEAD.
   */
  private async queryPage(q: PeerQuery & { limit: number }): Promise<PeerPage> {
    const entryPath = `${this.bucketPath()}/${encodePath(q.entry)}`;
    const body = stringifyJson({
      query_type: 'QUERY',
      start: q.start,
      stop: q.stop,
      only_metadata: true,
      ttl: 60,
    });
    const created = await this.request('POST', `${entryPath}/q`, {}, body);
    if (created.status === 404) return { records: [], more: false }; // no such bucket or entry
    if (created.status !== 200) throw this.fail('Query at the destination failed', created);
    const id = (parseJson(created.text) as { id?: unknown }).id;
    const records: RecordSummary[] = [];
    for (;;) {
      const r = await this.request('HEAD', `${entryPath}/batch?q=${String(id)}`, {});
      if (r.status === 204) break;
      if (r.status !== 200) throw this.fail('Query read at the destination failed', r);
      for (const rec of parseV1Batch(r.headers).records) {
        records.push({
          ts: rec.ts,
          size: rec.size,
          digest: '',
          contentType: rec.contentType,
          labels: rec.labels,
        });
      }
      if (records.length > q.limit) return { records: records.slice(0, q.limit), more: true };
      if (header(r.headers, 'x-reduct-last') === 'true') break;
    }
    return { records, more: false };
  }

  async remove(entry: string, ts: readonly bigint[]): Promise<RemoveOutcome[]> {
    const out: RemoveOutcome[] = [];
    for (let i = 0; i < ts.length; i += REMOVE_PER_REQUEST) {
      const slice = ts.slice(i, i + REMOVE_PER_REQUEST);
      const r = await this.request(
        'DELETE',
        `${this.bucketPath()}/${encodePath(entry)}/batch`,
        encodeV1RemoveHeaders(slice),
      );
      if (r.status !== 200) {
        const err = this.fail('Removal at the destination failed', r);
        for (const _ of slice) out.push({ ok: false, status: err.status, message: err.message });
        continue;
      }
      const errors = parseV1ErrorHeaders(r.headers);
      for (const t of slice) {
        const e = errors.get(t);
        // already gone is what was asked for
        out.push(
          !e || e.status === 404
            ? { ok: true }
            : { ok: false, status: e.status, message: boundMessage(e.message) },
        );
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.own) await this.pool.destroy();
  }
}

function requestHeaderBytes(method: string, path: string, h: Record<string, string>): number {
  let n = method.length + path.length + 12;
  for (const [k, v] of Object.entries(h)) n += k.length + v.length + 4;
  return n;
}

function responseHeaderBytes(h: IncomingHttpHeaders): number {
  let n = 17;
  for (const [k, v] of Object.entries(h)) n += k.length + String(v).length + 4;
  return n;
}
