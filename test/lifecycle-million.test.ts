/**
 * A lifecycle `delete` job over a bucket of 1,000,000 records in four entries (issue 14), on real
 * storage: `processing_interval` windows need several runs, `dry_run` reports the exact count (and
 * bytes) of the first window without removing anything, every run removes exactly the records of
 * its window, the bucket's size goes down by exactly what the runs report, and the state read back
 * after a restart of the storage agrees. Payload sizes are drawn from the test seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { BatchItem, Storage } from '../src/storage/types.js';
import type { LifecycleClock, LifecycleManager } from '../src/lifecycle/manager.js';
import type { RunResult } from '../src/lifecycle/store.js';
import { openTestLifecycles } from './helpers/lifecycle-config.js';
import { REPLAY, seededRandom } from './helpers/seed.js';

const DAY_US = 86_400_000_000;
const NOW_MS = Date.UTC(2026, 0, 1);
const NOW_US = NOW_MS * 1000;
const ENTRIES = ['cam-0', 'cam-1', 'cam-2', 'cam-3'];
const PER_ENTRY = 250_000;
/** One record every 3 s per entry from 10 days ago: ~8.7 days of data, all older than 1 day. */
const STEP_US = 3_000_000;
const START_US = NOW_US - 10 * DAY_US;
const RECENT = 100;
const WINDOW_US = 3 * DAY_US;

/** A clock that stands still at NOW_MS; the test runs the policy itself. */
const clock: LifecycleClock = { now: () => NOW_MS, setTimer: () => 0, clearTimer: () => undefined };

interface Written {
  /** Timestamps of the old records, per entry (µs, exact as numbers below 2^53). */
  ts: number[][];
}

/** 250,000 old records per entry (sizes 1–256 bytes from the seed) and 100 recent ones. */
async function fill(storage: Storage): Promise<Written> {
  const b = await storage.createBucket('data');
  const random = seededRandom('lifecycle-million/sizes');
  const pool = Buffer.alloc(256, 'p');
  const ts: number[][] = [];
  for (const [e, entry] of ENTRIES.entries()) {
    const mine: number[] = [];
    ts.push(mine);
    // entries are shifted against each other, so that windows cut blocks at different places
    const offset = e * 777_777;
    let items: BatchItem[] = [];
    const flush = async (): Promise<void> => {
      const results = await b.writeMany(items);
      for (const r of results) assert.equal(r, 'written', REPLAY);
      items = [];
    };
    for (let i = 0; i < PER_ENTRY + RECENT; i++) {
      const t = i < PER_ENTRY ? START_US + offset + i * STEP_US : NOW_US - 3_600_000_000 + i;
      if (i < PER_ENTRY) mine.push(t);
      const size = 1 + Math.floor(random() * 256);
      items.push({ entry, ts: BigInt(t), opts: { size }, payload: pool.subarray(0, size) });
      if (items.length === 5000) await flush();
    }
    await flush();
  }
  return { ts };
}

function entryCounts(storage: Storage): number[] {
  const infos = storage.bucket('data').entries();
  return ENTRIES.map((e) => Number(infos.find((x) => x.name === e)?.record_count ?? 0));
}

const bucketSize = (storage: Storage): bigint => storage.bucket('data').info().size;

test(
  'a delete job over 1,000,000 records: processing_interval windows, dry_run exact, sizes add up',
  {
    timeout: 300_000,
  },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-lc-million-'));
    let storage = await openStorage({ dataPath: dir, durability: 'none' });
    const events: RunResult[] = [];
    let manager: LifecycleManager | undefined;
    try {
      const t0 = performance.now();
      const written = await fill(storage);
      const loadS = (performance.now() - t0) / 1000;
      assert.deepEqual(
        entryCounts(storage),
        ENTRIES.map(() => PER_ENTRY + RECENT),
      );

      manager = await openTestLifecycles(storage, dir, clock, events);
      await manager.create('p', {
        type: 'delete',
        bucket: 'data',
        entries: ['cam-*'],
        older_than: '1d',
        interval: '24h',
        processing_interval: '3d',
        mode: 'dry_run',
      });

      // The windows the runs must take: from the oldest record on, 3 days each, up to the cut-off.
      const cutoff = NOW_US - DAY_US;
      const all = written.ts.flat();
      const windows: Array<{ start: number; stop: number; count: number }> = [];
      for (let from = START_US; ;) {
        // the oldest record at or after the cursor, in any entry
        const start = written.ts.reduce((m, list) => {
          const t = list.find((x) => x >= from);
          return t !== undefined && t < m ? t : m;
        }, Infinity);
        if (!Number.isFinite(start) || start >= cutoff) break;
        const stop = Math.min(start + WINDOW_US, cutoff);
        windows.push({ start, stop, count: all.filter((t) => t >= start && t < stop).length });
        if (stop >= cutoff) break;
        from = stop;
      }
      assert.ok(windows.length >= 3, 'several runs are needed');
      assert.equal(
        windows.reduce((s, w) => s + w.count, 0),
        ENTRIES.length * PER_ENTRY,
      );

      // dry_run: the exact count of the first window, nothing removed, the cursor stays
      const sizeBefore = bucketSize(storage);
      const dry = await manager.runNow('p');
      assert.equal(dry.status, 'ok', dry.error_message);
      assert.equal(dry.processed_records, windows[0]!.count);
      assert.equal(dry.window_start, BigInt(windows[0]!.start));
      assert.equal(dry.window_stop, BigInt(windows[0]!.stop));
      assert.deepEqual(
        entryCounts(storage),
        ENTRIES.map(() => PER_ENTRY + RECENT),
      );
      assert.equal(bucketSize(storage), sizeBefore);
      const dryAgain = await manager.runNow('p');
      assert.equal(dryAgain.window_start, dry.window_start, 'a dry run does not move the cursor');

      await manager.setMode('p', { mode: 'enabled' });
      const runs: RunResult[] = [];
      const timings: string[] = [];
      for (const [i, w] of windows.entries()) {
        const size = bucketSize(storage);
        const t = performance.now();
        const r = await manager.runNow('p');
        const s = (performance.now() - t) / 1000;
        timings.push(`${r.processed_records} in ${s.toFixed(2)} s`);
        runs.push(r);
        assert.equal(r.status, 'ok', r.error_message);
        assert.equal(r.window_start, BigInt(w.start), `run ${i}`);
        assert.equal(r.window_stop, BigInt(w.stop), `run ${i}`);
        assert.equal(r.processed_records, w.count, `run ${i}`);
        assert.equal(r.scanned_records, w.count, `run ${i}`);
        assert.equal(r.caught_up, i === windows.length - 1, `run ${i}`);
        assert.equal(
          size - bucketSize(storage),
          BigInt(r.removed_bytes!),
          `run ${i}: size down by what it reports`,
        );
        if (i === 0) {
          assert.equal(r.processed_records, dry.processed_records, 'dry_run counted what the run removed');
          assert.equal(r.removed_bytes, dry.removed_bytes, 'and its bytes');
        }
      }
      console.log(
        `1,000,000 records loaded in ${loadS.toFixed(1)} s; runs: ${timings.join(', ')} (${REPLAY})`,
      );
      assert.deepEqual(
        entryCounts(storage),
        ENTRIES.map(() => RECENT),
      );
      assert.equal(
        events.filter((e) => e.mode === 'enabled').length,
        windows.length,
        'one $system event per run',
      );

      // caught up: the next pass finds nothing
      const again = await manager.runNow('p');
      assert.equal(again.processed_records, 0);

      // what is left is exactly the recent records, and it reads back the same after a restart
      const b = storage.bucket('data');
      const sizeAfter = bucketSize(storage);
      let left = 0;
      let leftBytes = 0;
      for (const entry of ENTRIES) {
        for await (const rec of b.scan(entry, 0n, BigInt(NOW_US))) {
          assert.ok(rec.meta.ts >= BigInt(cutoff), `${entry}: ${rec.meta.ts} is older than the cut-off`);
          left++;
          leftBytes += rec.meta.size;
        }
      }
      assert.equal(left, ENTRIES.length * RECENT);
      assert.ok(Number(sizeAfter) > leftBytes, 'the size counts payloads and descriptors');
      await manager.close();
      manager = undefined;
      await storage.close();
      storage = await openStorage({ dataPath: dir, durability: 'none' });
      assert.equal(bucketSize(storage), sizeAfter);
      assert.deepEqual(
        entryCounts(storage),
        ENTRIES.map(() => RECENT),
      );
    } finally {
      await manager?.close();
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);
