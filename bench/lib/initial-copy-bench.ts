/**
 * The initial-copy part of `npm run bench:replication` (issue 9 "Benchmark"): Ferry copies records
 * that already exist on the source to a new destination with a one-shot replication (`since: 0`,
 * `continuous: false`, timed until `completed`), next to PostgreSQL's initial table synchronisation
 * of a new subscription (`copy_data = true`) of the same rows, in the same run. Rows: 100,000 × 1 KiB
 * and 2,000 × 1 MiB; peak RSS of both Ferry instances with 100 MB and with 2 GB already stored (same
 * record size, so only the amount differs); and the cost of ten events subscribers on the rate.
 */
import { EventSource } from 'eventsource';
import { CpuMeter, MiB, startPair, writeRecords, type BenchRow, type Node } from './ferry-bench-node.js';
import { findPostgresBin } from './postgres-cluster.js';
import { measurePgInitialCopy } from './postgres-initial-copy.js';
import { RssSampler } from './rss.js';
import { fmt } from './stats.js';
import { waitUntil } from './wait.js';

/** One verdict of the targets table. */
export interface Target {
  target: string;
  measured: string;
  ok: string;
}

/** Sizes of the initial-copy workloads. */
export interface CopyBenchOptions {
  smallRecords: number;
  mibRecords: number;
  /** 1 MiB records of the "100 MB exist" RSS row. */
  smallStoreMib: number;
  /** Copies per variant of the subscribers comparison (the best of each is compared). */
  subscriberRuns: number;
  /** Run the Ferry side, the PostgreSQL side, or both. */
  ferry: boolean;
  postgres: boolean;
}

interface CopyResult {
  seconds: number;
  recordsPerSec: number;
  mbPerSec: number;
  rssSrc: number;
  rssDst: number;
  cpuSrc: number;
  cpuDst: number;
}

const SUBSCRIBERS = 10;

function openSubscribers(node: Node, name: string, n: number): { close(): void; events(): number } {
  let events = 0;
  const list = Array.from({ length: n }, () => {
    const es = new EventSource(`${node.proc.url}/api/v1/replications/${name}/events`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${node.proc.token}` } }),
    });
    for (const e of ['status', 'state']) es.addEventListener(e, () => void events++);
    return es;
  });
  return { close: () => list.forEach((es) => es.close()), events: () => events };
}

/**
 * One one-shot copy of bucket `src` (holding `records` × `size`) into `dstBucket`: created paused
 * (so that subscribers are connected first), then enabled and timed until `completed`.
 */
async function copyOnce(
  src: Node,
  dst: Node,
  name: string,
  dstBucket: string,
  records: number,
  size: number,
  subscribers = 0,
): Promise<CopyResult & { events: number }> {
  await src.call('POST', `/replications/${name}`, {
    src_bucket: 'src',
    dst_bucket: dstBucket,
    dst_host: dst.proc.url,
    dst_token: dst.proc.token,
    mode: 'paused',
    since: 0,
    continuous: false,
  });
  const subs = openSubscribers(src, name, subscribers);
  try {
    if (subscribers > 0)
      await waitUntil('the subscribers to connect', 30_000, async () => subs.events() >= subscribers);
    const rs = new RssSampler(src.proc.pid).start();
    const rd = new RssSampler(dst.proc.pid).start();
    const cpu = new CpuMeter(src.proc.pid, dst.proc.pid);
    const t0 = performance.now();
    const t0Wall = Date.now();
    await src.call('PATCH', `/replications/${name}/mode`, { mode: 'enabled' });
    let completedAt: string | null = null;
    await waitUntil(
      `copy '${name}' to complete`,
      30 * 60_000,
      async () => {
        const st = (await src.call('GET', `/replications/${name}/status`)) as {
          state: string;
          state_reason: string | null;
          copy?: { completed_at: string | null };
        };
        if (st.state === 'suspended') throw new Error(`copy suspended: ${st.state_reason}`);
        completedAt = st.copy?.completed_at ?? null;
        return st.state === 'completed';
      },
      // the source is CPU-bound: polling it every 20 ms cost ~5 % of its CPU; the end is the
      // server's own completion time (same clock), so a slower poll does not lengthen the copy
      100,
    );
    const polled = (performance.now() - t0) / 1000;
    const seconds = completedAt !== null ? (Date.parse(completedAt) - t0Wall) / 1000 : polled;
    const result = { seconds, rssSrc: rs.stop(), rssDst: rd.stop(), ...cpu.stop(records) };
    const got = await dst.recordCount(dstBucket);
    if (got !== records) throw new Error(`destination '${dstBucket}' holds ${got} of ${records} records`);
    return {
      ...result,
      recordsPerSec: records / seconds,
      mbPerSec: (records * size) / 1e6 / seconds,
      events: subs.events(),
    };
  } finally {
    subs.close();
  }
}

/** A pair whose source holds `records` × `size` in bucket `src`, restarted after writing (its RSS then reflects the copy only). */
async function loadedPair(records: number, size: number): Promise<{ src: Node; dst: Node }> {
  const pair = await startPair();
  await pair.src.call('POST', '/b/src', {});
  await writeRecords(pair.src, 'src', records, size, 1_000_000);
  await pair.src.proc.restart();
  return pair;
}

const mib = (n: number): string => fmt(n / MiB, 0);
const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'met' : 'MISSED');

function ferryRow(workload: string, records: number, r: CopyResult, note?: string): BenchRow {
  return { workload, system: 'ferry', records, ...r, ...(note ? { note } : {}) };
}

interface FerryCopies {
  small?: CopyResult;
  littleStore?: CopyResult;
  large?: CopyResult;
}

interface SubscriberRates {
  without: number[];
  with: number[];
}

/** The Ferry workloads; rows are added as they finish. */
async function ferryCopies(
  o: CopyBenchOptions,
  rows: BenchRow[],
  subsRates: SubscriberRates,
): Promise<FerryCopies> {
  const out: FerryCopies = {};
  const small = `initial copy ${fmt(o.smallRecords)} × 1 KiB`;
  const large = `initial copy ${fmt(o.mibRecords)} × 1 MiB`;
  let pair = await loadedPair(o.smallRecords, 1024);
  try {
    // alternate without / with subscribers, each into a bucket of its own
    for (let run = 0; run < o.subscriberRuns; run++) {
      for (const subscribers of [0, SUBSCRIBERS]) {
        const r = await copyOnce(
          pair.src,
          pair.dst,
          `c${run}s${subscribers}`,
          `d${run}s${subscribers}`,
          o.smallRecords,
          1024,
          subscribers,
        );
        (subscribers === 0 ? subsRates.without : subsRates.with).push(r.recordsPerSec);
        if (subscribers === 0 && (out.small === undefined || r.recordsPerSec > out.small.recordsPerSec))
          out.small = r;
        if (subscribers > 0)
          rows.push(
            ferryRow(
              `${small}, ${SUBSCRIBERS} events subscribers`,
              o.smallRecords,
              r,
              `run ${run + 1}, ${r.events} events received`,
            ),
          );
        else rows.push(ferryRow(small, o.smallRecords, r, `run ${run + 1}`));
      }
    }
  } finally {
    await Promise.all([pair.src.close(), pair.dst.close()]);
  }
  pair = await loadedPair(o.smallStoreMib, MiB);
  try {
    out.littleStore = await copyOnce(pair.src, pair.dst, 'c', 'd', o.smallStoreMib, MiB);
    rows.push(
      ferryRow(
        `initial copy ${fmt(o.smallStoreMib)} × 1 MiB`,
        o.smallStoreMib,
        out.littleStore,
        `${fmt((o.smallStoreMib * MiB) / 1e6, 0)} MB exist`,
      ),
    );
  } finally {
    await Promise.all([pair.src.close(), pair.dst.close()]);
  }
  pair = await loadedPair(o.mibRecords, MiB);
  try {
    out.large = await copyOnce(pair.src, pair.dst, 'c', 'd', o.mibRecords, MiB);
    rows.push(ferryRow(large, o.mibRecords, out.large, `${fmt((o.mibRecords * MiB) / 1e6, 0)} MB exist`));
  } finally {
    await Promise.all([pair.src.close(), pair.dst.close()]);
  }
  return out;
}

/** Runs the initial-copy workloads; returns their table rows and target verdicts. */
export async function initialCopyBench(
  o: CopyBenchOptions,
): Promise<{ rows: BenchRow[]; targets: Target[] }> {
  const rows: BenchRow[] = [];
  const targets: Target[] = [];
  const small = `initial copy ${fmt(o.smallRecords)} × 1 KiB`;
  const large = `initial copy ${fmt(o.mibRecords)} × 1 MiB`;
  const ferry: FerryCopies = {};
  const subsRates: SubscriberRates = { without: [], with: [] };

  if (o.ferry) {
    try {
      Object.assign(ferry, await ferryCopies(o, rows, subsRates));
    } catch (err) {
      // e.g. a server without `since`: the PostgreSQL side is still measured and printed
      rows.push({
        workload: 'initial copy',
        system: 'ferry',
        records: 0,
        note: `failed: ${(err as Error).message}`,
      });
    }
  }

  let pgSmall: number | undefined;
  let pgLarge: number | undefined;
  if (o.postgres) {
    if (findPostgresBin() === undefined) {
      rows.push({ workload: 'initial copy', system: 'postgres', records: 0, note: 'not installed' });
    } else {
      for (const [label, n, size] of [
        [small, o.smallRecords, 1024],
        [large, o.mibRecords, MiB],
      ] as const) {
        const r = await measurePgInitialCopy({ rows: n, rowBytes: size });
        if (r === undefined) continue;
        if (size === 1024) pgSmall = r.rowsPerSec;
        else pgLarge = r.rowsPerSec;
        rows.push({
          workload: label,
          system: 'postgres',
          records: r.rows,
          seconds: r.seconds,
          recordsPerSec: r.rowsPerSec,
          mbPerSec: r.mbPerSec,
          note: 'CREATE SUBSCRIPTION … copy_data = true until the table is ready',
        });
      }
    }
  }

  for (const [label, copied, pg] of [
    ['1 KiB', ferry.small, pgSmall],
    ['1 MiB', ferry.large, pgLarge],
  ] as const) {
    if (copied === undefined) continue;
    const ratio = pg === undefined ? undefined : copied.recordsPerSec / pg;
    targets.push({
      target: `initial copy ${label} ≥ 1.5× PostgreSQL copy_data rows/s`,
      measured:
        ratio === undefined
          ? 'n/a'
          : `${fmt(ratio, 2)}× (${fmt(copied.recordsPerSec)} vs ${fmt(pg!)} rows/s)`,
      ok: verdict(ratio === undefined ? undefined : ratio >= 1.5),
    });
  }
  const copies = [ferry.small, ferry.littleStore, ferry.large].filter((r) => r !== undefined);
  if (copies.length > 0) {
    const peak = Math.max(...copies.map((r) => Math.max(r.rssSrc, r.rssDst)));
    targets.push({
      target: 'initial copy peak RSS < 256 MiB per instance',
      measured: `${mib(peak)} MiB`,
      ok: verdict(peak < 256 * MiB),
    });
  }
  const { littleStore, large: big } = ferry;
  if (littleStore && big) {
    // flat: the peak with 2 GB stored is within 25 % (or 16 MiB) of the peak with 100 MB stored
    const a = Math.max(littleStore.rssSrc, littleStore.rssDst);
    const b = Math.max(big.rssSrc, big.rssDst);
    targets.push({
      target: `copy peak RSS flat: ${fmt((o.mibRecords * MiB) / 1e6, 0)} MB vs ${fmt((o.smallStoreMib * MiB) / 1e6, 0)} MB existing (≤ +25 % or +16 MiB)`,
      measured: `${mib(b)} vs ${mib(a)} MiB (src ${mib(big.rssSrc)}/${mib(littleStore.rssSrc)}, dst ${mib(big.rssDst)}/${mib(littleStore.rssDst)})`,
      ok: verdict(b <= Math.max(a * 1.25, a + 16 * MiB)),
    });
  }
  if (subsRates.with.length > 0 && subsRates.without.length > 0) {
    const best = (xs: number[]): number => Math.max(...xs);
    const cost = 1 - best(subsRates.with) / best(subsRates.without);
    targets.push({
      target: `${SUBSCRIBERS} events subscribers cost ≤ 2 % of copy throughput (best of ${o.subscriberRuns} each)`,
      measured: `${fmt(cost * 100, 1)} % (${fmt(best(subsRates.with))} vs ${fmt(best(subsRates.without))} records/s)`,
      ok: verdict(cost <= 0.02),
    });
  }
  return { rows, targets };
}
