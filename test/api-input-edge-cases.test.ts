/**
 * Bad input a new user hit (issue 8 item 12, HTTP edge): a v1 batch whose lengths disagree is
 * refused before anything is stored (or, for a body of unknown length, reported per record, never
 * both); `DELETE /io/{b}/remove` accepts empty per-record values (api.md §11.7); token names are
 * validated like other names.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { rawHttp } from './helpers/raw-http.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-input-edge-token';
let server: TestServer | undefined;
let node: ApiNode;

before(async () => {
  server = await startTestServer('api-input-edge', TOKEN);
  node = { url: server.ferry.url, token: TOKEN };
  assert.equal((await call(node, 'POST', '/b/in')).status, 200);
});

after(() => stopTestServer(server));

const stored = async (entry: string, ts: number): Promise<number> =>
  (await call(node, 'GET', `/b/in/${entry}?ts=${ts}`)).status;

test('a v1 batch whose Content-Length disagrees with the declared lengths is refused before anything is stored', async () => {
  // x-reduct-content-length agrees with the record headers (2 + 2), the body itself has 6 bytes
  const r = await call(node, 'POST', '/b/in/len/batch', 'aabbcc', {
    headers: { 'x-reduct-content-length': '4', 'x-reduct-time-1': '2,', 'x-reduct-time-2': '2,' },
  });
  assert.equal(r.status, 422, String(r.error));
  assert.equal(r.error, "Content-length 6 doesn't match the sum of record sizes 4");
  assert.equal(await stored('len', 1), 404);
  assert.equal(await stored('len', 2), 404);
  // the same on v2
  const v2 = await call(node, 'POST', '/io/in/write', 'aabbcc', {
    headers: {
      'x-reduct-content-length': '4',
      'x-reduct-entries': 'len2',
      'x-reduct-start-ts': '1',
      'x-reduct-0-0': '2,',
      'x-reduct-0-1': '2',
    },
  });
  assert.equal(v2.status, 422);
  assert.equal(await stored('len2', 1), 404);
});

test('a compressed v1 batch that ends early stores the whole records and reports the others per record', async () => {
  const body = gzipSync(Buffer.from('aabb')); // records announce 2 + 2 + 2 bytes
  const r = await rawHttp(
    'POST',
    `${node.url}/api/v1/b/in/short/batch`,
    {
      authorization: `Bearer ${TOKEN}`,
      'content-encoding': 'gzip',
      'x-reduct-time-1': '2,',
      'x-reduct-time-2': '2,',
      'x-reduct-time-3': '2,',
    },
    [body],
  );
  assert.equal(r.status, 200, String(r.headers['x-reduct-error']));
  assert.equal(r.headers['x-reduct-error-1'], undefined);
  assert.equal(r.headers['x-reduct-error-2'], undefined);
  assert.equal(r.headers['x-reduct-error-3'], '400,Content is smaller than in content-length');
  assert.equal(await stored('short', 1), 200);
  assert.equal(await stored('short', 2), 200);
  assert.notEqual(await stored('short', 3), 200);
});

test('a compressed v1 batch longer than its records: stored records are reported, the last one is refused and not stored', async () => {
  const post = (entry: string, body: string, times: string[]) =>
    rawHttp(
      'POST',
      `${node.url}/api/v1/b/in/${entry}/batch`,
      {
        authorization: `Bearer ${TOKEN}`,
        'content-encoding': 'gzip',
        ...Object.fromEntries(times.map((t, k) => [`x-reduct-time-${k + 1}`, t])),
      },
      [gzipSync(Buffer.from(body))],
    );
  // records announce 2 + 2 + 2 bytes, the body has 8: the last record's length was wrong
  const r = await post('long', 'aabbccdd', ['2,', '2,', '2,']);
  assert.equal(r.status, 200, String(r.headers['x-reduct-error']));
  assert.equal(r.headers['x-reduct-error-1'], undefined);
  assert.equal(r.headers['x-reduct-error-2'], undefined);
  assert.equal(r.headers['x-reduct-error-3'], '400,Content is bigger than in content-length');
  assert.equal(await stored('long', 1), 200);
  assert.equal(await stored('long', 2), 200);
  assert.equal(await stored('long', 3), 404, 'a refused record is not stored');
  // an empty last record followed by extra bytes is refused the same way
  const e = await post('long-empty', 'aaXX', ['2,', '0,']);
  assert.equal(e.status, 200);
  assert.equal(e.headers['x-reduct-error-2'], '400,Content is bigger than in content-length');
  assert.equal(await stored('long-empty', 1), 200);
  assert.equal(await stored('long-empty', 2), 404);
  // nothing stored at all: the whole request is refused
  const one = await post('long-one', 'aabb', ['2,']);
  assert.equal(one.status, 400);
  assert.equal(one.headers['x-reduct-error'], 'Content is bigger than in content-length');
  assert.equal(await stored('long-one', 1), 404);
});

test('a v1 batch of unknown length whose small last record arrives in pieces: stored once the body ends with it, refused when bytes follow it', async () => {
  // chunked (no Content-Length): the end of the body is only known once it came
  const post = (entry: string, parts: Array<string | number>, times: string[]) =>
    rawHttp(
      'POST',
      `${node.url}/api/v1/b/in/${entry}/batch`,
      {
        authorization: `Bearer ${TOKEN}`,
        ...Object.fromEntries(times.map((t, k) => [`x-reduct-time-${k + 1}`, t])),
      },
      parts,
    );
  const one = await post('tail-one', ['ab', 20, 'c'], ['3,']);
  assert.equal(one.status, 200, String(one.headers['x-reduct-error']));
  assert.equal(one.headers['x-reduct-error-1'], undefined);
  const got = await call(node, 'GET', '/b/in/tail-one?ts=1');
  assert.equal(got.status, 200);
  assert.equal(got.text, 'abc');
  // bytes after the only record: nothing stored, the whole request is refused
  const extra = await post('tail-extra', ['abc', 20, 'X'], ['3,']);
  assert.equal(extra.status, 400);
  assert.equal(extra.headers['x-reduct-error'], 'Content is bigger than in content-length');
  assert.equal(await stored('tail-extra', 1), 404);
  // bytes after the last of two: the first is stored, the last refused and not stored
  const two = await post('tail-two', ['aab', 20, 'b', 20, 'XX'], ['2,', '2,']);
  assert.equal(two.status, 200);
  assert.equal(two.headers['x-reduct-error-1'], undefined);
  assert.equal(two.headers['x-reduct-error-2'], '400,Content is bigger than in content-length');
  assert.equal(await stored('tail-two', 1), 200);
  assert.equal(await stored('tail-two', 2), 404);
});

test('DELETE /io/{bucket}/remove ignores per-record values, empty ones included (api.md §11.7)', async () => {
  for (const ts of [1, 2, 3]) assert.equal((await call(node, 'POST', `/b/in/rm?ts=${ts}`, 'x')).status, 200);
  const r = await call(node, 'DELETE', '/io/in/remove', undefined, {
    headers: {
      'x-reduct-entries': 'rm',
      'x-reduct-start-ts': '1',
      'x-reduct-0-0': '',
      'x-reduct-0-1': '0,',
      'x-reduct-0-5': 'junk',
    },
  });
  assert.equal(r.status, 200, String(r.error));
  assert.equal(await stored('rm', 1), 404);
  assert.equal(await stored('rm', 2), 404);
  assert.equal(await stored('rm', 3), 200);
});

test('token names are validated like other names: newline, ✓ and 300 characters refused with 422', async () => {
  const message = 'Token name can contain only letters, digits and [-,_] symbols, at most 255 of them';
  for (const name of ['bad%0Aname', encodeURIComponent('ok✓'), 'a'.repeat(300), 'sp%20ace', 'dot.name']) {
    const r = await call(node, 'POST', `/tokens/${name}`, { permissions: { read: ['in'] } });
    assert.equal(r.status, 422, `${name}: ${r.status} ${r.error}`);
    assert.equal(r.error, message);
  }
  const ok = await call(node, 'POST', `/tokens/${'a'.repeat(255)}`, { permissions: { read: ['in'] } });
  assert.equal(ok.status, 200, 'a 255-character name works');
  const value = (ok.json as { value: string }).value;
  assert.equal((await call({ url: node.url, token: value }, 'GET', '/me')).status, 200, 'and authenticates');
});
