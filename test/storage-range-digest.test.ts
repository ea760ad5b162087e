/**
 * Range digests (replication.md §10, issue 11 item 1): two buckets holding the same records in
 * different block layouts give the same digests; each kind of divergence (removal, label update,
 * late out-of-order write, different payload of the same size, content type) changes the digest of
 * exactly the ranges that hold it, also when the rows of the block were cached before the change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { openStorage } from '../src/storage/engine.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import type { Bucket, DigestQuery } from '../src/storage/types.js';

const ALL: DigestQuery = { start: 0n, stop: 1n << 62n };

async function fill(
  b: Bucket,
  n: number,
  payload = (i: number) => Buffer.from(`payload-${i}`),
): Promise<void> {
  const items = [];
  for (let i = 0; i < n; i++) {
    items.push({
      entry: 'e',
      ts: BigInt(1000 + i * 10),
      opts: { size: payload(i).length, contentType: 'text/plain', labels: { n: String(i % 7), k: 'v' } },
      payload: payload(i),
    });
  }
  for (let i = 0; i < items.length; i += 100) await b.writeMany(items.slice(i, i + 100));
}

const digestOf = async (b: Bucket, q: DigestQuery = ALL) => (await b.rangeDigests('e', [q]))[0]!;

test('same records in different block layouts: same digests, boundaries split evenly', async () => {
  await withStorage(async (s) => {
    const a = await s.createBucket('a', { max_block_records: 37n });
    const b = await s.createBucket('b', { max_block_records: 1000n });
    await fill(a, 500);
    await fill(b, 500);
    const da = await digestOf(a, { ...ALL, split: 8 });
    const db = await digestOf(b, { ...ALL, split: 8 });
    assert.equal(da.count, 500);
    assert.equal(da.digest, db.digest);
    assert.equal(da.bounds.length, 7);
    // children on either side agree, and cover every record
    const cuts = [ALL.start, ...da.bounds, ALL.stop];
    const children = cuts.slice(1).map((stop, i) => ({ start: cuts[i]!, stop }));
    const ca = await a.rangeDigests('e', children);
    const cb = await b.rangeDigests('e', children);
    assert.deepEqual(ca, cb);
    assert.equal(
      ca.reduce((n, c) => n + c.count, 0),
      500,
    );
    for (const c of ca) assert.ok(c.count >= 50 && c.count <= 80, `uneven child ${c.count}`);
    // an unknown entry has no records
    assert.equal((await a.rangeDigests('nope', [ALL]))[0]!.count, 0);
  });
});

test('each divergence changes exactly the ranges that hold it, also after the rows were cached', async () => {
  const rnd = seededRandom('range-digest divergences');
  await withStorage(async (s) => {
    const a = await s.createBucket('a', { max_block_records: 50n });
    const b = await s.createBucket('b', { max_block_records: 64n });
    await fill(a, 400);
    await fill(b, 400);
    const ranges: DigestQuery[] = [];
    for (let t = 0n; t < 6000n; t += 500n) ranges.push({ start: t, stop: t + 500n });
    const differing = async (): Promise<number[]> => {
      const [ra, rb] = [await a.rangeDigests('e', ranges), await b.rangeDigests('e', ranges)];
      return ranges.map((_, i) => i).filter((i) => ra[i]!.digest !== rb[i]!.digest);
    };
    assert.deepEqual(await differing(), []); // rows of every block cached now
    const pick = () => BigInt(1000 + Math.floor(rnd() * 400) * 10);
    const rangeOf = (ts: bigint) => Number(ts / 500n);

    const removed = pick();
    await b.removeRecord('e', removed);
    assert.deepEqual(await differing(), [rangeOf(removed)], `removal at ${removed} (${REPLAY})`);
    await a.removeRecord('e', removed);
    assert.deepEqual(await differing(), []);

    const relabelled = pick();
    await b.updateLabels('e', relabelled, { n: 'changed' });
    assert.deepEqual(await differing(), [rangeOf(relabelled)], `label update at ${relabelled} (${REPLAY})`);
    await b.updateLabels('e', relabelled, { n: (await a.read('e', relabelled)).meta.labels.n! });
    assert.deepEqual(await differing(), []);

    // a late write between two existing records, into an old (cached) block
    const late = 1000n + 155n;
    await a.write('e', late, { size: 4 }, Buffer.from('late'));
    assert.deepEqual(await differing(), [rangeOf(late)]);
    await b.write('e', late, { size: 4 }, Buffer.from('late'));
    assert.deepEqual(await differing(), []);

    // same size, other bytes; then the same bytes with another content type
    const other = pick();
    const size = (await a.read('e', other)).meta.size;
    await b.removeRecord('e', other);
    await b.write(
      'e',
      other,
      { size, contentType: 'text/plain', labels: (await a.read('e', other)).meta.labels },
      Buffer.alloc(size, 0x41),
    );
    assert.deepEqual(await differing(), [rangeOf(other)], `payload at ${other} (${REPLAY})`);
    const same = await (await a.read('e', other)).buffer();
    await b.removeRecord('e', other);
    await b.write(
      'e',
      other,
      { size, contentType: 'image/png', labels: (await a.read('e', other)).meta.labels },
      same,
    );
    assert.deepEqual(await differing(), [rangeOf(other)], `content type at ${other} (${REPLAY})`);
    // summaries say what differs
    const [sa] = await a.recordSummaries('e', other, other + 1n, 10);
    const [sb] = await b.recordSummaries('e', other, other + 1n, 10);
    assert.equal(sa!.digest, sb!.digest);
    assert.notEqual(sa!.contentType, sb!.contentType);
  });
});

test('a filter narrows the records that take part', async () => {
  await withStorage(async (s) => {
    const a = await s.createBucket('a', { max_block_records: 30n });
    await fill(a, 100);
    const only3 = { accept: (_ts: bigint, labels: Record<string, string>) => labels.n === '3' };
    const [d] = await a.rangeDigests('e', [{ ...ALL, split: 4 }], only3);
    assert.equal(d!.count, 14);
    const listed = await a.recordSummaries('e', 0n, 1n << 62n, 1000, only3);
    assert.equal(listed.length, 14);
    assert.ok(listed.every((r) => r.labels.n === '3'));
    assert.equal((await a.recordSummaries('e', 0n, 1n << 62n, 5)).length, 5);
  });
});

test('a small range inside one large block is still cut into about equal parts', async () => {
  await withStorage(async (s) => {
    const a = await s.createBucket('a', { max_block_records: 1000n });
    await fill(a, 900);
    // 40 records (ts 2000 … 2390) of one block of 900: boundaries from the records in the range
    const [d] = await a.rangeDigests('e', [{ start: 2000n, stop: 2400n, split: 4 }]);
    assert.equal(d!.count, 40);
    assert.equal(d!.bounds.length, 3, `bounds ${d!.bounds.join(',')}`);
  });
});

test('rows read from descriptor files after a restart give the same digests as rows from memory', async () => {
  const dir = tempDir();
  try {
    let s = await openStorage({ dataPath: dir, durability: 'none' });
    const a = await s.createBucket('a', { max_block_records: 64n });
    await fill(a, 500);
    await a.updateLabels('e', 1500n, { n: 'x', extra: 'y' });
    const queries = [ALL, { start: 1000n, stop: 3000n, split: 8 }, { start: 2555n, stop: 4000n }];
    const before = await a.rangeDigests('e', queries);
    await s.close();
    s = await openStorage({ dataPath: dir, durability: 'none' });
    assert.deepEqual(await s.bucket('a').rangeDigests('e', queries), before);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
