/**
 * One bucket of a Ferry (or ReductStore) server: its info, entries, single records (streamed),
 * v1 batches and queries as async iterators.
 */
import type { BucketDetail, BucketSettingsPatch, EntryInfo, U64 } from '../protocol/buckets.js';
import { encodeV1Headers, parseV1Batch, parseV1ErrorHeaders } from '../protocol/batch-v1.js';
import { Errors, type FerryError } from '../protocol/errors.js';
import { parseU64 } from '../protocol/json.js';
import type { Labels } from '../protocol/labels.js';
import type { QueryCreated, QueryRequest, QueryType, RemovedRecords } from '../protocol/queries.js';
import {
  concatBytes,
  knownSize,
  labelHeaders,
  labelsFromHeaders,
  toBytes,
  type BatchRecord,
  type QueriedRecord,
  type ReadRecord,
  type Timestamp,
} from './records.js';
import { delay } from './delay.js';
import { encodePath, type CallOptions, type RequestBody, type Transport } from './transport.js';

/** Options of {@link Bucket.write}. */
export interface WriteOptions extends CallOptions {
  labels?: Labels;
  /** Default `application/octet-stream`. */
  contentType?: string;
  /** Payload length; required when the payload is a ReadableStream. */
  size?: number;
}

/** Options of {@link Bucket.query}. */
export interface QueryOptions extends CallOptions {
  /** Inclusive lower bound, µs. */
  start?: Timestamp;
  /** Exclusive upper bound, µs. */
  stop?: Timestamp;
  /** Condition (api.md §13), e.g. `{ '&quality': { $eq: 'ok' } }`. */
  when?: unknown;
  /** Fail on a reference to a missing label instead of skipping the record. */
  strict?: boolean;
  /** Metadata only: `data` is empty, `size` is the real size. */
  head?: boolean;
  /** Keep waiting for new records (the iterator then ends only when you stop it). */
  continuous?: boolean;
  /** Idle time-to-live of the query on the server, seconds (default 60). */
  ttl?: number;
}

/** Pause between reads of a continuous query that found nothing new. */
const CONTINUOUS_POLL_MS = 250;

/** The fields QUERY and REMOVE share. */
function queryBody(type: QueryType, opts: QueryOptions): QueryRequest {
  return {
    query_type: type,
    start: opts.start === undefined ? undefined : BigInt(opts.start),
    stop: opts.stop === undefined ? undefined : BigInt(opts.stop),
    when: opts.when,
    strict: opts.strict,
  };
}

/** A bucket handle; obtained from `client.bucket(name)`. Calls do not check that it exists. */
export class Bucket {
  constructor(
    private readonly http: Transport,
    /** Bucket name. */
    readonly name: string,
  ) {}

  private path(entry?: string, suffix = ''): string {
    return `b/${encodePath(this.name)}${entry === undefined ? '' : `/${encodePath(entry)}`}${suffix}`;
  }

  /**
   * Info, settings and entries of the bucket.
   * @example
   * const { info, settings, entries } = await client.bucket('cameras').info();
   * console.log(info.entry_count, settings.quota_type, entries.map((e) => e.name));
   */
  info(opts: CallOptions = {}): Promise<BucketDetail<U64>> {
    return this.http.json({ ...opts, method: 'GET', path: this.path() });
  }

  /**
   * Entries of the bucket (hierarchical parents included, `$meta` ones hidden).
   * @example
   * for (const e of await client.bucket('cameras').entries()) console.log(e.name, e.record_count);
   */
  async entries(opts: CallOptions = {}): Promise<EntryInfo<U64>[]> {
    return (await this.info(opts)).entries;
  }

  /**
   * Changes settings; fields left out keep their values.
   * @example
   * await client.bucket('cameras').update({ quota_type: 'FIFO', quota_size: 10_000_000_000 });
   */
  async update(settings: BucketSettingsPatch<U64>, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'PUT', path: this.path(), json: settings });
  }

  /**
   * Removes the bucket and all its data (asynchronous on the server: it shows `DELETING` meanwhile).
   * @example
   * await client.bucket('scratch').remove();
   */
  async remove(opts: CallOptions = {}): Promise<void> {
    await this.http.empty({ ...opts, method: 'DELETE', path: this.path() });
  }

  /**
   * Writes one record; the payload may be a stream (give `size` then). Resolves once it is durable.
   * @example
   * await bucket.write('front', Date.now() * 1000, jpegBytes, {
   *   contentType: 'image/jpeg',
   *   labels: { quality: 'ok' },
   * });
   */
  async write(entry: string, ts: Timestamp, data: RequestBody, opts: WriteOptions = {}): Promise<void> {
    const size = opts.size ?? knownSize(data);
    if (size === undefined) throw Errors.badRequest('write: give `size` for a stream payload');
    const headers: Record<string, string> = {
      'content-type': opts.contentType ?? 'application/octet-stream',
      'x-reduct-content-length': String(size),
      ...labelHeaders(opts.labels),
    };
    await this.http.empty({
      ...opts,
      method: 'POST',
      path: this.path(entry),
      query: { ts: BigInt(ts) },
      headers,
      body: data,
    });
  }

  /**
   * Reads one record (the latest when `ts` is left out); the payload is streamed.
   * @example
   * const rec = await bucket.read('front', 1_700_000_000_000_000n);
   * console.log(rec.ts, rec.labels, (await rec.bytes()).length);
   */
  async read(
    entry: string,
    ts?: Timestamp,
    opts: CallOptions & { head?: boolean } = {},
  ): Promise<ReadRecord> {
    const method = opts.head ? 'HEAD' : 'GET';
    const { response, done } = await this.http.send({
      ...opts,
      method,
      path: this.path(entry),
      query: { ts: ts === undefined ? undefined : BigInt(ts) },
      stream: true,
    });
    const h = response.headers;
    const stream = opts.head ? null : response.body;
    if (opts.head) done();
    const bytes = async (): Promise<Uint8Array> => {
      try {
        return new Uint8Array(await response.arrayBuffer());
      } catch (e) {
        throw this.http.failure(e, opts.signal);
      } finally {
        done();
      }
    };
    return {
      entry: h.get('x-reduct-entry') ?? entry,
      ts: parseU64(h.get('x-reduct-time')) ?? 0n,
      size: Number(h.get('content-length') ?? 0),
      contentType: h.get('content-type') ?? 'application/octet-stream',
      labels: labelsFromHeaders(h),
      stream,
      bytes: opts.head ? async () => new Uint8Array(0) : bytes,
      text: async () => new TextDecoder().decode(opts.head ? new Uint8Array(0) : await bytes()),
    };
  }

  /**
   * Changes labels of one record; an empty value removes a label.
   * @example
   * await bucket.updateLabels('front', ts, { quality: 'bad', reviewed: '' });
   */
  async updateLabels(entry: string, ts: Timestamp, labels: Labels, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({
      ...opts,
      method: 'PATCH',
      path: this.path(entry),
      query: { ts: BigInt(ts) },
      headers: labelHeaders(labels),
    });
  }

  /**
   * Removes one record, or (without `ts`) the entry and its sub-entries.
   * @example
   * await bucket.removeRecord('front', ts);
   * await bucket.removeRecord('old-camera'); // the whole entry
   */
  async removeRecord(entry: string, ts?: Timestamp, opts: CallOptions = {}): Promise<void> {
    await this.http.empty({
      ...opts,
      method: 'DELETE',
      path: this.path(entry),
      query: { ts: ts === undefined ? undefined : BigInt(ts) },
    });
  }

  /**
   * Writes many records of one entry in one request (batch protocol v1). Returns the records the
   * server refused, by timestamp; the others are durable.
   * @example
   * const refused = await bucket.writeBatch('sensor', [
   *   { ts: 1n, data: '21.5', labels: { unit: 'C' } },
   *   { ts: 2n, data: '21.7', labels: { unit: 'C' } },
   * ]);
   * if (refused.size > 0) console.error([...refused]);
   */
  async writeBatch(
    entry: string,
    records: readonly BatchRecord[],
    opts: CallOptions = {},
  ): Promise<Map<bigint, FerryError>> {
    const items = records
      .map((r) => ({ ts: BigInt(r.ts), bytes: toBytes(r.data), r }))
      .sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    const headers = encodeV1Headers(
      items.map(({ ts, bytes, r }) => ({
        ts,
        size: bytes.byteLength,
        contentType: r.contentType ?? '',
        labels: r.labels ?? {},
      })),
    );
    const response = await this.http.empty({
      ...opts,
      method: 'POST',
      path: this.path(entry, '/batch'),
      headers: { ...headers, 'content-type': 'application/octet-stream' },
      body: concatBytes(items.map((i) => i.bytes)),
    });
    return parseV1ErrorHeaders(response.headers);
  }

  /**
   * Queries one entry; records arrive in timestamp order, batch by batch (batch protocol v1). A
   * batch is read whole, so for very large records use `head: true` and {@link Bucket.read}.
   * Breaking out of the loop or aborting the signal stops the query.
   * @example
   * for await (const r of bucket.query('front', { start: 0n, when: { '&quality': { $eq: 'ok' } } })) {
   *   console.log(r.ts, r.labels, r.data.length);
   * }
   */
  async *query(entry: string, opts: QueryOptions = {}): AsyncGenerator<QueriedRecord> {
    const body: QueryRequest = {
      ...queryBody('QUERY', opts),
      only_metadata: opts.head,
      continuous: opts.continuous,
      ttl: opts.ttl,
    };
    const { id } = await this.http.json<QueryCreated<U64>>({
      ...opts,
      method: 'POST',
      path: this.path(entry, '/q'),
      json: body,
    });
    for (;;) {
      const { response, done } = await this.http.send({
        ...opts,
        method: opts.head ? 'HEAD' : 'GET',
        path: this.path(entry, '/batch'),
        query: { q: BigInt(id) },
        stream: true,
      });
      let payload: Uint8Array;
      try {
        payload =
          response.status === 204 || opts.head
            ? new Uint8Array(0)
            : new Uint8Array(await response.arrayBuffer());
      } catch (e) {
        throw this.http.failure(e, opts.signal);
      } finally {
        done();
      }
      if (response.status === 204) {
        if (!opts.continuous) return;
        await delay(CONTINUOUS_POLL_MS, opts.signal);
        continue;
      }
      const { records } = parseV1Batch(response.headers);
      let at = 0;
      for (const r of records) {
        const data = opts.head ? new Uint8Array(0) : payload.subarray(at, at + r.size);
        if (!opts.head) at += r.size;
        yield { entry, ts: r.ts, size: r.size, contentType: r.contentType, labels: r.labels, data };
      }
      // A continuous query reports `last` whenever it has caught up: only a bounded one ends there.
      if (!opts.continuous && response.headers.get('x-reduct-last') === 'true') return;
    }
  }

  /**
   * Removes the records of one entry that match (a REMOVE query); returns how many were removed.
   * @example
   * const n = await bucket.removeWhere('front', { stop: cutoff, when: { '&quality': { $eq: 'bad' } } });
   */
  async removeWhere(
    entry: string,
    opts: Omit<QueryOptions, 'head' | 'continuous' | 'ttl'> = {},
  ): Promise<U64> {
    const body = queryBody('REMOVE', opts);
    const res = await this.http.json<RemovedRecords<U64>>({
      ...opts,
      method: 'POST',
      path: this.path(entry, '/q'),
      json: body,
    });
    return res.removed_records;
  }
}
