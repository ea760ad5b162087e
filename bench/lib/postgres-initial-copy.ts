/**
 * PostgreSQL baseline of an initial copy: rows that already exist on a publisher (wal_level=logical)
 * are copied to a new subscriber by `CREATE SUBSCRIPTION ... WITH (copy_data = true)`, the table
 * synchronisation that Ferry's `since` / one-shot copy is compared with. Undefined when PostgreSQL
 * is not installed.
 */
import type pg from 'pg';
import { insertRows, TABLE_SQL } from './postgres-baseline.js';
import { startPgCluster, type PgCluster } from './postgres-cluster.js';
import { waitUntil } from './wait.js';

/** Options of {@link measurePgInitialCopy}. */
export interface PgInitialCopyOptions {
  /** Rows that exist before the subscription is created. */
  rows: number;
  /** Body bytes per row. */
  rowBytes: number;
}

/** Result of {@link measurePgInitialCopy}. */
export interface PgInitialCopyResult {
  rows: number;
  /** From `CREATE SUBSCRIPTION` until the table is in state ready (`r`) with every row. */
  seconds: number;
  rowsPerSec: number;
  /** Body bytes only, 10^6 bytes per second. */
  mbPerSec: number;
  /** Seconds spent inserting the rows on the publisher (not part of the copy). */
  loadSeconds: number;
}

const count = async (c: pg.Client): Promise<number> =>
  Number((await c.query('SELECT count(*) AS n FROM records')).rows[0].n);

/**
 * Starts a publisher and a subscriber, inserts `rows` rows on the publisher, then times a new
 * subscription with `copy_data = true` until its table is synchronised and holds every row. Both
 * clusters are always removed.
 */
export async function measurePgInitialCopy(
  opts: PgInitialCopyOptions,
): Promise<PgInitialCopyResult | undefined> {
  const publisher = await startPgCluster({ settings: { wal_level: 'logical' } });
  if (publisher === undefined) return undefined;
  let subscriber: PgCluster | undefined;
  let sub: pg.Client | undefined;
  try {
    subscriber = await startPgCluster({ settings: { wal_retrieve_retry_interval: "'100ms'" } });
    if (subscriber === undefined) throw new Error('PostgreSQL disappeared between two cluster starts');
    const pub = await publisher.connect();
    try {
      await pub.query(TABLE_SQL);
      await pub.query('CREATE PUBLICATION copy_pub FOR TABLE records');
    } finally {
      await pub.end();
    }
    // Few rows per statement for large bodies: a statement's parameters are held in memory at once.
    const batchRows = Math.max(1, Math.min(1000, Math.floor((16 * 1024 * 1024) / opts.rowBytes)));
    const load = await insertRows(publisher, 1, opts.rows, opts.rowBytes, batchRows, 4);
    sub = await subscriber.connect();
    await sub.query(TABLE_SQL);
    const t0 = performance.now();
    await sub.query(
      `CREATE SUBSCRIPTION copy_sub CONNECTION 'host=${publisher.host} port=${publisher.port} user=${publisher.user} dbname=${publisher.database}' ` +
        'PUBLICATION copy_pub WITH (copy_data = true)',
    );
    const client = sub;
    await waitUntil(
      'the initial table synchronisation',
      30 * 60_000,
      async () => {
        const r = await client.query(
          "SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        );
        return (r.rows[0] as { n: number }).n === 0;
      },
      20,
    );
    const seconds = (performance.now() - t0) / 1000;
    const copied = await count(sub);
    if (copied !== opts.rows) throw new Error(`subscriber has ${copied} of ${opts.rows} rows`);
    return {
      rows: opts.rows,
      seconds,
      rowsPerSec: opts.rows / seconds,
      mbPerSec: (opts.rows * opts.rowBytes) / 1e6 / seconds,
      loadSeconds: load.seconds,
    };
  } finally {
    if (sub !== undefined) {
      // Dropping the subscription first releases the slot so that the publisher stops quickly.
      await sub.query('DROP SUBSCRIPTION IF EXISTS copy_sub').catch(() => undefined);
      await sub.end();
    }
    await subscriber?.stop();
    await publisher.stop();
  }
}
