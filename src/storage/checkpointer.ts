/**
 * Checkpoints: dirty descriptors (`<id>.meta`) and block summaries (`index.bin`) are written, their
 * directories synced, and only then the replay start (`wal/checkpoint`) moves and WAL segments that
 * nothing needs any more are deleted. A checkpoint that fails anywhere moves nothing: its changes
 * stay in the WAL and are replayed, and the next checkpoint writes them again.
 */
import { join } from 'node:path';
import { encodeBlockMeta, encodeEntryIndex } from './block.js';
import { fsyncDir, writeFileAtomic } from './atomic-file.js';
import type { DescriptorCache } from './descriptor-cache.js';
import type { Entry } from './entry.js';
import type { GroupCommit } from './group-commit.js';
import type { ReplicationSlots } from './replication-slots.js';
import type { Wal } from './wal.js';
import type { StorageFaults, StorageHealth } from './types.js';

/** Ops after which a checkpoint starts without waiting for the timer. */
export const CHECKPOINT_OPS = 50_000;

export interface CheckpointerOptions {
  root: string;
  sync: boolean;
  wal: Wal;
  commits: GroupCommit;
  slots: ReplicationSlots;
  cache: DescriptorCache;
  /** Every entry of every bucket (the catalogue). */
  entries: () => Iterable<Entry>;
  log: (line: string) => void;
  /** State kept beside the WAL (shipment positions), written before `wal/checkpoint` moves. */
  persistAlso?: () => Promise<void>;
  faults?: StorageFaults;
  now?: () => number;
}

export class Checkpointer {
  private running: Promise<void> | undefined;
  /** The one follow-up run that callers arriving during a run wait for. */
  private queued: Promise<void> | undefined;
  private opsSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastError: { message: string; at: number } | undefined;
  private unsyncedDirs = new Set<string>();
  /** Block removals under way (op, then files): see `removing`. */
  private removals = new Set<Promise<void>>();

  constructor(private readonly o: CheckpointerOptions) {
    o.commits.onDurable((ops) => {
      this.opsSince += ops.length;
      if (this.opsSince >= CHECKPOINT_OPS) void this.checkpoint().catch(() => {});
    });
  }

  /** Starts periodic checkpoints; a failure is logged and shown by `health`. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.checkpoint().catch(() => {}), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  health(): StorageHealth {
    return {
      last_checkpoint_error: this.lastError?.message ?? null,
      last_checkpoint_error_at: this.lastError ? new Date(this.lastError.at).toISOString() : null,
    };
  }

  /**
   * Runs a removal of whole blocks (`fn` logs their RemoveBlock ops, then deletes their files) so
   * that no checkpoint moves the replay start past those ops before the files are gone: a crash in
   * between replays the ops, which delete the files; without this the files could stay on disk
   * for good, in no index. Registered before the ops are logged, so a checkpoint that does not
   * wait for it started before they were (its replay start is before them).
   */
  async removing(fn: () => Promise<void>): Promise<void> {
    const p = fn();
    const held = p.catch(() => undefined);
    this.removals.add(held);
    try {
      await p;
    } finally {
      this.removals.delete(held);
    }
  }

  /** A checkpoint whose failure is already logged and reported by `health` (callers go on). */
  request(): Promise<void> {
    return this.checkpoint().catch(() => {});
  }

  /**
   * Writes dirty descriptors and indexes, then moves the replay start past them. Resolves once a
   * run that started after this call has finished: a run already under way may have missed changes
   * made before the call (renames rely on this), so callers arriving during a run share one
   * follow-up run.
   */
  checkpoint(): Promise<void> {
    const running = this.running;
    if (!running) return this.startRun();
    this.queued ??= running
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.startRun();
      });
    return this.queued;
  }

  private startRun(): Promise<void> {
    const run: Promise<void> = this.run()
      .then(
        () => {
          this.lastError = undefined;
        },
        (e: unknown) => {
          const message = (e as Error)?.message ?? String(e);
          this.lastError = { message, at: (this.o.now ?? Date.now)() };
          this.o.log(`storage: checkpoint failed, the WAL is kept for replay: ${message}`);
          throw e;
        },
      )
      .finally(() => {
        if (this.running === run) this.running = undefined;
      });
    this.running = run;
    return run;
  }

  private async run(): Promise<void> {
    const { wal, commits, slots, faults } = this.o;
    const cpLsn = commits.lastLsn();
    this.opsSince = 0;
    const noSync = !this.o.sync;
    const write = async (path: string, data: Uint8Array | string, noDirSync: boolean): Promise<void> => {
      await faults?.checkpointWrite?.(path);
      await writeFileAtomic(path, data, { noSync, noDirSync });
    };
    const writes: Array<() => Promise<void>> = [];
    // Files are synced one by one, their directories once each at the end (before the checkpoint
    // LSN moves), instead of one directory sync per file. Directories a failed run did not sync
    // are synced by the next one (their files are no longer dirty).
    const dirs = this.unsyncedDirs;
    for (const entry of this.o.entries()) {
      if (entry.status === 'DELETING') continue;
      for (const block of entry.blocks) {
        if (!block.dirty || !block.records) continue;
        dirs.add(entry.dir);
        // Encoded when its turn comes, not all at once up front: a checkpoint of many blocks then
        // never stalls the event loop for long (write latency). Replay is idempotent, so changes
        // newer than the checkpoint LSN may be included.
        writes.push(async () => {
          if (!block.dirty || !block.records || block.removed || entry.status === 'DELETING') return;
          block.dirty = false;
          // clean now, but until the file is written a reload would read the older descriptors
          block.persisting++;
          try {
            await write(entry.metaPath(block), encodeBlockMeta(block), true);
          } catch (e) {
            block.dirty = true;
            throw e;
          } finally {
            block.persisting--;
          }
        });
      }
      if (entry.indexDirty) {
        entry.indexDirty = false;
        dirs.add(entry.dir);
        const data = encodeEntryIndex(entry.blocks);
        writes.push(async () => {
          try {
            await write(`${entry.dir}/index.bin`, data, true);
          } catch (e) {
            entry.indexDirty = true;
            throw e;
          }
        });
      }
    }
    // Bounded parallelism keeps the thread pool available to writers.
    let i = 0;
    let failure: unknown;
    const worker = async () => {
      while (i < writes.length && failure === undefined) {
        try {
          await writes[i++]!();
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
    if (failure !== undefined) throw failure;
    for (const d of [...dirs]) {
      if (!noSync) {
        await faults?.fsyncDir?.(d);
        // An entry removed meanwhile has nothing left to make durable.
        await fsyncDir(d).catch((e: NodeJS.ErrnoException) => {
          if (e?.code !== 'ENOENT') throw e;
        });
      }
      dirs.delete(d);
    }
    await this.o.persistAlso?.();
    // Removals that started later log ops after cpLsn: only the ones under way now matter.
    if (this.removals.size > 0) await Promise.all([...this.removals]);
    await write(join(this.o.root, 'wal', 'checkpoint'), cpLsn.toString(), false);
    await slots.persist();
    await wal.truncateUpTo(slots.retainFrom(cpLsn));
    this.o.cache.unloadCold();
  }
}
