/**
 * Compressed block data files (`<id>.blk.zst`, lifecycle `compress` policies): the payload bytes
 * of a sealed block as independent zstd frames of FRAME_RAW_BYTES raw bytes each, followed by a
 * frame index and a trailer. A read of one record decodes only the frames its bytes lie in (a
 * 1 KiB record of a 64 MB block decodes 128 KiB, not 64 MB); a streamed payload is decoded one
 * frame at a time. Every frame file is ordinary zstd: `zstd -d` of the frames alone gives back
 * the `.blk` file.
 *
 * Layout: frame 0 … frame n-1, then per frame {u32 compressed length, u32 CRC-32 of the
 * compressed bytes}, then the trailer {u64 raw length, u32 n, u32 frame raw size, u32 CRC-32 of
 * the index and the preceding trailer fields, u32 magic 'FERZ'}.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { compress as zstdCompress, decompress as zstdDecompress, init as zstdInit } from '@bokuweb/zstd-wasm';
import { DATA_FILE_MODE } from './atomic-file.js';
import { writeFully } from './block-files.js';
import { crc32 } from './crc32.js';

/** Raw bytes per frame: one record read decodes at least this much (≈0.3 ms), see bench/lifecycle.ts. */
export const FRAME_RAW_BYTES = 128 * 1024;
/** zstd level of block frames (3 = zstd's default: JSON telemetry ≈ 7×, ≈ 90 MB/s per core in WASM). */
export const BLOCK_ZSTD_LEVEL = 3;
const TRAILER_BYTES = 24;
const MAGIC = 0x5a524546; // 'FERZ'
/** Decoded frames kept for sequential reads of small records (scans, batch reads). */
const FRAME_CACHE_BYTES = 16 * 1024 * 1024;
const MAX_OPEN_READERS = 64;

let ready: Promise<void> | undefined;
/** Loads the WASM zstd once per thread. */
export function zstdReady(): Promise<void> {
  return (ready ??= zstdInit());
}

/** Suffix of a compressed data file after the plain data file's name. */
export const COMPRESSED_SUFFIX = '.zst';
/** Suffix of a compressed (or restored) data file being written. */
export const TRANSITION_SUFFIX = '.tmp';

/**
 * Compresses `rawLength` bytes of the plain data file `src` into `dst` (created, fsynced when
 * `sync`). Bytes the file does not have (a hole at its end) are zeros, as a plain read sees them.
 */
export async function writeCompressedBlock(
  src: string,
  dst: string,
  rawLength: number,
  sync: boolean,
): Promise<{ stored: number; frames: number }> {
  await zstdReady();
  const input = await open(src, 'r');
  const out = await open(dst, 'w', DATA_FILE_MODE);
  try {
    const n = Math.ceil(rawLength / FRAME_RAW_BYTES);
    const index = Buffer.alloc(n * 8);
    const raw = Buffer.alloc(FRAME_RAW_BYTES);
    let at = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for (let i = 0; i < n; i++) {
      const len = Math.min(FRAME_RAW_BYTES, rawLength - i * FRAME_RAW_BYTES);
      const chunk = raw.subarray(0, len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await input.read(chunk, got, len - got, i * FRAME_RAW_BYTES + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      chunk.fill(0, got);
      const frame = Buffer.from(zstdCompress(chunk, BLOCK_ZSTD_LEVEL));
      index.writeUInt32LE(frame.length, i * 8);
      index.writeUInt32LE(crc32(frame), i * 8 + 4);
      pending.push(frame);
      pendingBytes += frame.length;
      if (pendingBytes >= 1 << 20) {
        await writeFully(out, pending, at);
        at += pendingBytes;
        pending = [];
        pendingBytes = 0;
      }
    }
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeBigUInt64LE(BigInt(rawLength), 0);
    trailer.writeUInt32LE(n, 8);
    trailer.writeUInt32LE(FRAME_RAW_BYTES, 12);
    trailer.writeUInt32LE(crc32(Buffer.concat([index, trailer.subarray(0, 16)])), 16);
    trailer.writeUInt32LE(MAGIC, 20);
    pending.push(index, trailer);
    pendingBytes += index.length + trailer.length;
    await writeFully(out, pending, at);
    at += pendingBytes;
    if (sync) await out.sync();
    return { stored: at, frames: n };
  } finally {
    await input.close();
    await out.close();
  }
}

/** One open compressed data file: its frame index and handle. */
export class CompressedBlockReader {
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Raw bytes the file holds. */
    readonly rawLength: number,
    private readonly frameRaw: number,
    /** Compressed start offset of each frame, and one past the last. */
    private readonly starts: Float64Array,
    private readonly crcs: Uint32Array,
  ) {}

  /** Opens and checks a compressed data file (throws when it is missing, short or damaged). */
  static async open(path: string): Promise<CompressedBlockReader> {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size < TRAILER_BYTES) throw new Error(`compressed block ${path} is truncated`);
      const trailer = await readExactly(fh, size - TRAILER_BYTES, TRAILER_BYTES, path);
      if (trailer.readUInt32LE(20) !== MAGIC) throw new Error(`compressed block ${path} has no trailer`);
      const rawLength = Number(trailer.readBigUInt64LE(0));
      const n = trailer.readUInt32LE(8);
      const frameRaw = trailer.readUInt32LE(12);
      const indexAt = size - TRAILER_BYTES - n * 8;
      if (indexAt < 0 || frameRaw === 0 || Math.ceil(rawLength / frameRaw) !== n)
        throw new Error(`compressed block ${path} has a bad trailer`);
      const index = await readExactly(fh, indexAt, n * 8, path);
      if (crc32(Buffer.concat([index, trailer.subarray(0, 16)])) !== trailer.readUInt32LE(16))
        throw new Error(`compressed block ${path} has a damaged index`);
      const starts = new Float64Array(n + 1);
      const crcs = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        starts[i + 1] = starts[i]! + index.readUInt32LE(i * 8);
        crcs[i] = index.readUInt32LE(i * 8 + 4);
      }
      if (starts[n] !== indexAt) throw new Error(`compressed block ${path} has a bad frame index`);
      await zstdReady();
      return new CompressedBlockReader(path, fh, rawLength, frameRaw, starts, crcs);
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  get frameCount(): number {
    return this.crcs.length;
  }

  /** The frames that hold raw bytes [pos, pos + len). */
  framesOf(pos: number, len: number): { first: number; last: number; frameRaw: number } {
    if (pos < 0 || len < 0 || pos + len > this.rawLength)
      throw new Error(`read of ${len} bytes at ${pos} beyond compressed block ${this.path}`);
    return {
      first: Math.floor(pos / this.frameRaw),
      last: Math.floor((pos + Math.max(len, 1) - 1) / this.frameRaw),
      frameRaw: this.frameRaw,
    };
  }

  /** Decodes frame `i` (checked against its CRC first). */
  async decode(i: number): Promise<Buffer> {
    const at = this.starts[i]!;
    const c = await readExactly(this.fh, at, this.starts[i + 1]! - at, this.path);
    if (crc32(c) !== this.crcs[i]) throw new Error(`frame ${i} of compressed block ${this.path} is damaged`);
    const raw = zstdDecompress(c);
    const want = Math.min(this.frameRaw, this.rawLength - i * this.frameRaw);
    if (raw.length !== want) throw new Error(`frame ${i} of compressed block ${this.path} has a bad size`);
    return Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  }

  close(): Promise<void> {
    return this.fh.close().catch(() => {});
  }
}

/**
 * Reads of compressed data files: open readers (bounded) and a byte-bounded LRU of decoded
 * frames, so that a scan of small records decodes each frame once.
 */
export class CompressedBlocks {
  private readers = new Map<string, Promise<CompressedBlockReader>>();
  private frames = new Map<string, Buffer>();
  private frameBytes = 0;
  /** Frames decoded (tests: a read of one record decodes only its frames). */
  decodedFrames = 0;

  private reader(path: string): Promise<CompressedBlockReader> {
    let r = this.readers.get(path);
    if (r) {
      this.readers.delete(path);
      this.readers.set(path, r);
      return r;
    }
    r = CompressedBlockReader.open(path);
    r.catch(() => this.readers.get(path) === r && this.readers.delete(path));
    this.readers.set(path, r);
    if (this.readers.size > MAX_OPEN_READERS) {
      const [oldPath, old] = this.readers.entries().next().value!;
      this.readers.delete(oldPath);
      void old.then((x) => x.close()).catch(() => {});
    }
    return r;
  }

  private async frame(reader: CompressedBlockReader, i: number): Promise<Buffer> {
    const key = `${reader.path}\u0000${i}`;
    const hit = this.frames.get(key);
    if (hit) {
      this.frames.delete(key);
      this.frames.set(key, hit);
      return hit;
    }
    const buf = await reader.decode(i);
    this.decodedFrames++;
    this.frames.set(key, buf);
    this.frameBytes += buf.length;
    while (this.frameBytes > FRAME_CACHE_BYTES) {
      const [k, v] = this.frames.entries().next().value!;
      this.frames.delete(k);
      this.frameBytes -= v.length;
    }
    return buf;
  }

  /** Raw bytes [pos, pos + len) of a compressed data file, in a buffer of their own. */
  async read(path: string, pos: number, len: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(len);
    let done = 0;
    for await (const part of this.parts(path, pos, len)) {
      part.copy(out, done);
      done += part.length;
    }
    return out;
  }

  /** Streams raw bytes [pos, pos + len), one decoded frame at a time. */
  stream(path: string, pos: number, len: number): Readable {
    if (len === 0) return Readable.from([]);
    return Readable.from(copies(this.parts(path, pos, len)), { objectMode: false });
  }

  /** Views into decoded frames that together are [pos, pos + len). */
  private async *parts(path: string, pos: number, len: number): AsyncGenerator<Buffer> {
    if (len === 0) return;
    const reader = await this.reader(path);
    const { first, last, frameRaw } = reader.framesOf(pos, len);
    for (let i = first; i <= last; i++) {
      const f = await this.frame(reader, i);
      const from = Math.max(pos, i * frameRaw) - i * frameRaw;
      const to = Math.min(pos + len, i * frameRaw + f.length) - i * frameRaw;
      yield f.subarray(from, to);
    }
  }

  /** Closes readers and drops decoded frames of files at or under `pathPrefix`. */
  async forget(pathPrefix: string): Promise<void> {
    const dirPrefix = pathPrefix.endsWith('/') ? pathPrefix : pathPrefix + '/';
    const under = (p: string): boolean =>
      p === pathPrefix || p.startsWith(dirPrefix) || p.startsWith(pathPrefix + COMPRESSED_SUFFIX);
    for (const [k, v] of this.frames) {
      if (under(k.slice(0, k.indexOf('\u0000')))) {
        this.frames.delete(k);
        this.frameBytes -= v.length;
      }
    }
    for (const [p, r] of this.readers) {
      if (!under(p)) continue;
      this.readers.delete(p);
      await r.then((x) => x.close()).catch(() => {});
    }
  }

  async closeAll(): Promise<void> {
    this.frames.clear();
    this.frameBytes = 0;
    const all = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(all.map((r) => r.then((x) => x.close()).catch(() => {})));
  }
}

/** Cached frames are shared: what leaves for a consumer is a copy. */
async function* copies(src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const b of src) yield Buffer.from(b);
}

async function readExactly(fh: FileHandle, pos: number, len: number, path: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const { bytesRead } = await fh.read(buf, done, len - done, pos + done);
    if (bytesRead === 0) throw new Error(`short read in ${path}`);
    done += bytesRead;
  }
  return buf;
}
