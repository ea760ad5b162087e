/**
 * The alternating state file behind replication checkpoints (storage/alternating-file.ts): the
 * newest valid copy is read back, a torn or corrupted copy falls back to the other one, a writer
 * that never read the files does not write below the newest copy, and a checkpoint written by an
 * earlier version (one JSON file) is still loaded and then replaced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile, stat, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AlternatingFile } from '../src/storage/alternating-file.js';
import { CheckpointStore, initialCheckpoint } from '../src/replication/checkpoint-store.js';

async function dir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-alt-'));
}

test('the newest copy is read back, also after shrinking', async () => {
  const d = await dir();
  const f = new AlternatingFile(join(d, 's'), true);
  assert.equal(await f.read(), undefined);
  await f.write(Buffer.from('x'.repeat(500)));
  await f.write(Buffer.from('second'));
  await f.write(Buffer.from('third'));
  assert.equal((await new AlternatingFile(join(d, 's'), true).read())?.toString(), 'third');
  // both files exist and take turns
  await stat(join(d, 's.0'));
  await stat(join(d, 's.1'));
  await rm(d, { recursive: true });
});

test('a torn or corrupted copy falls back to the other one; the next write replaces the bad one', async () => {
  const d = await dir();
  const f = new AlternatingFile(join(d, 's'), true);
  await f.write(Buffer.from('one')); // s.0
  await f.write(Buffer.from('two')); // s.1
  const torn = await readFile(join(d, 's.1'));
  torn[torn.length - 1] ^= 0xff;
  await writeFile(join(d, 's.1'), torn);
  const g = new AlternatingFile(join(d, 's'), true);
  assert.equal((await g.read())?.toString(), 'one', 'the intact copy');
  await g.write(Buffer.from('three'));
  assert.equal((await new AlternatingFile(join(d, 's'), true).read())?.toString(), 'three');
  // a half-written header (cut before its data) is no copy either
  await writeFile(join(d, 's.0'), (await readFile(join(d, 's.0'))).subarray(0, 10));
  assert.equal((await new AlternatingFile(join(d, 's'), true).read())?.toString(), 'three');
  await rm(d, { recursive: true });
});

test('a writer that never read the files writes above the newest copy', async () => {
  const d = await dir();
  const f = new AlternatingFile(join(d, 's'), true);
  for (let i = 1; i <= 5; i++) await f.write(Buffer.from(`v${i}`));
  const blind = new AlternatingFile(join(d, 's'), true);
  await blind.write(Buffer.from('new'));
  assert.equal((await new AlternatingFile(join(d, 's'), true).read())?.toString(), 'new');
  await blind.remove();
  assert.equal(await new AlternatingFile(join(d, 's'), true).read(), undefined);
  await rm(d, { recursive: true });
});

test('a checkpoint of the earlier single-file format is loaded, then replaced by the new files', async () => {
  const d = await dir();
  const legacy = join(d, 'r.state.json');
  await writeFile(legacy, JSON.stringify({ lsn: 42, filter: {}, counters: { records_written: 7 } }));
  const store = new CheckpointStore(d, 'r', true);
  const cp = await store.load();
  assert.equal(cp?.lsn, 42n);
  assert.equal(cp?.counters.records_written, 7);
  await store.save(initialCheckpoint(43n));
  await assert.rejects(stat(legacy), /ENOENT/, 'the old file is gone once the new one is durable');
  assert.equal((await new CheckpointStore(d, 'r', true).load())?.lsn, 43n);
  await store.remove();
  assert.equal(await new CheckpointStore(d, 'r', true).load(), undefined);
  await rm(d, { recursive: true });
});
