/**
 * The replication engine for one replication (replication.md §6 continuous runs, §9, §11): reads
 * the storage change log from the persisted cursor, filters, groups changes into windows, ships the
 * windows through a `Target` with up to `max_in_flight` windows in flight, and moves the cursor
 * only over a prefix of windows that were completely delivered (or skipped into the failure log).
 *
 * Durability: the checkpoint (cursor + `when` state + counters) is written before the storage slot
 * is advanced, so a restart resumes from the checkpoint and re-ships at most what was in flight —
 * the destination's idempotent apply turns that into a no-op.
 */
import type { Bucket, Change, Storage } from '../storage/types.js';
import { backoffDelay } from './backoff.js';
import type { Checkpoint, CheckpointStore, Counters } from './checkpoint-store.js';
import { zeroCounters } from './checkpoint-store.js';
import { Diagnostics } from './diagnostics.js';
import type { FailureLog } from './failure-log.js';
import { ScopeFilter } from './scope-filter.js';
import { stateOf, StateTracker, type StateFacts } from './state-machine.js';
import { realClock } from './clock.js';
import { ScanSource, type CopyState } from './scan-source.js';
import { Shipper } from './shipper.js';
import { Committer, type Position } from './committer.js';
import { addItem, groupKey, isFull, newWindow, wouldOverflow, type Window } from './window.js';
import { copyProgress, type CopyRunStart } from './copy-progress.js';
import { compileEntryPatterns } from '../query/entry-pattern.js';
import type { CopyProgress, CopyStatus, EntryCursor } from '../protocol/replication-status.js';
import type { SyncGate, SyncHealth } from './sync-gate.js';
import {
  effectiveSettings,
  type EffectiveSettings,
  type ReplicationMode,
  type ReplicationSettings,
} from './settings.js';
import { boundMessage, TargetError, type Target, type TargetFailure } from './target.js';
import type { GroupRun } from './group-run.js';

/** What a task tells its subscribers: every state transition, and that its figures changed. */
export type TaskEvent =
  { type: 'state'; from: TaskState; to: TaskState; reason: string | null; at: string } | { type: 'changed' };

/** Visible state of a replication (replication.md §9). */
export type TaskState =
  'initializing' | 'replicating' | 'idle' | 'retrying' | 'paused' | 'suspended' | 'completed';

/** Changes read from the log per call. */
const READ_CHUNK = 2048;

/** Dependencies and settings of a task. */
export interface TaskOptions {
  name: string;
  storage: Storage;
  settings: ReplicationSettings;
  mode: ReplicationMode;
  checkpoints: CheckpointStore;
  failures: FailureLog;
  target: Target;
  /** Reset the `when` state restored from the checkpoint (the condition changed). */
  resetFilter?: boolean;
  /** Start the initial copy or one-shot run from its beginning (a PUT changed what it covers). */
  restartCopy?: boolean;
  /**
   * `RS_REPLICATION_TIMEOUT`: a target call that has not settled within a few times this (plus
   * time for its bytes) is abandoned and retried, whatever the target does meanwhile.
   */
  timeoutMs: number;
  /** Sync replication: the gate whose writers wait for this task's deliveries (sync-gate.ts). */
  syncGate?: SyncGate;
  /** Ships nothing, shown `initializing` with this reason, until `hold(null)` (base seeding). */
  held?: string | null;
  /** A consistency group (`src_group`): its members are the scope, each window one shipment. */
  group?: GroupRun;
}

/** One running replication. */
export class ReplicationTask {
  readonly name: string;
  private settings: EffectiveSettings;
  private mode: ReplicationMode;
  private readonly storage: Storage;
  private readonly target: Target;
  private readonly checkpoints: CheckpointStore;
  private readonly shipper: Pick<Shipper, 'ship' | 'guard'>;
  private readonly group: GroupRun | undefined;
  /** The last change read belongs to a commit that goes on (a group seals only after a commit). */
  private midCommit = false;
  readonly diagnostics = new Diagnostics();
  private readonly slotName: string;
  private filter!: ScopeFilter;

  private readonly states = new StateTracker(
    (t) => {
      this.emit({ type: 'state', ...t });
      this.announce();
    },
    realClock,
    boundMessage,
  );

  // cursor and reader
  private cursor = 0n;
  private committedFilter: Record<string, unknown> | null = null;
  private readLsn = 0n;
  private lookahead: Change[] = [];
  /** Next unread position in `lookahead`. */
  private lookaheadAt = 0;
  private building: Window | null = null;
  private readonly inflight: Window[] = [];

  // pending accounting (bucket + entry scope, before `when`)
  private countedLsn = 0n;
  private unreadRecords = 0;
  private unreadBytes = 0;
  private unreadOldest: number | null = null;
  private counting: Promise<void> | null = null;
  private countAgain = false;

  // failures
  private counters: Counters = zeroCounters();
  private retryAt: number | null = null;
  private retries = 0;
  private consecutiveFailures = 0;
  private outageStart: number | null = null;
  private lastError: { status: number; message: string; at: number } | null = null;
  private suspendedReason: string | null = null;
  private needsVerify = false;
  private needsVerifyReason: string | null = null;
  private overflowUpTo = 0n;
  private contactOk = true;
  private prepared = false;
  /** Why nothing may ship yet (a `base` claim being checked, base-seed.ts); null = ship. */
  private held: string | null;

  // loop control
  private wakeUp: (() => void) | null = null;
  private wakePending = false;
  private closing = false;
  private loop: Promise<void> | null = null;
  private readonly committer: Committer;
  private readonly unsubscribe: Array<() => void> = [];
  private readonly throughput: Array<[number, number, number]> = [];
  private readonly resetFilter: boolean;
  private readonly restartCopy: boolean;

  // initial copy / one-shot run (scan source)
  private readonly continuous: boolean;
  private copy: ScanSource | null = null;
  private copyFilter: ScopeFilter | null = null;
  /** Entries with a batch out, or delivered but not in a durable checkpoint yet. */
  private readonly copyBusy = new Set<string>();
  private copyRun: CopyRunStart = { at: 0, records: 0, bytes: 0 };
  private completed = false;
  /**
   * The copy and completion as the last durable checkpoint holds them. Status, progress and the
   * state show these, never the figures in memory: a crash resumes from the checkpoint, so what
   * was shown before it must not be more than what a restart shows (progress only grows).
   */
  private durable: { copy: CopyState | null; completed: boolean } = { copy: null, completed: false };
  /** Alternates log and copy windows so that neither starves the other. */
  private preferCopy = true;
  private readonly syncGate: SyncGate | undefined;
  private detachSync: (() => void) | null = null;
  private started = false;
  private readonly listeners = new Set<(e: TaskEvent) => void>();
  /** Figures last announced with a `changed` event. */
  private announced = '';

  constructor(opts: TaskOptions) {
    this.name = opts.name;
    this.storage = opts.storage;
    this.mode = opts.mode;
    this.target = opts.target;
    this.checkpoints = opts.checkpoints;
    this.committer = new Committer({
      snapshot: () => this.checkpoint(),
      store: opts.checkpoints,
      saved: (cp, entries) => {
        this.durable = { copy: cp.copy ?? null, completed: cp.completed ?? false };
        this.refreshState();
        this.announce();
        if (entries.length > 0) {
          // the copy's entries may ship their next batch now that their position is durable
          for (const e of entries) this.copyBusy.delete(e);
          this.wake();
        }
        try {
          this.storage.changes.advanceSlot(this.slotName, cp.lsn);
        } catch {
          // slot dropped meanwhile (replication removed)
        }
      },
      failed: (e) => {
        this.lastError = {
          status: -1,
          message: `Checkpoint write failed: ${(e as Error).message}`,
          at: Date.now(),
        };
      },
      wake: () => this.wake(),
    });
    const shipper = new Shipper({
      storage: opts.storage,
      target: opts.target,
      diagnostics: this.diagnostics,
      failureLog: opts.failures,
      timeoutMs: opts.timeoutMs,
      settings: () => this.settings,
      counters: () => this.counters,
      inflight: () => this.inflight,
      overflowUpTo: () => this.overflowUpTo,
    });
    this.group = opts.group;
    this.shipper =
      opts.group?.makeShipper({
        storage: opts.storage,
        watchdog: shipper,
        diagnostics: this.diagnostics,
        counters: () => this.counters,
      }) ?? shipper;
    this.slotName = ReplicationTask.slotName(opts.name);
    this.settings = effectiveSettings(opts.settings);
    this.resetFilter = opts.resetFilter ?? false;
    this.restartCopy = opts.restartCopy ?? false;
    this.continuous = opts.settings.continuous ?? true;
    this.syncGate = opts.syncGate;
    this.held = opts.held ?? null;
  }

  /**
   * Calls `listener` at every state transition and whenever its figures (counters, cursor,
   * pending work, retries) changed. Listeners are called synchronously and must not block; one
   * that throws is ignored. Returns the unsubscribe function.
   */
  subscribe(listener: (e: TaskEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: TaskEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /** Emits `changed` when the figures a user sees differ from the last ones announced. */
  private announce(): void {
    if (this.listeners.size === 0) return;
    const c = this.counters;
    const p = this.pending();
    const now = [
      this.cursor,
      c.records_read,
      c.records_written,
      c.records_already_present,
      c.records_filtered,
      c.records_loop_skipped,
      c.records_failed,
      c.records_missing_at_source,
      c.records_dropped_overflow,
      c.label_updates_written,
      p.records,
      p.bytes,
      this.retries,
      this.lastError?.at ?? 0,
      this.needsVerify,
      this.durable.copy ? `${this.durable.copy.done.records}/${this.durable.copy.total?.records}` : '',
      this.durable.completed,
    ].join(',');
    if (now === this.announced) return;
    this.announced = now;
    this.emit({ type: 'changed' });
  }

  /**
   * Calls `listener` for every completely delivered window, in commit order: its log position, or
   * its copy entry's new position. Returns the unsubscribe function.
   */
  onDelivered(listener: (p: Position) => void): () => void {
    return this.committer.onDelivered(listener);
  }

  /** Name of the change-log slot of a replication. */
  static slotName(name: string): string {
    return `replication/${name}`;
  }

  /** Storage slot bound for the log settings (`max_bytes: 0` = protect without bound). */
  static slotMaxBytes(s: EffectiveSettings): number {
    return s.log.max_bytes === 0 ? Number.MAX_SAFE_INTEGER : s.log.max_bytes;
  }

  /** Storage overflow policy: `block` refuses source writes (503) past the bound. */
  static slotOverflow(s: EffectiveSettings): 'evict' | 'block' {
    return s.log.on_overflow === 'block' ? 'block' : 'evict';
  }

  /** Loads the checkpoint, restores the slot and starts the loop. */
  async start(): Promise<void> {
    const cp = await this.checkpoints.load();
    const log = this.storage.changes;
    const slot = log.getSlot(this.slotName);
    this.cursor = cp?.lsn ?? slot?.lsn ?? log.lastLsn();
    if (cp) {
      this.counters = { ...cp.counters };
      this.needsVerify = cp.needs_verify;
      this.needsVerifyReason = cp.needs_verify_reason;
      this.suspendedReason = cp.suspended_reason;
    }
    const last = log.lastLsn();
    if (this.cursor > last) {
      // The log ends before our cursor (it was reset or lost its tail): the positions after its end
      // will be given to new writes, which must be shipped, and what we shipped beyond it is unknown.
      this.needsVerify = true;
      this.needsVerifyReason = `The source's change log ends at LSN ${last}, before this replication's cursor ${this.cursor}; the cursor was moved back to the log's end; verify the destination`;
      this.cursor = last;
      this.committer.markDirty('soon');
    }
    this.committedFilter = this.resetFilter ? null : (cp?.filter ?? null);
    this.filter = new ScopeFilter(
      this.group?.members ?? this.settings.src_bucket,
      this.settings.entries,
      this.settings.when,
      this.committedFilter ?? undefined,
    );
    this.settings = effectiveSettings(this.settings, this.filter.directives);
    this.startCopy(cp?.copy ?? null, cp?.completed ?? false);
    // a new plan is not durable yet: it shows nothing done and no total, as a restart would
    this.durable = {
      copy: this.copy ? ScanSource.restore(this.copy.state) : null,
      completed: this.completed,
    };
    const maxBytes = ReplicationTask.slotMaxBytes(this.settings);
    const onOverflow = ReplicationTask.slotOverflow(this.settings);
    if (
      !slot ||
      slot.bucket !== this.settings.src_bucket ||
      slot.maxBytes !== maxBytes ||
      (slot.onOverflow ?? 'evict') !== onOverflow ||
      slot.lsn > this.cursor
    ) {
      await log.setSlot({
        name: this.slotName,
        bucket: this.settings.src_bucket,
        lsn: this.cursor,
        maxBytes,
        onOverflow,
      });
    } else if (slot.lsn < this.cursor) {
      log.advanceSlot(this.slotName, this.cursor);
    }
    this.readLsn = this.cursor;
    this.countedLsn = this.cursor;
    this.started = true;
    this.refreshState();
    // sync (sync-gate.ts): deliveries release writers; a waiting writer is shipped at once
    this.detachSync =
      this.syncGate?.attach({
        health: () => this.syncHealth(),
        wake: () => this.wake(),
        changed: () => this.emit({ type: 'changed' }),
        lastLsn: () => this.storage.changes.lastLsn(),
        destinationInstance: () => this.target.instanceId,
      }) ?? null;
    if (this.syncGate) {
      const gate = this.syncGate;
      // sync: writers up to a delivered log position are answered
      this.unsubscribe.push(this.committer.onDelivered((p) => p.source === 'log' && gate.delivered(p.lsn)));
    }
    this.unsubscribe.push(
      log.onCommit(() => {
        this.scheduleCount();
        this.wake();
      }),
      log.onSlotOverflow((slotName, upTo) => {
        if (slotName === this.slotName) this.onOverflow(upTo);
      }),
    );
    this.scheduleCount();
    this.loop = this.run();
  }

  /**
   * Sets up the copy of a run that has one (`since`, or `continuous: false`): resumes the persisted
   * one, or plans a new one over what the source holds now.
   */
  private startCopy(saved: Checkpoint['copy'] | null, completed: boolean): void {
    const s = this.settings;
    // a member added to a replicated group is copied first (group-run.ts)
    const memberCopy = this.group?.copy;
    const srcBucket = memberCopy?.member ?? s.src_bucket;
    const wanted = s.since !== undefined || !this.continuous || memberCopy !== undefined;
    this.completed = wanted && !this.continuous && completed && !this.restartCopy;
    let state = wanted && !this.restartCopy ? (saved ?? null) : null;
    if (wanted && !state && !this.completed) {
      let bucket: Bucket | null = null;
      try {
        bucket = this.storage.bucket(srcBucket);
      } catch {
        // source bucket gone: nothing to copy
      }
      const since = s.since === undefined ? 0n : BigInt(s.since);
      const until = s.until === undefined ? null : BigInt(s.until);
      // a one-shot copies what was committed before it started (§6.2); a continuous copy takes
      // later writes from the log, as it always did (also after a disabled spell)
      const lsn = memberCopy?.lsn ?? (this.continuous ? undefined : this.storage.changes.lastLsn());
      state = ScanSource.plan(bucket, compileEntryPatterns(s.entries), since, until, Date.now(), lsn);
      this.committer.markDirty('soon');
    }
    if (!state) return;
    this.copy = new ScanSource(() => this.storage.bucket(srcBucket), state);
    this.copyFilter = new ScopeFilter(
      srcBucket,
      s.entries,
      s.when,
      this.resetFilter ? undefined : state.filter,
    );
    this.copyRun = { at: Date.now(), records: state.done.records, bytes: state.done.bytes };
    if (!state.total && !this.completed) {
      const copy = this.copy;
      void copy.count().then(
        (total) => {
          if (this.copy !== copy || copy.state.total) return;
          copy.state.total = total;
          // shown once durable (a restart must not lose a total that was shown)
          this.committer.markDirty('soon');
          this.announce();
          this.wake();
        },
        () => undefined, // progress stays without a total; the copy itself goes on
      );
    }
  }

  /** Stops the loop, aborts requests, writes the final checkpoint. Pending work stays in the log. */
  async close(): Promise<void> {
    this.closing = true;
    this.detachSync?.();
    this.committer.close();
    for (const u of this.unsubscribe.splice(0)) u();
    this.wake();
    await this.target.close().catch(() => undefined);
    await this.loop;
    await Promise.allSettled(this.inflight.map((w) => w.sending));
    this.commitDone();
    this.copy?.close();
    await this.checkpoints.save(this.checkpoint()).catch(() => undefined);
    await this.checkpoints.flush();
  }

  /** Changes the mode; resuming (`enabled`) clears a suspension. */
  setMode(mode: ReplicationMode): void {
    this.mode = mode;
    if (mode === 'enabled' && this.suspendedReason) this.resume();
    this.refreshState();
    this.wake();
  }

  /** Holds the task (nothing ships, nor is the destination contacted) with `reason`; null releases it. */
  hold(reason: string | null): void {
    this.held = reason;
    this.refreshState();
    this.wake();
  }

  /** Suspends the replication with `reason` until the user resumes it (a false `base` claim), durably. */
  async suspendFor(reason: string): Promise<void> {
    this.suspend(reason);
    await this.checkpoints.save(this.checkpoint());
    await this.checkpoints.flush();
  }

  /** Clears a suspension (PATCH mode / PUT) and retries at once. */
  resume(): void {
    this.suspendedReason = null;
    this.retryAt = Date.now();
    this.outageStart = null;
    this.consecutiveFailures = 0;
    this.committer.markDirty('soon');
    this.refreshState();
    this.wake();
  }

  // ---------------------------------------------------------------- main loop

  private wake(): void {
    this.wakePending = true;
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private wait(ms?: number): Promise<void> {
    if (this.wakePending || this.closing) {
      this.wakePending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.wake(), Math.max(0, ms));
      this.wakeUp = () => {
        if (timer) clearTimeout(timer);
        this.wakePending = false;
        resolve();
      };
    });
  }

  /** The loop never ends before `close()`: an unexpected error is one more failed attempt. */
  private async run(): Promise<void> {
    while (!this.closing) {
      try {
        await this.turn();
      } catch (e) {
        this.temporaryFailure({
          status: -1,
          message: `Internal error: ${(e as Error)?.message ?? String(e)}`,
        });
        await this.wait(Math.max(1, (this.retryAt ?? Date.now()) - Date.now()));
      }
    }
  }

  /** One turn of the loop: commit, then ship what may be shipped, then wait for something to do. */
  private async turn(): Promise<void> {
    this.commitDone();
    this.announce();
    if (!this.continuous) this.followLog();
    this.committer.persist();
    if (this.completed) {
      this.refreshState();
      await this.wait();
      return;
    }
    if (this.mode === 'disabled') {
      this.skipWhileDisabled();
      await this.wait();
      return;
    }
    if (this.suspendedReason || this.mode === 'paused' || this.held !== null) {
      this.refreshState();
      await this.wait();
      return;
    }
    if (this.retryAt !== null) {
      const delay = this.retryAt - Date.now();
      if (delay > 0) {
        await this.wait(delay);
        return;
      }
      if (!(await this.tryPrepare())) return;
      this.retryAt = null;
      for (const w of this.inflight)
        if (w.status === 'temp_failed' || w.status === 'perm_failed') this.launch(w);
    }
    let timeout: number | undefined;
    while (!this.closing && this.retryAt === null && !this.suspendedReason && this.mode === 'enabled') {
      if (this.inflight.length >= this.settings.batch.max_in_flight) break;
      // a failed window is retried before anything new is sent
      if (this.inflight.some((w) => w.status === 'temp_failed' || w.status === 'perm_failed')) break;
      // the log and the copy take turns, so that live writes are not held back by a long copy
      const sources = this.preferCopy ? [this.copyWindow, this.logWindow] : [this.logWindow, this.copyWindow];
      let next: Window | 'prepare' | null = null;
      timeout = undefined;
      for (const source of sources) {
        const got = await source.call(this);
        if (got === 'wait') {
          const w = this.building!;
          timeout = Math.max(1, this.settings.batch.max_delay_ms - (Date.now() - w.openedAt));
          continue;
        }
        next = got;
        if (next !== null) break;
      }
      if (next === 'prepare') {
        // the destination is contacted only once there is something to ship (api.md §17.5)
        if (!(await this.tryPrepare())) break;
        continue;
      }
      if (next === null) break;
      this.preferCopy = next.copy === undefined;
      this.launch(next);
    }
    this.refreshState();
    // A scheduled retry wakes the loop by itself: nothing else may arrive to wake it (a lone
    // record for an unreachable destination).
    await this.wait(this.retryAt !== null ? Math.max(1, this.retryAt - Date.now()) : timeout);
  }

  private async tryPrepare(): Promise<boolean> {
    try {
      await this.shipper.guard('Destination check', 0, () => this.target.prepare());
      this.prepared = true;
      return true;
    } catch (e) {
      this.prepared = false;
      const err = TargetError.from(e);
      // one failed attempt: the records stay pending, the hourly diagnostics show why
      this.diagnostics.addError(err.status, err.message);
      // a refusal that no retry can change (a malformed token, bucket settings the destination refuses)
      if (!err.temporary) this.suspend(err.message);
      else this.temporaryFailure(err.toFailure());
      return false;
    }
  }

  // ---------------------------------------------------------------- reading and windows

  /** The log source's next window (none for a one-shot run, which ships only its copy). */
  private logWindow(): Promise<Window | 'wait' | 'prepare' | null> {
    // a group's log waits for a new member's copy, so the copy lands at the log position it was planned at
    if (this.group?.copy && this.copy?.state.completed_at === null) return Promise.resolve(null);
    return this.continuous ? this.nextWindow() : Promise.resolve(null);
  }

  /**
   * The copy's next window: one batch of one entry that has no batch out (at most one batch per
   * entry in flight or not yet durably checkpointed, so a crash re-ships at most that batch).
   */
  private async copyWindow(): Promise<Window | 'prepare' | null> {
    const scan = this.copy;
    if (!scan || scan.state.completed_at !== null || this.completed) return null;
    if (this.closing || this.mode !== 'enabled') return null;
    // loop prevention needs the destination's instance id
    if (!this.prepared) return 'prepare';
    const limits = this.settings.batch;
    const batch = await scan.next(limits.max_records, limits.max_bytes, this.copyBusy);
    if (!batch) return null;
    this.copyBusy.add(batch.entry);
    const w = this.newWindow();
    w.endLsn = 0n; // moves no log cursor
    const bucket = this.group?.copy?.member ?? this.settings.src_bucket;
    const at = Date.now();
    for (const m of batch.records) {
      const c: Change = {
        lsn: 0n,
        kind: 'write',
        bucket,
        entry: m.entry,
        ts: m.ts,
        size: m.size,
        contentType: m.contentType,
        labels: m.labels,
        digest: m.digest,
        origin: m.origin,
        commitTime: at,
      };
      w.scopeRecords++;
      w.scopeBytes += c.size;
      this.admit(c, w, groupKey(c), this.copyFilter!);
    }
    w.copy = { batch, filter: this.copyFilter!.takeSnapshot() };
    w.remaining = w.items;
    return w;
  }

  /** A one-shot run ships no log changes: its log cursor follows the log's end. */
  private followLog(): void {
    const last = this.storage.changes.lastLsn();
    if (last <= this.cursor) return;
    this.cursor = last;
    this.readLsn = last;
    this.countedLsn = last;
    this.unreadRecords = 0;
    this.unreadBytes = 0;
    this.unreadOldest = null;
    this.committer.markDirty('idle');
  }

  private async fill(): Promise<boolean> {
    if (this.lookaheadAt < this.lookahead.length) return true;
    const changes = await this.storage.changes.read(this.readLsn, READ_CHUNK);
    // the reader may have moved while we awaited (disabled mode skips)
    let from = 0;
    while (from < changes.length && changes[from]!.lsn <= this.readLsn) from++;
    this.lookahead = changes;
    this.lookaheadAt = from;
    return from < changes.length;
  }

  /**
   * Returns the next window to ship, 'wait' when a partial window should gather more changes,
   * 'prepare' when the destination must be contacted first, or null when there is nothing to do.
   */
  private async nextWindow(): Promise<Window | 'wait' | 'prepare' | null> {
    const limits = this.settings.batch;
    for (;;) {
      if (this.closing || this.mode !== 'enabled') return null;
      const w = (this.building ??= this.newWindow());
      const more = await this.fill();
      if (this.building !== w) continue; // reset while awaiting
      if (!more) {
        if (this.midCommit) return null; // the rest of the commit is durable with it: read again
        if (w.items.length === 0) {
          if (w.endLsn > this.cursor && this.inflight.length === 0) return this.seal(w);
          return null;
        }
        // ship at once while the pipeline has room; gather while it is busy (adaptive batching)
        if (
          this.inflight.length < Math.ceil(limits.max_in_flight / 2) ||
          Date.now() - w.openedAt >= limits.max_delay_ms ||
          this.syncGate?.waiting() // sync: nobody waits for a batch to fill
        )
          return this.seal(w);
        return 'wait';
      }
      while (this.lookaheadAt < this.lookahead.length) {
        const c = this.lookahead[this.lookaheadAt]!;
        const inScope = this.filter.inScope(c);
        const key = inScope ? groupKey(c) : undefined;
        if (key !== undefined && !this.midCommit && wouldOverflow(w, c, key, limits)) return this.seal(w);
        // loop prevention needs the destination's instance id before the first in-scope change
        if (!this.prepared && inScope) return 'prepare';
        this.lookaheadAt++;
        this.consume(c, w, key);
      }
      if (!this.midCommit && isFull(w, limits)) return this.seal(w);
    }
  }

  private newWindow(): Window {
    return newWindow(this.readLsn, Date.now());
  }

  private seal(w: Window): Window {
    w.filter = this.filter.takeSnapshot();
    w.remaining = w.items;
    this.building = null;
    return w;
  }

  /**
   * Takes one change into the building window (synchronous: keeps counters consistent). `key` is
   * its `groupKey`, undefined when it is outside the bucket and entry scope.
   */
  private consume(c: Change, w: Window, key: string | undefined): void {
    const inScope = key !== undefined;
    if (inScope && c.lsn <= this.countedLsn) {
      this.unreadRecords--;
      this.unreadBytes -= c.size;
      if (this.unreadRecords <= 0) {
        this.unreadRecords = 0;
        this.unreadBytes = 0;
        this.unreadOldest = null;
      } else this.unreadOldest = c.commitTime;
    }
    this.readLsn = c.lsn;
    if (c.lsn > this.countedLsn) this.countedLsn = c.lsn;
    w.endLsn = c.lsn;
    // a group's window is applied atomically: it never ends inside a commit (a batch write)
    this.midCommit = this.group !== undefined && c.commitContinues === true;
    if (!inScope) return;
    w.scopeRecords++;
    w.scopeBytes += c.size;
    this.admit(c, w, key, this.filter);
  }

  /** Applies loop prevention and `when` to an in-scope change; adds it to `w` when it passes. */
  private admit(c: Change, w: Window, key: string, filter: ScopeFilter): void {
    const verdict = filter.check(c, this.target.instanceId);
    if (verdict === 'loop') this.counters.records_loop_skipped++;
    else if (verdict === 'filtered') this.counters.records_filtered++;
    else if (verdict === 'pass') addItem(w, c, key);
  }

  // ---------------------------------------------------------------- pending accounting

  private scheduleCount(): void {
    if (this.counting) {
      this.countAgain = true;
      return;
    }
    this.counting = this.countLoop().finally(() => {
      this.counting = null;
      this.refreshState();
      this.announce();
      if (this.countAgain) {
        this.countAgain = false;
        this.scheduleCount();
      }
    });
  }

  /** Counts in-scope changes the reader has not taken yet (at start: the whole backlog). */
  private async countLoop(): Promise<void> {
    while (!this.closing) {
      const from = this.countedLsn > this.readLsn ? this.countedLsn : this.readLsn;
      const changes = await this.storage.changes.read(from, READ_CHUNK * 4).catch(() => []);
      if (changes.length === 0) return;
      for (const c of changes) {
        if (c.lsn <= this.countedLsn || c.lsn <= this.readLsn) continue;
        this.countedLsn = c.lsn;
        if (this.mode !== 'disabled' && this.continuous && this.filter.inScope(c)) {
          if (this.unreadRecords === 0) this.unreadOldest = c.commitTime;
          this.unreadRecords++;
          this.unreadBytes += c.size;
        }
      }
      if (changes.length < READ_CHUNK * 4) return;
    }
  }

  /** Records and bytes in scope not yet delivered. */
  pending(): { records: number; bytes: number; oldest: number | null } {
    let records = this.unreadRecords;
    let bytes = this.unreadBytes;
    let oldest: number | null = null;
    for (const w of [...this.inflight, ...(this.building ? [this.building] : [])]) {
      records += w.scopeRecords;
      bytes += w.scopeBytes;
      const first = w.copy ? undefined : w.items[0]?.change.commitTime;
      if (first !== undefined && (oldest === null || first < oldest)) oldest = first;
    }
    if (oldest === null && this.unreadRecords > 0) oldest = this.unreadOldest;
    const unread = this.copyUnread();
    return { records: records + unread.records, bytes: bytes + unread.bytes, oldest };
  }

  /** Records and bytes the copy has not read yet (as far as its total tells). */
  private copyUnread(): { records: number; bytes: number } {
    const st = this.copy?.state;
    if (!st?.total || st.completed_at !== null) return { records: 0, bytes: 0 };
    let records = st.total.records - st.done.records;
    let bytes = st.total.bytes - st.done.bytes;
    for (const w of this.inflight) {
      if (!w.copy) continue;
      records -= w.scopeRecords;
      bytes -= w.scopeBytes;
    }
    return { records: Math.max(0, records), bytes: Math.max(0, bytes) };
  }

  // ---------------------------------------------------------------- shipping

  private launch(w: Window): void {
    if (!this.inflight.includes(w)) this.inflight.push(w);
    if (w.remaining.length === 0) {
      w.status = 'done';
      this.wake();
      return;
    }
    w.status = 'sending';
    delete w.error;
    w.sending = this.shipper.ship(w).then(
      () => this.wake(),
      (e: unknown) => {
        w.status = 'temp_failed';
        w.error = { status: -1, message: (e as Error)?.message ?? String(e) };
        this.wake();
      },
    );
  }

  // ---------------------------------------------------------------- commit and failures

  /** Moves the cursor over the prefix of finished windows and reacts to failed ones. */
  private commitDone(): void {
    let progressed = false;
    while (this.inflight.length > 0 && this.inflight[0]!.status === 'done') {
      const w = this.inflight.shift()!;
      progressed = true;
      if (w.copy) {
        this.commitCopy(w);
        continue;
      }
      if (w.endLsn > this.cursor) this.cursor = w.endLsn;
      if (w.filter) this.committedFilter = w.filter;
      this.committer.markDirty(w.items.length > 0 ? 'soon' : 'idle');
      this.committer.delivered({ source: 'log', lsn: w.endLsn });
    }
    if (progressed) {
      // Delivered records need no FIFO protection any more, even before the cursor is persisted.
      this.storage.changes.releaseShipped(this.slotName, this.cursor);
      this.contactOk = true;
      if (this.inflight.every((w) => w.status === 'sending' || w.status === 'done')) {
        this.consecutiveFailures = 0;
        this.outageStart = null;
      }
      const now = Date.now();
      const last = this.throughput[this.throughput.length - 1];
      if (!last || now - last[0] >= 1000) {
        this.throughput.push([
          now,
          this.counters.records_written + this.counters.records_already_present,
          this.counters.bytes_written,
        ]);
        if (this.throughput.length > 11) this.throughput.shift();
      }
    }
    if (this.retryAt !== null || this.suspendedReason) return;
    const failed = this.inflight.find((w) => w.status === 'perm_failed' || w.status === 'temp_failed');
    if (!failed) return;
    if (this.inflight.some((w) => w.status === 'sending')) {
      // let the other requests finish before backing off, so their outcome is not lost
      if (failed.status === 'temp_failed') return;
    }
    if (failed.status === 'perm_failed') {
      this.suspend(failed.error?.message ?? 'Destination refused a record');
      return;
    }
    this.temporaryFailure(failed.error ?? { status: -1, message: 'delivery failed' });
  }

  /** A delivered copy window: its entry's position moves; the copy may be finished. */
  private commitCopy(w: Window): void {
    const scan = this.copy;
    if (!scan || !w.copy) return;
    const { batch, filter } = w.copy;
    scan.commit(batch, { records: w.scopeRecords, bytes: w.scopeBytes });
    if (filter) scan.state.filter = filter;
    this.committer.markDirty('now', batch.entry);
    this.committer.delivered({ source: 'copy', entry: batch.entry, next: batch.next, last: batch.last });
    if (scan.finished && scan.state.completed_at === null) {
      scan.state.completed_at = new Date().toISOString();
      if (!this.continuous) this.completed = true;
      this.refreshState();
      this.group?.copied();
    }
  }

  private temporaryFailure(err: TargetFailure): void {
    const now = Date.now();
    this.contactOk = false;
    this.retries++;
    this.consecutiveFailures++;
    this.outageStart ??= now;
    this.lastError = { status: err.status, message: boundMessage(err.message), at: now };
    const maxOutage = this.settings.retry.max_outage_ms;
    if (maxOutage > 0 && now - this.outageStart >= maxOutage) {
      this.suspend(`Destination unavailable for more than ${maxOutage} ms: ${err.message}`);
      return;
    }
    const delay = backoffDelay(this.settings.retry, this.consecutiveFailures, err.retryAfterMs);
    this.retryAt = now + delay;
    this.refreshState();
  }

  private suspend(text: string): void {
    const reason = boundMessage(text);
    this.suspendedReason = reason;
    this.lastError = { status: this.lastError?.status ?? -1, message: reason, at: Date.now() };
    this.retryAt = null;
    this.committer.markDirty('soon');
    this.refreshState();
    this.wake();
  }

  private onOverflow(upTo: bigint): void {
    if (upTo > this.overflowUpTo) this.overflowUpTo = upTo;
    const { max_bytes, on_overflow } = this.settings.log;
    const reason = `Pending records up to LSN ${upTo} were evicted by the source bucket's FIFO quota before they were replicated (log.max_bytes = ${max_bytes}, log.on_overflow = ${on_overflow}); verify the destination`;
    this.needsVerify = true;
    this.needsVerifyReason = reason;
    this.committer.markDirty('soon');
    if (this.settings.log.on_overflow === 'suspend') this.suspend(reason);
    this.wake();
  }

  /** Disabled: changes are ignored entirely (api.md §20.2); the cursor follows the log. */
  private skipWhileDisabled(): void {
    this.refreshState();
    if (this.inflight.length > 0) return;
    const last = this.storage.changes.lastLsn();
    this.building = null;
    this.midCommit = false;
    this.lookahead = [];
    this.lookaheadAt = 0;
    this.unreadRecords = 0;
    this.unreadBytes = 0;
    this.unreadOldest = null;
    if (last > this.cursor) {
      this.cursor = last;
      this.readLsn = last;
      this.countedLsn = last;
      this.committer.markDirty('idle');
      this.committer.persist();
    }
  }

  private checkpoint(): Checkpoint {
    return {
      lsn: this.cursor,
      filter: this.committedFilter ?? {},
      counters: { ...this.counters },
      needs_verify: this.needsVerify,
      needs_verify_reason: this.needsVerifyReason,
      suspended_reason: this.suspendedReason,
      destination_instance: this.target.instanceId,
      // a snapshot: the state goes on changing while the write runs
      copy: this.copy ? ScanSource.restore(this.copy.state) : null,
      completed: this.completed,
    };
  }

  /** The facts the state table reads (replication.md §9). */
  private facts(): StateFacts {
    const copy = this.durable.copy;
    const entries = copy?.entries.length ?? 0;
    return {
      started: this.started,
      mode: this.mode,
      suspended: this.suspendedReason,
      retrying: this.retryAt === null ? undefined : (this.lastError?.message ?? null),
      copying:
        this.held ??
        (copy && copy.completed_at === null
          ? `initial copy: ${copy.entries.filter((e) => e.done).length} of ${entries} entries done`
          : null),
      busy: this.inflight.length > 0 || (this.building?.items.length ?? 0) > 0 || this.pending().records > 0,
      completed: this.durable.completed,
    };
  }

  /** What a sync gate needs to know: delivering normally, or why not. */
  private syncHealth(): SyncHealth {
    const { state, reason } = stateOf(this.facts());
    const ok =
      state === 'replicating' ||
      state === 'idle' ||
      // a held task delivers nothing: its writers learn why (a `base` being checked)
      (state === 'initializing' && this.started && this.held === null);
    return { ok, reason, disabled: this.mode === 'disabled' };
  }

  /** Tells the state table the facts as they are now; a changed state is announced. */
  private refreshState(): void {
    this.states.update(this.facts());
  }

  // ---------------------------------------------------------------- status

  /** `is_active` of api.md §20.3: enabled or paused and the last contact succeeded. */
  isActive(): boolean {
    if (this.mode === 'disabled') return false;
    return this.contactOk && !this.suspendedReason;
  }

  /** True once a one-shot run delivered everything (replication.md §6) and that is durable. */
  get isCompleted(): boolean {
    return this.durable.completed;
  }

  /** The `status` object of GET (replication.md §9). A pure read: changes nothing. */
  status(): Record<string, unknown> {
    const now = Date.now();
    const p = this.pending();
    const t0 = this.throughput[0];
    const t1 = this.throughput[this.throughput.length - 1];
    const dt = t0 && t1 && t1[0] > t0[0] ? (t1[0] - t0[0]) / 1000 : 0;
    const recent = t1 && now - t1[0] < 5000;
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
    return {
      state: this.states.state,
      state_reason: this.states.reason,
      since: iso(this.states.since),
      destination: {
        target: this.target.description,
        instance_id: this.target.instanceId || null,
        available: this.target.available,
      },
      cursor_lsn: this.cursor,
      log_last_lsn: this.storage.changes.lastLsn(),
      pending_records: p.records,
      pending_bytes: p.bytes,
      lag_ms: p.records > 0 && p.oldest !== null ? Math.max(0, now - p.oldest) : 0,
      in_flight_batches: this.inflight.filter((w) => w.status === 'sending').length,
      throughput: {
        records_per_sec: dt > 0 && recent ? Math.round((t1![1] - t0![1]) / dt) : 0,
        bytes_per_sec: dt > 0 && recent ? Math.round((t1![2] - t0![2]) / dt) : 0,
      },
      counters: { ...this.counters },
      retries: this.retries,
      consecutive_failures: this.consecutiveFailures,
      last_error: this.lastError
        ? { status: this.lastError.status, message: this.lastError.message, at: iso(this.lastError.at) }
        : null,
      next_retry_at: iso(this.retryAt),
      needs_verify: this.needsVerify,
      needs_verify_reason: this.needsVerifyReason,
      log: {
        max_bytes: this.settings.log.max_bytes,
        on_overflow: this.settings.log.on_overflow,
        over_bound: this.settings.log.max_bytes > 0 && p.bytes > this.settings.log.max_bytes,
      },
      ...this.copyStatus(now),
      ...(this.syncGate?.status() ?? { replication_type: 'async', effective_type: 'async' }),
      ...this.group?.status(this.cursor),
    };
  }

  /** `progress`, `entry_cursors` and `copy` of a run that has a copy (nothing otherwise). */
  private copyStatus(now: number): {
    progress?: CopyProgress;
    entry_cursors?: EntryCursor[];
    copy?: CopyStatus;
  } {
    const st = this.durable.copy;
    if (!st) return {};
    return {
      progress: copyProgress(st, this.copyRun, now),
      entry_cursors: st.entries.map((e) => ({
        entry: e.name,
        ts: e.done || e.next > st.since ? e.next : null,
        done: e.done,
        stop: e.stop,
      })),
      copy: { since: st.since, until: st.until, started_at: st.started_at, completed_at: st.completed_at },
    };
  }
}
