/**
 * PostgreSQL baselines for the benchmarks: batched insert rate of small blob rows, and logical
 * replication (backlog drain rate, live lag). Every function returns undefined when PostgreSQL is
 * not installed, so callers can print "n/a".
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { startPgCluster, type PgCluster } from './postgres-cluster.js';
import { LatencyRecorder, runConcurrent, summarize, type LatencySummary } from './stats.js';
import { waitUntil } from './wait.js';

export { startPgCluster, findPostgresBin, type PgCluster } from './postgres-cluster.js';

/** Options of {@link measurePgInsert}. */
export interface PgInsertOptions {
  /** Rows to insert (default 100 000). */
  rows?: number;
  /** Body bytes per row (default 1024). */
  rowBytes?: number;
  /** Rows per INSERT statement (default 1000). */
  batchRows?: number;
  /** Connections inserting in parallel (default 4). */
  concurrency?: number;
}

/** Result of {@link measurePgInsert}. */
export interface PgInsertResult {
  rows: number;
  seconds: number;
  rowsPerSec: number;
  /** Body bytes only, 10^6 bytes per second. */
  mbPerSec: number;
  /** Latency of one INSERT statement (ms). */
  statement: LatencySummary;
  /** The server's `version()` up to the platform, e.g. "PostgreSQL 16.2 (Ubuntu 16.2-1)". */
  serverVersion: string;
}

/** The benchmark table (publisher side, and subscriber side of the initial-copy baseline). */
export const TABLE_SQL =
  'CREATE TABLE records (ts bigint PRIMARY KEY, labels jsonb NOT NULL, body bytea NOT NULL, sent_us bigint NOT NULL DEFAULT 0)';
/** On the subscriber an extra column stamps the apply time of each row (filled by its default). */
const SUBSCRIBER_TABLE_SQL =
  'CREATE TABLE records (ts bigint PRIMARY KEY, labels jsonb NOT NULL, body bytea NOT NULL, sent_us bigint NOT NULL DEFAULT 0, ' +
  'arrived_us bigint NOT NULL DEFAULT (extract(epoch from clock_timestamp()) * 1000000)::bigint)';

/** Labels comparable to the ones the Ferry benchmarks attach to each record. */
export function benchLabels(i: number): Record<string, string> {
  return { kind: 'bench', n: String(i % 100) };
}

/** Multi-row INSERT of `rows` rows, prepared once per connection under a name. */
class BatchInserter {
  private readonly sql: string;
  private readonly name: string;
  private readonly body: Buffer;

  constructor(
    private readonly rows: number,
    rowBytes: number,
  ) {
    const values: string[] = [];
    for (let r = 0; r < rows; r++)
      values.push(`($${r * 4 + 1}, $${r * 4 + 2}, $${r * 4 + 3}, $${r * 4 + 4})`);
    this.sql = `INSERT INTO records (ts, labels, body, sent_us) VALUES ${values.join(', ')}`;
    this.name = `insert_${rows}`;
    this.body = randomBytes(rowBytes);
  }

  /** Inserts rows with ts = firstTs … firstTs + rows - 1, each stamped with the current time. */
  async insert(client: pg.Client, firstTs: number): Promise<void> {
    const params: unknown[] = new Array(this.rows * 4);
    const sentUs = String(Math.round((performance.timeOrigin + performance.now()) * 1000));
    for (let r = 0; r < this.rows; r++) {
      const ts = firstTs + r;
      params[r * 4] = String(ts);
      params[r * 4 + 1] = JSON.stringify(benchLabels(ts));
      params[r * 4 + 2] = this.body;
      params[r * 4 + 3] = sentUs;
    }
    await client.query({ name: this.name, text: this.sql, values: params });
  }
}

/** Inserts `rows` rows in statements of `batchRows` over `concurrency` connections; returns statement latencies. */
export async function insertRows(
  cluster: PgCluster,
  firstTs: number,
  rows: number,
  rowBytes: number,
  batchRows: number,
  concurrency: number,
): Promise<{ seconds: number; latencies: number[] }> {
  const clients = await Promise.all(Array.from({ length: concurrency }, () => cluster.connect()));
  try {
    const full = new BatchInserter(batchRows, rowBytes);
    const tail = rows % batchRows === 0 ? undefined : new BatchInserter(rows % batchRows, rowBytes);
    const statements = Math.ceil(rows / batchRows);
    const latency = new LatencyRecorder();
    const free = [...clients];
    const seconds = await runConcurrent(statements, concurrency, async (i) => {
      const client = free.pop()!;
      try {
        await latency.time(() =>
          (i === statements - 1 && tail ? tail : full).insert(client, firstTs + i * batchRows),
        );
      } finally {
        free.push(client);
      }
    });
    return { seconds, latencies: latency.samples };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

/**
 * Creates a throw-away cluster, inserts rows of (bigint ts, jsonb labels, bytea body) with multi-row
 * INSERTs under default durability, and reports the rate. The cluster is always removed.
 */
export async function measurePgInsert(opts: PgInsertOptions = {}): Promise<PgInsertResult | undefined> {
  const rows = opts.rows ?? 100_000;
  const rowBytes = opts.rowBytes ?? 1024;
  const cluster = await startPgCluster();
  if (cluster === undefined) return undefined;
  try {
    const admin = await cluster.connect();
    let serverVersion: string;
    try {
      const v = await admin.query('SELECT version() AS v');
      serverVersion = String((v.rows[0] as { v: string }).v).split(' on ')[0]!;
      await admin.query(TABLE_SQL);
    } finally {
      await admin.end();
    }
    const { seconds, latencies } = await insertRows(
      cluster,
      1,
      rows,
      rowBytes,
      opts.batchRows ?? 1000,
      opts.concurrency ?? 4,
    );
    return {
      rows,
      seconds,
      rowsPerSec: rows / seconds,
      mbPerSec: (rows * rowBytes) / 1e6 / seconds,
      statement: summarize(latencies),
      serverVersion,
    };
  } finally {
    await cluster.stop();
  }
}

/** Two clusters with `records` published on one and subscribed on the other. */
export interface PgPair {
  publisher: PgCluster;
  subscriber: PgCluster;
  /** Drops the subscription and removes both clusters; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a publisher (wal_level=logical) and a subscriber, creates `records` on both, a publication
 * on the publisher and an enabled, caught-up subscription (copy_data = false) on the subscriber.
 */
export async function startPgPair(): Promise<PgPair | undefined> {
  const publisher = await startPgCluster({ settings: { wal_level: 'logical' } });
  if (publisher === undefined) return undefined;
  let subscriber: PgCluster | undefined;
  const stop = async (): Promise<void> => {
    if (subscriber !== undefined) {
      // Dropping the subscription first releases the slot so that the publisher stops quickly.
      try {
        const c = await subscriber.connect();
        try {
          await c.query('DROP SUBSCRIPTION IF EXISTS bench_sub');
        } finally {
          await c.end();
        }
      } catch {
        // the clusters are removed anyway
      }
      await subscriber.stop();
    }
    await publisher.stop();
  };
  try {
    // The launcher waits wal_retrieve_retry_interval (5 s) before restarting an apply worker, which
    // would dominate the backlog timing right after ENABLE.
    subscriber = await startPgCluster({ settings: { wal_retrieve_retry_interval: "'100ms'" } });
    if (subscriber === undefined) throw new Error('PostgreSQL disappeared between two cluster starts');
    const pub = await publisher.connect();
    const sub = await subscriber.connect();
    try {
      await pub.query(TABLE_SQL);
      await pub.query('CREATE PUBLICATION bench_pub FOR TABLE records');
      await sub.query(SUBSCRIBER_TABLE_SQL);
      await sub.query(
        `CREATE SUBSCRIPTION bench_sub CONNECTION 'host=${publisher.host} port=${publisher.port} user=${publisher.user} dbname=${publisher.database}' ` +
          'PUBLICATION bench_pub WITH (copy_data = false)',
      );
      await waitUntil('the subscription to become ready', 30_000, async () => {
        const r = await sub.query(
          "SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        );
        return (r.rows[0] as { n: number }).n === 0;
      });
    } finally {
      await Promise.all([pub.end(), sub.end()]);
    }
    return { publisher, subscriber, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Options of {@link measurePgReplication}. */
export interface PgReplicationOptions {
  /** Rows of the backlog (default 100 000). */
  rows?: number;
  /** Body bytes per row (default 1024). */
  rowBytes?: number;
  /** Rows per INSERT statement for the backlog (default 1000). */
  batchRows?: number;
  /** Steady insert rate for the live-lag phase, rows/s (default 1000; 0 skips the phase). */
  liveRate?: number;
  /** Duration of the live-lag phase in seconds (default 10). */
  liveSeconds?: number;
  /** Use this pair instead of starting (and stopping) one. */
  pair?: PgPair;
}

/** Result of {@link measurePgReplication}. */
export interface PgReplicationResult {
  backlog: { rows: number; seconds: number; rowsPerSec: number; mbPerSec: number };
  /** Lag from the client's INSERT to the row being applied on the subscriber (ms). */
  live?: LatencySummary & { rows: number; rate: number };
}

/** Inserts a marker row in its own transaction and waits until the subscriber has applied it. */
async function syncMarker(
  pub: pg.Client,
  sub: pg.Client,
  markerTs: number,
  timeoutMs: number,
): Promise<void> {
  await pub.query("INSERT INTO records (ts, labels, body) VALUES ($1, '{}', ''::bytea)", [String(markerTs)]);
  // Transactions are applied in commit order: once the marker is there, everything before it is too.
  await waitUntil(
    `marker ${markerTs} on the subscriber`,
    timeoutMs,
    async () => (await sub.query('SELECT 1 FROM records WHERE ts = $1', [String(markerTs)])).rowCount === 1,
  );
}

/**
 * Measures logical replication between two clusters:
 * - backlog: with the subscription disabled, insert `rows` rows, enable it and time until the
 *   subscriber has them all;
 * - live: insert at `liveRate` rows/s (in 10 ms ticks) and report the per-row lag.
 */
export async function measurePgReplication(
  opts: PgReplicationOptions = {},
): Promise<PgReplicationResult | undefined> {
  const rows = opts.rows ?? 100_000;
  const rowBytes = opts.rowBytes ?? 1024;
  const batchRows = opts.batchRows ?? 1000;
  const liveRate = opts.liveRate ?? 1000;
  const liveSeconds = opts.liveSeconds ?? 10;
  const pair = opts.pair ?? (await startPgPair());
  if (pair === undefined) return undefined;
  const pub = await pair.publisher.connect();
  const sub = await pair.subscriber.connect();
  try {
    await sub.query('ALTER SUBSCRIPTION bench_sub DISABLE');
    await insertRows(pair.publisher, 1_000_000_000, rows, rowBytes, batchRows, 4);
    await pub.query("INSERT INTO records (ts, labels, body) VALUES (-1, '{}', ''::bytea)");
    const t0 = performance.now();
    await sub.query('ALTER SUBSCRIPTION bench_sub ENABLE');
    await waitUntil(
      'the backlog to drain',
      30 * 60_000,
      async () => (await sub.query('SELECT 1 FROM records WHERE ts = -1')).rowCount === 1,
      10,
    );
    const seconds = (performance.now() - t0) / 1000;
    const copied = Number(
      (await sub.query('SELECT count(*) AS n FROM records WHERE ts >= 1000000000')).rows[0].n,
    );
    if (copied !== rows) throw new Error(`subscriber has ${copied} of ${rows} backlog rows`);
    const result: PgReplicationResult = {
      backlog: { rows, seconds, rowsPerSec: rows / seconds, mbPerSec: (rows * rowBytes) / 1e6 / seconds },
    };

    if (liveRate > 0 && liveSeconds > 0) {
      const firstTs = 2_000_000_000;
      let sent = 0;
      const body = randomBytes(rowBytes);
      const start = performance.now();
      while (performance.now() - start < liveSeconds * 1000) {
        const due = Math.floor(((performance.now() - start) / 1000) * liveRate) - sent;
        if (due > 0) {
          const sentUs = String(Math.round((performance.timeOrigin + performance.now()) * 1000));
          const values: string[] = [];
          const params: unknown[] = [];
          for (let r = 0; r < due; r++) {
            const ts = firstTs + sent + r;
            values.push(`($${r * 4 + 1}, $${r * 4 + 2}, $${r * 4 + 3}, $${r * 4 + 4})`);
            params.push(String(ts), JSON.stringify(benchLabels(ts)), body, sentUs);
          }
          await pub.query(
            `INSERT INTO records (ts, labels, body, sent_us) VALUES ${values.join(', ')}`,
            params,
          );
          sent += due;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      await syncMarker(pub, sub, -2, 60_000);
      const lag = await sub.query(
        'SELECT (arrived_us - sent_us) / 1000.0 AS ms FROM records WHERE ts >= $1',
        [String(firstTs)],
      );
      const samples = lag.rows.map((r: { ms: string }) => Number(r.ms));
      result.live = { ...summarize(samples), rows: sent, rate: liveRate };
    }
    return result;
  } finally {
    await Promise.all([pub.end(), sub.end()]);
    if (opts.pair === undefined) await pair.stop();
  }
}
