/**
 * Quotas (api.md §7.5) and durable block removal: HARD refuses a write that would exceed the quota,
 * FIFO evicts whole oldest blocks of non-`$meta` entries (never blocks a replication slot still
 * protects, nor blocks with writes in flight).
 */
import { unlink } from 'node:fs/promises';
import type { Block } from './block.js';
import type { BlockFiles } from './block-files.js';
import type { BucketData } from './bucket-data.js';
import type { BucketServices } from './bucket-services.js';
import { COMPRESSED_SUFFIX } from './compressed-block.js';
import type { DescriptorCache } from './descriptor-cache.js';
import type { Entry } from './entry.js';
import { OpType, type RemoveBlockOp } from './wal.js';
import { Errors, replicationHoldsQuota } from '../protocol/errors.js';
import { isMetaEntry } from '../protocol/names.js';

/** Deletes the files of a block that left its entry. */
export async function deleteBlockFiles(
  files: BlockFiles,
  cache: DescriptorCache,
  entry: Entry,
  block: Block,
): Promise<void> {
  const data = entry.dataPath(block);
  await files.forget(data);
  cache.forget(block);
  await unlink(data).catch(() => {});
  await unlink(data + COMPRESSED_SUFFIX).catch(() => {});
  await unlink(entry.metaPath(block)).catch(() => {});
}

export class Quota {
  constructor(
    private readonly data: BucketData,
    private readonly services: BucketServices,
  ) {}

  /** Makes room for `incoming` payload bytes, or throws (400 HARD, 500 FIFO with nothing to evict). */
  async makeRoom(incoming: number, isMeta: boolean): Promise<void> {
    const d = this.data;
    const s = d.settings;
    if (s.quota_type === 'NONE') return;
    const quota = Number(s.quota_size);
    const used = () => d.account.bytes + d.account.reserved;
    if (s.quota_type === 'HARD') {
      if (used() + incoming > quota) throw Errors.quotaExceeded(d.name);
      return;
    }
    if (isMeta && d.name === '$system') return;
    while (used() + incoming > quota) {
      // Records still to be replicated are protected within their slot's bound; when nothing
      // else is left, the slot's policy decides: `evict` slots give way (the oldest pending
      // records go, and the slot is told), a `block` slot refuses the write.
      const victim = this.pickEvictionVictim(false) ?? this.pickEvictionVictim(true);
      if (!victim) throw Errors.quotaKeepFailed(d.name);
      if (victim.blockedBy !== undefined) throw replicationHoldsQuota(d.name, victim.blockedBy);
      await this.removeBlockDurably(victim.entry, victim.block);
    }
  }

  /**
   * The oldest evictable block: unprotected ones only, or (`pressed`) also those that only slots
   * giving way to the quota protect; `blockedBy` names a slot that forbids evicting it.
   */
  private pickEvictionVictim(
    pressed: boolean,
  ): { entry: Entry; block: Block; blockedBy?: string } | undefined {
    const slots = this.services.slots;
    let best: { entry: Entry; block: Block } | undefined;
    for (const e of this.data.entries.values()) {
      if (isMetaEntry(e.name) || e.status === 'DELETING') continue;
      const b = e.blocks.find((x) => x.count > 0 || x.inflight === 0);
      if (!b || b.inflight > 0) continue;
      if (!pressed && slots.isProtected(this.data.name, b)) continue;
      if (!best || b.minTs < best.block.minTs) best = { entry: e, block: b };
    }
    if (!best || !pressed) return best;
    const blockedBy = slots.blockingSlot(this.data.name, best.block);
    return blockedBy === undefined ? best : { ...best, blockedBy };
  }

  /** Removes a whole block: logged durably first, files deleted afterwards. */
  removeBlockDurably(entry: Entry, block: Block): Promise<void> {
    return this.removeBlocksDurably(entry, [block]);
  }

  /**
   * Removes whole blocks of one entry in one step: their removal ops share one group-commit entry
   * (all durable or none), the size account drops at once, files are deleted afterwards (a crash
   * in between: recovery replays the ops and deletes them).
   */
  removeBlocksDurably(entry: Entry, blocks: readonly Block[]): Promise<void> {
    this.detachBlocks(entry, blocks);
    return this.dropDetached(entry, blocks);
  }

  /**
   * Takes blocks out of their entry and out of the size account at once, so that no writer
   * chooses them any more; `dropDetached` makes that durable (or puts them back).
   */
  detachBlocks(entry: Entry, blocks: readonly Block[]): void {
    for (const block of blocks) {
      entry.removeBlock(block);
      this.data.account.bytes -= block.accSize;
    }
  }

  /** Logs the removal of detached blocks durably, then deletes their files; back on failure. */
  async dropDetached(entry: Entry, blocks: readonly Block[]): Promise<void> {
    if (blocks.length === 0) return;
    const { commits, slots, files, cache, checkpoints } = this.services;
    const name = this.data.name;
    const time = Date.now();
    const ops = blocks.map((block): RemoveBlockOp => ({
      type: OpType.RemoveBlock,
      lsn: 0n,
      time,
      bucket: name,
      entry: entry.name,
      blockId: block.id,
    }));
    await checkpoints.removing(async () => {
      try {
        await commits.commitAll(ops, [], [], () => {
          for (const block of blocks) slots.notifyEvicted(name, block);
        });
      } catch (e) {
        for (const block of blocks) {
          block.removed = false;
          entry.addBlock(block);
          this.data.account.bytes += block.accSize;
        }
        throw e;
      }
      // One after another: a step of many blocks must not fill the I/O threads that writers use.
      for (const block of blocks) {
        // A checkpoint that began writing the descriptors before the block was detached would
        // otherwise put its file back after the deletion, in no index (new writes do not start).
        while (block.persisting > 0) await new Promise((r) => setTimeout(r, 1));
        await deleteBlockFiles(files, cache, entry, block);
      }
    });
  }
}
