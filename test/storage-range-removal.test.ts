/**
 * Bulk removal of a time range (`Bucket.removeRange`, the path of lifecycle deletes and of
 * remove-by-query): whole sealed blocks go with one op each, boundary blocks record by record in
 * one commit, `select` / `keep` / `limit` / `dryRun` behave, the size account stays exact (also
 * against a concurrent single-record removal) and everything reads back the same after a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket, Storage } from '../src/storage/types.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';

/** `count` records of 1 + (i % 7) bytes at ts = 1000 + i, blocks of 10 records. */
async function fill(s: Storage, count: number): Promise<Bucket> {
  const b = await s.createBucket('b', { max_block_records: 10n });
  const items = Array.from({ length: count }, (_, i) => ({
    entry: 'e',
    ts: 1000n + BigInt(i),
    opts: { size: 1 + (i % 7), labels: { even: String(i % 2 === 0) } },
    payload: Buffer.alloc(1 + (i % 7), 'x'),
  }));
  for (const r of await b.writeMany(items)) assert.equal(r, 'written');
  return b;
}

async function timestamps(b: Bucket): Promise<number[]> {
  const out: number[] = [];
  for await (const r of b.scan('e', 0n, 1n << 62n)) out.push(Number(r.meta.ts) - 1000);
  return out;
}

/** The bucket's size equals the sum of its entries' block summaries (nothing counted twice). */
function assertAccountExact(b: Bucket): void {
  const entries = b.entries().reduce((s, e) => s + e.size, 0n);
  assert.equal(b.info().size, entries);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test(
  'whole sealed blocks go with one op each, the boundary block record by record; sizes exact',
  { timeout: 60_000 },
  async () => {
    await withStorage(async (s) => {
      const b = await fill(s, 100);
      const size = b.info().size;
      const lsn = s.changes.lastLsn();
      // [1000, 1055): blocks 0–4 whole, 5 records of block 5
      const r = await b.removeRange('e', 0n, 1055n);
      assert.deepEqual(
        { removed: r.removed, scanned: r.scanned, whole: r.wholeBlocks, done: r.done, next: r.next },
        { removed: 55, scanned: 55, whole: 5, done: true, next: 1055n },
      );
      // 5 block removals + 5 record removals (record by record it was 55 + 5)
      assert.equal(s.changes.lastLsn() - lsn, 10n);
      assert.equal(size - b.info().size, BigInt(r.removedBytes));
      assert.deepEqual(await timestamps(b), range(55, 100));
      assertAccountExact(b);
      // a range that starts and ends inside one block ends (it once looped for good)
      const inner = await b.removeRange('e', 1071n, 1073n);
      assert.equal(inner.removed, 2);
      assert.equal(inner.wholeBlocks, 0);
      assert.deepEqual(await timestamps(b), [...range(55, 71), ...range(73, 100)]);
      // the newest block is never dropped whole (it takes appends), but emptied it goes
      const tail = await b.removeRange('e', 1090n, 1100n);
      assert.equal(tail.removed, 10);
      assert.equal(tail.wholeBlocks, 0);
      assertAccountExact(b);
    });
  },
);

test('select and keep: chosen records go, protected ones stay and are counted; dry run first', async () => {
  await withStorage(async (s) => {
    const b = await fill(s, 40);
    const keep = new Set([1003n, 1024n]);
    const everyOther = {
      select: (m: { ts: bigint }) => m.ts % 2n === 0n || m.ts < 1010n,
      keep: {
        has: (ts: bigint) => keep.has(ts),
        anyIn: (from: bigint, to: bigint) => [...keep].some((t) => t >= from && t <= to),
      },
    };
    const size = b.info().size;
    const dry = await b.removeRange('e', 0n, 1030n, { ...everyOther, dryRun: true });
    assert.equal(b.info().size, size);
    assert.equal((await timestamps(b)).length, 40);
    const real = await b.removeRange('e', 0n, 1030n, everyOther);
    assert.deepEqual(
      { ...real, next: 0n },
      { ...dry, next: 0n },
      'a dry run reports exactly what the removal does',
    );
    // block 0 (all selected, 1003 kept): record by record; blocks 1 and 2: the even records (1024 kept)
    assert.equal(real.protected, 2);
    assert.equal(real.removed, 9 + 5 + 4);
    assert.equal(real.wholeBlocks, 0);
    assert.equal(size - b.info().size, BigInt(real.removedBytes));
    assert.deepEqual(await timestamps(b), [3, 11, 13, 15, 17, 19, 21, 23, 24, 25, 27, 29, ...range(30, 40)]);
    assertAccountExact(b);
  });
});

test('limit: steps of whole blocks that continue at next until done', async () => {
  await withStorage(async (s) => {
    const b = await fill(s, 100);
    const steps: number[] = [];
    let from = 0n;
    for (;;) {
      const r = await b.removeRange('e', from, 1085n, { limit: 25 });
      steps.push(r.removed);
      if (r.done) break;
      from = r.next;
    }
    // 25 records looked at per step, in whole blocks of 10: 30, 30, 25 (the last cut at 1085)
    assert.deepEqual(steps, [30, 30, 25]);
    assert.deepEqual(await timestamps(b), range(85, 100));
    assertAccountExact(b);
  });
});

test('a single-record removal racing a bulk removal of its block is not counted twice', async () => {
  await withStorage(async (s) => {
    const b = await fill(s, 50);
    // the single removal finds its record first, the bulk one drops the block before it commits
    const [single, bulk] = await Promise.allSettled([
      b.removeRecord('e', 1015n),
      b.removeRange('e', 0n, 1030n),
    ]);
    assert.equal(bulk.status, 'fulfilled');
    assert.ok(single.status === 'fulfilled' || (single.reason as { status?: number }).status === 404);
    assert.deepEqual(await timestamps(b), range(30, 50));
    assertAccountExact(b);
  });
});

test('after a restart the removals read back the same', async () => {
  const dir = tempDir();
  let s = await openStorage({ dataPath: dir });
  let b = await fill(s, 100);
  await b.removeRange('e', 0n, 1043n);
  await b.removeRange('e', 1047n, 1062n);
  const size = b.info().size;
  const left = await timestamps(b);
  await s.close();
  s = await openStorage({ dataPath: dir });
  try {
    b = s.bucket('b');
    assert.equal(b.info().size, size);
    assert.deepEqual(await timestamps(b), left);
    assertAccountExact(b);
  } finally {
    await s.close();
  }
});

test('a checkpoint does not move the replay start past block removals whose files are still there', async () => {
  const dir = tempDir();
  let armed = false;
  const early: string[] = [];
  const blockFile = (i: number): string => join(dir, 'buckets', 'b', 'e', `${1000 + 10 * i}.blk`);
  const s = await openStorage({
    dataPath: dir,
    checkpointIntervalMs: 3_600_000,
    faults: {
      checkpointWrite: (path) => {
        // the replay start moves: every block whose removal it passes must be gone from disk
        if (armed && path.endsWith(join('wal', 'checkpoint'))) {
          for (let i = 0; i < 199; i++) if (existsSync(blockFile(i))) early.push(blockFile(i));
        }
      },
    },
  });
  try {
    const b = await fill(s, 2000);
    await (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
    assert.ok(existsSync(blockFile(0)));
    let checkpoint: Promise<void> | undefined;
    // a checkpoint that starts the moment the removal ops are durable (its LSN includes them)
    const off = s.changes.onCommit(() => {
      if (armed && !checkpoint) checkpoint = (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
    });
    armed = true;
    const r = await b.removeRange('e', 0n, 3000n);
    off();
    await checkpoint;
    assert.equal(r.wholeBlocks, 199);
    assert.ok(checkpoint, 'a checkpoint ran');
    assert.deepEqual(early, [], 'files of removed blocks left when the checkpoint moved past their removal');
    for (let i = 0; i < 199; i++) assert.equal(existsSync(blockFile(i)), false);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a block removed whole while a checkpoint writes its descriptors leaves no descriptor file behind', async () => {
  const dir = tempDir();
  const meta = join(dir, 'buckets', 'b', 'e', '1000.meta');
  let hold: Promise<void> | undefined;
  let release = (): void => {};
  let held = false;
  const s = await openStorage({
    dataPath: dir,
    checkpointIntervalMs: 3_600_000,
    faults: {
      checkpointWrite: async (path) => {
        if (hold && path === meta) {
          held = true;
          await hold;
        }
      },
    },
  });
  const checkpoint = (): Promise<void> => (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
  try {
    const b = await fill(s, 100);
    await checkpoint();
    assert.ok(existsSync(meta));
    // block 1000 dirty again; its descriptors are being written when the removal drops it
    await b.updateLabels('e', 1000n, { even: 'changed' });
    hold = new Promise<void>((r) => (release = r));
    const running = checkpoint();
    while (!held) await new Promise((r) => setImmediate(r));
    // the descriptor write goes on once the removal is durable (its files may be deleted then)
    const off = s.changes.onCommit(() => setTimeout(release, 20));
    const r = await b.removeRange('e', 0n, 1010n);
    off();
    assert.equal(r.wholeBlocks, 1);
    await running;
    assert.equal(existsSync(meta), false, 'the descriptor file of the removed block is still on disk');
    assert.equal(existsSync(join(dir, 'buckets', 'b', 'e', '1000.blk')), false);
  } finally {
    release();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
