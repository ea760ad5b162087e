/**
 * Malformed HTTP input against a real Ferry process: names, timestamps, batch headers, labels, header
 * limits, JSON bodies, `when` conditions and truncated bodies. Every answer must be a 4xx carrying
 * `x-reduct-api` and a non-empty `x-reduct-error` (never a 5xx, never a hang), the server must keep
 * serving, stored records must not change and nothing may be written outside the data directory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import './helpers/property-config.js';
import { seededBytes, seededRandom } from './helpers/seed.js';
import { Client } from 'reduct-js';
import { spawnFerry, type FerryProcess } from './helpers/ferry-process.js';
import {
  diffSnapshots,
  formatDiff,
  isEmptyDiff,
  snapshotBucket,
  type BucketSnapshot,
} from './helpers/records.js';
import { rawRequest, type RawRequest, type RawResponse } from './helpers/fuzz-raw-http.js';

const JSON_LIMIT = 256 * 1024;
const BUCKET = 'fz';
const SCRATCH = 'fz-scratch';
const FC = { numRuns: 40, endOnFailure: true } as const;

let root: string;
let dataPath: string;
let ferry: FerryProcess;
let before0: BucketSnapshot;
let treeBefore: string[];
let settingsBefore: string;
let casesRun = 0;

/** Every path under `dir` except inside the data directory, relative to `dir`. */
function treeOutsideData(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (p === dataPath) continue;
      out.push(relative(root, p) + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

const auth = (): [string, string] => ['authorization', `Bearer ${ferry.token}`];

async function send(r: RawRequest): Promise<RawResponse> {
  casesRun++;
  return await rawRequest(ferry.port, { ...r, headers: [auth(), ...(r.headers ?? [])] });
}

function show(r: RawRequest): string {
  const hs = (r.headers ?? []).map(
    ([k, v]) => `${k}: ${v.length > 80 ? `${v.slice(0, 80)}…(${v.length})` : v}`,
  );
  const body =
    r.body === undefined ? '' : ` body ${JSON.stringify(String(r.body).slice(0, 80))}(${r.body.length})`;
  return `${r.method} ${r.path.length > 120 ? `${r.path.slice(0, 120)}…(${r.path.length})` : r.path} [${hs.join('; ')}]${body}`;
}

/** The answer is a proper API error: 4xx, `x-reduct-api`, non-empty `x-reduct-error`. */
function assertRejected(res: RawResponse, r: RawRequest): void {
  const what = `${show(r)} → ${res.status} ${res.headers.get('x-reduct-error') ?? '(no x-reduct-error)'}`;
  assert.ok(res.status >= 400 && res.status < 500, `expected a 4xx: ${what}`);
  assert.ok(res.headers.has('x-reduct-api'), `no x-reduct-api: ${what}`);
  assert.ok((res.headers.get('x-reduct-error') ?? '') !== '', `empty x-reduct-error: ${what}`);
}

async function assertAlive(after: string): Promise<void> {
  const res = await rawRequest(ferry.port, { method: 'GET', path: '/api/v1/alive', timeoutMs: 5000 });
  assert.equal(res.status, 200, `server not alive after ${after}`);
}

/** Record headers of a v1 (`x-reduct-time-*`) or v2 (`x-reduct-<i>-<d>`) batch request. */
function recordHeaderCount(r: RawRequest): number {
  return (r.headers ?? []).filter(([k]) => /^x-reduct-(time-|\d+-)/i.test(k)).length;
}

/**
 * Batch writes may also refuse record by record: 200 with an `x-reduct-error-*` header for every
 * record sent (api.md §10.2, §11.5). Anything else must be a proper 4xx.
 */
function assertRejectedOrAllRecordsFailed(res: RawResponse, r: RawRequest): void {
  const n = recordHeaderCount(r);
  const perRecord = [...res.headers.keys()].filter((k) => k.startsWith('x-reduct-error-')).length;
  if (res.status === 200 && n > 0 && perRecord >= n && res.headers.has('x-reduct-api')) return;
  assertRejected(res, r);
}

/** Sends a malformed request, checks the rejection and that the server still answers. */
async function rejects(r: RawRequest): Promise<RawResponse> {
  const res = await send(r);
  assertRejectedOrAllRecordsFailed(res, r);
  await assertAlive(show(r));
  return res;
}

async function rejectsAll(reqs: RawRequest[]): Promise<void> {
  const failures: string[] = [];
  for (const r of reqs) {
    try {
      await rejects(r);
    } catch (e) {
      failures.push((e as Error).message.split('\n')[0]!);
    }
  }
  assert.deepEqual(
    failures,
    [],
    `${failures.length} of ${reqs.length} malformed requests not rejected properly`,
  );
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ferry-fuzz-'));
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  dataPath = join(root, 'a', 'b', 'data');
  ferry = await spawnFerry({
    dataPath,
    env: {
      RS_SYSTEM_EVENTS_ENABLED: 'false',
      FERRY_MAX_JSON_BODY: String(JSON_LIMIT),
      RS_IO_OPERATION_TIMEOUT: '1',
    },
  });
  const client = new Client(ferry.url, { apiToken: ferry.token });
  const bucket = await client.createBucket(BUCKET);
  await client.createBucket(SCRATCH);
  const batch = bucket.beginWriteRecordBatch();
  for (let i = 0; i < 20; i++) {
    batch.add(
      i % 2 === 0 ? 'known' : 'known/sub',
      1_000_000n + BigInt(i),
      seededBytes(seededRandom(`fuzz-http/seed-record-${i}`), i * 37),
      'text/plain',
      {
        i: String(i),
        list: '[a,b]',
      },
    );
  }
  assert.equal((await batch.send()).size, 0);
  const w = await bucket.beginWrite('other', { ts: 3_000_000n, labels: { x: 'y' } });
  await w.write('other record');
  before0 = await snapshotBucket(ferry.url, ferry.token, BUCKET);
  assert.equal(before0.size, 21);
  treeBefore = treeOutsideData(root);
  settingsBefore = (await send({ method: 'GET', path: `/api/v1/b/${BUCKET}` })).body.toString();
});

after(async () => {
  await ferry?.kill('SIGKILL');
  if (root) rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------- names

const BAD_NAME_PARTS = [
  '.',
  '..',
  ' ',
  '%',
  '$',
  'é',
  '😀',
  '\u0000',
  ':',
  '*',
  '?',
  '#',
  '"',
  '\\',
  '<',
  '~',
  '\n',
  '+',
  '&',
  '=',
];

/** Bucket names that are invalid whatever else they contain (a character outside [A-Za-z0-9_-]). */
const badBucketName = fc
  .tuple(
    fc.stringMatching(/^[A-Za-z0-9_-]{0,6}$/),
    fc.constantFrom(...BAD_NAME_PARTS),
    fc.string({ maxLength: 6 }),
  )
  .map(([a, bad, b]) => a + bad + b);

test('invalid bucket names', async () => {
  const fixed = [
    '..',
    '.',
    '%2e%2e',
    '%2E%2E',
    '..%2F..%2Fescape',
    '%2e%2e%2f%2e%2e%2fescape',
    'a%2Fb',
    '%00',
    '%C3%A9',
    '%F0%9F%98%80',
    '%ZZ',
    '%',
    `${'x'.repeat(300)}.`,
    'a%20b',
  ];
  const reqs: RawRequest[] = [];
  for (const name of fixed) {
    reqs.push({ method: 'POST', path: `/api/v1/b/${name}`, body: '{}' });
    reqs.push({ method: 'GET', path: `/api/v1/b/${name}` });
    reqs.push({ method: 'PUT', path: `/api/v1/b/${name}`, body: '{}' });
    reqs.push({ method: 'DELETE', path: `/api/v1/b/${name}` });
    reqs.push({ method: 'POST', path: `/api/v1/b/${name}/e?ts=5`, body: 'x' });
    reqs.push({
      method: 'POST',
      path: `/api/v1/io/${name}/write`,
      body: 'x',
      headers: [
        ['x-reduct-entries', 'e'],
        ['x-reduct-start-ts', '5'],
        ['x-reduct-0-0', '1,'],
      ],
    });
  }
  await rejectsAll(reqs);
  await fc.assert(
    fc.asyncProperty(badBucketName, fc.constantFrom('create', 'write', 'rename'), async (name, op) => {
      const enc = encodeURIComponent(name);
      if (op === 'create') await rejects({ method: 'POST', path: `/api/v1/b/${enc}`, body: '{}' });
      else if (op === 'write') await rejects({ method: 'POST', path: `/api/v1/b/${enc}/e?ts=7`, body: 'x' });
      else
        await rejects({
          method: 'PUT',
          path: `/api/v1/b/${SCRATCH}/rename`,
          body: JSON.stringify({ new_name: name }),
        });
    }),
    FC,
  );
});

/**
 * Creating (or writing into) a name of `len` characters. With `mustWork` anything but a 200 that
 * reads back is a problem; otherwise a 4xx is accepted too. Never a 5xx.
 */
async function longNameProblems(kind: 'bucket' | 'entry', len: number, mustWork: boolean): Promise<string[]> {
  const problems: string[] = [];
  const name = (kind === 'bucket' ? 'L' : 'E').repeat(len);
  const target = kind === 'bucket' ? `/api/v1/b/${name}` : `/api/v1/b/${SCRATCH}/${name}`;
  const refusedWrongly = (status: number): boolean =>
    mustWork ? status !== 200 : status !== 200 && (status < 400 || status >= 500);
  if (kind === 'bucket') {
    const res = await send({ method: 'POST', path: target, body: '{}' });
    if (res.status !== 200) {
      if (refusedWrongly(res.status))
        problems.push(
          `create ${len}-char bucket → ${res.status} ${res.headers.get('x-reduct-error')?.slice(0, 60)}…`,
        );
      await assertAlive(`${len}-char bucket`);
      return problems;
    }
  }
  const w = await send({
    method: 'POST',
    path: `${kind === 'bucket' ? `${target}/e` : target}?ts=1`,
    body: 'x',
  });
  if (w.status === 200) {
    const r = await send({ method: 'GET', path: `${kind === 'bucket' ? `${target}/e` : target}?ts=1` });
    if (r.status !== 200 || r.body.toString() !== 'x')
      problems.push(`${len}-char ${kind}: written but reads as ${r.status}`);
  } else if (refusedWrongly(w.status)) {
    problems.push(
      `write into ${len}-char ${kind} → ${w.status} ${w.headers.get('x-reduct-error')?.slice(0, 60)}…`,
    );
  }
  if (kind === 'bucket') await send({ method: 'DELETE', path: target });
  await assertAlive(`${len}-char ${kind}`);
  return problems;
}

test('bucket and entry names of up to 255 characters work', async () => {
  const problems: string[] = [];
  for (const len of [200, 255]) {
    problems.push(
      ...(await longNameProblems('bucket', len, true)),
      ...(await longNameProblems('entry', len, true)),
    );
  }
  assert.deepEqual(problems, []);
});

test('longer bucket and entry names are a 4xx (or work), never a 5xx', {}, async () => {
  const problems: string[] = [];
  for (const len of [256, 1000, 4000]) {
    problems.push(
      ...(await longNameProblems('bucket', len, false)),
      ...(await longNameProblems('entry', len, false)),
    );
  }
  assert.deepEqual(problems, []);
});

/** Entry names invalid after percent-decoding (traversal, empty segments, odd characters). */
const FIXED_BAD_ENTRIES = [
  '..',
  '.',
  '../x',
  'a/../b',
  'a/./b',
  '../../../escape',
  '..%2F..%2F..%2Fescape',
  '%2e%2e',
  '%2E%2E%2Fx',
  'a%2F%2Fb',
  '%2Fa',
  'a%2F',
  'a//b',
  'a//',
  '.hidden',
  'a%00b',
  '%C3%A9',
  'a%20b',
  'a%2Fb%2F..',
  '%2F%2F',
  '$meta',
  'x/$meta/y',
  '%24meta',
  'x.y',
  `${'s'.repeat(300)}.`,
];

const badEntryName = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9]{0,4}(\/[a-z0-9]{1,4}){0,2}$/),
    fc.constantFrom(...BAD_NAME_PARTS, '/', '//'),
    fc.string({ maxLength: 4 }),
  )
  .map(([a, bad, b]) => a + bad + b)
  .filter((n) => !/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(n));

test('invalid entry names on every write path', async () => {
  const reqs: RawRequest[] = [];
  for (const name of FIXED_BAD_ENTRIES) {
    reqs.push({ method: 'POST', path: `/api/v1/b/${BUCKET}/${name}?ts=5000001`, body: 'abc' });
    reqs.push({
      method: 'POST',
      path: `/api/v1/b/${BUCKET}/${name}/batch`,
      body: 'abc',
      headers: [['x-reduct-time-5000002', '3,']],
    });
    reqs.push({
      method: 'PUT',
      path: `/api/v1/b/${BUCKET}/other/rename`,
      body: JSON.stringify({ new_name: decodeURIComponentSafe(name) }),
    });
  }
  await rejectsAll(reqs);
  await fc.assert(
    fc.asyncProperty(badEntryName, fc.constantFrom('single', 'v1', 'v2'), async (name, path) => {
      if (path === 'single') {
        await rejects({
          method: 'POST',
          path: `/api/v1/b/${BUCKET}/${encodeURIComponent(name)}?ts=5000003`,
          body: 'abc',
        });
      } else if (path === 'v1') {
        await rejects({
          method: 'POST',
          path: `/api/v1/b/${BUCKET}/${encodeURIComponent(name)}/batch`,
          body: 'abc',
          headers: [['x-reduct-time-5000004', '3,']],
        });
      } else {
        const enc = [...Buffer.from(name)]
          .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
          .join('');
        await rejects({
          method: 'POST',
          path: `/api/v1/io/${BUCKET}/write`,
          body: 'abc',
          headers: [
            ['x-reduct-entries', enc],
            ['x-reduct-start-ts', '5000005'],
            ['x-reduct-0-0', '3,'],
          ],
        });
      }
    }),
    FC,
  );
});

test('an entry name with a trailing slash is rejected', {}, async () => {
  await rejects({ method: 'POST', path: `/api/v1/b/${SCRATCH}/slash/?ts=1`, body: 'abc' });
  await rejects({
    method: 'POST',
    path: `/api/v1/b/${SCRATCH}/slash/batch/?ts=1`,
    body: 'abc',
    headers: [['x-reduct-time-1', '3,']],
  });
});

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// ----------------------------------------------------------------------------------- timestamps

const FIXED_BAD_TS = [
  '',
  '-1',
  '-0',
  'abc',
  '1.5',
  '1e6',
  '0x10',
  '0b1',
  '%201',
  '1%20',
  '1_000',
  '18446744073709551616',
  '99999999999999999999999',
  'NaN',
  'Infinity',
  '%EF%BC%91',
  '1%00',
];

const badTs = fc.oneof(
  fc.constantFrom(...FIXED_BAD_TS),
  fc.bigInt({ min: -(2n ** 70n), max: -1n }).map(String),
  fc.bigInt({ min: 2n ** 64n, max: 2n ** 80n }).map(String),
  fc
    .double({ noNaN: true })
    .filter((d) => !Number.isInteger(d))
    .map((d) => encodeURIComponent(String(d))),
  fc
    .string({ minLength: 1, maxLength: 8 })
    .filter((s) => !/^\+?\d+$/.test(s))
    .map(encodeURIComponent),
);

test('malformed timestamps in query strings', async () => {
  await fc.assert(
    fc.asyncProperty(
      badTs,
      fc.constantFrom('write', 'read', 'head', 'delete', 'patch', 'entry-q'),
      async (ts, op) => {
        const base = `/api/v1/b/${BUCKET}/known`;
        if (op === 'write') await rejects({ method: 'POST', path: `${base}?ts=${ts}`, body: 'abc' });
        else if (op === 'read') await rejects({ method: 'GET', path: `${base}?ts=${ts}` });
        else if (op === 'head') await rejects({ method: 'HEAD', path: `${base}?ts=${ts}` });
        else if (op === 'delete') await rejects({ method: 'DELETE', path: `${base}?ts=${ts}` });
        else if (op === 'patch')
          await rejects({
            method: 'PATCH',
            path: `${base}?ts=${ts}`,
            headers: [['x-reduct-label-i', 'zzz']],
          });
        else await rejects({ method: 'GET', path: `${base}/q?start=${ts}` });
      },
    ),
    { ...FC, numRuns: 80 },
  );
});

// -------------------------------------------------------------------------------- batch headers

test('malformed v1 batch headers', async () => {
  const path = `/api/v1/b/${BUCKET}/known/batch`;
  const cases: Array<Array<[string, string]>> = [
    [['x-reduct-time-abc', '1,']],
    [['x-reduct-time--1', '1,']],
    [['x-reduct-time-1.5', '1,']],
    [['x-reduct-time-', '1,']],
    [['x-reduct-time-18446744073709551616', '1,']],
    [['x-reduct-time-6000001', '1']],
    [['x-reduct-time-6000001', 'abc,']],
    [['x-reduct-time-6000001', '-1,']],
    [['x-reduct-time-6000001', ',']],
    [['x-reduct-time-6000001', '']],
    [['x-reduct-time-6000001', '99999999999999999999,']],
    // a good record next to a bad one: the whole request is malformed
    [
      ['x-reduct-time-6000001', '1,'],
      ['x-reduct-time-zz', '1,'],
    ],
    [
      ['x-reduct-time-6000001', '1,'],
      ['x-reduct-time-6000002', '1'],
    ],
  ];
  const reqs: RawRequest[] = cases.map((headers) => ({
    method: 'POST',
    path,
    headers,
    body: 'xx'.slice(0, headers.length),
  }));
  // declared lengths that do not add up to Content-Length
  reqs.push({ method: 'POST', path, headers: [['x-reduct-time-6000003', '5,']], body: 'abc' });
  reqs.push({ method: 'POST', path, headers: [['x-reduct-time-6000003', '1,']], body: 'abcdef' });
  reqs.push({
    method: 'POST',
    path,
    headers: [
      ['x-reduct-time-6000003', '3,'],
      ['x-reduct-content-length', '7'],
    ],
    body: 'abc',
    contentLength: null,
  });
  // no record headers at all with a body
  reqs.push({ method: 'POST', path, body: 'abc' });
  await rejectsAll(reqs);

  const garbageValue = fc
    .string({ maxLength: 20 })
    .filter((v) => !/^\s*\d+\s*,/.test(v) && !/[\r\n\0]/.test(v));
  await fc.assert(
    fc.asyncProperty(garbageValue, async (value) => {
      await rejects({ method: 'POST', path, headers: [['x-reduct-time-6000009', value]], body: 'a' });
    }),
    FC,
  );
});

test('malformed v2 batch headers', async () => {
  const path = `/api/v1/io/${BUCKET}/write`;
  const ok: Array<[string, string]> = [
    ['x-reduct-entries', 'known'],
    ['x-reduct-start-ts', '7000000'],
  ];
  const cases: Array<{ headers: Array<[string, string]>; body?: string }> = [
    {
      headers: [
        ['x-reduct-start-ts', '7000000'],
        ['x-reduct-0-0', '1,'],
      ],
    }, // no entries
    {
      headers: [
        ['x-reduct-entries', 'known'],
        ['x-reduct-0-0', '1,'],
      ],
    }, // no start
    {
      headers: [
        ['x-reduct-entries', ''],
        ['x-reduct-start-ts', '7000000'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', ',,'],
        ['x-reduct-start-ts', '7000000'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', '%ZZ'],
        ['x-reduct-start-ts', '7000000'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', 'known%'],
        ['x-reduct-start-ts', '7000000'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', 'known'],
        ['x-reduct-start-ts', '-1'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', 'known'],
        ['x-reduct-start-ts', 'abc'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', 'known'],
        ['x-reduct-start-ts', '18446744073709551616'],
        ['x-reduct-0-0', '1,'],
      ],
    },
    {
      headers: [
        ['x-reduct-entries', 'known'],
        ['x-reduct-start-ts', '18446744073709551615'],
        ['x-reduct-0-1', '1,'],
      ],
    }, // start + delta > u64
    { headers: [...ok, ['x-reduct-0-abc', '1,']] },
    { headers: [...ok, ['x-reduct-0--1', '1,']] },
    { headers: [...ok, ['x-reduct-5-0', '1,']] }, // entry index out of range
    { headers: [...ok, ['x-reduct-abc-0', '1,']] },
    { headers: [...ok, ['x-reduct-0-0', 'abc']] },
    { headers: [...ok, ['x-reduct-0-0', '1']] }, // first record of an entry must name a content type
    { headers: [...ok, ['x-reduct-0-0', '-1,']] },
    { headers: [...ok, ['x-reduct-0-0', '1,,@computed=1']] },
    { headers: [...ok, ['x-reduct-labels', 'a'], ['x-reduct-0-0', '1,,7=x']] },
    { headers: [...ok, ['x-reduct-0-0', '5,']], body: 'a' }, // declared more than sent
    { headers: [...ok] }, // no records, body present
  ];
  await rejectsAll(cases.map((c) => ({ method: 'POST', path, headers: c.headers, body: c.body ?? 'a' })));

  const garbage = fc.string({ maxLength: 16 }).filter((v) => !/[\r\n\0]/.test(v));
  await fc.assert(
    fc.asyncProperty(garbage, garbage, garbage, async (entries, start, value) => {
      const validStart = /^\d+$/.test(start.trim()) && BigInt(start.trim()) < 2n ** 64n;
      const validValue = /^\s*\d+\s*,/.test(value);
      const validEntries = entries
        .split(',')
        .some((e) => /^[A-Za-z0-9_/-]+$/.test(decodeURIComponentSafe(e)));
      fc.pre(!(validStart && validValue && validEntries));
      await rejects({
        method: 'POST',
        path,
        headers: [
          ['x-reduct-entries', entries],
          ['x-reduct-start-ts', start],
          ['x-reduct-0-0', value],
        ],
        body: 'a',
      });
    }),
    FC,
  );
});

// ------------------------------------------------------------------------- labels, header limits

test('header lines Node cannot parse and headers beyond the size limit', async () => {
  const path = `/api/v1/b/${BUCKET}/known?ts=8000001`;
  await rejectsAll([
    { method: 'POST', path, headers: [['x-reduct-label-a b', 'v']], body: 'a' },
    { method: 'POST', path, headers: [['x-reduct-label-ü', 'v']], body: 'a' },
    { method: 'POST', path, headers: [['x-reduct-label-a', 'bad\u0001value']], body: 'a' },
    { method: 'POST', path, headers: [['x-reduct-label-a', 'bad\u007fvalue']], body: 'a' },
    { method: 'POST', path, headers: [['x-reduct-label-big', 'v'.repeat(1_100_000)]], body: 'a' },
    {
      method: 'POST',
      path,
      headers: Array.from({ length: 40_000 }, (_, i): [string, string] => [
        `x-reduct-label-l${i}`,
        'v'.repeat(30),
      ]),
      body: 'a',
    },
    {
      method: 'POST',
      path,
      headers: [['transfer-encoding', 'chunked']],
      body: 'zz\r\nabc\r\n0\r\n\r\n',
      contentLength: null,
    },
    { method: 'POST', path, headers: [['content-length', '5']], body: 'abc' }, // two Content-Length headers
    { method: 'GET', path: '/api/v1/b/fz/known?ts=1 HTTP/1.1 extra' },
  ]);
});

test('odd but well-formed labels are either rejected or stored and served back unchanged', async () => {
  const variants: Array<{ name: string; headers: Array<[string, string]> }> = [
    { name: 'empty label name', headers: [['x-reduct-label-', 'v']] },
    { name: 'empty label value', headers: [['x-reduct-label-a', '']] },
    { name: 'quotes, commas, equals', headers: [['x-reduct-label-a', 'x,"y"=z,']] },
    { name: 'leading quote', headers: [['x-reduct-label-a', '"quoted"']] },
    { name: 'utf-8 bytes', headers: [['x-reduct-label-a', 'héllo 😀']] },
    {
      name: 'label name with dots and @',
      headers: [
        ['x-reduct-label-a.b', '1'],
        ['x-reduct-label-@c', '2'],
      ],
    },
    { name: 'label name that is a number', headers: [['x-reduct-label-0', 'zero']] },
    {
      name: '2500 labels',
      headers: Array.from({ length: 2500 }, (_, i): [string, string] => [`x-reduct-label-l${i}`, String(i)]),
    },
    { name: '900 KB label value', headers: [['x-reduct-label-big', 'v'.repeat(900_000)]] },
  ];
  const failures: string[] = [];
  let ts = 9_000_000;
  for (const v of variants) {
    ts++;
    const path = `/api/v1/b/${SCRATCH}/odd?ts=${ts}`;
    const res = await send({ method: 'POST', path, headers: v.headers, body: 'payload' });
    await assertAlive(v.name);
    if (res.status >= 400 && res.status < 500) {
      if (!res.headers.get('x-reduct-error'))
        failures.push(`${v.name}: ${res.status} without x-reduct-error`);
      const read = await send({ method: 'GET', path });
      if (read.status !== 404)
        failures.push(`${v.name}: rejected with ${res.status} but a read answers ${read.status}`);
      continue;
    }
    if (res.status !== 200) {
      failures.push(`${v.name}: write answered ${res.status} ${res.headers.get('x-reduct-error')}`);
      continue;
    }
    const read = await send({ method: 'GET', path });
    if (read.status !== 200 || read.body.toString() !== 'payload') {
      failures.push(`${v.name}: accepted, read back ${read.status} ${read.headers.get('x-reduct-error')}`);
      continue;
    }
    // Node drops empty-named headers and lower-cases names: compare what a client could rely on.
    const sent = new Map(
      v.headers.map(([k, val]) => [k.toLowerCase(), Buffer.from(val, 'utf8').toString('latin1')]),
    );
    for (const [k, val] of sent) {
      if (k === 'x-reduct-label-' || val === '') continue;
      if (read.headers.get(k) !== val) {
        failures.push(
          `${v.name}: label ${k} sent ${JSON.stringify(val.slice(0, 40))} read back ${JSON.stringify(read.headers.get(k)?.slice(0, 40))}`,
        );
        break;
      }
    }
  }
  assert.deepEqual(failures, []);
});

test('ambiguous batch label syntax is rejected or stored so that every read path agrees', async (t) => {
  const v1 = ['1,text/plain,"unterminated', '1,text/plain,novalue', '1,,a="x"y', '1,, a = b '];
  const v2 = ['1,,5=x', '1,,novalue', '1,,a="x"y'];
  const failures: string[] = [];
  const outcomes: string[] = [];
  let ts = 9_100_000;
  const check = async (what: string, res: RawResponse, entry: string, at: number): Promise<void> => {
    await assertAlive(what);
    const refused =
      res.status >= 400 && res.status < 500
        ? res.status
        : [...res.headers.keys()].some((k) => k.startsWith('x-reduct-error-'))
          ? 'per-record error'
          : undefined;
    if (res.status >= 500 || res.status === 0) failures.push(`${what}: ${res.status}`);
    const single = await send({ method: 'GET', path: `/api/v1/b/${SCRATCH}/${entry}?ts=${at}` });
    if (refused !== undefined) {
      if (single.status !== 404) failures.push(`${what}: refused (${refused}) but reads as ${single.status}`);
      outcomes.push(`${what} → refused (${refused})`);
      return;
    }
    const labels = Object.fromEntries(
      [...single.headers].filter(([k]) => k.startsWith('x-reduct-label-')).map(([k, v]) => [k.slice(15), v]),
    );
    const q = await snapshotBucket(ferry.url, ferry.token, SCRATCH, { entries: [entry] });
    const viaQuery = q.get(`${entry}@${at}`)?.labels;
    if (single.status !== 200 || JSON.stringify(viaQuery) !== JSON.stringify(labels)) {
      failures.push(
        `${what}: single read ${single.status} ${JSON.stringify(labels)}, query ${JSON.stringify(viaQuery)}`,
      );
    }
    outcomes.push(`${what} → stored with labels ${JSON.stringify(labels)}`);
  };
  for (const value of v1) {
    ts++;
    const res = await send({
      method: 'POST',
      path: `/api/v1/b/${SCRATCH}/lenient1/batch`,
      headers: [[`x-reduct-time-${ts}`, value]],
      body: 'x',
    });
    await check(`v1 ${JSON.stringify(value)}`, res, 'lenient1', ts);
  }
  for (const value of v2) {
    ts++;
    const res = await send({
      method: 'POST',
      path: `/api/v1/io/${SCRATCH}/write`,
      headers: [
        ['x-reduct-entries', 'lenient2'],
        ['x-reduct-start-ts', String(ts)],
        ['x-reduct-0-0', value],
      ],
      body: 'x',
    });
    await check(`v2 ${JSON.stringify(value)}`, res, 'lenient2', ts);
  }
  for (const o of outcomes) t.diagnostic(o);
  assert.deepEqual(failures, []);
});

test('batch label names that are not HTTP tokens are refused', {}, async () => {
  const failures: string[] = [];
  let ts = 9_200_000;
  for (const value of ['1,,a=1,,b=2', '1,,a b=1', '1,,a:b=1', '1,,ü=1', '1,,"a=b']) {
    ts++;
    for (const proto of ['v1', 'v2'] as const) {
      const at = proto === 'v1' ? ts : ts + 50;
      const res =
        proto === 'v1'
          ? await send({
              method: 'POST',
              path: `/api/v1/b/${SCRATCH}/token-labels/batch`,
              headers: [[`x-reduct-time-${at}`, value]],
              body: 'x',
            })
          : await send({
              method: 'POST',
              path: `/api/v1/io/${SCRATCH}/write`,
              headers: [
                ['x-reduct-entries', 'token-labels'],
                ['x-reduct-start-ts', String(at)],
                ['x-reduct-0-0', value],
              ],
              body: 'x',
            });
      const refused =
        res.status === 422 || [...res.headers.keys()].some((k) => k.startsWith('x-reduct-error-'));
      if (!refused) {
        const read = await send({ method: 'GET', path: `/api/v1/b/${SCRATCH}/token-labels?ts=${at}` });
        failures.push(
          `${proto} ${JSON.stringify(value)} → ${res.status}; GET then answers ${read.status} ${read.headers.get('x-reduct-error') ?? ''}`,
        );
      }
    }
  }
  assert.deepEqual(failures, []);
});

test('an empty label name is refused on every write path', {}, async () => {
  await rejects({
    method: 'POST',
    path: `/api/v1/b/${SCRATCH}/empty-label/batch`,
    headers: [['x-reduct-time-1', '1,text/plain,=v']],
    body: 'x',
  });
  await rejects({
    method: 'POST',
    path: `/api/v1/io/${SCRATCH}/write`,
    headers: [
      ['x-reduct-entries', 'empty-label'],
      ['x-reduct-start-ts', '2'],
      ['x-reduct-0-0', '1,,=v'],
    ],
    body: 'x',
  });
});

// ----------------------------------------------------------------------------------- JSON bodies

const BAD_JSON = [
  '{',
  '{"a":}',
  'nul',
  '[1,2',
  '{"a":1}}',
  '\u0000',
  '{"a":1,}',
  "{'a':1}",
  '{"a":01}',
  '{"a":NaN}',
  '\uFEFF{',
];
const WRONG_TYPES = [
  '"str"',
  '42',
  '[]',
  'true',
  '{"max_block_size":"x"}',
  '{"max_block_size":-1}',
  '{"max_block_size":1.5}',
  '{"max_block_size":1e400}',
  '{"max_block_size":123456789012345678901234567890}',
  '{"quota_type":"WHAT"}',
  '{"quota_type":5}',
  '{"max_block_records":{}}',
  '{"quota_size":[1]}',
];
const BAD_QUERIES = [
  '"str"',
  '42',
  '[]',
  '{}',
  '{"query_type":5}',
  '{"query_type":"NOPE"}',
  '{"query_type":"QUERY","start":"abc"}',
  '{"query_type":"QUERY","start":-5}',
  '{"query_type":"QUERY","start":1e400}',
  '{"query_type":"QUERY","stop":1.5}',
  '{"query_type":"QUERY","ttl":-1}',
  '{"query_type":"QUERY","ttl":99999999999999999999999}',
  '{"query_type":"QUERY","entries":"known"}',
  '{"query_type":"QUERY","entries":[1]}',
  '{"query_type":"QUERY","only_metadata":"yes"}',
  '{"query_type":"QUERY","continuous":1}',
  '{"query_type":"QUERY","ext":{"nope":{}}}',
  '{"query_type":"REMOVE"}',
];
const deepArray = '['.repeat(60_000) + ']'.repeat(60_000);
const deepObject = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
const tooBig = JSON.stringify({ quota_type: 'NONE', pad: 'x'.repeat(JSON_LIMIT + 10) });

test('malformed JSON bodies', async () => {
  const routes: Array<{ method: string; path: string; bodies: string[] }> = [
    { method: 'POST', path: '/api/v1/b/fz-new', bodies: [...BAD_JSON, ...WRONG_TYPES] },
    { method: 'PUT', path: `/api/v1/b/${BUCKET}`, bodies: [...BAD_JSON, ...WRONG_TYPES] },
    { method: 'POST', path: `/api/v1/io/${BUCKET}/q`, bodies: [...BAD_JSON, ...BAD_QUERIES] },
    { method: 'POST', path: `/api/v1/b/${BUCKET}/known/q`, bodies: [...BAD_JSON, ...BAD_QUERIES] },
    {
      method: 'POST',
      path: '/api/v1/tokens/fz-token',
      bodies: [
        ...BAD_JSON,
        '"str"',
        '[]',
        '{"permissions":5}',
        '{"full_access":"yes"}',
        '{"read":"fz"}',
        '{"expires_at":"never"}',
      ],
    },
    {
      method: 'POST',
      path: '/api/v1/replications/fz-repl',
      bodies: [
        ...BAD_JSON,
        '"str"',
        '{}',
        '{"src_bucket":5}',
        '{"src_bucket":"fz","dst_bucket":"x","dst_host":"not a url"}',
      ],
    },
    {
      method: 'PUT',
      path: `/api/v1/b/${BUCKET}/other/rename`,
      bodies: [...BAD_JSON, '"str"', '{}', '{"new_name":5}', '{"new_name":""}'],
    },
  ];
  const reqs: RawRequest[] = [];
  for (const r of routes) {
    for (const body of [...r.bodies, deepArray, deepObject, tooBig])
      reqs.push({ method: r.method, path: r.path, body, headers: [['content-type', 'application/json']] });
    reqs.push({ method: r.method, path: r.path, body: Buffer.from([0xff, 0xfe, 0x7b, 0x00]) });
    reqs.push({
      method: r.method,
      path: r.path,
      body: gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20)),
      headers: [['content-encoding', 'gzip']],
    });
    reqs.push({ method: r.method, path: r.path, body: '{"a":1}', headers: [['content-encoding', 'gzip']] });
    reqs.push({ method: r.method, path: r.path, body: '{"a":1}', headers: [['content-encoding', 'bogus']] });
  }
  await rejectsAll(reqs);

  // Random JSON values of the wrong shape for a bucket-settings update.
  await fc.assert(
    fc.asyncProperty(
      fc.dictionary(
        fc.constantFrom('quota_type', 'quota_size', 'max_block_size', 'max_block_records'),
        fc.oneof(
          fc.string(),
          // finite: JSON.stringify turns NaN and Infinity into null, which means "the default"
          fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d) || d < 0),
          fc.array(fc.integer(), { maxLength: 2 }),
          fc.integer({ max: -1 }),
          fc.object({ maxDepth: 1 }),
        ),
        { minKeys: 1 },
      ),
      async (settings) => {
        await rejects({ method: 'PUT', path: `/api/v1/b/${BUCKET}`, body: JSON.stringify(settings) });
      },
    ),
    FC,
  );
  const nowSettings = (await send({ method: 'GET', path: `/api/v1/b/${BUCKET}` })).body.toString();
  assert.equal(JSON.parse(nowSettings).settings !== undefined, true);
  assert.deepEqual(
    JSON.parse(nowSettings).settings,
    JSON.parse(settingsBefore).settings,
    'bucket settings changed',
  );
  assert.equal(
    (await send({ method: 'GET', path: '/api/v1/b/fz-new' })).status,
    404,
    'a bucket was created from a bad body',
  );
});

/** `when` values api.md §13 requires to be refused with 422. */
const BAD_WHENS = [
  '"str"',
  '5',
  '[]',
  '{"&i":{"$nope":1}}',
  '{"&i":{"$gt":[]}}',
  '{"&i":{"$gt":1,"$lt":2,"$eq":3}}',
  '{"&i":5}',
  '{"&i":{}}',
  '{"$each_n":0}',
  '{"$each_n":"x"}',
  '{"$each_t":"abc"}',
  '{"$limit":"x"}',
  '{"#ctx_before":"abc"}',
  '{"#nope":1}',
  '{"$nope":[]}',
  '{"&i":{"$eq":null}}',
  '{"$gt":["&i"]}',
  '{"$gt":["&i",1,2]}',
  '{"&i":{"$cast":"nope"}}',
  '{"#ext":{}}',
];

test('malformed when conditions', async () => {
  await rejectsAll(
    BAD_WHENS.flatMap((when) => [
      {
        method: 'POST',
        path: `/api/v1/io/${BUCKET}/q`,
        body: `{"query_type":"QUERY","entries":["known"],"when":${when}}`,
      },
      {
        method: 'POST',
        path: `/api/v1/io/${BUCKET}/q`,
        body: `{"query_type":"QUERY","entries":["known"],"strict":true,"when":${when}}`,
      },
      {
        method: 'POST',
        path: `/api/v1/io/${BUCKET}/q`,
        body: `{"query_type":"REMOVE","entries":["known"],"when":${when}}`,
      },
      { method: 'POST', path: `/api/v1/b/${BUCKET}/known/q`, body: `{"query_type":"QUERY","when":${when}}` },
    ]),
  );
});

test('deeply nested or odd when conditions never cause a 5xx', async () => {
  const odd = [
    '{"$and":[' + '{"$or":['.repeat(3000) + 'true' + ']}'.repeat(3000) + ']}',
    '{"$add":[' + '1,'.repeat(20_000) + '1]}',
    '{"&i":{"$gt":1e400}}',
    '{"&i":{"$gt":123456789012345678901234567890}}',
    '{"$limit":-1}',
    '{"$each_t":"-1d"}',
    '{"$div":[1,0]}',
    '{"&i":{"$contains":"\u0000"}}',
  ];
  const failures: string[] = [];
  for (const when of odd) {
    for (const strict of [false, true]) {
      const q = await send({
        method: 'POST',
        path: `/api/v1/io/${BUCKET}/q`,
        body: `{"query_type":"QUERY","entries":["known"],"strict":${strict},"when":${when}}`,
      });
      if (q.status >= 500 || q.status === 0)
        failures.push(
          `${when.slice(0, 40)} strict=${strict}: create → ${q.status} ${q.headers.get('x-reduct-error')}`,
        );
      if (q.status !== 200) continue;
      const id = String((JSON.parse(q.body.toString()) as { id: number }).id);
      const read = await send({
        method: 'GET',
        path: `/api/v1/io/${BUCKET}/read`,
        headers: [['x-reduct-query-id', id]],
      });
      if (read.status >= 500 || read.status === 0)
        failures.push(
          `${when.slice(0, 40)} strict=${strict}: read → ${read.status} ${read.headers.get('x-reduct-error')}`,
        );
      await assertAlive(when.slice(0, 40));
    }
  }
  assert.deepEqual(failures, []);
});

test('a deeply nested when condition is a 4xx, not a stack overflow', {}, async () => {
  const when = '{"&i":' + '{"$not":'.repeat(5000) + 'true' + '}'.repeat(5001);
  const res = await send({
    method: 'POST',
    path: `/api/v1/io/${BUCKET}/q`,
    body: `{"query_type":"QUERY","entries":["known"],"when":${when}}`,
  });
  assert.ok(res.status < 500, `${res.status} ${res.headers.get('x-reduct-error')}`);
});

// ------------------------------------------------------------------------------ truncated bodies

test('bodies shorter than declared, then the connection closed', async () => {
  const e = `/api/v1/b/${SCRATCH}/trunc`;
  const cases: RawRequest[] = [
    { method: 'POST', path: `${e}?ts=9500001`, body: 'only ten b', contentLength: 1000 },
    { method: 'POST', path: `${e}?ts=9500002`, body: 'x'.repeat(70_000), contentLength: 1_000_000 },
    {
      method: 'POST',
      path: `${e}?ts=9500003`,
      body: '3\r\nabc\r\n',
      contentLength: null,
      headers: [
        ['x-reduct-content-length', '100'],
        ['transfer-encoding', 'chunked'],
      ],
    },
    {
      method: 'POST',
      path: `${e}/batch`,
      body: 'abcdef',
      contentLength: 20,
      headers: [
        ['x-reduct-time-9500004', '10,'],
        ['x-reduct-time-9500005', '10,'],
      ],
    },
    {
      method: 'POST',
      path: `/api/v1/io/${SCRATCH}/write`,
      body: 'abcdef',
      contentLength: 20,
      headers: [
        ['x-reduct-entries', 'trunc,trunc2'],
        ['x-reduct-start-ts', '9500006'],
        ['x-reduct-0-0', '10,'],
        ['x-reduct-1-0', '10,'],
      ],
    },
    { method: 'POST', path: '/api/v1/b/fz-new', body: '{"quota_type":', contentLength: 100 },
    { method: 'POST', path: `/api/v1/io/${BUCKET}/q`, body: '{"query_type":"QU', contentLength: 100 },
    {
      method: 'POST',
      path: `${e}?ts=9500007`,
      body: gzipSync(seededBytes(seededRandom('fuzz-http/truncated-gzip'), 50_000)).subarray(0, 1000),
      contentLength: 5000,
      headers: [
        ['content-encoding', 'gzip'],
        ['x-reduct-content-length', '50000'],
      ],
    },
  ];
  const failures: string[] = [];
  for (const [i, r] of cases.entries()) {
    // Without the hang-up the server gives up after RS_IO_OPERATION_TIMEOUT (1 s here): try a few.
    for (const hangUp of i % 2 === 0 ? [true, false] : [true]) {
      const res = await send({
        ...r,
        path: hangUp ? r.path : r.path.replace(/950000(\d)/g, '960000$1'),
        hangUp,
        timeoutMs: 10_000,
      });
      // A hung-up client may get no answer at all; if it gets one, it must be a proper 4xx.
      if (res.status !== 0 || !hangUp) {
        try {
          assertRejected(res, r);
        } catch (err) {
          failures.push(`hangUp=${hangUp}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      await assertAlive(show(r));
    }
  }
  // A torn record is never served: absent (404) or, as api.md §8.1/§8.2 allow, errored (500).
  const torn = [9500001, 9500002, 9500003, 9500004, 9500005, 9500006, 9500007].flatMap((t) => [
    t,
    t + 100_000,
  ]);
  for (const ts of torn) {
    const res = await send({ method: 'GET', path: `${e}?ts=${ts}` });
    if (res.status !== 404 && res.status !== 500)
      failures.push(`truncated record ${ts} reads as ${res.status} ${res.headers.get('x-reduct-error')}`);
  }
  const served = await snapshotBucket(ferry.url, ferry.token, SCRATCH, { entries: ['trunc', 'trunc2'] });
  for (const key of served.keys()) failures.push(`the query serves truncated record ${key}`);
  // A client retrying with the full body succeeds, also over an errored record of the same size (§3.8).
  const full = seededBytes(seededRandom('fuzz-http/full'), 1000);
  const retry = await send({ method: 'POST', path: `${e}?ts=9500001`, body: full });
  if (retry.status !== 200)
    failures.push(`retry of 9500001 → ${retry.status} ${retry.headers.get('x-reduct-error')}`);
  else {
    const back = await send({ method: 'GET', path: `${e}?ts=9500001` });
    if (!back.body.equals(full))
      failures.push(`retried 9500001 reads back ${back.status}, ${back.body.length} bytes`);
  }
  assert.deepEqual(failures, []);
});

// ---------------------------------------------------------------------------------- aftermath

test('after all of it: nothing changed, nothing escaped, the server still works', async (t) => {
  await assertAlive('the fuzz run');
  const now = await snapshotBucket(ferry.url, ferry.token, BUCKET);
  const diff = diffSnapshots(before0, now);
  assert.ok(isEmptyDiff(diff), `stored records changed: ${formatDiff(diff)}`);
  assert.deepEqual(treeOutsideData(root), treeBefore, 'files appeared outside the data directory');

  const list = await send({ method: 'GET', path: '/api/v1/list' });
  const names = (JSON.parse(list.body.toString()) as { buckets: Array<{ name: string }> }).buckets
    .map((b) => b.name)
    .sort();
  assert.deepEqual(
    names.filter((n) => !n.startsWith('$')),
    [BUCKET, SCRATCH].sort(),
    'unexpected buckets',
  );

  const payload = seededBytes(seededRandom('fuzz-http/payload'), 4096);
  const w = await send({
    method: 'POST',
    path: `/api/v1/b/${BUCKET}/final?ts=1`,
    body: payload,
    headers: [
      ['content-type', 'x/y'],
      ['x-reduct-label-k', 'v'],
    ],
  });
  assert.equal(w.status, 200, String(w.headers.get('x-reduct-error')));
  const r = await send({ method: 'GET', path: `/api/v1/b/${BUCKET}/final?ts=1` });
  assert.equal(r.status, 200);
  assert.equal(
    createHash('sha256').update(r.body).digest('hex'),
    createHash('sha256').update(payload).digest('hex'),
  );
  assert.equal(r.headers.get('content-type'), 'x/y');
  assert.equal(r.headers.get('x-reduct-label-k'), 'v');
  t.diagnostic(`${casesRun} requests sent`);
});
