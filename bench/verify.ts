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
 * peak RSS < 256 MB. The replication is created disabled before the writes (the records are part
 * of its copy, nothing ships meanwhile). Data is written with FERRY_DURABILITY=none (setup speed;
 * verification reads metadata only). `BENCH_RECORDS=n` changes the record count; `BENCH_DATA=dir`
 * keeps both data directories there and reuses them on the next run (the run ends by repairing the
 * differences it made, extra records included, so the copies are equal again).
 */
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { spawnFerry, type FerryProcess } from './lib/ferry-process.js';
import { readCpuSeconds } from './lib/proc-cpu.js';
import { RssSampler } from './lib/rss.js';
import { fmt } from './lib/stats.js';
import { printTable } from './lib/table.js';

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
  roundTrips: number;
  bytes: number;
  share: number;
  found: string;
  rssSrc: number;
  rssDst: number;
  /** CPU seconds the source and the destination process spent (comparable on a loaded machine). */
  cpuSrc: number;
  cpuDst: number;
}

async function measure(
  run: string,
  src: Node,
  dst: Node,
  query: string,
  metaBytes: number,
): Promise<{ row: Row; answer: VerifyAnswer }> {
  const a = new RssSampler(src.proc.pid).start();
  const b = new RssSampler(dst.proc.pid).start();
  const cpu = (p: Node): number => readCpuSeconds(p.proc.pid) ?? NaN;
  const c0 = [cpu(src), cpu(dst)];
  const t0 = performance.now();
  const answer = (await src.call('POST', `/replications/bench/verify${query}`, {})) as VerifyAnswer;
  const seconds = (performance.now() - t0) / 1000;
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
      cpuSrc: cpu(src) - c0[0]!,
      cpuDst: cpu(dst) - c0[1]!,
      rssSrc: a.stop() / MB,
      rssDst: b.stop() / MB,
    },
  };
}

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
  const [a, b] = await Promise.all([
    spawnFerry({ env, ...where('src') }),
    spawnFerry({ env, ...where('dst') }),
  ]);
  const src = new Node(a);
  const dst = new Node(b);
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
    // restart both: the first verify then reads descriptors from disk, as after any start
    await Promise.all([a.restart(), b.restart()]);
    const metaBytes = metadataBytes(RECORDS);
    const rows: Row[] = [];
    const cold = await measure('clean, cold', src, dst, '', metaBytes);
    rows.push(cold.row);
    const warm = await measure('clean, warm', src, dst, '', metaBytes);
    rows.push(warm.row);

    // 10 random differences at the destination, of four kinds
    const perEntry = Math.ceil(RECORDS / ENTRIES);
    const used = new Set<number>();
    const pick = (): { entry: string; ts: number } => {
      for (;;) {
        const e = randomInt(ENTRIES);
        const ts = 1 + e * perEntry + randomInt(perEntry);
        if (ts <= RECORDS && !used.has(ts)) return (used.add(ts), { entry: `e${e}`, ts });
      }
    };
    for (let i = 0; i < DIFFERENCES; i++) {
      const { entry, ts } = pick();
      const kind = i % 4;
      if (kind === 0) await dst.call('DELETE', `/b/bench/${entry}?ts=${ts}`);
      else if (kind === 1)
        await dst.call('PATCH', `/b/bench/${entry}?ts=${ts}`, undefined, { 'x-reduct-label-n': 'changed' });
      else if (kind === 2)
        await dst.call('POST', `/b/bench/${entry}?ts=${ts}000000`, 'extra', { 'content-type': 'text/plain' });
      else {
        await dst.call('DELETE', `/b/bench/${entry}?ts=${ts}`);
        await dst.call('POST', `/b/bench/${entry}?ts=${ts}`, Buffer.alloc(PAYLOAD, 0x41), {
          'content-type': 'application/octet-stream',
          'x-reduct-label-kind': 'bench',
          'x-reduct-label-n': String(ts % 100),
        });
      }
    }
    const diff = await measure(`${DIFFERENCES} differences`, src, dst, '', metaBytes);
    rows.push(diff.row);
    const repair = await measure('repair + re-verify', src, dst, '?repair=true', metaBytes);
    rows.push(repair.row);
    // leaves equal copies for a next run on the same data
    await src.call('POST', '/replications/bench/verify?repair=true', { remove_extra: true });
    for (const r of [cold, warm, diff, repair])
      if (r.answer.error) console.log(`${r.row.run}: ${r.answer.outcome}: ${r.answer.error}`);

    printTable(
      [
        { header: 'verify', key: 'run' },
        { header: 's', format: (r) => fmt(r.seconds, 2) },
        { header: 'round trips', key: 'roundTrips' },
        { header: 'bytes', key: 'bytes' },
        { header: '% of metadata', format: (r) => fmt(r.share, 4) },
        { header: 'found', key: 'found' },
        { header: 'CPU src s', format: (r) => fmt(r.cpuSrc, 2) },
        { header: 'CPU dst s', format: (r) => fmt(r.cpuDst, 2) },
        { header: 'RSS src MB', format: (r) => fmt(r.rssSrc) },
        { header: 'RSS dst MB', format: (r) => fmt(r.rssDst) },
      ],
      rows,
    );
    const perEntryN = RECORDS / ENTRIES;
    const logBound = 2 * (Math.ceil(Math.log(perEntryN) / Math.log(16)) + 2);
    const t = diff.answer.totals;
    const foundAll = t.missing + t.extra + t.different === DIFFERENCES;
    const verdicts: Array<[string, boolean, string]> = [
      [
        'clean verify comes back clean',
        cold.answer.outcome === 'clean' && warm.answer.outcome === 'clean',
        `${cold.answer.outcome}, ${warm.answer.outcome}`,
      ],
      [
        'clean verify exchanges < 0.5% of the metadata',
        Math.max(cold.row.share, warm.row.share) < 0.5,
        `${fmt(cold.row.share, 4)}% (metadata ${fmt(metaBytes / MB, 1)} MB)`,
      ],
      [
        'clean verify < 10 s',
        Math.max(cold.row.seconds, warm.row.seconds) < 10,
        `cold ${fmt(cold.row.seconds, 2)} s, warm ${fmt(warm.row.seconds, 2)} s`,
      ],
      [
        'all 10 differences found, nothing else',
        foundAll && diff.answer.outcome === 'differences',
        diff.row.found,
      ],
      [
        `differences located in O(log n) round trips (≤ ${logBound})`,
        diff.row.roundTrips <= logBound,
        `${diff.row.roundTrips} round trips, ${diff.row.bytes} bytes`,
      ],
      [
        'repair leaves nothing missing or different (extra records are only reported)',
        repair.answer.outcome !== 'failed' &&
          repair.answer.totals.missing + repair.answer.totals.different === 0,
        `written ${repair.answer.repair?.written}, relabelled ${repair.answer.repair?.relabelled}; ${repair.row.found}`,
      ],
      [
        'peak RSS < 256 MB',
        Math.max(...rows.map((r) => Math.max(r.rssSrc, r.rssDst))) < 256,
        `${fmt(Math.max(...rows.map((r) => Math.max(r.rssSrc, r.rssDst))))} MB`,
      ],
    ];
    console.log('');
    for (const [what, met, detail] of verdicts)
      console.log(`${met ? 'met   ' : 'MISSED'}  ${what}: ${detail}`);
  } finally {
    await Promise.all([src.close(), dst.close()]);
  }
}

await main();
