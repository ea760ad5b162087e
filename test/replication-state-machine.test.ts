/**
 * Unit tests of the replication state machine (issue 9 item 1, replication.md §9): every state ×
 * every event of the table against an expectation list written here from the rules (not read
 * from the table), ignored pairs leave the state unchanged and announce nothing, a seeded random
 * walk agrees with the rules as a precedence of facts (the state function the machine replaced),
 * transitions are announced once with `since` from a manual clock, the delivery health reports
 * its changes as events, and a replication's PATCHes announce no state in between.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { REPLICATION_STATES as STATES, type ReplicationState } from '../src/protocol/replication-status.js';
import {
  EVENT_KINDS,
  StateMachine,
  TRANSITIONS,
  type EventKind,
  type StateEvent,
  type Transition,
} from '../src/replication/state-machine.js';
import { DeliveryHealth } from '../src/replication/delivery-health.js';
import type { TaskEvent } from '../src/replication/task-events.js';
import { ManualClock } from './helpers/manual-clock.js';
import { forEachTarget, statusOf, writeText } from './helpers/replication-env.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';

const COPY = 'initial copy: 0 of 2 entries done';

/** One event of each kind, with a payload where it has one. */
const EVENT: Record<EventKind, StateEvent> = {
  started: { kind: 'started' },
  held: { kind: 'held', reason: 'checking base' },
  released: { kind: 'released' },
  copy_running: { kind: 'copy_running', doing: COPY },
  copy_finished: { kind: 'copy_finished' },
  work_pending: { kind: 'work_pending' },
  all_delivered: { kind: 'all_delivered' },
  retry_scheduled: { kind: 'retry_scheduled', error: 'HTTP 503' },
  retry_made: { kind: 'retry_made' },
  suspended: { kind: 'suspended', reason: 'HTTP 409' },
  resumed: { kind: 'resumed' },
  mode_enabled: { kind: 'mode_enabled' },
  mode_paused: { kind: 'mode_paused' },
  mode_disabled: { kind: 'mode_disabled' },
  completed: { kind: 'completed' },
};

const ev = (...kinds: EventKind[]): StateEvent[] => kinds.map((k) => EVENT[k]);

/**
 * How the engine reaches each state (the events, from a new machine), and what each event then
 * leads to. Written from replication.md §9: completed > disabled > suspended > paused > not started
 * > retry > hold or copy > work > idle.
 */
interface Case {
  name: string;
  via: StateEvent[];
  state: ReplicationState;
  next: Record<EventKind, ReplicationState>;
}

/** Every event leads to `state` (then the few that do not are listed). */
const all = (state: ReplicationState): Record<EventKind, ReplicationState> =>
  Object.fromEntries(EVENT_KINDS.map((k) => [k, state])) as Record<EventKind, ReplicationState>;

const CASES: Case[] = [
  {
    name: 'initializing, before start',
    via: [],
    state: 'initializing',
    next: {
      started: 'idle',
      held: 'initializing',
      released: 'initializing',
      copy_running: 'initializing',
      copy_finished: 'initializing',
      work_pending: 'initializing',
      all_delivered: 'initializing',
      retry_scheduled: 'initializing',
      retry_made: 'initializing',
      suspended: 'suspended',
      resumed: 'initializing',
      mode_enabled: 'initializing',
      mode_paused: 'paused',
      mode_disabled: 'paused',
      completed: 'completed',
    },
  },
  {
    name: 'initializing, copying with work pending',
    via: ev('copy_running', 'work_pending', 'started'),
    state: 'initializing',
    next: {
      started: 'initializing',
      held: 'initializing',
      released: 'initializing',
      copy_running: 'initializing',
      copy_finished: 'replicating',
      work_pending: 'initializing',
      all_delivered: 'initializing',
      retry_scheduled: 'retrying',
      retry_made: 'initializing',
      suspended: 'suspended',
      resumed: 'initializing',
      mode_enabled: 'initializing',
      mode_paused: 'paused',
      mode_disabled: 'paused',
      completed: 'completed',
    },
  },
  {
    name: 'initializing, held with nothing pending',
    via: ev('held', 'started'),
    state: 'initializing',
    next: {
      started: 'initializing',
      held: 'initializing',
      released: 'idle',
      copy_running: 'initializing',
      copy_finished: 'initializing',
      work_pending: 'initializing',
      all_delivered: 'initializing',
      retry_scheduled: 'retrying',
      retry_made: 'initializing',
      suspended: 'suspended',
      resumed: 'initializing',
      mode_enabled: 'initializing',
      mode_paused: 'paused',
      mode_disabled: 'paused',
      completed: 'completed',
    },
  },
  {
    name: 'replicating',
    via: ev('work_pending', 'started'),
    state: 'replicating',
    next: {
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
  },
  {
    name: 'idle',
    via: ev('started'),
    state: 'idle',
    next: {
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
  },
  {
    name: 'retrying with work pending',
    via: ev('started', 'work_pending', 'retry_scheduled'),
    state: 'retrying',
    next: {
      ...all('retrying'),
      retry_made: 'replicating',
      suspended: 'suspended',
      mode_paused: 'paused',
      mode_disabled: 'paused',
      completed: 'completed',
    },
  },
  {
    name: 'retrying during a copy',
    via: ev('started', 'copy_running', 'retry_scheduled'),
    state: 'retrying',
    next: {
      ...all('retrying'),
      retry_made: 'initializing',
      suspended: 'suspended',
      mode_paused: 'paused',
      mode_disabled: 'paused',
      completed: 'completed',
    },
  },
  {
    name: 'paused with work pending',
    via: ev('started', 'work_pending', 'mode_paused'),
    state: 'paused',
    next: { ...all('paused'), suspended: 'suspended', mode_enabled: 'replicating', completed: 'completed' },
  },
  {
    name: 'paused before start (a mode restored from the definition)',
    via: ev('mode_paused'),
    state: 'paused',
    next: { ...all('paused'), suspended: 'suspended', mode_enabled: 'initializing', completed: 'completed' },
  },
  {
    name: 'disabled and suspended',
    via: ev('started', 'suspended', 'mode_disabled'),
    state: 'paused',
    next: { ...all('paused'), mode_enabled: 'suspended', mode_paused: 'suspended', completed: 'completed' },
  },
  {
    name: 'suspended with work pending',
    via: ev('started', 'work_pending', 'suspended'),
    state: 'suspended',
    next: { ...all('suspended'), resumed: 'replicating', mode_disabled: 'paused', completed: 'completed' },
  },
  {
    name: 'suspended while paused',
    via: ev('started', 'mode_paused', 'suspended'),
    state: 'suspended',
    next: { ...all('suspended'), resumed: 'paused', mode_disabled: 'paused', completed: 'completed' },
  },
  {
    name: 'suspended before start (restored from the checkpoint)',
    via: ev('suspended'),
    state: 'suspended',
    next: { ...all('suspended'), resumed: 'initializing', mode_disabled: 'paused', completed: 'completed' },
  },
  {
    name: 'completed',
    via: ev('started', 'completed'),
    state: 'completed',
    next: all('completed'),
  },
];

test('state machine: every state × every event leads where the rules say, ignored pairs announce nothing', () => {
  const covered = new Set<string>();
  for (const c of CASES) {
    for (const kind of EVENT_KINDS) {
      const seen: Transition[] = [];
      const m = new StateMachine((t) => seen.push(t), new ManualClock(0));
      m.send(...c.via);
      assert.equal(m.state, c.state, `${c.name}: reached by its events`);
      const before = seen.length;
      m.send(EVENT[kind]);
      const what = `${c.name} + ${kind}`;
      assert.equal(m.state, c.next[kind], what);
      assert.equal(seen.length - before, c.next[kind] === c.state ? 0 : 1, `${what}: announcements`);
      covered.add(`${c.state}/${kind}`);
    }
  }
  // the table has a cell for every pair, and every pair was exercised
  assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...STATES].sort());
  for (const s of STATES) assert.deepEqual(Object.keys(TRANSITIONS[s]).sort(), [...EVENT_KINDS].sort(), s);
  assert.equal(covered.size, STATES.length * EVENT_KINDS.length);
});

test('state machine: reasons of each state', () => {
  const m = new StateMachine(
    () => undefined,
    new ManualClock(0),
    (s) => s.slice(0, 20),
  );
  assert.equal(m.reason, null);
  m.send(...ev('copy_running', 'started'));
  assert.deepEqual([m.state, m.reason], ['initializing', 'initial copy: 0 of 2']);
  m.send(...ev('held'));
  assert.equal(m.reason, 'checking base', 'a hold shows before the copy');
  m.send(...ev('retry_scheduled'));
  assert.deepEqual([m.state, m.reason], ['retrying', 'HTTP 503']);
  m.send({ kind: 'retry_scheduled', error: null });
  assert.deepEqual([m.state, m.reason], ['retrying', null]);
  m.send(...ev('suspended'));
  assert.deepEqual([m.state, m.reason], ['suspended', 'HTTP 409']);
  m.send(...ev('mode_disabled'));
  assert.deepEqual([m.state, m.reason], ['paused', 'mode is disabled']);
  m.send(...ev('resumed', 'mode_paused'));
  assert.deepEqual([m.state, m.reason], ['paused', 'mode is paused']);
  m.send(...ev('mode_enabled', 'released', 'copy_finished'));
  assert.deepEqual([m.state, m.reason], ['idle', null]);
  m.send(...ev('completed'));
  assert.deepEqual([m.state, m.reason], ['completed', 'one-shot run deliver']);
});

/** The rules as a precedence over facts, written independently of the machine. */
interface Facts {
  started: boolean;
  mode: string;
  held: string | null;
  copy: string | null;
  busy: boolean;
  retry: string | null | undefined;
  suspended: string | null;
  completed: boolean;
}

function expected(f: Facts): { state: ReplicationState; reason: string | null } {
  if (f.completed) return { state: 'completed', reason: 'one-shot run delivered everything it covers' };
  if (f.mode === 'disabled') return { state: 'paused', reason: 'mode is disabled' };
  if (f.suspended !== null) return { state: 'suspended', reason: f.suspended };
  if (f.mode === 'paused') return { state: 'paused', reason: 'mode is paused' };
  if (!f.started) return { state: 'initializing', reason: null };
  if (f.retry !== undefined) return { state: 'retrying', reason: f.retry };
  if (f.held !== null || f.copy !== null) return { state: 'initializing', reason: f.held ?? f.copy };
  return { state: f.busy ? 'replicating' : 'idle', reason: null };
}

function learn(f: Facts, e: StateEvent): void {
  if (e.kind === 'started') f.started = true;
  else if (e.kind === 'held') f.held = e.reason;
  else if (e.kind === 'released') f.held = null;
  else if (e.kind === 'copy_running') f.copy = e.doing;
  else if (e.kind === 'copy_finished') f.copy = null;
  else if (e.kind === 'work_pending') f.busy = true;
  else if (e.kind === 'all_delivered') f.busy = false;
  else if (e.kind === 'retry_scheduled') f.retry = e.error;
  else if (e.kind === 'retry_made') f.retry = undefined;
  else if (e.kind === 'suspended') [f.suspended, f.retry] = [e.reason, undefined];
  else if (e.kind === 'resumed') f.suspended = null;
  else if (e.kind === 'completed') f.completed = true;
  else f.mode = e.kind.slice('mode_'.length);
}

test('state machine: a seeded random walk agrees with the precedence of facts; one announcement per net transition', () => {
  const random = seededRandom('state-machine walk');
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  for (let walk = 0; walk < 200; walk++) {
    const clock = new ManualClock(0);
    const seen: Transition[] = [];
    const m = new StateMachine((t) => seen.push(t), clock);
    const f: Facts = {
      started: false,
      mode: 'enabled',
      held: null,
      copy: null,
      busy: false,
      retry: undefined,
      suspended: null,
      completed: false,
    };
    let shown: ReplicationState = 'initializing';
    let since = 0;
    // completion is rare, so that walks spend their steps in the other states
    const kinds = EVENT_KINDS.filter((k) => k !== 'completed' || random() < 0.3);
    for (let i = 0; i < 60; i++) {
      clock.advance(1 + Math.floor(random() * 100));
      const batch: StateEvent[] = [];
      const n = random() < 0.7 ? 1 : 2 + Math.floor(random() * 3);
      for (let j = 0; j < n; j++) {
        const kind = pick(kinds);
        const e: StateEvent =
          kind === 'retry_scheduled'
            ? { kind, error: random() < 0.2 ? null : `HTTP 50${j}` }
            : kind === 'suspended'
              ? { kind, reason: `HTTP 4${i}` }
              : kind === 'copy_running'
                ? { kind, doing: `copy ${i}` }
                : EVENT[kind];
        batch.push(e);
        learn(f, e);
      }
      const before = seen.length;
      if (random() < 0.5) m.send(...batch);
      else m.atOnce(() => batch.forEach((e) => m.send(e)));
      const want = expected(f);
      const where = `walk ${walk} step ${i} after ${batch.map((e) => e.kind).join(',')} (${REPLAY})`;
      assert.deepEqual({ state: m.state, reason: m.reason }, want, where);
      if (want.state === shown) assert.equal(seen.length, before, `${where}: nothing announced`);
      else {
        assert.equal(seen.length, before + 1, `${where}: one announcement`);
        const t = seen[seen.length - 1]!;
        assert.deepEqual(
          [t.from, t.to, t.reason, t.at],
          [shown, want.state, want.reason, new Date(clock.now()).toISOString()],
          where,
        );
        [shown, since] = [want.state, clock.now()];
      }
      assert.equal(m.since, since, where);
    }
  }
});

test('state machine: reading changes nothing; since comes from the clock; a moment that returns to its state announces nothing', () => {
  const clock = new ManualClock(1000);
  const seen: Transition[] = [];
  const m = new StateMachine((t) => seen.push(t), clock);
  assert.equal(m.since, 1000);
  clock.advance(50);
  m.send(...ev('started'));
  assert.deepEqual([seen.length, m.state, m.since], [1, 'idle', 1050]);
  clock.advance(100);
  for (let i = 0; i < 3; i++)
    assert.deepEqual([m.state, m.reason, m.since, seen.length], ['idle', null, 1050, 1]);
  // work that arrives and is delivered within one moment: no transition, since unchanged
  m.atOnce(() => {
    m.send(...ev('work_pending'));
    assert.equal(m.state, 'replicating');
    m.send(...ev('all_delivered'));
  });
  assert.deepEqual([seen.length, m.state, m.since], [1, 'idle', 1050]);
  // restarts, with the events in the order the task sends them (mode, hold, suspension, copy,
  // completion, work, started): one transition each, not via the states in between
  const restarts: Array<[StateEvent[], Array<[ReplicationState, string | null]>]> = [
    [ev('mode_paused', 'suspended', 'copy_running', 'work_pending', 'started'), [['suspended', 'HTTP 409']]],
    [
      ev('mode_paused', 'copy_running', 'completed', 'all_delivered', 'started'),
      [['completed', 'one-shot run delivered everything it covers']],
    ],
    [ev('mode_enabled', 'copy_running', 'work_pending', 'started'), [['initializing', COPY]]],
  ];
  for (const [events, want] of restarts) {
    const seenAgain: Transition[] = [];
    const again = new StateMachine((t) => seenAgain.push(t), clock);
    again.send(...events);
    assert.deepEqual(
      seenAgain.map((t) => [t.to, t.reason]),
      want.filter(([to]) => to !== 'initializing'),
      events.map((e) => e.kind).join(','),
    );
    assert.equal(again.state, want[0]![0]);
    // a completed one-shot stays completed whatever follows
    again.send(...ev('resumed', 'retry_scheduled', 'mode_enabled', 'work_pending'));
    if (want[0]![0] === 'completed') assert.equal(again.state, 'completed');
  }
});

test('delivery health reports each retry and suspension change as its events, those of one change at once', () => {
  const clock = new ManualClock(0);
  const reports: EventKind[][] = [];
  const h = new DeliveryHealth(clock, (...e) => reports.push(e.map((x) => x.kind)));
  const retry = { initial_ms: 100, max_ms: 1000, max_outage_ms: 1000 };
  assert.equal(h.failed({ status: 503, message: 'down' }, retry), null);
  h.note(-1, 'checkpoint write failed'); // the scheduled retry now shows this error
  h.retryMade();
  h.note(-1, 'no retry scheduled: nothing to report');
  h.suspend('HTTP 409');
  h.resume();
  assert.equal(h.failed({ status: 503, message: 'down' }, retry), null);
  clock.advance(2000);
  // past max_outage_ms: no retry is scheduled, the caller suspends
  assert.match(h.failed({ status: 503, message: 'down' }, retry) ?? '', /unavailable/);
  assert.deepEqual(reports, [
    ['retry_scheduled'],
    ['retry_scheduled'],
    ['retry_made'],
    ['suspended'],
    ['resumed'], // a resumed suspension has not failed again: no retry shown until one fails
    ['retry_scheduled'],
  ]);
});

forEachTarget(
  'a PATCH that enables a disabled, suspended replication goes from paused to work at once (no suspended in between)',
  async (env) => {
    await env.dst.createBucket('dst');
    await writeText(env.dst, 'dst', 'e', 1n, 'different');
    await env.replicate('r');
    await writeText(env.storage, 'src', 'e', 1n, 'original');
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended' });
    await env.manager.setMode('r', { mode: 'disabled' });
    assert.equal(statusOf(env.manager, 'r').state, 'paused');
    const seen: Array<[string, string]> = [];
    const off = env.manager.subscribe('r', (e: TaskEvent) => e.type === 'state' && seen.push([e.from, e.to]));
    await env.manager.setMode('r', { mode: 'enabled' });
    // the conflict is still there: the retry refuses it again
    await waitFor(() => statusOf(env.manager, 'r').state === 'suspended', { message: 'suspended again' });
    off();
    // resumed, it works again (it has not failed since: not 'retrying'), then meets the conflict
    assert.deepEqual(seen[0], ['paused', 'replicating']);
    assert.equal(seen[seen.length - 1]![1], 'suspended');
    assert.match(statusOf(env.manager, 'r').state_reason ?? '', /409/);
  },
);
