/**
 * Replication slots: each pins the WAL after its LSN (log retention) and protects the unshipped
 * records of its bucket (a group's: of its members) from FIFO eviction, within its byte bound. Positions are persisted in
 * `.ferry/slots.json`, at most every 100 ms.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import type { Block } from './block.js';
import { PendingBytes } from './pending-bytes.js';
import { OpType, type Wal, type WalOp } from './wal.js';
import { replicationLogFull } from '../protocol/errors.js';
import { slotCovers, type SlotState } from './types.js';

/** What buckets ask the slots before writing and evicting. */
export interface SlotGuard {
  /** True when a block holds records that a replication slot still has to ship (within its bound). */
  isProtected(bucket: string, block: Block): boolean;
  /**
   * A slot with `onOverflow: 'block'` that still has to ship records of `block`: FIFO may never
   * evict it, even to keep the quota. Slots with `evict` give way to the quota (the bucket's
   * quota wins; they are told through `notifyEvicted`).
   */
  blockingSlot(bucket: string, block: Block): string | undefined;
  /** 503 when a replication slot with `onOverflow: 'block'` is past its bound. */
  checkWritable(bucket: string): void;
  /** Called when FIFO evicts a block; reports slots that lose unshipped records. */
  notifyEvicted(bucket: string, block: Block): void;
}

export class ReplicationSlots implements SlotGuard {
  private slots = new Map<string, SlotState>();
  /** Per slot: pending write sizes after its LSN, as (lsn, bytes) in commit order. */
  private pending = new Map<string, PendingBytes>();
  /** Per slot: delivered up to here (in memory; may be ahead of the persisted slot LSN). */
  private shipped = new Map<string, bigint>();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private persisting: Promise<void> | undefined;
  private overflowListeners = new Set<(slot: string, lsn: bigint) => void>();
  private readonly path: string;

  constructor(
    metaDir: string,
    private readonly sync: boolean,
  ) {
    this.path = join(metaDir, 'slots.json');
  }

  /** Reads the persisted slots (before the WAL is opened). */
  async load(): Promise<void> {
    try {
      const list = JSON.parse(await readFile(this.path, 'utf8')) as Array<
        Omit<SlotState, 'lsn'> & { lsn: string }
      >;
      for (const s of list) this.slots.set(s.name, { ...s, lsn: BigInt(s.lsn) });
    } catch {
      /* none yet */
    }
  }

  get size(): number {
    return this.slots.size;
  }

  /** Counts the writes of a durable group against the slots of their bucket. */
  onDurable(ops: readonly WalOp[]): void {
    for (const slot of this.slots.values()) {
      const pending = this.pending.get(slot.name);
      if (!pending) continue;
      for (const op of ops) {
        if (op.type === OpType.Write && slotCovers(slot, op.bucket)) pending.push(op.lsn, op.size);
      }
    }
    if (this.dirty) this.schedulePersist();
  }

  /** Recounts a slot's pending bytes from the log (at start and when a slot is (re)set). */
  async rebuildPending(wal: Wal, name: string): Promise<void> {
    const slot = this.slots.get(name);
    if (!slot) return;
    const pending = new PendingBytes();
    let after = slot.lsn;
    for (;;) {
      const batch = await wal.read(after, 10_000);
      if (batch.length === 0) break;
      for (const c of batch)
        if (c.kind === 'write' && slotCovers(slot, c.bucket)) pending.push(c.lsn, c.size);
      after = batch[batch.length - 1]!.lsn;
    }
    this.pending.set(name, pending);
  }

  async rebuildAll(wal: Wal): Promise<void> {
    for (const name of this.slots.keys()) await this.rebuildPending(wal, name);
  }

  async set(wal: Wal, slot: SlotState): Promise<void> {
    this.slots.set(slot.name, { ...slot });
    wal.keepTail(true);
    this.shipped.delete(slot.name);
    await this.rebuildPending(wal, slot.name);
    this.dirty = true;
    await this.persist();
  }

  async drop(wal: Wal, name: string): Promise<void> {
    this.pending.delete(name);
    this.shipped.delete(name);
    if (this.slots.delete(name)) {
      if (this.slots.size === 0) wal.keepTail(false);
      this.dirty = true;
      await this.persist();
    }
  }

  releaseShipped(name: string, lsn: bigint): void {
    const s = this.slots.get(name);
    if (!s) return;
    const prev = this.shipped.get(name) ?? s.lsn;
    if (lsn <= prev) return;
    this.shipped.set(name, lsn);
    this.pending.get(name)?.dropUpTo(lsn);
  }

  advance(name: string, lsn: bigint): void {
    const s = this.slots.get(name);
    if (!s || lsn <= s.lsn) return;
    s.lsn = lsn;
    this.pending.get(name)?.dropUpTo(lsn);
    this.dirty = true;
    this.schedulePersist();
  }

  get(name: string): SlotState | undefined {
    const s = this.slots.get(name);
    return s ? { ...s } : undefined;
  }

  list(): SlotState[] {
    return [...this.slots.values()].map((s) => ({ ...s }));
  }

  pendingBytes(name: string): number {
    return this.pending.get(name)?.bytes ?? 0;
  }

  onOverflow(listener: (slot: string, evictedUpToLsn: bigint) => void): () => void {
    this.overflowListeners.add(listener);
    return () => this.overflowListeners.delete(listener);
  }

  isProtected(bucket: string, block: Block): boolean {
    for (const slot of this.slots.values()) {
      if (!slotCovers(slot, bucket) || block.maxLsn <= this.protectedFrom(slot)) continue;
      if (this.pendingBytes(slot.name) <= slot.maxBytes || slot.onOverflow === 'block') return true;
    }
    return false;
  }

  blockingSlot(bucket: string, block: Block): string | undefined {
    for (const slot of this.slots.values()) {
      if (slotCovers(slot, bucket) && slot.onOverflow === 'block' && block.maxLsn > this.protectedFrom(slot))
        return slot.name;
    }
    return undefined;
  }

  checkWritable(bucket: string): void {
    for (const slot of this.slots.values()) {
      if (
        slotCovers(slot, bucket) &&
        slot.onOverflow === 'block' &&
        this.pendingBytes(slot.name) > slot.maxBytes
      ) {
        throw replicationLogFull(bucket, slot.name);
      }
    }
  }

  notifyEvicted(bucket: string, block: Block): void {
    for (const slot of this.slots.values()) {
      if (slotCovers(slot, bucket) && block.maxLsn > this.protectedFrom(slot)) {
        for (const l of this.overflowListeners) l(slot.name, block.maxLsn);
      }
    }
  }

  /** The WAL must keep every op after the lowest of `lsn` and the slots' positions. */
  retainFrom(lsn: bigint): bigint {
    let keep = lsn;
    for (const slot of this.slots.values()) if (slot.lsn < keep) keep = slot.lsn;
    return keep;
  }

  /** Changes after this LSN are still protected for the slot (delivered ones are released). */
  private protectedFrom(slot: SlotState): bigint {
    const shipped = this.shipped.get(slot.name);
    return shipped !== undefined && shipped > slot.lsn ? shipped : slot.lsn;
  }

  /** Slot positions are written at most every 100 ms (several changes share one write). */
  private schedulePersist(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => void this.persist(), 100);
    this.timer.unref();
  }

  /** Writes the slots if they changed (a failure leaves them dirty for the next try). */
  async persist(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.persisting) await this.persisting;
    if (!this.dirty) return;
    this.dirty = false;
    const data = JSON.stringify([...this.slots.values()].map((s) => ({ ...s, lsn: s.lsn.toString() })));
    this.persisting = writeFileAtomic(this.path, data, { noSync: !this.sync }).catch(() => {
      this.dirty = true;
    });
    try {
      await this.persisting;
    } finally {
      this.persisting = undefined;
    }
  }

  /** Stops the lazy persistence timer (the engine persists once more at close). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
