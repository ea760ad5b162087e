/**
 * `x-ferry-origin` is accepted from replication senders only (issue 8 item 5): a record with an
 * origin is never replicated to that instance, so an ordinary writer that named a replica's
 * instance id (shown on every response) could hide its records from that replica. Only
 * full-access tokens (or a server without authentication) may send it; others get 403 on every
 * write and update route, and nothing is stored or changed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { call, createReplication, waitCaughtUp, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-origin-token';
let server: TestServer | undefined;
let admin: ApiNode;
let writer: ApiNode;
let instance: string;

before(async () => {
  server = await startTestServer('api-origin', TOKEN);
  admin = { url: server.ferry.url, token: TOKEN };
  // a local replication src → dst: its destination instance is this very server
  await createReplication(admin, admin, { dstHost: '' });
  assert.equal((await call(admin, 'POST', '/b/dst')).status, 200);
  const created = await call(admin, 'POST', '/tokens/writer', {
    permissions: { write: ['src'], read: ['src'] },
  });
  writer = { url: admin.url, token: (created.json as { value: string }).value };
  const alive = await fetch(`${admin.url}/api/v1/alive`);
  instance = alive.headers.get('x-ferry-instance') ?? '';
  assert.notEqual(instance, '', 'the instance id is public');
});

after(() => stopTestServer(server));

const FORBIDDEN =
  "Token 'writer' may not send x-ferry-origin: only replication senders with a full-access token can";

test('a write-only token sending x-ferry-origin gets 403 on every write and update route; nothing changes', async () => {
  const origin = { 'x-ferry-origin': instance };
  assert.equal(
    (await call(writer, 'POST', '/b/src/e?ts=1', 'x', { headers: { 'x-reduct-label-a': '1' } })).status,
    200,
  );
  const attempts: Array<[string, string, string | undefined, Record<string, string>]> = [
    ['POST', '/b/src/e?ts=10', 'x', {}],
    ['POST', '/b/src/e/batch', 'x', { 'x-reduct-time-11': '1,' }],
    [
      'POST',
      '/io/src/write',
      'x',
      { 'x-reduct-entries': 'e', 'x-reduct-start-ts': '12', 'x-reduct-0-0': '1,' },
    ],
    ['PATCH', '/b/src/e?ts=1', undefined, { 'x-reduct-label-a': '2' }],
    ['PATCH', '/b/src/e/batch', undefined, { 'x-reduct-time-1': '0,,a=2' }],
    [
      'PATCH',
      '/io/src/update',
      undefined,
      { 'x-reduct-entries': 'e', 'x-reduct-start-ts': '1', 'x-reduct-0-0': '0,,a=2' },
    ],
  ];
  for (const [method, path, body, headers] of attempts) {
    const r = await call(writer, method, path, body, { headers: { ...headers, ...origin } });
    assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${r.error}`);
    assert.equal(r.error, FORBIDDEN);
  }
  for (const ts of [10, 11, 12]) assert.equal((await call(admin, 'GET', `/b/src/e?ts=${ts}`)).status, 404);
  const one = await fetch(`${admin.url}/api/v1/b/src/e?ts=1`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(one.headers.get('x-reduct-label-a'), '1', 'the label is unchanged');
  // Without the header the same writer is replicated as usual: nothing it can send hides a record.
  assert.equal((await call(writer, 'POST', '/b/src/e?ts=20', 'y')).status, 200);
  await waitCaughtUp(admin, 'r');
  for (const ts of [1, 20])
    assert.equal((await call(admin, 'GET', `/b/dst/e?ts=${ts}`)).status, 200, `ts ${ts}`);
});

test('a full-access token (a replication sender) may send x-ferry-origin; the bound still applies', async () => {
  const r = await call(admin, 'POST', '/b/src/f?ts=1', 'x', {
    headers: { 'x-ferry-origin': 'other-instance' },
  });
  assert.equal(r.status, 200, String(r.error));
  const tooLong = await call(admin, 'POST', '/b/src/f?ts=2', 'x', {
    headers: { 'x-ferry-origin': 'o'.repeat(129) },
  });
  assert.equal(tooLong.status, 422);
  // an empty header is no origin at all: any writer may send it
  assert.equal(
    (await call(writer, 'POST', '/b/src/f?ts=3', 'x', { headers: { 'x-ferry-origin': '' } })).status,
    200,
  );
});
