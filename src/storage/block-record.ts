/** A stored record readable from its block file, plain (`<id>.blk`) or compressed (`<id>.blk.zst`). */
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type { BlockFiles } from './block-files.js';
import type { Block, RecordDesc } from './block.js';
import { COMPRESSED_SUFFIX } from './compressed-block.js';
import type { StoredRecord } from './types.js';

/** Payloads up to this size are streamed from one read through the handle cache. */
const SMALL_STREAM_BYTES = 512 * 1024;

/**
 * A readable record of a block file (a class: scans create one per record, closures cost more).
 * Which file holds the bytes is decided when they are read, not when the record was found: a
 * compress job may have replaced the file meanwhile. `block.readers` counts reads between that
 * decision and holding a descriptor of the file, so that the replaced file is removed only after.
 */
export class BlockRecord implements StoredRecord {
  constructor(
    /** Where the payload is (payload-chunks.ts reads runs of adjacent records at once). */
    readonly files: BlockFiles,
    /** The plain data file's path (also names the block in payload-chunks.ts). */
    readonly path: string,
    readonly meta: RecordDesc,
    readonly block: Block,
  ) {}

  stream(): Readable {
    const m = this.meta;
    if (m.size === 0) return Readable.from([]);
    if (m.size <= SMALL_STREAM_BYTES) return Readable.from(this.whole(), { objectMode: false });
    return Readable.from(this.large(), { objectMode: false });
  }

  buffer(): Promise<Buffer> {
    const m = this.meta;
    return m.size === 0 ? Promise.resolve(Buffer.alloc(0)) : this.range(m.offset, m.size, true);
  }

  /**
   * Bytes [pos, pos + len) of this record's block (payload-chunks.ts reads adjacent records at
   * once); `window`: through the read-ahead window of small reads.
   */
  async range(pos: number, len: number, window = false): Promise<Buffer> {
    const b = this.block;
    b.readers++;
    try {
      if (b.compressed) return await this.files.compressed.read(this.path + COMPRESSED_SUFFIX, pos, len);
      return await (window
        ? this.files.readAt(this.path, pos, len)
        : this.files.readRange(this.path, pos, len));
    } finally {
      b.readers--;
    }
  }

  private async *whole(): AsyncGenerator<Buffer> {
    yield await this.buffer();
  }

  /** A large payload, a frame (compressed) or a MiB (plain) at a time. */
  private async *large(): AsyncGenerator<Buffer> {
    const b = this.block;
    const m = this.meta;
    b.readers++;
    let held = true;
    const release = (): void => {
      if (held) b.readers--;
      held = false;
    };
    try {
      if (b.compressed) {
        // Held to the end: the reader's descriptor is shared and closed when the file is replaced.
        yield* this.files.compressed.stream(this.path + COMPRESSED_SUFFIX, m.offset, m.size);
        return;
      }
      const s = createReadStream(this.path, {
        start: m.offset,
        end: m.offset + m.size - 1,
        highWaterMark: 1 << 20,
      });
      try {
        await once(s, 'ready');
        release(); // the stream has a descriptor of its own: the file may go now
        for await (const chunk of s) yield chunk as Buffer;
      } finally {
        s.destroy();
      }
    } finally {
      release();
    }
  }
}
