/**
 * The consistency-group workload of the group replication tests: a writer that writes a global
 * sequence number (label `seq`, also the timestamp) into records spread over member buckets and
 * entries, as single writes and batches, with label updates between; and a reader that reads the
 * destination members one (bucket, entry) at a time, again and again, and checks on EVERY read
 * the prefix property (never a later record without every earlier one) with `prefixViolation`.
 * The sides are reached through a small `GroupSide` interface, so the same workload runs
 * in-process (storage) and against server processes (HTTP).
 */
import { prefixViolation } from './shipment-workload.js';
import { seededBytes } from './seed.js';
import type { Storage } from '../../src/storage/types.js';

/** One record of a member. */
export interface SideRecord {
  ts: bigint;
  labels: Record<string, string>;
  contentType: string;
  body: Buffer;
}

/** What the workload needs of one side. */
export interface GroupSide {
  write(
    bucket: string,
    entry: string,
    records: ReadonlyArray<Omit<SideRecord, 'labels'> & { labels: Record<string, string> }>,
  ): Promise<void>;
  updateLabels(bucket: string, entry: string, ts: bigint, labels: Record<string, string>): Promise<void>;
  /** Every record of an entry (empty when the bucket or entry does not exist). */
  read(bucket: string, entry: string): Promise<SideRecord[]>;
  entries(bucket: string): Promise<string[]>;
}

export const ENTRIES = ['e', 'f/g'];

/** A side reached in-process through its storage. */
export function storageSide(storage: () => Storage): GroupSide {
  return {
    async write(bucket, entry, records) {
      const b = storage().bucket(bucket);
      const opts = (r: (typeof records)[number]) => ({
        size: r.body.length,
        labels: r.labels,
        contentType: r.contentType,
      });
      if (records.length === 1) {
        const r = records[0]!;
        await b.write(entry, r.ts, opts(r), r.body);
        return;
      }
      const res = await b.writeMany(
        records.map((r) => ({ entry, ts: r.ts, opts: opts(r), payload: r.body })),
      );
      for (const x of res) if (x instanceof Error) throw x;
    },
    async updateLabels(bucket, entry, ts, labels) {
      await storage().bucket(bucket).updateLabels(entry, ts, labels);
    },
    async read(bucket, entry) {
      const s = storage();
      if (!s.hasBucket(bucket) || !s.bucket(bucket).hasEntry(entry)) return [];
      const out: SideRecord[] = [];
      for await (const r of s.bucket(bucket).scan(entry, 0n, 2n ** 63n))
        out.push({
          ts: r.meta.ts,
          labels: r.meta.labels,
          contentType: r.meta.contentType,
          body: await r.buffer(),
        });
      return out;
    },
    async entries(bucket) {
      const s = storage();
      return s.hasBucket(bucket) ? s.bucket(bucket).entryNames() : [];
    },
  };
}

/** Writes seq 1, 2, 3… over `members`: singles and batches of up to 8 records, some label updates. */
export class GroupWriter {
  seq = 0;
  /** Where each seq went (`bucket/entry`). */
  readonly placeOf = new Map<number, string>();
  /** The seqs of each multi-record batch, by each of its seqs. */
  readonly batchOf = new Map<number, readonly number[]>();
  private readonly written: Array<{ bucket: string; entry: string; ts: bigint }> = [];

  constructor(
    private readonly side: GroupSide,
    private readonly random: () => number,
    public members: string[],
  ) {}

  /** One step: a single write, a batch, or a label update of an earlier record. */
  async step(): Promise<void> {
    const roll = this.random();
    if (roll < 0.1 && this.written.length > 0) {
      const r = this.written[Math.floor(this.random() * this.written.length)]!;
      await this.side.updateLabels(r.bucket, r.entry, r.ts, { touched: String(this.seq) });
      return;
    }
    const bucket = this.members[Math.floor(this.random() * this.members.length)]!;
    const entry = ENTRIES[Math.floor(this.random() * ENTRIES.length)]!;
    const n = roll < 0.55 ? 1 : 2 + Math.floor(this.random() * 7);
    const records = [];
    for (let i = 0; i < n; i++) {
      const seq = ++this.seq;
      this.placeOf.set(seq, `${bucket}/${entry}`);
      records.push({
        ts: BigInt(seq),
        labels: { seq: String(seq) },
        contentType: 'application/octet-stream',
        body: seededBytes(this.random, 1 + Math.floor(this.random() * 300)),
      });
    }
    if (n > 1) {
      const seqs = records.map((r) => Number(r.ts));
      for (const q of seqs) this.batchOf.set(q, seqs);
    }
    await this.side.write(bucket, entry, records);
    for (const r of records) this.written.push({ bucket, entry, ts: r.ts });
  }
}

/** Reads the destination members continuously and checks the prefix property on every read. */
export class PrefixReader {
  readonly reads: Array<{ bucket: string; seqs: number[] }> = [];
  violation: string | null = null;
  polls = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly side: GroupSide,
    /** Destination bucket of a member. */
    private readonly dstOf: (member: string) => string,
    private readonly members: () => readonly string[],
    private readonly placeOf: ReadonlyMap<number, string>,
    /** Batches (see `GroupWriter.batchOf`): all of one or none is visible. */
    private readonly batchOf: ReadonlyMap<number, readonly number[]> = new Map(),
  ) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let known = 0;
    while (!this.stopped && this.violation === null) {
      for (const m of this.members()) {
        for (const entry of ENTRIES) {
          let seqs: number[];
          try {
            seqs = (await this.side.read(this.dstOf(m), entry)).map((r) => Number(r.labels.seq));
          } catch {
            continue; // the destination is down (killed): nothing seen
          }
          const read = { bucket: `${m}/${entry}`, seqs };
          // checked against everything seen before (the state only grows)
          const v = prefixViolation([{ bucket: '', seqs: known > 0 ? [known] : [] }, read], this.placeOf);
          this.polls++;
          if (v !== null || (this.violation = this.partialBatch(read.bucket, seqs)) !== null) {
            this.violation ??= v;
            return;
          }
          known = Math.max(known, ...seqs);
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** A batch of which a read shows some records but not all, or null. */
  private partialBatch(place: string, seqs: readonly number[]): string | null {
    const seen = new Set(seqs);
    for (const q of seqs) {
      const batch = this.batchOf.get(q);
      const missing = batch?.find((b) => !seen.has(b));
      if (missing !== undefined)
        return `${place} shows seq ${q} of batch ${batch!.join(',')} without seq ${missing}: a batch arrived in parts`;
    }
    return null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** Every record of every member on a side, for comparing both sides. */
export async function dumpMembers(
  side: GroupSide,
  buckets: readonly string[],
): Promise<Map<string, Array<{ ts: string; labels: string; contentType: string; body: string }>>> {
  const out = new Map<string, Array<{ ts: string; labels: string; contentType: string; body: string }>>();
  for (const [i, b] of buckets.entries()) {
    for (const e of ENTRIES) {
      const recs = await side.read(b, e);
      out.set(
        `${i}/${e}`,
        recs.map((r) => ({
          ts: String(r.ts),
          labels: JSON.stringify(Object.entries(r.labels).sort()),
          contentType: r.contentType,
          body: r.body.toString('hex'),
        })),
      );
    }
  }
  return out;
}
