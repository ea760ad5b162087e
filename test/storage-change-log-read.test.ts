/**
 * Reads of the change log from disk (after a restart nothing is in memory): every change after a
 * position, exactly as it was made, from any position and in any amount, also with reads running
 * at once (they share a read buffer), frames larger than the read buffer, and frames of several
 * segments and buffer fills (strings decoded once per fill are reused within it only).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { openStorage } from '../src/storage/engine.js';
import type { Change } from '../src/storage/types.js';
import { tempDir } from './helpers/temp-storage.js';
import { seededRandom } from './helpers/seed.js';

interface Expected {
  kind: 'write' | 'update';
  entry: string;
  ts: bigint;
  contentType: string;
  labels: Record<string, string>;
  origin: string;
  size: number;
  removedLabels?: string[];
}

const view = (c: Change): Expected => ({
  kind: c.kind,
  entry: c.entry,
  ts: c.ts,
  contentType: c.contentType,
  labels: c.labels,
  origin: c.origin,
  size: c.size,
  ...(c.kind === 'update' ? { removedLabels: c.removedLabels ?? [] } : {}),
});

test('change-log reads from disk return every change after a position exactly, from any position', async () => {
  const dir = tempDir();
  const opts = { dataPath: dir, walSegmentBytes: 256 * 1024, checkpointIntervalMs: 3_600_000 };
  let s = await openStorage(opts);
  try {
    const b = await s.createBucket('b');
    // a slot from the start keeps every segment
    await s.changes.setSlot({ name: 'r', bucket: 'b', lsn: s.changes.lastLsn(), maxBytes: 1e12 });
    const expected: Expected[] = [];
    const big = 'v'.repeat(16 * 1024);
    for (let i = 0; i < 2400; i++) {
      const entry = `e${i % 3}`;
      const ts = BigInt(1000 + i);
      const contentType = i % 2 === 0 ? 'application/a' : 'text/b-é';
      const origin = i % 7 === 0 ? 'other-instance' : '';
      // every 400th record carries 64 KiB of labels (the bound): a frame larger than the smallest read buffer
      const labels: Record<string, string> =
        i % 400 === 5 ? { l1: big, l2: big, l3: big, l4: big.slice(8) } : { n: String(i), kind: `k${i % 5}` };
      const size = 1 + (i % 13);
      await b.write(
        entry,
        ts,
        { size, contentType, labels, origin: origin || undefined },
        Buffer.alloc(size, i),
      );
      expected.push({ kind: 'write', entry, ts, contentType, labels, origin, size });
      if (i % 50 === 49) {
        const at = BigInt(1000 + i - 10);
        const ofEntry = `e${(i - 10) % 3}`;
        const now = await b.updateLabels(ofEntry, at, { n: 'updated', extra: String(i) });
        const w = expected.find((x) => x.kind === 'write' && x.entry === ofEntry && x.ts === at)!;
        expected.push({
          kind: 'update',
          entry: ofEntry,
          ts: at,
          contentType: w.contentType,
          labels: now,
          origin: '',
          size: w.size,
          removedLabels: [],
        });
      }
    }
    await s.close();
    s = await openStorage(opts);

    // one change at a time first, with the smallest read buffer (a larger one, once used, is
    // reused): the sixth is a frame larger than the buffer
    const first: Change[] = [];
    for (let k = 0; k < 8; k++) first.push(...(await s.changes.read(first.at(-1)?.lsn ?? 0n, 1)));
    assert.deepEqual(first.map(view), expected.slice(0, 8));

    const all = await s.changes.read(0n, 1_000_000);
    assert.equal(all.length, expected.length);
    assert.deepEqual(all.map(view), expected);
    assert.ok(all.every((c, i) => i === 0 || c.lsn > all[i - 1]!.lsn));

    const rnd = seededRandom('change-log-read');
    const slice = (after: bigint, max: number): Expected[] =>
      all
        .filter((c) => c.lsn > after)
        .slice(0, max)
        .map(view);
    for (let k = 0; k < 60; k++) {
      const at = all[Math.floor(rnd() * all.length)]!.lsn - BigInt(Math.floor(rnd() * 2));
      const max = [1, 7, 400, 2048, 5000][Math.floor(rnd() * 5)]!;
      assert.deepEqual((await s.changes.read(at, max)).map(view), slice(at, max), `after ${at}, max ${max}`);
    }
    // reads at once share the read buffer: each gets its own changes
    const positions = Array.from({ length: 8 }, (_, k) => all[k * 290]!.lsn);
    const together = await Promise.all(positions.map((p) => s.changes.read(p, 700)));
    for (let k = 0; k < positions.length; k++)
      assert.deepEqual(together[k]!.map(view), slice(positions[k]!, 700));
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
