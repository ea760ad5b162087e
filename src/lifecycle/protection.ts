/**
 * Records a lifecycle job must not remove because a replication still has to ship them: the same
 * rule as FIFO eviction (replication.md §11). Every change-log slot of the bucket (one per
 * replication) pins the writes and label updates after its cursor; while the slot is within its
 * bound (or refuses writes past it, `on_overflow: block`), those records are kept. A slot past its
 * bound with `evict` lets FIFO evict, and lets lifecycle deletions pass as well.
 *
 * Built on the public ChangeLog API only (slots, pending bytes, `read`): the persisted slot cursor
 * can lag behind what was already delivered, so the set is a superset of what is truly pending;
 * records kept by mistake are removed by a later run.
 */
import type { ChangeLog, RemovalGuard } from '../storage/types.js';

const READ_PAGE = 10_000;

/** The (entry, ts) pairs of one bucket that replication still has to ship, kept up to date. */
export class ReplicationProtection {
  /** Per entry: timestamps of pending changes, and the same sorted (built when asked for). */
  private readonly keys = new Map<string, { set: Set<bigint>; sorted: bigint[] | undefined }>();
  private readLsn = 0n;
  private active = false;

  private constructor(
    private readonly changes: ChangeLog,
    private readonly bucket: string,
    /** Only records in [from, to) matter to the caller (the job's window). */
    private readonly from: bigint,
    private readonly to: bigint,
  ) {}

  /** Reads the pending changes of every slot of `bucket` that protects its records. */
  static async open(
    changes: ChangeLog,
    bucket: string,
    from: bigint,
    to: bigint,
  ): Promise<ReplicationProtection> {
    const p = new ReplicationProtection(changes, bucket, from, to);
    let after: bigint | undefined;
    for (const slot of changes.listSlots()) {
      if (slot.bucket !== bucket) continue;
      const bounded = changes.slotPendingBytes(slot.name) <= slot.maxBytes || slot.onOverflow === 'block';
      if (!bounded) continue;
      p.active = true;
      if (after === undefined || slot.lsn < after) after = slot.lsn;
    }
    if (after !== undefined) {
      p.readLsn = after;
      await p.refresh();
    }
    return p;
  }

  /** Adds changes committed since the last read (writes that arrived while the job runs). */
  async refresh(): Promise<void> {
    if (!this.active) return;
    const last = this.changes.lastLsn();
    while (this.readLsn < last) {
      const page = await this.changes.read(this.readLsn, READ_PAGE);
      if (page.length === 0) break;
      for (const c of page) {
        if (c.bucket === this.bucket && c.ts >= this.from && c.ts < this.to) {
          let k = this.keys.get(c.entry);
          if (!k) this.keys.set(c.entry, (k = { set: new Set(), sorted: undefined }));
          if (!k.set.has(c.ts)) {
            k.set.add(c.ts);
            k.sorted = undefined;
          }
        }
      }
      this.readLsn = page[page.length - 1]!.lsn;
    }
  }

  /** True when the record must be kept. */
  has(entry: string, ts: bigint): boolean {
    return this.active && (this.keys.get(entry)?.set.has(ts) ?? false);
  }

  /** True when some record of `entry` with from <= ts <= to must be kept. */
  anyIn(entry: string, from: bigint, to: bigint): boolean {
    const k = this.active ? this.keys.get(entry) : undefined;
    if (!k || k.set.size === 0) return false;
    const sorted = (k.sorted ??= [...k.set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! < from) lo = mid + 1;
      else hi = mid;
    }
    return lo < sorted.length && sorted[lo]! <= to;
  }

  /**
   * The guard of one entry, as `Bucket.removeRange` asks it. A record written after the changes
   * read so far (between a `refresh` and the removal) is kept too: it may be one to ship.
   */
  guard(entry: string): RemovalGuard | undefined {
    if (!this.active) return undefined;
    return {
      has: (ts, lsn) => lsn > this.readLsn || this.has(entry, ts),
      anyIn: (from, to, maxLsn) => maxLsn > this.readLsn || this.anyIn(entry, from, to),
    };
  }
}
