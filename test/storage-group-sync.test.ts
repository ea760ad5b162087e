/**
 * The group commit syncs a group's block files and its WAL frames at the same time (one round of
 * syncs per write, not two in a row), and stays crash safe: frames whose block file could not be
 * synced are taken back at once, and recovery drops a last group whose payloads did not all reach
 * the disk (none of its writers had been answered), while it keeps a complete one.
 */
import assert from 'node:assert/strict';
import { cpSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { AtomicBatch } from '../src/storage/atomic-batch.js';
import { openStorage } from '../src/storage/engine.js';
import type { Storage, StorageFaults } from '../src/storage/types.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';
import { waitFor } from './helpers/wait.js';

const put = (s: Storage, entry: string, ts: bigint, body: string): Promise<unknown> =>
  s.bucket('b').write(entry, ts, { size: body.length }, Buffer.from(body));

async function has(s: Storage, entry: string, ts: bigint): Promise<string | null> {
  try {
    return (await (await s.bucket('b').read(entry, ts)).buffer()).toString();
  } catch (e) {
    if ((e as { status?: number }).status === 404) return null;
    throw e;
  }
}

const logged = async (s: Storage): Promise<string[]> =>
  (await s.changes.read(0n, 100)).map((c) => `${c.lsn}:${c.entry}@${c.ts}`);

test("a group's WAL frames are written while its block files are synced, not after", async () => {
  let walStarted: () => void = () => undefined;
  const started = new Promise<void>((r) => (walStarted = r));
  const faults: StorageFaults = {
    walAppend: () => walStarted(),
    // a group commit that syncs its block files first and only then writes its frames never gets here
    blockSync: () =>
      Promise.race([
        started,
        new Promise<void>((_, reject) =>
          setTimeout(
            () => reject(new Error('the WAL was not written while the block files were synced')),
            10_000,
          ),
        ),
      ]),
  };
  await withStorage(
    async (s) => {
      await s.createBucket('b');
      await put(s, 'e', 1n, 'one');
      assert.equal(await has(s, 'e', 1n), 'one');
    },
    undefined,
    { faults },
  );
});

test('a block file that cannot be synced takes its group out of the WAL: the write fails, and nothing of it comes back', async () => {
  const dir = tempDir();
  let fail = false;
  const faults: StorageFaults = {
    blockSync: () => {
      if (fail) throw Object.assign(new Error('EIO: i/o error, fdatasync (test)'), { code: 'EIO' });
    },
  };
  try {
    let s = await openStorage({ dataPath: dir, faults });
    await s.createBucket('b');
    await put(s, 'e', 1n, 'kept');
    fail = true;
    await assert.rejects(put(s, 'e', 2n, 'lost'));
    fail = false;
    await put(s, 'e', 3n, 'after');
    assert.equal(await has(s, 'e', 2n), null);
    // the failed write's LSN is given out again: the log has no gap
    assert.deepEqual(await logged(s), ['1:e@1', '2:e@3']);
    const image = crashImage(dir);
    await s.close();
    s = await openStorage({ dataPath: image });
    try {
      assert.deepEqual(await logged(s), ['1:e@1', '2:e@3'], 'the change log replayed after a crash');
      assert.equal(await has(s, 'e', 2n), null, 'a failed write is never replayed');
      assert.deepEqual([await has(s, 'e', 1n), await has(s, 'e', 3n)], ['kept', 'after']);
    } finally {
      await s.close();
      rmSync(image, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A copy of `dir` as a crash would leave it (the copy's lock names this live process: removed). */
function crashImage(dir: string): string {
  const image = tempDir('ferry-crash-image-');
  cpSync(dir, image, { recursive: true });
  rmSync(join(image, '.ferry', 'lock'), { force: true });
  return image;
}

/**
 * The payload journal (synced with the WAL, in parallel) lost its unsynced records too: the crash
 * came before its sync. Earlier groups' payloads are in their block files in these images.
 */
function loseJournal(image: string): void {
  rmSync(join(image, 'journal'), { recursive: true, force: true });
}

test('recovery drops a last group whose payload is not on disk, keeps a complete one, and the log goes on', async () => {
  const dir = tempDir();
  const images: string[] = [];
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    await put(s, 'a', 1n, 'answered');
    await put(s, 'z', 1n, 'the last group');
    // both groups committed, and no checkpoint since: a crash now replays both
    const complete = crashImage(dir);
    const torn = crashImage(dir);
    images.push(complete, torn);
    await s.close();
    // the crash came while the last group's block file was synced: its bytes never reached the disk
    const blocks = join(torn, 'buckets', 'b', 'z');
    for (const f of readdirSync(blocks).filter((n) => n.endsWith('.blk'))) truncateSync(join(blocks, f), 0);
    loseJournal(torn);

    const lines: string[] = [];
    const a = await openStorage({ dataPath: complete, log: (l) => lines.push(l) });
    try {
      assert.deepEqual([await has(a, 'a', 1n), await has(a, 'z', 1n)], ['answered', 'the last group']);
    } finally {
      await a.close();
    }
    assert.deepEqual(
      lines.filter((l) => l.includes('WAL group')),
      [],
      'a complete group is not dropped',
    );

    let t = await openStorage({ dataPath: torn, log: (l) => lines.push(l) });
    try {
      assert.equal(await has(t, 'a', 1n), 'answered');
      assert.equal(await has(t, 'z', 1n), null, 'a record whose payload is not on disk is never served');
      assert.deepEqual(await logged(t), ['1:a@1']);
      assert.match(lines.join('\n'), /last WAL group \(LSN 2 on\).*record 1 of 'b\/z'/);
      await put(t, 'z', 1n, 'written again');
      assert.deepEqual(await logged(t), ['1:a@1', '2:z@1']);
      const again = crashImage(torn);
      images.push(again);
      await t.close();
      t = await openStorage({ dataPath: again });
      assert.deepEqual(await logged(t), ['1:a@1', '2:z@1']);
      assert.equal(await has(t, 'z', 1n), 'written again');
    } finally {
      await t.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const i of images) rmSync(i, { recursive: true, force: true });
  }
});

/** 'pending' until settled, then 'ok' or the error message. */
function track(p: Promise<unknown>): { get: () => string; done: Promise<unknown> } {
  let state = 'pending';
  const done = p.then(
    () => (state = 'ok'),
    (e: Error) => (state = `failed: ${e.message}`),
  );
  return { get: () => state, done };
}

/** Faults that hold the next group's block sync (`hold`) and count the WAL writes. */
function holdingFaults(): {
  faults: StorageFaults;
  walWrites: () => number;
  hold: () => { release: () => void; fail: () => void };
} {
  let writes = 0;
  let held: Promise<void> | undefined;
  return {
    walWrites: () => writes,
    hold: () => {
      let release!: () => void;
      let fail!: () => void;
      held = new Promise<void>((resolve, reject) => {
        release = resolve;
        fail = () => reject(Object.assign(new Error('EIO: i/o error, fdatasync (test)'), { code: 'EIO' }));
      });
      return { release, fail };
    },
    faults: {
      walAppend: () => void writes++,
      blockSync: () => {
        const h = held;
        held = undefined;
        return h;
      },
    },
  };
}

test('group commits are pipelined: the next group is written while the one before it syncs, and they are answered in log order', async () => {
  const { faults, walWrites, hold } = holdingFaults();
  await withStorage(
    async (s) => {
      await s.createBucket('b');
      await put(s, 'e', 1n, 'warm');
      const commits: bigint[] = [];
      s.changes.onCommit((lsn) => commits.push(lsn));
      const first = hold();
      const before = walWrites();
      const a = track(put(s, 'a', 1n, 'first'));
      await waitFor(() => walWrites() === before + 1, { message: "the first group's frames" });
      // the first group's block file sync is held: the second group goes ahead and writes its frames
      const b = track(put(s, 'z', 1n, 'second'));
      await waitFor(() => walWrites() === before + 2, {
        message: 'the second group was not written while the first one synced',
      });
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual([a.get(), b.get()], ['pending', 'pending'], 'answered before the group before it');
      first.release();
      await Promise.all([a.done, b.done]);
      assert.deepEqual([a.get(), b.get()], ['ok', 'ok']);
      assert.deepEqual(commits, [2n, 3n], 'two groups, published in log order');
      assert.deepEqual(await logged(s), ['1:e@1', '2:a@1', '3:z@1']);
    },
    undefined,
    { faults },
  );
});

test('a failed group takes the group written after it out of the log too: neither write is answered, nothing of them comes back', async () => {
  const dir = tempDir();
  const { faults, walWrites, hold } = holdingFaults();
  try {
    const s = await openStorage({ dataPath: dir, faults });
    await s.createBucket('b');
    await put(s, 'e', 1n, 'kept');
    const first = hold();
    const before = walWrites();
    const a = track(put(s, 'a', 1n, 'lost'));
    await waitFor(() => walWrites() === before + 1, { message: "the first group's frames" });
    const b = track(put(s, 'z', 1n, 'lost too'));
    await waitFor(() => walWrites() === before + 2, { message: "the second group's frames" });
    first.fail();
    await Promise.all([a.done, b.done]);
    assert.match(a.get(), /^failed: .*EIO/);
    assert.match(b.get(), /^failed: .*EIO/);
    await put(s, 'e', 3n, 'after');
    assert.deepEqual([await has(s, 'a', 1n), await has(s, 'z', 1n)], [null, null]);
    // both groups' LSNs are given out again: the log has no gap
    assert.deepEqual(await logged(s), ['1:e@1', '2:e@3']);
    const image = crashImage(dir);
    await s.close();
    const again = await openStorage({ dataPath: image });
    try {
      assert.deepEqual(await logged(again), ['1:e@1', '2:e@3'], 'the change log replayed after a crash');
    } finally {
      await again.close();
      rmSync(image, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('recovery checks the last two groups: an incomplete one before the last is dropped with the last, the group before them is kept', async () => {
  const dir = tempDir();
  const images: string[] = [];
  try {
    const s = await openStorage({ dataPath: dir });
    await s.createBucket('b');
    for (const entry of ['a', 'm', 'z']) await put(s, entry, 1n, `group ${entry}`);
    const torn = crashImage(dir);
    images.push(torn);
    await s.close();
    // two groups can be in flight: the crash came while 'm' synced its block file and 'z' was written
    const blocks = join(torn, 'buckets', 'b', 'm');
    for (const f of readdirSync(blocks).filter((n) => n.endsWith('.blk'))) truncateSync(join(blocks, f), 0);
    loseJournal(torn);
    const lines: string[] = [];
    const t = await openStorage({ dataPath: torn, log: (l) => lines.push(l) });
    try {
      assert.equal(await has(t, 'a', 1n), 'group a');
      assert.deepEqual([await has(t, 'm', 1n), await has(t, 'z', 1n)], [null, null]);
      assert.deepEqual(await logged(t), ['1:a@1']);
      assert.match(lines.join('\n'), /last WAL group \(LSN 2 on\).*record 1 of 'b\/m'/);
    } finally {
      await t.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    for (const i of images) rmSync(i, { recursive: true, force: true });
  }
});

test("recovery checks a group's payloads against the removals that it keeps: a removal in a dropped later group does not excuse them", async () => {
  const dir = tempDir();
  const saved = tempDir('ferry-saved-bucket-');
  const images: string[] = [];
  // no checkpoint may move the replay start past the two groups below
  const faults: StorageFaults = {
    checkpointWrite: () => {
      throw new Error('no checkpoint in this test');
    },
  };
  try {
    const s = await openStorage({ dataPath: dir, faults, log: () => undefined });
    await s.createBucket('b');
    await s.createBucket('c');
    // group 1: a record of bucket 'b'
    await put(s, 'e', 1n, 'in bucket b');
    cpSync(join(dir, 'buckets', 'b'), saved, { recursive: true });
    // group 2: the removal of bucket 'b' and a record of bucket 'c', one group (both queued in one turn)
    const batch = new AtomicBatch();
    const ticket = batch.ticket();
    const write = s.bucket('c').write('e', 1n, { size: 11, batch: ticket }, Buffer.from('in bucket c'));
    await ticket.settled;
    const before = s.changes.lastLsn();
    batch.seal();
    await Promise.all([write, s.removeBucket('b')]);
    assert.equal(s.changes.lastLsn(), before + 2n);
    const torn = crashImage(dir);
    images.push(torn);
    await s.close();
    // The crash came while both groups were in flight, after the second one's WAL sync (which
    // covers the first one's frames) and before any of their block files were synced: 'b' is
    // still there (it is removed only once its removal is durable), neither payload is on disk.
    rmSync(join(torn, 'buckets', 'b'), { recursive: true, force: true });
    for (const d of readdirSync(join(torn, 'buckets')))
      if (d.startsWith('.trash')) rmSync(join(torn, 'buckets', d), { recursive: true, force: true });
    cpSync(saved, join(torn, 'buckets', 'b'), { recursive: true });
    for (const bucket of ['b', 'c']) {
      const blocks = join(torn, 'buckets', bucket, 'e');
      for (const f of readdirSync(blocks).filter((n) => n.endsWith('.blk'))) truncateSync(join(blocks, f), 0);
    }
    loseJournal(torn);
    const lines: string[] = [];
    const t = await openStorage({ dataPath: torn, log: (l) => lines.push(l) });
    try {
      assert.equal(await has(t, 'e', 1n), null, 'a record whose payload is not on disk is never served');
      assert.equal(
        await t
          .bucket('c')
          .read('e', 1n)
          .then(
            () => 'served',
            (e: { status?: number }) => e.status,
          ),
        404,
      );
      assert.match(lines.join('\n'), /last WAL group .*record 1 of 'b\/e'/);
    } finally {
      await t.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(saved, { recursive: true, force: true });
    for (const i of images) rmSync(i, { recursive: true, force: true });
  }
});

test('a failed group that cannot be cut out of the log stops the engine: a write queued behind it is refused, not written after it', async () => {
  const { faults, walWrites, hold } = holdingFaults();
  let cutFails = false;
  faults.walCut = () => {
    if (cutFails) throw Object.assign(new Error('EIO: i/o error, ftruncate (test)'), { code: 'EIO' });
  };
  await withStorage(
    async (s) => {
      await s.createBucket('b');
      await put(s, 'e', 1n, 'kept');
      const first = hold();
      const before = walWrites();
      const a = track(put(s, 'a', 1n, 'failed'));
      await waitFor(() => walWrites() === before + 1, { message: "the first group's frames" });
      const b = track(put(s, 'm', 1n, 'failed with it'));
      await waitFor(() => walWrites() === before + 2, { message: "the second group's frames" });
      // a third writer queues behind the two groups in flight (its commit queued when the batch is sealed)
      const batch = new AtomicBatch();
      const ticket = batch.ticket();
      const c = track(s.bucket('b').write('z', 1n, { size: 6, batch: ticket }, Buffer.from('queued')));
      await ticket.settled;
      batch.seal();
      cutFails = true;
      first.fail();
      await Promise.all([a.done, b.done, c.done]);
      assert.match(a.get(), /^failed: .*EIO/);
      assert.match(b.get(), /^failed: .*EIO/);
      assert.match(c.get(), /^failed: The storage engine failed: .*ftruncate/);
      assert.equal(walWrites(), before + 2, 'nothing was written after the frames left in the log');
      await assert.rejects(put(s, 'e', 2n, 'later'), /The storage engine failed/);
    },
    undefined,
    { faults },
  );
});

test('a failed block file write fails no record it held unwritten: one committed in a later group has its bytes written first', async () => {
  let failWrite = false;
  const faults: StorageFaults = {
    blockWrite: () => {
      if (!failWrite) return;
      failWrite = false;
      throw Object.assign(new Error('ENOSPC: no space left on device, write (test)'), { code: 'ENOSPC' });
    },
  };
  await withStorage(
    async (s) => {
      await s.createBucket('b');
      await put(s, 'e', 1n, 'warm');
      // a batch's record: its payload is queued in the block file, its commit waits for the batch
      const batch = new AtomicBatch();
      const ticket = batch.ticket();
      const staged = track(s.bucket('b').write('e', 2n, { size: 7, batch: ticket }, Buffer.from('batched')));
      await ticket.settled;
      // the next group's flush writes both payloads, and fails
      failWrite = true;
      const alone = track(put(s, 'e', 3n, 'alone'));
      await alone.done;
      assert.match(alone.get(), /^failed: /);
      batch.seal();
      await staged.done;
      assert.equal(staged.get(), 'ok');
      assert.equal(await has(s, 'e', 2n), 'batched', 'an answered record has its bytes on disk');
    },
    undefined,
    { faults },
  );
});
