/**
 * Replication API wire surface (api.md §17) through reduct-js and raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ReplicationMode } from 'reduct-js';
import { parseJson } from '../src/protocol/json.js';
import type { RunningFerry } from '../src/server.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-replications-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;

before(async () => {
  server = await startTestServer('api-repl', TOKEN);
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
  await client.createBucket('src');
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;
const headers = { authorization: `Bearer ${TOKEN}` };

/** Every key path of a JSON value (`a.b`, arrays as `[]`); `when` and `errors` maps are user data. */
function keyPaths(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x) => keyPaths(x, `${at}[]`));
  if (v === null || typeof v !== 'object') return [];
  return Object.entries(v).flatMap(([k, x]) => {
    const path = at === '' ? k : `${at}.${k}`;
    return [path, ...(k === 'when' || k === 'errors' ? [] : keyPaths(x, path))];
  });
}

const INFO_KEYS = ['is_active', 'is_provisioned', 'mode', 'name', 'pending_records'];
/** The key paths of ReductStore 1.21's `GET /replications/{name}` (api.md §17.1, §17.3–§17.5). */
const DETAIL_KEYS = [
  'diagnostics',
  'diagnostics.hourly',
  'diagnostics.hourly.errored',
  'diagnostics.hourly.errors',
  'diagnostics.hourly.ok',
  'info',
  ...INFO_KEYS.map((k) => `info.${k}`),
  'settings',
  ...[
    'compression',
    'dst_bucket',
    'dst_host',
    'dst_prefix',
    'dst_token',
    'entries',
    'mode',
    'src_bucket',
    'when',
  ].map((k) => `settings.${k}`),
].sort();
const LIST_KEYS = ['replications', ...INFO_KEYS.map((k) => `replications[].${k}`)].sort();

async function getJson(path: string): Promise<unknown> {
  const res = await fetch(api(path), { headers });
  assert.equal(res.status, 200, String(res.headers.get('x-reduct-error')));
  return parseJson(await res.text());
}

/** Asserts that the compatible GETs of `name` have exactly ReductStore's keys. */
async function assertCompatibleKeys(name: string): Promise<void> {
  assert.deepEqual([...new Set(keyPaths(await getJson(`replications/${name}`)))].sort(), DETAIL_KEYS);
  assert.deepEqual([...new Set(keyPaths(await getJson('replications')))].sort(), LIST_KEYS);
}

test('create → exact GET shape (§17.5), list, mode, delete', async () => {
  let res = await fetch(api('replications/r1'), {
    method: 'POST',
    headers,
    body: JSON.stringify({
      src_bucket: 'src',
      dst_bucket: 'dst_bucket',
      dst_host: 'http://localhost:9000',
      entries: ['entry1', 'entry2'],
      when: { $eq: ['&key1', 'value1'], $each_n: 10 },
      compression: 'zstd',
    }),
  });
  assert.equal(res.status, 200, String(res.headers.get('x-reduct-error')));
  // api.md §17.3/§17.5: a new enabled task is active until something has actually been tried.
  assert.deepEqual(await getJson('replications/r1'), {
    diagnostics: { hourly: { errored: 0, errors: {}, ok: 0 } },
    info: { is_active: true, is_provisioned: false, name: 'r1', mode: 'enabled', pending_records: 0 },
    settings: {
      src_bucket: 'src',
      dst_bucket: 'dst_bucket',
      dst_host: 'http://localhost:9000',
      dst_prefix: '',
      dst_token: null,
      entries: ['entry1', 'entry2'],
      when: { $eq: ['&key1', 'value1'], $each_n: 10 },
      mode: 'enabled',
      compression: 'zstd',
    },
  });
  assert.deepEqual(await getJson('replications'), {
    replications: [
      { name: 'r1', mode: 'enabled', is_active: true, is_provisioned: false, pending_records: 0 },
    ],
  });

  const list = await client.getReplicationList();
  assert.deepEqual(
    list.map((r) => r.name),
    ['r1'],
  );
  await client.setReplicationMode('r1', ReplicationMode.PAUSED);
  assert.equal((await client.getReplication('r1')).info.mode, ReplicationMode.PAUSED);

  res = await fetch(api('replications/r1'), {
    method: 'POST',
    headers,
    body: '{"src_bucket": "src", "dst_bucket": "x", "dst_host": "http://h"}',
  });
  assert.equal(res.status, 409);
  assert.equal(res.headers.get('x-reduct-error'), "Replication 'r1' already exists");
  await client.deleteReplication('r1');
  res = await fetch(api('replications/r1'), { headers });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-reduct-error'), "Replication 'r1' does not exist");
});

test('the compatible GETs have no extra key, whatever Ferry settings and state a replication has', async () => {
  // every Ferry extension set, a token, and a destination that refuses: errors, retries, pending work
  await client.createBucket('keys-src');
  const res = await fetch(api('replications/rich'), {
    method: 'POST',
    headers,
    body: JSON.stringify({
      src_bucket: 'keys-src',
      dst_bucket: 'keys-dst',
      dst_host: 'http://127.0.0.1:1',
      dst_token: 'a-secret-token',
      dst_prefix: 'robot',
      create_target: true,
      target_settings: { quota_type: 'FIFO', quota_size: 1_000_000, max_block_records: 16 },
      batch: { max_records: 10, max_in_flight: 2 },
      retry: { initial_ms: 10, max_ms: 20 },
      on_write_failure: 'skip',
      log: { max_bytes: 1_000_000, on_overflow: 'block' },
      replication_type: 'async',
      continuous: true,
    }),
  });
  assert.equal(res.status, 200, String(res.headers.get('x-reduct-error')));
  const bucket = await client.getBucket('keys-src');
  const w = await bucket.beginWrite('e', { ts: 1n, labels: { a: '1' } });
  await w.write('x');
  await waitFor(
    async () => {
      const d = (await getJson('replications/rich')) as { diagnostics: { hourly: { errored: number } } };
      return d.diagnostics.hourly.errored > 0;
    },
    { timeoutMs: 20_000, message: 'a failed attempt in the diagnostics' },
  );
  await assertCompatibleKeys('rich');
  const detail = (await getJson('replications/rich')) as { info: Record<string, unknown> };
  assert.equal(detail.info.pending_records, 1);

  // reduct-js 1.20.0 reads the same values
  const viaSdk = await client.getReplication('rich');
  assert.equal(viaSdk.info.pendingRecords, 1n);
  assert.equal(viaSdk.info.isProvisioned, false);
  assert.equal(viaSdk.settings.dstBucket, 'keys-dst');
  assert.equal(viaSdk.settings.dstToken, null, 'masked');
  assert.ok(viaSdk.diagnostics.hourly.errored > 0);
  const listed = await client.getReplicationList();
  assert.deepEqual(
    listed.map((r) => [r.name, r.pendingRecords]),
    [['rich', 1n]],
  );

  // Ferry's view is in the status route, still without the token
  const st = (await getJson('replications/rich/status')) as { settings: Record<string, unknown> };
  assert.equal(st.settings.on_write_failure, 'skip');
  assert.deepEqual(st.settings.target_settings, {
    quota_type: 'FIFO',
    quota_size: 1_000_000,
    max_block_records: 16,
  });
  assert.equal(st.settings.dst_token, null);
  await client.deleteReplication('rich');
});

test('validation errors: missing source bucket, self loop', async () => {
  let res = await fetch(api('replications/r2'), {
    method: 'POST',
    headers,
    body: '{"src_bucket": "nope", "dst_bucket": "d", "dst_host": "http://localhost:9000"}',
  });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-reduct-error'), "Source bucket 'nope' for replication 'r2' does not exist");
  res = await fetch(api('replications/r2'), {
    method: 'POST',
    headers,
    body: JSON.stringify({
      src_bucket: 'src',
      dst_bucket: 'src',
      dst_host: `http://127.0.0.1:${ferry.port}`,
    }),
  });
  assert.equal(res.status, 422);
  assert.equal(res.headers.get('x-reduct-error'), 'Source and destination buckets must be different');
});
