/**
 * A delete run cut off by a crash between a step's removals and the save of its progress: the
 * resumed run must still report exactly what the window removed (records and bytes), since the
 * `$system` event and `last_result` are what an operator reads to know what retention did.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { BatchItem } from '../src/storage/types.js';
import { runDeleteJob, type DeleteJobOptions } from '../src/lifecycle/delete-job.js';
import { emptyState, type PolicyState } from '../src/lifecycle/store.js';
import { REPLAY, seededRandom } from './helpers/seed.js';

const RECORDS = 2_000;

test('a delete run resumed after a crash between a step and its progress save counts the whole window exactly', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-lc-resume-'));
  const storage = await openStorage({ dataPath: dir, durability: 'none' });
  try {
    const random = seededRandom('lifecycle-delete-resume/sizes');
    const b = await storage.createBucket('data', { max_block_records: 16n });
    const items: BatchItem[] = [];
    for (let i = 0; i < RECORDS; i++) {
      const size = 1 + Math.floor(random() * 200);
      items.push({ entry: 'e', ts: BigInt(i + 1), opts: { size }, payload: Buffer.alloc(size, 7) });
    }
    await b.writeMany(items);
    const sizeBefore = b.info().size;
    const count = (): number => Number(b.entries().find((e) => e.name === 'e')?.record_count ?? 0);

    // "disk" keeps only what a crash cannot lose: the durable saves
    let disk: PolicyState = emptyState();
    let crashed = false;
    const job = (state: PolicyState, crashAfterRemovals: boolean): DeleteJobOptions => ({
      storage,
      settings: {
        type: 'delete',
        bucket: 'data',
        entries: [],
        older_than: '1h',
        interval: '1h',
        processing_interval: null,
        when: null,
        mode: 'enabled',
      },
      durations: { olderThanUs: 3_600_000_000n, intervalMs: 3_600_000, processingIntervalUs: undefined },
      state,
      saveState: (durable) => {
        // the process dies at the first save after records were removed
        if (crashAfterRemovals && count() < RECORDS) {
          crashed = true;
          return Promise.reject(new Error('SIGKILL'));
        }
        if (durable) disk = structuredClone(state);
        return Promise.resolve();
      },
      nowUs: 10n * 3_600_000_000n,
      dryRun: false,
      aborted: () => false,
      batchSize: 64,
      pace: 0,
    });

    await assert.rejects(runDeleteJob(job(emptyState(), true)), /SIGKILL/);
    assert.ok(crashed && count() < RECORDS && count() > 0, `the crash came mid-window (${count()} left)`);
    const result = await runDeleteJob(job(structuredClone(disk), false));
    assert.equal(result.resumed, true);
    assert.equal(count(), 0);
    assert.equal(result.removed, RECORDS, `records removed by the window, as reported (${REPLAY})`);
    assert.equal(BigInt(result.removedBytes), sizeBefore - b.info().size, 'bytes removed, as reported');
  } finally {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
});
