/**
 * The consistency-group shipper's counters for records gone from the source before they were
 * shipped (issue 12): a change up to the replication's FIFO overflow position (`overflowUpTo`,
 * set when a FIFO quota evicted pending records) counts as `records_dropped_overflow`, as the
 * plain shipper counts it; one gone otherwise (removed) as `records_missing_at_source`. Real
 * storage and a real GroupShipper; the destination records the shipments it is handed.
 * And a destination whose stream went back (restored, wiped) is refused for good at `prepare`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { zeroCounters } from '../src/replication/checkpoint-store.js';
import { Diagnostics } from '../src/replication/diagnostics.js';
import { GroupDestination } from '../src/replication/group-destination.js';
import { LocalGroupTarget } from '../src/replication/group-target.js';
import { TargetError } from '../src/replication/target.js';
import { digestOf } from '../src/storage/digest.js';
import { GroupShipper } from '../src/replication/group-shipper.js';
import { addItem, groupKey, newWindow } from '../src/replication/window.js';
import type { Shipment, Storage } from '../src/storage/types.js';
import { withStorage } from './helpers/temp-storage.js';

/** A real GroupShipper over `storage` whose destination only records the shipments it is handed. */
function recordingShipper(storage: Storage, overflowUpTo: bigint) {
  const shipped: Shipment[] = [];
  const destination = {
    appliedAtPrepare: 0n,
    apply: async (s: Shipment) => {
      shipped.push(s);
      return {
        applied: true,
        position: s.position,
        written: s.items.length,
        present: 0,
        updated: 0,
        missing: 0,
        skipped: 0,
      };
    },
  } as unknown as GroupDestination;
  const counters = zeroCounters();
  const shipper = new GroupShipper({
    storage,
    destination,
    key: 'src:g',
    dstPrefix: 'copy-',
    diagnostics: new Diagnostics(),
    counters: () => counters,
    watchdog: { guard: (_what, _bytes, call) => call(), overflowUpTo: () => overflowUpTo },
  });
  return { shipped, counters, shipper };
}

test('a group shipment counts records evicted by FIFO overflow as dropped, others gone as missing', async () => {
  await withStorage(async (storage) => {
    await storage.createBucket('cam');
    const cam = storage.bucket('cam');
    for (let ts = 1n; ts <= 4n; ts++) await cam.write('e', ts, { size: 1 }, Buffer.from('x'));
    const writes = (await storage.changes.read(0n, 100)).filter((c) => c.kind === 'write');
    assert.equal(writes.length, 4);
    // 1 and 3 go before they are shipped; the overflow position covers 1 and 2 only
    await cam.removeRecord('e', 1n);
    await cam.removeRecord('e', 3n);
    const overflowUpTo = writes[1]!.lsn;

    const { shipped, counters, shipper } = recordingShipper(storage, overflowUpTo);
    const w = newWindow(0n, 0);
    for (const c of writes) addItem(w, c, groupKey(c));
    w.endLsn = writes[3]!.lsn;
    w.remaining = w.items;
    await shipper.ship(w);

    assert.equal(w.status, 'done');
    assert.deepEqual(
      shipped[0]!.items.map((it) => it.ts),
      [2n, 4n],
    );
    assert.equal(counters.records_dropped_overflow, 1, 'ts 1: evicted within the overflow position');
    assert.equal(counters.records_missing_at_source, 1, 'ts 3: gone after the overflow position');
    assert.equal(counters.records_written, 2);
  });
});

test('a destination stream found behind the position it confirmed is a permanent refusal; a later one is not', async () => {
  await withStorage(async (before) => {
    await withStorage(async (wiped) => {
      const destination = (storage: typeof before): GroupDestination =>
        new GroupDestination({
          members: () => [],
          dstPrefix: '',
          bucketTarget: () => {
            throw new Error('no members');
          },
          group: new LocalGroupTarget(storage),
          key: 'src:g',
        });
      await before.createBucket('cam');
      const d = destination(before);
      await d.prepare();
      const payload = Buffer.from('x');
      const item = { kind: 'write' as const, bucket: 'cam', entry: 'e', ts: 1n, lsn: 7n, labels: {} };
      await d.apply({
        key: 'src:g',
        from: 0n,
        position: 7n,
        items: [{ ...item, payload, digest: digestOf(payload) }],
      });
      assert.equal(d.confirmed, 7n);
      await d.prepare(); // the same destination: fine
      // a restart of the source (confirmed from its checkpoint) facing a destination without the stream
      const other = destination(wiped);
      other.confirmed = d.confirmed;
      const err = await other.prepare().then(
        () => assert.fail('prepare passed'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TargetError);
      assert.equal(err.temporary, false);
      assert.match(
        err.message,
        /stream 'src:g' is at position 0, behind position 7 .*lost applied shipments/,
      );
      assert.equal(other.available, false);
    });
  });
});

test("a member copy's batches of one entry reach the destination in launch order, each starting where the one before ends", async () => {
  await withStorage(async (storage) => {
    await storage.createBucket('pose');
    const pose = storage.bucket('pose');
    const payload = Buffer.from('x');
    const records = Array.from({ length: 201 }, (_, i) => ({
      entry: 'e',
      ts: BigInt(i + 1),
      opts: { size: 1 },
      payload,
    }));
    for (const r of await pose.writeMany(records)) assert.ok(!(r instanceof Error), String(r));
    const writes = (await storage.changes.read(0n, 1000)).filter((c) => c.kind === 'write');
    const { shipped, shipper } = recordingShipper(storage, 0n);
    const copyWindow = (changes: typeof writes) => {
      const w = newWindow(0n, 0);
      for (const c of changes) addItem(w, c, groupKey(c));
      w.remaining = w.items;
      w.copy = { batch: { entry: 'e', records: [], bytes: 0, next: 0n, last: false }, filter: null };
      return w;
    };
    // the first batch takes longer to read than the second: it must still arrive first
    const big = copyWindow(writes.slice(0, 200));
    const small = copyWindow(writes.slice(200));
    await Promise.all([shipper.ship(big), shipper.ship(small)]);
    assert.equal(big.status, 'done');
    assert.equal(small.status, 'done');
    assert.deepEqual(
      shipped.map((s) => [s.key === shipped[0]!.key, s.from, s.position, s.items.length]),
      [
        [true, 0n, 201n, 200],
        [true, 201n, 202n, 1],
      ],
    );
  });
});
