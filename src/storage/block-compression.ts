/**
 * Compression of sealed blocks (lifecycle `compress` policies) and the way back, crash-safe:
 *
 * - compress: the plain `<id>.blk` is encoded into `<id>.blk.zst.tmp` (on a worker thread), which
 *   is fsynced and renamed to `<id>.blk.zst`, and the directory fsynced: from then on the block is
 *   compressed (the durable marker is the `.zst` file itself). The plain file is removed once no
 *   read still needs it.
 * - restore (a write into a compressed block, e.g. a belated record): the frames are decoded into
 *   `<id>.blk.tmp`, fsynced and renamed to `<id>.blk`; the `.zst` file is removed (durably) before
 *   the write goes on.
 * - start-up (`reconcile`): temp files are removed; a block with both files keeps the `.zst` one
 *   when it is intact (both hold the same bytes: nothing is written into a block while it has a
 *   `.zst` file), else the plain one. A crash at any instant thus leaves a whole plain or a whole
 *   compressed data file, never a broken one.
 *
 * Sizes: compression changes only what the block occupies on disk. Record and bucket sizes (api.md
 * §3.9), quotas and FIFO eviction count the logical bytes, as before.
 */
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { fsyncDir, DATA_FILE_MODE } from './atomic-file.js';
import type { Block } from './block.js';
import { writeFully, type BlockFiles } from './block-files.js';
import {
  COMPRESSED_SUFFIX,
  CompressedBlockReader,
  TRANSITION_SUFFIX,
  writeCompressedBlock,
} from './compressed-block.js';
import type { Entry } from './entry.js';
import type { BlockCompressOutcome as CompressOutcome } from './types.js';

const TEMP_NAME = /^\d+\.blk(\.zst)?\.tmp$/;
const ZST_NAME = /^(\d+)\.blk\.zst$/;

interface Pending {
  resolve(v: { stored: number }): void;
  reject(e: unknown): void;
}

export class BlockCompression {
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 0;
  private pending = new Map<number, Pending>();
  private retirements = new Set<Promise<void>>();
  /** Transitions under way (close waits for them: a rename after close would go unnoticed). */
  private active = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly files: BlockFiles,
    private readonly sync: boolean,
  ) {}

  /**
   * True when `block` can be compressed now: it holds records, is not the newest block of its
   * entry (that one still takes appends), has no write in flight and no transition under way.
   */
  isSealed(entry: Entry, block: Block): boolean {
    const blocks = entry.blocks;
    return (
      !block.compressed &&
      !block.transition &&
      !block.removed &&
      block.inflight === 0 &&
      block.count > 0 &&
      blocks.length > 1 &&
      blocks[blocks.length - 1] !== block
    );
  }

  /** Compresses a sealed block; undefined when it is not (or no longer) eligible. */
  async compress(entry: Entry, block: Block): Promise<CompressOutcome | undefined> {
    if (this.closed || !this.isSealed(entry, block)) return undefined;
    const plain = entry.dataPath(block);
    const zst = plain + COMPRESSED_SUFFIX;
    const tmp = zst + TRANSITION_SUFFIX;
    const raw = block.payloadBytes;
    const records = block.count;
    let outcome: CompressOutcome | undefined;
    // Set before the first await: writers that choose this block from now on wait for it.
    block.transition = (async () => {
      try {
        // Queued bytes of the file (none once its writes are committed) on disk first.
        await this.files.syncFiles([plain], false);
        const { stored } = await this.encode(plain, tmp, raw);
        await rename(tmp, zst);
        if (this.sync) await fsyncDir(entry.dir);
        if (block.removed || block.payloadBytes !== raw) {
          // Evicted (its files were deleted while this one was being written) or written meanwhile.
          await this.unlinkDurably(zst, entry.dir);
          return;
        }
        block.compressed = true;
        outcome = { raw, stored, records };
        this.track((block.retiring = this.retire(block, plain, entry.dir)));
      } catch (e) {
        await unlink(tmp).catch(() => {});
        if (!block.removed) throw e;
      }
    })().finally(() => (block.transition = undefined));
    await this.tracked(block.transition);
    return outcome;
  }

  /**
   * Makes a compressed block plain again before a write into it. Resolves once the block is plain
   * or another transition ended (callers look at the block again).
   */
  makePlain(entry: Entry, block: Block): Promise<void> {
    if (block.transition) return block.transition.catch(() => {});
    if (!block.compressed) return Promise.resolve();
    const plain = entry.dataPath(block);
    const zst = plain + COMPRESSED_SUFFIX;
    const tmp = plain + TRANSITION_SUFFIX;
    block.transition = (async () => {
      await block.retiring;
      const reader = await CompressedBlockReader.open(zst);
      const out = await open(tmp, 'w', DATA_FILE_MODE);
      try {
        for (let i = 0, at = 0; i < reader.frameCount; i++) {
          const frame = await reader.decode(i);
          await writeFully(out, [frame], at);
          at += frame.length;
        }
        if (this.sync) await out.sync();
      } catch (e) {
        await unlink(tmp).catch(() => {});
        throw e;
      } finally {
        await out.close();
        await reader.close();
      }
      await rename(tmp, plain);
      if (this.sync) await fsyncDir(entry.dir);
      block.compressed = false;
      // Nothing may be written into the plain file while the `.zst` one exists (see reconcile).
      await this.untilUnread(block);
      await this.files.compressed.forget(zst);
      await this.unlinkDurably(zst, entry.dir);
    })().finally(() => (block.transition = undefined));
    return this.tracked(block.transition);
  }

  /** Start-up: marks compressed blocks and removes what an interrupted transition left. */
  async reconcile(entries: Iterable<Entry>): Promise<void> {
    for (const entry of entries) {
      let names: string[];
      try {
        names = await readdir(entry.dir);
      } catch {
        continue;
      }
      const present = new Set(names);
      let changed = false;
      for (const name of names) {
        if (TEMP_NAME.test(name)) {
          await unlink(`${entry.dir}/${name}`).catch(() => {});
          changed = true;
          continue;
        }
        const m = ZST_NAME.exec(name);
        if (!m) continue;
        const block = entry.blockById(BigInt(m[1]!));
        const zst = `${entry.dir}/${name}`;
        if (!block) {
          await unlink(zst).catch(() => {}); // its block was removed; the unlink was lost
          changed = true;
          continue;
        }
        const plainName = name.slice(0, -COMPRESSED_SUFFIX.length);
        if (present.has(plainName)) {
          // Interrupted after the rename: the `.zst` file is whole unless the disk damaged it.
          const intact = await CompressedBlockReader.open(zst).then(
            (r) => (void r.close(), true),
            () => false,
          );
          await unlink(`${entry.dir}/${intact ? plainName : name}`).catch(() => {});
          changed = true;
          if (!intact) continue;
        }
        block.compressed = true;
      }
      if (changed && this.sync) await fsyncDir(entry.dir);
    }
  }

  /** Waits for the plain files that compressions replaced to be removed (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.retirements.size > 0) await Promise.allSettled([...this.retirements]);
  }

  /** Waits for transitions under way, then stops the worker. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
    const w = this.worker;
    this.worker = undefined;
    this.broken = true;
    if (w) await w.terminate();
  }

  private async retire(block: Block, plain: string, dir: string): Promise<void> {
    try {
      await this.untilUnread(block);
      await this.files.forget(plain, false);
      if (!block.removed) await this.unlinkDurably(plain, dir);
    } finally {
      block.retiring = undefined;
    }
  }

  private tracked(p: Promise<void>): Promise<void> {
    const t = p.catch(() => {}).finally(() => this.active.delete(t));
    this.active.add(t);
    return p;
  }

  private track(p: Promise<void>): void {
    const t = p.catch(() => {}).finally(() => this.retirements.delete(t));
    this.retirements.add(t);
  }

  private async untilUnread(block: Block): Promise<void> {
    while (block.readers > 0) await sleep(5);
  }

  private async unlinkDurably(path: string, dir: string): Promise<void> {
    await unlink(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    if (this.sync) await fsyncDir(dir);
  }

  /** Encodes on the worker thread (inline if it cannot run). */
  private encode(src: string, dst: string, rawLength: number): Promise<{ stored: number }> {
    if (this.broken) return writeCompressedBlock(src, dst, rawLength, this.sync);
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, src, dst, rawLength, sync: this.sync });
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./block-compressor-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (m: { id: number; stored: number; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve({ stored: m.stored });
    });
    const fail = (e: unknown): void => {
      this.broken = true;
      this.worker = undefined;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`block compressor exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}
