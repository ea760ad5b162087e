// The `$meta` attachment rule is storage's (issue 8 item 10): writing key K replaces the other
// records with key K, for every writer — direct writes, batches and replication targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket } from '../src/storage/types.js';
import { forEachTarget, statusOf } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

const MAX = 0xffffffffffffffffn;

async function keysOf(b: Bucket, entry: string): Promise<Array<[bigint, string | undefined]>> {
  const out: Array<[bigint, string | undefined]> = [];
  for await (const r of b.scan(entry, 0n, MAX)) out.push([r.meta.ts, r.meta.labels.key]);
  return out;
}

test('storage keeps one attachment per key: the last written, through write and writeMany', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-attach-'));
  const s = await openStorage({ dataPath: dir });
  try {
    const b = await s.createBucket('b');
    const meta = 'cam/$meta';
    await b.write(meta, 1000n, { size: 1, labels: { key: 'a' } }, Buffer.from('1'));
    await b.write(meta, 1500n, { size: 1, labels: { key: 'b' } }, Buffer.from('2'));
    await b.write(meta, 2000n, { size: 1, labels: { key: 'a' } }, Buffer.from('3'));
    assert.deepEqual(await keysOf(b, meta), [
      [1500n, 'b'],
      [2000n, 'a'],
    ]);
    const results = await b.writeMany([
      { entry: meta, ts: 3000n, opts: { size: 1, labels: { key: 'b' } }, payload: Buffer.from('4') },
      { entry: meta, ts: 3001n, opts: { size: 1, labels: { key: 'c' } }, payload: Buffer.from('5') },
      { entry: 'cam', ts: 3000n, opts: { size: 1, labels: { key: 'b' } }, payload: Buffer.from('x') },
    ]);
    assert.deepEqual(results, ['written', 'written', 'written']);
    assert.deepEqual(await keysOf(b, meta), [
      [2000n, 'a'],
      [3000n, 'b'],
      [3001n, 'c'],
    ]);
    // Ordinary entries are not touched by the rule.
    await b.write('cam', 4000n, { size: 1, labels: { key: 'b' } }, Buffer.from('y'));
    assert.deepEqual(await keysOf(b, 'cam'), [
      [3000n, 'b'],
      [4000n, 'b'],
    ]);
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

forEachTarget('a replicated attachment replaces the older one of its key on the destination', async (env) => {
  await env.replicate('r');
  const src = env.storage.bucket('src');
  await src.write('cam/$meta', 1000n, { size: 1, labels: { key: 'a' } }, Buffer.from('1'));
  await src.write('cam/$meta', 2000n, { size: 1, labels: { key: 'a' } }, Buffer.from('2'));
  await waitFor(() => statusOf(env.manager, 'r').pending_records === 0 && env.dst.hasBucket('dst'), {
    message: 'replicated',
  });
  assert.deepEqual(await keysOf(src, 'cam/$meta'), [[2000n, 'a']]);
  await waitFor(async () => (await keysOf(env.dst.bucket('dst'), 'cam/$meta')).length === 1, {
    message: 'destination converged',
  });
  assert.deepEqual(await keysOf(env.dst.bucket('dst'), 'cam/$meta'), [[2000n, 'a']]);
});
