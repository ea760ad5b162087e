// Compressed sealed blocks (lifecycle `compress`): reads stay byte for byte the same, sizes do not
// change, a write into a compressed block makes it plain first, and every state a crash can leave
// opens to whole data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStorage } from '../src/storage/engine.js';
import type { Bucket, Storage } from '../src/storage/types.js';
import { U64_MAX } from '../src/protocol/json.js';
import { tempDir, withStorage } from './helpers/temp-storage.js';
import { seededRandom } from './helpers/seed.js';

const ENTRY = 'telemetry';

/** JSON-like telemetry (compressible), with one multi-frame payload of 1.5 MB in the middle. */
function payload(i: number, rnd: () => number): Buffer {
  if (i === 40) {
    const parts: string[] = [];
    for (let n = 0; n < 1_500_000; n += parts[parts.length - 1]!.length + 1)
      parts.push(JSON.stringify({ i, seq: parts.length, v: rnd() }));
    return Buffer.from(parts.join('\n'));
  }
  const n = 1 + Math.floor(rnd() * 8);
  return Buffer.from(
    JSON.stringify(
      Array.from({ length: n }, (_, k) => ({
        ts: i * 10 + k,
        temp: (20 + rnd() * 5).toFixed(3),
        status: 'ok',
      })),
    ),
  );
}

async function load(b: Bucket, rnd: () => number, n = 100): Promise<void> {
  for (let i = 0; i < n; i++) {
    const p = payload(i, rnd);
    const opts = {
      size: p.length,
      contentType: i % 3 ? 'application/json' : 'text/plain',
      labels: { i: String(i) },
    };
    await b.write(ENTRY, BigInt(1_000_000 + i * 1000), opts, p);
  }
}

interface Snap {
  ts: bigint;
  data: Buffer;
  streamed: Buffer;
  ct: string;
  labels: Record<string, string>;
  size: number;
}

async function snapshot(b: Bucket): Promise<Snap[]> {
  const out: Snap[] = [];
  for await (const r of b.scan(ENTRY, 0n, U64_MAX)) {
    const chunks: Buffer[] = [];
    for await (const c of r.stream()) chunks.push(c as Buffer);
    out.push({
      ts: r.meta.ts,
      data: await r.buffer(),
      streamed: Buffer.concat(chunks),
      ct: r.meta.contentType,
      labels: { ...r.meta.labels },
      size: r.meta.size,
    });
  }
  return out;
}

async function compressAll(b: Bucket): Promise<number> {
  let n = 0;
  for (const blk of b.blocks(ENTRY, 0n, U64_MAX)) if (await b.compressBlock(ENTRY, blk.id, U64_MAX)) n++;
  return n;
}

const entryDir = (dir: string): string => join(dir, 'buckets', 'b', ENTRY);
const files = (dir: string, re: RegExp): string[] =>
  readdirSync(entryDir(dir))
    .filter((f) => re.test(f))
    .sort();

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await sleep(5);
  assert.ok(cond(), what);
}

test('compressed blocks read back identical (buffer, stream, scan), sizes unchanged, across a restart', async () => {
  const rnd = seededRandom('storage-compression');
  const dir = tempDir();
  let s: Storage = await openStorage({ dataPath: dir });
  try {
    const b = await s.createBucket('b', { max_block_records: 16n });
    await load(b, rnd);
    const before = await snapshot(b);
    const info = b.info();
    const entries = b.entries();
    const blocks = b.blocks(ENTRY, 0n, U64_MAX);
    assert.equal(blocks.length, 7);
    assert.equal(await compressAll(b), 6, 'every block but the newest is sealed');
    assert.equal(await b.compressBlock(ENTRY, blocks[0]!.id, U64_MAX), undefined, 'compressed once');
    assert.equal(
      await b.compressBlock(ENTRY, blocks[6]!.id, U64_MAX),
      undefined,
      'the newest block stays plain',
    );
    await waitFor(() => files(dir, /^\d+\.blk$/).length === 1, 'plain files of compressed blocks removed');
    assert.equal(files(dir, /\.blk\.zst$/).length, 6);
    const zstBytes = files(dir, /\.blk\.zst$/).reduce((n, f) => n + statSync(join(entryDir(dir), f)).size, 0);
    const rawBytes = blocks.slice(0, 6).reduce((n, x) => n + x.rawBytes, 0);
    assert.ok(zstBytes * 3 < rawBytes, `compressed ${zstBytes} of ${rawBytes} bytes`);

    assert.deepEqual(await snapshot(b), before);
    assert.deepEqual(b.info(), info, 'bucket size and counts unchanged');
    assert.deepEqual(b.entries(), entries, 'entry size, record and block counts unchanged');
    assert.ok(
      b
        .blocks(ENTRY, 0n, U64_MAX)
        .slice(0, 6)
        .every((x) => x.compressed),
    );

    await s.close();
    s = await openStorage({ dataPath: dir });
    const b2 = s.bucket('b');
    assert.ok(
      b2
        .blocks(ENTRY, 0n, U64_MAX)
        .slice(0, 6)
        .every((x) => x.compressed),
      'known after a restart',
    );
    assert.deepEqual(await snapshot(b2), before);
    assert.deepEqual(b2.info(), info);
  } finally {
    await s.close();
  }
});

test('a read of one small record decodes only the frames it lies in', async () => {
  await withStorage(async (s) => {
    const b = await s.createBucket('b', { max_block_records: 1500n });
    const rec = (i: number): Buffer => Buffer.from(JSON.stringify({ i, t: 'x'.repeat(900 + (i % 50)) }));
    for (let i = 0; i < 1500; i++)
      await b.write(ENTRY, BigInt(1_000_000 + i), { size: rec(i).length }, rec(i));
    await b.write(ENTRY, 10_000_000_000n, { size: 1 }, Buffer.from('x')); // a new block: the first one is sealed
    const [first] = b.blocks(ENTRY, 0n, U64_MAX);
    assert.ok(first!.rawBytes > 1_000_000);
    assert.ok(await b.compressBlock(ENTRY, first!.id, U64_MAX));
    const files = (s as unknown as { services: { files: { compressed: { decodedFrames: number } } } })
      .services.files.compressed;
    const before = files.decodedFrames;
    const r = await b.read(ENTRY, 1_000_000n + 1234n);
    assert.deepEqual(await r.buffer(), rec(1234));
    assert.ok(files.decodedFrames - before <= 2, `decoded ${files.decodedFrames - before} frames of ~9`);
  });
});

test('a belated write into a compressed block makes it plain, then compresses again', async () => {
  await withStorage(async (s, dir) => {
    const b = await s.createBucket('b', { max_block_records: 16n });
    const rnd = seededRandom('storage-compression-belated');
    await load(b, rnd, 40);
    await compressAll(b);
    const before = await snapshot(b);
    const blk = b.blocks(ENTRY, 0n, U64_MAX)[0]!;
    assert.ok(blk.compressed);
    const late = Buffer.from('{"belated": true}');
    await b.write(ENTRY, blk.id + 500n, { size: late.length, labels: { late: '1' } }, late);
    const after = b.blocks(ENTRY, 0n, U64_MAX)[0]!;
    assert.equal(after.compressed, false);
    assert.equal(after.records, blk.records + 1);
    assert.ok(!existsSync(join(entryDir(dir), `${blk.id}.blk.zst`)));
    assert.deepEqual(await (await b.read(ENTRY, blk.id + 500n)).buffer(), late);
    const snap = await snapshot(b);
    assert.deepEqual(
      snap.filter((x) => x.ts !== blk.id + 500n),
      before,
    );
    assert.ok(await b.compressBlock(ENTRY, blk.id, U64_MAX));
    assert.deepEqual(await snapshot(b), snap);
    // Removing a compressed block's records removes its files.
    for (const r of snap.filter((x) => x.ts < b.blocks(ENTRY, 0n, U64_MAX)[1]!.id))
      await b.removeRecord(ENTRY, r.ts);
    await waitFor(
      () => !existsSync(join(entryDir(dir), `${blk.id}.blk.zst`)),
      'compressed file removed with its block',
    );
    assert.ok(!existsSync(join(entryDir(dir), `${blk.id}.blk`)));
  });
});

test('every state a crash can leave opens to whole data', async () => {
  const rnd = seededRandom('storage-compression-crash');
  const dir = tempDir();
  let s: Storage = await openStorage({ dataPath: dir });
  const ed = entryDir(dir);
  try {
    const b = await s.createBucket('b', { max_block_records: 16n });
    await load(b, rnd, 70);
    const before = await snapshot(b);
    const ids = b.blocks(ENTRY, 0n, U64_MAX).map((x) => x.id);
    // Keep copies of the plain files of blocks 0..2, then compress them.
    for (const id of ids.slice(0, 3)) copyFileSync(join(ed, `${id}.blk`), join(ed, `${id}.blk.copy`));
    await compressAll(b);
    await (
      s as unknown as { services: { compression: { settle(): Promise<void> } } }
    ).services.compression.settle();
    await s.close();
    const [a, c, d] = ids;
    // a: crash after the rename, before the plain file was removed (both whole).
    copyFileSync(join(ed, `${a}.blk.copy`), join(ed, `${a}.blk`));
    // c: crash while a restore wrote its temp file; and a compression's temp file of the newest block.
    writeFileSync(join(ed, `${c}.blk.tmp`), 'partial');
    writeFileSync(join(ed, `${ids[ids.length - 1]}.blk.zst.tmp`), 'partial');
    // d: both files, the compressed one damaged (never fsynced whole): the plain one is kept.
    copyFileSync(join(ed, `${d}.blk.copy`), join(ed, `${d}.blk`));
    truncateSync(join(ed, `${d}.blk.zst`), statSync(join(ed, `${d}.blk.zst`)).size - 7);
    for (const id of ids.slice(0, 3)) writeFileSync(join(ed, `${id}.blk.copy`), '');
    s = await openStorage({ dataPath: dir });
    const b2 = s.bucket('b');
    assert.deepEqual(await snapshot(b2), before);
    assert.deepEqual(files(dir, /\.tmp$/), []);
    assert.ok(!existsSync(join(ed, `${a}.blk`)) && existsSync(join(ed, `${a}.blk.zst`)));
    assert.ok(existsSync(join(ed, `${d}.blk`)) && !existsSync(join(ed, `${d}.blk.zst`)));
    const summary = b2.blocks(ENTRY, 0n, U64_MAX);
    assert.deepEqual(
      summary.map((x) => x.compressed),
      [true, true, false, true, false],
    );
  } finally {
    await s.close();
  }
});
