/**
 * Request-body compression for replication batches (api.md §20.9): gzip through zlib, zstd through
 * `@bokuweb/zstd-wasm`. The WASM encoder has no streaming API, so the zstd body is a sequence of
 * independent frames of at most `ZSTD_CHUNK` bytes each — valid zstd that every streaming decoder
 * reads as one stream, with bounded memory for multi-GB records.
 */
import { createGzip } from 'node:zlib';
import { Readable, pipeline } from 'node:stream';
import { compress as zstdCompress } from '@bokuweb/zstd-wasm';
import { zstdReady } from '../storage/compressed-block.js';

const ZSTD_CHUNK = 1024 * 1024;
const ZSTD_LEVEL = 3;

/** Encodings a replication may send. */
export type BodyEncoding = 'gzip' | 'zstd';

async function* zstdFrames(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  // one instance per thread, shared with block compression: a second init() replaces the
  // module's memory under the other's feet (reads of compressed blocks then fail for good)
  await zstdReady();
  let parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    parts.push(chunk);
    size += chunk.length;
    while (size >= ZSTD_CHUNK) {
      const all = Buffer.concat(parts, size);
      yield Buffer.from(zstdCompress(all.subarray(0, ZSTD_CHUNK), ZSTD_LEVEL));
      const rest = all.subarray(ZSTD_CHUNK);
      parts = rest.length > 0 ? [rest] : [];
      size = rest.length;
    }
  }
  if (size > 0) yield Buffer.from(zstdCompress(Buffer.concat(parts, size), ZSTD_LEVEL));
}

/** Compresses a body stream. */
export function compressBody(source: AsyncIterable<Buffer>, encoding: BodyEncoding): Readable {
  if (encoding === 'zstd') return Readable.from(zstdFrames(source), { objectMode: false });
  const gzip = createGzip();
  pipeline(Readable.from(source, { objectMode: false }), gzip, () => undefined);
  return gzip;
}
