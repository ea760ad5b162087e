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
import type { ChangeLog } from '../storage/types.js';

const READ_PAGE = 10_000;

/** The (entry, ts) pairs of one bucket that replication still has to ship, kept up to date. */
export class ReplicationProtection {
  private readonly keys = new Set<string>();
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
        if (c.bucket === this.bucket && c.ts >= this.from && c.ts < this.to)
          this.keys.add(key(c.entry, c.ts));
      }
      this.readLsn = page[page.length - 1]!.lsn;
    }
  }

  /** True when the record must be kept. */
  has(entry: string, ts: bigint): boolean {
    return this.active && this.keys.has(key(entry, ts));
  }
}

const key = (entry: string, ts: bigint): string => `${entry}\u0000${ts}`;
