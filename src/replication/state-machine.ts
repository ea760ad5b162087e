/**
 * The visible state of a replication (replication.md §9) as a machine of states × events. The
 * engine sends the events it produces (started, a copy running or finished, work pending or all
 * delivered, a retry scheduled or made, suspended, resumed, a mode change, a one-shot completed);
 * {@link TRANSITIONS} says, for every state and every event, which state follows. The machine
 * holds the current state, since when, and announces each transition once; reading it changes
 * nothing.
 *
 * An event also updates the machine's memory of what the events said ({@link StateMemory}: the
 * mode, a suspension, a scheduled retry, ...). The table reads the memory only in the few cells
 * where one event leads to one of two states (a {@link Guard}): a resumed replication goes back to
 * `paused` if its mode is paused, a finished copy leaves `initializing` for `replicating` or
 * `idle`. An event a state ignores still updates the memory: a paused replication that learns
 * that everything was delivered shows `idle`, not `replicating`, when it is enabled again.
 *
 * It touches nothing else: the engine sends it events, the status and the events stream read it.
 */
import type { ReplicationState } from '../protocol/replication-status.js';
import type { ReplicationMode } from './settings.js';
import { realClock, type Clock } from './clock.js';

/** An event the engine sends to the machine. */
export type StateEvent =
  /** The task loaded its checkpoint and runs. */
  | { kind: 'started' }
  /** Nothing may ship yet (a `base` claim being checked), with why. */
  | { kind: 'held'; reason: string }
  | { kind: 'released' }
  /** The initial copy runs (as the last durable checkpoint holds it), with what it does. */
  | { kind: 'copy_running'; doing: string }
  | { kind: 'copy_finished' }
  /** Something is pending or in flight. */
  | { kind: 'work_pending' }
  /** Nothing is pending or in flight. */
  | { kind: 'all_delivered' }
  /** A delivery failed temporarily and a retry is scheduled (`error`: the last error, if any). */
  | { kind: 'retry_scheduled'; error: string | null }
  /** The scheduled retry is made (the destination answered): deliveries go on. */
  | { kind: 'retry_made' }
  /** A permanent refusal: nothing ships until the user resumes. */
  | { kind: 'suspended'; reason: string }
  /** The user resumed (PATCH mode, PUT): the suspension is over. */
  | { kind: 'resumed' }
  | { kind: 'mode_enabled' }
  | { kind: 'mode_paused' }
  | { kind: 'mode_disabled' }
  /** A one-shot run delivered everything it covers, durably. */
  | { kind: 'completed' };

/** The kind of a {@link StateEvent}. */
export type EventKind = StateEvent['kind'];

/** Every event kind, in the table's column order. */
export const EVENT_KINDS: readonly EventKind[] = [
  'started',
  'held',
  'released',
  'copy_running',
  'copy_finished',
  'work_pending',
  'all_delivered',
  'retry_scheduled',
  'retry_made',
  'suspended',
  'resumed',
  'mode_enabled',
  'mode_paused',
  'mode_disabled',
  'completed',
];

/** What the events said so far (the machine's extended state). */
export interface StateMemory {
  started: boolean;
  mode: ReplicationMode;
  held: string | null;
  /** What the copy does (null = no copy running). */
  copy: string | null;
  busy: boolean;
  /** The last error of a scheduled retry (undefined = no retry scheduled; null = no error known). */
  retry: string | null | undefined;
  suspended: string | null;
  completed: boolean;
}

/** The memory of a machine that has been told nothing. */
export const initialMemory = (): StateMemory => ({
  started: false,
  mode: 'enabled',
  held: null,
  copy: null,
  busy: false,
  retry: undefined,
  suspended: null,
  completed: false,
});

/**
 * A choice of one of two states, read from the memory (after the event updated it); `label`
 * names it in the table of docs/architecture.md.
 */
export type Guard = ((m: StateMemory) => ReplicationState) & { readonly label: string };

const guard = (label: string, choose: (m: StateMemory) => ReplicationState): Guard =>
  Object.assign(choose, { label });

/**
 * Delivering, once started: `retrying` if a retry is scheduled, else `initializing` while held or
 * copying, else `replicating` if work is pending, else `idle`. Before `started`: `initializing`.
 */
const run = guard('run', (m) => {
  if (!m.started) return 'initializing';
  if (m.retry !== undefined) return 'retrying';
  if (m.held !== null || m.copy !== null) return 'initializing';
  return m.busy ? 'replicating' : 'idle';
});
/** A retry shows once started; before, the task is still initializing. */
const retry = guard('retry', (m) => (m.started ? 'retrying' : 'initializing'));
/** Disabled ignores everything, a suspension too. */
const suspendUnlessDisabled = guard('disabled ? paused : suspended', (m) =>
  m.mode === 'disabled' ? 'paused' : 'suspended',
);
/** A paused replication that is suspended shows the suspension (it needs the user). */
const suspendedOrPaused = guard('suspended ? suspended : paused', (m) =>
  m.suspended !== null ? 'suspended' : 'paused',
);
/** Enabled again: a suspension stays until resumed. */
const unblocked = guard('suspended ? suspended : run', (m) => (m.suspended !== null ? 'suspended' : run(m)));
/** Resumed: a paused mode still pauses. */
const afterResume = guard('mode paused ? paused : run', (m) => (m.mode !== 'enabled' ? 'paused' : run(m)));

/** What a cell holds: the next state, or a guarded choice. The same state = ignored. */
export type Cell = ReplicationState | Guard;

/*
 * Columns, in every row: started, held, released, copy_running, copy_finished, work_pending,
 * all_delivered, retry_scheduled, retry_made, suspended, resumed, mode_enabled, mode_paused,
 * mode_disabled, completed.
 */
/**
 * The table: for every state and every event, the next state. A cell naming its own row's state
 * is an event that state ignores (or one that cannot happen in it, such as `started` twice);
 * its memory is updated all the same. `completed` stays until the replication is removed or
 * replaced (both discard the task, and a new one begins `initializing`).
 */
export const TRANSITIONS: Readonly<Record<ReplicationState, Readonly<Record<EventKind, Cell>>>> = {
  // before `started` (nothing known yet), or started and held or copying with no retry due
  initializing: {
    started: run,
    held: 'initializing',
    released: run,
    copy_running: 'initializing',
    copy_finished: run,
    work_pending: 'initializing',
    all_delivered: 'initializing',
    retry_scheduled: retry,
    retry_made: 'initializing',
    suspended: 'suspended',
    resumed: 'initializing',
    mode_enabled: 'initializing',
    mode_paused: 'paused',
    mode_disabled: 'paused',
    completed: 'completed',
  },
  replicating: {
    started: 'replicating',
    held: 'initializing',
    released: 'replicating',
    copy_running: 'initializing',
    copy_finished: 'replicating',
    work_pending: 'replicating',
    all_delivered: 'idle',
    retry_scheduled: 'retrying',
    retry_made: 'replicating',
    suspended: 'suspended',
    resumed: 'replicating',
    mode_enabled: 'replicating',
    mode_paused: 'paused',
    mode_disabled: 'paused',
    completed: 'completed',
  },
  idle: {
    started: 'idle',
    held: 'initializing',
    released: 'idle',
    copy_running: 'initializing',
    copy_finished: 'idle',
    work_pending: 'replicating',
    all_delivered: 'idle',
    retry_scheduled: 'retrying',
    retry_made: 'idle',
    suspended: 'suspended',
    resumed: 'idle',
    mode_enabled: 'idle',
    mode_paused: 'paused',
    mode_disabled: 'paused',
    completed: 'completed',
  },
  // a scheduled retry hides holds, copies and work until it is made
  retrying: {
    started: 'retrying',
    held: 'retrying',
    released: 'retrying',
    copy_running: 'retrying',
    copy_finished: 'retrying',
    work_pending: 'retrying',
    all_delivered: 'retrying',
    retry_scheduled: 'retrying',
    retry_made: run,
    suspended: 'suspended',
    resumed: 'retrying',
    mode_enabled: 'retrying',
    mode_paused: 'paused',
    mode_disabled: 'paused',
    completed: 'completed',
  },
  // mode paused (not suspended) or disabled (suspended or not): delivery events are ignored
  paused: {
    started: 'paused',
    held: 'paused',
    released: 'paused',
    copy_running: 'paused',
    copy_finished: 'paused',
    work_pending: 'paused',
    all_delivered: 'paused',
    retry_scheduled: 'paused',
    retry_made: 'paused',
    suspended: suspendUnlessDisabled,
    resumed: 'paused',
    mode_enabled: unblocked,
    mode_paused: suspendedOrPaused,
    mode_disabled: 'paused',
    completed: 'completed',
  },
  // until the user resumes; a paused mode does not hide it, disabled does
  suspended: {
    started: 'suspended',
    held: 'suspended',
    released: 'suspended',
    copy_running: 'suspended',
    copy_finished: 'suspended',
    work_pending: 'suspended',
    all_delivered: 'suspended',
    retry_scheduled: 'suspended',
    retry_made: 'suspended',
    suspended: 'suspended',
    resumed: afterResume,
    mode_enabled: 'suspended',
    mode_paused: 'suspended',
    mode_disabled: 'paused',
    completed: 'completed',
  },
  completed: {
    started: 'completed',
    held: 'completed',
    released: 'completed',
    copy_running: 'completed',
    copy_finished: 'completed',
    work_pending: 'completed',
    all_delivered: 'completed',
    retry_scheduled: 'completed',
    retry_made: 'completed',
    suspended: 'completed',
    resumed: 'completed',
    mode_enabled: 'completed',
    mode_paused: 'completed',
    mode_disabled: 'completed',
    completed: 'completed',
  },
};

/** The memory once `e` happened (pure). */
export function remember(m: StateMemory, e: StateEvent): StateMemory {
  switch (e.kind) {
    case 'started':
      return { ...m, started: true };
    case 'held':
      return { ...m, held: e.reason };
    case 'released':
      return { ...m, held: null };
    case 'copy_running':
      return { ...m, copy: e.doing };
    case 'copy_finished':
      return { ...m, copy: null };
    case 'work_pending':
      return { ...m, busy: true };
    case 'all_delivered':
      return { ...m, busy: false };
    case 'retry_scheduled':
      return { ...m, retry: e.error };
    case 'retry_made':
      return { ...m, retry: undefined };
    case 'suspended':
      // a suspension cancels the scheduled retry
      return { ...m, suspended: e.reason, retry: undefined };
    case 'resumed':
      return { ...m, suspended: null };
    case 'mode_enabled':
      return { ...m, mode: 'enabled' };
    case 'mode_paused':
      return { ...m, mode: 'paused' };
    case 'mode_disabled':
      return { ...m, mode: 'disabled' };
    case 'completed':
      return { ...m, completed: true };
  }
}

/** One step of the machine (pure): the next state and memory after `e` in `state`. */
export function step(
  state: ReplicationState,
  memory: StateMemory,
  e: StateEvent,
): { state: ReplicationState; memory: StateMemory } {
  const next = remember(memory, e);
  const cell = TRANSITIONS[state][e.kind];
  return { state: typeof cell === 'string' ? cell : cell(next), memory: next };
}

/** Why the replication is in `state`, from the memory (pure). */
export function reasonOf(state: ReplicationState, m: StateMemory): string | null {
  switch (state) {
    case 'completed':
      return 'one-shot run delivered everything it covers';
    case 'paused':
      return m.mode === 'disabled' ? 'mode is disabled' : 'mode is paused';
    case 'suspended':
      return m.suspended;
    case 'retrying':
      return m.retry ?? null;
    case 'initializing':
      return m.started ? (m.held ?? m.copy) : null;
    default:
      return null;
  }
}

/** A transition, as announced to subscribers. */
export interface Transition {
  from: ReplicationState;
  to: ReplicationState;
  reason: string | null;
  at: string;
}

/** The machine of one replication: current state, since when, one announcement per transition. */
export class StateMachine {
  private current: ReplicationState = 'initializing';
  private mem: StateMemory = initialMemory();
  private began: number;
  /** Depth of {@link atOnce} calls, and the state when the outermost began. */
  private depth = 0;
  private before: ReplicationState = 'initializing';

  constructor(
    private readonly onTransition: (t: Transition) => void,
    private readonly clock: Clock = realClock,
    /** Bounds a reason (status messages are bounded). */
    private readonly bound: (s: string) => string = (s) => s,
  ) {
    this.began = clock.now();
  }

  /** Applies `events` in order; announces the transition, if any, once they are all applied. */
  send(...events: StateEvent[]): void {
    this.atOnce(() => {
      for (const e of events) ({ state: this.current, memory: this.mem } = step(this.current, this.mem, e));
    });
  }

  /**
   * Runs `fn`, whose events happen at one moment (a mode change that resumes, a restart that
   * restores a suspension): only the net transition is announced, not the states in between.
   */
  atOnce(fn: () => void): void {
    if (this.depth++ === 0) this.before = this.current;
    try {
      fn();
    } finally {
      if (--this.depth === 0 && this.current !== this.before) {
        this.began = this.clock.now();
        const t = {
          from: this.before,
          to: this.current,
          reason: this.reason,
          at: new Date(this.began).toISOString(),
        };
        this.onTransition(t);
      }
    }
  }

  get state(): ReplicationState {
    return this.current;
  }

  /** Why it is in its state (bounded; null = nothing to say). */
  get reason(): string | null {
    const r = reasonOf(this.current, this.mem);
    return r === null ? null : this.bound(r);
  }

  /** What the events said so far (read only). */
  get memory(): Readonly<StateMemory> {
    return this.mem;
  }

  /** When the current state began (ms since epoch). */
  get since(): number {
    return this.began;
  }
}
