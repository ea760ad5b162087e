/**
 * Single-record entry API (api.md §8) and attachments (§14.1) through reduct-js and raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Readable } from 'node:stream';
import { Client, type Bucket } from 'reduct-js';
import type { RunningFerry } from '../src/server.js';
import { rawHttp, type RawBodyPart, type RawHttpOptions, type RawHttpResponse } from './helpers/raw-http.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-records-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;
let bucket: Bucket;

before(async () => {
  server = await startTestServer('api-records', TOKEN, {
    RS_IO_OPERATION_TIMEOUT: '1s',
  });
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
  bucket = await client.createBucket('rec');
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;
const auth = { authorization: `Bearer ${TOKEN}` };

/** Raw HTTP with full control over the body (chunks, pauses); adds the authorization header first. */
const raw = (
  method: string,
  path: string,
  headers: Record<string, string | number>,
  chunks: RawBodyPart[] = [],
  opts: RawHttpOptions = {},
): Promise<RawHttpResponse> => rawHttp(method, api(path), { ...auth, ...headers }, chunks, opts);

test('write, read, HEAD with exact headers', async () => {
  const w = await bucket.beginWrite('cam/front', {
    ts: 1000n,
    labels: { score: 5, kind: 'x' },
    contentType: 'text/plain',
  });
  await w.write('hello world');
  const rec = await bucket.beginRead('cam/front', 1000n);
  assert.equal(await rec.readAsString(), 'hello world');
  assert.equal(rec.contentType, 'text/plain');
  assert.deepEqual(rec.labels, { score: '5', kind: 'x' });

  const res = await fetch(api('b/rec/cam/front?ts=1000'), { headers: auth });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain');
  assert.equal(res.headers.get('content-length'), '11');
  assert.equal(res.headers.get('content-disposition'), 'attachment');
  assert.equal(res.headers.get('x-reduct-time'), '1000');
  assert.equal(res.headers.get('x-reduct-entry'), 'cam/front');
  assert.equal(res.headers.get('x-reduct-label-score'), '5');
  assert.equal(await res.text(), 'hello world');

  const head = await raw('HEAD', 'b/rec/cam/front', {});
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '11');
  assert.equal(head.body.length, 0);

  // parents are real entries
  const entries = await bucket.getEntryList();
  assert.deepEqual(
    entries.map((e) => e.name),
    ['cam', 'cam/front'],
  );
});

test('latest record without ts; errors 404/409/422', async () => {
  await (await bucket.beginWrite('latest', 1n)).write('one');
  await (await bucket.beginWrite('latest', 2n)).write('two');
  assert.equal(await (await bucket.beginRead('latest')).readAsString(), 'two');

  let res = await raw('POST', 'b/rec/latest?ts=2', { 'content-length': 3 }, ['two']);
  assert.equal(res.status, 409);
  assert.equal(res.headers['x-reduct-error'], 'A record with timestamp 2 already exists');
  res = await raw('POST', 'b/rec/latest', { 'content-length': 1 }, ['x']);
  assert.equal(res.status, 422);
  assert.equal(res.headers['x-reduct-error'], "'ts' parameter is required");
  res = await raw('POST', 'b/rec/latest?ts=abc', { 'content-length': 1 }, ['x']);
  assert.equal(res.headers['x-reduct-error'], "'ts' must be an unix timestamp in microseconds");
  res = await raw('POST', 'b/rec/latest?ts=5', { 'transfer-encoding': 'chunked' }, ['x']);
  assert.equal(res.status, 422);
  assert.equal(res.headers['x-reduct-error'], 'content-length header is required');
  res = await raw('POST', 'b/nobucket/e?ts=5', { 'content-length': 1 }, ['x']);
  assert.equal(res.status, 404);
  assert.equal(res.headers['x-reduct-error'], "Bucket 'nobucket' is not found");
  res = await raw('GET', 'b/rec/nothing', {});
  assert.equal(res.status, 404);
  assert.equal(res.headers['x-reduct-error'], "Entry 'nothing' not found in bucket 'rec'");
  res = await raw('GET', 'b/rec/latest?ts=7', {});
  assert.equal(res.status, 404);
  assert.match(String(res.headers['x-reduct-error']), /^Record 7 not found in /);
  res = await raw('POST', 'b/rec/bad..name?ts=1', { 'content-length': 1 }, ['x']);
  assert.equal(res.status, 422);
});

test('body shorter or longer than declared → 400, connection still usable', async () => {
  // One pooled connection: a request on a new connection would not show that the old one survived.
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  try {
    let res = await raw(
      'POST',
      'b/rec/short?ts=1',
      { 'x-reduct-content-length': 10, 'transfer-encoding': 'chunked' },
      ['abc'],
      { agent },
    );
    assert.equal(res.status, 400);
    assert.equal(res.headers['x-reduct-error'], 'Content is smaller than in content-length');
    const sockets = new Set([res.socket]);
    res = await raw(
      'POST',
      'b/rec/long?ts=1',
      { 'x-reduct-content-length': 2, 'transfer-encoding': 'chunked' },
      ['abc'],
      { agent },
    );
    assert.equal(res.status, 400);
    assert.equal(res.headers['x-reduct-error'], 'Content is bigger than in content-length');
    sockets.add(res.socket);
    res = await raw('POST', 'b/rec/after-400?ts=1', { 'content-length': 2 }, ['ok'], { agent });
    assert.equal(res.status, 200, String(res.headers['x-reduct-error']));
    sockets.add(res.socket);
    assert.equal(sockets.size, 1, 'all three requests went over one keep-alive connection');
    assert.equal(await (await bucket.beginRead('after-400', 1n)).readAsString(), 'ok');
  } finally {
    agent.destroy();
  }
});

test('a stalled body fails with 400 after RS_IO_OPERATION_TIMEOUT', async () => {
  const started = Date.now();
  const res = await raw('POST', 'b/rec/stall?ts=1', { 'content-length': 10 }, ['abc', 1800, 'defghij']);
  assert.equal(res.status, 400);
  assert.ok(Date.now() - started < 5000);
});

test('a multi-MB record streams through (chunked with x-reduct-content-length)', async () => {
  const size = 12 * 1024 * 1024;
  const data = randomBytes(size);
  const chunks = function* () {
    for (let i = 0; i < size; i += 256 * 1024) yield data.subarray(i, i + 256 * 1024);
  };
  const w = await bucket.beginWrite('big', 5n);
  await w.write(Readable.from(chunks()), size);
  const res = await fetch(api('b/rec/big?ts=5'), { headers: auth });
  assert.equal(res.headers.get('content-length'), String(size));
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(
    createHash('sha256').update(body).digest('hex'),
    createHash('sha256').update(data).digest('hex'),
  );
});

test('label update, record and entry removal, entry rename', async () => {
  await (await bucket.beginWrite('upd', { ts: 10n, labels: { a: '1', b: '2' } })).write('x');
  await bucket.update('upd', 10n, { a: '3', b: '' });
  let rec = await bucket.beginRead('upd', 10n, true);
  assert.deepEqual(rec.labels, { a: '3' });
  let res = await raw('PATCH', 'b/rec/upd?ts=11', { 'x-reduct-label-a': '1' });
  assert.equal(res.status, 404);

  await (await bucket.beginWrite('ren/a/b', 1n)).write('x');
  await bucket.renameEntry('ren', 'renamed');
  const names = (await bucket.getEntryList()).map((e) => e.name);
  assert.ok(names.includes('renamed/a/b') && !names.includes('ren/a/b'), names.join(','));
  rec = await bucket.beginRead('renamed/a/b', 1n);
  assert.equal(await rec.readAsString(), 'x');

  await bucket.removeRecord('upd', 10n);
  res = await raw('GET', 'b/rec/upd?ts=10', {});
  assert.equal(res.status, 404);
  await bucket.removeEntry('renamed');
  res = await raw('DELETE', 'b/rec/renamed', {});
  assert.ok(res.status === 404 || res.status === 409);
});

test('attachments ($meta): write, upsert, read, remove, hidden, not deletable', async () => {
  await (await bucket.beginWrite('att', 1n)).write('x');
  await bucket.writeAttachments('att', { cfg: { a: 1 }, other: 'v1' });
  await bucket.writeAttachments('att', { other: 'v2' });
  // upsert: only one stored record per key is left
  const keys: string[] = [];
  for await (const r of bucket.query('att/$meta')) keys.push(String(r.labels.key));
  assert.deepEqual(keys.sort(), ['cfg', 'other']);
  assert.deepEqual(await bucket.readAttachments('att'), { cfg: { a: 1 }, other: 'v2' });
  await bucket.removeAttachments('att', ['cfg']);
  assert.deepEqual(await bucket.readAttachments('att'), { other: 'v2' });

  const names = (await bucket.getEntryList()).map((e) => e.name);
  assert.ok(!names.some((n) => n.includes('$meta')));
  let res = await raw('POST', 'b/rec/att/$meta?ts=99', { 'content-length': 1 }, ['x']);
  assert.equal(res.status, 422);
  res = await raw(
    'POST',
    'b/rec/att/$meta?ts=99',
    { 'content-length': 1, 'x-reduct-label-key': 'k', 'x-reduct-label-remove': 'true' },
    ['x'],
  );
  assert.equal(res.status, 422);
  res = await raw('DELETE', 'b/rec/att/$meta', {});
  assert.equal(res.status, 422);
});

test('Expect: 100-continue is honoured', async () => {
  const expect = { 'content-length': 5, expect: '100-continue' };
  const res = await raw('POST', 'b/rec/cont?ts=1', expect, ['hello']);
  assert.equal(res.status, 200);
  assert.equal(res.continued, true, 'the body was sent after 100 Continue');
  assert.equal(await (await bucket.beginRead('cont', 1n)).readAsString(), 'hello');
  const early = await raw('POST', 'b/rec/cont?ts=1', expect, ['hello']);
  assert.equal(early.status, 409);
  assert.equal(early.continued, true);
  // refused before the body is wanted: no 100 Continue, the body is never sent
  const refused = await raw('POST', 'b/nobucket/e?ts=1', expect, ['hello']);
  assert.equal(refused.status, 404);
  assert.equal(refused.headers['x-reduct-error'], "Bucket 'nobucket' is not found");
  assert.equal(refused.continued, false);
  // the body the client still holds is never read, so the server closes the connection (body.ts)
  assert.equal(refused.headers.connection, 'close');
});
