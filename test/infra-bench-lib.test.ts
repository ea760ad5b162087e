import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareSorted, type ApiRecord } from '../bench/lib/api-compare.js';
import { measureDiskBandwidth } from '../bench/lib/disk-baseline.js';
import { readCpuSeconds } from '../bench/lib/proc-cpu.js';
import { readRss, RssSampler } from '../bench/lib/rss.js';
import { fmt, percentile, runConcurrent, summarize } from '../bench/lib/stats.js';
import { formatTable } from '../bench/lib/table.js';
import { describeMatch, matchDifferences, type PlantedDifference } from '../bench/lib/verify-differences.js';
import { waitFor } from './helpers/wait.js';

test('percentiles use the nearest rank', () => {
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  const s = summarize(samples);
  assert.equal(s.count, 100);
  assert.equal(s.p50, 50);
  assert.equal(s.p90, 90);
  assert.equal(s.p99, 99);
  assert.equal(s.max, 100);
  assert.equal(s.mean, 50.5);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(summarize([]).p50));
  assert.equal(fmt(1234567.891, 1), '1,234,567.9');
  assert.equal(fmt(NaN), 'n/a');
});

test('runConcurrent bounds parallelism and rethrows the first failure', async () => {
  let inFlight = 0;
  let maxInFlight = 0;
  const seen: number[] = [];
  await runConcurrent(20, 3, async (i) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 2));
    seen.push(i);
    inFlight--;
  });
  assert.equal(maxInFlight, 3);
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i),
  );
  let ran = 0;
  await assert.rejects(
    runConcurrent(100, 2, async (i) => {
      ran++;
      if (i === 5) throw new Error('op 5 failed');
    }),
    /op 5 failed/,
  );
  assert.ok(ran < 100, 'no new operations start after a failure');
});

test('formatTable aligns text left and numbers right', () => {
  const out = formatTable(
    [
      { header: 'phase', key: 'name' },
      { header: 'rec/s', format: (r: { name: string; rate: number }) => fmt(r.rate) },
    ],
    [
      { name: 'write', rate: 1234567 },
      { name: 'read single', rate: 12 },
    ],
  );
  assert.equal(
    out,
    [
      'phase            rec/s',
      '-----------  ---------',
      'write        1,234,567',
      'read single         12',
    ].join('\n'),
  );
});

test('RSS and CPU readings of this process are plausible', async () => {
  const r = readRss();
  assert.ok(r !== undefined);
  assert.ok(r.rss > 10e6 && r.peak >= r.rss, `rss ${r.rss} peak ${r.peak}`);
  assert.equal(readRss(2 ** 22 + 12345), undefined);
  const sampler = new RssSampler('self', 5).start();
  const ballast = Buffer.alloc(64 * 1024 * 1024, 1); // touched pages count towards RSS
  await waitFor(() => sampler.peak() >= r.rss + 50e6, {
    timeoutMs: 2000,
    message: 'peak to include 64 MB of ballast',
  });
  assert.ok(sampler.stop() >= r.rss + 50e6);
  assert.equal(ballast[ballast.length - 1], 1);
  const cpu = readCpuSeconds();
  assert.ok(cpu !== undefined && cpu > 0);
});

test('disk baseline writes the requested amount and removes its scratch file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-disk-test-'));
  try {
    const r = await measureDiskBandwidth(dir, { totalMiB: 8, syncEveryMiB: 4 });
    assert.equal(r.bytes, 8 * 1024 * 1024);
    assert.ok(r.seconds > 0 && r.mbPerSec > 0);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const rec = (entry: string, ts: number, over: Partial<ApiRecord> = {}): ApiRecord => ({
  entry,
  ts: BigInt(ts),
  size: 4,
  contentType: 'application/octet-stream',
  labels: { n: String(ts % 3) },
  digest: 'd',
  ...over,
});

async function* batches(...list: ApiRecord[][]): AsyncGenerator<ApiRecord[]> {
  for (const b of list) yield b;
}

test('compareSorted merges batches of both sides and names what differs', async () => {
  // the two sides cut their batches at different places, one batch is empty
  const src = batches(
    [rec('a', 1), rec('b', 1), rec('a', 2)],
    [],
    [rec('a', 3), rec('a', 4), rec('a', 5), rec('a', 7)],
  );
  const dst = batches(
    [rec('a', 1)],
    [rec('b', 1, { labels: { n: 'x' } }), rec('a', 3, { digest: 'other' }), rec('a', 4, { size: 5 })],
    [rec('a', 5, { contentType: 'text/plain', labels: {} }), rec('a', 6), rec('a', 7), rec('z', 9)],
  );
  const r = await compareSorted(src, dst);
  assert.deepEqual(r.records, [7, 8]);
  assert.deepEqual(r.differences, [
    { entry: 'b', ts: 1, kind: 'different', parts: ['labels'] },
    { entry: 'a', ts: 2, kind: 'missing' },
    { entry: 'a', ts: 3, kind: 'different', parts: ['payload'] },
    { entry: 'a', ts: 4, kind: 'different', parts: ['payload'] },
    { entry: 'a', ts: 5, kind: 'different', parts: ['content_type', 'labels'] },
    { entry: 'a', ts: 6, kind: 'extra' },
    { entry: 'z', ts: 9, kind: 'extra' },
  ]);
  assert.deepEqual((await compareSorted(batches([rec('a', 1)]), batches([rec('a', 1)]))).differences, []);
  await assert.rejects(
    compareSorted(
      batches([rec('a', 1)]),
      (async function* () {
        yield [rec('a', 1)];
        throw new Error('read failed');
      })(),
    ),
    /read failed/,
  );
});

test('matchDifferences judges findings against planted differences exactly', () => {
  const planted: PlantedDifference[] = [
    { entry: 'e0', ts: 5, kind: 'remove' },
    { entry: 'e1', ts: 7, kind: 'relabel' },
    { entry: 'e2', ts: 9, kind: 'extra' },
    { entry: 'e3', ts: 11, kind: 'payload' },
  ];
  const all = matchDifferences(
    [
      { entry: 'e0', ts: 5, kind: 'missing' },
      { entry: 'e1', ts: 7, kind: 'different', parts: ['labels'] },
      { entry: 'e2', ts: 9_000_000, kind: 'extra' },
      { entry: 'e3', ts: 11, kind: 'different', parts: ['payload'] },
    ],
    planted,
  );
  assert.equal(describeMatch(all), '4/4');
  // a metadata-only comparison misses the payload; the wrong part or record is spurious
  const some = matchDifferences(
    [
      { entry: 'e0', ts: 5, kind: 'missing' },
      { entry: 'e1', ts: 7, kind: 'different', parts: ['labels', 'payload'] },
      { entry: 'e2', ts: 9_000_000, kind: 'extra' },
      { entry: 'e2', ts: 10, kind: 'missing' },
    ],
    planted,
  );
  assert.deepEqual(some, { found: 2, planted: 4, spurious: 2, missedKinds: { relabel: 1, payload: 1 } });
  assert.equal(describeMatch(some), '2/4 (missed 1 relabel, 1 payload) +2 spurious');
});
