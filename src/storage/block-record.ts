/** A stored record readable from its block file. */
import type { Readable } from 'node:stream';
import type { BlockFiles } from './block-files.js';
import type { RecordDesc } from './block.js';
import type { StoredRecord } from './types.js';

/** A readable record of a block file (a class: scans create one per record, closures cost more). */
export class BlockRecord implements StoredRecord {
  constructor(
    /** Where the payload is (payload-chunks.ts reads runs of adjacent records at once). */
    readonly files: BlockFiles,
    readonly path: string,
    readonly meta: RecordDesc,
  ) {}

  stream(): Readable {
    return this.files.stream(this.path, this.meta.offset, this.meta.size);
  }

  buffer(): Promise<Buffer> {
    const m = this.meta;
    return m.size === 0 ? Promise.resolve(Buffer.alloc(0)) : this.files.readAt(this.path, m.offset, m.size);
  }
}
