/**
 * The payloads of several records as one byte stream, for batch responses and replication
 * requests: small payloads are read whole and gathered into larger chunks (one socket write for
 * many records), large ones are streamed from their block files without being held in memory.
 */
import type { Readable } from 'node:stream';

/** How to reach one record's payload. */
export interface PayloadAccess<T> {
  size(item: T): number;
  read(item: T): Promise<Buffer>;
  open(item: T): Readable;
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
  for (const item of items) {
    const size = access.size(item);
    if (size === 0) continue;
    if (size <= opts.smallBytes) {
      const b = await access.read(item);
      parts.push(b);
      gathered += b.length;
      if (gathered >= opts.chunkBytes) yield take();
      continue;
    }
    if (gathered > 0) yield take();
    const stream = access.open(item);
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      stream.destroy();
    }
  }
  if (gathered > 0) yield take();
}
