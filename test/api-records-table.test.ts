/**
 * Ferry's records-table batch on `POST /b/{bucket}/{entry}/batch` (protocol/records-table.ts), as
 * a replication sender sends it, against a real server: records arrive exactly (label values no
 * header list can carry, upper-case names, unicode), digests make re-sends idempotent in one
 * request and catch damaged payloads, and malformed or mismatched bodies are refused whole with
 * a 422 before anything is stored.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Agent } from 'node:http';
import { PassThrough } from 'node:stream';
import { Client } from 'reduct-js';
import {
  encodeRecordsTable,
  FEATURES_HEADER,
  RECORDS_TABLE_CONTENT_TYPE,
  type TableRecord,
} from '../src/protocol/records-table.js';
import type { RunningFerry } from '../src/server.js';
import { readText } from './helpers/replication-env.js';
import { rawHttp, type RawHttpResponse } from './helpers/raw-http.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-records-table-token';
let ferry: RunningFerry;
let server: TestServer | undefined;

before(async () => {
  server = await startTestServer('api-records-table', TOKEN);
  ({ ferry } = server);
  await new Client(ferry.url, { apiToken: TOKEN }).createBucket('tab');
});

after(() => stopTestServer(server));

const digest = (payload: string): Buffer => createHash('sha256').update(payload).digest().subarray(0, 16);

interface Rec {
  ts: bigint;
  payload: string;
  contentType?: string;
  labels?: Record<string, string>;
  /** The digest sent ('none' sends none; default: the payload's). */
  digestOf?: string | 'none';
}

/** Sends `recs` as one records-table batch to `entry`. */
function sendTable(
  entry: string,
  recs: readonly Rec[],
  opts: { token?: string | null; lengthDelta?: number; table?: Buffer; agent?: Agent } = {},
): Promise<RawHttpResponse> {
  const table: TableRecord[] = recs.map((r) => ({
    ts: r.ts,
    size: Buffer.byteLength(r.payload),
    contentType: r.contentType ?? 'text/plain',
    labels: r.labels ?? {},
    digest: r.digestOf === 'none' ? undefined : digest(r.digestOf ?? r.payload),
  }));
  const head = opts.table ?? encodeRecordsTable(table);
  const payloads = Buffer.from(recs.map((r) => r.payload).join(''));
  const token = opts.token === undefined ? TOKEN : opts.token;
  return rawHttp(
    'POST',
    `${ferry.url}/api/v1/b/tab/${entry}/batch`,
    {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      'content-type': RECORDS_TABLE_CONTENT_TYPE,
      'x-ferry-origin': 'peer-1',
      'content-length': head.length + payloads.length + (opts.lengthDelta ?? 0),
    },
    [head, payloads],
    opts.agent ? { agent: opts.agent } : {},
  );
}

/** What the server stored, read from its storage (batch read answers cannot carry every label value). */
async function stored(
  entry: string,
): Promise<Array<{ ts: bigint; text: string; type: string; labels: object }>> {
  const b = ferry.storage.bucket('tab');
  if (!b.hasEntry(entry)) return [];
  return (await readText(ferry.storage, 'tab', entry)).map((r) => ({
    ts: r.ts,
    text: r.body,
    type: r.contentType,
    labels: { ...r.labels },
  }));
}

/** Per-record answer headers of a batch (`x-reduct-error-<ts>`, `x-ferry-present-<ts>`). */
const perRecord = (res: RawHttpResponse): Record<string, string> =>
  Object.fromEntries(
    Object.entries(res.headers)
      .filter(([k]) => k.startsWith('x-reduct-error-') || k.startsWith('x-ferry-present-'))
      .map(([k, v]) => [k, String(v)]),
  );

test('the server says it takes records tables', async () => {
  const res = await rawHttp('GET', `${ferry.url}/api/v1/info`, { authorization: `Bearer ${TOKEN}` });
  assert.equal(res.headers[FEATURES_HEADER], 'records-table');
});

test('records arrive exactly, labels a header list cannot carry included', async () => {
  const awkward = { Upper: 'north, "x"', quoted: '"q"', eq: 'k=v,w', latin: 'ünï', empty: '' };
  const res = await sendTable('exact', [
    { ts: 1n, payload: 'one', labels: awkward, contentType: 'a/b; x="1,2"' },
    { ts: 2n, payload: '', labels: awkward },
    { ts: 5n, payload: 'three', contentType: '' },
  ]);
  assert.equal(res.status, 200, String(res.headers['x-reduct-error']));
  assert.deepEqual(perRecord(res), {});
  assert.deepEqual(await stored('exact'), [
    { ts: 1n, text: 'one', type: 'a/b; x="1,2"', labels: awkward },
    { ts: 2n, text: '', type: 'text/plain', labels: awkward },
    { ts: 5n, text: 'three', type: 'application/octet-stream', labels: {} },
  ]);
});

test('a re-send is answered present in one request; real conflicts and damaged payloads per record', async () => {
  const first = [
    { ts: 10n, payload: 'aaa' },
    { ts: 11n, payload: 'bbb' },
  ];
  assert.equal((await sendTable('again', first)).status, 200);
  const res = await sendTable('again', [
    ...first,
    { ts: 12n, payload: 'ccc', digestOf: 'something else' },
    { ts: 13n, payload: 'ddd' },
  ]);
  assert.equal(res.status, 200);
  const answer = perRecord(res);
  assert.equal(answer['x-ferry-present-10'], '1');
  assert.equal(answer['x-ferry-present-11'], '1');
  assert.match(answer['x-reduct-error-12'] ?? '', /^400,Content digest mismatch for record 12/);
  assert.equal(Object.keys(answer).length, 3);
  const conflict = await sendTable('again', [{ ts: 10n, payload: 'xyz' }]);
  assert.match(perRecord(conflict)['x-reduct-error-10'] ?? '', /^409,/);
  assert.deepEqual(
    (await stored('again')).map((r) => [r.ts, r.text]),
    [
      [10n, 'aaa'],
      [11n, 'bbb'],
      [13n, 'ddd'],
    ],
  );
});

test('malformed or mismatched bodies are refused whole before anything is stored', async () => {
  const recs = [
    { ts: 20n, payload: 'aa' },
    { ts: 21n, payload: 'bb' },
  ];
  // a body whose length is not the declared one spoils its connection: one of its own
  const longer = await sendTable('refused', recs, {
    lengthDelta: -1,
    agent: new Agent({ keepAlive: false }),
  });
  assert.equal(longer.status, 422, String(longer.headers['x-reduct-error']));
  assert.match(
    String(longer.headers['x-reduct-error']),
    /doesn't match the table and the sum of record sizes/,
  );

  const disordered = encodeRecordsTable([
    { ts: 21n, size: 2, contentType: '', labels: {} },
    { ts: 20n, size: 2, contentType: '', labels: {} },
  ]);
  const bad = await sendTable('refused', recs, { table: disordered });
  assert.equal(bad.status, 422, String(bad.headers['x-reduct-error']));
  assert.match(String(bad.headers['x-reduct-error']), /timestamps must ascend strictly/);

  const garbage = await sendTable('refused', recs, { table: Buffer.from('not a table at all') });
  assert.equal(garbage.status, 422);
  assert.match(String(garbage.headers['x-reduct-error']), /must start with "FRT1"/);

  const labels = await sendTable('refused', [{ ts: 20n, payload: 'aa', labels: { 'no spaces': 'x' } }]);
  assert.equal(labels.status, 422);
  assert.match(String(labels.headers['x-reduct-error']), /Invalid label name/);

  const anonymous = await sendTable('refused', recs, { token: null });
  assert.equal(anonymous.status, 401);
  assert.deepEqual(await stored('refused'), []);
});

test('a record still being written is answered 425 (try again), not 409, to a sender with its digest', async () => {
  const body = Buffer.from('held-body');
  const held = new PassThrough();
  const first = ferry.storage.bucket('tab').write('held', 30n, { size: body.length }, held);
  held.write(body.subarray(0, 4));
  const res = await sendTable('held', [{ ts: 30n, payload: body.toString() }]);
  assert.match(
    perRecord(res)['x-reduct-error-30'] ?? '',
    /^425,Record with timestamp 30 is still being written/,
  );
  held.end(body.subarray(4));
  assert.equal(await first, 'written');
  const again = await sendTable('held', [{ ts: 30n, payload: body.toString() }]);
  assert.deepEqual(perRecord(again), { 'x-ferry-present-30': '1' });
});

test('label updates in a records table: exact names and values, an empty value removes', async () => {
  assert.equal(
    (await sendTable('upd', [{ ts: 40n, payload: 'x', labels: { Keep: '1', drop: '2' } }])).status,
    200,
  );
  /** One label-update batch of `labels` per timestamp, as a records table. */
  const patch = (ts: bigint, labels: Record<string, string>): Promise<RawHttpResponse> => {
    const table = encodeRecordsTable([{ ts, size: 0, contentType: '', labels }]);
    return rawHttp(
      'PATCH',
      `${ferry.url}/api/v1/b/tab/upd/batch`,
      {
        authorization: `Bearer ${TOKEN}`,
        'content-type': RECORDS_TABLE_CONTENT_TYPE,
        'content-length': table.length,
      },
      [table],
    );
  };
  const res = await patch(40n, { Keep: '"new", v', drop: '' });
  assert.equal(res.status, 200, String(res.headers['x-reduct-error']));
  assert.deepEqual((await stored('upd'))[0]!.labels, { Keep: '"new", v' });
  const nf = await patch(41n, { a: '1' });
  assert.match(perRecord(nf)['x-reduct-error-41'] ?? '', /^404,/);
});
