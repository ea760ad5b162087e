/**
 * Replication API wire surface (api.md §17) through reduct-js and raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ReplicationMode } from 'reduct-js';
import { parseJson } from '../src/protocol/json.js';
import type { RunningFerry } from '../src/server.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

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
  res = await fetch(api('replications/r1'), { headers });
  const full = parseJson(await res.text()) as Record<string, unknown>;
  // The compatible keys, plus Ferry's own `status` object; nothing else.
  assert.deepEqual(Object.keys(full).sort(), ['diagnostics', 'info', 'settings', 'status']);
  const { status: _status, ...compatible } = full;
  // api.md §17.3/§17.5: a new enabled task is active until something has actually been tried.
  assert.deepEqual(compatible, {
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
