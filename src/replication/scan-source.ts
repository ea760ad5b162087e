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
import type { Bucket, RecordMeta } from '../storage/types.js';

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

const big = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(v as number | string));

/** Reads the records a copy still has to ship. */
export class ScanSource {
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
      // read from the entry's position: its earlier batch was delivered (else it would be busy)
      let bucket: Bucket | null = null;
      try {
        bucket = this.bucket();
      } catch {
        // source bucket gone: nothing more to read
      }
      const found = bucket
        ? await bucket.scanMeta(e.name, e.next, e.stop, maxRecords, maxBytes, this.accept)
        : { records: [], done: true };
      const records: RecordMeta[] = found.records;
      let bytes = 0;
      for (const m of records) bytes += m.size;
      const last = found.done;
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
   * Counts what the plan covers (the progress total): metadata only, no payload is read, and no
   * descriptor loaded that is not in memory already. Entries whose whole range is still ahead are
   * counted as they are now.
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
      const n = await bucket.countRange(e.name, this.state.since, e.stop, this.state.lsn);
      total.records += n.records;
      total.bytes += n.bytes;
    }
    return total;
  }

  /**
   * Records that are part of the copy: not those whose write was committed after the copy was
   * planned (storage descriptors carry the LSN of their write).
   */
  private readonly accept = (meta: RecordMeta & { lsn: bigint }): boolean => {
    const bound = this.state.lsn;
    return bound === undefined || meta.lsn <= bound;
  };
}
