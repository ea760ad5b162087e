/**
 * Batch protocols (api.md §10, §11) — v2 through reduct-js, v1 through the SDK and as raw HTTP the
 * way replication senders send it (chunked gzip/zstd bodies without Content-Length).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from '@bokuweb/zstd-wasm';
import { zstdReady } from '../src/storage/compressed-block.js';
import { Client, type Bucket } from 'reduct-js';
import { FerryIncomingMessage } from '../src/http/request-headers.js';
import type { RunningFerry } from '../src/server.js';
import { rawHttp, type RawHttpResponse } from './helpers/raw-http.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-batches-test-token';
let ferry: RunningFerry;
let server: TestServer | undefined;
let client: Client;
let bucket: Bucket;

before(async () => {
  server = await startTestServer('api-batches', TOKEN);
  ({ ferry } = server);
  client = new Client(ferry.url, { apiToken: TOKEN });
  bucket = await client.createBucket('bat');
});

after(() => stopTestServer(server));

const api = (path: string): string => `${ferry.url}/api/v1/${path}`;

const auth = { authorization: `Bearer ${TOKEN}` };

/** Raw HTTP the way replication senders send it; adds the authorization header first. */
const raw = (
  method: string,
  path: string,
  headers: Record<string, string | number>,
  chunks: Buffer[] = [],
): Promise<RawHttpResponse> => rawHttp(method, api(path), { ...auth, ...headers }, chunks);

async function readAll(entry: string): Promise<Array<[bigint, string]>> {
  const out: Array<[bigint, string]> = [];
  for await (const r of bucket.query(entry)) out.push([r.time, await r.readAsString()]);
  return out;
}

test('v2 write / update / remove through the SDK, per-record errors', async () => {
  const batch = bucket.beginWriteRecordBatch();
  batch.add('v2-a', 1000n, 'AA', 'text/plain', { k: 'a' });
  batch.add('v2-a', 1001n, 'AAA', 'text/plain', { k: 'b' });
  batch.add('v2-b', 1002n, 'B');
  let errors = await batch.send();
  assert.equal(errors.size, 0);
  assert.deepEqual(await readAll('v2-a'), [
    [1000n, 'AA'],
    [1001n, 'AAA'],
  ]);

  const again = bucket.beginWriteRecordBatch();
  again.add('v2-a', 1000n, 'ZZ');
  again.add('v2-b', 1005n, 'C');
  errors = await again.send();
  assert.equal(errors.get('v2-a')?.get(1000n)?.status, 409);
  assert.equal(errors.get('v2-a')?.get(1000n)?.message, 'A record with timestamp 1000 already exists');
  assert.deepEqual(await readAll('v2-b'), [
    [1002n, 'B'],
    [1005n, 'C'],
  ]);

  const upd = bucket.beginUpdateRecordBatch();
  upd.addOnlyLabels('v2-a', 1000n, { k: 'changed' });
  upd.addOnlyLabels('v2-a', 1999n, { k: 'x' });
  errors = await upd.send();
  assert.equal(errors.get('v2-a')?.get(1999n)?.status, 404);
  const rec = await bucket.beginRead('v2-a', 1000n, true);
  assert.equal(rec.labels.k, 'changed');

  const rem = bucket.beginRemoveRecordBatch();
  rem.addOnlyTimestamp('v2-b', 1002n);
  rem.addOnlyTimestamp('v2-b', 1003n);
  errors = await rem.send();
  assert.equal(errors.get('v2-b')?.get(1003n)?.message, 'Record 1003 not found in entry bat/v2-b');
  assert.deepEqual(await readAll('v2-b'), [[1005n, 'C']]);
});

test('v2 body order is entry index first, then time (server rule, §11.2)', async () => {
  // entry 0 gets two records interleaving in time with entry 1's record
  const res = await raw(
    'POST',
    'io/bat/write',
    {
      'content-length': 6,
      'x-reduct-entries': 'ord-x,ord-y',
      'x-reduct-start-ts': 1000,
      'x-reduct-0-0': '1,text/plain',
      'x-reduct-0-20': '2',
      'x-reduct-1-10': '3,text/plain',
    },
    [Buffer.from('A'), Buffer.from('AA'), Buffer.from('BBB')],
  );
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-reduct-entries'], 'ord-x,ord-y');
  assert.deepEqual(await readAll('ord-x'), [
    [1000n, 'A'],
    [1020n, 'AA'],
  ]);
  assert.deepEqual(await readAll('ord-y'), [[1010n, 'BBB']]);
});

test('v1 write / update / remove through the SDK', async () => {
  const batch = await bucket.beginWriteBatch('v1');
  batch.add(1n, 'one', 'text/plain', { x: '[a,b]' });
  batch.add(2n, 'two');
  assert.equal((await batch.write()).size, 0);
  const dup = await bucket.beginWriteBatch('v1');
  dup.add(2n, 'two');
  dup.add(3n, 'three');
  const errors = await dup.write();
  assert.equal(errors.get(2n)?.status, 409);
  assert.deepEqual(await readAll('v1'), [
    [1n, 'one'],
    [2n, 'two'],
    [3n, 'three'],
  ]);
  assert.equal((await bucket.beginRead('v1', 1n)).labels.x, '[a,b]');

  const upd = await bucket.beginUpdateBatch('v1');
  upd.addOnlyLabels(1n, { x: '', y: 'new' });
  upd.addOnlyLabels(9n, { y: 'new' });
  const updErrors = await upd.write();
  assert.equal(updErrors.get(9n)?.status, 404);
  assert.deepEqual((await bucket.beginRead('v1', 1n)).labels, { y: 'new' });

  const rem = await bucket.beginRemoveBatch('v1');
  rem.addOnlyTimestamp(2n);
  rem.addOnlyTimestamp(8n);
  const remErrors = await rem.write();
  assert.equal(remErrors.get(8n)?.message, 'Record 8 not found in entry bat/v1');
  assert.deepEqual(
    (await readAll('v1')).map(([t]) => t),
    [1n, 3n],
  );
});

test('v1 raw: gzip and zstd chunked bodies without Content-Length, several MB', async () => {
  const records = [randomBytes(1024 * 1024), randomBytes(1024 * 1024), randomBytes(1024 * 1024)];
  const plain = Buffer.concat(records);
  const headers = {
    'content-type': 'application/octet-stream',
    'x-reduct-time-100': `${records[0]!.length},application/octet-stream,b=2,a=1`,
    'x-reduct-time-200': `${records[1]!.length},`,
    'x-reduct-time-300': `${records[2]!.length},text/plain,x="[1,2]"`,
  };
  const gz = gzipSync(plain);
  const chunks = [gz.subarray(0, 1000), gz.subarray(1000, 500_000), gz.subarray(500_000)];
  let res = await raw(
    'POST',
    'b/bat/replica/gz/batch',
    { ...headers, 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' },
    chunks,
  );
  assert.equal(res.status, 200);
  assert.deepEqual(
    Object.keys(res.headers).filter((h) => h.startsWith('x-reduct-error')),
    [],
  );

  await zstdReady(); // the process's one instance (a second init() breaks the first's users)
  const zs = Buffer.from(zstdCompress(plain, 3));
  res = await raw(
    'POST',
    'b/bat/replica/zs/batch',
    { ...headers, 'content-encoding': 'zstd', 'transfer-encoding': 'chunked' },
    [zs.subarray(0, 7), zs.subarray(7)],
  );
  assert.equal(res.status, 200);

  for (const entry of ['replica/gz', 'replica/zs']) {
    const got: Buffer[] = [];
    for await (const r of bucket.query(entry)) got.push(await r.read());
    assert.equal(got.length, 3);
    assert.ok(Buffer.concat(got).equals(plain), entry);
  }
  const rec = await bucket.beginRead('replica/gz', 300n, true);
  assert.equal(rec.contentType, 'text/plain');
  assert.equal(rec.labels.x, '[1,2]');
  const entries = (await bucket.getEntryList()).map((e) => e.name);
  assert.ok(entries.includes('replica'));
});

test('v1 raw: per-record errors, missing bucket per record, length mismatch 422, bad header 422', async () => {
  let res = await raw(
    'POST',
    'b/nobucket/e/batch',
    { 'content-length': 2, 'x-reduct-time-1': '1,', 'x-reduct-time-2': '1,' },
    [Buffer.from('ab')],
  );
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-reduct-error-1'], "404,Bucket 'nobucket' is not found");
  assert.equal(res.headers['x-reduct-error-2'], "404,Bucket 'nobucket' is not found");

  res = await raw(
    'POST',
    'b/bat/v1-err/batch',
    { 'content-length': 3, 'x-reduct-time-1': '1,', 'x-reduct-time-2': '1,' },
    [Buffer.from('abc')],
  );
  assert.equal(res.status, 422);
  res = await raw('POST', 'b/bat/v1-err/batch', { 'content-length': 1, 'x-reduct-time-1': '1' }, [
    Buffer.from('a'),
  ]);
  assert.equal(res.status, 422);
  assert.equal(res.headers['x-reduct-error'], 'Invalid batched header');

  // PATCH on a missing entry: whole request 404
  res = await raw('PATCH', 'b/bat/no-entry/batch', { 'x-reduct-time-1': '0,,a=b' });
  assert.equal(res.status, 404);

  // a failing record in the middle does not shift the bytes of the following ones
  await raw('POST', 'b/bat/mid/batch', { 'content-length': 2, 'x-reduct-time-2': '2,' }, [Buffer.from('xx')]);
  res = await raw(
    'POST',
    'b/bat/mid/batch',
    { 'content-length': 6, 'x-reduct-time-1': '2,', 'x-reduct-time-2': '2,', 'x-reduct-time-3': '2,' },
    [Buffer.from('aabbcc')],
  );
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-reduct-error-2'], '409,A record with timestamp 2 already exists');
  assert.deepEqual(await readAll('mid'), [
    [1n, 'aa'],
    [2n, 'xx'],
    [3n, 'cc'],
  ]);
});

test('v1 raw: replication extensions x-ferry-origin / x-ferry-digest-<ts> → x-ferry-present-<ts>', async () => {
  const { createHash } = await import('node:crypto');
  const digest = createHash('sha256').update('payload').digest().subarray(0, 16).toString('hex');
  const headers = {
    'content-length': 7,
    'x-reduct-time-5': '7,',
    'x-ferry-origin': 'other-instance',
    'x-ferry-digest-5': digest,
  };
  let res = await raw('POST', 'b/bat/dig/batch', headers, [Buffer.from('payload')]);
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-ferry-present-5'], undefined);
  res = await raw('POST', 'b/bat/dig/batch', headers, [Buffer.from('payload')]);
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-reduct-error-5'], undefined);
  assert.equal(res.headers['x-ferry-present-5'], '1');
});

/** 1500 per-record headers (both spellings), then the ordinary ones; `token` goes last. */
function manyHeaderBatch(token: string): {
  headers: Record<string, string>;
  body: Buffer;
} {
  const headers: Record<string, string> = {};
  const parts: Buffer[] = [];
  for (let i = 0; i < 1500; i++) {
    const body = Buffer.from(`record-${i}`);
    headers[i % 2 === 0 ? `x-reduct-time-${5000 + i}` : `X-Reduct-Time-${5000 + i}`] =
      `${body.length},text/plain,n=${i}`;
    parts.push(body);
  }
  const body = Buffer.concat(parts);
  headers['content-type'] = 'application/octet-stream';
  headers['content-length'] = String(body.length);
  headers.authorization = `Bearer ${token}`;
  return { headers, body };
}

test('a v1 batch of 1500 records with the ordinary headers after the per-record ones', async () => {
  // Per-record headers are left out of the request's header dictionary (src/http/request-headers.ts):
  // authorization, content type and length must still be found when they come last.
  const send = (entry: string, token: string, short = false): Promise<RawHttpResponse> => {
    const { headers, body } = manyHeaderBatch(token);
    // one byte short, declared honestly: only the sum of the record sizes disagrees
    const sent = short ? body.subarray(0, body.length - 1) : body;
    headers['content-length'] = String(sent.length);
    return rawHttp('POST', api(`b/bat/${entry}/batch`), headers, [sent]);
  };
  const denied = await send('many-headers', 'not-the-token');
  assert.equal(denied.status, 401, 'the last header (a wrong token) is the one checked');
  // (a lost authorization header would be 401 'No bearer token in request header')
  assert.equal(denied.headers['x-reduct-error'], 'Invalid token');
  const { body } = manyHeaderBatch(TOKEN);
  const short = await send('many-headers', TOKEN, true);
  assert.equal(short.status, 422);
  assert.equal(
    short.headers['x-reduct-error'],
    `Content-length ${body.length - 1} doesn't match the sum of record sizes ${body.length}`,
  );
  const ok = await send('many-headers', TOKEN);
  assert.equal(ok.status, 200, String(ok.headers['x-reduct-error']));
  const stored = await readAll('many-headers');
  assert.equal(stored.length, 1500);
  assert.deepEqual(stored[0], [5000n, 'record-0']);
  assert.deepEqual(stored[1499], [6499n, 'record-1499']);
});

test('FerryIncomingMessage: headers leave out x-reduct-time-*, keep the ordinary ones given last', async () => {
  // The server's request class behind a plain node:http server, fed the same request as above.
  let seen: { headers: IncomingHttpHeaders; rawCount: number } | undefined;
  const probe = createServer(
    { IncomingMessage: FerryIncomingMessage, maxHeaderSize: 1024 * 1024 },
    (req, res) => {
      seen = { headers: req.headers, rawCount: req.rawHeaders.length };
      req.resume();
      req.on('end', () => res.end());
    },
  );
  probe.maxHeadersCount = 0;
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  try {
    const { headers, body } = manyHeaderBatch(TOKEN);
    const { port } = probe.address() as AddressInfo;
    const res = await rawHttp('POST', `http://127.0.0.1:${port}/`, headers, [body]);
    assert.equal(res.status, 200);
    assert.ok(seen);
    // 1500 per-record headers + content-type, content-length, authorization + host, connection
    assert.equal(seen.rawCount, 2 * 1505);
    assert.deepEqual(
      Object.keys(seen.headers).filter((h) => h.toLowerCase().startsWith('x-reduct-time-')),
      [],
    );
    assert.equal(seen.headers.authorization, `Bearer ${TOKEN}`);
    assert.equal(seen.headers['content-length'], String(body.length));
    assert.equal(seen.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(Object.keys(seen.headers).sort(), [
      'authorization',
      'connection',
      'content-length',
      'content-type',
      'host',
    ]);
  } finally {
    await new Promise((resolve) => probe.close(resolve));
  }
});
