/**
 * Group commit: writers queue their WAL ops; a group makes the payloads it touched durable (the
 * payload journal's fdatasync for small ones, see payload-journal.ts; the block file's own for
 * large direct writes) and, at the same time, writes its frames and fdatasyncs the WAL once; only
 * when both are durable are the records published and the writers answered. Many concurrent writes therefore share one WAL fsync,
 * and a write waits for one round of syncs, not two in a row.
 *
 * Groups are pipelined: once a group's frames are written (while it still syncs), the next group
 * gathers what queued meanwhile and starts its own round, so a writer that arrives during a sync
 * does not wait for it to end first. At most `GROUPS_IN_FLIGHT` (2) are in flight; they are
 * published and answered in log order.
 *
 * Syncing both at once means that a crash can leave a group's frames durable while some of its
 * payload bytes are not. That can only be one of the log's last two groups: recovery checks their
 * payloads and cuts the first incomplete one with everything after it (`groupToCut` in
 * last-group.ts, called at open); none of their writers had been answered. A group whose block
 * files or WAL cannot be synced has its frames cut at once, with those of the group after it
 * (written after them; failed too, never answered).
 *
 * Each writer's ops are encoded on their own: an op that cannot be encoded fails its writer only
 * (and leaves no LSN gap); an I/O failure of the group's write fails the group.
 */
import type { BlockFiles } from './block-files.js';
import type { Block, RecordDesc } from './block.js';
import type { Entry } from './entry.js';
import {
  GROUPS_IN_FLIGHT,
  type GroupStart,
  type Wal,
  type WalOp,
  type WriteOp,
  type WrittenGroup,
} from './wal.js';
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

/** One group commit in flight. */
interface Group {
  members: Pending[];
  /** Set once its frames are written (undefined: none were, nothing of it is in the log). */
  written?: WrittenGroup;
  /** Its I/O is over: `error` says whether it failed. */
  settled: boolean;
  error?: unknown;
}

export class GroupCommit {
  private queue: Pending[] = [];
  /** Groups in flight, in log order (published and answered in this order). */
  private inflight: Group[] = [];
  /** A group is being gathered, or its frames written: the next one waits for that. */
  private starting = false;
  /** A failed group's frames are being cut out of the log: nothing starts meanwhile. */
  private cutting = false;
  private closed = false;
  /** Groups committed, and writers answered in them (`stats`). */
  private groupCount = 0;
  private memberCount = 0;
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

  /** Groups committed so far and the commits (writers) they held, for tests and metrics. */
  stats(): { groups: number; commits: number } {
    return { groups: this.groupCount, commits: this.memberCount };
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
    if (this.broken) return Promise.reject(this.brokenError(this.broken));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, apply, writes, paths, resolve, reject });
      this.kick();
    });
  }

  /** Refuses new commits and resolves once the queue is empty. */
  async close(): Promise<void> {
    while (this.busy() || this.queue.length > 0) {
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
    this.closed = true;
  }

  private busy(): boolean {
    return this.starting || this.cutting || this.inflight.length > 0;
  }

  /** Starts the next group when one may start: nothing being gathered or written, room in flight. */
  private kick(): void {
    if (this.starting || this.cutting) return;
    if (this.broken) {
      // queued before the failure: written after frames that stayed in the log, they would be
      // answered while a restart replays what was refused (and checks only the last two groups)
      const err = this.brokenError(this.broken);
      for (const g of this.queue.splice(0)) g.reject(err);
    }
    if (this.queue.length === 0) {
      if (!this.busy()) for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    if (this.inflight.length >= GROUPS_IN_FLIGHT) return;
    // frames written after a failed group's would only be cut with them
    if (this.inflight.some((g) => g.written && g.error !== undefined)) return;
    // a full segment rotates between groups only
    if (this.inflight.length > 0 && !this.wal.canOverlap()) return;
    this.starting = true;
    setImmediate(() => void this.start());
  }

  /** Gathers the queue into a group, writes its frames while its block files sync, then syncs. */
  private async start(): Promise<void> {
    const queued = this.queue;
    this.queue = [];
    const members: Pending[] = [];
    const paths = new Set<string>();
    for (const g of queued) {
      if (this.encode(g)) {
        members.push(g);
        for (const p of g.paths) paths.add(p);
      }
    }
    if (members.length === 0) {
      this.starting = false;
      await this.settle();
      return;
    }
    const group: Group = { members, settled: false };
    this.inflight.push(group);
    const files = this.syncFiles(paths).then(
      () => undefined,
      (e: unknown) => ({ e }),
    );
    let failure: { e: unknown } | undefined;
    try {
      group.written = await this.wal.write();
    } catch (e) {
      failure = { e }; // nothing of it in the log (the write took itself back)
    } finally {
      this.starting = false;
      // the next group may gather and write while this one syncs
      this.kick();
    }
    if (!failure && group.written)
      failure = await this.wal.syncWritten().then(
        () => undefined,
        (e: unknown) => ({ e }),
      );
    failure = (await files) ?? failure;
    group.settled = true;
    if (failure) group.error = failure.e;
    await this.settle();
  }

  /** Publishes settled groups in log order; a failed one takes its frames, and later ones, back. */
  private async settle(): Promise<void> {
    while (!this.cutting && this.inflight.length > 0 && this.inflight[0]!.settled) {
      const group = this.inflight[0]!;
      if (group.error === undefined) {
        this.inflight.shift();
        if (group.written) this.wal.durable(group.written);
        this.publish(group.members);
        continue;
      }
      if (!group.written) {
        this.inflight.shift();
        const err = fromFsError(group.error);
        for (const g of group.members) g.reject(err);
        continue;
      }
      // Its frames are in the log, and a later group's may be after them: once every group in
      // flight settled, all of them come out (none was answered), so a restart replays none of it.
      if (this.inflight.some((g) => !g.settled) || this.starting) return;
      this.cutting = true;
      const failed = this.inflight.splice(0);
      try {
        await this.takeBack(group.written.start);
      } finally {
        this.cutting = false;
      }
      const err = fromFsError(group.error);
      for (const f of failed)
        for (const g of f.members) g.reject(f.error === undefined ? err : fromFsError(f.error));
    }
    this.kick();
  }

  private brokenError(e: Error): Error {
    return Errors.unavailable(`The storage engine failed: ${e.message}`);
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
    this.groupCount++;
    this.memberCount += group.length;
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
