/**
 * The committer (replication.md §11): persists a replication's positions and announces what was
 * delivered. The task tells it `delivered(position)` for every window that was completely
 * delivered, in commit order, and marks the checkpoint dirty with an urgency; the committer
 * writes the checkpoint (taken from the task at that moment) when it is due:
 *
 * - `now`: a copy's entry waits for its checkpoint before its next batch (at most one batch per
 *   entry is ever shipped again after a crash), so it is written at once;
 * - `soon`: delivered records, at most every 100 ms, however many small batches a live stream
 *   ships (a crash re-ships at most that much more; the destination's idempotent apply absorbs it);
 * - `idle`: the cursor only moved over changes outside the scope, at most once a second.
 *
 * Listeners of `delivered` are where one-shot completion, events and (later) sync acknowledgements
 * plug in. It touches only the checkpoint store and what its options give it.
 */
import { realClock, type Clock } from './clock.js';
import type { Checkpoint } from './checkpoint-store.js';

/** What a delivered window covered: a log position, or a copy's position in one entry. */
export type Position =
  { source: 'log'; lsn: bigint } | { source: 'copy'; entry: string; next: bigint; last: boolean };

/** How soon a dirty checkpoint must be written. */
export type Urgency = 'idle' | 'soon' | 'now';

/** Spacing between checkpoint writes per urgency (ms). */
export const CHECKPOINT_SPACING: Readonly<Record<Urgency, number>> = { idle: 1000, soon: 100, now: 0 };

const RANK: Readonly<Record<Urgency, number>> = { idle: 0, soon: 1, now: 2 };

/** Options of a {@link Committer}. */
export interface CommitterOptions {
  /** The checkpoint as it is now (a snapshot the committer may keep). */
  snapshot(): Checkpoint;
  store: { save(cp: Checkpoint): Promise<void> };
  /** `cp` is durable; `tags` are the marks (copy entries) it covers. */
  saved(cp: Checkpoint, tags: readonly string[]): void;
  /** Writing failed; the checkpoint stays dirty and is written again. */
  failed(error: unknown): void;
  /** A write fell due later: the task's loop should call `persist()` again then. */
  wake(): void;
  clock?: Clock;
}

/** Persists positions; announces deliveries. */
export class Committer {
  private dirty: Urgency | null = null;
  private lastAt = -Infinity;
  private timer: unknown = null;
  private readonly tags = new Set<string>();
  private readonly listeners = new Set<(p: Position) => void>();
  private readonly clock: Clock;

  constructor(private readonly o: CommitterOptions) {
    this.clock = o.clock ?? realClock;
  }

  /** Calls `listener` for every delivered window, in commit order. Returns the unsubscribe. */
  onDelivered(listener: (p: Position) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A window was completely delivered (called in commit order). */
  delivered(p: Position): void {
    for (const l of this.listeners) {
      try {
        l(p);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  /** The checkpoint changed; `tag` marks something that waits for it to be durable. */
  markDirty(urgency: Urgency, tag?: string): void {
    if (this.dirty === null || RANK[urgency] > RANK[this.dirty]) this.dirty = urgency;
    if (tag !== undefined) this.tags.add(tag);
  }

  get isDirty(): boolean {
    return this.dirty !== null;
  }

  /** Writes the checkpoint when it is dirty and due; otherwise arranges a wake-up when it falls due. */
  persist(): void {
    if (this.dirty === null) return;
    const wait = CHECKPOINT_SPACING[this.dirty] - (this.clock.now() - this.lastAt);
    if (wait > 0) {
      this.timer ??= this.clock.setTimeout(() => {
        this.timer = null;
        this.o.wake();
      }, wait);
      return;
    }
    this.dirty = null;
    const cp = this.o.snapshot();
    const tags = [...this.tags];
    this.tags.clear();
    this.lastAt = this.clock.now();
    this.o.store.save(cp).then(
      () => this.o.saved(cp, tags),
      (e: unknown) => {
        this.markDirty('idle');
        for (const t of tags) this.tags.add(t);
        this.o.failed(e);
      },
    );
  }

  /** Stops the pending wake-up. */
  close(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}
