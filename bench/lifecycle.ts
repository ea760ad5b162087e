/**
 * Lifecycle benchmark (`npm run bench:lifecycle`): a `delete` policy removes 1,000,000 old records
 * from four entries of a real Ferry server while a client keeps writing single records to another
 * entry; reports the removal rate and the writer's latency with and without the job running.
 * Target (issue 14): the writer's p99 grows by less than 2× while the job runs.
 *
 * Sizes (env): BENCH_QUICK=1 for 100,000 records; BENCH_LC_N (records to remove), BENCH_LC_SIZE
 * (payload bytes), BENCH_LC_WRITERS (concurrent writers), BENCH_LC_BASELINE_S (seconds of the
 * writer-only phase) override them.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { spawnFerry } from './lib/ferry-process.js';
import { apiCaller, printP99Verdict, singleWriter, type WriterResult } from './lib/single-writer.js';
import { fmt, runConcurrent } from './lib/stats.js';
import { printTable } from './lib/table.js';
import { benchNumber } from './lib/env-size.js';

const num = benchNumber;
const cfg = {
  records: num('BENCH_LC_N', 1_000_000, 100_000),
  size: num('BENCH_LC_SIZE', 128, 128),
  writers: num('BENCH_LC_WRITERS', 2, 2),
  baselineSeconds: num('BENCH_LC_BASELINE_S', 15, 5),
  entries: 4,
  perBatch: 1000,
};
const BUCKET = 'lc';
const DAY_US = 86_400_000_000n;
const POOL = randomBytes(1024 * 1024);

/** Loads the old records: v1 batches, four at once, timestamps 30 days ago and 1 ms apart. */
async function load(pool: Pool, auth: string): Promise<number> {
  const perEntry = Math.ceil(cfg.records / cfg.entries);
  const start = BigInt(Date.now()) * 1000n - 30n * DAY_US;
  const batches = Math.ceil(perEntry / cfg.perBatch) * cfg.entries;
  const perEntryBatches = batches / cfg.entries;
  return runConcurrent(batches, 4, async (b) => {
    const entry = `cam-${b % cfg.entries}`;
    const first = Math.floor(b / cfg.entries) * cfg.perBatch;
    const count = Math.min(cfg.perBatch, perEntry - first);
    if (count <= 0 || b >= perEntryBatches * cfg.entries) return;
    const headers: Record<string, string> = {
      authorization: auth,
      'content-type': 'application/octet-stream',
    };
    for (let i = first; i < first + count; i++) {
      headers[`x-reduct-time-${start + BigInt(i) * 1000n}`] = `${cfg.size},application/octet-stream`;
    }
    const res = await pool.request({
      method: 'POST',
      path: `/api/v1/b/${BUCKET}/${entry}/batch`,
      headers,
      body: POOL.subarray(0, cfg.size * count),
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`load: HTTP ${res.statusCode}`);
  });
}

const writer = (pool: Pool, auth: string, ts: { next: bigint }, done: () => boolean): Promise<WriterResult> =>
  singleWriter(pool, auth, BUCKET, cfg.writers, ts, done);

async function main(): Promise<void> {
  const node = await spawnFerry({ env: { RS_SYSTEM_EVENTS_ENABLED: 'false' } });
  const auth = `Bearer ${node.token}`;
  const pool = new Pool(node.url, { connections: 8 });
  try {
    const call = apiCaller(pool, auth);
    await call('POST', `/b/${BUCKET}`, {});
    console.log(`Loading ${fmt(cfg.records)} records of ${cfg.size} bytes into ${cfg.entries} entries…`);
    const loadSeconds = await load(pool, auth);
    console.log(`loaded in ${fmt(loadSeconds, 1)} s (${fmt(cfg.records / loadSeconds)} records/s)`);
    // a long interval: the job runs only when the benchmark asks for it
    await call('POST', '/lifecycles/bench', {
      type: 'delete',
      bucket: BUCKET,
      entries: ['cam-*'],
      older_than: '1d',
      interval: '24h',
    });

    const ts = { next: BigInt(Date.now()) * 1000n };
    const baseEnd = performance.now() + cfg.baselineSeconds * 1000;
    const baseline = await writer(pool, auth, ts, () => performance.now() >= baseEnd);

    let jobDone = false;
    const during = writer(pool, auth, ts, () => jobDone);
    const t0 = performance.now();
    const result = (await call('POST', '/lifecycles/bench/run')) as {
      processed_records: number;
      status: string;
    };
    const jobSeconds = (performance.now() - t0) / 1000;
    jobDone = true;
    const withJob = await during;
    if (result.status !== 'ok' || result.processed_records !== cfg.records) {
      throw new Error(
        `the job removed ${result.processed_records} of ${cfg.records} records (${result.status})`,
      );
    }

    printTable(
      [
        { header: 'phase', key: 'phase' },
        { header: 'removed', format: (r) => r.removed },
        { header: 'records/s', format: (r) => r.rate },
        { header: 'writer writes', format: (r) => fmt(r.w.writes) },
        { header: 'writes/s', format: (r) => fmt(r.w.writes / r.w.seconds) },
        { header: 'p50 ms', format: (r) => fmt(r.w.latency.p50, 2) },
        { header: 'p99 ms', format: (r) => fmt(r.w.latency.p99, 2) },
        { header: 'max ms', format: (r) => fmt(r.w.latency.max, 1) },
      ],
      [
        { phase: 'writer alone', removed: '–', rate: '–', w: baseline },
        {
          phase: 'writer + lifecycle delete',
          removed: fmt(result.processed_records),
          rate: fmt(result.processed_records / jobSeconds),
          w: withJob,
        },
      ],
    );
    console.log();
    printP99Verdict(baseline, withJob, "writer's");
    console.log(
      `\n${fmt(cfg.records)} records removed in ${fmt(jobSeconds, 1)} s by one run (no processing_interval), ` +
        `${cfg.writers} concurrent single-record writers of 1 KiB, durable (fsync) storage.`,
    );
  } finally {
    await pool.close();
    await node.destroy();
  }
}

await main();
