/**
 * The change log as replication sees it: durable writes and label updates of the WAL in LSN order,
 * commit notifications, and the slots that pin it.
 */
import type { GroupCommit } from './group-commit.js';
import type { ReplicationSlots } from './replication-slots.js';
import type { Wal } from './wal.js';
import type { Change, ChangeLog, SlotState } from './types.js';

export class WalChangeLog implements ChangeLog {
  private commitListeners = new Set<(lsn: bigint) => void>();

  constructor(
    private readonly wal: Wal,
    private readonly commits: GroupCommit,
    private readonly slots: ReplicationSlots,
  ) {
    commits.onDurable((_ops, lastLsn) => {
      for (const l of this.commitListeners) l(lastLsn);
    });
  }

  lastLsn(): bigint {
    return this.commits.lastLsn();
  }

  read(after: bigint, max: number): Promise<Change[]> {
    // Only what is published: a group is durable in the WAL a moment before its writers are answered.
    const applied = this.commits.lastLsn();
    return this.wal
      .read(after, max)
      .then((list) =>
        list.length && list[list.length - 1]!.lsn > applied ? list.filter((c) => c.lsn <= applied) : list,
      );
  }

  onCommit(listener: (lastLsn: bigint) => void): () => void {
    this.commitListeners.add(listener);
    return () => this.commitListeners.delete(listener);
  }

  setSlot(slot: SlotState): Promise<void> {
    return this.slots.set(this.wal, slot);
  }

  advanceSlot(name: string, lsn: bigint): void {
    this.slots.advance(name, lsn);
  }

  releaseShipped(name: string, lsn: bigint): void {
    this.slots.releaseShipped(name, lsn);
  }

  getSlot(name: string): SlotState | undefined {
    return this.slots.get(name);
  }

  listSlots(): SlotState[] {
    return this.slots.list();
  }

  slotPendingBytes(name: string): number {
    return this.slots.pendingBytes(name);
  }

  dropSlot(name: string): Promise<void> {
    return this.slots.drop(this.wal, name);
  }

  onSlotOverflow(listener: (slot: string, evictedUpToLsn: bigint) => void): () => void {
    return this.slots.onOverflow(listener);
  }
}
