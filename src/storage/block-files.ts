/**
 * Block data files: an LRU cache of open handles, coalesced positional writes and reads.
 *
 * Small payload chunks are queued per file and written with one `writev` per contiguous run when
 * the group commit flushes (or when too much is queued), so a batch of 1 KiB records costs a few
 * syscalls instead of one per record. Large chunks are written directly.
 *
 * With a payload journal (fsync durability), queued runs below 64 KiB are journaled too, and a
 * group's sync of them is the journal's: block files are synced lazily by `flushJournal`
 * (payload-journal.ts). Files with direct writes, or with larger runs appended past their journaled
 * bytes (a batch filling its block), are fdatasynced by a group.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants, writeSync, writevSync } from 'node:fs';
import { DATA_FILE_MODE } from './atomic-file.js';
import { CompressedBlocks } from './compressed-block.js';
import type { PayloadJournal } from './payload-journal.js';
import { SyncPoint } from './sync-point.js';
import type { StorageFaults } from './types.js';

const DIRECT_WRITE_BYTES = 64 * 1024;
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
const MAX_OPEN = 256;
const READ_WINDOW_BYTES = 256 * 1024;
const MAX_WINDOWS = 64;

interface OpenFile {
  path: string;
  fh: FileHandle;
  refs: number;
  pending: Array<{ pos: number; buf: Buffer }>;
  pendingBytes: number;
  /** Bytes taken from `pending` by a flush still being written. */
  flushingBytes: number;
  /** Flushes of one file run one after another (issue order must hold across flushes). */
  chain: Promise<void>;
  backgroundFlush: boolean;
  /** Failure of a background flush, reported by the next sync. */
  error: unknown;
  /** Written since the last sync. */
  dirty: boolean;
  /** Its fdatasyncs (one at a time) and the writes handed to the kernel that they cover. */
  sync: SyncPoint;
  /** The latest write that a group must sync itself (not journaled): its number in `sync`. */
  ownWrite: number;
  /** Journal generation of its latest journaled write since it was last synced (0: none). */
  journalGen: number;
  /** Where its journaled runs since it was last synced end (0: none), see `writeAtSlow`. */
  journaledEnd: number;
  lastUse: number;
  /**
   * Counts writes issued (and direct writes finished) and forgets: a read-ahead window is kept only
   * if none happened while its bytes were read, since `writeAt` can only invalidate a kept window.
   */
  changes: number;
}

/** Queued bytes of a file that start a background write, overlapping disk I/O with receiving. */
const BACKGROUND_FLUSH_BYTES = 512 * 1024;

export class BlockFiles {
  /** Reads of compressed data files (`<id>.blk.zst`). */
  readonly compressed = new CompressedBlocks();
  private files = new Map<string, OpenFile>();
  private opening = new Map<string, Promise<OpenFile>>();
  private tick = 0;
  private evicting = false;
  /** Read-ahead windows by path (insertion order = LRU order). */
  private windows = new Map<string, { start: number; buf: Buffer }>();

  /** A block file or the journal could not be synced: nothing may be called durable any more. */
  private fatal: unknown;
  /** The journal flush under way. */
  private journalFlush: Promise<void> | undefined;

  constructor(
    private readonly faults?: StorageFaults,
    private readonly journal?: PayloadJournal,
  ) {}

  private async acquire(path: string): Promise<OpenFile> {
    let f = this.files.get(path);
    if (!f) {
      let p = this.opening.get(path);
      if (!p) {
        p = (async () => {
          const fh = await open(path, constants.O_RDWR | constants.O_CREAT, DATA_FILE_MODE);
          const file: OpenFile = {
            path,
            fh,
            refs: 0,
            pending: [],
            pendingBytes: 0,
            flushingBytes: 0,
            chain: Promise.resolve(),
            backgroundFlush: false,
            error: undefined,
            dirty: false,
            sync: new SyncPoint(() => fh.datasync()),
            ownWrite: 0,
            journalGen: 0,
            journaledEnd: 0,
            lastUse: 0,
            changes: 0,
          };
          this.files.set(path, file);
          this.opening.delete(path);
          return file;
        })();
        p.catch(() => this.opening.delete(path));
        this.opening.set(path, p);
      }
      f = await p;
    }
    f.refs++;
    f.lastUse = ++this.tick;
    return f;
  }

  private release(f: OpenFile): void {
    f.refs--;
    if (this.files.size <= MAX_OPEN) return;
    // journaled files stay open until synced: a flush makes them idle (and evicts)
    if (this.journal && !this.journalFlush) void this.flushJournal().catch(() => {});
    else void this.evictIdle();
  }

  private async evictIdle(): Promise<void> {
    if (this.evicting) return;
    this.evicting = true;
    try {
      const idle = [...this.files.values()].filter(isIdle).sort((a, b) => a.lastUse - b.lastUse);
      for (const f of idle.slice(0, Math.max(0, this.files.size - MAX_OPEN / 2))) {
        // Checked again: a write may have been queued on it while an earlier close was awaited, and
        // closing it then would lose bytes that a group commit is about to report durable.
        if (!isIdle(f) || this.files.get(f.path) !== f) continue;
        this.files.delete(f.path);
        await f.fh.close().catch(() => {});
      }
    } finally {
      this.evicting = false;
    }
  }

  /**
   * Writes `buf` at `pos`. The data is durable only after `syncFiles` for this path. Small writes to
   * an open file are queued synchronously (no promise), the common case of batched ingest.
   */
  writeAt(path: string, pos: number, buf: Buffer): Promise<void> | undefined {
    // Only a write into a cached read-ahead window changes it; appends after it (the common case
    // while replication reads records just written) leave it valid.
    this.invalidate(path, pos, buf.length);
    const f = this.files.get(path);
    if (
      f &&
      buf.length < DIRECT_WRITE_BYTES &&
      f.pendingBytes + f.flushingBytes + buf.length < MAX_QUEUED_BYTES
    ) {
      f.lastUse = ++this.tick;
      this.enqueue(f, pos, buf);
      return undefined;
    }
    return this.writeAtSlow(path, pos, buf);
  }

  /** Drops the read-ahead window of `path` if it overlaps `len` bytes at `pos`. */
  private invalidate(path: string, pos: number, len: number): void {
    const w = this.windows.get(path);
    if (w && pos < w.start + w.buf.length && pos + len > w.start) this.windows.delete(path);
  }

  /** Queues a small write; a background flush starts once enough is queued. */
  private enqueue(f: OpenFile, pos: number, buf: Buffer): void {
    f.dirty = true;
    f.changes++;
    // No copy: a payload buffer must stay unchanged until its write resolves (as with fs.write).
    // Copies of small chunks would land in Node's shared pool slabs and pin them.
    f.pending.push({ pos, buf });
    f.pendingBytes += buf.length;
    if (f.pendingBytes >= BACKGROUND_FLUSH_BYTES && !f.backgroundFlush) {
      f.backgroundFlush = true;
      this.flushFile(f)
        .catch((e: unknown) => (f.error = e))
        .finally(() => (f.backgroundFlush = false));
    }
  }

  private async writeAtSlow(path: string, pos: number, buf: Buffer): Promise<void> {
    const f = await this.acquire(path);
    try {
      if (buf.length >= DIRECT_WRITE_BYTES) {
        f.dirty = true;
        f.changes++;
        try {
          await this.flushFile(f);
          // Not journaled: a journal record of these bytes (a failed write whose space was given
          // back, `Block.unreserve`) would be replayed over them after a crash, so such records
          // are synced into their files and dropped first. Appends past every journaled byte cost
          // nothing.
          if (f.journalGen !== 0 && pos < f.journaledEnd) await this.flushJournal((x) => x === f);
          await writeFully(f.fh, [buf], pos);
          f.ownWrite = f.sync.wrote();
          // again: a sync that ended while this write was under way marked the file clean, and a
          // clean idle file may be closed (evicted) before the group of this write syncs it
          f.dirty = true;
        } finally {
          // Also once done: a window read while it was under way may hold part of it.
          f.changes++;
          this.invalidate(path, pos, buf.length);
        }
      } else {
        this.enqueue(f, pos, buf);
        if (f.pendingBytes >= MAX_QUEUED_BYTES) await this.flushFile(f);
      }
    } finally {
      this.release(f);
    }
  }

  private flushFile(f: OpenFile): Promise<void> {
    const run = f.chain.then(() => this.flushNow(f));
    f.chain = run.catch(() => {});
    return run;
  }

  private async flushNow(f: OpenFile): Promise<void> {
    if (f.pending.length === 0) return;
    const pending = f.pending;
    const bytes = f.pendingBytes;
    f.pending = [];
    f.pendingBytes = 0;
    f.flushingBytes += bytes;
    const progress = { written: 0 };
    try {
      await this.faults?.blockWrite?.(f.path);
      await this.writeRuns(f, pending, progress);
    } catch (e) {
      // Not written: queued again, before what was queued meanwhile (issue order), so that no
      // sync covers them unwritten. Their records may be in a later group than the one whose
      // flush failed (a batch staged earlier): that group's flush writes them, or fails too.
      const rest = pending.slice(progress.written);
      f.pending = rest.concat(f.pending);
      for (const p of rest) f.pendingBytes += p.buf.length;
      throw e;
    } finally {
      f.flushingBytes -= bytes;
    }
  }

  private async writeRuns(
    f: OpenFile,
    pending: Array<{ pos: number; buf: Buffer }>,
    progress: { written: number },
  ): Promise<void> {
    // Issue order, not position order: a later write to the same bytes (an errored record being
    // rewritten) must win. Sequential appends are contiguous in issue order, so runs stay long.
    let i = 0;
    while (i < pending.length) {
      const start = pending[i]!.pos;
      const run: Buffer[] = [pending[i]!.buf];
      let end = start + pending[i]!.buf.length;
      i++;
      while (i < pending.length && pending[i]!.pos === end) {
        run.push(pending[i]!.buf);
        end += pending[i]!.buf.length;
        i++;
      }
      // A large run past every journaled byte of the file (a batch appending to its block) is
      // written like a direct write: not journaled (its bytes would be written twice, ~1/4 of a
      // 1 KiB copy's CPU at the destination, issue 9), synced by its group's fdatasync of the file.
      // Below a journaled byte it is journaled, so that no older journal record is replayed over it.
      const large = end - start >= DIRECT_WRITE_BYTES;
      const journal = large && start >= f.journaledEnd ? undefined : this.journal;
      // journal first: a run that cannot be journaled is written nowhere (queued again)
      if (journal) {
        journal.append(f.path, start, run);
        f.journalGen = journal.generation();
        if (end > f.journaledEnd) f.journaledEnd = end;
      }
      // Small runs into the page cache: one syscall on this thread costs less than a threadpool
      // round trip (issue 10: ~50 µs of main-thread CPU per async fs op on this VM).
      if (!large) writeFullySync(f.fh.fd, run, start);
      else await writeFully(f.fh, run, start);
      const n = f.sync.wrote();
      if (!journal) f.ownWrite = n;
      progress.written = i;
    }
    if (this.journal && this.journal.size() >= JOURNAL_FLUSH_BYTES) void this.flushJournal().catch(() => {});
  }

  /**
   * Flushes queued writes of the given files and makes them durable: the journal's fdatasync for
   * journaled writes, the file's own for the others (in parallel). A file's syncs run one at a
   * time, and one under way that covers a caller's writes is shared (group commits overlap).
   */
  async syncFiles(paths: Iterable<string>, sync: boolean): Promise<void> {
    if (this.fatal !== undefined) throw this.fatal;
    const files: OpenFile[] = [];
    for (const path of paths) {
      const f = this.files.get(path);
      if (!f) continue;
      f.refs++;
      files.push(f);
    }
    try {
      const flushed = await Promise.allSettled(files.map((f) => this.flushFile(f)));
      for (const r of flushed) if (r.status === 'rejected') throw r.reason;
      for (const f of files) {
        if (f.error !== undefined) {
          const e = f.error;
          f.error = undefined;
          throw e;
        }
      }
      if (sync) {
        // every write of the caller's records is handed to the kernel now (the flush chain)
        const mark = this.journal?.mark();
        const syncs = files.map((f) => f.sync.syncTo(f.ownWrite));
        if (mark) syncs.push(this.journal!.syncTo(mark));
        for (const r of await Promise.allSettled(syncs)) {
          // a real fdatasync failure: the bytes it covered may be lost whatever a retry says
          if (r.status === 'rejected') throw (this.fatal ??= r.reason);
        }
      }
      for (const f of files) this.markClean(f, sync);
    } finally {
      for (const f of files) f.refs--;
    }
  }

  private markClean(f: OpenFile, sync = true): void {
    if (f.pending.length > 0 || f.flushingBytes > 0) return;
    if (!sync || (f.journalGen === 0 && f.sync.clean())) f.dirty = false;
  }

  /**
   * Syncs every block file written since the last flush and drops the journal generations that
   * covered them (see payload-journal.ts). Waits for a flush under way; `needed` tells whether
   * another is needed after it (default: whenever anything was journaled since).
   */
  async flushJournal(needed?: (f: OpenFile) => boolean): Promise<void> {
    const journal = this.journal;
    if (!journal) return;
    while (this.journalFlush) await this.journalFlush.catch(() => {});
    if (this.fatal !== undefined) throw this.fatal;
    const written = [...this.files.values()].filter((f) => f.journalGen !== 0);
    if (needed ? !written.some(needed) : journal.empty() && written.length === 0) return;
    const run = (async () => {
      const old = await journal.rotate();
      // after the rotation: a run journaled during it went to the old generation
      const files = [...this.files.values()].filter((f) => f.journalGen !== 0);
      await Promise.all(
        files.map(async (f) => {
          f.refs++;
          try {
            // a run journaled before the rotation may still be being written (a large one)
            await f.chain;
            await f.sync.syncTo();
            if (f.journalGen <= old.gen) {
              f.journalGen = 0;
              f.journaledEnd = 0;
            }
            this.markClean(f);
          } finally {
            f.refs--;
          }
        }),
      );
      await journal.drop(old);
    })();
    this.journalFlush = run;
    try {
      await run;
    } catch (e) {
      // the journal is kept (replayed at the next start); nothing is called durable any more
      throw (this.fatal ??= e);
    } finally {
      this.journalFlush = undefined;
    }
    if (this.files.size > MAX_OPEN) void this.evictIdle();
  }

  /**
   * Reads `len` bytes at `pos`. Small reads go through a per-file read-ahead window, so that a
   * sequential scan of small records costs one read per window instead of one per record.
   */
  async readAt(path: string, pos: number, len: number): Promise<Buffer> {
    const w = this.windows.get(path);
    if (w && pos >= w.start && pos + len <= w.start + w.buf.length) {
      return Buffer.from(w.buf.subarray(pos - w.start, pos - w.start + len));
    }
    const f = await this.acquire(path);
    try {
      // Before the flush: what is queued now is on disk once it is done, later writes are not.
      const changes = f.changes;
      // Queued or still being written by a background flush: on disk first.
      if (f.pending.length || f.flushingBytes) await this.flushForRead(f, pos, len);
      if (len < READ_WINDOW_BYTES / 4) {
        const win = Buffer.allocUnsafe(READ_WINDOW_BYTES);
        const { bytesRead } = await f.fh.read(win, 0, win.length, pos);
        // A write issued during the read found no window to invalidate: the bytes read may predate
        // it (the replication crash test served a stale tail this way), so they are not kept.
        if (bytesRead >= len && f.changes !== changes) return Buffer.from(win.subarray(0, len));
        if (bytesRead >= len) {
          this.windows.delete(path);
          this.windows.set(path, { start: pos, buf: win.subarray(0, bytesRead) });
          if (this.windows.size > MAX_WINDOWS) this.windows.delete(this.windows.keys().next().value!);
          return Buffer.from(win.subarray(0, len));
        }
      }
      return await readExactly(f, pos, len);
    } finally {
      this.release(f);
    }
  }

  /**
   * Reads `len` bytes at `pos` into a buffer of their own, without the read-ahead window: for
   * ranges that span many records, read once instead of once per record.
   */
  async readRange(path: string, pos: number, len: number): Promise<Buffer> {
    const f = await this.acquire(path);
    try {
      // Queued or still being written by a background flush: on disk first.
      if (f.pending.length || f.flushingBytes) await this.flushForRead(f, pos, len);
      return await readExactly(f, pos, len);
    } finally {
      this.release(f);
    }
  }

  /**
   * Flushes before a read. Bytes that cannot be written now (a full disk) stay queued for the next
   * flush: a read of other bytes (records answered long ago) still goes on.
   */
  private async flushForRead(f: OpenFile, pos: number, len: number): Promise<void> {
    try {
      await this.flushFile(f);
    } catch (e) {
      if (f.pending.some((p) => p.pos < pos + len && p.pos + p.buf.length > pos)) throw e;
    }
  }

  /**
   * Closes and forgets a file (before it is deleted or renamed); `compressedToo: false` keeps the
   * readers of its compressed form (a compression replaced the plain file).
   */
  async forget(pathPrefix: string, compressedToo = true): Promise<void> {
    const dirPrefix = pathPrefix.endsWith('/') ? pathPrefix : pathPrefix + '/';
    const under = (p: string): boolean => p === pathPrefix || p.startsWith(dirPrefix);
    // A journal record must never outlive its file: replayed after a delete, rename or
    // replacement, it would write stale bytes. Queued bytes are journaled first.
    for (const f of this.files.values()) if (under(f.path)) await this.flushFile(f).catch(() => {});
    await this.flushJournal((f) => under(f.path));
    for (const p of [...this.windows.keys()]) if (under(p)) this.windows.delete(p);
    const compressed = compressedToo ? this.compressed.forget(pathPrefix) : undefined;
    // All before the first await: a read still under way on any of them must not keep its window.
    for (const [p, f] of this.files) if (under(p)) f.changes++;
    for (const [p, f] of this.files) {
      if (under(p)) {
        this.files.delete(p);
        await this.flushFile(f).catch(() => {});
        await f.fh.close().catch(() => {});
      }
    }
    await compressed;
  }

  async closeAll(sync: boolean): Promise<void> {
    // Each file on its own: bytes a full disk keeps queued are of records never answered (an
    // answered record's bytes were synced by its group), and keep no other file from its sync.
    await Promise.allSettled([...this.files.keys()].map((p) => this.syncFiles([p], sync)));
    await this.flushJournal().catch(() => {});
    for (const f of this.files.values()) await f.fh.close().catch(() => {});
    this.files.clear();
    this.journal?.close();
    await this.compressed.closeAll();
  }
}

const isIdle = (f: OpenFile): boolean =>
  f.refs === 0 && f.pending.length === 0 && !f.dirty && f.journalGen === 0;

/** Journal bytes after which block files are synced and the journal dropped. */
const JOURNAL_FLUSH_BYTES = 32 * 1024 * 1024;

/** Reads exactly `len` bytes at `pos` (a short read means the file is shorter than its index says). */
async function readExactly(f: OpenFile, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const { bytesRead } = await f.fh.read(buf, done, len - done, pos + done);
    if (bytesRead === 0) throw new Error(`short read in ${f.path}`);
    done += bytesRead;
  }
  return buf;
}

/**
 * Writes every byte of `buffers` at `pos` (null: at the end of a file opened to append) with
 * synchronous syscalls: for small writes into the page cache, which never wait for the disk.
 * Short writes are carried on as in `writeFully`.
 */
export function writeFullySync(fd: number, buffers: readonly Buffer[], pos: number | null): void {
  let rest = buffers;
  let at = pos;
  for (;;) {
    const total = rest.reduce((n, b) => n + b.length, 0);
    if (total === 0) return;
    const bytesWritten =
      rest.length === 1
        ? writeSync(fd, rest[0]!, 0, rest[0]!.length, at)
        : writevSync(fd, rest, at ?? undefined);
    if (bytesWritten === total) return;
    if (bytesWritten === 0) throw Object.assign(new Error('no progress writing to disk'), { code: 'ENOSPC' });
    if (at !== null) at += bytesWritten;
    rest = skipBytes(rest, bytesWritten);
  }
}

/** The buffers of `buffers` after their first `n` bytes. */
function skipBytes(buffers: readonly Buffer[], n: number): Buffer[] {
  let skip = n;
  const next: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    next.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return next;
}

/**
 * Writes every byte of `buffers` at `pos`. A write may be short without an error (nearly full
 * disk): carry on with the rest, so that the next attempt gets the ENOSPC instead of the data
 * being silently incomplete.
 */
export async function writeFully(fh: FileHandle, buffers: Buffer[], pos: number | null): Promise<void> {
  let rest = buffers;
  let at = pos;
  for (;;) {
    const total = rest.reduce((n, b) => n + b.length, 0);
    if (total === 0) return;
    const { bytesWritten } =
      rest.length === 1
        ? await fh.write(rest[0]!, 0, rest[0]!.length, at)
        : await fh.writev(rest, at ?? undefined);
    if (bytesWritten === total) return;
    if (bytesWritten === 0) throw Object.assign(new Error('no progress writing to disk'), { code: 'ENOSPC' });
    if (at !== null) at += bytesWritten;
    rest = skipBytes(rest, bytesWritten);
  }
}
