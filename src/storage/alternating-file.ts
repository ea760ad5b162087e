/**
 * A small state file that is rewritten often (replication checkpoints), written in place: two
 * files `<path>.0` and `<path>.1` take turns, each holding one copy as
 * `[magic u32][crc32 u32][seq u64][length u32][data]` (little-endian; the crc covers seq, length
 * and data). A write goes to the file that does not hold the newest valid copy and is made durable
 * with one fdatasync, so a write torn by a crash leaves the other copy intact; reading takes the
 * valid copy with the highest seq. On this kind of disk an in-place pwrite + fdatasync costs
 * ~0.4 ms, against 3–10 ms for a temp file, fsync, rename and directory fsync, and a copy's entry
 * waits for its checkpoint before its next batch (copy-run.ts).
 */
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DATA_DIR_MODE, DATA_FILE_MODE, fsyncDir } from './atomic-file.js';
import { crc32 } from './crc32.js';

const MAGIC = 0x31595246; // "FRY1"
const HEADER = 20;

/** Two alternating copies of one small state; see the module comment. */
export class AlternatingFile {
  private seq = 0n;
  /** Index (0 or 1) of the file the next write goes to. */
  private nextSlot = 0;
  /** `seq` and `nextSlot` reflect the files (read, written or removed once). */
  private known = false;
  private readonly paths: readonly [string, string];

  constructor(
    path: string,
    private readonly sync: boolean,
  ) {
    this.paths = [`${path}.0`, `${path}.1`];
  }

  /** The newest valid copy, or undefined when neither file holds one. */
  async read(): Promise<Buffer | undefined> {
    let best: { seq: bigint; data: Buffer; slot: number } | undefined;
    for (const slot of [0, 1]) {
      const copy = decode(await readFile(this.paths[slot]!).catch(() => undefined));
      if (copy && (!best || copy.seq > best.seq)) best = { ...copy, slot };
    }
    this.known = true;
    if (!best) return undefined;
    this.seq = best.seq;
    this.nextSlot = 1 - best.slot;
    return best.data;
  }

  /** Writes `data` as the newest copy; resolves once it is durable (when syncing). */
  async write(data: Uint8Array): Promise<void> {
    // a first write must know which copy is newest, or it could be written below it
    if (!this.known) await this.read();
    const seq = this.seq + 1n;
    const slot = this.nextSlot;
    const buf = Buffer.allocUnsafe(HEADER + data.length);
    buf.writeUInt32LE(MAGIC, 0);
    buf.writeBigUInt64LE(seq, 8);
    buf.writeUInt32LE(data.length, 16);
    buf.set(data, HEADER);
    buf.writeUInt32LE(crc32(buf, 8), 4);
    const path = this.paths[slot]!;
    let created = false;
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(dirname(path), { recursive: true, mode: DATA_DIR_MODE });
      fh = await open(path, 'w+', DATA_FILE_MODE);
      created = true;
    }
    try {
      await fh.write(buf, 0, buf.length, 0);
      if (this.sync) await fh.datasync();
    } finally {
      await fh.close();
    }
    if (created && this.sync) await fsyncDir(dirname(path));
    // only now: a failed write is retried into the same file, never over the newest copy
    this.seq = seq;
    this.nextSlot = 1 - slot;
  }

  /** Deletes both files. */
  async remove(): Promise<void> {
    await Promise.all(this.paths.map((p) => rm(p, { force: true })));
    this.seq = 0n;
    this.nextSlot = 0;
    this.known = true;
  }
}

function decode(buf: Buffer | undefined): { seq: bigint; data: Buffer } | undefined {
  if (!buf || buf.length < HEADER || buf.readUInt32LE(0) !== MAGIC) return undefined;
  const length = buf.readUInt32LE(16);
  if (HEADER + length > buf.length) return undefined;
  if (crc32(buf, 8, HEADER + length) !== buf.readUInt32LE(4)) return undefined;
  return { seq: buf.readBigUInt64LE(8), data: buf.subarray(HEADER, HEADER + length) };
}
