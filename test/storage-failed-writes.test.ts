// Writes that fail in storage: they never harm another writer's write (issue 8 item 1), leave no
// memory or block space behind (item 2), and never block their timestamp (item 12).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createHash } from 'node:crypto';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket, WriteOptions } from '../src/storage/types.js';
import { FerryError } from '../src/protocol/errors.js';
import { withStorage } from './helpers/temp-storage.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function statusOf(e: unknown): number {
  assert.ok(e instanceof FerryError, `expected FerryError, got ${String(e)}`);
  return e.status;
}

/** A body that delivers part of its bytes, then fails (a client that went away or timed out). */
async function* abandoned(part: Buffer): AsyncGenerator<Buffer> {
  yield part;
  throw new Error('aborted: the client stopped sending');
}

test('a write storage cannot store fails alone: concurrent writers of every bucket all succeed', async () => {
  await withStorage(async (s) => {
    const buckets = [await s.createBucket('a'), await s.createBucket('b')];
    const huge = 'x'.repeat(70_000);
    const bad: Array<[string, WriteOptions, RegExp]> = [
      ['content type', { size: 4, contentType: huge }, /Content-Type/],
      ['label name', { size: 4, labels: { [huge]: 'v' } }, /Label name 'x{32}\.\.\.'/],
      ['label value', { size: 4, labels: { k: 'v'.repeat(70_000) } }, /Value of label 'k'/],
      ['origin', { size: 4, origin: huge }, /x-ferry-origin/],
      [
        'label count',
        { size: 4, labels: Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`l${i}`, 'v'])) },
        /labels/i,
      ],
    ];
    const good: Array<Promise<unknown>> = [];
    const refused: Array<Promise<void>> = [];
    let ts = 1n;
    for (let round = 0; round < 20; round++) {
      for (const b of buckets) {
        good.push(
          b.write(
            'e',
            ts++,
            { size: 4, contentType: 'text/plain', labels: { n: String(round) } },
            Buffer.from('good'),
          ),
        );
        good.push(
          b.writeMany([
            { entry: 'e', ts: ts++, opts: { size: 4 }, payload: Buffer.from('good') },
            { entry: 'f', ts: ts++, opts: { size: 4, labels: { k: 'v' } }, payload: Buffer.from('good') },
          ]),
        );
      }
      const [name, opts, message] = bad[round % bad.length]!;
      const target = buckets[round % 2]!;
      const badTs = ts++;
      refused.push(
        target.write('e', badTs, opts, Buffer.from('evil')).then(
          () => assert.fail(`${name}: a write over the bound was stored`),
          (e: unknown) => {
            assert.equal(statusOf(e), 422, name);
            assert.match((e as Error).message, message, name);
          },
        ),
      );
      // The same op inside a batch: refused on its own, its neighbours written.
      const batchTs = ts;
      ts += 2n;
      refused.push(
        target
          .writeMany([
            { entry: 'g', ts: batchTs, opts: { ...opts, size: 4 }, payload: Buffer.from('evil') },
            { entry: 'g', ts: batchTs + 1n, opts: { size: 4 }, payload: Buffer.from('good') },
          ])
          .then(([first, second]) => {
            assert.ok(
              first instanceof FerryError && first.status === 422,
              `${name} in a batch: ${String(first)}`,
            );
            assert.equal(second, 'written');
          }),
      );
    }
    const outcomes = await Promise.allSettled(good);
    const failed = outcomes.filter((o) => o.status === 'rejected');
    assert.deepEqual(failed, [], 'every good write succeeds');
    for (const o of outcomes) {
      const v = (o as PromiseFulfilledResult<unknown>).value;
      for (const r of Array.isArray(v) ? v : [v]) assert.equal(r, 'written');
    }
    await Promise.all(refused);
    // Nothing of a refused write was stored.
    const stored = (b: Bucket): bigint => b.info().size;
    assert.ok(stored(buckets[0]!) > 0n);
    let records = 0;
    for (const b of buckets)
      for (const e of ['e', 'f', 'g']) for await (const _ of b.scan(e, 0n, ts)) records++;
    assert.equal(records, 20 * 2 * 3 + 20, 'good records of every writer plus the good batch neighbours');
  });
});

test('a write that never completed leaves its timestamp free: reads answer 404, any retry succeeds', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    await assert.rejects(b.write('e', 5n, { size: 10 }, abandoned(Buffer.from('01234'))));
    await assert.rejects(b.read('e', 5n), (e: unknown) => statusOf(e) === 404);
    // The same write again (same size) and, after another failure, a different one.
    await b.write('e', 5n, { size: 10 }, Buffer.from('0123456789'));
    assert.equal((await (await b.read('e', 5n)).buffer()).toString(), '0123456789');
    await assert.rejects(b.write('e', 6n, { size: 10 }, abandoned(Buffer.from('01234'))));
    await b.write('e', 6n, { size: 3 }, Buffer.from('abc'));
    assert.equal((await (await b.read('e', 6n)).buffer()).toString(), 'abc');
  });
});

test('thousands of failing writes of every kind leave heap, RSS, bucket size and block space where they were', async () => {
  await withStorage(async (s, dir) => {
    const b = await s.createBucket('b');
    const quota = await s.createBucket('q', { quota_type: 'HARD', quota_size: 1000n });
    await quota.write('e', 1n, { size: 900 }, Buffer.alloc(900));
    await b.write('e', 1n, { size: 100 }, Buffer.alloc(100, 1));
    // Big metadata, the kind a failed write used to keep: 60 KB of labels and a 1 KB content type.
    const labels = Object.fromEntries(
      Array.from({ length: 30 }, (_, i) => [`label-${i}`, `${i}`.repeat(2000)]),
    );
    const meta: WriteOptions = { size: 5000, contentType: 'c'.repeat(1000), labels };
    const wrongDigest = createHash('sha256').update('something else').digest();
    const failAll = async (n: number, offset: bigint): Promise<number> => {
      let failures = 0;
      const expectFailure = async (p: Promise<unknown>): Promise<void> => {
        await p.then(
          (r) => {
            if (Array.isArray(r)) {
              assert.ok(r[0] instanceof FerryError, 'batch item refused');
              failures++;
            } else assert.fail('a failing write succeeded');
          },
          () => failures++,
        );
      };
      for (let i = 0; i < n; i++) {
        const ts = offset + BigInt(i) * 10n;
        await expectFailure(b.write('e', ts, meta, abandoned(Buffer.alloc(2500))));
        await expectFailure(b.write('e', ts + 1n, { ...meta, digest: wrongDigest }, Buffer.alloc(5000)));
        await expectFailure(
          b.write('e', ts + 2n, { ...meta, contentType: 'x'.repeat(70_000) }, Buffer.alloc(5000)),
        );
        await expectFailure(b.write('e', 1n, meta, Buffer.alloc(5000)));
        await expectFailure(quota.write('e', ts + 3n, meta, Buffer.alloc(5000)));
        await expectFailure(
          b.writeMany([
            { entry: 'e', ts: ts + 4n, opts: { ...meta, digest: wrongDigest }, payload: Buffer.alloc(5000) },
          ]),
        );
        await expectFailure(b.write(`new-${i % 50}`, ts + 5n, meta, abandoned(Buffer.alloc(100))));
      }
      return failures;
    };
    const usage = (): { heap: number; rss: number } => {
      gc();
      gc();
      const m = process.memoryUsage();
      return { heap: m.heapUsed, rss: m.rss };
    };
    await failAll(200, 1_000_000n); // warm-up: JIT, pools, caches
    const before = usage();
    const sizeBefore = [b.info().size, quota.info().size];
    const n = 1500;
    assert.equal(await failAll(n, 10_000_000n), n * 7);
    const after = usage();
    const heapGrowth = after.heap - before.heap;
    const rssGrowth = after.rss - before.rss;
    console.log(
      `${n * 7} failing writes: heap ${(before.heap / 1e6).toFixed(1)} -> ${(after.heap / 1e6).toFixed(1)} MB, ` +
        `RSS ${(before.rss / 1e6).toFixed(1)} -> ${(after.rss / 1e6).toFixed(1)} MB`,
    );
    // Kept metadata alone would be ~60 KB per failed upload: > 180 MB here.
    assert.ok(heapGrowth < 8e6, `heap grew by ${(heapGrowth / 1e6).toFixed(1)} MB`);
    assert.ok(rssGrowth < 60e6, `RSS grew by ${(rssGrowth / 1e6).toFixed(1)} MB`);
    assert.deepEqual([b.info().size, quota.info().size], sizeBefore, 'bucket sizes unchanged');
    // The reserved block space is given back: the next record lands right after the last good one.
    await b.write('e', 99_000_000n, { size: 100 }, Buffer.alloc(100, 2));
    const entryDir = join(dir, 'buckets', 'b', 'e');
    await s.close();
    const blockFile = join(entryDir, '1.blk');
    assert.equal(statSync(blockFile).size, 200, 'block file holds the two good payloads only');
    const again = await openStorage({ dataPath: dir });
    try {
      const rb = again.bucket('b');
      assert.equal((await (await rb.read('e', 99_000_000n)).buffer()).toString('hex'), '02'.repeat(100));
      const names = rb.entryNames();
      assert.ok(names.length <= 2 + 50, `entries: ${names.length}`);
    } finally {
      await again.close();
    }
  });
});
