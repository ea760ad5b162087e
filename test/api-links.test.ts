/**
 * Query links (api.md §15) through reduct-js `createQueryLink` and raw HTTP: links work without an
 * Authorization header, encode the query, the record and the expiry, die with their token, survive
 * a restart, reject tampering, and serve `Range` requests.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Bucket } from 'reduct-js';
import type { RunningFerry } from '../src/server.js';
import { LINK_KEY_FILE } from '../src/http/links/link-keys.js';
import { call } from './helpers/ferry-api.js';
import { rawHttp } from './helpers/raw-http.js';
import { startFerryIn } from './helpers/test-server.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'api-links-test-token';
let dir: string;
let ferry: RunningFerry;
let client: Client;
let bucket: Bucket;
const big = randomBytes(600 * 1024);

async function start(env: Record<string, string> = {}): Promise<void> {
  ferry = await startFerryIn(dir, TOKEN, env);
  client = new Client(ferry.url, { apiToken: TOKEN });
  bucket = await client.getBucket('shared');
}

async function write(entry: string, ts: bigint, data: string | Buffer, labels = {}): Promise<void> {
  const w = await bucket.beginWrite(entry, { ts, labels, contentType: 'text/plain' });
  await w.write(data);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-links-'));
  ferry = await startFerryIn(dir, TOKEN);
  client = new Client(ferry.url, { apiToken: TOKEN });
  bucket = await client.createBucket('shared');
  await write('cam/front', 1_000_000n, 'front-1', { kind: 'a' });
  await write('cam/front', 2_000_000n, 'front-2', { kind: 'b' });
  await write('cam/rear', 1_500_000n, 'rear-1', { kind: 'a' });
  await write('cam/rear', 2_500_000n, '0123456789', { kind: 'b' });
  await write('big', 1_000_000n, big);
  await ferry.close();
  await start();
});

after(async () => {
  await ferry?.close();
  await rm(dir, { recursive: true, force: true });
});

/** GET of a link without any Authorization header. */
const fetchLink = (link: string, headers: Record<string, string> = {}) => rawHttp('GET', link, headers);

test('a link made with reduct-js reads its record without a token; no secret is in the URL', async () => {
  const link = await bucket.createQueryLink('cam/front', undefined, undefined, undefined, {
    entry: 'cam/front',
    timestamp: 2_000_000n,
  });
  assert.ok(link.startsWith(`${ferry.url}/api/v1/links/cam/front_2000000.bin?`), link);
  assert.ok(!link.includes(TOKEN), 'the token value must not be part of the link');
  const r = await fetchLink(link);
  assert.equal(r.status, 200, String(r.headers['x-reduct-error']));
  assert.equal(r.body.toString(), 'front-2');
  assert.equal(r.headers['x-reduct-time'], '2000000');
  assert.equal(r.headers['x-reduct-entry'], 'cam/front');
  assert.equal(r.headers['x-reduct-label-kind'], 'b');
  assert.equal(r.headers['accept-ranges'], 'bytes');
  assert.equal(r.headers['content-type'], 'text/plain');
});

test('custom file name, multi-entry query, e/ts overrides and records outside the result', async () => {
  const link = await bucket.createQueryLink(
    ['cam/front', 'cam/rear'],
    undefined,
    undefined,
    { when: { '&kind': { $eq: 'a' } } },
    { entry: 'cam/rear', timestamp: 1_500_000n },
    undefined,
    'rear photo.txt',
  );
  assert.ok(link.includes('/api/v1/links/rear%20photo.txt?'), link);
  const r = await fetchLink(link);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'rear-1');

  const other = await fetchLink(`${link}&e=cam/front&ts=1000000`);
  assert.equal(other.status, 200);
  assert.equal(other.body.toString(), 'front-1');

  // kind=b is filtered out by the link's query
  const filtered = await fetchLink(`${link}&e=cam/front&ts=2000000`);
  assert.equal(filtered.status, 404);
  assert.equal(
    filtered.headers['x-reduct-error'],
    "Record 2000000 of entry 'cam/front' is not in the result of the query link",
  );
});

test('stateful conditions select exactly what the query returns', async () => {
  const link = async (when: Record<string, unknown>, ts: bigint): Promise<number> => {
    const l = await bucket.createQueryLink(
      'cam/front',
      undefined,
      undefined,
      { when },
      { entry: 'cam/front', timestamp: ts },
    );
    return (await fetchLink(l)).status;
  };
  // $each_n: 2 lets only the second record through, $limit: 1 only the first
  assert.equal(await link({ $each_n: 2 }, 2_000_000n), 200);
  assert.equal(await link({ $each_n: 2 }, 1_000_000n), 404);
  assert.equal(await link({ $limit: 1 }, 1_000_000n), 200);
  assert.equal(await link({ $limit: 1 }, 2_000_000n), 404);
  // a stateless query reads the record alone, and still checks its time range and condition
  const ranged = await bucket.createQueryLink('cam/front', 1_500_000n, undefined, undefined, {
    entry: 'cam/front',
    timestamp: 1_000_000n,
  });
  assert.equal((await fetchLink(ranged)).status, 404);
  assert.equal((await fetchLink(`${ranged}&ts=2000000`)).status, 200);
});

test('expiry: links without expiry work, expired links answer 422', async () => {
  const noExpiry = await call({ url: ferry.url, token: TOKEN }, 'POST', '/links/x.bin', {
    bucket: 'shared',
    entry: 'cam/front',
    record_entry: 'cam/front',
    record_timestamp: 1_000_000,
    query: { query_type: 'QUERY' },
  });
  assert.equal(noExpiry.status, 200, noExpiry.error ?? '');
  const ok = await fetchLink((noExpiry.json as { link: string }).link);
  assert.equal(ok.body.toString(), 'front-1');

  const expired = await bucket.createQueryLink(
    'cam/front',
    undefined,
    undefined,
    undefined,
    { entry: 'cam/front', timestamp: 1_000_000n },
    new Date(Date.now() - 1000),
  );
  const r = await fetchLink(expired);
  assert.equal(r.status, 422);
  assert.equal(r.headers['x-reduct-error'], 'Query link has expired');
});

test('Range: 206 with Content-Range, suffix ranges, 416 when unsatisfiable, large records', async () => {
  const link = await bucket.createQueryLink('cam/rear', undefined, undefined, undefined, {
    entry: 'cam/rear',
    timestamp: 2_500_000n,
  });
  const part = await fetchLink(link, { range: 'bytes=2-5' });
  assert.equal(part.status, 206);
  assert.equal(part.body.toString(), '2345');
  assert.equal(part.headers['content-range'], 'bytes 2-5/10');
  assert.equal(part.headers['content-length'], '4');
  const suffix = await fetchLink(link, { range: 'bytes=-3' });
  assert.equal(suffix.status, 206);
  assert.equal(suffix.body.toString(), '789');
  const open = await fetchLink(link, { range: 'bytes=8-' });
  assert.equal(open.body.toString(), '89');
  const bad = await fetchLink(link, { range: 'bytes=10-20' });
  assert.equal(bad.status, 416);
  assert.equal(bad.headers['content-range'], 'bytes */10');
  assert.equal(bad.headers['x-reduct-error'], 'Range not satisfiable');

  const bigLink = await bucket.createQueryLink('big', undefined, undefined, undefined, {
    entry: 'big',
    timestamp: 1_000_000n,
  });
  const whole = await fetchLink(bigLink);
  assert.ok(whole.body.equals(big));
  const tail = await fetchLink(bigLink, { range: `bytes=${big.length - 70_000}-${big.length - 5}` });
  assert.equal(tail.status, 206);
  assert.ok(tail.body.equals(big.subarray(big.length - 70_000, big.length - 4)));
});

test('a link dies when its token is removed or rotated; permissions are re-checked', async () => {
  const makeLink = async (name: string): Promise<string> => {
    const value = await client.createToken(name, { fullAccess: false, read: ['shared'] });
    const c = new Client(ferry.url, { apiToken: value });
    const b = await c.getBucket('shared');
    return b.createQueryLink('cam/front', undefined, undefined, undefined, {
      entry: 'cam/front',
      timestamp: 1_000_000n,
    });
  };
  const removed = await makeLink('reader-removed');
  assert.equal((await fetchLink(removed)).status, 200);
  await client.deleteToken('reader-removed');
  const gone = await fetchLink(removed);
  assert.equal(gone.status, 422);
  assert.equal(
    gone.headers['x-reduct-error'],
    'Invalid query link: it was altered, or the token that issued it was removed or rotated',
  );
  // a new token of the same name does not revive the link
  await client.createToken('reader-removed', { fullAccess: false, read: ['shared'] });
  assert.equal((await fetchLink(removed)).status, 422);

  const rotated = await makeLink('reader-rotated');
  assert.equal((await fetchLink(rotated)).status, 200);
  await client.rotateToken('reader-rotated');
  assert.equal((await fetchLink(rotated)).status, 422);

  // the bucket is removed and created again: the token lost its read permission, the link answers 403
  await client.createBucket('temp');
  const tb = await client.getBucket('temp');
  const w = await tb.beginWrite('e', { ts: 5n });
  await w.write('t');
  const tv = await client.createToken('temp-reader', { fullAccess: false, read: ['temp'] });
  const tlink = await (
    await new Client(ferry.url, { apiToken: tv }).getBucket('temp')
  ).createQueryLink('e', undefined, undefined, undefined, { entry: 'e', timestamp: 5n });
  assert.equal((await fetchLink(tlink)).status, 200);
  await tb.remove();
  // removal is asynchronous (409 "being deleted" until it is gone): poll the list, as clients do
  await waitFor(async () => !(await client.getBucketList()).some((b) => b.name === 'temp'), {
    message: "bucket 'temp' to be gone",
  });
  await client.createBucket('temp');
  const denied = await fetchLink(tlink);
  assert.equal(denied.status, 403);
  assert.equal(
    denied.headers['x-reduct-error'],
    "Token 'temp-reader' doesn't have read access to bucket 'temp'",
  );

  // no read access: 403 when creating, with the exact message
  const value = await client.createToken('writer-only', { fullAccess: false, write: ['shared'] });
  const r = await call({ url: ferry.url, token: value }, 'POST', '/links/x', {
    bucket: 'shared',
    record_entry: 'cam/front',
    record_timestamp: 1_000_000,
    query: { query_type: 'QUERY' },
  });
  assert.equal(r.status, 403);
  assert.equal(r.error, "Token 'writer-only' doesn't have read access to bucket 'shared'");
});

test('tampered links are refused', async () => {
  const link = await bucket.createQueryLink('cam/front', undefined, undefined, undefined, {
    entry: 'cam/front',
    timestamp: 1_000_000n,
  });
  const url = new URL(link);
  const ct = url.searchParams.get('ct')!;
  const flip = (s: string, i: number): string => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  for (const [param, value] of [
    ['ct', flip(ct, 5)],
    ['ct', flip(ct, ct.length - 1)],
    ['s', flip(url.searchParams.get('s')!, 0)],
    ['i', 'AUTHENTICATION-DISABLED'],
  ] as const) {
    const t = new URL(link);
    t.searchParams.set(param, value);
    const r = await fetchLink(t.toString());
    assert.equal(r.status, 422, `${param}=${value}`);
  }
  const noCt = new URL(link);
  noCt.searchParams.delete('ct');
  const r = await fetchLink(noCt.toString());
  assert.equal(r.status, 422);
  assert.equal(r.headers['x-reduct-error'], "Missing 'ct' parameter");
});

test('creation errors of §15', async () => {
  const node = { url: ferry.url, token: TOKEN };
  const body = {
    bucket: 'shared',
    record_entry: 'cam/front',
    record_timestamp: 1_000_000,
    query: { query_type: 'QUERY' },
  };
  const cases: Array<[Record<string, unknown>, number, string]> = [
    [{ ...body, query: { query_type: 'REMOVE' } }, 422, "Only 'Query' type is supported for query links"],
    [{ ...body, record_entry: undefined }, 422, "Missing field 'record_entry' in the query link request"],
    [
      { ...body, record_timestamp: undefined },
      422,
      "Missing field 'record_timestamp' in the query link request",
    ],
    [
      { ...body, base_url: 'not a url' },
      422,
      'Invalid base_url provided for query link: relative URL without a base',
    ],
    [
      { ...body, base_url: 'ftp://x/' },
      422,
      "Invalid base_url provided for query link: unsupported scheme 'ftp'",
    ],
    [{ ...body, bucket: 'nope' }, 404, "Bucket 'nope' is not found"],
  ];
  for (const [b, status, message] of cases) {
    const r = await call(node, 'POST', '/links/f', b);
    assert.equal(r.status, status, message);
    assert.equal(r.error, message);
  }
  const anon = await rawHttp('POST', `${ferry.url}/api/v1/links/f`, {}, [JSON.stringify(body)]);
  assert.equal(anon.status, 401);

  const withBase = await call(node, 'POST', '/links/f.bin', {
    ...body,
    base_url: 'https://files.example.com/ferry',
  });
  assert.ok(
    (withBase.json as { link: string }).link.startsWith(
      'https://files.example.com/ferry/api/v1/links/f.bin?',
    ),
  );
});

test('links survive a restart; RS_PUBLIC_URL sets their base; the master key file is 0600', async () => {
  const link = await bucket.createQueryLink('cam/front', undefined, undefined, undefined, {
    entry: 'cam/front',
    timestamp: 2_000_000n,
  });
  const oldUrl = ferry.url;
  await ferry.close();
  await start({ RS_PUBLIC_URL: 'https://public.example.org/base' });
  const path = link.slice(oldUrl.length);
  const r = await fetchLink(`${ferry.url}${path}`);
  assert.equal(r.status, 200, String(r.headers['x-reduct-error']));
  assert.equal(r.body.toString(), 'front-2');
  const next = await bucket.createQueryLink('cam/front', undefined, undefined, undefined, {
    entry: 'cam/front',
    timestamp: 2_000_000n,
  });
  assert.ok(next.startsWith('https://public.example.org/base/api/v1/links/'), next);
  assert.equal((await stat(join(dir, LINK_KEY_FILE))).mode & 0o777, 0o600);
});
