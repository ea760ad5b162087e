/**
 * Storage benchmark (`npm run bench:store`): ingest and read rates of a real Ferry server for small
 * and large records, next to the disk's durable write bandwidth and PostgreSQL's insert rate.
 *
 * Sizes (env): BENCH_QUICK=1 for a run under a minute; BENCH_SINGLE_N, BENCH_BATCH_N, BENCH_BATCH_SIZE,
 * BENCH_64K_N, BENCH_1M_N, BENCH_DISK_MB, BENCH_PG_ROWS override single counts. MB = 10^6 bytes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'reduct-js';
import { Pool } from 'undici';
import { measureDiskBandwidth, type DiskBaseline } from './lib/disk-baseline.js';
import { spawnFerry, type FerryProcess } from './lib/ferry-process.js';
import { benchLabels, measurePgInsert, type PgInsertResult } from './lib/postgres-baseline.js';
import { readCpuSeconds } from './lib/proc-cpu.js';
import { RssSampler } from './lib/rss.js';
import { fmt, LatencyRecorder, runConcurrent, type LatencySummary } from './lib/stats.js';
import { printTable } from './lib/table.js';
import { benchNumber, QUICK } from './lib/env-size.js';

const num = benchNumber;
const cfg = {
  singleN: num('BENCH_SINGLE_N', 20_000, 2_000),
  batchN: num('BENCH_BATCH_N', 200_000, 20_000),
  batchSize: num('BENCH_BATCH_SIZE', 1000, 1000),
  n64k: num('BENCH_64K_N', 4_000, 300),
  n1m: num('BENCH_1M_N', 1024, 48),
  diskMiB: num('BENCH_DISK_MB', 1024, 128),
  pgRows: num('BENCH_PG_ROWS', 200_000, 20_000),
  singleConcurrency: 8,
  batchConcurrency: 4,
  readStreams: 4,
};

const BUCKET = 'bench';
const KIB = 1024;
const BASE_TS = 1_700_000_000_000_000n;
/** Random bytes that record payloads are sliced from (incompressible, not all identical). */
const POOL = randomBytes(4 * 1024 * 1024);
const payload = (i: number, size: number): Buffer => {
  const off = (i * 4099) % (POOL.length - size);
  return POOL.subarray(off, off + size);
};

/** What a phase's workload reports. */
interface PhaseOutput {
  records: number;
  bytes: number;
  seconds: number;
  /** One sample per request (empty when the workload cannot time single requests). */
  latency: LatencyRecorder;
}

interface PhaseResult {
  phase: string;
  records: number;
  bytes: number;
  seconds: number;
  latency: LatencySummary;
  rssPeak: number;
  /** CPU seconds used by the server process during the phase. */
  serverCpu: number;
  /** CPU seconds used by this (client) process during the phase. */
  clientCpu: number;
  error?: string;
}

const results: PhaseResult[] = [];

async function phase(
  name: string,
  ferry: FerryProcess,
  fn: () => Promise<PhaseOutput>,
): Promise<PhaseResult> {
  process.stderr.write(`[bench:store] ${name} ...\n`);
  const rss = new RssSampler(ferry.pid, 25).start();
  const cpu0 = readCpuSeconds(ferry.pid) ?? NaN;
  const self0 = readCpuSeconds() ?? NaN;
  const cpu = (): { serverCpu: number; clientCpu: number } => ({
    serverCpu: (readCpuSeconds(ferry.pid) ?? NaN) - cpu0,
    clientCpu: (readCpuSeconds() ?? NaN) - self0,
  });
  let r: PhaseResult;
  try {
    const { latency, ...out } = await fn();
    r = { phase: name, ...out, latency: latency.summary(), rssPeak: rss.stop(), ...cpu() };
  } catch (err) {
    r = {
      phase: name,
      records: 0,
      bytes: 0,
      seconds: NaN,
      latency: new LatencyRecorder().summary(),
      rssPeak: rss.stop(),
      ...cpu(),
      error: (err as Error).message,
    };
    process.stderr.write(`[bench:store] ${name} failed: ${r.error}\n`);
  }
  results.push(r);
  return r;
}

function checkStatus(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  what: string,
): void {
  if (status !== 200) throw new Error(`${what}: HTTP ${status} ${String(headers['x-reduct-error'] ?? '')}`);
  for (const key of Object.keys(headers)) {
    if (key.startsWith('x-reduct-error-'))
      throw new Error(`${what}: record error ${key}: ${String(headers[key])}`);
  }
}

/** Single-record writes through raw HTTP. */
async function writeSingles(
  pool: Pool,
  auth: string,
  entry: string,
  n: number,
  size: number,
  concurrency: number,
): Promise<PhaseOutput> {
  const latency = new LatencyRecorder();
  const seconds = await runConcurrent(n, concurrency, async (i) => {
    const labels = benchLabels(i);
    const res = await latency.time(async () => {
      const res = await pool.request({
        method: 'POST',
        path: `/api/v1/b/${BUCKET}/${entry}?ts=${BASE_TS + BigInt(i)}`,
        headers: {
          authorization: auth,
          'content-type': 'application/octet-stream',
          'x-reduct-label-kind': labels.kind!,
          'x-reduct-label-n': labels.n!,
        },
        body: payload(i, size),
      });
      await res.body.dump();
      return res;
    });
    checkStatus(res.statusCode, res.headers, `write ${entry}@${i}`);
  });
  return { records: n, bytes: n * size, seconds, latency };
}

/** Batch protocol v1 writes (`POST /b/{bucket}/{entry}/batch`) through raw HTTP. */
async function writeV1Batches(
  pool: Pool,
  auth: string,
  entry: string,
  n: number,
  size: number,
  perBatch: number,
  concurrency: number,
): Promise<PhaseOutput> {
  const batches = Math.ceil(n / perBatch);
  const latency = new LatencyRecorder();
  const seconds = await runConcurrent(batches, concurrency, async (b) => {
    const first = b * perBatch;
    const count = Math.min(perBatch, n - first);
    const headers: Record<string, string> = {
      authorization: auth,
      'content-type': 'application/octet-stream',
    };
    const parts: Buffer[] = [];
    for (let i = first; i < first + count; i++) {
      const labels = benchLabels(i);
      headers[`x-reduct-time-${BASE_TS + BigInt(i)}`] =
        `${size},application/octet-stream,kind=${labels.kind},n=${labels.n}`;
      parts.push(payload(i, size));
    }
    const res = await latency.time(async () => {
      const res = await pool.request({
        method: 'POST',
        path: `/api/v1/b/${BUCKET}/${entry}/batch`,
        headers,
        body: Buffer.concat(parts),
      });
      await res.body.dump();
      return res;
    });
    checkStatus(res.statusCode, res.headers, `batch v1 ${b}`);
  });
  return { records: n, bytes: n * size, seconds, latency };
}

/** Batch protocol v2 writes through reduct-js `beginWriteRecordBatch`. */
async function writeV2Batches(
  client: Client,
  entry: string,
  n: number,
  size: number,
  perBatch: number,
  concurrency: number,
): Promise<PhaseOutput> {
  const bucket = await client.getBucket(BUCKET);
  const batches = Math.ceil(n / perBatch);
  const latency = new LatencyRecorder();
  const seconds = await runConcurrent(batches, concurrency, async (b) => {
    const batch = bucket.beginWriteRecordBatch();
    const first = b * perBatch;
    for (let i = first; i < Math.min(n, first + perBatch); i++) {
      batch.add(entry, BASE_TS + BigInt(i), payload(i, size), 'application/octet-stream', benchLabels(i));
    }
    const errors = await latency.time(() => batch.send());
    if (errors.size > 0) throw new Error(`batch v2 ${b}: ${errors.size} entries with errors`);
  });
  return { records: n, bytes: n * size, seconds, latency };
}

/** Single-record reads by timestamp. */
async function readSingles(
  pool: Pool,
  auth: string,
  entry: string,
  n: number,
  size: number,
  concurrency: number,
): Promise<PhaseOutput> {
  const latency = new LatencyRecorder();
  let bytes = 0;
  const seconds = await runConcurrent(n, concurrency, async (i) => {
    const res = await latency.time(async () => {
      const res = await pool.request({
        method: 'GET',
        path: `/api/v1/b/${BUCKET}/${entry}?ts=${BASE_TS + BigInt(i)}`,
        headers: { authorization: auth },
      });
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
      return res;
    });
    checkStatus(res.statusCode, res.headers, `read ${entry}@${i}`);
  });
  if (bytes !== n * size) throw new Error(`read ${bytes} bytes, expected ${n * size}`);
  return { records: n, bytes, seconds, latency };
}

const RECORD_HEADER = /^x-reduct-\d+-\d+$/;

/** Queries `entry` through `/io` in `streams` parallel time ranges; every batch read is one latency sample. */
async function queryIo(
  pool: Pool,
  auth: string,
  entry: string,
  n: number,
  size: number,
  streams: number,
): Promise<PhaseOutput> {
  const latency = new LatencyRecorder();
  let records = 0;
  let bytes = 0;
  const per = Math.ceil(n / streams);
  const seconds = await runConcurrent(streams, streams, async (s) => {
    const start = BASE_TS + BigInt(s * per);
    const stop = BASE_TS + BigInt(Math.min(n, (s + 1) * per));
    const q = await pool.request({
      method: 'POST',
      path: `/api/v1/io/${BUCKET}/q`,
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: `{"query_type":"QUERY","entries":["${entry}"],"start":${start},"stop":${stop}}`,
    });
    const text = await q.body.text();
    checkStatus(q.statusCode, q.headers, `query ${entry}`);
    const id = /"id"\s*:\s*(\d+)/.exec(text)?.[1];
    if (id === undefined) throw new Error(`query ${entry}: unexpected answer ${text}`);
    for (;;) {
      const t0 = performance.now();
      const res = await pool.request({
        method: 'GET',
        path: `/api/v1/io/${BUCKET}/read`,
        headers: { authorization: auth, 'x-reduct-query-id': id },
      });
      if (res.statusCode === 204) {
        await res.body.dump();
        break;
      }
      let got = 0;
      for await (const chunk of res.body) got += (chunk as Buffer).length;
      // the final 204 (no batch) is not a sample
      latency.samples.push(performance.now() - t0);
      checkStatus(res.statusCode, res.headers, `read query ${id}`);
      records += Object.keys(res.headers).filter((h) => RECORD_HEADER.test(h)).length;
      bytes += got;
      if (res.headers['x-reduct-last'] === 'true') break;
    }
  });
  if (records !== n || bytes !== n * size)
    throw new Error(`query returned ${records} records / ${bytes} bytes, expected ${n} / ${n * size}`);
  return { records, bytes, seconds, latency };
}

/** Reads an entry with the SDK's query iterator (one stream). */
async function queryWithSdk(client: Client, entry: string, n: number, size: number): Promise<PhaseOutput> {
  const bucket = await client.getBucket(BUCKET);
  let records = 0;
  let bytes = 0;
  const t0 = performance.now();
  for await (const rec of bucket.query(entry)) {
    bytes += (await rec.read()).length;
    records++;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (records !== n || bytes !== n * size)
    throw new Error(`SDK query returned ${records} records / ${bytes} bytes, expected ${n} / ${n * size}`);
  return { records, bytes, seconds, latency: new LatencyRecorder() };
}

async function main(): Promise<void> {
  console.log(`Ferry storage benchmark${QUICK ? ' (quick)' : ''}: ${JSON.stringify(cfg)}`);
  const scratch = mkdtempSync(join(tmpdir(), 'ferry-bench-store-'));
  let disk: DiskBaseline | undefined;
  let pgInsert: PgInsertResult | undefined;
  let pgError: string | undefined;
  try {
    process.stderr.write(`[bench:store] disk baseline (${cfg.diskMiB} MiB) ...\n`);
    disk = await measureDiskBandwidth(scratch, { totalMiB: cfg.diskMiB });
    process.stderr.write(`[bench:store] PostgreSQL baseline (${cfg.pgRows} rows) ...\n`);
    try {
      pgInsert = await measurePgInsert({
        rows: cfg.pgRows,
        rowBytes: KIB,
        batchRows: cfg.batchSize,
        concurrency: cfg.batchConcurrency,
      });
    } catch (err) {
      pgError = (err as Error).message;
    }

    const ferry = await spawnFerry({ dataPath: join(scratch, 'data') });
    try {
      const auth = `Bearer ${ferry.token}`;
      const pool = new Pool(ferry.url, { connections: 8 });
      const client = new Client(ferry.url, { apiToken: ferry.token });
      await client.createBucket(BUCKET);
      try {
        await phase(`write 1 KiB single (c=${cfg.singleConcurrency})`, ferry, () =>
          writeSingles(pool, auth, 'single', cfg.singleN, KIB, cfg.singleConcurrency),
        );
        await phase(`write 1 KiB batch v1 (${cfg.batchSize}/req, c=${cfg.batchConcurrency})`, ferry, () =>
          writeV1Batches(pool, auth, 'v1', cfg.batchN, KIB, cfg.batchSize, cfg.batchConcurrency),
        );
        await phase(
          `write 1 KiB batch v2 reduct-js (${cfg.batchSize}/req, c=${cfg.batchConcurrency})`,
          ferry,
          () => writeV2Batches(client, 'v2', cfg.batchN, KIB, cfg.batchSize, cfg.batchConcurrency),
        );
        await phase(`write 64 KiB batch v1 (64/req, c=${cfg.batchConcurrency})`, ferry, () =>
          writeV1Batches(pool, auth, 'k64', cfg.n64k, 64 * KIB, 64, cfg.batchConcurrency),
        );
        await phase(`write 1 MiB single (c=${cfg.batchConcurrency})`, ferry, () =>
          writeSingles(pool, auth, 'm1', cfg.n1m, KIB * KIB, cfg.batchConcurrency),
        );
        await phase(`read 1 KiB single by ts (c=${cfg.singleConcurrency})`, ferry, () =>
          readSingles(pool, auth, 'single', cfg.singleN, KIB, cfg.singleConcurrency),
        );
        await phase(`query 1 KiB /io batches (${cfg.readStreams} streams)`, ferry, () =>
          queryIo(pool, auth, 'v1', cfg.batchN, KIB, cfg.readStreams),
        );
        await phase('query 1 KiB reduct-js iterator (1 stream)', ferry, () =>
          queryWithSdk(client, 'v2', cfg.batchN, KIB),
        );
        await phase(`query 64 KiB /io batches (${cfg.readStreams} streams)`, ferry, () =>
          queryIo(pool, auth, 'k64', cfg.n64k, 64 * KIB, cfg.readStreams),
        );
        await phase(`query 1 MiB /io batches (${cfg.readStreams} streams)`, ferry, () =>
          queryIo(pool, auth, 'm1', cfg.n1m, KIB * KIB, cfg.readStreams),
        );
      } finally {
        await pool.close();
        await client.close();
      }
    } finally {
      await ferry.stop();
    }
    report(disk, pgInsert, pgError);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const MB = 1e6;

function report(
  disk: DiskBaseline | undefined,
  pg: PgInsertResult | undefined,
  pgError: string | undefined,
): void {
  console.log(
    '\nFerry (one server process, fresh data dir; latency = one HTTP request, for queries one batch read;',
  );
  console.log(`${os.cpus().length} CPU cores shared by the server, this client and anything else running)`);
  printTable(
    [
      { header: 'phase', format: (r: PhaseResult) => r.phase },
      { header: 'records', format: (r) => fmt(r.records) },
      { header: 'MB', format: (r) => fmt(r.bytes / MB, 1) },
      { header: 'seconds', format: (r) => fmt(r.seconds, 2) },
      { header: 'rec/s', format: (r) => fmt(r.records / r.seconds) },
      { header: 'MB/s', format: (r) => fmt(r.bytes / MB / r.seconds, 1) },
      { header: 'p50 ms', format: (r) => fmt(r.latency.p50, 2) },
      { header: 'p99 ms', format: (r) => fmt(r.latency.p99, 2) },
      { header: 'peak RSS MB', format: (r) => fmt(r.rssPeak / MB, 0) },
      { header: 'server CPU s', format: (r) => fmt(r.serverCpu, 2) },
      { header: 'server CPU µs/rec', format: (r) => fmt((r.serverCpu / r.records) * 1e6, 1) },
      { header: 'client CPU s', format: (r) => fmt(r.clientCpu, 2) },
    ],
    results,
  );
  for (const r of results) if (r.error) console.log(`  ! ${r.phase}: ${r.error}`);

  console.log('\nBaselines');
  console.log(
    `  disk durable sequential write (1 MiB chunks, fdatasync): ${disk ? `${fmt(disk.mbPerSec, 1)} MB/s over ${fmt(disk.bytes / MB)} MB` : 'n/a'}`,
  );
  console.log(
    `  PostgreSQL insert, 1 KiB bytea + jsonb + bigint rows, ${cfg.batchSize} rows/INSERT, ${cfg.batchConcurrency} connections: ` +
      (pg
        ? `${fmt(pg.rowsPerSec)} rows/s (${fmt(pg.mbPerSec, 1)} MB/s, statement p50 ${fmt(pg.statement.p50, 1)} ms, p99 ${fmt(pg.statement.p99, 1)} ms; ${pg.serverVersion})`
        : `n/a${pgError ? ` (${pgError.split('\n')[0]})` : ''}`),
  );

  const find = (prefix: string): PhaseResult | undefined =>
    results.find((r) => r.phase.startsWith(prefix) && r.error === undefined);
  const rate = (r: PhaseResult | undefined): number | undefined => (r ? r.records / r.seconds : undefined);
  const v1 = rate(find('write 1 KiB batch v1'));
  const v2 = rate(find('write 1 KiB batch v2'));
  const batchIngest = v1 === undefined ? v2 : v2 === undefined ? v1 : Math.max(v1, v2);
  const mib = find('write 1 MiB');
  const mibRate = mib ? mib.bytes / MB / mib.seconds : undefined;
  const reads = rate(find('query 1 KiB /io'));
  const peak = results.length ? Math.max(...results.map((r) => r.rssPeak)) / MB : undefined;
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
  const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'yes' : 'NO');
  const pgRatio = ratio(batchIngest, pg?.rowsPerSec);
  const diskRatio = ratio(mibRate, disk?.mbPerSec);

  console.log('\nTargets');
  printTable(
    [
      { header: 'metric', format: (r: { m: string; v: string; t: string; ok: string }) => r.m },
      { header: 'measured', format: (r) => r.v },
      { header: 'target', format: (r) => r.t },
      { header: 'met', format: (r) => r.ok },
    ],
    [
      {
        m: '1 KiB batch ingest (best of v1/v2)',
        v: `${fmt(batchIngest)} rec/s`,
        t: '>= 100,000 rec/s',
        ok: verdict(batchIngest === undefined ? undefined : batchIngest >= 100_000),
      },
      {
        m: '1 KiB batch ingest / PostgreSQL',
        v: pgRatio === undefined ? 'n/a' : `${fmt(pgRatio, 2)}x`,
        t: '>= 2x',
        ok: verdict(pgRatio === undefined ? undefined : pgRatio >= 2),
      },
      {
        m: '1 MiB ingest / disk bandwidth',
        v: diskRatio === undefined ? 'n/a' : `${fmt(diskRatio * 100, 0)} %`,
        t: '>= 80 %',
        ok: verdict(diskRatio === undefined ? undefined : diskRatio >= 0.8),
      },
      {
        m: '1 KiB batched reads (/io)',
        v: `${fmt(reads)} rec/s`,
        t: '>= 100,000 rec/s',
        ok: verdict(reads === undefined ? undefined : reads >= 100_000),
      },
      {
        m: 'peak server RSS',
        v: `${fmt(peak, 0)} MB`,
        t: '< 200 MB',
        ok: verdict(peak === undefined ? undefined : peak < 200),
      },
    ],
  );
}

await main();
