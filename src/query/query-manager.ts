/**
 * Server-wide registry of open queries (api.md §9, §10.5, §10.6, §11.3, §11.4, §12): creates
 * queries from QueryEntry bodies or legacy query strings, runs REMOVE queries, assembles read
 * batches under the batch limits, and expires idle queries (TTL).
 */
import { Errors, isFerryError } from '../protocol/errors.js';
import { U64_MAX } from '../protocol/json.js';
import { isMetaEntry } from '../protocol/names.js';
import type { Bucket, Labels, RecordMeta, Storage, StoredRecord } from '../storage/types.js';
import {
  compileCondition,
  passesLenient,
  type CompiledCondition,
  type Directives,
} from './condition/index.js';
import { compileEntryPatterns } from './entry-pattern.js';
import { QueryExecutor, type EmittedRecord, type ExecutorOptions } from './executor.js';
import { checkTimeRange, parseQueryParams, parseQuerySpec, type QuerySpec } from './query-spec.js';

/** Batch limits of reads (api.md §10.6); per-query `#batch_*` directives override them. */
export interface QueryLimits {
  maxRecords: number;
  maxSize: number;
  maxMetadataSize: number;
  batchTimeoutMs: number;
  recordTimeoutMs: number;
}

/** Defaults of api.md §10.6. */
export const DEFAULT_QUERY_LIMITS: QueryLimits = {
  maxRecords: 85,
  maxSize: 8_000_000,
  maxMetadataSize: 512_000,
  batchTimeoutMs: 5_000,
  recordTimeoutMs: 1_000,
};

/**
 * Bounds on open queries (issue 8 item 6). A query counts while it may still return records: from
 * creation until it was read to its end or expired (a finished query only answers 204 until its
 * TTL and holds no executor).
 */
export interface QueryBounds {
  /** Open queries of the whole server (FERRY_MAX_QUERIES). */
  maxOpen: number;
  /** Open queries of one token (FERRY_MAX_QUERIES_PER_TOKEN). */
  maxOpenPerToken: number;
  /** Largest `ttl` a query may ask for, in seconds (FERRY_MAX_QUERY_TTL). */
  maxTtlSeconds: number;
}

/** Defaults of the README's configuration table. */
export const DEFAULT_QUERY_BOUNDS: QueryBounds = {
  maxOpen: 10_000,
  maxOpenPerToken: 1_000,
  maxTtlSeconds: 3_600,
};

/** One record of a batch. */
export interface BatchRecord {
  record: StoredRecord;
  /** labels to emit (after #select_labels) */
  labels: Labels;
}

/** One read batch. */
export interface QueryBatch {
  records: BatchRecord[];
  /** true when this batch ends the query (x-reduct-last) */
  last: boolean;
  /** The query was created with `only_metadata`: send headers (real sizes) but no payloads. */
  onlyMetadata: boolean;
}

/** Options of `QueryManager.next`. */
export interface NextOptions {
  /** Set for entry-level reads (`/b/{b}/{e}/batch?q=`, `/b/{b}/{e}?q=`). */
  entry?: string;
  /** HEAD request: the body-size limit does not apply. */
  head: boolean;
  /** Upper bound on the number of records (1 for single-record `?q=` reads). */
  maxRecords?: number;
}

interface ActiveQuery {
  id: bigint;
  /** Token that opened it ('' when unknown), for the per-token bound. */
  owner: string;
  /** Still counted against the bounds (not finished, not dropped). */
  counted: boolean;
  bucket: string;
  entry: string | undefined;
  exec: QueryExecutor;
  ttlMs: number;
  lastAccess: number;
  reading: number;
  continuous: boolean;
  onlyMetadata: boolean;
  limits: QueryLimits;
  /** A record pulled but left for the next batch because a limit was hit. */
  /** Records taken from the executor but not delivered yet, delivered first (in order). */
  pushback: EmittedRecord[];
  /** Non-continuous query fully returned: reads answer 204 until the TTL expires. */
  finished: boolean;
  /** Serialises reads of the same query. */
  lock: Promise<void>;
  /** The next batch, assembled while the previous one is being sent (bucket-level, finite queries). */
  prefetch: { batch: Promise<QueryBatch>; head: boolean } | undefined;
}

/** Rough size of a record's metadata headers, for the metadata-size limit. */
function metadataEstimate(r: EmittedRecord): number {
  let n = 48 + r.record.meta.contentType.length;
  for (const k in r.labels) n += k.length + r.labels[k]!.length + 4;
  return n;
}

const GC_INTERVAL_MS = 1_000;
/** How many record removals of a REMOVE query are in flight at once (they share group commits). */
const REMOVE_WINDOW = 64;

/** The query registry of one server. */
export class QueryManager {
  private readonly now: () => number;
  private readonly storage: Storage;
  private readonly limits: QueryLimits;
  private readonly bounds: QueryBounds;
  private readonly queries = new Map<bigint, ActiveQuery>();
  /** Counted queries per owner, and in all. */
  private readonly openByOwner = new Map<string, number>();
  private openCount = 0;
  private readonly waiters = new Set<() => void>();
  private counter = 0n;
  private readonly gcTimer: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  /**
   * @param opts.now the clock of query TTLs (idle expiry), `Date.now` unless a test injects one;
   *   batch deadlines and waits stay on real time.
   */
  constructor(opts: { storage: Storage; limits: QueryLimits; bounds?: QueryBounds; now?: () => number }) {
    this.now = opts.now ?? Date.now;
    this.storage = opts.storage;
    this.limits = opts.limits;
    this.bounds = opts.bounds ?? DEFAULT_QUERY_BOUNDS;
    this.gcTimer = setInterval(() => this.collectExpired(), GC_INTERVAL_MS);
    this.gcTimer.unref();
    // every commit may have added records a continuous query is waiting for
    this.unsubscribe = this.storage.changes.onCommit(() => this.wakeAll());
  }

  /** Number of open queries (for diagnostics and tests). */
  get size(): number {
    return this.queries.size;
  }

  /** Queries counted against the bounds (not yet read to their end). */
  get openQueries(): number {
    return this.openCount;
  }

  /**
   * QUERY via POST /io/{b}/q (entry undefined, body.entries used) or POST /b/{b}/{e}/q (entry set).
   * Returns the new id from one server-wide counter starting at 1. `owner` (the token name) is
   * what the per-token bound counts; 429 beyond a bound, 422 for a `ttl` above the maximum.
   */
  async create(bucket: string, body: unknown, entry?: string, owner = ''): Promise<bigint> {
    const b = this.storage.bucket(bucket);
    const spec = parseQuerySpec(body);
    if (spec.queryType !== 'QUERY') throw Errors.queryInvalidField("query_type must be 'QUERY'");
    return this.open(b, spec, entry, owner);
  }

  /** GET /b/{b}/{e}/q?start&stop&ttl&continuous (legacy, §9). */
  async createFromParams(
    bucket: string,
    entry: string,
    params: URLSearchParams,
    owner = '',
  ): Promise<bigint> {
    const b = this.storage.bucket(bucket);
    return this.open(b, parseQueryParams(params, 'QUERY'), entry, owner);
  }

  /** REMOVE via POST .../q with query_type REMOVE → number of removed records. */
  async remove(bucket: string, body: unknown, entry?: string): Promise<bigint> {
    const b = this.storage.bucket(bucket);
    const spec = parseQuerySpec(body);
    if (spec.queryType !== 'REMOVE') throw Errors.queryInvalidField("query_type must be 'REMOVE'");
    return this.runRemove(b, spec, entry);
  }

  /** DELETE /b/{b}/{e}/q?start&stop → number of removed records. */
  async removeFromParams(bucket: string, entry: string, params: URLSearchParams): Promise<bigint> {
    const b = this.storage.bucket(bucket);
    return this.runRemove(b, parseQueryParams(params, 'REMOVE'), entry);
  }

  /**
   * Next batch of a query. `entry` set = entry-level read (ids are valid only for the bucket/entry
   * that created them, 404 otherwise). Throws 404 (unknown/expired) or FerryError(204,
   * 'No content') when exhausted; a strict-mode eval error is thrown on the next read.
   */
  async next(bucket: string, id: bigint, opts: NextOptions): Promise<QueryBatch> {
    const q = this.queries.get(id);
    if (q === undefined || q.bucket !== bucket || q.entry !== opts.entry) throw Errors.queryNotFound(id);
    if (q.reading === 0 && this.expired(q, this.now())) {
      this.drop(q);
      throw Errors.queryNotFound(id);
    }
    q.reading++;
    q.lastAccess = this.now();
    const run = q.lock.then(() => this.nextBatch(q, opts));
    q.lock = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      q.reading--;
      q.lastAccess = this.now();
    }
  }

  /** Stops the GC timer, closes every query and wakes pending reads. */
  close(): void {
    clearInterval(this.gcTimer);
    this.unsubscribe();
    for (const q of [...this.queries.values()]) this.drop(q);
    this.wakeAll();
  }

  // ------------------------------------------------------------------------------------------

  /**
   * Validates a QUERY body as `create` would, without opening a query (422 with the same messages).
   * Query links (api.md §15) check their stored query when they are made.
   */
  checkQuery(body: unknown): void {
    const spec = parseQuerySpec(body);
    if (spec.queryType !== 'QUERY') throw Errors.queryInvalidField("query_type must be 'QUERY'");
    checkTimeRange(spec);
    if (spec.extensions.length > 0) throw Errors.queryUnknownExtension(spec.extensions[0]!, ++this.counter);
    if (spec.when !== undefined) compileCondition(spec.when);
  }

  /**
   * Runs a bucket-level QUERY body (api.md §11.3) until it passes `ts` and returns the record
   * (`entry`, `ts`) with the labels the query emits, or undefined when the record is not part of
   * the result. With stateful operators (`$each_n`, `$limit`…) or context directives the whole
   * result up to `ts` is evaluated, so that the selection is exactly what a client reading the
   * query would get; otherwise only the record itself is read. `continuous` is ignored:
   * the query reads what exists now. Used by query links (api.md §15).
   */
  async findRecord(
    bucket: string,
    body: unknown,
    entry: string,
    ts: bigint,
  ): Promise<BatchRecord | undefined> {
    const b = this.storage.bucket(bucket);
    const spec: QuerySpec = { ...parseQuerySpec(body), continuous: false };
    if (spec.queryType !== 'QUERY') throw Errors.queryInvalidField("query_type must be 'QUERY'");
    checkTimeRange(spec);
    if (spec.extensions.length > 0) throw Errors.queryUnknownExtension(spec.extensions[0]!, ++this.counter);
    const options = await this.executorOptions(b, spec, undefined);
    if (!options.stateful && !options.ctxBefore && !options.ctxAfter) {
      // Whether a record is in the result depends on that record alone: read just it.
      if (!options.entries.includes(entry) || ts < options.start) return undefined;
      const stopOf = options.stopOf;
      options.entries = [entry];
      options.start = ts;
      options.stopOf = (e) => (stopOf(e) < ts + 1n ? stopOf(e) : ts + 1n);
    }
    // `#ctx_before` emits records after later ones: only without it does passing `ts` end the search.
    const canStopEarly = options.ctxBefore === undefined;
    const exec = new QueryExecutor(options);
    try {
      for (;;) {
        const item = await exec.pull();
        if (item === 'end' || item === 'idle' || item === 'timeout') return undefined;
        const m = item.record.meta;
        if (m.ts === ts && m.entry === entry) return item;
        if (canStopEarly && m.ts > ts) return undefined;
      }
    } finally {
      await exec.close();
    }
  }

  /** 422 / 429 when a new query of `owner` with `ttl` seconds would break a bound. */
  private checkBounds(owner: string, ttl: bigint): void {
    const { maxOpen, maxOpenPerToken, maxTtlSeconds } = this.bounds;
    if (ttl > BigInt(maxTtlSeconds)) throw Errors.queryTtlTooLong(ttl, maxTtlSeconds);
    if ((this.openByOwner.get(owner) ?? 0) >= maxOpenPerToken) {
      throw Errors.tooManyQueriesOfToken(owner, maxOpenPerToken);
    }
    if (this.openCount >= maxOpen) throw Errors.tooManyQueries(maxOpen);
  }

  /** Stops counting `q` against the bounds (finished or dropped). */
  private release(q: ActiveQuery): void {
    if (!q.counted) return;
    q.counted = false;
    this.openCount--;
    const n = (this.openByOwner.get(q.owner) ?? 1) - 1;
    if (n > 0) this.openByOwner.set(q.owner, n);
    else this.openByOwner.delete(q.owner);
  }

  private async open(b: Bucket, spec: QuerySpec, entry: string | undefined, owner: string): Promise<bigint> {
    checkTimeRange(spec);
    this.checkBounds(owner, spec.ttl);
    const id = ++this.counter;
    if (spec.extensions.length > 0) throw Errors.queryUnknownExtension(spec.extensions[0]!, id);
    const options = await this.executorOptions(b, spec, entry);
    const d = options.directives;
    const ttlSeconds = Number(spec.ttl);
    // Checked again: the awaits above let other creations of the same owner through meanwhile.
    this.checkBounds(owner, spec.ttl);
    this.openCount++;
    this.openByOwner.set(owner, (this.openByOwner.get(owner) ?? 0) + 1);
    this.queries.set(id, {
      id,
      owner,
      counted: true,
      bucket: b.name,
      entry,
      exec: new QueryExecutor(options),
      ttlMs: ttlSeconds * 1000,
      lastAccess: this.now(),
      reading: 0,
      continuous: spec.continuous,
      onlyMetadata: spec.onlyMetadata,
      limits: {
        maxRecords: d.batchRecords ?? this.limits.maxRecords,
        maxSize: d.batchSize ?? this.limits.maxSize,
        maxMetadataSize: d.batchMetadataSize ?? this.limits.maxMetadataSize,
        batchTimeoutMs: d.batchTimeoutMs ?? this.limits.batchTimeoutMs,
        recordTimeoutMs: d.recordTimeoutMs ?? this.limits.recordTimeoutMs,
      },
      pushback: [],
      finished: false,
      lock: Promise.resolve(),
      prefetch: undefined,
    });
    return id;
  }

  /** Executor options of a validated spec (entry set = entry-level query), plus its directives. */
  private async executorOptions(
    b: Bucket,
    spec: QuerySpec,
    entry: string | undefined,
  ): Promise<ExecutorOptions & { directives: Directives; stateful: boolean }> {
    const condition = spec.when === undefined ? undefined : compileCondition(spec.when);
    const d = condition?.directives ?? {};
    if (entry !== undefined && !b.hasEntry(entry)) throw Errors.entryNotFound(entry, b.name);

    const match = entry === undefined ? compileEntryPatterns(spec.entries) : undefined;
    const resolve = (): string[] => (match ? b.entryNames().filter(match) : [entry!]);
    const entries = resolve();
    const stopOf = spec.continuous ? () => U64_MAX : await this.stopResolver(b, entries, spec.stop);
    return {
      directives: d,
      stateful: condition?.stateful ?? false,
      bucket: b,
      entries,
      start: spec.start ?? 0n,
      stopOf,
      continuous: spec.continuous,
      strict: spec.strict,
      ...(condition && { condition }),
      ...(d.ctxBefore && { ctxBefore: d.ctxBefore }),
      ...(d.ctxAfter && { ctxAfter: d.ctxAfter }),
      ...(d.selectLabels && { selectLabels: d.selectLabels }),
      ...(spec.continuous && match && { resolveEntries: resolve }),
    };
  }

  /**
   * Upper bounds of a non-continuous query: the explicit stop, or each entry's latest record + 1
   * at creation time (records written later are not part of the result).
   */
  private async stopResolver(
    b: Bucket,
    entries: string[],
    stop: bigint | undefined,
  ): Promise<(e: string) => bigint> {
    if (stop !== undefined) return () => stop;
    const info = new Map(b.entries().map((e) => [e.name, e]));
    const stops = new Map<string, bigint>();
    for (const e of entries) {
      const i = info.get(e);
      if (i !== undefined) {
        if (i.record_count > 0n) stops.set(e, i.latest_record + 1n);
        continue;
      }
      try {
        // `$meta` entries are not listed in entries(): ask for their latest record
        stops.set(e, (await b.read(e)).meta.ts + 1n);
      } catch (err) {
        if (!isFerryError(err)) throw err;
      }
    }
    return (e) => stops.get(e) ?? 0n;
  }

  private async runRemove(b: Bucket, spec: QuerySpec, entry: string | undefined): Promise<bigint> {
    if (spec.start === undefined && spec.stop === undefined && spec.when === undefined) {
      throw Errors.queryRemoveWithoutParams();
    }
    checkTimeRange({ ...spec, continuous: false });
    if (spec.extensions.length > 0) throw Errors.queryUnknownExtension(spec.extensions[0]!, ++this.counter);
    const condition = spec.when === undefined ? undefined : compileCondition(spec.when);
    let entries: string[];
    if (entry !== undefined) {
      if (!b.hasEntry(entry)) return 0n;
      entries = [entry];
    } else {
      entries = b.entryNames().filter(compileEntryPatterns(spec.entries));
    }
    // attachments are removed by tombstones only (§14.1)
    entries = entries.filter((e) => !isMetaEntry(e));
    const stop = spec.stop ?? U64_MAX;
    // Bulk when the order records are judged in does not matter: no condition, or a stateless one
    // that skips what it cannot judge (strict mode fails at the first such record in time order).
    if (condition === undefined || (!condition.stateful && !spec.strict)) {
      return this.removeTimeRange(b, entries, spec.start ?? 0n, stop, condition);
    }
    const exec = new QueryExecutor({
      bucket: b,
      entries,
      start: spec.start ?? 0n,
      stopOf: () => stop,
      continuous: false,
      strict: spec.strict,
      ...(condition && { condition }),
    });
    let removed = 0n;
    let inflight: Promise<void>[] = [];
    const flush = async (): Promise<void> => {
      const results = await Promise.allSettled(inflight);
      inflight = [];
      for (const r of results) {
        if (r.status === 'fulfilled') removed++;
        else if (!(isFerryError(r.reason) && r.reason.status === 404)) throw r.reason;
      }
    };
    try {
      for (;;) {
        const item = await exec.pull();
        if (item === 'end' || item === 'idle' || item === 'timeout') break;
        const { entry: e, ts } = item.record.meta;
        inflight.push(b.removeRecord(e, ts));
        if (inflight.length >= REMOVE_WINDOW) await flush();
      }
      await flush();
    } finally {
      await Promise.allSettled(inflight);
      await exec.close();
    }
    return removed;
  }

  /**
   * A remove query over a time range whose records can be judged one by one in any order: the
   * bulk path (`removeRange`: whole blocks dropped, the others one commit per block).
   */
  private async removeTimeRange(
    b: Bucket,
    entries: string[],
    start: bigint,
    stop: bigint,
    condition: CompiledCondition | undefined,
  ): Promise<bigint> {
    const select = condition && ((m: RecordMeta): boolean => passesLenient(condition, m));
    let removed = 0n;
    for (const e of entries) {
      for (let from = start; ;) {
        const step = await b.removeRange(e, from, stop, select && { select });
        removed += BigInt(step.removed);
        if (step.done) break;
        from = step.next;
      }
    }
    return removed;
  }

  /**
   * Returns the prefetched batch if there is one, else assembles it; then, for bucket-level finite
   * queries, starts assembling the following batch so that scanning overlaps with sending.
   */
  private async nextBatch(q: ActiveQuery, opts: NextOptions): Promise<QueryBatch> {
    const pending = q.prefetch;
    q.prefetch = undefined;
    let batch: QueryBatch;
    if (pending && pending.head === opts.head && opts.maxRecords === undefined) {
      batch = await pending.batch;
    } else {
      if (pending) {
        // Assembled under other limits (GET vs HEAD): give its records back, then assemble anew.
        const early = await pending.batch.catch(() => undefined);
        if (early) {
          q.pushback.unshift(...early.records);
          q.finished = false;
        }
      }
      batch = await this.assemble(q, opts);
    }
    if (!batch.last && !q.continuous && q.entry === undefined && opts.maxRecords === undefined) {
      const next = this.assemble(q, opts);
      // An error (e.g. strict mode) surfaces on the next read, which awaits this promise.
      next.catch(() => undefined);
      q.prefetch = { batch: next, head: opts.head };
    }
    return batch;
  }

  private async assemble(q: ActiveQuery, opts: NextOptions): Promise<QueryBatch> {
    if (!this.queries.has(q.id)) throw Errors.queryNotFound(q.id);
    const err = q.exec.error;
    if (err) throw err;
    if (q.finished) throw Errors.noContent();

    const limits = q.limits;
    const maxRecords = Math.max(1, Math.min(opts.maxRecords ?? Infinity, limits.maxRecords));
    const sizeLimited = !opts.head && !q.onlyMetadata;
    const entryLevel = q.entry !== undefined;
    const deadline = Date.now() + limits.batchTimeoutMs;
    const records: BatchRecord[] = [];
    let size = 0;
    let meta = 0;
    let last = false;

    while (records.length < maxRecords) {
      let item: EmittedRecord | 'end' | 'idle' | 'timeout';
      if (q.pushback.length > 0) {
        item = q.pushback.shift()!;
      } else {
        try {
          item = await q.exec.pull(deadline);
        } catch (e) {
          // a strict-mode failure after some records: return them, fail on the next read
          if (records.length > 0 && q.exec.error !== undefined) break;
          throw e;
        }
      }
      if (item === 'timeout') break;
      if (item === 'end') {
        last = true;
        q.finished = true;
        // Only 204 answers are left: it no longer counts, and its executor is not needed.
        this.release(q);
        void q.exec.close().catch(() => undefined);
        break;
      }
      if (item === 'idle') {
        if (entryLevel) {
          // §10.5: an entry-level continuous query reports `last` once it has caught up
          if (records.length === 0) throw Errors.noContent();
          last = true;
          break;
        }
        const now = Date.now();
        if (now >= deadline) break;
        const wait = records.length > 0 ? Math.min(limits.recordTimeoutMs, deadline - now) : deadline - now;
        const woken = await this.waitForData(wait);
        if (!woken && records.length > 0) break;
        if (!this.queries.has(q.id)) break;
        continue;
      }
      const est = metadataEstimate(item);
      if (
        records.length > 0 &&
        ((sizeLimited && size + item.record.meta.size > limits.maxSize) ||
          meta + est > limits.maxMetadataSize)
      ) {
        q.pushback.unshift(item);
        break;
      }
      records.push(item);
      size += item.record.meta.size;
      meta += est;
      if (Date.now() >= deadline) break;
    }
    if (records.length === 0 && last) throw Errors.noContent();
    return { records, last, onlyMetadata: q.onlyMetadata };
  }

  /** Resolves true when woken by a commit, false after `ms`. */
  private waitForData(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (woken: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(woken);
      };
      const wake = (): void => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, ms));
      this.waiters.add(wake);
    });
  }

  private wakeAll(): void {
    for (const w of [...this.waiters]) w();
  }

  private expired(q: ActiveQuery, now: number): boolean {
    return now - q.lastAccess >= q.ttlMs;
  }

  private collectExpired(): void {
    const now = this.now();
    for (const q of this.queries.values()) {
      if (q.reading === 0 && this.expired(q, now)) this.drop(q);
    }
  }

  private drop(q: ActiveQuery): void {
    this.release(q);
    this.queries.delete(q.id);
    void q.exec.close().catch(() => undefined);
  }
}
