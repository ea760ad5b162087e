/**
 * `GET /api/v1/replications/{name}/events` on a real server process, read with a real EventSource
 * client (`eventsource`): the snapshot on connect, snapshots on change at most every interval_ms,
 * a state event on a transition, the end of the stream when the replication is removed, and the
 * refusals (422, 404, 401).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { parseJson } from '../src/protocol/json.js';
import type { ActiveTasks, ReplicationStatus, StateEvent } from '../src/protocol/replication-status.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-events-token';
let ferry: FerryProcess;

before(async () => {
  ferry = await spawnFerry({ token: TOKEN, env: { FERRY_DURABILITY: 'none' } });
  await api(ferry, 'POST', '/b/src');
});
after(() => ferry?.destroy());

interface Received {
  event: string;
  data: unknown;
  at: number;
}

/** An EventSource with the token, collecting every event it receives. */
function subscribe(path: string): { es: EventSource; got: Received[]; errors: number[] } {
  const got: Received[] = [];
  const errors: number[] = [];
  const es = new EventSource(`${ferry.url}/api/v1${path}`, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${TOKEN}` } }),
  });
  for (const event of ['status', 'state']) {
    es.addEventListener(event, (e) => got.push({ event, data: parseJson(e.data), at: Date.now() }));
  }
  es.addEventListener('error', (e) => errors.push((e as { code?: number }).code ?? 0));
  return { es, got, errors };
}

test('snapshot on connect, a state event on a transition, snapshots at most every interval_ms', async () => {
  await api(ferry, 'POST', '/replications/far', {
    src_bucket: 'src',
    dst_bucket: 'far',
    dst_host: 'http://127.0.0.1:1',
    retry: { initial_ms: 20, max_ms: 40 },
  });
  const sub = subscribe('/replications/far/events?interval_ms=500');
  try {
    const first = await waitFor(() => sub.got[0], { timeoutMs: 20_000, message: 'the first event' });
    assert.equal(first.event, 'status');
    const st = first.data as ReplicationStatus;
    assert.equal(st.name, 'far');
    assert.equal(st.state, 'idle');
    assert.equal(st.pending_records, 0);
    assert.deepEqual(st.source, { bucket: 'src', entries: [] });

    // a write to an unreachable destination: pending, then retrying (retries every 20-40 ms)
    const r = await call(ferry, 'POST', '/b/src/cam?ts=1', 'payload');
    assert.equal(r.status, 200);
    const state = await waitFor(
      () => sub.got.find((e) => e.event === 'state' && (e.data as StateEvent).to === 'retrying'),
      { timeoutMs: 20_000, message: 'a state event to retrying' },
    );
    const transition = state.data as StateEvent;
    assert.ok(['idle', 'replicating'].includes(transition.from), transition.from);
    assert.ok(!Number.isNaN(Date.parse(transition.at)));
    const pending = await waitFor(
      () =>
        sub.got.find(
          (e) =>
            e.event === 'status' && (e.data as ReplicationStatus).pending_records === 1 && e.at >= state.at,
        ),
      { timeoutMs: 20_000, message: 'a snapshot with the pending record' },
    );
    assert.equal((pending.data as ReplicationStatus).state, 'retrying');

    // the retries change the status all the time; snapshots still come at most every 500 ms
    const from = sub.got.length;
    const t0 = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const window = sub.got.slice(from).filter((e) => e.event === 'status');
    const elapsed = Date.now() - t0;
    assert.ok(window.length >= 2, `snapshots keep coming while retrying (${window.length})`);
    assert.ok(
      window.length <= Math.floor(elapsed / 500) + 1,
      `${window.length} snapshots in ${elapsed} ms with interval_ms=500`,
    );
    const retries = window.map((e) => (e.data as ReplicationStatus).retries);
    assert.ok(retries.at(-1)! > retries[0]!, 'snapshots carry the current figures');
  } finally {
    sub.es.close();
  }
});

test('removing the replication ends the stream; reconnecting gets a 404 and stops', async () => {
  await api(ferry, 'POST', '/replications/gone', { src_bucket: 'src', dst_bucket: 'gone', dst_host: '' });
  const sub = subscribe('/replications/gone/events?interval_ms=100');
  try {
    await waitFor(() => sub.got[0], { timeoutMs: 20_000, message: 'the first event' });
    await api(ferry, 'DELETE', '/replications/gone');
    await waitFor(() => sub.es.readyState === EventSource.CLOSED, {
      timeoutMs: 20_000,
      message: 'the EventSource to give up',
    });
    assert.ok(sub.errors.includes(404), `errors seen: ${sub.errors.join(',')}`);
  } finally {
    sub.es.close();
  }
});

test('refusals: interval_ms out of bounds 422, unknown replication 404, no token 401', async () => {
  await api(ferry, 'POST', '/replications/r', { src_bucket: 'src', dst_bucket: 'r', dst_host: '' });
  for (const bad of ['0', '99', '60001', 'abc', '1e3', '-5', '']) {
    const r = await call(ferry, 'GET', `/replications/r/events?interval_ms=${bad}`);
    assert.equal(r.status, 422, bad);
    assert.equal(r.error, "Invalid 'interval_ms': must be an integer between 100 and 60000");
  }
  let r = await call(ferry, 'GET', '/replications/nope/events');
  assert.equal(r.status, 404);
  assert.equal(r.error, "Replication 'nope' does not exist");
  r = await call(ferry, 'GET', '/replications/r/events', undefined, { headers: { authorization: '' } });
  assert.equal(r.status, 401);
});

test('a one-shot run: its copy is an active task with progress; the events stream ends on completed', async () => {
  await api(ferry, 'POST', '/b/runs');
  for (let ts = 1; ts <= 30; ts++)
    assert.equal((await call(ferry, 'POST', `/b/runs/e?ts=${ts}`, 'x')).status, 200);
  // a copy that cannot ship (unreachable destination) stays in the list with its progress
  await api(ferry, 'POST', '/replications/stuck', {
    src_bucket: 'runs',
    dst_bucket: 'stuck',
    dst_host: 'http://127.0.0.1:1',
    continuous: false,
    retry: { initial_ms: 20, max_ms: 40 },
  });
  const stuck = await waitFor(
    async () => {
      const t = ((await api(ferry, 'GET', '/active_tasks')) as ActiveTasks).tasks.find(
        (x) => x.name === 'stuck',
      );
      return t?.progress?.records_total === 30 ? t : false;
    },
    { timeoutMs: 20_000, message: 'the copy counted in active_tasks' },
  );
  assert.equal(stuck.type, 'replication');
  assert.equal(stuck.continuous, false);
  assert.ok(['initializing', 'retrying'].includes(stuck.state), stuck.state);
  assert.equal(stuck.progress?.records_done, 0);
  assert.deepEqual(stuck.destination, { host: 'http://127.0.0.1:1', bucket: 'stuck', prefix: '' });

  // a one-shot to this server, followed from before it starts until it completes
  await api(ferry, 'POST', '/replications/once', {
    src_bucket: 'runs',
    dst_bucket: 'once',
    dst_host: '',
    continuous: false,
    mode: 'paused',
    batch: { max_records: 5 },
  });
  const sub = subscribe('/replications/once/events?interval_ms=100');
  try {
    await waitFor(() => sub.got[0], { timeoutMs: 20_000, message: 'the first event' });
    await api(ferry, 'PATCH', '/replications/once/mode', { mode: 'enabled' });
    await waitFor(() => sub.es.readyState === EventSource.CLOSED, {
      timeoutMs: 30_000,
      message: `the stream to end after completed (${sub.got.map((e) => e.event).join(',')})`,
    });
    const states = sub.got.filter((e) => e.event === 'state').map((e) => (e.data as StateEvent).to);
    assert.equal(states.at(-1), 'completed', states.join(' → '));
    const last = sub.got.at(-1)!;
    assert.equal(last.event, 'status');
    const st = last.data as ReplicationStatus;
    assert.equal(st.state, 'completed');
    assert.equal(st.counters.records_written, 30);
    assert.equal(st.progress?.percent, 100);
    // progress only grows
    const done = sub.got
      .filter((e) => e.event === 'status')
      .map((e) => (e.data as ReplicationStatus).progress?.records_done ?? 0);
    assert.deepEqual(
      done,
      [...done].sort((a, b) => a - b),
    );
  } finally {
    sub.es.close();
  }
  const names = ((await api(ferry, 'GET', '/active_tasks')) as ActiveTasks).tasks.map((t) => t.name);
  assert.ok(!names.includes('once'), 'a completed run is not an active task');
  assert.ok(names.includes('stuck'));
});
