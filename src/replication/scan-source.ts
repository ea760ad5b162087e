/**
 * The scan source of a replication (replication.md §6): the records that already exist in the
 * source bucket, entry by entry in timestamp order, for an initial copy (`since`) or a one-shot run
 * (`continuous: false`). Reads storage only; knows nothing of targets, windows or checkpoints files.
 *
 * Its position is a {@link CopyState}: the plan fixed when the copy started (which entries, and
 * each entry's exclusive upper bound: `until`, or its latest record + 1 at that moment; and the
 * change-log position then, so that a write committed later is left out even when its timestamp
 * falls inside a bound: a one-shot copies what was committed before it started, §6.2, and a
 * continuous copy gets later writes from the log) and, per entry, the next timestamp to read. The state is plain
 * JSON-safe data that the task persists with its checkpoint; a restart resumes each entry at its
 * persisted position. The source hands out at most one batch per entry at a time (`busy`), so an
 * entry's persisted position is never more than one batch behind what was shipped.
 */
import { U64_MAX } from '../protocol/json.js';
import { isMetaEntry, matchesWithMeta } from '../query/entry-pattern.js';
import type { Bucket, RecordMeta, StoredRecord } from '../storage/types.js';

/** Plan and position of one entry of a copy. */
export interface CopyEntryState {
  name: string;
  /** Next timestamp to read (everything below it was delivered). */
  next: bigint;
  /** Exclusive upper bound, fixed when the copy was planned. */
  stop: bigint;
  done: boolean;
}

/** Records and payload bytes. */
export interface CopyAmount {
  records: number;
  bytes: number;
}

/** Persisted state of a copy (the scan source's opaque position). */
export interface CopyState {
  since: bigint;
  until: bigint | null;
  entries: CopyEntryState[];
  /**
   * Change-log position when the copy was planned: records whose write has a later LSN are not
   * part of the copy. Absent in states persisted before it existed (no such bound).
   */
  lsn?: bigint;
  /** What the plan covers (in scope before `when`), null until counted. */
  total: CopyAmount | null;
  /** Delivered (shipped, already present, filtered out or skipped). */
  done: CopyAmount;
  started_at: string;
  completed_at: string | null;
  /** State of stateful `when` operators for the copy's records (opaque, per entry). */
  filter: Record<string, unknown>;
}

/** One batch of records of one entry, in timestamp order. */
export interface ScanBatch {
  entry: string;
  records: RecordMeta[];
  bytes: number;
  /** Position of the entry after this batch. */
  next: bigint;
  /** Nothing more to read below the entry's bound. */
  last: boolean;
}

interface Cursor {
  it: AsyncIterator<StoredRecord>;
  peeked: StoredRecord | null;
}

const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(v as number | string));

/** Reads the records a copy still has to ship. */
export class ScanSource {
  private readonly cursors = new Map<string, Cursor>();

  constructor(
    private readonly bucket: () => Bucket,
    readonly state: CopyState,
  ) {}

  /**
   * Plans a copy of the entries of `bucket` that `match` accepts (`$meta` children follow their
   * parent), from `since` to `until` (exclusive) or each entry's latest record, and, with `lsn`,
   * only records whose write was committed at or before that change-log position.
   */
  static plan(
    bucket: Pick<Bucket, 'entries' | 'entryNames'> | null,
    match: (entry: string) => boolean,
    since: bigint,
    until: bigint | null,
    now: number,
    lsn?: bigint,
  ): CopyState {
    const latest = new Map((bucket?.entries() ?? []).map((e) => [e.name, e.latest_record] as const));
    const entries: CopyEntryState[] = [];
    for (const name of bucket?.entryNames() ?? []) {
      if (!matchesWithMeta(match, name)) continue;
      const last = latest.get(name);
      // attachments ($meta) have no entry info: bounded by `until` only
      let stop = last === undefined ? U64_MAX : last + 1n;
      if (isMetaEntry(name) || last === undefined) stop = U64_MAX;
      if (until !== null && until < stop) stop = until;
      entries.push({ name, next: since, stop, done: since >= stop });
    }
    return {
      since,
      until,
      entries,
      ...(lsn === undefined ? {} : { lsn }),
      total: null,
      done: { records: 0, bytes: 0 },
      started_at: new Date(now).toISOString(),
      completed_at: null,
      filter: {},
    };
  }

  /** A state read back from JSON (u64 values may come back as numbers). */
  static restore(raw: CopyState): CopyState {
    return {
      ...raw,
      since: big(raw.since),
      until: raw.until === null || raw.until === undefined ? null : big(raw.until),
      entries: raw.entries.map((e) => ({ ...e, next: big(e.next), stop: big(e.stop) })),
      ...(raw.lsn === undefined || raw.lsn === null ? {} : { lsn: big(raw.lsn) }),
      done: { ...raw.done },
      total: raw.total ? { ...raw.total } : null,
      filter: raw.filter ?? {},
    };
  }

  /** Every entry was read to its bound and delivered. */
  get finished(): boolean {
    return this.state.entries.every((e) => e.done);
  }

  /** Entries not finished yet. */
  get remainingEntries(): number {
    return this.state.entries.reduce((n, e) => n + (e.done ? 0 : 1), 0);
  }

  /**
   * The next batch of the first unfinished entry that is not `busy`, at most `maxRecords` records
   * and `maxBytes` bytes (a single larger record is a batch of its own); null when every
   * unfinished entry is busy or none is left.
   */
  async next(maxRecords: number, maxBytes: number, busy: ReadonlySet<string>): Promise<ScanBatch | null> {
    for (const e of this.state.entries) {
      if (e.done || busy.has(e.name)) continue;
      const cur = this.cursor(e);
      const records: RecordMeta[] = [];
      let bytes = 0;
      let last = false;
      while (records.length < maxRecords) {
        const r = cur.peeked ?? (await this.pull(e, cur));
        cur.peeked = null;
        if (!r) {
          last = true;
          break;
        }
        if (records.length > 0 && bytes + r.meta.size > maxBytes) {
          cur.peeked = r;
          break;
        }
        records.push(r.meta);
        bytes += r.meta.size;
      }
      if (last) this.closeCursor(e.name);
      const tail = records[records.length - 1];
      const next = last ? e.stop : tail ? tail.ts + 1n : e.next;
      return { entry: e.name, records, bytes, next, last };
    }
    return null;
  }

  /** A batch was delivered: its entry's position moves past it. */
  commit(batch: ScanBatch, delivered: CopyAmount): void {
    const e = this.state.entries.find((x) => x.name === batch.entry);
    if (!e) return;
    if (batch.next > e.next) e.next = batch.next;
    if (batch.last) e.done = true;
    this.state.done.records += delivered.records;
    this.state.done.bytes += delivered.bytes;
  }

  /**
   * Counts what the plan covers (the progress total): metadata only, no payload is read. Entries
   * whose whole range is still ahead are counted as they are now.
   */
  async count(): Promise<CopyAmount> {
    const total: CopyAmount = { records: 0, bytes: 0 };
    let bucket: Bucket;
    try {
      bucket = this.bucket();
    } catch {
      return total;
    }
    for (const e of this.state.entries) {
      for await (const r of bucket.scan(e.name, this.state.since, e.stop)) {
        if (this.committedLater(r)) continue;
        total.records++;
        total.bytes += r.meta.size;
      }
    }
    return total;
  }

  /** Releases the open scans. */
  close(): void {
    for (const name of [...this.cursors.keys()]) this.closeCursor(name);
  }

  private cursor(e: CopyEntryState): Cursor {
    let cur = this.cursors.get(e.name);
    if (!cur) {
      let it: AsyncIterator<StoredRecord>;
      try {
        it = this.bucket().scan(e.name, e.next, e.stop)[Symbol.asyncIterator]();
      } catch {
        it = (async function* () {})();
      }
      cur = { it, peeked: null };
      this.cursors.set(e.name, cur);
    }
    return cur;
  }

  private async pull(e: CopyEntryState, cur: Cursor): Promise<StoredRecord | null> {
    for (;;) {
      let r: IteratorResult<StoredRecord>;
      try {
        r = await cur.it.next();
      } catch (err) {
        // a failed scan is finished: the next attempt starts a fresh one at the entry's position
        this.closeCursor(e.name);
        throw err;
      }
      if (r.done) return null;
      if (r.value.meta.ts >= e.stop) return null;
      if (!this.committedLater(r.value)) return r.value;
    }
  }

  /** The record's write was committed after the copy was planned (not part of it). */
  private committedLater(r: StoredRecord): boolean {
    const bound = this.state.lsn;
    // storage descriptors carry the LSN of their write (RecordMeta does not promise it)
    const lsn = (r.meta as RecordMeta & { lsn?: bigint }).lsn;
    return bound !== undefined && typeof lsn === 'bigint' && lsn > bound;
  }

  private closeCursor(name: string): void {
    const cur = this.cursors.get(name);
    this.cursors.delete(name);
    void cur?.it.return?.().catch(() => undefined);
  }
}
