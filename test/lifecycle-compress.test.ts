/**
 * Lifecycle `compress` jobs through a real server: reduct-js creates, reads, switches and deletes
 * the policies; raw HTTP runs them. After compression every record reads back identical (payload,
 * labels, content type) through single reads, queries (batched reads), `/io` batch reads and Range
 * requests of a query link, also after a restart; sizes (entries, bucket, /info) do not move;
 * `processing_interval` windows, `dry_run`, the `$system` event of each run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Bucket } from 'reduct-js';
import type { RunningFerry } from '../src/server.js';
import { call, api } from './helpers/ferry-api.js';
import { startFerryIn } from './helpers/test-server.js';
import { seededRandom } from './helpers/seed.js';
import { assertSameSnapshots, snapshotBucket } from './helpers/records.js';
import { waitFor } from './helpers/wait.js';

const TOKEN = 'lifecycle-compress-token';
const ENTRIES = ['robot-a', 'robot-b', 'cam'];
const DAY_US = 86_400_000_000n;
const OLD = BigInt(Date.now()) * 1000n - 30n * DAY_US;
const STEP_US = 10_000_000n; // 10 s: 300 records span 50 minutes
const PER_ENTRY = 300;
const BIG_TS = OLD + 150n * STEP_US + 1n;
let dir: string;
let ferry: RunningFerry;
let client: Client;
const node = () => ({ url: ferry.url, token: TOKEN });

async function start(): Promise<void> {
  ferry = await startFerryIn(dir, TOKEN, { RS_SYSTEM_EVENTS_ENABLED: 'true', FERRY_DURABILITY: 'none' });
  client = new Client(ferry.url, { apiToken: TOKEN });
}

/** JSON telemetry of one robot reading (compressible like real telemetry). */
function telemetry(rnd: () => number, i: number): Buffer {
  const n = 2 + Math.floor(rnd() * 6);
  const rows = Array.from({ length: n }, (_, k) => ({
    ts: i * 10 + k,
    joint: `j${k}`,
    pos: (rnd() * 360).toFixed(2),
    torque: (rnd() * 12).toFixed(3),
    status: rnd() < 0.95 ? 'ok' : 'overload',
  }));
  return Buffer.from(JSON.stringify(rows));
}

/** A 3 MB text payload (several frames, streamed). */
function big(rnd: () => number): Buffer {
  const lines: string[] = [];
  for (let n = 0; n < 3_000_000; n += lines[lines.length - 1]!.length + 1)
    lines.push(`frame ${lines.length} exposure=${(rnd() * 10).toFixed(4)} gain=${Math.floor(rnd() * 16)}`);
  return Buffer.from(lines.join('\n'));
}

interface Rec {
  entry: string;
  ts: bigint;
  data: Buffer;
  labels: Record<string, unknown>;
  contentType: string;
}

async function queryAll(b: Bucket): Promise<Rec[]> {
  const out: Rec[] = [];
  for (const entry of ENTRIES) {
    for await (const r of b.query(entry)) {
      out.push({
        entry,
        ts: r.time,
        data: Buffer.from(await r.read()),
        labels: { ...r.labels },
        contentType: r.contentType ?? '',
      });
    }
  }
  return out;
}

/** Bucket and entry sizes, and /info usage without the `$system` bucket (runs write events to it). */
async function sizes(): Promise<unknown> {
  const b = (await api(node(), 'GET', '/b/tele')) as { info: unknown; entries: unknown };
  const usage = await waitFor(
    async () => {
      const list = (await api(node(), 'GET', '/list')) as {
        buckets: Array<{ name: string; size: bigint | number }>;
      };
      const info = (await api(node(), 'GET', '/info')) as { usage: bigint | number };
      const sys = BigInt(list.buckets.find((x) => x.name === '$system')?.size ?? 0);
      const again = (await api(node(), 'GET', '/list')) as {
        buckets: Array<{ name: string; size: bigint | number }>;
      };
      // no event written in between
      return sys === BigInt(again.buckets.find((x) => x.name === '$system')?.size ?? 0)
        ? BigInt(info.usage) - sys
        : false;
    },
    { timeoutMs: 10_000, intervalMs: 50, message: 'a quiet moment of the $system bucket' },
  );
  return { info: b.info, entries: b.entries, usage };
}

async function zstFiles(): Promise<number> {
  let n = 0;
  for (const e of ENTRIES)
    n += (await readdir(join(dir, 'buckets', 'tele', e))).filter((f) => f.endsWith('.blk.zst')).length;
  return n;
}

async function runPolicy(name: string): Promise<Record<string, unknown>> {
  const r = await call(node(), 'POST', `/lifecycles/${name}/run`);
  assert.equal(r.status, 200, r.error ?? '');
  return r.json as Record<string, unknown>;
}

let written: Rec[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-lc-compress-'));
  await start();
  const b = await client.createBucket('tele', { maxBlockRecords: 40n });
  const rnd = seededRandom('lifecycle-compress');
  for (const entry of ENTRIES) {
    for (let i = 0; i < PER_ENTRY; i++) {
      const ts = OLD + BigInt(i) * STEP_US;
      const data = telemetry(rnd, i);
      const labels = { robot: entry, seq: String(i), ...(i % 7 === 0 ? { alarm: 'true' } : {}) };
      const contentType = i % 5 === 0 ? 'text/plain' : 'application/json';
      const w = await b.beginWrite(entry, { ts, labels, contentType });
      await w.write(data);
      written.push({ entry, ts, data, labels, contentType });
    }
  }
  const data = big(rnd);
  const w = await b.beginWrite('cam', { ts: BIG_TS, labels: { kind: 'log' }, contentType: 'text/plain' });
  await w.write(data);
  written.push({ entry: 'cam', ts: BIG_TS, data, labels: { kind: 'log' }, contentType: 'text/plain' });
  written = written.sort(
    (x, y) => ENTRIES.indexOf(x.entry) - ENTRIES.indexOf(y.entry) || (x.ts < y.ts ? -1 : 1),
  );
});

after(async () => {
  await ferry?.close();
  await rm(dir, { recursive: true, force: true });
});

test('compress: dry_run, processing_interval windows, then every record reads back identical and sizes add up', async () => {
  const b = await client.getBucket('tele');
  assert.deepEqual(await queryAll(b), written);
  const sizesBefore = await sizes();
  const v2Before = await snapshotBucket(ferry.url, TOKEN, 'tele');
  assert.equal(v2Before.size, written.length);

  await client.createLifecycle('zip', {
    lifecycleType: 'compress',
    bucket: 'tele',
    entries: [],
    olderThan: '1d',
    interval: '1h',
    mode: 'dry_run',
  });
  const listed = await client.getLifecycle('zip');
  assert.equal(listed.info.type, 'compress');
  assert.equal(listed.info.isRunning, true);
  const dry = await runPolicy('zip');
  assert.equal(dry['status'], 'ok');
  assert.equal(dry['mode'], 'dry_run');
  const wouldBlocks = Number(dry['compressed_blocks']);
  // 300 records in blocks of 40: 8 blocks per entry, all sealed but the newest one.
  assert.equal(wouldBlocks, 3 * 7);
  assert.equal(dry['stored_bytes'], 0);
  assert.equal(await zstFiles(), 0, 'dry_run compresses nothing');

  // processing_interval (raw HTTP: reduct-js 1.20.0 does not send it): 20 minutes of data time per run.
  const put = await call(node(), 'PUT', '/lifecycles/zip', {
    type: 'compress',
    bucket: 'tele',
    older_than: '1d',
    interval: '1h',
    processing_interval: '20m',
    mode: 'enabled',
  });
  assert.equal(put.status, 200, put.error ?? '');
  let blocks = 0;
  let raw = 0;
  let stored = 0;
  const windows: unknown[] = [];
  for (let run = 0; run < 10; run++) {
    const r = await runPolicy('zip');
    assert.equal(r['status'], 'ok');
    blocks += Number(r['compressed_blocks']);
    raw += Number(r['raw_bytes']);
    stored += Number(r['stored_bytes']);
    windows.push([r['window_start'], r['window_stop']]);
    if (r['caught_up']) break;
  }
  // Three windows, then a run that finds nothing more before the cut-off and starts the pass over.
  assert.deepEqual(windows[3], [null, null]);
  assert.equal(
    windows.length,
    4,
    `50 minutes of data in windows of 20: ${JSON.stringify(windows, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`,
  );
  assert.equal(blocks, wouldBlocks);
  assert.equal(await zstFiles(), wouldBlocks);
  assert.ok(stored * 3 < raw, `JSON telemetry compresses at least 3×: ${raw} → ${stored} bytes`);
  const again = await runPolicy('zip');
  assert.equal(again['compressed_blocks'], 0, 'a compressed block is compressed once');

  // Queries (batched reads), sizes.
  assert.deepEqual(await queryAll(b), written);
  assert.deepEqual(await sizes(), sizesBefore, 'entry sizes, bucket size and usage do not change');

  // Single reads of every 13th record and the large one: raw HTTP, and reduct-js for the text/plain
  // ones (its beginRead parses an application/json answer instead of returning the bytes).
  for (const rec of written.filter((_, i) => i % 13 === 0 || _.ts === BIG_TS)) {
    const raw = await call(node(), 'GET', `/b/tele/${rec.entry}?ts=${rec.ts}`);
    assert.equal(raw.status, 200, raw.error ?? '');
    assert.deepEqual(raw.body, rec.data, `${rec.entry} ${rec.ts}`);
    if (rec.contentType !== 'text/plain') continue;
    const r = await b.beginRead(rec.entry, rec.ts);
    assert.deepEqual(Buffer.from(await r.read()), rec.data, `${rec.entry} ${rec.ts}`);
    assert.deepEqual({ ...r.labels }, rec.labels);
    assert.equal(r.contentType, rec.contentType);
  }

  // Batch protocol v2 reads over all entries (raw HTTP /io), every payload hashed.
  assertSameSnapshots(
    v2Before,
    await snapshotBucket(ferry.url, TOKEN, 'tele'),
    'v2 batch reads after compression',
  );

  // Range requests of a query link to the large record (its bytes span many frames).
  const link = await b.createQueryLink('cam', BIG_TS, BIG_TS + 1n, undefined, {
    entry: 'cam',
    timestamp: BIG_TS,
  });
  const bigRec = written.find((r) => r.ts === BIG_TS)!;
  for (const [from, to] of [
    [0, 99],
    [131_000, 400_000],
    [bigRec.data.length - 10, bigRec.data.length - 1],
  ] as const) {
    const res = await fetch(link, { headers: { range: `bytes=${from}-${to}` } });
    assert.equal(res.status, 206);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), bigRec.data.subarray(from, to + 1));
  }
  const whole = await fetch(link);
  assert.deepEqual(Buffer.from(await whole.arrayBuffer()), bigRec.data);

  // The $system event of each run.
  const events = await waitFor(
    async () => {
      const found: Array<Record<string, unknown>> = [];
      const sys = await client.getBucket('$system');
      for (const e of await sys.getEntryList()) {
        if (!e.name.startsWith('lifecycles/') || !e.name.endsWith('/zip')) continue;
        for await (const r of sys.query(e.name))
          found.push(JSON.parse(Buffer.from(await r.read()).toString()));
      }
      return found.length >= 5 ? found : false;
    },
    { timeoutMs: 20_000, intervalMs: 200, message: 'the $system events of the runs' },
  );
  assert.ok(events.some((e) => e['action_type'] === 'compress' && Number(e['compressed_blocks']) > 0));
  assert.ok(events.some((e) => e['mode'] === 'dry_run'));

  // After a restart: still compressed, still identical.
  await ferry.close();
  await start();
  const b2 = await client.getBucket('tele');
  assert.deepEqual(await queryAll(b2), written);
  assert.deepEqual(await sizes(), sizesBefore);
  assert.equal(await zstFiles(), wouldBlocks);

  // Modes and removal through reduct-js.
  await client.setLifecycleMode('zip', 'disabled');
  assert.equal((await client.getLifecycle('zip')).info.isRunning, false);
  await client.deleteLifecycle('zip');
  assert.deepEqual(await client.getLifecycleList(), []);
});
