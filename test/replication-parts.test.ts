/**
 * Unit tests of the replication engine's parts (issue 9 item 1), each on its own: the committer and
 * the progress figures on a manual clock, the batching rules, the scan source over real storage,
 * and the shipper against a fake target (the state machine: replication-state-machine.test.ts).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { Committer, type Position } from '../src/replication/committer.js';
import { initialCheckpoint, zeroCounters } from '../src/replication/checkpoint-store.js';
import { copyProgress } from '../src/replication/copy-progress.js';
import { Diagnostics } from '../src/replication/diagnostics.js';
import { FailureLog } from '../src/replication/failure-log.js';
import { parseJson, stringifyJson } from '../src/protocol/json.js';
import { ScanSource } from '../src/replication/scan-source.js';
import { effectiveSettings } from '../src/replication/settings.js';
import { Shipper } from '../src/replication/shipper.js';
import type { ItemOutcome, ShipRecord, Target } from '../src/replication/target.js';
import {
  addItem,
  groupKey,
  isFull,
  newWindow,
  wouldOverflow,
  type Window,
} from '../src/replication/window.js';
import type { Change, Storage } from '../src/storage/types.js';
import { ManualClock } from './helpers/manual-clock.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';

const checkpoint = initialCheckpoint;

test('committer: writes at the spacing of its urgency, releases tags once durable, retries a failed write', async () => {
  const clock = new ManualClock(0);
  const saves: bigint[] = [];
  let fail = false;
  let lsn = 1n;
  const released: string[][] = [];
  let wakes = 0;
  const failures: unknown[] = [];
  const c = new Committer({
    clock,
    snapshot: () => checkpoint(lsn),
    store: {
      save: (cp) => {
        saves.push(cp.lsn);
        return fail ? Promise.reject(new Error('disk')) : Promise.resolve();
      },
    },
    saved: (_cp, tags) => released.push([...tags]),
    failed: (e) => failures.push(e),
    wake: () => wakes++,
  });
  const delivered: Position[] = [];
  c.onDelivered((p) => delivered.push(p));
  c.delivered({ source: 'log', lsn: 7n });
  assert.deepEqual(delivered, [{ source: 'log', lsn: 7n }]);

  c.markDirty('soon');
  c.persist(); // first write: due at once
  assert.deepEqual(saves, [1n]);
  lsn = 2n;
  c.markDirty('soon');
  c.persist(); // 100 ms spacing: a wake-up instead
  assert.equal(saves.length, 1);
  clock.advance(99);
  assert.equal(wakes, 0);
  clock.advance(1);
  assert.equal(wakes, 1);
  c.persist();
  assert.deepEqual(saves, [1n, 2n]);

  // a copy entry's position is written at once and its tag released once durable
  c.markDirty('now', 'a');
  c.persist();
  assert.equal(saves.length, 3);
  await Promise.resolve();
  assert.deepEqual(released.at(-1), ['a']);

  // a failed write stays dirty and keeps its tags for the next one
  fail = true;
  c.markDirty('now', 'b');
  c.persist();
  await new Promise((r) => setImmediate(r));
  assert.equal(failures.length, 1);
  assert.ok(c.isDirty);
  fail = false;
  clock.advance(1000);
  c.persist();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(released.at(-1), ['b']);
  assert.ok(!c.isDirty);
  c.close();
});

test('copy progress: percent, rate and time left on a manual clock; capped by what was done', () => {
  const state = ScanSource.plan(null, () => true, 0n, null, 0);
  state.total = { records: 1000, bytes: 10_000 };
  state.done = { records: 250, bytes: 2500 };
  state.entries = [{ name: 'a', next: 0n, stop: 10n, done: false }];
  const p = copyProgress(state, { at: 0, records: 0, bytes: 0 }, 5000);
  assert.equal(p.percent, 25);
  assert.equal(p.records_per_sec, 50);
  assert.equal(p.eta_seconds, 15);
  state.done = { records: 1200, bytes: 12_000 };
  assert.equal(copyProgress(state, { at: 0, records: 0, bytes: 0 }, 6000).percent, 100);
  state.total = null;
  assert.equal(copyProgress(state, { at: 0, records: 0, bytes: 0 }, 6000).percent, null);
  state.completed_at = new Date(0).toISOString();
  const done = copyProgress(state, { at: 0, records: 0, bytes: 0 }, 6000);
  assert.deepEqual([done.percent, done.eta_seconds], [100, 0]);
});

const change = (entry: string, ts: bigint, size: number, kind: 'write' | 'update' = 'write'): Change => ({
  lsn: ts,
  kind,
  bucket: 'src',
  entry,
  ts,
  size,
  contentType: 'text/plain',
  labels: {},
  digest: Buffer.alloc(16),
  origin: '',
  commitTime: 0,
});

test('batching: a window seals at max_records per group, 4 × max_records in all, or max_bytes', () => {
  const limits = { max_records: 2, max_bytes: 100, max_delay_ms: 0, max_in_flight: 1 };
  const w = newWindow(0n, 0);
  const a1 = change('a', 1n, 10);
  addItem(w, a1, groupKey(a1));
  assert.ok(!isFull(w, limits));
  const a2 = change('a', 2n, 10);
  addItem(w, a2, groupKey(a2));
  assert.ok(isFull(w, limits));
  const a3 = change('a', 3n, 10);
  assert.ok(wouldOverflow(w, a3, groupKey(a3), limits));
  const big = change('b', 1n, 90);
  assert.ok(wouldOverflow(w, big, groupKey(big), limits), 'bytes');
  assert.ok(!wouldOverflow(newWindow(0n, 0), big, groupKey(big), limits), 'a first change always fits');
});

async function fillEntry(s: Storage, entry: string, n: number, size = 10): Promise<void> {
  if (!s.hasBucket('src')) await s.createBucket('src');
  for (let i = 1; i <= n; i++) {
    await s
      .bucket('src')
      .write(entry, BigInt(i), { size, contentType: 'text/plain' }, Buffer.alloc(size, 65));
  }
}

test('scan source: plans each entry to its latest record, one batch per entry at a time, resumes from a restored state', () =>
  withStorage(async (s) => {
    await fillEntry(s, 'a', 7);
    await fillEntry(s, 'b', 3, 50);
    const plan = ScanSource.plan(s.bucket('src'), () => true, 2n, null, 0);
    assert.deepEqual(
      plan.entries.map((e) => [e.name, e.next, e.stop]),
      [
        ['a', 2n, 8n],
        ['b', 2n, 4n],
      ],
    );
    // a record written after the plan, beyond the entry's bound: not part of the copy
    await s.bucket('src').write('a', 8n, { size: 1 }, Buffer.from('x'));
    const src = new ScanSource(() => s.bucket('src'), plan);
    assert.deepEqual((await src.count()).records, 6 + 2);
    const busy = new Set<string>();
    const b1 = (await src.next(4, 1000, busy))!;
    assert.deepEqual(
      [b1.entry, b1.records.map((r) => r.ts), b1.next, b1.last],
      ['a', [2n, 3n, 4n, 5n], 6n, false],
    );
    busy.add('a');
    const b2 = (await src.next(4, 60, busy))!;
    assert.deepEqual([b2.entry, b2.records.length, b2.next], ['b', 1, 3n], 'max_bytes: one 50-byte record');
    src.commit(b1, { records: 4, bytes: 40 });
    busy.delete('a');
    // a restart: a new source from the persisted state resumes at 6
    const again = new ScanSource(() => s.bucket('src'), ScanSource.restore(structuredClone(plan)));
    const b3 = (await again.next(10, 1000, new Set(['b'])))!;
    assert.deepEqual([b3.records.map((r) => r.ts), b3.next, b3.last], [[6n, 7n], 8n, true]);
    again.commit(b3, { records: 2, bytes: 20 });
    assert.ok(again.state.entries[0]!.done);
    assert.ok(!again.finished);
  }));

/** Answers each record with the next outcome of a script (then `written`). */
class ScriptedTarget implements Target {
  readonly description = 'fake';
  readonly instanceId = 'dst-id';
  readonly available = true;
  calls: Array<{ entry: string; ts: bigint[] }> = [];
  constructor(private readonly script: ItemOutcome[]) {}
  prepare(): Promise<void> {
    return Promise.resolve();
  }
  write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    this.calls.push({ entry, ts: records.map((r) => r.ts) });
    return Promise.resolve(records.map(() => this.script.shift() ?? { kind: 'written' }));
  }
  update(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    return this.write(entry, records);
  }
  reset(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test('shipper: outcomes set the window status and counters; refused records stay remaining', () =>
  withStorage(async (s) => {
    await fillEntry(s, 'a', 4);
    const target = new ScriptedTarget([
      { kind: 'written' },
      { kind: 'present' },
      { kind: 'permanent', status: 409, message: 'conflict' },
      { kind: 'temporary', status: 503, message: 'busy' },
    ]);
    const counters = zeroCounters();
    const inflight: Window[] = [];
    const settings = effectiveSettings({
      src_bucket: 'src',
      dst_bucket: 'dst',
      dst_host: '',
      dst_token: null,
      entries: [],
      dst_prefix: 'p',
      when: null,
      mode: 'enabled',
      compression: 'none',
    });
    const failuresDir = tempDir('ferry-failures-');
    after(() => rmSync(failuresDir, { recursive: true, force: true }));
    const shipper = new Shipper({
      storage: s,
      target,
      diagnostics: new Diagnostics(),
      failureLog: new FailureLog(failuresDir, 'r', false),
      timeoutMs: 1000,
      settings: () => settings,
      counters: () => counters,
      inflight: () => inflight,
      overflowUpTo: () => 0n,
    });
    const w = newWindow(0n, 0);
    for (let i = 1n; i <= 4n; i++) {
      const c = change('a', i, 10);
      addItem(w, c, groupKey(c));
    }
    w.remaining = w.items;
    inflight.push(w);
    await shipper.ship(w);
    assert.deepEqual(target.calls, [{ entry: 'p/a', ts: [1n, 2n, 3n, 4n] }]);
    assert.equal(w.status, 'perm_failed');
    assert.match(w.error!.message, /409/);
    assert.deepEqual(
      w.remaining.map((i) => i.change.ts),
      [3n, 4n],
    );
    assert.deepEqual(
      [counters.records_written, counters.records_already_present, counters.records_read],
      [1, 1, 4],
    );
    // the retry delivers the rest
    await shipper.ship(w);
    assert.equal(w.status, 'done');
    assert.deepEqual(target.calls[1], { entry: 'p/a', ts: [3n, 4n] });
    assert.equal(counters.records_written, 3);
  }));

test('a copy plan keeps its change-log bound through the checkpoint file (a resumed one-shot still leaves later writes out)', () => {
  const planned = ScanSource.plan(null, () => true, 0n, null, 0, 2n ** 40n + 7n);
  const back = ScanSource.restore(parseJson(stringifyJson(planned)) as typeof planned);
  assert.equal(back.lsn, 2n ** 40n + 7n);
  const unbounded = ScanSource.restore(
    parseJson(stringifyJson(ScanSource.plan(null, () => true, 0n, null, 0))) as typeof planned,
  );
  assert.equal(unbounded.lsn, undefined);
});

test('smallBatchBody: the payloads of a small batch as one buffer, in order; none beyond the coalescing size', async () => {
  const { smallBatchBody } = await import('../src/replication/target.js');
  const rec = (ts: bigint, payload: Buffer): ShipRecord => ({
    lsn: ts,
    ts,
    size: payload.length,
    contentType: 'application/octet-stream',
    labels: {},
    removedLabels: [],
    digest: Buffer.alloc(16),
    origin: '',
    record: {
      meta: { size: payload.length } as never,
      stream: () => {
        throw new Error('a small batch is read whole');
      },
      buffer: async () => payload,
    },
  });
  const one = await smallBatchBody([rec(1n, Buffer.from('abc'))]);
  assert.equal(one?.toString(), 'abc');
  const many = await smallBatchBody([
    rec(1n, Buffer.from('ab')),
    rec(2n, Buffer.alloc(0)),
    rec(3n, Buffer.from('cd')),
  ]);
  assert.equal(many?.toString(), 'abcd');
  // larger batches stream (their payloads are not held in memory at once)
  assert.equal(
    await smallBatchBody([rec(1n, Buffer.alloc(200 * 1024)), rec(2n, Buffer.alloc(100 * 1024))]),
    null,
  );
});
