/**
 * Conditional query over a million stored 100-byte records (issue: the `when` language).
 * Measures scanned records/s of the query executor in-process and through HTTP with reduct-js.
 * Target: a conditional query streams matches at ≥ 500,000 scanned records/s.
 *
 * Sizes: BENCH_QUERY_RECORDS (default 1,000,000; BENCH_QUICK=1 → 200,000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'reduct-js';
import { Pool } from 'undici';
import { openStorage } from '../src/storage/engine.js';
import { QueryManager, DEFAULT_QUERY_LIMITS } from '../src/query/query-manager.js';
import { startFerry } from '../src/server.js';
import { loadConfig } from '../src/config/load-config.js';
import type { BatchItem } from '../src/storage/types.js';
import { FerryError } from '../src/protocol/errors.js';
import { fmt } from './lib/stats.js';
import { printTable } from './lib/table.js';

export interface ScanRow {
  name: string;
  scanned: number;
  matched: number;
  seconds: number;
  scannedPerSec: number;
  ratio: number;
}

const TARGET = 500_000;
const ENTRIES = ['cam-0', 'cam-1', 'cam-2', 'cam-3'];
const WHEN = { '&score': { $gte: 90 }, '&camera': { $eq: 'front' } };

async function fill(dataPath: string, count: number): Promise<void> {
  const storage = await openStorage({ dataPath, durability: 'none' });
  const bucket = await storage.createBucket('bench');
  const payload = Buffer.alloc(100, 7);
  const per = Math.ceil(count / ENTRIES.length);
  for (let e = 0; e < ENTRIES.length; e++) {
    for (let i = 0; i < per; i += 5000) {
      const items: BatchItem[] = [];
      for (let k = i; k < Math.min(i + 5000, per); k++) {
        items.push({
          entry: ENTRIES[e]!,
          ts: 1_000_000n + BigInt(k) * 10n + BigInt(e),
          opts: { size: 100, labels: { score: String(k % 100), camera: k % 2 ? 'front' : 'rear' } },
          payload,
        });
      }
      const results = await bucket.writeMany(items);
      const failed = results.find((r) => r instanceof FerryError);
      if (failed) throw failed;
    }
  }
  await storage.close();
}

async function drain(
  qm: QueryManager,
  entries: string[],
  when: unknown,
): Promise<{ matched: number; seconds: number }> {
  const t0 = performance.now();
  const id = await qm.create('bench', { query_type: 'QUERY', entries, when, ttl: 60 });
  let matched = 0;
  for (;;) {
    try {
      const batch = await qm.next('bench', id, { head: true });
      matched += batch.records.length;
      if (batch.last) break;
    } catch (e) {
      if (e instanceof FerryError && e.status === 204) break;
      throw e;
    }
  }
  return { matched, seconds: (performance.now() - t0) / 1000 };
}

/**
 * In-process executor: the first query of a fresh process (cold: JIT compilation and heap growth
 * included), then — as in a running server — the measured query after a warm-up query that reads
 * one entry with another condition.
 */
async function inProcess(dataPath: string, count: number): Promise<ScanRow[]> {
  const storage = await openStorage({ dataPath, durability: 'none' });
  const qm = new QueryManager({ storage, limits: { ...DEFAULT_QUERY_LIMITS, maxRecords: 1000 } });
  const cold = await drain(qm, ENTRIES, WHEN);
  await drain(qm, [ENTRIES[0]!], { '&score': { $lt: 5 } });
  const warm = await drain(qm, ENTRIES, { ...WHEN });
  qm.close();
  await storage.close();
  return [
    row('query executor, first query of the process (cold)', count, cold.matched, cold.seconds),
    row('query executor, warm process', count, warm.matched, warm.seconds),
  ];
}

async function overHttp(dataPath: string, count: number): Promise<ScanRow[]> {
  const config = loadConfig({
    RS_DATA_PATH: dataPath,
    RS_PORT: '0',
    RS_HOST: '127.0.0.1',
    RS_API_TOKEN: 'bench-token',
    FERRY_DURABILITY: 'none',
    RS_SYSTEM_EVENTS_ENABLED: 'false',
  });
  const server = await startFerry(config, { handleSignals: false, log: () => {} });
  try {
    const client = new Client(server.url, { apiToken: 'bench-token' });
    const bucket = await client.getBucket('bench');
    // Warm-up: one entry, another condition.
    for await (const r of bucket.query(ENTRIES[0]!, undefined, undefined, { when: { '&score': { $lt: 5 } } }))
      await r.read();
    const t0 = performance.now();
    let matched = 0;
    for await (const r of bucket.query(ENTRIES, undefined, undefined, { when: WHEN })) {
      await r.read();
      matched++;
    }
    const seconds = (performance.now() - t0) / 1000;
    const raw = await rawIoQuery(server.url, 'bench-token');
    return [
      row('query over HTTP, raw /io batches (undici), warm server', count, raw.matched, raw.seconds),
      row('query over HTTP (reduct-js, payloads read), warm server', count, matched, seconds),
    ];
  } finally {
    await server.close();
  }
}

/** The same query through `POST /io/{b}/q` + `GET /io/{b}/read` with a plain HTTP client. */
async function rawIoQuery(url: string, token: string): Promise<{ matched: number; seconds: number }> {
  const pool = new Pool(url, { connections: 1, maxHeaderSize: 1024 * 1024 });
  const auth = `Bearer ${token}`;
  try {
    const t0 = performance.now();
    const q = await pool.request({
      method: 'POST',
      path: '/api/v1/io/bench/q',
      headers: { authorization: auth },
      body: JSON.stringify({ query_type: 'QUERY', entries: ENTRIES, when: WHEN }),
    });
    const id = String((JSON.parse(await q.body.text()) as { id: number }).id);
    let matched = 0;
    for (;;) {
      const res = await pool.request({
        method: 'GET',
        path: '/api/v1/io/bench/read',
        headers: { authorization: auth, 'x-reduct-query-id': id },
      });
      await res.body.dump();
      if (res.statusCode === 204) break;
      matched += Object.keys(res.headers).filter((h) => /^x-reduct-\d+-\d+$/.test(h)).length;
      if (res.headers['x-reduct-last'] === 'true') break;
    }
    return { matched, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await pool.close();
  }
}

function row(name: string, scanned: number, matched: number, seconds: number): ScanRow {
  const scannedPerSec = scanned / seconds;
  return { name, scanned, matched, seconds, scannedPerSec, ratio: scannedPerSec / TARGET };
}

/** Fills a throw-away data directory and runs both measurements. */
export async function runQueryScanBench(): Promise<ScanRow[]> {
  const count = Number(process.env.BENCH_QUERY_RECORDS ?? (process.env.BENCH_QUICK ? 200_000 : 1_000_000));
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-query-'));
  try {
    const t0 = performance.now();
    await fill(dir, count);
    console.log(
      `filled ${count.toLocaleString('en-US')} records of 100 B in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    // Start-up must not grow with the data: open the engine on the filled directory.
    const t1 = performance.now();
    const reopened = await openStorage({ dataPath: dir, durability: 'none' });
    const openMs = performance.now() - t1;
    await reopened.close();
    console.log(
      `storage start-up with ${count.toLocaleString('en-US')} records stored: ${openMs.toFixed(1)} ms`,
    );
    return [...(await inProcess(dir, count)), ...(await overHttp(dir, count))];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints rows as an aligned table. */
export function printScanRows(rows: ScanRow[]): void {
  printTable(
    [
      { header: 'query', key: 'name', align: 'left' },
      { header: 'scanned', format: (r) => fmt(r.scanned), align: 'right' },
      { header: 'matched', format: (r) => fmt(r.matched), align: 'right' },
      { header: 'seconds', format: (r) => fmt(r.seconds, 2), align: 'right' },
      { header: 'scanned/s', format: (r) => fmt(r.scannedPerSec), align: 'right' },
      { header: 'ratio to 500k/s', format: (r) => `${fmt(r.ratio, 2)}x`, align: 'right' },
    ],
    rows,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printScanRows(await runQueryScanBench());
}
