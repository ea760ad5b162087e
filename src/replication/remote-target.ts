/**
 * Destination bucket on another instance (Ferry or ReductStore), reached through batch protocol v1
 * (api.md §10) over one keep-alive undici `Pool`. Writes carry `x-ferry-origin`; payloads of small
 * records are coalesced into large socket writes. Records the destination answers with 409 (a
 * re-send after a crash or a broken connection) are resolved in one of two ways: a Ferry destination
 * (it sends an instance id) gets them once more with per-record `x-ferry-digest-<ts>`, applies them
 * idempotently and answers `x-ferry-present-<ts>: 1`; for a plain ReductStore, and for any record
 * still in conflict, the existing record is read back and compared (size, then SHA-256 prefix).
 * Small writes of several entries started together go to a Ferry destination as one batch-v2
 * request (write-coalescer.ts); other writes to a Ferry destination that says it takes them go as
 * records-table batches (protocol/records-table.ts: metadata and digests in the body, every label
 * value exact). Toward ReductStore, records whose label values no batch header list can carry
 * travel as single-record writes and updates (`x-reduct-label-*` headers).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Dispatcher, Pool } from 'undici';
import { destinationPool } from './destination-pool.js';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import { encodeV1UpdateHeaders, encodeV1Value } from '../protocol/batch-v1.js';
import { parseV2ErrorHeaders } from '../protocol/batch-v2.js';
import {
  encodeRecordsTable,
  FEATURES_HEADER,
  RECORDS_TABLE_CONTENT_TYPE,
  RECORDS_TABLE_FEATURE,
  tableCarries,
  type TableRecord,
} from '../protocol/records-table.js';
import { stringifyJson } from '../protocol/json.js';
import { compressBody } from './compression.js';
import { parseRetryAfter } from './backoff.js';
import type { RemoteEndpoint } from './remotes.js';
import {
  awkwardWrite,
  coalescible,
  encodePath,
  header,
  listCarries,
  MAX_COALESCED_BYTES,
  MAX_RECORDS_PER_REQUEST,
  MAX_RECORDS_WITH_DIGESTS,
  joinedBytes,
  joinsWrites,
  PRESENT_PREFIX,
  recordErrors,
  singleCarries,
  sliceRecords,
  transportError,
  v2RecordErrors,
  v2WriteRequest,
  WRITTEN,
  type Conflict,
} from './remote-wire.js';
import { headerValueProblem, type Compression, type TargetSettings } from './settings.js';
import { WriteCoalescer, type CoalescedCall } from './write-coalescer.js';
import {
  batchBody,
  smallBatchBody,
  boundMessage,
  classifyStatus,
  labelChanges,
  missingBucketError,
  TargetError,
  type ItemOutcome,
  type ShipRecord,
  type Target,
} from './target.js';

/** What every RemoteTarget is given, whichever way it connects. */
interface CommonOptions {
  dstBucket: string;
  compression: Compression;
  createTarget: boolean;
  targetSettings?: TargetSettings;
  /** Our instance id, sent as origin of records written by our own clients. */
  sourceInstanceId: string;
}

/**
 * Options of a RemoteTarget that reaches the destination through a named remote
 * (replication.md §5): its shared pool, URL and token as they are at each request.
 */
export interface SharedRemoteTargetOptions extends CommonOptions {
  remote: { name: string; endpoint(): RemoteEndpoint | undefined };
}

/** Options of a RemoteTarget with a pool of its own (`dst_host` + `dst_token`). */
export interface RemoteTargetOptions extends CommonOptions {
  url: URL;
  /** Bearer token ('' or null = none). Never logged. */
  token: string | null;
  /** Parallel connections (= the replication's max_in_flight). */
  connections: number;
  verifyTls: boolean;
  ca?: string;
  /**
   * `RS_REPLICATION_TIMEOUT`: bound on connecting, on waiting for the answer's headers (also while
   * an upload is stalled) and on each pause in the answer's body.
   */
  timeoutMs: number;
}

/**
 * Outcomes of `records` when those for which `alone` holds go one by one (`single`) and the rest
 * together (`batch`), in the order of `records`. Settles only once every request has (so that no
 * delivery of these records is still under way when the caller sees a failure).
 */
async function splitAlone(
  records: readonly ShipRecord[],
  alone: (r: ShipRecord) => boolean,
  single: (r: ShipRecord) => Promise<ItemOutcome>,
  batch: (rest: readonly ShipRecord[]) => Promise<ItemOutcome[]>,
): Promise<ItemOutcome[]> {
  const one: ShipRecord[] = [];
  const rest: ShipRecord[] = [];
  for (const r of records) (alone(r) ? one : rest).push(r);
  const [a, b] = await Promise.allSettled([
    Promise.allSettled(one.map(single)),
    rest.length > 0 ? batch(rest) : Promise.resolve([]),
  ]);
  if (a.status === 'rejected') throw a.reason;
  const failed = a.value.find((x) => x.status === 'rejected');
  if (failed) throw failed.reason;
  if (b.status === 'rejected') throw b.reason;
  const byTs = new Map<bigint, ItemOutcome>();
  one.forEach((r, i) => byTs.set(r.ts, (a.value[i] as PromiseFulfilledResult<ItemOutcome>).value));
  rest.forEach((r, i) => byTs.set(r.ts, b.value[i]!));
  return records.map((r) => byTs.get(r.ts)!);
}

/**
 * The payloads of `records` as an uncompressed body, after `prefix` (a records table): one buffer
 * when small, else a stream.
 */
async function plainBody(records: readonly ShipRecord[], prefix?: Buffer): Promise<Readable | Buffer> {
  const small = await smallBatchBody(records);
  if (small) return prefix ? Buffer.concat([prefix, small]) : small;
  return Readable.from(prefix ? prefixed(prefix, batchBody(records)) : batchBody(records), {
    objectMode: false,
  });
}

async function* prefixed(prefix: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield prefix;
  yield* rest;
}

/** Records per records-table request (bounded by the batch's bytes too). */
const MAX_TABLE_REQUEST_RECORDS = 4096;

/**
 * A write a batch cannot carry that a single-record write carries exactly. One with upper-case
 * label names stays in its batch, where the destination refuses it visibly (nothing carries it).
 */
const writeAlone = (r: ShipRecord): boolean => awkwardWrite(r) && singleCarries(r.labels);

/** The same for a label update (names of removed labels included). */
function updateAlone(r: ShipRecord): boolean {
  if (listCarries(r.labels)) return false;
  if (!singleCarries(r.labels)) return false;
  return r.removedLabels.every((k) => k === k.toLowerCase());
}

/** A label update as a table's labels: a removed label has the empty value (as `k=` in v1). */
function updateLabels(r: ShipRecord): Record<string, string> {
  const out: Record<string, string> = {};
  const changes = labelChanges(r);
  for (const k in changes) out[k] = changes[k] ?? '';
  return out;
}

/** Where requests go now: base URL, token and the pool (own, or the remote's shared one). */
interface Connection {
  url: URL;
  token: string | null;
  dispatcher: Dispatcher;
  /** Requests must name the origin (a shared pool is handed them through `origin`). */
  origin?: string;
}

const basePath = (url: URL): string => url.pathname.replace(/\/+$/, '');

/** Remote destination over HTTP. */
export class RemoteTarget implements Target {
  instanceId = '';
  available = false;
  /** `x-reduct-api` minor version of the destination (compression needs >= 21). */
  private apiMinor = 0;
  /** The destination takes records-table batches (it said so on its last answer). */
  private tables = false;
  /** Own pool (null when the target uses a remote's shared pool). */
  private pool: Pool | null = null;
  /** Aborts this target's requests on `reset`/`close` (a shared pool is not destroyed). */
  private abort = new AbortController();
  /** Why this target can never work as configured (checked again here for stored definitions). */
  private readonly unusable: string | null = null;
  /** Joins first sends of small writes of several entries (a Ferry destination only). */
  private readonly coalescer = new WriteCoalescer<ShipRecord, ItemOutcome | Conflict>(
    (origin, calls) => this.writeEntries(origin, calls),
    { records: MAX_RECORDS_PER_REQUEST, bytes: MAX_COALESCED_BYTES },
    joinedBytes,
  );

  constructor(private readonly opts: RemoteTargetOptions | SharedRemoteTargetOptions) {
    if ('url' in opts) {
      const tokenProblem = opts.token ? headerValueProblem(opts.token) : null;
      this.unusable = tokenProblem ? `Invalid replication setting 'dst_token': ${tokenProblem}` : null;
      this.pool = this.newPool(opts);
    }
  }

  /** Small writes of several entries share requests (a Ferry destination with batch v2). */
  get joinsWrites(): boolean {
    return joinsWrites(this.instanceId, this.apiMinor);
  }

  /** The destination URL without credentials (for status). */
  get description(): string {
    const url = 'url' in this.opts ? this.opts.url : this.opts.remote.endpoint()?.url;
    return url
      ? `${url.origin}${basePath(url)}`
      : `remote '${(this.opts as SharedRemoteTargetOptions).remote.name}'`;
  }

  private connection(): Connection {
    const opts = this.opts;
    if ('url' in opts) return { url: opts.url, token: opts.token, dispatcher: this.pool! };
    const ep = opts.remote.endpoint();
    // temporary: the remote may be created again under the same name
    if (!ep) throw new TargetError(-3, `Remote '${opts.remote.name}' does not exist`, true);
    return { url: ep.url, token: ep.token, dispatcher: ep.dispatcher, origin: ep.url.origin };
  }

  /** Request path of the destination bucket (`io`: its batch protocol v2 path, api.md §11). */
  private bucketPath(c: Connection, io = false): string {
    return `${basePath(c.url)}/api/v1/${io ? 'io' : 'b'}/${encodeURIComponent(this.opts.dstBucket)}`;
  }

  private newPool(opts: RemoteTargetOptions): Pool {
    return destinationPool(opts.url, {
      ...opts,
      // a re-sent batch is answered with one header per record (present or 409)
      extra: { pipelining: 1, keepAliveTimeout: 30_000, maxHeaderSize: 4 * 1024 * 1024 },
    });
  }

  /** Flat `[name, value, …]` header list (cheap for thousands of per-record headers). */
  private headers(token: string | null, extra: Record<string, string> | string[] = []): string[] {
    const h = Array.isArray(extra) ? extra : Object.entries(extra).flat();
    if (token) h.push('authorization', `Bearer ${token}`);
    return h;
  }

  private learn(h: IncomingHttpHeaders): void {
    const inst = header(h, 'x-ferry-instance');
    if (inst !== undefined) this.instanceId = inst;
    this.tables =
      header(h, FEATURES_HEADER)
        ?.split(',')
        .some((f) => f.trim() === RECORDS_TABLE_FEATURE) ?? false;
    const api = header(h, 'x-reduct-api');
    const m = api ? /^(\d+)\.(\d+)/.exec(api) : null;
    if (m) this.apiMinor = Number(m[1]) > 1 ? 1000 : Number(m[2]);
  }

  /**
   * One request; `path` is relative to the destination bucket ('' = the bucket itself), or with
   * `io` to its v2 path (`/write`).
   */
  private async request(
    method: 'GET' | 'HEAD' | 'POST' | 'PATCH',
    path: string,
    headers: Record<string, string> | string[],
    body?: Readable | Buffer | string,
    io = false,
  ) {
    const c = this.connection();
    try {
      const res = await c.dispatcher.request({
        ...(c.origin ? { origin: c.origin } : {}),
        method,
        path: this.bucketPath(c, io) + path,
        headers: this.headers(c.token, headers),
        body: body ?? null,
        signal: this.abort.signal,
      });
      this.learn(res.headers);
      return res;
    } catch (e) {
      this.available = false;
      throw transportError(e);
    }
  }

  /** Throws a TargetError for a non-2xx answer to a whole request. */
  private failure(status: number, h: IncomingHttpHeaders, what: string): TargetError {
    const msg = boundMessage(header(h, 'x-reduct-error') ?? `HTTP ${status}`);
    const retryAfter = parseRetryAfter(h['retry-after']);
    const temporary = status === 429 || status >= 500 || status === 401 || status === 403 || status === 404;
    if (temporary) this.available = false;
    return new TargetError(status, `${what}: ${msg}`, temporary, retryAfter);
  }

  /** A refused batch request: throws when temporary, else every record failed permanently. */
  private refused(
    status: number,
    h: IncomingHttpHeaders,
    what: string,
    records: readonly ShipRecord[],
  ): ItemOutcome[] {
    const err = this.failure(status, h, what);
    if (err.temporary) throw err;
    return records.map(() => ({ kind: 'permanent', status: err.status, message: err.message }));
  }

  /** `x-ferry-origin` of a request: the records' origin, ours for records of our own clients. */
  private originOf(records: readonly ShipRecord[]): string {
    return records[0]?.origin || this.opts.sourceInstanceId;
  }

  /** Path of a destination entry, relative to the bucket. */
  private entryPath(entry: string): string {
    return `/${encodePath(entry)}`;
  }

  async prepare(): Promise<void> {
    if (this.unusable) throw new TargetError(422, this.unusable, false);
    const res = await this.request('GET', '', {});
    await res.body.dump();
    if (res.statusCode === 200) {
      this.available = true;
      return;
    }
    if (res.statusCode !== 404)
      throw this.failure(res.statusCode, res.headers, 'Destination bucket check failed');
    if (!this.opts.createTarget) {
      this.available = false;
      throw missingBucketError(this.opts.dstBucket);
    }
    const body = stringifyJson(this.opts.targetSettings ?? {});
    const created = await this.request('POST', '', { 'content-type': 'application/json' }, body);
    await created.body.dump();
    if (created.statusCode === 200 || created.statusCode === 409) {
      this.available = true;
      return;
    }
    throw this.failure(created.statusCode, created.headers, 'Destination bucket creation failed');
  }

  async write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    // records with labels a header list cannot carry go one by one, the rest in batches
    const tables = this.takesTables(records);
    if (!tables && records.some(writeAlone))
      return splitAlone(
        records,
        writeAlone,
        (r) => this.writeSingle(entry, r),
        (rest) => this.write(entry, rest),
      );
    // stay below the destination's header count limit: one request per slice
    const slices = sliceRecords(records, tables ? MAX_TABLE_REQUEST_RECORDS : MAX_RECORDS_PER_REQUEST);
    const outcomes = (await Promise.all(slices.map((r) => this.firstSend(entry, r, tables)))).flat();
    // Conflicts are rare (a re-send after a crash or a failed request): only then are the records
    // sent again with their content digests, so that a Ferry destination can tell "already
    // present" from a real conflict without a read-back, and first sends carry half the headers.
    const conflicts: number[] = [];
    outcomes.forEach((o, i) => {
      if (o.kind === 'conflict') conflicts.push(i);
    });
    if (conflicts.length === 0) return outcomes as ItemOutcome[];
    const again = conflicts.map((i) => records[i]!);
    // a destination without an instance id (ReductStore) ignores digests: read back instead
    const second: Array<ItemOutcome | Conflict> = this.instanceId
      ? (
          await Promise.all(
            sliceRecords(again, MAX_RECORDS_WITH_DIGESTS).map((r) => this.writeOne(entry, r, true)),
          )
        ).flat()
      : conflicts.map((i) => outcomes[i]!);
    const verified = await Promise.all(
      second.map((o, k) =>
        o.kind === 'conflict' ? this.verifyExisting(entry, again[k]!, o.message) : Promise.resolve(o),
      ),
    );
    conflicts.forEach((i, k) => (outcomes[i] = verified[k]!));
    return outcomes as ItemOutcome[];
  }

  /**
   * One record as a single write (`POST /b/{bucket}/{entry}?ts=`, labels in `x-reduct-label-*`
   * headers of their own): for labels a batch header list cannot carry. A 409 is resolved by
   * reading the stored record back (a digest re-send would be a batch again).
   */
  private async writeSingle(entry: string, r: ShipRecord): Promise<ItemOutcome> {
    const headers: string[] = [
      'content-type',
      r.contentType === '' ? 'application/octet-stream' : r.contentType,
      'x-ferry-origin',
      this.originOf([r]),
      'content-length',
      String(r.size),
    ];
    for (const k in r.labels) headers.push(`x-reduct-label-${k}`, r.labels[k]!);
    const res = await this.request(
      'POST',
      `${this.entryPath(entry)}?ts=${r.ts}`,
      headers,
      await plainBody([r]),
    );
    await res.body.dump();
    if (res.statusCode === 200) {
      this.available = true;
      return WRITTEN;
    }
    const message = boundMessage(header(res.headers, 'x-reduct-error') ?? `HTTP ${res.statusCode}`);
    if (res.statusCode === 409) {
      this.available = true;
      return this.verifyExisting(entry, r, message);
    }
    return this.refused(res.statusCode, res.headers, 'Write refused', [r])[0]!;
  }

  /** The destination takes records tables, and one can carry every record of `records`. */
  private takesTables(records: readonly ShipRecord[]): boolean {
    return this.tables && records.every(tableCarries);
  }

  /**
   * The first send of a slice: joined with other entries' writes when it can be (a Ferry
   * destination); with `tables`, a label value a header list cannot carry goes in a table.
   */
  private firstSend(
    entry: string,
    records: readonly ShipRecord[],
    tables: boolean,
  ): Promise<Array<ItemOutcome | Conflict>> {
    if (coalescible(records, this.instanceId, this.apiMinor) && !(tables && records.some(awkwardWrite)))
      return this.coalescer.submit(this.originOf(records), entry, records);
    return this.sendBatch(entry, records, tables);
  }

  /**
   * One batch request of one entry: a records table when the destination takes it (`tables`, when
   * the caller knows already), else v1.
   */
  private sendBatch(
    entry: string,
    records: readonly ShipRecord[],
    tables = this.takesTables(records),
  ): Promise<Array<ItemOutcome | Conflict>> {
    return tables ? this.writeTable(entry, records) : this.writeOne(entry, records, false);
  }

  /**
   * Writes of several entries (same origin) in one v2 request (`POST /io/{bucket}/write`); a lone
   * one goes as a v1 batch. Outcomes per call, as `writeOne` gives them.
   */
  private async writeEntries(
    origin: string,
    calls: readonly CoalescedCall<ShipRecord>[],
  ): Promise<Array<Array<ItemOutcome | Conflict>>> {
    if (calls.length === 1) return [await this.sendBatch(calls[0]!.entry, calls[0]!.records)];
    const { enc, ordered, headers } = v2WriteRequest(origin, calls);
    const body = await this.body(ordered, enc.totalSize, headers);
    const res = await this.request('POST', '/write', headers, body, true);
    await res.body.dump();
    if (res.statusCode !== 200) {
      const err = this.failure(res.statusCode, res.headers, 'Batch write refused');
      if (err.temporary) throw err;
      // refused as a whole (too large, a record of one entry invalid, …): each entry goes on its
      // own, so that one entry's refusal stays its own
      return Promise.all(calls.map((c) => this.sendBatch(c.entry, c.records)));
    }
    this.available = true;
    const errors = parseV2ErrorHeaders(res.headers);
    if (errors.size === 0) return calls.map((c) => c.records.map(() => WRITTEN));
    const retryAfter = parseRetryAfter(res.headers['retry-after']);
    return v2RecordErrors(calls, enc, errors).map((list) =>
      list.map((err) => this.outcomeOf(err, retryAfter)),
    );
  }

  /**
   * The body of a batch write of `records` (payloads in this order), compressed when the
   * replication asks for it and the destination can; adds the matching headers to `headers`.
   */
  private async body(
    records: readonly ShipRecord[],
    total: number,
    headers: string[],
    prefix?: Buffer,
  ): Promise<Readable | Buffer> {
    const encoding =
      this.opts.compression !== 'none' && this.apiMinor >= 21 ? this.opts.compression : undefined;
    if (encoding) {
      headers.push('content-encoding', encoding);
      return compressBody(prefix ? prefixed(prefix, batchBody(records)) : batchBody(records), encoding);
    }
    headers.push('content-length', String(total + (prefix?.length ?? 0)));
    return plainBody(records, prefix);
  }

  /** A record's outcome from its per-record error header (none: written); 409 is left to the caller. */
  private outcomeOf(
    err: { status: number; message: string } | undefined,
    retryAfter: number | undefined,
  ): ItemOutcome | Conflict {
    if (!err) return WRITTEN;
    const message = boundMessage(err.message);
    if (err.status === 409) return { kind: 'conflict', message };
    // per-record 404 = the bucket disappeared: re-create it and retry instead of dropping
    if (err.status === 404) {
      this.available = false;
      return { kind: 'temporary', status: 404, message };
    }
    return classifyStatus(err.status, message, retryAfter);
  }

  /** One v1 batch request; a per-record 409 is returned as `conflict` for the caller to resolve. */
  private async writeOne(
    entry: string,
    records: readonly ShipRecord[],
    digests: boolean,
  ): Promise<Array<ItemOutcome | Conflict>> {
    const headers: string[] = [
      'content-type',
      'application/octet-stream',
      'x-ferry-origin',
      this.originOf(records),
    ];
    let total = 0;
    for (const r of records) {
      headers.push(`x-reduct-time-${r.ts}`, encodeV1Value(r));
      if (digests) headers.push(`x-ferry-digest-${r.ts}`, r.digest.toString('hex'));
      total += r.size;
    }
    const body = await this.body(records, total, headers);
    return this.batchAnswer(
      records,
      await this.request('POST', `${this.entryPath(entry)}/batch`, headers, body),
    );
  }

  /**
   * One records-table batch (a Ferry destination): metadata and digests in the body, so present
   * records are answered so at once and only a real conflict is a 409.
   */
  private async writeTable(
    entry: string,
    records: readonly ShipRecord[],
  ): Promise<Array<ItemOutcome | Conflict>> {
    const headers = ['content-type', RECORDS_TABLE_CONTENT_TYPE, 'x-ferry-origin', this.originOf(records)];
    let total = 0;
    for (const r of records) total += r.size;
    const body = await this.body(records, total, headers, encodeRecordsTable(records));
    const res = await this.request('POST', `${this.entryPath(entry)}/batch`, headers, body);
    // the table carried the digests: the destination compared them (an identical record is
    // answered present), so a 409 for a record with a digest is other content there
    return (await this.batchAnswer(records, res)).map((o, i) =>
      o.kind === 'conflict' && records[i]!.digest.length >= 16
        ? { kind: 'permanent', status: 409, message: `${o.message} (different content at destination)` }
        : o,
    );
  }

  /** Per-record outcomes of a v1 or records-table batch answer; a 409 is left to the caller. */
  private async batchAnswer(
    records: readonly ShipRecord[],
    res: Dispatcher.ResponseData,
  ): Promise<Array<ItemOutcome | Conflict>> {
    await res.body.dump();
    if (res.statusCode !== 200)
      return this.refused(res.statusCode, res.headers, 'Batch write refused', records);
    this.available = true;
    const errors = recordErrors(res.headers);
    const retryAfter = parseRetryAfter(res.headers['retry-after']);
    // the common answer has no per-record header at all
    const present = new Set<string>();
    for (const k of Object.keys(res.headers))
      if (k.startsWith(PRESENT_PREFIX)) present.add(k.slice(PRESENT_PREFIX.length));
    if (present.size === 0 && errors.size === 0) return records.map(() => WRITTEN);
    return records.map((r): ItemOutcome | Conflict =>
      present.size > 0 && present.has(String(r.ts))
        ? { kind: 'present' }
        : this.outcomeOf(errors.get(r.ts), retryAfter),
    );
  }

  /**
   * A 409 from a destination that does not understand digests: the record is already present if
   * the stored one has the same size and content digest, otherwise it is a real conflict.
   */
  private async verifyExisting(entry: string, r: ShipRecord, message: string): Promise<ItemOutcome> {
    const path = `${this.entryPath(entry)}?ts=${r.ts}`;
    const head = await this.request('HEAD', path, {});
    await head.body.dump();
    // still being written (perhaps this very record, delivered twice): the next attempt tells
    if (head.statusCode === 425) {
      return {
        kind: 'temporary',
        status: 425,
        message: `${message} (verification: HTTP 425, still being written)`,
      };
    }
    if (head.statusCode !== 200) {
      return classifyStatus(
        head.statusCode < 500 ? 409 : head.statusCode,
        `${message} (verification: HTTP ${head.statusCode})`,
      );
    }
    if (Number(header(head.headers, 'content-length')) !== r.size) {
      return { kind: 'permanent', status: 409, message: `${message} (different size at destination)` };
    }
    const get = await this.request('GET', path, {});
    if (get.statusCode !== 200) {
      await get.body.dump();
      return classifyStatus(
        get.statusCode < 500 ? 409 : get.statusCode,
        `${message} (verification: HTTP ${get.statusCode})`,
      );
    }
    const hash = createHash('sha256');
    for await (const chunk of get.body) hash.update(chunk as Buffer);
    const digest = hash.digest().subarray(0, r.digest.length);
    return digest.equals(r.digest)
      ? { kind: 'present' }
      : { kind: 'permanent', status: 409, message: `${message} (different content at destination)` };
  }

  async update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    const rows = this.tables
      ? records.map((r) => ({ ts: r.ts, size: 0, contentType: '', labels: updateLabels(r) }))
      : [];
    if (this.tables && rows.every(tableCarries)) {
      let at = 0;
      const slices = sliceRecords(records, MAX_TABLE_REQUEST_RECORDS);
      return (
        await Promise.all(slices.map((r) => this.updateOne(entry, r, rows.slice(at, (at += r.length)))))
      ).flat();
    }
    if (records.some(updateAlone))
      return splitAlone(
        records,
        updateAlone,
        (r) => this.updateSingle(entry, r),
        (rest) => this.update(entry, rest),
      );
    const slices = sliceRecords(records, MAX_RECORDS_PER_REQUEST);
    return (await Promise.all(slices.map((r) => this.updateOne(entry, r)))).flat();
  }

  /** One label update as `PATCH /b/{bucket}/{entry}?ts=` (an empty header value removes a label). */
  private async updateSingle(entry: string, r: ShipRecord): Promise<ItemOutcome> {
    const headers: string[] = ['x-ferry-origin', this.originOf([r])];
    const changes = labelChanges(r);
    for (const k in changes) headers.push(`x-reduct-label-${k}`, changes[k] ?? '');
    const res = await this.request('PATCH', `${this.entryPath(entry)}?ts=${r.ts}`, headers);
    await res.body.dump();
    if (res.statusCode === 200) {
      this.available = true;
      return WRITTEN;
    }
    if (res.statusCode === 404)
      return this.missingFor(boundMessage(header(res.headers, 'x-reduct-error') ?? ''));
    return this.refused(res.statusCode, res.headers, 'Label update refused', [r])[0]!;
  }

  /**
   * One label-update batch: a records table of `rows` (the updates of `records` as table rows:
   * every name and value exact) or v1 headers.
   */
  private async updateOne(
    entry: string,
    records: readonly ShipRecord[],
    rows?: readonly TableRecord[],
  ): Promise<ItemOutcome[]> {
    let headers: Record<string, string>;
    let body: Buffer | undefined;
    if (rows) {
      body = encodeRecordsTable(rows);
      headers = { 'content-type': RECORDS_TABLE_CONTENT_TYPE, 'content-length': String(body.length) };
    } else headers = encodeV1UpdateHeaders(records.map((r) => ({ ts: r.ts, changes: labelChanges(r) })));
    headers['x-ferry-origin'] = this.originOf(records);
    const res = await this.request('PATCH', `${this.entryPath(entry)}/batch`, headers, body);
    await res.body.dump();
    if (res.statusCode === 404) {
      // the whole entry is missing at the destination
      this.available = true;
      return records.map(() => ({ kind: 'missing' }));
    }
    if (res.statusCode !== 200)
      return this.refused(res.statusCode, res.headers, 'Label update refused', records);
    this.available = true;
    const errors = recordErrors(res.headers);
    return records.map((r): ItemOutcome => {
      const err = errors.get(r.ts);
      if (!err) return { kind: 'written' };
      if (err.status === 404) return this.missingFor(err.message);
      return classifyStatus(err.status, err.message);
    });
  }

  /**
   * A label update's 404: the bucket is gone (temporary: it is created again) or the record is
   * missing (the engine sends it whole instead).
   */
  private missingFor(message: string): ItemOutcome {
    if (/^Bucket /.test(message)) {
      this.available = false;
      return { kind: 'temporary', status: 404, message };
    }
    this.available = true;
    return { kind: 'missing' };
  }

  async reset(): Promise<void> {
    this.abort.abort();
    this.abort = new AbortController();
    this.available = false;
    const old = this.pool;
    if (old === null) return; // a remote's shared pool serves others: only our requests end
    this.pool = this.newPool(this.opts as RemoteTargetOptions);
    await old.destroy();
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.pool?.destroy();
  }
}
