/**
 * The sync gate of one sync replication (replication.md §7): writers in its scope wait here, keyed
 * by the LSN of their commit, until the replication's committer reports that position delivered
 * (the destination answers only once its own group commit is durable). Each writer waits only for
 * its own position, so concurrent writers share shipments.
 *
 * Effective type: `sync` while the destination acknowledges in time. A write that times out turns
 * it `blocked` (`on_timeout: fail`: that write is answered 503 "outcome unknown", and later writes
 * are refused at once until the destination has caught up) or `async` (`on_timeout: degrade`: the
 * write and every waiting one are answered, shipping continues from the log). Both return to `sync`
 * by themselves: `blocked` once the replication is healthy and has delivered everything written
 * before it blocked, `async` once it has been healthy for `recover_after_ms` and has then delivered
 * the log up to where it stood. A disabled replication waits for nothing and refuses nothing: it is
 * `async` until it is enabled or paused again, then `sync` at once. Every transition is counted.
 *
 * The engine is reached through {@link SyncGateHooks} only: its health, a wake-up, its log position.
 */
import { Errors, type FerryError } from '../protocol/errors.js';
import type { SyncSettings } from '../protocol/replications.js';
import type { EffectiveType, SyncStatus, SyncTransition } from '../protocol/replication-status.js';

export type { EffectiveType } from '../protocol/replication-status.js';

/** Time and timers of a gate (a manual clock in tests). */
export interface SyncClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's clock; timers unref'd so that a waiting write never keeps a process alive. */
export const nodeSyncClock: SyncClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** What the gate reads from the running replication. */
export interface SyncHealth {
  /** Delivering normally: enabled, not retrying, not suspended. */
  ok: boolean;
  /** Why not, for the effective type's reason. */
  reason: string | null;
  /** `disabled` replications ship nothing (api.md §20.2): their writes never wait. */
  disabled: boolean;
}

/** The engine's side of a gate, given by the task that runs the replication. */
export interface SyncGateHooks {
  health(): SyncHealth;
  /** A writer waits: ship what is pending now instead of gathering a batch. */
  wake(): void;
  /** The effective type changed (status subscribers take a snapshot). */
  changed(): void;
  /** Last committed LSN of the source's change log. */
  lastLsn(): bigint;
  /** Instance id of the destination ('' before first contact), for loop prevention. */
  destinationInstance(): string;
}

interface Waiter {
  lsn: bigint;
  /** Its commit is the one record at `lsn`: answered once that record is delivered (see `recordsDelivered`). */
  single: boolean;
  deadline: number;
  resolve: () => void;
  reject: (e: FerryError) => void;
}

/** The effective type's reason while the replication is disabled. */
const DISABLED = 'mode is disabled: writes are not waited for';

/** How often a gate that is not `sync` looks at the replication's health. */
const RECOVERY_POLL_MS = 100;

/** The gate of one sync replication. */
export class SyncGate {
  private settings: SyncSettings;
  private hooks: SyncGateHooks | null = null;
  private effective: EffectiveType = 'sync';
  private reason: string | null = null;
  private sinceMs: number;
  /** Highest position the committer reported delivered. */
  private deliveredLsn = 0n;
  /** In arrival order, which is deadline order (one timeout for all). */
  private waiters: Waiter[] = [];
  private timer: unknown = null;
  private pollTimer: unknown = null;
  /** Position to deliver before leaving `blocked` / `async` (null: not known yet). */
  private catchUpTo: bigint | null = null;
  private healthySince: number | null = null;
  private readonly transitions = { to_sync: 0, to_async: 0, to_blocked: 0 };
  private lastTransition: SyncTransition | null = null;
  private timedOut = 0;
  private closed = false;

  constructor(
    readonly name: string,
    settings: SyncSettings,
    private readonly clock: SyncClock = nodeSyncClock,
  ) {
    this.settings = settings;
    this.sinceMs = clock.now();
  }

  /** Connects the running task; returns the function that disconnects it (task closed). */
  attach(hooks: SyncGateHooks): () => void {
    this.hooks = hooks;
    this.evaluate();
    return () => {
      if (this.hooks === hooks) this.hooks = null;
    };
  }

  /** New settings after a PUT (scope and cursor are the task's business). */
  configure(settings: SyncSettings): void {
    this.settings = settings;
    this.armTimer();
  }

  /**
   * The replication's mode changed: a disabled one waits for nothing (api.md §20.2), so it is
   * `async`, and it refuses nothing even if it was `blocked`; enabled or paused again, it is `sync`.
   */
  modeChanged(): void {
    this.evaluate();
  }

  /** Effective type now. */
  get type(): EffectiveType {
    return this.effective;
  }

  /** True while a writer waits for its acknowledgement (the engine then ships without delay). */
  waiting(): boolean {
    return this.waiters.length > 0;
  }

  /**
   * Called before a write in scope is stored: throws the 503 of a blocked scope, so that nothing
   * is stored that could not be acknowledged.
   */
  admit(): void {
    if (this.effective !== 'blocked') return;
    this.evaluate();
    if (this.effective === 'blocked')
      throw Errors.syncBlocked(this.name, this.reason ?? 'no acknowledgement');
  }

  /** Destination instance id, for writes that came from there (they are never shipped back). */
  destinationInstance(): string {
    return this.hooks?.destinationInstance() ?? '';
  }

  /**
   * Resolves once everything up to `lsn` (a committed position of the write) is delivered, or at
   * once when the gate is not `sync`. Rejects with 503 when the write timed out under `fail`.
   * `single`: the write's commit is the one record at `lsn`, so that record's own delivery answers
   * it, even before earlier changes of the log are delivered.
   */
  wait(lsn: bigint, single = false): Promise<void> {
    if (this.closed || lsn <= this.deliveredLsn) return Promise.resolve();
    if (this.hooks?.health().disabled) return Promise.resolve();
    if (this.effective === 'async') return Promise.resolve();
    if (this.effective === 'blocked') {
      // admitted before the gate blocked: its outcome is as unknown as the one that timed out
      return Promise.reject(Errors.syncOutcomeUnknown(this.name, this.settings.timeout_ms));
    }
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({
        lsn,
        single,
        deadline: this.clock.now() + this.settings.timeout_ms,
        resolve,
        reject,
      });
      if (this.waiters.length === 1) this.armTimer();
      this.hooks?.wake();
    });
  }

  /** The committer delivered every change up to `lsn` (hook in the engine). */
  delivered(lsn: bigint): void {
    if (lsn <= this.deliveredLsn) return;
    this.deliveredLsn = lsn;
    if (this.waiters.length > 0) {
      const keep: Waiter[] = [];
      for (const w of this.waiters) {
        if (w.lsn <= lsn) w.resolve();
        else keep.push(w);
      }
      const firstChanged = keep[0] !== this.waiters[0];
      this.waiters = keep;
      if (firstChanged) this.armTimer();
    }
    if (this.effective !== 'sync') this.evaluate();
  }

  /**
   * The destination holds these records durably (LSNs of writes it answered as written), out of
   * log order: one request of a window answered before the rest of it. Writers
   * whose commit is one of these records alone are answered now; every other waiter (a batch, a
   * label update) waits for `delivered`, which covers all of its changes.
   */
  recordsDelivered(lsns: readonly bigint[]): void {
    if (this.waiters.length === 0 || lsns.length === 0) return;
    const done = lsns.length === 1 ? null : new Set(lsns);
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.single && (done ? done.has(w.lsn) : w.lsn === lsns[0])) w.resolve();
      else keep.push(w);
    }
    if (keep.length === this.waiters.length) return;
    const firstChanged = keep[0] !== this.waiters[0];
    this.waiters = keep;
    if (firstChanged) this.armTimer();
  }

  /** Fields of the status, the events stream and `active_tasks`. */
  status(): SyncStatus {
    return {
      replication_type: 'sync',
      effective_type: this.effective,
      effective_type_reason: this.reason,
      sync: {
        timeout_ms: this.settings.timeout_ms,
        on_timeout: this.settings.on_timeout,
        recover_after_ms: this.settings.recover_after_ms,
        effective_since: new Date(this.sinceMs).toISOString(),
        waiting_writes: this.waiters.length,
        timed_out_writes: this.timedOut,
        delivered_lsn: this.deliveredLsn,
        transitions: { ...this.transitions },
        last_transition: this.lastTransition,
      },
    };
  }

  /**
   * The replication is removed or no longer sync: waiting writers are answered (503 outcome
   * unknown when `release` is false, success when the user turned the replication async).
   */
  close(release: boolean): void {
    this.closed = true;
    this.clearTimers();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      if (release) w.resolve();
      else w.reject(Errors.syncReplicationGone(this.name));
    }
  }

  // ---------------------------------------------------------------- timeouts and transitions

  private armTimer(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    const first = this.waiters[0];
    if (!first || this.closed) return;
    // configure() may have shortened the timeout: deadlines are re-derived from arrival order
    this.timer = this.clock.setTimeout(() => this.expire(), Math.max(0, first.deadline - this.clock.now()));
  }

  private expire(): void {
    this.timer = null;
    const now = this.clock.now();
    const due: Waiter[] = [];
    while (this.waiters.length > 0 && this.waiters[0]!.deadline <= now) due.push(this.waiters.shift()!);
    if (due.length > 0) {
      this.timedOut += due.length;
      const health = this.hooks?.health();
      const why =
        (health && !health.ok ? health.reason : null) ??
        `the destination did not acknowledge a write within ${this.settings.timeout_ms} ms`;
      if (this.settings.on_timeout === 'fail') {
        for (const w of due) w.reject(Errors.syncOutcomeUnknown(this.name, this.settings.timeout_ms));
        this.transition('blocked', why);
      } else {
        for (const w of due) w.resolve();
        this.transition('async', why);
      }
    }
    this.armTimer();
  }

  private transition(to: EffectiveType, reason: string | null): void {
    if (to === this.effective) return;
    const from = this.effective;
    this.effective = to;
    this.reason = reason;
    this.sinceMs = this.clock.now();
    this.transitions[`to_${to}`]++;
    this.lastTransition = { from, to, reason, at: new Date(this.sinceMs).toISOString() };
    this.catchUpTo = null;
    this.healthySince = null;
    if (to === 'async') {
      // availability first: nobody waits any more
      for (const w of this.waiters.splice(0)) w.resolve();
      this.armTimer();
    }
    if (to === 'blocked') this.catchUpTo = this.hooks?.lastLsn() ?? null;
    if (to === 'sync') {
      if (this.pollTimer !== null) this.clock.clearTimeout(this.pollTimer);
      this.pollTimer = null;
    } else this.poll();
    this.hooks?.changed();
  }

  private poll(): void {
    if (this.pollTimer !== null || this.closed) return;
    this.pollTimer = this.clock.setTimeout(() => {
      this.pollTimer = null;
      this.evaluate();
      if (this.effective !== 'sync') this.poll();
    }, RECOVERY_POLL_MS);
  }

  /** Leaves `blocked` / `async` when the replication is healthy and caught up. */
  private evaluate(): void {
    if (this.closed) return;
    const hooks = this.hooks;
    const health = hooks?.health();
    // `async` because the replication is disabled (not a failure: back to `sync` once enabled)
    const offByMode = this.effective === 'async' && this.reason === DISABLED;
    if (health?.disabled) {
      if (this.effective !== 'async') this.transition('async', DISABLED);
      else if (this.reason !== DISABLED) {
        this.reason = DISABLED;
        hooks?.changed();
      }
      return;
    }
    if (offByMode && health) {
      // nothing was waited for meanwhile, nor can be shipped (the cursor followed the log)
      this.transition('sync', null);
      return;
    }
    if (this.effective === 'sync') return;
    if (!hooks || !health || !health.ok) {
      this.healthySince = null;
      if (this.effective === 'async' && health && !health.disabled) this.catchUpTo = null;
      if (health?.reason) this.reason = health.reason;
      return;
    }
    const now = this.clock.now();
    if (this.effective === 'async') {
      this.healthySince ??= now;
      if (now - this.healthySince < this.settings.recover_after_ms) return;
      // healthy long enough: catch up to where the log stands now, then be sync again
      this.catchUpTo ??= hooks.lastLsn();
    } else {
      this.catchUpTo ??= hooks.lastLsn();
    }
    if (this.deliveredLsn >= this.catchUpTo) this.transition('sync', null);
  }

  private clearTimers(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    if (this.pollTimer !== null) this.clock.clearTimeout(this.pollTimer);
    this.timer = null;
    this.pollTimer = null;
  }
}
