/**
 * A checkpoint writes a block's descriptors (`<id>.meta`) after marking the block clean; the
 * descriptor cache unloads clean, idle blocks beyond its budget and reloads them from `.meta`.
 * A block unloaded while its `.meta` was still being written came back with the older file: the
 * records written since the previous checkpoint vanished from the index, and once the checkpoint
 * moved the replay start past them they were gone for good (seen as whole runs of records missing
 * at the destination of the 100,000-record copy test). Deterministic: the checkpoint's write of
 * the block is held while other blocks push the cache over its budget, then the record is read.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStorage } from '../src/storage/engine.js';
import type { Storage } from '../src/storage/types.js';
import { tempDir } from './helpers/temp-storage.js';
import { waitFor } from './helpers/wait.js';

const put = async (s: Storage, entry: string, ts: bigint): Promise<void> => {
  const body = Buffer.from(`${entry}-${ts}`);
  await s.bucket('b').write(entry, ts, { size: body.length }, body);
};

test('a block whose descriptors a checkpoint is writing is never reloaded from its older .meta', async () => {
  const dir = tempDir();
  let hold: Promise<void> | null = null;
  let release = (): void => {};
  let held = false;
  const faults = {
    checkpointWrite: async (path: string): Promise<void> => {
      if (hold && path.endsWith('/e/1.meta')) {
        held = true;
        await hold;
      }
    },
  };
  const opts = { durability: 'none' as const, descriptorBudget: 20, checkpointIntervalMs: 3_600_000 };
  let s = await openStorage({ dataPath: dir, ...opts });
  await s.createBucket('b', { max_block_records: 10n });
  for (let ts = 1n; ts <= 40n; ts++) await put(s, 'g', ts);
  await s.close();
  // reopened: the blocks of g are on disk only, loaded when read
  s = await openStorage({ dataPath: dir, faults, ...opts });
  try {
    for (let ts = 1n; ts <= 5n; ts++) await put(s, 'e', ts);
    await (s as unknown as { checkpoint(): Promise<void> }).checkpoint(); // e/1.meta: records 1..5
    for (let ts = 6n; ts <= 8n; ts++) await put(s, 'e', ts); // in memory and in the WAL only

    hold = new Promise<void>((r) => (release = r));
    const checkpoint = (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
    await waitFor(() => held, { message: 'the checkpoint to write e/1.meta' });
    // the block is idle past the cache's bound, then other blocks push the cache over its budget
    await new Promise((r) => setTimeout(r, 300));
    for (let ts = 1n; ts <= 40n; ts += 10n) await s.bucket('b').read('g', ts);
    assert.equal((await s.bucket('b').read('e', 8n)).meta.ts, 8n, 'record 8 while the checkpoint writes');
    release();
    await checkpoint;
    assert.equal((await s.bucket('b').read('e', 8n)).meta.ts, 8n, 'record 8 after the checkpoint');
    await s.close();
    s = await openStorage({ dataPath: dir, ...opts });
    const got: bigint[] = [];
    for await (const r of s.bucket('b').scan('e', 0n, 100n)) got.push(r.meta.ts);
    assert.deepEqual(got, [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n], 'after a restart');
  } finally {
    release();
    await s.close().catch(() => undefined);
  }
});
