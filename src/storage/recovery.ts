/**
 * Recovery at start-up: redo of the WAL ops after the last checkpoint over the catalogue loaded
 * from disk. Every op is idempotent (a change already in a descriptor file is found there), block
 * summaries are recomputed once per changed block and bucket sizes once at the end.
 */
import { rm } from 'node:fs/promises';
import { Block, Desc } from './block.js';
import type { BlockFiles } from './block-files.js';
import type { BucketCatalogue } from './bucket-catalogue.js';
import type { DescriptorCache } from './descriptor-cache.js';
import { deleteBlockFiles } from './quota.js';
import { OpType, type WalOp } from './wal.js';

export class Recovery {
  /** Blocks changed by replay (their summaries are recomputed once at the end). */
  private replayed = new Set<Block>();

  constructor(
    private readonly catalogue: BucketCatalogue,
    private readonly cache: DescriptorCache,
    private readonly files: BlockFiles,
  ) {}

  /** Replays `ops` (in LSN order) and recomputes what they changed. */
  async run(ops: readonly WalOp[]): Promise<void> {
    for (const op of ops) await this.replay(op);
    // Block summaries once per block, not once per replayed op (that would be quadratic).
    for (const block of this.replayed) if (block.records && !block.removed) block.recompute();
    this.replayed.clear();
    for (const b of this.catalogue.all()) b.data.recount();
  }

  /** Redo of one WAL op after the last checkpoint (idempotent). */
  private async replay(op: WalOp): Promise<void> {
    const bucket = this.catalogue.find(op.bucket);
    if (!bucket) return;
    const data = bucket.data;
    switch (op.type) {
      case OpType.Write: {
        const entry = await data.ensureEntry(op.entry);
        let block = entry.blockById(op.blockId);
        if (!block) {
          block = new Block(op.blockId);
          block.records = [];
          entry.addBlock(block);
        }
        await this.cache.load(entry, block);
        if (!block.find(op.ts)) {
          block.insert(
            new Desc(
              op.entry,
              op.ts,
              op.size,
              op.contentType,
              op.labels,
              'finished',
              op.origin,
              op.offset,
              op.descSize,
              op.lsn,
              op.digest,
            ),
          );
        }
        this.replayed.add(block);
        block.dirty = true;
        entry.indexDirty = true;
        break;
      }
      case OpType.Update: {
        const entry = data.entries.get(op.entry);
        const block = entry?.blockFor(op.ts);
        if (!entry || !block) return;
        await this.cache.load(entry, block);
        const d = block.find(op.ts);
        if (d) {
          d.labels = op.labels;
          block.version++;
          block.dirty = true;
        }
        break;
      }
      case OpType.RemoveRecord: {
        const entry = data.entries.get(op.entry);
        const block = entry?.blockFor(op.ts);
        if (!entry || !block) return;
        await this.cache.load(entry, block);
        if (block.remove(op.ts)) {
          this.replayed.add(block);
          block.dirty = true;
          entry.indexDirty = true;
        }
        break;
      }
      case OpType.RemoveBlock: {
        const entry = data.entries.get(op.entry);
        const block = entry?.blockById(op.blockId);
        if (!entry || !block) return;
        entry.removeBlock(block);
        await deleteBlockFiles(this.files, this.cache, entry, block);
        break;
      }
      case OpType.RemoveEntry: {
        for (const e of data.subtree(op.entry)) data.entries.delete(e.name);
        await this.files.forget(`${data.dir}/${op.entry}`);
        await rm(`${data.dir}/${op.entry}`, { recursive: true, force: true });
        break;
      }
      case OpType.RemoveBucket: {
        this.catalogue.forget(op.bucket);
        await this.files.forget(data.dir);
        await rm(data.dir, { recursive: true, force: true });
        break;
      }
    }
  }
}
