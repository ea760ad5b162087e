/**
 * The source side of a consistency group: the ordered change log cut into shipments of the
 * members' changes at commit boundaries only (a batch write is never split, whatever the bounds),
 * non-members and changes from the destination left out, and the shipments applied to another
 * storage (with `dst_prefix`) reproduce the members there exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { U64_MAX } from '../src/protocol/json.js';
import { GroupShipmentCutter } from '../src/replication/group-shipments.js';
import { LocalGroupTarget } from '../src/replication/group-target.js';
import type { Shipment, Storage } from '../src/storage/types.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { withStorage } from './helpers/temp-storage.js';

const MEMBERS = ['cam', 'lidar', 'pose'];

async function dump(s: Storage, bucket: string): Promise<string[]> {
  const out: string[] = [];
  if (!s.hasBucket(bucket)) return out;
  for (const e of s.bucket(bucket).entryNames()) {
    for await (const r of s.bucket(bucket).scan(e, 0n, U64_MAX)) {
      out.push(`${e}@${r.meta.ts}:${JSON.stringify(r.meta.labels)}:${(await r.buffer()).toString()}`);
    }
  }
  return out;
}

test('shipments end at commit boundaries; applied with a prefix they reproduce the members', async () => {
  await withStorage(async (src) => {
    await withStorage(async (dst) => {
      for (const b of [...MEMBERS, 'other']) await src.createBucket(b);
      for (const b of MEMBERS) await dst.createBucket(`copy-${b}`);
      const random = seededRandom('group-shipments');
      // the writes: single records, batches of 1-6 across entries, label updates, other buckets, echoes
      const batches: bigint[][] = [];
      let ts = 1n;
      for (let i = 0; i < 60; i++) {
        const bucket = MEMBERS[Math.floor(random() * 3)]!;
        const roll = random();
        if (roll < 0.15) {
          await src.bucket('other').write('x', ts++, { size: 1 }, Buffer.from('o'));
        } else if (roll < 0.25 && ts > 2n) {
          const t = BigInt(1 + Math.floor(random() * Number(ts - 1n)));
          for (const b of MEMBERS) {
            if (src.bucket(b).hasEntry('e')) {
              await src
                .bucket(b)
                .updateLabels('e', t, { touched: String(i) })
                .catch(() => undefined);
              break;
            }
          }
        } else if (roll < 0.3) {
          // a record that came from the destination: never sent back
          await src.bucket(bucket).write('e', ts++, { size: 1, origin: 'dst-instance' }, Buffer.from('d'));
        } else {
          const n = 1 + Math.floor(random() * 6);
          const items = Array.from({ length: n }, (_, k) => ({
            entry: k % 2 ? 'e' : 'f/g',
            ts: ts + BigInt(k),
            opts: { size: 3, labels: { batch: String(i) } },
            payload: Buffer.from(`b${i}`.padEnd(3, '.').slice(0, 3)),
          }));
          const r = await src.bucket(bucket).writeMany(items);
          assert.ok(r.every((x) => x === 'written'));
          batches.push(items.map((it) => it.ts));
          ts += BigInt(n);
        }
      }
      const cutter = new GroupShipmentCutter(src, {
        key: 'src:g',
        members: new Set(MEMBERS),
        dstPrefix: 'copy-',
        sourceInstance: src.instanceId,
        destinationInstance: 'dst-instance',
        maxRecords: 2,
        maxBytes: 1 << 20,
      });
      const target = new LocalGroupTarget(dst);
      const shipments: Shipment[] = [];
      let read = 0n;
      let shipped = 0n;
      for (;;) {
        const cut = await cutter.next(read, shipped);
        if (!cut) break;
        read = cut.position;
        if (!cut.shipment) continue;
        shipments.push(cut.shipment);
        assert.equal((await target.apply(cut.shipment)).applied, true);
        shipped = cut.shipment.position;
      }
      assert.equal(read, src.changes.lastLsn());
      // no batch is split over shipments
      const shipmentOf = new Map<bigint, number>();
      shipments.forEach((s, i) => s.items.forEach((it) => it.kind === 'write' && shipmentOf.set(it.ts, i)));
      for (const b of batches) {
        assert.equal(
          new Set(b.map((t) => shipmentOf.get(t))).size,
          1,
          `batch ${b.join(',')} split (${REPLAY})`,
        );
      }
      assert.ok(
        shipments.some((s) => s.items.length > 2),
        'a batch larger than maxRecords ships whole',
      );
      assert.ok(shipments.every((s) => s.items.every((it) => it.origin === src.instanceId)));
      for (const b of MEMBERS) {
        const mine = (await dump(src, b)).filter((r) => !r.endsWith(':d'));
        assert.deepEqual(await dump(dst, `copy-${b}`), mine, `${b} (${REPLAY})`);
      }
      assert.equal(dst.hasBucket('copy-other'), false);
      // nothing new: no cut
      assert.equal(await cutter.next(read, shipped), undefined);
    });
  });
});
