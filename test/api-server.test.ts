/**
 * Server API, tokens and cross-cutting HTTP behaviour (api.md §3, §5, §6) through reduct-js and
 * raw HTTP against a real in-process Ferry.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { Client } from 'reduct-js';
import type { RunningFerry } from '../src/server.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-server-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;

before(async () => {
  server = await startTestServer('api-server', TOKEN, {
    RS_CORS_ALLOW_ORIGIN: 'https://a.example, https://b.example',
    RS_INSTANCE_NAME: 'edge-01',
  });
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;
const auth = (token = TOKEN): Record<string, string> => ({ authorization: `Bearer ${token}` });

test('GET /info reports the exact ServerInfo keys and defaults', async () => {
  const res = await fetch(api('info'), { headers: auth() });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.equal(res.headers.get('x-reduct-api'), '1.21');
  assert.equal(res.headers.get('server'), 'ReductStore 1.21.0');
  assert.ok(res.headers.get('x-ferry-instance'));
  const text = await res.text();
  const info = JSON.parse(text) as Record<string, unknown>;
  assert.deepEqual(Object.keys(info).sort(), [
    'bucket_count',
    'defaults',
    'instance_name',
    'instance_role',
    'latest_record',
    'license',
    'oldest_record',
    // Ferry's own: storage health (checkpoint failures); the compatible keys are unchanged.
    'storage',
    'uptime',
    'usage',
    'version',
  ]);
  assert.deepEqual(info.storage, { last_checkpoint_error: null, last_checkpoint_error_at: null });
  assert.equal(info.version, '1.21.0');
  assert.equal(info.instance_name, 'edge-01');
  assert.equal(info.instance_role, 'STANDALONE');
  assert.equal(info.license, null);
  assert.deepEqual(info.defaults, {
    bucket: { quota_type: 'NONE', quota_size: 0, max_block_size: 64000000, max_block_records: 1024 },
  });
  // the SDK parses it too
  const sdk = await client.getInfo();
  assert.equal(sdk.version, '1.21.0');
  assert.equal(sdk.defaults.bucket.maxBlockRecords, 1024n);
});

test('/alive and /ready answer 200 without a token, /me returns the caller', async () => {
  for (const path of ['alive', 'ready']) {
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(api(path), { method, headers: { authorization: 'Bearer broken' } });
      assert.equal(res.status, 200, `${method} ${path}`);
      assert.equal(res.headers.get('x-reduct-api'), '1.21');
    }
  }
  const me = await client.me();
  assert.equal(me.name, 'init-token');
  assert.equal(me.permissions?.fullAccess, true);
  assert.equal(me.isProvisioned, true);
});

test('authentication errors have exact messages in x-reduct-error and body', async () => {
  let res = await fetch(api('info'));
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('x-reduct-error'), 'No bearer token in request header');
  assert.deepEqual(await res.json(), { detail: 'No bearer token in request header' });
  res = await fetch(api('info'), { headers: auth('nope') });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('x-reduct-error'), 'Invalid token');
  assert.equal(res.headers.get('x-reduct-api'), '1.21');
});

test('tokens: create in both shapes, permissions, 403 messages, rotate and delete', async () => {
  // envelope shape through the SDK (API >= 1.19)
  const value = await client.createToken('reader', {
    permissions: { fullAccess: false, read: ['data-*'], write: [] },
  });
  assert.match(value, /^reader-[0-9a-f]{32}$/);
  // flat shape over raw HTTP
  let res = await fetch(api('tokens/flat'), {
    method: 'POST',
    headers: auth(),
    body: JSON.stringify({ full_access: false, read: [], write: ['data-1'] }),
  });
  assert.equal(res.status, 200);
  const created = (await res.json()) as { value: string; created_at: string };
  assert.match(created.value, /^flat-[0-9a-f]{32}$/);
  assert.ok(!Number.isNaN(Date.parse(created.created_at)));

  res = await fetch(api('tokens/reader'), { method: 'POST', headers: auth(), body: '{}' });
  assert.equal(res.status, 409);
  assert.equal(res.headers.get('x-reduct-error'), "Token 'reader' already exists");

  const list = await client.getTokenList();
  assert.deepEqual(
    list.map((t) => t.name),
    ['flat', 'init-token', 'reader'],
  );
  res = await fetch(api('tokens/reader'), { headers: auth() });
  const tokenJson = (await res.json()) as Record<string, unknown>;
  assert.equal(tokenJson.value, '');
  assert.deepEqual(tokenJson.permissions, { full_access: false, read: ['data-*'], write: [] });

  const reader = new Client(ferry.url, { apiToken: value });
  await assert.rejects(reader.getTokenList(), (e: { status: number; message: string }) => {
    assert.equal(e.status, 403);
    assert.equal(e.message, "Token 'reader' doesn't have full access");
    return true;
  });
  await client.createBucket('data-1');
  const writer = new Client(ferry.url, { apiToken: created.value });
  await assert.rejects(writer.getBucket('data-1'), (e: { status: number; message: string }) => {
    assert.equal(e.status, 403);
    assert.equal(e.message, "Token 'flat' doesn't have read access to bucket 'data-1'");
    return true;
  });
  // the reader sees data-1 in /list (wildcard), the writer does not
  assert.deepEqual(
    (await reader.getBucketList()).map((b) => b.name),
    ['data-1'],
  );
  assert.deepEqual(await writer.getBucketList(), []);

  const rotated = await client.rotateToken('reader');
  assert.notEqual(rotated, value);
  res = await fetch(api('info'), { headers: auth(value) });
  assert.equal(res.status, 401);
  await client.deleteToken('reader');
  res = await fetch(api('tokens/reader'), { headers: auth() });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-reduct-error'), "Token 'reader' doesn't exist");
});

test('unknown paths answer 404 Not found, known paths with another method 405, GET / points to the API', async () => {
  let res = await fetch(`${ferry.url}/api/v1/nothing-here`, { headers: auth() });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('x-reduct-error'), 'Not found');
  assert.equal(res.headers.get('x-reduct-api'), '1.21');
  res = await fetch(api('info'), { method: 'DELETE', headers: auth() });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('x-reduct-api'), '1.21');
  // No console exists: `/` answers where to go instead of redirecting to a 404 (issue 8 item 12).
  res = await fetch(`${ferry.url}/`, { redirect: 'manual' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('location'), null);
  const root = (await res.json()) as Record<string, unknown>;
  assert.equal(root.api, '/api/v1/');
  assert.equal(root.alive, '/api/v1/alive');
  assert.equal((await fetch(`${ferry.url}${String(root.alive)}`)).status, 200, 'the pointer works');
  assert.equal((await fetch(`${ferry.url}/`, { method: 'HEAD' })).status, 200);
});

test('CORS: allowed origins echoed on every response, preflight answers 200', async () => {
  let res = await fetch(api('info'), { headers: { origin: 'https://b.example' } });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://b.example');
  res = await fetch(api('info'), { headers: { ...auth(), origin: 'https://evil.example' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  res = await fetch(api('b/x/y'), {
    method: 'OPTIONS',
    headers: { origin: 'https://a.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://a.example');
  assert.equal(res.headers.get('access-control-allow-methods'), '*');
  assert.equal(res.headers.get('access-control-allow-headers'), '*');
  assert.equal(res.headers.get('x-reduct-api'), '1.21');
});

test('error messages with double quotes: header keeps them, body detail replaces them', async () => {
  const res = await fetch(api('b/some-bucket'), {
    method: 'POST',
    headers: auth(),
    body: '{"quota_type": "UN\\"KNOWN"}',
  });
  assert.equal(res.status, 422);
  const header = res.headers.get('x-reduct-error') ?? '';
  assert.equal(
    header,
    `Invalid bucket setting 'quota_type': unknown value 'UN"KNOWN', expected one of NONE, FIFO, HARD`,
  );
  const body = (await res.json()) as { detail: string };
  assert.equal(body.detail, header.replaceAll('"', "'"));
});

test('large headers (batch metadata) are accepted up to 1 MiB', async () => {
  const big = 'x'.repeat(200_000);
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(api('info'), { headers: { ...auth(), 'x-big': big } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
});
