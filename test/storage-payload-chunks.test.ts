/**
 * payloadChunks (storage/payload-chunks.ts) builds the bodies of read batches and replication
 * shipments: the bytes must be every payload in item order, whatever the mix of entries, sizes and
 * record sources; and payloads lying back to back in one block file must be read at once even when
 * records of other entries come between them (as a query ordered by time interleaves its entries).
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { payloadChunks, type PayloadAccess } from '../src/storage/payload-chunks.js';
import type { StoredRecord } from '../src/storage/types.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';
import { seededRandom, REPLAY } from './helpers/seed.js';

const ENTRIES = ['a', 'b', 'c'];

/** An item of a batch: a stored record, or bytes held in memory (as a replication may ship). */
type Item = { stored: StoredRecord } | { bytes: Buffer };

const ACCESS: PayloadAccess<Item> = {
  size: (i) => ('stored' in i ? i.stored.meta.size : i.bytes.length),
  read: (i) => ('stored' in i ? i.stored.buffer() : Promise.resolve(i.bytes)),
  open: (i) => ('stored' in i ? i.stored.stream() : Readable.from([i.bytes])),
  stored: (i) => ('stored' in i ? i.stored : undefined),
};

test('payloadChunks: every payload in order; interleaved entries cost one read per block run', async () => {
  const rnd = seededRandom('payload-chunks');
  const dir = tempDir('ferry-chunks-probe-');
  const probe = await open(join(dir, 'p'), 'w');
  const proto = Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => Promise<unknown> };
  await probe.close();
  rmSync(dir, { recursive: true, force: true });
  await withStorage(async (s) => {
    const bucket = await s.createBucket('b');
    const want = new Map<string, Buffer>();
    // 300 records by time, round robin over three entries; a few large and empty ones
    for (let n = 0; n < 300; n++) {
      const entry = ENTRIES[n % 3]!;
      const size = n % 97 === 50 ? 40_000 : n % 31 === 7 ? 0 : 1 + Math.floor(rnd() * 200);
      const payload = Buffer.alloc(size);
      for (let i = 0; i < size; i++) payload[i] = Math.floor(rnd() * 256);
      const ts = BigInt(1000 + n);
      await bucket.write(entry, ts, { size }, payload);
      want.set(`${entry}@${ts}`, payload);
    }
    const stored: StoredRecord[] = [];
    for (const e of ENTRIES) for await (const r of bucket.scan(e, 0n, 1n << 62n)) stored.push(r);
    stored.sort((x, y) => (x.meta.ts < y.meta.ts ? -1 : 1));
    // an in-memory item now and then, as a shipment of a label update or a test double carries
    const items: Item[] = [];
    stored.forEach((r, k) => {
      items.push({ stored: r });
      if (k % 50 === 10) items.push({ bytes: Buffer.from(`memory ${k}`) });
    });
    const expected = Buffer.concat(
      items.map((i) => ('stored' in i ? want.get(`${i.stored.meta.entry}@${i.stored.meta.ts}`)! : i.bytes)),
    );

    const reads = mock.method(proto, 'read');
    try {
      const parts: Buffer[] = [];
      for await (const c of payloadChunks(items, ACCESS, { smallBytes: 1024, chunkBytes: 8 * 1024 }))
        parts.push(c);
      const got = Buffer.concat(parts);
      assert.equal(got.length, expected.length, `total bytes (${REPLAY})`);
      assert.ok(got.equals(expected), `bytes in item order (${REPLAY})`);
      // one read per entry and chunk of ~8 KiB, plus the large records' streams: far fewer than records
      const smallBytes = stored.filter((r) => r.meta.size <= 1024).reduce((n, r) => n + r.meta.size, 0);
      const bound = (Math.ceil(smallBytes / 8192) + 1) * ENTRIES.length * 2 + 20;
      assert.ok(
        reads.mock.callCount() <= bound,
        `${reads.mock.callCount()} reads for ${stored.length} records (≤ ${bound})`,
      );
    } finally {
      reads.mock.restore();
    }
  });
});
