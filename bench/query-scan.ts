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
import { openStorage } from '../src/storage/engine.js';
import { QueryManager, DEFAULT_QUERY_LIMITS } from '../src/query/query-manager.js';
import { startFerry } from '../src/server.js';
import { loadConfig } from '../src/config/load-config.js';
import type { BatchItem } from '../src/storage/types.js';
import { FerryError } from '../src/protocol/errors.js';

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

async function inProcess(dataPath: string, count: number): Promise<ScanRow> {
  const storage = await openStorage({ dataPath, durability: 'none' });
  const qm = new QueryManager({ storage, limits: { ...DEFAULT_QUERY_LIMITS, maxRecords: 1000 } });
  const t0 = performance.now();
  const id = await qm.create('bench', { query_type: 'QUERY', entries: ENTRIES, when: WHEN, ttl: 60 });
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
  const seconds = (performance.now() - t0) / 1000;
  qm.close();
  await storage.close();
  return row('query executor (in-process, head)', count, matched, seconds);
}

async function overHttp(dataPath: string, count: number): Promise<ScanRow> {
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
    const t0 = performance.now();
    let matched = 0;
    for await (const r of bucket.query(ENTRIES, undefined, undefined, { when: WHEN })) {
      await r.read();
      matched++;
    }
    const seconds = (performance.now() - t0) / 1000;
    return row('query over HTTP (reduct-js, payloads read)', count, matched, seconds);
  } finally {
    await server.close();
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
    return [await inProcess(dir, count), await overHttp(dir, count)];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printScanRows(rows: ScanRow[]): void {
  const header = ['query', 'scanned', 'matched', 'seconds', 'scanned/s', 'ratio to 500k/s'];
  const lines = rows.map((r) => [
    r.name,
    r.scanned.toLocaleString('en-US'),
    r.matched.toLocaleString('en-US'),
    r.seconds.toFixed(2),
    Math.round(r.scannedPerSec).toLocaleString('en-US'),
    `${r.ratio.toFixed(2)}x`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cols: string[]): string =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  printScanRows(await runQueryScanBench());
}
