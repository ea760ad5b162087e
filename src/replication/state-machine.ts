/**
 * The visible state of a replication (replication.md §9) as one table: the facts the engine
 * reports (mode, suspension, scheduled retry, copy, pending work, completion) and, in order of
 * precedence, which state each combination shows and why. The tracker records when the state
 * began and announces each transition once; reading it changes nothing.
 *
 * It touches nothing else: the engine tells it facts, and the status and the events stream read it.
 */
import type { ReplicationState } from '../protocol/replication-status.js';
import type { ReplicationMode } from './settings.js';
import { realClock, type Clock } from './clock.js';

/** What the engine knows about a replication at one moment. */
export interface StateFacts {
  /** The task loaded its checkpoint and runs. */
  started: boolean;
  mode: ReplicationMode;
  /** Why the replication is suspended (null = not suspended). */
  suspended: string | null;
  /** Why a retry is scheduled (the last error); undefined = no retry scheduled. */
  retrying: string | null | undefined;
  /** What the initial copy is doing (null = no copy running). */
  copying: string | null;
  /** Something is pending or in flight. */
  busy: boolean;
  /** A one-shot run delivered everything. */
  completed: boolean;
}

/** One row of the table: the state shown when `when` holds (the first matching row wins). */
interface Row {
  state: ReplicationState;
  when: (f: StateFacts) => boolean;
  reason: (f: StateFacts) => string | null;
}

/**
 * The table, in order of precedence. `completed` stays whatever happens later (until the
 * replication is removed or replaced); `disabled` ignores everything, so it hides a suspension,
 * while a paused replication that is suspended shows the suspension (it needs the user).
 */
export const STATE_TABLE: readonly Row[] = [
  {
    state: 'completed',
    when: (f) => f.completed,
    reason: () => 'one-shot run delivered everything it covers',
  },
  { state: 'paused', when: (f) => f.mode === 'disabled', reason: () => 'mode is disabled' },
  { state: 'suspended', when: (f) => f.suspended !== null, reason: (f) => f.suspended },
  { state: 'paused', when: (f) => f.mode === 'paused', reason: () => 'mode is paused' },
  { state: 'initializing', when: (f) => !f.started, reason: () => null },
  { state: 'retrying', when: (f) => f.retrying !== undefined, reason: (f) => f.retrying ?? null },
  { state: 'initializing', when: (f) => f.copying !== null, reason: (f) => f.copying },
  { state: 'replicating', when: (f) => f.busy, reason: () => null },
  { state: 'idle', when: () => true, reason: () => null },
];

/** The state and its reason for `facts` (pure). */
export function stateOf(facts: StateFacts): { state: ReplicationState; reason: string | null } {
  const row = STATE_TABLE.find((r) => r.when(facts))!;
  return { state: row.state, reason: row.reason(facts) };
}

/** A transition, as announced to subscribers. */
export interface Transition {
  from: ReplicationState;
  to: ReplicationState;
  reason: string | null;
  at: string;
}

/** Current state, since when, and one announcement per transition. */
export class StateTracker {
  private current: ReplicationState = 'initializing';
  private why: string | null = null;
  private began: number;

  constructor(
    private readonly onTransition: (t: Transition) => void,
    private readonly clock: Clock = realClock,
    /** Bounds a reason (status messages are bounded). */
    private readonly bound: (s: string) => string = (s) => s,
  ) {
    this.began = clock.now();
  }

  /** Applies the table to `facts`; announces a transition when the state changed. */
  update(facts: StateFacts): void {
    const next = stateOf(facts);
    const from = this.current;
    this.why = next.reason === null ? null : this.bound(next.reason);
    if (next.state === from) return;
    this.current = next.state;
    this.began = this.clock.now();
    this.onTransition({ from, to: next.state, reason: this.why, at: new Date(this.began).toISOString() });
  }

  get state(): ReplicationState {
    return this.current;
  }

  get reason(): string | null {
    return this.why;
  }

  /** When the current state began (ms since epoch). */
  get since(): number {
    return this.began;
  }
}
