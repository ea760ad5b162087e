/**
 * The storage side of atomic client batches (issue 12, atomic-batch.ts): the records of one batch,
 * streamed or not, are one commit in the change log; a batch past its byte bound is cut into
 * atomic parts of that bound; a torn WAL tail that ends within a commit drops the whole commit at
 * recovery (never part of a batch after a crash); and a bucket rename while a batch waits for its
 * last record does not deadlock (the part staged so far is committed first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openStorage } from '../src/storage/engine.js';
import { AtomicBatch } from '../src/storage/atomic-batch.js';
import type { Bucket, Change } from '../src/storage/types.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';

/** The commits of `changes`, as sorted lists of record timestamps (order within one is the join order). */
async function commits(changes: Change[]): Promise<bigint[][]> {
  const out: bigint[][] = [];
  let current: bigint[] = [];
  for (const c of changes) {
    current.push(c.ts);
    if (!c.commitContinues) {
      out.push(current.sort((x, y) => (x < y ? -1 : 1)));
      current = [];
    }
  }
  return out;
}

/** Writes `sizes` as records 1, 2, 3… of entry 'e' in one batch: buffers through writeMany, the rest streamed. */
async function writeBatch(bucket: Bucket, sizes: number[], maxBytes?: number): Promise<void> {
  const batch = new AtomicBatch(maxBytes);
  const writes: Promise<unknown>[] = [];
  sizes.forEach((size, i) => {
    const ticket = batch.ticket();
    const ts = BigInt(i + 1);
    const payload = Buffer.alloc(size, i);
    const opts = { size, batch: ticket };
    const w =
      i % 2 === 0
        ? bucket.writeMany([{ entry: 'e', ts, opts, payload }])
        : bucket.write('e', ts, opts, Readable.from([payload.subarray(0, 3), payload.subarray(3)]));
    writes.push(w.finally(() => ticket.leave()));
  });
  batch.seal();
  await Promise.all(writes);
}

test('one batch is one commit; past its byte bound it is cut into parts of that bound', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    await writeBatch(b, [10, 10, 10, 10, 10]);
    assert.deepEqual(await commits(await s.changes.read(0n, 100)), [[1n, 2n, 3n, 4n, 5n]]);
    const last = s.changes.lastLsn();
    const c = await s.createBucket('c');
    await writeBatch(c, [10, 10, 10, 10, 10], 25);
    const parts = await commits(await s.changes.read(last, 100));
    assert.deepEqual(
      parts.map((p) => p.length),
      [3, 2],
      'the first part ends with the record that reached 25 bytes',
    );
    assert.deepEqual(
      parts.flat().sort((x, y) => (x < y ? -1 : 1)),
      [1n, 2n, 3n, 4n, 5n],
    );
  });
});

test('a WAL tail torn within a commit drops the whole commit at recovery', async () => {
  const dir = tempDir();
  const s = await openStorage({ dataPath: dir, checkpointIntervalMs: 3_600_000 });
  const b = await s.createBucket('b');
  await b.write('e', 100n, { size: 4 }, Buffer.from('solo'));
  await writeBatch(b, [16, 16, 16, 16]);
  // a crash: the engine is abandoned, and the last frame of the batch's commit is torn
  const walDir = join(dir, 'wal');
  const seg = readdirSync(walDir)
    .filter((n) => n.endsWith('.wal'))
    .sort()
    .pop()!;
  truncateSync(join(walDir, seg), statSync(join(walDir, seg)).size - 3);
  const s2 = await openStorage({ dataPath: dir });
  try {
    const seen: bigint[] = [];
    for await (const r of s2.bucket('b').scan('e', 0n, 2n ** 63n)) seen.push(r.meta.ts);
    assert.deepEqual(seen, [100n], 'the commit before it stays, none of the torn batch');
  } finally {
    await s2.close();
    await s.close().catch(() => undefined);
  }
});

test(
  'a bucket rename while a batch waits for its last record commits the part staged so far',
  { timeout: 20_000 },
  async () => {
    await withStorage(async (s) => {
      const b = await s.createBucket('b');
      const batch = new AtomicBatch();
      const first = batch.ticket();
      const one = b.writeMany([
        { entry: 'e', ts: 1n, opts: { size: 1, batch: first }, payload: Buffer.from('a') },
      ]);
      void one.finally(() => first.leave());
      await first.settled; // staged, waiting for the batch
      const renaming = s.renameBucket('b', 'b2');
      const second = batch.ticket();
      const two = b
        .write('e', 2n, { size: 1, batch: second }, Buffer.from('b'))
        .finally(() => second.leave());
      batch.seal();
      assert.deepEqual(await one, ['written']);
      await renaming;
      // the second write found the bucket renamed: refused, nothing half done
      await two.then(
        () => undefined,
        () => undefined,
      );
      const seen: bigint[] = [];
      for await (const r of s.bucket('b2').scan('e', 0n, 2n ** 63n)) seen.push(r.meta.ts);
      assert.ok(seen.includes(1n));
    });
  },
);
