/**
 * The delivery pipeline of one replication (replication.md §1, §11): the loop that takes windows
 * from the two sources (log and copy, taking turns so that neither starves the other), ships up to
 * `max_in_flight` of them at once through the shipper, retries failed ones with backoff before
 * anything new is sent, and hands the task the prefix of windows that were completely delivered,
 * in order (a window is committed only once every earlier one is: positions never pass a record
 * that was not delivered).
 *
 * It touches the target (prepare), the shipper and the delivery health; positions, checkpoints
 * and the visible state are the task's.
 */
import type { CopyRun } from './copy-run.js';
import type { DeliveryHealth } from './delivery-health.js';
import type { Diagnostics } from './diagnostics.js';
import type { LogPosition, LogSource } from './log-source.js';
import type { EffectiveSettings, ReplicationMode } from './settings.js';
import type { Shipper } from './shipper.js';
import { TargetError, type Target } from './target.js';
import type { Window } from './window.js';

/** What the pipeline is given. */
export interface PipelineContext {
  /** The engine's shipper, or a consistency group's (one atomic shipment per window). */
  shipper: Pick<Shipper, 'ship' | 'guard'>;
  target: Target;
  settings(): EffectiveSettings;
  health: DeliveryHealth;
  diagnostics: Diagnostics;
  mode(): ReplicationMode;
  /** Why nothing may ship yet, not even a contact (base seeding); null = ship. */
  held(): string | null;
  continuous: boolean;
  /** The log ships nothing while the copy runs (a member added to a group). */
  logWaitsForCopy: boolean;
  log: LogSource;
  copy: CopyRun;
  /** Position of the last window committed (the log source seals position-only windows past it). */
  cursor(): LogPosition;
  /** The window at the head was completely delivered (called in order). */
  committed(w: Window): void;
  /** Windows were committed this turn; `clean`: none failed meanwhile. */
  afterCommit(clean: boolean): void;
  /** At the start of each turn, after committing (persisting, following the log). */
  beforeTurn(): void;
  /** A refusal no retry can change. */
  suspend(text: string): void;
  /** The turn is over (the visible state may have changed). */
  idle(): void;
}

/** Ships windows; commits them in order. */
export class Pipeline {
  /** Windows in flight, in commit order. */
  readonly inflight: Window[] = [];
  /** The destination was contacted (loop prevention needs its instance id). */
  prepared = false;
  private closing = false;
  private wakeUp: (() => void) | null = null;
  private wakePending = false;
  private loop: Promise<void> | null = null;
  /** Alternates log and copy windows so that neither starves the other. */
  private preferCopy = true;

  constructor(private readonly ctx: PipelineContext) {}

  /** Records and bytes in scope not yet delivered: unread in the log, in flight, left to copy. */
  pending(): { records: number; bytes: number; oldest: number | null } {
    let { records, bytes, oldest } = this.ctx.log.pending();
    for (const w of this.inflight) {
      records += w.scopeRecords;
      bytes += w.scopeBytes;
      const first = w.copy ? undefined : w.items[0]?.change.commitTime;
      if (first !== undefined && (oldest === null || first < oldest)) oldest = first;
    }
    const copy = this.ctx.copy.unread(this.inflight);
    return { records: records + copy.records, bytes: bytes + copy.bytes, oldest };
  }

  /** The loop runs (started and not closing). */
  get running(): boolean {
    return !this.closing;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Ends the loop: requests are aborted, what was delivered is committed. */
  async close(): Promise<void> {
    this.closing = true;
    this.wake();
    await this.ctx.target.close().catch(() => undefined);
    await this.loop;
    await Promise.allSettled(this.inflight.map((w) => w.sending));
    this.commitDone();
  }

  /** Something changed: the loop takes another turn. */
  wake(): void {
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
        await this.wait(Math.max(1, this.ctx.health.retryIn() ?? 0));
      }
    }
  }

  /** One turn: commit, then ship what may be shipped, then wait for something to do. */
  private async turn(): Promise<void> {
    const { ctx } = this;
    const health = ctx.health;
    this.commitDone();
    ctx.beforeTurn();
    if (ctx.copy.finished || ctx.mode() !== 'enabled' || health.suspendedReason || ctx.held() !== null) {
      await this.wait();
      return;
    }
    if (health.retryAt !== null) {
      const delay = health.retryIn()!;
      if (delay > 0) {
        await this.wait(delay);
        return;
      }
      if (!(await this.tryPrepare())) return;
      health.retryMade();
      for (const w of this.inflight)
        if (w.status === 'temp_failed' || w.status === 'perm_failed') this.launch(w);
    }
    let timeout: number | undefined;
    while (!this.closing && health.retryAt === null && !health.suspendedReason && ctx.mode() === 'enabled') {
      if (this.inflight.length >= ctx.settings().batch.max_in_flight) break;
      // a failed window is retried before anything new is sent
      if (this.inflight.some((w) => w.status === 'temp_failed' || w.status === 'perm_failed')) break;
      const sources = this.preferCopy ? [this.copyNext, this.logNext] : [this.logNext, this.copyNext];
      let next: Window | 'prepare' | null = null;
      timeout = undefined;
      for (const source of sources) {
        const got = await source.call(this);
        if (got !== null && typeof got === 'object' && 'waitMs' in got) {
          timeout = got.waitMs;
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
    ctx.idle();
    // A scheduled retry wakes the loop by itself: nothing else may arrive to wake it (a lone
    // record for an unreachable destination).
    const retry = health.retryIn();
    await this.wait(retry !== undefined ? Math.max(1, retry) : timeout);
  }

  /** The log source's next window (none for a one-shot run, which ships only its copy). */
  private logNext(): ReturnType<LogSource['next']> {
    // a group's log waits for a new member's copy, so that it lands at the log position it was planned at
    if (this.ctx.logWaitsForCopy && this.ctx.copy.active) return Promise.resolve(null);
    return this.ctx.continuous ? this.ctx.log.next(this.ctx.cursor()) : Promise.resolve(null);
  }

  /** The copy's next window ('prepare' first: loop prevention needs the destination's id). */
  private async copyNext(): Promise<Window | 'prepare' | null> {
    const { copy } = this.ctx;
    if (!copy.active || this.closing || this.ctx.mode() !== 'enabled') return null;
    if (!this.prepared) return 'prepare';
    const s = this.ctx.settings();
    return copy.next(s.copy_max_records, s.batch.max_bytes);
  }

  private async tryPrepare(): Promise<boolean> {
    try {
      await this.ctx.shipper.guard('Destination check', 0, () => this.ctx.target.prepare());
      this.prepared = true;
      return true;
    } catch (e) {
      this.prepared = false;
      const err = TargetError.from(e);
      // one failed attempt: the records stay pending, the hourly diagnostics show why
      this.ctx.diagnostics.addError(err.status, err.message);
      // a refusal that no retry can change (a malformed token, bucket settings the destination refuses)
      if (!err.temporary) this.ctx.suspend(err.message);
      else this.temporaryFailure(err.toFailure());
      return false;
    }
  }

  private launch(w: Window): void {
    if (!this.inflight.includes(w)) this.inflight.push(w);
    if (w.remaining.length === 0) {
      w.status = 'done';
      this.wake();
      return;
    }
    w.status = 'sending';
    delete w.error;
    w.sending = this.ctx.shipper.ship(w).then(
      () => this.wake(),
      (e: unknown) => {
        w.status = 'temp_failed';
        w.error = { status: -1, message: (e as Error)?.message ?? String(e) };
        this.wake();
      },
    );
  }

  /** Commits the prefix of finished windows and reacts to failed ones. */
  private commitDone(): void {
    let progressed = false;
    while (this.inflight.length > 0 && this.inflight[0]!.status === 'done') {
      this.ctx.committed(this.inflight.shift()!);
      progressed = true;
    }
    if (progressed)
      this.ctx.afterCommit(this.inflight.every((w) => w.status === 'sending' || w.status === 'done'));
    const health = this.ctx.health;
    if (health.retryAt !== null || health.suspendedReason) return;
    const failed = this.inflight.find((w) => w.status === 'perm_failed' || w.status === 'temp_failed');
    if (!failed) return;
    // let the other requests finish before backing off, so that their outcome is not lost
    if (failed.status === 'temp_failed' && this.inflight.some((w) => w.status === 'sending')) return;
    if (failed.status === 'perm_failed') {
      this.ctx.suspend(failed.error?.message ?? 'Destination refused a record');
      return;
    }
    this.temporaryFailure(failed.error ?? { status: -1, message: 'delivery failed' });
  }

  private temporaryFailure(err: { status: number; message: string; retryAfterMs?: number }): void {
    const reason = this.ctx.health.failed(err, this.ctx.settings().retry);
    if (reason !== null) this.ctx.suspend(reason);
    else this.ctx.idle();
  }
}
