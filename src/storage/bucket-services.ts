/** What a bucket uses from the layers below it (kept narrow: buckets never reach the engine). */
import type { BlockCompression } from './block-compression.js';
import type { BlockFiles } from './block-files.js';
import type { Checkpointer } from './checkpointer.js';
import type { DescriptorCache } from './descriptor-cache.js';
import type { DigestPool } from './digest-pool.js';
import type { GroupCommit } from './group-commit.js';
import type { RangeDigester } from './range-digest.js';
import type { SlotGuard } from './replication-slots.js';

export interface BucketServices {
  readonly files: BlockFiles;
  /** Content digests of batches, off the event loop. */
  readonly digests: DigestPool;
  readonly cache: DescriptorCache;
  readonly commits: GroupCommit;
  readonly slots: SlotGuard;
  readonly checkpoints: Checkpointer;
  /** Range digests for verification (cached rows per block). */
  readonly ranges: RangeDigester;
  /** Compressed sealed blocks (lifecycle `compress`) and the way back before a write. */
  readonly compression: BlockCompression;
}
