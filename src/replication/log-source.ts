/**
 * The log source of a replication (replication.md §6, continuous runs): the storage change log read
 * from a position on, cut into windows of the changes in scope (batching rules in window.ts), and
 * the count of in-scope changes not read yet (pending work, lag). Symmetric with scan-source.ts:
 * its position is opaque and persistable ({@link LogPosition}); the task persists the position of
 * the last window delivered and hands it back after a restart.
 *
 * The scope is a predicate over changes, so one source follows several buckets of the one change
 * log (a consistency group's ordered log, whose windows end only at commit boundaries). It reads storage only; it never ships, never
 * persists and never changes counters itself: `admit` (the task's loop prevention, `when` and
 * counters) decides what a window carries.
 */
import type { Change, ChangeLog } from '../storage/types.js';
import type { BatchSettings } from './settings.js';
import { groupKey, isFull, newWindow, payloadBytes, wouldOverflow, type Window } from './window.js';

/** Position in the change log: every change with lsn <= `lsn` is covered. Persisted as is. */
export interface LogPosition {
  lsn: bigint;
}

/** Changes read from the log per call. */
const READ_CHUNK = 2048;

/** What the source asks its task. */
export interface LogSourceContext {
  log: ChangeLog;
  /** Bucket and entry scope (before `when`): pending counts are based on it. */
  inScope(c: Change): boolean;
  /** Loop prevention and `when` for an in-scope change: adds it to `w` when it passes. */
  admit(c: Change, w: Window, key: string): void;
  /** `when` state after the last change admitted (null = stateless). */
  filterSnapshot(): Record<string, unknown> | null;
  limits(): BatchSettings;
  /** Windows in flight now (partial windows ship at once while the pipeline has room). */
  inFlight(): number;
  /** The destination was contacted (loop prevention needs its instance id). */
  prepared(): boolean;
  /** Someone waits for the next delivery (sync): no window waits to fill. */
  urgent(): boolean;
  /**
   * Windows end only at commit boundaries (`Change.commitContinues`): a consistency group
   * applies each window atomically, so a batch write is never split between two.
   */
  wholeCommits: boolean;
  /** Reading may go on (not closing, mode enabled). */
  active(): boolean;
  /** In-scope changes ahead count as pending (false while disabled, or for a one-shot). */
  countsPending(): boolean;
  now(): number;
}

/** What {@link LogSource.next} found. */
export type LogNext = Window | { waitMs: number } | 'prepare' | null;

/** Reads one replication's change log. */
export class LogSource {
  /** Last change taken into a window. */
  private readLsn = 0n;
  private lookahead: Change[] = [];
  /** Next unread position in `lookahead`. */
  private lookaheadAt = 0;
  private building: Window | null = null;
  /** The last change read belongs to a commit that goes on (see `wholeCommits`). */
  private midCommit = false;

  // pending accounting: in-scope changes after readLsn, counted up to countedLsn
  private countedLsn = 0n;
  private unreadRecords = 0;
  private unreadBytes = 0;
  private unreadOldest: number | null = null;
  private counting: Promise<void> | null = null;
  private countAgain = false;
  /** A count pass reached the end of the log since the last seek (`pending` is complete). */
  private countedOnce = false;
  private closed = false;

  constructor(private readonly ctx: LogSourceContext) {}

  /** Starts reading after `p` (at start, and when the reader must jump: disabled, one-shot). */
  seek(p: LogPosition): void {
    this.building = null;
    this.midCommit = false;
    this.lookahead = [];
    this.lookaheadAt = 0;
    this.unreadRecords = 0;
    this.unreadBytes = 0;
    this.unreadOldest = null;
    this.readLsn = p.lsn;
    this.countedLsn = p.lsn;
    this.countedOnce = false;
  }

  /** Whether `pending()` has counted the whole log after the position (false until a first pass). */
  get counted(): boolean {
    return this.countedOnce;
  }

  /** Stops counting (the task closes). */
  close(): void {
    this.closed = true;
  }

  /** The window being filled holds changes to ship. */
  get gathering(): boolean {
    return (this.building?.items.length ?? 0) > 0;
  }

  /** In-scope changes read into the building window or not read yet. */
  pending(): { records: number; bytes: number; oldest: number | null } {
    const w = this.building;
    const first = w?.items[0]?.change.commitTime;
    return {
      records: this.unreadRecords + (w?.scopeRecords ?? 0),
      bytes: this.unreadBytes + (w?.scopeBytes ?? 0),
      oldest: first ?? (this.unreadRecords > 0 ? this.unreadOldest : null),
    };
  }

  /**
   * The next window to ship; `{waitMs}` when a partial window should gather more changes for that
   * long, 'prepare' when the destination must be contacted first, null when there is nothing to
   * do. `committed`: position of the last delivered window (an empty window that only moves the
   * position is sealed when nothing is in flight).
   */
  async next(committed: LogPosition): Promise<LogNext> {
    const limits = this.ctx.limits();
    for (;;) {
      if (!this.ctx.active()) return null;
      const w = (this.building ??= newWindow(this.readLsn, this.ctx.now()));
      const more = await this.fill();
      if (this.building !== w) continue; // moved while awaiting
      if (!more) {
        if (this.midCommit) return null; // the rest of the commit is durable with it: read again
        if (w.items.length === 0) {
          if (w.endLsn > committed.lsn && this.ctx.inFlight() === 0) return this.seal(w);
          return null;
        }
        const age = this.ctx.now() - w.openedAt;
        // ship at once while the pipeline has room; gather while it is busy (adaptive batching)
        if (
          this.ctx.inFlight() < Math.ceil(limits.max_in_flight / 2) ||
          age >= limits.max_delay_ms ||
          this.ctx.urgent()
        )
          return this.seal(w);
        return { waitMs: Math.max(1, limits.max_delay_ms - age) };
      }
      while (this.lookaheadAt < this.lookahead.length) {
        const c = this.lookahead[this.lookaheadAt]!;
        const inScope = this.ctx.inScope(c);
        const key = inScope ? groupKey(c) : undefined;
        if (key !== undefined && !this.midCommit && wouldOverflow(w, c, key, limits)) return this.seal(w);
        // loop prevention needs the destination's instance id before the first in-scope change
        if (!this.ctx.prepared() && inScope) return 'prepare';
        this.lookaheadAt++;
        this.consume(c, w, key);
      }
      if (!this.midCommit && isFull(w, limits)) return this.seal(w);
    }
  }

  /**
   * Counts in-scope changes not read yet (at start: the whole backlog); `done` after each pass.
   * Resolves when the pass running now is over (the task awaits the first one before it is shown).
   */
  scheduleCount(done: () => void): Promise<void> {
    if (this.counting) {
      this.countAgain = true;
      return this.counting;
    }
    return (this.counting = this.countLoop().finally(() => {
      this.counting = null;
      if (!this.closed) this.countedOnce = true;
      done();
      if (this.countAgain) {
        this.countAgain = false;
        void this.scheduleCount(done);
      }
    }));
  }

  private seal(w: Window): Window {
    w.filter = this.ctx.filterSnapshot();
    w.remaining = w.items;
    this.building = null;
    return w;
  }

  private async fill(): Promise<boolean> {
    if (this.lookaheadAt < this.lookahead.length) return true;
    const changes = await this.ctx.log.read(this.readLsn, READ_CHUNK);
    // the reader may have moved while we awaited (seek)
    let from = 0;
    while (from < changes.length && changes[from]!.lsn <= this.readLsn) from++;
    this.lookahead = changes;
    this.lookaheadAt = from;
    return from < changes.length;
  }

  /**
   * Takes one change into the building window (synchronous: keeps counts consistent). `key` is
   * its `groupKey`, undefined when it is outside the scope.
   */
  private consume(c: Change, w: Window, key: string | undefined): void {
    const inScope = key !== undefined;
    if (inScope && c.lsn <= this.countedLsn) {
      this.unreadRecords--;
      this.unreadBytes -= payloadBytes(c);
      if (this.unreadRecords <= 0) {
        this.unreadRecords = 0;
        this.unreadBytes = 0;
        this.unreadOldest = null;
      } else this.unreadOldest = c.commitTime;
    }
    this.readLsn = c.lsn;
    if (c.lsn > this.countedLsn) this.countedLsn = c.lsn;
    w.endLsn = c.lsn;
    this.midCommit = this.ctx.wholeCommits && c.commitContinues === true;
    if (!inScope) return;
    w.scopeRecords++;
    w.scopeBytes += payloadBytes(c);
    this.ctx.admit(c, w, key);
  }

  private async countLoop(): Promise<void> {
    while (!this.closed) {
      const from = this.countedLsn > this.readLsn ? this.countedLsn : this.readLsn;
      const changes = await this.ctx.log.read(from, READ_CHUNK * 4).catch(() => []);
      if (changes.length === 0) return;
      for (const c of changes) {
        if (c.lsn <= this.countedLsn || c.lsn <= this.readLsn) continue;
        this.countedLsn = c.lsn;
        if (this.ctx.countsPending() && this.ctx.inScope(c)) {
          if (this.unreadRecords === 0) this.unreadOldest = c.commitTime;
          this.unreadRecords++;
          this.unreadBytes += payloadBytes(c);
        }
      }
      if (changes.length < READ_CHUNK * 4) return;
    }
  }
}
