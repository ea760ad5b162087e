/**
 * The payloads of several records as one byte stream, for batch responses and replication
 * requests: small payloads are read whole and gathered into larger chunks (one socket write for
 * many records), large ones are streamed from their block files without being held in memory.
 */
import type { Readable } from 'node:stream';
import { BlockRecord } from './block-record.js';
import type { StoredRecord } from './types.js';

/** How to reach one record's payload. */
export interface PayloadAccess<T> {
  size(item: T): number;
  read(item: T): Promise<Buffer>;
  open(item: T): Readable;
  /** The stored record behind `item`, when there is one: adjacent payloads are then read at once. */
  stored?(item: T): StoredRecord | undefined;
}

export interface ChunkOptions {
  /** Payloads up to this size are read whole. */
  smallBytes: number;
  /** Gathered small payloads are emitted once they reach this size. */
  chunkBytes: number;
}

export async function* payloadChunks<T>(
  items: readonly T[],
  access: PayloadAccess<T>,
  opts: ChunkOptions,
): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let gathered = 0;
  const take = (): Buffer => {
    const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts, gathered);
    parts = [];
    gathered = 0;
    return chunk;
  };
  // A run of small payloads that lie back to back in one block file: one read for all of them.
  let run: BlockRecord | undefined;
  let runStart = 0;
  let runEnd = 0;
  const readRun = async (): Promise<void> => {
    if (!run) return;
    const b = await run.range(runStart, runEnd - runStart);
    run = undefined;
    parts.push(b);
    gathered += b.length;
  };
  for (const item of items) {
    const size = access.size(item);
    if (size === 0) continue;
    if (size <= opts.smallBytes) {
      const rec = access.stored?.(item);
      if (rec instanceof BlockRecord) {
        const offset = rec.meta.offset;
        if (run && run.path === rec.path && run.files === rec.files && runEnd === offset) {
          runEnd += size;
        } else {
          await readRun();
          if (gathered >= opts.chunkBytes) yield take();
          run = rec;
          runStart = offset;
          runEnd = offset + size;
        }
        if (gathered + runEnd - runStart >= opts.chunkBytes) {
          await readRun();
          yield take();
        }
        continue;
      }
      await readRun();
      const b = await access.read(item);
      parts.push(b);
      gathered += b.length;
      if (gathered >= opts.chunkBytes) yield take();
      continue;
    }
    await readRun();
    if (gathered > 0) yield take();
    const stream = access.open(item);
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      stream.destroy();
    }
  }
  await readRun();
  if (gathered > 0) yield take();
}
