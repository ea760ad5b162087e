/**
 * Replication benchmark between two real Ferry processes on loopback (`npm run bench:replication`):
 *
 * - backlog drain: N records written to the source while the replication is paused, then enabled;
 *   time until the destination holds all of them (1 KiB and 1 MiB records);
 * - live lag: a steady write rate on the source, lag from the client's write to the record being
 *   visible on the destination (p50 / p99);
 * - source ingest rate without and with an active replication;
 * - peak RSS (VmHWM) of both instances per workload;
 * - the same drain and lag workloads through PostgreSQL logical replication (when installed), and
 *   the ratios against the targets.
 *
 * `BENCH_QUICK=1` shrinks every workload so that the whole run takes about a minute.
 * - initial copy of existing records (one-shot `since: 0`) next to PostgreSQL's `copy_data = true`
 *   table synchronisation, with RSS and events-subscriber figures (bench/lib/initial-copy-bench.ts).
 *
 * `BENCH_ONLY=drain,mib,live,ingest,pg,sync,copy,pgcopy,group` runs a subset (`sync`: the sync replication rows of
 * lib/sync-bench.ts; `group`: a consistency group vs three independent replications, lib/group-bench.ts);
 * `BENCH_RECORDS=n` sets the drain size.
 * `BENCH_CLI=wrapper.mjs` starts the servers through a wrapper script (e.g. one that starts a CPU
 * profile on SIGUSR2, which is sent right before the measured phase of drain and ingest).
 * Besides rates, every row shows the CPU µs per record spent by each instance (/proc), which stays
 * comparable when other processes load the machine.
 */
import { Pool } from 'undici';
import {
  CLIENT_BATCH,
  CpuMeter,
  MiB,
  startPair,
  writeRecords,
  type BenchRow,
  type Node,
} from './lib/ferry-bench-node.js';
import { measurePgReplication, startPgPair, findPostgresBin } from './lib/postgres-baseline.js';
import { measureRateLimit, type RateLimitMeasurement } from './replication-rate-limit.js';
import { readRss, RssSampler } from './lib/rss.js';
import { fmt, summarize, type LatencySummary } from './lib/stats.js';
import { printTable, printTargets, type Column } from './lib/table.js';
import { waitUntil } from './lib/wait.js';
import { runSyncBench } from './lib/sync-bench.js';
import { initialCopyBench } from './lib/initial-copy-bench.js';
import { runGroupBench } from './lib/group-bench.js';

const QUICK = process.env.BENCH_QUICK === '1';
const ONLY = new Set(
  (process.env.BENCH_ONLY ?? 'drain,mib,live,ingest,pg,rate,copy,pgcopy').split(',').map((s) => s.trim()),
);
const DRAIN_RECORDS = Number(process.env.BENCH_RECORDS ?? (QUICK ? 20_000 : 100_000));
const MIB_RECORDS = QUICK ? 200 : 2_000;
const LIVE_RATE = 10_000;
const LIVE_SECONDS = QUICK ? 4 : 10;
const INGEST_RECORDS = QUICK ? 20_000 : 60_000;

/** One row of the result table. */
type Row = BenchRow;

const rows: Row[] = [];

function replicationBody(dst: Node, mode: 'enabled' | 'paused'): Record<string, unknown> {
  return { src_bucket: 'src', dst_bucket: 'dst', dst_host: dst.proc.url, dst_token: dst.proc.token, mode };
}

/** Backlog drain of `records` × `size` bytes. */
async function drain(label: string, records: number, size: number): Promise<void> {
  const { src, dst } = await startPair();
  try {
    await src.call('POST', '/b/src', {});
    await src.call('POST', '/replications/bench', replicationBody(dst, 'paused'));
    await writeRecords(src, 'src', records, size, 1_000_000);
    const rssBefore = readRss(src.proc.pid)?.rss;
    const rs = new RssSampler(src.proc.pid).start();
    const rd = new RssSampler(dst.proc.pid).start();
    if (process.env.BENCH_CLI) for (const n of [src, dst]) process.kill(n.proc.pid, 'SIGUSR2');
    const cpu = new CpuMeter(src.proc.pid, dst.proc.pid);
    const t0 = performance.now();
    await src.call('PATCH', '/replications/bench/mode', { mode: 'enabled' });
    await waitUntil(
      'the backlog to drain',
      30 * 60_000,
      async () => {
        const st = await src.status('bench');
        if (st.state === 'suspended') throw new Error(`replication suspended: ${st.state_reason}`);
        return st.pending_records === 0 && (await dst.recordCount('dst')) >= records;
      },
      100,
    );
    const seconds = (performance.now() - t0) / 1000;
    const got = await dst.recordCount('dst');
    if (got !== records) throw new Error(`destination holds ${got} of ${records} records`);
    rows.push({
      workload: label,
      system: 'ferry',
      records,
      seconds,
      recordsPerSec: records / seconds,
      mbPerSec: (records * size) / 1e6 / seconds,
      rssSrc: rs.stop(),
      rssDst: rd.stop(),
      ...cpu.stop(records),
      note: `src RSS after writing the backlog ${rssBefore === undefined ? 'n/a' : `${mb(rssBefore)} MiB`}`,
    });
  } finally {
    await src.close();
    await dst.close();
  }
}

/**
 * Writes `rate` records/s of `payload` to `bucket` for `seconds` in batches of CLIENT_BATCH,
 * without waiting for answers before sending the next batch; reports each batch's latency.
 */
async function pacedWrites(
  src: Node,
  bucket: string,
  rate: number,
  seconds: number,
  payload: Buffer,
  onSent: (lastTs: number, at: number, n: number) => void,
): Promise<{ written: number; writes: LatencySummary }> {
  const start = performance.now();
  const latencies: number[] = [];
  let written = 0;
  let ts = 10;
  const inflight = new Set<Promise<void>>();
  while (performance.now() - start < seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate) - written;
    if (due > 0) {
      for (let off = 0; off < due; off += CLIENT_BATCH) {
        const n = Math.min(CLIENT_BATCH, due - off);
        const first = ts;
        ts += n;
        const at = performance.now();
        onSent(first + n - 1, at, n);
        const p = src
          .writeBatch(bucket, 'live', first, n, payload)
          .then(() => void latencies.push(performance.now() - at))
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      written += due;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all(inflight);
  return { written, writes: summarize(latencies) };
}

const fmtMs = (v: number): string => v.toFixed(1);

/** Lag at a steady write rate: send time vs. first time the destination shows the record. */
async function live(rate: number, seconds: number): Promise<LatencySummary> {
  const { src, dst } = await startPair();
  try {
    await src.call('POST', '/b/src', {});
    await src.call('POST', '/replications/bench', replicationBody(dst, 'enabled'));
    const payload = Buffer.alloc(1024, 0x33);
    // The same write load on a bucket nobody replicates: how much of the lag is the source's own
    // write latency (the two instances share this machine's cores and disk).
    await src.call('POST', '/b/solo', {});
    const solo = await pacedWrites(src, 'solo', rate, seconds, payload, () => undefined);
    // warm-up: the destination bucket gets created by the first shipment
    await src.writeBatch('src', 'live', 1, 1, payload);
    await waitUntil('warm-up', 30_000, async () => (await dst.recordCount('dst')) >= 1);
    const rs = new RssSampler(src.proc.pid).start();
    const rd = new RssSampler(dst.proc.pid).start();
    const cpu = new CpuMeter(src.proc.pid, dst.proc.pid);
    const sent: Array<{ lastTs: number; at: number; n: number }> = [];
    let written = 0;
    let stop = false;
    let stopAt = 0;
    const arrivals: number[] = [];
    let ai = 0;
    // poll the destination's latest record; records of one entry arrive in timestamp order
    const poller = (async () => {
      const poll = new Pool(dst.proc.url, { connections: 1 });
      try {
        while (!stop || ai < sent.length) {
          const res = await poll.request({
            method: 'GET',
            path: '/api/v1/b/dst',
            headers: { authorization: `Bearer ${dst.proc.token}` },
          });
          const text = await res.body.text();
          const now = performance.now();
          if (res.statusCode === 200) {
            const info = JSON.parse(text) as { entries: Array<{ name: string; latest_record: number }> };
            const latest = Number(info.entries.find((e) => e.name === 'live')?.latest_record ?? 0);
            while (ai < sent.length && sent[ai]!.lastTs <= latest) {
              for (let k = 0; k < sent[ai]!.n; k++) arrivals.push(now - sent[ai]!.at);
              ai++;
            }
          }
          if (stop && performance.now() - stopAt > 60_000) throw new Error('live records did not arrive');
          await new Promise((r) => setTimeout(r, 2));
        }
      } finally {
        await poll.close();
      }
    })();
    const paced = await pacedWrites(src, 'src', rate, seconds, payload, (lastTs, at, n) =>
      sent.push({ lastTs, at, n }),
    );
    written = paced.written;
    stop = true;
    stopAt = performance.now();
    await poller;
    const summary = summarize(arrivals);
    rows.push({
      workload: `live ${fmt(rate)}/s × ${seconds}s`,
      system: 'ferry',
      records: written,
      lagP50: summary.p50,
      lagP99: summary.p99,
      rssSrc: rs.stop(),
      rssDst: rd.stop(),
      ...cpu.stop(written),
      note:
        `src CPU includes ingest; source write latency p50 ${fmtMs(paced.writes.p50)}, ` +
        `p99 ${fmtMs(paced.writes.p99)} ms (same load, no replication: p50 ${fmtMs(solo.writes.p50)}, ` +
        `p99 ${fmtMs(solo.writes.p99)} ms)`,
    });
    return summary;
  } finally {
    await src.close();
    await dst.close();
  }
}

/** Source ingest without and with an active replication. */
async function ingest(records: number): Promise<{ without: number; withRepl: number }> {
  const { src, dst } = await startPair();
  try {
    await src.call('POST', '/b/plain', {});
    const cpu1 = new CpuMeter(src.proc.pid, dst.proc.pid);
    const t1 = await writeRecords(src, 'plain', records, 1024, 1_000_000);
    const ingestCpu = cpu1.stop(records);
    await src.call('POST', '/b/src', {});
    await src.call('POST', '/replications/bench', replicationBody(dst, 'enabled'));
    const rs = new RssSampler(src.proc.pid).start();
    const rd = new RssSampler(dst.proc.pid).start();
    if (process.env.BENCH_CLI) for (const n of [src, dst]) process.kill(n.proc.pid, 'SIGUSR2');
    const cpu2 = new CpuMeter(src.proc.pid, dst.proc.pid);
    const t2 = await writeRecords(src, 'src', records, 1024, 1_000_000);
    await waitUntil(
      'replication to catch up',
      10 * 60_000,
      async () => (await dst.recordCount('dst')) >= records,
      50,
    );
    const replCpu = cpu2.stop(records);
    const without = records / t1;
    const withRepl = records / t2;
    rows.push({
      workload: 'ingest, no replication',
      system: 'ferry',
      records,
      seconds: t1,
      recordsPerSec: without,
      mbPerSec: (records * 1024) / 1e6 / t1,
      cpuSrc: ingestCpu.cpuSrc,
    });
    rows.push({
      workload: 'ingest, replication on',
      system: 'ferry',
      records,
      seconds: t2,
      recordsPerSec: withRepl,
      mbPerSec: (records * 1024) / 1e6 / t2,
      rssSrc: rs.stop(),
      rssDst: rd.stop(),
      ...replCpu,
    });
    return { without, withRepl };
  } finally {
    await src.close();
    await dst.close();
  }
}

const mb = (n: number | undefined): string => (n === undefined ? '' : fmt(n / MiB, 0));

async function main(): Promise<void> {
  const t0 = performance.now();
  let drainRate: number | undefined;
  let lag: LatencySummary | undefined;
  let ing: { without: number; withRepl: number } | undefined;
  if (ONLY.has('drain')) {
    await drain(`drain ${fmt(DRAIN_RECORDS)} × 1 KiB`, DRAIN_RECORDS, 1024);
    drainRate = rows[rows.length - 1]!.recordsPerSec;
  }
  if (ONLY.has('mib')) await drain(`drain ${fmt(MIB_RECORDS)} × 1 MiB`, MIB_RECORDS, MiB);
  if (ONLY.has('live')) lag = await live(LIVE_RATE, LIVE_SECONDS);
  if (ONLY.has('ingest')) ing = await ingest(INGEST_RECORDS);
  let rate: RateLimitMeasurement | undefined;
  if (ONLY.has('rate')) {
    const { src, dst } = await startPair();
    try {
      rate = await measureRateLimit(
        src,
        dst,
        (n, b, total, size, ts) => writeRecords(n as Node, b, total, size, ts),
        MiB,
        10,
      );
      rows.push({
        workload: `rate limit ${fmt(rate.bytesPerSec / 1e6, 2)} MB/s × ${fmt(rate.seconds, 1)}s`,
        system: 'ferry',
        records: rate.records,
        seconds: rate.seconds,
        mbPerSec: rate.measuredBytesPerSec / 1e6,
        note: `delivered ${fmt(rate.ratio, 3)}× the limit (through a remote)`,
      });
    } finally {
      await src.close();
      await dst.close();
    }
  }

  let pgDrain: number | undefined;
  let pgLag: number | undefined;
  if (ONLY.has('pg')) {
    if (findPostgresBin() === undefined) {
      rows.push({ workload: 'postgres', system: 'postgres', records: 0, note: 'not installed' });
    } else {
      const pair = await startPgPair();
      if (pair) {
        try {
          const r = await measurePgReplication({
            pair,
            rows: DRAIN_RECORDS,
            rowBytes: 1024,
            liveRate: LIVE_RATE,
            liveSeconds: LIVE_SECONDS,
          });
          if (r) {
            pgDrain = r.backlog.rowsPerSec;
            rows.push({
              workload: `drain ${fmt(DRAIN_RECORDS)} × 1 KiB`,
              system: 'postgres',
              records: r.backlog.rows,
              seconds: r.backlog.seconds,
              recordsPerSec: r.backlog.rowsPerSec,
              mbPerSec: r.backlog.mbPerSec,
            });
            if (r.live) {
              pgLag = r.live.p99;
              rows.push({
                workload: `live ${fmt(LIVE_RATE)}/s × ${LIVE_SECONDS}s`,
                system: 'postgres',
                records: r.live.rows,
                lagP50: r.live.p50,
                lagP99: r.live.p99,
              });
            }
          }
        } finally {
          await pair.stop();
        }
      }
    }
  }

  const copy =
    ONLY.has('copy') || ONLY.has('pgcopy')
      ? await initialCopyBench({
          smallRecords: DRAIN_RECORDS,
          mibRecords: MIB_RECORDS,
          smallStoreMib: QUICK ? 20 : 100,
          // three of each: single copies of 100,000 records vary by ±6 % here, more than the 2 % target
          subscriberRuns: QUICK ? 1 : 3,
          ferry: ONLY.has('copy'),
          postgres: ONLY.has('pgcopy'),
        })
      : undefined;
  if (copy) rows.push(...copy.rows);

  const columns: Array<Column<Row>> = [
    { header: 'workload', key: 'workload', align: 'left' },
    { header: 'system', key: 'system', align: 'left' },
    { header: 'records', format: (r) => fmt(r.records) },
    { header: 'seconds', format: (r) => (r.seconds === undefined ? '' : fmt(r.seconds, 2)) },
    { header: 'records/s', format: (r) => (r.recordsPerSec === undefined ? '' : fmt(r.recordsPerSec)) },
    { header: 'MB/s', format: (r) => (r.mbPerSec === undefined ? '' : fmt(r.mbPerSec, 1)) },
    { header: 'lag p50 ms', format: (r) => (r.lagP50 === undefined ? '' : fmt(r.lagP50, 1)) },
    { header: 'lag p99 ms', format: (r) => (r.lagP99 === undefined ? '' : fmt(r.lagP99, 1)) },
    { header: 'peak RSS src MiB', format: (r) => mb(r.rssSrc) },
    { header: 'peak RSS dst MiB', format: (r) => mb(r.rssDst) },
    { header: 'CPU µs/rec src', format: (r) => (r.cpuSrc === undefined ? '' : fmt(r.cpuSrc, 1)) },
    { header: 'CPU µs/rec dst', format: (r) => (r.cpuDst === undefined ? '' : fmt(r.cpuDst, 1)) },
    { header: 'note', key: 'note', align: 'left' },
  ];
  console.log();
  printTable(columns, rows);

  const targets: Array<{ target: string; measured: string; ok: string }> = [];
  const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'met' : 'MISSED');
  if (drainRate !== undefined) {
    const ratio = pgDrain ? drainRate / pgDrain : undefined;
    targets.push({
      target: 'drain 1 KiB ≥ 1.5× PostgreSQL',
      measured: ratio === undefined ? 'n/a' : `${fmt(ratio, 2)}×`,
      ok: verdict(ratio === undefined ? undefined : ratio >= 1.5),
    });
  }
  if (lag !== undefined) {
    targets.push({
      target: 'live lag p99 ≤ PostgreSQL',
      measured: `${fmt(lag.p99, 1)} ms vs ${pgLag === undefined ? 'n/a' : `${fmt(pgLag, 1)} ms`}`,
      ok: verdict(pgLag === undefined ? undefined : lag.p99 <= pgLag),
    });
  }
  if (ing !== undefined) {
    const ratio = ing.withRepl / ing.without;
    targets.push({
      target: 'ingest with replication ≥ 0.8× without',
      measured: `${fmt(ratio, 2)}×`,
      ok: verdict(ratio >= 0.8),
    });
  }
  if (rate !== undefined)
    targets.push({
      target: 'rate limit within 10% over 10 s',
      measured: `${fmt(rate.ratio, 3)}× the limit`,
      ok: verdict(Math.abs(rate.ratio - 1) <= 0.1),
    });
  if (copy) targets.push(...copy.targets);
  const peak = Math.max(0, ...rows.map((r) => Math.max(r.rssSrc ?? 0, r.rssDst ?? 0)));
  if (peak > 0)
    targets.push({
      target: 'peak RSS < 256 MiB per instance',
      measured: `${mb(peak)} MiB`,
      ok: verdict(peak < 256 * MiB),
    });
  printTargets(targets);
  console.log(`\n(${fmt((performance.now() - t0) / 1000, 0)} s${QUICK ? ', BENCH_QUICK' : ''})`);
}

await main();
// sync replication rows (bench/lib/sync-bench.ts): with the default set, or BENCH_ONLY=sync
if (process.env.BENCH_ONLY === undefined || ONLY.has('sync')) await runSyncBench(QUICK);
// consistency-group rows (bench/lib/group-bench.ts): with the default set, or BENCH_ONLY=group
if (process.env.BENCH_ONLY === undefined || ONLY.has('group')) await runGroupBench(QUICK);
