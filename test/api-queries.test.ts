/**
 * Queries (api.md §9, §10.5, §11.3, §11.4, §12) through reduct-js (v2) and the legacy entry-level
 * routes over raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, type Bucket } from 'reduct-js';
import { parseJson } from '../src/protocol/json.js';
import type { RunningFerry } from '../src/server.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-queries-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;
let bucket: Bucket;

before(async () => {
  server = await startTestServer('api-queries', TOKEN, {
    RS_IO_BATCH_TIMEOUT: '1s',
  });
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
  bucket = await client.createBucket('qry');
  const batch = bucket.beginWriteRecordBatch();
  for (let i = 0; i < 100; i++) {
    batch.add('sensor', BigInt(1000 + i), `r${i}`, 'text/plain', { n: i, even: i % 2 === 0 });
  }
  batch.add('other', 5000n, 'o');
  assert.equal((await batch.send()).size, 0);
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;
const headers = { authorization: `Bearer ${TOKEN}` };

test('time range and when condition through the SDK (100 records → batches of 85 + 15)', async () => {
  const all: bigint[] = [];
  for await (const r of bucket.query('sensor')) all.push(r.time);
  assert.equal(all.length, 100);
  assert.equal(all[0], 1000n);
  assert.equal(all[99], 1099n);

  // raw: the first batch stops at 85 records, the second carries the last 15
  let res = await fetch(api('io/qry/q'), {
    method: 'POST',
    headers,
    body: '{"query_type": "QUERY", "entries": ["sensor"]}',
  });
  const { id } = parseJson(await res.text()) as { id: number };
  const counts: Array<[number, string | null]> = [];
  for (;;) {
    res = await fetch(api('io/qry/read'), { headers: { ...headers, 'x-reduct-query-id': String(id) } });
    if (res.status === 204) break;
    const n = [...res.headers.keys()].filter((k) => /^x-reduct-0-\d+$/.test(k)).length;
    counts.push([n, res.headers.get('x-reduct-last')]);
    await res.arrayBuffer();
    if (res.headers.get('x-reduct-last') === 'true') break;
  }
  assert.deepEqual(counts, [
    [85, 'false'],
    [15, 'true'],
  ]);

  const got: string[] = [];
  for await (const r of bucket.query('sensor', 1010n, 1020n, { when: { '&even': { $eq: true } } })) {
    got.push(await r.readAsString());
  }
  assert.deepEqual(got, ['r10', 'r12', 'r14', 'r16', 'r18']);

  const multi: string[] = [];
  for await (const r of bucket.query(['sensor', 'other'], 1098n)) multi.push(`${r.entry}@${r.time}`);
  assert.deepEqual(multi, ['sensor@1098', 'sensor@1099', 'other@5000']);
});

test('head option returns metadata with real sizes and no payload', async () => {
  const sizes: bigint[] = [];
  for await (const r of bucket.query('sensor', 1000n, 1003n, { head: true })) {
    sizes.push(r.size);
    assert.equal((await r.read()).length, 0);
  }
  assert.deepEqual(sizes, [2n, 2n, 2n]);
});

test('continuous query sees records written after it started', async () => {
  await (await bucket.beginWrite('live', 1n)).write('first');
  const seen: string[] = [];
  const reader = (async () => {
    for await (const r of bucket.query('live', undefined, undefined, {
      continuous: true,
      pollInterval: 0.1,
      ttl: 5,
    })) {
      seen.push(await r.readAsString());
      if (seen.length === 2) break;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  await (await bucket.beginWrite('live', 2n)).write('second');
  await reader;
  assert.deepEqual(seen, ['first', 'second']);
});

test('ttl 0 makes the first read fail with 404; remove query', async () => {
  let res = await fetch(api('io/qry/q'), {
    method: 'POST',
    headers,
    body: '{"query_type": "QUERY", "entries": ["sensor"], "ttl": 0}',
  });
  const { id } = parseJson(await res.text()) as { id: number };
  await new Promise((r) => setTimeout(r, 20));
  res = await fetch(api('io/qry/read'), { headers: { ...headers, 'x-reduct-query-id': String(id) } });
  assert.equal(res.status, 404);
  assert.equal(
    res.headers.get('x-reduct-error'),
    `Query ${id} not found and it might have expired. Check TTL in your query request.`,
  );

  res = await fetch(api('io/qry/read'), { headers });
  assert.equal(res.status, 422);
  assert.equal(res.headers.get('x-reduct-error'), 'x-reduct-query-id header is required for batched reads');

  await (await bucket.beginWrite('rm', 1n)).write('a');
  await (await bucket.beginWrite('rm', 2n)).write('b');
  assert.equal(await bucket.removeQuery('rm', 0n, 2n), 1);
  res = await fetch(api('io/qry/q'), { method: 'POST', headers, body: '{"query_type": "REMOVE"}' });
  assert.equal(res.status, 422);
});

test('legacy entry queries: GET/POST …/q, reads by ?q= and …/batch?q=, DELETE …/q', async () => {
  let res = await fetch(api('b/qry/sensor/q?start=1000&stop=1003'), { headers });
  assert.equal(res.status, 200);
  let id = (parseJson(await res.text()) as { id: number }).id;
  const single: string[] = [];
  for (;;) {
    res = await fetch(api(`b/qry/sensor?q=${id}`), { headers });
    if (res.status === 204) break;
    assert.equal(res.status, 200);
    single.push(`${res.headers.get('x-reduct-time')}:${await res.text()}`);
  }
  assert.deepEqual(single, ['1000:r0', '1001:r1', '1002:r2']);

  res = await fetch(api('b/qry/sensor/q'), {
    method: 'POST',
    headers,
    body: '{"query_type": "QUERY", "start": 1000, "stop": 1002}',
  });
  id = (parseJson(await res.text()) as { id: number }).id;
  res = await fetch(api(`b/qry/sensor/batch?q=${id}`), { headers });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-reduct-time-1000'), '2,text/plain,even=true,n=0');
  assert.equal(res.headers.get('x-reduct-time-1001'), '2,text/plain,even=false,n=1');
  assert.equal(res.headers.get('x-reduct-last'), 'true');
  assert.equal(res.headers.get('content-length'), '4');
  assert.equal(await res.text(), 'r0r1');
  res = await fetch(api(`b/qry/sensor/batch?q=${id}`), { headers });
  assert.equal(res.status, 204);
  assert.equal(await res.text(), '');

  res = await fetch(api('b/qry/sensor/batch'), { headers });
  assert.equal(res.status, 422);
  assert.equal(res.headers.get('x-reduct-error'), "'q' parameter is required for batched reads");

  res = await fetch(api('b/qry/sensor/q?start=1090&stop=1095'), { method: 'DELETE', headers });
  assert.equal(res.status, 200);
  assert.deepEqual(parseJson(await res.text()), { removed_records: 5 });
  res = await fetch(api('b/qry/sensor/q'), {
    method: 'POST',
    headers,
    body: '{"query_type": "REMOVE", "start": 1095, "stop": 1097}',
  });
  assert.deepEqual(parseJson(await res.text()), { removed_records: 2 });
});

test('continuous v2 read without new data answers the empty batch', async () => {
  let res = await fetch(api('io/qry/q'), {
    method: 'POST',
    headers,
    body: '{"query_type": "QUERY", "entries": ["other"], "start": 6000, "continuous": true, "ttl": 10}',
  });
  const { id } = parseJson(await res.text()) as { id: number };
  res = await fetch(api('io/qry/read'), { headers: { ...headers, 'x-reduct-query-id': String(id) } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-reduct-entries'), '');
  assert.equal(res.headers.get('x-reduct-start-ts'), '0');
  assert.equal(res.headers.get('x-reduct-last'), 'false');
  assert.equal(await res.text(), '');
});
