/**
 * Open queries are bounded (issue 8 item 6): per token (FERRY_MAX_QUERIES_PER_TOKEN) and in all
 * (FERRY_MAX_QUERIES), answered 429 with what to do; the TTL is bounded (FERRY_MAX_QUERY_TTL, 422).
 * A query read to its end no longer counts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'reduct-js';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-query-bounds-token';
let server: TestServer | undefined;
let admin: ApiNode;
let reader: ApiNode;
let other: ApiNode;

before(async () => {
  server = await startTestServer('api-query-bounds', TOKEN, {
    FERRY_MAX_QUERIES_PER_TOKEN: '5',
    FERRY_MAX_QUERIES: '8',
    FERRY_MAX_QUERY_TTL: '600',
  });
  admin = { url: server.ferry.url, token: TOKEN };
  assert.equal((await call(admin, 'POST', '/b/qb')).status, 200);
  for (let ts = 1; ts <= 3; ts++)
    assert.equal((await call(admin, 'POST', `/b/qb/e?ts=${ts}`, 'x')).status, 200);
  const token = async (name: string): Promise<ApiNode> => {
    const r = await call(admin, 'POST', `/tokens/${name}`, { permissions: { read: ['qb'] } });
    return { url: admin.url, token: (r.json as { value: string }).value };
  };
  reader = await token('reader');
  other = await token('other');
});

after(() => stopTestServer(server));

const open = (node: ApiNode, body: Record<string, unknown> = {}) =>
  call(node, 'POST', '/io/qb/q', { query_type: 'QUERY', ...body });

test("a TTL above FERRY_MAX_QUERY_TTL is 422 (the issue's ttl: 1000000000)", async () => {
  const r = await open(reader, { ttl: 1_000_000_000 });
  assert.equal(r.status, 422);
  assert.equal(
    r.error,
    "Invalid query: 'ttl' of 1000000000 seconds is above the maximum of 600 (FERRY_MAX_QUERY_TTL)",
  );
  const legacy = await call(reader, 'GET', '/b/qb/e/q?ttl=1000000000');
  assert.equal(legacy.status, 422);
  assert.equal((await open(reader, { ttl: 600 })).status, 200, 'the maximum itself is allowed');
});

test('open queries are bounded per token and in all (429); a query read to its end frees its place', async () => {
  // the previous test left one open query of 'reader'
  for (let i = 0; i < 4; i++) assert.equal((await open(reader)).status, 200);
  const refused = await open(reader);
  assert.equal(refused.status, 429);
  assert.equal(
    refused.error,
    "Token 'reader' has 5 open queries, the most allowed (FERRY_MAX_QUERIES_PER_TOKEN): read them to their end or let them expire",
  );
  assert.equal((await call(reader, 'GET', '/b/qb/e/q')).status, 429, 'the legacy route counts too');

  // Another token is not held up by the first one's queries, up to the server's bound of 8.
  const ids: bigint[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await open(other);
    assert.equal(r.status, 200);
    ids.push((r.json as { id: bigint }).id);
  }
  const full = await open(admin);
  assert.equal(full.status, 429);
  assert.equal(
    full.error,
    'The server has 8 open queries, the most allowed (FERRY_MAX_QUERIES): try again later',
  );

  // Reading one of them to its end frees a place.
  const read = await call(other, 'GET', '/io/qb/read', undefined, {
    headers: { 'x-reduct-query-id': String(ids[0]) },
  });
  assert.equal(read.status, 200, String(read.error));
  assert.equal((await open(admin)).status, 200);
  assert.equal((await open(admin)).status, 429);
  const again = await call(other, 'GET', '/io/qb/read', undefined, {
    headers: { 'x-reduct-query-id': String(ids[1]) },
  });
  assert.equal(again.status, 200, String(again.error));
});

test('many short queries read to their end (reduct-js) never pile up', async () => {
  // The server is one query short of its bound of 8: each query must give its place back.
  const sdk = new Client(admin.url, { apiToken: other.token });
  const bucket = await sdk.getBucket('qb');
  for (let i = 0; i < 20; i++) {
    const got: bigint[] = [];
    for await (const r of bucket.query('e')) got.push(r.time);
    assert.deepEqual(got, [1n, 2n, 3n], `query ${i}`);
  }
});
