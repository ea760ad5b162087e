/**
 * Lifecycle `delete` jobs (api.md §16) on real storage with an injected clock: what is removed
 * (entries, `when`, older_than, never `$meta`), `processing_interval` windows, `dry_run`, the
 * schedule, the per-run event, and the protection of records a replication still has to ship.
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import type { BatchItem, Storage } from '../src/storage/types.js';
import { LifecycleManager, type LifecycleClock } from '../src/lifecycle/manager.js';
import type { RunResult } from '../src/lifecycle/store.js';
import { ReplicationProtection } from '../src/lifecycle/protection.js';
import { ConfigFree, openTestLifecycles } from './helpers/lifecycle-config.js';

const HOUR_US = 3_600_000_000n;
/** "Now" of the tests: 2026-01-01T00:00:00Z. */
const NOW_MS = Date.UTC(2026, 0, 1);
const NOW_US = BigInt(NOW_MS) * 1000n;

/** A clock whose timers fire only when the test advances it. */
class FakeClock implements LifecycleClock {
  t = NOW_MS;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Moves time forward and fires the timers that are due. */
  advance(ms: number): void {
    this.t += ms;
    for (const [id, timer] of [...this.timers]) {
      if (timer.at <= this.t) {
        this.timers.delete(id);
        timer.fn();
      }
    }
  }
  get pending(): number {
    return this.timers.size;
  }
}

let dir: string;
let storage: Storage;
let clock: FakeClock;
let manager: LifecycleManager | undefined;
let events: RunResult[];

// one suite: its hooks then wrap only this file's tests, also when the unit lane shares a process
describe('lifecycle delete jobs', () => {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-lc-delete-'));
    storage = await openStorage({ dataPath: dir, durability: 'none' });
    clock = new FakeClock();
    events = [];
  });

  afterEach(async () => {
    await manager?.close();
    manager = undefined;
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function open(): Promise<LifecycleManager> {
    manager = await openTestLifecycles(storage, dir, clock, events, { batchSize: 100 });
    return manager;
  }

  /** `count` records per entry, one every `stepUs` from `startUs`, label kind=keep on every 5th. */
  async function fill(
    bucket: string,
    entries: string[],
    count: number,
    startUs: bigint,
    stepUs: bigint,
  ): Promise<void> {
    const b = storage.hasBucket(bucket) ? storage.bucket(bucket) : await storage.createBucket(bucket);
    const payload = Buffer.from('x'.repeat(64));
    for (const entry of entries) {
      let items: BatchItem[] = [];
      for (let i = 0; i < count; i++) {
        const labels = { kind: i % 5 === 0 ? 'keep' : 'tmp' };
        items.push({
          entry,
          ts: startUs + BigInt(i) * stepUs,
          opts: { size: payload.length, labels },
          payload,
        });
        if (items.length === 1000) {
          await b.writeMany(items);
          items = [];
        }
      }
      if (items.length > 0) await b.writeMany(items);
    }
  }

  function countRecords(bucket: string, entry: string): number {
    const e = storage
      .bucket(bucket)
      .entries()
      .find((x) => x.name === entry);
    return e ? Number(e.record_count) : 0;
  }

  const policy = (extra: Record<string, unknown> = {}) => ({
    type: 'delete',
    bucket: 'data',
    entries: ['cam-*'],
    older_than: '1d',
    interval: '1h',
    ...extra,
  });

  test('removes old records of matching entries only, keeps recent ones, $meta and other entries', async () => {
    const old = NOW_US - 30n * 24n * HOUR_US; // 30 days ago, one record per minute
    await fill('data', ['cam-a', 'cam-b', 'other'], 600, old, 60_000_000n);
    await fill('data', ['cam-a'], 10, NOW_US - HOUR_US, 1_000_000n); // recent
    const b = storage.bucket('data');
    await b.write('cam-a/$meta', old, { size: 2, labels: { key: 'k' } }, Buffer.from('{}'));
    const m = await open();
    await m.create('p', policy({ when: { '&kind': { $ne: 'keep' } } }));

    const r = await m.runNow('p');
    assert.equal(r.status, 'ok');
    assert.equal(r.processed_records, 2 * 480);
    assert.equal(r.caught_up, true);
    assert.equal(countRecords('data', 'cam-a'), 120 + 10);
    assert.equal(countRecords('data', 'cam-b'), 120);
    assert.equal(countRecords('data', 'other'), 600);
    assert.equal((await b.read('cam-a/$meta', old)).meta.size, 2);
    for await (const rec of b.scan('cam-b', 0n, NOW_US)) assert.equal(rec.meta.labels['kind'], 'keep');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.processed_records, 960);
  });

  test('processing_interval: one window of data time per run, then the pass starts over', async () => {
    const start = NOW_US - 10n * 24n * HOUR_US; // 10 days ago, one record every 10 minutes
    await fill('data', ['cam-a', 'cam-b'], 10 * 144, start, 600_000_000n);
    const m = await open();
    await m.create('p', policy({ older_than: '1d', processing_interval: '2d' }));
    const perWindow = 2 * 2 * 144; // two entries, two days
    const removed: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await m.runNow('p');
      assert.equal(r.status, 'ok');
      removed.push(r.processed_records);
      if (r.caught_up) break;
      assert.equal(r.window_stop! - r.window_start!, 2n * 24n * HOUR_US);
    }
    // 9 days are older than the cut-off: windows of 2, 2, 2, 2 and 1 day
    assert.deepEqual(removed, [perWindow, perWindow, perWindow, perWindow, perWindow / 2]);
    assert.equal(countRecords('data', 'cam-a'), 144);
    assert.equal(countRecords('data', 'cam-b'), 144);
    // caught up: the next pass starts from the oldest record again and finds nothing to do
    const again = await m.runNow('p');
    assert.equal(again.processed_records, 0);
  });

  test('dry_run reports what a run would remove and changes nothing, cursor included', async () => {
    const start = NOW_US - 10n * 24n * HOUR_US;
    await fill('data', ['cam-a'], 10 * 144, start, 600_000_000n);
    const m = await open();
    await m.create('p', policy({ processing_interval: '3d', mode: 'dry_run' }));
    const first = await m.runNow('p');
    const second = await m.runNow('p');
    assert.equal(first.processed_records, 3 * 144);
    assert.equal(second.processed_records, first.processed_records);
    assert.equal(second.window_start, first.window_start);
    assert.equal(countRecords('data', 'cam-a'), 10 * 144);
    await m.setMode('p', { mode: 'enabled' });
    const real = await m.runNow('p');
    assert.equal(real.processed_records, first.processed_records);
    assert.equal(countRecords('data', 'cam-a'), 7 * 144);
  });

  test('runs every interval on the injected clock; disabled policies do not run', async () => {
    await fill('data', ['cam-a'], 100, NOW_US - 48n * HOUR_US, 1_000_000n);
    const m = await open();
    await m.create('p', policy({ interval: '30m' }));
    clock.advance(29 * 60_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(events.length, 0, 'the first run comes one interval after creation');
    clock.advance(60_000);
    await waitForEvents(1);
    assert.equal(events[0]!.processed_records, 100);
    clock.advance(30 * 60_000);
    await waitForEvents(2);
    assert.equal(events[1]!.processed_records, 0);
    await m.setMode('p', { mode: 'disabled' });
    assert.equal(clock.pending, 0);
    clock.advance(10 * 3_600_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(events.length, 2);
  });

  async function waitForEvents(n: number): Promise<void> {
    for (let i = 0; i < 500 && events.length < n; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(events.length, n);
  }

  test('records a replication still has to ship are kept, exactly as from FIFO eviction', async () => {
    const old = NOW_US - 10n * 24n * HOUR_US;
    await fill('data', ['cam-a'], 300, old, 1_000_000n);
    // a replication slot created now pins every later write of the bucket until it is shipped
    const slotLsn = storage.changes.lastLsn();
    await storage.changes.setSlot({ name: 'repl:test', bucket: 'data', lsn: slotLsn, maxBytes: 1 << 30 });
    await fill('data', ['cam-a'], 50, old + 1_000_000_000n, 1_000_000n); // written after: unshipped
    const m = await open();
    await m.create('p', policy());
    const r = await m.runNow('p');
    assert.equal(r.processed_records, 300);
    assert.equal(r.protected_records, 50);
    assert.equal(countRecords('data', 'cam-a'), 50);

    // shipped: the next pass removes them
    storage.changes.advanceSlot('repl:test', storage.changes.lastLsn());
    const next = await m.runNow('p');
    assert.equal(next.processed_records, 50);
    assert.equal(countRecords('data', 'cam-a'), 0);
    await storage.changes.dropSlot('repl:test');
  });

  test('a record written after the protection last read the log is kept (it may be one to ship)', async () => {
    const old = NOW_US - 10n * 24n * HOUR_US;
    await fill('data', ['cam-a'], 10, old, 1_000_000n);
    await storage.changes.setSlot({
      name: 'repl:g',
      bucket: 'data',
      lsn: storage.changes.lastLsn(),
      maxBytes: 1 << 30,
    });
    const p = await ReplicationProtection.open(storage.changes, 'data', 0n, NOW_US);
    const guard = p.guard('cam-a')!;
    const readUpTo = storage.changes.lastLsn();
    await fill('data', ['cam-b'], 1, old, 1n); // not read yet
    const late = storage.changes.lastLsn();
    assert.equal(guard.has(old, readUpTo), false);
    assert.equal(guard.has(old, late), true);
    assert.equal(guard.anyIn(old, old + 10_000_000n, readUpTo), false);
    assert.equal(guard.anyIn(old, old + 10_000_000n, late), true);
    await storage.changes.dropSlot('repl:g');
  });

  test('a slot past its bound with on_overflow evict protects nothing (as FIFO)', async () => {
    const old = NOW_US - 10n * 24n * HOUR_US;
    await storage.createBucket('data');
    await storage.changes.setSlot({
      name: 'repl:small',
      bucket: 'data',
      lsn: storage.changes.lastLsn(),
      maxBytes: 100,
    });
    await fill('data', ['cam-a'], 20, old, 1_000_000n); // 20 × 64 bytes > 100
    const m = await open();
    await m.create('p', policy());
    const r = await m.runNow('p');
    assert.equal(r.processed_records, 20);
    assert.equal(r.protected_records, 0);
    await storage.changes.dropSlot('repl:small');
  });

  test('removing the last records of a block concurrently logs one block removal, not one per record', async () => {
    const b = await storage.createBucket('blocks', { max_block_records: 10n });
    await fill('blocks', ['e'], 10, 1_000n, 1n);
    const before = storage.changes.lastLsn();
    const timestamps = Array.from({ length: 10 }, (_, i) => 1_000n + BigInt(i));
    await Promise.all(timestamps.map((ts) => b.removeRecord('e', ts)));
    // 10 record removals + 1 block removal (it was one block removal per concurrent remover)
    assert.equal(storage.changes.lastLsn() - before, 11n);
    assert.equal(countRecords('blocks', 'e'), 0);
    await b.write('e', 5_000n, { size: 1 }, Buffer.from('x'));
    assert.equal(countRecords('blocks', 'e'), 1);
  });

  test('a run drops whole sealed blocks (one op per block), the boundary block record by record', async () => {
    const b = await storage.createBucket('data', { max_block_records: 100n });
    const old = NOW_US - 10n * 24n * HOUR_US;
    // 2,000 old records (blocks of 100), the 20th block also holds 50 recent ones
    await fill('data', ['cam-a'], 1950, old, 1_000_000n);
    await fill('data', ['cam-a'], 50, NOW_US - HOUR_US, 1_000_000n);
    const size = b.info().size;
    const lsn = storage.changes.lastLsn();
    const m = await open();
    await m.create('p', policy());
    const r = await m.runNow('p');
    assert.equal(r.processed_records, 1950);
    assert.equal(countRecords('data', 'cam-a'), 50);
    // 19 block removals and 50 record removals (record by record it was 1,950 ops + 19)
    assert.equal(storage.changes.lastLsn() - lsn, 19n + 50n);
    assert.equal(size - b.info().size, BigInt(r.removed_bytes!));
    assert.equal(
      b.info().size,
      b.entries().reduce((s, e) => s + e.size, 0n),
    );
  });

  test('on a REPLICA no job runs: provisioned and stored policies stay idle and say why', async () => {
    await fill('data', ['cam-a'], 100, NOW_US - 48n * HOUR_US, 1_000_000n);
    // A policy stored while the instance was a standalone one, and a provisioned one.
    let m = await open();
    await m.create('stored', policy({ interval: '30m' }));
    await m.close();
    manager = m = await LifecycleManager.open({
      storage,
      config: {
        ...ConfigFree(dir, [{ name: 'prov', settings: policy({ interval: '30m', type: 'compress' }) }]),
        instanceRole: 'REPLICA',
      },
      clock,
      onRun: (_p, _l, r) => events.push(r),
      warn: () => undefined,
    });
    assert.equal(clock.pending, 0, 'nothing is scheduled');
    clock.advance(10 * 3_600_000);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(events.length, 0);
    assert.equal(countRecords('data', 'cam-a'), 100);
    for (const name of ['stored', 'prov']) {
      const info = m.get(name).info as Record<string, unknown>;
      assert.equal(info['is_running'], false);
      assert.match(String(info['status_reason']), /REPLICA/);
      await assert.rejects(m.runNow(name), (e: Error & { status?: number }) => e.status === 403);
    }
  });
});
