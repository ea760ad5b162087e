/**
 * Consistency-group rows of `bench:replication` (issue 12): the same load over three member
 * buckets replicated once as a group (`src_group`, one ordered stream of atomic shipments) and as
 * three independent replications, between two Ferry processes on loopback.
 *
 * - drain: 100,000 × 1 KiB records (20,000 with BENCH_QUICK) written while the replications are
 *   paused, then enabled; time until the destination holds all of them;
 * - live lag at 10,000 records/s over the three members (client batches of 200 records per
 *   member, round robin): send time to the first time the destination shows the record.
 *
 * Targets: group drain throughput ≥ 0.8× the independent replications; group lag p99 ≤ 1.5×
 * theirs. Prints its own table and verdicts.
 */
import { Pool } from 'undici';
import { CpuMeter, startPair, writeRecords, type Node } from './ferry-bench-node.js';
import { fmt, summarize, type LatencySummary } from './stats.js';
import { printTable, printTargets } from './table.js';
import { waitUntil } from './wait.js';

const MEMBERS = ['cam', 'lidar', 'pose'];
const PREFIX = 'g-';
const LIVE_RATE = 10_000;
const CLIENT_BATCH = 200;

type Shape = 'group' | 'independent';

interface GroupRow {
  workload: string;
  shape: Shape;
  records: number;
  seconds?: number;
  recordsPerSec?: number;
  lagP50?: number;
  lagP99?: number;
  cpuSrc?: number;
  cpuDst?: number;
}

/** Creates the members (and the group) and the replication(s) of `shape`, in `mode`. */
async function setup(src: Node, dst: Node, shape: Shape, mode: 'enabled' | 'paused'): Promise<string[]> {
  for (const b of MEMBERS) await src.call('POST', `/b/${b}`, {});
  const to = { dst_host: dst.proc.url, dst_token: dst.proc.token, mode };
  if (shape === 'group') {
    await src.call('POST', '/groups/robot', { buckets: MEMBERS });
    await src.call('POST', '/replications/group', { src_group: 'robot', dst_prefix: PREFIX, ...to });
    return ['group'];
  }
  for (const b of MEMBERS)
    await src.call('POST', `/replications/${b}`, { src_bucket: b, dst_bucket: PREFIX + b, ...to });
  return [...MEMBERS];
}

async function delivered(dst: Node): Promise<number> {
  let n = 0;
  for (const b of MEMBERS) n += await dst.recordCount(PREFIX + b);
  return n;
}

async function drain(shape: Shape, records: number): Promise<GroupRow> {
  const { src, dst } = await startPair();
  try {
    const names = await setup(src, dst, shape, 'paused');
    const per = Math.ceil(records / MEMBERS.length);
    for (const b of MEMBERS) await writeRecords(src, b, per, 1024, 1_000_000);
    const total = per * MEMBERS.length;
    const cpu = new CpuMeter(src.proc.pid, dst.proc.pid);
    const t0 = performance.now();
    await Promise.all(names.map((n) => src.call('PATCH', `/replications/${n}/mode`, { mode: 'enabled' })));
    await waitUntil(
      `${shape} drain`,
      30 * 60_000,
      async () => {
        for (const n of names) {
          const st = await src.status(n);
          if (st.state === 'suspended') throw new Error(`${n} suspended: ${st.state_reason}`);
        }
        return (await delivered(dst)) >= total;
      },
      100,
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      workload: `drain ${fmt(total)} × 1 KiB, 3 members`,
      shape,
      records: total,
      seconds,
      recordsPerSec: total / seconds,
      ...cpu.stop(total),
    };
  } finally {
    await src.close();
    await dst.close();
  }
}

async function live(shape: Shape, seconds: number): Promise<GroupRow> {
  const { src, dst } = await startPair();
  try {
    await setup(src, dst, shape, 'enabled');
    const payload = Buffer.alloc(1024, 0x33);
    // warm-up: destination buckets are created by the first shipments
    for (const b of MEMBERS) await src.writeBatch(b, 'live', 1, 1, payload);
    await waitUntil('warm-up', 30_000, async () => (await delivered(dst)) >= MEMBERS.length);
    const cpu = new CpuMeter(src.proc.pid, dst.proc.pid);
    const sent = new Map<string, Array<{ lastTs: number; at: number; n: number }>>(
      MEMBERS.map((b) => [b, []]),
    );
    const arrivals: number[] = [];
    let stop = false;
    const poller = (async () => {
      const poll = new Pool(dst.proc.url, { connections: 1 });
      const seen = new Map(MEMBERS.map((b) => [b, 0]));
      try {
        const pendingAny = (): boolean => MEMBERS.some((b) => seen.get(b)! < sent.get(b)!.length);
        while (!stop || pendingAny()) {
          for (const b of MEMBERS) {
            const res = await poll.request({
              method: 'GET',
              path: `/api/v1/b/${PREFIX}${b}`,
              headers: { authorization: `Bearer ${dst.proc.token}` },
            });
            const text = await res.body.text();
            const now = performance.now();
            if (res.statusCode !== 200) continue;
            const info = JSON.parse(text) as { entries: Array<{ name: string; latest_record: number }> };
            const latest = Number(info.entries.find((e) => e.name === 'live')?.latest_record ?? 0);
            const list = sent.get(b)!;
            let i = seen.get(b)!;
            while (i < list.length && list[i]!.lastTs <= latest) {
              for (let k = 0; k < list[i]!.n; k++) arrivals.push(now - list[i]!.at);
              i++;
            }
            seen.set(b, i);
          }
          await new Promise((r) => setTimeout(r, 2));
        }
      } finally {
        await poll.close();
      }
    })();
    // paced writes, round robin over the members
    const start = performance.now();
    const ts = new Map(MEMBERS.map((b) => [b, 10]));
    const inflight = new Set<Promise<void>>();
    let written = 0;
    let turn = 0;
    while (performance.now() - start < seconds * 1000) {
      let due = Math.floor(((performance.now() - start) / 1000) * LIVE_RATE) - written;
      while (due > 0) {
        const b = MEMBERS[turn++ % MEMBERS.length]!;
        const n = Math.min(CLIENT_BATCH, due);
        const first = ts.get(b)!;
        ts.set(b, first + n);
        sent.get(b)!.push({ lastTs: first + n - 1, at: performance.now(), n });
        const p = src.writeBatch(b, 'live', first, n, payload).finally(() => inflight.delete(p));
        inflight.add(p);
        due -= n;
        written += n;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(inflight);
    stop = true;
    await poller;
    const s: LatencySummary = summarize(arrivals);
    return {
      workload: `live ${fmt(LIVE_RATE)}/s × ${seconds}s, 3 members`,
      shape,
      records: written,
      lagP50: s.p50,
      lagP99: s.p99,
      ...cpu.stop(written),
    };
  } finally {
    await src.close();
    await dst.close();
  }
}

/** Runs the group rows and prints their table and verdicts. */
export async function runGroupBench(quick: boolean): Promise<void> {
  const records = Number(process.env.BENCH_GROUP_RECORDS ?? (quick ? 20_000 : 100_000));
  const seconds = quick ? 4 : 10;
  const rows: GroupRow[] = [];
  for (const shape of ['independent', 'group'] as const) rows.push(await drain(shape, records));
  for (const shape of ['independent', 'group'] as const) rows.push(await live(shape, seconds));
  console.log('\nConsistency group vs three independent replications (issue 12)');
  printTable(
    [
      { header: 'workload', key: 'workload', align: 'left' },
      { header: 'replication', key: 'shape', align: 'left' },
      { header: 'records', format: (r) => fmt(r.records) },
      { header: 'seconds', format: (r) => (r.seconds === undefined ? '' : fmt(r.seconds, 2)) },
      { header: 'records/s', format: (r) => (r.recordsPerSec === undefined ? '' : fmt(r.recordsPerSec)) },
      { header: 'lag p50 ms', format: (r) => (r.lagP50 === undefined ? '' : fmt(r.lagP50, 1)) },
      { header: 'lag p99 ms', format: (r) => (r.lagP99 === undefined ? '' : fmt(r.lagP99, 1)) },
      { header: 'CPU µs/rec src', format: (r) => (r.cpuSrc === undefined ? '' : fmt(r.cpuSrc, 1)) },
      { header: 'CPU µs/rec dst', format: (r) => (r.cpuDst === undefined ? '' : fmt(r.cpuDst, 1)) },
    ],
    rows,
  );
  const find = (w: string, s: Shape): GroupRow =>
    rows.find((r) => r.workload.startsWith(w) && r.shape === s)!;
  const throughput = find('drain', 'group').recordsPerSec! / find('drain', 'independent').recordsPerSec!;
  const lag = find('live', 'group').lagP99! / find('live', 'independent').lagP99!;
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  printTargets([
    {
      target: 'group drain throughput ≥ 0.8× independent',
      measured: `${fmt(throughput, 2)}×`,
      ok: verdict(throughput >= 0.8),
    },
    { target: 'group lag p99 ≤ 1.5× independent', measured: `${fmt(lag, 2)}×`, ok: verdict(lag <= 1.5) },
  ]);
}
