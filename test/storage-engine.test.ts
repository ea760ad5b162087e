import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, readdirSync, appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket, StoredRecord } from '../src/storage/types.js';
import { FerryError } from '../src/protocol/errors.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';

const MAX = 0xffffffffffffffffn;

async function collect(b: Bucket, entry: string, start = 0n, stop = MAX): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for await (const r of b.scan(entry, start, stop)) out.push(r);
  return out;
}

async function rejectsWith(p: Promise<unknown>, status: number, message?: string | RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FerryError, `expected FerryError, got ${String(e)}`);
    assert.equal(e.status, status);
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  });
}

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

test('size accounting follows the worked checks of api.md §3.9', async () => {
  await withStorage(async (s) => {
    const a = await s.createBucket('a');
    await a.write('e1', 1_000_000n, { size: 8 }, Buffer.from('somedata'));
    assert.equal(a.entries()[0]!.size, 40n);
    await a.write('e2', 2_000_000n, { size: 11 }, Buffer.from('somedata-11'));
    assert.equal(a.info().size, 83n);

    const b = await s.createBucket('b');
    await b.write('e', 1_000_000n, { size: 8 }, Buffer.from('somedata'));
    await b.write('e', 2_000_000n, { size: 8 }, Buffer.from('somedata'));
    assert.equal(b.info().size, 82n);

    const c = await s.createBucket('bucket', { max_block_records: 256n });
    const labels = { label1: 'label1', label2: '100', label3: 'true' };
    await c.write('entry-1', 1_000_000n, { size: 9, labels }, Buffer.from('somedata1'));
    for (const t of [2n, 3n, 4n])
      await c.write('entry-2', t * 1_000_000n, { size: 9 }, Buffer.from('somedata1'));
    const info = c.info();
    assert.deepEqual(
      {
        size: info.size,
        entry_count: info.entry_count,
        oldest: info.oldest_record,
        latest: info.latest_record,
      },
      { size: 217n, entry_count: 2n, oldest: 1_000_000n, latest: 4_000_000n },
    );
    assert.deepEqual(
      c.entries().map((e) => [e.name, e.size, e.record_count, e.block_count]),
      [
        ['entry-1', 90n, 1n, 1n],
        ['entry-2', 127n, 3n, 1n],
      ],
    );
    assert.equal(s.usage().usage, 83n + 82n + 217n);
  });
});

test('blocks follow max_block_records and max_block_size', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b', { max_block_records: 10n, max_block_size: 1000n });
    for (let i = 0; i < 25; i++) await b.write('r', BigInt(i + 1), { size: 1 }, Buffer.from('x'));
    assert.equal(b.entries()[0]!.block_count, 3n);
    for (let i = 0; i < 5; i++) await b.write('s', BigInt(i + 1), { size: 400 }, Buffer.alloc(400));
    // 400 + 400 fits in 1000, a third does not: blocks of 2, 2, 1.
    assert.equal(b.entries().find((e) => e.name === 's')!.block_count, 3n);
    // A single record larger than the block size still gets a block of its own.
    await b.write('big', 1n, { size: 5000 }, Buffer.alloc(5000));
    assert.equal(b.entries().find((e) => e.name === 'big')!.block_count, 1n);
  });
});

test('hierarchical entries create real parents; reads return exact metadata and payloads', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    await b.write(
      'a/b/c',
      5n,
      { size: 3, contentType: 'text/plain', labels: { k: 'v' } },
      Buffer.from('abc'),
    );
    assert.deepEqual(
      b.entries().map((e) => [e.name, e.record_count]),
      [
        ['a', 0n],
        ['a/b', 0n],
        ['a/b/c', 1n],
      ],
    );
    assert.equal(b.info().entry_count, 3n);
    const r = await b.read('a/b/c', 5n);
    assert.equal(r.meta.contentType, 'text/plain');
    assert.deepEqual(r.meta.labels, { k: 'v' });
    assert.equal((await r.buffer()).toString(), 'abc');
    assert.deepEqual(r.meta.digest, createHash('sha256').update('abc').digest().subarray(0, 16));
    const latest = await b.read('a/b/c');
    assert.equal(latest.meta.ts, 5n);
    await rejectsWith(b.read('a/b/c', 6n), 404, /^Record 6 not found in /);
    await rejectsWith(b.read('nope', 6n), 404, "Entry 'nope' not found in bucket 'b'");
  });
});

test('names are validated against traversal and bad characters', async () => {
  await withStorage(async (s) => {
    await rejectsWith(s.createBucket('../x'), 422);
    await rejectsWith(s.createBucket('a b'), 422);
    const b = await s.createBucket('b');
    for (const bad of ['../x', 'a//b', '/a', 'a/', 'a/../b', 'a.b', '']) {
      await rejectsWith(b.write(bad, 1n, { size: 1 }, Buffer.from('x')), 422);
    }
  });
});

test('duplicates, short and long bodies, retry after a failed upload, idempotent apply', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    await b.write('e', 10n, { size: 4 }, Buffer.from('data'));
    await rejectsWith(
      b.write('e', 10n, { size: 4 }, Buffer.from('data')),
      409,
      'A record with timestamp 10 already exists',
    );

    const digest = createHash('sha256').update('data').digest();
    assert.equal(await b.write('e', 10n, { size: 4, digest }, Buffer.from('data')), 'already_present');
    const other = createHash('sha256').update('DATA').digest();
    await rejectsWith(b.write('e', 10n, { size: 4, digest: other }, Buffer.from('DATA')), 409);
    await rejectsWith(
      b.write('e', 11n, { size: 4, digest: other }, Buffer.from('data')),
      400,
      /digest mismatch/,
    );

    await rejectsWith(
      b.write('e', 20n, { size: 10 }, chunks(Buffer.from('short'), 2)),
      400,
      'Content is smaller than in content-length',
    );
    // A write that never completed leaves nothing: its timestamp is free for any retry.
    await rejectsWith(b.read('e', 20n), 404);
    await b.write('e', 20n, { size: 10 }, chunks(Buffer.from('0123456789'), 3));
    assert.equal((await (await b.read('e', 20n)).buffer()).toString(), '0123456789');

    await rejectsWith(
      b.write('e', 30n, { size: 2 }, chunks(Buffer.from('toolong'), 3)),
      400,
      'Content is bigger than in content-length',
    );
    assert.deepEqual(
      (await collect(b, 'e')).map((r) => r.meta.ts),
      [10n, 20n],
    );
  });
});

test('belated writes are returned in timestamp order, within ranges', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b', { max_block_records: 4n });
    const order = [50n, 10n, 70n, 30n, 90n, 20n, 60n, 80n, 40n, 5n, 100n];
    for (const t of order) await b.write('e', t, { size: 1 }, Buffer.from('x'));
    const all = (await collect(b, 'e')).map((r) => r.meta.ts);
    assert.deepEqual(
      all,
      [...order].sort((x, y) => (x < y ? -1 : 1)),
    );
    assert.deepEqual(
      (await collect(b, 'e', 20n, 60n)).map((r) => r.meta.ts),
      [20n, 30n, 40n, 50n],
    );
  });
});

test('large payloads stream in and out without changes', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    const big = Buffer.alloc(9 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    await b.write('e', 1n, { size: big.length }, chunks(big, 64 * 1024));
    const r = await b.read('e', 1n);
    const parts: Buffer[] = [];
    for await (const c of r.stream()) parts.push(c as Buffer);
    assert.ok(Buffer.concat(parts).equals(big));
  });
});

test('label updates: change, delete, no-op is not logged, persisted', async () => {
  const dir = tempDir();
  let s = await openStorage({ dataPath: dir });
  const b = await s.createBucket('b');
  await b.write('e', 1n, { size: 1, labels: { a: '1', b: '2' } }, Buffer.from('x'));
  const before = s.changes.lastLsn();
  assert.deepEqual(await b.updateLabels('e', 1n, { a: '10', b: '', c: '3' }), { a: '10', c: '3' });
  const changes = await s.changes.read(before, 10);
  assert.equal(changes.length, 1);
  assert.equal(changes[0]!.kind, 'update');
  assert.deepEqual(changes[0]!.removedLabels, ['b']);
  assert.deepEqual(await b.updateLabels('e', 1n, { a: '10', zz: null }), { a: '10', c: '3' });
  assert.equal(s.changes.lastLsn(), changes[0]!.lsn, 'a no-op update must not be logged');
  await rejectsWith(b.updateLabels('e', 2n, { a: '1' }), 404);
  await s.close();
  s = await openStorage({ dataPath: dir });
  assert.deepEqual((await s.bucket('b').read('e', 1n)).meta.labels, { a: '10', c: '3' });
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a crash (no close) loses no committed write; a torn WAL tail is cut', async () => {
  const dir = tempDir();
  const s = await openStorage({ dataPath: dir, checkpointIntervalMs: 3_600_000 });
  const b = await s.createBucket('b', { max_block_records: 50n });
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 500; i++) {
    writes.push(
      b.write(`e${i % 3}`, BigInt(1000 + i), { size: 16, labels: { i: String(i) } }, Buffer.alloc(16, i)),
    );
  }
  await Promise.all(writes);
  await b.updateLabels('e0', 1000n, { i: 'changed' });
  // Simulate a crash: abandon the engine without closing it, and tear the WAL tail.
  const walDir = join(dir, 'wal');
  const seg = readdirSync(walDir)
    .filter((n) => n.endsWith('.wal'))
    .sort()
    .pop()!;
  const sizeBefore = statSync(join(walDir, seg)).size;
  appendFileSync(join(walDir, seg), Buffer.from([0x40, 0, 0, 0, 1, 2, 3]));

  const s2 = await openStorage({ dataPath: dir });
  assert.equal(statSync(join(walDir, seg)).size, sizeBefore, 'torn tail is cut at the last valid frame');
  const b2 = s2.bucket('b');
  let total = 0;
  for (const e of ['e0', 'e1', 'e2']) {
    const recs = await collect(b2, e);
    total += recs.length;
    for (const r of recs) {
      const i = Number(r.meta.ts - 1000n);
      assert.ok((await r.buffer()).equals(Buffer.alloc(16, i)));
      assert.equal(r.meta.labels.i, i === 0 ? 'changed' : String(i));
    }
  }
  assert.equal(total, 500);
  assert.equal(b2.info().size, b.info().size);
  // New writes after recovery go on normally and survive another restart.
  await b2.write('e0', 5000n, { size: 1 }, Buffer.from('z'));
  await s2.close();
  const s3 = await openStorage({ dataPath: dir });
  assert.equal((await collect(s3.bucket('b'), 'e0')).length, 168);
  await s3.close();
  rmSync(dir, { recursive: true, force: true });
});

test('record, entry and bucket removal; entry and bucket rename', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b');
    for (const e of ['a', 'a/x', 'a/x/y', 'keep']) await b.write(e, 1n, { size: 2 }, Buffer.from('hi'));
    await b.write('a', 2n, { size: 2 }, Buffer.from('hi'));
    await b.removeRecord('a', 2n);
    await rejectsWith(b.removeRecord('a', 2n), 404);
    assert.equal(b.entries().find((e) => e.name === 'a')!.record_count, 1n);

    await b.renameEntry('a', 'renamed');
    assert.deepEqual(
      b.entries().map((e) => e.name),
      ['keep', 'renamed', 'renamed/x', 'renamed/x/y'],
    );
    assert.equal((await (await b.read('renamed/x/y', 1n)).buffer()).toString(), 'hi');
    await rejectsWith(b.renameEntry('renamed', 'keep'), 409);
    await rejectsWith(b.renameEntry('renamed', 'renamed/x/z'), 409);
    await rejectsWith(b.renameEntry('missing', 'other'), 404);

    await b.removeEntry('renamed');
    for (let i = 0; i < 100 && b.hasEntry('renamed/x'); i++) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      b.entries().map((e) => e.name),
      ['keep'],
    );
    assert.equal(b.info().size, b.entries()[0]!.size, 'bucket size drops with the removed entries');

    await s.renameBucket('b', 'c');
    assert.equal((await (await s.bucket('c').read('keep', 1n)).buffer()).toString(), 'hi');
    await rejectsWith(
      Promise.resolve().then(() => s.bucket('b')),
      404,
      "Bucket 'b' is not found",
    );
    await s.removeBucket('c');
    assert.equal(s.listBuckets()[0]?.status, 'DELETING');
    for (let i = 0; i < 100 && s.hasBucket('c'); i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(s.hasBucket('c'), false);
    await s.createBucket('c');
    assert.equal(s.bucket('c').info().entry_count, 0n);
  });
});

test('quotas: HARD refuses, FIFO evicts oldest whole blocks across entries', async () => {
  await withStorage(async (s) => {
    const h = await s.createBucket('h', { quota_type: 'HARD', quota_size: 100n });
    await h.write('e', 1n, { size: 50 }, Buffer.alloc(50));
    await rejectsWith(h.write('e', 2n, { size: 50 }, Buffer.alloc(50)), 400, "Quota of 'h' exceeded");

    const f = await s.createBucket('f', { quota_type: 'FIFO', quota_size: 10_000n, max_block_records: 10n });
    for (let i = 0; i < 200; i++)
      await f.write(i % 2 ? 'odd' : 'even', BigInt(i + 1), { size: 100 }, Buffer.alloc(100, i));
    const info = f.info();
    assert.ok(info.size <= 10_000n, `size ${info.size} within quota`);
    assert.ok(info.oldest_record > 1n, 'oldest records were evicted');
    const recs = [...(await collect(f, 'odd')), ...(await collect(f, 'even'))];
    assert.ok(recs.length >= 60 && recs.length < 200);
    assert.ok(
      recs.some((r) => r.meta.ts === 200n),
      'newest record kept',
    );
  });
});

test('change log: ordered LSNs, origin, slots pin FIFO eviction up to their bound', async () => {
  const dir = tempDir();
  let s = await openStorage({ dataPath: dir });
  const b = await s.createBucket('f', { quota_type: 'FIFO', quota_size: 2_000n, max_block_records: 5n });
  const commits: bigint[] = [];
  const off = s.changes.onCommit((lsn) => commits.push(lsn));
  await s.changes.setSlot({
    name: 'r1',
    bucket: 'f',
    lsn: s.changes.lastLsn(),
    maxBytes: 1_000_000,
    onOverflow: 'block',
  });
  for (let i = 0; i < 10; i++)
    await b.write(
      'e',
      BigInt(i + 1),
      { size: 100, origin: i === 3 ? 'other' : undefined },
      Buffer.alloc(100),
    );
  off();
  assert.ok(commits.length > 0 && commits.every((x, i) => i === 0 || x > commits[i - 1]!));
  const changes = await s.changes.read(0n, 100);
  assert.equal(changes.length, 10);
  assert.ok(changes.every((c, i) => i === 0 || c.lsn > changes[i - 1]!.lsn));
  assert.equal(changes[3]!.origin, 'other');
  assert.equal(changes[0]!.origin, '');
  // Everything is pending for a blocking slot: FIFO may not evict it, the write is refused (429).
  await rejectsWith(
    b.write('e', 100n, { size: 900 }, Buffer.alloc(900)),
    429,
    "Bucket 'f' refuses writes: its FIFO quota is full of records replication 'r1' has not shipped yet (log.on_overflow: block); writes resume once it catches up, or set its log.on_overflow to 'drop_oldest' or 'suspend', or raise the quota",
  );
  // Once shipped, eviction is allowed again.
  s.changes.advanceSlot('r1', changes[9]!.lsn);
  await b.write('e', 100n, { size: 900 }, Buffer.alloc(900));
  assert.ok(b.info().oldest_record > 1n);
  // A bound smaller than the pending bytes lets eviction pass, and says so.
  await s.changes.setSlot({ name: 'r1', bucket: 'f', lsn: s.changes.lastLsn(), maxBytes: 10 });
  const overflow: string[] = [];
  s.changes.onSlotOverflow((name) => overflow.push(name));
  for (let i = 0; i < 20; i++) await b.write('e', BigInt(200 + i), { size: 100 }, Buffer.alloc(100));
  assert.ok(overflow.includes('r1'));
  await s.close();
  s = await openStorage({ dataPath: dir });
  assert.equal(s.changes.getSlot('r1')?.maxBytes, 10, 'slots survive restarts');
  assert.ok(s.changes.lastLsn() >= changes[9]!.lsn);
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('writeMany: one pass per batch with per-record outcomes, durable and idempotent', async () => {
  const dir = tempDir();
  let s = await openStorage({ dataPath: dir });
  const b = await s.createBucket('b', { max_block_records: 3n });
  await b.write('e', 2n, { size: 1 }, Buffer.from('x'));
  const item = (ts: bigint, body: string, extra: Partial<{ digest: Buffer; size: number }> = {}) => ({
    entry: 'e',
    ts,
    opts: { size: extra.size ?? body.length, labels: { n: String(ts) }, digest: extra.digest },
    payload: Buffer.from(body),
  });
  const xDigest = createHash('sha256').update('x').digest();
  const results = await b.writeMany([
    item(1n, 'one'),
    item(2n, 'two'), // exists → 409
    item(2n, 'x', { digest: xDigest }), // identical → already present
    item(3n, 'three', { size: 9 }), // declared size differs → 400
    item(4n, 'four'),
    item(5n, 'five'),
    item(6n, 'six'),
  ]);
  assert.equal(results[0], 'written');
  assert.ok(results[1] instanceof FerryError && results[1].status === 409);
  assert.equal(results[2], 'already_present');
  assert.ok(results[3] instanceof FerryError && results[3].status === 400);
  assert.deepEqual(results.slice(4), ['written', 'written', 'written']);
  // ts 1 precedes the first block and starts its own (api.md §21.2): [1], [2, 4, 5], [6].
  assert.equal(b.entries()[0]!.block_count, 3n, 'block rules apply inside a batch');
  await s.close();
  s = await openStorage({ dataPath: dir });
  const got = (await collect(s.bucket('b'), 'e')).map((r) => [r.meta.ts, r.meta.labels.n]);
  assert.deepEqual(got, [
    [1n, '1'],
    [2n, undefined],
    [4n, '4'],
    [5n, '5'],
    [6n, '6'],
  ]);
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('crc32 matches the standard check value and a bitwise reference on every length', async () => {
  const { crc32 } = await import('../src/storage/crc32.js');
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  const ref = (b: Uint8Array): number => {
    let c = -1;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    return (c ^ -1) >>> 0;
  };
  const data = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 31 + 7) & 0xff));
  for (let start = 0; start < 9; start++) {
    for (let end = start; end <= data.length; end += 13)
      assert.equal(crc32(data, start, end), ref(data.subarray(start, end)));
  }
});

test('a clean close leaves nothing to replay: start-up reads block summaries only', async () => {
  const dir = tempDir();
  let s = await openStorage({ dataPath: dir });
  const b = await s.createBucket('b', { max_block_records: 100n });
  const items = Array.from({ length: 2000 }, (_, i) => ({
    entry: `e${i % 4}`,
    ts: BigInt(i + 1),
    opts: { size: 8 },
    payload: Buffer.alloc(8, i),
  }));
  await b.writeMany(items);
  await s.close();
  const walDir = join(dir, 'wal');
  const segments = readdirSync(walDir).filter((n) => n.endsWith('.wal'));
  const last = segments.sort().pop()!;
  assert.equal(statSync(join(walDir, last)).size, 0, 'the current WAL segment is empty after a clean close');
  s = await openStorage({ dataPath: dir });
  assert.equal(s.bucket('b').info().size, b.info().size);
  assert.equal((await collect(s.bucket('b'), 'e3')).length, 500);
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the change log keeps what a slot still needs and drops segments once deliveries are confirmed', async () => {
  const dir = tempDir();
  const walFiles = (): number => readdirSync(join(dir, 'wal')).filter((n) => n.endsWith('.wal')).length;
  const opts = { dataPath: dir, walSegmentBytes: 4096, checkpointIntervalMs: 3_600_000 };
  let s = await openStorage(opts);
  const checkpoint = (): Promise<void> => (s as unknown as { checkpoint(): Promise<void> }).checkpoint();
  const b = await s.createBucket('b');
  await s.changes.setSlot({ name: 'r', bucket: 'b', lsn: s.changes.lastLsn(), maxBytes: 1e9 });
  for (let i = 0; i < 300; i++)
    await b.write('e', BigInt(i + 1), { size: 4, labels: { i: String(i) } }, Buffer.from('data'));
  const all = await s.changes.read(s.changes.getSlot('r')!.lsn, 1000);
  assert.equal(all.length, 300);
  const before = walFiles();
  assert.ok(before > 5, `several segments written (${before})`);

  await checkpoint();
  assert.equal(walFiles(), before, 'nothing the slot still needs is deleted');

  s.changes.advanceSlot('r', all[199]!.lsn);
  await checkpoint();
  const middle = walFiles();
  assert.ok(middle < before, `delivered segments are deleted (${before} → ${middle})`);

  // After a restart the undelivered changes come from disk, in order, with their metadata.
  await s.close();
  s = await openStorage(opts);
  const rest = await s.changes.read(s.changes.getSlot('r')!.lsn, 1000);
  assert.deepEqual(
    rest.map((c) => [c.ts, c.labels.i]),
    all.slice(200).map((c) => [c.ts, c.labels.i]),
  );

  s.changes.advanceSlot('r', all[299]!.lsn);
  await checkpoint();
  assert.ok(walFiles() <= 2, `everything delivered: at most the current segments remain (${walFiles()})`);
  await s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('FIFO evicts delivered records before pending ones; pending ones give way to the quota when a slot allows it', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('f', { quota_type: 'FIFO', quota_size: 2_000n, max_block_records: 5n });
    await s.changes.setSlot({ name: 'r', bucket: 'f', lsn: s.changes.lastLsn(), maxBytes: 1_000_000 });
    const overflow: bigint[] = [];
    s.changes.onSlotOverflow((_name, upTo) => overflow.push(upTo));
    for (let i = 0; i < 5; i++) await b.write('e', BigInt(i + 1), { size: 100 }, Buffer.alloc(100));
    s.changes.releaseShipped('r', s.changes.lastLsn());
    for (let i = 5; i < 10; i++) await b.write('e', BigInt(i + 1), { size: 100 }, Buffer.alloc(100));
    // the delivered block goes first, and nobody is told: nothing pending was lost
    await b.write('e', 100n, { size: 900 }, Buffer.alloc(900));
    assert.equal(b.info().oldest_record, 6n);
    assert.deepEqual(overflow, []);
    // only pending records are left: the quota wins, the oldest go, and the slot is told
    await b.write('e', 200n, { size: 900 }, Buffer.alloc(900));
    assert.ok(b.info().oldest_record > 6n);
    assert.equal(overflow.length, 1);
  });
});

test('releaseShipped lets FIFO evict delivered records at once, while log retention waits for the persisted slot', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('f', { quota_type: 'FIFO', quota_size: 2_000n, max_block_records: 5n });
    const start = s.changes.lastLsn();
    await s.changes.setSlot({ name: 'r', bucket: 'f', lsn: start, maxBytes: 1_000_000, onOverflow: 'block' });
    for (let i = 0; i < 10; i++) await b.write('e', BigInt(i + 1), { size: 100 }, Buffer.alloc(100));
    await rejectsWith(
      b.write('e', 100n, { size: 900 }, Buffer.alloc(900)),
      429,
      /replication 'r' has not shipped/,
    );
    assert.ok(s.changes.slotPendingBytes('r') >= 1000);

    s.changes.releaseShipped('r', s.changes.lastLsn());
    assert.equal(s.changes.slotPendingBytes('r'), 0);
    await b.write('e', 100n, { size: 900 }, Buffer.alloc(900));
    assert.ok(b.info().oldest_record > 1n, 'delivered records were evicted');
    assert.equal(s.changes.getSlot('r')!.lsn, start, 'the persisted slot (log retention) did not move');
  });
});

test('an idempotent re-delivery leaves its block evictable (no write left in flight)', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('f', { quota_type: 'FIFO', quota_size: 600n, max_block_records: 1n });
    const payload = Buffer.alloc(100, 1);
    const digest = createHash('sha256').update(payload).digest();
    await b.write('e', 1n, { size: 100, digest }, payload);
    assert.equal(await b.write('e', 1n, { size: 100, digest }, payload), 'already_present');
    assert.deepEqual(await b.writeMany([{ entry: 'e', ts: 1n, opts: { size: 100, digest }, payload }]), [
      'already_present',
    ]);
    for (let ts = 2n; ts <= 8n; ts++) await b.write('e', ts, { size: 100 }, payload);
    await rejectsWith(b.read('e', 1n), 404);
  });
});

test('a re-delivery whose body fails while it is skipped releases its block exactly once', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('f2');
    const payload = Buffer.alloc(100, 1);
    const digest = createHash('sha256').update(payload).digest();
    await b.write('e', 1n, { size: 100, digest }, payload);
    // The client goes away in the middle of re-sending a record the store already holds.
    async function* broken(): AsyncGenerator<Buffer> {
      yield payload.subarray(0, 10);
      throw new Error('connection reset');
    }
    await assert.rejects(b.write('e', 1n, { size: 100, digest }, broken()));
    // A block's count of writes in flight decides whether its descriptors may be unloaded and
    // whether it may be dropped: it must be back to 0, not -1 (released twice) or 1.
    const blocks = (
      b as unknown as { data: { entries: Map<string, { blocks: Array<{ inflight: number }> }> } }
    ).data.entries.get('e')!.blocks;
    assert.deepEqual(
      blocks.map((x) => x.inflight),
      [0],
    );
  });
});

test('scanMeta: the records scan yields, in batches bounded by count and bytes, across blocks', () =>
  withStorage(async (s) => {
    const b = await s.createBucket('b', { max_block_records: 4n });
    // 14 records over four blocks, sizes 1..14; one removed, so a block has a hole
    for (let i = 1; i <= 14; i++) await b.write('e', BigInt(i * 10), { size: i }, Buffer.alloc(i, i));
    await b.removeRecord('e', 60n);
    const all = (await collect(b, 'e', 25n, 135n)).map((r) => r.meta.ts);
    const got: bigint[] = [];
    const batches: Array<[number, number]> = [];
    let from = 25n;
    for (;;) {
      const { records, done } = await b.scanMeta('e', from, 135n, 3, 20);
      got.push(...records.map((r) => r.ts));
      batches.push([records.length, records.reduce((n, r) => n + r.size, 0)]);
      if (done) break;
      from = records[records.length - 1]!.ts + 1n;
    }
    assert.deepEqual(got, all, 'the same records as scan, in order');
    for (const [n, bytes] of batches) assert.ok(n <= 3 && (bytes <= 20 || n === 1), `batch ${n}/${bytes}`);
    assert.deepEqual(batches.slice(0, 3), [
      [3, 3 + 4 + 5],
      [2, 7 + 8],
      [2, 9 + 10],
    ]);
    // a first record larger than maxBytes comes alone; accept filters; a missing entry is done
    assert.deepEqual(
      (await b.scanMeta('e', 130n, 200n, 10, 1)).records.map((r) => r.ts),
      [130n],
    );
    const odd = await b.scanMeta('e', 0n, 1000n, 100, Infinity, (m) => m.size % 2 === 1);
    assert.deepEqual(
      odd.records.map((r) => r.size),
      [1, 3, 5, 7, 9, 11, 13],
    );
    assert.equal(odd.done, true);
    assert.deepEqual(await b.scanMeta('none', 0n, 10n, 5, 5), { records: [], done: true });
  }));

test('countRange: the same records and bytes from .meta files (after a restart) as from loaded descriptors', async () => {
  const dir = tempDir();
  try {
    let s = await openStorage({ dataPath: dir });
    const b0 = await s.createBucket('b', { max_block_records: 4n });
    for (let i = 1; i <= 14; i++) await b0.write('e', BigInt(i * 10), { size: i }, Buffer.alloc(i, i));
    await b0.removeRecord('e', 60n);
    const lastLsn = s.changes.lastLsn();
    await s.close();
    s = await openStorage({ dataPath: dir });
    try {
      const b = s.bucket('b');
      const expect = async (start: bigint, stop: bigint, maxLsn?: bigint) => {
        let records = 0;
        let bytes = 0;
        for await (const r of b.scan('e', start, stop)) {
          if (maxLsn !== undefined && (r.meta as { lsn?: bigint }).lsn! > maxLsn) continue;
          records++;
          bytes += r.meta.size;
        }
        return { records, bytes };
      };
      // cold: every block's descriptors are on disk only
      const cold = await b.countRange('e', 25n, 135n);
      const cold2 = await b.countRange('e', 0n, 1000n, lastLsn - 10n);
      const warm = await expect(25n, 135n); // scan loads the descriptors
      assert.deepEqual(cold, warm);
      assert.deepEqual(cold, { records: 10, bytes: 3 + 4 + 5 + 7 + 8 + 9 + 10 + 11 + 12 + 13 });
      assert.deepEqual(cold2, await expect(0n, 1000n, lastLsn - 10n));
      assert.ok(cold2.records < 13, 'the LSN bound leaves later writes out');
      assert.deepEqual(await b.countRange('e', 25n, 135n), warm, 'loaded: the same');
      assert.deepEqual(await b.countRange('none', 0n, 10n), { records: 0, bytes: 0 });
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
