/**
 * Merges the record streams of several entries of one bucket into one stream ordered by
 * timestamp, ties broken by entry name (api.md §11.4). One `Bucket.scan` iterator stays open per
 * entry across batches; only one look-ahead record per entry is held in memory.
 */
import type { Bucket, StoredRecord } from '../storage/types.js';

interface Cursor {
  entry: string;
  iter: AsyncIterator<StoredRecord> | undefined;
  head: StoredRecord | undefined;
  /** Where a re-scan of this entry resumes (last emitted ts + 1). */
  from: bigint;
}

const before = (a: Cursor, b: Cursor): boolean => {
  const ta = a.head!.meta.ts;
  const tb = b.head!.meta.ts;
  return ta < tb || (ta === tb && a.entry < b.entry);
};

/** A k-way merge of per-entry scans with a binary heap of entry heads. */
export class MergedScan {
  private readonly cursors = new Map<string, Cursor>();
  private readonly heap: Cursor[] = [];
  /** Cursors whose iterator has not been primed yet (opened lazily on the first pull). */
  private pending: Cursor[] = [];
  private closed = false;

  constructor(
    private readonly bucket: Bucket,
    entries: Iterable<string>,
    private readonly start: bigint,
    /** Exclusive upper bound per entry. */
    private readonly stopOf: (entry: string) => bigint,
  ) {
    for (const e of entries) this.addEntry(e);
  }

  /** Adds an entry to the merge (no-op if already present); scanned from the query start. */
  addEntry(entry: string): void {
    if (this.cursors.has(entry)) return;
    const c: Cursor = { entry, iter: undefined, head: undefined, from: this.start };
    this.cursors.set(entry, c);
    this.pending.push(c);
  }

  /** Entry names in the merge. */
  entries(): IterableIterator<string> {
    return this.cursors.keys();
  }

  /** Next record in (ts, entry) order, or undefined when every scan is exhausted. */
  async next(): Promise<StoredRecord | undefined> {
    if (this.closed) return undefined;
    if (this.pending.length > 0) await this.prime();
    const top = this.heap[0];
    if (top === undefined) return undefined;
    const rec = top.head!;
    top.from = rec.meta.ts + 1n;
    await this.advance(top);
    if (top.head === undefined) {
      const last = this.heap.pop()!;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.siftDown(0);
      }
    } else {
      this.siftDown(0);
    }
    return rec;
  }

  /**
   * Re-opens the scans of exhausted entries from after their last emitted record, to pick up
   * records written since (continuous queries). Returns true if any new record was found.
   */
  async refresh(): Promise<boolean> {
    if (this.closed) return false;
    const waiting = new Set(this.pending);
    for (const c of this.cursors.values()) {
      if (c.iter === undefined && c.head === undefined && !waiting.has(c)) this.pending.push(c);
    }
    const had = this.heap.length;
    await this.prime();
    return this.heap.length > had;
  }

  /** Closes every open scan iterator. */
  async close(): Promise<void> {
    this.closed = true;
    const iters = [...this.cursors.values()].map((c) => c.iter).filter((i) => i !== undefined);
    this.cursors.clear();
    this.heap.length = 0;
    this.pending = [];
    await Promise.allSettled(iters.map((i) => i.return?.()));
  }

  private async prime(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    for (const c of batch) {
      const stop = this.stopOf(c.entry);
      if (c.from >= stop) continue;
      c.iter = this.bucket.scan(c.entry, c.from, stop)[Symbol.asyncIterator]();
      await this.advance(c);
      if (c.head !== undefined) {
        this.heap.push(c);
        this.siftUp(this.heap.length - 1);
      }
    }
  }

  private async advance(c: Cursor): Promise<void> {
    const r = await c.iter!.next();
    if (r.done) {
      c.head = undefined;
      c.iter = undefined;
    } else {
      c.head = r.value;
    }
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l]!, h[m]!)) m = l;
      if (r < h.length && before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
