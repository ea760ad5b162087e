/**
 * Monitoring routes on a real server process (replication.md §9): `GET /replications/{name}/status`
 * (Ferry's rich status, throughput windows, no credentials) and `GET /active_tasks`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ActiveTasks, ReplicationStatus } from '../src/protocol/replication-status.js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import { api, call } from './helpers/ferry-api.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-monitoring-token';
let ferry: FerryProcess;

before(async () => {
  ferry = await spawnFerry({ token: TOKEN, env: { FERRY_DURABILITY: 'none' } });
  await api(ferry, 'POST', '/b/src');
});
after(() => ferry?.destroy());

const status = async (name: string): Promise<ReplicationStatus> =>
  (await api(ferry, 'GET', `/replications/${name}/status`)) as ReplicationStatus;

let nextTs = 1_000_000;
async function writeRecords(entry: string, n: number, size: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await call(ferry, 'POST', `/b/src/${entry}?ts=${nextTs++}`, Buffer.alloc(size, 65));
    assert.equal(r.status, 200, String(r.error));
  }
}

test('status: counters, pending, throughput windows and times of a local replication', async () => {
  await api(ferry, 'POST', '/replications/local', { src_bucket: 'src', dst_bucket: 'dst', dst_host: '' });
  // the monitor's first sight of a replication is its first counter sample
  assert.equal((await status('local')).counters.records_written, 0);
  await writeRecords('cam', 20, 100);
  const st = await waitFor(
    async () => {
      const s = await status('local');
      return s.counters.records_written === 20 && s.pending_records === 0 ? s : false;
    },
    { timeoutMs: 30_000, message: 'local replication to deliver 20 records' },
  );
  assert.equal(st.name, 'local');
  assert.equal(st.mode, 'enabled');
  assert.equal(st.continuous, true);
  assert.equal(st.is_active, true);
  assert.deepEqual(st.source, { bucket: 'src', entries: [] });
  assert.equal(st.destination.host, '');
  assert.equal(st.destination.bucket, 'dst');
  assert.equal(st.counters.bytes_written, 2000);
  assert.equal(st.filter, null);
  // delivered within the last 10 s: both windows see the 20 records
  assert.ok(st.throughput.last_10s.records_per_sec > 0, JSON.stringify(st.throughput));
  assert.ok(st.throughput.last_1m.records_per_sec > 0, JSON.stringify(st.throughput));
  // every record has 100 bytes (rates are rounded to 0.01)
  const { records_per_sec: rps, bytes_per_sec: bps } = st.throughput.last_10s;
  assert.ok(Math.abs(bps - rps * 100) <= 1, JSON.stringify(st.throughput));
  assert.ok(Date.parse(st.started_at) <= Date.parse(st.updated_at));
  assert.ok(Date.parse(st.updated_at) <= Date.now());
  // every field of replication.md §9, plus throughput windows and the log position
  for (const key of [
    'state',
    'state_reason',
    'since',
    'effective_type',
    'counters',
    'pending_records',
    'pending_bytes',
    'lag_ms',
    'throughput',
    'retries',
    'consecutive_failures',
    'last_error',
    'next_retry_at',
    'cursor_lsn',
    'log_last_lsn',
    'continuous',
    'source',
    'destination',
    'filter',
    'settings',
    'started_at',
    'updated_at',
  ]) {
    assert.ok(key in st, `status has '${key}'`);
  }
  for (const key of [
    'records_read',
    'bytes_read',
    'records_written',
    'bytes_written',
    'records_already_present',
  ]) {
    assert.equal(typeof st.counters[key as keyof typeof st.counters], 'number', key);
  }
  for (const key of ['records_filtered', 'records_failed']) assert.ok(key in st.counters, key);
  assert.deepEqual(Object.keys(st.throughput.last_1m).sort(), ['bytes_per_sec', 'records_per_sec']);
  assert.equal(st.effective_type, 'async');
  assert.equal(st.settings.dst_token, null);
  assert.equal(st.settings.src_bucket, 'src');
  // the compatible route agrees and carries none of it
  const compat = (await api(ferry, 'GET', '/replications/local')) as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(compat).sort(), ['diagnostics', 'info', 'settings']);
  assert.equal(compat.info!.pending_records, st.pending_records);
  assert.ok(BigInt(st.log_last_lsn) >= BigInt(st.cursor_lsn), 'log position at or after the cursor');
});

test('status and active_tasks never show credentials; disabled replications are not active', async () => {
  await api(ferry, 'POST', '/replications/remote', {
    src_bucket: 'src',
    dst_bucket: 'far',
    // (user info in dst_host is refused at creation: test/hostile-ferry-routes.test.ts)
    dst_host: 'http://127.0.0.1:1/base/?token=leak',
    dst_token: 'secret-dst-token',
    entries: ['cam'],
    retry: { initial_ms: 50, max_ms: 100 },
  });
  await api(ferry, 'POST', '/replications/off', {
    src_bucket: 'src',
    dst_bucket: 'off',
    dst_host: '',
    mode: 'disabled',
  });
  await writeRecords('cam', 1, 10);
  const st = await waitFor(
    async () => ((await status('remote')).state === 'retrying' ? status('remote') : false),
    {
      timeoutMs: 30_000,
      message: 'the unreachable replication to retry',
    },
  );
  assert.equal(st.destination.host, 'http://127.0.0.1:1/base');
  assert.deepEqual(st.source, { bucket: 'src', entries: ['cam'] });
  assert.ok(st.last_error !== null);
  assert.ok(st.pending_records >= 1);

  const r = await call(ferry, 'GET', '/active_tasks');
  assert.equal(r.status, 200);
  for (const secret of ['secret-dst-token', 'leak']) {
    assert.ok(!r.text.includes(secret), `active_tasks shows '${secret}'`);
    assert.ok(
      !JSON.stringify(st, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes(secret),
    );
  }
  const tasks = (r.json as ActiveTasks).tasks;
  assert.deepEqual(
    tasks.map((t) => t.name),
    ['local', 'remote'],
  );
  const remote = tasks.find((t) => t.name === 'remote')!;
  assert.equal(remote.type, 'replication');
  assert.equal(remote.state, 'retrying');
  assert.equal(remote.continuous, true);
  assert.deepEqual(remote.destination, { host: 'http://127.0.0.1:1/base', bucket: 'far', prefix: '' });
  assert.ok(remote.pending_records >= 1);
  assert.ok(!Number.isNaN(Date.parse(remote.started_on)) && !Number.isNaN(Date.parse(remote.updated_on)));
  assert.equal(typeof remote.counters.records_written, 'number');

  await api(ferry, 'PATCH', '/replications/off/mode', { mode: 'enabled' });
  const names = ((await api(ferry, 'GET', '/active_tasks')) as ActiveTasks).tasks.map((t) => t.name);
  assert.deepEqual(names, ['local', 'off', 'remote']);
});

test('errors: unknown replication 404, no token 401', async () => {
  let r = await call(ferry, 'GET', '/replications/nope/status');
  assert.equal(r.status, 404);
  assert.equal(r.error, "Replication 'nope' does not exist");
  r = await call(ferry, 'GET', '/active_tasks', undefined, { headers: { authorization: '' } });
  assert.equal(r.status, 401);
  r = await call(ferry, 'GET', '/replications/local/status', undefined, { headers: { authorization: '' } });
  assert.equal(r.status, 401);
});
