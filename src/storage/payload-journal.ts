/**
 * Payload journal: small payload writes are appended here as well as written to their block files
 * (page cache only), so that a group commit fdatasyncs the journal and the WAL instead of every
 * block file it touched (issue 10: 64 writers on 64 entries made each group sync 65 files). Runs of
 * 64 KiB or more that append past every journaled byte of their file are not journaled (written
 * twice they cost more CPU than the file's own fdatasync, issue 9): see BlockFiles.writeRuns.
 *
 * Layout: `journal/<12-digit generation>.jnl`, records `[u32 len][u32 crc32][u16 path length]
 * [path relative to the data root][f64 offset][payload]`. Block files are synced lazily by a flush
 * (BlockFiles.flushJournal): a new generation is started (its file created durably), every block
 * file written since the last flush is fdatasynced, then the older generations are deleted. So a
 * journal record is only ever gone once its bytes are durable in their block file.
 *
 * At open every valid record is written again into its block file, in log order (a later write
 * to the same bytes wins), before recovery checks the WAL's last groups; a torn record ends its
 * file. Anything that deletes, renames or replaces a block file flushes first (BlockFiles.forget),
 * so a record never outlives the file it was written to, and replaying it is always safe.
 *
 * Why not payloads in WAL frames: the WAL is also the replication log that slots retain, often
 * for long; payload bytes there would be kept with it, and shipped twice. The journal is dropped
 * at every flush whatever the slots hold.
 */
import {
  closeSync,
  constants,
  existsSync,
  fdatasync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
} from 'node:fs';
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from './crc32.js';
import { DATA_DIR_MODE, DATA_FILE_MODE, fsyncDir } from './atomic-file.js';
import { SyncPoint } from './sync-point.js';
import { writeFullySync } from './block-files.js';

const datasync = promisify(fdatasync);
const HEADER = 8;
const MAX_RECORD_BYTES = 128 * 1024 * 1024;
const genName = (gen: number): string => `${gen.toString().padStart(12, '0')}.jnl`;

/** One generation's file. */
export interface JournalFile {
  readonly gen: number;
  readonly path: string;
  fd: number;
  bytes: number;
  readonly sync: SyncPoint;
  /** Deleted by a flush: every record in it is durable in its block file. */
  dropped: boolean;
}

/** A position in the journal: `syncTo` makes everything before it durable. */
export interface JournalMark {
  file: JournalFile;
  write: number;
}

export class PayloadJournal {
  private current: JournalFile;
  /** Generations rotated away and not yet dropped. */
  private older: JournalFile[] = [];

  private constructor(
    private readonly dir: string,
    private readonly root: string,
    gen: number,
  ) {
    this.current = this.openFile(gen);
  }

  /** Replays every journal file left by the last run into its block files, then starts afresh. */
  static async open(dir: string, root: string): Promise<PayloadJournal> {
    await mkdir(dir, { recursive: true, mode: DATA_DIR_MODE });
    const names = (await readdir(dir)).filter((n) => /^\d{12}\.jnl$/.test(n)).sort();
    let gen = 0;
    const touched = new Map<string, number>();
    try {
      for (const n of names) {
        gen = Math.max(gen, Number(n.slice(0, 12)));
        replayFile(join(dir, n), root, touched);
      }
      const dirs = new Set<string>();
      for (const [path, fd] of touched) {
        await datasync(fd);
        dirs.add(dirname(path));
      }
      // a block file the crash left without its directory entry was created again
      for (const d of dirs) await fsyncDir(d);
    } finally {
      for (const fd of touched.values()) closeSync(fd);
    }
    for (const n of names) await unlink(join(dir, n));
    const journal = new PayloadJournal(dir, root, gen + 1);
    await fsyncDir(dir);
    return journal;
  }

  private openFile(gen: number): JournalFile {
    const path = join(this.dir, genName(gen));
    const fd = openSync(path, 'a', DATA_FILE_MODE);
    const file: JournalFile = {
      gen,
      path,
      fd,
      bytes: fstatSync(fd).size,
      // dropped: its records are durable in their block files, and its descriptor may be closed
      sync: new SyncPoint(() => (file.dropped ? Promise.resolve() : datasync(file.fd))),
      dropped: false,
    };
    return file;
  }

  /** The current generation (block files remember the latest one they were journaled in). */
  generation(): number {
    return this.current.gen;
  }

  /** Bytes appended to the current generation. */
  size(): number {
    return this.current.bytes;
  }

  /**
   * Appends a record of `bufs` written at `pos` of block file `path` (page cache: durable after
   * `syncTo`). A failed append leaves no partial record behind.
   */
  append(path: string, pos: number, bufs: readonly Buffer[]): void {
    const f = this.current;
    const name = Buffer.from(relative(this.root, path));
    const head = Buffer.allocUnsafe(HEADER + 2 + name.length + 8);
    let len = head.length - HEADER;
    head.writeUInt16LE(name.length, HEADER);
    name.copy(head, HEADER + 2);
    head.writeDoubleLE(pos, HEADER + 2 + name.length);
    let crc = crc32(head, HEADER);
    for (const b of bufs) {
      crc = crc32(b, 0, b.length, crc);
      len += b.length;
    }
    head.writeUInt32LE(len, 0);
    head.writeUInt32LE(crc, 4);
    try {
      writeFullySync(f.fd, [head, ...bufs], null);
    } catch (e) {
      try {
        ftruncateSync(f.fd, f.bytes);
      } catch {
        // a torn record ends the file at replay, and nothing after it was acknowledged
      }
      throw e;
    }
    f.bytes += HEADER + len;
    f.sync.wrote();
  }

  /** Where the journal ends now. */
  mark(): JournalMark {
    return { file: this.current, write: this.current.sync.latest() };
  }

  /** Resolves once everything appended before `m` is durable (in the journal or its block files). */
  async syncTo(m: JournalMark): Promise<void> {
    if (m.file.dropped) return;
    await m.file.sync.syncTo(m.write);
  }

  /**
   * Starts a new generation (durably created) and returns the one before it: once the block files
   * written so far are synced, `drop` deletes it.
   */
  async rotate(): Promise<JournalFile> {
    const next = this.openFile(this.current.gen + 1);
    try {
      await fsyncDir(this.dir);
    } catch (e) {
      closeSync(next.fd);
      await unlink(next.path).catch(() => {});
      throw e;
    }
    const old = this.current;
    this.older.push(old);
    this.current = next;
    return old;
  }

  /** Deletes `upTo` and the generations before it, durably (their bytes are in their block files). */
  async drop(upTo: JournalFile): Promise<void> {
    const gone = this.older.filter((f) => f.gen <= upTo.gen);
    this.older = this.older.filter((f) => f.gen > upTo.gen);
    for (const f of gone) {
      f.dropped = true;
      await unlink(f.path);
    }
    await fsyncDir(this.dir);
    // a sync under way on a dropped file still uses its descriptor: closed once it is over
    for (const f of gone) {
      await f.sync.idle();
      closeSync(f.fd);
    }
  }

  /** Whether nothing was journaled since the last flush. */
  empty(): boolean {
    return this.current.bytes === 0 && this.older.length === 0;
  }

  close(): void {
    for (const f of [...this.older, this.current]) closeSync(f.fd);
    this.older = [];
  }
}

/** Writes every valid record of one journal file into its block file (opened into `touched`). */
function replayFile(path: string, root: string, touched: Map<string, number>): void {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    let at = 0;
    const head = Buffer.allocUnsafe(HEADER);
    while (at + HEADER <= size) {
      if (readSync(fd, head, 0, HEADER, at) < HEADER) break;
      const len = head.readUInt32LE(0);
      if (len < 10 || len > MAX_RECORD_BYTES || at + HEADER + len > size) break;
      const body = Buffer.allocUnsafe(len);
      if (readSync(fd, body, 0, len, at + HEADER) < len) break;
      if (crc32(body) !== head.readUInt32LE(4)) break;
      const nameLen = body.readUInt16LE(0);
      if (2 + nameLen + 8 > len) break;
      const rel = body.toString('utf8', 2, 2 + nameLen);
      const pos = body.readDoubleLE(2 + nameLen);
      at += HEADER + len;
      if (isAbsolute(rel) || rel.startsWith('..')) continue;
      const target = join(root, rel);
      let out = touched.get(target);
      if (out === undefined) {
        // its entry removed since (a removal flushes first, so only by a crash before the record
        // was acknowledged): nothing to restore
        if (!existsSync(dirname(target))) continue;
        out = openSync(target, constants.O_RDWR | constants.O_CREAT, DATA_FILE_MODE);
        touched.set(target, out);
      }
      writeFullySync(out, [body.subarray(2 + nameLen + 8)], pos);
    }
  } finally {
    closeSync(fd);
  }
}
