import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Client } from 'reduct-js';
import { spawnFerry } from './helpers/ferry-process.js';
import {
  diffSnapshots,
  formatDiff,
  isEmptyDiff,
  snapshotBucket,
  type BucketSnapshot,
} from './helpers/records.js';
import { readV2Batch } from './helpers/v2-batch-reader.js';
import { waitFor } from './helpers/wait.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

test('readV2Batch decodes the worked example of api.md §11.8', () => {
  const batch = readV2Batch({
    'x-reduct-entries': 'x-1,x-0',
    'x-reduct-start-ts': '1000',
    'x-reduct-0-0': '3,text/plain',
    'x-reduct-1-10': '2,text/plain',
    'x-reduct-last': 'true',
  });
  assert.equal(batch.last, true);
  assert.deepEqual(batch.records, [
    { entry: 'x-1', ts: 1000n, size: 3, contentType: 'text/plain', labels: {} },
    { entry: 'x-0', ts: 1010n, size: 2, contentType: 'text/plain', labels: {} },
  ]);
});

test('readV2Batch applies per-entry state, label dictionaries, quoting and percent-decoding', () => {
  const batch = readV2Batch({
    'x-reduct-entries': 'a%2Fb,c%2F$meta',
    'x-reduct-start-ts': '5',
    'x-reduct-labels': 'score,kind',
    'x-reduct-0-2': '4',
    'x-reduct-0-0': '1,,0=1,kind=x',
    'x-reduct-0-1': '2,image/png,1=,z="[a,b]"',
    'x-reduct-1-0': '0,',
    'x-reduct-last': 'false',
  });
  assert.equal(batch.last, false);
  assert.deepEqual(
    batch.records.map((r) => [r.entry, r.ts, r.size, r.contentType, r.labels]),
    [
      ['a/b', 5n, 1, 'application/octet-stream', { score: '1', kind: 'x' }],
      ['a/b', 6n, 2, 'image/png', { score: '1', z: '[a,b]' }],
      ['a/b', 7n, 4, 'image/png', { score: '1', z: '[a,b]' }],
      ['c/$meta', 5n, 0, 'application/octet-stream', {}],
    ],
  );
  assert.throws(() =>
    readV2Batch({ 'x-reduct-entries': 'e', 'x-reduct-start-ts': '1', 'x-reduct-0-0': '3' }),
  );
});

test('readV2Batch treats the empty continuous batch as no records', () => {
  const batch = readV2Batch({ 'x-reduct-entries': '', 'x-reduct-start-ts': '0', 'x-reduct-last': 'false' });
  assert.deepEqual(batch.records, []);
});

test('diffSnapshots reports missing, extra and altered records', () => {
  const d = (s: string, labels: Record<string, string> = {}) => ({
    size: s.length,
    sha256: sha(s),
    contentType: 'text/plain',
    labels,
  });
  const a: BucketSnapshot = new Map([
    ['e@1', d('one')],
    ['e@2', d('two', { k: 'v' })],
    ['e@3', d('three')],
    ['f@1', d('same')],
  ]);
  const b: BucketSnapshot = new Map([
    ['e@2', d('two', { k: 'w' })],
    ['e@3', d('THREE')],
    ['f@1', d('same')],
    ['f@9', d('new')],
  ]);
  const diff = diffSnapshots(a, b);
  assert.deepEqual(diff.missing, ['e@1']);
  assert.deepEqual(diff.extra, ['f@9']);
  assert.deepEqual(
    diff.different.map((x) => x.key),
    ['e@2', 'e@3'],
  );
  assert.equal(isEmptyDiff(diff), false);
  assert.match(formatDiff(diff), /missing 1: e@1; extra 1: f@9; different 2: e@2, e@3/);
  assert.equal(isEmptyDiff(diffSnapshots(a, new Map(a))), true);
});

/** A stand-in speaking the three routes snapshotBucket uses, with two read batches streamed in pieces. */
async function standInServer(): Promise<{ url: string; close: () => Promise<void>; seenAuth: string[] }> {
  const seenAuth: string[] = [];
  let reads = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seenAuth.push(req.headers.authorization ?? '');
    if (req.method === 'GET' && req.url === '/api/v1/b/bk') {
      res.end(JSON.stringify({ info: {}, settings: {}, entries: [{ name: 'cam' }, { name: 'imu' }] }));
    } else if (req.method === 'POST' && req.url === '/api/v1/io/bk/q') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        assert.deepEqual(JSON.parse(body).entries, ['cam', 'imu']);
        res.end('{"id": 7}');
      });
    } else if (req.method === 'GET' && req.url === '/api/v1/io/bk/read') {
      assert.equal(req.headers['x-reduct-query-id'], '7');
      reads++;
      if (reads === 1) {
        res.writeHead(200, {
          'x-reduct-entries': 'cam,imu',
          'x-reduct-start-ts': '100',
          'x-reduct-0-0': '5,text/plain,a=1',
          'x-reduct-0-20': '6',
          'x-reduct-1-10': '0,',
          'x-reduct-last': 'false',
        });
        res.write('hel');
        res.write('loworld');
        res.end('!');
      } else if (reads === 2) {
        res.writeHead(200, {
          'x-reduct-entries': 'imu',
          'x-reduct-start-ts': '200',
          'x-reduct-0-0': '3,,b=2',
          'x-reduct-last': 'false',
        });
        res.end('xyz');
      } else {
        res.writeHead(204);
        res.end();
      }
    } else {
      res.writeHead(404, { 'x-reduct-error': 'Not found' });
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    seenAuth,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('snapshotBucket follows batches to the end and hashes payloads split across chunks', async () => {
  const srv = await standInServer();
  try {
    const snap = await snapshotBucket(srv.url, 'tok', 'bk');
    assert.deepEqual([...snap.keys()].sort(), ['cam@100', 'cam@120', 'imu@110', 'imu@200']);
    assert.deepEqual(snap.get('cam@100'), {
      size: 5,
      sha256: sha('hello'),
      contentType: 'text/plain',
      labels: { a: '1' },
    });
    assert.deepEqual(snap.get('cam@120'), {
      size: 6,
      sha256: sha('world!'),
      contentType: 'text/plain',
      labels: { a: '1' },
    });
    assert.deepEqual(snap.get('imu@110'), {
      size: 0,
      sha256: sha(''),
      contentType: 'application/octet-stream',
      labels: {},
    });
    assert.deepEqual(snap.get('imu@200'), {
      size: 3,
      sha256: sha('xyz'),
      contentType: 'application/octet-stream',
      labels: { b: '2' },
    });
    assert.ok(srv.seenAuth.every((h) => h === 'Bearer tok'));
    await assert.rejects(snapshotBucket(srv.url, 'tok', 'missing'), /HTTP 404 \(Not found\)/);
  } finally {
    await srv.close();
  }
});

const realCli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

test(
  'snapshots of a real server survive a restart unchanged',
  { skip: !existsSync(realCli) && 'CLI not built yet' },
  async () => {
    const ferry = await spawnFerry();
    try {
      const client = new Client(ferry.url, { apiToken: ferry.token });
      const bucket = await client.createBucket('snap');
      for (let i = 1; i <= 150; i++) {
        const rec = await bucket.beginWrite(i % 3 === 0 ? 'b/x' : 'a', {
          ts: BigInt(i * 1000),
          labels: { n: String(i % 4) },
          contentType: 'text/plain',
        });
        await rec.write(`payload-${i}`);
      }
      const before = await snapshotBucket(ferry.url, ferry.token, 'snap');
      assert.equal(before.size, 150);
      assert.deepEqual(before.get('a@1000'), {
        size: 9,
        sha256: sha('payload-1'),
        contentType: 'text/plain',
        labels: { n: '1' },
      });
      await ferry.kill('SIGKILL');
      await ferry.restart();
      const after = await waitFor(() => snapshotBucket(ferry.url, ferry.token, 'snap'), {
        timeoutMs: 10_000,
      });
      const diff = diffSnapshots(before, after);
      assert.ok(isEmptyDiff(diff), formatDiff(diff));
    } finally {
      await ferry.destroy();
    }
  },
);
