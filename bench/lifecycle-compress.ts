/**
 * Compress benchmark (`npm run bench:compress`, also the second half of `npm run bench:lifecycle`):
 * a `compress` policy compresses 1 GB of sealed blocks of a real Ferry server (fsync durability)
 * while clients keep writing single 1 KiB records to another entry. Reports the job's MB/s and
 * compression ratio, the read speed of the same records from plain and from compressed blocks
 * (whole-entry batched queries and random single reads), and the writers' p99 with and without
 * the job. Target (issue 14): the writers' p99 grows by less than 2× while the job runs.
 *
 * Data: JSON telemetry of robots (one JSON object per line: timestamp, robot and joint ids,
 * positions, torques, temperatures, a status word), 2–16 KiB per record, from a seeded generator;
 * records are slices of a 32 MiB generated pool at varying offsets, so no two neighbouring records
 * are equal.
 *
 * Sizes (env): BENCH_QUICK=1 for 128 MB; BENCH_LCZ_MB (MB to compress), BENCH_LC_WRITERS,
 * BENCH_LC_BASELINE_S, BENCH_LCZ_READS (random single reads per phase) override them.
 */
import { Pool } from 'undici';
import { spawnFerry } from './lib/ferry-process.js';
import { apiCaller, printP99Verdict, singleWriter, type WriterResult } from './lib/single-writer.js';
import { mulberry32 } from './lib/prng.js';
import { fmt, runConcurrent } from './lib/stats.js';
import { printTable } from './lib/table.js';
import { benchNumber } from './lib/env-size.js';

const num = benchNumber;
const cfg = {
  mb: num('BENCH_LCZ_MB', 1000, 128),
  writers: num('BENCH_LC_WRITERS', 2, 2),
  baselineSeconds: num('BENCH_LC_BASELINE_S', 10, 5),
  reads: num('BENCH_LCZ_READS', 2000, 500),
  entries: 4,
};
const BUCKET = 'lcz';
const DAY_US = 86_400_000_000n;

/** Seeded, so that every run compresses the same bytes. */
const prng = mulberry32;

/** 32 MiB of JSON-lines robot telemetry. */
function telemetryPool(): Buffer {
  const rnd = prng(20261201);
  const lines: string[] = [];
  let bytes = 0;
  let ts = 1_767_225_600_000;
  while (bytes < 32 * 1024 * 1024) {
    ts += 1 + Math.floor(rnd() * 20);
    const line = JSON.stringify({
      ts,
      robot: `robot-${Math.floor(rnd() * 40)}`,
      joint: Math.floor(rnd() * 7),
      pos: +(rnd() * 360 - 180).toFixed(3),
      vel: +(rnd() * 4 - 2).toFixed(4),
      torque: +(rnd() * 80).toFixed(2),
      temp_c: +(30 + rnd() * 25).toFixed(1),
      status: rnd() < 0.97 ? 'OK' : rnd() < 0.5 ? 'WARN_TORQUE' : 'WARN_TEMP',
    });
    lines.push(line);
    bytes += line.length + 1;
  }
  return Buffer.from(lines.join('\n') + '\n');
}

interface Loaded {
  records: Array<{ entry: string; ts: bigint; size: number }>;
  bytes: number;
}

/** v1 batches of ~1 MB, four at once, timestamps 30 days ago. */
async function load(pool: Pool, auth: string, data: Buffer): Promise<Loaded> {
  const rnd = prng(7);
  const start = BigInt(Date.now()) * 1000n - 30n * DAY_US;
  const target = cfg.mb * 1_000_000;
  const batches: Array<{ entry: string; headers: Record<string, string>; body: Buffer[] }> = [];
  const records: Loaded['records'] = [];
  let bytes = 0;
  const next = cfg.entries === 0 ? [] : Array.from({ length: cfg.entries }, () => start);
  for (let b = 0; bytes < target; b++) {
    const e = b % cfg.entries;
    const entry = `robot-${e}`;
    const headers: Record<string, string> = { authorization: auth };
    const body: Buffer[] = [];
    let size = 0;
    while (size < 1_000_000 && bytes < target) {
      const len = 2048 + Math.floor(rnd() * 14 * 1024);
      const at = Math.floor(rnd() * (data.length - len));
      const ts = next[e]!;
      next[e] = ts + 1_000_000n;
      headers[`x-reduct-time-${ts}`] = `${len},application/x-ndjson`;
      body.push(data.subarray(at, at + len));
      records.push({ entry, ts, size: len });
      size += len;
      bytes += len;
    }
    batches.push({ entry, headers, body });
  }
  await runConcurrent(batches.length, 4, async (i) => {
    const b = batches[i]!;
    const res = await pool.request({
      method: 'POST',
      path: `/api/v1/b/${BUCKET}/${b.entry}/batch`,
      headers: b.headers,
      body: Buffer.concat(b.body),
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`load: HTTP ${res.statusCode}`);
  });
  return { records, bytes };
}

interface ReadSpeed {
  scanMBs: number;
  singleReadsPerS: number;
}

/** One entry read whole through a query (batched v1 reads), then random single reads. */
async function readSpeed(pool: Pool, auth: string, loaded: Loaded): Promise<ReadSpeed> {
  const entry = 'robot-1';
  const t0 = performance.now();
  const q = await pool.request({
    method: 'POST',
    path: `/api/v1/b/${BUCKET}/${entry}/q`,
    headers: { authorization: auth },
    body: JSON.stringify({ query_type: 'QUERY' }),
  });
  const { id } = JSON.parse(await q.body.text()) as { id: number };
  let bytes = 0;
  for (;;) {
    const res = await pool.request({
      method: 'GET',
      path: `/api/v1/b/${BUCKET}/${entry}/batch?q=${id}`,
      headers: { authorization: auth },
    });
    if (res.statusCode === 204) {
      await res.body.dump();
      break;
    }
    for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    if (res.headers['x-reduct-last'] === 'true') break;
  }
  const scanS = (performance.now() - t0) / 1000;
  const rnd = prng(11);
  const t1 = performance.now();
  await runConcurrent(cfg.reads, 4, async () => {
    const r = loaded.records[Math.floor(rnd() * loaded.records.length)]!;
    const res = await pool.request({
      method: 'GET',
      path: `/api/v1/b/${BUCKET}/${r.entry}?ts=${r.ts}`,
      headers: { authorization: auth },
    });
    let n = 0;
    for await (const chunk of res.body) n += (chunk as Buffer).length;
    if (res.statusCode !== 200 || n !== r.size) throw new Error(`read: HTTP ${res.statusCode}, ${n} bytes`);
  });
  return { scanMBs: bytes / 1e6 / scanS, singleReadsPerS: cfg.reads / ((performance.now() - t1) / 1000) };
}

async function main(): Promise<void> {
  const node = await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
  const auth = `Bearer ${node.token}`;
  const pool = new Pool(node.url, { connections: 8 });
  try {
    const call = apiCaller(pool, auth);
    await call('POST', `/b/${BUCKET}`, { max_block_size: 8_000_000 });
    const data = telemetryPool();
    console.log(`Loading ${fmt(cfg.mb)} MB of JSON telemetry into ${cfg.entries} entries…`);
    const t0 = performance.now();
    const loaded = await load(pool, auth, data);
    console.log(
      `loaded ${fmt(loaded.records.length)} records in ${fmt((performance.now() - t0) / 1000, 1)} s`,
    );
    const plain = await readSpeed(pool, auth, loaded);
    await call('POST', '/lifecycles/zip', {
      type: 'compress',
      bucket: BUCKET,
      older_than: '1d',
      interval: '24h',
    });

    const ts = { next: BigInt(Date.now()) * 1000n };
    const writer = (done: () => boolean): Promise<WriterResult> =>
      singleWriter(pool, auth, BUCKET, cfg.writers, ts, done);
    const baseEnd = performance.now() + cfg.baselineSeconds * 1000;
    const baseline = await writer(() => performance.now() >= baseEnd);

    let jobDone = false;
    const during = writer(() => jobDone);
    const j0 = performance.now();
    const result = (await call('POST', '/lifecycles/zip/run')) as {
      status: string;
      compressed_blocks: number;
      raw_bytes: number;
      stored_bytes: number;
    };
    const jobSeconds = (performance.now() - j0) / 1000;
    jobDone = true;
    const withJob = await during;
    if (result.status !== 'ok' || result.compressed_blocks === 0)
      throw new Error(`the job: ${JSON.stringify(result)}`);
    const compressed = await readSpeed(pool, auth, loaded);

    const mbs = result.raw_bytes / 1e6 / jobSeconds;
    const ratio = result.raw_bytes / result.stored_bytes;
    printTable(
      [
        { header: 'phase', key: 'phase' },
        { header: 'writes/s', format: (r) => fmt(r.w.writes / r.w.seconds) },
        { header: 'p50 ms', format: (r) => fmt(r.w.latency.p50, 2) },
        { header: 'p99 ms', format: (r) => fmt(r.w.latency.p99, 2) },
        { header: 'max ms', format: (r) => fmt(r.w.latency.max, 1) },
      ],
      [
        { phase: 'writers alone', w: baseline },
        { phase: 'writers + compress job', w: withJob },
      ],
    );
    console.log();
    printTable(
      [
        { header: 'blocks', key: 'blocks' },
        { header: 'MB', key: 'mb' },
        { header: 'compressed MB', key: 'stored' },
        { header: 'ratio', key: 'ratio' },
        { header: 'job MB/s', key: 'mbs' },
      ],
      [
        {
          blocks: fmt(result.compressed_blocks),
          mb: fmt(result.raw_bytes / 1e6, 1),
          stored: fmt(result.stored_bytes / 1e6, 1),
          ratio: `${fmt(ratio, 2)}×`,
          mbs: fmt(mbs, 1),
        },
      ],
    );
    console.log();
    printTable(
      [
        { header: 'reads', key: 'what' },
        { header: 'plain blocks', key: 'plain' },
        { header: 'compressed blocks', key: 'compressed' },
        { header: 'compressed / plain', key: 'rel' },
      ],
      [
        {
          what: 'query of one entry (batched), MB/s',
          plain: fmt(plain.scanMBs, 1),
          compressed: fmt(compressed.scanMBs, 1),
          rel: `${fmt(compressed.scanMBs / plain.scanMBs, 2)}×`,
        },
        {
          what: `random single reads (${fmt(cfg.reads)}, 4 at once), reads/s`,
          plain: fmt(plain.singleReadsPerS),
          compressed: fmt(compressed.singleReadsPerS),
          rel: `${fmt(compressed.singleReadsPerS / plain.singleReadsPerS, 2)}×`,
        },
      ],
    );
    console.log();
    printP99Verdict(baseline, withJob, "writers'");
    console.log(
      `\n${fmt(result.raw_bytes / 1e6)} MB of JSON-lines robot telemetry (2–16 KiB records, blocks of 8 MB) ` +
        `compressed in ${fmt(jobSeconds, 1)} s by one run (zstd level 3, 128 KiB frames, worker thread), ` +
        `${cfg.writers} concurrent single-record writers of 1 KiB, durable (fsync) storage.`,
    );
  } finally {
    await pool.close();
    await node.destroy();
  }
}

await main();
