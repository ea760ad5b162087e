/**
 * Group commit: writers queue their WAL ops; one run at a time fdatasyncs every block file the group
 * touched and, at the same time, writes the group's frames and fdatasyncs the WAL once; only when
 * both are durable are the records published and the writers answered. Many concurrent writes
 * therefore share one WAL fsync, and a write waits for one round of syncs, not two in a row.
 *
 * Syncing both at once means that a crash can leave a group's frames durable while some of its
 * payload bytes are not. Runs are serial, so that can only be the log's last group: recovery checks
 * its payloads and cuts it when they are incomplete (`incompleteGroup` in last-group.ts, called at open); none of its writers had been
 * answered. A block file that cannot be synced while the frames were written has them cut at once.
 *
 * Each writer's ops are encoded on their own: an op that cannot be encoded fails its writer only
 * (and leaves no LSN gap); an I/O failure of the group's write fails the group.
 */
import type { BlockFiles } from './block-files.js';
import type { Block, RecordDesc } from './block.js';
import type { Entry } from './entry.js';
import type { GroupStart, Wal, WalOp, WriteOp } from './wal.js';
import { Errors, fromFsError } from '../protocol/errors.js';
import type { StorageFaults } from './types.js';

/** A record whose payload is in its block file, to be published once its WAL frame is durable. */
export interface StagedWrite {
  entry: Entry;
  block: Block;
  desc: RecordDesc;
  op: WriteOp;
}

/** Called after each durable group with its ops in LSN order and the last LSN. */
export type DurableListener = (ops: readonly WalOp[], lastLsn: bigint) => void;

interface Pending {
  ops: readonly WalOp[];
  /** Applies `ops` to memory once they are durable (before the writer is answered). */
  apply: (() => void) | undefined;
  writes: readonly StagedWrite[];
  paths: readonly string[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

const NONE: readonly never[] = [];

export class GroupCommit {
  private queue: Pending[] = [];
  private committing = false;
  private closed = false;
  private appliedLsn: bigint;
  private listeners: DurableListener[] = [];
  private idleWaiters: Array<() => void> = [];
  /** Set when a failed group could not be taken back out of the log: no commit is safe any more. */
  private broken: Error | undefined;

  constructor(
    private readonly wal: Wal,
    private readonly files: BlockFiles,
    private readonly sync: boolean,
    private readonly faults?: StorageFaults,
  ) {
    this.appliedLsn = wal.lastDurableLsn();
  }

  /** LSN of the latest durable (and published) op. */
  lastLsn(): bigint {
    return this.appliedLsn;
  }

  /** Subscribes to durable groups (slots, change log, checkpoints). */
  onDurable(listener: DurableListener): void {
    this.listeners.push(listener);
  }

  /**
   * Resolves once `op` is durable; it is given its LSN then. `apply` changes memory accordingly,
   * right after the op is durable and before anything else can see the group (a checkpoint that
   * starts then already finds the change), never when the op failed.
   */
  commit(op: WalOp, apply?: () => void): Promise<void> {
    return this.enqueue([op], NONE, NONE, apply);
  }

  /**
   * Resolves once the block files `paths` and the frames of `writes` are durable; the records are
   * published (visible and counted) right before, in LSN order.
   */
  commitWrites(writes: readonly StagedWrite[], paths: readonly string[]): Promise<void> {
    return this.enqueue(NONE, writes, paths, undefined);
  }

  /**
   * Resolves once `ops` (applied to memory by `apply`), the block files `paths` and the frames of
   * `writes` are durable; their frames are contiguous in the log, in this order, and `apply` and
   * the records' publication happen together, with no other code in between (shipments).
   */
  commitAll(
    ops: readonly WalOp[],
    writes: readonly StagedWrite[],
    paths: readonly string[],
    apply: () => void,
  ): Promise<void> {
    return this.enqueue(ops, writes, paths, apply);
  }

  private enqueue(
    ops: readonly WalOp[],
    writes: readonly StagedWrite[],
    paths: readonly string[],
    apply: (() => void) | undefined,
  ): Promise<void> {
    if (this.closed) return Promise.reject(Errors.unavailable('The storage engine is closed'));
    if (this.broken)
      return Promise.reject(Errors.unavailable(`The storage engine failed: ${this.broken.message}`));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, apply, writes, paths, resolve, reject });
      this.kick();
    });
  }

  /** Refuses new commits and resolves once the queue is empty. */
  async close(): Promise<void> {
    while (this.committing || this.queue.length > 0) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
    this.closed = true;
  }

  private kick(): void {
    if (this.committing) return;
    if (this.queue.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    this.committing = true;
    setImmediate(() => void this.run());
  }

  private async run(): Promise<void> {
    const queued = this.queue;
    this.queue = [];
    const group: Pending[] = [];
    const paths = new Set<string>();
    for (const g of queued) {
      if (this.encode(g)) {
        group.push(g);
        for (const p of g.paths) paths.add(p);
      }
    }
    try {
      if (group.length > 0) {
        const [files, wal] = await Promise.allSettled([this.syncFiles(paths), this.wal.flush()]);
        if (files.status === 'rejected') {
          // the frames must not outlive the answer: a restart would replay records never stored
          if (wal.status === 'fulfilled' && wal.value) await this.takeBack(wal.value);
          throw files.reason;
        }
        if (wal.status === 'rejected') throw wal.reason;
        this.publish(group);
      }
    } catch (e) {
      const err = fromFsError(e);
      for (const g of group) g.reject(err);
    } finally {
      this.committing = false;
      this.kick();
    }
  }

  private async syncFiles(paths: ReadonlySet<string>): Promise<void> {
    await this.faults?.blockSync?.();
    await this.files.syncFiles(paths, this.sync);
  }

  /** Cuts a failed group's frames out of the log; if even that fails, refuses every later commit. */
  private async takeBack(start: GroupStart): Promise<void> {
    try {
      await this.wal.cut(start);
    } catch (e) {
      // Left in the log, it stays its last group (nothing is committed after it), which recovery
      // checks: its records are kept only if their payloads are complete.
      this.broken = e instanceof Error ? e : new Error(String(e));
    }
  }

  /** Encodes one writer's ops; false (and the writer rejected) when one of them cannot be framed. */
  private encode(g: Pending): boolean {
    const mark = this.wal.mark();
    try {
      // Every frame but the writer's last says that its commit continues (change-log cuts).
      let left = g.ops.length + g.writes.length;
      for (const op of g.ops) this.wal.encode(op, --left > 0);
      for (const w of g.writes) this.wal.encode(w.op, --left > 0);
      return true;
    } catch (e) {
      this.wal.rewind(mark);
      g.reject(Errors.unprocessable(`Record metadata cannot be stored: ${(e as Error).message}`));
      return false;
    }
  }

  private publish(group: Pending[]): void {
    const durable: WalOp[] = [];
    for (const g of group) {
      for (const op of g.ops) durable.push(op);
      g.apply?.();
      for (const w of g.writes) {
        w.entry.publish(w.block, w.desc, w.op.lsn);
        durable.push(w.op);
      }
    }
    this.appliedLsn = durable[durable.length - 1]!.lsn;
    for (const g of group) g.resolve();
    for (const l of this.listeners) l(durable, this.appliedLsn);
  }
}
