/**
 * The query executor: turns a resolved query (bucket, entries, time range, condition) into the
 * stream of records to return, one record at a time (api.md §12, §13.4, §14.1).
 *
 * It applies, in this order: `$meta` tombstone hiding, the `when` condition (strict or not),
 * `$limit` (ends the query), `#ctx_before` / `#ctx_after` context per entry and `#select_labels`.
 * Batching, TTLs and continuous waiting belong to the QueryManager.
 */
import type { FerryError } from '../protocol/errors.js';
import { isFerryError, fromFsError } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';
import type { Bucket, Labels, StoredRecord } from '../storage/types.js';
import { MergedScan } from './merged-scan.js';

/** The part of a compiled `when` condition the executor needs. */
export interface RecordCondition {
  /** Evaluates one record; throws a FerryError (404 `Reference 'x' not found`) on eval errors. */
  evaluate(ctx: { ts: bigint; labels: Labels }): boolean;
  /** True once `$limit` is exhausted: the query ends. */
  readonly done: boolean;
}

/** Context around matches: a number of records or a duration (µs). */
export type ContextSpec = { records: number } | { durationUs: bigint };

/** Options of one executor. */
export interface ExecutorOptions {
  bucket: Bucket;
  /** Entries to start with (already resolved from patterns). */
  entries: string[];
  start: bigint;
  /** Exclusive upper bound per entry. */
  stopOf: (entry: string) => bigint;
  continuous: boolean;
  condition?: RecordCondition;
  strict: boolean;
  ctxBefore?: ContextSpec;
  ctxAfter?: ContextSpec;
  selectLabels?: string[];
  /** Lists the entries to merge now (continuous pattern queries pick up new entries). */
  resolveEntries?: () => string[];
}

/** One record to return, with the labels to emit. */
export interface EmittedRecord {
  record: StoredRecord;
  labels: Labels;
}

/**
 * Result of `pull`: a record, `end` (query finished), `idle` (continuous, caught up) or `timeout`
 * (the deadline passed while skipping records that do not match).
 */
export type PullResult = EmittedRecord | 'end' | 'idle' | 'timeout';

interface EntryContext {
  /** Non-matching records kept for `#ctx_before`. */
  before: StoredRecord[];
  /** Records still to emit after a match (`#ctx_after` by count). */
  afterLeft: number;
  /** Records up to this ts are emitted after a match (`#ctx_after` by duration). */
  afterUntil: bigint;
}

/** Runs one query over a merged multi-entry scan. */
export class QueryExecutor {
  private readonly scan: MergedScan;
  private readonly ready: EmittedRecord[] = [];
  private readonly ctx = new Map<string, EntryContext>();
  private ended = false;
  private failure: FerryError | undefined;

  constructor(private readonly opts: ExecutorOptions) {
    this.scan = new MergedScan(opts.bucket, opts.entries, opts.start, opts.stopOf);
  }

  /** The strict-mode evaluation error that aborted the query, if any. */
  get error(): FerryError | undefined {
    return this.failure;
  }

  /**
   * Next record to return. `end` once a non-continuous query is exhausted or `$limit` is reached;
   * `idle` when a continuous query has caught up with the writers. Throws the strict-mode
   * evaluation error (then again on every later call). With a `deadline` (ms since epoch) the
   * scan over non-matching records gives up with `timeout` once it has passed.
   */
  async pull(deadline?: number): Promise<PullResult> {
    let refreshed = false;
    for (;;) {
      const out = this.ready.shift();
      if (out !== undefined) return out;
      if (this.failure) throw this.failure;
      if (this.ended) return 'end';
      let rec: StoredRecord | undefined;
      try {
        rec = await this.scan.next();
      } catch (e) {
        throw isFerryError(e) ? e : fromFsError(e);
      }
      if (rec === undefined) {
        if (!this.opts.continuous) {
          this.ended = true;
          continue;
        }
        if (refreshed) return 'idle';
        refreshed = true;
        if (this.opts.resolveEntries) for (const e of this.opts.resolveEntries()) this.scan.addEntry(e);
        await this.scan.refresh();
        continue;
      }
      this.process(rec);
      if (deadline !== undefined && this.ready.length === 0 && Date.now() >= deadline) return 'timeout';
    }
  }

  /** Releases the open scans. */
  async close(): Promise<void> {
    this.ended = true;
    this.ready.length = 0;
    await this.scan.close();
  }

  private process(rec: StoredRecord): void {
    const { entry, ts, labels } = rec.meta;
    // tombstoned attachments are invisible, even to stateful operators
    if (labels['remove'] === 'true' && isMetaEntry(entry)) return;

    const cond = this.opts.condition;
    let matched = true;
    if (cond) {
      if (cond.done) {
        this.ended = true;
        return;
      }
      try {
        matched = cond.evaluate({ ts, labels });
      } catch (e) {
        if (!isFerryError(e)) throw e;
        if (this.opts.strict) {
          this.failure = e;
          this.ended = true;
          return;
        }
        matched = false;
      }
    }

    const { ctxBefore, ctxAfter } = this.opts;
    if (!ctxBefore && !ctxAfter) {
      if (matched) this.emit(rec);
    } else {
      const c = this.entryContext(entry);
      if (matched) {
        if (ctxBefore) {
          const from = 'durationUs' in ctxBefore ? ts - ctxBefore.durationUs : undefined;
          for (const r of c.before) if (from === undefined || r.meta.ts >= from) this.emit(r);
          c.before.length = 0;
        }
        this.emit(rec);
        if (ctxAfter) {
          if ('records' in ctxAfter) c.afterLeft = ctxAfter.records;
          else c.afterUntil = ts + ctxAfter.durationUs;
        }
      } else if (c.afterLeft > 0) {
        c.afterLeft--;
        this.emit(rec);
      } else if (ts <= c.afterUntil) {
        this.emit(rec);
      } else if (ctxBefore) {
        c.before.push(rec);
        if ('records' in ctxBefore) {
          if (c.before.length > ctxBefore.records) c.before.shift();
        } else {
          const from = ts - ctxBefore.durationUs;
          while (c.before.length > 0 && c.before[0]!.meta.ts < from) c.before.shift();
        }
      }
    }
    // records already made ready are still returned before `end`
    if (cond?.done) this.ended = true;
  }

  private entryContext(entry: string): EntryContext {
    let c = this.ctx.get(entry);
    if (c === undefined) {
      c = { before: [], afterLeft: 0, afterUntil: -1n };
      this.ctx.set(entry, c);
    }
    return c;
  }

  private emit(record: StoredRecord): void {
    const select = this.opts.selectLabels;
    let labels = record.meta.labels;
    if (select) {
      const picked: Labels = {};
      for (const name of select) {
        const v = labels[name];
        if (v !== undefined) picked[name] = v;
      }
      labels = picked;
    }
    this.ready.push({ record, labels });
  }
}
