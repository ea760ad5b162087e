/**
 * Bounds of client fields at the HTTP edge (issue 8 item 1, README "Limits"): a field beyond its
 * bound is answered 422 naming the field before any byte is stored, on every write, batch and
 * update route, and never disturbs the writes of other clients running at the same time.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeaderComponent } from '../src/protocol/batch-v2.js';
import {
  MAX_CONTENT_TYPE_BYTES,
  MAX_ENTRY_NAME_BYTES,
  MAX_LABELS_PER_RECORD,
  MAX_LABEL_NAME_BYTES,
  MAX_LABEL_VALUE_BYTES,
  MAX_ORIGIN_BYTES,
} from '../src/protocol/limits.js';
import { call, type ApiNode } from './helpers/ferry-api.js';
import { startTestServer, stopTestServer, type TestServer } from './helpers/test-server.js';

const TOKEN = 'api-field-bounds-token';
let server: TestServer | undefined;
let node: ApiNode;

before(async () => {
  server = await startTestServer('api-field-bounds', TOKEN);
  node = { url: server.ferry.url, token: TOKEN };
  assert.equal((await call(node, 'POST', '/b/fb')).status, 200);
});

after(() => stopTestServer(server));

const write = (entry: string, ts: number | bigint, headers: Record<string, string>, body = 'x') =>
  call(node, 'POST', `/b/fb/${entry}?ts=${ts}`, body, {
    headers: { 'content-type': 'text/plain', ...headers },
  });

/** Asserts a 422 whose message names `field`, and that nothing was stored at entry/ts. */
async function assertRefused(
  r: { status: number; error: string | null },
  field: string,
  stored?: { entry: string; ts: number | bigint },
): Promise<void> {
  assert.equal(r.status, 422, `expected 422 naming ${field}, got ${r.status} ${r.error}`);
  assert.ok(r.error?.includes(field), `message names ${field}: ${r.error}`);
  assert.ok((r.error ?? '').length < 300, 'the long value is not echoed back');
  if (stored) {
    const read = await call(node, 'GET', `/b/fb/${stored.entry}?ts=${stored.ts}`);
    assert.equal(read.status, 404, `nothing stored at ${stored.entry}@${stored.ts}`);
  }
}

test("the issue's oversized fields are 422 naming the field while concurrent good writers all succeed", async () => {
  const errors: string[] = [];
  const origError = console.error;
  console.error = (...args: unknown[]) => errors.push(args.map(String).join(' '));
  try {
    const bigType = `text/${'x'.repeat(70_000 - 5)}`;
    const bigName = 'n'.repeat(64 * 1024 + 1);
    const bigOrigin = 'o'.repeat(64 * 1024 + 1);
    const bad: Array<() => Promise<void>> = [];
    for (let i = 0; i < 10; i++) {
      const ts = 1000 + i;
      bad.push(async () =>
        assertRefused(await write('bad', ts, { 'content-type': bigType }), 'Content-Type', {
          entry: 'bad',
          ts,
        }),
      );
      bad.push(async () =>
        assertRefused(await write('bad', ts + 100, { [`x-reduct-label-${bigName}`]: 'v' }), 'Label name', {
          entry: 'bad',
          ts: ts + 100,
        }),
      );
      bad.push(async () =>
        assertRefused(await write('bad', ts + 200, { 'x-ferry-origin': bigOrigin }), 'x-ferry-origin', {
          entry: 'bad',
          ts: ts + 200,
        }),
      );
      bad.push(async () =>
        assertRefused(
          await call(node, 'POST', '/b/fb/bad/batch', 'xy', {
            headers: { [`x-reduct-time-${ts + 300}`]: `1,${bigType}`, [`x-reduct-time-${ts + 301}`]: '1,' },
          }),
          `Content-Type in header 'x-reduct-time-${ts + 300}'`,
          { entry: 'bad', ts: ts + 301 },
        ),
      );
      bad.push(async () =>
        assertRefused(
          await call(node, 'POST', '/io/fb/write', 'xy', {
            headers: {
              'x-reduct-entries': 'bad',
              'x-reduct-start-ts': String(ts + 400),
              'x-reduct-0-0': '1,text/plain',
              'x-reduct-0-1': `1,,${bigName}=v`,
            },
          }),
          'Label name',
          { entry: 'bad', ts: ts + 400 },
        ),
      );
    }
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let k = 0; k < 25; k++) {
        const r = await write(`good-${w}`, 1000 + k, { 'x-reduct-label-k': String(k) }, `w${w}-${k}`);
        assert.equal(r.status, 200, `good writer ${w} record ${k}: ${r.status} ${r.error}`);
      }
    });
    await Promise.all([...writers, ...bad.map((b) => b())]);
    for (let w = 0; w < 8; w++) {
      const r = await call(node, 'GET', `/b/fb/good-${w}?ts=1024`);
      assert.equal(r.text, `w${w}-24`);
    }
  } finally {
    console.error = origError;
  }
  assert.deepEqual(
    errors.filter((e) => /\n\s+at /.test(e) || e.includes('Storage failure')),
    [],
    'no stack trace is logged for a client error',
  );
});

test('each bound: the largest allowed value is stored, one byte more is refused', async () => {
  const name = 'a'.repeat(MAX_LABEL_NAME_BYTES);
  assert.equal((await write('edge', 1, { 'content-type': 'a'.repeat(MAX_CONTENT_TYPE_BYTES) })).status, 200);
  await assertRefused(
    await write('edge', 2, { 'content-type': 'a'.repeat(MAX_CONTENT_TYPE_BYTES + 1) }),
    'Content-Type is too long',
    { entry: 'edge', ts: 2 },
  );
  assert.equal((await write('edge', 3, { [`x-reduct-label-${name}`]: 'v' })).status, 200);
  await assertRefused(await write('edge', 4, { [`x-reduct-label-${name}b`]: 'v' }), 'Label name', {
    entry: 'edge',
    ts: 4,
  });
  assert.equal(
    (await write('edge', 5, { 'x-reduct-label-v': 'v'.repeat(MAX_LABEL_VALUE_BYTES) })).status,
    200,
  );
  await assertRefused(
    await write('edge', 6, { 'x-reduct-label-v': 'v'.repeat(MAX_LABEL_VALUE_BYTES + 1) }),
    "Value of label 'v'",
    { entry: 'edge', ts: 6 },
  );
  const many = (n: number): Record<string, string> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-reduct-label-l${i}`, '1']));
  assert.equal((await write('edge', 7, many(MAX_LABELS_PER_RECORD))).status, 200);
  await assertRefused(await write('edge', 8, many(MAX_LABELS_PER_RECORD + 1)), 'Too many labels', {
    entry: 'edge',
    ts: 8,
  });
  // 5 values of 16 KiB: each allowed, together above the 64 KiB total
  const heavy = Object.fromEntries(
    Array.from({ length: 5 }, (_, i) => [`x-reduct-label-h${i}`, 'h'.repeat(MAX_LABEL_VALUE_BYTES - 2)]),
  );
  await assertRefused(await write('edge', 9, heavy), 'Labels are too large', { entry: 'edge', ts: 9 });
  assert.equal((await write('edge', 10, { 'x-ferry-origin': 'o'.repeat(MAX_ORIGIN_BYTES) })).status, 200);
  await assertRefused(
    await write('edge', 11, { 'x-ferry-origin': 'o'.repeat(MAX_ORIGIN_BYTES + 1) }),
    'x-ferry-origin',
    { entry: 'edge', ts: 11 },
  );
  const longEntry = Array.from({ length: MAX_ENTRY_NAME_BYTES / 8 }, () => 'abcdefg').join('/');
  assert.equal((await write(longEntry, 12, {})).status, 200);
  await assertRefused(await write(`${longEntry}/abcdefgh`, 13, {}), 'Entry name is too long');
});

test('label updates (single, v1 and v2 batches) are bounded the same way', async () => {
  assert.equal((await write('upd', 1, {})).status, 200);
  const tooLong = 'v'.repeat(MAX_LABEL_VALUE_BYTES + 1);
  await assertRefused(
    await call(node, 'PATCH', '/b/fb/upd?ts=1', undefined, { headers: { 'x-reduct-label-v': tooLong } }),
    "Value of label 'v'",
  );
  await assertRefused(
    await call(node, 'PATCH', '/b/fb/upd/batch', undefined, {
      headers: { 'x-reduct-time-1': `0,,v=${tooLong}` },
    }),
    "Value of label 'v' in header 'x-reduct-time-1'",
  );
  await assertRefused(
    await call(node, 'PATCH', '/io/fb/update', undefined, {
      headers: {
        'x-reduct-entries': encodeHeaderComponent('upd'),
        'x-reduct-start-ts': '1',
        'x-reduct-0-0': `0,,v=${tooLong}`,
      },
    }),
    "Value of label 'v' in header 'x-reduct-0-0'",
  );
  const read = await fetch(`${node.url}/api/v1/b/fb/upd?ts=1`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(read.status, 200);
  assert.equal(read.headers.get('x-reduct-label-v'), null, 'the record is unchanged');
});
