/**
 * Sync replication rows of `bench:replication` (replication.md §7): write latency p50/p99 and
 * throughput of 1 KiB single-record writes at 1, 8 and 64 concurrent writers on a source Ferry that
 * replicates to a second Ferry process on loopback, with an async replication and with a sync one
 * (and the same writes with no replication, the single-instance baseline),
 * and in the same run PostgreSQL with a synchronous physical standby (`synchronous_commit = on`
 * and `remote_apply`), one INSERT of 1 KiB per transaction. Prints its own table and the targets:
 * sync p50 ≤ PostgreSQL's synchronous p50 (at every concurrency), sync throughput at 64 writers ≥
 * 50% of async, sync p99 at 8 writers ≤ 3 ms.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { Pool } from 'undici';
import type pg from 'pg';
import { spawnFerry, type FerryProcess } from './ferry-process.js';
import { startPgSyncPair } from './pg-sync-standby.js';
import { fmt, summarize, type LatencySummary } from './stats.js';
import { printTable, printTargets } from './table.js';

const CONCURRENCY = [1, 8, 64] as const;
/**
 * `BENCH_SYNC_ENTRIES=one`: every writer writes to the same entry (distinct timestamps) instead of
 * an entry of its own; the engine ships one request per entry, so this shows what shared
 * shipments cost when writers do not spread over many entries.
 */
const ONE_ENTRY = process.env.BENCH_SYNC_ENTRIES === 'one';
const KiB = 1024;

interface SyncRow {
  system: string;
  writers: number;
  records: number;
  recordsPerSec: number;
  lat: LatencySummary;
}

/** Runs `writers` loops of `op` for `seconds` (after a short warm-up); latencies in ms. */
async function closedLoop(
  writers: number,
  seconds: number,
  op: (writer: number, i: number) => Promise<void>,
): Promise<{ records: number; recordsPerSec: number; lat: LatencySummary }> {
  const samples: number[] = [];
  let measuring = false;
  let stop = false;
  const loops = Array.from({ length: writers }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const t0 = performance.now();
      await op(w, i);
      if (measuring) samples.push(performance.now() - t0);
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(loops);
  return { records: samples.length, recordsPerSec: samples.length / elapsed, lat: summarize(samples) };
}

async function api(node: FerryProcess, method: string, path: string, body?: unknown): Promise<void> {
  const res = await fetch(`${node.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${res.headers.get('x-reduct-error') ?? ''}`);
  await res.arrayBuffer();
}

/**
 * Ferry rows at each concurrency: writes to bucket `type` with one replication of that type, or
 * (`none`) with no replication at all, the single-instance baseline of the same writes.
 */
async function ferryRows(
  src: FerryProcess,
  dst: FerryProcess,
  type: 'none' | 'async' | 'sync',
  seconds: number,
): Promise<SyncRow[]> {
  await api(src, 'POST', `/b/${type}`, {});
  if (type !== 'none')
    await api(src, 'POST', `/replications/${type}`, {
      src_bucket: type,
      dst_bucket: type,
      dst_host: dst.url,
      dst_token: dst.token,
      ...(type === 'sync'
        ? { replication_type: 'sync', sync: { timeout_ms: 5000, on_timeout: 'fail' } }
        : {}),
    });
  const pool = new Pool(src.url, { connections: 64, pipelining: 1 });
  const payload = randomBytes(KiB);
  const rows: SyncRow[] = [];
  let ts = 1;
  try {
    for (const writers of CONCURRENCY) {
      const r = await closedLoop(writers, seconds, async (w) => {
        const res = await pool.request({
          method: 'POST',
          path: `/api/v1/b/${type}/${ONE_ENTRY ? 'w' : `w${w}`}?ts=${ts++}`,
          headers: { authorization: `Bearer ${src.token}`, 'content-type': 'application/octet-stream' },
          body: payload,
        });
        await res.body.dump();
        if (res.statusCode !== 200)
          throw new Error(`write: ${res.statusCode} ${String(res.headers['x-reduct-error'])}`);
      });
      rows.push({
        system: type === 'none' ? 'Ferry, no replication' : `Ferry ${type} replication`,
        writers,
        ...r,
      });
    }
  } finally {
    await pool.close();
    if (type !== 'none') await api(src, 'DELETE', `/replications/${type}`);
  }
  return rows;
}

/** PostgreSQL rows: primary with a synchronous standby, one INSERT per transaction. */
async function pgRows(seconds: number): Promise<SyncRow[] | string> {
  let pair;
  try {
    pair = await startPgSyncPair();
  } catch (e) {
    return `PostgreSQL standby failed: ${(e as Error).message.split('\n')[0]}`;
  }
  if (!pair) return 'PostgreSQL not installed';
  const rows: SyncRow[] = [];
  try {
    const setup = await pair.primary.connect();
    await setup.query('CREATE TABLE records (entry text, ts bigint, data bytea, PRIMARY KEY (entry, ts))');
    await setup.end();
    const payload = randomBytes(KiB);
    for (const mode of ['on', 'remote_apply'] as const) {
      for (const writers of CONCURRENCY) {
        const clients: pg.Client[] = await Promise.all(
          Array.from({ length: writers }, () => pair.primary.connect()),
        );
        try {
          await Promise.all(clients.map((c) => c.query(`SET synchronous_commit = ${mode}`)));
          const r = await closedLoop(writers, seconds, async (w, i) => {
            await clients[w]!.query('INSERT INTO records VALUES ($1, $2, $3)', [
              `${mode}-${writers}-${w}`,
              i,
              payload,
            ]);
          });
          rows.push({ system: `PostgreSQL sync standby (synchronous_commit=${mode})`, writers, ...r });
        } finally {
          await Promise.all(clients.map((c) => c.end()));
        }
      }
    }
  } finally {
    await pair.stop();
  }
  return rows;
}

/** Runs every sync row and prints the table and the targets. */
export async function runSyncBench(quick: boolean): Promise<void> {
  const seconds = quick ? 2 : 5;
  // latency on a shared machine says little without the load it was measured under
  const loadAtStart = loadavg();
  const env = { RS_SYSTEM_EVENTS_ENABLED: 'false' };
  const dst = await spawnFerry({ env });
  const src = await spawnFerry({ env });
  let rows: SyncRow[] = [];
  let pgNote = '';
  try {
    rows = [
      ...(await ferryRows(src, dst, 'none', seconds)),
      ...(await ferryRows(src, dst, 'async', seconds)),
      ...(await ferryRows(src, dst, 'sync', seconds)),
    ];
  } finally {
    await Promise.all([src.destroy(), dst.destroy()]);
  }
  const pgResult = await pgRows(seconds);
  if (typeof pgResult === 'string') pgNote = pgResult;
  else rows.push(...pgResult);

  console.log(
    `\nSync replication: 1 KiB single-record writes, closed loop per writer, ${ONE_ENTRY ? 'one entry for all writers' : 'an entry per writer'}`,
  );
  printTable(
    [
      { header: 'system', key: 'system', align: 'left' },
      { header: 'writers', format: (r: SyncRow) => String(r.writers) },
      { header: 'writes', format: (r: SyncRow) => fmt(r.records) },
      { header: 'writes/s', format: (r: SyncRow) => fmt(r.recordsPerSec) },
      { header: 'p50 ms', format: (r: SyncRow) => fmt(r.lat.p50, 2) },
      { header: 'p99 ms', format: (r: SyncRow) => fmt(r.lat.p99, 2) },
    ],
    rows,
  );
  if (pgNote) console.log(`(${pgNote})`);
  const load = (l: number[]): string => l.map((x) => x.toFixed(1)).join(' / ');
  console.log(
    `load average (1 / 5 / 15 min) at start ${load(loadAtStart)}, at end ${load(loadavg())}, on ${availableParallelism()} CPUs`,
  );

  const find = (system: string, writers: number): SyncRow | undefined =>
    rows.find((r) => r.system.startsWith(system) && r.writers === writers);
  const verdict = (ok: boolean | undefined): string => (ok === undefined ? 'n/a' : ok ? 'met' : 'MISSED');
  const targets: Array<{ target: string; measured: string; ok: string }> = [];
  for (const n of CONCURRENCY) {
    const s = find('Ferry sync', n);
    const p = find('PostgreSQL sync standby (synchronous_commit=on)', n);
    targets.push({
      target: `sync p50 ≤ PostgreSQL synchronous p50, ${n} writer${n > 1 ? 's' : ''}`,
      measured: `${fmt(s?.lat.p50, 2)} ms vs ${p ? `${fmt(p.lat.p50, 2)} ms` : 'n/a'}`,
      ok: verdict(s && p ? s.lat.p50 <= p.lat.p50 : undefined),
    });
  }
  const s64 = find('Ferry sync', 64);
  const a64 = find('Ferry async', 64);
  const ratio = s64 && a64 ? s64.recordsPerSec / a64.recordsPerSec : undefined;
  targets.push({
    target: 'sync throughput at 64 writers ≥ 50% of async',
    measured: ratio === undefined ? 'n/a' : `${fmt(ratio * 100, 0)}%`,
    ok: verdict(ratio === undefined ? undefined : ratio >= 0.5),
  });
  const s8 = find('Ferry sync', 8);
  targets.push({
    target: 'sync p99 at 8 writers ≤ 3 ms',
    measured: `${fmt(s8?.lat.p99, 2)} ms`,
    ok: verdict(s8 ? s8.lat.p99 <= 3 : undefined),
  });
  printTargets(targets);
}
