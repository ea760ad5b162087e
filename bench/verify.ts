/**
 * Verify benchmark (`npm run bench:verify`, issue 11): two real Ferry processes holding the same
 * records (default 1,000,000 small records in 10 entries, written to both with v1 batch writes), a
 * replication from one to the other, and `POST /api/v1/replications/{name}/verify`:
 *
 * - a clean verify, cold (first one after start: rows built from descriptors) and warm (cached);
 * - a verify after 10 random differences made at the destination (removed records, changed labels,
 *   extra records, payloads of the same size), and a repair of them.
 *
 * For each: time, bytes exchanged (requests and answers, headers included, as the verifier counts
 * them), round trips, and peak RSS of both instances. Targets: a clean verify exchanges < 0.5% of
 * the records' metadata size (Σ ts + size + content digest + content type + labels) and finishes in
 * < 10 s; each difference is located in O(log n) round trips (here: at most 2 × (log₁₆ n + 2));
 * peak RSS < 256 MB.
 *
 * Baselines of the same run, on the same copies, clean and with the same 10 differences:
 * - the naive comparison through the query API (bench/lib/api-compare.ts): every record's metadata
 *   read from both instances (`only_metadata`), compared in this process; and the same with payloads
 *   read and hashed here, since the API gives no content digest;
 * - PostgreSQL (bench/lib/postgres-verify.ts): the same metadata in two tables of one cluster and a
 *   FULL OUTER JOIN … IS DISTINCT FROM query (skipped when PostgreSQL is not installed).
 * Verdicts: a clean verify is faster than both, and exchanges fewer bytes than the naive comparison.
 *
 * The replication is created disabled before the writes (the records are part of its copy, nothing
 * ships meanwhile). Data is written with FERRY_DURABILITY=none (setup speed; verification reads
 * metadata only). `BENCH_RECORDS=n` changes the record count; `BENCH_SEED=n` repeats the planted
 * differences of a run (its seed is printed); `BENCH_DATA=dir` keeps both data directories there and
 * reuses them on the next run (the run ends by repairing the differences it made, extra records
 * included, so the copies are equal again).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { compareOverApi } from './lib/api-compare.js';
import { spawnFerry, type FerryProcess } from './lib/ferry-process.js';
import { startPgVerifyBaseline, type PgCompareRun, type PgVerifyBaseline } from './lib/postgres-verify.js';
import { readCpuSeconds } from './lib/proc-cpu.js';
import { mulberry32 } from './lib/prng.js';
import { RssSampler } from './lib/rss.js';
import { fmt } from './lib/stats.js';
import { printTable, printTargets } from './lib/table.js';
import {
  describeCounts,
  describeMatch,
  extraTs,
  matchDifferences,
  type Difference,
  type DifferencePart,
  type PlantedDifference,
} from './lib/verify-differences.js';

const RECORDS = Number(process.env.BENCH_RECORDS ?? 1_000_000);
const ENTRIES = 10;
const PAYLOAD = 64;
const PER_BATCH = 500;
const DIFFERENCES = 10;
const MB = 1024 * 1024;

interface VerifyAnswer {
  outcome: string;
  error: string | null;
  duration_ms: number;
  totals: { missing: number; extra: number; different: number; source_records: number };
  exchange: { round_trips: number; bytes_sent: number; bytes_received: number };
  repair: { written: number; relabelled: number; failed: number } | null;
  entries: Array<{
    entry: string;
    missing: { first: number[] };
    extra: { first: number[] };
    different: { first: Array<{ ts: number; parts: DifferencePart[] }> };
  }>;
}

/** The records a verify answer lists (all of them here: fewer than its 100 per kind and entry). */
function listedDifferences(a: VerifyAnswer): Difference[] {
  return a.entries.flatMap((e) => [
    ...e.missing.first.map((ts) => ({ entry: e.entry, ts: Number(ts), kind: 'missing' as const })),
    ...e.extra.first.map((ts) => ({ entry: e.entry, ts: Number(ts), kind: 'extra' as const })),
    ...e.different.first.map((d) => ({
      entry: e.entry,
      ts: Number(d.ts),
      kind: 'different' as const,
      parts: [...d.parts].sort(),
    })),
  ]);
}

class Node {
  readonly pool: Pool;
  constructor(readonly proc: FerryProcess) {
    this.pool = new Pool(proc.url, { connections: 4 });
  }

  async call(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<unknown> {
    const res = await this.pool.request({
      method,
      path: `/api/v1${path}`,
      headers: { authorization: `Bearer ${this.proc.token}`, 'content-type': 'application/json', ...headers },
      body:
        body === undefined
          ? null
          : typeof body === 'string' || Buffer.isBuffer(body)
            ? body
            : JSON.stringify(body),
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200)
      throw new Error(
        `${method} ${path}: HTTP ${res.statusCode} ${String(res.headers['x-reduct-error'] ?? '')}`,
      );
    return text ? (JSON.parse(text) as unknown) : undefined;
  }

  async writeBatch(entry: string, firstTs: number, n: number): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(n * PAYLOAD),
    };
    const body = Buffer.alloc(n * PAYLOAD);
    for (let i = 0; i < n; i++) {
      const ts = firstTs + i;
      headers[`x-reduct-time-${ts}`] = `${PAYLOAD},application/octet-stream,kind=bench,n=${ts % 100}`;
      body.write(`record ${entry} ${ts}`.padEnd(PAYLOAD, '.'), i * PAYLOAD);
    }
    await this.call('POST', `/b/bench/${entry}/batch`, body, headers);
  }

  async close(): Promise<void> {
    await this.pool.close();
    await this.proc.destroy();
  }
}

/** Σ of what a verifier compares per record, as stored: ts, size, content digest, content type, labels. */
function metadataBytes(records: number): number {
  let labels = 0;
  for (let ts = 1; ts <= records; ts++)
    labels += 'kind'.length + 'bench'.length + 'n'.length + String(ts % 100).length;
  return records * (8 + 8 + 16 + 'application/octet-stream'.length) + labels;
}

async function fill(node: Node): Promise<number> {
  const t0 = performance.now();
  const perEntry = Math.ceil(RECORDS / ENTRIES);
  const jobs: Array<[string, number, number]> = [];
  for (let e = 0; e < ENTRIES; e++) {
    const from = 1 + e * perEntry;
    const to = Math.min(RECORDS, (e + 1) * perEntry);
    for (let ts = from; ts <= to; ts += PER_BATCH) jobs.push([`e${e}`, ts, Math.min(PER_BATCH, to - ts + 1)]);
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < jobs.length) {
        const [entry, ts, n] = jobs[next++]!;
        await node.writeBatch(entry, ts, n);
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

interface Row {
  run: string;
  seconds: number;
  /** Verify: between the instances; naive comparison: requests of the bench to both. */
  roundTrips?: number;
  bytes?: number;
  share?: number;
  found: string;
  /** How the findings match the planted differences (`clean` before any was planted). */
  planted: string;
  rssSrc?: number;
  rssDst?: number;
  /** CPU seconds the source and the destination process spent (comparable on a loaded machine). */
  cpuSrc?: number;
  cpuDst?: number;
  /**
   * CPU seconds of every process doing the comparison: both instances (verify), both instances and
   * this process reading and comparing (naive), the PostgreSQL backend (its query).
   */
  cpuTotal?: number;
}

/** Runs `fn` and measures CPU seconds and peak RSS of both instances meanwhile. */
async function onInstances<T>(
  src: Node,
  dst: Node,
  fn: () => Promise<T>,
): Promise<{ value: T } & Required<Pick<Row, 'cpuSrc' | 'cpuDst' | 'rssSrc' | 'rssDst'>>> {
  const a = new RssSampler(src.proc.pid).start();
  const b = new RssSampler(dst.proc.pid).start();
  const cpu = (p: Node): number => readCpuSeconds(p.proc.pid) ?? NaN;
  const c0 = [cpu(src), cpu(dst)];
  const value = await fn();
  return {
    value,
    cpuSrc: cpu(src) - c0[0]!,
    cpuDst: cpu(dst) - c0[1]!,
    rssSrc: a.stop() / MB,
    rssDst: b.stop() / MB,
  };
}

const plantedCell = (reported: readonly Difference[], planted: readonly PlantedDifference[]): string =>
  planted.length === 0
    ? reported.length === 0
      ? 'clean'
      : `+${reported.length} spurious`
    : describeMatch(matchDifferences(reported, planted));

async function measure(
  run: string,
  src: Node,
  dst: Node,
  query: string,
  metaBytes: number,
  planted: readonly PlantedDifference[],
): Promise<{ row: Row; answer: VerifyAnswer }> {
  const t0 = performance.now();
  const m = await onInstances(src, dst, async () => {
    return (await src.call('POST', `/replications/bench/verify${query}`, {})) as VerifyAnswer;
  });
  const seconds = (performance.now() - t0) / 1000;
  const answer = m.value;
  const bytes = answer.exchange.bytes_sent + answer.exchange.bytes_received;
  const t = answer.totals;
  return {
    answer,
    row: {
      run,
      seconds,
      roundTrips: answer.exchange.round_trips,
      bytes,
      share: (bytes / metaBytes) * 100,
      found:
        answer.outcome === 'failed'
          ? 'failed'
          : `${t.missing} missing, ${t.extra} extra, ${t.different} different`,
      planted: answer.outcome === 'failed' ? 'failed' : plantedCell(listedDifferences(answer), planted),
      cpuSrc: m.cpuSrc,
      cpuDst: m.cpuDst,
      cpuTotal: m.cpuSrc + m.cpuDst,
      rssSrc: m.rssSrc,
      rssDst: m.rssDst,
    },
  };
}

/** The naive comparison through both instances' query API (bench/lib/api-compare.ts). */
async function naive(
  run: string,
  src: Node,
  dst: Node,
  payloads: boolean,
  metaBytes: number,
  planted: readonly PlantedDifference[],
): Promise<Row> {
  const side = (n: Node) => ({ url: n.proc.url, token: n.proc.token, bucket: 'bench' });
  const own = process.cpuUsage();
  const m = await onInstances(src, dst, () => compareOverApi(side(src), side(dst), { payloads }));
  const ownUs = process.cpuUsage(own);
  const r = m.value;
  if (r.records[0] !== RECORDS) throw new Error(`${run}: read ${r.records[0]} of ${RECORDS} source records`);
  const bytes = r.bytesSent + r.bytesReceived;
  return {
    run,
    seconds: r.seconds,
    roundTrips: r.requests,
    bytes,
    share: (bytes / metaBytes) * 100,
    found: describeCounts(r.differences),
    planted: plantedCell(r.differences, planted),
    cpuSrc: m.cpuSrc,
    cpuDst: m.cpuDst,
    cpuTotal: m.cpuSrc + m.cpuDst + (ownUs.user + ownUs.system) / 1e6,
    rssSrc: m.rssSrc,
    rssDst: m.rssDst,
  };
}

/** The PostgreSQL comparison query, run twice: a row for the first run and one for the repeat. */
async function postgres(
  run: string,
  pg: PgVerifyBaseline,
  planted: readonly PlantedDifference[],
): Promise<[Row, Row]> {
  const runs = await pg.compare();
  const row = (r: PgCompareRun, which: string): Row => ({
    run: `${run}, ${which}`,
    seconds: r.seconds,
    found: describeCounts(r.differences),
    planted: plantedCell(r.differences, planted),
    cpuTotal: r.cpuSeconds,
  });
  return [row(runs[0], '1st run'), row(runs[1], 'repeat')];
}

/** Picks `DIFFERENCES` distinct records and cycles through the four kinds of planted difference. */
function pickDifferences(rnd: () => number): PlantedDifference[] {
  const perEntry = Math.ceil(RECORDS / ENTRIES);
  const kinds: Array<PlantedDifference['kind']> = ['remove', 'relabel', 'extra', 'payload'];
  const used = new Set<number>();
  const out: PlantedDifference[] = [];
  while (out.length < DIFFERENCES) {
    const e = Math.floor(rnd() * ENTRIES);
    const ts = 1 + e * perEntry + Math.floor(rnd() * perEntry);
    if (ts > RECORDS || used.has(ts)) continue;
    used.add(ts);
    out.push({ entry: `e${e}`, ts, kind: kinds[out.length % kinds.length]! });
  }
  return out;
}

/** Makes the planted differences at the destination instance. */
async function plant(dst: Node, diffs: readonly PlantedDifference[]): Promise<void> {
  for (const { entry, ts, kind } of diffs) {
    if (kind === 'remove') await dst.call('DELETE', `/b/bench/${entry}?ts=${ts}`);
    else if (kind === 'relabel')
      await dst.call('PATCH', `/b/bench/${entry}?ts=${ts}`, undefined, { 'x-reduct-label-n': 'changed' });
    else if (kind === 'extra')
      await dst.call('POST', `/b/bench/${entry}?ts=${extraTs(ts)}`, 'extra', {
        'content-type': 'text/plain',
      });
    else {
      await dst.call('DELETE', `/b/bench/${entry}?ts=${ts}`);
      await dst.call('POST', `/b/bench/${entry}?ts=${ts}`, Buffer.alloc(PAYLOAD, 0x41), {
        'content-type': 'application/octet-stream',
        'x-reduct-label-kind': 'bench',
        'x-reduct-label-n': String(ts % 100),
      });
    }
  }
}

const verdict = (met: boolean | undefined): string => (met === undefined ? 'n/a' : met ? 'met' : 'MISSED');

async function main(): Promise<void> {
  const env = { RS_SYSTEM_EVENTS_ENABLED: 'false', FERRY_DURABILITY: 'none' };
  const keep = process.env.BENCH_DATA;
  const reuse = keep !== undefined && existsSync(join(keep, `dst-${RECORDS}`, 'buckets', 'bench'));
  const where = (who: string) => {
    if (keep === undefined) return {};
    const dir = join(keep, `${who}-${RECORDS}`);
    mkdirSync(dir, { recursive: true });
    return { dataPath: dir, token: 'bench-token' };
  };
  const seed = Number(process.env.BENCH_SEED ?? Date.now() % 2 ** 31);
  const [a, b] = await Promise.all([
    spawnFerry({ env, ...where('src') }),
    spawnFerry({ env, ...where('dst') }),
  ]);
  const src = new Node(a);
  const dst = new Node(b);
  let pg: PgVerifyBaseline | undefined;
  try {
    const replication = {
      src_bucket: 'bench',
      dst_bucket: 'bench',
      dst_host: dst.proc.url,
      dst_token: dst.proc.token,
      mode: 'disabled',
    };
    if (reuse) {
      // the destination may listen on another port than last time
      await src.call('PUT', '/replications/bench', replication);
      console.log(`reusing ${RECORDS} records in ${ENTRIES} entries per instance from ${keep}`);
    } else {
      await src.call('POST', '/b/bench', {});
      await dst.call('POST', '/b/bench', {});
      await src.call('POST', '/replications/bench', replication);
      const [ws, wd] = await Promise.all([fill(src), fill(dst)]);
      console.log(
        `wrote ${RECORDS} records in ${ENTRIES} entries to each instance (${fmt(ws, 1)} s, ${fmt(wd, 1)} s)`,
      );
    }
    pg = await startPgVerifyBaseline({ records: RECORDS, entries: ENTRIES, payload: PAYLOAD });
    if (pg === undefined) console.log('PostgreSQL is not installed: its baseline is skipped');
    else
      console.log(
        `${pg.serverVersion}: loaded ${RECORDS} rows into each of two tables in ${fmt(pg.loadSeconds, 1)} s ` +
          `(setup); the comparison query plans a ${pg.plan}`,
      );
    // restart both: the first verify then reads descriptors from disk, as after any start
    await Promise.all([a.restart(), b.restart()]);
    const metaBytes = metadataBytes(RECORDS);
    // Verify's own rows first, in the order of earlier runs: the query reads of the naive comparison
    // leave both servers with a larger heap, which would show in verify's RSS if they ran before.
    const cold = await measure('verify, clean, cold', src, dst, '', metaBytes, []);
    const warm = await measure('verify, clean, warm', src, dst, '', metaBytes, []);
    const planted = pickDifferences(mulberry32(seed));
    console.log(
      `${DIFFERENCES} differences planted at the destination, seed ${seed} (BENCH_SEED repeats them)`,
    );
    await plant(dst, planted);
    const diff = await measure(`verify, ${DIFFERENCES} differences`, src, dst, '', metaBytes, planted);
    // extra records are only reported by a repair: they remain
    const extras = planted.filter((p) => p.kind === 'extra');
    const repair = await measure('verify, repair + re-verify', src, dst, '?repair=true', metaBytes, extras);
    for (const r of [cold, warm, diff, repair])
      if (r.answer.error) console.log(`${r.row.run}: ${r.answer.outcome}: ${r.answer.error}`);

    // The baselines on the same copies with the same differences (made again where repair undid them)
    await plant(
      dst,
      planted.filter((p) => p.kind !== 'extra'),
    );
    const label = `${DIFFERENCES} differences`;
    const naiveDiff = await naive(`naive API, metadata only, ${label}`, src, dst, false, metaBytes, planted);
    const naiveDiffPayload = await naive(
      `naive API, payloads hashed, ${label}`,
      src,
      dst,
      true,
      metaBytes,
      planted,
    );
    const pgClean = pg && (await postgres('PostgreSQL FULL JOIN, clean', pg, []));
    await pg?.apply(planted);
    const pgDiff = pg && (await postgres(`PostgreSQL FULL JOIN, ${label}`, pg, planted));
    await pg?.stop();
    // equal copies again (also for a next run on the same data)
    await src.call('POST', '/replications/bench/verify?repair=true', { remove_extra: true });
    const naiveClean = await naive('naive API, metadata only, clean', src, dst, false, metaBytes, []);

    const verifyRows = [cold.row, warm.row, diff.row, repair.row];
    const rows = [
      cold.row,
      warm.row,
      naiveClean,
      ...(pgClean ?? []),
      diff.row,
      naiveDiff,
      naiveDiffPayload,
      ...(pgDiff ?? []),
      repair.row,
    ];
    printTable(
      [
        { header: 'comparison', key: 'run' },
        { header: 's', format: (r) => fmt(r.seconds, 2) },
        { header: 'round trips', format: (r) => fmt(r.roundTrips) },
        { header: 'bytes', format: (r) => fmt(r.bytes) },
        { header: '% of metadata', format: (r) => fmt(r.share, 4) },
        { header: 'found', key: 'found' },
        { header: 'planted found', key: 'planted' },
        { header: 'CPU src s', format: (r) => fmt(r.cpuSrc, 2) },
        { header: 'CPU dst s', format: (r) => fmt(r.cpuDst, 2) },
        { header: 'CPU total s', format: (r) => fmt(r.cpuTotal, 2) },
        { header: 'RSS src MB', format: (r) => fmt(r.rssSrc) },
        { header: 'RSS dst MB', format: (r) => fmt(r.rssDst) },
      ],
      rows,
    );
    const perEntryN = RECORDS / ENTRIES;
    const logBound = 2 * (Math.ceil(Math.log(perEntryN) / Math.log(16)) + 2);
    const t = diff.answer.totals;
    const diffMatch = matchDifferences(listedDifferences(diff.answer), planted);
    const cleanWorst = Math.max(cold.row.seconds, warm.row.seconds);
    const cleanBytes = Math.max(cold.row.bytes!, warm.row.bytes!);
    const peakRss = Math.max(...verifyRows.map((r) => Math.max(r.rssSrc!, r.rssDst!)));
    const times = (x: number, y: number): string => `${fmt(x / y, x / y < 10 ? 1 : 0)}×`;
    printTargets([
      {
        target: 'clean verify comes back clean',
        measured: `${cold.answer.outcome}, ${warm.answer.outcome}`,
        ok: verdict(cold.answer.outcome === 'clean' && warm.answer.outcome === 'clean'),
      },
      {
        target: 'clean verify exchanges < 0.5% of the metadata',
        measured: `${fmt(cold.row.share, 4)}% (metadata ${fmt(metaBytes / MB, 1)} MB)`,
        ok: verdict(Math.max(cold.row.share!, warm.row.share!) < 0.5),
      },
      {
        target: 'clean verify < 10 s',
        measured: `cold ${fmt(cold.row.seconds, 2)} s, warm ${fmt(warm.row.seconds, 2)} s`,
        ok: verdict(cleanWorst < 10),
      },
      {
        target: `all ${DIFFERENCES} differences found exactly, nothing else`,
        measured: `${diff.row.found}; ${describeMatch(diffMatch)}`,
        ok: verdict(
          t.missing + t.extra + t.different === DIFFERENCES &&
            diff.answer.outcome === 'differences' &&
            diffMatch.found === DIFFERENCES &&
            diffMatch.spurious === 0,
        ),
      },
      {
        target: `differences located in O(log n) round trips (≤ ${logBound})`,
        measured: `${diff.row.roundTrips} round trips, ${fmt(diff.row.bytes)} bytes`,
        ok: verdict(diff.row.roundTrips! <= logBound),
      },
      {
        target: 'repair leaves nothing missing or different (extra records are only reported)',
        measured: `written ${repair.answer.repair?.written}, relabelled ${repair.answer.repair?.relabelled}; ${repair.row.found}`,
        ok: verdict(
          repair.answer.outcome !== 'failed' &&
            repair.answer.totals.missing + repair.answer.totals.different === 0,
        ),
      },
      { target: 'peak RSS < 256 MB', measured: `${fmt(peakRss)} MB`, ok: verdict(peakRss < 256) },
      {
        target: 'clean verify faster than the naive API comparison (metadata only, its fastest form)',
        measured:
          `verify ${fmt(cleanWorst, 2)} s (slower of cold/warm); naive ${fmt(naiveClean.seconds, 2)} s ` +
          `(${times(naiveClean.seconds, cleanWorst)}); CPU s ${fmt(cold.row.cpuTotal, 2)} vs ${fmt(naiveClean.cpuTotal, 2)}`,
        ok: verdict(cleanWorst < naiveClean.seconds),
      },
      {
        target: 'clean verify faster than the PostgreSQL comparison query (cold vs 1st run, warm vs repeat)',
        measured: pgClean
          ? `cold ${fmt(cold.row.seconds, 2)} s vs ${fmt(pgClean[0].seconds, 2)} s ` +
            `(${times(pgClean[0].seconds, cold.row.seconds)}), warm ${fmt(warm.row.seconds, 2)} s vs ` +
            `${fmt(pgClean[1].seconds, 2)} s (${times(pgClean[1].seconds, warm.row.seconds)}); CPU s ` +
            `${fmt(cold.row.cpuTotal, 2)} / ${fmt(warm.row.cpuTotal, 2)} vs ` +
            `${fmt(pgClean[0].cpuTotal, 2)} / ${fmt(pgClean[1].cpuTotal, 2)}`
          : 'PostgreSQL not installed: skipped',
        ok: verdict(
          pgClean && cold.row.seconds < pgClean[0].seconds && warm.row.seconds < pgClean[1].seconds,
        ),
      },
      {
        target: 'clean verify exchanges fewer bytes than the naive API comparison',
        measured: `${fmt(cleanBytes)} vs ${fmt(naiveClean.bytes)} bytes metadata only (${times(naiveClean.bytes!, cleanBytes)} fewer)`,
        ok: verdict(cleanBytes < naiveClean.bytes!),
      },
    ]);
  } finally {
    await pg?.stop();
    await Promise.all([src.close(), dst.close()]);
  }
}

await main();
