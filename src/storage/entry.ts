/** One entry of a bucket: its blocks (sorted by id = first timestamp) and derived statistics. */
import type { Block, RecordDesc } from './block.js';
import type { EntryInfo, Status } from './types.js';

/** The size of a bucket (Σ payload + descriptor sizes of finished records), shared by its entries. */
export class SizeAccount {
  bytes = 0;
  /** Payload bytes of writes in flight (counted against quotas). */
  reserved = 0;
}

export class Entry {
  blocks: Block[] = [];
  status: Status = 'READY';
  /** Block summaries (`index.bin`) changed since the last checkpoint. */
  indexDirty = false;

  constructor(
    public name: string,
    public dir: string,
    readonly account: SizeAccount,
  ) {}

  /** Makes a durable record of `block` visible and counts it (run by the group commit). */
  publish(block: Block, desc: RecordDesc, lsn: bigint): void {
    block.publish(desc, lsn);
    this.indexDirty = true;
    this.account.bytes += desc.size + desc.descSize;
  }

  /** Number of blocks whose id is <= ts (blocks are sorted by id). */
  private countUpTo(ts: bigint): number {
    const b = this.blocks;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (b[mid]!.id <= ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The block with the greatest id <= ts, or undefined. */
  blockFor(ts: bigint): Block | undefined {
    const n = this.countUpTo(ts);
    return n > 0 ? this.blocks[n - 1] : undefined;
  }

  /** The block with exactly this id, or undefined. */
  blockById(id: bigint): Block | undefined {
    const b = this.blockFor(id);
    return b?.id === id ? b : undefined;
  }

  /** Index of the first block that may hold ts >= start. */
  firstBlockIndex(start: bigint): number {
    return Math.max(0, this.countUpTo(start) - 1);
  }

  addBlock(block: Block): void {
    const b = this.blocks;
    if (b.length === 0 || b[b.length - 1]!.id < block.id) b.push(block);
    else b.splice(this.countUpTo(block.id - 1n), 0, block);
    this.indexDirty = true;
  }

  removeBlock(block: Block): void {
    block.removed = true;
    const i = this.blocks.indexOf(block);
    if (i >= 0) this.blocks.splice(i, 1);
    this.indexDirty = true;
  }

  dataPath(block: Block): string {
    // Cached per block (scans ask for it per record); recomputed when the entry moved (rename).
    if (block.pathDir !== this.dir) {
      block.pathDir = this.dir;
      block.path = `${this.dir}/${block.id}.blk`;
    }
    return block.path;
  }

  metaPath(block: Block): string {
    return `${this.dir}/${block.id}.meta`;
  }

  get size(): number {
    let s = 0;
    for (const b of this.blocks) s += b.accSize;
    return s;
  }

  get recordCount(): number {
    let s = 0;
    for (const b of this.blocks) s += b.count;
    return s;
  }

  get oldest(): bigint {
    for (const b of this.blocks) if (b.count > 0) return b.minTs;
    return 0n;
  }

  get latest(): bigint {
    for (let i = this.blocks.length - 1; i >= 0; i--)
      if (this.blocks[i]!.count > 0) return this.blocks[i]!.maxTs;
    return 0n;
  }

  info(): EntryInfo {
    return {
      name: this.name,
      size: BigInt(this.size),
      record_count: BigInt(this.recordCount),
      block_count: BigInt(this.blocks.length),
      oldest_record: this.oldest,
      latest_record: this.latest,
      status: this.status,
    };
  }
}
