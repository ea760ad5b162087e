/**
 * Bucket API (api.md §7) and size accounting (§3.9, §3.10) through reduct-js and raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, QuotaType } from 'reduct-js';
import { parseJson } from '../src/protocol/json.js';
import type { RunningFerry } from '../src/server.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-buckets-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;

before(async () => {
  server = await startTestServer('api-buckets', TOKEN, {
    RS_BUCKET_1_NAME: 'provisioned',
    RS_BUCKET_1_QUOTA_TYPE: 'FIFO',
    RS_BUCKET_1_QUOTA_SIZE: '1MB',
  });
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;
const headers = { authorization: `Bearer ${TOKEN}` };

async function getJson(path: string): Promise<Record<string, unknown>> {
  const res = await fetch(api(path), { headers });
  assert.equal(res.status, 200, `GET ${path}: ${res.headers.get('x-reduct-error')}`);
  return parseJson(await res.text()) as Record<string, unknown>;
}

test('the §7.2 example: sizes 90/127/217 and block_count 1', async () => {
  const bucket = await client.createBucket('bucket', { maxBlockRecords: 256n });
  const w1 = await bucket.beginWrite('entry-1', {
    ts: 1_000_000n,
    labels: { label1: 'label1', label2: 100, label3: true },
  });
  await w1.write('somedata1');
  for (const ts of [2_000_000n, 3_000_000n, 4_000_000n]) {
    await (await bucket.beginWrite('entry-2', ts)).write('somedata1');
  }
  const json = await getJson('b/bucket');
  assert.deepEqual(json, {
    info: {
      name: 'bucket',
      entry_count: 2,
      size: 217,
      oldest_record: 1000000,
      latest_record: 4000000,
      is_provisioned: false,
      status: 'READY',
    },
    settings: { quota_type: 'NONE', quota_size: 0, max_block_size: 64000000, max_block_records: 256 },
    entries: [
      {
        name: 'entry-1',
        size: 90,
        record_count: 1,
        block_count: 1,
        oldest_record: 1000000,
        latest_record: 1000000,
        status: 'READY',
      },
      {
        name: 'entry-2',
        size: 127,
        record_count: 3,
        block_count: 1,
        oldest_record: 2000000,
        latest_record: 4000000,
        status: 'READY',
      },
    ],
  });
  const info = await client.getInfo();
  assert.ok(info.usage >= 217n);
});

test('sizes 40 / 43 / 83 and 82 (§3.9 worked checks 1–3)', async () => {
  const b = await client.createBucket('sizes');
  await (await b.beginWrite('a', 1_000_000n)).write('somedata');
  await (await b.beginWrite('b', 2_000_000n)).write('somedata123');
  let json = await getJson('b/sizes');
  const entries = json.entries as Array<{ name: string; size: number }>;
  assert.deepEqual(
    entries.map((e) => [e.name, e.size]),
    [
      ['a', 40],
      ['b', 43],
    ],
  );
  assert.equal((json.info as { size: number }).size, 83);
  await (await b.beginWrite('a', 2_000_000n)).write('somedata');
  json = await getJson('b/sizes');
  assert.equal((json.entries as Array<{ size: number }>)[0]!.size, 82);
});

test('create / settings / partial update / errors', async () => {
  await client.createBucket('settings-b', { quotaType: QuotaType.FIFO, quotaSize: 1000n });
  await assert.rejects(
    client.createBucket('settings-b'),
    (e: { status: number; message: string }) =>
      e.status === 409 && e.message === "Bucket 'settings-b' already exists",
  );
  const b = await client.getBucket('settings-b');
  await b.setSettings({ maxBlockSize: 5000n });
  const s = await b.getSettings();
  assert.equal(s.quotaType, QuotaType.FIFO);
  assert.equal(s.quotaSize, 1000n);
  assert.equal(s.maxBlockSize, 5000n);

  let res = await fetch(api('b/bad'), { method: 'POST', headers, body: 'xxx' });
  assert.equal(res.status, 422);
  res = await fetch(api('b/bad'), { method: 'POST', headers, body: '{"quota_type": "UNKNOWN"}' });
  assert.equal(res.status, 422);
  res = await fetch(api('b/bad'), { method: 'POST', headers, body: '{"quota_type": null}' });
  assert.equal(res.status, 200);
  res = await fetch(api('b/bad.name'), { method: 'POST', headers });
  assert.equal(res.status, 422);
  assert.equal(
    res.headers.get('x-reduct-error'),
    'Bucket or entry name can contain only letters, digests and [-,_] symbols',
  );
  res = await fetch(api('b/missing'), { headers });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-reduct-error'), "Bucket 'missing' is not found");
  res = await fetch(api('b/missing'), { method: 'HEAD', headers });
  assert.equal(res.status, 404);
  res = await fetch(api('b/settings-b'), { method: 'HEAD', headers });
  assert.equal(res.status, 200);
});

test('provisioned buckets cannot be changed, removed or renamed (409)', async () => {
  const json = await getJson('b/provisioned');
  assert.equal((json.info as { is_provisioned: boolean }).is_provisioned, true);
  assert.equal((json.settings as { quota_type: string }).quota_type, 'FIFO');
  for (const [method, path, body] of [
    ['PUT', 'b/provisioned', '{}'],
    ['DELETE', 'b/provisioned', undefined],
    ['PUT', 'b/provisioned/rename', '{"new_name": "other"}'],
  ] as const) {
    const res = await fetch(api(path), { method, headers, body });
    assert.equal(res.status, 409, `${method} ${path}`);
  }
});

test('delete is asynchronous and updates token permissions; rename too', async () => {
  await client.createBucket('to-delete');
  await client.createBucket('to-rename');
  await client.createToken('perm', {
    permissions: { fullAccess: false, read: ['to-delete', 'to-rename'], write: ['to-rename'] },
  });
  const b = await client.getBucket('to-delete');
  await b.remove();
  const after = await fetch(api('b/to-delete'), { headers });
  assert.ok(after.status === 404 || after.status === 409, `status ${after.status}`);
  await waitFor(async () => !(await client.getBucketList()).some((x) => x.name === 'to-delete'), {
    message: "'to-delete' to leave the bucket list",
  });
  assert.ok(!(await client.getBucketList()).some((x) => x.name === 'to-delete'));

  await (await client.getBucket('to-rename')).rename('renamed');
  const res = await fetch(api('b/to-rename'), { headers });
  assert.equal(res.status, 404);
  await client.getBucket('renamed');
  const token = await client.getToken('perm');
  assert.deepEqual(token.permissions?.read, ['renamed']);
  assert.deepEqual(token.permissions?.write, ['renamed']);
});
