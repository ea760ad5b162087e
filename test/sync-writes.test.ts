/**
 * Client writes through a sync gate (`syncWrites`, replication.md §7) on real storage: a write is
 * answered once its own commit position is delivered, not once later writes' are (concurrent
 * writers share a group commit, and a group may be shipped in several windows).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { syncWrites } from '../src/http/sync-writes.js';
import { SyncGates } from '../src/replication/sync-gates.js';
import type { SyncGate } from '../src/replication/sync-gate.js';
import type { Storage } from '../src/storage/types.js';
import { taskSettings } from './helpers/engine-harness.js';
import { withStorage } from './helpers/temp-storage.js';

const settings = taskSettings({
  src_bucket: 'b',
  replication_type: 'sync',
  sync: { timeout_ms: 60_000, on_timeout: 'fail' },
});

/** A gate whose deliveries the test makes (no engine behind it). */
function gated(storage: Storage): { client: Storage; gate: SyncGate } {
  const gates = new SyncGates();
  const gate = gates.bind('r', settings)!;
  gate.attach({
    health: () => ({ ok: true, reason: null, disabled: false }),
    wake: () => undefined,
    changed: () => undefined,
    lastLsn: () => storage.changes.lastLsn(),
    destinationInstance: () => '',
  });
  gates.markReady();
  return { client: syncWrites(storage, gates), gate };
}

/** 'pending' until the promise settles, then 'ok' or the error message. */
function track(p: Promise<unknown>): () => string {
  let state = 'pending';
  p.then(
    () => (state = 'ok'),
    (e: Error) => (state = `failed: ${e.message}`),
  );
  return () => state;
}

/** Resolves once the storage has committed `n` changes. */
async function committed(storage: Storage, n: bigint): Promise<void> {
  const until = Date.now() + 30_000;
  while (storage.changes.lastLsn() < n) {
    assert.ok(Date.now() < until, `only ${storage.changes.lastLsn()} of ${n} changes committed`);
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setImmediate(r));
}

const lsnOf = async (storage: Storage, entry: string, ts: bigint): Promise<bigint> =>
  (await storage.changes.read(0n, 1000)).find((c) => c.entry === entry && c.ts === ts)!.lsn;

/**
 * Delivers every position of `writers` in turn, in LSN order: after each, exactly the writers whose
 * records are all delivered must have been answered (whichever of them the group commit framed first).
 */
async function deliverInTurn(
  storage: Storage,
  gate: SyncGate,
  writers: Array<{ name: string; state: () => string; records: Array<[string, bigint]> }>,
): Promise<void> {
  const own = new Map<string, bigint>();
  const all: bigint[] = [];
  for (const w of writers) {
    let max = 0n;
    for (const [entry, ts] of w.records) {
      const lsn = await lsnOf(storage, entry, ts);
      all.push(lsn);
      if (lsn > max) max = lsn;
    }
    own.set(w.name, max);
  }
  for (const w of writers) assert.equal(w.state(), 'pending', `${w.name}: nothing is delivered yet`);
  for (const lsn of all.sort((a, b) => (a < b ? -1 : 1))) {
    gate.delivered(lsn);
    await new Promise((r) => setImmediate(r));
    for (const w of writers) {
      const expected = own.get(w.name)! <= lsn ? 'ok' : 'pending';
      assert.equal(
        w.state(),
        expected,
        `${w.name} (its records up to LSN ${own.get(w.name)}) once ${lsn} is delivered`,
      );
    }
  }
}

test('a sync write is answered once its own LSN is delivered, while a later write of its group still waits', () =>
  withStorage(async (storage) => {
    await storage.createBucket('b');
    const { client, gate } = gated(storage);
    const bucket = client.bucket('b');
    // issued in the same tick: they share a group commit
    const a = track(bucket.write('a', 1n, { size: 1 }, Buffer.from('a')));
    const b = track(bucket.write('z', 1n, { size: 1 }, Buffer.from('b')));
    await committed(storage, 2n);
    await deliverInTurn(storage, gate, [
      { name: 'write A', state: a, records: [['a', 1n]] },
      { name: 'write B', state: b, records: [['z', 1n]] },
    ]);
  }));

test('a batch waits for the last of its own records, not for another writer of its group', () =>
  withStorage(async (storage) => {
    await storage.createBucket('b');
    const { client, gate } = gated(storage);
    const bucket = client.bucket('b');
    const items = [1n, 2n].map((ts) => ({ entry: 'a', ts, opts: { size: 1 }, payload: Buffer.from('x') }));
    const batch = track(bucket.writeMany(items));
    const other = track(
      bucket.writeMany([{ entry: 'z', ts: 1n, opts: { size: 1 }, payload: Buffer.from('y') }]),
    );
    await committed(storage, 3n);
    await deliverInTurn(storage, gate, [
      {
        name: 'batch',
        state: batch,
        records: [
          ['a', 1n],
          ['a', 2n],
        ],
      },
      { name: 'other batch', state: other, records: [['z', 1n]] },
    ]);
  }));
