/**
 * One replication (replication.md §6, §9, §11): the orchestrator of its parts. Two sources hand
 * out windows (the log source: live changes from the persisted log position; the copy run: the
 * records that existed, for `since` and one-shots), the shipper delivers them through the `Target`
 * with up to `max_in_flight` windows in flight, and the committer persists the position over the
 * prefix of windows that were completely delivered and announces `delivered(position)`. Failures,
 * retries and suspension are kept by the delivery health; the health and the task send what
 * happens to the state machine as events (state-machine.ts), which holds the visible state;
 * `status()` is a pure read.
 *
 * Durability: the checkpoint (position + `when` state + counters + copy) is written before the
 * storage slot is advanced, so a restart resumes from the checkpoint and re-ships at most what
 * was in flight; the destination's idempotent apply turns that into a no-op.
 */
import type { Change, Storage } from '../storage/types.js';
import type { Checkpoint, CheckpointStore, Counters } from './checkpoint-store.js';
import { zeroCounters } from './checkpoint-store.js';
import { realClock } from './clock.js';
import { Committer, type Position } from './committer.js';
import { CopyRun } from './copy-run.js';
import { DeliveryHealth } from './delivery-health.js';
import { Diagnostics } from './diagnostics.js';
import type { FailureLog } from './failure-log.js';
import { LogSource } from './log-source.js';
import { Pipeline } from './pipeline.js';
import { ScopeFilter } from './scope-filter.js';
import {
  effectiveSettings,
  type EffectiveSettings,
  type ReplicationMode,
  type ReplicationSettings,
} from './settings.js';
import { Shipper } from './shipper.js';
import { StateMachine, type StateEvent } from './state-machine.js';
import type { SyncGate, SyncHealth } from './sync-gate.js';
import { SYNC_CONNECTIONS, SYNC_GROUPS } from './sync-settings.js';
import { boundMessage, type Target } from './target.js';
import { taskStatus, Throughput } from './task-status.js';
import { TaskEvents, type TaskEvent } from './task-events.js';
import { restoreSlot, resumePosition, slotMaxBytes, slotName, slotOverflow } from './log-slot.js';
import { addItem, type Window } from './window.js';
import type { GroupRun } from './group-run.js';

export type { TaskEvent, TaskState } from './task-events.js';

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

/** The state event of a mode. */
const modeEvent = (mode: ReplicationMode): StateEvent => ({ kind: `mode_${mode}` });

/** One running replication. */
export class ReplicationTask {
  readonly name: string;
  readonly diagnostics = new Diagnostics();
  private settings: EffectiveSettings;
  private mode: ReplicationMode;
  private readonly storage: Storage;
  private readonly target: Target;
  private readonly checkpoints: CheckpointStore;
  private readonly slotName: string;
  private readonly continuous: boolean;
  private readonly resetFilter: boolean;
  private readonly syncGate: SyncGate | undefined;
  private readonly group: GroupRun | undefined;
  /** Why nothing may ship yet (a `base` claim being checked, base-seed.ts); null = ship. */
  private held: string | null;
  private filter!: ScopeFilter;
  private counters: Counters = zeroCounters();
  /** Every change with lsn <= cursor was delivered (or filtered); the `when` state there. */
  private cursor = 0n;
  private committedFilter: Record<string, unknown> | null = null;
  private needsVerify = false;
  private needsVerifyReason: string | null = null;
  private overflowUpTo = 0n;
  private readonly health = new DeliveryHealth(realClock, (...e) => this.machine.send(...e));
  private readonly throughput = new Throughput();
  private readonly committer: Committer;
  private readonly log: LogSource;
  private readonly copy: CopyRun;
  private readonly pipeline: Pipeline;
  private readonly machine = new StateMachine(
    (t) => {
      this.events.emit({ type: 'state', ...t });
      this.announce();
    },
    realClock,
    boundMessage,
  );
  private readonly unsubscribe: Array<() => void> = [];
  private readonly events = new TaskEvents();

  constructor(opts: TaskOptions) {
    this.name = opts.name;
    this.storage = opts.storage;
    this.mode = opts.mode;
    this.target = opts.target;
    this.checkpoints = opts.checkpoints;
    this.slotName = slotName(opts.name);
    this.settings = effectiveSettings(opts.settings);
    this.resetFilter = opts.resetFilter ?? false;
    this.continuous = opts.settings.continuous ?? true;
    this.syncGate = opts.syncGate;
    this.group = opts.group;
    this.held = opts.held ?? null;
    this.committer = new Committer({
      snapshot: () => this.checkpoint(),
      store: opts.checkpoints,
      saved: (cp, entries) => {
        // the copy shows what is durable; its entries may ship their next batch now
        this.copy.saved(cp.copy, cp.completed, entries);
        if (entries.length > 0) this.pipeline.wake();
        try {
          this.storage.changes.advanceSlot(this.slotName, cp.lsn);
        } catch {
          // slot dropped meanwhile (replication removed)
        }
        this.observe();
        this.announce();
      },
      failed: (e) => this.health.note(-1, `Checkpoint write failed: ${(e as Error).message}`),
      wake: () => this.pipeline.wake(),
    });
    const shipper = new Shipper({
      storage: opts.storage,
      target: opts.target,
      diagnostics: this.diagnostics,
      failureLog: opts.failures,
      timeoutMs: opts.timeoutMs,
      settings: () => this.settings,
      counters: () => this.counters,
      inflight: () => this.pipeline.inflight,
      overflowUpTo: () => this.overflowUpTo,
      ...(this.syncGate
        ? {
            recordsDelivered: (lsns: bigint[]) => this.syncGate?.recordsDelivered(lsns),
            groupConcurrency: () => Math.max(this.settings.batch.max_in_flight, SYNC_CONNECTIONS),
            joinedGroupConcurrency: () => SYNC_GROUPS,
          }
        : {}),
    });
    const groupShipper = opts.group?.makeShipper({
      storage: opts.storage,
      watchdog: shipper,
      diagnostics: this.diagnostics,
      counters: () => this.counters,
    });
    this.log = new LogSource({
      log: opts.storage.changes,
      inScope: (c) => this.filter.inScope(c),
      admit: (c, w, key) => this.admit(c, w, key, this.filter),
      filterSnapshot: () => this.filter.takeSnapshot(),
      limits: () => this.settings.batch,
      inFlight: () => this.pipeline.inflight.length,
      prepared: () => this.pipeline.prepared,
      urgent: () => this.syncGate?.waiting() ?? false,
      wholeCommits: opts.group !== undefined,
      active: () => this.pipeline.running && this.mode === 'enabled',
      countsPending: () => this.mode !== 'disabled' && this.continuous,
      now: () => Date.now(),
    });
    this.copy = new CopyRun({
      storage: opts.storage,
      settings: this.settings,
      continuous: this.continuous,
      restart: opts.restartCopy ?? false,
      resetFilter: this.resetFilter,
      // a member added to a replicated group is copied first (group-run.ts)
      memberCopy: opts.group?.copy,
      dirty: (u, tag) => this.committer.markDirty(u, tag),
      changed: () => {
        this.announce();
        this.pipeline.wake();
      },
      admit: (c, w, key, filter) => this.admit(c, w, key, filter),
      now: () => Date.now(),
    });
    this.pipeline = new Pipeline({
      shipper: groupShipper ?? shipper,
      target: opts.target,
      settings: () => this.settings,
      health: this.health,
      diagnostics: this.diagnostics,
      mode: () => this.mode,
      held: () => this.held,
      continuous: this.continuous,
      logWaitsForCopy: opts.group?.copy !== undefined,
      log: this.log,
      copy: this.copy,
      cursor: () => ({ lsn: this.cursor }),
      committed: (w) => this.committed(w),
      afterCommit: (clean) => this.afterCommit(clean),
      beforeTurn: () => this.beforeTurn(),
      suspend: (text) => this.suspend(text),
      idle: () => this.observe(),
    });
  }

  /**
   * Calls `listener` at every state transition and whenever its figures (counters, cursor,
   * pending work, retries) changed (task-events.ts). Returns the unsubscribe function.
   */
  subscribe(listener: (e: TaskEvent) => void): () => void {
    return this.events.subscribe(listener);
  }

  /**
   * Calls `listener` for every completely delivered window, in commit order: its log position, or
   * its copy entry's new position. Returns the unsubscribe function.
   */
  onDelivered(listener: (p: Position) => void): () => void {
    return this.committer.onDelivered(listener);
  }

  /** Name of the change-log slot of a replication. */
  static slotName = slotName;
  /** Storage slot bound for the log settings (`max_bytes: 0` = protect without bound). */
  static slotMaxBytes = slotMaxBytes;
  /** Storage overflow policy: `block` refuses source writes (503) past the bound. */
  static slotOverflow = slotOverflow;

  /** Loads the checkpoint, restores the slot and starts the loop. */
  async start(): Promise<void> {
    const cp = await this.checkpoints.load();
    const log = this.storage.changes;
    if (cp) {
      this.counters = { ...cp.counters };
      this.needsVerify = cp.needs_verify;
      this.needsVerifyReason = cp.needs_verify_reason;
      this.health.suspendedReason = cp.suspended_reason;
      if (cp.last_error) this.health.lastError = cp.last_error;
      if (cp.group) this.group?.restore(cp.group);
    }
    const at = resumePosition(log, this.name, cp?.lsn);
    this.cursor = at.lsn;
    if (at.lostTail !== null) {
      this.needsVerify = true;
      this.needsVerifyReason = at.lostTail;
      this.committer.markDirty('soon');
    }
    this.committedFilter = this.resetFilter ? null : (cp?.filter ?? null);
    const s = this.settings;
    const scope = this.group?.members ?? s.src_bucket;
    this.filter = new ScopeFilter(scope, s.entries, s.when, this.committedFilter ?? undefined);
    this.settings = effectiveSettings(s, this.filter.directives);
    this.copy.start(cp?.copy ?? null, cp?.completed ?? false);
    await restoreSlot(log, this.name, this.settings, this.cursor, this.group && [...this.group.members]);
    this.log.seek({ lsn: this.cursor });
    // The backlog is counted before the task can be seen (the manager lists it once started):
    // pending figures, the compatible `pending_records` too, are true from the first moment.
    await this.log.scheduleCount(() => undefined);
    // what the checkpoint and the options say, then `started`: one transition at most
    this.machine.atOnce(() => {
      this.machine.send(modeEvent(this.mode));
      if (this.held !== null) this.machine.send({ kind: 'held', reason: this.held });
      const suspended = this.health.suspendedReason;
      if (suspended !== null) this.machine.send({ kind: 'suspended', reason: suspended });
      this.observe();
      this.machine.send({ kind: 'started' });
    });
    this.attachSync();
    this.unsubscribe.push(
      log.onCommit(() => {
        this.scheduleCount();
        this.pipeline.wake();
      }),
      log.onSlotOverflow((slotName, upTo) => {
        if (slotName === this.slotName) this.onOverflow(upTo);
      }),
    );
    this.scheduleCount();
    this.pipeline.start();
  }

  /** Sync (sync-gate.ts): deliveries release writers; a waiting writer is shipped at once. */
  private attachSync(): void {
    const gate = this.syncGate;
    if (!gate) return;
    this.unsubscribe.push(
      gate.attach({
        health: () => this.syncHealth(),
        wake: () => this.pipeline.wake(),
        changed: () => this.events.emit({ type: 'changed' }),
        lastLsn: () => this.storage.changes.lastLsn(),
        destinationInstance: () => this.target.instanceId,
      }),
      this.committer.onDelivered((p) => p.source === 'log' && gate.delivered(p.lsn)),
    );
  }

  /** Stops the loop, aborts requests, writes the final checkpoint. Pending work stays in the log. */
  async close(): Promise<void> {
    this.committer.close();
    this.log.close();
    for (const u of this.unsubscribe.splice(0)) u();
    await this.pipeline.close();
    await this.checkpoints.save(this.checkpoint()).catch(() => undefined);
    await this.checkpoints.flush();
  }

  /** Changes the mode; resuming (`enabled`) clears a suspension. */
  setMode(mode: ReplicationMode): void {
    this.mode = mode;
    this.machine.atOnce(() => {
      this.machine.send(modeEvent(mode));
      if (mode === 'enabled' && this.health.suspendedReason) this.resume();
      this.observe();
    });
    this.syncGate?.modeChanged();
    this.pipeline.wake();
  }

  /** Holds the task (nothing ships, nor is the destination contacted) with `reason`; null releases it. */
  hold(reason: string | null): void {
    this.held = reason;
    this.machine.atOnce(() => {
      this.machine.send(reason === null ? { kind: 'released' } : { kind: 'held', reason });
      this.observe();
    });
    this.pipeline.wake();
  }

  /** Suspends the replication with `reason` until the user resumes it (a false `base` claim), durably. */
  async suspendFor(reason: string): Promise<void> {
    this.suspend(reason);
    await this.checkpoints.save(this.checkpoint());
    await this.checkpoints.flush();
  }

  /** Clears a suspension (PATCH mode / PUT) and retries at once. */
  resume(): void {
    this.machine.atOnce(() => {
      this.health.resume();
      this.observe();
    });
    this.committer.markDirty('soon');
    this.pipeline.wake();
  }

  // ---------------------------------------------------------------- what the pipeline reports

  /** Each turn: a disabled or one-shot run's log position follows the log; persist when due. */
  private beforeTurn(): void {
    this.announce();
    const last = this.storage.changes.lastLsn();
    if (this.mode === 'disabled' && this.pipeline.inflight.length === 0) {
      // disabled: changes are ignored entirely (api.md §20.2)
      this.log.seek({ lsn: last > this.cursor ? last : this.cursor });
      if (last > this.cursor) this.moveCursor(last);
    } else if (!this.continuous && last > this.cursor) {
      // a one-shot run ships no log changes
      this.log.seek({ lsn: last });
      this.moveCursor(last);
    }
    this.committer.persist();
    this.observe();
  }

  /** The position jumps over changes that are not shipped. */
  private moveCursor(lsn: bigint): void {
    this.cursor = lsn;
    this.committer.markDirty('idle');
  }

  /** A window at the head of the pipeline was completely delivered. */
  private committed(w: Window): void {
    if (w.copy) {
      const { batch } = w.copy;
      const finished = this.copy.commit(w);
      this.committer.delivered({ source: 'copy', entry: batch.entry, next: batch.next, last: batch.last });
      if (finished) {
        this.observe();
        this.group?.copied();
      }
      return;
    }
    if (w.endLsn > this.cursor) this.cursor = w.endLsn;
    if (w.filter) this.committedFilter = w.filter;
    this.committer.markDirty(w.items.length > 0 ? 'soon' : 'idle');
    this.committer.delivered({ source: 'log', lsn: w.endLsn });
  }

  private afterCommit(clean: boolean): void {
    // Delivered records need no FIFO protection any more, even before the cursor is persisted.
    this.storage.changes.releaseShipped(this.slotName, this.cursor);
    this.health.delivered(clean);
    const c = this.counters;
    this.throughput.sample(Date.now(), c.records_written + c.records_already_present, c.bytes_written);
  }

  private suspend(text: string): void {
    this.machine.atOnce(() => {
      this.health.suspend(text);
      this.observe();
    });
    this.committer.markDirty('soon');
    this.pipeline.wake();
  }

  private onOverflow(upTo: bigint): void {
    if (upTo > this.overflowUpTo) this.overflowUpTo = upTo;
    const { max_bytes, on_overflow } = this.settings.log;
    const reason = `Pending records up to LSN ${upTo} were evicted by the source bucket's FIFO quota before they were replicated (log.max_bytes = ${max_bytes}, log.on_overflow = ${on_overflow}); verify the destination`;
    this.needsVerify = true;
    this.needsVerifyReason = reason;
    this.committer.markDirty('soon');
    if (on_overflow === 'suspend') this.suspend(reason);
    this.pipeline.wake();
  }

  /** Applies loop prevention and `when` to an in-scope change; adds it to `w` when it passes. */
  private admit(c: Change, w: Window, key: string, filter: ScopeFilter): void {
    const verdict = filter.check(c, this.target.instanceId);
    if (verdict === 'loop') this.counters.records_loop_skipped++;
    else if (verdict === 'filtered') this.counters.records_filtered++;
    else if (verdict === 'pass') addItem(w, c, key);
  }

  private scheduleCount(): void {
    void this.log.scheduleCount(() => {
      this.observe();
      this.announce();
    });
  }

  private checkpoint(): Checkpoint {
    const { copy, completed } = this.copy.snapshot();
    return {
      lsn: this.cursor,
      filter: this.committedFilter ?? {},
      counters: { ...this.counters },
      needs_verify: this.needsVerify,
      needs_verify_reason: this.needsVerifyReason,
      suspended_reason: this.health.suspendedReason,
      last_error: this.health.lastError,
      destination_instance: this.target.instanceId,
      copy,
      completed,
      ...(this.group ? { group: this.group.checkpoint() } : {}),
    };
  }

  // ---------------------------------------------------------------- state and status (pure reads)

  /** Emits `changed` when the figures a user sees differ from the last ones announced. */
  private announce(): void {
    if (!this.events.listened) return;
    const p = this.pending();
    const h = this.health;
    this.events.announce(
      [
        this.cursor,
        ...Object.values(this.counters),
        p.records,
        p.bytes,
        h.retries,
        h.lastError?.at ?? 0,
        this.needsVerify,
        this.copy.figures,
      ].join(','),
    );
  }

  /**
   * Tells the state machine what the copy and the work are doing now (the machine ignores what it
   * knows already): the durable copy, a one-shot's completion, and whether anything is pending.
   */
  private observe(): void {
    const m = this.machine.memory;
    const events: StateEvent[] = [];
    const doing = this.copy.doing;
    if (doing !== m.copy)
      events.push(doing === null ? { kind: 'copy_finished' } : { kind: 'copy_running', doing });
    if (this.copy.completed && !m.completed) events.push({ kind: 'completed' });
    const busy =
      this.pipeline.inflight.some((w) => w.scopeRecords > 0) ||
      this.log.gathering ||
      this.pending().records > 0 ||
      // a backlog not counted yet (at start): not `idle` before it is known to be empty
      (!this.log.counted && this.storage.changes.lastLsn() > this.cursor);
    events.push(busy ? { kind: 'work_pending' } : { kind: 'all_delivered' });
    this.machine.send(...events);
  }

  /** What a sync gate needs to know: delivering normally, or why not. */
  private syncHealth(): SyncHealth {
    const { state, reason, memory } = this.machine;
    const ok =
      state === 'replicating' ||
      state === 'idle' ||
      // a held task delivers nothing: its writers learn why (a `base` being checked)
      (state === 'initializing' && memory.started && memory.held === null);
    return { ok, reason, disabled: this.mode === 'disabled' };
  }

  /** Records and bytes in scope not yet delivered. */
  pending(): { records: number; bytes: number; oldest: number | null } {
    return this.pipeline.pending();
  }

  /** `is_active` of api.md §20.3: enabled or paused and the last contact succeeded. */
  isActive(): boolean {
    if (this.mode === 'disabled') return false;
    return this.health.contactOk && !this.health.suspendedReason;
  }

  /** True once a one-shot run delivered everything (replication.md §6) and that is durable. */
  get isCompleted(): boolean {
    return this.copy.completed;
  }

  /** The log position up to which every change was acknowledged by the destination (or skipped). */
  get deliveredLsn(): bigint {
    return this.cursor;
  }

  /** The `status` object of GET (replication.md §9). A pure read: changes nothing. */
  status(): Record<string, unknown> {
    const now = Date.now();
    const h = this.health;
    return taskStatus({
      now,
      state: { state: this.machine.state, reason: this.machine.reason, since: this.machine.since },
      target: this.target,
      settings: this.settings,
      cursorLsn: this.cursor,
      logLastLsn: this.storage.changes.lastLsn(),
      pending: this.pending(),
      inFlightBatches: this.pipeline.inflight.filter((w) => w.status === 'sending').length,
      throughput: this.throughput,
      counters: this.counters,
      retries: h.retries,
      consecutiveFailures: h.consecutiveFailures,
      lastError: h.lastError,
      retryAt: h.retryAt,
      needsVerify: this.needsVerify,
      needsVerifyReason: this.needsVerifyReason,
      copy: this.copy.status(now),
      sync: this.syncGate?.status() ?? { replication_type: 'async', effective_type: 'async' },
      group: this.group?.status(this.cursor) ?? {},
    });
  }
}
