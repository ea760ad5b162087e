/**
 * Atomic, idempotent apply of shipments across buckets (replication.md §8, the destination of a
 * consistency group) on real storage: all of a shipment or none of it is visible, to a concurrent
 * reader and after a crash that tears the WAL within it; a re-sent shipment changes nothing; gaps,
 * conflicts and missing buckets apply nothing; positions survive restarts and WAL truncation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { openStorage } from '../src/storage/engine.js';
import { U64_MAX } from '../src/protocol/json.js';
import { digestOf } from '../src/storage/digest.js';
import type { Shipment, ShipmentItem, Storage } from '../src/storage/types.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { planShipments, prefixViolation } from './helpers/shipment-workload.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';

const BUCKETS = ['cam', 'lidar', 'pose'];

async function seqs(s: Storage, bucket: string, entry = 'e'): Promise<number[]> {
  const out: number[] = [];
  for await (const r of s.bucket(bucket).scan(entry, 0n, U64_MAX)) out.push(Number(r.meta.labels['seq']));
  return out;
}

async function all(s: Storage): Promise<number[]> {
  const out: number[] = [];
  for (const b of BUCKETS) out.push(...(await seqs(s, b)));
  return out.sort((a, b) => a - b);
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

function write(bucket: string, ts: number, lsn = ts, body = `r${ts}`): ShipmentItem {
  const payload = Buffer.from(body);
  return {
    kind: 'write',
    bucket,
    entry: 'e',
    ts: BigInt(ts),
    lsn: BigInt(lsn),
    labels: { seq: String(ts) },
    payload,
    digest: digestOf(payload),
  };
}

async function setup(s: Storage): Promise<void> {
  for (const b of BUCKETS) await s.createBucket(b);
}

test('a shipment across buckets becomes visible at once; a re-sent one changes nothing', async () => {
  await withStorage(async (s) => {
    await setup(s);
    const first: Shipment = {
      key: 'k',
      from: 0n,
      position: 3n,
      items: [write('cam', 1), write('lidar', 2), write('pose', 3)],
    };
    const out = await s.applyShipment(first);
    assert.deepEqual(out, {
      applied: true,
      position: 3n,
      written: 3,
      present: 0,
      updated: 0,
      missing: 0,
      skipped: 0,
    });
    assert.deepEqual(await all(s), [1, 2, 3]);
    assert.equal(s.shipmentPosition('k'), 3n);
    assert.equal(s.shipmentPosition('other'), 0n);
    const again = await s.applyShipment(first);
    assert.deepEqual(again, {
      applied: false,
      position: 3n,
      written: 0,
      present: 0,
      updated: 0,
      missing: 0,
      skipped: 3,
    });
    assert.deepEqual(await all(s), [1, 2, 3]);
    // a shipment that overlaps the applied position (re-cut after a restart of the sender) applies the rest
    const overlap = await s.applyShipment({
      key: 'k',
      from: 2n,
      position: 5n,
      items: [write('pose', 3), write('cam', 4), write('lidar', 5)],
    });
    assert.deepEqual([overlap.applied, overlap.written, overlap.skipped, overlap.position], [true, 2, 1, 5n]);
    assert.deepEqual(await all(s), [1, 2, 3, 4, 5]);
  });
});

test('refused shipments apply nothing: a gap, a conflict in one member, a missing bucket, bad fields', async () => {
  await withStorage(async (s) => {
    await setup(s);
    await s.applyShipment({ key: 'k', from: 0n, position: 1n, items: [write('cam', 1)] });
    await assert.rejects(s.applyShipment({ key: 'k', from: 5n, position: 6n, items: [write('cam', 6)] }), {
      status: 409,
      message:
        "Shipment of stream 'k' starts after position 5, but this destination has applied up to 1: resend from 1",
    });
    // a record already stored with other content in the last member: the others get nothing either
    await s.bucket('pose').write('e', 4n, { size: 5, labels: { seq: '0' } }, Buffer.from('other'));
    await assert.rejects(
      s.applyShipment({
        key: 'k',
        from: 1n,
        position: 4n,
        items: [write('cam', 2), write('lidar', 3), write('pose', 4)],
      }),
      { status: 409, message: "Bucket 'pose': A record with timestamp 4 already exists" },
    );
    await assert.rejects(
      s.applyShipment({ key: 'k', from: 1n, position: 4n, items: [write('cam', 2), write('nope', 3)] }),
      { status: 404, message: "Bucket 'nope' is not found" },
    );
    await assert.rejects(
      s.applyShipment({
        key: 'k',
        from: 1n,
        position: 3n,
        items: [write('cam', 2), { ...write('lidar', 3), labels: { ['x'.repeat(300)]: 'v' } }],
      }),
      { status: 422 },
    );
    await assert.rejects(s.applyShipment({ key: 'a b', from: 0n, position: 1n, items: [] }), { status: 422 });
    await assert.rejects(s.applyShipment({ key: 'k', from: 3n, position: 3n, items: [] }), { status: 422 });
    assert.deepEqual(await seqs(s, 'cam'), [1]);
    assert.deepEqual(await seqs(s, 'lidar'), []);
    assert.equal(s.shipmentPosition('k'), 1n);
    // the refused timestamps are free again: the corrected shipment goes through
    const ok = await s.applyShipment({
      key: 'k',
      from: 1n,
      position: 3n,
      items: [write('cam', 2), write('lidar', 3)],
    });
    assert.equal(ok.written, 2);
    assert.deepEqual(await all(s), [0, 1, 2, 3]);
  });
});

test('label updates: on stored records, folded into a write of the same shipment, missing ones skipped', async () => {
  await withStorage(async (s) => {
    await setup(s);
    await s.applyShipment({
      key: 'k',
      from: 0n,
      position: 1n,
      items: [{ ...write('cam', 1), labels: { seq: '1', a: 'x', b: 'y' } }],
    });
    const update = (
      bucket: string,
      ts: number,
      lsn: number,
      labels: Record<string, string>,
      removed: string[] = [],
    ): ShipmentItem => ({
      kind: 'update',
      bucket,
      entry: 'e',
      ts: BigInt(ts),
      lsn: BigInt(lsn),
      labels,
      removedLabels: removed,
    });
    const second: Shipment = {
      key: 'k',
      from: 1n,
      position: 5n,
      items: [
        update('cam', 1, 2, { seq: '1', a: 'z' }, ['b']),
        write('lidar', 3),
        update('lidar', 3, 4, { seq: '3', c: 'w' }),
        update('pose', 9, 5, { q: '1' }),
      ],
    };
    const out = await s.applyShipment(second);
    assert.deepEqual([out.written, out.updated, out.missing], [1, 2, 1]);
    const labels = async (b: string, ts: bigint) => (await s.bucket(b).read('e', ts)).meta.labels;
    assert.deepEqual(await labels('cam', 1n), { seq: '1', a: 'z' });
    assert.deepEqual(await labels('lidar', 3n), { seq: '3', c: 'w' });
    // a later local change is not undone by a re-sent shipment
    await s.bucket('cam').updateLabels('e', 1n, { a: 'later' });
    assert.equal((await s.applyShipment(second)).applied, false);
    assert.deepEqual(await labels('cam', 1n), { seq: '1', a: 'later' });
  });
});

test("a write of a record stored already with its payload keeps it, with the write's labels (also after a restart)", async () => {
  // e.g. a member copied again after its labels changed while it was out of its group
  const dir = tempDir();
  try {
    let s = await openStorage({ dataPath: dir });
    await setup(s);
    await s.applyShipment({
      key: 'k',
      from: 0n,
      position: 2n,
      items: [
        { ...write('cam', 1), labels: { seq: '1', a: 'x', gone: 'y' } },
        { ...write('cam', 2), labels: { seq: '2' } },
      ],
    });
    const out = await s.applyShipment({
      key: 'k2',
      from: 0n,
      position: 9n,
      items: [
        { ...write('cam', 1, 1), labels: { seq: '1', a: 'new' } },
        write('cam', 2, 2),
        // an update after the write builds on the write's labels
        { kind: 'update', bucket: 'cam', entry: 'e', ts: 1n, lsn: 3n, labels: { b: 'z' }, removedLabels: [] },
      ],
    });
    assert.deepEqual([out.written, out.present, out.updated], [0, 2, 2]);
    const labels = async (ts: bigint) => (await s.bucket('cam').read('e', ts)).meta.labels;
    assert.deepEqual(await labels(1n), { seq: '1', a: 'new', b: 'z' });
    assert.deepEqual(await labels(2n), { seq: '2' });
    await s.close();
    s = await openStorage({ dataPath: dir });
    assert.deepEqual(await labels(1n), { seq: '1', a: 'new', b: 'z' });
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('positions and records survive a restart and a checkpoint that truncates the WAL', async () => {
  const dir = tempDir();
  try {
    let s = await openStorage({ dataPath: dir, walSegmentBytes: 4096 });
    await setup(s);
    const plan = planShipments(seededRandom('restart'), { key: 'r', buckets: BUCKETS, count: 30 });
    for (const sh of plan.shipments) await s.applyShipment(sh);
    const n = plan.shipments.at(-1)!.position;
    await s.close();
    s = await openStorage({ dataPath: dir, walSegmentBytes: 4096 });
    assert.equal(s.shipmentPosition('r'), n);
    assert.deepEqual(await all(s), range(Number(n)));
    assert.equal((await s.applyShipment(plan.shipments[3]!)).applied, false);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a crash that tears the WAL within a shipment leaves none of it after recovery', async () => {
  const dir = tempDir();
  const copies: string[] = [];
  try {
    const s = await openStorage({ dataPath: dir });
    await setup(s);
    await s.applyShipment({ key: 'k', from: 0n, position: 2n, items: [write('cam', 1), write('pose', 2)] });
    const big = Array.from({ length: 30 }, (_, i) => write(BUCKETS[i % 3]!, i + 3));
    await s.applyShipment({ key: 'k', from: 2n, position: 32n, items: big });
    // the data directory as a SIGKILL during the second shipment's WAL write could leave it
    const walDir = join(dir, 'wal');
    const seg = readdirSync(walDir)
      .filter((f) => f.endsWith('.wal'))
      .sort()
      .at(-1)!;
    const size = statSync(join(walDir, seg)).size;
    for (const cut of [1, 200, 1500]) {
      const copy = tempDir('ferry-shipment-crash-');
      copies.push(copy);
      cpSync(dir, copy, { recursive: true });
      rmSync(join(copy, '.ferry', 'lock'), { force: true });
      truncateSync(join(copy, 'wal', seg), size - cut);
      const r = await openStorage({ dataPath: copy });
      try {
        assert.deepEqual(await all(r), [1, 2], `cut ${cut} bytes`);
        assert.equal(r.shipmentPosition('k'), 2n);
        // the re-sent shipment applies in full
        assert.equal((await r.applyShipment({ key: 'k', from: 2n, position: 32n, items: big })).written, 30);
        assert.deepEqual(await all(r), range(32));
      } finally {
        await r.close();
      }
    }
    await s.close();
  } finally {
    for (const d of [dir, ...copies]) rmSync(d, { recursive: true, force: true });
  }
});

test('a reader polling the members never sees a later record without every earlier one', async () => {
  await withStorage(async (s) => {
    await setup(s);
    const random = seededRandom('reader');
    const plan = planShipments(random, { key: 'p', buckets: BUCKETS, count: 150, maxItems: 8 });
    let done = false;
    let polls = 0;
    let violation: string | null = null;
    const reader = (async () => {
      while (!done && violation === null) {
        // members in a seeded order each poll
        const order = [...BUCKETS].sort(() => random() - 0.5);
        const reads = [];
        for (const b of order) reads.push({ bucket: b, seqs: await seqs(s, b) });
        violation = prefixViolation(reads, plan.bucketOf);
        polls++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    // queued shipments of one stream are applied in order; sometimes several wait at once
    const pending: Array<Promise<unknown>> = [];
    for (const sh of plan.shipments) {
      pending.push(s.applyShipment(sh));
      if (Math.floor(random() * 4) === 0) await Promise.all(pending.splice(0));
      else await new Promise((r) => setImmediate(r));
    }
    await Promise.all(pending);
    done = true;
    await reader;
    assert.equal(violation, null, `${violation} (${REPLAY})`);
    assert.ok(polls > 20, `only ${polls} polls`);
    assert.deepEqual(await all(s), range(Number(plan.shipments.at(-1)!.position)));
  });
});

test('the change log marks commits: a reader can cut after a batch or a shipment, never within one', async () => {
  const dir = tempDir();
  try {
    let s = await openStorage({ dataPath: dir });
    await setup(s);
    const base = s.changes.lastLsn();
    // a slot keeps the log for the read after the restart
    await s.changes.setSlot({ name: 'reader', bucket: 'cam', lsn: base, maxBytes: 1 << 30 });
    await s.bucket('cam').write('e', 100n, { size: 1 }, Buffer.from('a'));
    const batch = [101n, 102n, 103n].map((ts) => ({
      entry: 'e',
      ts,
      opts: { size: 1 },
      payload: Buffer.from('b'),
    }));
    await s.bucket('cam').writeMany(batch);
    await s.applyShipment({
      key: 'c',
      from: 0n,
      position: 2n,
      items: [write('lidar', 104, 1), write('pose', 105, 2)],
    });
    const marks = async () =>
      (await s.changes.read(base, 100)).map((c) => `${c.ts}${c.commitContinues ? '+' : '.'}`).join(' ');
    const expected = '100. 101+ 102+ 103. 104+ 105.';
    assert.equal(await marks(), expected);
    await s.close();
    s = await openStorage({ dataPath: dir });
    assert.equal(await marks(), expected, 'read back from the WAL files');
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
