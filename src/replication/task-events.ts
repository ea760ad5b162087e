/**
 * What a replication tells its subscribers (the events stream, `follow`, the manager): every state
 * transition, and `changed` whenever the figures a user sees differ from the last ones announced.
 * Listeners are called synchronously and must not block; one that throws is ignored.
 */
import type { ReplicationState } from '../protocol/replication-status.js';
import type { Transition } from './state-machine.js';

/** Visible state of a replication (replication.md §9). */
export type TaskState = ReplicationState;

/** A state transition, or that the figures changed. */
export type TaskEvent = ({ type: 'state' } & Transition) | { type: 'changed' };

/** The subscribers of one task. */
export class TaskEvents {
  private readonly listeners = new Set<(e: TaskEvent) => void>();
  /** Figures last announced with a `changed` event. */
  private announced = '';

  /** Adds a listener; returns the unsubscribe function. */
  subscribe(listener: (e: TaskEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Someone listens (figures need not be computed otherwise). */
  get listened(): boolean {
    return this.listeners.size > 0;
  }

  emit(e: TaskEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /** Emits `changed` when `figures` differ from the last ones announced. */
  announce(figures: string): void {
    if (figures === this.announced) return;
    this.announced = figures;
    this.emit({ type: 'changed' });
  }
}
