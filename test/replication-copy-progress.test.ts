/**
 * Copy progress across a kill (issue 9: "progress only grows", totals present after a restart).
 * A copy's position moves in memory when a batch is delivered and on disk when its checkpoint is
 * written; a process killed in between resumes from the disk. So status shows the durable copy:
 * figures, totals and `completed` are never ahead of what a restart finds. The kill is a checkpoint
 * store whose writes never reach the file, then a new task on the same directory.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Position } from '../src/replication/committer.js';
import { killableCheckpoints, makeTask, MemoryTarget, taskSettings } from './helpers/engine-harness.js';
import { writeText } from './helpers/replication-env.js';
import { withStorage } from './helpers/temp-storage.js';
import { waitFor } from './helpers/wait.js';

interface Shown {
  state: string;
  progress?: { records_done: number; records_total: number | null; percent: number | null };
}

test('a copy shows only durable progress: after a kill nothing shown goes back (done, total, completed)', async () => {
  await withStorage(async (storage, dir) => {
    await storage.createBucket('src');
    for (const entry of ['a', 'b', 'c'])
      for (const ts of [1n, 2n]) await writeText(storage, 'src', entry, ts, `${entry}-${ts}`);
    const settings = taskSettings({ continuous: false, since: 0n, batch: { max_records: 4 } });
    const target = new MemoryTarget();

    // first life: every batch is delivered, but no checkpoint reaches the disk before the kill
    const store = killableCheckpoints(dir);
    await store.freeze();
    const first = makeTask({ storage, dir, settings, target, checkpoints: store }).task;
    const lastBatches: Position[] = [];
    first.onDelivered((p) => p.source === 'copy' && p.last && lastBatches.push(p));
    await first.start();
    await waitFor(() => lastBatches.length === 3 && target.records.size === 6, {
      message: 'every entry delivered',
    });
    const shown: Shown[] = [];
    // the delivery is committed in memory on the task's next turns
    for (let i = 0; i < 10; i++) {
      shown.push(first.status() as unknown as Shown);
      await new Promise((r) => setTimeout(r, 10));
    }
    store.kill();
    await first.close();

    // second life: what the directory holds
    const second = makeTask({ storage, dir, settings, target, checkpoints: killableCheckpoints(dir) }).task;
    await second.start();
    try {
      const after = second.status() as unknown as Shown;
      for (const [i, before] of shown.entries()) {
        const b = before.progress!;
        const a = after.progress!;
        assert.ok(
          a.records_done >= b.records_done,
          `records_done ${b.records_done} → ${a.records_done} (${i})`,
        );
        if (b.records_total !== null)
          assert.equal(a.records_total, b.records_total, `records_total shown before the kill (${i})`);
        if (b.percent !== null) assert.ok((a.percent ?? -1) >= b.percent, `percent (${i})`);
        if (before.state === 'completed') assert.equal(after.state, 'completed', `completed (${i})`);
      }
      const done = await waitFor(
        () => {
          const s = second.status() as unknown as Shown;
          return s.state === 'completed' ? s : false;
        },
        { message: 'completed after the restart' },
      );
      assert.deepEqual(
        [done.progress?.records_done, done.progress?.records_total, done.progress?.percent],
        [6, 6, 100],
      );
    } finally {
      await second.close();
    }
  });
});
