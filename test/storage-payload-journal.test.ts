/**
 * The payload journal: a group's small payloads are durable through the journal's fsync (with the
 * WAL's), block files are synced lazily. A crash after a group's fsync and before its block files
 * reached the disk loses nothing answered: recovery writes the journal back into the block files.
 * A journal record never outlives its file (an entry removed and written again gets no stale bytes).
 */
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStorage } from '../src/storage/engine.js';
import type { Storage } from '../src/storage/types.js';
import { tempDir } from './helpers/temp-storage.js';

const ENTRIES = 24;

const body = (entry: number, ts: number): Buffer =>
  Buffer.alloc(700 + ((entry * 37 + ts) % 300), `${entry}:${ts};`);

async function read(s: Storage, entry: string, ts: bigint): Promise<Buffer | null> {
  try {
    return await (await s.bucket('b').read(entry, ts)).buffer();
  } catch (e) {
    if ((e as { status?: number }).status === 404) return null;
    throw e;
  }
}

/** A copy of `dir` as a crash would leave it, with every block file's bytes lost (never synced). */
function imageWithoutBlockBytes(dir: string): string {
  const image = tempDir('ferry-journal-image-');
  cpSync(dir, image, { recursive: true });
  rmSync(join(image, '.ferry', 'lock'), { force: true });
  const bucket = join(image, 'buckets', 'b');
  for (const e of readdirSync(bucket, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    for (const f of readdirSync(join(bucket, e.name)))
      if (f.endsWith('.blk')) truncateSync(join(bucket, e.name, f), 0);
  }
  return image;
}

test('a crash after the groups synced and before their block files did: recovery writes every answered payload back from the journal, byte for byte', async () => {
  const dir = tempDir();
  const images: string[] = [];
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    // many entries written at once: each group touches many block files, and syncs none of them
    for (let ts = 1; ts <= 3; ts++) {
      await Promise.all(
        Array.from({ length: ENTRIES }, (_, e) =>
          s.bucket('b').write(`e${e}`, BigInt(ts), { size: body(e, ts).length }, body(e, ts)),
        ),
      );
    }
    const image = imageWithoutBlockBytes(dir);
    images.push(image);
    // a torn record after the last complete one (a crash within an append) is ignored
    const journal = readdirSync(join(image, 'journal')).filter((n) => n.endsWith('.jnl'));
    assert.ok(journal.length > 0, 'the journal holds the payloads');
    appendFileSync(join(image, 'journal', journal.sort().at(-1)!), Buffer.from([200, 0, 0, 0, 1, 2, 3]));
    await s.close();
    const t = await openStorage({ dataPath: image, log: () => undefined });
    try {
      for (let e = 0; e < ENTRIES; e++)
        for (let ts = 1; ts <= 3; ts++)
          assert.deepEqual(await read(t, `e${e}`, BigInt(ts)), body(e, ts), `e${e}@${ts}`);
      // and the journal was dropped once its bytes were in their (synced) block files
      assert.deepEqual(readdirSync(join(image, 'journal')).filter((n) => n.endsWith('.jnl')).length, 1);
    } finally {
      await t.close();
    }
    const again = await openStorage({ dataPath: image, log: () => undefined });
    try {
      assert.deepEqual(await read(again, 'e3', 2n), body(3, 2), 'still there after a second start');
    } finally {
      await again.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const i of images) rmSync(i, { recursive: true, force: true });
  }
});

/** Retries `op` while it answers 409 (a removal finishing in the background). */
async function whileDeleting(op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await op();
      return;
    } catch (e) {
      if ((e as { status?: number }).status !== 409 || i > 200) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Copies `dir` as a crash would leave it now, closes `s`, and checks `x@1` of the copy. */
async function assertCrashImageKeeps(s: Storage, dir: string, want: string): Promise<void> {
  const image = tempDir('ferry-journal-image-');
  try {
    cpSync(dir, image, { recursive: true });
    rmSync(join(image, '.ferry', 'lock'), { force: true });
    await s.close();
    const t = await openStorage({ dataPath: image, log: () => undefined });
    try {
      assert.deepEqual(await read(t, 'x', 1n), Buffer.from(want));
    } finally {
      await t.close();
    }
  } finally {
    rmSync(image, { recursive: true, force: true });
  }
}

test('an entry removed and written again gets no stale bytes from the journal after a crash', async () => {
  const dir = tempDir();
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    await s.bucket('b').write('x', 1n, { size: 8 }, Buffer.from('old-old!'));
    await s.bucket('b').removeEntry('x');
    // its removal finishes in the background: written again once it is gone (only once a
    // checkpoint is past the removal: a crash replays no removal that would delete the new file)
    await whileDeleting(() => s.bucket('b').write('x', 1n, { size: 8 }, Buffer.from('new-new!')));
    const journal = join(dir, 'journal');
    const journaled = Buffer.concat(readdirSync(journal).map((n) => readFileSync(join(journal, n))));
    assert.ok(journaled.includes('new-new!'), 'the new payload is journaled');
    assert.ok(!journaled.includes('old-old!'), 'the removal dropped the journal records of its files');
    await assertCrashImageKeeps(s, dir, 'new-new!');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bucket removed and made again keeps its new records after a crash', async () => {
  const dir = tempDir();
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    await s.bucket('b').write('x', 1n, { size: 8 }, Buffer.from('old-old!'));
    await s.removeBucket('b');
    // made again once its removal is over (409 until then), so a crash now must not replay the
    // removal over the new bucket
    await whileDeleting(() => s.createBucket('b'));
    await s.bucket('b').write('x', 1n, { size: 8 }, Buffer.from('new-new!'));
    await assertCrashImageKeeps(s, dir, 'new-new!');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
