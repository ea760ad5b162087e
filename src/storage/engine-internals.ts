/** What buckets need from the engine (kept narrow so that bucket.ts does not depend on engine.ts). */
import type { Block } from './block.js';
import type { BlockFiles } from './block-files.js';
import type { DigestPool } from './digest-pool.js';
import type { Entry } from './entry.js';
import type { WalOp } from './wal.js';

export interface EngineInternals {
  readonly files: BlockFiles;
  /** Content digests of batches, off the event loop. */
  readonly digests: DigestPool;
  /** Loads a block's descriptors (once; concurrent callers share the load). */
  loadBlock(entry: Entry, block: Block): Promise<void>;
  /**
   * Group commit: assigns the op its LSN now, then resolves once the data file `path` (if any) and
   * the WAL frame are durable; `apply` runs right after, in LSN order.
   */
  commit(op: WalOp, path: string | undefined, apply: (lsn: bigint) => void): Promise<void>;
  /** One group-commit entry for many ops (a batch): one promise, `apply` once after all are durable. */
  commitMany(ops: WalOp[], paths: readonly string[], apply: () => void): Promise<void>;
  /** True when a block holds records that a replication slot still has to ship (within its bound). */
  isProtected(bucket: string, block: Block): boolean;
  /** 503 when a replication slot with `onOverflow: 'block'` is past its bound. */
  checkWritable(bucket: string): void;
  /** Called when FIFO evicts a block; reports slots that lose unshipped records. */
  notifyEvicted(bucket: string, block: Block): void;
  deleteBlockFiles(entry: Entry, block: Block): Promise<void>;
  /** Registers a newly created block whose descriptors are in memory (memory budget). */
  track(block: Block): void;
  checkpoint(): Promise<void>;
  requestCheckpoint(): Promise<void>;
}
