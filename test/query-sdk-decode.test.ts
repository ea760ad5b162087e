/**
 * The batch encoders checked against the real reduct-js 1.20.0 batch readers (v1 and v2): the
 * SDK's own parsing code is fed our headers and body, through a stub of its HTTP client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { encodeV2Batch, type V2OutRecord } from '../src/protocol/batch-v2.js';
import { encodeV1Headers, type V1Record } from '../src/protocol/batch-v1.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import { QueryManager, DEFAULT_QUERY_LIMITS } from '../src/query/query-manager.js';
import { v1BatchResponse, v2BatchResponse } from '../src/query/batch-response.js';
import { parseJson } from '../src/protocol/json.js';

interface SdkRecord {
  entry: string;
  time: bigint;
  size: bigint;
  last: boolean;
  labels: Record<string, string>;
  contentType: string;
  read(): Promise<Uint8Array>;
}
type Reader = (
  bucket: string,
  entry: string,
  id: string,
  continuous: boolean,
  poll: number,
  head: boolean,
  http: unknown,
) => AsyncGenerator<SdkRecord>;

const require = createRequire(import.meta.url);
const { fetchAndParseBatchV2 } = require('reduct-js/lib/cjs/batch/BatchV2.js') as {
  fetchAndParseBatchV2: Reader;
};
const { fetchAndParseBatchV1 } = require('reduct-js/lib/cjs/batch/BatchV1.js') as {
  fetchAndParseBatchV1: Reader;
};

/** A stub of the SDK's HttpClient answering one batch, then 204. */
function stubClient(headers: Record<string, string>, body: Buffer) {
  let served = false;
  const respond = () => {
    if (served) return { status: 204, headers: new Headers({ 'x-reduct-error': 'No content' }), data: null };
    served = true;
    const data = new ReadableStream<Uint8Array>({
      start(c) {
        if (body.length) c.enqueue(new Uint8Array(body));
        c.close();
      },
    });
    return { status: 200, headers: new Headers(headers), data };
  };
  return { get: async () => respond(), head: async () => respond() };
}

interface Rec extends V2OutRecord {
  payload: string;
}

const recs: Rec[] = [
  {
    entry: 'cam/front',
    ts: 1000n,
    size: 3,
    contentType: 'image/jpeg',
    labels: { a: '1', list: '[1,2]' },
    payload: 'AAA',
  },
  {
    entry: 'cam/front',
    ts: 1001n,
    size: 1,
    contentType: 'image/jpeg',
    labels: { a: '1', list: '[1,2]' },
    payload: 'B',
  },
  { entry: 'cam/front', ts: 1002n, size: 2, contentType: 'text/plain', labels: { a: '2' }, payload: 'CC' },
  {
    entry: 'x/$meta',
    ts: 2000n,
    size: 4,
    contentType: 'application/json',
    labels: { key: 'k 1' },
    payload: 'DDDD',
  },
  { entry: 'x/$meta', ts: 2001n, size: 0, contentType: 'application/json', labels: {}, payload: '' },
];

test('reduct-js v2 reader decodes our read batches (entries not interleaved)', async () => {
  const out = encodeV2Batch(recs);
  const body = Buffer.concat(out.order.map((i) => Buffer.from(recs[i]!.payload)));
  const headers = { ...out.headers, 'x-reduct-last': 'true', 'content-type': 'application/octet-stream' };
  const got: Array<[string, bigint, string, Record<string, string>, string, boolean]> = [];
  for await (const r of fetchAndParseBatchV2('b', '', '1', false, 1, false, stubClient(headers, body))) {
    got.push([r.entry, r.time, r.contentType, r.labels, Buffer.from(await r.read()).toString(), r.last]);
  }
  assert.deepEqual(
    got,
    recs.map((r, i) => [r.entry, r.ts, r.contentType, r.labels, r.payload, i === recs.length - 1]),
  );
});

test('reduct-js v2 reader accepts the empty batch of a continuous query', async () => {
  const out = encodeV2Batch([]);
  const got: SdkRecord[] = [];
  for await (const r of fetchAndParseBatchV2(
    'b',
    '',
    '1',
    false,
    1,
    false,
    stubClient({ ...out.headers, 'x-reduct-last': 'false' }, Buffer.alloc(0)),
  )) {
    got.push(r);
  }
  assert.equal(got.length, 0);
});

// reduct-js' v1 reader splits header values on every comma, so it cannot read quoted label values
// such as `x="[a,b]"` (§10.5) at all; it only uses v1 with servers older than API 1.18.
test('reduct-js v1 reader decodes our read batches', async () => {
  const v1: Array<V1Record & { payload: string }> = [
    { ts: 1000n, size: 10, contentType: 'application/octet-stream', labels: {}, payload: '0123456789' },
    { ts: 1100n, size: 10, contentType: 'text/plain', labels: { y: 'z', x: '[a]' }, payload: 'abcdefghij' },
  ];
  const headers = { ...encodeV1Headers(v1), 'x-reduct-last': 'true' };
  const body = Buffer.from(v1.map((r) => r.payload).join(''));
  const got: Array<[bigint, string, Record<string, string>, string, boolean]> = [];
  for await (const r of fetchAndParseBatchV1('b', 'e', '1', false, 1, false, stubClient(headers, body))) {
    got.push([r.time, r.contentType, r.labels, Buffer.from(await r.read()).toString(), r.last]);
  }
  assert.deepEqual(got, [
    [1000n, 'application/octet-stream', {}, '0123456789', false],
    [1100n, 'text/plain', { x: '[a]', y: 'z' }, 'abcdefghij', true],
  ]);
});

test('§11.8 through the engine, the query manager and the v2 response builder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-query-sdk-'));
  const storage = await openStorage({ dataPath: dir, durability: 'none' });
  const m = new QueryManager({ storage, limits: DEFAULT_QUERY_LIMITS });
  try {
    const b = await storage.createBucket('b1');
    await b.write('x-0', 1010n, { size: 2, contentType: 'text/plain' }, Buffer.from('AA'));
    await b.write('x-1', 1000n, { size: 3, contentType: 'text/plain' }, Buffer.from('BBB'));
    const id = await m.create('b1', parseJson('{"query_type":"QUERY","entries":["x-0","x-1"]}'));
    const res = v2BatchResponse(await m.next('b1', id, { head: false }));
    assert.deepEqual(res.headers, {
      'content-type': 'application/octet-stream',
      'content-length': '5',
      'x-reduct-last': 'true',
      'x-reduct-entries': 'x-1,x-0',
      'x-reduct-start-ts': '1000',
      'x-reduct-0-0': '3,text/plain',
      'x-reduct-1-10': '2,text/plain',
    });
    const body = Buffer.concat(await Promise.all(res.body.map((r) => r.buffer())));
    assert.equal(body.toString(), 'BBBAA');

    // the same query read through v1 on one entry
    const id1 = await m.create('b1', parseJson('{"query_type":"QUERY"}'), 'x-0');
    const v1 = v1BatchResponse(await m.next('b1', id1, { head: false, entry: 'x-0' }));
    assert.deepEqual(v1.headers, {
      'content-type': 'application/octet-stream',
      'content-length': '2',
      'x-reduct-last': 'true',
      'x-reduct-time-1010': '2,text/plain',
    });
  } finally {
    m.close();
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
});
